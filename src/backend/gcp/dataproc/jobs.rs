//! Dataproc jobs on a cluster: submit, get, cancel, and waiting for one to
//! end while its driver output streams.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::driver::DriverOutput;
use super::{Dataproc, JobFailed};
use crate::backend::gcp::deadline::{self, DeadlinePassed};
use crate::backend::gcp::http::{Call, Idempotency};
use crate::backend::gcp::ids;
use crate::backend::gcp::storage::GcsClient;

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

    pub fn is_finished(&self) -> bool {
        matches!(self.state(), "DONE" | "ERROR" | "CANCELLED")
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SubmitJobRequest<'a> {
    job: &'a Job,
    request_id: &'a str,
}

impl Dataproc {
    /// The `jobs.submit` call for `job`, as sent (and as `plan` shows it).
    pub fn submit_job_call(&self, job: &Job, request_id: &str) -> Call {
        Call::new(
            Method::POST,
            format!("{}/jobs:submit", self.regional()),
            Idempotency::Idempotent,
        )
        .json(&SubmitJobRequest { job, request_id })
    }

    /// Submits `job`. Its `reference.jobId` is the caller's; a job of that
    /// id that already exists (our own earlier attempt) is re-attached to.
    pub async fn submit_job(&self, job: &Job) -> Result<Job> {
        let id = &job.reference.job_id;
        let call = self.submit_job_call(job, &ids::request_id(id));
        tracing::info!("submitting Dataproc job {id}: {}", self.job_link(id));
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
    /// driver output to `sink` when `storage` is given. A job that ends in
    /// ERROR or CANCELLED is a [`JobFailed`] quoting the end of that output.
    ///
    /// Bounded by `deadlines.dataproc_job_secs`: a job still running then
    /// is a [`DeadlinePassed`]; the caller's teardown cancels it.
    pub async fn wait_job(
        &self,
        id: &str,
        storage: Option<&GcsClient>,
        sink: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Job> {
        let limit = self.deadlines.dataproc_job;
        let passed = || DeadlinePassed {
            what: "Dataproc job".to_owned(),
            id: id.to_owned(),
            limit,
            setting: "deadlines.dataproc_job_secs",
            link: self.job_link(id),
        };
        deadline::within(limit, passed, self.poll_job(id, storage, sink)).await
    }

    async fn poll_job(
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
