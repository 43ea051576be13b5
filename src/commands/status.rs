//! `infra status`: what is provisioned, and the last run's steps.

use anyhow::Result;

use crate::record::{Records, RunRecord};
use crate::settings::Settings;
use crate::backend::local::Local;
use crate::ui;

pub async fn status(settings: &Settings) -> Result<()> {
    super::require_local(settings, "status")?;
    let local = Local::new(settings);
    println!("target: local ({})", local.state_dir().display());
    for (what, state) in local.status().await? {
        println!("  {what:<12} {state}");
    }
    match Records::new(local.state_dir()).latest()? {
        Some(run) => println!("\n{}", summary(&run)),
        None => println!("\nno runs yet"),
    }
    Ok(())
}

/// A run as a table: one row per step, with time and row counts.
pub fn summary(run: &RunRecord) -> String {
    let header = [
        "step", "outcome", "seconds", "rows in", "rows out", "rejected",
    ]
    .map(String::from);
    let rows: Vec<Vec<String>> = run
        .steps
        .iter()
        .map(|s| {
            let count = |f: fn(&crate::record::Counts) -> u64| {
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
    let total: f64 = run.steps.iter().filter_map(|s| s.seconds).sum();
    format!(
        "run {} {} (started {}, {total:.1}s in steps)\n{}",
        run.id,
        run.outcome,
        run.started_at.to_rfc3339(),
        ui::table(&header, &rows)
    )
}
