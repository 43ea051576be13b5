//! `infra up`: provision the target, then upload pyspark/ to the code bucket
//! (and, locally, warm the Spark Connect server up: `warmup`).

use anyhow::{Context, Result};

use crate::backend::gcp::Deployment;
use crate::backend::gcp::cloud::GcpCloud;
use crate::backend::local::Local;
use crate::backend::upload_code;
use crate::cli::UpArgs;
use crate::process;
use crate::process::Echo;
use crate::record::Records;
use crate::settings::{Settings, TargetKind};
use crate::signals::Signals;
use crate::terraform::airflow::{self, AirflowValues};
use crate::terraform::runner::PlanOptions;
use crate::terraform::{Outputs, RootValues, Terraform, deploy, render};
use crate::{assets, ui};

use super::Phase;

pub async fn up(settings: &Settings, args: &UpArgs, echo: Echo) -> Result<()> {
    if settings.target == TargetKind::Gcp {
        crate::backend::gcp::dataproc::limits::check(settings)?;
        return up_gcp(settings, args, echo).await;
    }
    let local = Local::new(settings);
    crate::backend::local::check_state_dir(local.state_dir())?;
    if !args.dry_run {
        // Before the lock creates anything: a machine that cannot run
        // Spark is told so with the state dir untouched.
        crate::backend::local::spark::check_java().await?;
    }
    // `up` restarts servers a running `run` uses, and `down` deletes what
    // `up` creates: all three take the state dir's lock, before the plan is
    // shown, so a refusal comes first.
    let _lock = if args.dry_run {
        None
    } else {
        Some(Records::new(local.state_dir()).lock("up")?)
    };
    let actions = local.plan_up().await?;
    ui::status(format!("local target in {}", local.state_dir().display()));
    for action in &actions {
        let mark = if action.needed { "+" } else { "=" };
        ui::detail(format!("{mark} {}", action.description));
    }
    ui::detail(format!(
        "~ upload {} PySpark scripts to the code bucket (skipping unchanged ones)",
        assets::PYSPARK_SCRIPTS.len()
    ));
    if args.dry_run {
        return Ok(());
    }
    // From here a signal stops `up` with a word on what it stopped (it
    // exited 130 with none), and `process::guard` stops the children.
    let mut signals = Signals::arm()?;
    let phase = Phase::new("checking Java");
    let uploaded = process::guard(&mut signals, async {
        local.up(&|now| phase.set(now)).await?;
        phase.set("uploading the PySpark scripts");
        upload_code(local.buckets().code.as_ref()).await
    })
    .await
    .map_err(|e| {
        super::stopped(
            e,
            "up",
            &phase,
            "what was set up before stays, and nothing half-made is used",
            "`infra up` again picks up where it stopped",
        )
    })?;
    if settings.spark_warm_up {
        // Ctrl-C here stops the warm-up's jobs (their spinner goes with
        // them) and says what it stopped, as `run` does.
        process::guard(&mut signals, async {
            super::warmup::warm_up(&local).await;
            Ok(())
        })
        .await
        .context(
            "up stopped during the Spark Connect warm-up: everything else is provisioned and `infra run` works; the first run will be slower\nhint: `infra up` runs the warm-up again",
        )?;
    }
    ui::status(format!(
        "up: local target ready; {uploaded} script(s) uploaded to {}",
        local.buckets().code.uri("")
    ));
    Ok(())
}

/// Renders, then bootstraps state and plans, shows the plan and asks,
/// applies, and uploads the code. `--dry-run` is `infra plan`.
async fn up_gcp(settings: &Settings, args: &UpArgs, echo: Echo) -> Result<()> {
    if args.dry_run {
        return super::plan::plan(settings, echo, false).await;
    }
    // A signal while terraform runs reaches it as one SIGINT, and `up`
    // waits for it to stop: a killed apply keeps the state lock.
    let mut signals = Signals::arm()?;
    let phase = Phase::new("connecting to Google Cloud");
    process::guard(&mut signals, up_gcp_steps(settings, args, echo, &phase))
        .await
        .map_err(|e| {
            super::stopped(
                e,
                "up",
                &phase,
                "what was created before stays, recorded in terraform's state",
                "`infra up` again plans from what exists and applies the rest",
            )
        })
}

async fn up_gcp_steps(settings: &Settings, args: &UpArgs, echo: Echo, phase: &Phase) -> Result<()> {
    let cloud = GcpCloud::connect(settings).await?;
    let settings = &super::with_operator(settings, &cloud).await?;
    let (values, dir) = super::gcp_root(settings)?;
    let _lock = Records::new(&settings.state_dir).lock("up")?;
    let tf = super::gcp_terraform(settings, &dir, echo)?;
    phase.set("planning (enabling the bootstrap APIs, the state bucket, terraform init and plan)");
    let plan = deploy::plan_up(&values, &tf, &cloud).await?;
    super::show_plan(
        &format!("plan for project {}", values.project),
        &plan.changes,
    );
    phase.set("asking whether to apply the plan");
    if !plan.changes.is_empty() && !super::confirm("Apply this plan?", args.yes).await? {
        plan.discard(&tf);
        ui::status("nothing applied");
        return Ok(());
    }
    phase.set("applying the plan (terraform apply)");
    let outputs = deploy::apply_up(&tf, plan, deploy::PROPAGATION).await?;
    let saved = Deployment::from_outputs(&values, &outputs).save(&settings.state_dir)?;
    ui::detail(format!("outputs saved to {}", saved.display()));
    phase.set("uploading the PySpark scripts");
    ui::status(format!(
        "uploading {} PySpark scripts to gs://{}",
        assets::PYSPARK_SCRIPTS.len(),
        outputs.code_bucket
    ));
    let code = cloud.code_bucket(&outputs.code_bucket);
    let uploaded = upload_code(code.as_ref())
        .await
        .with_context(|| format!("cannot upload pyspark/ to gs://{}", outputs.code_bucket))?;
    match super::dags::upload(settings, code.as_ref()).await? {
        Some(files) => ui::detail(format!(
            "Airflow DAG: {files} file(s) in gs://{}/{}/",
            outputs.code_bucket,
            crate::airflow::DAGS_PREFIX
        )),
        None => ui::detail(
            "Airflow DAG: not uploaded (spark.mode is serverless; the DAG runs a cluster)",
        ),
    }
    ui::status(format!(
        "up: project {} ready; {uploaded} script(s) uploaded to gs://{}",
        values.project, outputs.code_bucket
    ));
    ui::detail(format!(
        "buckets: {}, {}, {}",
        outputs.raw_bucket, outputs.staging_bucket, outputs.code_bucket
    ));
    ui::detail(format!(
        "Cloud SQL: {} ({})",
        outputs.sql_connection_name, outputs.sql_ip
    ));
    ui::detail(format!(
        "GKE cluster: {} in {}",
        outputs.gke_cluster_name, outputs.gke_location
    ));
    ui::detail(format!(
        "service account: {}",
        outputs.service_account_email
    ));
    if settings.terraform_root.is_some() && settings.terraform_airflow_root.is_none() {
        // A ready root (tests, rehearsals) is the whole deployment.
        return Ok(());
    }
    phase.set("setting up Airflow on the GKE cluster (terraform init, plan and apply of its root)");
    up_airflow(settings, &values, &outputs, &tf, args.yes).await
}

/// The Airflow root, after the main one (the helm provider needs the
/// cluster to exist): render it from the outputs, plan, show, ask, apply.
async fn up_airflow(
    settings: &Settings,
    values: &RootValues,
    outputs: &Outputs,
    main: &Terraform,
    yes: bool,
) -> Result<()> {
    let dir = match &settings.terraform_airflow_root {
        Some(ready) => ready.clone(),
        None => {
            let airflow = AirflowValues::new(settings, values, outputs)?;
            let dir = airflow::root_dir(settings);
            render::write(&dir, &airflow::render(&airflow)?)?;
            dir
        }
    };
    let tf = main.for_dir(&dir);
    ui::status(format!("terraform init in {}", dir.display()));
    tf.init().await?;
    let changes = tf.plan(AIRFLOW_PLAN, &PlanOptions::default()).await?;
    if changes.is_empty() {
        tf.discard(AIRFLOW_PLAN);
        ui::status("Airflow on GKE is up to date");
        return Ok(());
    }
    super::show_plan("plan for Airflow on the GKE cluster", &changes);
    if !super::confirm("Apply this plan?", yes).await? {
        tf.discard(AIRFLOW_PLAN);
        ui::status("Airflow not applied");
        return Ok(());
    }
    ui::status("terraform apply (Airflow)");
    tf.apply(AIRFLOW_PLAN).await?;
    ui::status(format!(
        "up: Airflow {} (chart {}) on {}, DAGs from gs://{}/{}/",
        airflow::AIRFLOW_VERSION,
        airflow::CHART_VERSION,
        outputs.gke_cluster_name,
        outputs.code_bucket,
        crate::airflow::DAGS_PREFIX
    ));
    Ok(())
}

/// The Airflow root's saved plan.
const AIRFLOW_PLAN: &str = "airflow.tfplan";
