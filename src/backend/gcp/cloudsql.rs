//! Cloud SQL for PostgreSQL through its Admin API: the [`Database`] on GCP.
//!
//! The instance has a private IP only, and the workstation running `infra`
//! has no route into the VPC, so it never opens a PostgreSQL connection and
//! never needs the database password. The instance loads and dumps the
//! data itself, from and to the staging bucket:
//!
//! ```text
//! step 0  valid rows -> staging/_cloudsql/<run>/rows.csv (streamed, rejects beside)
//!         import SQL  1-create.sql  schema, and a fresh bootcampdb.user_purchase_load
//!         import CSV  rows.csv      into user_purchase_load
//!         import SQL  3-swap.sql    one transaction: check the row count, then
//!                                   replace user_purchase's rows, drop the load table
//! step 1  export CSV  selectQuery   -> _cloudsql/<run>/body.csv (no header)
//!         objects.compose header.csv + body.csv -> staging/user_purchase.csv
//! ```
//!
//! A failure before the swap commits leaves the previous table as it was,
//! and a re-run starts again from a fresh load table, so nothing is ever
//! loaded twice. Every operation is recorded in the run record before it
//! is polled, and its errors name it. Cloud SQL runs one import or export
//! at a time per instance, so a re-run first waits for any operation an
//! earlier attempt left running.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use futures_util::StreamExt as _;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::http::{Call, Http, Idempotency, encode_segment};
use super::storage::GcsClient;
use crate::backend::{
    Bucket, Database, Journal, Remote, RemoteKind, Request, RowFormat, Rows, TableDef,
};

/// The real service.
pub const SQLADMIN_URL: &str = "https://sqladmin.googleapis.com";

/// An operation as `operations.get` returns it (the fields we read).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SqlOperation {
    pub name: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub operation_type: Option<String>,
    #[serde(default)]
    pub error: Option<SqlOperationErrors>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SqlOperationErrors {
    #[serde(default)]
    pub errors: Vec<SqlOperationError>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SqlOperationError {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// A Cloud SQL operation that ended with errors.
#[derive(Debug, thiserror::Error)]
#[error("Cloud SQL operation {name} ({what}) failed: {}", .errors.join("; "))]
pub struct OperationFailed {
    pub name: String,
    pub what: String,
    pub errors: Vec<String>,
}

/// A Cloud SQL Admin client for one instance.
#[derive(Clone)]
pub struct CloudSqlAdmin {
    http: Http,
    base: String,
    project: String,
    instance: String,
    poll: Duration,
}

impl CloudSqlAdmin {
    pub fn new(http: Http, base_url: &str, project: &str, instance: &str, poll: Duration) -> Self {
        CloudSqlAdmin {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            project: project.to_owned(),
            instance: instance.to_owned(),
            poll,
        }
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    fn instance_url(&self) -> String {
        format!(
            "{}/v1/projects/{}/instances/{}",
            self.base,
            encode_segment(&self.project),
            encode_segment(&self.instance)
        )
    }

    /// The Cloud Console page of the instance's operations.
    pub fn link(&self) -> String {
        format!(
            "https://console.cloud.google.com/sql/instances/{}/operations?project={}",
            self.instance, self.project
        )
    }

    /// `instances.import` of `context`. Sent once: Cloud SQL has no
    /// request id, and a second import of the same CSV would double it
    /// (the swap's row count check would then refuse it).
    pub fn import_call(&self, context: &Value) -> Call {
        Call::new(
            Method::POST,
            format!("{}/import", self.instance_url()),
            Idempotency::Once,
        )
        .json(&json!({ "importContext": context }))
    }

    /// `instances.export` of `context`; an export only writes its object,
    /// so sending it again is harmless.
    pub fn export_call(&self, context: &Value) -> Call {
        Call::new(
            Method::POST,
            format!("{}/export", self.instance_url()),
            Idempotency::Idempotent,
        )
        .json(&json!({ "exportContext": context }))
    }

    /// Sends `call` (an import or export) and returns its operation.
    pub async fn start(&self, call: &Call, what: &str) -> Result<SqlOperation> {
        self.http
            .json(call)
            .await
            .with_context(|| format!("Cloud SQL instance {} refused to {what}", self.instance))
    }

    pub async fn get_operation(&self, name: &str) -> Result<SqlOperation> {
        let call = Call::get(format!(
            "{}/v1/projects/{}/operations/{}",
            self.base,
            encode_segment(&self.project),
            encode_segment(name)
        ));
        self.http
            .json(&call)
            .await
            .with_context(|| format!("cannot poll Cloud SQL operation {name}"))
    }

    /// Polls the operation until DONE; errors are an [`OperationFailed`]
    /// that names it.
    pub async fn wait(&self, name: &str, what: &str) -> Result<()> {
        let progress = crate::ui::Progress::spinner(format!("Cloud SQL {what}"), "PENDING");
        loop {
            let operation = self.get_operation(name).await?;
            progress.set_message(&operation.status);
            if operation.status == "DONE" {
                let errors: Vec<String> = operation
                    .error
                    .map(|e| e.errors)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|e| format!("{} ({})", e.message, e.code))
                    .collect();
                if errors.is_empty() {
                    return Ok(());
                }
                bail!(OperationFailed {
                    name: name.to_owned(),
                    what: what.to_owned(),
                    errors,
                });
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}

/// A Cloud SQL database, loaded and dumped through the Admin API.
pub struct CloudSqlDatabase {
    pub admin: CloudSqlAdmin,
    /// For `objects.compose` in the staging bucket.
    pub storage: GcsClient,
    pub staging_bucket: String,
    pub database: String,
    /// The user imports run as, so the table is the pipeline user's.
    pub user: String,
}

/// The scratch objects of one attempt.
struct Scratch {
    prefix: String,
}

impl Scratch {
    fn new(journal_run: &str, attempt: u32) -> Scratch {
        Scratch {
            prefix: format!("_cloudsql/{journal_run}-{attempt}"),
        }
    }
    fn key(&self, name: &str) -> String {
        format!("{}/{name}", self.prefix)
    }
}

/// The fresh table a load goes into before the swap.
fn load_table(table: &TableDef) -> String {
    format!("{}_load", table.name)
}

/// Schema, then a fresh, empty load table shaped like the real one.
pub fn create_sql(table: &TableDef) -> String {
    let load = load_table(table);
    format!(
        "{}\nDROP TABLE IF EXISTS {load};\nCREATE TABLE {load} (LIKE {} INCLUDING ALL);\n",
        table.create_sql.trim_end(),
        table.name
    )
}

/// One transaction: refuse unless the load table holds exactly `rows`,
/// then replace the real table's rows and drop the load table. The real
/// table keeps its identity (grants, dependants).
pub fn swap_sql(table: &TableDef, rows: u64) -> String {
    let (name, load) = (&table.name, load_table(table));
    format!(
        "BEGIN;\n\
         DO $$\n\
         DECLARE n bigint;\n\
         BEGIN\n  SELECT count(*) INTO n FROM {load};\n  \
         IF n <> {rows} THEN\n    \
         RAISE EXCEPTION 'infra: {load} holds % rows, expected {rows}', n;\n  \
         END IF;\n\
         END $$;\n\
         TRUNCATE {name};\n\
         INSERT INTO {name} SELECT * FROM {load};\n\
         DROP TABLE {load};\n\
         COMMIT;\n"
    )
}

fn select_query(table: &TableDef) -> String {
    format!("SELECT {} FROM {}", table.columns.join(", "), table.name)
}

impl CloudSqlDatabase {
    fn sql_import(&self, uri: &str) -> Value {
        json!({
            "fileType": "SQL",
            "uri": uri,
            "database": self.database,
            "importUser": self.user,
        })
    }

    fn csv_import(&self, table: &TableDef, uri: &str) -> Value {
        json!({
            "fileType": "CSV",
            "uri": uri,
            "database": self.database,
            "importUser": self.user,
            "csvImportOptions": {
                "table": load_table(table),
                "columns": table.columns,
            },
        })
    }

    fn csv_export(&self, table: &TableDef, uri: &str) -> Value {
        json!({
            "fileType": "CSV",
            "uri": uri,
            "databases": [self.database],
            "csvExportOptions": { "selectQuery": select_query(table) },
        })
    }

    /// Runs one import or export to the end, recording its operation first.
    async fn run(&self, call: Call, what: &str, journal: &dyn Journal) -> Result<()> {
        let operation = self.admin.start(&call, what).await?;
        journal.started(Remote {
            kind: RemoteKind::CloudSqlOperation,
            id: operation.name.clone(),
            uuid: operation.operation_type.clone(),
            link: Some(self.admin.link()),
        })?;
        tracing::info!("Cloud SQL operation {} ({what})", operation.name);
        self.admin.wait(&operation.name, what).await
    }

    /// Waits out what an earlier attempt left running: the instance takes
    /// one import or export at a time.
    async fn settle_earlier(&self, journal: &dyn Journal) {
        for earlier in journal.earlier(RemoteKind::CloudSqlOperation) {
            if let Err(e) = self
                .admin
                .wait(&earlier.id, "an earlier attempt's operation")
                .await
            {
                tracing::info!("{e:#}");
            }
        }
    }

    async fn remove(&self, staging: &dyn Bucket, keys: &[String]) {
        for key in keys {
            if let Err(e) = staging.delete(key).await {
                tracing::warn!("cannot remove {}: {e:#}", staging.uri(key));
            }
        }
    }
}

/// `rows` as a byte stream, for an upload.
fn byte_stream(
    rows: &mut dyn Rows,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + '_ {
    futures_util::stream::unfold((rows, false), |(rows, failed)| async move {
        if failed {
            return None;
        }
        match rows.next().await {
            Ok(Some(chunk)) => Some((Ok(bytes::Bytes::from(chunk)), (rows, false))),
            Ok(None) => None,
            Err(e) => Some((Err(std::io::Error::other(format!("{e:#}"))), (rows, true))),
        }
    })
}

#[async_trait]
impl Database for CloudSqlDatabase {
    fn row_format(&self) -> RowFormat {
        RowFormat::Csv
    }

    fn describe(&self) -> String {
        format!(
            "Cloud SQL instance {}, database {}",
            self.admin.instance(),
            self.database
        )
    }

    async fn replace_rows(
        &self,
        table: &TableDef,
        rows: &mut dyn Rows,
        staging: &dyn Bucket,
        journal: &dyn Journal,
    ) -> Result<u64> {
        self.settle_earlier(journal).await;
        let scratch = Scratch::new(journal.run_id(), journal.attempt());
        let (create, data, swap) = (
            scratch.key("1-create.sql"),
            scratch.key("2-rows.csv"),
            scratch.key("3-swap.sql"),
        );
        let mut body = StreamReader::new(byte_stream(rows).boxed());
        staging
            .put(&data, &mut body)
            .await
            .with_context(|| format!("cannot write the valid rows to {}", staging.uri(&data)))?;
        drop(body);
        let valid = rows.finish().await?;
        staging
            .put(&create, &mut create_sql(table).as_bytes())
            .await?;
        staging
            .put(&swap, &mut swap_sql(table, valid).as_bytes())
            .await?;
        let (name, load) = (&table.name, load_table(table));
        self.run(
            self.admin
                .import_call(&self.sql_import(&staging.uri(&create))),
            &format!("create a fresh {load}"),
            journal,
        )
        .await
        .with_context(|| format!("{name} keeps its previous rows"))?;
        self.run(
            self.admin
                .import_call(&self.csv_import(table, &staging.uri(&data))),
            &format!("import {} into {load}", staging.uri(&data)),
            journal,
        )
        .await
        .with_context(|| format!("{name} keeps its previous rows"))?;
        self.run(
            self.admin
                .import_call(&self.sql_import(&staging.uri(&swap))),
            &format!("swap the {valid} new rows into {name}"),
            journal,
        )
        .await
        .with_context(|| format!("{name} keeps its previous rows"))?;
        self.remove(staging, &[create, data, swap]).await;
        Ok(valid)
    }

    async fn dump_csv(
        &self,
        table: &TableDef,
        staging: &dyn Bucket,
        key: &str,
        journal: &dyn Journal,
    ) -> Result<u64> {
        self.settle_earlier(journal).await;
        let scratch = Scratch::new(journal.run_id(), journal.attempt());
        let (header, body) = (scratch.key("header.csv"), scratch.key("body.csv"));
        // Cloud SQL's CSV export has no header line; the jobs read one.
        let header_line = format!("{}\n", table.columns.join(","));
        staging.put(&header, &mut header_line.as_bytes()).await?;
        self.run(
            self.admin
                .export_call(&self.csv_export(table, &staging.uri(&body))),
            &format!("export {} to {}", table.name, staging.uri(&body)),
            journal,
        )
        .await?;
        self.storage
            .compose(&self.staging_bucket, &[&header, &body], key, "text/csv")
            .await?;
        self.remove(staging, &[header, body]).await;
        count_records(staging, key).await
    }

    fn preview_load(&self, table: &TableDef, staging: &dyn Bucket, run_id: &str) -> Vec<Request> {
        let scratch = Scratch::new(run_id, 1);
        let uri = |name: &str| staging.uri(&scratch.key(name));
        vec![
            self.admin
                .import_call(&self.sql_import(&uri("1-create.sql")))
                .to_request("after the valid rows are written to 2-rows.csv; then operations.get until DONE"),
            self.admin
                .import_call(&self.csv_import(table, &uri("2-rows.csv")))
                .to_request("then operations.get until DONE"),
            self.admin
                .import_call(&self.sql_import(&uri("3-swap.sql")))
                .to_request("checks the row count and swaps, in one transaction"),
        ]
    }

    fn preview_dump(
        &self,
        table: &TableDef,
        staging: &dyn Bucket,
        key: &str,
        run_id: &str,
    ) -> Vec<Request> {
        let scratch = Scratch::new(run_id, 1);
        vec![
            self.admin
                .export_call(&self.csv_export(table, &staging.uri(&scratch.key("body.csv"))))
                .to_request("then operations.get until DONE"),
            self.storage
                .compose_call(
                    &self.staging_bucket,
                    &[&scratch.key("header.csv"), &scratch.key("body.csv")],
                    key,
                    "text/csv",
                )
                .to_request("prepends the header line the Spark job reads"),
        ]
    }
}

/// Counts the CSV records of `key` (after its header), streaming.
async fn count_records(staging: &dyn Bucket, key: &str) -> Result<u64> {
    let uri = staging.uri(key);
    let body = staging.get(key).await?;
    tokio::task::spawn_blocking(move || {
        let mut csv = csv::ReaderBuilder::new().has_headers(true).from_reader(
            std::io::BufReader::with_capacity(1 << 16, SyncIoBridge::new(body)),
        );
        let mut record = csv::ByteRecord::new();
        let mut rows = 0u64;
        while csv
            .read_byte_record(&mut record)
            .with_context(|| format!("cannot count the rows of {uri}"))?
        {
            rows += 1;
        }
        Ok(rows)
    })
    .await
    .context("the row counter panicked")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_swap_checks_the_count_inside_its_transaction() {
        let swap = swap_sql_for("bootcampdb.user_purchase", 541_909);
        let begin = swap.find("BEGIN;").unwrap();
        let check = swap.find("IF n <> 541909").unwrap();
        let truncate = swap.find("TRUNCATE bootcampdb.user_purchase;").unwrap();
        let commit = swap.find("COMMIT;").unwrap();
        assert!(
            begin < check && check < truncate && truncate < commit,
            "{swap}"
        );
        assert!(swap.contains("DROP TABLE bootcampdb.user_purchase_load;"));
    }

    fn swap_sql_for(table: &str, rows: u64) -> String {
        swap_sql(
            &TableDef {
                name: table.into(),
                columns: vec!["a".into()],
                create_sql: "CREATE TABLE IF NOT EXISTS x (a int);".into(),
            },
            rows,
        )
    }
}
