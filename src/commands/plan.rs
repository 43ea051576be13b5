//! `infra plan`: what `up` and `run` would do, changing nothing.

use std::io::Write;

use anyhow::{Context, Result};

use crate::backend::gcp::Deployment;
use crate::backend::local::Local;
use crate::plan::{Plan, Selection};
use crate::process::Echo;
use crate::record::RunRecord;
use crate::settings::{Settings, TargetKind};
use crate::terraform::inspect::{self, Inspection};
use crate::terraform::preview;
use crate::terraform::render::{self, RootValues};
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

/// The gcp plan: Terraform's for `up` (with credentials) or the rendered
/// root's own account of it (without), then every request of a run.
async fn plan_gcp(settings: &Settings, echo: Echo, json: bool) -> Result<()> {
    crate::backend::gcp::dataproc::limits::check(settings)?;
    let up = match crate::backend::gcp::auth::detect() {
        Ok(_) => Up::Terraform(plan_gcp_up(settings, echo).await?),
        Err(e) => Up::Offline(plan_gcp_offline(settings, &e)?),
    };
    let run = gcp_run_plan(settings);
    let record = RunRecord::new("gcp", chrono::Utc::now());
    let table = super::run::table(settings);
    let mut out = super::out::stdout();
    if json {
        let mut view = serde_json::json!({
            "schema": crate::summary::SCHEMA,
            "target": "gcp",
        });
        match &up {
            Up::Terraform(up) => {
                view["project"] = up.project.clone().into();
                view["terraform_dir"] = up.dir.display().to_string().into();
                view["note"] = up.note.clone().into();
                view["checked"] = true.into();
                view["up"] = up
                    .summary
                    .changes
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "action": c.action.to_string(),
                            "address": c.address,
                        })
                    })
                    .collect();
            }
            Up::Offline(up) => {
                view["project"] = up.project.clone().into();
                view["terraform_dir"] = up.dir.display().to_string().into();
                view["note"] = format!("offline: {}", up.reason).into();
                view["checked"] = false.into();
                view["not_checked"] = serde_json::to_value(&up.not_checked)?;
                view["up"] = up
                    .inspection
                    .resources
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "action": "create",
                            "address": r.address,
                            "type": r.kind,
                            "name": r.name,
                        })
                    })
                    .collect();
                view["apis"] = serde_json::to_value(&up.inspection.apis)?;
                view["grants"] = serde_json::to_value(&up.inspection.grants)?;
            }
        }
        if let Ok((planned, plan)) = &run {
            let preview = crate::pipeline::preview(
                &planned.target,
                plan,
                &record.id,
                record.started_at,
                &table,
            );
            view["run"] = run_json(plan).into();
            view["run_offline"] = planned.offline.into();
            view["requests"] = super::run::requests_json(&preview).into();
            view["teardown"] = serde_json::to_value(&preview.teardown)?;
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&view)?)?;
        return Ok(());
    }
    match &up {
        Up::Terraform(up) => {
            writeln!(
                out,
                "up (gcp target, project {}, Terraform in {}):",
                up.project,
                up.dir.display()
            )?;
            if let Some(note) = &up.note {
                writeln!(out, "  note: {note}")?;
            }
            for line in up.summary.to_string().lines() {
                writeln!(out, "  {line}")?;
            }
        }
        Up::Offline(up) => write_offline(&mut out, up)?,
    }
    writeln!(out)?;
    let (planned, plan) = match run {
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
    if planned.offline {
        writeln!(out, "run (offline: {}):", super::run::OFFLINE_NOTE)?;
    } else {
        writeln!(out, "run:")?;
    }
    for line in plan.to_string().lines() {
        writeln!(out, "  {line}")?;
    }
    super::run::print_requests(&mut out, &planned.target, &plan, &record, &table)?;
    Ok(())
}

/// The up part of a gcp plan: Terraform's, or the offline one.
enum Up {
    Terraform(UpPlan),
    Offline(OfflineUp),
}

/// The up part of a plan made without credentials, from the rendered root.
struct OfflineUp {
    project: String,
    dir: std::path::PathBuf,
    /// Why there is no Terraform plan: the credentials error's first line.
    reason: String,
    not_checked: Vec<String>,
    inspection: Inspection,
}

/// What an offline plan cannot know: it never asks Google or Terraform.
fn not_checked(settings: &Settings) -> Vec<String> {
    let mut list = vec![
        "no Terraform plan against the project: resources that already exist there, or differ, are not seen".to_owned(),
        "quotas (CPUs, in-use IP addresses, Cloud SQL instances) and billing".to_owned(),
        "organization policies (allowed locations, external IPs, service account use)".to_owned(),
        "whether you may enable the APIs and make the grants listed here".to_owned(),
    ];
    if settings.values.operator.is_none() {
        list.push("the operator's Token Creator grant on the pipeline's account: who the operator is needs credentials (or set `operator`)".to_owned());
    }
    list.push(
        "names only `up` learns: random suffixes, the Cloud SQL instance's own service account, IP addresses, cluster uuids (shown as <…>)"
            .to_owned(),
    );
    list
}

/// Renders the root (as `render` does) and reads it: no credentials, no
/// terraform, no network.
fn plan_gcp_offline(settings: &Settings, cause: &anyhow::Error) -> Result<OfflineUp> {
    let (values, dir) = super::gcp_root(settings)?;
    let inspection = inspect::inspect(&inspect::read_root(&dir)?)?;
    Ok(OfflineUp {
        project: values.project,
        dir,
        reason: cause
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        not_checked: not_checked(settings),
        inspection,
    })
}

fn write_offline(out: &mut impl Write, up: &OfflineUp) -> Result<()> {
    let i = &up.inspection;
    writeln!(
        out,
        "up (gcp target, project {}; offline: read from the Terraform root rendered in {}):",
        up.project,
        up.dir.display()
    )?;
    writeln!(out, "  why offline: {}", up.reason)?;
    writeln!(out, "  not checked:")?;
    for item in &up.not_checked {
        writeln!(out, "    - {item}")?;
    }
    writeln!(out, "  resources to create ({}):", i.resources.len())?;
    for r in &i.resources {
        match &r.name {
            Some(name) => writeln!(out, "    + {}  ({name})", r.address)?,
            None => writeln!(out, "    + {}", r.address)?,
        }
    }
    writeln!(out, "  APIs enabled ({}):", i.apis.len())?;
    for api in &i.apis {
        writeln!(out, "    {api}")?;
    }
    writeln!(out, "  IAM grants ({}):", i.grants.len())?;
    for g in &i.grants {
        writeln!(out, "    {} to {}", g.role, g.member)?;
        writeln!(out, "      on {}", g.on)?;
        if let Some(condition) = &g.condition {
            writeln!(out, "      if {condition}")?;
        }
    }
    Ok(())
}

/// The gcp deployment `up` would make, from the rendered root alone (the
/// `terraform.root` setting's, else rendered in memory): the names settings
/// decide as they will be, placeholders for the rest. The one place an
/// offline plan's names come from.
pub(super) fn offline_deployment(settings: &Settings) -> Result<(Deployment, Inspection)> {
    let values = RootValues::from_settings(settings)?;
    let files = match &settings.terraform_root {
        Some(root) => inspect::read_root(root)?,
        None => render::render(&values)?,
    };
    let inspection = inspect::inspect(&files)?;
    let deployment = Deployment::from_outputs(&values, &inspection.typed_outputs()?);
    Ok((deployment, inspection))
}

/// The run part of a gcp plan: from the outputs `up` saved, or offline
/// before any `up`. Nothing is sent.
fn gcp_run_plan(settings: &Settings) -> Result<(super::run::PlanTarget, Plan)> {
    let planned = super::run::plan_target(settings)?;
    let table = super::run::table(settings);
    let plan = Plan::new(Selection::All, &planned.target.buckets, &table.to_string());
    Ok((planned, plan))
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
