//! Step 0's validation in the Airflow DAG (`templates/airflow/infra_purchases.py`)
//! is the same contract as infra's loader: one corpus, both validators,
//! identical verdicts. The corpus is the fuzz corpus (`tests/fuzz/corpus`),
//! the bad-input cases below, the record-length limit at its exact edge,
//! and deterministic mutations of all of them (byte flips, inserts from a
//! hostile alphabet, deletes, splices). For every input, both must refuse
//! the file, or both accept it with the same counts, the same valid rows
//! (byte for byte the CSV Cloud SQL imports) and the same rejects file.
//! The valid rows then go through both splits for Cloud SQL (rows with a
//! line break in a field become SQL `INSERT`s: `line_breaks`), which must
//! give the same CSV and the same SQL.

use std::path::{Path, PathBuf};
use std::process::Command;

use infra::backend::RowFormat;
use infra::backend::gcp::line_breaks;
use infra::pipeline::load::{self, MAX_RECORD_BYTES, parse_rows};

const HEADER: &str =
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n";

/// What a validator made of one input.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Refused,
    Accepted {
        read: u64,
        rejected: u64,
        rows: String,
        rejects: String,
        /// The valid rows split for Cloud SQL: the CSV part, the SQL part.
        split: (String, String),
    },
}

/// The load table and its columns, as step 0 on GCP names them.
fn load_table() -> (String, Vec<String>) {
    let table = load::purchase_table();
    (format!("{}_load", table.name), table.columns)
}

fn rust(input: &[u8]) -> Verdict {
    let mut rows = Vec::new();
    let mut rejects = csv::Writer::from_writer(Vec::new());
    match parse_rows(input, "input", RowFormat::Csv, &mut rejects, |chunk| {
        rows.extend_from_slice(&chunk);
        Ok(())
    }) {
        Err(_) => Verdict::Refused,
        Ok((read, rejected)) => {
            let (table, columns) = load_table();
            let (mut csv, mut sql) = (Vec::new(), Vec::new());
            line_breaks::split(&rows, &table, &columns, &mut csv, &mut sql).unwrap();
            Verdict::Accepted {
                read,
                rejected,
                rows: String::from_utf8_lossy(&rows).into_owned(),
                rejects: String::from_utf8_lossy(&rejects.into_inner().unwrap()).into_owned(),
                split: (
                    String::from_utf8_lossy(&csv).into_owned(),
                    String::from_utf8_lossy(&sql).into_owned(),
                ),
            }
        }
    }
}

fn python(out: &Path, name: &str) -> Verdict {
    let read = |suffix: &str| std::fs::read(out.join(format!("{name}.{suffix}"))).unwrap();
    let verdict: serde_json::Value = serde_json::from_slice(&read("verdict.json")).unwrap();
    if verdict.get("refused").is_some() {
        return Verdict::Refused;
    }
    Verdict::Accepted {
        read: verdict["read"].as_u64().unwrap(),
        rejected: verdict["rejected"].as_u64().unwrap(),
        rows: String::from_utf8_lossy(&read("rows.csv")).into_owned(),
        rejects: String::from_utf8_lossy(&read("rejects.csv")).into_owned(),
        split: (
            String::from_utf8_lossy(&read("split.csv")).into_owned(),
            String::from_utf8_lossy(&read("split.sql")).into_owned(),
        ),
    }
}

/// Rows that probe each rule, one file each, after a valid header.
const BAD_INPUT_ROWS: &[&str] = &[
    "536365,85123A,WHITE HEART,6,12/1/2010 8:26,2.55,17850,United Kingdom\n",
    "536365,85123A,,6,12/1/2010 8:26,2.55,,\n",
    "536365,85123A,X,+6,12/1/2010 8:26,+2.55,+17850,UK\n",
    "536365,85123A,X,-0,12/1/2010 8:26,-0.000,-17850,UK\n",
    "536365,85123A,X,007,12/1/2010 8:26,.5,17850,UK\n",
    "536365,85123A,X,6,12/1/2010 8:26,5.,17850,UK\n",
    "536365,85123A,X,6,12/1/2010 8:26,.,17850,UK\n",
    "536365,85123A,X,2147483647,12/1/2010 8:26,1,-2147483648,UK\n",
    "536365,85123A,X,-2147483649,12/1/2010 8:26,1,1,UK\n",
    "536365,85123A,X, 6,12/1/2010 8:26,1,1,UK\n",
    "536365,85123A,X,6_0,12/1/2010 8:26,1,1,UK\n",
    "536365,85123A,X,\u{0666},12/1/2010 8:26,1,1,UK\n",
    "536365,85123A,X,6,2/29/2012 8:26,1,1,UK\n",
    "536365,85123A,X,6,2/29/2011 8:26,1,1,UK\n",
    "536365,85123A,X,6,2/29/2000 8:26,1,1,UK\n",
    "536365,85123A,X,6,2/29/1900 8:26,1,1,UK\n",
    "536365,85123A,X,6,01/02/2011 08:26,1,1,UK\n",
    "536365,85123A,X,6,1/2/2011 8:6,1,1,UK\n",
    "536365,85123A,X,6,1/2/2011  8:26,1,1,UK\n",
    "536365,85123A,X,6,1/2/2011 \t8:26,1,1,UK\n",
    "536365,85123A,X,6,1/2/+201 8:26,1,1,UK\n",
    "536365,85123A,X,6,1/2/-201 8:26,1,1,UK\n",
    "536365,85123A,X,6,1/2/0000 8:26,1,1,UK\n",
    "536365,85123A,X,6,1/2/ 201 8:26,1,1,UK\n",
    "536365,85123A,X,6,1/ 2/2011 8:26,1,1,UK\n",
    "536365,85123A,X,6,2011-01-02 08:26:60,1,1,UK\n",
    "536365,85123A,X,6,2011-01-02 08:26:61,1,1,UK\n",
    "536365,85123A,X,6,2011-01-02 8:26,1,1,UK\n",
    "536365,85123A,X,6,2011-1-2 08:26,1,1,UK\n",
    "536365,85123A,X,6,+201-01-02 08:26,1,1,UK\n",
    "536365,85123A,X,6,2011-01-02 08:26:5,1,1,UK\n",
    "536365,85123A,X,6,2011-01-02 08: 6,1,1,UK\n",
    "536365,85123A,X,6,2011-01-02 08:26 ,1,1,UK\n",
    "536365,85123A,X,6,2011-01-02T08:26,1,1,UK\n",
    "536365,85123A,X,6,12/1/2010 8:26,99999.999,1,UK\n",
    "536365,85123A,X,6,12/1/2010 8:26,100000,1,UK\n",
    "536365,85123A,X,6,12/1/2010 8:26,1e3,1,UK\n",
    "536365,85123A,X,6,12/1/2010 8:26,+-1,1,UK\n",
    "12345678901,85123A,X,6,12/1/2010 8:26,1,1,UK\n",
    "1234567890,123456789012345678901,X,6,12/1/2010 8:26,1,1,UK\n",
    "1,\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9},X,6,12/1/2010 8:26,1,1,UK\n",
    "1,2,X,6,12/1/2010 8:26,1,1,\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}\n",
    "1,2,\"a \"\"quoted\"\", comma\",6,12/1/2010 8:26,1,1,UK\r\n",
    "1,2,\"multi\nline\",6,12/1/2010 8:26,1,1,UK\n",
    "1,2,\"a\"b,6,12/1/2010 8:26,1,1,UK\n",
    "1,2,a\"b,6,12/1/2010 8:26,1,1,UK\n",
    "1,2,X,6,12/1/2010 8:26,1,1,UK\r\r\n",
    "1,2,X,6,12/1/2010 8:26,1,1,\"UK\r\"\n",
    "\r\n",
    "\n\n\n1,2,X,6,12/1/2010 8:26,1,1,UK\n\n1,2,X,x,12/1/2010 8:26,1,1,UK\n",
    "1,2,X,6,12/1/2010 8:26,1,1,UK",
    "1,2,X,6,12/1/2010 8:26,1,1,",
    "1,2,X,6,12/1/2010 8:26,1,1,\"unclosed\n",
    "\"\"\n",
    ",\n",
    "1,2,\u{FEFF}X,6,12/1/2010 8:26,1,1,UK\n",
];

/// Whole files that probe the header and the record-length limit.
fn bad_input_files() -> Vec<(String, Vec<u8>)> {
    let mut files = vec![
        (
            "bom-twice".to_owned(),
            [b"\xEF\xBB\xBF\xEF\xBB\xBF", HEADER.as_bytes()].concat(),
        ),
        (
            "header-crlf".to_owned(),
            HEADER.replace('\n', "\r\n").into_bytes(),
        ),
        (
            "header-spaces".to_owned(),
            HEADER.replace(',', ", ").into_bytes(),
        ),
        (
            "blank-then-header".to_owned(),
            format!("\n\n{HEADER}1,2,X,6,12/1/2010 8:26,1,1,UK\n").into_bytes(),
        ),
        ("only-blank".to_owned(), b"\n\n\n".to_vec()),
        (
            "header-no-newline".to_owned(),
            HEADER.trim_end().as_bytes().to_vec(),
        ),
    ];
    // The limit is exact on both sides: a record of MAX_RECORD_BYTES bytes
    // (its line end included) is read and rejected, one byte more refuses
    // the file.
    for (name, extra) in [("record-at-limit", 0), ("record-over-limit", 1)] {
        let line_len = MAX_RECORD_BYTES as usize + extra;
        let mut body = HEADER.as_bytes().to_vec();
        body.extend(std::iter::repeat_n(b'x', line_len - 1));
        body.push(b'\n');
        body.extend_from_slice(b"1,2,X,6,12/1/2010 8:26,1,1,UK\n");
        files.push((name.to_owned(), body));
    }
    files
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut files = crate::fuzz::corpus();
    for (i, row) in BAD_INPUT_ROWS.iter().enumerate() {
        files.push((format!("row-{i:02}"), format!("{HEADER}{row}").into_bytes()));
    }
    files.extend(
        bad_input_files()
            .into_iter()
            .filter(|(_, b)| b.len() < 4096),
    );
    files
}

/// xorshift64: the mutations are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const HOSTILE: &[&[u8]] = &[
    b"\"",
    b",",
    b"\n",
    b"\r",
    b"\r\n",
    b"/",
    b"-",
    b":",
    b" ",
    b"\t",
    b"+",
    b".",
    b"0",
    b"9",
    b"\xFF",
    b"\x00",
    b"\xEF\xBB\xBF",
    b"\xC3\xA9",
    b"\xED\xA0\x80",
    b"60",
    b"2/29/2012 8:26",
];

fn mutate(rng: &mut Rng, files: &[(String, Vec<u8>)], base: &[u8]) -> Vec<u8> {
    let mut bytes = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(4) {
            0 if !bytes.is_empty() => {
                let at = at.min(bytes.len() - 1);
                bytes[at] ^= 1 << rng.below(8);
            }
            1 if !bytes.is_empty() => {
                let end = (at + 1 + rng.below(6)).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            2 => {
                let (_, other) = &files[rng.below(files.len())];
                let from = rng.below(other.len());
                let to = (from + rng.below(40)).min(other.len());
                bytes.splice(at..at, other[from..to].iter().copied());
            }
            _ => {
                let piece = HOSTILE[rng.below(HOSTILE.len())];
                bytes.splice(at..at, piece.iter().copied());
            }
        }
    }
    bytes
}

#[test]
fn the_dag_validator_and_the_loader_give_identical_verdicts() {
    let mut cases = corpus();
    let mut rng = Rng(0x5EED_2026_0020);
    let seeds = cases.clone();
    for (name, base) in &seeds {
        for i in 0..40 {
            cases.push((format!("{name}~{i:02}"), mutate(&mut rng, &seeds, base)));
        }
    }
    cases.extend(
        bad_input_files()
            .into_iter()
            .filter(|(_, b)| b.len() >= 4096),
    );

    let dir = tempfile::tempdir().unwrap();
    let (inputs, out) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::create_dir_all(&inputs).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    for (name, bytes) in &cases {
        std::fs::write(inputs.join(name), bytes).unwrap();
    }
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates/airflow/infra_purchases.py");
    let (table, columns) = load_table();
    let status = Command::new("python3")
        .arg(&script)
        .arg(&inputs)
        .arg(&out)
        .arg(&table)
        .arg(columns.join(","))
        .status()
        .expect("python3 runs");
    assert!(status.success(), "{} failed", script.display());

    let mut differ = Vec::new();
    let (mut refused, mut rejected_rows, mut valid_rows, mut inserts) = (0, 0, 0, 0);
    for (name, bytes) in &cases {
        let (ours, theirs) = (rust(bytes), python(&out, name));
        match &ours {
            Verdict::Refused => refused += 1,
            Verdict::Accepted {
                read,
                rejected,
                split,
                ..
            } => {
                rejected_rows += rejected;
                valid_rows += read - rejected;
                inserts += split.1.lines().count();
            }
        }
        if ours != theirs {
            differ.push(format!(
                "{name}: {bytes:?}\n  infra:  {ours:?}\n  python: {theirs:?}"
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} inputs differ:\n{}",
        differ.len(),
        cases.len(),
        differ
            .iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The corpus exercises every outcome, or agreeing would prove little.
    assert!(
        refused >= 5 && rejected_rows >= 100 && valid_rows >= 100 && inserts >= 10,
        "refused {refused}, rejected {rejected_rows}, valid {valid_rows}, {inserts} rows with line breaks"
    );
    eprintln!(
        "conformance: {} inputs, {refused} refused, {valid_rows} valid ({inserts} with a line break) and {rejected_rows} rejected rows, identical",
        cases.len()
    );
}
