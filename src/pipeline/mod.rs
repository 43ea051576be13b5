//! The pipeline, written once against the target's capabilities.
//!
//! [`execute`] walks a [`Plan`], records each step in the run record before
//! and after it runs, and stops at the first failure. It never names a
//! target: everything it touches comes in through [`Target`]. [`preview`]
//! asks the same capabilities what requests each step would send.

pub mod inputs;
pub mod journal;
pub mod load;
pub mod purchases;
pub mod purchases_csv;
pub mod spark;
pub mod warehouse;

use std::path::Path;

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::backend::{Journal, Request, TableRef, Target};
use crate::exit::Interrupted;
use crate::hold;
use crate::plan::{Plan, Step, keys};
use crate::record::{Counts, Outcome, Records, RunRecord};
use crate::settings::MaxRejected;
use crate::signals::Signals;
use crate::ui;
use journal::StepJournal;

/// Runs every step of `plan` as part of `run`, saving the record as it goes.
/// A stop signal (SIGINT, SIGTERM, SIGHUP; see [`crate::signals`]), during
/// a step or between two, stops the step, records it as interrupted, and
/// returns [`Interrupted`]; dropping the step kills its child processes and
/// rolls back its transaction. Remote work is released by
/// [`Target::teardown`], which the caller awaits whatever this returns.
pub async fn execute(
    target: &Target,
    plan: &Plan,
    run: &mut RunRecord,
    records: &Records,
    table: &TableRef,
    scratch: &Path,
    signals: &mut Signals,
) -> Result<()> {
    let total = plan.steps.len();
    let insert_date = run.started_at;
    for (i, planned) in plan.steps.iter().enumerate() {
        let step = planned.step;
        ui::status(format!(
            "[{}/{total}] step {step}: {}",
            i + 1,
            planned.description
        ));
        let earlier = run.earlier_remotes(step);
        run.start_step(step, Utc::now());
        records.save(run)?;

        let loaded = rows_out(run, Step::LoadPurchases);
        let expected = spark::Expected {
            purchases: rows_out(run, Step::DumpPurchases),
            reviews: rows_out(run, Step::Tokenize),
        };
        let journal = StepJournal::new(&mut *run, records, step, earlier);
        let result = {
            let work = execute_step(
                step,
                target,
                &journal,
                insert_date,
                loaded,
                expected,
                table,
                scratch,
                plan.max_rejected,
            );
            signals.guard(work).await
        };
        drop(journal);
        let now = Utc::now();
        match result {
            Ok(counts) => {
                run.finish_step(step, Ok(counts), now);
                records.save(run)?;
                let seconds = run.step(step).and_then(|s| s.seconds).unwrap_or_default();
                ui::detail(format!(
                    "done in {seconds:.1}s: {} in, {} out, {} rejected",
                    counts.rows_in, counts.rows_out, counts.rows_rejected
                ));
                if i + 1 < total {
                    hold::pause(&format!("after-{}", step.number())).await;
                }
            }
            Err(e) => {
                let outcome = if e.is::<Interrupted>() {
                    Outcome::Interrupted
                } else {
                    Outcome::Failed
                };
                let mut full = format!("{e:#}");
                // A long stack trace pushes Spark's own message out of the
                // quoted tail: the output's first lines hold it.
                if let Some(failed) = e
                    .chain()
                    .find_map(|c| c.downcast_ref::<crate::process::Failed>())
                {
                    full.push_str("\nfirst lines of its output:\n");
                    full.push_str(&failed.head);
                }
                let e = match spark::cause(&full) {
                    Some(cause) if outcome == Outcome::Failed => {
                        cause_first(e, &cause, &full, &records.step_log(&run.id, step))
                    }
                    _ => e,
                };
                run.finish_step(step, Err((outcome, format!("{e:#}"))), now);
                run.finish(now);
                records.save(run)?;
                return Err(e.context(format!(
                    "step {step} {outcome} (run {}); resume with `infra run --from {}`",
                    run.id,
                    step.number()
                )));
            }
        }
    }
    run.finish(Utc::now());
    records.save(run)
}

/// A failed Spark step's error, its cause first: the `[ERROR_CLASS]
/// message` Spark gave, then where the whole output (the JVM's stack
/// frames, the command) was saved, then the hints the error had. The
/// frames go to `log` only.
fn cause_first(e: anyhow::Error, cause: &str, full: &str, log: &Path) -> anyhow::Error {
    let saved = log
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(log, format!("{full}\n")));
    let whole = match saved {
        Ok(()) => format!(
            "the whole output, with Spark's stack frames: {}",
            log.display()
        ),
        Err(write) => {
            ui::warn(format!("cannot write {}: {write}", log.display()));
            return e;
        }
    };
    let hints: Vec<&str> = full.lines().filter(|l| l.starts_with("hint: ")).collect();
    let first = e.to_string();
    let mut message = format!("{first}: {cause}\n{whole}");
    for hint in hints {
        message.push('\n');
        message.push_str(hint);
    }
    anyhow::anyhow!(message)
}

// Each argument is a distinct input of one step; a struct would only
// rename them.
#[allow(clippy::too_many_arguments)]
async fn execute_step(
    step: Step,
    target: &Target,
    journal: &dyn Journal,
    insert_date: DateTime<Utc>,
    loaded: Option<u64>,
    expected: spark::Expected,
    table: &TableRef,
    scratch: &Path,
    max_rejected: Option<MaxRejected>,
) -> Result<Counts> {
    let b = &target.buckets;
    let db = target.database.as_ref();
    match step {
        Step::LoadPurchases => {
            let (raw, staging) = (b.raw.as_ref(), b.staging.as_ref());
            load::load_purchases(db, raw, staging, scratch, max_rejected, journal).await
        }
        Step::DumpPurchases => load::dump_purchases(db, b.staging.as_ref(), loaded, journal).await,
        Step::Tokenize => spark::tokenize(target.spark.as_ref(), b, journal).await,
        Step::UserBehavior => {
            spark::user_behavior(target.spark.as_ref(), b, insert_date, expected, journal).await
        }
        Step::LoadWarehouse => {
            warehouse::load_metric(
                target.warehouse.as_ref(),
                b.staging.as_ref(),
                table,
                journal,
            )
            .await
        }
    }
}

/// The rows `step` wrote in this run, if it finished.
fn rows_out(run: &RunRecord, step: Step) -> Option<u64> {
    run.step(step)?.counts.map(|c| c.rows_out)
}

/// The requests a run would send, for `plan` and `--dry-run`: each step's,
/// then those of the run's end.
#[derive(Debug, Clone, Default)]
pub struct Preview {
    pub steps: Vec<(Step, Vec<Request>)>,
    /// [`Target::teardown`]'s, sent at the end of the run whatever happened.
    pub teardown: Vec<Request>,
}

impl Preview {
    /// No request at all (the local target).
    pub fn is_empty(&self) -> bool {
        self.steps.iter().all(|(_, r)| r.is_empty()) && self.teardown.is_empty()
    }
}

/// The requests each step of `plan` would send to the target's services
/// in run `run_id` (none for the local target). The run's one Spark
/// cluster is created before the first Spark step's job and deleted at the
/// end, as [`execute`] and [`Target::teardown`] do.
pub fn preview(
    target: &Target,
    plan: &Plan,
    run_id: &str,
    insert_date: DateTime<Utc>,
    table: &TableRef,
) -> Preview {
    let b = &target.buckets;
    let db = target.database.as_ref();
    let mut spark_started = false;
    let mut spark_used = false;
    let steps = plan
        .steps
        .iter()
        .map(|planned| {
            let requests = match planned.step {
                Step::LoadPurchases => {
                    db.preview_load(&load::purchase_table(), b.staging.as_ref(), run_id)
                }
                Step::DumpPurchases => db.preview_dump(
                    &load::purchase_table(),
                    b.staging.as_ref(),
                    keys::PURCHASES_CSV,
                    run_id,
                ),
                Step::Tokenize | Step::UserBehavior => {
                    spark_used = true;
                    let mut requests = Vec::new();
                    if !spark_started {
                        spark_started = true;
                        requests.extend(target.spark.preview_setup(run_id));
                    }
                    let job = match planned.step {
                        Step::Tokenize => spark::tokenizer_job(b),
                        _ => spark::user_behavior_job(b, insert_date),
                    };
                    requests.extend(target.spark.preview(&job, run_id));
                    requests
                }
                Step::LoadWarehouse => target.warehouse.preview(
                    table,
                    &warehouse::METRIC_COLUMNS,
                    &warehouse::source(b.staging.as_ref()),
                    run_id,
                ),
            };
            (planned.step, requests)
        })
        .collect();
    let teardown = if spark_used {
        target.spark.preview_teardown(run_id)
    } else {
        Vec::new()
    };
    Preview { steps, teardown }
}
