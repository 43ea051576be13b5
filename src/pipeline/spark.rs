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
    spark.submit(&tokenizer_job(b), journal).await?;
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
pub async fn user_behavior(
    spark: &dyn Spark,
    b: &Buckets,
    insert_date: DateTime<Utc>,
    journal: &dyn Journal,
) -> Result<Counts> {
    require(
        b.staging.as_ref(),
        keys::PURCHASES_CSV,
        "hint: run step 1 first (`infra run --from 1`)",
    )
    .await?;
    spark
        .submit(&user_behavior_job(b, insert_date), journal)
        .await?;
    let m = user_behavior_metrics(b.staging.as_ref()).await?;
    Ok(Counts {
        rows_in: m.purchases_read + m.reviews_read,
        rows_out: m.rows_written,
        rows_rejected: 0,
    })
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
