//! The local warehouse: an embedded DuckDB file in the state dir.
//!
//! It does what BigQuery does on GCP: a schema per dataset, a Parquet load
//! that replaces the table atomically (WRITE_TRUNCATE), and queries whose
//! decimals and timestamps come back exact. DuckDB is synchronous, so every
//! call runs on the blocking pool.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use chrono::DateTime;
use duckdb::types::ValueRef;
use duckdb::{AccessMode, Config, Connection};

use crate::backend::{Cell, Column, ColumnKind, Journal, QueryResult, TableRef, Warehouse};

pub struct DuckDbWarehouse {
    path: PathBuf,
}

impl DuckDbWarehouse {
    pub fn new(path: PathBuf) -> DuckDbWarehouse {
        DuckDbWarehouse { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl Warehouse for DuckDbWarehouse {
    async fn replace_from_parquet(
        &self,
        table: &TableRef,
        columns: &[Column],
        source: &str,
        _journal: &dyn Journal,
    ) -> Result<u64> {
        let path = self.path.clone();
        let table = table.clone();
        let columns = columns.to_vec();
        let source = source.to_owned();
        tokio::task::spawn_blocking(move || replace_blocking(&path, &table, &columns, &source))
            .await?
    }

    async fn query(&self, sql: &str) -> Result<QueryResult> {
        let path = self.path.clone();
        let sql = sql.to_owned();
        tokio::task::spawn_blocking(move || query_blocking(&path, &sql)).await?
    }
}

fn sql_type(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Int64 => "BIGINT",
        ColumnKind::Decimal38_3 => "DECIMAL(38,3)",
        ColumnKind::Timestamp => "TIMESTAMP",
    }
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn replace_blocking(
    path: &Path,
    table: &TableRef,
    columns: &[Column],
    source: &str,
) -> Result<u64> {
    let glob = source
        .strip_prefix("file://")
        .with_context(|| format!("DuckDB loads local files, not {source}"))?;
    let conn = Connection::open(path)
        .with_context(|| format!("cannot open the warehouse {}", path.display()))?;
    let name = format!("{}.{}", ident(&table.dataset), ident(&table.table));
    let definition = columns
        .iter()
        .map(|c| {
            let null = if c.nullable { "" } else { " NOT NULL" };
            format!("{} {}{null}", ident(c.name), sql_type(c.kind))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let select = columns
        .iter()
        .map(|c| format!("CAST({} AS {})", ident(c.name), sql_type(c.kind)))
        .collect::<Vec<_>>()
        .join(", ");
    let names = columns
        .iter()
        .map(|c| ident(c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let parquet = format!("read_parquet({})", literal(glob));

    conn.execute_batch(&format!(
        "CREATE SCHEMA IF NOT EXISTS {}; BEGIN TRANSACTION;",
        ident(&table.dataset)
    ))?;
    let load = || -> Result<u64> {
        conn.execute_batch(&format!("CREATE OR REPLACE TABLE {name} ({definition});"))?;
        let loaded = conn
            .execute(
                &format!("INSERT INTO {name} ({names}) SELECT {select} FROM {parquet}"),
                [],
            )
            .with_context(|| format!("cannot load {source} into {table}"))?;
        let expected: i64 =
            conn.query_row(&format!("SELECT count(*) FROM {parquet}"), [], |r| r.get(0))?;
        if loaded as i64 != expected {
            bail!("loaded {loaded} rows into {table}, but {source} holds {expected}");
        }
        Ok(loaded as u64)
    };
    match load() {
        Ok(rows) => {
            conn.execute_batch("COMMIT")?;
            Ok(rows)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn query_blocking(path: &Path, sql: &str) -> Result<QueryResult> {
    if !path.exists() {
        bail!(
            "there is no warehouse yet ({} does not exist)\nhint: run `infra run` first",
            path.display()
        );
    }
    let config = Config::default().access_mode(AccessMode::ReadOnly)?;
    let conn = Connection::open_with_flags(path, config)
        .with_context(|| format!("cannot open the warehouse {}", path.display()))?;
    let mut stmt = conn.prepare(sql).context("the query failed")?;
    let mut result = QueryResult::default();
    {
        let mut rows = stmt.query([]).context("the query failed")?;
        while let Some(row) = rows.next()? {
            let stmt = row.as_ref();
            if result.columns.is_empty() {
                result.columns = stmt.column_names();
            }
            let cells = (0..stmt.column_count())
                .map(|i| cell(row.get_ref(i)?, &stmt.column_names()[i]))
                .collect::<Result<Vec<_>>>()?;
            result.rows.push(cells);
        }
    }
    if result.columns.is_empty() {
        result.columns = stmt.column_names();
    }
    Ok(result)
}

/// One value as exact text: decimals keep every digit, timestamps are ISO 8601 UTC.
fn cell(value: ValueRef<'_>, column: &str) -> Result<Option<Cell>> {
    Ok(Some(match value {
        ValueRef::Null => return Ok(None),
        ValueRef::Boolean(b) => Cell::Bool(b),
        ValueRef::TinyInt(i) => Cell::Int(i.into()),
        ValueRef::SmallInt(i) => Cell::Int(i.into()),
        ValueRef::Int(i) => Cell::Int(i.into()),
        ValueRef::BigInt(i) => Cell::Int(i.into()),
        ValueRef::HugeInt(i) => Cell::Int(i),
        ValueRef::UTinyInt(i) => Cell::Int(i.into()),
        ValueRef::USmallInt(i) => Cell::Int(i.into()),
        ValueRef::UInt(i) => Cell::Int(i.into()),
        ValueRef::UBigInt(i) => Cell::Int(i.into()),
        ValueRef::Float(f) => Cell::Float(f.into()),
        ValueRef::Double(f) => Cell::Float(f),
        ValueRef::Decimal(d) => Cell::Text(d.to_string()),
        ValueRef::Timestamp(unit, t) => {
            let micros = unit.to_micros(t);
            let ts = DateTime::from_timestamp_micros(micros)
                .with_context(|| format!("timestamp out of range in column {column}"))?;
            Cell::Text(ts.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string())
        }
        ValueRef::Date32(days) => {
            let date = DateTime::from_timestamp(i64::from(days) * 86_400, 0)
                .with_context(|| format!("date out of range in column {column}"))?;
            Cell::Text(date.format("%Y-%m-%d").to_string())
        }
        ValueRef::Text(bytes) => Cell::Text(String::from_utf8_lossy(bytes).into_owned()),
        other => bail!(
            "column {column} has type {:?}, which `infra query` cannot print\nhint: cast it to VARCHAR in the query",
            other.data_type()
        ),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queries_keep_decimals_and_timestamps_exact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.duckdb");
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE t AS SELECT 12345678901234567890123456789012345.678::DECIMAL(38,3) AS d, \
                 TIMESTAMP '2026-11-24 21:40:00.5' AS ts, NULL::BIGINT AS n, 'x' AS s",
            )
            .unwrap();
        let result = DuckDbWarehouse::new(path)
            .query("SELECT * FROM t")
            .await
            .unwrap();
        assert_eq!(result.columns, ["d", "ts", "n", "s"]);
        assert_eq!(
            result.rows,
            [vec![
                Some(Cell::Text("12345678901234567890123456789012345.678".into())),
                Some(Cell::Text("2026-11-24T21:40:00.500Z".into())),
                None,
                Some(Cell::Text("x".into())),
            ]]
        );
    }

    #[tokio::test]
    async fn a_failed_load_leaves_the_old_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.duckdb");
        let warehouse = DuckDbWarehouse::new(path.clone());
        let table = TableRef {
            dataset: "ds".into(),
            table: "t".into(),
        };
        let columns = [Column {
            name: "customer_id",
            kind: ColumnKind::Int64,
            nullable: false,
        }];
        let parquet = dir.path().join("in.parquet");
        Connection::open_in_memory()
            .unwrap()
            .execute_batch(&format!(
                "COPY (SELECT range AS customer_id FROM range(3)) TO '{}' (FORMAT parquet)",
                parquet.display()
            ))
            .unwrap();
        let source = format!("file://{}", dir.path().join("*.parquet").display());
        assert_eq!(
            warehouse
                .replace_from_parquet(&table, &columns, &source, &crate::backend::NoJournal)
                .await
                .unwrap(),
            3
        );

        let missing = format!("file://{}", dir.path().join("nothing-*.parquet").display());
        assert!(
            warehouse
                .replace_from_parquet(&table, &columns, &missing, &crate::backend::NoJournal)
                .await
                .is_err()
        );
        let count = warehouse.query("SELECT count(*) FROM ds.t").await.unwrap();
        assert_eq!(count.rows, [vec![Some(Cell::Int(3))]]);
    }
}
