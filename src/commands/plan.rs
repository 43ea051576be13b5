//! `infra plan`: what `up` and `run` would do, changing nothing.

use anyhow::{Context, Result};

use crate::backend::local::Local;
use crate::plan::{Plan, Selection};
use crate::process::Echo;
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
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    println!("up (local target in {}):", local.state_dir().display());
    for action in actions {
        let mark = if action.needed { "+" } else { "=" };
        println!("  {mark} {}", action.description);
    }
    println!();
    println!("run:");
    for line in plan.to_string().lines() {
        println!("  {line}");
    }
    Ok(())
}

/// The run's steps, for `--json`: number, name, what each reads and writes.
fn run_json(plan: &Plan) -> Vec<serde_json::Value> {
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

/// Renders, checks credentials and terraform, then `init` and `plan`.
async fn plan_gcp(settings: &Settings, echo: Echo, json: bool) -> Result<()> {
    let (values, dir) = super::render::render_root(settings)?;
    let tf = super::gcp_terraform(settings, &dir, echo)?;
    let preview = settings.state_dir.join("terraform-preview");
    let ready = preview::init_or_preview(&values, tf, &preview).await?;
    let summary = ready.tf.plan(PLAN_FILE, &PlanOptions::default()).await;
    ready.tf.discard(PLAN_FILE);
    let summary = summary.context("cannot plan the gcp target")?;
    if json {
        let view = serde_json::json!({
            "schema": crate::summary::SCHEMA,
            "target": "gcp",
            "project": values.project,
            "terraform_dir": dir.display().to_string(),
            "note": ready.note,
            "up": summary.changes.iter().map(|c| serde_json::json!({
                "action": c.action.to_string(),
                "address": c.address,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
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
