//! The local [`Database`]: the private PostgreSQL server, loaded with
//! `COPY … FROM STDIN` and dumped by the server itself with `COPY … TO` a
//! file.
//!
//! A load runs in one transaction: create the table if needed, `TRUNCATE`
//! (which lets COPY skip the WAL on this `wal_level = minimal` server),
//! `COPY` the chunks as they arrive, check the count, commit. A re-run
//! never duplicates rows, and a failed load leaves the old ones.
//!
//! A dump is written server-side, as Cloud SQL's export is on GCP: the
//! server writes the CSV into its own directory (the only one it may write
//! when it runs as `postgres` for root), and the file is then moved into
//! the staging bucket, a rename when both are on one filesystem. No row
//! passes through `infra`, which is what lets the dump beat a client-side
//! `psql \copy` (see bench/results.md).
//!
//! Every wait on the server is bounded ([`Deadlines`]): connecting gets
//! `database.connect_timeout_secs`, and each statement runs under the
//! server's own `statement_timeout` (`database.statement_timeout_secs`).
//! A server that stops answering altogether (stopped with SIGSTOP, a hung
//! host) cannot enforce its own timeout, so each round trip, every COPY
//! chunk included, is also bounded on this side, a little later, so a live
//! server reports its own cancellation first.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::sql;
use crate::backend::{Bucket, Database, Journal, RowFormat, Rows, TableDef};

pub struct LocalDatabase {
    pub options: PgConnectOptions,
    /// Where the server writes dumps: a directory it owns, on this machine.
    pub export_dir: PathBuf,
    pub deadlines: Deadlines,
}

/// How long the server gets to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// From the TCP connect to a session ready for queries.
    pub connect: Duration,
    /// The server's `statement_timeout` for each statement.
    pub statement: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            connect: Duration::from_secs(10),
            statement: Duration::from_secs(3600),
        }
    }
}

/// How much longer than `statement_timeout` a round trip may take before
/// the server is taken for unresponsive: time for a live server to report
/// its own cancellation.
const ANSWER_GRACE: Duration = Duration::from_secs(5);

impl LocalDatabase {
    fn address(&self) -> String {
        format!("{}:{}", self.options.get_host(), self.options.get_port())
    }

    async fn connect(&self) -> Result<PgConnection> {
        let secs = self.deadlines.statement.as_secs().max(1);
        let options = self
            .options
            .clone()
            .options([("statement_timeout", format!("{secs}s"))]);
        let limit = self.deadlines.connect;
        match tokio::time::timeout(limit, PgConnection::connect_with(&options)).await {
            Ok(conn) => {
                conn.with_context(|| format!("cannot connect to PostgreSQL at {}", self.address()))
            }
            Err(_) => bail!(
                "PostgreSQL at {} did not answer a connection within {}s\nhint: is the server stuck? `infra status` shows it; `database.connect_timeout_secs` sets the limit",
                self.address(),
                limit.as_secs()
            ),
        }
    }

    /// Awaits one round trip to the server (`what`), bounded by the
    /// statement timeout and a grace.
    async fn answer<T, E>(&self, what: &str, work: impl Future<Output = Result<T, E>>) -> Result<T>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let limit = self.deadlines.statement + ANSWER_GRACE;
        match tokio::time::timeout(limit, work).await {
            Ok(done) => done.with_context(|| format!("{what} failed")),
            Err(_) => bail!(
                "PostgreSQL at {} did not answer {what} within {}s\nhint: is the server stuck? `database.statement_timeout_secs` sets the limit",
                self.address(),
                limit.as_secs()
            ),
        }
    }
}

#[async_trait]
impl Database for LocalDatabase {
    fn row_format(&self) -> RowFormat {
        RowFormat::CopyBinary
    }

    fn describe(&self) -> String {
        format!(
            "PostgreSQL on {}:{}",
            self.options.get_host(),
            self.options.get_port()
        )
    }

    async fn replace_rows(
        &self,
        table: &TableDef,
        rows: &mut dyn Rows,
        _staging: &dyn Bucket,
        _journal: &dyn Journal,
    ) -> Result<u64> {
        let mut conn = self.connect().await?;
        let mut tx = self.answer("BEGIN", conn.begin()).await?;
        self.answer(
            &format!("CREATE of {}", table.name),
            sqlx::raw_sql(AssertSqlSafe(table.create_sql.clone())).execute(&mut *tx),
        )
        .await?;
        self.answer(
            &format!("TRUNCATE {}", table.name),
            sqlx::raw_sql(AssertSqlSafe(format!("TRUNCATE {}", table.name))).execute(&mut *tx),
        )
        .await?;
        let copy = format!(
            "COPY {} ({}) FROM STDIN (FORMAT binary)",
            table.name,
            table.columns.join(", ")
        );
        let copying = format!("COPY into {}", table.name);
        let mut copy_in = self.answer(&copying, tx.copy_in_raw(&copy)).await?;
        loop {
            let chunk = match rows.next().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    let _ = copy_in.abort("the input could not be read").await;
                    return Err(e);
                }
            };
            // A server that stops reading fills the socket: this bounds it.
            self.answer(&copying, copy_in.send(chunk)).await?;
        }
        // Before the COPY ends: a producer that failed (a file cut short, a
        // record over the limit) sent an incomplete binary stream, and its
        // own error is the one to report. If it cannot account for its rows
        // (or store its rejects), the old table stays.
        let sent = match rows.finish().await {
            Ok(sent) => sent,
            Err(e) => {
                let _ = copy_in.abort("the input could not be read").await;
                return Err(e);
            }
        };
        let loaded = self.answer(&copying, copy_in.finish()).await?;
        if sent != loaded {
            bail!(
                "sent {sent} rows to {}, but COPY loaded {loaded}",
                table.name
            );
        }
        self.answer("COMMIT", tx.commit()).await?;
        Ok(loaded)
    }

    async fn dump_csv(
        &self,
        table: &TableDef,
        staging: &dyn Bucket,
        key: &str,
        _journal: &dyn Journal,
    ) -> Result<u64> {
        // Spool files of earlier runs that were killed mid-dump.
        for stale in spool_files(&self.export_dir)? {
            let _ = std::fs::remove_file(stale);
        }
        let spool = self.export_dir.join(format!(
            "{SPOOL_PREFIX}{}-{}.csv",
            std::process::id(),
            table.name
        ));
        let mut conn = self.connect().await?;
        // One statement, so one snapshot; its command tag counts the rows.
        // A table COPY scans the heap directly: the same bytes as a COPY of
        // `SELECT <columns>`, 7% sooner (bench/results.md).
        let copy = format!(
            "COPY {} ({}) TO {} WITH (FORMAT csv, HEADER true)",
            table.name,
            table.columns.join(", "),
            sql::literal(&spool.to_string_lossy())
        );
        let limit = self.deadlines.statement + ANSWER_GRACE;
        let dumped =
            tokio::time::timeout(limit, sqlx::raw_sql(AssertSqlSafe(copy)).execute(&mut conn))
                .await;
        let Ok(dumped) = dumped else {
            // The server may still be writing it; the next dump removes it.
            bail!(
                "PostgreSQL at {} did not finish the dump of {} within {}s\nhint: is the server stuck? `database.statement_timeout_secs` sets the limit",
                self.address(),
                table.name,
                limit.as_secs()
            );
        };
        let rows = match dumped {
            Ok(done) => done.rows_affected(),
            Err(e) => {
                let _ = std::fs::remove_file(&spool);
                // 42P01, undefined_table: step 0 never ran here, or the table was dropped.
                let hint = match &e {
                    sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01") => {
                        "\nhint: step 0 creates and loads it: `infra run --data DIR`, or `infra run --only 0`"
                    }
                    _ => "",
                };
                return Err(e).with_context(|| format!("cannot dump {}{hint}", table.name));
            }
        };
        staging
            .move_file(key, &spool)
            .await
            .with_context(|| format!("cannot dump {} to {}", table.name, staging.uri(key)))?;
        Ok(rows)
    }
}

/// How the dump's spool files in the export dir are named.
const SPOOL_PREFIX: &str = "dump-";

fn spool_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(SPOOL_PREFIX)
        {
            files.push(entry.path());
        }
    }
    Ok(files)
}
