//! The DAG `infra dags` renders, run by real Airflow (3.3, `dag.test()`,
//! every task in one process with a SQLite metadata database) against the
//! rehearsal's stand-ins, on the rehearsal's sample data: it must give the
//! warehouse table `infra run --target gcp` gives, row for row, and leave
//! no Dataproc cluster alive.
//!
//! The provider's hooks have no endpoint setting (apache/airflow#53596), so
//! a TEST-ONLY `sitecustomize` (tests/it/airflow_shim, on PYTHONPATH for
//! this test's Python only) points them at the stand-ins: Cloud SQL's and
//! BigQuery's through `get_client_options`, Dataproc's GAPIC clients with
//! the REST transport, Cloud Storage through `STORAGE_EMULATOR_HOST`. The
//! shipped DAG is rendered and run unchanged. The DAG runs as the pipeline's
//! service account (a TEST-ONLY key for it), as the deployed DAG runs
//! through Workload Identity and `infra run` through impersonation.
//!
//! Every operator the DAG uses is pointed at a stand-in; none is left out.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};

use crate::airflow::airflow_python;
use crate::rehearsal::{RESULT_SQL, Rehearsal, rows_without_insert_date};

/// A TEST-ONLY key file for the pipeline's account: the stand-ins' token
/// endpoint takes its JWT-bearer grants, and its self-signed JWTs verify
/// with the test key.
fn pipeline_key(r: &Rehearsal) -> std::path::PathBuf {
    let path = r.env.path().join("TEST-ONLY-pipeline-key.json");
    let key = json!({
        "type": "service_account",
        "project_id": r.stack.names.project,
        "private_key_id": "rehearsal-test-only",
        "private_key": gcp_fakes::stack::TEST_KEY,
        "client_email": r.stack.names.service_account,
        "client_id": "2",
        "token_uri": r.stack.urls.token,
    });
    std::fs::write(&path, key.to_string()).unwrap();
    path
}

/// Python in the Airflow venv, in a fresh AIRFLOW_HOME, with the shim and
/// the stand-ins' environment.
fn airflow(r: &Rehearsal, home: &Path, dags: &Path, key: &Path) -> Command {
    let mut cmd = Command::new(airflow_python());
    let shim = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/airflow_shim");
    for (k, v) in r.stack.env(key) {
        cmd.env(k, v);
    }
    cmd.env("AIRFLOW_HOME", home)
        .env("AIRFLOW__CORE__DAGS_FOLDER", dags)
        .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        .env(
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
            format!("sqlite:///{}", home.join("airflow.db").display()),
        )
        .env(
            "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT",
            json!({"conn_type": "google_cloud_platform", "extra": {"project": r.stack.names.project}})
                .to_string(),
        )
        .env("PYTHONPATH", shim)
        .env("INFRA_AIRFLOW_SHIM", "1");
    cmd
}

fn check(what: &str, out: std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The logs of these tasks under AIRFLOW_HOME, for a failure's message.
fn task_logs<'a>(home: &Path, tasks: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    let mut files = Vec::new();
    let mut dirs = vec![home.join("logs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    for task in tasks {
        for file in files
            .iter()
            .filter(|f| f.to_string_lossy().contains(&format!("task_id={task}/")))
        {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            let tail: String = text
                .chars()
                .rev()
                .take(6000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            out.push_str(&format!("--- {}:\n{tail}\n", file.display()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dag_run_on_the_stand_ins_gives_the_gcp_runs_table() {
    let r = Rehearsal::start().await;
    r.infra(&["up", "--yes"]).ok();
    r.infra(&["run", "--data", &r.data()]).ok();
    let by_infra = r
        .infra(&["query", "--format", "csv", RESULT_SQL])
        .ok()
        .stdout;
    assert!(
        by_infra.lines().count() > 10,
        "too few rows to compare:\n{by_infra}"
    );
    let clusters_before = r.stack.front.calls("clusters.create").len();

    let dags = r.env.path().join("dags");
    r.infra(&["dags", "-o", dags.to_str().unwrap()]).ok();
    let home = r.env.path().join("airflow");
    std::fs::create_dir_all(&home).unwrap();
    let key = pipeline_key(&r);
    let started = Instant::now();
    check(
        "airflow db migrate",
        airflow(&r, &home, &dags, &key)
            .args(["-m", "airflow", "db", "migrate"])
            .output()
            .unwrap(),
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/airflow_run.py");
    let out = airflow(&r, &home, &dags, &key)
        .arg(&script)
        .arg(&dags)
        .arg("infra_pipeline")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = check("dag.test()", out);
    eprintln!(
        "airflow db migrate + dag.test(): {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let last = stdout.lines().last().unwrap_or_default();
    let run: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    // Every task succeeded; the sample has no row with a line break in a
    // field, so the import of those rows was skipped, as the GCP run skips it.
    let tasks = run["tasks"].as_object().unwrap_or_else(|| panic!("{run}"));
    let not_done: Vec<_> = tasks
        .iter()
        .filter(|(id, state)| {
            let want = if *id == "import_rows_with_line_breaks" {
                "skipped"
            } else {
                "success"
            };
            *state != want
        })
        .collect();
    assert!(
        run["state"] == "success" && not_done.is_empty(),
        "the DAG run is {}; tasks not as expected: {not_done:?}\n{}\nviolations: {:?}\nstderr:\n{stderr}",
        run["state"],
        task_logs(&home, not_done.iter().map(|(id, _)| id.as_str())),
        r.stack.front.violations()
    );
    assert_eq!(tasks.len(), 17, "{run}");

    // The table the DAG wrote: infra's rows, with the DAG run's insert_date.
    let by_dag = r
        .infra(&["query", "--format", "csv", RESULT_SQL])
        .ok()
        .stdout;
    assert!(
        by_dag.starts_with("customer_id,amount_spent,review_count,review_score,insert_date\n"),
        "{by_dag}"
    );
    assert_eq!(
        rows_without_insert_date(&by_dag),
        rows_without_insert_date(&by_infra)
    );
    let dates = |csv: &str| -> Vec<String> {
        let mut d: Vec<String> = csv
            .lines()
            .skip(1)
            .map(|l| l.rsplit_once(',').unwrap().1.to_owned())
            .collect();
        d.dedup();
        d
    };
    let (dag_dates, infra_dates) = (dates(&by_dag), dates(&by_infra));
    assert_eq!(dag_dates.len(), 1, "one insert_date per run: {dag_dates:?}");
    assert_ne!(
        dag_dates, infra_dates,
        "the table still holds infra's run, not the DAG's"
    );
    // The DAG run's start, to the second, in the form infra's run gives.
    let start = chrono::DateTime::parse_from_rfc3339(run["start_date"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    let form = |d: &str| {
        d.chars()
            .map(|c| if c.is_ascii_digit() { '0' } else { c })
            .collect::<String>()
    };
    assert_eq!(
        form(&dag_dates[0]),
        form(&infra_dates[0]),
        "{dag_dates:?} {infra_dates:?}"
    );
    assert!(
        dag_dates[0].starts_with(&start.format("%Y-%m-%d %H:%M:%S").to_string())
            || dag_dates[0].starts_with(&start.format("%Y-%m-%dT%H:%M:%S").to_string()),
        "insert_date {} is not the DAG run's start {start}",
        dag_dates[0]
    );

    // One cluster for the DAG run, deleted; both jobs ran on it, once each.
    let creates = r.stack.front.calls("clusters.create");
    assert_eq!(
        creates.len(),
        clusters_before + 1,
        "the DAG run made more than one cluster"
    );
    let name = creates.last().unwrap().body["clusterName"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        r.stack
            .front
            .calls("clusters.delete")
            .iter()
            .any(|c| c.path.ends_with(&format!("/clusters/{name}"))),
        "the DAG's cluster {name} was not deleted"
    );
    assert_eq!(r.stack.dataproc.executions().len(), 4, "two jobs per run");
    r.infra(&["down", "--yes"]).ok();
    r.assert_clean();
}
