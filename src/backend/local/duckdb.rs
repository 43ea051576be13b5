//! The local warehouse: an embedded DuckDB file in the state dir.
//!
//! It does what BigQuery does on GCP: a schema per dataset, a Parquet load
//! that replaces the table atomically (WRITE_TRUNCATE), and queries whose
//! decimals and timestamps come back exact. DuckDB is synchronous, so every
//! call runs on the blocking pool.
//!
//! A load runs on a thread that dropping its future cannot stop. When a
//! signal stops step 4, the dropped future interrupts DuckDB's running
//! statement and flags the load, which then rolls back instead of
//! committing; [`Warehouse::teardown`] waits for that thread, so the run
//! lock is released only once nothing writes to the file.
//!
//! DuckDB lets one process write a file, or any number read it, never
//! both. A reader in another program (the DuckDB CLI, DBeaver) therefore
//! keeps step 4 from opening the file. Step 4 waits for it, with a progress
//! line naming the program, for at most `warehouse.lock_wait_secs`, then
//! fails naming it and saying what to do: the previous table is untouched.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use duckdb::arrow::array::{Array, RecordBatch};
use duckdb::arrow::util::display::{ArrayFormatter, FormatOptions};
use duckdb::{AccessMode, Config, Connection, InterruptHandle};

use super::sql::{ident, literal};
use crate::backend::{self, Cell, ColumnKind, Journal, QueryResult, TableRef, Warehouse};

pub struct DuckDbWarehouse {
    path: PathBuf,
    /// Held by a load's blocking thread for as long as it runs.
    busy: Arc<tokio::sync::Mutex<()>>,
    /// How long a load waits for another process's connection to close.
    lock_wait: Duration,
}

/// [`DuckDbWarehouse::lock_wait`]'s default, `warehouse.lock_wait_secs`'s.
const LOCK_WAIT: Duration = Duration::from_secs(60);

impl DuckDbWarehouse {
    /// Runs `sql` and hands each row to `sink` as DuckDB produces it
    /// (streaming execution): `infra query` holds one batch at a time, and
    /// a sink that wants no more rows (a closed pipe, a limit) stops it.
    pub async fn query_into(&self, sql: &str, mut sink: Box<dyn backend::RowSink>) -> Result<()> {
        let path = self.path.clone();
        let sql = sql.to_owned();
        tokio::task::spawn_blocking(move || query_blocking(&path, &sql, sink.as_mut())).await?
    }

    pub fn new(path: PathBuf) -> DuckDbWarehouse {
        DuckDbWarehouse {
            path,
            busy: Arc::default(),
            lock_wait: LOCK_WAIT,
        }
    }

    /// How long a load waits for another program to let go of the file.
    pub fn lock_wait(mut self, wait: Duration) -> DuckDbWarehouse {
        self.lock_wait = wait;
        self
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
        columns: &[backend::Column],
        source: &str,
        _journal: &dyn Journal,
    ) -> Result<u64> {
        let path = self.path.clone();
        let table = table.clone();
        let columns = columns.to_vec();
        let source = source.to_owned();
        let busy = self.busy.clone().lock_owned().await;
        let stop = Arc::new(Stop::default());
        let _stop_on_drop = StopOnDrop(stop.clone());
        let lock_wait = self.lock_wait;
        tokio::task::spawn_blocking(move || {
            let _busy = busy;
            let conn = open_for_load(&path, lock_wait, &stop)?;
            replace_blocking(conn, &table, &columns, &source, &stop)
        })
        .await?
    }

    async fn teardown(&self) -> Result<()> {
        let _idle = self.busy.lock().await;
        Ok(())
    }

    async fn query(&self, sql: &str) -> Result<QueryResult> {
        let path = self.path.clone();
        let sql = sql.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut result = QueryResult::default();
            query_blocking(&path, &sql, &mut result)?;
            Ok(result)
        })
        .await?
    }
}

/// Tells a load on the blocking pool to stop: set once its future is gone.
#[derive(Default)]
struct Stop {
    stopped: AtomicBool,
    interrupt: Mutex<Option<Arc<InterruptHandle>>>,
}

impl Stop {
    /// From now on [`Stop::stop`] interrupts `conn`'s running statement.
    fn watch(&self, conn: &Connection) {
        *self.interrupt.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.interrupt_handle());
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(handle) = &*self.interrupt.lock().unwrap_or_else(|e| e.into_inner()) {
            handle.interrupt();
        }
    }

    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    fn check(&self) -> Result<()> {
        if self.stopped() {
            bail!("the load was stopped before it committed");
        }
        Ok(())
    }
}

/// Stops the load when the step's future is dropped, finished or not (a
/// finished load has nothing left to stop).
struct StopOnDrop(Arc<Stop>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

fn sql_type(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Int64 => "BIGINT",
        ColumnKind::Decimal38_3 => "DECIMAL(38,3)",
        ColumnKind::Timestamp => "TIMESTAMP",
    }
}

/// Another process's lock on the warehouse file, as DuckDB reports it:
/// `Could not set lock on file "…": Conflicting lock is held in <program>
/// (PID <n>) by user <u>`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LockHolder {
    pid: Option<u32>,
    program: Option<String>,
}

impl LockHolder {
    /// The holder named in DuckDB's error, if the error is a lock conflict.
    fn from_error(message: &str) -> Option<LockHolder> {
        if !message.contains("Could not set lock on file") {
            return None;
        }
        let held = message
            .split_once("Conflicting lock is held in ")
            .map(|(_, rest)| rest);
        let pid = held
            .and_then(|rest| rest.split_once("(PID ")?.1.split_once(')'))
            .and_then(|(pid, _)| pid.trim().parse().ok());
        let program = held
            .and_then(|rest| rest.split_once(" (PID "))
            .map(|(program, _)| program.trim().to_owned());
        Some(LockHolder { pid, program })
    }

    /// `duckdb -readonly w.duckdb (pid 4242)`: the command line from /proc
    /// when the process still runs, else the program DuckDB named.
    fn describe(&self) -> String {
        let cmdline = self
            .pid
            .and_then(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
            .map(|raw| {
                // The program's file name and its arguments, cut short.
                let mut args = raw.split(|b| *b == 0).filter(|a| !a.is_empty());
                let program = args.next().unwrap_or_default();
                let program = program.rsplit(|b| *b == b'/').next().unwrap_or(program);
                let text = std::iter::once(program)
                    .chain(args)
                    .map(String::from_utf8_lossy)
                    .collect::<Vec<_>>()
                    .join(" ");
                let text = text.trim();
                match text.char_indices().nth(120) {
                    Some((cut, _)) => format!("{}…", &text[..cut]),
                    None => text.to_owned(),
                }
            })
            .filter(|text| !text.is_empty());
        let what = cmdline
            .or_else(|| self.program.clone())
            .unwrap_or_else(|| "another program".to_owned());
        match self.pid {
            Some(pid) => format!("{what} (pid {pid})"),
            None => what,
        }
    }
}

/// Opens the warehouse to write, waiting up to `wait` (with a progress line)
/// while another process holds it, and failing with that process's name.
fn open_for_load(path: &Path, wait: Duration, stop: &Stop) -> Result<Connection> {
    let started = Instant::now();
    let mut progress = None;
    loop {
        let error = match Connection::open(path) {
            Ok(conn) => return Ok(conn),
            Err(e) => e.to_string(),
        };
        // The crate chains a numeric code that says only "Unknown error
        // code": DuckDB's own message is the whole story.
        let Some(holder) = LockHolder::from_error(&error) else {
            bail!("cannot open the warehouse {}: {error}", path.display());
        };
        stop.check()?;
        if started.elapsed() >= wait {
            bail!(
                "the warehouse {} is open in {}, and DuckDB lets no one write a file another program has open; waited {}s\nhint: close that connection (in the DuckDB CLI `.exit`, in DBeaver disconnect), then `infra run --from 4`; the previous table is untouched. `warehouse.lock_wait_secs` sets how long step 4 waits",
                path.display(),
                holder.describe(),
                wait.as_secs()
            );
        }
        progress.get_or_insert_with(|| {
            crate::ui::Progress::spinner(
                "warehouse",
                format!(
                    "waiting up to {}s for {} to close it",
                    wait.as_secs(),
                    holder.describe()
                ),
            )
        });
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn replace_blocking(
    conn: Connection,
    table: &TableRef,
    columns: &[backend::Column],
    source: &str,
    stop: &Stop,
) -> Result<u64> {
    let glob = source
        .strip_prefix("file://")
        .with_context(|| format!("DuckDB loads local files, not {source}"))?;
    // Watched before the first check: a stop either finds the handle or
    // is seen by the check.
    stop.watch(&conn);
    stop.check()?;
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
        crate::hold::pause_blocking("warehouse-load", || stop.stopped());
        stop.check()?;
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

fn query_blocking(path: &Path, sql: &str, sink: &mut dyn backend::RowSink) -> Result<()> {
    if !path.exists() {
        bail!(
            "there is no warehouse yet ({} does not exist)\nhint: run `infra run` first",
            path.display()
        );
    }
    let config = Config::default().access_mode(AccessMode::ReadOnly)?;
    let conn = Connection::open_with_flags(path, config)
        .with_context(|| format!("cannot open the warehouse {}", path.display()))?;
    // Through Arrow rather than row by row: every type DuckDB has, NULL and
    // LIST included, arrives as an array that can be printed, where the
    // row API panics on some (a bare `SELECT NULL`). Streaming execution:
    // DuckDB produces each chunk as it is fetched, and `step` (unlike the
    // iterator, which panics) returns a failure as an error.
    let mut stmt = conn.prepare(sql).map_err(sql_error)?;
    drop(stmt.stream_arrow([]).map_err(sql_error)?);
    let columns = stmt.column_names();
    sink.columns(&columns)?;
    let options = FormatOptions::new()
        .with_display_error(true)
        .with_timestamp_format(Some("%Y-%m-%dT%H:%M:%S%.fZ"))
        .with_timestamp_tz_format(Some("%Y-%m-%dT%H:%M:%S%.f%:z"));
    'batches: while let Some(chunk) = stmt.step().map_err(sql_error)? {
        let batch = RecordBatch::from(&chunk);
        let cells = batch
            .columns()
            .iter()
            .zip(&columns)
            .map(|(array, name)| ResultColumn::new(array.as_ref(), name, &options))
            .collect::<Result<Vec<_>>>()?;
        for row in 0..batch.num_rows() {
            if !sink.row(cells.iter().map(|c| c.cell(row)).collect())? {
                break 'batches;
            }
        }
    }
    sink.finish()
}

/// DuckDB's own message. The crate chains a numeric code under it that
/// says only "Unknown error code": it is dropped.
fn sql_error(e: duckdb::Error) -> anyhow::Error {
    anyhow::anyhow!("the query failed: {e}")
}

/// One result column, ready to give its values as cells.
struct ResultColumn<'a> {
    array: &'a dyn Array,
    text: ArrayFormatter<'a>,
}

impl<'a> ResultColumn<'a> {
    fn new(
        array: &'a dyn Array,
        name: &str,
        options: &FormatOptions<'a>,
    ) -> Result<ResultColumn<'a>> {
        let text = ArrayFormatter::try_new(array, options).with_context(|| {
            format!(
                "column {name} has type {}, which cannot be printed",
                array.data_type()
            )
        })?;
        Ok(ResultColumn { array, text })
    }

    /// Integers, booleans and floats keep their kind (JSON prints them as
    /// such); everything else is DuckDB's value as exact text: decimals
    /// with every digit, timestamps as ISO 8601, times, intervals, lists.
    fn cell(&self, row: usize) -> Option<Cell> {
        use duckdb::arrow::array::AsArray;
        use duckdb::arrow::datatypes::{self as t, DataType};
        let a = self.array;
        if a.is_null(row) || matches!(a.data_type(), DataType::Null) {
            return None;
        }
        Some(match a.data_type() {
            DataType::Boolean => Cell::Bool(a.as_boolean().value(row)),
            DataType::Int8 => Cell::Int(a.as_primitive::<t::Int8Type>().value(row).into()),
            DataType::Int16 => Cell::Int(a.as_primitive::<t::Int16Type>().value(row).into()),
            DataType::Int32 => Cell::Int(a.as_primitive::<t::Int32Type>().value(row).into()),
            DataType::Int64 => Cell::Int(a.as_primitive::<t::Int64Type>().value(row).into()),
            DataType::UInt8 => Cell::Int(a.as_primitive::<t::UInt8Type>().value(row).into()),
            DataType::UInt16 => Cell::Int(a.as_primitive::<t::UInt16Type>().value(row).into()),
            DataType::UInt32 => Cell::Int(a.as_primitive::<t::UInt32Type>().value(row).into()),
            DataType::UInt64 => Cell::Int(a.as_primitive::<t::UInt64Type>().value(row).into()),
            // HUGEINT arrives as a decimal with no fraction.
            DataType::Decimal128(_, 0) => {
                Cell::Int(a.as_primitive::<t::Decimal128Type>().value(row))
            }
            DataType::Float32 => Cell::Float(a.as_primitive::<t::Float32Type>().value(row).into()),
            DataType::Float64 => Cell::Float(a.as_primitive::<t::Float64Type>().value(row)),
            _ => Cell::Text(self.text.value(row).to_string()),
        })
    }
}

/// The DuckDB release the pinned `duckdb` crate binds, which
/// `scripts/setup.sh` fetches prebuilt (tests check all three agree).
pub const DUCKDB_RELEASE: &str = "1.5.6";

#[cfg(test)]
mod tests {
    use super::*;

    /// A prebuilt libduckdb of another release would not match the crate's
    /// bindings: whichever library was linked, it must be this one.
    #[test]
    fn the_linked_duckdb_is_the_release_the_crate_binds() {
        let conn = Connection::open_in_memory().unwrap();
        let version: String = conn
            .query_row("SELECT version()", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, format!("v{DUCKDB_RELEASE}"));
    }

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

    /// Regression: `SELECT NULL AS x` panicked inside the duckdb crate, and
    /// TIME, INTERVAL and LIST values were refused.
    #[tokio::test]
    async fn every_type_prints_and_a_bare_null_does_not_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.duckdb");
        Connection::open(&path).unwrap();
        let result = DuckDbWarehouse::new(path)
            .query(
                "SELECT NULL AS x, TIME '12:34:56' AS t, INTERVAL 3 DAY AS i, [1, 2] AS l, \
                 {'a': 1} AS s, 170141183460469231731687303715884105727::HUGEINT AS h, 1.5::DOUBLE AS f",
            )
            .await
            .unwrap();
        assert_eq!(result.columns, ["x", "t", "i", "l", "s", "h", "f"]);
        let row = &result.rows[0];
        assert_eq!(row[0], None);
        assert_eq!(row[1], Some(Cell::Text("12:34:56".into())));
        let Some(Cell::Text(interval)) = &row[2] else {
            panic!("{row:?}")
        };
        assert!(interval.contains('3'), "{interval}");
        assert_eq!(row[3], Some(Cell::Text("[1, 2]".into())));
        assert_eq!(row[4], Some(Cell::Text("{a: 1}".into())));
        assert_eq!(row[5], Some(Cell::Int(i128::MAX)));
        assert_eq!(row[6], Some(Cell::Float(1.5)));
    }

    #[tokio::test]
    async fn sql_errors_carry_duckdbs_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.duckdb");
        Connection::open(&path).unwrap();
        let warehouse = DuckDbWarehouse::new(path);
        for (sql, want) in [
            ("SELEC 1", "syntax error"),
            ("SELECT * FROM nowhere", "nowhere"),
            ("SELECT 1/'x'", "Conversion Error"),
        ] {
            let err = format!("{:#}", warehouse.query(sql).await.unwrap_err());
            assert!(err.contains(want), "{sql}: {err}");
            assert!(!err.contains("Unknown error code"), "{sql}: {err}");
        }
    }

    /// Issue 21: DuckDB's lock conflict is read for the holder it names.
    #[test]
    fn a_lock_conflict_names_its_holder() {
        let message = "IO Error: Could not set lock on file \"/s/warehouse.duckdb\": Conflicting lock is held in /usr/bin/duckdb (PID 4242) by user me. See also https://duckdb.org/docs/stable/connect/concurrency";
        assert_eq!(
            LockHolder::from_error(message),
            Some(LockHolder {
                pid: Some(4242),
                program: Some("/usr/bin/duckdb".into()),
            })
        );
        assert_eq!(LockHolder::from_error("Catalog Error: no table"), None);
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
        let columns = [backend::Column {
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
