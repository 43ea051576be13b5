//! `infra dags`: the rendered DAG folder for two configurations (insta
//! snapshots), and real Airflow (3.3, with the Google provider, from
//! `requirements-airflow.txt`) loading it with `DagBag`: no import error,
//! the task ids and dependencies, the cluster's delete on ALL_DONE, and
//! every request body a valid message of the client library the operator
//! sends it with.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::Env;

/// A deployment as `up` saves it (`<state>/gcp/outputs.json`).
fn deployment(env: &Env, deployment: &str, project: &str, region: &str) {
    let dir = env.state().join("gcp");
    std::fs::create_dir_all(&dir).unwrap();
    let outputs = serde_json::json!({
        "project": project,
        "region": region,
        "deployment": deployment,
        "raw_bucket": format!("{project}-{deployment}-raw-1a2b"),
        "staging_bucket": format!("{project}-{deployment}-staging-1a2b"),
        "code_bucket": format!("{project}-{deployment}-code-1a2b"),
        "sql_connection_name": format!("{project}:{region}:{deployment}-pg"),
        "sql_instance": format!("{deployment}-pg"),
        "database_name": "bootcampdb",
        "database_user": "bootcamp",
        "service_account_email": format!("{deployment}-pipeline@{project}.iam.gserviceaccount.com"),
        "subnetwork": format!("projects/{project}/regions/{region}/subnetworks/{deployment}-subnet"),
        "dataset": "bootcamp",
    });
    std::fs::write(dir.join("outputs.json"), outputs.to_string()).unwrap();
}

fn default_env() -> Env {
    let env = Env::new().var("INFRA_PROJECT", "my-project");
    deployment(&env, "infra", "my-project", "us-central1");
    env
}

fn non_default_env() -> Env {
    let env = Env::new()
        .var("INFRA_PROJECT", "acme-data")
        .var("INFRA_REGION", "europe-west1")
        .var("INFRA_DEPLOYMENT", "nightly-etl")
        .var("INFRA_AIRFLOW_SCHEDULE", "0 3 * * *")
        .var("INFRA_WAREHOUSE_DATASET", "analytics")
        .var("INFRA_WAREHOUSE_TABLE", "behaviour")
        .var("INFRA_DATAPROC_IMAGE_VERSION", "2.2-debian12")
        .var("INFRA_DATAPROC_WORKERS", "5")
        .var("INFRA_DATAPROC_WORKER_MACHINE_TYPE", "n2-highmem-4")
        .var("INFRA_DATAPROC_IDLE_TTL_SECS", "600")
        .var("INFRA_DATAPROC_MAX_AGE_SECS", "7200")
        .var(
            "INFRA_SPARK_PROPERTIES",
            "spark.sql.shuffle.partitions=64,spark.executor.memory=6g",
        );
    deployment(&env, "nightly-etl", "acme-data", "europe-west1");
    env
}

/// Renders the DAG folder into `<env>/dags` and returns it.
fn render(env: &Env) -> PathBuf {
    let dir = env.path().join("dags");
    let out = env
        .infra(&["--target", "gcp", "dags", "-o", dir.to_str().unwrap()])
        .ok();
    assert_eq!(out.stdout.trim(), dir.display().to_string());
    dir
}

fn dag_file(dir: &Path) -> (String, String) {
    let mut dags: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "py")
                && p.file_name().is_some_and(|n| n != "infra_purchases.py")
        })
        .collect();
    assert_eq!(dags.len(), 1, "{dags:?}");
    let path = dags.pop().unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    (name, std::fs::read_to_string(path).unwrap())
}

#[test]
fn the_default_dag_renders_for_the_deployment() {
    let env = default_env();
    let dir = render(&env);
    let (name, text) = dag_file(&dir);
    assert_eq!(name, "infra_pipeline.py");
    insta::assert_snapshot!("dag_default", text);
    // The validator ships beside it unchanged, and the SQL the imports need.
    assert_eq!(
        std::fs::read_to_string(dir.join("infra_purchases.py")).unwrap(),
        include_str!("../../templates/airflow/infra_purchases.py")
    );
    let swap = std::fs::read_to_string(dir.join("sql/3-swap.sql.tmpl")).unwrap();
    assert!(swap.contains("IF n <> __ROWS__ THEN"), "{swap}");
    let create = std::fs::read_to_string(dir.join("sql/1-create.sql")).unwrap();
    assert!(
        create.contains("CREATE TABLE bootcampdb.user_purchase_load (LIKE bootcampdb.user_purchase INCLUDING ALL);"),
        "{create}"
    );
}

#[test]
fn a_non_default_dag_carries_every_setting() {
    let (name, text) = dag_file(&render(&non_default_env()));
    assert_eq!(name, "nightly-etl_pipeline.py".replace('-', "_"));
    insta::assert_snapshot!("dag_non_default", text);
}

#[test]
fn dags_refuses_serverless_mode_and_an_unprovisioned_deployment() {
    let env = default_env().var("INFRA_SPARK_MODE", "serverless");
    let out = env.infra(&["--target", "gcp", "dags"]).fails(1);
    assert!(out.stderr.contains("spark.mode"), "{}", out.stderr);
    let env = Env::new().var("INFRA_PROJECT", "my-project");
    let out = env.infra(&["--target", "gcp", "dags"]).fails(1);
    assert!(
        out.stderr.contains("infra --target gcp up"),
        "{}",
        out.stderr
    );
}

/// The Airflow venv scripts/setup.sh builds from requirements-airflow.txt.
pub fn airflow_python() -> PathBuf {
    let venv = std::env::var_os("INFRA_AIRFLOW_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/infra/airflow-venv")
        });
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "Airflow is not installed at {}: run `SETUP_DEV=1 source scripts/setup.sh`, which builds it from requirements-airflow.txt, or point INFRA_AIRFLOW_VENV at such a venv",
        venv.display()
    );
    python
}

/// Loads `dir` with DagBag in a fresh AIRFLOW_HOME; returns what
/// `tests/it/airflow_dagbag.py` reports.
fn dagbag(dir: &Path) -> Value {
    let home = tempfile::tempdir().unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/airflow_dagbag.py");
    let out = Command::new(airflow_python())
        .arg(&script)
        .arg(dir)
        .env("AIRFLOW_HOME", home.path())
        .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        .env("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "DagBag failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn upstream(dag: &Value, task: &str) -> Vec<String> {
    let mut ids: Vec<String> = dag["tasks"][task]["upstream"]
        .as_array()
        .unwrap_or_else(|| panic!("no task {task}: {dag}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[test]
fn real_airflow_loads_the_rendered_dags() {
    for (env, dag_id, schedule) in [
        (default_env(), "infra_pipeline", Value::Null),
        (
            non_default_env(),
            "nightly_etl_pipeline",
            Value::from("0 3 * * *"),
        ),
    ] {
        let dir = render(&env);
        let bag = dagbag(&dir);
        assert_eq!(bag["import_errors"], serde_json::json!({}), "{bag}");
        let dag = &bag["dags"][dag_id];
        assert_eq!(dag["schedule"], schedule, "{bag}");
        let mut tasks: Vec<&str> = dag["tasks"]
            .as_object()
            .unwrap_or_else(|| panic!("no DAG {dag_id}: {bag}"))
            .keys()
            .map(String::as_str)
            .collect();
        tasks.sort_unstable();
        assert_eq!(
            tasks,
            [
                "add_header",
                "any_line_breaks",
                "check_load",
                "check_tokenizer",
                "check_user_behavior",
                "check_warehouse",
                "create_cluster",
                "create_load_table",
                "delete_cluster",
                "export_purchases",
                "import_rows",
                "import_rows_with_line_breaks",
                "load_warehouse",
                "swap_rows",
                "tokenizer",
                "user_behavior",
                "validate_purchases",
            ]
        );
        let chain: &[(&str, &[&str])] = &[
            ("validate_purchases", &[]),
            ("create_load_table", &["validate_purchases"]),
            ("import_rows", &["create_load_table"]),
            ("any_line_breaks", &["import_rows", "validate_purchases"]),
            ("import_rows_with_line_breaks", &["any_line_breaks"]),
            (
                "swap_rows",
                &["import_rows", "import_rows_with_line_breaks"],
            ),
            ("check_load", &["swap_rows", "validate_purchases"]),
            ("export_purchases", &["check_load"]),
            ("add_header", &["export_purchases"]),
            ("create_cluster", &["add_header"]),
            ("tokenizer", &["create_cluster"]),
            ("check_tokenizer", &["tokenizer"]),
            ("user_behavior", &["check_tokenizer"]),
            (
                "check_user_behavior",
                &["add_header", "check_tokenizer", "user_behavior"],
            ),
            ("load_warehouse", &["check_user_behavior"]),
            (
                "check_warehouse",
                &["check_user_behavior", "load_warehouse"],
            ),
            (
                "delete_cluster",
                &["create_cluster", "tokenizer", "user_behavior"],
            ),
        ];
        for (task, expected) in chain {
            assert_eq!(
                upstream(dag, task),
                *expected,
                "upstream of {task} in {dag_id}"
            );
        }
        let t = &dag["tasks"];
        assert_eq!(t["delete_cluster"]["trigger_rule"], "all_done");
        // The swap follows a skipped line-break import, never a failed one.
        assert_eq!(t["swap_rows"]["trigger_rule"], "none_failed");
        for task in [
            "create_cluster",
            "tokenizer",
            "user_behavior",
            "load_warehouse",
        ] {
            assert_eq!(t[task]["trigger_rule"], "all_success", "{task}");
        }
        assert_eq!(t["create_cluster"]["delete_on_error"], true);
        assert_eq!(t["create_cluster"]["use_if_exists"], true);
        assert_eq!(t["load_warehouse"]["write_disposition"], "WRITE_TRUNCATE");
        assert!(
            t["load_warehouse"]["location"].is_string(),
            "{}",
            t["load_warehouse"]
        );
        // The bodies are messages the client libraries accept, with the TTLs.
        let messages = &dag["messages"];
        assert_eq!(messages["errors"], serde_json::json!([]), "{bag}");
        let ttl = if dag_id == "infra_pipeline" {
            1800
        } else {
            600
        };
        assert_eq!(messages["idle_delete_ttl"], ttl, "{bag}");
        assert_eq!(
            messages["amount_spent"],
            serde_json::json!({"name": "amount_spent", "type": "BIGNUMERIC", "precision": "38", "scale": "3", "mode": "NULLABLE"})
        );
    }
}
