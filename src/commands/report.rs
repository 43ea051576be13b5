//! `infra report`: writes a run's HTML report and prints its path.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::backend::Target;
use crate::backend::gcp::Gcp;
use crate::backend::local::Local;
use crate::cli::ReportArgs;
use crate::process::Echo;
use crate::record::{Records, RunRecord};
use crate::report;
use crate::settings::{Settings, TargetKind};

pub async fn report(settings: &Settings, args: &ReportArgs) -> Result<()> {
    let records = Records::new(&settings.state_dir);
    let run = match &args.run_id {
        Some(id) => records.get(id)?,
        None => records.latest()?.context(
            "there is no run to report on yet\nhint: `infra run --data DIR` runs the pipeline",
        )?,
    };
    // The report reads the staging bucket and the warehouse, nothing more:
    // the local target needs no server running for that.
    let target = match settings.target {
        TargetKind::Local => Local::new(settings).plan_target(),
        TargetKind::Gcp => Gcp::load(settings)?.target(Echo::Quiet).await?,
    };
    let path = write(settings, &target, run, args.output.as_deref()).await?;
    writeln!(super::out::stdout(), "{}", path.display())?;
    Ok(())
}

/// Writes the report of `run` to `output`, or to
/// `<state>/reports/<run id>.html`, and returns where.
pub async fn write(
    settings: &Settings,
    target: &Target,
    run: RunRecord,
    output: Option<&Path>,
) -> Result<PathBuf> {
    let path = output
        .map(Path::to_path_buf)
        .unwrap_or_else(|| report::default_path(&settings.state_dir, &run.id));
    // A directory the user named must exist already, as for any tool's -o:
    // a typo makes no new tree.
    if output.is_some()
        && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        anyhow::bail!(
            "cannot write the report {}: the directory {} does not exist\nhint: create it first, or choose another -o",
            path.display(),
            dir.display()
        );
    }
    let table = super::run::table(settings);
    let links = match settings.target {
        TargetKind::Local => Vec::new(),
        TargetKind::Gcp => {
            let d = Gcp::load(settings)?.deployment;
            let mut links = report::console_links(
                &d.project,
                &d.region,
                &[&d.raw_bucket, &d.staging_bucket, &d.code_bucket],
                &table,
            );
            // The run's own Dataproc clusters, jobs and batches, and Cloud
            // SQL operations, as the steps recorded them.
            links.extend(run.remotes.iter().filter_map(|r| {
                let link = r.remote.link.clone()?;
                Some((
                    format!(
                        "step {}: {} {}",
                        r.step.number(),
                        r.remote.kind.label(),
                        r.remote.id
                    ),
                    link,
                ))
            }));
            links
        }
    };
    let gathered = report::gather(
        run,
        target.buckets.staging.as_ref(),
        target.warehouse.as_ref(),
        &table,
        links,
    )
    .await?;
    // The default place is ours to create; a directory the user named was
    // checked before any work.
    if output.is_none()
        && let Some(dir) = path.parent()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&path, report::html(&gathered))
        .with_context(|| format!("cannot write the report {}", path.display()))?;
    Ok(path)
}
