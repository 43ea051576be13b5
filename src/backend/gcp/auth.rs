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

/// Something that hands out access tokens.
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// A bearer token, or `None` to send no `Authorization` header (an emulator).
    async fn token(&self) -> Result<Option<String>>;
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
}

#[async_trait]
impl TokenSource for Adc {
    async fn token(&self) -> Result<Option<String>> {
        self.tokens.token().await
    }
}

impl From<OAuth> for Adc {
    fn from(oauth: OAuth) -> Adc {
        let description = oauth.description.clone();
        Adc {
            tokens: Arc::new(oauth),
            description,
        }
    }
}

/// The Application Default Credentials, in Google's order.
pub async fn application_default(sources: &AdcSources) -> Result<Adc> {
    let scopes = vec![CLOUD_PLATFORM.to_owned()];
    if let Some(path) = &sources.credentials_file {
        return from_file(path, scopes)
            .await
            .with_context(|| format!("GOOGLE_APPLICATION_CREDENTIALS names {}", path.display()));
    }
    if let Some(path) = sources.gcloud_file.as_deref().filter(|p| p.is_file()) {
        return from_file(path, scopes).await;
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
        });
    }
    let (authenticator, description) = match kind.as_str() {
        "service_account" => {
            let key = yup_oauth2::parse_service_account_key(text)
                .with_context(|| format!("{shown} is not a valid service-account key"))?;
            let description = format!("service account {} (key {shown})", key.client_email);
            (
                yup_oauth2::ServiceAccountAuthenticator::builder(key)
                    .build()
                    .await,
                description,
            )
        }
        "authorized_user" => {
            let secret: yup_oauth2::authorized_user::AuthorizedUserSecret =
                serde_json::from_str(text)
                    .with_context(|| format!("{shown} is not a valid authorized-user file"))?;
            (
                yup_oauth2::AuthorizedUserAuthenticator::builder(secret)
                    .build()
                    .await,
                format!("the user credentials in {shown}"),
            )
        }
        "external_account" => {
            let secret: yup_oauth2::external_account::ExternalAccountSecret =
                serde_json::from_str(text)
                    .with_context(|| format!("{shown} is not a valid external-account file"))?;
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
    Ok(OAuth {
        authenticator,
        scopes,
        description,
    }
    .into())
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
        let generated: GeneratedToken = self.http.json(&call).await.with_context(|| {
            format!(
                "cannot impersonate {}\nhint: you need roles/iam.serviceAccountTokenCreator on it",
                self.email
            )
        })?;
        *cached = Some((generated.access_token.clone(), generated.expire_time));
        Ok(Some(generated.access_token))
    }
}

/// The token source for the GCP target: ADC, impersonated when asked.
pub async fn for_settings(
    impersonate: Option<&str>,
    sources: &AdcSources,
    iam_credentials_url: &str,
) -> Result<Arc<dyn TokenSource>> {
    let adc = application_default(sources).await?;
    tracing::info!(
        "Google Cloud credentials: {}",
        adc.description.lines().next().unwrap_or_default()
    );
    let adc: Arc<dyn TokenSource> = Arc::new(adc);
    Ok(match impersonate {
        Some(email) => Arc::new(Impersonated::new(
            adc,
            email,
            iam_credentials_url,
            RetryPolicy::default(),
            super::http::system_clock(),
        )?),
        None => adc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(file: Option<&Path>, gcloud: Option<&Path>) -> AdcSources {
        AdcSources {
            credentials_file: file.map(Path::to_path_buf),
            gcloud_file: gcloud.map(Path::to_path_buf),
            metadata_url: None,
        }
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
