//! `infra report`: writes a run's HTML report and prints its path.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::backend::local::Local;
use crate::cli::ReportArgs;
use crate::record::{Records, RunRecord};
use crate::report;
use crate::settings::Settings;

pub async fn report(settings: &Settings, args: &ReportArgs) -> Result<()> {
    super::require_local(settings, "report")?;
    let local = Local::new(settings);
    let records = Records::new(local.state_dir());
    let run = match &args.run_id {
        Some(id) => records.get(id)?,
        None => records.latest()?.context(
            "there is no run to report on yet\nhint: `infra run --data DIR` runs the pipeline",
        )?,
    };
    let path = write(settings, &local, run, args.output.as_deref()).await?;
    println!("{}", path.display());
    Ok(())
}

/// Writes the report of `run` on the local target to `output`, or to
/// `<state>/reports/<run id>.html`, and returns where.
pub async fn write(
    settings: &Settings,
    local: &Local,
    run: RunRecord,
    output: Option<&Path>,
) -> Result<PathBuf> {
    let buckets = local.buckets();
    let warehouse = local.warehouse();
    let path = output
        .map(Path::to_path_buf)
        .unwrap_or_else(|| report::default_path(local.state_dir(), &run.id));
    let gathered = report::gather(
        run,
        buckets.staging.as_ref(),
        &warehouse,
        &super::run::table(settings),
        Vec::new(),
    )
    .await?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&path, report::html(&gathered))
        .with_context(|| format!("cannot write the report {}", path.display()))?;
    Ok(path)
}
