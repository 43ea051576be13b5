//! Issue 22 on the cloud rehearsal: nothing `infra run --target gcp` waits
//! on can hang it. The real binary runs against the executing stand-ins
//! (`Rehearsal`), which leave work running forever on request: a Cloud SQL
//! import that never finishes, a Dataproc job stuck RUNNING, a BigQuery
//! load that never finishes; and a stand-in process stopped with SIGSTOP.
//! The limits are shortened through settings (`INFRA_DEADLINES_*`) for the
//! one command that meets the fault, never by sleeping.
//!
//! Each case checks what the issue asks: the exit code, the step recorded
//! as failed with its cause on the first line, nothing of the state dir
//! left running and the run lock free, what Google lets `run` cancel
//! cancelled (as the stand-in saw it), no cluster alive, and that
//! `infra run --from N` then succeeds with the stand-in released.

use std::process::Stdio;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::deadlines::{assert_failed_and_released, recorded_cause};
use crate::faults::{Hold, exits, wait_for};
use crate::harness::Run;
use crate::rehearsal::Rehearsal;

/// `infra args` with `settings` (environment variables) for this command only.
fn infra_with(r: &Rehearsal, settings: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = r.env.command(args);
    cmd.envs(settings.iter().copied());
    let out = cmd.output().unwrap();
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The failed run's exit code and message, and the record the issue asks
/// for; returns the cause recorded for `step` (its first line).
#[track_caller]
fn assert_step_failed(r: &Rehearsal, run: &Run, number: u8, step: &str) -> String {
    assert_eq!(run.status, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("step {number} {step} failed"))
            && run.stderr.contains(&format!("infra run --from {number}")),
        "{}",
        run.stderr
    );
    assert_failed_and_released(&r.env, step);
    assert_eq!(
        r.stack.dataproc.alive(),
        Vec::<String>::new(),
        "a cluster was left alive after the failure"
    );
    recorded_cause(&r.env, step)
}

/// Calls of `method` to one API (`sql.`, `bigquery.`, `dataproc.`).
fn calls_to(r: &Rehearsal, api: &str, method: &str) -> Vec<gcp_fakes::front::Logged> {
    r.stack
        .front
        .calls(method)
        .into_iter()
        .filter(|c| c.id.starts_with(api))
        .collect()
}

/// The id a `…/{id}/cancel` call names.
fn cancelled(call: &gcp_fakes::front::Logged) -> String {
    let path = call.path.trim_end_matches("/cancel");
    path.rsplit('/').next().unwrap().to_owned()
}

/// Step 0's first import stays RUNNING: the run stops waiting at
/// `deadlines.cloudsql_operation_secs`, cancels the operation (which ends
/// it DONE with an error and frees the instance) and fails step 0.
#[tokio::test(flavor = "multi_thread")]
async fn a_cloud_sql_import_that_never_finishes_fails_step_0_and_resumes() {
    let r = Rehearsal::start().await;
    r.infra(&["up", "--yes"]).ok();
    r.stack.sql.stall_next_operation(1);
    let run = infra_with(
        &r,
        &[("INFRA_DEADLINES_CLOUDSQL_OPERATION_SECS", "2")],
        &["run", "--data", &r.data()],
    );
    let cause = assert_step_failed(&r, &run, 0, "load_purchases");
    assert!(
        cause.contains("did not finish within 2s")
            && cause.contains("console.cloud.google.com/sql/instances/"),
        "{cause}"
    );
    assert!(
        run.stderr.contains("deadlines.cloudsql_operation_secs"),
        "{}",
        run.stderr
    );
    // Nothing was imported after the stuck operation, which was cancelled.
    assert_eq!(calls_to(&r, "sql.", "instances.import").len(), 1);
    let cancels = calls_to(&r, "sql.", "operations.cancel");
    assert_eq!(cancels.len(), 1, "{cancels:?}");
    let operation = cancelled(&cancels[0]);
    assert!(cause.contains(&operation), "{cause}");
    let (status, error) = r.stack.sql.operation_state(&operation).unwrap();
    assert_eq!(status, "DONE");
    assert!(error.is_some_and(|e| e.contains("cancelled")));

    r.infra(&["run", "--from", "0"]).ok();
    r.assert_clean();
}

/// The tokenizer's driver never ends: at `deadlines.dataproc_job_secs`
/// step 2 fails, the job is cancelled (CANCELLED in the stand-in, its
/// spark-submit killed) and the cluster deleted.
#[tokio::test(flavor = "multi_thread")]
async fn a_dataproc_job_stuck_running_is_cancelled_and_its_cluster_deleted() {
    let r = Rehearsal::start().await;
    r.infra(&["up", "--yes"]).ok();
    r.stack
        .dataproc
        .stall_script("tokenizer.py", &["rehearsal: the tokenizer is stuck"]);
    let run = infra_with(
        &r,
        &[("INFRA_DEADLINES_DATAPROC_JOB_SECS", "3")],
        &["run", "--data", &r.data()],
    );
    let cause = assert_step_failed(&r, &run, 2, "tokenize");
    assert!(
        cause.contains("did not finish within 3s")
            && cause.contains("console.cloud.google.com/dataproc/jobs/"),
        "{cause}"
    );
    let jobs = r.stack.dataproc.jobs();
    let [job] = jobs.as_slice() else {
        panic!("one job was expected: {jobs:?}")
    };
    assert!(cause.contains(job.as_str()), "{cause}");
    let cancels = calls_to(&r, "dataproc.", "jobs.cancel");
    assert!(
        cancels.iter().any(|c| c.path.contains(job.as_str())),
        "job {job} was not cancelled: {cancels:?}"
    );
    assert_eq!(
        r.stack.dataproc.job_state(job).as_deref(),
        Some("CANCELLED")
    );
    let deletes = calls_to(&r, "dataproc.", "clusters.delete");
    assert_eq!(deletes.len(), 1, "the cluster was not deleted");
    assert!(deletes[0].at > cancels[0].at, "deleted before the cancel");
    assert!(r.stack.dataproc.running().is_empty(), "a driver still runs");

    r.infra(&["run", "--from", "2"]).ok();
    r.assert_clean();
}

/// Step 4's load job stays RUNNING: at `deadlines.bigquery_job_secs` the
/// run cancels it (DONE, reason `stopped`) and fails step 4; no table
/// came of it, and the resumed run loads it.
#[tokio::test(flavor = "multi_thread")]
async fn a_bigquery_load_that_never_finishes_fails_step_4_and_resumes() {
    let r = Rehearsal::start().await;
    r.infra(&["up", "--yes"]).ok();
    r.stack.bigquery.stall_next_load(1);
    let run = infra_with(
        &r,
        &[("INFRA_DEADLINES_BIGQUERY_JOB_SECS", "2")],
        &["run", "--data", &r.data()],
    );
    let cause = assert_step_failed(&r, &run, 4, "load_warehouse");
    assert!(
        cause.contains("did not finish within 2s")
            && cause.contains("console.cloud.google.com/bigquery"),
        "{cause}"
    );
    let cancels = calls_to(&r, "bigquery.", "jobs.cancel");
    assert_eq!(cancels.len(), 1, "{cancels:?}");
    let job = cancelled(&cancels[0]);
    assert!(cause.contains(&job), "{cause}");
    assert_eq!(
        r.stack.bigquery.job_state(&job),
        Some(("DONE".to_owned(), Some("stopped".to_owned())))
    );
    let count = "SELECT count(*) FROM bootcamp.user_behavior_metric";
    assert!(
        r.stack.bigquery.query_text(count).is_err(),
        "the cancelled load made a table"
    );

    r.infra(&["run", "--from", "4"]).ok();
    let rows = r.stack.bigquery.query_text(count).unwrap();
    assert_ne!(
        rows[0][0].as_deref(),
        Some("0"),
        "the resumed load is empty"
    );
    r.assert_clean();
}

/// fake-gcs-server, the Cloud Storage stand-in and a process of its own,
/// is stopped with SIGSTOP between steps 1 and 2. Step 2's first request
/// (does the reviews file exist?) goes through the storage front to the
/// stopped process: the kernel accepts it and nothing answers, as when a
/// server stops with a request in hand. Each attempt ends at
/// `deadlines.http_attempt_secs`, the call at `deadlines.http_call_secs`,
/// and step 2 fails before any cluster exists. (A stop half-way through an
/// answer's body is `gcp::deadlines::a_stand_in_stopped_mid_request_is_caught`.)
#[tokio::test(flavor = "multi_thread")]
async fn a_stand_in_stopped_with_sigstop_fails_the_step_within_the_http_limits() {
    let r = Rehearsal::start().await;
    r.infra(&["up", "--yes"]).ok();
    let hold = Hold {
        dir: r.env.path().join("holds"),
    };
    std::fs::create_dir_all(&hold.dir).unwrap();
    hold.set("after-1");
    let child = r
        .env
        .command(&["run", "--data", &r.data()])
        .env(infra::hold::ENV, &hold.dir)
        .env("INFRA_DEADLINES_HTTP_ATTEMPT_SECS", "3")
        .env("INFRA_DEADLINES_HTTP_CALL_SECS", "8")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("step 1 to finish", || hold.reached("after-1"));
    let gcs = Pid::from_raw(r.stack.gcs.pid() as i32);
    kill(gcs, Signal::SIGSTOP).unwrap();
    /// Continues the stand-in whatever the test's outcome.
    struct Continue(Pid);
    impl Drop for Continue {
        fn drop(&mut self) {
            let _ = kill(self.0, Signal::SIGCONT);
        }
    }
    let stopped = Continue(gcs);
    hold.release("after-1");
    let (status, stderr) = exits(child);
    drop(stopped);
    let run = Run {
        status,
        stdout: String::new(),
        stderr,
    };
    let cause = assert_step_failed(&r, &run, 2, "tokenize");
    assert!(
        cause.contains("no success within the call's deadline of 8s")
            && cause.contains("no response within 3s"),
        "{cause}"
    );
    assert!(
        r.stack.front.calls("clusters.create").is_empty(),
        "a cluster was created"
    );

    r.infra(&["run", "--from", "2"]).ok();
    r.assert_clean();
}
