//! Dataproc Serverless batches: create, get, wait, delete, list.
//!
//! A batch's id is the caller's (`batchId`), so a create that is retried,
//! or repeated by a re-run, meets a 409 and re-attaches to the batch that
//! exists. A running batch is cancelled through the operation its create
//! returned.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::{Dataproc, JobFailed, Operation};
use crate::backend::gcp::deadline::{self, DeadlinePassed};
use crate::backend::gcp::http::{Call, Idempotency};
use crate::backend::gcp::ids;

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
    /// Output only: `projects/…/locations/…/batches/<id>`.
    #[serde(default, skip_serializing)]
    pub name: Option<String>,
    /// Output only.
    #[serde(default, skip_serializing)]
    pub state: Option<String>,
    /// Output only.
    #[serde(default, skip_serializing)]
    pub state_message: Option<String>,
    /// Output only: the operation that runs it (cancel it to stop the batch).
    #[serde(default, skip_serializing)]
    pub operation: Option<String>,
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
    /// A duration such as `"14400s"`: the batch is stopped after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

impl Batch {
    pub fn state(&self) -> &str {
        self.state.as_deref().unwrap_or("STATE_UNSPECIFIED")
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.state(), "SUCCEEDED" | "FAILED" | "CANCELLED")
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListBatchesResponse {
    #[serde(default)]
    batches: Vec<Batch>,
    next_page_token: Option<String>,
}

impl Dataproc {
    /// The `batches.create` call, as sent (and as `plan` shows it).
    pub fn create_batch_call(&self, id: &str, batch: &Batch, request_id: &str) -> Call {
        Call::new(
            Method::POST,
            format!("{}/batches", self.location()),
            Idempotency::Idempotent,
        )
        .query("batchId", id)
        .query("requestId", request_id)
        .json(batch)
    }

    /// Creates the batch `id`. Returns the operation's name, or `None`
    /// when the batch existed already (an earlier attempt's: re-attached).
    pub async fn create_batch(&self, id: &str, batch: &Batch) -> Result<Option<String>> {
        let call = self.create_batch_call(id, batch, &ids::request_id(id));
        tracing::info!("creating Dataproc batch {id}: {}", self.batch_link(id));
        match self.http.json::<Operation>(&call).await {
            Ok(operation) => Ok(Some(operation.name)),
            Err(e) if e.is_conflict() => {
                tracing::info!("Dataproc batch {id} exists already; re-attaching to it");
                Ok(None)
            }
            Err(e) => Err(e).with_context(|| format!("cannot create Dataproc batch {id}")),
        }
    }

    /// Polls the batch until it ends; FAILED or CANCELLED is a [`JobFailed`].
    /// Bounded by `deadlines.dataproc_batch_secs`: a batch still running
    /// then is a [`DeadlinePassed`]; the caller's teardown cancels it.
    pub async fn wait_batch(&self, id: &str) -> Result<Batch> {
        let limit = self.deadlines.dataproc_batch;
        let progress =
            crate::ui::Progress::waiting(format!("Dataproc batch {id}"), "PENDING", limit);
        let passed = || DeadlinePassed {
            what: "Dataproc batch".to_owned(),
            id: id.to_owned(),
            limit,
            setting: "deadlines.dataproc_batch_secs",
            link: self.batch_link(id),
        };
        deadline::within(limit, passed, self.poll_batch(id, &progress)).await
    }

    async fn poll_batch(&self, id: &str, progress: &crate::ui::Progress) -> Result<Batch> {
        loop {
            let batch = self.get_batch(id).await?;
            progress.set_message(batch.state());
            match batch.state() {
                "SUCCEEDED" => return Ok(batch),
                "FAILED" | "CANCELLED" => {
                    return Err(JobFailed {
                        kind: "batch",
                        id: id.to_owned(),
                        state: batch.state().to_owned(),
                        details: batch.state_message.clone().unwrap_or_default(),
                        tail: format!("its logs: {}", self.batch_link(id)),
                    }
                    .into());
                }
                _ => tokio::time::sleep(self.poll).await,
            }
        }
    }

    /// Creates the batch `id` and waits for it to end.
    pub async fn run_batch(&self, id: &str, batch: &Batch) -> Result<Batch> {
        self.create_batch(id, batch).await?;
        self.wait_batch(id).await
    }

    /// The batch, or a 404 as an error that names it.
    pub async fn get_batch(&self, id: &str) -> Result<Batch> {
        self.json(
            Call::get(format!("{}/batches/{id}", self.location())),
            || format!("cannot get Dataproc batch {id}"),
        )
        .await
    }

    /// The batch, or `None` when there is none of that id.
    pub async fn find_batch(&self, id: &str) -> Result<Option<Batch>> {
        match self
            .http
            .json(&Call::get(format!("{}/batches/{id}", self.location())))
            .await
        {
            Ok(batch) => Ok(Some(batch)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot get Dataproc batch {id}")),
        }
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

    /// Cancels every batch carrying all of `labels` that has not ended
    /// (through the operation that runs it) and waits until each has.
    /// Returns their ids. A batch left running after `down` would go on
    /// billing, and writing into buckets that are about to go.
    pub async fn cancel_labelled_batches(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<String>> {
        let mut cancelled = Vec::new();
        for batch in self.list_batches(&super::label_filter(labels)).await? {
            if batch.is_finished() {
                continue;
            }
            let Some(name) = batch.name.as_deref() else {
                continue;
            };
            let id = name.rsplit('/').next().unwrap_or(name).to_owned();
            let operation = batch
                .operation
                .as_deref()
                .with_context(|| format!("Dataproc batch {id} names no operation to cancel"))?;
            self.cancel_operation(operation).await?;
            loop {
                let now = self.get_batch(&id).await?;
                if now.is_finished() {
                    break;
                }
                tokio::time::sleep(self.poll).await;
            }
            cancelled.push(id);
        }
        Ok(cancelled)
    }

    /// Batches matching `filter`, every page.
    pub async fn list_batches(&self, filter: &str) -> Result<Vec<Batch>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut call =
                Call::get(format!("{}/batches", self.location())).query("filter", filter);
            if let Some(token) = &token {
                call = call.query("pageToken", token);
            }
            let page: ListBatchesResponse = self
                .json(call, || {
                    format!("cannot list Dataproc batches in {}", self.region)
                })
                .await?;
            out.extend(page.batches);
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) => token = Some(next),
                None => return Ok(out),
            }
        }
    }
}
