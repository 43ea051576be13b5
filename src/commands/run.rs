//! `infra run`: the pipeline, steps 0-4, with a summary at the end.

use std::path::Path;

use anyhow::{Result, bail};
use chrono::Utc;

use crate::cli::RunArgs;
use crate::pipeline;
use crate::plan::{Plan, Selection, keys};
use crate::process::Echo;
use crate::record::{Records, RunRecord};
use crate::settings::Settings;
use crate::backend::local::Local;
use crate::backend::{Bucket, TableRef};
use crate::ui;

/// The warehouse table the settings name.
pub fn table(settings: &Settings) -> TableRef {
    TableRef {
        dataset: settings.dataset.clone(),
        table: settings.table.clone(),
    }
}

pub async fn run(settings: &Settings, args: &RunArgs, echo: Echo) -> Result<()> {
    super::require_local(settings, "run")?;
    let local = Local::new(settings);
    let selection = match (args.from, args.only) {
        (Some(step), _) => Selection::From(step),
        (_, Some(step)) => Selection::Only(step),
        _ => Selection::All,
    };
    let table = table(settings);
    let buckets = local.buckets();
    let plan = Plan::new(selection, &buckets, &table.to_string());
    if args.dry_run {
        if let Some(dir) = &args.data {
            println!("copy {} into {}", dir.display(), buckets.raw.uri(""));
        }
        print!("{plan}");
        return Ok(());
    }
    let inputs = match &args.data {
        Some(dir) => Some(check_inputs(dir)?),
        None => None,
    };

    let records = Records::new(local.state_dir());
    let _lock = records.lock()?;
    let target = local.target(echo).await?;
    if let Some(inputs) = inputs {
        copy_inputs(&inputs, buckets.raw.as_ref()).await?;
    }
    // A full run is a new run; --from and --only continue the last one, so
    // its id and start time (the metric's insert_date) carry over.
    let mut run = match selection {
        Selection::All => None,
        _ => records.latest()?,
    }
    .unwrap_or_else(|| RunRecord::new("local", Utc::now()));
    ui::status(format!(
        "run {} (insert_date {})",
        run.id,
        run.started_at.to_rfc3339()
    ));
    pipeline::execute(
        &target,
        &plan,
        &mut run,
        &records,
        &table,
        &local.state_dir().join("tmp"),
    )
    .await?;
    println!("{}", super::status::summary(&run));
    Ok(())
}

/// The two input files in `dir`, checked before anything is copied.
fn check_inputs(dir: &Path) -> Result<[(std::path::PathBuf, &'static str); 2]> {
    let inputs = [keys::PURCHASES_CSV, keys::REVIEWS_CSV].map(|key| (dir.join(key), key));
    let missing: Vec<String> = inputs
        .iter()
        .filter(|(path, _)| !path.is_file())
        .map(|(path, _)| path.display().to_string())
        .collect();
    if !missing.is_empty() {
        bail!(
            "missing input file(s): {}\nhint: `infra sample --out {}` writes sample inputs",
            missing.join(", "),
            dir.display()
        );
    }
    Ok(inputs)
}

async fn copy_inputs(
    inputs: &[(std::path::PathBuf, &'static str)],
    raw: &dyn Bucket,
) -> Result<()> {
    for (path, key) in inputs {
        let size = raw.put_file(key, path).await?;
        ui::detail(format!(
            "copied {} ({size} bytes) to {}",
            path.display(),
            raw.uri(key)
        ));
    }
    Ok(())
}
