//! `infra status`: what is provisioned, and the last run's steps; on gcp,
//! also the remote work of the run and anything of the deployment still
//! alive (Dataproc clusters, batches), with Cloud Console links.

use std::io::Write;

use anyhow::Result;

use crate::backend::gcp::Gcp;
use crate::backend::gcp::dataproc::label_filter;
use crate::backend::local::Local;
use crate::record::{Records, RunRecord};
use crate::settings::{Settings, SparkMode, TargetKind};
use crate::ui;

pub async fn status(settings: &Settings) -> Result<()> {
    if settings.target == TargetKind::Gcp {
        return status_gcp(settings).await;
    }
    let local = Local::new(settings);
    let mut out = super::out::stdout();
    out.line(format_args!(
        "target: local ({})",
        local.state_dir().display()
    ))?;
    for (what, state) in local.status().await? {
        writeln!(out, "  {what:<12} {state}")?;
    }
    match Records::new(local.state_dir()).latest()? {
        Some(run) => writeln!(out, "\n{}", summary(&run))?,
        None => writeln!(out, "\nno runs yet")?,
    }
    Ok(())
}

async fn status_gcp(settings: &Settings) -> Result<()> {
    let gcp = Gcp::load(settings)?;
    let d = &gcp.deployment;
    let mut out = super::out::stdout();
    writeln!(
        out,
        "target: gcp (project {}, region {}, deployment {})",
        d.project, d.region, d.deployment
    )?;
    for (what, value) in [
        ("bucket raw", format!("gs://{}", d.raw_bucket)),
        ("bucket staging", format!("gs://{}", d.staging_bucket)),
        ("bucket code", format!("gs://{}", d.code_bucket)),
        (
            "cloud sql",
            format!("{} (database {})", d.sql_connection_name, d.database_name),
        ),
        (
            "warehouse",
            format!("BigQuery dataset {}.{}", d.project, settings.dataset),
        ),
        (
            "spark",
            match settings.spark_mode {
                SparkMode::Cluster => format!(
                    "a Dataproc cluster per run, image {}",
                    settings.dataproc_image_version
                ),
                SparkMode::Serverless => format!(
                    "Dataproc Serverless, runtime {}",
                    settings.dataproc_serverless_runtime
                ),
            },
        ),
    ] {
        writeln!(out, "  {what:<15} {value}")?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "alive in {} (labelled {}):",
        d.region,
        label_filter(&gcp.labels())
    )?;
    match gcp.clients().await {
        Err(e) => writeln!(out, "  cannot look: {e:#}")?,
        Ok(clients) => {
            let dataproc = &clients.dataproc;
            let mut alive = 0;
            match dataproc.list_clusters(&label_filter(&gcp.labels())).await {
                Ok(clusters) => {
                    for c in clusters {
                        alive += 1;
                        writeln!(
                            out,
                            "  Dataproc cluster {} {} {}",
                            c.cluster_name,
                            c.state(),
                            dataproc.cluster_link(&c.cluster_name)
                        )?;
                    }
                }
                Err(e) => writeln!(out, "  cannot list Dataproc clusters: {e:#}")?,
            }
            match dataproc.list_batches(&label_filter(&gcp.labels())).await {
                Ok(batches) => {
                    for b in batches.into_iter().filter(|b| !b.is_finished()) {
                        alive += 1;
                        let id = b
                            .name
                            .as_deref()
                            .and_then(|n| n.rsplit('/').next())
                            .unwrap_or_default()
                            .to_owned();
                        writeln!(
                            out,
                            "  Dataproc batch {id} {} {}",
                            b.state(),
                            dataproc.batch_link(&id)
                        )?;
                    }
                }
                Err(e) => writeln!(out, "  cannot list Dataproc batches: {e:#}")?,
            }
            if alive == 0 {
                writeln!(out, "  nothing: no cluster, no running batch")?;
            }
        }
    }
    match Records::new(&settings.state_dir).latest()? {
        Some(run) => {
            writeln!(out, "\n{}", summary(&run))?;
            if !run.remotes.is_empty() {
                writeln!(out, "remote work of run {}:", run.id)?;
                for r in &run.remotes {
                    writeln!(
                        out,
                        "  step {} attempt {}: {} {}{} {}",
                        r.step.number(),
                        r.attempt,
                        r.remote.kind.label(),
                        r.remote.id,
                        r.remote
                            .uuid
                            .as_deref()
                            .map(|u| format!(" ({u})"))
                            .unwrap_or_default(),
                        r.remote.link.as_deref().unwrap_or_default()
                    )?;
                }
            }
        }
        None => writeln!(out, "\nno runs yet")?,
    }
    out.flush()?;
    Ok(())
}

/// A run as a table: one row per step, with time and row counts.
pub fn summary(run: &RunRecord) -> String {
    let header = [
        "step", "outcome", "seconds", "rows in", "rows out", "rejected",
    ]
    .map(String::from);
    let rows: Vec<Vec<String>> = run
        .steps
        .iter()
        .map(|s| {
            let count = |f: fn(&crate::record::Counts) -> u64| {
                s.counts
                    .as_ref()
                    .map_or(String::new(), |c| f(c).to_string())
            };
            vec![
                s.step.to_string(),
                s.outcome.to_string(),
                s.seconds.map_or(String::new(), |t| format!("{t:.1}")),
                count(|c| c.rows_in),
                count(|c| c.rows_out),
                count(|c| c.rows_rejected),
            ]
        })
        .collect();
    let total: f64 = run.steps.iter().filter_map(|s| s.seconds).sum();
    format!(
        "run {} {} (started {}, {total:.1}s in steps)\n{}",
        run.id,
        run.outcome,
        run.started_at.to_rfc3339(),
        ui::table(&header, &rows)
    )
}
