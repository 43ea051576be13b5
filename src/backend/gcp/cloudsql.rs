//! Cloud SQL for PostgreSQL through its Admin API: the [`Database`] on GCP.
//!
//! The instance has a private IP only, and the workstation running `infra`
//! has no route into the VPC, so it never opens a PostgreSQL connection and
//! never needs the database password. The instance loads and dumps the
//! data itself, from and to the staging bucket:
//!
//! ```text
//! step 0  valid rows -> staging/_cloudsql/<run>/2-rows.csv (streamed, rejects beside)
//!         import SQL  1-create.sql  schema, and a fresh bootcampdb.user_purchase_load
//!         import CSV  2-rows.csv    into user_purchase_load
//!         import SQL  2-rows-with-line-breaks.sql   only if some rows hold a line
//!                                   break in a field: Cloud SQL's CSV import takes
//!                                   one line per row (see `line_breaks`)
//!         import SQL  3-swap.sql    one transaction: check the row count, then
//!                                   replace user_purchase's rows, drop the load table
//! step 1  export CSV  selectQuery   -> _cloudsql/<run>/body.csv (no header)
//!         objects.compose header.csv + body.csv -> staging/user_purchase.csv
//! ```
//!
//! A failure before the swap commits leaves the previous table as it was,
//! and a re-run starts again from a fresh load table, so nothing is ever
//! loaded twice. Every operation is recorded in the run record before it
//! is polled, and its errors name it.
//!
//! Cloud SQL runs one operation at a time per instance: an import or export
//! sent while another runs (ours, a backup in its window, maintenance) is
//! refused with 409 `operationInProgress` and not taken. So a 409 is met by
//! listing the instance's operations: one that carries our own request (an
//! export whose first answer was lost, then retried) is ours and is waited
//! for; otherwise every running one is waited out and the request sent
//! again. A re-run also first waits for any operation an earlier attempt
//! left running.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use futures_util::StreamExt as _;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::deadline::{self, DeadlinePassed, Deadlines};
use super::http::{ApiError, Call, Http, Idempotency, encode_segment};
use super::line_breaks;
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
    #[serde(default)]
    pub import_context: Option<Value>,
    #[serde(default)]
    pub export_context: Option<Value>,
}

impl SqlOperation {
    /// Whether it still holds the instance.
    fn is_running(&self) -> bool {
        self.status == "PENDING" || self.status == "RUNNING"
    }

    /// Whether it is the operation `request` (an import or export body)
    /// asked for: the same kind, to or from the same object. Our objects
    /// are named per run and attempt, so no one else's operation matches.
    fn carries(&self, request: &Value) -> bool {
        let same_uri = |ours: &Value, theirs: &Option<Value>| {
            ours["uri"].is_string() && theirs.as_ref().map(|c| &c["uri"]) == Some(&ours["uri"])
        };
        match self.operation_type.as_deref() {
            Some("IMPORT") => same_uri(&request["importContext"], &self.import_context),
            Some("EXPORT") => same_uri(&request["exportContext"], &self.export_context),
            _ => false,
        }
    }
}

#[derive(Debug, Deserialize)]
struct SqlOperationList {
    #[serde(default)]
    items: Vec<SqlOperation>,
}

/// How many times a request refused for another operation is sent again
/// (each after that operation ended), before the step gives up.
const BUSY_RESUBMITS: usize = 20;

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
    /// How long one operation may take (`deadlines.cloudsql_operation_secs`).
    deadline: Duration,
    /// How long a bucket refusal is taken for a grant still propagating,
    /// and how often the request is sent again meanwhile.
    propagation: Duration,
    propagation_retry: Duration,
}

/// IAM: a policy change takes "Typically 2 minutes, potentially 7 minutes
/// or longer" (https://cloud.google.com/iam/docs/access-change-propagation).
const PROPAGATION: Duration = Duration::from_secs(8 * 60);
const PROPAGATION_RETRY: Duration = Duration::from_secs(10);

/// Cloud SQL's 403 when its instance's service account cannot read or
/// write the import's or export's bucket. It names no permission; users
/// report it from `gcloud sql import` as "The service account does not
/// have the required permissions for the bucket." Right after `infra up`
/// that is a grant still propagating, and the request was not taken.
fn is_bucket_refusal(err: &ApiError) -> bool {
    matches!(err, ApiError::Status { status, message, .. }
        if *status == reqwest::StatusCode::FORBIDDEN
            && message.contains("required permissions for the bucket"))
}

impl CloudSqlAdmin {
    pub fn new(http: Http, base_url: &str, project: &str, instance: &str, poll: Duration) -> Self {
        CloudSqlAdmin {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            project: project.to_owned(),
            instance: instance.to_owned(),
            poll,
            deadline: Deadlines::default().cloudsql_operation,
            propagation: PROPAGATION,
            propagation_retry: PROPAGATION_RETRY,
        }
    }

    /// Takes a bucket refusal for a propagating grant for `limit`, asking
    /// again every `every`.
    pub fn with_propagation(mut self, limit: Duration, every: Duration) -> Self {
        (self.propagation, self.propagation_retry) = (limit, every);
        self
    }

    /// Gives each operation `limit` to finish.
    pub fn with_deadline(mut self, limit: Duration) -> Self {
        self.deadline = limit;
        self
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

    /// Sends `call` (an import or export) and returns its
    /// operation. A 409 `operationInProgress` means the instance took
    /// nothing: if the running operation is this very request (a retry
    /// that met its own first attempt), that one is returned; otherwise
    /// the running operations are waited out and `call` is sent again.
    /// A 403 for the bucket (the instance's service account cannot use it)
    /// is sent again until the grant has had time to propagate.
    pub async fn start(&self, call: &Call, what: &str) -> Result<SqlOperation> {
        let body = call.to_request("").body.unwrap_or_default();
        let mut resubmits = 0;
        let propagating = std::time::Instant::now();
        loop {
            let err = match self.http.json::<SqlOperation>(call).await {
                Ok(operation) => return Ok(operation),
                Err(e) => e,
            };
            if is_bucket_refusal(&err) {
                let waited = propagating.elapsed();
                if waited < self.propagation {
                    crate::ui::status(format!(
                        "Cloud SQL instance {}'s service account cannot use the bucket yet: a grant made by `infra up` takes typically 2 minutes, up to 7, to propagate; asking again in {}s ({}s of {}s)",
                        self.instance,
                        self.propagation_retry.as_secs(),
                        waited.as_secs(),
                        self.propagation.as_secs()
                    ));
                    tokio::time::sleep(self.propagation_retry).await;
                    continue;
                }
                return Err(err).with_context(|| {
                    format!(
                        "Cloud SQL instance {} refused to {what}: its service account still could not use the bucket after {}s\nhint: terraform/modules/iam grants the instance's service account its role on the staging bucket (docs/iam.md); `infra up` restores it",
                        self.instance,
                        waited.as_secs()
                    )
                });
            }
            if !err.is_conflict() {
                return Err(err).with_context(|| {
                    format!("Cloud SQL instance {} refused to {what}", self.instance)
                });
            }
            let listed = self.operations().await?;
            if let Some(ours) = listed.iter().find(|op| op.carries(&body)) {
                tracing::info!(
                    "Cloud SQL operation {} is this request's own first attempt: waiting for it",
                    ours.name
                );
                return Ok(ours.clone());
            }
            if resubmits == BUSY_RESUBMITS {
                return Err(err).with_context(|| {
                    format!(
                        "Cloud SQL instance {} was still busy with other operations after {BUSY_RESUBMITS} waits, so it never took the request to {what}",
                        self.instance
                    )
                });
            }
            resubmits += 1;
            let running: Vec<&SqlOperation> = listed.iter().filter(|op| op.is_running()).collect();
            if running.is_empty() {
                // It ended between the refusal and the list.
                tokio::time::sleep(self.poll).await;
            }
            for other in running {
                let kind = other.operation_type.as_deref().unwrap_or("another");
                crate::ui::status(format!(
                    "Cloud SQL instance {} is busy with {kind} operation {} (it runs one at a time): waiting to {what}",
                    self.instance, other.name
                ));
                // Its outcome is not ours to judge: only that it ended.
                if let Err(e) = self.wait(&other.name, &format!("{kind} operation")).await
                    && e.downcast_ref::<OperationFailed>().is_none()
                {
                    return Err(e);
                }
            }
        }
    }

    /// `operations.list` of the instance (newest first, one page: a running
    /// operation is among the latest).
    pub fn list_call(&self) -> Call {
        Call::get(format!(
            "{}/v1/projects/{}/operations",
            self.base,
            encode_segment(&self.project)
        ))
        .query("instance", &self.instance)
        .query("maxResults", 20)
    }

    async fn operations(&self) -> Result<Vec<SqlOperation>> {
        let list: SqlOperationList =
            self.http.json(&self.list_call()).await.with_context(|| {
                format!(
                    "cannot list the operations of Cloud SQL instance {}",
                    self.instance
                )
            })?;
        Ok(list.items)
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
    /// that names it. One still running at the deadline is cancelled, and
    /// the error is a [`DeadlinePassed`].
    pub async fn wait(&self, name: &str, what: &str) -> Result<()> {
        let progress =
            crate::ui::Progress::waiting(format!("Cloud SQL {what}"), "PENDING", self.deadline);
        let passed = || DeadlinePassed {
            what: format!("Cloud SQL operation ({what})"),
            id: name.to_owned(),
            limit: self.deadline,
            setting: "deadlines.cloudsql_operation_secs",
            link: self.link(),
        };
        let result =
            deadline::within(self.deadline, passed, self.poll_done(name, what, &progress)).await;
        if result.as_ref().is_err_and(|e| e.is::<DeadlinePassed>()) {
            self.cancel_operation(name).await;
        }
        result
    }

    /// Asks Cloud SQL to cancel the operation `name`; a failure is logged,
    /// as the caller is already failing with the reason.
    /// <https://cloud.google.com/sql/docs/postgres/admin-api/rest/v1/operations/cancel>
    async fn cancel_operation(&self, name: &str) {
        let call = Call::new(
            Method::POST,
            format!(
                "{}/v1/projects/{}/operations/{}/cancel",
                self.base,
                encode_segment(&self.project),
                encode_segment(name)
            ),
            Idempotency::Idempotent,
        );
        match self.http.send(&call).await {
            Ok(_) => tracing::warn!("cancelled Cloud SQL operation {name}"),
            Err(e) => tracing::warn!("cannot cancel Cloud SQL operation {name}: {e}"),
        }
    }

    async fn poll_done(
        &self,
        name: &str,
        what: &str,
        progress: &crate::ui::Progress,
    ) -> Result<()> {
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

/// The user Cloud SQL runs CSV exports as: `instances.export` names no user
/// (`ExportContext` has no user field, unlike `importContext.importUser`),
/// and Cloud SQL for PostgreSQL's system user for import and export is
/// `cloudsqlimportexport`, which owns nothing of ours.
pub const EXPORT_USER: &str = "cloudsqlimportexport";

/// Schema, the export user's read grant (step 1's export runs as
/// [`EXPORT_USER`], not as the table's owner), then a fresh, empty load
/// table shaped like the real one. Grants live on the table, which the
/// swap keeps (truncate and insert), so they are set here once per load.
pub fn create_sql(table: &TableDef) -> String {
    let load = load_table(table);
    let schema = table
        .name
        .split_once('.')
        .map_or("public", |(schema, _)| schema);
    format!(
        "{}\nGRANT USAGE ON SCHEMA {schema} TO {EXPORT_USER};\nGRANT SELECT ON {} TO {EXPORT_USER};\nDROP TABLE IF EXISTS {load};\nCREATE TABLE {load} (LIKE {} INCLUDING ALL);\n",
        table.create_sql.trim_end(),
        table.name,
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

/// The scratch file of the rows whose text holds a line break.
const LINE_BREAKS_SQL: &str = "2-rows-with-line-breaks.sql";

/// The rows for the CSV import, one line each: a row with a line break
/// inside a field goes to a SQL file of `INSERT`s instead
/// ([`line_breaks`]), on disk, so no input is held in memory.
struct OneLinePerRow<'a> {
    rows: &'a mut dyn Rows,
    load: &'a str,
    columns: &'a [String],
    sql: std::io::BufWriter<std::fs::File>,
    diverted: u64,
}

impl<'a> OneLinePerRow<'a> {
    fn new(rows: &'a mut dyn Rows, load: &'a str, columns: &'a [String]) -> Result<Self> {
        let file = tempfile::tempfile().context("cannot create a temporary file")?;
        Ok(OneLinePerRow {
            rows,
            load,
            columns,
            sql: std::io::BufWriter::new(file),
            diverted: 0,
        })
    }

    /// How many rows went to the SQL file, and the file, rewound.
    fn into_sql(self) -> Result<(u64, std::fs::File)> {
        use std::io::Seek as _;
        let mut file = self
            .sql
            .into_inner()
            .map_err(|e| e.into_error())
            .context("cannot write the rows with line breaks to a temporary file")?;
        file.rewind()?;
        Ok((self.diverted, file))
    }
}

#[async_trait]
impl Rows for OneLinePerRow<'_> {
    async fn next(&mut self) -> Result<Option<Vec<u8>>> {
        while let Some(chunk) = self.rows.next().await? {
            let mut csv = Vec::with_capacity(chunk.len());
            self.diverted +=
                line_breaks::split(&chunk, self.load, self.columns, &mut csv, &mut self.sql)?;
            if !csv.is_empty() {
                return Ok(Some(csv));
            }
        }
        Ok(None)
    }

    async fn finish(&mut self) -> Result<u64> {
        self.rows.finish().await
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
        let (create, data, broken, swap) = (
            scratch.key("1-create.sql"),
            scratch.key("2-rows.csv"),
            scratch.key(LINE_BREAKS_SQL),
            scratch.key("3-swap.sql"),
        );
        let (name, load) = (&table.name, load_table(table));
        let mut rows = OneLinePerRow::new(rows, &load, &table.columns)?;
        let mut body = StreamReader::new(byte_stream(&mut rows).boxed());
        staging
            .put(&data, &mut body)
            .await
            .with_context(|| format!("cannot write the valid rows to {}", staging.uri(&data)))?;
        drop(body);
        let valid = rows.finish().await?;
        let (diverted, broken_rows) = rows.into_sql()?;
        if diverted > 0 {
            staging
                .put(&broken, &mut tokio::fs::File::from_std(broken_rows))
                .await
                .with_context(|| {
                    format!(
                        "cannot write the rows with line breaks to {}",
                        staging.uri(&broken)
                    )
                })?;
        }
        staging
            .put(&create, &mut create_sql(table).as_bytes())
            .await?;
        staging
            .put(&swap, &mut swap_sql(table, valid).as_bytes())
            .await?;
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
        if diverted > 0 {
            self.run(
                self.admin
                    .import_call(&self.sql_import(&staging.uri(&broken))),
                &format!("import the {diverted} rows with line breaks into {load}"),
                journal,
            )
            .await
            .with_context(|| format!("{name} keeps its previous rows"))?;
        }
        self.run(
            self.admin
                .import_call(&self.sql_import(&staging.uri(&swap))),
            &format!("swap the {valid} new rows into {name}"),
            journal,
        )
        .await
        .with_context(|| format!("{name} keeps its previous rows"))?;
        self.remove(staging, &[create, data, broken, swap]).await;
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
                .import_call(&self.sql_import(&uri(LINE_BREAKS_SQL)))
                .to_request("only when some rows have a line break in a field: those rows, as INSERTs"),
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

    #[test]
    fn the_create_file_grants_the_export_user_before_the_load_table() {
        let sql = create_sql(&TableDef {
            name: "bootcampdb.user_purchase".into(),
            columns: vec!["a".into()],
            create_sql: "CREATE TABLE IF NOT EXISTS bootcampdb.user_purchase (a int);".into(),
        });
        let usage = sql
            .find("GRANT USAGE ON SCHEMA bootcampdb TO cloudsqlimportexport;")
            .unwrap();
        let select = sql
            .find("GRANT SELECT ON bootcampdb.user_purchase TO cloudsqlimportexport;")
            .unwrap();
        let create = sql.find("CREATE TABLE IF NOT EXISTS").unwrap();
        assert!(create < usage && usage < select, "{sql}");
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
