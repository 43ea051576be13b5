//! `infra plan`: what `up` and `run` would do, changing nothing.

use anyhow::{Context, Result};

use crate::backend::local::Local;
use crate::plan::{Plan, Selection};
use crate::process::Echo;
use crate::settings::{Settings, TargetKind};
use crate::terraform::preview;
use crate::terraform::runner::PlanOptions;

pub async fn plan(settings: &Settings, echo: Echo) -> Result<()> {
    if settings.target == TargetKind::Gcp {
        return plan_gcp(settings, echo).await;
    }
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

/// The plan file `infra plan` writes, and removes: it changes nothing.
const PLAN_FILE: &str = "plan.tfplan";

/// Renders, checks credentials and terraform, then `init` and `plan`.
async fn plan_gcp(settings: &Settings, echo: Echo) -> Result<()> {
    let (values, dir) = super::render::render_root(settings)?;
    let tf = super::gcp_terraform(settings, &dir, echo)?;
    let preview = settings.state_dir.join("terraform-preview");
    let ready = preview::init_or_preview(&values, tf, &preview).await?;
    let summary = ready.tf.plan(PLAN_FILE, &PlanOptions::default()).await;
    ready.tf.discard(PLAN_FILE);
    let summary = summary.context("cannot plan the gcp target")?;
    println!(
        "up (gcp target, project {}, Terraform in {}):",
        values.project,
        dir.display()
    );
    if let Some(note) = ready.note {
        println!("  note: {note}");
    }
    for line in summary.to_string().lines() {
        println!("  {line}");
    }
    Ok(())
}
