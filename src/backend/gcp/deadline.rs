//! Overall deadlines for Google's long-running work.
//!
//! Every HTTP call already has a limit per attempt and a deadline per call
//! (`http`). A long-running operation is many calls: a poll every few
//! seconds until it says DONE. A service, or a stand-in, that answers
//! RUNNING forever would keep `run` polling forever, so each kind of
//! operation has an overall deadline (`deadlines.*` in the settings, shown
//! by `infra config`). When one passes, the wait ends with a
//! [`DeadlinePassed`] that names the operation, the limit, the setting and
//! the Cloud Console page; the caller cancels what Google lets it cancel,
//! and `run`'s teardown deletes the cluster. The operation's id is in the
//! run record already: every remote id is saved before it is waited on.

use std::time::Duration;

use anyhow::Result;

use super::http::RetryPolicy;
use crate::settings::Values;

/// The overall limit of each kind of long-running wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// A Cloud SQL import or export, until DONE.
    pub cloudsql_operation: Duration,
    /// A Dataproc cluster, from `clusters.create` until RUNNING, and its delete.
    pub dataproc_cluster: Duration,
    /// A Dataproc job, from `jobs.submit` until it ends.
    pub dataproc_job: Duration,
    /// A Dataproc Serverless batch, from `batches.create` until it ends.
    pub dataproc_batch: Duration,
    /// A BigQuery job, from `jobs.insert` until DONE.
    pub bigquery_job: Duration,
}

impl Default for Deadlines {
    fn default() -> Deadlines {
        Deadlines::from_settings(&Values::defaults())
    }
}

impl Deadlines {
    /// From the `deadlines.*` settings.
    pub fn from_settings(s: &Values) -> Deadlines {
        let secs = |n: u32| Duration::from_secs(u64::from(n));
        Deadlines {
            cloudsql_operation: secs(s.deadlines_cloudsql_operation_secs),
            dataproc_cluster: secs(s.deadlines_dataproc_cluster_secs),
            dataproc_job: secs(s.deadlines_dataproc_job_secs),
            dataproc_batch: secs(s.deadlines_dataproc_batch_secs),
            bigquery_job: secs(s.deadlines_bigquery_job_secs),
        }
    }
}

/// The limits of every HTTP call, from the `deadlines.http_*` settings;
/// the retry schedule is the default one.
pub fn http_policy(s: &Values) -> RetryPolicy {
    let secs = |n: u32| Duration::from_secs(u64::from(n));
    RetryPolicy {
        attempt_timeout: secs(s.deadlines_http_attempt_secs),
        deadline: secs(s.deadlines_http_call_secs),
        ..RetryPolicy::default()
    }
}

/// A long-running operation that did not end within its deadline. `run`
/// matches on it to cancel the operation.
#[derive(Debug, thiserror::Error)]
#[error(
    "{what} {id} did not finish within {}s; the run stopped waiting for it: {link}\nhint: `{setting}` sets this limit",
    .limit.as_secs()
)]
pub struct DeadlinePassed {
    /// "Cloud SQL operation", "Dataproc job", …
    pub what: String,
    pub id: String,
    pub limit: Duration,
    /// The setting that sets `limit`.
    pub setting: &'static str,
    /// Its Cloud Console page.
    pub link: String,
}

/// Awaits `work` for at most `limit`; when the limit passes first, `work`
/// is dropped and the error is the [`DeadlinePassed`] `passed` describes.
pub async fn within<T>(
    limit: Duration,
    passed: impl FnOnce() -> DeadlinePassed,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, work).await {
        Ok(done) => done,
        Err(_) => Err(passed().into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_that_never_ends_is_cut_off_at_its_limit() {
        let err = within(
            Duration::from_millis(50),
            || DeadlinePassed {
                what: "BigQuery job".into(),
                id: "j1".into(),
                limit: Duration::from_secs(90),
                setting: "deadlines.bigquery_job_secs",
                link: "https://console.cloud.google.com/bigquery?j=j1".into(),
            },
            std::future::pending::<Result<()>>(),
        )
        .await
        .unwrap_err();
        assert!(err.is::<DeadlinePassed>());
        let text = err.to_string();
        assert!(
            text.starts_with("BigQuery job j1 did not finish within 90s"),
            "{text}"
        );
        assert!(text.contains("deadlines.bigquery_job_secs"), "{text}");
        assert!(text.contains("console.cloud.google.com"), "{text}");
        let done = within(Duration::from_secs(1), || unreachable!(), async {
            Ok::<_, anyhow::Error>(7)
        })
        .await
        .unwrap();
        assert_eq!(done, 7);
    }
}
