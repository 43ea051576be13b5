//! A GCP plan you can read before you have an account (issue 21): with no
//! credentials, no terraform and no network, `plan --target gcp` lists what
//! `up` would create, read from the rendered Terraform root, and every
//! request `run` would send, placeholders where only `up` knows a value;
//! `run --dry-run` does the same before `up` has saved its outputs.

use std::path::Path;

use crate::harness::{Env, Run};

/// A user with a project id and nothing else: an empty HOME, no
/// credentials, no terraform on PATH, and a proxy that answers nothing, so
/// a request or a terraform call would fail the command.
fn newcomer() -> Env {
    let env = Env::new();
    let home = env.path().join("home");
    let bin = env.path().join("empty-bin");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    env.var("INFRA_PROJECT", "offline-proj")
        .var("INFRA_DEPLOYMENT", "etl")
        .var("HOME", &home.display().to_string())
        .var("PATH", &bin.display().to_string())
        .var("NO_GCE_CHECK", "True")
        .var("CLOUDSDK_CONFIG", "")
        .var("HTTPS_PROXY", "http://127.0.0.1:9")
        .var("HTTP_PROXY", "http://127.0.0.1:9")
}

fn infra(env: &Env, args: &[&str]) -> Run {
    infra_with(env, args, &[])
}

/// `infra` with no credentials, and `extra` over the env's variables.
fn infra_with(env: &Env, args: &[&str], extra: &[(&str, &str)]) -> Run {
    let mut cmd = env.command(args);
    cmd.env_remove("GOOGLE_APPLICATION_CREDENTIALS");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const SA: &str = "etl-pipeline@offline-proj.iam.gserviceaccount.com";

#[test]
fn plan_without_credentials_lists_what_up_would_create() {
    let env = newcomer();
    let out = infra(&env, &["--target", "gcp", "plan"]).ok().stdout;
    for want in [
        "offline: read from the Terraform root rendered in",
        "not checked:",
        "no Terraform plan against the project",
        "the operator's Token Creator grant",
        // Names that follow the settings, as they will be.
        &format!("+ module.iam.google_service_account.pipeline  ({SA})"),
        "+ module.network.google_compute_network.vpc  (etl-vpc)",
        "+ module.gke.google_container_cluster.airflow  (etl-airflow)",
        // A name only the apply decides.
        "+ module.cloudsql.google_sql_database_instance.postgres  (etl-pg-<random_id.instance.hex>)",
        "+ module.buckets.google_storage_bucket.bucket[\"raw\"]  (offline-proj-raw-<random_id.suffix.hex>)",
        // for_each expanded from the module's default.
        "+ module.services.google_project_service.api[\"dataproc.googleapis.com\"]",
        "APIs enabled (",
        "    sqladmin.googleapis.com\n",
        // A grant: role, member, on what, condition.
        &format!(
            "roles/dataproc.worker to serviceAccount:{SA}\n      on project offline-proj\n      if resource.type != \"storage.googleapis.com/Object\""
        ),
        &format!(
            "roles/storage.objectAdmin to serviceAccount:{SA}\n      on bucket offline-proj-staging-<random_id.suffix.hex>"
        ),
        "roles/storage.objectAdmin to serviceAccount:<google_sql_database_instance.postgres.service_account_email_address>",
    ] {
        assert!(out.contains(want), "`{want}` missing from:\n{out}");
    }
    // No operator is known without credentials: no Token Creator grant.
    assert!(
        !out.contains("roles/iam.serviceAccountTokenCreator to"),
        "{out}"
    );
    let root = env.state().join("terraform");
    assert!(root.join("main.tf").is_file(), "the plan renders the root");
    assert!(!root.join(".terraform").exists(), "terraform init ran");

    // Another deployment name, another set of names.
    let other = infra_with(
        &env,
        &["--target", "gcp", "plan"],
        &[("INFRA_DEPLOYMENT", "other")],
    )
    .ok()
    .stdout;
    assert!(
        other.contains("(other-pg-<random_id.instance.hex>)"),
        "{other}"
    );
    assert!(!other.contains("etl-pipeline@"), "{other}");
}

#[test]
fn the_resources_and_grants_come_from_the_root_files() {
    let env = newcomer();
    infra(&env, &["--target", "gcp", "render"]).ok();
    // A ready root (the `terraform.root` setting) with one more project
    // role in the iam module's default: the plan shows its grant.
    let root = env.path().join("my-root");
    copy_dir(&env.state().join("terraform"), &root);
    let iam = root.join("modules/iam/main.tf");
    let text = std::fs::read_to_string(&iam).unwrap();
    let changed = text.replacen(
        "\"roles/bigquery.user\",",
        "\"roles/bigquery.user\",\n    \"roles/logging.viewer\",",
        1,
    );
    assert_ne!(text, changed, "the iam module's project_roles moved");
    std::fs::write(&iam, changed).unwrap();
    let env = env.var("INFRA_TERRAFORM_ROOT", &root.display().to_string());
    let out = infra(&env, &["--target", "gcp", "plan"]).ok().stdout;
    assert!(
        out.contains(&format!("roles/logging.viewer to serviceAccount:{SA}")),
        "{out}"
    );
    assert!(
        out.contains("+ module.iam.google_project_iam_member.pipeline[\"roles/logging.viewer\"]"),
        "{out}"
    );
}

#[test]
fn the_run_requests_show_one_cluster_and_placeholders() {
    let env = newcomer()
        .var("INFRA_BUCKETS_RAW", "etl-raw-inputs")
        .var("INFRA_DATAPROC_IMAGE_VERSION", "2.2-debian12");
    let out = infra(&env, &["--target", "gcp", "plan"]).ok().stdout;
    assert!(out.contains("run (offline: "), "{out}");
    let requests = &out[out.find("requests (run ").expect("requests")..];
    // Deterministic names as they will be, placeholders for the rest.
    for want in [
        "reads  gs://etl-raw-inputs/user_purchase.csv",
        "POST https://sqladmin.googleapis.com/v1/projects/offline-proj/instances/etl-pg-<random_id.instance.hex>/import",
        "/storage/v1/b/offline-proj-staging-<random_id.suffix.hex>/o/user_purchase.csv/compose",
        &format!("\"serviceAccount\": \"{SA}\""),
        "\"imageVersion\": \"2.2-debian12\"",
        "\"subnetworkUri\": \"etl-private\"",
        "\"mainPythonFileUri\": \"gs://offline-proj-code-<random_id.suffix.hex>/tokenizer.py\"",
        "POST https://bigquery.googleapis.com/bigquery/v2/projects/offline-proj/jobs",
    ] {
        assert!(out.contains(want), "`{want}` missing from:\n{out}");
    }
    one_cluster(requests);
    no_trailing_question_mark(requests);
}

#[test]
fn a_deployed_dry_run_also_shows_one_cluster() {
    let env = Env::new()
        .var("INFRA_PROJECT", "proj")
        .var("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json");
    env.write(
        "state/gcp/outputs.json",
        r#"{"project": "proj", "region": "europe-west1", "deployment": "infra",
            "raw_bucket": "proj-raw", "staging_bucket": "proj-staging", "code_bucket": "proj-code",
            "sql_connection_name": "proj:europe-west1:infra-pg", "sql_instance": "infra-pg",
            "database_name": "bootcampdb", "database_user": "bootcamp",
            "service_account_email": "pipeline@proj.iam.gserviceaccount.com",
            "subnetwork": "infra-dataproc", "dataset": "bootcamp"}"#,
    );
    let out = env.infra(&["run", "--dry-run"]).ok().stdout;
    assert!(!out.contains("offline plan"), "{out}");
    one_cluster(&out);
    // From step 3 on, the run's cluster is still created first.
    let out = env.infra(&["run", "--dry-run", "--only", "3"]).ok().stdout;
    one_cluster(&out);
}

#[test]
fn run_dry_run_before_up_is_the_offline_plan() {
    let env = newcomer();
    let run = infra(&env, &["--target", "gcp", "run", "--dry-run"]).ok();
    assert!(
        run.stdout
            .starts_with("offline plan: `infra up` has not run"),
        "{}",
        run.stdout
    );
    one_cluster(&run.stdout);

    let json = infra(&env, &["--target", "gcp", "run", "--dry-run", "--json"])
        .ok()
        .stdout;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["offline"], true, "{json}");
    let steps = v["requests"].as_array().unwrap();
    let numbers: Vec<u64> = steps
        .iter()
        .map(|s| s["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [0, 1, 2, 3, 4], "{json}");
    let urls = |i: usize| -> Vec<String> {
        steps[i]["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    r["method"].as_str().unwrap(),
                    r["url"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert!(
        urls(2)[0].starts_with("POST ") && urls(2)[0].contains("/clusters?requestId="),
        "{:?}",
        urls(2)
    );
    assert!(urls(2)[1].ends_with("/jobs:submit"), "{:?}", urls(2));
    assert_eq!(urls(3).len(), 1, "step 3 only submits: {:?}", urls(3));
    let teardown = v["teardown"].as_array().unwrap();
    assert_eq!(teardown.len(), 1, "{json}");
    assert_eq!(teardown[0]["method"], "DELETE");
    assert!(
        teardown[0]["url"]
            .as_str()
            .unwrap()
            .contains("/clusters/etl-"),
        "{json}"
    );
    // A dry run writes nothing, not even the rendered root.
    assert!(!env.state().join("runs").exists());
    assert!(!env.state().join("terraform").exists());
}

#[test]
fn plan_json_without_credentials_carries_the_same() {
    let env = newcomer();
    let json = infra(&env, &["--target", "gcp", "plan", "--json"])
        .ok()
        .stdout;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["checked"], false, "{json}");
    let not_checked: Vec<&str> = v["not_checked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        not_checked.iter().any(|s| s.contains("Token Creator")),
        "{not_checked:?}"
    );
    let up = v["up"].as_array().unwrap();
    assert!(
        up.iter().any(
            |r| r["address"] == "module.iam.google_service_account.pipeline"
                && r["type"] == "google_service_account"
                && r["name"] == SA
                && r["action"] == "create"
        ),
        "{json}"
    );
    assert!(
        v["apis"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "bigquery.googleapis.com"),
        "{json}"
    );
    let worker = v["grants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["role"] == "roles/dataproc.worker")
        .expect("the Dataproc Worker grant");
    assert_eq!(worker["member"], format!("serviceAccount:{SA}"));
    assert_eq!(worker["on"], "project offline-proj");
    assert_eq!(
        worker["condition"],
        "resource.type != \"storage.googleapis.com/Object\""
    );
    assert_eq!(v["run_offline"], true, "{json}");
    assert_eq!(v["run"].as_array().unwrap().len(), 5, "{json}");
    assert_eq!(v["requests"].as_array().unwrap().len(), 5, "{json}");
    assert_eq!(v["teardown"].as_array().unwrap().len(), 1, "{json}");
}

/// Exactly one cluster create, before the first job, and one delete,
/// after the last request of the last step.
#[track_caller]
fn one_cluster(out: &str) {
    let creates: Vec<usize> = out
        .match_indices("/clusters?requestId=")
        .map(|(i, _)| i)
        .collect();
    let deletes: Vec<usize> = out.match_indices("DELETE ").map(|(i, _)| i).collect();
    let submits: Vec<usize> = out.match_indices("/jobs:submit").map(|(i, _)| i).collect();
    assert_eq!(creates.len(), 1, "cluster creates:\n{out}");
    assert_eq!(deletes.len(), 1, "cluster deletes:\n{out}");
    assert!(out[deletes[0]..].contains("/clusters/"), "{out}");
    assert!(!submits.is_empty(), "{out}");
    assert!(creates[0] < submits[0], "create after a job:\n{out}");
    assert!(
        deletes[0] > *submits.last().unwrap(),
        "delete before a job:\n{out}"
    );
    let end = out.find("end of run:\n").expect("an end-of-run section");
    assert!(end < deletes[0], "{out}");
}

#[track_caller]
fn no_trailing_question_mark(out: &str) {
    for line in out.lines() {
        let line = line.trim_start();
        if ["GET ", "POST ", "PUT ", "PATCH ", "DELETE "]
            .iter()
            .any(|m| line.starts_with(m))
        {
            let url = line.split_whitespace().nth(1).unwrap();
            assert!(!url.ends_with('?'), "{line}");
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
