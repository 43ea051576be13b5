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

pub async fn plan(settings: &Settings, echo: Echo, json: bool) -> Result<()> {
    if settings.target == TargetKind::Gcp {
        return plan_gcp(settings, echo, json).await;
    }
    let local = Local::new(settings);
    let actions = local.plan_up().await?;
    let plan = Plan::new(
        Selection::All,
        &local.buckets(),
        &super::run::table(settings).to_string(),
    );
    let mut out = super::out::stdout();
    if json {
        let view = serde_json::json!({
            "schema": crate::summary::SCHEMA,
            "target": "local",
            "state_dir": local.state_dir().display().to_string(),
            "up": actions.iter().map(|a| serde_json::json!({
                "action": a.description,
                "needed": a.needed,
            })).collect::<Vec<_>>(),
            "run": run_json(&plan),
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&view)?)?;
        return Ok(());
    }
    writeln!(out, "up (local target in {}):", local.state_dir().display())?;
    for action in actions {
        let mark = if action.needed { "+" } else { "=" };
        writeln!(out, "  {mark} {}", action.description)?;
    }
    writeln!(out)?;
    writeln!(out, "run:")?;
    for line in plan.to_string().lines() {
        writeln!(out, "  {line}")?;
    }
    Ok(())
}

/// The run's steps, for `--json`: number, name, what each reads and writes.
pub(super) fn run_json(plan: &Plan) -> Vec<serde_json::Value> {
    plan.steps
        .iter()
        .map(|s| {
            serde_json::json!({
                "number": s.step.number(),
                "name": s.step.name(),
                "description": s.description,
                "reads": s.reads,
                "writes": s.writes,
            })
        })
        .collect()
}

/// The plan file `infra plan` writes, and removes: it changes nothing.
const PLAN_FILE: &str = "plan.tfplan";

/// The gcp plan: Terraform's for `up`, then every request of a run.
async fn plan_gcp(settings: &Settings, echo: Echo, json: bool) -> Result<()> {
    crate::backend::gcp::dataproc::limits::check(settings)?;
    let up = plan_gcp_up(settings, echo).await?;
    let run = gcp_run_plan(settings);
    let mut out = super::out::stdout();
    if json {
        let view = serde_json::json!({
            "schema": crate::summary::SCHEMA,
            "target": "gcp",
            "project": up.project,
            "terraform_dir": up.dir.display().to_string(),
            "note": up.note,
            "up": up.summary.changes.iter().map(|c| serde_json::json!({
                "action": c.action.to_string(),
                "address": c.address,
            })).collect::<Vec<_>>(),
            "run": run.as_ref().ok().map(|(_, plan)| run_json(plan)),
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&view)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "up (gcp target, project {}, Terraform in {}):",
        up.project,
        up.dir.display()
    )?;
    if let Some(note) = up.note {
        writeln!(out, "  note: {note}")?;
    }
    for line in up.summary.to_string().lines() {
        writeln!(out, "  {line}")?;
    }
    writeln!(out)?;
    let (target, plan) = match run {
        Ok(run) => run,
        Err(e) => {
            writeln!(
                out,
                "run: nothing to plan yet ({})",
                e.to_string().lines().next().unwrap_or_default()
            )?;
            return Ok(());
        }
    };
    writeln!(out, "run:")?;
    for line in plan.to_string().lines() {
        writeln!(out, "  {line}")?;
    }
    let record = RunRecord::new("gcp", chrono::Utc::now());
    let table = super::run::table(settings);
    super::run::print_requests(&mut out, &target, &plan, &record, &table)?;
    Ok(())
}

/// The run part of a gcp plan, from the outputs `up` saved: an error
/// until `up` has run. Nothing is sent.
fn gcp_run_plan(settings: &Settings) -> Result<(crate::backend::Target, Plan)> {
    let target = super::run::plan_target(settings)?;
    let table = super::run::table(settings);
    let plan = Plan::new(Selection::All, &target.buckets, &table.to_string());
    Ok((target, plan))
}

/// Terraform's plan for `up`.
struct UpPlan {
    project: String,
    dir: std::path::PathBuf,
    note: Option<String>,
    summary: crate::terraform::PlanSummary,
}

/// The up part of a gcp plan: Terraform's. Renders, checks credentials
/// and terraform, then `init` and `plan`.
async fn plan_gcp_up(settings: &Settings, echo: Echo) -> Result<UpPlan> {
    // Who gets Token Creator on the pipeline's account needs credentials;
    // without them the plan still renders, and says what it left out.
    let resolved = match crate::backend::gcp::cloud::GcpCloud::connect(settings).await {
        Ok(cloud) => super::with_operator(settings, &cloud).await,
        Err(e) => Err(e),
    };
    let settings = &match resolved {
        Ok(resolved) => resolved,
        Err(e) => {
            crate::ui::warn(format!(
                "the plan leaves out the operator's Token Creator grant: {}",
                e.to_string().lines().next().unwrap_or_default()
            ));
            settings.clone()
        }
    };
    let (values, dir) = super::gcp_root(settings)?;
    let tf = super::gcp_terraform(settings, &dir, echo)?;
    let preview = settings.state_dir.join("terraform-preview");
    let ready = preview::init_or_preview(&values, tf, &preview).await?;
    let summary = ready.tf.plan(PLAN_FILE, &PlanOptions::default()).await;
    ready.tf.discard(PLAN_FILE);
    let summary = summary.context("cannot plan the gcp target")?;
    Ok(UpPlan {
        project: values.project.clone(),
        dir,
        note: ready.note,
        summary,
    })
}
