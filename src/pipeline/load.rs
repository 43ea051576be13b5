//! Steps 0 and 1: the purchase CSV into the database, and the table back out.
//!
//! Step 0 streams the raw object through a CSV parser on a blocking thread,
//! validates every row, and hands valid rows to the target's [`Database`]
//! in chunks while it reads, encoded as that database wants them (binary
//! COPY locally, CSV for Cloud SQL): memory stays flat whatever the file's
//! size. Invalid rows go to the rejects file, stored in staging before the
//! database makes the new rows visible. The database replaces the table
//! atomically, so a re-run never duplicates rows and a failed load leaves
//! the old contents.

use std::cell::Cell;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::io::SyncIoBridge;

use super::purchases::{self, COLUMNS, INPUT_HEADER};
use super::purchases_csv;
use crate::assets;
use crate::backend::{Body, Bucket, Database, Journal, RowFormat, Rows, TableDef};
use crate::plan::keys;
use crate::record::Counts;
use crate::ui;

/// Rows are sent to the database in chunks of about this many bytes.
const CHUNK_BYTES: usize = 1 << 20;

/// Chunks in flight between the parser and the database.
const CHUNKS_IN_FLIGHT: usize = 4;

/// The purchase table: `sql/create_schema.sql` and its columns.
pub fn purchase_table() -> TableDef {
    TableDef {
        name: keys::PURCHASE_TABLE.to_owned(),
        columns: COLUMNS.iter().map(|c| (*c).to_owned()).collect(),
        create_sql: assets::CREATE_SCHEMA_SQL.to_owned(),
    }
}

/// Step 0: create the table and replace its rows with the valid rows of
/// `raw/user_purchase.csv`; invalid rows go to `staging/rejects/`.
pub async fn load_purchases(
    db: &dyn Database,
    raw: &dyn Bucket,
    staging: &dyn Bucket,
    scratch: &Path,
    journal: &dyn Journal,
) -> Result<Counts> {
    let input = raw.uri(keys::PURCHASES_CSV);
    // The size only sizes the progress bar; `run` checked the input exists.
    let size = raw
        .list(keys::PURCHASES_CSV)
        .await?
        .iter()
        .find(|o| o.key == keys::PURCHASES_CSV)
        .map(|o| o.size);
    let body = raw.get(keys::PURCHASES_CSV).await?;
    let progress = ui::Progress::bytes(format!("load {}", keys::PURCHASES_CSV), size);
    let body: Body = Box::new(progress.wrap_read(body));
    std::fs::create_dir_all(scratch)?;
    let rejects_path = scratch.join("user_purchase.rejects.csv");
    let (sender, receiver) = mpsc::channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
    let format = db.row_format();
    let parse = {
        let input = input.clone();
        let rejects_path = rejects_path.clone();
        let progress = progress.clone();
        tokio::task::spawn_blocking(move || {
            parse(body, &input, &rejects_path, format, sender, &progress)
        })
    };
    let mut rows = ParsedRows {
        receiver: Some(receiver),
        parse: Some(parse),
        staging,
        rejects_path,
        counts: None,
    };
    let loaded = db
        .replace_rows(&purchase_table(), &mut rows, staging, journal)
        .await;
    progress.finish();
    let loaded = loaded?;
    let (read, rejected) = rows
        .counts
        .context("the database finished the load without ending its input")?;
    if read != loaded + rejected {
        bail!("row counts do not add up: read {read}, loaded {loaded}, rejected {rejected}");
    }
    Ok(Counts {
        rows_in: read,
        rows_out: loaded,
        rows_rejected: rejected,
    })
}

/// The parser's output as [`Rows`]: chunks from the channel, then the
/// counts and the rejects file when the database ends the input.
struct ParsedRows<'a> {
    receiver: Option<mpsc::Receiver<Vec<u8>>>,
    parse: Option<JoinHandle<Result<(u64, u64)>>>,
    staging: &'a dyn Bucket,
    rejects_path: PathBuf,
    /// (read, rejected), once finished.
    counts: Option<(u64, u64)>,
}

#[async_trait]
impl Rows for ParsedRows<'_> {
    async fn next(&mut self) -> Result<Option<Vec<u8>>> {
        match self.receiver.as_mut() {
            Some(receiver) => Ok(receiver.recv().await),
            None => Ok(None),
        }
    }

    async fn finish(&mut self) -> Result<u64> {
        // Close the channel first, so a parser blocked on a full channel stops.
        self.receiver = None;
        let parse = self.parse.take().context("the input was ended twice")?;
        let (read, rejected) = parse.await.context("the CSV parser panicked")?.context(
            "the purchase file cannot be loaded\nhint: fix the file, then rerun `infra run --data DIR` with its directory",
        )?;
        // The rejects land before the commit: if they cannot be stored, the
        // old table stays and nothing is lost.
        self.staging
            .put_file(keys::PURCHASE_REJECTS, &self.rejects_path)
            .await
            .context("cannot store the rejected rows")?;
        let _ = std::fs::remove_file(&self.rejects_path);
        self.counts = Some((read, rejected));
        Ok(read - rejected)
    }
}

/// Parses and validates `body` on a blocking thread. Valid rows go to
/// `chunks` encoded as the database asks; invalid ones to the rejects file.
/// Returns (rows read, rows rejected).
fn parse(
    body: Body,
    input: &str,
    rejects_path: &Path,
    format: RowFormat,
    chunks: mpsc::Sender<Vec<u8>>,
    progress: &ui::Progress,
) -> Result<(u64, u64)> {
    let mut rejects = csv::Writer::from_path(rejects_path)
        .with_context(|| format!("cannot create {}", rejects_path.display()))?;
    let counts = parse_rows_counted(
        SyncIoBridge::new(body),
        input,
        format,
        &mut rejects,
        |chunk| {
            chunks
                .blocking_send(chunk)
                .map_err(|_| anyhow::anyhow!("the database stopped accepting rows"))
        },
        |read| progress.set_message(format!("{read} rows")),
    )?;
    rejects
        .flush()
        .with_context(|| format!("cannot write {}", rejects_path.display()))?;
    Ok(counts)
}

/// The longest record the loader accepts, in bytes from the end of the
/// record before it (blank lines before it count). A valid row is at most
/// about 4 KiB (a 1000-character description is the longest field); a
/// longer record means a runaway quote or a file that is not this CSV, and
/// must not be read into memory whole, however large it is. The limit is
/// exact (the Airflow DAG's validator applies the same one): [`Bounded`]
/// only stops reading early a record that is longer still.
pub const MAX_RECORD_BYTES: u64 = 1 << 20;

fn too_long() -> String {
    format!(
        "a record longer than {} MiB (an unclosed quote, or not a purchase CSV)",
        MAX_RECORD_BYTES >> 20
    )
}

/// Step 0's parser, apart from where its output goes, so it can be fuzzed:
/// checks the header, then validates every record. Valid rows are encoded
/// in `format` (binary COPY: one stream with header and trailer) and handed to `emit` in chunks
/// of about [`CHUNK_BYTES`]; invalid ones are written to `rejects` with
/// their line and reason. Returns (rows read, rows rejected); the rows
/// emitted are the difference.
pub fn parse_rows<R: Read, W: std::io::Write>(
    body: R,
    input: &str,
    format: RowFormat,
    rejects: &mut csv::Writer<W>,
    emit: impl FnMut(Vec<u8>) -> Result<()>,
) -> Result<(u64, u64)> {
    parse_rows_counted(body, input, format, rejects, emit, |_| {})
}

/// [`parse_rows`], telling `rows_read` the rows read so far at each chunk
/// (the load's progress line shows them).
fn parse_rows_counted<R: Read, W: std::io::Write>(
    body: R,
    input: &str,
    format: RowFormat,
    rejects: &mut csv::Writer<W>,
    mut emit: impl FnMut(Vec<u8>) -> Result<()>,
    mut rows_read: impl FnMut(u64),
) -> Result<(u64, u64)> {
    let record_start = Rc::new(Cell::new(0u64));
    let bounded = Bounded {
        inner: body,
        read: 0,
        record_start: Rc::clone(&record_start),
    };
    let reader = skip_bom(BufReader::with_capacity(1 << 16, bounded))
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
    if csv.position().byte() > MAX_RECORD_BYTES {
        bail!("{input}: {}", too_long());
    }
    record_start.set(csv.position().byte());

    rejects.write_record(["line", "reason", "record"])?;
    let mut raw = Vec::new();

    // One record buffer for the whole file: the parser reuses its storage.
    let mut record = csv::ByteRecord::new();
    let mut chunk = Vec::with_capacity(CHUNK_BYTES + 4096);
    if format == RowFormat::CopyBinary {
        chunk.extend_from_slice(purchases::COPY_HEADER);
    }
    let (mut read, mut rejected) = (0u64, 0u64);
    loop {
        let more = csv.read_byte_record(&mut record).with_context(|| {
            let line = csv.position().line();
            format!("{input}: cannot parse CSV at line {line}")
        })?;
        if !more {
            break;
        }
        let record_end = csv.position().byte();
        if record_end - record_start.get() > MAX_RECORD_BYTES {
            bail!("{input}: {}", too_long());
        }
        record_start.set(record_end);
        read += 1;
        match purchases::validate(&record) {
            Ok(row) => match format {
                RowFormat::CopyBinary => purchases::encode(&row, &mut chunk),
                RowFormat::Csv => purchases_csv::encode(&row, &mut chunk),
            },
            Err(reason) => {
                rejected += 1;
                strip_cr(&mut record);
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
            rows_read(read);
            emit(std::mem::replace(
                &mut chunk,
                Vec::with_capacity(CHUNK_BYTES + 4096),
            ))?;
        }
    }
    if format == RowFormat::CopyBinary {
        chunk.extend_from_slice(purchases::COPY_TRAILER);
    }
    if !chunk.is_empty() {
        emit(chunk)?;
    }
    Ok((read, rejected))
}

/// A reader that refuses to run more than [`MAX_RECORD_BYTES`] (plus what
/// the buffers above it hold) past the start of the current record.
struct Bounded<R> {
    inner: R,
    read: u64,
    record_start: Rc<Cell<u64>>,
}

/// Room for the 64 KiB `BufReader` and the csv crate's own buffer.
const BUFFERED: u64 = 128 * 1024;

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.read.saturating_sub(self.record_start.get()) > MAX_RECORD_BYTES + BUFFERED {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                too_long(),
            ));
        }
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// Drops the '\r' of a CRLF line end from the record's last field (for the
/// header and the rejects file; `validate` ignores it without copying).
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
pub async fn dump_purchases(
    db: &dyn Database,
    staging: &dyn Bucket,
    journal: &dyn Journal,
) -> Result<Counts> {
    let rows = db
        .dump_csv(&purchase_table(), staging, keys::PURCHASES_CSV, journal)
        .await?;
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
