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
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::io::SyncIoBridge;

use super::purchases::{self, COLUMNS, INPUT_HEADER};
use super::purchases_csv;
use crate::assets;
use crate::backend::{Body, Bucket, Database, Journal, RowFormat, Rows, TableDef};
use crate::plan::keys;
use crate::record::Counts;
use crate::settings::MaxRejected;
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
    max_rejected: Option<MaxRejected>,
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
        max_rejected,
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
    max_rejected: Option<MaxRejected>,
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
        let reasons = if rejected > 0 {
            top_reasons(&self.rejects_path, 3)
        } else {
            String::new()
        };
        let _ = std::fs::remove_file(&self.rejects_path);
        let rejects = self.staging.uri(keys::PURCHASE_REJECTS);
        if let Some(max) = self.max_rejected
            && max.exceeded(read, rejected)
        {
            // Failing here, before the database commits, keeps the
            // previous table; the rejects are stored for a look.
            bail!(
                "{rejected} of {read} purchase rows were rejected, more than run.max_rejected allows ({max}); the previous table is untouched\nthe rejected rows are in {rejects} ({reasons})\nhint: fix the input and run again, or raise run.max_rejected"
            );
        }
        if rejected > 0 {
            ui::warn(format!(
                "{rejected} of {read} purchase rows were rejected ({reasons}): they are in {rejects}"
            ));
        }
        self.counts = Some((read, rejected));
        Ok(read - rejected)
    }
}

/// The `limit` commonest reasons in a rejects file, as
/// `12 × invalid UTF-8, 3 × …` (with `, …` when there are more).
fn top_reasons(rejects: &Path, limit: usize) -> String {
    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    if let Ok(mut csv) = csv::Reader::from_path(rejects) {
        let mut record = csv::ByteRecord::new();
        while csv.read_byte_record(&mut record).unwrap_or(false) {
            let reason = String::from_utf8_lossy(record.get(1).unwrap_or_default()).into_owned();
            *counts.entry(reason).or_default() += 1;
        }
    }
    let mut counts: Vec<(String, u64)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut text = counts
        .iter()
        .take(limit)
        .map(|(reason, n)| format!("{n} × {reason}"))
        .collect::<Vec<_>>()
        .join(", ");
    if counts.len() > limit {
        text.push_str(", …");
    }
    text
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

    rejects.write_record(["line", "reason", "record", "record_base64"])?;
    let (mut raw, mut exact) = (Vec::new(), Vec::new());

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
                // `record_base64` holds the record's fields byte for byte,
                // as read (a CRLF's '\r' included), so nothing rejected is
                // lost; `record` is for reading (invalid UTF-8 shows as
                // U+FFFD, the line end is dropped).
                csv_line(&record, &mut exact)?;
                strip_cr(&mut record);
                let line = record.position().map_or(0, |p| p.line());
                csv_line(&record, &mut raw)?;
                rejects.write_record([
                    line.to_string().as_str(),
                    &reason.to_string(),
                    &String::from_utf8_lossy(&raw),
                    &BASE64.encode(&exact),
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

/// `record` as one CSV line, without its line end, into `out`.
fn csv_line(record: &csv::ByteRecord, out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(&mut *out);
    w.write_byte_record(record)?;
    w.flush()?;
    drop(w);
    out.pop();
    Ok(())
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
///
/// `loaded` is step 0's `rows_out` in this run. The dump must hold exactly
/// those rows: a load whose swap failed without saying so (no document
/// says how Cloud SQL's SQL import reports a `RAISE EXCEPTION`) left the
/// table as it was, and the run must not go on with the old rows.
pub async fn dump_purchases(
    db: &dyn Database,
    staging: &dyn Bucket,
    loaded: Option<u64>,
    journal: &dyn Journal,
) -> Result<Counts> {
    let rows = db
        .dump_csv(&purchase_table(), staging, keys::PURCHASES_CSV, journal)
        .await?;
    if let Some(loaded) = loaded
        && rows != loaded
    {
        bail!(
            "{} holds {rows} rows, but step 0 loaded {loaded} in this run: the table is not what step 0 loaded (its swap may have failed unreported)\nhint: run the load again: `infra run --from 0`",
            db.describe()
        );
    }
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

    /// Regression (issue 21): the rejects file replaced invalid UTF-8 with
    /// U+FFFD, so a rejected record could not be recovered. Random bytes in
    /// every field come back exactly from `record_base64`.
    #[test]
    fn rejected_records_keep_their_exact_bytes() {
        use rand::{Rng as _, SeedableRng as _};
        let mut rng = rand::rngs::StdRng::seed_from_u64(21);
        let mut input = format!("{}\n", INPUT_HEADER.join(",")).into_bytes();
        let mut originals = Vec::new();
        for _ in 0..200 {
            // Eight fields of random bytes (any byte, quotes and newlines
            // too), written as CSV: the file a user might have.
            let fields: Vec<Vec<u8>> = (0..8)
                .map(|_| {
                    let len = rng.random_range(0..40);
                    (0..len).map(|_| rng.random::<u8>()).collect()
                })
                .collect();
            let mut w = csv::WriterBuilder::new()
                .quote_style(csv::QuoteStyle::Always)
                .terminator(csv::Terminator::Any(b'\n'))
                .from_writer(Vec::new());
            w.write_record(&fields).unwrap();
            input.extend(w.into_inner().unwrap());
            originals.push(fields);
        }
        let mut rejects = csv::Writer::from_writer(Vec::new());
        let (read, rejected) = parse_rows(
            &input[..],
            "random.csv",
            RowFormat::Csv,
            &mut rejects,
            |_| Ok(()),
        )
        .unwrap();
        assert_eq!(read, 200);
        let rejects = rejects.into_inner().unwrap();
        let mut reader = csv::Reader::from_reader(&rejects[..]);
        assert_eq!(reader.headers().unwrap().get(3), Some("record_base64"));
        let mut recovered = 0;
        for row in reader.records() {
            let row = row.unwrap();
            let line: usize = row[0].parse().unwrap();
            let bytes = BASE64.decode(&row[3]).unwrap();
            let record = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(&bytes[..])
                .byte_records()
                .next()
                .unwrap()
                .unwrap();
            let fields: Vec<Vec<u8>> = record.iter().map(<[u8]>::to_vec).collect();
            // Line numbers count the header; a random field may hold
            // newlines, so find the original by its fields.
            assert!(line >= 2);
            assert!(
                originals.contains(&fields),
                "line {line}: {fields:?} is not a record of the input"
            );
            recovered += 1;
        }
        assert_eq!(recovered, rejected);
        assert!(rejected > 190, "random rows should be rejected: {rejected}");
    }
}
