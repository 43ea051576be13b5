//! `infra plan`: what `up` and `run` would do, changing nothing.

use anyhow::Result;

use crate::plan::{Plan, Selection};
use crate::settings::Settings;
use crate::target::local::Local;

pub async fn plan(settings: &Settings) -> Result<()> {
    super::require_local(settings, "plan")?;
    let local = Local::new(settings);
    println!("up (local target in {}):", local.state_dir().display());
    for action in local.plan_up().await? {
        let mark = if action.needed { "+" } else { "=" };
        println!("  {mark} {}", action.description);
    }
    println!();
    println!("run:");
    let plan = Plan::new(
        Selection::All,
        &local.buckets(),
        &super::run::table(settings).to_string(),
    );
    for line in plan.to_string().lines() {
        println!("  {line}");
    }
    Ok(())
}
