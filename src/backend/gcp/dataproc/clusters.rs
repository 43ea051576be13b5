//! Dataproc clusters: create, get, delete, list.
//!
//! Creation and deletion carry a `requestId` fresh for each logical attempt
//! (see `ids::request_id`), and a delete names the cluster's `clusterUuid`:
//! a delete meant for one cluster can never take out a later cluster of the
//! same name, nor be answered with the operation of an older delete.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::{Dataproc, Operation, label_filter};
use crate::backend::gcp::deadline::{self, DeadlinePassed};
use crate::backend::gcp::http::{Call, Idempotency};
use crate::backend::gcp::ids;

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
    /// Output only: tells this cluster from a later one of the same name.
    #[serde(default, skip_serializing)]
    pub cluster_uuid: Option<String>,
}

impl Cluster {
    pub fn state(&self) -> &str {
        self.status.as_ref().map_or("UNKNOWN", |s| s.state.as_str())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_bucket: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temp_bucket: Option<String>,
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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_account_scopes: Vec<String>,
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

/// A cluster that reached a state it will not run jobs in.
#[derive(Debug, thiserror::Error)]
#[error("Dataproc cluster {name} is {state}: {detail}")]
pub struct ClusterFailed {
    pub name: String,
    pub state: String,
    pub detail: String,
}

impl Dataproc {
    /// The `clusters.create` call for `cluster`, as sent (and as `plan` shows it).
    pub fn create_cluster_call(&self, cluster: &Cluster, request_id: &str) -> Call {
        Call::new(
            Method::POST,
            format!("{}/clusters", self.regional()),
            Idempotency::Idempotent,
        )
        .query("requestId", request_id)
        .json(cluster)
    }

    /// Starts creating `cluster`; `request_id` makes a retried request a
    /// no-op. A cluster of that name that exists already is not an error:
    /// the caller goes on with [`wait_cluster_running`](Self::wait_cluster_running).
    pub async fn start_cluster(&self, cluster: &Cluster, request_id: &str) -> Result<()> {
        let name = &cluster.cluster_name;
        tracing::info!(
            "creating Dataproc cluster {name}: {}",
            self.cluster_link(name)
        );
        match self
            .http
            .json::<Operation>(&self.create_cluster_call(cluster, request_id))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_conflict() => {
                tracing::info!("Dataproc cluster {name} already exists");
                Ok(())
            }
            Err(e) => Err(e).with_context(|| format!("cannot create Dataproc cluster {name}")),
        }
    }

    /// Creates `cluster` and waits until it is running.
    pub async fn create_cluster(&self, cluster: &Cluster, request_id: &str) -> Result<Cluster> {
        self.start_cluster(cluster, request_id).await?;
        self.wait_cluster_running(&cluster.cluster_name).await
    }

    /// Polls the cluster until it runs. ERROR (and any state it cannot run
    /// jobs from) is a [`ClusterFailed`]: the caller deletes it at once.
    /// Bounded by `deadlines.dataproc_cluster_secs`: a cluster that never
    /// runs is a [`DeadlinePassed`], and the caller deletes it.
    pub async fn wait_cluster_running(&self, name: &str) -> Result<Cluster> {
        let limit = self.deadlines.dataproc_cluster;
        let progress =
            crate::ui::Progress::waiting(format!("Dataproc cluster {name}"), "CREATING", limit);
        let passed = || DeadlinePassed {
            what: "Dataproc cluster".to_owned(),
            id: name.to_owned(),
            limit,
            setting: "deadlines.dataproc_cluster_secs",
            link: self.cluster_link(name),
        };
        deadline::within(limit, passed, self.poll_running(name, &progress)).await
    }

    async fn poll_running(&self, name: &str, progress: &crate::ui::Progress) -> Result<Cluster> {
        loop {
            let cluster = self
                .get_cluster(name)
                .await?
                .with_context(|| format!("Dataproc cluster {name} disappeared while starting"))?;
            progress.set_message(cluster.state());
            match cluster.state() {
                "RUNNING" => return Ok(cluster),
                "ERROR" | "ERROR_DUE_TO_UPDATE" | "DELETING" | "STOPPED" | "STOPPING" => {
                    bail!(ClusterFailed {
                        name: name.to_owned(),
                        state: cluster.state().to_owned(),
                        detail: cluster
                            .status
                            .as_ref()
                            .and_then(|s| s.detail.clone())
                            .unwrap_or_default(),
                    })
                }
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

    /// Deletes the cluster `name` whose uuid is `uuid` (when known) and
    /// waits; a cluster already gone is fine. The request id is fresh, so
    /// this delete is never mistaken for an earlier one.
    pub async fn delete_cluster(&self, name: &str, uuid: Option<&str>) -> Result<()> {
        let mut call = Call::delete(format!("{}/clusters/{name}", self.regional()))
            .query("requestId", ids::request_id(&format!("delete-{name}")));
        if let Some(uuid) = uuid {
            call = call.query("clusterUuid", uuid);
        }
        match self.http.json::<Operation>(&call).await {
            Ok(operation) => {
                tracing::info!(
                    "deleting Dataproc cluster {name}: {}",
                    self.cluster_link(name)
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

    /// Deletes every cluster that carries all of `labels`, each by its
    /// uuid, waiting for each; returns their names.
    pub async fn delete_labelled_clusters(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<String>> {
        let mut deleted = Vec::new();
        for cluster in self.list_clusters(&label_filter(labels)).await? {
            self.delete_cluster(&cluster.cluster_name, cluster.cluster_uuid.as_deref())
                .await?;
            deleted.push(cluster.cluster_name);
        }
        Ok(deleted)
    }
}
