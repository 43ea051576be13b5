//! `up`'s warm-up of the local Spark Connect server.
//!
//! A freshly started server pays for class loading, Spark's code generation
//! and the JIT on its first jobs: the first `run` after `up` took 2 to 4
//! times as long in steps 2 and 3 as the next one. `up` therefore runs both
//! jobs once, through the same client path and pipeline code as `run`, on a
//! small generated sample in `<state>/tmp/warm-up/` (CSV read with rejects,
//! RegexTokenizer, the join, Parquet writes), and removes it afterwards.
//!
//! A failed warm-up is a warning, not an error: the server is running and
//! `up` has provisioned everything `run` needs; only the first run's speed
//! is at stake, and `run` reports any real fault of the server with its own
//! error. The server is marked warm (by its pid) only after a warm-up that
//! succeeded, so the next `up` tries again, and a server already warm is
//! left alone: `up` stays idempotent.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::backend::local::Local;
use crate::backend::local::bucket::LocalBucket;
use crate::backend::{Buckets, NoJournal, RowFormat, upload_code};
use crate::pipeline::load::parse_rows;
use crate::pipeline::purchases;
use crate::pipeline::spark::{self, Expected};
use crate::plan::keys;
use crate::process::Echo;
use crate::ui;

/// About 27,000 purchases and 5,000 reviews: enough rows for the JIT to
/// compile the parsing paths, few enough to take seconds.
const SCALE: f64 = 0.05;
const SEED: u64 = 7;

/// Warms the server unless it is warm already or the settings say not to.
/// Never fails: see the module doc.
pub async fn warm_up(local: &Local) {
    let server = local.spark_server();
    match server.is_warm() {
        Ok(true) => return,
        Ok(false) => {}
        Err(e) => {
            ui::warn(format!("cannot tell whether Spark Connect is warm: {e:#}"));
            return;
        }
    }
    ui::detail("warming up Spark Connect: both jobs on a small sample");
    let dir = local.state_dir().join("tmp/warm-up");
    let started = Instant::now();
    let result = run_jobs(local, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    match result.and_then(|()| server.mark_warm()) {
        Ok(()) => ui::detail(format!(
            "Spark Connect warmed up in {:.1}s",
            started.elapsed().as_secs_f64()
        )),
        Err(e) => ui::warn(format!(
            "the Spark Connect warm-up failed, so the first run will be slower: {e:#}\nhint: `infra up` tries again; the server's log is in {}",
            server.log_dir().display()
        )),
    }
}

/// Steps 2 and 3 over a sample in `dir`, as `run` would run them.
async fn run_jobs(local: &Local, dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    let bucket = |role: &str| Box::new(LocalBucket::new(role, dir.join(role)));
    let buckets = Buckets {
        raw: bucket("raw"),
        staging: bucket("staging"),
        code: bucket("code"),
    };
    upload_code(buckets.code.as_ref()).await?;
    let (raw, staging) = (dir.join("raw"), dir.join("staging"));
    let dumped = tokio::task::spawn_blocking(move || -> Result<u64> {
        crate::sample::write(&raw, SCALE, SEED)?;
        std::fs::create_dir_all(&staging)
            .with_context(|| format!("cannot create {}", staging.display()))?;
        write_dump(
            &raw.join(keys::PURCHASES_CSV),
            &staging.join(keys::PURCHASES_CSV),
        )
    })
    .await??;
    let target = local.target(Echo::Quiet).await?;
    let spark = target.spark.as_ref();
    let reviews = spark::tokenize(spark, &buckets, &NoJournal).await?;
    let expected = Expected {
        purchases: Some(dumped),
        reviews: Some(reviews.rows_out),
    };
    spark::user_behavior(spark, &buckets, chrono::Utc::now(), expected, &NoJournal).await?;
    Ok(())
}

/// The valid rows of the sample's purchases as step 1 dumps them: a header
/// of the table's columns, then one CSV line per row. Returns the rows.
fn write_dump(input: &Path, output: &Path) -> Result<u64> {
    use std::io::Write;
    let file =
        std::fs::File::open(input).with_context(|| format!("cannot read {}", input.display()))?;
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(output)
            .with_context(|| format!("cannot create {}", output.display()))?,
    );
    writeln!(out, "{}", purchases::COLUMNS.join(","))?;
    let mut rejects = csv::Writer::from_writer(std::io::sink());
    let (read, rejected) = parse_rows(
        file,
        &input.display().to_string(),
        RowFormat::Csv,
        &mut rejects,
        |chunk| Ok(out.write_all(&chunk)?),
    )?;
    out.flush()
        .with_context(|| format!("cannot write {}", output.display()))?;
    Ok(read - rejected)
}
