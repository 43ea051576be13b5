//! The local [`Database`]: the private PostgreSQL server, loaded with
//! `COPY … FROM STDIN` and dumped with `COPY … TO STDOUT`.
//!
//! A load runs in one transaction: create the table if needed, `TRUNCATE`
//! (which lets COPY skip the WAL on this `wal_level = minimal` server),
//! `COPY` the chunks as they arrive, check the count, commit. A re-run
//! never duplicates rows, and a failed load leaves the old ones.

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use futures_util::TryStreamExt;
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio_util::io::StreamReader;

use crate::backend::{Bucket, Database, Journal, RowFormat, Rows, TableDef};

pub struct LocalDatabase {
    pub options: PgConnectOptions,
}

impl LocalDatabase {
    async fn connect(&self) -> Result<PgConnection> {
        PgConnection::connect_with(&self.options)
            .await
            .with_context(|| {
                format!(
                    "cannot connect to PostgreSQL at {}:{}",
                    self.options.get_host(),
                    self.options.get_port()
                )
            })
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
        let mut tx = conn.begin().await?;
        sqlx::raw_sql(AssertSqlSafe(table.create_sql.clone()))
            .execute(&mut *tx)
            .await
            .with_context(|| format!("cannot create {}", table.name))?;
        sqlx::raw_sql(AssertSqlSafe(format!("TRUNCATE {}", table.name)))
            .execute(&mut *tx)
            .await?;
        let copy = format!(
            "COPY {} ({}) FROM STDIN (FORMAT binary)",
            table.name,
            table.columns.join(", ")
        );
        let mut copy_in = tx.copy_in_raw(&copy).await?;
        loop {
            let chunk = match rows.next().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    let _ = copy_in.abort("the input could not be read").await;
                    return Err(e);
                }
            };
            if let Err(e) = copy_in.send(chunk).await {
                return Err(e).with_context(|| format!("COPY into {} failed", table.name));
            }
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
        let loaded = copy_in
            .finish()
            .await
            .with_context(|| format!("COPY into {} failed", table.name))?;
        if sent != loaded {
            bail!(
                "sent {sent} rows to {}, but COPY loaded {loaded}",
                table.name
            );
        }
        tx.commit().await?;
        Ok(loaded)
    }

    async fn dump_csv(
        &self,
        table: &TableDef,
        staging: &dyn Bucket,
        key: &str,
        _journal: &dyn Journal,
    ) -> Result<u64> {
        let mut conn = self.connect().await?;
        // One statement, so one snapshot. The rows are counted as they pass
        // rather than by a `count(*)` first (a second scan of the table):
        // the protocol sends COPY TO STDOUT as one CopyData message per row
        // (and one for the header), and sqlx yields one item per message.
        let copy = format!(
            "COPY (SELECT {} FROM {}) TO STDOUT WITH (FORMAT csv, HEADER true)",
            table.columns.join(", "),
            table.name
        );
        let messages = AtomicU64::new(0);
        let stream = conn
            .copy_out_raw(&copy)
            .await
            .with_context(|| format!("cannot read {}\nhint: run step 0 first", table.name))?
            .inspect_ok(|_| {
                messages.fetch_add(1, Ordering::Relaxed);
            })
            .map_err(std::io::Error::other);
        staging
            .put(key, &mut StreamReader::new(stream))
            .await
            .with_context(|| format!("cannot dump {} to {}", table.name, staging.uri(key)))?;
        let messages = messages.into_inner();
        // Not even an empty table comes without its header line.
        if messages == 0 {
            bail!(
                "COPY of {} sent no header line: {} is incomplete",
                table.name,
                staging.uri(key)
            );
        }
        Ok(messages - 1)
    }
}
