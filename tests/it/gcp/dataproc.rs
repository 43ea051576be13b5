//! Dataproc against the contract-checking fake (and fake-gcs-server for
//! the driver output).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use infra::backend::gcp::auth::StaticToken;
use infra::backend::gcp::dataproc::{
    Batch, Cluster, ClusterConfig, Dataproc, DataprocSpark, JobFailed, LifecycleConfig,
    PySparkBatch, job_id,
};
use infra::backend::gcp::http::{Http, RetryPolicy};
use infra::backend::gcp::storage::{GcsClient, StorageEndpoint, Transfer};
use infra::backend::{Spark, SparkJob};
use serde_json::json;

use gcp_fakes::gcs::FakeGcs;
use gcp_fakes::google::{FakeGoogle, TOKEN};

pub fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        attempt_timeout: Duration::from_secs(10),
        deadline: Duration::from_secs(30),
        min_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        max_retries: 4,
    }
}

pub fn http(policy: RetryPolicy) -> Http {
    Http::new(Arc::new(StaticToken::new(TOKEN)), policy).unwrap()
}

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
    let storage = GcsClient::new(
        &StorageEndpoint::emulator(&gcs.url),
        Arc::new(StaticToken::new("unused")),
        fast_policy(),
        Transfer::default(),
    )
    .unwrap();
    Setup { gcs, fake, storage }
}

fn spark(s: &Setup, poll: Duration, lines: Arc<Mutex<Vec<String>>>) -> DataprocSpark {
    DataprocSpark {
        dataproc: Arc::new(dataproc(&s.fake, poll)),
        storage: s.storage.clone(),
        cluster: "infra-run1".into(),
        job_prefix: "run1".into(),
        properties: BTreeMap::from([("spark.executor.memory".into(), "2g".into())]),
        sink: Arc::new(move |line: &str| lines.lock().unwrap().push(line.to_owned())),
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
async fn clusters_are_created_polled_listed_and_deleted() {
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
        status: None,
    };
    let created = dataproc
        .create_cluster(&cluster, "create-infra-run1")
        .await
        .unwrap();
    assert_eq!(created.status.unwrap().state, "RUNNING");
    let create = &s.fake.calls("clusters.create")[0];
    assert_eq!(
        create.body["config"]["lifecycleConfig"]["idleDeleteTtl"],
        "1800s"
    );
    assert!(
        create
            .query
            .contains(&("requestId".into(), "create-infra-run1".into()))
    );
    assert!(
        s.fake.calls("operations.get").len() >= 2,
        "the operation was not polled until done"
    );

    // Creating it again (a retry after a lost answer) finds it running.
    assert_eq!(
        dataproc
            .create_cluster(&cluster, "create-infra-run1")
            .await
            .unwrap()
            .cluster_name,
        "infra-run1"
    );

    s.fake
        .add_cluster("other-team", json!({"managed-by": "terraform"}));
    s.fake
        .add_cluster("infra-old", json!({"managed-by": "infra"}));
    let managed = BTreeMap::from([("managed-by".to_owned(), "infra".to_owned())]);
    let deleted = dataproc
        .delete_labelled_clusters(&managed, "down-1")
        .await
        .unwrap();
    assert_eq!(deleted, ["infra-old", "infra-run1"]);
    assert_eq!(s.fake.clusters(), ["other-team"]);
    assert!(
        s.fake.calls("clusters.list").len() >= 2,
        "listing did not follow the pages"
    );
    assert!(dataproc.get_cluster("infra-run1").await.unwrap().is_none());
    dataproc
        .delete_cluster("infra-run1", "again")
        .await
        .unwrap();
    s.fake.assert_clean();
}

#[tokio::test]
async fn a_job_is_polled_through_every_state_and_its_output_streamed() {
    let s = setup().await;
    let id = job_id("run1", "tokenizer");
    driver_output(
        &s,
        &id,
        &["starting tokenizer\nread 42 reviews\n", "wrote 42 rows\n"],
    )
    .await;
    let lines = Arc::new(Mutex::new(Vec::new()));
    let job = SparkJob {
        name: "tokenizer".into(),
        script: "gs://code/pyspark/tokenizer.py".into(),
        args: vec!["--input".into(), "gs://raw/reviews.csv".into()],
    };
    spark(&s, Duration::from_millis(2), lines.clone())
        .submit(&job)
        .await
        .unwrap();
    assert_eq!(
        *lines.lock().unwrap(),
        ["starting tokenizer", "read 42 reviews", "wrote 42 rows"]
    );
    let submit = &s.fake.calls("jobs.submit")[0];
    assert_eq!(submit.body["job"]["reference"]["jobId"], id);
    assert_eq!(submit.body["job"]["placement"]["clusterName"], "infra-run1");
    assert_eq!(
        submit.body["job"]["pysparkJob"]["mainPythonFileUri"],
        "gs://code/pyspark/tokenizer.py"
    );
    assert_eq!(submit.body["job"]["labels"]["managed-by"], "infra");
    // The submit answered PENDING; then SETUP_DONE, RUNNING, RUNNING, DONE.
    assert_eq!(s.fake.calls("jobs.get").len(), 4);
    s.fake.assert_clean();
    drop(s.gcs);
}

#[tokio::test]
async fn a_failed_job_quotes_its_state_details_and_driver_output() {
    let s = setup().await;
    let id = job_id("run1", "user_behavior");
    driver_output(
        &s,
        &id,
        &["Traceback (most recent call last):\n  File \"x.py\"\nValueError: boom"],
    )
    .await;
    let job = SparkJob {
        name: "user_behavior".into(),
        script: "gs://code/pyspark/user_behavior.py".into(),
        args: vec!["--fail".into()],
    };
    let err = spark(&s, Duration::from_millis(2), Arc::default())
        .submit(&job)
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
    s.fake.assert_clean();
}

#[tokio::test]
async fn a_submit_whose_answer_was_lost_re_attaches_to_the_job() {
    let s = setup().await;
    s.fake
        .inject("jobs.submit", 1, gcp_fakes::google::Fault::Lost(503));
    let job = SparkJob {
        name: "tokenizer".into(),
        script: "gs://code/pyspark/tokenizer.py".into(),
        args: vec![],
    };
    spark(&s, Duration::from_millis(2), Arc::default())
        .submit(&job)
        .await
        .unwrap();
    assert_eq!(
        s.fake.calls("jobs.submit").len(),
        2,
        "the submit was not retried"
    );
    assert_eq!(s.fake.jobs(), 1, "the retry started a second job");
    s.fake.assert_clean();
}

#[tokio::test]
async fn dropping_a_running_submit_cancels_the_job() {
    let s = setup().await;
    let job = SparkJob {
        name: "tokenizer".into(),
        script: "gs://code/pyspark/tokenizer.py".into(),
        args: vec![],
    };
    let runner = spark(&s, Duration::from_millis(300), Arc::default());
    let interrupted = tokio::time::timeout(Duration::from_millis(150), runner.submit(&job)).await;
    assert!(
        interrupted.is_err(),
        "the job finished before it could be interrupted"
    );
    for _ in 0..100 {
        if !s.fake.calls("jobs.cancel").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancels = s.fake.calls("jobs.cancel");
    assert_eq!(cancels.len(), 1, "the job was not cancelled");
    let state = runner
        .dataproc
        .get_job(&job_id("run1", "tokenizer"))
        .await
        .unwrap();
    assert_eq!(state.state(), "CANCELLED");
    s.fake.assert_clean();
}

#[tokio::test]
async fn serverless_batches_run_fail_and_are_deleted() {
    let s = setup().await;
    let dataproc = dataproc(&s.fake, Duration::from_millis(2));
    let batch = |args: Vec<String>| Batch {
        pyspark_batch: Some(PySparkBatch {
            main_python_file_uri: "gs://code/pyspark/tokenizer.py".into(),
            args,
        }),
        labels: BTreeMap::from([("managed-by".into(), "infra".into())]),
        ..Batch::default()
    };
    let done = dataproc
        .run_batch("run1-tokenizer", &batch(vec![]))
        .await
        .unwrap();
    assert_eq!(done.state(), "SUCCEEDED");
    let err = dataproc
        .run_batch("run1-broken", &batch(vec!["--fail".into()]))
        .await
        .unwrap_err();
    let failed = err.downcast_ref::<JobFailed>().expect("a JobFailed");
    assert_eq!((failed.kind, failed.state.as_str()), ("batch", "FAILED"));
    dataproc.delete_batch("run1-tokenizer").await.unwrap();
    dataproc.delete_batch("run1-tokenizer").await.unwrap();
    let create = &s.fake.calls("batches.create")[0];
    assert!(
        create
            .query
            .contains(&("batchId".into(), "run1-tokenizer".into()))
    );
    s.fake.assert_clean();
}
