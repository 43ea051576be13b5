//! Cloud SQL through its Admin API, against the contract-checking fake
//! (which checks every request against sqladmin.v1.json but executes no
//! SQL) and fake-gcs-server for the staging bucket. What these tests can
//! prove is the order and shape of the requests: that the table is only
//! touched by the swap, which is never sent after a failed import.

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use infra::backend::gcp::cloudsql::{CloudSqlAdmin, CloudSqlDatabase, OperationFailed};
use infra::backend::gcp::storage::GcsBucket;
use infra::backend::{Bucket, Database, RemoteKind, Rows, TableDef};
use tokio::io::AsyncReadExt;

use super::journal::MemJournal;
use super::{emulator_storage, fast_policy, http};
use gcp_fakes::gcs::FakeGcs;
use gcp_fakes::google::{FakeGoogle, Fault};

struct Setup {
    _gcs: FakeGcs,
    fake: FakeGoogle,
    db: CloudSqlDatabase,
    staging: GcsBucket,
}

async fn setup() -> Setup {
    let gcs = FakeGcs::start("memory");
    gcs.bucket("staging").await;
    let fake = FakeGoogle::start("unused").await;
    let storage = emulator_storage(&gcs.url);
    let db = CloudSqlDatabase {
        admin: CloudSqlAdmin::new(
            http(fast_policy()),
            &fake.url,
            "proj",
            "infra-pg",
            Duration::from_millis(2),
        ),
        storage: storage.clone(),
        staging_bucket: "staging".into(),
        database: "bootcampdb".into(),
        user: "bootcamp".into(),
    };
    Setup {
        _gcs: gcs,
        fake,
        db,
        staging: GcsBucket::new("staging", "staging", storage),
    }
}

fn table() -> TableDef {
    TableDef {
        name: "bootcampdb.user_purchase".into(),
        columns: vec!["invoice_number".into(), "quantity".into()],
        create_sql: "CREATE SCHEMA IF NOT EXISTS bootcampdb;\nCREATE TABLE IF NOT EXISTS bootcampdb.user_purchase (invoice_number varchar(10), quantity int);\n".into(),
    }
}

/// Rows already encoded, and whether the database ended the input.
struct VecRows {
    chunks: VecDeque<Vec<u8>>,
    rows: u64,
    finished_after_all_chunks: Option<bool>,
}

#[async_trait]
impl Rows for VecRows {
    async fn next(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.chunks.pop_front())
    }
    async fn finish(&mut self) -> anyhow::Result<u64> {
        self.finished_after_all_chunks = Some(self.chunks.is_empty());
        Ok(self.rows)
    }
}

fn rows() -> VecRows {
    VecRows {
        chunks: VecDeque::from([
            b"\"536365\",6\n".to_vec(),
            b"\"536366\",-1\n\"5\",2\n".to_vec(),
        ]),
        rows: 3,
        finished_after_all_chunks: None,
    }
}

async fn text(bucket: &dyn Bucket, key: &str) -> String {
    let mut out = String::new();
    bucket
        .get(key)
        .await
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    out
}

#[tokio::test]
async fn a_load_imports_ddl_rows_then_swaps_with_a_count_check() {
    let s = setup().await;
    let journal = MemJournal::new("run1");
    let mut rows = rows();
    // Keep the scratch files: the test reads what the imports were given.
    let loaded =
        s.db.replace_rows(&table(), &mut rows, &s.staging, &journal)
            .await
            .unwrap();
    assert_eq!(loaded, 3);
    assert_eq!(rows.finished_after_all_chunks, Some(true));

    let imports = s.fake.calls("instances.import");
    assert_eq!(imports.len(), 3);
    let context = |i: usize| imports[i].body["importContext"].clone();
    assert_eq!(context(0)["fileType"], "SQL");
    assert_eq!(
        context(0)["uri"],
        "gs://staging/_cloudsql/run1-1/1-create.sql"
    );
    assert_eq!(context(1)["fileType"], "CSV");
    assert_eq!(
        context(1)["csvImportOptions"]["table"],
        "bootcampdb.user_purchase_load"
    );
    assert_eq!(
        context(1)["csvImportOptions"]["columns"],
        serde_json::json!(["invoice_number", "quantity"])
    );
    assert_eq!(
        context(2)["uri"],
        "gs://staging/_cloudsql/run1-1/3-swap.sql"
    );
    for i in 0..3 {
        assert_eq!(context(i)["database"], "bootcampdb");
        assert_eq!(context(i)["importUser"], "bootcamp");
    }
    // Each import waited for the one before: the instance takes one at a time.
    let gets = s.fake.calls("operations.get");
    // The fake's operations answer PENDING, then RUNNING, then DONE.
    assert_eq!(gets.len(), 6, "operations were not polled to DONE");
    assert!(imports[1].at > gets[1].at && imports[2].at > gets[3].at);
    // Every operation was in the journal before it was polled.
    let recorded = journal.all(RemoteKind::CloudSqlOperation);
    assert_eq!(recorded.len(), 3);
    let (first_recorded, _) = journal.first(RemoteKind::CloudSqlOperation).unwrap();
    assert!(first_recorded < gets[0].at);
    // The scratch objects are gone.
    assert!(s.staging.list("_cloudsql/").await.unwrap().is_empty());
    s.fake.assert_clean();
}

#[tokio::test]
async fn the_files_given_to_the_imports_hold_the_rows_and_the_swap() {
    let s = setup().await;
    // A failing swap keeps the scratch files for the test to read.
    s.fake.fail_imports_of("3-swap.sql");
    let journal = MemJournal::new("run2");
    let mut rows = rows();
    let err =
        s.db.replace_rows(&table(), &mut rows, &s.staging, &journal)
            .await
            .unwrap_err();
    let text_of = |name: &str| format!("_cloudsql/run2-1/{name}");
    assert_eq!(
        text(&s.staging, &text_of("2-rows.csv")).await,
        "\"536365\",6\n\"536366\",-1\n\"5\",2\n"
    );
    let create = text(&s.staging, &text_of("1-create.sql")).await;
    assert!(create.contains("CREATE TABLE bootcampdb.user_purchase_load (LIKE bootcampdb.user_purchase INCLUDING ALL);"), "{create}");
    let swap = text(&s.staging, &text_of("3-swap.sql")).await;
    assert!(
        swap.starts_with("BEGIN;") && swap.trim_end().ends_with("COMMIT;"),
        "{swap}"
    );
    assert!(swap.contains("IF n <> 3 THEN"), "{swap}");
    let failed = err
        .chain()
        .find_map(|e| e.downcast_ref::<OperationFailed>())
        .expect("an OperationFailed");
    let message = format!("{err:#}");
    assert!(
        message.contains(&failed.name) && message.contains("keeps its previous rows"),
        "{message}"
    );
}

#[tokio::test]
async fn a_failed_row_import_never_reaches_the_table() {
    let s = setup().await;
    s.fake.fail_imports_of("2-rows.csv");
    let journal = MemJournal::new("run1");
    let err =
        s.db.replace_rows(&table(), &mut rows(), &s.staging, &journal)
            .await
            .unwrap_err();
    let message = format!("{err:#}");
    let failed = err
        .chain()
        .find_map(|e| e.downcast_ref::<OperationFailed>())
        .expect("an OperationFailed");
    assert!(failed.name.starts_with("sqlop-"), "{}", failed.name);
    assert!(
        message.contains(&format!("Cloud SQL operation {}", failed.name)),
        "{message}"
    );
    assert!(message.contains("invalid input syntax"), "{message}");
    assert!(
        message.contains("bootcampdb.user_purchase keeps its previous rows"),
        "{message}"
    );
    // The swap, the only statement that touches the table, was never sent.
    let imports = s.fake.calls("instances.import");
    assert_eq!(imports.len(), 2);
    assert!(
        !imports
            .iter()
            .any(|i| i.body.to_string().contains("3-swap.sql"))
    );
    s.fake.assert_clean();
}

#[tokio::test]
async fn polling_survives_a_503_burst_and_a_429() {
    let s = setup().await;
    s.fake.inject(
        "operations.get",
        2,
        Fault::Status {
            code: 503,
            retry_after: None,
        },
    );
    s.fake.inject(
        "operations.get",
        1,
        Fault::Status {
            code: 429,
            retry_after: Some(0),
        },
    );
    let loaded =
        s.db.replace_rows(&table(), &mut rows(), &s.staging, &MemJournal::new("run1"))
            .await
            .unwrap();
    assert_eq!(loaded, 3);
    assert_eq!(
        s.fake.calls("instances.import").len(),
        3,
        "an import was sent twice"
    );
    s.fake.assert_clean();
}

#[tokio::test]
async fn a_dump_exports_the_query_and_prepends_the_header() {
    let s = setup().await;
    let journal = MemJournal::new("run1");
    // Cloud SQL writes the export itself; the fake does not, so the test
    // writes what it would: CSV rows, no header.
    s.staging
        .put(
            "_cloudsql/run1-1/body.csv",
            &mut &b"536365,6\n\"53,6366\",-1\n"[..],
        )
        .await
        .unwrap();
    let rows =
        s.db.dump_csv(&table(), &s.staging, "user_purchase.csv", &journal)
            .await
            .unwrap();
    assert_eq!(rows, 2);
    assert_eq!(
        text(&s.staging, "user_purchase.csv").await,
        "invoice_number,quantity\n536365,6\n\"53,6366\",-1\n"
    );
    let export = &s.fake.calls("instances.export")[0].body["exportContext"];
    assert_eq!(export["fileType"], "CSV");
    assert_eq!(export["databases"], serde_json::json!(["bootcampdb"]));
    assert_eq!(
        export["csvExportOptions"]["selectQuery"],
        "SELECT invoice_number, quantity FROM bootcampdb.user_purchase"
    );
    assert_eq!(export["uri"], "gs://staging/_cloudsql/run1-1/body.csv");
    assert!(s.staging.list("_cloudsql/").await.unwrap().is_empty());
    s.fake.assert_clean();
}

#[tokio::test]
async fn a_rerun_waits_for_the_operation_an_earlier_attempt_left_running() {
    let s = setup().await;
    let first = MemJournal::new("run1");
    s.staging
        .put("_cloudsql/run1-1/body.csv", &mut &b"1,1\n"[..])
        .await
        .unwrap();
    s.db.dump_csv(&table(), &s.staging, "user_purchase.csv", &first)
        .await
        .unwrap();
    let second = first.next_attempt();
    let second_began = std::time::Instant::now();
    s.staging
        .put("_cloudsql/run1-2/body.csv", &mut &b"1,1\n"[..])
        .await
        .unwrap();
    s.db.dump_csv(&table(), &s.staging, "user_purchase.csv", &second)
        .await
        .unwrap();
    let earlier = &first.all(RemoteKind::CloudSqlOperation)[0].id;
    let exports = s.fake.calls("instances.export");
    assert_eq!(exports.len(), 2);
    let waited = s.fake.calls("operations.get").into_iter().any(|g| {
        g.path.ends_with(&format!("/operations/{earlier}"))
            && g.at > second_began
            && g.at < exports[1].at
    });
    assert!(
        waited,
        "the second attempt did not check the first one's operation"
    );
    s.fake.assert_clean();
}

/// A backup in its window holds the instance: Cloud SQL answers the import
/// 409 `operationInProgress` and takes nothing. The load waits for the
/// backup, then sends the import again, and loads once.
#[tokio::test]
async fn an_import_that_meets_a_backup_waits_for_it_and_is_sent_again() {
    let s = setup().await;
    let backup = s.fake.hold_sql_operation("infra-pg", "BACKUP_VOLUME", 3);
    let journal = MemJournal::new("run1");
    let loaded =
        s.db.replace_rows(&table(), &mut rows(), &s.staging, &journal)
            .await
            .unwrap();
    assert_eq!(loaded, 3);
    let imports = s.fake.calls("instances.import");
    // The first import was refused, then sent again: 3 taken, 4 sent.
    assert_eq!(imports.len(), 4);
    assert_eq!(imports[0].body, imports[1].body);
    let taken: Vec<_> = s
        .fake
        .sql_operations()
        .into_iter()
        .filter(|op| op["operationType"] == "IMPORT")
        .collect();
    assert_eq!(taken.len(), 3, "{taken:?}");
    let lists = s.fake.calls("operations.list");
    assert_eq!(lists.len(), 1);
    assert!(lists[0].at > imports[0].at && lists[0].at < imports[1].at);
    // The resubmission came only after the backup was seen DONE.
    let backup_polls: Vec<_> = s
        .fake
        .calls("operations.get")
        .into_iter()
        .filter(|g| g.path.ends_with(&format!("/operations/{backup}")))
        .collect();
    assert_eq!(backup_polls.len(), 4, "RUNNING three times, then DONE");
    assert!(backup_polls.last().unwrap().at < imports[1].at);
    // Only our own operations are in the run record.
    assert_eq!(journal.all(RemoteKind::CloudSqlOperation).len(), 3);
    s.fake.assert_clean();
}

/// An export whose answer is lost is retried (it is idempotent); the retry
/// meets the export it already started, 409 `operationInProgress`. The
/// dump re-attaches to that operation instead of failing or exporting
/// twice.
#[tokio::test]
async fn a_retried_export_that_meets_its_own_first_attempt_re_attaches() {
    let s = setup().await;
    s.staging
        .put("_cloudsql/run1-1/body.csv", &mut &b"536365,6\n"[..])
        .await
        .unwrap();
    s.fake.inject("instances.export", 1, Fault::Lost(503));
    let journal = MemJournal::new("run1");
    let rows =
        s.db.dump_csv(&table(), &s.staging, "user_purchase.csv", &journal)
            .await
            .unwrap();
    assert_eq!(rows, 1);
    assert_eq!(
        s.fake.calls("instances.export").len(),
        2,
        "sent, then retried"
    );
    let exports: Vec<_> = s
        .fake
        .sql_operations()
        .into_iter()
        .filter(|op| op["operationType"] == "EXPORT")
        .collect();
    assert_eq!(exports.len(), 1, "the export ran twice: {exports:?}");
    let recorded = journal.all(RemoteKind::CloudSqlOperation);
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].id, exports[0]["name"].as_str().unwrap());
    s.fake.assert_clean();
}

/// Maintenance holds the instance: the export is refused 409, waits the
/// maintenance out, and is sent again; only the export is ours.
#[tokio::test]
async fn an_export_waits_out_maintenance_then_runs() {
    let s = setup().await;
    s.staging
        .put("_cloudsql/run1-1/body.csv", &mut &b"1,1\n"[..])
        .await
        .unwrap();
    s.fake.hold_sql_operation("infra-pg", "MAINTENANCE", 1);
    let journal = MemJournal::new("run1");
    s.db.dump_csv(&table(), &s.staging, "user_purchase.csv", &journal)
        .await
        .unwrap();
    assert_eq!(s.fake.calls("instances.export").len(), 2);
    assert_eq!(journal.all(RemoteKind::CloudSqlOperation).len(), 1);
    s.fake.assert_clean();
}
