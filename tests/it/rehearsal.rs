//! The cloud rehearsal in CI: the real `infra` binary with `--target gcp`
//! against the executing stand-ins of `gcp-fakes` (fake-gcs-server, and
//! Dataproc, BigQuery and Cloud SQL fakes that check every request against
//! Google's discovery documents and do the work with spark-submit, DuckDB
//! and PostgreSQL), with the rehearsal's terraform_data root in place of
//! Google's resources. Each case asserts from the stand-ins' own records
//! that no cluster was left alive and no job ran twice.
//!
//! The data is small (`infra sample --scale 0.002`): each Spark job still
//! costs about ten seconds.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use gcp_fakes::front::Fault;
use gcp_fakes::stack::{Names, Stack, StackConfig};
use infra::backend::gcp::serviceusage::ServiceUsage;
use infra::backend::local::spark::SparkRuntime;

use crate::harness::{Env, Run};

const PROJECT: &str = "rehearsal-project";
const REGION: &str = "us-central1";
const RESULT_SQL: &str = "SELECT customer_id, amount_spent, review_count, review_score, insert_date FROM bootcamp.user_behavior_metric ORDER BY customer_id";

fn cache_dir() -> PathBuf {
    match std::env::var_os("INFRA_CACHE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/infra"),
    }
}

pub(crate) struct Rehearsal {
    pub(crate) stack: Stack,
    pub(crate) env: Env,
    data: PathBuf,
}

impl Rehearsal {
    /// Stand-ins up, the environment pointing infra at them, sample data written.
    pub(crate) async fn start() -> Rehearsal {
        Rehearsal::start_as(None).await
    }

    /// As [`Rehearsal::start`], with `operator` (a `user:` member) running
    /// `up` from an `authorized_user` file instead of a service-account key.
    pub(crate) async fn start_as(operator: Option<&str>) -> Rehearsal {
        let env = Env::new();
        let spark_home = SparkRuntime::new(&cache_dir()).ensure().await.unwrap();
        let config = StackConfig {
            documents: gcp_fakes::venv::documents_dir().unwrap(),
            work: env.path().join("fakes"),
            fake_gcs_binary: gcp_fakes::venv::fake_gcs_binary().unwrap(),
            spark_submit: spark_home.join("bin/spark-submit"),
            spark_master: "local[2]".into(),
            names: Names {
                operator: operator.map_or_else(
                    || Names::for_project(PROJECT, REGION).operator,
                    str::to_owned,
                ),
                ..Names::for_project(PROJECT, REGION)
            },
            cluster_startup: Duration::from_millis(500),
            log: Some(env.path().join("requests.jsonl")),
            revoke: Vec::new(),
        };
        let stack = Stack::start(&config).await.unwrap();
        let credentials = env.path().join("TEST-ONLY-credentials.json");
        stack.write_credentials(&credentials).unwrap();
        let root = env.path().join("terraform");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/gcp-fakes/terraform/main.tf"),
            root.join("main.tf"),
        )
        .unwrap();
        let tf_config = env.write("terraformrc", "");
        let mut env = env;
        for (k, v) in stack.env(&credentials) {
            env = env.var(&k, &v);
        }
        env = env
            .var("INFRA_TERRAFORM_ROOT", &root.display().to_string())
            .var("TF_CLI_CONFIG_FILE", &tf_config.display().to_string())
            .var("INFRA_TARGET", "gcp")
            .var("INFRA_PROJECT", PROJECT)
            .var("INFRA_REGION", REGION);
        // No local server to tear down: `down` goes to the stand-ins.
        env.teardown = false;
        let data = env.path().join("data");
        env.infra(&[
            "sample",
            "--out",
            &data.display().to_string(),
            "--scale",
            "0.002",
            "--seed",
            "3",
        ])
        .ok();
        Rehearsal { stack, env, data }
    }

    pub(crate) fn infra(&self, args: &[&str]) -> Run {
        self.env.infra(args)
    }

    pub(crate) fn data(&self) -> String {
        self.data.display().to_string()
    }

    /// `infra run --data …` as a child process, for signals.
    pub(crate) fn spawn_run(&self) -> tokio::process::Child {
        let mut cmd =
            tokio::process::Command::from(self.env.command(&["run", "--data", &self.data()]));
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Waits until a spark-submit of a job whose id contains `name` runs.
    async fn wait_running(&self, name: &str) -> String {
        let start = Instant::now();
        loop {
            if let Some(id) = self
                .stack
                .dataproc
                .running()
                .into_iter()
                .find(|id| id.contains(name))
            {
                return id;
            }
            assert!(
                start.elapsed() < Duration::from_secs(240),
                "no {name} job started running"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What every case must end with: no cluster alive, no job run twice,
    /// and no request that broke the discovery contract.
    #[track_caller]
    pub(crate) fn assert_clean(&self) {
        assert_eq!(
            self.stack.dataproc.alive(),
            Vec::<String>::new(),
            "a cluster was left alive"
        );
        for (id, runs) in self.stack.dataproc.executions() {
            assert_eq!(runs, 1, "job {id} ran {runs} times");
        }
        self.stack.front.assert_clean();
    }
}

pub(crate) async fn output(child: tokio::process::Child) -> Run {
    let out = child.wait_with_output().await.unwrap();
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Rows without the last column (insert_date differs between runs).
fn rows_without_insert_date(csv: &str) -> Vec<String> {
    csv.lines()
        .map(|line| {
            line.rsplit_once(',')
                .map_or(line, |(rest, _)| rest)
                .to_owned()
        })
        .collect()
}

fn signal(child: &tokio::process::Child, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, sig).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rehearsal_gives_the_local_targets_rows() {
    let r = Rehearsal::start().await;
    r.infra(&["up", "--yes"]).ok();
    r.infra(&["run", "--data", &r.data()]).ok();
    let gcp = r
        .infra(&["query", "--format", "csv", RESULT_SQL])
        .ok()
        .stdout;
    r.infra(&["down", "--yes"]).ok();

    let local = Env::new();
    local.infra(&["up"]).ok();
    local.infra(&["run", "--data", &r.data()]).ok();
    let expected = local
        .infra(&["query", "--format", "csv", RESULT_SQL])
        .ok()
        .stdout;

    assert!(
        gcp.starts_with("customer_id,amount_spent,review_count,review_score,insert_date\n"),
        "{gcp}"
    );
    assert!(gcp.lines().count() > 10, "too few rows to compare:\n{gcp}");
    assert_eq!(
        rows_without_insert_date(&gcp),
        rows_without_insert_date(&expected)
    );
    // One cluster for the run, and both jobs on it.
    assert_eq!(r.stack.front.calls("clusters.create").len(), 1);
    assert_eq!(r.stack.dataproc.executions().len(), 2);
    r.assert_clean();
}

/// `up` applies the Airflow root after the main one (the helm provider
/// cannot reach a cluster that does not exist yet), and `down` destroys it
/// first (its release lives on the cluster the main root destroys);
/// `down --dry-run` only shows its plan. The ready Airflow root stands in
/// for the rendered one (no helm provider here): a terraform_data whose
/// create and destroy provisioners fail unless the main root's outputs are
/// saved, i.e. unless the main root is up, and log each step.
#[tokio::test(flavor = "multi_thread")]
async fn up_applies_the_airflow_root_after_the_main_one_and_down_destroys_it_first() {
    let r = Rehearsal::start().await;
    let log = r.env.path().join("airflow.log");
    let outputs = r.env.state().join("gcp/outputs.json");
    let root = r.env.path().join("terraform-airflow");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("main.tf"),
        format!(
            r#"resource "terraform_data" "release" {{
  input = "{log}"
  provisioner "local-exec" {{
    command = "test -f '{outputs}' && echo applied-after-main >> '${{self.input}}'"
  }}
  provisioner "local-exec" {{
    when    = destroy
    command = "test -f '{outputs}' && echo destroyed-before-main >> '${{self.input}}'"
  }}
}}
"#,
            log = log.display(),
            outputs = outputs.display(),
        ),
    )
    .unwrap();
    let env = |args: &[&str]| {
        r.env
            .command(args)
            .env("INFRA_TERRAFORM_AIRFLOW_ROOT", &root)
            .output()
            .unwrap()
    };
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();

    let up = env(&["up", "--yes"]);
    let up_err = String::from_utf8_lossy(&up.stderr);
    assert!(up.status.success(), "{up_err}");
    assert!(
        up_err.contains("plan for Airflow on the GKE cluster"),
        "{up_err}"
    );
    assert_eq!(logged(), "applied-after-main\n");

    let dry = env(&["down", "--dry-run"]);
    let dry_err = String::from_utf8_lossy(&dry.stderr);
    assert!(dry.status.success(), "{dry_err}");
    assert!(
        dry_err.contains("destroy plan for Airflow on the GKE cluster (first)"),
        "{dry_err}"
    );
    assert_eq!(logged(), "applied-after-main\n", "--dry-run destroyed");
    assert!(outputs.exists(), "--dry-run destroyed the main root");

    let down = env(&["down", "--yes"]);
    let down_err = String::from_utf8_lossy(&down.stderr);
    assert!(down.status.success(), "{down_err}");
    let (airflow, main) = (
        down_err.find("destroy plan for Airflow").unwrap(),
        down_err.find("destroy plan for project").unwrap(),
    );
    assert!(airflow < main, "{down_err}");
    assert_eq!(logged(), "applied-after-main\ndestroyed-before-main\n");
    assert!(!outputs.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_step_3_job_deletes_the_cluster_and_quotes_its_driver_output() {
    let r = Rehearsal::start().await;
    r.infra(&["up", "--yes"]).ok();
    r.stack.dataproc.break_script(
        "user_behavior.py",
        &[
            "rehearsal: reading purchases",
            "rehearsal: the last words of the driver",
        ],
    );
    let run = r.infra(&["run", "--data", &r.data()]);
    assert_ne!(run.status, 0, "the run succeeded:\n{}", run.stderr);
    assert!(
        run.stderr.contains("user_behavior"),
        "the error does not name the job:\n{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("rehearsal: the last words of the driver"),
        "the error does not quote the driver output:\n{}",
        run.stderr
    );
    assert_eq!(
        r.stack.front.calls("clusters.delete").len(),
        1,
        "the cluster was not deleted"
    );
    r.assert_clean();
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_during_step_2_cancels_the_job_and_deletes_the_cluster() {
    let r = Rehearsal::start().await;
    r.infra(&["up", "--yes"]).ok();
    let child = r.spawn_run();
    let job = r.wait_running("tokenizer").await;
    signal(&child, nix::sys::signal::Signal::SIGINT);
    let run = output(child).await;
    assert_eq!(run.status, 130, "{}", run.stderr);
    let cancels = r.stack.front.calls("jobs.cancel");
    assert!(
        cancels.iter().any(|c| c.path.contains(&job)),
        "job {job} was not cancelled"
    );
    let start = Instant::now();
    while r.stack.dataproc.job_state(&job).as_deref() != Some("CANCELLED") {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "job {job} is {:?}",
            r.stack.dataproc.job_state(&job)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    r.assert_clean();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_503_burst_and_a_429_while_polling_are_survived() {
    let r = Rehearsal::start().await;
    r.infra(&["up", "--yes"]).ok();
    r.stack.front.inject(
        "jobs.get",
        3,
        Fault::Status {
            code: 503,
            retry_after: None,
        },
    );
    r.stack.front.inject(
        "operations.get",
        1,
        Fault::Status {
            code: 429,
            retry_after: Some(1),
        },
    );
    // `--data` starts at step 0 (it replaces the inputs): the whole run
    // meets the faults, the Cloud SQL and Dataproc operations included.
    r.infra(&["run", "--data", &r.data()]).ok();
    let gets = r.stack.front.calls("jobs.get").len();
    assert!(
        gets > 3,
        "the job was polled only {gets} times: the faults were not met"
    );
    assert!(!r.stack.front.calls("operations.get").is_empty());
    r.infra(&["down", "--yes"]).ok();
    r.assert_clean();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_after_sigkill_re_attaches_to_the_job_in_flight() {
    let r = Rehearsal::start().await;
    r.infra(&["up", "--yes"]).ok();
    let child = r.spawn_run();
    let job = r.wait_running("tokenizer").await;
    signal(&child, nix::sys::signal::Signal::SIGKILL);
    output(child).await;
    r.infra(&["run", "--data", &r.data()]).ok();
    assert_eq!(
        r.stack.front.calls("clusters.create").len(),
        1,
        "the re-run created a second cluster"
    );
    let tokenizers: Vec<String> = r
        .stack
        .dataproc
        .executions()
        .into_keys()
        .filter(|id| id.contains("tokenizer"))
        .collect();
    assert_eq!(tokenizers, [job], "the re-run ran the tokenizer again");
    r.infra(&["down", "--yes"]).ok();
    r.assert_clean();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_cloud_sql_import_leaves_the_previous_table() {
    let r = Rehearsal::start().await;
    r.infra(&["up", "--yes"]).ok();
    r.infra(&["run", "--data", &r.data(), "--only", "0"]).ok();
    let count = "SELECT count(*) FROM bootcampdb.user_purchase";
    let before = r.stack.sql.query(count).await.unwrap();
    assert!(before.parse::<u64>().unwrap() > 0, "step 0 loaded nothing");

    // A second load of other data, whose CSV import PostgreSQL rejects.
    let other = r.env.path().join("other");
    r.infra(&[
        "sample",
        "--out",
        &other.display().to_string(),
        "--scale",
        "0.001",
        "--seed",
        "9",
    ])
    .ok();
    r.stack.sql.corrupt_csv_imports(1);
    let run = r.infra(&["run", "--data", &other.display().to_string(), "--only", "0"]);
    assert_ne!(
        run.status, 0,
        "the failed import was not reported:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("unterminated CSV quoted field"),
        "the error does not quote the operation's error:\n{}",
        run.stderr
    );
    assert_eq!(
        r.stack.sql.query(count).await.unwrap(),
        before,
        "the failed import changed the table"
    );
    r.infra(&["down", "--yes"]).ok();
    r.assert_clean();
}

/// `doctor` asks Service Usage which of the APIs the deployment needs are
/// still off: all of them on a new project, none once they are enabled.
#[tokio::test(flavor = "multi_thread")]
async fn doctor_reads_which_required_apis_are_off() {
    let r = Rehearsal::start().await;
    let apis = infra::terraform::leftovers::enabled_apis();
    let before = r.infra(&["doctor"]).fails(1).stdout;
    assert!(before.contains("✗ required APIs"), "{before}");
    assert!(
        before.contains(&format!("{0} of {0} not enabled", apis.len()))
            && before.contains("sqladmin.googleapis.com")
            && before.contains(&format!("gcloud services enable --project {PROJECT} ")),
        "{before}"
    );

    // As the operator: the stand-ins enforce IAM, so the token must name one.
    let token = r.stack.front.iam().unwrap().mint(&r.stack.names.operator);
    let http = infra::backend::gcp::http::Http::new(
        std::sync::Arc::new(infra::backend::gcp::auth::StaticToken::new(token)),
        crate::gcp::fast_policy(),
    )
    .unwrap();
    let services = ServiceUsage::new(
        http,
        &r.stack.urls.serviceusage,
        PROJECT,
        Duration::from_millis(10),
    );
    services.batch_enable(&apis).await.unwrap();
    let after = r.infra(&["doctor"]).ok().stdout;
    assert!(
        after.contains("✓ required APIs")
            && after.contains(&format!("all {} enabled", apis.len()))
            && after.contains("everything the gcp target needs is here"),
        "{after}"
    );
    let asked = r.stack.front.calls("services.batchGet");
    assert_eq!(asked.len(), 2, "one batchGet per doctor");

    // No route to Service Usage: not checked, which is not a gap.
    let out = r
        .env
        .command(&["doctor"])
        .env("INFRA_ENDPOINTS_SERVICEUSAGE", "http://127.0.0.1:9")
        .output()
        .unwrap();
    let unreachable = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{unreachable}");
    assert!(
        unreachable.contains("- required APIs             not checked:")
            && unreachable.contains("1 check(s) could not be made from here"),
        "{unreachable}"
    );
    r.assert_clean();
}

/// Step 0's `rows_out` in the `--json` summary of `run`.
fn rows_loaded(run: &Run) -> u64 {
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    summary["steps"][0]["rows_out"].as_u64().unwrap()
}

/// The table holds exactly the rows step 0 of `run` loaded: once each.
async fn assert_loaded_once(r: &Rehearsal, run: &Run) {
    let count = r
        .stack
        .sql
        .query("SELECT count(*) FROM bootcampdb.user_purchase")
        .await
        .unwrap();
    assert_eq!(count.parse::<u64>().unwrap(), rows_loaded(run));
}

/// Cloud SQL runs one operation at a time: an import that meets the
/// instance's backup window is refused 409 `operationInProgress`. The load
/// waits for the backup, sends the import again, and loads every row once.
#[tokio::test(flavor = "multi_thread")]
async fn a_load_that_meets_the_backup_window_waits_and_loads_once() {
    let r = Rehearsal::start().await;
    r.infra(&["up", "--yes"]).ok();
    r.stack
        .sql
        .backup_at_next_import(Duration::from_millis(1500));
    let run = r
        .infra(&["run", "--data", &r.data(), "--only", "0", "--json"])
        .ok();
    let refused: Vec<_> = r
        .stack
        .front
        .events()
        .into_iter()
        .filter(|e| e.get("refused").is_some())
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        r.stack.front.calls("instances.import").len(),
        4,
        "three imports, one of them sent twice"
    );
    assert!(!r.stack.front.calls("operations.list").is_empty());
    assert!(
        run.stderr.contains("busy with BACKUP_VOLUME operation"),
        "{}",
        run.stderr
    );
    assert_loaded_once(&r, &run).await;
    r.infra(&["down", "--yes"]).ok();
    r.assert_clean();
}

/// A swap that fails without saying so (the import reported DONE with no
/// error) must not pass: step 1 finds the table does not hold the rows
/// step 0 loaded in this run, and fails naming both counts.
#[tokio::test(flavor = "multi_thread")]
async fn a_swap_that_fails_unreported_is_caught_by_step_1() {
    let r = Rehearsal::start().await;
    r.infra(&["up", "--yes"]).ok();
    let first = r
        .infra(&["run", "--data", &r.data(), "--only", "0", "--json"])
        .ok();
    let before = rows_loaded(&first);

    // The next load's CSV import loses a row, so its swap raises; Cloud SQL
    // reports the swap's import DONE without an error.
    r.stack.sql.short_csv_imports(1);
    r.stack.sql.silent_sql_failures(1);
    let other = r.env.path().join("other");
    r.infra(&[
        "sample",
        "--out",
        &other.display().to_string(),
        "--scale",
        "0.001",
        "--seed",
        "9",
    ])
    .ok();
    let second = r
        .infra(&[
            "run",
            "--data",
            &other.display().to_string(),
            "--only",
            "0",
            "--json",
        ])
        .ok();
    let claimed = rows_loaded(&second);
    assert_ne!(claimed, before, "the two samples must differ in size");
    let count = "SELECT count(*) FROM bootcampdb.user_purchase";
    assert_eq!(
        r.stack.sql.query(count).await.unwrap(),
        before.to_string(),
        "the swap was meant to fail"
    );

    let dump = r.infra(&["run", "--only", "1"]);
    assert_ne!(dump.status, 0, "step 1 passed:\n{}", dump.stderr);
    assert!(
        dump.stderr.contains(&format!(
            "holds {before} rows, but step 0 loaded {claimed} in this run"
        )),
        "{}",
        dump.stderr
    );
    r.infra(&["down", "--yes"]).ok();
    r.assert_clean();
}

/// Cloud SQL exports as `cloudsqlimportexport`, not as the table's owner:
/// step 0 grants it what step 1's export reads, and without that grant the
/// export fails with PostgreSQL's own "permission denied".
#[tokio::test(flavor = "multi_thread")]
async fn the_export_user_reads_the_table_through_step_0s_grant() {
    let r = Rehearsal::start().await;
    r.infra(&["up", "--yes"]).ok();
    r.infra(&["run", "--data", &r.data(), "--only", "0"]).ok();
    let can_read =
        "SELECT has_table_privilege('cloudsqlimportexport', 'bootcampdb.user_purchase', 'SELECT')";
    assert_eq!(r.stack.sql.query(can_read).await.unwrap(), "t");
    assert_eq!(
        r.stack
            .sql
            .query("SELECT rolsuper FROM pg_roles WHERE rolname = 'cloudsqlimportexport'")
            .await
            .unwrap(),
        "f"
    );
    r.stack
        .sql
        .query("REVOKE SELECT ON bootcampdb.user_purchase FROM cloudsqlimportexport")
        .await
        .unwrap();
    let dump = r.infra(&["run", "--only", "1"]);
    assert_ne!(dump.status, 0, "the export read an ungranted table");
    assert!(
        dump.stderr
            .contains("permission denied for table user_purchase"),
        "{}",
        dump.stderr
    );
    r.infra(&["down", "--yes"]).ok();
    r.assert_clean();
}

/// Cloud SQL's CSV import takes one line per row, and the stand-in refuses
/// a quoted line break. Descriptions may hold one (`\n`, `\r\n`): step 0
/// sends those rows through a SQL import of their own, and they reach the
/// table byte for byte, with every other row.
#[tokio::test(flavor = "multi_thread")]
async fn rows_with_line_breaks_in_a_field_arrive_intact() {
    let r = Rehearsal::start().await;
    r.infra(&["up", "--yes"]).ok();
    let input = Path::new(&r.data()).join("user_purchase.csv");
    let mut csv = std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .unwrap();
    std::io::Write::write_all(
        &mut csv,
        concat!(
            "LB1,85123A,\"two\nlines\",6,12/1/2010 8:26,2.55,17850,United Kingdom\n",
            "LB2,85123A,\"crlf\r\nend \"\"q\"\" it's \\\",1,12/1/2010 8:26,1.5,,France\n",
        )
        .as_bytes(),
    )
    .unwrap();
    drop(csv);
    let run = r
        .infra(&["run", "--data", &r.data(), "--only", "0", "--json"])
        .ok();
    assert_loaded_once(&r, &run).await;
    let intact = r
        .stack
        .sql
        .query(
            "SELECT count(*) FROM bootcampdb.user_purchase WHERE \
             (invoice_number, detail, customer_id) IS NOT DISTINCT FROM ('LB1', E'two\\nlines', 17850) \
             OR (invoice_number, detail, customer_id, unit_price) IS NOT DISTINCT FROM \
             ('LB2', E'crlf\\r\\nend \"q\" it''s \\\\', NULL::int, 1.5)",
        )
        .await
        .unwrap();
    assert_eq!(intact, "2", "the rows with line breaks are not as read");
    let imports = r.stack.front.calls("instances.import");
    let files: Vec<_> = imports
        .iter()
        .map(|c| c.body["importContext"]["uri"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        files[2].ends_with("/2-rows-with-line-breaks.sql"),
        "{files:?}"
    );
    r.infra(&["down", "--yes"]).ok();
    r.assert_clean();
}

/// Right after `up`, the Cloud SQL instance's new bucket grant may still be
/// propagating, and Cloud SQL refuses the import with its 403 for the
/// bucket. Step 0 sends it again until the grant holds, saying why.
#[tokio::test(flavor = "multi_thread")]
async fn an_import_refused_while_the_bucket_grant_propagates_is_sent_again() {
    let r = Rehearsal::start().await;
    r.infra(&["up", "--yes"]).ok();
    let account = format!("serviceAccount:{}", r.stack.names.cloudsql_account);
    r.stack
        .front
        .iam()
        .unwrap()
        .propagate(&account, Duration::from_secs(2));
    let run = r
        .infra(&["run", "--data", &r.data(), "--only", "0", "--json"])
        .ok();
    assert!(
        run.stderr.contains("cannot use the bucket yet") && run.stderr.contains("up to 7"),
        "{}",
        run.stderr
    );
    let refused = r
        .stack
        .front
        .events()
        .into_iter()
        .filter(|e| {
            e["event"] == "denied" && e["path"].as_str().is_some_and(|p| p.ends_with("/import"))
        })
        .count();
    assert!(refused >= 1, "no import was refused");
    assert_eq!(
        r.stack.front.calls("instances.import").len(),
        3,
        "the refused import was not sent again, or one was taken twice"
    );
    assert_loaded_once(&r, &run).await;
    r.infra(&["down", "--yes"]).ok();
    r.assert_clean();
}
