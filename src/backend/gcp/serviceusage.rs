//! Service Usage v1 over REST: enabling APIs before Terraform runs.
//!
//! On a brand-new project Terraform can't enable APIs without
//! `serviceusage.googleapis.com`, can't grant project roles without
//! `cloudresourcemanager.googleapis.com`, and impersonation needs
//! `iamcredentials.googleapis.com` before the provider even starts. `up`
//! enables them here with `services:batchEnable` and waits for the
//! long-running operation. `doctor` asks which of the APIs the deployment
//! needs are still off, with `services:batchGet`. Field names follow
//! `serviceusage.v1.json`.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{ApiError, Call, Http, Idempotency, encode_segment};

/// A long-running `Operation`.
#[derive(Debug, Clone, Default, Deserialize)]
struct Operation {
    #[serde(default)]
    name: String,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    error: Option<Status>,
}

/// `Status`: why an operation failed.
#[derive(Debug, Clone, Default, Deserialize)]
struct Status {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: Vec<Value>,
}

/// `Service`, as `services:batchGet` lists them.
#[derive(Debug, Clone, Default, Deserialize)]
struct Service {
    #[serde(default)]
    name: String,
    /// `ENABLED`, `DISABLED` or `STATE_UNSPECIFIED`.
    #[serde(default)]
    state: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct BatchGetServicesResponse {
    #[serde(default)]
    services: Vec<Service>,
}

/// Service Usage, bound to one project.
pub struct ServiceUsage {
    http: Http,
    base: String,
    project: String,
    poll: Duration,
}

impl ServiceUsage {
    /// `root` is the service's root URL, as the `endpoints.serviceusage`
    /// setting gives it; the `v1` path is added here, as the other clients do.
    pub fn new(http: Http, root: &str, project: &str, poll: Duration) -> ServiceUsage {
        ServiceUsage {
            http,
            base: format!("{}/v1", root.trim_end_matches('/')),
            project: project.to_owned(),
            poll,
        }
    }

    /// Which of `services` (at most 30, Google's limit per call) are not
    /// enabled in the project, in the order given.
    pub async fn not_enabled(&self, services: &[&str]) -> Result<Vec<String>> {
        if services.is_empty() {
            return Ok(Vec::new());
        }
        if services.len() > 30 {
            bail!(
                "services:batchGet takes at most 30 services, not {}",
                services.len()
            );
        }
        let parent = format!("projects/{}", self.project);
        let mut call = Call::get(format!(
            "{}/projects/{}/services:batchGet",
            self.base,
            encode_segment(&self.project)
        ));
        for service in services {
            call = call.query("names", format!("{parent}/services/{service}"));
        }
        let answer: BatchGetServicesResponse = self.http.json(&call).await.with_context(|| {
            format!(
                "cannot read which APIs are enabled in project {}",
                self.project
            )
        })?;
        // The answer names services `projects/<number>/services/<id>`.
        let enabled: Vec<&str> = answer
            .services
            .iter()
            .filter(|s| s.state == "ENABLED")
            .filter_map(|s| s.name.rsplit('/').next())
            .collect();
        Ok(services
            .iter()
            .filter(|s| !enabled.contains(s))
            .map(|s| (*s).to_owned())
            .collect())
    }

    /// Enables `services` (at most 20, Google's limit per call) and waits
    /// until the operation is done. Enabling an enabled service is a no-op,
    /// so the call may be retried.
    pub async fn batch_enable(&self, services: &[&str]) -> Result<()> {
        if services.is_empty() {
            return Ok(());
        }
        if services.len() > 20 {
            bail!(
                "services:batchEnable takes at most 20 services, not {}",
                services.len()
            );
        }
        let call = Call::new(
            Method::POST,
            format!(
                "{}/projects/{}/services:batchEnable",
                self.base,
                encode_segment(&self.project)
            ),
            Idempotency::Idempotent,
        )
        .json(&json!({ "serviceIds": services }));
        let what = || {
            format!(
                "cannot enable {} in project {}",
                services.join(", "),
                self.project
            )
        };
        let mut operation: Operation = self
            .http
            .json(&call)
            .await
            .map_err(refused_hint)
            .with_context(what)?;
        while !operation.done {
            tokio::time::sleep(self.poll).await;
            // The name is `operations/…`, a path relative to the version.
            let url = format!("{}/{}", self.base, operation.name);
            operation = self.http.json(&Call::get(url)).await.with_context(what)?;
        }
        if let Some(status) = operation.error {
            let details = status
                .details
                .iter()
                .map(|d| format!("\n  - {d}"))
                .collect::<String>();
            return Err(anyhow::anyhow!(
                "operation {} failed with code {}: {}{details}",
                operation.name,
                status.code,
                status.message
            ))
            .with_context(what);
        }
        Ok(())
    }
}

/// A refusal (HTTP 403) gets the role that cures it; a network failure
/// keeps its own hint, and a missing permission names itself.
fn refused_hint(err: ApiError) -> anyhow::Error {
    if matches!(&err, ApiError::Status { status, .. } if *status == reqwest::StatusCode::FORBIDDEN)
    {
        anyhow::anyhow!(
            "{err}\nhint: the caller needs roles/serviceusage.serviceUsageAdmin on the project"
        )
    } else {
        anyhow::Error::new(err)
    }
}
