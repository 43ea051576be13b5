//! Access tokens for Google Cloud, found the way Google's own tools find them.
//!
//! Application Default Credentials, in order: the file named by
//! `GOOGLE_APPLICATION_CREDENTIALS` (a service-account key, an external
//! account, an authorized user, or an impersonated service account), then
//! gcloud's ADC file (`gcloud auth application-default login`, with or
//! without `--impersonate-service-account`), then the GCE/GKE metadata
//! server. `yup-oauth2` runs each flow and caches and refreshes its tokens.
//! On top of any of them, [`Impersonated`] trades the token for one of a
//! service account through the IAM Credentials API.
//!
//! A user's own credentials (`authorized_user`) are refreshed by
//! [`UserRefresh`] at the file's `token_uri`, as Google's libraries do
//! (`yup-oauth2`'s flow posts to a fixed address and ignores it), and they
//! carry a quota project: Google bills a user's calls to the project named
//! in `x-goog-user-project`, and without one to the OAuth client's own
//! project, where the APIs are off ("API has not been used in project
//! 764086051850"; https://cloud.google.com/docs/authentication/troubleshoot-adc#user-creds-client-based).
//! [`Identity`] says which kind of credentials a source holds.
//!
//! [`detect`] answers "are there credentials, and where?" without reading
//! them, for the commands that check before running terraform: this module
//! is the one place that knows where Google's libraries look.
//!
//! Tokens are secrets: nothing here logs or prints one, no type that holds
//! one derives `Debug`, and `yup_oauth2`'s own debug logs (which do print
//! them) are filtered out in `ui::init_logging`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::Deserialize;
use tokio::sync::Mutex;
use yup_oauth2::authenticator::{ApplicationDefaultCredentialsTypes, Authenticator};

use super::http::{Call, Clock, Http, Idempotency, RetryPolicy};

/// The one scope `infra` asks for: IAM decides what the account may do.
pub const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Where the IAM Credentials API lives.
pub const IAM_CREDENTIALS_URL: &str = "https://iamcredentials.googleapis.com";

/// Where the credentials come from, as [`detect`] finds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The file `GOOGLE_APPLICATION_CREDENTIALS` names.
    EnvFile(PathBuf),
    /// gcloud's `application_default_credentials.json`.
    Gcloud(PathBuf),
    /// The metadata server of the Google Cloud machine we run on.
    MetadataServer,
}

/// Where Linux reports the machine's product name; "Google" on Compute Engine.
const DMI_PRODUCT_NAME: &str = "/sys/class/dmi/id/product_name";

/// Finds Application Default Credentials for this process, in Google's
/// order, without reading them: whether they still work is for the first
/// API call to say.
pub fn detect() -> Result<Found> {
    detect_with(
        &AdcSources::from_env(),
        Path::new(DMI_PRODUCT_NAME),
        no_gce_check(),
    )
}

/// `NO_GCE_CHECK=True` turns off the metadata-server probe, as it does for
/// Google's libraries.
fn no_gce_check() -> bool {
    std::env::var("NO_GCE_CHECK").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// [`detect`] with the sources and the DMI file passed in, for tests.
pub fn detect_with(
    sources: &AdcSources,
    dmi_product_name: &Path,
    no_gce_check: bool,
) -> Result<Found> {
    let hint = "hint: run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to a credentials file";
    if let Some(path) = &sources.credentials_file {
        if path.is_file() {
            return Ok(Found::EnvFile(path.clone()));
        }
        bail!(
            "GOOGLE_APPLICATION_CREDENTIALS names {}, which does not exist\n{hint}",
            path.display()
        );
    }
    if let Some(path) = sources.gcloud_file.as_ref().filter(|p| p.is_file()) {
        return Ok(Found::Gcloud(path.clone()));
    }
    if !no_gce_check
        && std::fs::read_to_string(dmi_product_name)
            .is_ok_and(|name| name.trim().starts_with("Google"))
    {
        return Ok(Found::MetadataServer);
    }
    let looked = match &sources.gcloud_file {
        Some(path) => format!(
            "GOOGLE_APPLICATION_CREDENTIALS is unset, {} does not exist",
            path.display()
        ),
        None => "GOOGLE_APPLICATION_CREDENTIALS and HOME are unset".to_owned(),
    };
    bail!(
        "no Google Cloud credentials found ({looked}, and this is not a Google Cloud machine)\n{hint}"
    );
}

/// Who a token source's tokens are for, as far as is known without asking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// `serviceAccount:…` or `user:…`, when the credentials say.
    pub member: Option<String>,
    /// A user's own credentials: Google's APIs then want a quota project.
    pub user: bool,
    /// The quota project the credentials name (`quota_project_id`, or
    /// `GOOGLE_CLOUD_QUOTA_PROJECT`).
    pub quota_project: Option<String>,
}

impl Identity {
    fn service_account(email: &str) -> Identity {
        Identity {
            member: Some(format!("serviceAccount:{email}")),
            ..Identity::default()
        }
    }

    /// The member for an email: service accounts end in `gserviceaccount.com`.
    pub fn member_for_email(email: &str) -> String {
        if email.ends_with(".gserviceaccount.com") {
            format!("serviceAccount:{email}")
        } else {
            format!("user:{email}")
        }
    }
}

/// Something that hands out access tokens.
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// A bearer token, or `None` to send no `Authorization` header (an emulator).
    async fn token(&self) -> Result<Option<String>>;

    /// Whose tokens these are, as far as the credentials say.
    fn identity(&self) -> Identity {
        Identity::default()
    }
}

/// No credentials at all: for emulators such as fake-gcs-server.
pub struct NoToken;

#[async_trait]
impl TokenSource for NoToken {
    async fn token(&self) -> Result<Option<String>> {
        Ok(None)
    }
}

/// A token obtained elsewhere (for example `gcloud auth print-access-token`),
/// used as is until it stops working.
pub struct StaticToken(String);

impl StaticToken {
    pub fn new(token: impl Into<String>) -> StaticToken {
        StaticToken(token.into())
    }
}

#[async_trait]
impl TokenSource for StaticToken {
    async fn token(&self) -> Result<Option<String>> {
        Ok(Some(self.0.clone()))
    }
}

/// Tokens from a `yup-oauth2` flow, cached in memory and refreshed a minute
/// before they expire.
pub struct OAuth {
    authenticator: Authenticator<HttpsConnectorOf>,
    scopes: Vec<String>,
    /// `host:port` of the token endpoint, for transport errors (yup-oauth2's don't name it).
    endpoint: Option<String>,
    /// Which credentials these are, for messages (never the secret).
    pub description: String,
}

/// The connector `yup-oauth2` builds: rustls, native roots, HTTPS or plain HTTP.
type HttpsConnectorOf =
    <yup_oauth2::DefaultHyperClientBuilder as yup_oauth2::HyperClientBuilder>::Connector;

#[async_trait]
impl TokenSource for OAuth {
    async fn token(&self) -> Result<Option<String>> {
        let token = self
            .authenticator
            .token(&self.scopes)
            .await
            .map_err(|e| super::transport::explain(e, self.endpoint.as_deref()))
            .with_context(|| format!("cannot get an access token with {}", self.description))?;
        let token = token
            .token()
            .with_context(|| format!("{} returned no access token", self.description))?;
        Ok(Some(token.to_owned()))
    }
}

/// Where Application Default Credentials may be found, read from the
/// environment once so that tests can pass their own.
#[derive(Debug, Clone, Default)]
pub struct AdcSources {
    /// `GOOGLE_APPLICATION_CREDENTIALS`.
    pub credentials_file: Option<PathBuf>,
    /// gcloud's `application_default_credentials.json`.
    pub gcloud_file: Option<PathBuf>,
    /// The metadata server's token URL (`None`: the real one).
    pub metadata_url: Option<String>,
    /// `GOOGLE_CLOUD_QUOTA_PROJECT`: overrides a user file's `quota_project_id`.
    pub quota_project: Option<String>,
}

impl AdcSources {
    pub fn from_env() -> AdcSources {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let gcloud_dir = var("CLOUDSDK_CONFIG")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".config/gcloud")));
        AdcSources {
            credentials_file: var("GOOGLE_APPLICATION_CREDENTIALS").map(PathBuf::from),
            gcloud_file: gcloud_dir.map(|dir| dir.join("application_default_credentials.json")),
            metadata_url: var("GCE_METADATA_HOST").map(|host| {
                format!(
                    "http://{}/computeMetadata/v1/instance/service-accounts/default/token",
                    host.to_string_lossy()
                )
            }),
            quota_project: var("GOOGLE_CLOUD_QUOTA_PROJECT")
                .map(|p| p.to_string_lossy().into_owned()),
        }
    }
}

#[derive(Deserialize)]
struct CredentialsType {
    #[serde(rename = "type")]
    kind: String,
}

/// Credentials found the Application Default way, with what they are.
pub struct Adc {
    tokens: Arc<dyn TokenSource>,
    /// Which credentials these are, for messages (never the secret).
    pub description: String,
    pub identity: Identity,
}

#[async_trait]
impl TokenSource for Adc {
    async fn token(&self) -> Result<Option<String>> {
        self.tokens.token().await
    }

    fn identity(&self) -> Identity {
        self.identity.clone()
    }
}

impl From<OAuth> for Adc {
    fn from(oauth: OAuth) -> Adc {
        let description = oauth.description.clone();
        Adc {
            tokens: Arc::new(oauth),
            description,
            identity: Identity::default(),
        }
    }
}

/// The Application Default Credentials, in Google's order.
pub async fn application_default(sources: &AdcSources) -> Result<Adc> {
    let scopes = vec![CLOUD_PLATFORM.to_owned()];
    let with_quota = |mut adc: Adc| {
        if adc.identity.user && sources.quota_project.is_some() {
            adc.identity.quota_project = sources.quota_project.clone();
        }
        adc
    };
    if let Some(path) = &sources.credentials_file {
        return from_file(path, scopes)
            .await
            .map(with_quota)
            .with_context(|| format!("GOOGLE_APPLICATION_CREDENTIALS names {}", path.display()));
    }
    if let Some(path) = sources.gcloud_file.as_deref().filter(|p| p.is_file()) {
        return from_file(path, scopes).await.map(with_quota);
    }
    let opts = yup_oauth2::ApplicationDefaultCredentialsFlowOpts {
        metadata_url: sources.metadata_url.clone(),
    };
    let authenticator =
        match yup_oauth2::ApplicationDefaultCredentialsAuthenticator::builder(opts).await {
            ApplicationDefaultCredentialsTypes::InstanceMetadata(builder) => builder.build().await,
            ApplicationDefaultCredentialsTypes::ServiceAccount(builder) => builder.build().await,
        }
        .context("cannot set up the metadata-server credentials")?;
    Ok(OAuth {
        authenticator,
        scopes,
        endpoint: Some("metadata.google.internal".to_owned()),
        description: "the metadata server's service account (no GOOGLE_APPLICATION_CREDENTIALS, no gcloud ADC file)\nhint: on a workstation, run `gcloud auth application-default login`".to_owned(),
    }
    .into())
}

/// Credentials from a JSON file, by its `type`.
pub async fn from_file(path: &Path, scopes: Vec<String>) -> Result<Adc> {
    let text = tokio::fs::read_to_string(path)
        .await
        .with_context(|| format!("cannot read credentials file {}", path.display()))?;
    from_json(&text, &path.display().to_string(), scopes).await
}

/// What `gcloud auth application-default login --impersonate-service-account`
/// writes: the caller's own credentials, and whom to impersonate.
#[derive(Deserialize)]
struct ImpersonatedFile {
    source_credentials: serde_json::Value,
    service_account_impersonation_url: String,
}

/// Splits `https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/EMAIL:generateAccessToken`
/// into the API's base URL and the email.
fn impersonation_target(url: &str) -> Option<(&str, &str)> {
    let (base, rest) = url.split_once("/v1/projects/")?;
    let email = rest
        .split_once("/serviceAccounts/")?
        .1
        .strip_suffix(":generateAccessToken")?;
    Some((base, email))
}

/// Credentials from the text of a credentials file; `shown` names it.
async fn from_json(text: &str, shown: &str, scopes: Vec<String>) -> Result<Adc> {
    let CredentialsType { kind } = serde_json::from_str(text)
        .with_context(|| format!("{shown} is not a Google credentials file (no `type`)"))?;
    if kind == "impersonated_service_account" {
        let file: ImpersonatedFile = serde_json::from_str(text)
            .with_context(|| format!("{shown} is not a valid impersonated-service-account file"))?;
        let (base_url, email) = impersonation_target(&file.service_account_impersonation_url)
            .with_context(|| {
                format!(
                    "{shown}: cannot read the service account from {}",
                    file.service_account_impersonation_url
                )
            })?;
        let source = Box::pin(from_json(
            &file.source_credentials.to_string(),
            &format!("the source credentials in {shown}"),
            scopes,
        ))
        .await?;
        let description = format!("{email}, impersonated by {}", source.description);
        let source: Arc<dyn TokenSource> = Arc::new(source);
        return Ok(Adc {
            tokens: Arc::new(Impersonated::new(
                source,
                email,
                base_url,
                RetryPolicy::default(),
                super::http::system_clock(),
            )?),
            description,
            identity: Identity::service_account(email),
        });
    }
    let mut identity = Identity::default();
    let endpoint;
    let (authenticator, description) = match kind.as_str() {
        "service_account" => {
            let key = yup_oauth2::parse_service_account_key(text)
                .with_context(|| format!("{shown} is not a valid service-account key"))?;
            let description = format!("service account {} (key {shown})", key.client_email);
            identity = Identity::service_account(&key.client_email);
            endpoint = super::transport::host_of_url(&key.token_uri);
            (
                yup_oauth2::ServiceAccountAuthenticator::builder(key)
                    .build()
                    .await,
                description,
            )
        }
        "authorized_user" => {
            let file: UserFile = serde_json::from_str(text)
                .with_context(|| format!("{shown} is not a valid authorized-user file"))?;
            let description = format!("the user credentials in {shown}");
            return Ok(Adc {
                identity: Identity {
                    member: None,
                    user: true,
                    quota_project: file.quota_project_id.clone().filter(|p| !p.is_empty()),
                },
                tokens: Arc::new(UserRefresh::new(file, &description)?),
                description,
            });
        }
        "external_account" => {
            let secret: yup_oauth2::external_account::ExternalAccountSecret =
                serde_json::from_str(text)
                    .with_context(|| format!("{shown} is not a valid external-account file"))?;
            endpoint = super::transport::host_of_url(&secret.token_url);
            (
                yup_oauth2::ExternalAccountAuthenticator::builder(secret)
                    .build()
                    .await,
                format!("the external account in {shown}"),
            )
        }
        other => bail!(
            "{shown} holds `{other}` credentials, which infra cannot use\nhint: use a service-account key, an external-account file or `gcloud auth application-default login` (with or without --impersonate-service-account)"
        ),
    };
    let authenticator =
        authenticator.with_context(|| format!("cannot set up credentials from {shown}"))?;
    let mut adc: Adc = OAuth {
        authenticator,
        scopes,
        endpoint,
        description,
    }
    .into();
    adc.identity = identity;
    Ok(adc)
}

/// Google's token endpoint for a user's refresh token, when the file names none.
const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// What `gcloud auth application-default login` writes.
#[derive(Deserialize)]
struct UserFile {
    client_id: String,
    client_secret: String,
    refresh_token: String,
    #[serde(default)]
    token_uri: Option<String>,
    #[serde(default)]
    quota_project_id: Option<String>,
}

/// A user's access tokens, refreshed with the refresh token at the file's
/// `token_uri` (OAuth 2.0 refresh grant, RFC 6749 section 6), cached until
/// a minute before they expire.
pub struct UserRefresh {
    client: reqwest::Client,
    file: UserFile,
    description: String,
    cached: Mutex<Option<(String, std::time::Instant)>>,
}

impl UserRefresh {
    fn new(file: UserFile, description: &str) -> Result<UserRefresh> {
        Ok(UserRefresh {
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()?,
            file,
            description: description.to_owned(),
            cached: Mutex::new(None),
        })
    }
}

#[derive(Deserialize)]
struct RefreshedToken {
    access_token: String,
    #[serde(default = "an_hour")]
    expires_in: u64,
}

fn an_hour() -> u64 {
    3600
}

#[async_trait]
impl TokenSource for UserRefresh {
    async fn token(&self) -> Result<Option<String>> {
        let mut cached = self.cached.lock().await;
        if let Some((token, expires)) = cached.as_ref()
            && std::time::Instant::now() + std::time::Duration::from_secs(60) < *expires
        {
            return Ok(Some(token.clone()));
        }
        let uri = self.file.token_uri.as_deref().unwrap_or(GOOGLE_TOKEN_URI);
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", self.file.client_id.as_str()),
            ("client_secret", self.file.client_secret.as_str()),
            ("refresh_token", self.file.refresh_token.as_str()),
        ];
        let response = self
            .client
            .post(uri)
            .form(&form)
            .send()
            .await
            .map_err(|e| super::transport::explain(e, None))
            .with_context(|| format!("cannot refresh {} at {uri}", self.description))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            bail!(
                "cannot refresh {} at {uri}: HTTP {status}: {}\nhint: run `gcloud auth application-default login` again",
                self.description,
                body.chars().take(300).collect::<String>()
            );
        }
        let token: RefreshedToken = response
            .json()
            .await
            .with_context(|| format!("{uri} answered the refresh with no access token"))?;
        let expires = std::time::Instant::now() + std::time::Duration::from_secs(token.expires_in);
        *cached = Some((token.access_token.clone(), expires));
        Ok(Some(token.access_token))
    }

    fn identity(&self) -> Identity {
        Identity {
            member: None,
            user: true,
            quota_project: self.file.quota_project_id.clone(),
        }
    }
}

/// A service account's tokens, minted by the IAM Credentials API with the
/// caller's own token (`--impersonate-service-account`). The caller needs
/// `roles/iam.serviceAccountTokenCreator` on that account.
pub struct Impersonated {
    http: Http,
    base_url: String,
    email: String,
    clock: Clock,
    cached: Mutex<Option<(String, DateTime<Utc>)>>,
}

impl Impersonated {
    /// The minting calls of a user name `project` as their quota project
    /// when the credentials name none.
    pub fn with_quota_fallback(mut self, project: &str) -> Impersonated {
        self.http = self.http.with_quota_fallback(project);
        self
    }
}

/// Refresh this long before the minted token expires.
const REFRESH_MARGIN: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

impl Impersonated {
    pub fn new(
        base: Arc<dyn TokenSource>,
        email: &str,
        base_url: &str,
        policy: RetryPolicy,
        clock: Clock,
    ) -> Result<Impersonated> {
        Ok(Impersonated {
            http: Http::new(base, policy)?,
            base_url: base_url.trim_end_matches('/').to_owned(),
            email: email.to_owned(),
            clock,
            cached: Mutex::new(None),
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeneratedToken {
    access_token: String,
    expire_time: DateTime<Utc>,
}

#[async_trait]
impl TokenSource for Impersonated {
    async fn token(&self) -> Result<Option<String>> {
        let mut cached = self.cached.lock().await;
        if let Some((token, expires)) = cached.as_ref()
            && (self.clock)() + REFRESH_MARGIN < *expires
        {
            return Ok(Some(token.clone()));
        }
        let url = format!(
            "{}/v1/projects/-/serviceAccounts/{}:generateAccessToken",
            self.base_url, self.email
        );
        let call = Call::new(Method::POST, url, Idempotency::Idempotent).json(&serde_json::json!({
            "scope": [CLOUD_PLATFORM],
            "lifetime": "3600s",
        }));
        let generated: GeneratedToken = self.http.json(&call).await.map_err(|e| {
            // The role is the cure for a refusal, not for a network failure.
            let hint = if e.status() == Some(reqwest::StatusCode::FORBIDDEN) {
                "\nhint: you need roles/iam.serviceAccountTokenCreator on it"
            } else {
                ""
            };
            anyhow::Error::new(e).context(format!("cannot impersonate {}{hint}", self.email))
        })?;
        *cached = Some((generated.access_token.clone(), generated.expire_time));
        Ok(Some(generated.access_token))
    }

    fn identity(&self) -> Identity {
        Identity::service_account(&self.email)
    }
}

/// The token source for the GCP target: ADC, then each account of
/// `impersonate` in turn (`impersonate_service_account`, then the pipeline's
/// account when `run_as = pipeline`). A user's calls name a quota project:
/// the one the credentials name, else `project`.
pub async fn for_settings(
    impersonate: &[&str],
    sources: &AdcSources,
    iam_credentials_url: &str,
    project: &str,
) -> Result<Arc<dyn TokenSource>> {
    let adc = application_default(sources).await?;
    tracing::info!(
        "Google Cloud credentials: {}",
        adc.description.lines().next().unwrap_or_default()
    );
    let mut tokens: Arc<dyn TokenSource> = Arc::new(adc);
    for email in impersonate {
        tokens = Arc::new(
            Impersonated::new(
                tokens,
                email,
                iam_credentials_url,
                RetryPolicy::default(),
                super::http::system_clock(),
            )?
            .with_quota_fallback(project),
        );
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(file: Option<&Path>, gcloud: Option<&Path>) -> AdcSources {
        AdcSources {
            credentials_file: file.map(Path::to_path_buf),
            gcloud_file: gcloud.map(Path::to_path_buf),
            metadata_url: None,
            quota_project: None,
        }
    }

    fn user_file(dir: &Path, quota: Option<&str>) -> PathBuf {
        let mut file = serde_json::json!({
            "type": "authorized_user",
            "client_id": "c",
            "client_secret": "s",
            "refresh_token": "r",
        });
        if let Some(quota) = quota {
            file["quota_project_id"] = quota.into();
        }
        let path = dir.join("adc.json");
        std::fs::write(&path, file.to_string()).unwrap();
        path
    }

    /// Issue 19: user credentials name their quota project, and
    /// GOOGLE_CLOUD_QUOTA_PROJECT overrides the file's.
    #[tokio::test]
    async fn user_credentials_carry_their_quota_project() {
        let dir = tempfile::tempdir().unwrap();
        let path = user_file(dir.path(), Some("billing-project"));
        let adc = application_default(&sources(Some(&path), None))
            .await
            .unwrap();
        assert!(adc.identity.user);
        assert_eq!(
            adc.identity.quota_project.as_deref(),
            Some("billing-project")
        );
        let overridden = AdcSources {
            quota_project: Some("from-env".into()),
            ..sources(Some(&path), None)
        };
        let adc = application_default(&overridden).await.unwrap();
        assert_eq!(adc.identity.quota_project.as_deref(), Some("from-env"));
        let none = user_file(dir.path(), None);
        let adc = application_default(&sources(Some(&none), None))
            .await
            .unwrap();
        assert_eq!(adc.identity.quota_project, None);
    }

    #[test]
    fn the_env_file_comes_first_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.json");
        std::fs::write(&key, "{}").unwrap();
        let gcloud = dir.path().join("adc.json");
        std::fs::write(&gcloud, "{}").unwrap();
        let none = Path::new("/nonexistent");
        assert_eq!(
            detect_with(&sources(Some(&key), Some(&gcloud)), none, true).unwrap(),
            Found::EnvFile(key)
        );
        let missing = dir.path().join("missing.json");
        let err = detect_with(&sources(Some(&missing), Some(&gcloud)), none, true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
        assert!(
            err.contains("hint: run `gcloud auth application-default login`"),
            "{err}"
        );
        assert_eq!(
            detect_with(&sources(None, Some(&gcloud)), none, true).unwrap(),
            Found::Gcloud(gcloud)
        );
    }

    #[test]
    fn a_google_cloud_machine_has_the_metadata_server_unless_told_not_to_look() {
        let dir = tempfile::tempdir().unwrap();
        let dmi = dir.path().join("product_name");
        std::fs::write(&dmi, "Google Compute Engine\n").unwrap();
        let absent = dir.path().join("absent.json");
        let nothing = sources(None, Some(&absent));
        assert_eq!(
            detect_with(&nothing, &dmi, false).unwrap(),
            Found::MetadataServer
        );
        let err = detect_with(&nothing, &dmi, true).unwrap_err().to_string();
        assert!(
            err.starts_with("no Google Cloud credentials found"),
            "{err}"
        );
        assert!(err.contains("absent.json does not exist"), "{err}");
    }

    #[test]
    fn the_impersonation_url_names_the_account() {
        assert_eq!(
            impersonation_target(
                "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com:generateAccessToken"
            ),
            Some((
                "https://iamcredentials.googleapis.com",
                "sa@p.iam.gserviceaccount.com"
            ))
        );
        assert_eq!(impersonation_target("https://example.com/token"), None);
    }
}
