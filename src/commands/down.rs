//! `infra down`: tear everything down, after asking.

use anyhow::{Context, Result};

use crate::backend::gcp::Deployment;
use crate::backend::gcp::cloud::GcpCloud;
use crate::backend::local::Local;
use crate::cli::DownArgs;
use crate::process::Echo;
use crate::record::Records;
use crate::settings::{Settings, TargetKind};
use crate::signals::Signals;
use crate::terraform::runner::PlanOptions;
use crate::terraform::{Terraform, deploy};
use crate::{process, ui};

use super::Phase;

pub async fn down(settings: &Settings, args: &DownArgs, echo: Echo) -> Result<()> {
    if settings.target == TargetKind::Gcp {
        return down_gcp(settings, args, echo).await;
    }
    let local = Local::new(settings);
    // A running `infra run` or `up` holds the lock: deleting its state dir
    // under it would let it write a record back into nothing. Checked
    // before the list is shown, so a refusal is not read as a deletion.
    let records = Records::new(local.state_dir());
    let _lock = if records.exist() && !args.dry_run {
        Some(records.lock("down")?)
    } else {
        None
    };
    let doomed = local.plan_down(args.purge);
    let history: Vec<_> = ["runs", "reports"]
        .iter()
        .map(|d| local.state_dir().join(d))
        .filter(|d| d.exists())
        .collect();
    if doomed.is_empty() {
        ui::status(format!(
            "nothing to remove in {}",
            local.state_dir().display()
        ));
        return Ok(());
    }
    ui::status("down will stop the local PostgreSQL server and delete:");
    for path in &doomed {
        ui::detail(path.display());
    }
    if !args.purge && !history.is_empty() {
        ui::detail(format!(
            "and keep the run history in {} (`down --purge` deletes it too)",
            history
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" and ")
        ));
    }
    if args.dry_run {
        return Ok(());
    }
    if !super::confirm("Delete all of this?", args.yes).await? {
        ui::status("nothing deleted");
        return Ok(());
    }
    // From here a signal stops `down` with a word on what it stopped.
    let mut signals = Signals::arm()?;
    let phase = Phase::new("stopping PostgreSQL");
    process::guard(&mut signals, local.down(args.purge, &|now| phase.set(now)))
        .await
        .map_err(|e| {
            super::stopped(
                e,
                "down",
                &phase,
                "what was stopped or deleted before stays so",
                "`infra down` again finishes it",
            )
        })?;
    ui::status("down: local target removed");
    Ok(())
}

/// Renders (so the backend and variables match the settings), plans the
/// destroy, shows it and asks, then destroys everything after deleting
/// what Terraform doesn't own.
async fn down_gcp(settings: &Settings, args: &DownArgs, echo: Echo) -> Result<()> {
    // A signal while terraform runs reaches it as one SIGINT, and `down`
    // waits for it to stop: a killed destroy keeps the state lock.
    let mut signals = Signals::arm()?;
    let phase = Phase::new("rendering the root module");
    process::guard(&mut signals, down_gcp_steps(settings, args, echo, &phase))
        .await
        .map_err(|e| {
            super::stopped(
                e,
                "down",
                &phase,
                "what was destroyed before stays destroyed, recorded in terraform's state",
                "`infra down` again plans the destroy of what is left",
            )
        })
}

async fn down_gcp_steps(
    settings: &Settings,
    args: &DownArgs,
    echo: Echo,
    phase: &Phase,
) -> Result<()> {
    let (values, dir) = super::gcp_root(settings)?;
    let records = Records::new(&settings.state_dir);
    let _lock = if records.exist() && !args.dry_run {
        Some(records.lock("down")?)
    } else {
        None
    };
    let tf = super::gcp_terraform(settings, &dir, echo)?;
    // The Airflow root goes first: its release lives on the cluster the
    // main root destroys, and its provider needs that cluster to plan.
    let rendered_airflow = settings.terraform_airflow_root.is_none();
    let airflow_dir = match &settings.terraform_airflow_root {
        Some(ready) => ready.clone(),
        None => crate::terraform::airflow::root_dir(settings),
    };
    let with_airflow = settings.terraform_root.is_none() || !rendered_airflow;
    if with_airflow && airflow_dir.exists() {
        phase.set(
            "destroying Airflow on the GKE cluster (terraform init, plan and apply of its root)",
        );
        down_airflow(&tf.for_dir(&airflow_dir), args).await?;
        if rendered_airflow && !args.dry_run {
            std::fs::remove_dir_all(&airflow_dir)
                .with_context(|| format!("cannot remove {}", airflow_dir.display()))?;
        }
    }
    phase.set("planning the destroy (terraform init and plan)");
    let plan = deploy::plan_down(&values, &tf).await?;
    if plan.changes.is_empty() {
        Deployment::remove(&settings.state_dir)?;
        ui::status(format!("nothing to destroy in project {}", values.project));
        return Ok(());
    }
    super::show_plan(
        &format!("destroy plan for project {}", values.project),
        &plan.changes,
    );
    for step in &plan.first {
        ui::detail(format!("first: {step}"));
    }
    if args.dry_run {
        plan.discard(&tf);
        return Ok(());
    }
    phase.set("asking whether to destroy");
    if !super::confirm("Destroy all of this?", args.yes).await? {
        plan.discard(&tf);
        ui::status("nothing destroyed");
        return Ok(());
    }
    let cloud = GcpCloud::connect(settings).await?;
    phase.set("destroying (what terraform does not own, then terraform apply of the destroy plan)");
    deploy::apply_down(&values, &tf, &cloud, plan, &deploy::TEARDOWN).await?;
    Deployment::remove(&settings.state_dir)?;
    // The rendered root served the destroy; its state lives in the state
    // bucket. Leave nothing behind that `down` was not asked for (a ready
    // root given as `terraform.root` is the user's, and stays).
    let rendered_root = settings.terraform_root.is_none().then_some(dir);
    for rendered in rendered_root
        .into_iter()
        .chain([settings.state_dir.join("terraform-preview")])
    {
        if rendered.exists() {
            std::fs::remove_dir_all(&rendered)
                .with_context(|| format!("cannot remove {}", rendered.display()))?;
        }
    }
    let _ = std::fs::remove_dir(&settings.state_dir);
    ui::status(format!(
        "down: everything infra created in project {} is gone",
        values.project
    ));
    Ok(())
}

/// Destroys the Airflow root (the release, its database and user, the
/// Workload Identity bindings), after showing the plan and asking; with
/// `--dry-run`, only shows the plan.
async fn down_airflow(tf: &Terraform, args: &DownArgs) -> Result<()> {
    const PLAN: &str = "airflow-down.tfplan";
    ui::status(format!("terraform init in {}", tf.dir().display()));
    tf.init().await?;
    let destroy = PlanOptions {
        destroy: true,
        ..PlanOptions::default()
    };
    let changes = tf.plan(PLAN, &destroy).await?;
    if changes.is_empty() {
        tf.discard(PLAN);
        return Ok(());
    }
    super::show_plan(
        "destroy plan for Airflow on the GKE cluster (first)",
        &changes,
    );
    if args.dry_run {
        tf.discard(PLAN);
        return Ok(());
    }
    if !super::confirm("Destroy Airflow?", args.yes).await? {
        tf.discard(PLAN);
        anyhow::bail!(
            "Airflow was not destroyed, so the rest cannot be\nhint: run `infra down` again and answer yes, or pass --yes"
        );
    }
    tf.apply(PLAN).await
}
