//! Steps 0 and 1: the purchase CSV into PostgreSQL, and the table back out.
//!
//! Step 0 streams the raw object through a CSV parser on a blocking thread,
//! validates every row, and sends valid rows to `COPY … FROM STDIN` in
//! chunks while it reads: memory stays flat whatever the file's size.
//! Invalid rows go to the rejects file. The table is replaced inside one
//! transaction, so a re-run never duplicates rows and a failed load leaves
//! the old contents.

use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::{Context, Result, bail};
use futures_util::TryStreamExt;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::purchases::{self, COLUMNS, INPUT_HEADER};
use crate::assets;
use crate::plan::keys;
use crate::record::Counts;
use crate::backend::{Body, Bucket};

/// Rows are sent to PostgreSQL in chunks of about this many bytes.
const CHUNK_BYTES: usize = 1 << 20;

/// Chunks in flight between the parser and the COPY.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Step 0: create the table and replace its rows with the valid rows of
/// `raw/user_purchase.csv`; invalid rows go to `staging/rejects/`.
pub async fn load_purchases(
    conn: &mut PgConnection,
    raw: &dyn Bucket,
    staging: &dyn Bucket,
    scratch: &Path,
) -> Result<Counts> {
    let input = raw.uri(keys::PURCHASES_CSV);
    let body = raw.get(keys::PURCHASES_CSV).await?;
    std::fs::create_dir_all(scratch)?;
    let rejects_path = scratch.join("user_purchase.rejects.csv");

    let mut tx = conn.begin().await?;
    sqlx::raw_sql(assets::CREATE_SCHEMA_SQL)
        .execute(&mut *tx)
        .await
        .context("cannot create the purchase table (sql/create_schema.sql)")?;
    sqlx::raw_sql(AssertSqlSafe(format!("TRUNCATE {}", keys::PURCHASE_TABLE)))
        .execute(&mut *tx)
        .await?;

    let (sender, mut receiver) = mpsc::channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
    let parse = {
        let input = input.clone();
        let rejects_path = rejects_path.clone();
        tokio::task::spawn_blocking(move || parse(body, &input, &rejects_path, sender))
    };

    let copy = format!(
        "COPY {} ({}) FROM STDIN (FORMAT text)",
        keys::PURCHASE_TABLE,
        COLUMNS.join(", ")
    );
    let mut copy_in = tx.copy_in_raw(&copy).await?;
    let mut send_error = None;
    while let Some(chunk) = receiver.recv().await {
        if let Err(e) = copy_in.send(chunk).await {
            send_error = Some(e);
            break;
        }
    }
    // Close the channel first, so a parser blocked on a full channel stops.
    drop(receiver);
    let parsed = parse.await.context("the CSV parser panicked")?;
    let (read, rejected) = match (parsed, send_error) {
        (Ok(counts), None) => counts,
        (Err(e), _) => {
            let _ = copy_in.abort("the input could not be read").await;
            return Err(e);
        }
        (Ok(_), Some(e)) => {
            return Err(e).with_context(|| format!("COPY into {} failed", keys::PURCHASE_TABLE));
        }
    };
    let loaded = copy_in
        .finish()
        .await
        .with_context(|| format!("COPY into {} failed", keys::PURCHASE_TABLE))?;

    if read != loaded + rejected {
        bail!("row counts do not add up: read {read}, loaded {loaded}, rejected {rejected}");
    }
    // The rejects file lands before the commit: if it cannot be written,
    // the old table stays and nothing is lost.
    staging
        .put_file(keys::PURCHASE_REJECTS, &rejects_path)
        .await
        .context("cannot store the rejected rows")?;
    let _ = std::fs::remove_file(&rejects_path);
    tx.commit().await?;
    Ok(Counts {
        rows_in: read,
        rows_out: loaded,
        rows_rejected: rejected,
    })
}

/// Parses and validates `body` on a blocking thread. Valid rows go to
/// `chunks` in COPY text format; invalid ones to the rejects file.
/// Returns (rows read, rows rejected).
fn parse(
    body: Body,
    input: &str,
    rejects_path: &Path,
    chunks: mpsc::Sender<Vec<u8>>,
) -> Result<(u64, u64)> {
    let reader = skip_bom(BufReader::with_capacity(1 << 16, SyncIoBridge::new(body)))
        .with_context(|| format!("cannot read {input}"))?;
    // Records end at '\n' only, and the '\r' of a CRLF is trimmed by hand:
    // with CRLF terminators the csv crate reports each record's line one
    // too low, and the rejects file must name the right line.
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_reader(reader);
    let mut header = csv::ByteRecord::new();
    csv.read_byte_record(&mut header)
        .with_context(|| format!("cannot read the header of {input}"))?;
    strip_cr(&mut header);
    if header.is_empty() {
        bail!(
            "{input} is empty: expected a header row `{}`",
            INPUT_HEADER.join(",")
        );
    }
    if header.iter().ne(INPUT_HEADER.iter().map(|h| h.as_bytes())) {
        bail!(
            "{input} has the header `{}`, expected `{}`",
            header
                .iter()
                .map(String::from_utf8_lossy)
                .collect::<Vec<_>>()
                .join(","),
            INPUT_HEADER.join(",")
        );
    }

    let mut rejects = csv::Writer::from_path(rejects_path)
        .with_context(|| format!("cannot create {}", rejects_path.display()))?;
    rejects.write_record(["line", "reason", "record"])?;
    let mut raw = Vec::new();

    let mut record = csv::ByteRecord::new();
    let mut chunk = Vec::with_capacity(CHUNK_BYTES + 4096);
    let (mut read, mut rejected) = (0u64, 0u64);
    loop {
        let more = csv.read_byte_record(&mut record).with_context(|| {
            let line = csv.position().line();
            format!("{input}: cannot parse CSV at line {line}")
        })?;
        if !more {
            break;
        }
        strip_cr(&mut record);
        read += 1;
        match purchases::validate(&record) {
            Ok(row) => purchases::encode(&row, &mut chunk),
            Err(reason) => {
                rejected += 1;
                let line = record.position().map_or(0, |p| p.line());
                raw.clear();
                {
                    let mut w = csv::Writer::from_writer(&mut raw);
                    w.write_byte_record(&record)?;
                    w.flush()?;
                }
                let raw_text = String::from_utf8_lossy(&raw);
                rejects.write_record([
                    line.to_string().as_str(),
                    &reason.to_string(),
                    raw_text.trim_end_matches(['\n', '\r']),
                ])?;
            }
        }
        if chunk.len() >= CHUNK_BYTES {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_BYTES + 4096));
            if chunks.blocking_send(full).is_err() {
                bail!("the database stopped accepting rows");
            }
        }
    }
    if !chunk.is_empty() && chunks.blocking_send(chunk).is_err() {
        bail!("the database stopped accepting rows");
    }
    rejects
        .flush()
        .with_context(|| format!("cannot write {}", rejects_path.display()))?;
    Ok((read, rejected))
}

/// Drops the '\r' of a CRLF line end from the record's last field.
fn strip_cr(record: &mut csv::ByteRecord) {
    let Some(last) = record.iter().next_back() else {
        return;
    };
    if let Some(trimmed) = last.strip_suffix(b"\r") {
        let trimmed = trimmed.to_vec();
        record.truncate(record.len() - 1);
        record.push_field(&trimmed);
    }
}

/// Drops a leading UTF-8 byte-order mark.
fn skip_bom<R: Read>(mut reader: R) -> std::io::Result<impl Read> {
    let mut head = Vec::with_capacity(3);
    (&mut reader).take(3).read_to_end(&mut head)?;
    if head == b"\xEF\xBB\xBF" {
        head.clear();
    }
    Ok(std::io::Cursor::new(head).chain(reader))
}

/// Step 1: the whole table to `staging/user_purchase.csv`, with a header
/// and the table's column names. Returns the number of rows.
pub async fn dump_purchases(conn: &mut PgConnection, staging: &dyn Bucket) -> Result<Counts> {
    // One snapshot for the count and the dump, so they agree.
    let mut tx = conn.begin().await?;
    sqlx::raw_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let rows: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM {}",
        keys::PURCHASE_TABLE
    )))
    .fetch_one(&mut *tx)
    .await
    .with_context(|| {
        format!(
            "cannot read {}\nhint: run step 0 first",
            keys::PURCHASE_TABLE
        )
    })?;
    let copy = format!(
        "COPY (SELECT {} FROM {}) TO STDOUT WITH (FORMAT csv, HEADER true)",
        COLUMNS.join(", "),
        keys::PURCHASE_TABLE
    );
    let stream = tx.copy_out_raw(&copy).await?.map_err(std::io::Error::other);
    staging
        .put(keys::PURCHASES_CSV, &mut StreamReader::new(stream))
        .await
        .with_context(|| {
            format!(
                "cannot dump {} to {}",
                keys::PURCHASE_TABLE,
                staging.uri(keys::PURCHASES_CSV)
            )
        })?;
    tx.commit().await?;
    let rows = rows as u64;
    Ok(Counts {
        rows_in: rows,
        rows_out: rows,
        rows_rejected: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_line_ends_are_trimmed_from_the_last_field_only() {
        let mut record = csv::ByteRecord::from(vec!["a\r", "b\r"]);
        strip_cr(&mut record);
        assert_eq!(record, csv::ByteRecord::from(vec!["a\r", "b"]));
        let mut empty = csv::ByteRecord::new();
        strip_cr(&mut empty);
        assert!(empty.is_empty());
    }

    #[test]
    fn a_bom_is_skipped_and_nothing_else() {
        let mut out = String::new();
        skip_bom(&b"\xEF\xBB\xBFa,b"[..])
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "a,b");
        out.clear();
        skip_bom(&b"ab"[..])
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "ab");
    }
}
