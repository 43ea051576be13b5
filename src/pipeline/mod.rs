//! The pipeline, written once against the target's capabilities.
//!
//! [`execute`] walks a [`Plan`], records each step in the run record before
//! and after it runs, and stops at the first failure. It never names a
//! target: everything it touches comes in through [`Target`].

pub mod load;
pub mod purchases;
pub mod spark;
pub mod warehouse;

use std::path::Path;

use anyhow::{Context, Result};
use chrono::Utc;
use sqlx::{Connection, PgConnection};

use crate::exit::Interrupted;
use crate::plan::{Plan, Step};
use crate::record::{Counts, Outcome, Records, RunRecord};
use crate::backend::{TableRef, Target};
use crate::ui;

/// Runs every step of `plan` as part of `run`, saving the record as it goes.
/// Ctrl-C stops the current step, records it as interrupted, and returns
/// [`Interrupted`]; dropping the step kills its child processes and rolls
/// back its transaction.
pub async fn execute(
    target: &Target,
    plan: &Plan,
    run: &mut RunRecord,
    records: &Records,
    table: &TableRef,
    scratch: &Path,
) -> Result<()> {
    let mut db: Option<PgConnection> = None;
    let total = plan.steps.len();
    for (i, planned) in plan.steps.iter().enumerate() {
        let step = planned.step;
        ui::status(format!(
            "[{}/{total}] step {step}: {}",
            i + 1,
            planned.description
        ));
        run.start_step(step, Utc::now());
        records.save(run)?;

        let work = execute_step(step, target, &mut db, run, table, scratch);
        let result = tokio::select! {
            result = work => result,
            _ = tokio::signal::ctrl_c() => Err(Interrupted.into()),
        };
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
            }
            Err(e) => {
                let outcome = if e.is::<Interrupted>() {
                    Outcome::Interrupted
                } else {
                    Outcome::Failed
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

async fn execute_step(
    step: Step,
    target: &Target,
    db: &mut Option<PgConnection>,
    run: &RunRecord,
    table: &TableRef,
    scratch: &Path,
) -> Result<Counts> {
    let b = &target.buckets;
    match step {
        Step::LoadPurchases => {
            let conn = connect(db, target).await?;
            load::load_purchases(conn, b.raw.as_ref(), b.staging.as_ref(), scratch).await
        }
        Step::DumpPurchases => {
            let conn = connect(db, target).await?;
            load::dump_purchases(conn, b.staging.as_ref()).await
        }
        Step::Tokenize => spark::tokenize(target.spark.as_ref(), b).await,
        Step::UserBehavior => spark::user_behavior(target.spark.as_ref(), b, run.started_at).await,
        Step::LoadWarehouse => {
            warehouse::load_metric(target.warehouse.as_ref(), b.staging.as_ref(), table).await
        }
    }
}

/// One connection per run, opened by the first step that needs it.
async fn connect<'a>(
    db: &'a mut Option<PgConnection>,
    target: &Target,
) -> Result<&'a mut PgConnection> {
    if db.is_none() {
        let options = &target.database;
        let conn = PgConnection::connect_with(options).await.with_context(|| {
            format!(
                "cannot connect to PostgreSQL at {}:{}",
                options.get_host(),
                options.get_port()
            )
        })?;
        *db = Some(conn);
    }
    Ok(db.as_mut().expect("connected above"))
}
