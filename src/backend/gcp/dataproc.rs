//! Dataproc v1 over REST: clusters, jobs and Serverless batches, and the
//! [`Spark`] runner that submits PySpark jobs to a cluster.
//!
//! Every write carries a caller-chosen id (`requestId`, `reference.jobId`,
//! `batchId`), so the HTTP layer may retry it: a job submitted twice meets
//! a 409, and the client re-attaches to the job that already exists.
//! Long-running calls return operations, polled until done. While a job
//! runs, its driver output is streamed from `driverOutputResourceUri` in
//! Cloud Storage. Every cluster, job and batch is logged with its console link.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt as _;

use super::MANAGED_BY;
use super::http::{ApiError, Call, Http, Idempotency};
use super::storage::GcsClient;
use crate::backend::{Spark, SparkJob};

/// The real service.
pub const DATAPROC_URL: &str = "https://dataproc.googleapis.com";

/// How many driver-output lines a failure quotes.
const TAIL_LINES: usize = 40;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    pub project_id: String,
    pub cluster_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<ClusterConfig>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Output only.
    #[serde(default, skip_serializing)]
    pub status: Option<ClusterStatus>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_bucket: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gce_cluster_config: Option<GceClusterConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_config: Option<InstanceGroupConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_config: Option<InstanceGroupConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub software_config: Option<SoftwareConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle_config: Option<LifecycleConfig>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GceClusterConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnetwork_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internal_ip_only: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceGroupConfig {
    pub num_instances: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine_type_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_config: Option<DiskConfig>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiskConfig {
    pub boot_disk_size_gb: i32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SoftwareConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_version: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

/// Deletes the cluster on its own: `idleDeleteTtl` after the last job,
/// `autoDeleteTtl` after creation, whatever happens to `infra`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleConfig {
    /// A duration such as `"1800s"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_delete_ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_delete_ttl: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListClustersResponse {
    #[serde(default)]
    clusters: Vec<Cluster>,
    next_page_token: Option<String>,
}

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

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub reference: JobReference,
    pub placement: JobPlacement,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pyspark_job: Option<PySparkJob>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Output only.
    #[serde(default, skip_serializing)]
    pub status: Option<JobStatus>,
    /// Output only: `gs://…/driveroutput`, the prefix of the driver's log files.
    #[serde(default, skip_serializing)]
    pub driver_output_resource_uri: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobReference {
    pub project_id: String,
    pub job_id: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobPlacement {
    pub cluster_name: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PySparkJob {
    pub main_python_file_uri: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub python_file_uris: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub details: Option<String>,
}

impl Job {
    pub fn state(&self) -> &str {
        self.status
            .as_ref()
            .map_or("STATE_UNSPECIFIED", |s| s.state.as_str())
    }

    fn is_finished(&self) -> bool {
        matches!(self.state(), "DONE" | "ERROR" | "CANCELLED")
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SubmitJobRequest<'a> {
    job: &'a Job,
    request_id: &'a str,
}

/// A Serverless for Spark batch.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Batch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pyspark_batch: Option<PySparkBatch>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_config: Option<RuntimeConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment_config: Option<EnvironmentConfig>,
    /// Output only.
    #[serde(default, skip_serializing)]
    pub state: Option<String>,
    /// Output only.
    #[serde(default, skip_serializing)]
    pub state_message: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PySparkBatch {
    pub main_python_file_uri: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_config: Option<ExecutionConfig>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnetwork_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

impl Batch {
    pub fn state(&self) -> &str {
        self.state.as_deref().unwrap_or("STATE_UNSPECIFIED")
    }
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
    /// The end of the driver output, or a note that there was none.
    pub tail: String,
}

/// A Dataproc client for one project and region.
#[derive(Clone)]
pub struct Dataproc {
    http: Http,
    base: String,
    project: String,
    region: String,
    poll: Duration,
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
        }
    }

    fn regional(&self) -> String {
        format!(
            "{}/v1/projects/{}/regions/{}",
            self.base, self.project, self.region
        )
    }

    fn console(&self, kind: &str, id: &str) -> String {
        match kind {
            "batch" => format!(
                "https://console.cloud.google.com/dataproc/batches/{}/{id}/monitoring?project={}",
                self.region, self.project
            ),
            "cluster" => format!(
                "https://console.cloud.google.com/dataproc/clusters/{id}/monitoring?region={}&project={}",
                self.region, self.project
            ),
            _ => format!(
                "https://console.cloud.google.com/dataproc/jobs/{id}?region={}&project={}",
                self.region, self.project
            ),
        }
    }

    async fn json<T: DeserializeOwned>(
        &self,
        call: Call,
        what: impl FnOnce() -> String,
    ) -> Result<T> {
        self.http.json(&call).await.with_context(what)
    }

    /// Polls `operation` until it is done; an operation error is an error.
    pub async fn wait_operation(&self, mut operation: Operation, what: &str) -> Result<()> {
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
            Some(e) => bail!("{what} failed: {} (code {})", e.message, e.code),
            None => Ok(()),
        }
    }

    /// Creates `cluster` and waits until it is running. `request_id` makes
    /// a repeated request a no-op.
    pub async fn create_cluster(&self, cluster: &Cluster, request_id: &str) -> Result<Cluster> {
        let name = &cluster.cluster_name;
        let call = Call::new(
            Method::POST,
            format!("{}/clusters", self.regional()),
            Idempotency::Idempotent,
        )
        .query("requestId", request_id)
        .json(cluster);
        tracing::info!(
            "creating Dataproc cluster {name}: {}",
            self.console("cluster", name)
        );
        let operation: Operation = match self.http.json(&call).await {
            Ok(op) => op,
            Err(e) if e.is_conflict() => {
                tracing::info!("Dataproc cluster {name} already exists");
                return self.wait_cluster_running(name).await;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot create Dataproc cluster {name}"));
            }
        };
        self.wait_operation(operation, &format!("creating Dataproc cluster {name}"))
            .await?;
        self.wait_cluster_running(name).await
    }

    async fn wait_cluster_running(&self, name: &str) -> Result<Cluster> {
        loop {
            let cluster = self
                .get_cluster(name)
                .await?
                .with_context(|| format!("Dataproc cluster {name} disappeared while starting"))?;
            let state = cluster
                .status
                .as_ref()
                .map(|s| s.state.clone())
                .unwrap_or_default();
            match state.as_str() {
                "RUNNING" => return Ok(cluster),
                "ERROR" | "ERROR_DUE_TO_UPDATE" | "DELETING" | "STOPPED" | "STOPPING" => bail!(
                    "Dataproc cluster {name} is {state}: {}",
                    cluster.status.and_then(|s| s.detail).unwrap_or_default()
                ),
                _ => tokio::time::sleep(self.poll).await,
            }
        }
    }

    /// The cluster, or `None` when there is none of that name.
    pub async fn get_cluster(&self, name: &str) -> Result<Option<Cluster>> {
        match self
            .http
            .json(&Call::get(format!("{}/clusters/{name}", self.regional())))
            .await
        {
            Ok(cluster) => Ok(Some(cluster)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot get Dataproc cluster {name}")),
        }
    }

    /// Deletes the cluster and waits; a cluster already gone is fine.
    pub async fn delete_cluster(&self, name: &str, request_id: &str) -> Result<()> {
        let call = Call::delete(format!("{}/clusters/{name}", self.regional()))
            .query("requestId", request_id);
        match self.http.json::<Operation>(&call).await {
            Ok(operation) => {
                tracing::info!(
                    "deleting Dataproc cluster {name}: {}",
                    self.console("cluster", name)
                );
                self.wait_operation(operation, &format!("deleting Dataproc cluster {name}"))
                    .await
            }
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot delete Dataproc cluster {name}")),
        }
    }

    /// Clusters matching `filter` (`labels.managed-by = infra`), every page.
    pub async fn list_clusters(&self, filter: &str) -> Result<Vec<Cluster>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut call =
                Call::get(format!("{}/clusters", self.regional())).query("filter", filter);
            if let Some(token) = &token {
                call = call.query("pageToken", token);
            }
            let page: ListClustersResponse = self
                .json(call, || {
                    format!("cannot list Dataproc clusters in {}", self.region)
                })
                .await?;
            out.extend(page.clusters);
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) => token = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// Deletes every cluster that carries all of `labels`, waiting for
    /// each; returns their names. The same `request_prefix` on a retry
    /// makes Dataproc run each delete once.
    pub async fn delete_labelled_clusters(
        &self,
        labels: &BTreeMap<String, String>,
        request_prefix: &str,
    ) -> Result<Vec<String>> {
        let mut deleted = Vec::new();
        for cluster in self.list_clusters(&label_filter(labels)).await? {
            let name = cluster.cluster_name;
            self.delete_cluster(&name, &format!("{request_prefix}-delete-{name}"))
                .await?;
            deleted.push(name);
        }
        Ok(deleted)
    }

    /// Submits `job`. Its `reference.jobId` is the caller's; a job of that
    /// id that already exists (our own earlier attempt) is re-attached to.
    pub async fn submit_job(&self, job: &Job) -> Result<Job> {
        let id = &job.reference.job_id;
        let request = SubmitJobRequest {
            job,
            request_id: id,
        };
        let call = Call::new(
            Method::POST,
            format!("{}/jobs:submit", self.regional()),
            Idempotency::Idempotent,
        )
        .json(&request);
        tracing::info!("submitting Dataproc job {id}: {}", self.console("job", id));
        match self.http.json(&call).await {
            Ok(job) => Ok(job),
            Err(e) if e.is_conflict() => {
                tracing::info!("Dataproc job {id} exists already; re-attaching to it");
                self.get_job(id).await
            }
            Err(e) => Err(e).with_context(|| format!("cannot submit Dataproc job {id}")),
        }
    }

    pub async fn get_job(&self, id: &str) -> Result<Job> {
        self.json(Call::get(format!("{}/jobs/{id}", self.regional())), || {
            format!("cannot get Dataproc job {id}")
        })
        .await
    }

    /// Asks Dataproc to cancel the job. Not retried: cancelling a job that
    /// has just finished is an error worth seeing, not repeating.
    pub async fn cancel_job(&self, id: &str) -> Result<Job> {
        let call = Call::new(
            Method::POST,
            format!("{}/jobs/{id}:cancel", self.regional()),
            Idempotency::Once,
        )
        .json(&serde_json::json!({}));
        self.json(call, || format!("cannot cancel Dataproc job {id}"))
            .await
    }

    /// Polls the job through every state until it ends, streaming its
    /// driver output to `sink` when `storage` is given.
    pub async fn wait_job(
        &self,
        id: &str,
        storage: Option<&GcsClient>,
        sink: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Job> {
        let mut output: Option<DriverOutput> = None;
        let mut last_state = String::new();
        loop {
            let job = self.get_job(id).await?;
            if job.state() != last_state {
                last_state = job.state().to_owned();
                tracing::info!("Dataproc job {id} is {last_state}");
            }
            if output.is_none()
                && let (Some(storage), Some(uri)) = (storage, &job.driver_output_resource_uri)
            {
                output = Some(DriverOutput::new(storage.clone(), uri)?);
            }
            if let Some(out) = output.as_mut()
                && let Err(e) = out.poll(sink).await
            {
                tracing::debug!("cannot read the driver output of {id} yet: {e:#}");
            }
            if job.is_finished() {
                let tail = match output.as_mut() {
                    Some(out) => {
                        out.finish(sink);
                        out.tail()
                    }
                    None => "(no driver output)".to_owned(),
                };
                if job.state() != "DONE" {
                    return Err(JobFailed {
                        kind: "job",
                        id: id.to_owned(),
                        state: job.state().to_owned(),
                        details: job
                            .status
                            .as_ref()
                            .and_then(|s| s.details.clone())
                            .unwrap_or_default(),
                        tail,
                    }
                    .into());
                }
                return Ok(job);
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    fn location(&self) -> String {
        format!(
            "{}/v1/projects/{}/locations/{}",
            self.base, self.project, self.region
        )
    }

    /// Creates a Serverless batch `id` and waits for it to end.
    pub async fn run_batch(&self, id: &str, batch: &Batch) -> Result<Batch> {
        let call = Call::new(
            Method::POST,
            format!("{}/batches", self.location()),
            Idempotency::Idempotent,
        )
        .query("batchId", id)
        .query("requestId", id)
        .json(batch);
        tracing::info!(
            "creating Dataproc batch {id}: {}",
            self.console("batch", id)
        );
        match self.http.json::<Operation>(&call).await {
            Ok(_) => {}
            Err(e) if e.is_conflict() => {
                tracing::info!("Dataproc batch {id} exists already; re-attaching to it")
            }
            Err(e) => return Err(e).with_context(|| format!("cannot create Dataproc batch {id}")),
        }
        loop {
            let batch = self.get_batch(id).await?;
            match batch.state() {
                "SUCCEEDED" => return Ok(batch),
                "FAILED" | "CANCELLED" => {
                    return Err(JobFailed {
                        kind: "batch",
                        id: id.to_owned(),
                        state: batch.state().to_owned(),
                        details: batch.state_message.clone().unwrap_or_default(),
                        tail: format!("its logs: {}", self.console("batch", id)),
                    }
                    .into());
                }
                _ => tokio::time::sleep(self.poll).await,
            }
        }
    }

    pub async fn get_batch(&self, id: &str) -> Result<Batch> {
        self.json(
            Call::get(format!("{}/batches/{id}", self.location())),
            || format!("cannot get Dataproc batch {id}"),
        )
        .await
    }

    /// Deletes a finished batch's record; one already gone is fine.
    pub async fn delete_batch(&self, id: &str) -> Result<()> {
        match self
            .http
            .send(&Call::delete(format!("{}/batches/{id}", self.location())))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot delete Dataproc batch {id}")),
        }
    }
}

/// Follows a job's driver output files (`driveroutput.000000000`, …) in
/// Cloud Storage, handing each complete line to a sink as it appears.
struct DriverOutput {
    storage: GcsClient,
    bucket: String,
    prefix: String,
    read: BTreeMap<String, u64>,
    partial: Vec<u8>,
    tail: VecDeque<String>,
}

impl DriverOutput {
    fn new(storage: GcsClient, uri: &str) -> Result<DriverOutput> {
        let rest = uri
            .strip_prefix("gs://")
            .with_context(|| format!("driver output at {uri} is not in Cloud Storage"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        Ok(DriverOutput {
            storage,
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            read: BTreeMap::new(),
            partial: Vec::new(),
            tail: VecDeque::new(),
        })
    }

    async fn poll(&mut self, sink: &(dyn Fn(&str) + Send + Sync)) -> Result<()> {
        for object in self.storage.list(&self.bucket, &self.prefix).await? {
            let done = self.read.get(&object.key).copied().unwrap_or(0);
            if object.size <= done {
                continue;
            }
            let mut body = self
                .storage
                .get(&self.bucket, &object.key, Some(done..object.size))
                .await?;
            let mut bytes = Vec::new();
            body.read_to_end(&mut bytes).await?;
            self.read.insert(object.key, done + bytes.len() as u64);
            self.partial.extend_from_slice(&bytes);
            while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.partial.drain(..=end).collect();
                self.line(
                    String::from_utf8_lossy(&line[..end]).trim_end_matches('\r'),
                    sink,
                );
            }
        }
        Ok(())
    }

    fn line(&mut self, line: &str, sink: &(dyn Fn(&str) + Send + Sync)) {
        sink(line);
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_owned());
    }

    fn finish(&mut self, sink: &(dyn Fn(&str) + Send + Sync)) {
        if !self.partial.is_empty() {
            let line = String::from_utf8_lossy(&std::mem::take(&mut self.partial)).into_owned();
            self.line(&line, sink);
        }
    }

    fn tail(&self) -> String {
        if self.tail.is_empty() {
            return "(the driver printed nothing)".to_owned();
        }
        let mut out = format!("last {} lines of the driver output:", self.tail.len());
        for line in &self.tail {
            out.push_str("\n  | ");
            out.push_str(line);
        }
        out
    }
}

/// Runs Spark jobs on an existing Dataproc cluster.
pub struct DataprocSpark {
    pub dataproc: Arc<Dataproc>,
    /// Reads the driver output.
    pub storage: GcsClient,
    pub cluster: String,
    /// Starts every job id: one per attempt of a run (`run-20261124-2140-1`),
    /// so a retried submit re-attaches and a new attempt starts afresh.
    pub job_prefix: String,
    pub properties: BTreeMap<String, String>,
    /// Where driver output lines go.
    pub sink: Arc<dyn Fn(&str) + Send + Sync>,
}

/// Cancels the job if the future waiting for it is dropped (Ctrl-C, or a
/// failing sibling step), best effort, on a spawned task.
struct CancelOnDrop {
    dataproc: Arc<Dataproc>,
    job_id: Option<String>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(id) = self.job_id.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let dataproc = self.dataproc.clone();
        tracing::warn!("cancelling Dataproc job {id}");
        runtime.spawn(async move {
            if let Err(e) = dataproc.cancel_job(&id).await {
                tracing::warn!("{e:#}");
            }
        });
    }
}

/// A Dataproc job id: letters, digits, `_` and `-`, at most 100 characters.
/// A `clusters.list` filter that matches clusters carrying every label.
pub fn label_filter(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("labels.{k} = {v}"))
        .collect::<Vec<_>>()
        .join(" AND ")
}

pub fn job_id(prefix: &str, name: &str) -> String {
    let id: String = format!("{prefix}-{name}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    id.chars().take(100).collect()
}

#[async_trait]
impl Spark for DataprocSpark {
    async fn submit(&self, job: &SparkJob) -> Result<()> {
        let id = job_id(&self.job_prefix, &job.name);
        let spec = Job {
            reference: JobReference {
                project_id: self.dataproc.project.clone(),
                job_id: id.clone(),
            },
            placement: JobPlacement {
                cluster_name: self.cluster.clone(),
            },
            pyspark_job: Some(PySparkJob {
                main_python_file_uri: job.script.clone(),
                args: job.args.clone(),
                python_file_uris: Vec::new(),
                properties: self.properties.clone(),
            }),
            labels: BTreeMap::from([
                (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
                ("step".to_owned(), label_value(&job.name)),
            ]),
            ..Job::default()
        };
        self.dataproc.submit_job(&spec).await?;
        let mut guard = CancelOnDrop {
            dataproc: self.dataproc.clone(),
            job_id: Some(id.clone()),
        };
        let result = self
            .dataproc
            .wait_job(&id, Some(&self.storage), &*self.sink)
            .await;
        // A job that ended needs no cancelling; one we lost track of (polling
        // failed) is cancelled on the way out rather than left running.
        if result.is_ok() || result.as_ref().is_err_and(is_job_failure) {
            guard.job_id = None;
        }
        result
            .map(|_| ())
            .with_context(|| format!("Spark job {} ({}) failed", job.name, job.script))
    }
}

/// A label value: lower-case letters, digits, `_` and `-`, at most 63.
fn label_value(text: &str) -> String {
    text.to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect()
}

/// Lets callers tell a failed API call from a failed job.
pub fn is_job_failure(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.is::<JobFailed>())
}

/// Kept for callers that match on a raw API error inside an `anyhow` chain.
pub fn api_status(err: &anyhow::Error) -> Option<reqwest::StatusCode> {
    err.chain()
        .find_map(|e| e.downcast_ref::<ApiError>())
        .and_then(ApiError::status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_must_carry_every_label() {
        let labels = BTreeMap::from([
            ("deployment".to_owned(), "prod".to_owned()),
            ("managed-by".to_owned(), "infra".to_owned()),
        ]);
        assert_eq!(
            label_filter(&labels),
            "labels.deployment = prod AND labels.managed-by = infra"
        );
    }

    #[test]
    fn job_ids_are_sanitized_and_bounded() {
        assert_eq!(
            job_id("run-2026.11.24", "user behavior"),
            "run-2026-11-24-user-behavior"
        );
        assert_eq!(job_id(&"x".repeat(120), "t").len(), 100);
    }

    #[test]
    fn output_only_fields_are_never_sent() {
        let job = Job {
            status: Some(JobStatus {
                state: "DONE".into(),
                details: None,
            }),
            driver_output_resource_uri: Some("gs://b/o".into()),
            ..Job::default()
        };
        let json = serde_json::to_value(&job).unwrap();
        assert!(
            json.get("status").is_none() && json.get("driverOutputResourceUri").is_none(),
            "{json}"
        );
    }
}
