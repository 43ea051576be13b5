//! `infra --target gcp` verbs that need no Google: built from the saved
//! outputs, a plan shows every request a run would send, and sends none
//! (no credentials exist in the test environment, so any request would
//! fail the command).

use crate::harness::Env;

const OUTPUTS: &str = r#"{
  "project": "proj",
  "region": "europe-west1",
  "deployment": "infra",
  "raw_bucket": "proj-raw",
  "staging_bucket": "proj-staging",
  "code_bucket": "proj-code",
  "sql_connection_name": "proj:europe-west1:infra-pg",
  "sql_instance": "infra-pg",
  "database_name": "bootcampdb",
  "database_user": "bootcamp",
  "service_account_email": "pipeline@proj.iam.gserviceaccount.com",
  "subnetwork": "infra-dataproc",
  "dataset": "bootcamp"
}"#;

fn deployed() -> Env {
    let env = Env::new()
        .var("INFRA_PROJECT", "proj")
        .var("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json");
    env.write("state/gcp/outputs.json", OUTPUTS);
    env
}

#[test]
fn a_gcp_dry_run_prints_every_request_and_sends_none() {
    let env = deployed();
    let out = env.infra(&["run", "--dry-run"]).ok().stdout;
    for want in [
        "step 0 load_purchases",
        "reads  gs://proj-raw/user_purchase.csv",
        "POST https://sqladmin.googleapis.com/v1/projects/proj/instances/infra-pg/import",
        "\"table\": \"bootcampdb.user_purchase_load\"",
        "POST https://sqladmin.googleapis.com/v1/projects/proj/instances/infra-pg/export",
        "\"selectQuery\": \"SELECT invoice_number, stock_code, detail, quantity, invoice_date, unit_price, customer_id, country FROM bootcampdb.user_purchase\"",
        "/storage/v1/b/proj-staging/o/user_purchase.csv/compose",
        "POST https://dataproc.googleapis.com/v1/projects/proj/regions/europe-west1/clusters?requestId=",
        "\"internalIpOnly\": true",
        "\"serviceAccount\": \"pipeline@proj.iam.gserviceaccount.com\"",
        "\"idleDeleteTtl\": \"1800s\"",
        "\"imageVersion\": \"3.0-debian12\"",
        "jobs:submit",
        "\"mainPythonFileUri\": \"gs://proj-code/tokenizer.py\"",
        "clusterUuid=CLUSTER-UUID",
        "POST https://bigquery.googleapis.com/bigquery/v2/projects/proj/jobs",
        "\"type\": \"BIGNUMERIC\"",
        "\"writeDisposition\": \"WRITE_TRUNCATE\"",
    ] {
        assert!(out.contains(want), "`{want}` missing from:\n{out}");
    }
    assert!(
        !env.state().join("runs").exists(),
        "a dry run wrote a run record"
    );
}

#[test]
fn serverless_mode_plans_batches_instead_of_a_cluster() {
    let env = deployed();
    let out = env
        .infra(&["run", "--dry-run", "--spark", "serverless", "--from", "2"])
        .ok()
        .stdout;
    assert!(
        out.contains("/v1/projects/proj/locations/europe-west1/batches?batchId="),
        "{out}"
    );
    assert!(out.contains("\"version\": \"3.0\""), "{out}");
    assert!(!out.contains("/clusters?"), "{out}");
    assert!(!out.contains("step 0"), "{out}");
}

#[test]
fn endpoints_come_from_settings() {
    let env = deployed()
        .var("INFRA_ENDPOINTS_DATAPROC", "http://127.0.0.1:9/dp")
        .var("INFRA_ENDPOINTS_SQLADMIN", "http://127.0.0.1:9/sql")
        .var("INFRA_ENDPOINTS_STORAGE", "http://127.0.0.1:9/gcs");
    let out = env.infra(&["run", "--dry-run"]).ok().stdout;
    assert!(
        out.contains("POST http://127.0.0.1:9/dp/v1/projects/proj/regions"),
        "{out}"
    );
    assert!(
        out.contains("POST http://127.0.0.1:9/sql/v1/projects/proj/instances/infra-pg/import"),
        "{out}"
    );
    assert!(
        out.contains("POST http://127.0.0.1:9/gcs/storage/v1/b/proj-staging/o/"),
        "{out}"
    );
}

#[test]
fn gcp_verbs_before_up_say_to_run_up() {
    let env = Env::new().var("INFRA_PROJECT", "proj");
    // `run --dry-run` plans offline instead (tests/it/offline_plan.rs).
    for verb in [&["status"][..], &["query", "SELECT 1"]] {
        let out = env.infra(verb).fails(1);
        assert!(
            out.stderr
                .contains("hint: run `infra --target gcp up` first"),
            "{verb:?}: {}",
            out.stderr
        );
    }
}
