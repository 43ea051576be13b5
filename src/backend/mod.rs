//! The capabilities the pipeline needs, and the targets that supply them.
//!
//! The pipeline is written once against four narrow capabilities: three
//! [`Bucket`]s, a [`Database`], a [`Spark`] runner and a [`Warehouse`].
//! `local` supplies them with directories, a private PostgreSQL server,
//! `spark-submit` and DuckDB; `gcp` with Cloud Storage, Cloud SQL (through
//! its Admin API), Dataproc and BigQuery. `local` and `gcp` never import
//! each other.
//!
//! Remote work (a cluster, a job, an operation) is announced to a
//! [`Journal`] before anything waits on it, so the run record holds its id
//! and a re-run re-attaches instead of starting it twice. Each capability
//! can also [`preview`](Spark::preview) the requests it would send, for
//! `plan` and `run --dry-run`, which send nothing.

pub mod gcp;
pub mod local;

use std::path::Path;

use anyhow::Result;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;

/// A byte stream read from a bucket.
pub type Body = Box<dyn AsyncRead + Send + Unpin>;

/// A byte stream written to a bucket.
pub type Source<'a> = &'a mut (dyn AsyncRead + Send + Unpin);

/// An object's key and size, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
}

/// An object store with one namespace of keys (`reviews/part-0.parquet`).
///
/// Writes are all-or-nothing: a reader never sees half an object.
#[async_trait]
pub trait Bucket: Send + Sync {
    /// The bucket's role, `raw`, `staging` or `code`, for messages.
    fn role(&self) -> &str;

    /// The URI Spark and the warehouse use for `key` (`file:///…` or `gs://…`).
    fn uri(&self, key: &str) -> String;

    /// Streams the object `key`. A missing object is an error that names it.
    async fn get(&self, key: &str) -> Result<Body>;

    /// Writes `body` to `key`, replacing any object there. Returns the size.
    async fn put(&self, key: &str, body: Source<'_>) -> Result<u64>;

    /// Objects whose keys start with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;

    /// Deletes `key`; deleting what is not there is not an error.
    async fn delete(&self, key: &str) -> Result<()>;

    /// Uploads a local file to `key`.
    async fn put_file(&self, key: &str, path: &Path) -> Result<u64> {
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
        self.put(key, &mut file).await
    }

    /// Moves the local file `path` into the bucket as `key`. Afterwards the
    /// file is gone, whether the move succeeded or not. A bucket on the
    /// same filesystem renames the file rather than copying it.
    async fn move_file(&self, key: &str, path: &Path) -> Result<u64> {
        let moved = self.put_file(key, path).await;
        let _ = tokio::fs::remove_file(path).await;
        moved
    }

    /// Whether `key` exists.
    async fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.list(key).await?.iter().any(|o| o.key == key))
    }
}

/// One Spark job: a script in the code bucket and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparkJob {
    /// A short name, used in job ids and messages (`tokenizer`).
    pub name: String,
    /// The script's URI in the code bucket.
    pub script: String,
    pub args: Vec<String>,
}

/// Runs Spark jobs to completion.
#[async_trait]
pub trait Spark: Send + Sync {
    /// Submits `job` and waits for it; a failed job is an error that quotes
    /// the end of its driver log. Remote ids go to `journal` before polling,
    /// and a job an earlier attempt left in flight is re-attached to.
    async fn submit(&self, job: &SparkJob, journal: &dyn Journal) -> Result<()>;

    /// Releases what the runs's jobs needed (an ephemeral cluster), after
    /// cancelling a job still running. `run` awaits it whatever happened,
    /// Ctrl-C included: a `Drop` could not, the runtime is gone by then.
    async fn teardown(&self) -> Result<()> {
        Ok(())
    }

    /// The requests [`submit`](Spark::submit) would send for `job` in run `run_id`.
    fn preview(&self, job: &SparkJob, run_id: &str) -> Vec<Request> {
        let _ = (job, run_id);
        Vec::new()
    }

    /// The requests the run's first job sends before its own (creating
    /// the run's one cluster), once per run.
    fn preview_setup(&self, run_id: &str) -> Vec<Request> {
        let _ = run_id;
        Vec::new()
    }

    /// The requests [`teardown`](Spark::teardown) sends at the end of the
    /// run (deleting the run's cluster).
    fn preview_teardown(&self, run_id: &str) -> Vec<Request> {
        let _ = run_id;
        Vec::new()
    }

    /// How long one job may run before [`submit`](Spark::submit) gives up
    /// on it, for the step's progress line; `None` when a liveness check
    /// watches it instead (the local server's heartbeat).
    fn deadline(&self) -> Option<std::time::Duration> {
        None
    }
}

/// How a [`Database`] wants the rows of a load encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowFormat {
    /// PostgreSQL `COPY … (FORMAT binary)`: one stream, header to trailer.
    CopyBinary,
    /// RFC 4180 CSV, no header: NULL is an empty unquoted field, every
    /// text value is quoted.
    Csv,
}

/// Encoded rows for a table load, produced while the load runs.
#[async_trait]
pub trait Rows: Send {
    /// The next chunk of whole rows, `None` after the last. An error aborts
    /// the load.
    async fn next(&mut self) -> Result<Option<Vec<u8>>>;

    /// Ends the input once every chunk was taken: returns how many rows the
    /// producer sent. Called before the new rows become visible; an error
    /// aborts the load and leaves the previous rows.
    async fn finish(&mut self) -> Result<u64>;
}

/// A database table the pipeline defines: its name, columns in load
/// order, and the DDL that creates it if needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDef {
    /// Schema-qualified (`bootcampdb.user_purchase`).
    pub name: String,
    pub columns: Vec<String>,
    /// Idempotent DDL (`CREATE … IF NOT EXISTS`).
    pub create_sql: String,
}

/// The database steps 0 and 1 load and dump: PostgreSQL, local or Cloud SQL.
#[async_trait]
pub trait Database: Send + Sync {
    /// How [`replace_rows`](Database::replace_rows) wants rows.
    fn row_format(&self) -> RowFormat;

    /// Where the table lives, for plans and messages.
    fn describe(&self) -> String;

    /// Creates `table` if needed and replaces its rows with `rows`,
    /// atomically: on any failure the previous rows stay, and a re-run
    /// never duplicates. Returns the rows loaded, checked against what
    /// `rows` reports. `staging` may hold the load's scratch objects.
    async fn replace_rows(
        &self,
        table: &TableDef,
        rows: &mut dyn Rows,
        staging: &dyn Bucket,
        journal: &dyn Journal,
    ) -> Result<u64>;

    /// Writes the whole of `table` to `staging/key` as CSV with a header
    /// line of its column names, one snapshot. Returns the number of rows.
    async fn dump_csv(
        &self,
        table: &TableDef,
        staging: &dyn Bucket,
        key: &str,
        journal: &dyn Journal,
    ) -> Result<u64>;

    /// The requests [`replace_rows`](Database::replace_rows) would send in run `run_id`.
    fn preview_load(&self, table: &TableDef, staging: &dyn Bucket, run_id: &str) -> Vec<Request> {
        let _ = (table, staging, run_id);
        Vec::new()
    }

    /// The requests [`dump_csv`](Database::dump_csv) would send in run `run_id`.
    fn preview_dump(
        &self,
        table: &TableDef,
        staging: &dyn Bucket,
        key: &str,
        run_id: &str,
    ) -> Vec<Request> {
        let _ = (table, staging, key, run_id);
        Vec::new()
    }
}

/// What kind of remote work a [`Remote`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteKind {
    DataprocCluster,
    DataprocJob,
    DataprocBatch,
    CloudSqlOperation,
    BigQueryJob,
}

impl RemoteKind {
    pub fn label(self) -> &'static str {
        match self {
            RemoteKind::DataprocCluster => "Dataproc cluster",
            RemoteKind::DataprocJob => "Dataproc job",
            RemoteKind::DataprocBatch => "Dataproc batch",
            RemoteKind::CloudSqlOperation => "Cloud SQL operation",
            RemoteKind::BigQueryJob => "BigQuery job",
        }
    }

    /// Whether it lives for the whole run rather than one step.
    pub fn spans_steps(self) -> bool {
        self == RemoteKind::DataprocCluster
    }
}

/// Remote work a step started, as the run record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remote {
    pub kind: RemoteKind,
    /// The name or id the API knows it by.
    pub id: String,
    /// A cluster's `clusterUuid`, a batch's operation: what tells this one
    /// from a later one of the same name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Its Cloud Console page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// Where remote work is recorded, before anything waits on it.
pub trait Journal: Send + Sync {
    /// The run's id, which every remote id starts from.
    fn run_id(&self) -> &str;

    /// This step's attempt within the run (1, then 2 on a resume, …).
    fn attempt(&self) -> u32;

    /// Saves `remote` in the run record, durably, now.
    fn started(&self, remote: Remote) -> Result<()>;

    /// Remote work of `kind` that an earlier, unfinished attempt of this
    /// step started (or of any step, for work that spans steps), newest
    /// last: what a re-run re-attaches to.
    fn earlier(&self, kind: RemoteKind) -> Vec<Remote>;
}

/// A journal that keeps nothing: for tests and one-off calls.
pub struct NoJournal;

impl Journal for NoJournal {
    fn run_id(&self) -> &str {
        "adhoc"
    }
    fn attempt(&self) -> u32 {
        1
    }
    fn started(&self, _remote: Remote) -> Result<()> {
        Ok(())
    }
    fn earlier(&self, _kind: RemoteKind) -> Vec<Remote> {
        Vec::new()
    }
}

/// One API request as `plan` shows it: what would be sent, exactly.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Request {
    pub method: String,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    /// Why, in a few words.
    pub note: String,
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.url)?;
        if !self.note.is_empty() {
            write!(f, "    # {}", self.note)?;
        }
        if let Some(body) = &self.body {
            let text = serde_json::to_string_pretty(body).map_err(|_| std::fmt::Error)?;
            for line in text.lines() {
                write!(f, "\n    {line}")?;
            }
        }
        Ok(())
    }
}

/// A warehouse table, `dataset.table`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRef {
    pub dataset: String,
    pub table: String,
}

impl std::fmt::Display for TableRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.dataset, self.table)
    }
}

/// A column of a warehouse table, with its type in portable terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub kind: ColumnKind,
    pub nullable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// BIGINT / INT64
    Int64,
    /// DECIMAL(38,3) / NUMERIC
    Decimal38_3,
    /// TIMESTAMP, UTC
    Timestamp,
}

/// A query result with every value already rendered as exact text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryResult {
    pub columns: Vec<String>,
    /// `None` is SQL NULL. Decimals keep every digit; timestamps are ISO 8601 UTC.
    pub rows: Vec<Vec<Option<Cell>>>,
}

/// Where a streamed query's rows go, as they come: the columns once, then
/// each row. `infra query` writes them out so a result is never held whole.
pub trait RowSink: Send {
    fn columns(&mut self, columns: &[String]) -> Result<()>;
    /// Takes one row; `false` when no more are wanted (a row limit).
    fn row(&mut self, row: Vec<Option<Cell>>) -> Result<bool>;
    /// After the last row.
    fn finish(&mut self) -> Result<()>;
}

impl QueryResult {
    /// Hands a buffered result to `sink`, as a stream would.
    pub fn feed(self, sink: &mut dyn RowSink) -> Result<()> {
        sink.columns(&self.columns)?;
        for row in self.rows {
            if !sink.row(row)? {
                break;
            }
        }
        sink.finish()
    }
}

/// Collects a streamed result whole: for callers that want every row.
impl RowSink for QueryResult {
    fn columns(&mut self, columns: &[String]) -> Result<()> {
        self.columns = columns.to_vec();
        Ok(())
    }

    fn row(&mut self, row: Vec<Option<Cell>>) -> Result<bool> {
        self.rows.push(row);
        Ok(true)
    }

    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

/// One value of a query result.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// An integer, exact.
    Int(i128),
    /// A boolean.
    Bool(bool),
    /// Any other value as text: decimals exactly, timestamps as ISO 8601.
    Text(String),
    /// A binary float, printed as the database printed it.
    Float(f64),
}

/// The analytics warehouse: BigQuery, or DuckDB on the local target.
#[async_trait]
pub trait Warehouse: Send + Sync {
    /// Replaces `table` with the rows of the Parquet files at `source`
    /// (a URI with a `*` glob) in one atomic step, creating the dataset if
    /// needed. Returns the number of rows loaded, checked against the input.
    async fn replace_from_parquet(
        &self,
        table: &TableRef,
        columns: &[Column],
        source: &str,
        journal: &dyn Journal,
    ) -> Result<u64>;

    /// Runs a query and returns every row.
    async fn query(&self, sql: &str) -> Result<QueryResult>;

    /// Waits until a load whose future was dropped (a signal stopped the
    /// step) has stopped writing. `run` awaits it before it releases the
    /// run lock.
    async fn teardown(&self) -> Result<()> {
        Ok(())
    }

    /// The requests [`replace_from_parquet`](Warehouse::replace_from_parquet) would send.
    fn preview(
        &self,
        table: &TableRef,
        columns: &[Column],
        source: &str,
        run_id: &str,
    ) -> Vec<Request> {
        let _ = (table, columns, source, run_id);
        Vec::new()
    }
}

/// The three buckets. Building them has no side effect, so a plan can
/// name every location before anything is provisioned.
pub struct Buckets {
    pub raw: Box<dyn Bucket>,
    pub staging: Box<dyn Bucket>,
    pub code: Box<dyn Bucket>,
}

/// Everything the pipeline runs against.
pub struct Target {
    pub buckets: Buckets,
    pub database: Box<dyn Database>,
    pub spark: Box<dyn Spark>,
    pub warehouse: Box<dyn Warehouse>,
}

/// Uploads the PySpark scripts compiled into `infra` to `code`, skipping
/// those whose bytes are already there. Returns how many were uploaded.
/// `up` calls it on both targets after provisioning.
pub async fn upload_code(code: &dyn Bucket) -> Result<usize> {
    use anyhow::Context;
    use tokio::io::AsyncReadExt;

    let mut uploaded = 0;
    for (key, contents) in crate::assets::PYSPARK_SCRIPTS {
        if code.exists(key).await? {
            let mut existing = Vec::new();
            code.get(key)
                .await?
                .read_to_end(&mut existing)
                .await
                .with_context(|| format!("cannot read {}", code.uri(key)))?;
            if existing == contents.as_bytes() {
                continue;
            }
        }
        code.put(key, &mut contents.as_bytes())
            .await
            .with_context(|| format!("cannot upload {key} to {}", code.uri(key)))?;
        uploaded += 1;
    }
    Ok(uploaded)
}

impl Target {
    /// Releases what the run holds (see [`Spark::teardown`] and
    /// [`Warehouse::teardown`]); both run, the first error is returned.
    pub async fn teardown(&self) -> Result<()> {
        let spark = self.spark.teardown().await;
        let warehouse = self.warehouse.teardown().await;
        spark.and(warehouse)
    }
}
