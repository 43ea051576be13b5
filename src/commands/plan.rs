//! `infra plan`: what `up` and `run` would do, changing nothing.

use anyhow::{Context, Result};

use crate::plan::{Plan, Selection};
use crate::process::{Echo, Failed};
use crate::settings::{Settings, TargetKind};
use crate::target::local::Local;
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
    if let Err(err) = tf.init().await {
        return Err(match missing_state_bucket(&err) {
            true => err.context(format!(
                "the Terraform state bucket gs://{} does not exist, so nothing is deployed yet\nhint: `infra up` creates it, shows this plan and asks before applying",
                values.state_bucket
            )),
            false => err,
        });
    }
    let summary = tf.plan(PLAN_FILE, &PlanOptions::default()).await;
    tf.discard(PLAN_FILE);
    let summary = summary.context("cannot plan the gcp target")?;
    println!(
        "up (gcp target, project {}, Terraform in {}):",
        values.project,
        dir.display()
    );
    for line in summary.to_string().lines() {
        println!("  {line}");
    }
    Ok(())
}

/// Whether `terraform init` failed because the GCS backend's bucket is missing.
fn missing_state_bucket(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|e| e.downcast_ref::<Failed>())
        .any(|f| {
            f.tail.contains("bucket doesn't exist") || f.tail.contains("bucket does not exist")
        })
}
