//! The capabilities the pipeline needs, and the targets that supply them.
//!
//! The pipeline is written once against four narrow capabilities: three
//! [`Bucket`]s, a PostgreSQL database, a [`Spark`] runner and a
//! [`Warehouse`]. `local` supplies them with directories, a private
//! PostgreSQL server, `spark-submit` and DuckDB; `gcp` with Cloud Storage,
//! Cloud SQL, Dataproc and BigQuery. `local` and `gcp` never import each other.

pub mod gcp;
pub mod local;

use std::path::Path;

use anyhow::Result;
use async_trait::async_trait;
use sqlx::postgres::PgConnectOptions;
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
    /// the end of its driver log.
    async fn submit(&self, job: &SparkJob) -> Result<()>;
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
    ) -> Result<u64>;

    /// Runs a query and returns every row.
    async fn query(&self, sql: &str) -> Result<QueryResult>;
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
    pub database: PgConnectOptions,
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
