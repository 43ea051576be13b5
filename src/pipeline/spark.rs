//! Steps 2 and 3: the PySpark jobs, submitted to whichever Spark the target has.
//!
//! The scripts take every location as an argument, so the same files run
//! locally (`file://`) and on Dataproc (`gs://`). Each writes a one-line
//! JSON metrics file beside its output, which this module reads back to
//! check that no row was lost.

use anyhow::{Context, Result, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::io::AsyncReadExt;

use crate::backend::{Bucket, Buckets, Journal, Spark, SparkJob};
use crate::plan::keys;
use crate::record::Counts;
use crate::ui;

#[derive(Debug, Deserialize)]
struct TokenizerMetrics {
    rows_read: u64,
    rows_written: u64,
    rows_rejected: u64,
}

#[derive(Debug, Deserialize)]
pub struct UserBehaviorMetrics {
    pub purchases_read: u64,
    pub reviews_read: u64,
    pub rows_written: u64,
}

/// Step 2's job: `tokenizer.py` over `raw/movie_review.csv`.
pub fn tokenizer_job(b: &Buckets) -> SparkJob {
    SparkJob {
        name: "tokenizer".into(),
        script: b.code.uri(keys::TOKENIZER_PY),
        args: vec![
            "--input".into(),
            b.raw.uri(keys::REVIEWS_CSV),
            "--output".into(),
            b.staging.uri(keys::REVIEWS),
            "--rejects".into(),
            b.staging.uri(keys::REVIEW_REJECTS),
            "--metrics".into(),
            b.staging.uri(keys::TOKENIZER_METRICS),
        ],
    }
}

/// Step 2: `tokenizer.py` over `raw/movie_review.csv`.
pub async fn tokenize(spark: &dyn Spark, b: &Buckets, journal: &dyn Journal) -> Result<Counts> {
    require(
        b.raw.as_ref(),
        keys::REVIEWS_CSV,
        "hint: `infra run --data DIR` copies DIR/movie_review.csv into the raw bucket",
    )
    .await?;
    submit(spark, &tokenizer_job(b), journal).await?;
    let m: TokenizerMetrics = read_metrics(b.staging.as_ref(), keys::TOKENIZER_METRICS).await?;
    if m.rows_read != m.rows_written + m.rows_rejected {
        bail!(
            "the tokenizer lost reviews: read {}, wrote {}, rejected {}",
            m.rows_read,
            m.rows_written,
            m.rows_rejected
        );
    }
    Ok(Counts {
        rows_in: m.rows_read,
        rows_out: m.rows_written,
        rows_rejected: m.rows_rejected,
    })
}

/// What step 3 must read: the rows step 1 dumped and step 2 wrote, as the
/// run record has them (`None` when that step has not finished in this run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expected {
    pub purchases: Option<u64>,
    pub reviews: Option<u64>,
}

/// Step 3's job: `user_behavior.py` over step 1's dump and step 2's
/// reviews. `insert_date` is the run's start, so a retried step writes the
/// same value.
pub fn user_behavior_job(b: &Buckets, insert_date: DateTime<Utc>) -> SparkJob {
    SparkJob {
        name: "user_behavior".into(),
        script: b.code.uri(keys::USER_BEHAVIOR_PY),
        args: vec![
            "--purchases".into(),
            b.staging.uri(keys::PURCHASES_CSV),
            "--reviews".into(),
            b.staging.uri(keys::REVIEWS),
            "--output".into(),
            b.staging.uri(keys::USER_BEHAVIOR),
            "--insert-date".into(),
            insert_date.to_rfc3339_opts(SecondsFormat::Secs, true),
            "--metrics".into(),
            b.staging.uri(keys::USER_BEHAVIOR_METRICS),
        ],
    }
}

/// Step 3: `user_behavior.py` over step 1's dump and step 2's reviews.
/// The rows it read must be those steps 1 and 2 wrote, or nothing was lost
/// is not true and the step fails.
pub async fn user_behavior(
    spark: &dyn Spark,
    b: &Buckets,
    insert_date: DateTime<Utc>,
    expected: Expected,
    journal: &dyn Journal,
) -> Result<Counts> {
    require(
        b.staging.as_ref(),
        keys::PURCHASES_CSV,
        "hint: run step 1 first (`infra run --from 1`)",
    )
    .await?;
    submit(spark, &user_behavior_job(b, insert_date), journal).await?;
    let m = user_behavior_metrics(b.staging.as_ref()).await?;
    check_read(&m, expected)?;
    Ok(Counts {
        rows_in: m.purchases_read + m.reviews_read,
        rows_out: m.rows_written,
        rows_rejected: 0,
    })
}

/// Submits `job` with a spinner that shows it is alive while Spark works.
async fn submit(spark: &dyn Spark, job: &SparkJob, journal: &dyn Journal) -> Result<()> {
    let label = format!("spark {}", job.name);
    let progress = match spark.deadline() {
        Some(limit) => ui::Progress::waiting(label, "running", limit),
        None => ui::Progress::spinner(label, "running"),
    };
    let result = spark.submit(job, journal).await;
    progress.finish();
    result
}

/// The cause of a failed Spark job, as Spark names it: the first
/// `[ERROR_CLASS] message` in its output (the Python client's exception
/// locally, the driver output on Dataproc), without what comes before the
/// bracket (the exception's class, a quoting prefix).
pub fn cause(output: &str) -> Option<String> {
    output.lines().find_map(|line| {
        let mut rest = line;
        while let Some(open) = rest.find('[') {
            let candidate = &rest[open..];
            let close = candidate.find("] ")?;
            let class = &candidate[1..close];
            let is_class = class.len() >= 3
                && class.contains('_')
                && class
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == '.');
            if is_class {
                return Some(candidate.trim_end().to_owned());
            }
            rest = &candidate[1..];
        }
        None
    })
}

/// Step 3's inputs must be exactly what steps 1 and 2 wrote.
fn check_read(m: &UserBehaviorMetrics, expected: Expected) -> Result<()> {
    let mut wrong = Vec::new();
    if let Some(dumped) = expected.purchases
        && dumped != m.purchases_read
    {
        wrong.push(format!(
            "it read {} purchases, and step 1 dumped {dumped}",
            m.purchases_read
        ));
    }
    if let Some(written) = expected.reviews
        && written != m.reviews_read
    {
        wrong.push(format!(
            "it read {} reviews, and step 2 wrote {written}",
            m.reviews_read
        ));
    }
    if !wrong.is_empty() {
        bail!(
            "user_behavior did not read what the earlier steps wrote: {}\nhint: rerun from the step whose output changed (`infra run --from 1`)",
            wrong.join("; ")
        );
    }
    Ok(())
}

/// What step 3's job wrote in its metrics file: step 4 checks its own
/// count against `rows_written`.
pub async fn user_behavior_metrics(staging: &dyn Bucket) -> Result<UserBehaviorMetrics> {
    read_metrics(staging, keys::USER_BEHAVIOR_METRICS).await
}

async fn require(bucket: &dyn Bucket, key: &str, hint: &str) -> Result<()> {
    if !bucket.exists(key).await? {
        bail!("{} does not exist\n{hint}", bucket.uri(key));
    }
    Ok(())
}

/// Reads the one JSON object a job wrote as `prefix/part-*.json`.
async fn read_metrics<T: DeserializeOwned>(staging: &dyn Bucket, prefix: &str) -> Result<T> {
    let objects = staging.list(&format!("{prefix}/")).await?;
    let part = objects
        .iter()
        .find(|o| {
            let name = o.key.rsplit('/').next().unwrap_or_default();
            name.starts_with("part-") && name.ends_with(".json") && o.size > 0
        })
        .with_context(|| format!("the job wrote no metrics under {}", staging.uri(prefix)))?;
    let mut text = String::new();
    staging
        .get(&part.key)
        .await?
        .read_to_string(&mut text)
        .await
        .with_context(|| format!("cannot read {}", staging.uri(&part.key)))?;
    serde_json::from_str(text.trim()).with_context(|| {
        format!(
            "{} is not the metrics the pipeline expects",
            staging.uri(&part.key)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 21): a failed step quoted 40 lines of JVM frames,
    /// and the cause showed only with `-v`.
    #[test]
    fn the_cause_is_sparks_error_class_and_message() {
        let local = "Spark job user_behavior failed (the Spark Connect server's log: /s/spark/log): `/venv/bin/python /s/code/user_behavior.py --purchases file:///s/staging/user_purchase.csv` exit status: 1
last 40 lines of its output:
  | Traceback (most recent call last):
  |   File \"/s/code/user_behavior.py\", line 88, in <module>
  | pyspark.errors.exceptions.connect.AnalysisException: [PATH_NOT_FOUND] Path does not exist: file:/s/staging/reviews. SQLSTATE: 42K03
  | JVM stacktrace:
  | org.apache.spark.sql.AnalysisException: [PATH_NOT_FOUND] Path does not exist: file:/s/staging/reviews. SQLSTATE: 42K03
  | \tat org.apache.spark.sql.errors.QueryCompilationErrors$.dataPathNotExistError(QueryCompilationErrors.scala:1500)";
        assert_eq!(
            cause(local).as_deref(),
            Some("[PATH_NOT_FOUND] Path does not exist: file:/s/staging/reviews. SQLSTATE: 42K03")
        );
        let dataproc = "job j-1 ended in ERROR: Google Cloud Dataproc Agent reports job failure.
driver output ends:
  | 26/01/02 03:04:05 WARN [main] something [not a class] here
  | Exception in thread \"main\" org.apache.spark.SparkArithmeticException: [DIVIDE_BY_ZERO] Division by zero. Use `try_divide` to tolerate divisor being 0.";
        assert_eq!(
            cause(dataproc).as_deref(),
            Some(
                "[DIVIDE_BY_ZERO] Division by zero. Use `try_divide` to tolerate divisor being 0."
            )
        );
        assert_eq!(cause("exit status: 1\n[main] INFO started"), None);
    }

    fn metrics(purchases_read: u64, reviews_read: u64) -> UserBehaviorMetrics {
        UserBehaviorMetrics {
            purchases_read,
            reviews_read,
            rows_written: 7,
        }
    }

    #[test]
    fn step_3_fails_naming_both_numbers_when_counts_differ() {
        let expected = Expected {
            purchases: Some(100),
            reviews: Some(20),
        };
        assert!(check_read(&metrics(100, 20), expected).is_ok());
        let err = check_read(&metrics(99, 20), expected)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("read 99 purchases, and step 1 dumped 100"),
            "{err}"
        );
        let err = check_read(&metrics(100, 21), expected)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("read 21 reviews, and step 2 wrote 20"),
            "{err}"
        );
        // A step that has not finished in this run has nothing to compare.
        assert!(check_read(&metrics(1, 2), Expected::default()).is_ok());
    }
}
