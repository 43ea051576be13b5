//! Issue 22 on GCP: every long-running operation has an overall deadline.
//! The fake leaves a Cloud SQL operation, a Dataproc job and a BigQuery job
//! running forever (`FakeGoogle::never_finish`); each wait ends at its
//! (shortened) deadline with an error that names the operation, its limit,
//! the setting and the Cloud Console page; what Google lets us cancel is
//! cancelled, the cluster is deleted, and the id was recorded first.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use infra::backend::gcp::bigquery::{BigQuery, BigQueryWarehouse};
use infra::backend::gcp::cloudsql::{CloudSqlAdmin, CloudSqlDatabase};
use infra::backend::gcp::dataproc::{ClusterSpark, ClusterSpec, Dataproc};
use infra::backend::gcp::deadline::{DeadlinePassed, Deadlines};
use infra::backend::gcp::storage::GcsBucket;
use infra::backend::{
    Column, ColumnKind, Database, RemoteKind, Rows, Spark, SparkJob, TableDef, TableRef, Warehouse,
};

use super::journal::MemJournal;
use super::{emulator_storage, fast_policy, http};
use gcp_fakes::gcs::FakeGcs;
use gcp_fakes::google::{Endless, FakeGoogle};

const POLL: Duration = Duration::from_millis(5);
const LIMIT: Duration = Duration::from_millis(400);

fn deadline_of(err: &anyhow::Error) -> &DeadlinePassed {
    err.chain()
        .find_map(|e| e.downcast_ref::<DeadlinePassed>())
        .unwrap_or_else(|| panic!("not a DeadlinePassed: {err:#}"))
}

struct OneChunk(Option<Vec<u8>>);

#[async_trait]
impl Rows for OneChunk {
    async fn next(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.0.take())
    }
    async fn finish(&mut self) -> anyhow::Result<u64> {
        Ok(1)
    }
}

#[tokio::test]
async fn a_cloud_sql_operation_that_never_finishes_is_cancelled_at_its_deadline() {
    let gcs = FakeGcs::start("memory");
    gcs.bucket("staging").await;
    let fake = FakeGoogle::start("unused").await;
    fake.never_finish(Endless::CloudSqlOperation);
    let storage = emulator_storage(&gcs.url);
    let db = CloudSqlDatabase {
        admin: CloudSqlAdmin::new(http(fast_policy()), &fake.url, "proj", "infra-pg", POLL)
            .with_deadline(LIMIT),
        storage: storage.clone(),
        staging_bucket: "staging".into(),
        database: "bootcampdb".into(),
        user: "bootcamp".into(),
    };
    let staging = GcsBucket::new("staging", "staging", storage);
    let table = TableDef {
        name: "bootcampdb.user_purchase".into(),
        columns: vec!["invoice_number".into()],
        create_sql: "CREATE TABLE IF NOT EXISTS bootcampdb.user_purchase (invoice_number text);\n"
            .into(),
    };
    let journal = MemJournal::new("run1");
    let err = db
        .replace_rows(
            &table,
            &mut OneChunk(Some(b"\"1\"\n".to_vec())),
            &staging,
            &journal,
        )
        .await
        .unwrap_err();
    let passed = deadline_of(&err);
    assert_eq!(passed.limit, LIMIT);
    assert_eq!(passed.setting, "deadlines.cloudsql_operation_secs");
    let text = format!("{err:#}");
    assert!(
        text.contains("console.cloud.google.com/sql/instances/infra-pg/operations"),
        "{text}"
    );
    // The first import never ended: nothing after it was sent, its id was
    // recorded before it was polled, and it was cancelled.
    let imports = fake.calls("instances.import");
    assert_eq!(imports.len(), 1, "an import was sent after a stuck one");
    let recorded = journal.all(RemoteKind::CloudSqlOperation);
    assert_eq!(recorded.len(), 1);
    assert_eq!(passed.id, recorded[0].id);
    let cancels = fake.calls("operations.cancel");
    assert_eq!(cancels.len(), 1);
    assert!(
        cancels[0].path.contains(&recorded[0].id),
        "{}",
        cancels[0].path
    );
    assert!(fake.calls("operations.get").len() > 1, "it was not polled");
    fake.assert_clean();
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
        labels: BTreeMap::from([("managed-by".to_owned(), "infra".to_owned())]),
        properties: BTreeMap::new(),
    }
}

#[tokio::test]
async fn a_dataproc_job_stuck_running_is_cancelled_and_its_cluster_deleted() {
    let gcs = FakeGcs::start("memory");
    gcs.bucket("dp-driver").await;
    let fake = FakeGoogle::start("dp-driver").await;
    fake.never_finish(Endless::DataprocJob);
    let deadlines = Deadlines {
        dataproc_job: LIMIT,
        ..Deadlines::default()
    };
    let dataproc =
        Dataproc::new(http(fast_policy()), &fake.url, "proj", "r", POLL).with_deadlines(deadlines);
    let lines = Arc::new(Mutex::new(VecDeque::<String>::new()));
    let spark = ClusterSpark::new(
        Arc::new(dataproc),
        emulator_storage(&gcs.url),
        spec(),
        Arc::new(move |line: &str| lines.lock().unwrap().push_back(line.to_owned())),
    );
    assert_eq!(spark.deadline(), Some(LIMIT));
    let journal = MemJournal::new("run1");
    let job = SparkJob {
        name: "tokenizer".into(),
        script: "gs://code/tokenizer.py".into(),
        args: Vec::new(),
    };
    let err = spark.submit(&job, &journal).await.unwrap_err();
    let passed = deadline_of(&err);
    assert_eq!(passed.setting, "deadlines.dataproc_job_secs");
    let (_, recorded) = journal.first(RemoteKind::DataprocJob).unwrap();
    assert_eq!(passed.id, recorded.id);
    assert!(
        format!("{err:#}").contains("console.cloud.google.com/dataproc/jobs/"),
        "{err:#}"
    );
    assert_eq!(fake.clusters().len(), 1);
    // What `run` does whatever happened: the job is cancelled, then the
    // cluster deleted.
    spark.teardown().await.unwrap();
    let cancels = fake.calls("jobs.cancel");
    assert_eq!(cancels.len(), 1);
    assert!(cancels[0].path.contains(&recorded.id));
    assert!(fake.clusters().is_empty(), "the cluster was left running");
    assert!(fake.calls("clusters.delete")[0].at > cancels[0].at);
    fake.assert_clean();
}

#[tokio::test]
async fn a_bigquery_job_that_never_finishes_is_cancelled_at_its_deadline() {
    let fake = FakeGoogle::start("unused").await;
    fake.never_finish(Endless::BigQueryJob);
    let warehouse = BigQueryWarehouse {
        bigquery: BigQuery::new(http(fast_policy()), &fake.url, "proj", "US", POLL)
            .with_deadline(LIMIT),
        labels: BTreeMap::from([("managed-by".to_owned(), "infra".to_owned())]),
    };
    let columns = [Column {
        name: "customer_id",
        kind: ColumnKind::Int64,
        nullable: false,
    }];
    let table = TableRef {
        dataset: "bootcamp".into(),
        table: "user_behavior_metric".into(),
    };
    let journal = MemJournal::new("run1");
    let err = warehouse
        .replace_from_parquet(&table, &columns, "gs://staging/ub/*.parquet", &journal)
        .await
        .unwrap_err();
    let passed = deadline_of(&err);
    assert_eq!(passed.setting, "deadlines.bigquery_job_secs");
    let recorded = journal.all(RemoteKind::BigQueryJob);
    assert_eq!(recorded.len(), 1);
    assert_eq!(passed.id, recorded[0].id);
    assert!(
        format!("{err:#}").contains("console.cloud.google.com/bigquery"),
        "{err:#}"
    );
    let cancels: Vec<_> = fake
        .calls("jobs.cancel")
        .into_iter()
        .filter(|c| c.id.starts_with("bigquery."))
        .collect();
    assert_eq!(cancels.len(), 1);
    assert!(cancels[0].path.contains(&recorded[0].id));
    // Cancelled, the job ends DONE with reason `stopped`, and no table.
    assert!(fake.tables().is_empty());
    fake.assert_clean();
}

/// What a stand-in stopped with SIGSTOP looks like from outside: the
/// kernel accepts the connection, and no byte comes back; or it stops
/// half-way through an answer, after the headers. Both end at the limits.
#[tokio::test]
async fn a_server_that_accepts_and_never_answers_is_caught() {
    use infra::backend::gcp::http::{ApiError, Call, RetryPolicy};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let policy = RetryPolicy {
        attempt_timeout: Duration::from_millis(300),
        deadline: Duration::from_millis(1000),
        ..fast_policy()
    };
    // Never accepted by the program: the kernel's backlog takes it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/x", silent.local_addr().unwrap());
    let err = http(policy.clone())
        .json::<serde_json::Value>(&Call::get(&url))
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Deadline { .. }), "{err}");
    assert!(
        err.to_string().contains("no response within 300ms"),
        "{err}"
    );

    // Headers, then silence in the middle of the body.
    let half = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/x", half.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (mut socket, _) = half.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            socket
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\":")
                .await
                .unwrap();
            held.push(socket);
        }
    });
    // A liveness bound for the test itself, far above the limits.
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        http(policy).json::<serde_json::Value>(&Call::get(&url)),
    )
    .await
    .expect("a body that stopped half-way hung the client")
    .unwrap_err();
    assert!(matches!(err, ApiError::AttemptTimeout(_)), "{err}");
}

/// A real stand-in process (fake-gcs-server) stopped with SIGSTOP in the
/// middle of a download, then asked again: the download errs once no byte
/// comes for the attempt's limit, and the next call ends at its deadline.
#[tokio::test]
async fn a_stand_in_stopped_mid_request_is_caught() {
    use infra::backend::gcp::auth::StaticToken;
    use infra::backend::gcp::http::RetryPolicy;
    use infra::backend::gcp::storage::{GcsClient, StorageEndpoint, Transfer};
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    use tokio::io::AsyncReadExt;

    let gcs = FakeGcs::start("memory");
    gcs.bucket("stopped-mid").await;
    let policy = RetryPolicy {
        attempt_timeout: Duration::from_millis(500),
        deadline: Duration::from_secs(2),
        ..fast_policy()
    };
    let storage = GcsClient::new(
        &StorageEndpoint::emulator(&gcs.url),
        Arc::new(StaticToken::new("unused")),
        policy,
        Transfer::default(),
    )
    .unwrap();
    // Far more than the loopback socket buffers hold, written by the
    // stand-in's own client: only the download is under test.
    let size: u64 = 32 << 20;
    gcs.client()
        .write("stopped-mid", "big", vec![b'x'; size as usize])
        .await
        .unwrap();

    let mut body = storage.get("stopped-mid", "big", None).await.unwrap();
    let mut first = vec![0u8; 1 << 16];
    body.read_exact(&mut first).await.unwrap();
    let server = Pid::from_raw(gcs.pid() as i32);
    kill(server, Signal::SIGSTOP).unwrap();
    struct Continue(Pid);
    impl Drop for Continue {
        fn drop(&mut self) {
            let _ = kill(self.0, Signal::SIGCONT);
        }
    }
    let _continue = Continue(server);

    let mut rest = Vec::new();
    let err = tokio::time::timeout(Duration::from_secs(60), body.read_to_end(&mut rest))
        .await
        .expect("a download from a stopped server hung")
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert!(
        (rest.len() as u64) < size - (1 << 16),
        "it was not stopped mid-way"
    );

    let err = tokio::time::timeout(Duration::from_secs(60), storage.list("stopped-mid", ""))
        .await
        .expect("a call to a stopped server hung")
        .unwrap_err();
    assert!(format!("{err:#}").contains("deadline of 2s"), "{err:#}");
}
