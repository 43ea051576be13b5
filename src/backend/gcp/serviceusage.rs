//! Service Usage v1 over REST: enabling APIs before Terraform runs.
//!
//! On a brand-new project Terraform can't enable APIs without
//! `serviceusage.googleapis.com`, can't grant project roles without
//! `cloudresourcemanager.googleapis.com`, and impersonation needs
//! `iamcredentials.googleapis.com` before the provider even starts. `up`
//! enables them here with `services:batchEnable` and waits for the
//! long-running operation. Field names follow `serviceusage.v1.json`.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{Call, Http, Idempotency, encode_segment};

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
        let mut operation: Operation = self.http.json(&call).await.with_context(what)?;
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
