//! The [`Spark`] runners on GCP: [`ClusterSpark`], one ephemeral Dataproc
//! cluster per run, and [`ServerlessSpark`], one Serverless batch per job.
//!
//! Cluster lifecycle, per run:
//!
//! ```text
//! first job:  record name -> clusters.create (requestId) -> poll get until RUNNING
//!             (ERROR: delete at once, fail) -> record clusterUuid
//! each job:   record job id -> jobs.submit -> poll jobs.get, driver output streams
//! teardown:   jobs.cancel (a job still running) -> clusters.delete (clusterUuid) -> poll
//! ```
//!
//! `run` awaits [`Spark::teardown`] whatever happened: success, a failed job,
//! a polling error, Ctrl-C or SIGTERM. As a backstop when `infra` itself
//! dies, the cluster carries `lifecycleConfig` (idle and maximum-age TTLs),
//! and its labels let `infra down` find it. A re-run of the same run
//! (`--from`, or after a crash) re-attaches to the cluster and the job the
//! journal names instead of creating or submitting them twice.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use async_trait::async_trait;
use tokio::sync::Mutex;

use super::batches::{Batch, EnvironmentConfig, ExecutionConfig, PySparkBatch, RuntimeConfig};
use super::clusters::{
    Cluster, ClusterConfig, ClusterFailed, DiskConfig, GceClusterConfig, InstanceGroupConfig,
    LifecycleConfig, SoftwareConfig,
};
use super::jobs::{Job, JobPlacement, JobReference, PySparkJob};
use super::{Dataproc, is_job_failure};
use crate::backend::gcp::ids;
use crate::backend::gcp::storage::GcsClient;
use crate::backend::{Journal, Remote, RemoteKind, Request, Spark, SparkJob};

/// How long teardown waits for a cancelled job to stop before it deletes
/// the cluster anyway.
const CANCEL_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// What every cluster of this deployment looks like (from settings and
/// Terraform's outputs).
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub deployment: String,
    pub image_version: String,
    pub master_machine_type: String,
    pub worker_machine_type: String,
    pub workers: u32,
    pub boot_disk_gb: u32,
    /// Delete after this long without a job.
    pub idle_ttl_secs: u64,
    /// Delete this long after creation, whatever happens.
    pub max_age_secs: u64,
    /// The pipeline's service account: the VMs run as it.
    pub service_account: String,
    /// The provisioned private subnet.
    pub subnetwork: String,
    /// The deployment's staging bucket, the cluster's `configBucket` and
    /// `tempBucket`: left unset, Dataproc creates `dataproc-staging-*` and
    /// `dataproc-temp-*` buckets of its own, which outlive `down`.
    pub bucket: String,
    /// `managed-by`, `deployment`: how `down` and `status` find clusters.
    pub labels: BTreeMap<String, String>,
    pub properties: BTreeMap<String, String>,
}

impl ClusterSpec {
    /// The `Cluster` body for run `run_id`.
    pub fn cluster(&self, project: &str, name: &str, run_id: &str) -> Cluster {
        let group = |count: u32, machine: &str| InstanceGroupConfig {
            num_instances: count as i32,
            machine_type_uri: Some(machine.to_owned()),
            disk_config: Some(DiskConfig {
                boot_disk_size_gb: self.boot_disk_gb as i32,
            }),
        };
        let mut labels = self.labels.clone();
        labels.insert("run".to_owned(), ids::label_value(run_id));
        Cluster {
            project_id: project.to_owned(),
            cluster_name: name.to_owned(),
            config: Some(ClusterConfig {
                config_bucket: Some(self.bucket.clone()),
                temp_bucket: Some(self.bucket.clone()),
                gce_cluster_config: Some(GceClusterConfig {
                    subnetwork_uri: Some(self.subnetwork.clone()),
                    internal_ip_only: Some(true),
                    service_account: Some(self.service_account.clone()),
                    service_account_scopes: vec![
                        "https://www.googleapis.com/auth/cloud-platform".to_owned(),
                    ],
                }),
                master_config: Some(group(1, &self.master_machine_type)),
                worker_config: Some(group(self.workers, &self.worker_machine_type)),
                software_config: Some(SoftwareConfig {
                    image_version: Some(self.image_version.clone()),
                    properties: BTreeMap::new(),
                }),
                lifecycle_config: Some(LifecycleConfig {
                    idle_delete_ttl: Some(format!("{}s", self.idle_ttl_secs)),
                    auto_delete_ttl: Some(format!("{}s", self.max_age_secs)),
                }),
            }),
            labels,
            status: None,
            cluster_uuid: None,
        }
    }
}

/// The run's cluster and the job running on it, as far as we know.
#[derive(Debug, Default)]
struct Live {
    /// Name and uuid.
    cluster: Option<(String, Option<String>)>,
    job: Option<String>,
}

/// Runs the pipeline's jobs on one ephemeral cluster per run.
pub struct ClusterSpark {
    dataproc: Arc<Dataproc>,
    /// Reads the driver output.
    storage: GcsClient,
    spec: ClusterSpec,
    /// Where driver output lines go.
    sink: Arc<dyn Fn(&str) + Send + Sync>,
    live: Mutex<Live>,
}

impl ClusterSpark {
    pub fn new(
        dataproc: Arc<Dataproc>,
        storage: GcsClient,
        spec: ClusterSpec,
        sink: Arc<dyn Fn(&str) + Send + Sync>,
    ) -> ClusterSpark {
        ClusterSpark {
            dataproc,
            storage,
            spec,
            sink,
            live: Mutex::new(Live::default()),
        }
    }

    /// The run's cluster name as a plan shows it: its random tail is `XXXX`.
    fn preview_cluster_name(&self, run_id: &str) -> String {
        let name = ids::cluster_name(&self.spec.deployment, run_id);
        let head = name
            .rsplit_once('-')
            .map_or(name.as_str(), |(head, _)| head);
        format!("{head}-XXXX")
    }

    /// The cluster the run's jobs go to: this process's, an earlier
    /// attempt's that still runs, or a new one.
    async fn ensure_cluster(&self, journal: &dyn Journal) -> Result<String> {
        if let Some((name, _)) = &self.live.lock().await.cluster {
            return Ok(name.clone());
        }
        if let Some(earlier) = journal.earlier(RemoteKind::DataprocCluster).pop()
            && let Some(name) = self.reattach_cluster(&earlier, journal).await?
        {
            return Ok(name);
        }
        let name = ids::cluster_name(&self.spec.deployment, journal.run_id());
        let cluster = self
            .spec
            .cluster(self.dataproc.project(), &name, journal.run_id());
        journal.started(Remote {
            kind: RemoteKind::DataprocCluster,
            id: name.clone(),
            uuid: None,
            link: Some(self.dataproc.cluster_link(&name)),
        })?;
        // From here on teardown deletes it, whatever happens next.
        self.live.lock().await.cluster = Some((name.clone(), None));
        let request_id = ids::request_id(&format!("create-{name}"));
        self.dataproc.start_cluster(&cluster, &request_id).await?;
        self.wait_running(&name, journal).await?;
        Ok(name)
    }

    /// Waits for `name` to run and records its uuid; a cluster that fails
    /// to start is deleted at once.
    async fn wait_running(&self, name: &str, journal: &dyn Journal) -> Result<()> {
        match self.dataproc.wait_cluster_running(name).await {
            Ok(running) => {
                self.live.lock().await.cluster =
                    Some((name.to_owned(), running.cluster_uuid.clone()));
                journal.started(Remote {
                    kind: RemoteKind::DataprocCluster,
                    id: name.to_owned(),
                    uuid: running.cluster_uuid,
                    link: Some(self.dataproc.cluster_link(name)),
                })
            }
            Err(e) if e.is::<ClusterFailed>() => {
                tracing::warn!("{e:#}; deleting it now");
                let uuid = self.live.lock().await.cluster.take().and_then(|(_, u)| u);
                if let Err(delete) = self.dataproc.delete_cluster(name, uuid.as_deref()).await {
                    tracing::warn!("{delete:#}");
                    self.live.lock().await.cluster = Some((name.to_owned(), uuid));
                }
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Takes over an earlier attempt's cluster when it still runs (or is
    /// starting). One in ERROR is deleted; `None` means: create a new one.
    async fn reattach_cluster(
        &self,
        earlier: &Remote,
        journal: &dyn Journal,
    ) -> Result<Option<String>> {
        let Some(cluster) = self.dataproc.get_cluster(&earlier.id).await? else {
            return Ok(None);
        };
        if earlier.uuid.is_some() && cluster.cluster_uuid != earlier.uuid {
            return Ok(None);
        }
        let name = earlier.id.clone();
        match cluster.state() {
            "RUNNING" | "CREATING" | "UPDATING" | "STARTING" => {
                tracing::info!(
                    "re-attaching to Dataproc cluster {name} ({})",
                    cluster.state()
                );
                self.live.lock().await.cluster = Some((name.clone(), cluster.cluster_uuid.clone()));
                self.wait_running(&name, journal).await?;
                Ok(Some(name))
            }
            "DELETING" => Ok(None),
            state => {
                tracing::warn!("the run's earlier Dataproc cluster {name} is {state}; deleting it");
                self.dataproc
                    .delete_cluster(&name, cluster.cluster_uuid.as_deref())
                    .await?;
                Ok(None)
            }
        }
    }

    /// An earlier attempt's job for this step: `Some(true)` if it already
    /// succeeded, `Some(false)` if it still runs (wait for it), `None` if
    /// there is nothing to re-attach to.
    async fn earlier_job(&self, journal: &dyn Journal) -> Result<Option<(String, bool)>> {
        for earlier in journal.earlier(RemoteKind::DataprocJob).into_iter().rev() {
            let job = match self.dataproc.get_job(&earlier.id).await {
                Ok(job) => job,
                Err(e) => {
                    tracing::debug!("earlier job {} is not there: {e:#}", earlier.id);
                    continue;
                }
            };
            match job.state() {
                "DONE" => return Ok(Some((earlier.id, true))),
                "ERROR" | "CANCELLED" | "CANCEL_PENDING" | "CANCEL_STARTED" => continue,
                _ => return Ok(Some((earlier.id, false))),
            }
        }
        Ok(None)
    }

    /// The `Job` body for `job` on `cluster`.
    fn job_spec(&self, job: &SparkJob, id: &str, cluster: &str, run_id: &str) -> Job {
        let mut labels = self.spec.labels.clone();
        labels.insert("step".to_owned(), ids::label_value(&job.name));
        labels.insert("run".to_owned(), ids::label_value(run_id));
        Job {
            reference: JobReference {
                project_id: self.dataproc.project().to_owned(),
                job_id: id.to_owned(),
            },
            placement: JobPlacement {
                cluster_name: cluster.to_owned(),
            },
            pyspark_job: Some(PySparkJob {
                main_python_file_uri: job.script.clone(),
                args: job.args.clone(),
                python_file_uris: Vec::new(),
                properties: self.spec.properties.clone(),
            }),
            labels,
            ..Job::default()
        }
    }
}

#[async_trait]
impl Spark for ClusterSpark {
    async fn submit(&self, job: &SparkJob, journal: &dyn Journal) -> Result<()> {
        let what = || format!("Spark job {} ({}) failed", job.name, job.script);
        let cluster = self.ensure_cluster(journal).await.with_context(what)?;
        let id = match self.earlier_job(journal).await.with_context(what)? {
            Some((id, true)) => {
                tracing::info!("Dataproc job {id} of an earlier attempt already succeeded");
                return Ok(());
            }
            Some((id, false)) => {
                tracing::info!("re-attaching to Dataproc job {id}");
                id
            }
            None => {
                let id = ids::dataproc_job_id(&[
                    journal.run_id(),
                    &job.name,
                    &journal.attempt().to_string(),
                ]);
                journal.started(Remote {
                    kind: RemoteKind::DataprocJob,
                    id: id.clone(),
                    uuid: None,
                    link: Some(self.dataproc.job_link(&id)),
                })?;
                let spec = self.job_spec(job, &id, &cluster, journal.run_id());
                self.live.lock().await.job = Some(id.clone());
                self.dataproc.submit_job(&spec).await.with_context(what)?;
                id
            }
        };
        self.live.lock().await.job = Some(id.clone());
        let result = self
            .dataproc
            .wait_job(&id, Some(&self.storage), &*self.sink)
            .await;
        // A job that ended needs no cancelling; one we lost track of (polling
        // failed) stays marked, so teardown cancels it.
        if result.is_ok() || result.as_ref().is_err_and(is_job_failure) {
            self.live.lock().await.job = None;
        }
        result.map(|_| ()).with_context(what)
    }

    fn deadline(&self) -> Option<std::time::Duration> {
        Some(self.dataproc.deadlines.dataproc_job)
    }

    async fn teardown(&self) -> Result<()> {
        let mut live = self.live.lock().await;
        if let Some(id) = live.job.take() {
            tracing::warn!("cancelling Dataproc job {id}");
            match self.dataproc.cancel_job(&id).await {
                // Deleting the cluster under a job still cancelling ends it
                // in ERROR; wait (bounded) until it has really stopped.
                Ok(_) => {
                    let stopped = self.dataproc.wait_job(&id, None, &|_: &str| {});
                    if tokio::time::timeout(CANCEL_WAIT, stopped).await.is_err() {
                        tracing::warn!(
                            "Dataproc job {id} was still cancelling after {CANCEL_WAIT:?}"
                        );
                    }
                }
                Err(e) => tracing::warn!("{e:#}"),
            }
        }
        let Some((name, uuid)) = live.cluster.take() else {
            return Ok(());
        };
        crate::ui::status(format!("deleting Dataproc cluster {name}"));
        self.dataproc
            .delete_cluster(&name, uuid.as_deref())
            .await
            .with_context(|| {
                format!(
                    "the Dataproc cluster {name} may still be running: {}\nhint: `infra down` deletes every cluster of this deployment; its lifecycle TTLs delete it otherwise",
                    self.dataproc.cluster_link(&name)
                )
            })
    }

    fn preview(&self, job: &SparkJob, run_id: &str) -> Vec<Request> {
        let name = self.preview_cluster_name(run_id);
        let id = ids::dataproc_job_id(&[run_id, &job.name, "1"]);
        let spec = self.job_spec(job, &id, &name, run_id);
        vec![
            self.dataproc
                .submit_job_call(&spec, "REQUEST-ID")
                .to_request(
                    "then jobs.get until DONE; the driver output streams from Cloud Storage",
                ),
        ]
    }

    fn preview_setup(&self, run_id: &str) -> Vec<Request> {
        let name = self.preview_cluster_name(run_id);
        let cluster = self.spec.cluster(self.dataproc.project(), &name, run_id);
        vec![
            self.dataproc
                .create_cluster_call(&cluster, "REQUEST-ID")
                .to_request("once per run, before its first job; then polled until RUNNING"),
        ]
    }

    fn preview_teardown(&self, run_id: &str) -> Vec<Request> {
        let name = self.preview_cluster_name(run_id);
        vec![
            crate::backend::gcp::http::Call::delete(format!(
                "{}/clusters/{name}",
                self.dataproc.regional()
            ))
            .query("requestId", "REQUEST-ID")
            .query("clusterUuid", "CLUSTER-UUID")
            .to_request("at the end of the run, whatever happened"),
        ]
    }
}

/// What every Serverless batch of this deployment looks like.
#[derive(Debug, Clone)]
pub struct ServerlessSpec {
    /// The runtime version (`3.0`).
    pub runtime_version: String,
    /// Set explicitly: runtime 3.0 otherwise runs with end-user credentials.
    pub service_account: String,
    pub subnetwork: String,
    pub labels: BTreeMap<String, String>,
    pub properties: BTreeMap<String, String>,
    /// The batch is stopped after this long, whatever happens to `infra`.
    pub ttl_secs: u64,
}

/// Runs each job as a Dataproc Serverless batch: no cluster to manage.
pub struct ServerlessSpark {
    dataproc: Arc<Dataproc>,
    spec: ServerlessSpec,
    /// The batch running now and its operation.
    live: Mutex<Option<(String, Option<String>)>>,
}

impl ServerlessSpark {
    pub fn new(dataproc: Arc<Dataproc>, spec: ServerlessSpec) -> ServerlessSpark {
        ServerlessSpark {
            dataproc,
            spec,
            live: Mutex::new(None),
        }
    }

    fn batch(&self, job: &SparkJob, run_id: &str) -> Batch {
        let mut labels = self.spec.labels.clone();
        labels.insert("step".to_owned(), ids::label_value(&job.name));
        labels.insert("run".to_owned(), ids::label_value(run_id));
        Batch {
            pyspark_batch: Some(PySparkBatch {
                main_python_file_uri: job.script.clone(),
                args: job.args.clone(),
            }),
            labels,
            runtime_config: Some(RuntimeConfig {
                version: Some(self.spec.runtime_version.clone()),
                properties: self.spec.properties.clone(),
            }),
            environment_config: Some(EnvironmentConfig {
                execution_config: Some(ExecutionConfig {
                    subnetwork_uri: Some(self.spec.subnetwork.clone()),
                    service_account: Some(self.spec.service_account.clone()),
                    ttl: Some(format!("{}s", self.spec.ttl_secs)),
                }),
            }),
            ..Batch::default()
        }
    }

    /// An earlier attempt's batch: `Some((id, true))` if it succeeded,
    /// `Some((id, false))` if it still runs.
    async fn earlier_batch(&self, journal: &dyn Journal) -> Result<Option<(Remote, bool)>> {
        for earlier in journal.earlier(RemoteKind::DataprocBatch).into_iter().rev() {
            let Some(batch) = self.dataproc.find_batch(&earlier.id).await? else {
                continue;
            };
            match batch.state() {
                "SUCCEEDED" => return Ok(Some((earlier, true))),
                "FAILED" | "CANCELLED" | "CANCELLING" => continue,
                _ => {
                    let uuid = batch.operation.or(earlier.uuid.clone());
                    return Ok(Some((Remote { uuid, ..earlier }, false)));
                }
            }
        }
        Ok(None)
    }
}

#[async_trait]
impl Spark for ServerlessSpark {
    async fn submit(&self, job: &SparkJob, journal: &dyn Journal) -> Result<()> {
        let what = || format!("Spark batch {} ({}) failed", job.name, job.script);
        let id = match self.earlier_batch(journal).await.with_context(what)? {
            Some((earlier, true)) => {
                tracing::info!(
                    "Dataproc batch {} of an earlier attempt already succeeded",
                    earlier.id
                );
                return Ok(());
            }
            Some((earlier, false)) => {
                tracing::info!("re-attaching to Dataproc batch {}", earlier.id);
                *self.live.lock().await = Some((earlier.id.clone(), earlier.uuid));
                earlier.id
            }
            None => {
                let id =
                    ids::batch_id(&[journal.run_id(), &job.name, &journal.attempt().to_string()]);
                let mut remote = Remote {
                    kind: RemoteKind::DataprocBatch,
                    id: id.clone(),
                    uuid: None,
                    link: Some(self.dataproc.batch_link(&id)),
                };
                journal.started(remote.clone())?;
                *self.live.lock().await = Some((id.clone(), None));
                let operation = self
                    .dataproc
                    .create_batch(&id, &self.batch(job, journal.run_id()))
                    .await
                    .with_context(what)?;
                if operation.is_some() {
                    remote.uuid = operation.clone();
                    journal.started(remote)?;
                    *self.live.lock().await = Some((id.clone(), operation));
                }
                id
            }
        };
        let result = self.dataproc.wait_batch(&id).await;
        if result.is_ok() || result.as_ref().is_err_and(is_job_failure) {
            *self.live.lock().await = None;
        }
        result.map(|_| ()).with_context(what)
    }

    fn deadline(&self) -> Option<std::time::Duration> {
        Some(self.dataproc.deadlines.dataproc_batch)
    }

    async fn teardown(&self) -> Result<()> {
        let Some((id, operation)) = self.live.lock().await.take() else {
            return Ok(());
        };
        let operation = match operation {
            Some(op) => Some(op),
            None => self
                .dataproc
                .get_batch(&id)
                .await
                .ok()
                .and_then(|b| b.operation),
        };
        let Some(operation) = operation else {
            return Ok(());
        };
        tracing::warn!("cancelling Dataproc batch {id}");
        self.dataproc
            .cancel_operation(&operation)
            .await
            .with_context(|| {
                format!(
                    "the Dataproc batch {id} may still be running: {}",
                    self.dataproc.batch_link(&id)
                )
            })
    }

    fn preview(&self, job: &SparkJob, run_id: &str) -> Vec<Request> {
        let id = ids::batch_id(&[run_id, &job.name, "1"]);
        vec![
            self.dataproc
                .create_batch_call(&id, &self.batch(job, run_id), "REQUEST-ID")
                .to_request("then batches.get until SUCCEEDED"),
        ]
    }
}
