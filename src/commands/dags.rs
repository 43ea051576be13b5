//! `infra dags`: the pipeline as an Airflow DAG for the gcp deployment.
//!
//! The DAG is made from what the GCP run would send, not from a second
//! description: the deployment `up` saved, the plan target (which sends
//! nothing), and each capability's preview of its requests for a
//! placeholder run. `crate::airflow` turns those into operators.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};

use crate::airflow::{
    self, DAGS_PREFIX, Inputs, Job, Keys, PLACEHOLDER_INSERT_DATE, PLACEHOLDER_RUN, SWAP_ROWS,
};
use crate::backend::gcp::{Gcp, cloudsql, ids};
use crate::backend::{Bucket, Request};
use crate::cli::DagsArgs;
use crate::pipeline::{load, spark, warehouse};
use crate::plan::keys;
use crate::settings::{Settings, SparkMode};
use crate::ui;

pub fn dags(settings: &Settings, args: &DagsArgs) -> Result<()> {
    let files = render(settings)?;
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| default_dir(&settings.state_dir));
    write(&dir, &files)?;
    ui::status(format!(
        "rendered the Airflow DAG {} in {}",
        dag_id(settings),
        dir.display()
    ));
    super::out::stdout().line(dir.display())?;
    Ok(())
}

/// Renders the DAG folder and uploads it to `code/dags/`, which Airflow's
/// GCS DAG bundle reads. `None` in serverless mode: the DAG runs a cluster.
pub async fn upload(settings: &Settings, code: &dyn Bucket) -> Result<Option<usize>> {
    if settings.spark_mode == SparkMode::Serverless {
        return Ok(None);
    }
    let files = render(settings)?;
    for (path, text) in &files {
        let key = format!("{DAGS_PREFIX}/{path}");
        code.put(&key, &mut text.as_bytes())
            .await
            .with_context(|| format!("cannot upload the Airflow DAG to {}", code.uri(&key)))?;
    }
    Ok(Some(files.len()))
}

/// `<state-dir>/airflow/dags`.
pub fn default_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("airflow").join(DAGS_PREFIX)
}

/// The DAG id: the deployment's name as a Python-friendly word.
pub fn dag_id(settings: &Settings) -> String {
    format!(
        "{}_pipeline",
        ids::label_value(&settings.deployment).replace('-', "_")
    )
}

/// The DAG folder's files for the deployment in `settings`' state dir.
pub fn render(settings: &Settings) -> Result<Vec<(String, String)>> {
    if settings.spark_mode == SparkMode::Serverless {
        bail!(
            "the Airflow DAG runs steps 2 and 3 on one Dataproc cluster, and spark.mode is serverless\nhint: set `spark.mode = \"cluster\"` (or INFRA_SPARK_MODE=cluster) for `infra dags`"
        );
    }
    let gcp = Gcp::load(settings)?;
    let target = gcp.plan_target()?;
    let b = &target.buckets;
    let staging = b.staging.as_ref();
    let table = load::purchase_table();

    let imports = target
        .database
        .preview_load(&table, staging, PLACEHOLDER_RUN);
    let imports: Vec<serde_json::Value> = imports
        .iter()
        .map(|r| body(r, "importContext"))
        .collect::<Result<_>>()?;
    let imports: [serde_json::Value; 4] = imports
        .try_into()
        .map_err(|_| anyhow::anyhow!("step 0 is not four Cloud SQL imports"))?;
    let dump = target
        .database
        .preview_dump(&table, staging, keys::PURCHASES_CSV, PLACEHOLDER_RUN);
    let export = body(
        dump.first().context("step 1 sends no export")?,
        "exportContext",
    )?;

    let insert_date: DateTime<Utc> = PLACEHOLDER_INSERT_DATE
        .parse()
        .expect("the placeholder is a timestamp");
    // The run's one cluster: created before the first job, deleted after.
    let setup = target.spark.preview_setup(PLACEHOLDER_RUN);
    let [create] = setup.as_slice() else {
        bail!("the Spark preview does not create one cluster");
    };
    let cluster = create.body.clone().context("no cluster body")?;
    let mut jobs = Vec::new();
    for job in [
        spark::tokenizer_job(b),
        spark::user_behavior_job(b, insert_date),
    ] {
        let requests = target.spark.preview(&job, PLACEHOLDER_RUN);
        let [submit] = requests.as_slice() else {
            bail!("the Spark preview of a job is not one submit");
        };
        jobs.push(Job {
            name: job.name.clone(),
            body: body(submit, "job")?,
        });
    }
    let table_ref = super::run::table(settings);
    let source = warehouse::source(staging);
    let load_requests = target.warehouse.preview(
        &table_ref,
        &warehouse::METRIC_COLUMNS,
        &source,
        PLACEHOLDER_RUN,
    );
    let load = body(
        load_requests.last().context("step 4 sends no load job")?,
        "configuration",
    )?;

    let inputs = Inputs {
        dag_id: dag_id(settings),
        schedule: settings.airflow_schedule.clone(),
        deployment: gcp.deployment.deployment.clone(),
        project: gcp.deployment.project.clone(),
        region: gcp.deployment.region.clone(),
        raw_bucket: gcp.deployment.raw_bucket.clone(),
        staging_bucket: gcp.deployment.staging_bucket.clone(),
        sql_instance: gcp.deployment.sql_instance.clone(),
        imports,
        export,
        header: table.columns.join(","),
        cluster,
        jobs,
        load,
        create_sql: cloudsql::create_sql(&table),
        swap_sql: cloudsql::swap_sql(&table, SWAP_ROWS),
        keys: Keys {
            purchases_csv: keys::PURCHASES_CSV.to_owned(),
            purchase_rejects: keys::PURCHASE_REJECTS.to_owned(),
            tokenizer_metrics: keys::TOKENIZER_METRICS.to_owned(),
            user_behavior_metrics: keys::USER_BEHAVIOR_METRICS.to_owned(),
            warehouse_source: source,
            dataset: table_ref.dataset,
            table: table_ref.table,
        },
    };
    airflow::render(&inputs)
}

/// The JSON body of `request`, or its `key` member.
fn body(request: &Request, key: &str) -> Result<serde_json::Value> {
    let body = request
        .body
        .as_ref()
        .with_context(|| format!("{} has no body", request.url))?;
    body.get(key)
        .cloned()
        .with_context(|| format!("{} has no `{key}`", request.url))
}

/// Writes `files` into `dir`, overwriting them (and nothing else there).
pub fn write(dir: &Path, files: &[(String, String)]) -> Result<()> {
    for (path, text) in files {
        let path = dir.join(path);
        let parent = path.parent().expect("a file has a parent");
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
