//! `infra report`: one run as a self-contained HTML page.
//!
//! [`gather`] collects what the page shows through the capabilities (so it
//! works for either target): the run record, the rejection reasons counted
//! from the rejects files in the staging bucket, and the metric from the
//! warehouse. [`html`] renders it with no scripts, fonts or links to load:
//! charts are inline SVG, styles inline CSS, so the file opens offline and
//! can be mailed or archived as is.

mod html;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tokio_util::io::SyncIoBridge;

pub use html::html;

use crate::backend::{Bucket, Cell, TableRef, Warehouse};
use crate::plan::{Step, keys};
use crate::record::RunRecord;

/// Rows of the metric the page lists.
pub const METRIC_ROWS: usize = 20;

/// Customers in the top-customers chart.
pub const TOP_CUSTOMERS: usize = 10;

/// Everything the page shows.
#[derive(Debug, Clone)]
pub struct Report {
    pub run: RunRecord,
    pub table: String,
    /// Rejection reasons and their counts, by step.
    pub rejects: BTreeMap<Step, Vec<(String, u64)>>,
    /// The first rows of the metric, by customer id; `None` when the
    /// warehouse could not be read (with why).
    pub metric: std::result::Result<Metric, String>,
    /// Links to the cloud console, for runs on GCP.
    pub links: Vec<(String, String)>,
}

/// Rows of the metric table, rendered as text.
#[derive(Debug, Clone, Default)]
pub struct Metric {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// (customer id, amount spent), largest first.
    pub top: Vec<(String, f64)>,
}

/// Where the report of `run_id` goes by default.
pub fn default_path(state_dir: &Path, run_id: &str) -> PathBuf {
    state_dir.join("reports").join(format!("{run_id}.html"))
}

/// Collects the report of `run`: rejects from `staging`, the metric from
/// `warehouse`. A missing rejects file or table is shown as such, not an
/// error: a failed run has a report too.
pub async fn gather(
    run: RunRecord,
    staging: &dyn Bucket,
    warehouse: &dyn Warehouse,
    table: &TableRef,
    links: Vec<(String, String)>,
) -> Result<Report> {
    let mut rejects = BTreeMap::new();
    if run.step(Step::LoadPurchases).is_some() {
        let keys = existing(staging, keys::PURCHASE_REJECTS).await?;
        rejects.insert(Step::LoadPurchases, count_reasons(staging, &keys).await?);
    }
    if run.step(Step::Tokenize).is_some() {
        let keys = existing(staging, &format!("{}/", keys::REVIEW_REJECTS)).await?;
        let keys: Vec<String> = keys.into_iter().filter(|k| k.ends_with(".csv")).collect();
        rejects.insert(Step::Tokenize, count_reasons(staging, &keys).await?);
    }
    let metric = metric(warehouse, table).await.map_err(|e| format!("{e:#}"));
    Ok(Report {
        run,
        table: table.to_string(),
        rejects,
        metric,
        links,
    })
}

/// The keys under `prefix` (or `prefix` itself) that exist.
async fn existing(bucket: &dyn Bucket, prefix: &str) -> Result<Vec<String>> {
    Ok(bucket
        .list(prefix)
        .await?
        .into_iter()
        .filter(|o| o.size > 0)
        .map(|o| o.key)
        .collect())
}

/// Counts the `reason` column of rejects CSV files, streaming each one.
async fn count_reasons(bucket: &dyn Bucket, keys: &[String]) -> Result<Vec<(String, u64)>> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for key in keys {
        let body = bucket.get(key).await?;
        let uri = bucket.uri(key);
        let found = tokio::task::spawn_blocking(move || -> Result<BTreeMap<String, u64>> {
            let mut csv = csv::Reader::from_reader(SyncIoBridge::new(body));
            let column = csv
                .headers()
                .with_context(|| format!("cannot read the header of {uri}"))?
                .iter()
                .position(|h| h == "reason")
                .with_context(|| format!("{uri} has no `reason` column"))?;
            let mut counts = BTreeMap::new();
            let mut record = csv::StringRecord::new();
            while csv
                .read_record(&mut record)
                .with_context(|| format!("cannot read {uri}"))?
            {
                let reason = record.get(column).unwrap_or("").to_owned();
                *counts.entry(reason).or_insert(0) += 1;
            }
            Ok(counts)
        })
        .await??;
        for (reason, n) in found {
            *counts.entry(reason).or_insert(0) += n;
        }
    }
    let mut counts: Vec<(String, u64)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(counts)
}

async fn metric(warehouse: &dyn Warehouse, table: &TableRef) -> Result<Metric> {
    let first = warehouse
        .query(&format!(
            "SELECT * FROM {table} ORDER BY customer_id LIMIT {METRIC_ROWS}"
        ))
        .await?;
    let top = warehouse
        .query(&format!(
            "SELECT customer_id, amount_spent FROM {table} ORDER BY amount_spent DESC, customer_id LIMIT {TOP_CUSTOMERS}"
        ))
        .await?;
    Ok(Metric {
        columns: first.columns,
        rows: first
            .rows
            .iter()
            .map(|row| row.iter().map(|c| cell_text(c.as_ref())).collect())
            .collect(),
        top: top
            .rows
            .iter()
            .map(|row| {
                let id = cell_text(row.first().and_then(Option::as_ref));
                let amount = cell_text(row.get(1).and_then(Option::as_ref));
                (id, amount.parse().unwrap_or(0.0))
            })
            .collect(),
    })
}

fn cell_text(cell: Option<&Cell>) -> String {
    match cell {
        None => "NULL".to_owned(),
        Some(Cell::Int(i)) => i.to_string(),
        Some(Cell::Bool(b)) => b.to_string(),
        Some(Cell::Text(t)) => t.clone(),
        Some(Cell::Float(f)) => f.to_string(),
    }
}

/// Cloud Console pages for a run on GCP: its Dataproc jobs, the buckets,
/// the Cloud SQL instances, the BigQuery table and the logs.
pub fn console_links(
    project: &str,
    region: &str,
    buckets: &[&str],
    table: &TableRef,
) -> Vec<(String, String)> {
    let console = "https://console.cloud.google.com";
    let mut links = vec![
        (
            "Dataproc jobs".to_owned(),
            format!("{console}/dataproc/jobs?project={project}&region={region}"),
        ),
        (
            "Cloud SQL instances".to_owned(),
            format!("{console}/sql/instances?project={project}"),
        ),
        (
            format!("BigQuery table {table}"),
            format!(
                "{console}/bigquery?project={project}&p={project}&d={}&t={}&page=table",
                table.dataset, table.table
            ),
        ),
    ];
    for bucket in buckets {
        links.push((
            format!("bucket gs://{bucket}"),
            format!("{console}/storage/browser/{bucket}?project={project}"),
        ));
    }
    links.push((
        "Logs".to_owned(),
        format!("{console}/logs/query?project={project}"),
    ));
    links
}
