//! HTTP behaviour shared by the Cloud Storage, Dataproc and BigQuery clients.
//!
//! All three speak JSON over HTTPS, fail the same ways and want the same
//! cure, so it lives here once: every call gets a fresh access token, a
//! time limit per attempt, a deadline for the whole call, and retries with
//! exponential backoff and jitter (through `backon`) on 429, 500, 502, 503,
//! 504, timeouts and connection errors, waiting at least as long as a
//! `Retry-After` header asks. A call that is not idempotent and carries no
//! request id is never retried: the first attempt may have taken effect.
//! A name that does not resolve, a refused connection and a failed TLS
//! handshake are not retried either: waiting does not mend them, and the
//! user learns at once which endpoint, DNS or proxy is wrong. The first
//! retry of a timeout or another connect failure prints one line
//! (`retrying: cannot reach <host>: …`), so a slow network is not silence.
//!
//! Base URLs, the token source and the clock are passed in, so tests point
//! the clients at `127.0.0.1:<port>` and shorten every delay.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::auth::TokenSource;

/// The current time, passed in so tests can move it.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The real clock.
pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}

/// Time limits and retry schedule for every call a client makes.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// How long one attempt may wait for the response headers.
    pub attempt_timeout: Duration,
    /// How long a call may take, all attempts and waits included.
    pub deadline: Duration,
    /// The first backoff delay; it doubles, with jitter, up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Retries after the first attempt.
    pub max_retries: usize,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempt_timeout: Duration::from_secs(60),
            deadline: Duration::from_secs(300),
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(32),
            max_retries: 8,
        }
    }
}

/// Why a call failed. Callers match on the status (404, 409) through
/// [`ApiError::status`].
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The server answered with an error status.
    #[error("HTTP {status}: {message}")]
    Status {
        status: StatusCode,
        /// Google's `error.message`, or the start of the body.
        message: String,
        retry_after: Option<Duration>,
    },
    /// HTTP 403 for a missing IAM permission: the one line names who lacks
    /// what, and where the grant comes from.
    #[error(
        "{identity} lacks the permission {permission} on {resource}\nhint: infra's grants are made by terraform/modules/iam and listed in docs/iam.md: `infra up` restores a missing one, and one made in the last few minutes may still be propagating"
    )]
    PermissionDenied {
        permission: String,
        resource: String,
        identity: String,
    },
    /// The request or its response did not get through: one line naming
    /// the host and what failed (DNS, connect, TLS, timeout), and a hint
    /// about the network, the endpoint or the proxy.
    #[error("{}", transport(.0))]
    Transport(reqwest::Error),
    /// One attempt got no response headers in time.
    #[error(
        "no response within {0:?}\nhint: the network or a firewall may be dropping the traffic; behind a proxy, set HTTPS_PROXY"
    )]
    AttemptTimeout(Duration),
    /// The call as a whole ran out of time. The last error comes last, so
    /// that its hint ends the message.
    #[error("no success within the call's deadline of {after:?}{}", last.as_ref().map(|l| format!("; the last error: {l}")).unwrap_or_default())]
    Deadline {
        after: Duration,
        last: Option<String>,
    },
    /// The token source failed; its own errors say how.
    #[error("{0:#}")]
    Token(anyhow::Error),
    /// The response body was not what the API documents.
    #[error("unexpected response: {0}")]
    Decode(String),
}

/// A transport failure that waiting does not mend: a name that does not
/// resolve, a port where nothing listens, a TLS handshake that fails. Each
/// says at once what eight retries would say after about 95 s (the
/// endpoint, the DNS, the proxy is wrong), so it is not retried.
fn is_lasting(err: &reqwest::Error) -> bool {
    use super::transport::Kind;
    super::transport::classify(err, None)
        .is_some_and(|f| matches!(f.kind, Kind::Dns | Kind::Refused | Kind::Tls))
}

fn transport(err: &reqwest::Error) -> String {
    match super::transport::classify(err, None) {
        Some(failure) => failure.to_string(),
        None => {
            // Not a network failure (a builder or redirect error): its
            // innermost cause says the most.
            let mut innermost = None;
            let mut source = std::error::Error::source(err);
            while let Some(cause) = source {
                innermost = Some(cause.to_string());
                source = cause.source();
            }
            match innermost {
                Some(cause) => format!("{err}: {cause}"),
                None => err.to_string(),
            }
        }
    }
}

impl ApiError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            ApiError::PermissionDenied { .. } => Some(StatusCode::FORBIDDEN),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(StatusCode::NOT_FOUND)
    }

    pub fn is_conflict(&self) -> bool {
        self.status() == Some(StatusCode::CONFLICT)
    }

    /// Whether trying again could succeed.
    fn is_transient(&self) -> bool {
        match self {
            ApiError::Status { status, .. } => {
                matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
            }
            ApiError::Transport(e) => {
                !(e.is_builder() || e.is_decode() || e.is_redirect() || is_lasting(e))
            }
            ApiError::AttemptTimeout(_) => true,
            ApiError::Deadline { .. }
            | ApiError::Token(_)
            | ApiError::Decode(_)
            | ApiError::PermissionDenied { .. } => false,
        }
    }

    /// The line that says, at the first failure of a call that will be
    /// retried, that the network is in the way: a connect failure or a
    /// timeout otherwise leaves the user staring at nothing for minutes.
    fn unreachable(&self, url: &str) -> Option<String> {
        let host = super::transport::host_of_url(url).unwrap_or_else(|| url.to_owned());
        let cause = match self {
            ApiError::Transport(_) | ApiError::AttemptTimeout(_) => self.to_string(),
            _ => return None,
        };
        let cause = cause.lines().next().unwrap_or_default();
        Some(format!("retrying: cannot reach {host}: {cause}"))
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Whether a call may be sent twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// Sending it again has no further effect (reads, deletes, and writes
    /// that carry a request id or a caller-chosen resource id).
    Idempotent,
    /// A second attempt could act twice: never retried.
    Once,
}

/// One API call, kept as data so every attempt can rebuild the request.
#[derive(Debug, Clone)]
pub struct Call {
    method: Method,
    url: String,
    query: Vec<(String, String)>,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<(bytes::Bytes, &'static str)>,
    idempotency: Idempotency,
    /// Overrides the policy's per-attempt limit.
    timeout: Option<Duration>,
}

impl Call {
    pub fn new(method: Method, url: impl Into<String>, idempotency: Idempotency) -> Call {
        Call {
            method,
            url: url.into(),
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            idempotency,
            timeout: None,
        }
    }

    pub fn get(url: impl Into<String>) -> Call {
        Call::new(Method::GET, url, Idempotency::Idempotent)
    }

    pub fn delete(url: impl Into<String>) -> Call {
        Call::new(Method::DELETE, url, Idempotency::Idempotent)
    }

    pub fn query(mut self, key: &str, value: impl ToString) -> Call {
        self.query.push((key.to_owned(), value.to_string()));
        self
    }

    pub fn header(mut self, name: HeaderName, value: &str) -> Call {
        let value = HeaderValue::from_str(value).expect("header values we build are ASCII");
        self.headers.push((name, value));
        self
    }

    pub fn json(mut self, body: &impl Serialize) -> Call {
        let bytes = serde_json::to_vec(body).expect("request types serialize");
        self.body = Some((bytes.into(), "application/json"));
        self
    }

    pub fn bytes(mut self, body: bytes::Bytes, content_type: &'static str) -> Call {
        self.body = Some((body, content_type));
        self
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Gives this attempt longer than the policy's per-attempt limit (a
    /// large upload, whose response comes only after the whole body).
    pub fn timeout(mut self, timeout: Duration) -> Call {
        self.timeout = Some(timeout);
        self
    }

    /// The call as `plan` shows it: method, full URL, JSON body.
    pub fn to_request(&self, note: &str) -> crate::backend::Request {
        // With no parameters, the URL as it is: no trailing `?`.
        let url = if self.query.is_empty() {
            self.url.clone()
        } else {
            reqwest::Url::parse_with_params(&self.url, &self.query)
                .map_or_else(|_| self.url.clone(), String::from)
        };
        // An offline plan's placeholders (`<…>`) stay readable: no bucket,
        // object, instance or project name Google accepts holds `<` or `>`.
        let url = url.replace("%3C", "<").replace("%3E", ">");
        let body = self.body.as_ref().map(|(bytes, content_type)| {
            if *content_type == "application/json" {
                serde_json::from_slice(bytes).unwrap_or(serde_json::Value::Null)
            } else {
                serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned())
            }
        });
        crate::backend::Request {
            method: self.method.to_string(),
            url,
            body,
            note: note.to_owned(),
        }
    }
}

/// A client for Google's JSON APIs: reqwest, a token source and a retry policy.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    tokens: Arc<dyn TokenSource>,
    policy: RetryPolicy,
    clock: Clock,
    /// `x-goog-user-project`, sent with a user's own credentials.
    quota_project: Option<String>,
}

impl Http {
    pub fn new(tokens: Arc<dyn TokenSource>, policy: RetryPolicy) -> anyhow::Result<Http> {
        let client = reqwest::Client::builder()
            // A resumable upload answers 308 to mean "incomplete", not "go elsewhere".
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("infra/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let identity = tokens.identity();
        Ok(Http {
            client,
            tokens,
            policy,
            clock: system_clock(),
            quota_project: identity.quota_project.filter(|_| identity.user),
        })
    }

    /// With a user's own credentials that name no quota project, bill
    /// `project` (https://cloud.google.com/docs/quotas/set-quota-project).
    pub fn with_quota_fallback(mut self, project: &str) -> Http {
        if self.tokens.identity().user && self.quota_project.is_none() {
            self.quota_project = Some(project.to_owned());
        }
        self
    }

    /// Gets a token, as every call would: for `doctor`.
    pub async fn token_check(&self) -> anyhow::Result<()> {
        self.tokens.token().await.map(|_| ())
    }

    /// Who the calls are made as, for messages.
    pub fn identity(&self) -> String {
        let identity = self.tokens.identity();
        match identity.member {
            Some(member) => member,
            None if identity.user => "your user credentials".to_owned(),
            None => "these credentials".to_owned(),
        }
    }

    /// Reads the time from `clock` (for `Retry-After` dates).
    pub fn with_clock(mut self, clock: Clock) -> Http {
        self.clock = clock;
        self
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Sends `call`, retrying as the policy allows. Any 2xx or 3xx response
    /// is returned; an error status becomes [`ApiError::Status`].
    pub async fn send(&self, call: &Call) -> Result<Response, ApiError> {
        let last = Mutex::new(None::<String>);
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.policy.min_backoff)
            .with_max_delay(self.policy.max_backoff)
            .with_max_times(self.policy.max_retries)
            .with_jitter();
        let retrying = (|| self.attempt(call))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(|e: &ApiError| call.idempotency == Idempotency::Idempotent && e.is_transient())
            .adjust(|e, delay| match (delay, e.retry_after()) {
                (Some(delay), Some(asked)) => Some(delay.max(asked)),
                (delay, _) => delay,
            })
            .notify(|e, delay| {
                tracing::debug!("{} {}: {e}; retrying in {delay:?}", call.method, call.url);
                let first = last.lock().expect("not poisoned").is_none();
                if first && let Some(line) = e.unreachable(&call.url) {
                    crate::ui::warn(line);
                }
                *last.lock().expect("not poisoned") = Some(e.to_string());
            });
        match tokio::time::timeout(self.policy.deadline, retrying).await {
            Ok(result) => result,
            Err(_) => Err(ApiError::Deadline {
                after: self.policy.deadline,
                last: last.lock().expect("not poisoned").take(),
            }),
        }
    }

    /// Sends `call` and decodes its JSON response.
    pub async fn json<T: DeserializeOwned>(&self, call: &Call) -> Result<T, ApiError> {
        let response = self.send(call).await?;
        // The attempt's limit covers the headers; a server stopped half-way
        // through the body is caught here.
        let limit = call.timeout.unwrap_or(self.policy.attempt_timeout);
        let body = tokio::time::timeout(limit, response.bytes())
            .await
            .map_err(|_| ApiError::AttemptTimeout(limit))?
            .map_err(ApiError::Transport)?;
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::Decode(format!(
                "{e} in {}",
                String::from_utf8_lossy(&body[..body.len().min(500)])
            ))
        })
    }

    async fn attempt(&self, call: &Call) -> Result<Response, ApiError> {
        let token = self.tokens.token().await.map_err(ApiError::Token)?;
        let mut request = self
            .client
            .request(call.method.clone(), &call.url)
            .query(&call.query);
        for (name, value) in &call.headers {
            request = request.header(name, value);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(project) = &self.quota_project {
            request = request.header("x-goog-user-project", project);
        }
        request = match &call.body {
            Some((body, content_type)) => request
                .header(CONTENT_TYPE, *content_type)
                .body(body.clone()),
            // Google's front ends want a length on every POST and PUT.
            None if call.method == Method::POST || call.method == Method::PUT => {
                request.body(Vec::new())
            }
            None => request,
        };
        let limit = call.timeout.unwrap_or(self.policy.attempt_timeout);
        let response = tokio::time::timeout(limit, request.send())
            .await
            .map_err(|_| ApiError::AttemptTimeout(limit))?
            .map_err(ApiError::Transport)?;
        let status = response.status();
        if status.is_success() || status.is_redirection() {
            return Ok(response);
        }
        let retry_after = retry_after(response.headers(), (self.clock)());
        let body = tokio::time::timeout(self.policy.attempt_timeout, response.text())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        if status == StatusCode::FORBIDDEN
            && let Some((permission, resource)) = permission_denied(&body)
        {
            return Err(ApiError::PermissionDenied {
                permission,
                resource,
                identity: self.identity(),
            });
        }
        Err(ApiError::Status {
            status,
            message: error_message(&body),
            retry_after,
        })
    }
}

/// `Retry-After` as seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((date - now).to_std().unwrap_or(Duration::ZERO))
}

/// Google's `{"error": {"message": …, "status": …, "errors": […]}}`, or the body's start.
/// The permission and resource of an IAM denial: from its `ErrorInfo`
/// (reason `IAM_PERMISSION_DENIED`), else from the message's "Permission
/// 'X' denied on resource 'R'" (https://cloud.google.com/iam/docs/troubleshooting-access#permission-denied).
fn permission_denied(body: &str) -> Option<(String, String)> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let error = &value["error"];
    let info = error["details"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["reason"] == "IAM_PERMISSION_DENIED");
    if let Some(info) = info
        && let Some(permission) = info["metadata"]["permission"].as_str()
    {
        let resource = info["metadata"]["resource"]
            .as_str()
            .unwrap_or("the resource");
        return Some((permission.to_owned(), resource.to_owned()));
    }
    let message = error["message"].as_str()?;
    let permission = message.split("Permission '").nth(1)?.split('\'').next()?;
    let resource = message
        .split("denied on resource '")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .unwrap_or("the resource");
    Some((permission.to_owned(), resource.to_owned()))
}

fn error_message(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: Detail,
    }
    #[derive(serde::Deserialize)]
    struct Detail {
        #[serde(default)]
        message: String,
        #[serde(default)]
        status: Option<String>,
    }
    match serde_json::from_str::<Envelope>(body) {
        Ok(Envelope { error }) => match error.status {
            Some(status) => format!("{} ({status})", error.message),
            None => error.message,
        },
        Err(_) => {
            let text: String = body.trim().chars().take(300).collect();
            if text.is_empty() {
                "(no body)".to_owned()
            } else {
                text
            }
        }
    }
}

/// Escapes one path segment (an object name, a table id) for a URL.
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 21): plans showed `…/clusters/c?`.
    #[test]
    fn a_url_without_parameters_has_no_question_mark() {
        let url = "https://dataproc.googleapis.com/v1/projects/p/regions/r/clusters/c";
        let call = Call::new(Method::GET, url, Idempotency::Idempotent);
        assert_eq!(call.to_request("").url, url);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2026-11-24T21:40:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Tue, 24 Nov 2026 21:40:30 GMT"),
        );
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(30)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers, now), None);
    }

    #[test]
    fn google_error_messages_are_extracted() {
        let body = r#"{"error":{"code":409,"message":"Already Exists: Job p/j","status":"ALREADY_EXISTS"}}"#;
        assert_eq!(
            error_message(body),
            "Already Exists: Job p/j (ALREADY_EXISTS)"
        );
        assert_eq!(
            error_message("<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
        assert_eq!(error_message(""), "(no body)");
    }

    #[test]
    fn segments_are_escaped() {
        assert_eq!(encode_segment("a/b c.parquet"), "a%2Fb%20c.parquet");
    }

    #[test]
    fn only_transient_errors_are_retried() {
        let status = |code: u16| ApiError::Status {
            status: StatusCode::from_u16(code).unwrap(),
            message: String::new(),
            retry_after: None,
        };
        for code in [429, 500, 502, 503, 504] {
            assert!(status(code).is_transient(), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 412] {
            assert!(!status(code).is_transient(), "{code}");
        }
        assert!(ApiError::AttemptTimeout(Duration::from_secs(1)).is_transient());
    }

    /// Counts the attempts of a call: each one asks for a token first.
    struct Counting(std::sync::atomic::AtomicUsize);

    #[async_trait::async_trait]
    impl TokenSource for Counting {
        async fn token(&self) -> anyhow::Result<Option<String>> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(None)
        }
    }

    /// Regression (issue 21): a DNS or connect failure was retried with
    /// the default policy, about 95 s of silence, before the network
    /// message. A name that does not resolve and a closed port now fail at
    /// the first attempt, with the message that names them.
    #[tokio::test]
    async fn a_name_that_does_not_resolve_or_a_closed_port_is_not_retried() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        for (url, says) in [
            (
                "http://storage.invalid/storage/v1/b".to_owned(),
                "cannot resolve storage.invalid (DNS)".to_owned(),
            ),
            (
                format!("http://127.0.0.1:{port}/storage/v1/b"),
                format!("cannot connect to 127.0.0.1:{port}: connection refused"),
            ),
        ] {
            let tokens = Arc::new(Counting(Default::default()));
            let http = Http::new(tokens.clone(), RetryPolicy::default()).unwrap();
            let err = http.send(&Call::get(&url)).await.unwrap_err();
            assert!(err.to_string().starts_with(&says), "{err}");
            assert_eq!(
                tokens.0.load(std::sync::atomic::Ordering::SeqCst),
                1,
                "{url} was tried more than once: {err}"
            );
        }
    }

    /// A failure that may mend is still retried: a server that accepts and
    /// never answers times the attempt out, and is tried again.
    #[tokio::test]
    async fn a_server_that_does_not_answer_is_retried() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/x", silent.local_addr().unwrap());
        let tokens = Arc::new(Counting(Default::default()));
        let policy = RetryPolicy {
            attempt_timeout: Duration::from_millis(200),
            deadline: Duration::from_secs(60),
            min_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
            max_retries: 2,
        };
        let http = Http::new(tokens.clone(), policy).unwrap();
        let err = http.send(&Call::get(&url)).await.unwrap_err();
        assert!(matches!(err, ApiError::AttemptTimeout(_)), "{err}");
        assert_eq!(tokens.0.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert_eq!(
            err.unreachable(&url).unwrap(),
            format!(
                "retrying: cannot reach {}: no response within 200ms",
                silent.local_addr().unwrap()
            )
        );
    }
}
