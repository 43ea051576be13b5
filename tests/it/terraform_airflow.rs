//! The second Terraform root (`templates/terraform-airflow/`): Airflow's
//! chart on the GKE cluster through `hashicorp/helm` 3.x. As for the main
//! root, the providers cannot be downloaded here, so the stand-ins for
//! `terraform validate` run on it: snapshots of the rendered root (the Helm
//! values above all) for two configurations, conformance to the vendored
//! google and helm schemas (provider blocks included: helm 3's `kubernetes`
//! is an attribute), `terraform fmt -check`, checkov, and its one IAM grant
//! held to docs/iam.md.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use infra::settings::{Layer, Settings, Sources};
use infra::terraform::airflow::{AirflowValues, render};
use infra::terraform::{Outputs, RootValues};

use crate::terraform::{
    attr, check_module, check_tfvars, checkov, label, load_schemas, parse, terraform, tf_files,
};

fn settings(vars: &[(&str, &str)], cwd: &Path) -> Settings {
    Settings::resolve(Sources {
        config: None,
        cwd,
        env: vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        flags: Layer::default(),
    })
    .unwrap()
}

fn outputs(project: &str, deployment: &str, region: &str, zone: &str) -> Outputs {
    Outputs {
        raw_bucket: format!("{project}-{deployment}-raw-1a2b"),
        staging_bucket: format!("{project}-{deployment}-staging-1a2b"),
        code_bucket: format!("{project}-{deployment}-code-1a2b"),
        sql_connection_name: format!("{project}:{region}:{deployment}-pg"),
        sql_ip: "10.40.0.3".into(),
        database_name: "bootcampdb".into(),
        database_user: "bootcamp".into(),
        service_account_email: format!("{deployment}-pipeline@{project}.iam.gserviceaccount.com"),
        gke_cluster_name: format!("{deployment}-airflow"),
        gke_location: zone.into(),
        subnetwork: format!("{deployment}-subnet"),
        dataset: "bootcamp".into(),
    }
}

/// The two configurations: (name, settings, outputs).
fn configs(cwd: &Path) -> Vec<(&'static str, Settings, Outputs)> {
    vec![
        (
            "default",
            settings(&[("INFRA_PROJECT", "my-project")], cwd),
            outputs("my-project", "infra", "us-central1", "us-central1-b"),
        ),
        (
            "non_default",
            settings(
                &[
                    ("INFRA_PROJECT", "acme-data"),
                    ("INFRA_REGION", "europe-west1"),
                    ("INFRA_DEPLOYMENT", "nightly-etl"),
                    (
                        "INFRA_IMPERSONATE_SERVICE_ACCOUNT",
                        "deployer@acme-data.iam.gserviceaccount.com",
                    ),
                    ("INFRA_AIRFLOW_EXECUTOR", "LocalExecutor"),
                    ("INFRA_AIRFLOW_TASK_CPU", "2"),
                    ("INFRA_AIRFLOW_TASK_MEMORY", "4Gi"),
                ],
                cwd,
            ),
            outputs("acme-data", "nightly-etl", "europe-west1", "europe-west1-c"),
        ),
    ]
}

/// Renders each configuration's root into `<tmp>/<name>`.
fn rendered(tmp: &Path) -> Vec<(&'static str, PathBuf)> {
    configs(tmp)
        .into_iter()
        .map(|(name, settings, outputs)| {
            let root = RootValues::from_settings(&settings).unwrap();
            let values = AirflowValues::new(&settings, &root, &outputs).unwrap();
            let dir = tmp.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            for (file, text) in render(&values).unwrap() {
                std::fs::write(dir.join(file), text).unwrap();
            }
            (name, dir)
        })
        .collect()
}

#[test]
fn the_airflow_root_renders_for_two_configurations() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, dir) in rendered(tmp.path()) {
        let mut text = String::new();
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for path in files {
            let contents = std::fs::read_to_string(&path).unwrap();
            assert!(
                !contents.contains("not-in-any-file"),
                "{} holds the database password",
                path.display()
            );
            text.push_str(&format!(
                "=== {}\n{contents}",
                path.file_name().unwrap().to_string_lossy()
            ));
        }
        insta::assert_snapshot!(format!("airflow_root_{name}"), text);
        let values = std::fs::read_to_string(dir.join("airflow-values.yaml")).unwrap();
        for trap in [
            "postgresql:\n  enabled: false",
            "migrateDatabaseJob:\n  useHelmHooks: false",
            "createUserJob:\n  useHelmHooks: false",
            "networkPolicies:\n  enabled: false",
            "airflow.providers.google.cloud.bundles.gcs.GCSDagBundle",
        ] {
            assert!(values.contains(trap), "{name}: no `{trap}` in\n{values}");
        }
        let versions = std::fs::read_to_string(dir.join("versions.tf")).unwrap();
        assert!(!versions.contains("cluster_ca_certificate"), "{versions}");
    }
}

#[test]
fn celery_and_a_malformed_quantity_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for (var, value, expect) in [
        (
            "INFRA_AIRFLOW_EXECUTOR",
            "CeleryExecutor",
            "Celery is not offered",
        ),
        ("INFRA_AIRFLOW_TASK_MEMORY", "1 Gi\"", "Kubernetes quantity"),
    ] {
        let s = settings(&[("INFRA_PROJECT", "my-project"), (var, value)], tmp.path());
        let root = RootValues::from_settings(&s).unwrap();
        let err =
            AirflowValues::new(&s, &root, &outputs("my-project", "infra", "r", "r-b")).unwrap_err();
        assert!(format!("{err:#}").contains(expect), "{err:#}");
    }
}

#[test]
fn the_airflow_root_conforms_to_the_google_and_helm_schemas() {
    let schemas = load_schemas();
    let tmp = tempfile::tempdir().unwrap();
    let mut errors = Vec::new();
    for (_, dir) in rendered(tmp.path()) {
        let pins = check_module(&dir, &schemas, &mut errors);
        for provider in ["google", "helm", "random"] {
            assert!(
                pins.contains_key(provider),
                "{provider} is not pinned: {pins:?}"
            );
        }
        assert_eq!(pins["helm"], "~> 3.1");
        check_tfvars(&dir, &mut errors);
    }
    assert!(
        errors.is_empty(),
        "{} conformance errors:\n{}",
        errors.len(),
        errors.join("\n")
    );
}

/// The checker catches what it is there for: helm 2's `kubernetes` block,
/// a provider argument that does not exist, a misspelt key inside the
/// `kubernetes` object, and a data source the schema does not know.
#[test]
fn the_conformance_check_catches_helm_2_syntax_in_provider_blocks() {
    let schemas = load_schemas();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bad");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("main.tf"),
        r#"provider "helm" {
  kubernetes {
    host = "https://example"
  }
}

provider "google" {
  project = "p"
  regoin  = "r"
}

provider "helm" {
  alias = "second"
  kubernetes = {
    host  = "https://example"
    tokne = "t"
  }
}

data "google_client_config" "default" {}

data "google_client_configs" "typo" {}
"#,
    )
    .unwrap();
    let mut errors = Vec::new();
    check_module(&dir, &schemas, &mut errors);
    let text = errors.join("\n");
    assert!(text.contains("`kubernetes` is an attribute"), "{text}");
    assert!(text.contains("unknown attribute `regoin`"), "{text}");
    assert!(
        text.contains("kubernetes: unknown attribute `tokne`"),
        "{text}"
    );
    assert!(
        text.contains("unknown data type `google_client_configs`"),
        "{text}"
    );
    assert_eq!(errors.len(), 4, "{text}");
}

#[test]
fn terraform_fmt_and_checkov_pass_on_the_airflow_root() {
    // checkov skips hidden directories, and tempdir()'s are `.tmp…`.
    let tmp = tempfile::Builder::new()
        .prefix("infra-it-airflow-")
        .tempdir()
        .unwrap();
    let bin = checkov();
    for (name, dir) in rendered(tmp.path()) {
        let out = terraform(&["fmt", "-check", "-diff", "."], &dir);
        assert!(
            out.status.success(),
            "terraform fmt -check failed for {name}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // checkov has no check for any resource type of this root
        // (helm_release, google_sql_database/user, random_password,
        // google_service_account_iam_member): it prints its bare summary.
        let out = std::process::Command::new(&bin)
            .arg("-d")
            .arg(&dir)
            .arg("--config-file")
            .arg(crate::terraform::repo_path("terraform/.checkov.yaml"))
            .args([
                "--framework",
                "terraform",
                "--skip-download",
                "--quiet",
                "--compact",
                "-o",
                "json",
            ])
            .env("TF_CLI_CONFIG_FILE", "/dev/null")
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("checkov printed no JSON for {name}: {e}"));
        let summary = report.get("summary").unwrap_or(&report);
        assert_eq!(summary["failed"], 0, "checkov failed for {name}:\n{report}");
        assert_eq!(
            summary["parsing_errors"], 0,
            "checkov could not parse {name}"
        );
    }
}

/// The grants the Airflow root makes, as docs/iam.md names them.
pub(crate) fn granted() -> BTreeSet<(String, String, String)> {
    let tmp = tempfile::tempdir().unwrap();
    let (_, dir) = rendered(tmp.path()).remove(0);
    let mut out = BTreeSet::new();
    for file in tf_files(&dir) {
        for block in parse(&file)
            .blocks()
            .filter(|b| b.identifier() == "resource")
        {
            let body = block.body();
            match label(block, 0) {
                "google_service_account_iam_member" => {
                    let id = attr(body, &["service_account_id"]).unwrap().to_string();
                    assert!(id.contains("var.service_account_email"), "{id}");
                    let member = attr(body, &["member"]).unwrap().to_string();
                    assert!(
                        member.contains(".svc.id.goog[${var.namespace}/"),
                        "{member}"
                    );
                    let role = attr(body, &["role"]).unwrap().to_string();
                    out.insert((
                        "airflow".to_owned(),
                        role.trim_matches('"').to_owned(),
                        "service account: pipeline".to_owned(),
                    ));
                }
                kind if kind.contains("iam") => {
                    panic!("{kind}: an IAM resource the test doesn't know")
                }
                _ => {}
            }
        }
    }
    assert!(!out.is_empty(), "the Airflow root grants nothing");
    out
}

#[test]
fn the_airflow_roots_grants_are_in_docs_iam_md() {
    let documented: BTreeSet<(String, String, String)> = crate::terraform::documented_grants()
        .into_iter()
        .map(|g| (g.principal, g.role, g.scope))
        .collect();
    for grant in granted() {
        assert!(documented.contains(&grant), "not in docs/iam.md: {grant:?}");
    }
}
