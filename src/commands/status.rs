//! `infra status`: what is provisioned, and the last run's steps; on gcp,
//! also the remote work of the run and anything of the deployment still
//! alive (Dataproc clusters, batches), with Cloud Console links.

use std::io::Write;

use anyhow::Result;

use serde::Serialize;

use crate::backend::gcp::Gcp;
use crate::backend::gcp::dataproc::label_filter;
use crate::backend::local::Local;
use crate::record::{Records, RunRecord};
use crate::settings::{Settings, SparkMode, TargetKind};
use crate::summary;

pub async fn status(settings: &Settings, json: bool) -> Result<()> {
    if settings.target == TargetKind::Gcp {
        return status_gcp(settings, json).await;
    }
    let local = Local::new(settings);
    let resources = local.status().await?;
    let last = Records::new(local.state_dir()).latest_as_seen()?;
    let mut out = super::out::stdout();
    if json {
        let view = StatusJson {
            schema: summary::SCHEMA,
            target: "local",
            state_dir: local.state_dir().display().to_string(),
            project: None,
            region: None,
            resources: resources
                .into_iter()
                .map(|(name, state)| ResourceJson { name, state })
                .collect(),
            alive: None,
            alive_errors: Vec::new(),
            last_run: last.as_ref().map(|run| run_json(settings, run)),
        };
        writeln!(out, "{}", serde_json::to_string_pretty(&view)?)?;
        return Ok(());
    }
    out.line(format_args!(
        "target: local ({})",
        local.state_dir().display()
    ))?;
    let width = resources
        .iter()
        .map(|(what, _)| what.len())
        .max()
        .unwrap_or(0);
    for (what, state) in resources {
        writeln!(out, "  {what:<width$} {state}")?;
    }
    match last {
        Some(run) => writeln!(out, "\n{}", summary::table(&run))?,
        None => writeln!(out, "\nno runs yet")?,
    }
    Ok(())
}

/// A run for `--json`, with its report when one was written where
/// `run` writes it.
fn run_json(settings: &Settings, run: &RunRecord) -> summary::RunJson {
    let report = crate::report::default_path(&settings.state_dir, &run.id);
    summary::json(run, report.is_file().then_some(report.as_path()))
}

/// `status --json`. `alive` is what of the deployment still runs on gcp:
/// `null` on local, and when it could not be looked up (`alive_errors`
/// says why).
#[derive(Serialize)]
struct StatusJson {
    schema: u32,
    target: &'static str,
    state_dir: String,
    project: Option<String>,
    region: Option<String>,
    resources: Vec<ResourceJson>,
    alive: Option<Vec<AliveJson>>,
    alive_errors: Vec<String>,
    last_run: Option<summary::RunJson>,
}

#[derive(Serialize)]
struct ResourceJson {
    name: String,
    state: String,
}

/// A Dataproc cluster or batch of the deployment that is still alive.
#[derive(Serialize)]
struct AliveJson {
    kind: &'static str,
    id: String,
    state: String,
    link: String,
}

async fn status_gcp(settings: &Settings, json: bool) -> Result<()> {
    let gcp = Gcp::load(settings)?;
    let d = &gcp.deployment;
    let resources: Vec<(String, String)> = [
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
    ]
    .into_iter()
    .map(|(what, value)| (what.to_owned(), value))
    .collect();
    let (alive, errors) = alive(&gcp).await;
    let last = Records::new(&settings.state_dir).latest_as_seen()?;
    let mut out = super::out::stdout();
    if json {
        let view = StatusJson {
            schema: summary::SCHEMA,
            target: "gcp",
            state_dir: settings.state_dir.display().to_string(),
            project: Some(d.project.clone()),
            region: Some(d.region.clone()),
            resources: resources
                .into_iter()
                .map(|(name, state)| ResourceJson { name, state })
                .collect(),
            alive: errors.is_empty().then_some(alive),
            alive_errors: errors,
            last_run: last.as_ref().map(|run| run_json(settings, run)),
        };
        writeln!(out, "{}", serde_json::to_string_pretty(&view)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "target: gcp (project {}, region {}, deployment {})",
        d.project, d.region, d.deployment
    )?;
    for (what, value) in &resources {
        writeln!(out, "  {what:<15} {value}")?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "alive in {} (labelled {}):",
        d.region,
        label_filter(&gcp.labels())
    )?;
    for error in &errors {
        writeln!(out, "  {error}")?;
    }
    for a in &alive {
        writeln!(out, "  Dataproc {} {} {} {}", a.kind, a.id, a.state, a.link)?;
    }
    if alive.is_empty() && errors.is_empty() {
        writeln!(out, "  nothing: no cluster, no running batch")?;
    }
    match last {
        Some(run) => {
            writeln!(out, "\n{}", summary::table(&run))?;
            remote_work(&mut out, &run)?;
        }
        None => writeln!(out, "\nno runs yet")?,
    }
    out.flush()?;
    Ok(())
}

/// The deployment's Dataproc clusters and unfinished batches, and what
/// could not be looked up.
async fn alive(gcp: &Gcp) -> (Vec<AliveJson>, Vec<String>) {
    let mut alive = Vec::new();
    let mut errors = Vec::new();
    let clients = match gcp.clients().await {
        Ok(clients) => clients,
        Err(e) => return (alive, vec![format!("cannot look: {e:#}")]),
    };
    let dataproc = &clients.dataproc;
    let filter = label_filter(&gcp.labels());
    match dataproc.list_clusters(&filter).await {
        Ok(clusters) => alive.extend(clusters.into_iter().map(|c| AliveJson {
            kind: "cluster",
            state: c.state().to_string(),
            link: dataproc.cluster_link(&c.cluster_name),
            id: c.cluster_name,
        })),
        Err(e) => errors.push(format!("cannot list Dataproc clusters: {e:#}")),
    }
    match dataproc.list_batches(&filter).await {
        Ok(batches) => alive.extend(batches.into_iter().filter(|b| !b.is_finished()).map(|b| {
            let id = b
                .name
                .as_deref()
                .and_then(|n| n.rsplit('/').next())
                .unwrap_or_default()
                .to_owned();
            AliveJson {
                kind: "batch",
                state: b.state().to_string(),
                link: dataproc.batch_link(&id),
                id,
            }
        })),
        Err(e) => errors.push(format!("cannot list Dataproc batches: {e:#}")),
    }
    (alive, errors)
}

/// The remote work a gcp run recorded, with its links.
fn remote_work(out: &mut impl Write, run: &RunRecord) -> Result<()> {
    if run.remotes.is_empty() {
        return Ok(());
    }
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
    Ok(())
}
