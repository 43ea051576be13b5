//! `infra run`: the pipeline, steps 0-4, with a summary at the end.

use std::path::Path;

use anyhow::{Result, bail};
use chrono::Utc;

use crate::backend::gcp::Gcp;
use crate::backend::local::Local;
use crate::backend::{Bucket, TableRef, Target};
use crate::cli::RunArgs;
use crate::pipeline;
use crate::plan::{Plan, Selection, keys};
use crate::process::Echo;
use crate::record::{Records, RunRecord};
use crate::settings::{Settings, TargetKind};
use crate::ui;

/// The warehouse table the settings name.
pub fn table(settings: &Settings) -> TableRef {
    TableRef {
        dataset: settings.dataset.clone(),
        table: settings.table.clone(),
    }
}

fn selection(args: &RunArgs) -> Selection {
    match (args.from, args.only) {
        (Some(step), _) => Selection::From(step),
        (_, Some(step)) => Selection::Only(step),
        _ => Selection::All,
    }
}

pub async fn run(settings: &Settings, args: &RunArgs, echo: Echo) -> Result<()> {
    let selection = selection(args);
    let table = table(settings);
    let records = Records::new(&settings.state_dir);
    if args.dry_run {
        return dry_run(settings, args, selection, &records);
    }
    let inputs = match &args.data {
        Some(dir) => Some(check_inputs(dir)?),
        None => None,
    };

    let _lock = records.lock()?;
    let target = match settings.target {
        TargetKind::Local => Local::new(settings).target(echo).await?,
        TargetKind::Gcp => Gcp::load(settings)?.target(echo).await?,
    };
    if let Some(inputs) = inputs {
        copy_inputs(&inputs, target.buckets.raw.as_ref()).await?;
    }
    let plan = Plan::new(selection, &target.buckets, &table.to_string());
    let mut run = run_record(settings, selection, &records)?;
    ui::status(format!(
        "run {} on {} (insert_date {})",
        run.id,
        settings.target,
        run.started_at.to_rfc3339()
    ));
    let result = pipeline::execute(
        &target,
        &plan,
        &mut run,
        &records,
        &table,
        &settings.state_dir.join("tmp"),
    )
    .await;
    // Whatever happened, Ctrl-C included: nothing billable stays behind.
    let teardown = target.teardown().await;
    match (result, teardown) {
        (Ok(()), Ok(())) => {
            println!("{}", super::status::summary(&run));
            Ok(())
        }
        (Ok(()), Err(e)) => Err(e),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(teardown)) => {
            ui::status(format!("warning: {teardown:#}"));
            Err(e)
        }
    }
}

/// A full run is a new run; `--from` and `--only` continue the last one
/// on this target, so its id, start time (the metric's `insert_date`) and
/// remote work carry over.
fn run_record(settings: &Settings, selection: Selection, records: &Records) -> Result<RunRecord> {
    let target = settings.target.to_string();
    let last = match selection {
        Selection::All => None,
        _ => records.latest()?,
    };
    match last {
        Some(run) if run.target == target => Ok(run),
        Some(run) => bail!(
            "the last run ({}) was on the {} target, not {target}\nhint: run every step (`infra run`) to start a new run on {target}",
            run.id,
            run.target
        ),
        None => Ok(RunRecord::new(&target, Utc::now())),
    }
}

/// `--dry-run`: the plan, and on gcp every request it would send. Nothing
/// is sent, nothing is written.
fn dry_run(
    settings: &Settings,
    args: &RunArgs,
    selection: Selection,
    records: &Records,
) -> Result<()> {
    let target = plan_target(settings)?;
    let table = table(settings);
    let plan = Plan::new(selection, &target.buckets, &table.to_string());
    if let Some(dir) = &args.data {
        println!("copy {} into {}", dir.display(), target.buckets.raw.uri(""));
    }
    print!("{plan}");
    let run = match selection {
        Selection::All => None,
        _ => records.latest()?,
    }
    .unwrap_or_else(|| RunRecord::new(&settings.target.to_string(), Utc::now()));
    print_requests(&target, &plan, &run, &table);
    Ok(())
}

/// The target a plan is computed against: local as it is, gcp from the
/// saved outputs with clients that cannot send.
pub fn plan_target(settings: &Settings) -> Result<Target> {
    match settings.target {
        TargetKind::Local => Ok(Local::new(settings).plan_target()),
        TargetKind::Gcp => Gcp::load(settings)?.plan_target(),
    }
}

/// Every request each step would send, with its body.
pub fn print_requests(target: &Target, plan: &Plan, run: &RunRecord, table: &TableRef) {
    let preview = pipeline::preview(target, plan, &run.id, run.started_at, table);
    if preview.iter().all(|(_, requests)| requests.is_empty()) {
        return;
    }
    println!();
    println!("requests (run {}):", run.id);
    for (step, requests) in preview {
        println!("step {step}:");
        for request in requests {
            for line in request.to_string().lines() {
                println!("  {line}");
            }
        }
    }
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
