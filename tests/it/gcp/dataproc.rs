//! Dataproc against the contract-checking fake (and fake-gcs-server for
//! the driver output): clusters, jobs, batches, and the two Spark runners
//! with their teardown in every way a run can end.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use infra::backend::gcp::dataproc::{
    Batch, Cluster, ClusterConfig, ClusterSpark, ClusterSpec, Dataproc, JobFailed, LifecycleConfig,
    PySparkBatch, ServerlessSpark, ServerlessSpec,
};
use infra::backend::gcp::ids;
use infra::backend::gcp::storage::GcsClient;
use infra::backend::{RemoteKind, Spark, SparkJob};
use serde_json::json;

use gcp_fakes::gcs::FakeGcs;
use gcp_fakes::google::{FakeGoogle, Fault};

use super::journal::MemJournal;
use super::{emulator_storage, fast_policy, http};

fn dataproc(fake: &FakeGoogle, poll: Duration) -> Dataproc {
    Dataproc::new(http(fast_policy()), &fake.url, "proj", "r", poll)
}

struct Setup {
    gcs: FakeGcs,
    fake: FakeGoogle,
    storage: GcsClient,
}

async fn setup() -> Setup {
    let gcs = FakeGcs::start("filesystem");
    gcs.bucket("dp-driver").await;
    let fake = FakeGoogle::start("dp-driver").await;
    let storage = emulator_storage(&gcs.url);
    Setup { gcs, fake, storage }
}

fn spec() -> ClusterSpec {
    ClusterSpec {
        deployment: "infra".into(),
        image_version: "3.0-debian12".into(),
        master_machine_type: "n1-standard-2".into(),
        worker_machine_type: "n1-standard-2".into(),
        workers: 2,
        boot_disk_gb: 50,
        idle_ttl_secs: 1800,
        max_age_secs: 14400,
        service_account: "pipeline@proj.iam.gserviceaccount.com".into(),
        subnetwork: "infra-dataproc".into(),
        bucket: "proj-staging".into(),
        labels: BTreeMap::from([
            ("deployment".to_owned(), "infra".to_owned()),
            ("managed-by".to_owned(), "infra".to_owned()),
        ]),
        properties: BTreeMap::from([("spark.executor.memory".into(), "2g".into())]),
    }
}

fn cluster_spark(s: &Setup, poll: Duration, lines: Arc<Mutex<Vec<String>>>) -> ClusterSpark {
    ClusterSpark::new(
        Arc::new(dataproc(&s.fake, poll)),
        s.storage.clone(),
        spec(),
        Arc::new(move |line: &str| lines.lock().unwrap().push(line.to_owned())),
    )
}

/// Resolves once the fake has seen `method` called: the moment a test
/// interrupts at, whatever the machine's speed.
async fn seen(fake: &FakeGoogle, method: &str) {
    while fake.calls(method).is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn job(name: &str, args: &[&str]) -> SparkJob {
    SparkJob {
        name: name.into(),
        script: format!("gs://code/{name}.py"),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
    }
}

async fn driver_output(s: &Setup, job: &str, files: &[&str]) {
    for (i, text) in files.iter().enumerate() {
        let key = format!("driver/{job}/driveroutput.{i:09}");
        s.storage
            .upload("dp-driver", &key, &mut text.as_bytes())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn clusters_are_created_listed_and_deleted_by_uuid() {
    let s = setup().await;
    let dataproc = dataproc(&s.fake, Duration::from_millis(2));
    let cluster = Cluster {
        project_id: "proj".into(),
        cluster_name: "infra-run1".into(),
        config: Some(ClusterConfig {
            lifecycle_config: Some(LifecycleConfig {
                idle_delete_ttl: Some("1800s".into()),
                auto_delete_ttl: Some("14400s".into()),
            }),
            ..ClusterConfig::default()
        }),
        labels: BTreeMap::from([("managed-by".into(), "infra".into())]),
        ..Cluster::default()
    };
    let request = ids::request_id("create-infra-run1");
    let created = dataproc.create_cluster(&cluster, &request).await.unwrap();
    assert_eq!(created.state(), "RUNNING");
    assert!(created.cluster_uuid.is_some());
    // Created again with the same id (a retry after a lost answer): it is there.
    dataproc.create_cluster(&cluster, &request).await.unwrap();

    s.fake
        .add_cluster("other-team", json!({"managed-by": "terraform"}));
    s.fake
        .add_cluster("infra-old", json!({"managed-by": "infra"}));
    let managed = BTreeMap::from([("managed-by".to_owned(), "infra".to_owned())]);
    let deleted = dataproc.delete_labelled_clusters(&managed).await.unwrap();
    assert_eq!(deleted, ["infra-old", "infra-run1"]);
    assert_eq!(s.fake.clusters(), ["other-team"]);
    let deletes = s.fake.calls("clusters.delete");
    let with_uuid = deletes.iter().find(|d| {
        d.query
            .iter()
            .any(|(k, v)| k == "clusterUuid" && v.starts_with("uuid-"))
    });
    assert!(with_uuid.is_some(), "no delete named the cluster's uuid");
    // A delete whose uuid is another cluster's does nothing.
    s.fake
        .add_cluster("infra-run1", json!({"managed-by": "infra"}));
    dataproc
        .delete_cluster("infra-run1", Some("uuid-of-an-older-cluster"))
        .await
        .unwrap();
    assert_eq!(s.fake.clusters(), ["infra-run1", "other-team"]);
    s.fake.assert_clean();
}

#[tokio::test]
async fn a_run_uses_one_cluster_for_both_jobs_and_deletes_it() {
    let s = setup().await;
    let journal = MemJournal::new("20261125T150000Z-ab12");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let spark = cluster_spark(&s, Duration::from_millis(2), lines.clone());
    let tokenizer_id = ids::dataproc_job_id(&[&journal.run_id, "tokenizer", "1"]);
    driver_output(&s, &tokenizer_id, &["read 42 reviews\n", "wrote 42 rows\n"]).await;

    spark
        .submit(&job("tokenizer", &["--input", "gs://raw/r.csv"]), &journal)
        .await
        .unwrap();
    spark
        .submit(&job("user_behavior", &[]), &journal)
        .await
        .unwrap();
    assert_eq!(
        s.fake.clusters().len(),
        1,
        "the cluster was deleted before the run ended"
    );
    spark.teardown().await.unwrap();

    let creates = s.fake.calls("clusters.create");
    assert_eq!(creates.len(), 1, "one cluster per run, not per job");
    let body = &creates[0].body;
    let config = &body["config"];
    assert_eq!(config["gceClusterConfig"]["internalIpOnly"], true);
    assert_eq!(
        config["gceClusterConfig"]["subnetworkUri"],
        "infra-dataproc"
    );
    assert_eq!(
        config["gceClusterConfig"]["serviceAccount"],
        "pipeline@proj.iam.gserviceaccount.com"
    );
    assert_eq!(config["lifecycleConfig"]["idleDeleteTtl"], "1800s");
    assert_eq!(config["lifecycleConfig"]["autoDeleteTtl"], "14400s");
    // Dataproc's own staging and temp buckets would outlive `down`.
    assert_eq!(config["configBucket"], "proj-staging");
    assert_eq!(config["tempBucket"], "proj-staging");
    assert_eq!(config["softwareConfig"]["imageVersion"], "3.0-debian12");
    assert_eq!(config["masterConfig"]["numInstances"], 1);
    assert_eq!(config["workerConfig"]["numInstances"], 2);
    assert_eq!(config["workerConfig"]["machineTypeUri"], "n1-standard-2");
    assert_eq!(body["labels"]["managed-by"], "infra");
    assert_eq!(body["labels"]["deployment"], "infra");
    assert_eq!(body["labels"]["run"], "20261125t150000z-ab12");

    let submits = s.fake.calls("jobs.submit");
    assert_eq!(submits.len(), 2);
    let name = body["clusterName"].as_str().unwrap();
    for submit in &submits {
        assert_eq!(submit.body["job"]["placement"]["clusterName"], name);
    }
    assert_eq!(submits[0].body["job"]["reference"]["jobId"], tokenizer_id);
    assert_eq!(*lines.lock().unwrap(), ["read 42 reviews", "wrote 42 rows"]);

    // Deleted, by uuid; and each id was in the journal before it was polled.
    assert!(s.fake.clusters().is_empty());
    let delete = &s.fake.calls("clusters.delete")[0];
    let (_, cluster) = journal.first(RemoteKind::DataprocCluster).unwrap();
    assert_eq!(cluster.id, name);
    assert!(
        delete
            .query
            .contains(&("clusterUuid".into(), cluster.uuid.clone().unwrap()))
    );
    let (recorded, _) = journal.first(RemoteKind::DataprocJob).unwrap();
    let first_get = s.fake.calls("jobs.get")[0].at;
    assert!(
        recorded < first_get,
        "the job id was recorded after polling began"
    );
    let (recorded, _) = journal.first(RemoteKind::DataprocCluster).unwrap();
    assert!(
        recorded < creates[0].at,
        "the cluster was recorded after it was created"
    );
    s.fake.assert_clean();
    drop(s.gcs);
}

#[tokio::test]
async fn a_failed_job_names_itself_quotes_its_driver_and_the_cluster_still_goes() {
    let s = setup().await;
    let journal = MemJournal::new("run1");
    let id = ids::dataproc_job_id(&["run1", "user_behavior", "1"]);
    driver_output(
        &s,
        &id,
        &["Traceback (most recent call last):\n  File \"x.py\"\nValueError: boom"],
    )
    .await;
    let spark = cluster_spark(&s, Duration::from_millis(2), Arc::default());
    let err = spark
        .submit(&job("user_behavior", &["--fail"]), &journal)
        .await
        .unwrap_err();
    let failed = err
        .chain()
        .find_map(|e| e.downcast_ref::<JobFailed>())
        .expect("a JobFailed");
    assert_eq!(failed.state, "ERROR");
    assert!(
        failed.details.contains("ValueError: boom"),
        "{}",
        failed.details
    );
    assert!(
        failed.tail.contains("| ValueError: boom"),
        "{}",
        failed.tail
    );
    let text = format!("{err:#}");
    assert!(
        text.contains("user_behavior") && text.contains(&id),
        "{text}"
    );
    spark.teardown().await.unwrap();
    assert!(
        s.fake.clusters().is_empty(),
        "the cluster outlived a failed job"
    );
    assert!(
        s.fake.calls("jobs.cancel").is_empty(),
        "a finished job was cancelled"
    );
    s.fake.assert_clean();
}

#[tokio::test]
async fn a_polling_error_cancels_the_job_and_deletes_the_cluster() {
    let s = setup().await;
    let journal = MemJournal::new("run1");
    let spark = cluster_spark(&s, Duration::from_millis(2), Arc::default());
    // More 500s than the policy retries: polling fails for good.
    s.fake.inject(
        "jobs.get",
        20,
        Fault::Status {
            code: 500,
            retry_after: None,
        },
    );
    let err = spark
        .submit(&job("tokenizer", &[]), &journal)
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("cannot get Dataproc job"),
        "{err:#}"
    );
    spark.teardown().await.unwrap();
    assert_eq!(
        s.fake.calls("jobs.cancel").len(),
        1,
        "the job we lost was not cancelled"
    );
    assert!(s.fake.clusters().is_empty());
    s.fake.assert_clean();
}

#[tokio::test]
async fn an_interrupted_run_cancels_its_job_then_deletes_the_cluster() {
    let s = setup().await;
    let journal = MemJournal::new("run1");
    let spark = cluster_spark(&s, Duration::from_millis(100), Arc::default());
    // What Ctrl-C does to the step: its future is dropped mid-poll.
    let tokenizer = job("tokenizer", &[]);
    tokio::select! {
        _ = spark.submit(&tokenizer, &journal) => panic!("the job ended before the interruption"),
        _ = seen(&s.fake, "jobs.get") => {}
    }
    assert_eq!(s.fake.calls("jobs.submit").len(), 1);
    spark.teardown().await.unwrap();
    let cancels = s.fake.calls("jobs.cancel");
    let deletes = s.fake.calls("clusters.delete");
    assert_eq!(cancels.len(), 1, "the job was not cancelled");
    assert_eq!(deletes.len(), 1, "the cluster was not deleted");
    assert!(
        cancels[0].at < deletes[0].at,
        "the cluster went before its job was cancelled"
    );
    assert!(s.fake.clusters().is_empty());
    // A second teardown has nothing left to do.
    spark.teardown().await.unwrap();
    assert_eq!(s.fake.calls("clusters.delete").len(), 1);
    s.fake.assert_clean();
}

#[tokio::test]
async fn a_cluster_in_error_is_deleted_at_once() {
    let s = setup().await;
    s.fake.fail_next_cluster();
    let journal = MemJournal::new("run1");
    let spark = cluster_spark(&s, Duration::from_millis(2), Arc::default());
    let err = spark
        .submit(&job("tokenizer", &[]), &journal)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("ERROR"), "{err:#}");
    assert!(s.fake.clusters().is_empty(), "the failed cluster was left");
    assert_eq!(s.fake.calls("clusters.delete").len(), 1);
    assert!(s.fake.calls("jobs.submit").is_empty());
    spark.teardown().await.unwrap();
    assert_eq!(s.fake.calls("clusters.delete").len(), 1, "deleted twice");
    s.fake.assert_clean();
}

#[tokio::test]
async fn a_rerun_after_a_crash_reattaches_to_the_cluster_and_the_job_in_flight() {
    let s = setup().await;
    let first = MemJournal::new("run1");
    // The first process is killed (its future dropped, no teardown) mid-job.
    {
        let spark = cluster_spark(&s, Duration::from_millis(100), Arc::default());
        let tokenizer = job("tokenizer", &[]);
        tokio::select! {
            _ = spark.submit(&tokenizer, &first) => panic!("the job ended before the crash"),
            _ = seen(&s.fake, "jobs.get") => {}
        }
    }
    assert_eq!(s.fake.calls("clusters.create").len(), 1);
    assert_eq!(s.fake.calls("jobs.submit").len(), 1);
    assert!(s.fake.calls("jobs.cancel").is_empty());

    let second = first.next_attempt();
    let spark = cluster_spark(&s, Duration::from_millis(2), Arc::default());
    spark.submit(&job("tokenizer", &[]), &second).await.unwrap();
    spark.teardown().await.unwrap();
    assert_eq!(
        s.fake.calls("clusters.create").len(),
        1,
        "a second cluster was created"
    );
    assert_eq!(
        s.fake.calls("jobs.submit").len(),
        1,
        "the job was submitted twice"
    );
    assert_eq!(s.fake.jobs(), 1);
    assert!(s.fake.clusters().is_empty());
    s.fake.assert_clean();
}

#[tokio::test]
async fn a_submit_whose_answer_was_lost_re_attaches_to_the_job() {
    let s = setup().await;
    s.fake.inject("jobs.submit", 1, Fault::Lost(503));
    let journal = MemJournal::new("run1");
    let spark = cluster_spark(&s, Duration::from_millis(2), Arc::default());
    spark
        .submit(&job("tokenizer", &[]), &journal)
        .await
        .unwrap();
    spark.teardown().await.unwrap();
    assert_eq!(
        s.fake.calls("jobs.submit").len(),
        2,
        "the submit was not retried"
    );
    assert_eq!(s.fake.jobs(), 1, "the retry started a second job");
    s.fake.assert_clean();
}

fn serverless(s: &Setup) -> ServerlessSpark {
    ServerlessSpark::new(
        Arc::new(dataproc(&s.fake, Duration::from_millis(2))),
        ServerlessSpec {
            runtime_version: "3.0".into(),
            service_account: "pipeline@proj.iam.gserviceaccount.com".into(),
            subnetwork: "infra-dataproc".into(),
            labels: BTreeMap::from([("managed-by".to_owned(), "infra".to_owned())]),
            properties: BTreeMap::new(),
            ttl_secs: 14400,
        },
    )
}

#[tokio::test]
async fn serverless_runs_each_job_as_a_batch_with_the_service_account_set() {
    let s = setup().await;
    let journal = MemJournal::new("20261125T150000Z-ab12");
    let spark = serverless(&s);
    spark
        .submit(&job("tokenizer", &[]), &journal)
        .await
        .unwrap();
    let err = spark
        .submit(&job("user_behavior", &["--fail"]), &journal)
        .await
        .unwrap_err();
    let failed = err
        .chain()
        .find_map(|e| e.downcast_ref::<JobFailed>())
        .expect("a JobFailed");
    assert_eq!((failed.kind, failed.state.as_str()), ("batch", "FAILED"));
    spark.teardown().await.unwrap();
    let create = &s.fake.calls("batches.create")[0];
    assert!(
        create
            .query
            .contains(&("batchId".into(), "20261125t150000z-ab12-tokenizer-1".into()))
    );
    let execution = &create.body["environmentConfig"]["executionConfig"];
    assert_eq!(
        execution["serviceAccount"],
        "pipeline@proj.iam.gserviceaccount.com"
    );
    assert_eq!(create.body["runtimeConfig"]["version"], "3.0");
    assert!(s.fake.calls("clusters.create").is_empty());
    assert_eq!(
        journal.all(RemoteKind::DataprocBatch).len(),
        4,
        "each batch, then its operation"
    );
    s.fake.assert_clean();
}

#[tokio::test]
async fn an_interrupted_batch_is_cancelled_through_its_operation() {
    let s = setup().await;
    let journal = MemJournal::new("run1");
    let spark = ServerlessSpark::new(
        Arc::new(dataproc(&s.fake, Duration::from_millis(200))),
        ServerlessSpec {
            runtime_version: "3.0".into(),
            service_account: "sa@proj.iam.gserviceaccount.com".into(),
            subnetwork: "subnet".into(),
            labels: BTreeMap::new(),
            properties: BTreeMap::new(),
            ttl_secs: 3600,
        },
    );
    let tokenizer = job("tokenizer", &[]);
    tokio::select! {
        _ = spark.submit(&tokenizer, &journal) => panic!("the batch ended before the interruption"),
        _ = seen(&s.fake, "batches.get") => {}
    }
    spark.teardown().await.unwrap();
    assert_eq!(s.fake.calls("operations.cancel").len(), 1);
    let batch = dataproc(&s.fake, Duration::from_millis(2))
        .wait_batch(&ids::batch_id(&["run1", "tokenizer", "1"]))
        .await
        .unwrap_err();
    assert!(format!("{batch:#}").contains("CANCELLED"), "{batch:#}");
    s.fake.assert_clean();
}

#[tokio::test]
async fn batches_are_deleted_once_finished() {
    let s = setup().await;
    let dataproc = dataproc(&s.fake, Duration::from_millis(2));
    let batch = Batch {
        pyspark_batch: Some(PySparkBatch {
            main_python_file_uri: "gs://code/tokenizer.py".into(),
            args: vec![],
        }),
        ..Batch::default()
    };
    dataproc.run_batch("run1-tokenizer", &batch).await.unwrap();
    dataproc.delete_batch("run1-tokenizer").await.unwrap();
    dataproc.delete_batch("run1-tokenizer").await.unwrap();
    assert!(
        dataproc
            .find_batch("run1-tokenizer")
            .await
            .unwrap()
            .is_none()
    );
    s.fake.assert_clean();
}
