//! `infra plan`: what `up` and `run` would do, changing nothing.

use std::io::Write;

use anyhow::{Context, Result};

use crate::backend::local::Local;
use crate::plan::{Plan, Selection};
use crate::process::Echo;
use crate::record::RunRecord;
use crate::settings::{Settings, TargetKind};
use crate::terraform::preview;
use crate::terraform::runner::PlanOptions;

pub async fn plan(settings: &Settings, echo: Echo) -> Result<()> {
    if settings.target == TargetKind::Gcp {
        return plan_gcp(settings, echo).await;
    }
    let local = Local::new(settings);
    let mut out = super::out::stdout();
    writeln!(out, "up (local target in {}):", local.state_dir().display())?;
    for action in local.plan_up().await? {
        let mark = if action.needed { "+" } else { "=" };
        writeln!(out, "  {mark} {}", action.description)?;
    }
    writeln!(out)?;
    writeln!(out, "run:")?;
    let plan = Plan::new(
        Selection::All,
        &local.buckets(),
        &super::run::table(settings).to_string(),
    );
    for line in plan.to_string().lines() {
        writeln!(out, "  {line}")?;
    }
    Ok(())
}

/// The plan file `infra plan` writes, and removes: it changes nothing.
const PLAN_FILE: &str = "plan.tfplan";

/// The gcp plan: Terraform's for `up`, then every request of a run.
async fn plan_gcp(settings: &Settings, echo: Echo) -> Result<()> {
    plan_gcp_up(settings, echo).await?;
    writeln!(super::out::stdout())?;
    plan_gcp_run(settings)
}

/// The run part of a gcp plan: every step, and every request it would
/// send, from the outputs `up` saved. Nothing is sent.
fn plan_gcp_run(settings: &Settings) -> Result<()> {
    let mut out = super::out::stdout();
    let target = match super::run::plan_target(settings) {
        Ok(target) => target,
        Err(e) => {
            writeln!(
                out,
                "run: nothing to plan yet ({})",
                e.to_string().lines().next().unwrap_or_default()
            )?;
            return Ok(());
        }
    };
    let table = super::run::table(settings);
    let plan = Plan::new(Selection::All, &target.buckets, &table.to_string());
    writeln!(out, "run:")?;
    for line in plan.to_string().lines() {
        writeln!(out, "  {line}")?;
    }
    let run = RunRecord::new("gcp", chrono::Utc::now());
    super::run::print_requests(&mut out, &target, &plan, &run, &table)?;
    Ok(())
}

/// The up part of a gcp plan: Terraform's. Renders, checks credentials
/// and terraform, then `init` and `plan`.
async fn plan_gcp_up(settings: &Settings, echo: Echo) -> Result<()> {
    let (values, dir) = super::gcp_root(settings)?;
    let tf = super::gcp_terraform(settings, &dir, echo)?;
    let preview = settings.state_dir.join("terraform-preview");
    let ready = preview::init_or_preview(&values, tf, &preview).await?;
    let summary = ready.tf.plan(PLAN_FILE, &PlanOptions::default()).await;
    ready.tf.discard(PLAN_FILE);
    let summary = summary.context("cannot plan the gcp target")?;
    let mut out = super::out::stdout();
    writeln!(
        out,
        "up (gcp target, project {}, Terraform in {}):",
        values.project,
        dir.display()
    )?;
    if let Some(note) = ready.note {
        writeln!(out, "  note: {note}")?;
    }
    for line in summary.to_string().lines() {
        writeln!(out, "  {line}")?;
    }
    Ok(())
}
