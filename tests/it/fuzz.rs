//! Fuzzing step 0's parser (issue 13): the corpus in `tests/fuzz/corpus/`,
//! mutated and extended by proptest, through `pipeline::load::parse_rows`,
//! the exact code `infra run` streams the raw file through. On every input
//! it must not panic, and when it accepts the file, rows read = rows loaded
//! (COPY lines emitted) + rows rejected (records in the rejects file).

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use infra::backend::RowFormat;
use infra::pipeline::load::parse_rows;
use infra::pipeline::purchases::INPUT_HEADER;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};

static EXECUTIONS: AtomicU64 = AtomicU64::new(0);

/// The fuzz corpus (`tests/fuzz/corpus`): (file name, bytes), sorted.
pub(crate) fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "the corpus is missing from {}",
        dir.display()
    );
    files
}

/// What the parser made of one input.
#[derive(Debug)]
enum Verdict {
    Accepted {
        read: u64,
        loaded: u64,
        rejected: u64,
    },
    Refused(String),
}

/// Walks a binary COPY stream (signature, flags, extension, rows, trailer),
/// checks every row has the table's 8 fields and that no text field holds
/// invalid UTF-8 or a NUL, and returns the number of rows.
fn binary_copy_rows(copy: &[u8], input: &[u8]) -> u64 {
    let header = infra::pipeline::purchases::COPY_HEADER;
    assert!(copy.starts_with(header), "no COPY header for {input:?}");
    let mut at = header.len();
    let take = |at: &mut usize, n: usize| -> &[u8] {
        let bytes = copy
            .get(*at..*at + n)
            .unwrap_or_else(|| panic!("a truncated COPY stream for {input:?}"));
        *at += n;
        bytes
    };
    let mut rows = 0;
    loop {
        let fields = i16::from_be_bytes(take(&mut at, 2).try_into().unwrap());
        if fields == -1 {
            break;
        }
        assert_eq!(fields, 8, "a COPY row without 8 fields for {input:?}");
        for field in 0..8 {
            let len = i32::from_be_bytes(take(&mut at, 4).try_into().unwrap());
            if len < 0 {
                continue;
            }
            let value = take(&mut at, len as usize);
            // Fields 0, 1, 2 and 7 are text (invoice, stock code, detail, country).
            if [0, 1, 2, 7].contains(&field) {
                assert!(std::str::from_utf8(value).is_ok(), "non-UTF-8 loaded");
                assert!(!value.contains(&0), "a NUL byte loaded");
            }
        }
        rows += 1;
    }
    assert_eq!(at, copy.len(), "bytes after the COPY trailer for {input:?}");
    rows
}

/// Runs the parser on `bytes` and checks the invariants; panics on a breach.
fn check(bytes: &[u8]) -> Verdict {
    EXECUTIONS.fetch_add(1, Ordering::Relaxed);
    let mut rejects = csv::Writer::from_writer(Vec::new());
    let mut copy = Vec::new();
    let result = parse_rows(
        bytes,
        "fuzz.csv",
        RowFormat::CopyBinary,
        &mut rejects,
        |chunk| {
            copy.extend_from_slice(&chunk);
            Ok(())
        },
    );
    match result {
        Ok((read, rejected)) => {
            let loaded = binary_copy_rows(&copy, bytes);
            assert_eq!(read, loaded + rejected, "rows lost on {bytes:?}");
            let file = rejects.into_inner().unwrap();
            let listed = csv::Reader::from_reader(&file[..]).byte_records().count() as u64;
            assert_eq!(listed, rejected, "the rejects file lists another count");
            Verdict::Accepted {
                read,
                loaded,
                rejected,
            }
        }
        Err(e) => {
            let message = format!("{e:#}");
            assert!(
                message.contains("fuzz.csv"),
                "an error that names no file: {message}"
            );
            Verdict::Refused(message)
        }
    }
}

fn header() -> Vec<u8> {
    format!("{}\n", INPUT_HEADER.join(",")).into_bytes()
}

/// Fields from an alphabet of the bytes that matter to CSV and to the
/// validator, and rows of any width.
fn hostile_rows() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"536365".to_vec()),
        Just(b"12/1/2010 8:26".to_vec()),
        Just(b"2010-12-01 08:26:00".to_vec()),
        Just(b"-2147483648".to_vec()),
        Just(b"99999.999".to_vec()),
        Just(b"\"".to_vec()),
        Just(b",".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\0".to_vec()),
        Just(b"\xff".to_vec()),
        Just(b"\\".to_vec()),
        Just(b"\t".to_vec()),
        Just("É€😀".as_bytes().to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(piece, 0..120).prop_map(|pieces| {
        let mut bytes = header();
        for p in pieces {
            bytes.extend(p);
        }
        bytes
    })
}

/// A corpus file with some bytes flipped, inserted, deleted or repeated.
fn mutated(corpus: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let edits = proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..12);
    (0..corpus.len(), edits).prop_map(move |(i, edits)| {
        let mut bytes = corpus[i].clone();
        for (op, at, byte) in edits {
            let at = if bytes.is_empty() {
                0
            } else {
                at % bytes.len()
            };
            match op % 4 {
                0 if !bytes.is_empty() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                2 if !bytes.is_empty() => {
                    bytes.remove(at);
                }
                _ => {
                    let end = (at + usize::from(byte % 64)).min(bytes.len());
                    let slice = bytes[at..end].to_vec();
                    bytes.splice(at..at, slice);
                }
            }
        }
        bytes
    })
}

#[test]
fn the_corpus_gives_the_expected_verdicts() {
    for (name, bytes) in corpus() {
        let verdict = check(&bytes);
        let refused = matches!(verdict, Verdict::Refused(_));
        let should_refuse = matches!(
            name.as_str(),
            "empty.csv" | "wrong_header.csv" | "binary.csv"
        );
        assert_eq!(refused, should_refuse, "{name}: {verdict:?}");
        if name == "invalid_rows.csv" {
            assert!(
                matches!(
                    verdict,
                    Verdict::Accepted {
                        loaded: 0,
                        rejected: 10,
                        ..
                    }
                ),
                "{verdict:?}"
            );
        }
        if let (Verdict::Refused(message), Some(want)) = (
            &verdict,
            match name.as_str() {
                "empty.csv" => Some("is empty"),
                "wrong_header.csv" | "binary.csv" => Some("has the header"),
                _ => None,
            },
        ) {
            assert!(message.contains(want), "{name}: {message}");
        }
        if name == "header_only.csv" {
            assert!(
                matches!(verdict, Verdict::Accepted { read: 0, .. }),
                "{verdict:?}"
            );
        }
    }
}

/// The bounded fuzz run. `PROPTEST_CASES` sets the cases per strategy.
#[test]
fn fuzz_the_purchase_parser() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let regressions =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/purchases.proptest-regressions");
    let config = Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(Box::leak(
            regressions.display().to_string().into_boxed_str(),
        )))),
        ..Config::default()
    };
    let start = Instant::now();
    let before = EXECUTIONS.load(Ordering::Relaxed);
    let files: Vec<Vec<u8>> = corpus().into_iter().map(|(_, b)| b).collect();
    let strategies: [(&str, BoxedStrategy<Vec<u8>>); 4] = [
        (
            "arbitrary bytes",
            proptest::collection::vec(any::<u8>(), 0..2048).boxed(),
        ),
        (
            "header + arbitrary bytes",
            proptest::collection::vec(any::<u8>(), 0..2048)
                .prop_map(|tail| [header(), tail].concat())
                .boxed(),
        ),
        ("hostile rows", hostile_rows().boxed()),
        ("mutated corpus", mutated(files).boxed()),
    ];
    for (name, strategy) in strategies {
        let mut runner = TestRunner::new(config.clone());
        runner
            .run(&strategy, |bytes| {
                check(&bytes);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    eprintln!(
        "fuzz: {} executions of the purchase parser in {:.1}s, no panic, no row lost",
        EXECUTIONS.load(Ordering::Relaxed) - before,
        start.elapsed().as_secs_f64()
    );
}

/// A 2 GB line, generated as it is read (nothing is written to disk): the
/// parser refuses it after about 1 MiB instead of reading it into memory.
#[test]
fn a_two_gigabyte_line_is_refused_without_reading_it_whole() {
    let line = std::io::repeat(b'x').take(2 << 30);
    let head = header();
    let input = (&head[..]).chain(line);
    let mut rejects = csv::Writer::from_writer(Vec::new());
    let err = parse_rows(
        input,
        "huge.csv",
        RowFormat::CopyBinary,
        &mut rejects,
        |_| Ok(()),
    )
    .unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("huge.csv"), "{message}");
    assert!(message.contains("longer than 1 MiB"), "{message}");
}
