//! The two input files, checked the same way before anything is copied or
//! any step starts.
//!
//! A bad input must fail in one line that names the file, before it can
//! replace the previous good raw data and before Spark buries the cause in
//! its log. The rule, the same for both files: the file is readable, starts
//! with its header (a UTF-8 byte-order mark is allowed), and has at least
//! one row after it. An empty or header-only file is an error, not zero
//! rows: an empty export is far more often a mistake than a fact.
//!
//! Only the head of each file is read here (at most [`HEAD_BYTES`]): the
//! rows themselves are checked one by one by step 0 (purchases) and step 2
//! (reviews), which reject bad rows with their reasons.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use tokio::io::AsyncReadExt;

use super::purchases::INPUT_HEADER;
use crate::backend::Bucket;
use crate::plan::keys;

/// How much of a file the check reads: a header longer than this is not one.
pub const HEAD_BYTES: usize = 64 * 1024;

/// One input file: its key in the raw bucket and the header it must have.
#[derive(Debug, Clone, Copy)]
pub struct Input {
    pub key: &'static str,
    pub header: &'static [&'static str],
    /// Spark matches the review header's names case-insensitively.
    pub any_case: bool,
}

pub const PURCHASES: Input = Input {
    key: keys::PURCHASES_CSV,
    header: &INPUT_HEADER,
    any_case: false,
};

pub const REVIEWS: Input = Input {
    key: keys::REVIEWS_CSV,
    header: &["cid", "review_str", "id_review"],
    any_case: true,
};

pub const BOTH: [Input; 2] = [PURCHASES, REVIEWS];

/// The hint every input error ends with.
const FIX_HINT: &str = "hint: fix the file, then rerun `infra run --data DIR` with its directory";

/// Checks `--data DIR`: a directory holding both inputs, each well-formed.
/// Returns the files to copy, in [`BOTH`]'s order.
pub fn check_dir(dir: &Path) -> Result<Vec<(PathBuf, Input)>> {
    if dir.is_file() {
        bail!(
            "--data takes a directory, and {} is a file\nhint: pass the directory that holds {} and {}",
            dir.display(),
            keys::PURCHASES_CSV,
            keys::REVIEWS_CSV
        );
    }
    if !dir.is_dir() {
        bail!(
            "--data {} does not exist\nhint: `infra sample --out sample-data` writes both inputs into a new directory; then `infra run --data sample-data`",
            dir.display()
        );
    }
    let files: Vec<(PathBuf, Input)> = BOTH.iter().map(|i| (dir.join(i.key), *i)).collect();
    let missing: Vec<String> = files
        .iter()
        .filter(|(path, _)| !path.exists())
        .map(|(path, _)| path.display().to_string())
        .collect();
    if !missing.is_empty() {
        bail!(
            "missing input file(s): {}\nhint: `infra sample --out sample-data` writes both inputs into a new directory; then `infra run --data sample-data`",
            missing.join(", ")
        );
    }
    for (path, input) in &files {
        let name = path.display().to_string();
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot read {name}\n{FIX_HINT}"))?;
        let mut head = Vec::with_capacity(HEAD_BYTES + 1);
        file.take(HEAD_BYTES as u64 + 1)
            .read_to_end(&mut head)
            .with_context(|| format!("cannot read {name}\n{FIX_HINT}"))?;
        if let Err(reason) = check_head(&head, &name, input) {
            bail!("{reason}\n{FIX_HINT}");
        }
    }
    Ok(files)
}

/// Checks the inputs already in the raw bucket, for a run without `--data`.
pub async fn check_bucket(raw: &dyn Bucket, inputs: &[Input]) -> Result<()> {
    for input in inputs {
        let name = raw.uri(input.key);
        if !raw.exists(input.key).await? {
            bail!(
                "{name} does not exist: no input has been given yet\nhint: `infra run --data DIR` copies DIR/{} and DIR/{} into the raw bucket (`infra sample --out sample-data` writes a sample)",
                keys::PURCHASES_CSV,
                keys::REVIEWS_CSV
            );
        }
        let mut head = Vec::with_capacity(HEAD_BYTES + 1);
        raw.get(input.key)
            .await?
            .take(HEAD_BYTES as u64 + 1)
            .read_to_end(&mut head)
            .await
            .with_context(|| format!("cannot read {name}"))?;
        if let Err(reason) = check_head(&head, &name, input) {
            bail!("{reason}\n{FIX_HINT}");
        }
    }
    Ok(())
}

/// The check itself, on the first [`HEAD_BYTES`] + 1 bytes of a file.
pub fn check_head(head: &[u8], name: &str, input: &Input) -> Result<(), String> {
    let expected = input.header.join(",");
    let text = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    if text.iter().all(u8::is_ascii_whitespace) {
        return Err(format!(
            "{name} is empty: expected the header `{expected}` and at least one row"
        ));
    }
    let (line, rest) = match text.iter().position(|&b| b == b'\n') {
        Some(end) => (&text[..end], &text[end + 1..]),
        None if head.len() > HEAD_BYTES => {
            return Err(format!(
                "{name} does not start with the header `{expected}`: its first line is longer than {} KiB",
                HEAD_BYTES / 1024
            ));
        }
        None => (text, &[][..]),
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let found = header_fields(line);
    let same = found.len() == input.header.len()
        && found.iter().zip(input.header).all(|(f, e)| {
            if input.any_case {
                f.eq_ignore_ascii_case(e)
            } else {
                f == e
            }
        });
    if !same {
        return Err(format!(
            "{name} has the header `{}`, expected `{expected}`",
            printable(line)
        ));
    }
    if rest.iter().all(u8::is_ascii_whitespace) {
        return Err(format!(
            "{name} has a header but no rows: expected at least one row after it"
        ));
    }
    Ok(())
}

/// The header's fields, parsed as CSV (a quoted header is still a header).
fn header_fields(line: &[u8]) -> Vec<String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(line);
    let mut record = csv::ByteRecord::new();
    match reader.read_byte_record(&mut record) {
        Ok(true) => record
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect(),
        _ => Vec::new(),
    }
}

/// How many characters of a bad header an error quotes, escapes and `…`
/// included: one terminal line.
const SHOWN: usize = 80;

/// At most [`SHOWN`] characters of a line, with control characters and
/// invalid UTF-8 escaped, so binary garbage prints as one readable line.
fn printable(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let mut out = String::new();
    let mut count = 0;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let piece: String = if c.is_control() {
            c.escape_default().collect()
        } else {
            c.to_string()
        };
        let n = piece.chars().count();
        // Keep room for the `…` while more follows.
        let room = if chars.peek().is_some() {
            SHOWN - 1
        } else {
            SHOWN
        };
        if count + n > room {
            out.push('…');
            return out;
        }
        out.push_str(&piece);
        count += n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(bytes: &[u8], input: &Input) -> String {
        match check_head(bytes, "f.csv", input) {
            Ok(()) => "ok".into(),
            Err(e) => e,
        }
    }

    /// Regression (issue 21): a binary file's "header" was quoted up to 200
    /// characters, escapes making it longer still.
    #[test]
    fn a_binary_header_is_quoted_in_at_most_80_characters() {
        let mut bytes: Vec<u8> = (0..2000u32).map(|i| (i * 7 % 256) as u8).collect();
        bytes.retain(|b| *b != b'\n');
        bytes.extend_from_slice(b"\n1,2,3\n");
        let err = check(&bytes, &REVIEWS);
        let quoted = err
            .split("has the header `")
            .nth(1)
            .and_then(|rest| rest.rsplit_once("`, expected"))
            .map(|(q, _)| q)
            .unwrap_or_else(|| panic!("{err}"));
        assert!(
            quoted.chars().count() <= 80,
            "{} chars: {quoted}",
            quoted.chars().count()
        );
        assert!(quoted.ends_with('…'), "{quoted}");
        assert_eq!(printable(b"short"), "short");
        let exact = "x".repeat(80);
        assert_eq!(printable(exact.as_bytes()), exact);
        assert_eq!(printable("x".repeat(81).as_bytes()).chars().count(), 80);
    }

    #[test]
    fn good_heads_pass_with_a_bom_crlf_or_any_case_review_header() {
        let purchases = format!(
            "\u{feff}{}\r\n5,a,b,1,1/1/2010 8:26,1,1,UK\r\n",
            INPUT_HEADER.join(",")
        );
        assert_eq!(check(purchases.as_bytes(), &PURCHASES), "ok");
        assert_eq!(
            check(b"CID,Review_Str,id_review\n1,good,2\n", &REVIEWS),
            "ok"
        );
        assert_eq!(
            check(b"\"cid\",review_str,id_review\n1,x,2", &REVIEWS),
            "ok"
        );
    }

    #[test]
    fn each_bad_head_gets_its_own_one_line_reason() {
        let cases: [(&[u8], &str); 6] = [
            (b"", "is empty"),
            (b"\n\n  \n", "is empty"),
            (b"cid,review_str,id_review\n", "has a header but no rows"),
            (b"cid,review_str,id_review", "has a header but no rows"),
            (b"cid,review,id\n1,x,2\n", "has the header `cid,review,id`"),
            (
                b"\x00\xff\x01garbage\n\x02",
                "has the header `\\u{0}\u{fffd}\\u{1}garbage`",
            ),
        ];
        for (bytes, want) in cases {
            let got = check(bytes, &REVIEWS);
            assert!(got.contains(want), "{bytes:?}: {got}");
            assert_eq!(got.lines().count(), 1, "{got}");
        }
        let long = vec![b'a'; HEAD_BYTES + 1];
        assert!(check(&long, &PURCHASES).contains("longer than 64 KiB"));
        let wrong_case = format!("{}\n1\n", INPUT_HEADER.join(",").to_lowercase());
        assert!(check(wrong_case.as_bytes(), &PURCHASES).contains("has the header"));
    }
}
