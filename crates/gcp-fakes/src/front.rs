//! What every stand-in does before and after it plays a method: check the
//! bearer token, match the request to a method of Google's discovery
//! document and check its parameters and body, log it, inject the faults a
//! test asked for, and check the stand-in's own answer against the
//! method's response schema. A contract violation answers 400 and is kept,
//! so a test (or the rehearsal) fails on it. When a set of stand-ins
//! enforces IAM (`Front::enforce`, the rehearsal's stack), each token
//! names a principal, and a call that principal may not make is denied as
//! Google denies it (`crate::iam`).

use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::contract::Discovery;
use crate::iam::Iam;
use crate::server::{self, Request, Response};

/// The one access token the stand-ins accept, and the token endpoint hands out.
pub const TOKEN: &str = "test-token-for-the-fake";

#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status (and `Retry-After` seconds) instead.
    Status { code: u16, retry_after: Option<u64> },
    /// Answer correctly, after this long.
    Slow(Duration),
    /// Do what was asked, then answer with this status: the answer is "lost".
    Lost(u16),
}

/// One call, as the request log keeps it.
#[derive(Debug, Clone)]
pub struct Logged {
    /// The discovery method id, e.g. `dataproc.projects.regions.jobs.submit`.
    pub id: String,
    pub at: Instant,
    pub time: DateTime<Utc>,
    /// The request path (resource names are in it).
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Value,
}

impl Logged {
    pub fn to_json(&self) -> Value {
        json!({
            "time": self.time.to_rfc3339_opts(SecondsFormat::Millis, true),
            "method": self.id,
            "path": self.path,
            "query": self.query.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "body": self.body,
        })
    }
}

#[derive(Default)]
struct FrontState {
    faults: Vec<(String, usize, Fault)>,
    log: Vec<Logged>,
    events: Vec<Value>,
    violations: Vec<String>,
    log_file: Option<File>,
    iam: Option<(Iam, String)>,
    /// Each Dataproc cluster's VM service account, from its create call.
    cluster_accounts: std::collections::BTreeMap<String, String>,
}

/// The request log, the violations and the faults to inject, shared by
/// every stand-in of one set.
#[derive(Clone, Default)]
pub struct Front(Arc<Mutex<FrontState>>);

impl Front {
    pub fn new() -> Front {
        Front::default()
    }

    /// Also appends each call (and each violation) as a JSON line to `path`.
    pub fn log_to(&self, path: &Path) -> Result<()> {
        let file = File::options()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open the request log {}", path.display()))?;
        self.0.lock().unwrap().log_file = Some(file);
        Ok(())
    }

    /// Enforce `iam` from now on: tokens name principals, and calls need
    /// their permissions. `cloudsql_account` is the Cloud SQL instance's
    /// own service account, which reads imports and writes exports.
    pub fn enforce(&self, iam: Iam, cloudsql_account: &str) {
        self.0.lock().unwrap().iam = Some((iam, cloudsql_account.to_owned()));
    }

    /// The IAM policy being enforced, if any.
    pub fn iam(&self) -> Option<Iam> {
        self.0
            .lock()
            .unwrap()
            .iam
            .as_ref()
            .map(|(iam, _)| iam.clone())
    }

    /// Who sent `req`, from its bearer token, or the answer that refuses it.
    /// Without IAM, only [`TOKEN`] is accepted.
    pub fn caller(&self, req: &Request) -> Result<String, Response> {
        let token = req
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "));
        let who = match (self.iam(), token) {
            (_, Some(token)) if crate::token::is_jwt(token) => {
                match crate::token::self_signed(
                    token,
                    crate::stack::TEST_PUBLIC_KEY,
                    Utc::now().timestamp(),
                ) {
                    Ok(member) => Some(member),
                    Err(why) => {
                        self.violation(format!("{} {}: {why}", req.method, req.path));
                        None
                    }
                }
            }
            (Some(iam), Some(token)) => iam.who(token),
            (None, Some(TOKEN)) => Some("serviceAccount:tests@fake".to_owned()),
            _ => None,
        };
        who.ok_or_else(|| {
            self.violation(format!("{} {}: no or wrong bearer token", req.method, req.path));
            let (code, body) = error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            );
            Response::json(code, &body)
        })
    }

    /// Google's refusal of `req` by `caller`, if it is refused: the quota
    /// project rule, then each permission `needs` names. A denial is an
    /// event in the log, not a violation: the test decides if it was meant.
    pub fn authorize(
        &self,
        req: &Request,
        caller: &str,
        api: &str,
        needs: &[crate::iam::Need],
    ) -> Option<(u16, Value)> {
        let iam = self.iam()?;
        if let Err(refusal) = quota_project(&iam, req, caller, api) {
            self.event(
                json!({"event": "denied", "path": req.path, "who": caller, "why": "quota project"}),
            );
            return Some(refusal);
        }
        for need in needs {
            if let Err(denial) = iam.check(caller, need, &format!("{api}.googleapis.com")) {
                self.event(json!({"event": "denied", "path": req.path, "who": caller, "permission": need.any_of[0]}));
                return Some(denial);
            }
        }
        None
    }

    /// The VM service account of the cluster a job submission names.
    fn cluster_account(&self, method: &str, body: &Value) -> Option<String> {
        if !method.ends_with("jobs.submit") {
            return None;
        }
        let cluster = body["job"]["placement"]["clusterName"].as_str()?;
        self.0
            .lock()
            .unwrap()
            .cluster_accounts
            .get(cluster)
            .cloned()
    }

    fn remember_cluster_account(&self, method: &str, body: &Value) {
        if !method.ends_with("clusters.create") {
            return;
        }
        if let (Some(name), Some(account)) = (
            body["clusterName"].as_str(),
            body["config"]["gceClusterConfig"]["serviceAccount"].as_str(),
        ) {
            self.0
                .lock()
                .unwrap()
                .cluster_accounts
                .insert(name.to_owned(), account.to_owned());
        }
    }

    fn cloudsql_account(&self) -> String {
        self.0
            .lock()
            .unwrap()
            .iam
            .as_ref()
            .map(|(_, a)| a.clone())
            .unwrap_or_default()
    }

    /// The next `times` calls of a method whose id ends with `method` get `fault`.
    pub fn inject(&self, method: &str, times: usize, fault: Fault) {
        self.0
            .lock()
            .unwrap()
            .faults
            .push((method.to_owned(), times, fault));
    }

    /// Every call, in order.
    pub fn log(&self) -> Vec<Logged> {
        self.0.lock().unwrap().log.clone()
    }

    /// The calls of methods whose id ends with `method`.
    pub fn calls(&self, method: &str) -> Vec<Logged> {
        self.log()
            .into_iter()
            .filter(|l| l.id.ends_with(method))
            .collect()
    }

    pub fn violation(&self, text: impl Into<String>) {
        let text = text.into();
        let mut s = self.0.lock().unwrap();
        if let Some(file) = &mut s.log_file {
            let _ = writeln!(file, "{}", json!({"violation": text}));
        }
        s.violations.push(text);
    }

    /// Records something a stand-in did on its own (a cluster became
    /// RUNNING, a job ended), with the time, in the log.
    pub fn event(&self, mut event: Value) {
        event["time"] = json!(Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true));
        let mut s = self.0.lock().unwrap();
        if let Some(file) = &mut s.log_file {
            let _ = writeln!(file, "{event}");
        }
        s.events.push(event);
    }

    pub fn events(&self) -> Vec<Value> {
        self.0.lock().unwrap().events.clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.0.lock().unwrap().violations.clone()
    }

    /// Fails the test if any request broke the contract.
    #[track_caller]
    pub fn assert_clean(&self) {
        let violations = self.violations();
        assert!(
            violations.is_empty(),
            "requests broke the discovery contract:\n{}",
            violations.join("\n")
        );
    }

    fn record(&self, logged: Logged) -> Option<Fault> {
        let mut s = self.0.lock().unwrap();
        if let Some(file) = &mut s.log_file {
            let _ = writeln!(file, "{}", logged.to_json());
        }
        let id = logged.id.clone();
        s.log.push(logged);
        let slot = s
            .faults
            .iter_mut()
            .find(|(m, times, _)| id.ends_with(m.as_str()) && *times > 0)?;
        slot.1 -= 1;
        Some(slot.2.clone())
    }
}

/// A request that passed the contract, handed to a stand-in.
pub struct Call {
    /// The discovery method id.
    pub id: String,
    /// The path split on `/`, without the leading one.
    pub seg: Vec<String>,
    pub req: Request,
    /// The JSON body, or null.
    pub body: Value,
}

impl Call {
    /// The method id without the API name: `projects.regions.jobs.submit`.
    pub fn short(&self) -> String {
        self.id.split('.').skip(1).collect::<Vec<_>>().join(".")
    }

    pub fn last(&self) -> &str {
        self.seg.last().map_or("", String::as_str)
    }
}

pub type Answer = Pin<Box<dyn Future<Output = (u16, Value)> + Send>>;
pub type Dispatch = Arc<dyn Fn(Call) -> Answer + Send + Sync>;

/// Google's error body.
pub fn error(code: u16, status: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"error": {"code": code, "message": message, "status": status}}),
    )
}

/// User credentials must name a quota project for the APIs that bill the
/// caller's project: Google's libraries send `x-goog-user-project`, and
/// without it the call is billed to the OAuth client's own project, where
/// the API is off. The message is the one Google returns then
/// (https://cloud.google.com/docs/authentication/troubleshoot-adc#user-creds-client-based,
/// https://cloud.google.com/docs/quotas/set-quota-project). With the header,
/// the caller needs `serviceusage.services.use` on that project.
fn quota_project(iam: &Iam, req: &Request, caller: &str, api: &str) -> Result<(), (u16, Value)> {
    const NEED_QUOTA: [&str; 3] = ["serviceusage", "cloudresourcemanager", "iamcredentials"];
    if !caller.starts_with("user:") || !NEED_QUOTA.contains(&api) {
        return Ok(());
    }
    let Some(project) = req.header("x-goog-user-project") else {
        return Err((
            403,
            json!({"error": {
                "code": 403,
                "message": format!("Your application is authenticating by using local Application Default Credentials. The {api}.googleapis.com API requires a quota project, which is not set by default. To learn how to set your quota project, see https://cloud.google.com/docs/authentication/adc-troubleshooting/user-creds ."),
                "status": "PERMISSION_DENIED",
                "details": [{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "SERVICE_DISABLED",
                    "domain": "googleapis.com",
                    "metadata": {"consumer": "projects/764086051850", "service": format!("{api}.googleapis.com")},
                }],
            }}),
        ));
    };
    let need = crate::iam::Need {
        any_of: vec!["serviceusage.services.use"],
        on: crate::iam::Resource::Project,
        who: None,
    };
    if project != iam.project()
        || iam
            .check(caller, &need, "serviceusage.googleapis.com")
            .is_err()
    {
        return Err(error(
            403,
            "PERMISSION_DENIED",
            &format!(
                "Caller does not have required permission to use project {project}. Grant the caller the roles/serviceusage.serviceUsageConsumer role, or a custom role with the serviceusage.services.use permission."
            ),
        ));
    }
    Ok(())
}

/// Sixteen hex digits that differ between calls and between processes.
pub fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    format!("{:016x}", h.finish())
}

pub fn not_found(what: &str) -> (u16, Value) {
    error(404, "NOT_FOUND", &format!("Not found: {what}"))
}

/// Serves one stand-in on `127.0.0.1:port` (0: any free port). A request
/// is matched against each of `docs` in turn.
pub async fn serve(
    docs: Vec<Arc<Discovery>>,
    front: Front,
    port: u16,
    dispatch: Dispatch,
) -> Result<SocketAddr> {
    server::serve_on(
        port,
        Arc::new(move |req: Request| {
            let docs = docs.clone();
            let front = front.clone();
            let dispatch = dispatch.clone();
            Box::pin(async move { handle(&docs, &front, &dispatch, req).await })
        }),
    )
    .await
}

async fn handle(
    docs: &[Arc<Discovery>],
    front: &Front,
    dispatch: &Dispatch,
    req: Request,
) -> Response {
    let reply = |(code, value): (u16, Value)| {
        if value.is_null() {
            Response::empty(code)
        } else {
            Response::json(code, &value)
        }
    };
    let caller = match front.caller(&req) {
        Ok(caller) => caller,
        Err(refusal) => return refusal,
    };
    let doc = docs
        .iter()
        .find(|d| d.find(&req).is_ok())
        .unwrap_or(&docs[0])
        .clone();
    let method = match doc.check_request(&req) {
        Ok(method) => method,
        Err(violation) => {
            front.violation(violation.clone());
            return reply(error(
                400,
                "INVALID_ARGUMENT",
                &format!("contract violation: {violation}"),
            ));
        }
    };
    let body: Value = if req.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&req.body).unwrap_or(Value::Null)
    };
    if front.iam().is_some() {
        let seg: Vec<String> = req
            .path
            .trim_start_matches('/')
            .split('/')
            .map(str::to_owned)
            .collect();
        let api = match method.id.split('.').next().unwrap_or_default() {
            "sql" => "sqladmin".to_owned(),
            api => api.to_owned(),
        };
        let cluster_account = front.cluster_account(&method.id, &body);
        let Some(needs) = crate::iam::required(
            &method.id,
            &seg,
            &body,
            &front.cloudsql_account(),
            cluster_account.as_deref(),
        ) else {
            front.violation(format!(
                "{}: no IAM rule for this method (add it to gcp_fakes::iam::required)",
                method.id
            ));
            return reply(error(403, "PERMISSION_DENIED", "no IAM rule"));
        };
        if let Some(refusal) = front.authorize(&req, &caller, &api, &needs) {
            return reply(refusal);
        }
        front.remember_cluster_account(&method.id, &body);
    }
    let fault = front.record(Logged {
        id: method.id.clone(),
        at: Instant::now(),
        time: Utc::now(),
        path: req.path.clone(),
        query: req.query.clone(),
        body: body.clone(),
    });
    if let Some(Fault::Status { code, retry_after }) = &fault {
        let mut response = reply(error(*code, "UNAVAILABLE", "injected fault"));
        if let Some(seconds) = retry_after {
            response = response.header("retry-after", &seconds.to_string());
        }
        return response;
    }
    let seg = req
        .path
        .trim_start_matches('/')
        .split('/')
        .map(str::to_owned)
        .collect();
    let call = Call {
        id: method.id.clone(),
        seg,
        req,
        body,
    };
    let (code, answer) = dispatch(call).await;
    if (200..300).contains(&code)
        && !answer.is_null()
        && let Err(violation) = doc.check_response(method, &answer)
    {
        front.violation(format!("the fake's own answer: {violation}"));
    }
    let mut response = reply((code, answer));
    match fault {
        Some(Fault::Slow(delay)) => response.delay = delay,
        Some(Fault::Lost(code)) => {
            response = reply(error(code, "UNAVAILABLE", "the answer was lost"))
        }
        _ => {}
    }
    response
}
