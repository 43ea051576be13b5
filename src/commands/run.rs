//! `infra run`: the pipeline, steps 0-4, with a summary at the end.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use chrono::Utc;

use crate::backend::local::Local;
use crate::backend::{Bucket, TableRef};
use crate::cli::RunArgs;
use crate::exit::UsageError;
use crate::pipeline::{self, inputs};
use crate::plan::{Plan, Selection, Step};
use crate::process::Echo;
use crate::record::{Outcome, Records, RunRecord};
use crate::settings::Settings;
use crate::signals::Signals;
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
    let mut out = super::out::stdout();
    if args.dry_run {
        if let Some(dir) = &args.data {
            writeln!(out, "copy {} into {}", dir.display(), buckets.raw.uri(""))?;
        }
        write!(out, "{plan}")?;
        return Ok(());
    }
    // From here on a signal stops the run cleanly, whenever it comes.
    let mut signals = Signals::arm()?;

    // The inputs are checked before anything is copied, locked or started.
    let inputs = match &args.data {
        Some(dir) => {
            if plan
                .steps
                .first()
                .is_some_and(|s| s.step != Step::LoadPurchases)
            {
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
    let target = signals.guard(local.target(echo)).await?;
    let records = Records::new(local.state_dir());
    let _lock = records.lock("run")?;
    // A full run is a new run; --from and --only continue the last one, so
    // its id and start time (the metric's insert_date) carry over.
    let mut run = match selection {
        Selection::All => RunRecord::new("local", Utc::now()),
        _ => resume(&records, &plan)?,
    };
    match inputs {
        Some(files) => {
            signals
                .guard(copy_inputs(&files, buckets.raw.as_ref()))
                .await?
        }
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
            signals
                .guard(inputs::check_bucket(buckets.raw.as_ref(), &read))
                .await?;
        }
    }
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
        &mut signals,
    )
    .await?;
    out.line(super::status::summary(&run))?;
    Ok(())
}

/// The last run, if every step the plan skips but needs succeeded in it.
/// With no earlier run, only a selection that starts at step 0 (which reads
/// nothing but the inputs) may start a new one.
fn resume(records: &Records, plan: &Plan) -> Result<RunRecord> {
    let latest = records.latest()?;
    let starts_at_0 = plan.steps.first().map(|s| s.step) == Some(Step::LoadPurchases);
    if latest.is_none() && starts_at_0 {
        return Ok(RunRecord::new("local", Utc::now()));
    }
    let Some(run) = latest else {
        return Err(UsageError(
            "there is no earlier run to resume: --from and --only continue the last run\nhint: run the whole pipeline first: `infra run --data DIR`".into(),
        )
        .into());
    };
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

async fn copy_inputs(files: &[(PathBuf, inputs::Input)], raw: &dyn Bucket) -> Result<()> {
    for (path, input) in files {
        let size = raw.put_file(input.key, path).await?;
        ui::detail(format!(
            "copied {} ({size} bytes) to {}",
            path.display(),
            raw.uri(input.key)
        ));
    }
    Ok(())
}
