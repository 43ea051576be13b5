//! `infra plan`: what `up` and `run` would do, changing nothing.

use anyhow::{Context, Result};

use crate::backend::local::Local;
use crate::plan::{Plan, Selection};
use crate::process::{Echo, Failed};
use crate::record::RunRecord;
use crate::settings::{Settings, TargetKind};
use crate::terraform::runner::PlanOptions;
use crate::terraform::{Terraform, render};

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

/// Overrides the GCS backend when the state bucket doesn't exist yet, so a
/// first `infra plan` can still show everything `up` would create.
const PREVIEW_BACKEND: &str = "# Written by `infra plan` while the state bucket does not exist yet:\n# plan from empty, local state. `infra up` never uses this directory.\n\nterraform {\n  backend \"local\" {}\n}\n";

/// Renders, checks credentials and terraform, then `init` and `plan`.
async fn plan_gcp(settings: &Settings, echo: Echo) -> Result<()> {
    plan_gcp_up(settings, echo).await?;
    println!();
    plan_gcp_run(settings)
}

/// The run part of a gcp plan: every step, and every request it would
/// send, from the outputs `up` saved. Nothing is sent.
fn plan_gcp_run(settings: &Settings) -> Result<()> {
    let target = match super::run::plan_target(settings) {
        Ok(target) => target,
        Err(e) => {
            println!(
                "run: nothing to plan yet ({})",
                e.to_string().lines().next().unwrap_or_default()
            );
            return Ok(());
        }
    };
    let table = super::run::table(settings);
    let plan = Plan::new(Selection::All, &target.buckets, &table.to_string());
    println!("run:");
    for line in plan.to_string().lines() {
        println!("  {line}");
    }
    let run = RunRecord::new("gcp", chrono::Utc::now());
    super::run::print_requests(&target, &plan, &run, &table);
    Ok(())
}

/// The up part of a gcp plan: Terraform's.
async fn plan_gcp_up(settings: &Settings, echo: Echo) -> Result<()> {
    let (values, dir) = super::gcp_root(settings)?;
    let mut tf = super::gcp_terraform(settings, &dir, echo)?;
    let mut note = None;
    if let Err(err) = tf.init().await {
        if !missing_state_bucket(&err) {
            return Err(err);
        }
        // Nothing is deployed yet: plan a copy of the root against empty
        // local state, leaving the real root's backend untouched.
        let preview = settings.state_dir.join("terraform-preview");
        let mut files = render::render(&values)?;
        files.push(("backend_override.tf".to_owned(), PREVIEW_BACKEND.to_owned()));
        render::write(&preview, &files)?;
        tf = Terraform::new(&preview, &settings.cache_dir(), echo)?;
        tf.init().await?;
        note = Some(format!(
            "the state bucket gs://{} does not exist yet, so nothing is deployed: this plan starts from empty state (`infra up` creates the bucket)",
            values.state_bucket
        ));
    }
    let summary = tf.plan(PLAN_FILE, &PlanOptions::default()).await;
    tf.discard(PLAN_FILE);
    let summary = summary.context("cannot plan the gcp target")?;
    println!(
        "up (gcp target, project {}, Terraform in {}):",
        values.project,
        dir.display()
    );
    if let Some(note) = note {
        println!("  note: {note}");
    }
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

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    fn init_failure(tail: &str) -> anyhow::Error {
        anyhow::Error::new(Failed {
            argv: "terraform init".to_owned(),
            status: std::process::ExitStatus::from_raw(256),
            code: Some(1),
            tail: tail.to_owned(),
        })
        .context("`terraform init` failed")
    }

    #[test]
    fn a_missing_state_bucket_is_told_from_other_init_failures() {
        // What terraform's gcs backend prints when the bucket is missing.
        let missing = init_failure(
            "Error: Failed to get existing workspaces: querying Cloud Storage failed: storage: bucket doesn't exist",
        );
        assert!(missing_state_bucket(&missing));
        let offline = init_failure(
            "Error: Failed to get existing workspaces: querying Cloud Storage failed: dial tcp: no such host",
        );
        assert!(!missing_state_bucket(&offline));
    }
}
