//! `infra run`: the pipeline, steps 0-4, with a summary at the end.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use chrono::Utc;

use crate::backend::gcp::{Deployment, Gcp};
use crate::backend::local::Local;
use crate::backend::{Bucket, TableRef, Target};
use crate::cli::RunArgs;
use crate::exit::UsageError;
use crate::pipeline::{self, inputs};
use crate::plan::{Plan, Selection, Step};
use crate::process::{Children, Echo};
use crate::record::{Outcome, Records, RunRecord};
use crate::settings::{Settings, TargetKind};
use crate::signals::Signals;
use crate::summary;
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
    // From here on a signal stops the run cleanly, whenever it comes.
    let mut signals = Signals::arm()?;

    // The inputs are checked before anything is copied, locked or started.
    let inputs = match &args.data {
        Some(dir) => {
            let starts_at_0 = match selection {
                Selection::All => true,
                Selection::From(step) | Selection::Only(step) => step == Step::LoadPurchases,
            };
            if !starts_at_0 {
                return Err(UsageError(
                    "--data replaces the inputs, so the run must start at step 0\nhint: drop --from/--only, or use `--from 0`".into(),
                )
                .into());
            }
            Some(inputs::check_dir(dir)?)
        }
        None => None,
    };

    // Connect first: a run before `up` leaves nothing behind, not even a lock.
    let target = signals
        .guard(async {
            match settings.target {
                TargetKind::Local => Local::new(settings).target(echo).await,
                TargetKind::Gcp => {
                    if settings.spark_mode == crate::settings::SparkMode::Cluster {
                        crate::backend::gcp::dataproc::limits::check(settings)?;
                    }
                    Gcp::load(settings)?.target(echo).await
                }
            }
        })
        .await?;
    let _lock = records.lock("run")?;
    // A run killed outright (SIGKILL) could stop none of its children:
    // whatever of them is still alive goes before this run writes anything.
    let killed = Children::adopt(&settings.state_dir.join("runs/children")).await?;
    if !killed.is_empty() {
        ui::warn(format!(
            "stopped {} process group(s) left running by an earlier run that was killed (ids {})",
            killed.len(),
            killed
                .iter()
                .map(|g| g.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut plan = Plan::new(selection, &target.buckets, &table.to_string());
    plan.max_rejected = settings.run_max_rejected;
    // A full run is a new run; --from and --only continue the last one on
    // this target, so its id, start time (the metric's insert_date) and
    // remote work carry over.
    let mut run = match selection {
        Selection::All => match records.latest()? {
            // A run that never finished was cut off (SIGKILL, a crash): we
            // hold the lock, so its process is gone. A full re-run continues
            // it, so remote work still in flight is re-attached, not started
            // a second time.
            Some(last)
                if last.finished_at.is_none() && last.target == settings.target.to_string() =>
            {
                ui::status(format!(
                    "run {} stopped without finishing: continuing it",
                    last.id
                ));
                last
            }
            _ => RunRecord::new(&settings.target.to_string(), Utc::now()),
        },
        _ => resume(settings, &records, &plan)?,
    };
    let raw = target.buckets.raw.as_ref();
    match inputs {
        Some(files) => signals.guard(copy_inputs(&files, raw)).await?,
        None => {
            let read: Vec<_> = inputs::BOTH
                .into_iter()
                .filter(|input| {
                    plan.steps.iter().any(|s| match s.step {
                        Step::LoadPurchases => input.key == inputs::PURCHASES.key,
                        Step::Tokenize => input.key == inputs::REVIEWS.key,
                        _ => false,
                    })
                })
                .collect();
            signals.guard(inputs::check_bucket(raw, &read)).await?;
        }
    }
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
        &mut signals,
    )
    .await;
    // Whatever happened, a signal included: nothing billable stays behind.
    let teardown = target.teardown().await;
    let result = match (result, teardown) {
        (Ok(()), teardown) => teardown,
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(teardown)) => {
            ui::status(format!("warning: {teardown:#}"));
            Err(e)
        }
    };
    // A failed run gets its report too: it shows where it stopped and why.
    let report = match super::report::write(settings, &target, run.clone(), None).await {
        Ok(path) => Some(path),
        Err(e) => {
            ui::warn(format!("could not write the run's report: {e:#}"));
            None
        }
    };
    let mut out = super::out::stdout();
    if args.json {
        let view = summary::json(&run, report.as_deref());
        writeln!(out, "{}", serde_json::to_string_pretty(&view)?)?;
    } else if result.is_ok() {
        writeln!(out, "{}", summary::table(&run))?;
        if let Some(path) = &report {
            writeln!(out, "report: {}", path.display())?;
        }
    } else if let Some(path) = &report {
        ui::detail(format!("report: {}", path.display()));
    }
    result
}

/// The last run on this target, if every step the plan skips but needs
/// succeeded in it. With no earlier run, only a selection that starts at
/// step 0 (which reads nothing but the inputs) may start a new one.
fn resume(settings: &Settings, records: &Records, plan: &Plan) -> Result<RunRecord> {
    let target = settings.target.to_string();
    let latest = records.latest()?;
    let starts_at_0 = plan.steps.first().map(|s| s.step) == Some(Step::LoadPurchases);
    if latest.is_none() && starts_at_0 {
        return Ok(RunRecord::new(&target, Utc::now()));
    }
    let Some(run) = latest else {
        return Err(UsageError(
            "there is no earlier run to resume: --from and --only continue the last run\nhint: run the whole pipeline first: `infra run --data DIR`".into(),
        )
        .into());
    };
    if run.target != target {
        return Err(UsageError(format!(
            "the last run ({}) was on the {} target, not {target}\nhint: run every step (`infra run`) to start a new run on {target}",
            run.id, run.target
        ))
        .into());
    }
    for planned in &plan.steps {
        for &need in planned.step.needs() {
            if plan.steps.iter().any(|s| s.step == need) {
                continue;
            }
            let state = match run.step(need) {
                Some(s) if s.outcome == Outcome::Succeeded => continue,
                Some(s) if s.outcome == Outcome::Running => "never finished".to_owned(),
                Some(s) => format!("is {}", s.outcome),
                None => "never ran".to_owned(),
            };
            return Err(UsageError(format!(
                "step {} reads the output of step {need}, which {state} in run {}\nhint: run `infra run --from {}`",
                planned.step,
                run.id,
                need.number()
            ))
            .into());
        }
    }
    Ok(run)
}

/// `--dry-run`: the plan, and on gcp every request it would send. Nothing
/// is sent, nothing is written. Before `up` the gcp plan is offline.
fn dry_run(
    settings: &Settings,
    args: &RunArgs,
    selection: Selection,
    records: &Records,
) -> Result<()> {
    let PlanTarget { target, offline } = plan_target(settings)?;
    let table = table(settings);
    let plan = Plan::new(selection, &target.buckets, &table.to_string());
    let mut out = super::out::stdout();
    let run = match selection {
        Selection::All => None,
        _ => records.latest()?,
    }
    .unwrap_or_else(|| RunRecord::new(&settings.target.to_string(), Utc::now()));
    if args.json {
        // The same plan as data: the steps as `plan --json` shows them, and
        // every request with its body.
        let preview = pipeline::preview(&target, &plan, &run.id, run.started_at, &table);
        let view = serde_json::json!({
            "schema": crate::summary::SCHEMA,
            "target": settings.target.to_string(),
            "dry_run": true,
            "offline": offline,
            "note": offline.then_some(OFFLINE_NOTE),
            "copy": args.data.as_ref().map(|dir| serde_json::json!({
                "from": dir.display().to_string(),
                "to": target.buckets.raw.uri(""),
            })),
            "steps": super::plan::run_json(&plan),
            "run_id": run.id,
            "requests": requests_json(&preview),
            "teardown": preview.teardown,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&view)?)?;
        return Ok(());
    }
    if offline {
        writeln!(out, "offline plan: {OFFLINE_NOTE}")?;
        writeln!(out)?;
    }
    if let Some(dir) = &args.data {
        writeln!(
            out,
            "copy {} into {}",
            dir.display(),
            target.buckets.raw.uri("")
        )?;
    }
    write!(out, "{plan}")?;
    print_requests(&mut out, &target, &plan, &run, &table)
}

/// What an offline gcp plan says of itself.
pub const OFFLINE_NOTE: &str = "`infra up` has not run in this state dir (no gcp/outputs.json), so the deployment's names come from the rendered Terraform root; <…> marks a value only `up` can know";

/// The steps' requests, for `--json`: each step that sends any.
pub(super) fn requests_json(preview: &pipeline::Preview) -> Vec<serde_json::Value> {
    preview
        .steps
        .iter()
        .filter(|(_, r)| !r.is_empty())
        .map(|(step, requests)| {
            serde_json::json!({
                "number": step.number(),
                "name": step.name(),
                "requests": requests,
            })
        })
        .collect()
}

/// The target a plan is computed against, with clients that cannot send.
pub struct PlanTarget {
    pub target: Target,
    /// gcp before `up`: names from the rendered root, placeholders for the
    /// rest ([`super::plan::offline_deployment`]).
    pub offline: bool,
}

/// The target a plan is computed against: local as it is; gcp from the
/// outputs `up` saved, or, before any `up`, from the rendered root.
pub fn plan_target(settings: &Settings) -> Result<PlanTarget> {
    let target = match settings.target {
        TargetKind::Local => Local::new(settings).plan_target(),
        TargetKind::Gcp => {
            if !Deployment::path(&settings.state_dir).exists() {
                let (deployment, _) = super::plan::offline_deployment(settings)?;
                return Ok(PlanTarget {
                    target: Gcp::planned(settings, deployment).plan_target()?,
                    offline: true,
                });
            }
            Gcp::load(settings)?.plan_target()?
        }
    };
    Ok(PlanTarget {
        target,
        offline: false,
    })
}

/// Every request each step would send, with its body, then those of the
/// run's end.
pub fn print_requests(
    out: &mut impl Write,
    target: &Target,
    plan: &Plan,
    run: &RunRecord,
    table: &TableRef,
) -> Result<()> {
    let preview = pipeline::preview(target, plan, &run.id, run.started_at, table);
    if preview.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(out, "requests (run {}):", run.id)?;
    let end = (!preview.teardown.is_empty()).then_some(("end of run".to_owned(), preview.teardown));
    let steps = preview
        .steps
        .into_iter()
        .map(|(step, requests)| (format!("step {step}"), requests));
    for (title, requests) in steps.chain(end) {
        writeln!(out, "{title}:")?;
        for request in requests {
            for line in request.to_string().lines() {
                writeln!(out, "  {line}")?;
            }
        }
    }
    Ok(())
}

async fn copy_inputs(files: &[(PathBuf, inputs::Input)], raw: &dyn Bucket) -> Result<()> {
    for (path, input) in files {
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("cannot open {}", path.display()))?;
        let total = file.metadata().await.ok().map(|m| m.len());
        let progress = ui::Progress::bytes(format!("upload {}", input.key), total);
        let size = raw
            .put(input.key, &mut progress.wrap_read(file))
            .await
            .with_context(|| format!("cannot copy {} to {}", path.display(), raw.uri(input.key)));
        progress.finish();
        let size = size?;
        // The transfer's one line, when it ends (terminal or not).
        ui::detail(format!(
            "copied {} ({}, {size} bytes, in {:.1}s) to {}",
            path.display(),
            indicatif::BinaryBytes(size),
            progress.elapsed().as_secs_f64(),
            raw.uri(input.key)
        ));
    }
    Ok(())
}
