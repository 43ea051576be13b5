//! The whole local pipeline, end to end, checked against an independent
//! computation written here: exact decimal sums, the token rule, and the
//! full-outer-join semantics.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use infra::sample;

use crate::harness::Env;

/// The metric for one customer, as the contract defines it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Expected {
    /// SUM(quantity × unit_price) in thousandths.
    milli: i128,
    reviews: u64,
    positive: u64,
}

/// "12.5" → 12500 thousandths, exactly.
fn thousandths(price: &str) -> i128 {
    let (negative, digits) = match price.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, price.strip_prefix('+').unwrap_or(price)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let int: i128 = if int.is_empty() {
        0
    } else {
        int.parse().unwrap()
    };
    let frac: i128 = format!("{frac:0<3}").parse().unwrap();
    let value = int * 1000 + frac;
    if negative { -value } else { value }
}

fn decimal(milli: i128) -> String {
    let sign = if milli < 0 { "-" } else { "" };
    format!("{sign}{}.{:03}", milli.abs() / 1000, milli.abs() % 1000)
}

/// Java's `\W` split on lower-cased text: a token is a run of ASCII
/// letters, digits and underscores. Stop words never include "good".
fn positive(review: &str) -> bool {
    review
        .to_lowercase()
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|token| token == "good")
}

fn reader(path: &Path) -> csv::Reader<std::io::Cursor<Vec<u8>>> {
    let mut bytes = std::fs::read(path).unwrap();
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        bytes.drain(..3);
    }
    csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(std::io::Cursor::new(bytes))
}

/// The metric computed from the raw inputs, skipping the rows the
/// generator made invalid on purpose.
fn expected(data: &Path) -> BTreeMap<i64, Expected> {
    let invalid: BTreeSet<Vec<String>> = sample::invalid_purchases().into_iter().collect();
    let mut metric: BTreeMap<i64, Expected> = BTreeMap::new();
    for record in reader(&data.join("user_purchase.csv")).records() {
        let fields: Vec<String> = record.unwrap().iter().map(str::to_owned).collect();
        if invalid.contains(&fields) || fields[6].is_empty() {
            continue;
        }
        let quantity: i128 = fields[3].parse().unwrap();
        let entry = metric.entry(fields[6].parse().unwrap()).or_default();
        entry.milli += quantity * thousandths(&fields[5]);
    }
    let invalid: BTreeSet<Vec<String>> = sample::invalid_reviews().into_iter().collect();
    for record in reader(&data.join("movie_review.csv")).records() {
        let fields: Vec<String> = record.unwrap().iter().map(str::to_owned).collect();
        if invalid.contains(&fields) {
            continue;
        }
        let entry = metric.entry(fields[0].parse().unwrap()).or_default();
        entry.reviews += 1;
        entry.positive += u64::from(positive(&fields[1]));
    }
    metric
}

/// The warehouse table as CSV rows, without insert_date, plus the distinct insert_dates.
fn actual(env: &Env) -> (Vec<String>, BTreeSet<String>) {
    let out = env
        .infra(&[
            "query",
            "--format",
            "csv",
            "SELECT customer_id, amount_spent, review_count, review_score, insert_date \
             FROM bootcamp.user_behavior_metric ORDER BY customer_id",
        ])
        .ok()
        .stdout;
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("customer_id,amount_spent,review_count,review_score,insert_date")
    );
    let mut rows = Vec::new();
    let mut dates = BTreeSet::new();
    for line in lines {
        let (row, date) = line.rsplit_once(',').unwrap();
        rows.push(row.to_owned());
        dates.insert(date.to_owned());
    }
    (rows, dates)
}

fn last_run(env: &Env) -> serde_json::Value {
    let runs = env.state().join("runs");
    let newest = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .max()
        .unwrap();
    serde_json::from_slice(&std::fs::read(newest).unwrap()).unwrap()
}

#[test]
fn the_local_pipeline_matches_an_independent_computation() {
    let env = Env::new();
    let data = env.sample("0.01", Some("3"));
    env.infra(&["up"]).ok();
    let first = env
        .infra(&["run", "--data", &data.display().to_string()])
        .ok();
    assert!(first.stdout.contains("succeeded"), "{}", first.stdout);

    let expected: Vec<String> = expected(&data)
        .into_iter()
        .map(|(id, e)| format!("{id},{},{},{}", decimal(e.milli), e.reviews, e.positive))
        .collect();
    let (rows, dates) = actual(&env);
    assert_eq!(rows.len(), expected.len());
    for (row, want) in rows.iter().zip(&expected) {
        assert_eq!(row, want);
    }
    assert_eq!(
        dates.len(),
        1,
        "insert_date differs between rows: {dates:?}"
    );
    let run = last_run(&env);
    let started = run["started_at"].as_str().unwrap().replace("+00:00", "");
    let date = dates.iter().next().unwrap().clone();
    assert!(
        date.starts_with(&started.trim_end_matches('Z')[..19]),
        "insert_date {date} is not the run's start {started}"
    );
    // Nothing lost in the tokenizer: every review is written or rejected.
    let tokenize = &run["steps"][2]["counts"];
    assert_eq!(
        tokenize["rows_in"].as_u64().unwrap(),
        tokenize["rows_out"].as_u64().unwrap() + tokenize["rows_rejected"].as_u64().unwrap()
    );
    assert_eq!(
        tokenize["rows_rejected"].as_u64().unwrap(),
        sample::invalid_reviews().len() as u64
    );

    // A second run gives the same table apart from insert_date, with no duplicates.
    env.infra(&["run", "--data", &data.display().to_string()])
        .ok();
    let (again, _) = actual(&env);
    assert_eq!(again, rows);

    // A failure in step 3, injected through configuration, then a resume.
    let failing = env
        .command(&["run", "--from", "3"])
        .env("INFRA_SPARK_MASTER", "no-such-master://here")
        .output()
        .unwrap();
    assert_eq!(failing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&failing.stderr);
    assert!(stderr.contains("step 3 user_behavior failed"), "{stderr}");
    assert!(stderr.contains("infra run --from 3"), "{stderr}");
    // The error quotes the end of the Spark server's log, with the cause in it.
    assert!(stderr.contains("its log ends"), "{stderr}");
    assert!(stderr.contains("no-such-master"), "{stderr}");
    let failed_run = last_run(&env);
    assert_eq!(failed_run["steps"][3]["outcome"], "failed");
    let resumed = env.infra(&["run", "--from", "3"]).ok();
    assert!(resumed.stdout.contains("succeeded"), "{}", resumed.stdout);
    let run = last_run(&env);
    assert_eq!(
        run["id"], failed_run["id"],
        "--from must continue the same run"
    );
    assert_eq!(run["steps"][3]["attempt"], 3);
    let (after, dates) = actual(&env);
    assert_eq!(after, rows);
    assert_eq!(dates.len(), 1);

    let status = env.infra(&["status"]).ok().stdout;
    assert!(status.contains("4 load_warehouse"), "{status}");
    let out = env
        .infra(&[
            "query",
            "SELECT count(*) AS n FROM bootcamp.user_behavior_metric",
        ])
        .ok()
        .stdout;
    assert!(out.contains(&expected.len().to_string()), "{out}");
    let out = env
        .infra(&["query", "SELECT * FROM no_such_table"])
        .fails(1);
    assert!(out.stderr.contains("no_such_table"), "{}", out.stderr);

    env.infra(&["down", "--yes", "--purge"]).ok();
    assert!(!env.state().exists());
}
