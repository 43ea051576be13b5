//! IAM on the rehearsal (issue 19): the stand-ins enforce the grants the
//! real Terraform modules make, with Google's role definitions, so a grant
//! the modules forget fails here as it would in a project. Each case
//! withdraws one permission from every role (`Iam::revoke`, the in-process
//! form of `GCP_FAKES_REVOKE`) and shows the step that needs it fail at
//! that step, with one line naming the permission and the identity, and
//! nothing left behind; then the permission comes back and the run goes on.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::Run;
use crate::rehearsal::{Rehearsal, output};

const PIPELINE: &str = "infra-pipeline@rehearsal-project.iam.gserviceaccount.com";

/// The failure names the permission, who lacked it, and where grants come from.
#[track_caller]
fn assert_denied(run: &Run, permission: &str, who: &str) {
    assert_eq!(run.status, 1, "not a failure:\n{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("{who} lacks the permission {permission} on ")),
        "the error does not say that {who} lacks {permission}:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("terraform/modules/iam"),
        "no hint at the module that grants it:\n{}",
        run.stderr
    );
}

#[track_caller]
fn assert_step_failed(run: &Run, step: &str) {
    assert!(
        run.stderr.contains(&format!("step {step} failed")),
        "step {step} is not the one that failed:\n{}",
        run.stderr
    );
}

/// The Terraform state is the operator's: the pipeline's token is refused
/// on the state object, though Dataproc Worker is granted project-wide
/// (its IAM Condition takes objects out of it). Issue 19, section 5.
async fn the_state_object_is_the_operators_alone(r: &Rehearsal) {
    let iam = r.stack.front.iam().unwrap();
    let (operator, pipeline) = (
        iam.mint(&r.stack.names.operator),
        iam.mint(&format!("serviceAccount:{PIPELINE}")),
    );
    let http = reqwest::Client::new();
    // The rehearsal's root keeps its state locally, so the operator writes
    // the object a real root's gcs backend would, into the bucket `up` made.
    let state_bucket = "rehearsal-project-infra-tfstate";
    let written = http
        .post(format!(
            "{}/upload/storage/v1/b/{state_bucket}/o?uploadType=media&name=infra/default.tfstate",
            r.stack.urls.storage
        ))
        .bearer_auth(&operator)
        .body("{\"version\": 4}")
        .send()
        .await
        .unwrap();
    assert_eq!(written.status(), 200, "{}", written.text().await.unwrap());
    let object = format!(
        "{}/storage/v1/b/{state_bucket}/o/infra%2Fdefault.tfstate?alt=media",
        r.stack.urls.storage
    );
    let read = |token: String| {
        let request = http.get(&object).bearer_auth(token);
        async move { request.send().await.unwrap() }
    };
    assert_eq!(read(operator).await.status(), 200);
    let refused = read(pipeline).await;
    assert_eq!(refused.status(), 403);
    let body = refused.text().await.unwrap();
    assert!(body.contains("storage.objects.get"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_step_and_verb_fails_clearly_without_its_permission() {
    let r = Rehearsal::start().await;
    let iam = r.stack.front.iam().expect("the rehearsal enforces IAM");

    // up: the operator enables the bootstrap APIs.
    iam.revoke("serviceusage.services.enable");
    let up = r.infra(&["up", "--yes"]);
    assert_denied(
        &up,
        "serviceusage.services.enable",
        "serviceAccount:rehearsal@rehearsal-project.iam.gserviceaccount.com",
    );
    iam.restore("serviceusage.services.enable");
    r.infra(&["up", "--yes"]).ok();
    the_state_object_is_the_operators_alone(&r).await;

    // run acts as the pipeline: without Token Creator, nothing starts.
    iam.revoke("iam.serviceAccounts.getAccessToken");
    let run = r.infra(&["run", "--data", &r.data()]);
    assert_eq!(run.status, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("iam.serviceAccounts.getAccessToken")
            && run
                .stderr
                .contains(&format!("cannot impersonate {PIPELINE}")),
        "the error does not say the operator cannot act as the pipeline:\n{}",
        run.stderr
    );
    iam.restore("iam.serviceAccounts.getAccessToken");

    // Step 0: Cloud SQL's import.
    iam.revoke("cloudsql.instances.import");
    let run = r.infra(&["run", "--data", &r.data()]);
    assert_denied(
        &run,
        "cloudsql.instances.import",
        &format!("serviceAccount:{PIPELINE}"),
    );
    assert_step_failed(&run, "0 load_purchases");
    iam.restore("cloudsql.instances.import");

    // Step 1: Cloud SQL's export (step 0 now succeeds).
    iam.revoke("cloudsql.instances.export");
    let run = r.infra(&["run", "--data", &r.data()]);
    assert_denied(
        &run,
        "cloudsql.instances.export",
        &format!("serviceAccount:{PIPELINE}"),
    );
    assert_step_failed(&run, "1 dump_purchases");
    iam.restore("cloudsql.instances.export");

    // Step 2: no cluster can be made, so none is left.
    iam.revoke("dataproc.clusters.create");
    let run = r.infra(&["run", "--from", "1"]);
    assert_denied(
        &run,
        "dataproc.clusters.create",
        &format!("serviceAccount:{PIPELINE}"),
    );
    assert_step_failed(&run, "2 tokenize");
    assert_eq!(r.stack.dataproc.alive(), Vec::<String>::new());
    iam.restore("dataproc.clusters.create");

    // Step 3: the cluster exists (step 2 ran on it); its job is refused,
    // and the cluster is deleted all the same.
    let holds = r.env.path().join("holds");
    std::fs::create_dir_all(&holds).unwrap();
    std::fs::write(holds.join("after-2"), b"").unwrap();
    let mut cmd = tokio::process::Command::from(r.env.command(&["run", "--from", "2"]));
    cmd.env("INFRA_TEST_HOLD_DIR", &holds)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    wait_for(&holds.join("after-2.reached")).await;
    iam.revoke("dataproc.jobs.create");
    std::fs::remove_file(holds.join("after-2")).unwrap();
    let run = output(child).await;
    assert_denied(
        &run,
        "dataproc.jobs.create",
        &format!("serviceAccount:{PIPELINE}"),
    );
    assert_step_failed(&run, "3 user_behavior");
    assert_eq!(
        r.stack.dataproc.alive(),
        Vec::<String>::new(),
        "a cluster was left"
    );
    iam.restore("dataproc.jobs.create");

    // Step 4: the BigQuery load; no table is half written.
    r.infra(&["run", "--only", "3"]).ok();
    iam.revoke("bigquery.tables.updateData");
    let run = r.infra(&["run", "--from", "4"]);
    assert_denied(
        &run,
        "bigquery.tables.updateData",
        &format!("serviceAccount:{PIPELINE}"),
    );
    assert_step_failed(&run, "4 load_warehouse");
    let query = r.infra(&[
        "query",
        "SELECT count(*) AS n FROM bootcamp.user_behavior_metric",
    ]);
    assert_ne!(query.status, 0, "a table was written:\n{}", query.stdout);
    iam.restore("bigquery.tables.updateData");
    r.infra(&["run", "--from", "4"]).ok();

    // down: the operator lists the deployment's clusters first.
    iam.revoke("dataproc.clusters.list");
    let down = r.infra(&["down", "--yes"]);
    assert_denied(
        &down,
        "dataproc.clusters.list",
        "serviceAccount:rehearsal@rehearsal-project.iam.gserviceaccount.com",
    );
    iam.restore("dataproc.clusters.list");
    r.infra(&["down", "--yes"]).ok();
    r.assert_clean();
}

/// The pipeline's own grants do not reach what it never needs: the
/// operator's state, or Cloud SQL's instance management; and the Cloud SQL
/// instance's account reaches staging only. Read from the real modules.
#[test]
fn the_pipeline_holds_only_its_own_grants() {
    use gcp_fakes::iam::{Iam, Resource};
    let names = gcp_fakes::stack::Names::for_project("rehearsal-project", "us-central1");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let iam = Iam::load(
        &repo.join("terraform/modules"),
        &repo.join("crates/gcp-fakes/iam/predefined-roles.json"),
        &names.parties(),
        &[],
    )
    .unwrap();
    let pipeline = format!("serviceAccount:{PIPELINE}");
    let me = Resource::ServiceAccount(PIPELINE.into());
    assert!(iam.allows(&pipeline, "cloudsql.instances.import", &Resource::Project));
    assert!(iam.allows(&pipeline, "cloudsql.instances.export", &Resource::Project));
    assert!(!iam.allows(&pipeline, "cloudsql.instances.delete", &Resource::Project));
    assert!(!iam.allows(&pipeline, "iam.serviceAccounts.getAccessToken", &me));
    assert!(iam.allows(&pipeline, "iam.serviceAccounts.actAs", &me));
    assert!(!iam.allows(&pipeline, "storage.buckets.create", &Resource::Project));
    // Owner cannot mint the pipeline's tokens; the Token Creator grant can.
    assert!(iam.allows(&names.operator, "iam.serviceAccounts.getAccessToken", &me));
    iam.revoke("iam.serviceAccounts.getAccessToken");
    assert!(!iam.allows(&names.operator, "iam.serviceAccounts.getAccessToken", &me));
    // Dataproc Worker is project-wide, but objects are out of it: the
    // pipeline reaches its own buckets' objects, never the state's.
    let state = Resource::Object("rehearsal-project-infra-tfstate".into());
    assert!(!iam.allows(&pipeline, "storage.objects.get", &state));
    assert!(iam.allows(
        &pipeline,
        "storage.objects.get",
        &Resource::Object(names.staging_bucket.clone())
    ));
    let sql = format!("serviceAccount:{}", names.cloudsql_account);
    assert!(iam.allows(
        &sql,
        "storage.objects.get",
        &Resource::Object(names.staging_bucket.clone())
    ));
    assert!(!iam.allows(
        &sql,
        "storage.objects.get",
        &Resource::Object(names.raw_bucket.clone())
    ));
}

/// With user credentials (`gcloud auth application-default login`), every
/// call names a quota project; the stand-ins refuse a user's Service Usage,
/// IAM Credentials or Resource Manager call without one, with Google's
/// message. `up`, `doctor` and `run` work from such a file, with and
/// without `quota_project_id` (infra then names the target project).
#[tokio::test(flavor = "multi_thread")]
async fn user_credentials_name_a_quota_project() {
    let r = Rehearsal::start_as(Some("user:operator@example.com")).await;
    // The rule itself: a user's Service Usage call with no quota project.
    let iam = r.stack.front.iam().unwrap();
    let token = iam.mint("user:operator@example.com");
    let url = format!(
        "{}/v1/projects/rehearsal-project/services:batchGet?names=projects/rehearsal-project/services/sqladmin.googleapis.com",
        r.stack.urls.serviceusage
    );
    let client = reqwest::Client::new();
    let refused = client.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    let body = refused.text().await.unwrap();
    assert!(body.contains("requires a quota project"), "{body}");
    let allowed = client
        .get(&url)
        .bearer_auth(&token)
        .header("x-goog-user-project", "rehearsal-project")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200, "{}", allowed.text().await.unwrap());

    let credentials = r.env.path().join("TEST-ONLY-credentials.json");
    // Without quota_project_id: infra falls back to the target project.
    r.stack.write_credentials_with(&credentials, None).unwrap();
    let before = r.stack.front.events().len();
    r.infra(&["up", "--yes"]).ok();
    let quota: Vec<_> = r.stack.front.events()[before..]
        .iter()
        .filter(|e| e["why"] == "quota project")
        .cloned()
        .collect();
    assert!(
        quota.is_empty(),
        "refused for want of a quota project: {quota:?}"
    );
    // doctor names who each verb acts as; tokeninfo says who the user is.
    let doctor = r.infra(&["doctor"]);
    let said = format!("{}{}", doctor.stdout, doctor.stderr);
    assert!(said.contains("user:operator@example.com"), "{said}");
    assert!(
        said.contains(&format!("serviceAccount:{PIPELINE} (impersonation works)")),
        "{said}"
    );
    r.stack.write_credentials(&credentials).unwrap();
    r.infra(&["run", "--data", &r.data(), "--only", "0"]).ok();
    r.infra(&["down", "--yes"]).ok();
    r.assert_clean();
}

async fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
