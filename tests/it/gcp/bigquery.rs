//! BigQuery against the contract-checking fake.

use std::collections::BTreeMap;
use std::time::Duration;

use infra::backend::gcp::bigquery::{BigQuery, BigQueryWarehouse, JobFailed};
use infra::backend::{Cell, Column, ColumnKind, RemoteKind, TableRef, Warehouse};

use super::{fast_policy, http};
use gcp_fakes::google::{FakeGoogle, LOADED_ROWS};

use super::journal::MemJournal;

fn warehouse(fake: &FakeGoogle) -> BigQueryWarehouse {
    BigQueryWarehouse {
        bigquery: BigQuery::new(
            http(fast_policy()),
            &fake.url,
            "proj",
            "US",
            Duration::from_millis(2),
        ),
        labels: BTreeMap::from([("managed-by".to_owned(), "infra".to_owned())]),
    }
}

const COLUMNS: [Column; 3] = [
    Column {
        name: "customer_id",
        kind: ColumnKind::Int64,
        nullable: false,
    },
    Column {
        name: "amount_spent",
        kind: ColumnKind::Decimal38_3,
        nullable: true,
    },
    Column {
        name: "insert_date",
        kind: ColumnKind::Timestamp,
        nullable: true,
    },
];

fn table() -> TableRef {
    TableRef {
        dataset: "bootcamp".into(),
        table: "user_behavior_metric".into(),
    }
}

#[tokio::test]
async fn a_load_replaces_the_table_and_a_repeat_re_attaches() {
    let fake = FakeGoogle::start("unused").await;
    let warehouse = warehouse(&fake);
    let journal = MemJournal::new("run1");
    let rows = warehouse
        .replace_from_parquet(
            &table(),
            &COLUMNS,
            "gs://staging/metric/*.parquet",
            &journal,
        )
        .await
        .unwrap();
    assert_eq!(rows, LOADED_ROWS);
    let insert = &fake.calls("jobs.insert")[0];
    assert_eq!(
        insert.body["jobReference"]["jobId"],
        "run1_1_load_bootcamp_user_behavior_metric"
    );
    let (recorded, job) = journal.first(RemoteKind::BigQueryJob).unwrap();
    assert_eq!(job.id, "run1_1_load_bootcamp_user_behavior_metric");
    assert!(
        recorded < insert.at,
        "the job id was recorded after the insert"
    );
    let load = &insert.body["configuration"]["load"];
    assert_eq!(
        load["sourceUris"],
        serde_json::json!(["gs://staging/metric/*.parquet"])
    );
    assert_eq!(load["writeDisposition"], "WRITE_TRUNCATE");
    // Parquet's default is ["NUMERIC"], which cannot hold a DECIMAL(38,3)
    // past 29 integer digits (the stand-in's rule: gcp_fakes::bigquery).
    assert_eq!(
        load["decimalTargetTypes"],
        serde_json::json!(["NUMERIC", "BIGNUMERIC"])
    );
    assert_eq!(
        load["schema"]["fields"],
        serde_json::json!([
            {"name": "customer_id", "type": "INT64", "mode": "REQUIRED"},
            {"name": "amount_spent", "type": "BIGNUMERIC", "precision": "38", "scale": "3", "mode": "NULLABLE"},
            {"name": "insert_date", "type": "TIMESTAMP", "mode": "NULLABLE"},
        ])
    );
    assert_eq!(
        fake.calls("tables.get").len(),
        1,
        "the row count was not checked against the table"
    );

    // A re-run after a crash: the earlier attempt's job is re-attached to.
    let again = warehouse
        .replace_from_parquet(
            &table(),
            &COLUMNS,
            "gs://staging/metric/*.parquet",
            &journal.next_attempt(),
        )
        .await
        .unwrap();
    assert_eq!(again, LOADED_ROWS);
    assert_eq!(fake.calls("jobs.insert").len(), 1);
    assert_eq!(fake.bq_jobs(), 1, "a second load job was started");
    assert_eq!(
        fake.calls("datasets.insert").len(),
        2,
        "409 on the dataset is fine"
    );
    fake.assert_clean();
}

#[tokio::test]
async fn a_failed_load_reports_every_error() {
    let fake = FakeGoogle::start("unused").await;
    let err = warehouse(&fake)
        .replace_from_parquet(
            &table(),
            &COLUMNS,
            "gs://staging/broken/*.parquet",
            &MemJournal::new("run1"),
        )
        .await
        .unwrap_err();
    let failed = err
        .chain()
        .find_map(|e| e.downcast_ref::<JobFailed>())
        .expect("a JobFailed");
    assert_eq!(failed.errors.len(), 2);
    let text = format!("{err:#}");
    for want in [
        "bootcamp.user_behavior_metric",
        "gs://staging/broken/part-0.parquet",
        "has type INT64",
        "run1_1_load_bootcamp",
    ] {
        assert!(text.contains(want), "`{want}` missing from: {text}");
    }
    assert!(fake.tables().is_empty());
    fake.assert_clean();
}

#[tokio::test]
async fn queries_page_through_results_and_render_exact_values() {
    let fake = FakeGoogle::start("unused").await;
    let result = warehouse(&fake)
        .query("SELECT * FROM bootcamp.user_behavior_metric")
        .await
        .unwrap();
    assert_eq!(
        result.columns,
        [
            "customer_id",
            "amount_spent",
            "insert_date",
            "ratio",
            "positive",
            "note"
        ]
    );
    assert_eq!(
        result.rows,
        [
            vec![
                Some(Cell::Int(1)),
                Some(Cell::Text("12345678901234567890123456789.125".into())),
                Some(Cell::Text("2026-11-26T21:40:00.500Z".into())),
                Some(Cell::Float(0.5)),
                Some(Cell::Bool(true)),
                Some(Cell::Text("a".into())),
            ],
            vec![
                Some(Cell::Int(2)),
                Some(Cell::Text("0.001".into())),
                Some(Cell::Text("1970-01-01T00:00:00Z".into())),
                Some(Cell::Float(-1.25)),
                Some(Cell::Bool(false)),
                None,
            ],
            vec![
                Some(Cell::Int(3)),
                None,
                None,
                None,
                None,
                Some(Cell::Text("c".into()))
            ],
        ]
    );
    assert_eq!(
        fake.calls("jobs.getQueryResults").len(),
        3,
        "not complete, then two pages"
    );
    let query = &fake.calls("jobs.query")[0];
    assert_eq!(query.body["useLegacySql"], false);
    assert!(query.body["requestId"].is_string());
    fake.assert_clean();
}

#[tokio::test]
async fn down_deletes_every_table_then_the_dataset() {
    let fake = FakeGoogle::start("unused").await;
    for t in ["a", "b", "c"] {
        fake.add_table("bootcamp", t);
    }
    let bq = warehouse(&fake).bigquery;
    let tables = bq.list_tables("bootcamp").await.unwrap();
    assert_eq!(tables, ["a", "b", "c"]);
    assert_eq!(
        fake.calls("tables.list").len(),
        2,
        "listing did not follow the pages"
    );
    bq.delete_table("bootcamp", "a").await.unwrap();
    bq.delete_table("bootcamp", "a").await.unwrap();
    bq.delete_dataset("bootcamp").await.unwrap();
    assert!(fake.tables().is_empty());
    bq.delete_dataset("bootcamp").await.unwrap();
    assert!(bq.list_tables("bootcamp").await.unwrap().is_empty());
    assert_eq!(
        fake.calls("datasets.delete")[0].query,
        [("deleteContents".to_owned(), "true".to_owned())]
    );
    fake.assert_clean();
}
