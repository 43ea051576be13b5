//! Dataproc v1 over REST: the client core (operations, links), with one
//! module per resource and the [`Spark`](crate::backend::Spark) runners.
//!
//! ```text
//! clusters   create (requestId), get, delete (requestId + clusterUuid), list
//! jobs       submit (reference.jobId + requestId), get, cancel, wait
//! batches    create (batchId + requestId), get, delete, list (Serverless)
//! driver     follows a job's driver output in Cloud Storage
//! limits     Dataproc's documented limits, checked before plan, up and run
//! spark      ClusterSpark (one ephemeral cluster per run), ServerlessSpark
//! ```
//!
//! Every write carries a caller-chosen id, so the HTTP layer may retry it:
//! a job submitted twice meets a 409, and the client re-attaches to the job
//! that already exists. Long-running calls return operations, polled until
//! done; their errors name the operation.

pub mod batches;
pub mod clusters;
mod driver;
pub mod jobs;
pub mod limits;
pub mod spark;

pub use batches::{Batch, EnvironmentConfig, ExecutionConfig, PySparkBatch, RuntimeConfig};
pub use clusters::{
    Cluster, ClusterConfig, ClusterStatus, DiskConfig, GceClusterConfig, InstanceGroupConfig,
    LifecycleConfig, SoftwareConfig,
};
pub use jobs::{Job, JobPlacement, JobReference, JobStatus, PySparkJob};
pub use spark::{ClusterSpark, ClusterSpec, ServerlessSpark, ServerlessSpec};

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::deadline::{self, DeadlinePassed, Deadlines};
use super::http::{Call, Http};

/// The real service.
pub const DATAPROC_URL: &str = "https://dataproc.googleapis.com";

/// A long-running operation.
#[derive(Debug, Clone, Deserialize)]
pub struct Operation {
    pub name: String,
    #[serde(default)]
    pub done: bool,
    pub error: Option<OperationError>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OperationError {
    #[serde(default)]
    pub code: i32,
    #[serde(default)]
    pub message: String,
}

/// A job or batch that ended badly. Callers match on it to tell a failed
/// Spark program from a failed API call.
#[derive(Debug, thiserror::Error)]
#[error("Dataproc {kind} {id} ended in state {state}: {details}\n{tail}")]
pub struct JobFailed {
    pub kind: &'static str,
    pub id: String,
    pub state: String,
    pub details: String,
    /// The end of the driver output, or where to find the logs.
    pub tail: String,
}

/// Lets callers tell a failed API call from a failed job.
pub fn is_job_failure(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.is::<JobFailed>())
}

/// A Dataproc client for one project and region.
#[derive(Clone)]
pub struct Dataproc {
    pub(crate) http: Http,
    base: String,
    pub(crate) project: String,
    pub(crate) region: String,
    pub(crate) poll: Duration,
    /// How long clusters, jobs and batches may take (`deadlines.*`).
    pub(crate) deadlines: Deadlines,
}

impl Dataproc {
    pub fn new(
        http: Http,
        base_url: &str,
        project: &str,
        region: &str,
        poll: Duration,
    ) -> Dataproc {
        Dataproc {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            project: project.to_owned(),
            region: region.to_owned(),
            poll,
            deadlines: Deadlines::default(),
        }
    }

    /// Gives clusters, jobs and batches the limits in `deadlines`.
    pub fn with_deadlines(mut self, deadlines: Deadlines) -> Dataproc {
        self.deadlines = deadlines;
        self
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// `…/v1/projects/P/regions/R`: clusters and jobs.
    pub(crate) fn regional(&self) -> String {
        format!(
            "{}/v1/projects/{}/regions/{}",
            self.base, self.project, self.region
        )
    }

    /// `…/v1/projects/P/locations/R`: batches.
    pub(crate) fn location(&self) -> String {
        format!(
            "{}/v1/projects/{}/locations/{}",
            self.base, self.project, self.region
        )
    }

    /// The Cloud Console page of a cluster.
    pub fn cluster_link(&self, name: &str) -> String {
        format!(
            "https://console.cloud.google.com/dataproc/clusters/{name}/monitoring?region={}&project={}",
            self.region, self.project
        )
    }

    /// The Cloud Console page of a job.
    pub fn job_link(&self, id: &str) -> String {
        format!(
            "https://console.cloud.google.com/dataproc/jobs/{id}?region={}&project={}",
            self.region, self.project
        )
    }

    /// The Cloud Console page of a Serverless batch.
    pub fn batch_link(&self, id: &str) -> String {
        format!(
            "https://console.cloud.google.com/dataproc/batches/{}/{id}/monitoring?project={}",
            self.region, self.project
        )
    }

    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        call: Call,
        what: impl FnOnce() -> String,
    ) -> Result<T> {
        self.http.json(&call).await.with_context(what)
    }

    /// Polls `operation` until it is done; an operation error is an error
    /// that names the operation.
    /// Bounded by the cluster deadline: the operations waited on are a
    /// cluster's delete.
    pub async fn wait_operation(&self, operation: Operation, what: &str) -> Result<()> {
        let limit = self.deadlines.dataproc_cluster;
        let passed = || DeadlinePassed {
            what: format!("Dataproc operation ({what})"),
            id: operation.name.clone(),
            limit,
            setting: "deadlines.dataproc_cluster_secs",
            link: format!(
                "https://console.cloud.google.com/dataproc/clusters?project={}",
                self.project
            ),
        };
        deadline::within(limit, passed, self.poll_operation(operation.clone(), what)).await
    }

    async fn poll_operation(&self, mut operation: Operation, what: &str) -> Result<()> {
        while !operation.done {
            tokio::time::sleep(self.poll).await;
            operation = self
                .json(
                    Call::get(format!("{}/v1/{}", self.base, operation.name)),
                    || format!("cannot poll operation {} ({what})", operation.name),
                )
                .await?;
        }
        match operation.error {
            Some(e) => bail!(
                "{what} failed: {} (code {}, operation {})",
                e.message,
                e.code,
                operation.name
            ),
            None => Ok(()),
        }
    }

    /// Asks Dataproc to cancel a long-running operation (a running batch).
    pub async fn cancel_operation(&self, name: &str) -> Result<()> {
        let call = Call::new(
            reqwest::Method::POST,
            format!("{}/v1/{name}:cancel", self.base),
            super::http::Idempotency::Idempotent,
        );
        self.http
            .send(&call)
            .await
            .with_context(|| format!("cannot cancel operation {name}"))?;
        Ok(())
    }
}

/// A `clusters.list` / `batches.list` filter matching every label.
pub fn label_filter(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("labels.{k} = {v}"))
        .collect::<Vec<_>>()
        .join(" AND ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_require_every_label() {
        let labels = BTreeMap::from([
            ("deployment".to_owned(), "prod".to_owned()),
            ("managed-by".to_owned(), "infra".to_owned()),
        ]);
        assert_eq!(
            label_filter(&labels),
            "labels.deployment = prod AND labels.managed-by = infra"
        );
    }
}
