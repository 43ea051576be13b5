//! A run as people and scripts read it: the summary table, and the stable
//! JSON that `run --json` and `status --json` print.
//!
//! The JSON is a documented interface (README, "Machine-readable output"):
//! fields may be added, but none is renamed or removed without a new
//! `schema` number.

use serde::Serialize;

use crate::plan::Step;
use crate::record::{Counts, Outcome, RunRecord};
use crate::ui;

/// The version of the JSON shape; bumped only on an incompatible change.
pub const SCHEMA: u32 = 1;

/// A run as a table: one row per step, with time and row counts.
pub fn table(run: &RunRecord) -> String {
    let header = [
        "step", "outcome", "seconds", "rows in", "rows out", "rejected",
    ]
    .map(String::from);
    let mut rows: Vec<Vec<String>> = run
        .steps
        .iter()
        .map(|s| {
            let count = |f: fn(&Counts) -> u64| {
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
    // A run that stopped short: the steps it has yet to run.
    if matches!(run.outcome, Outcome::Interrupted | Outcome::Failed) {
        let last = run.steps.iter().map(|s| s.step).max();
        for step in Step::ALL {
            if last.is_some_and(|last| step > last) {
                rows.push(vec![
                    step.to_string(),
                    "pending".to_owned(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ]);
            }
        }
    }
    let total: f64 = run.steps.iter().filter_map(|s| s.seconds).sum();
    format!(
        "run {} {} (started {}, {total:.1}s in steps)\n{}",
        run.id,
        run.outcome,
        run.started_at.to_rfc3339(),
        ui::table(&header, &rows)
    )
}

/// A run, for `--json`.
#[derive(Debug, Serialize)]
pub struct RunJson {
    pub schema: u32,
    pub run_id: String,
    pub target: String,
    /// `running`, `succeeded`, `failed` or `interrupted`.
    pub outcome: String,
    /// RFC 3339, UTC; also the metric's `insert_date`.
    pub started_at: String,
    pub finished_at: Option<String>,
    /// Seconds spent in steps.
    pub seconds: f64,
    /// The HTML report, when one was written.
    pub report: Option<String>,
    pub steps: Vec<StepJson>,
}

/// One step of a run, for `--json`.
#[derive(Debug, Serialize)]
pub struct StepJson {
    pub number: usize,
    pub name: &'static str,
    pub outcome: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub seconds: Option<f64>,
    pub rows_in: Option<u64>,
    pub rows_out: Option<u64>,
    pub rows_rejected: Option<u64>,
    pub attempt: u32,
    pub error: Option<String>,
}

/// Seconds to the millisecond: what a clock on either side can tell apart.
fn millis(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// The JSON view of `run`.
pub fn json(run: &RunRecord, report: Option<&std::path::Path>) -> RunJson {
    RunJson {
        schema: SCHEMA,
        run_id: run.id.clone(),
        target: run.target.clone(),
        outcome: run.outcome.to_string(),
        started_at: run.started_at.to_rfc3339(),
        finished_at: run.finished_at.map(|t| t.to_rfc3339()),
        seconds: millis(run.steps.iter().filter_map(|s| s.seconds).sum()),
        report: report.map(|p| p.display().to_string()),
        steps: run
            .steps
            .iter()
            .map(|s| StepJson {
                number: s.step.number(),
                name: s.step.name(),
                outcome: s.outcome.to_string(),
                started_at: s.started_at.to_rfc3339(),
                finished_at: s.finished_at.map(|t| t.to_rfc3339()),
                seconds: s.seconds.map(millis),
                rows_in: s.counts.map(|c| c.rows_in),
                rows_out: s.counts.map(|c| c.rows_out),
                rows_rejected: s.counts.map(|c| c.rows_rejected),
                attempt: s.attempt,
                error: s.error.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 21): `status --json` printed 3.0123456789 seconds,
    /// and an interrupted run's table left out the steps still to run.
    #[test]
    fn durations_are_in_milliseconds_and_pending_steps_are_listed() {
        let t0: chrono::DateTime<chrono::Utc> = "2026-11-24T21:40:00Z".parse().unwrap();
        let t1 = t0 + chrono::Duration::nanoseconds(3_012_345_678);
        let mut run = RunRecord::new("local", t0);
        run.start_step(Step::LoadPurchases, t0);
        run.finish_step(Step::LoadPurchases, Ok(Counts::default()), t1);
        run.start_step(Step::DumpPurchases, t1);
        run.finish_step(
            Step::DumpPurchases,
            Err((Outcome::Interrupted, "SIGINT".into())),
            t1,
        );
        run.finish(t1);
        let json = json(&run, None);
        assert_eq!(json.steps[0].seconds, Some(3.012));
        assert_eq!(json.seconds, 3.012);
        let table = table(&run);
        for step in ["2 tokenize", "3 user_behavior", "4 load_warehouse"] {
            let line = table
                .lines()
                .find(|l| l.contains(step))
                .unwrap_or_else(|| panic!("{table}"));
            assert!(line.contains("pending"), "{table}");
        }
        assert!(!table.contains("0 load_purchases  pending"), "{table}");
    }
}
