//! The `up` and `down` sequences for the gcp target, written against a
//! [`Terraform`] runner and a [`Cloud`], so they run the same against the
//! real root and clients as against a test root and a fake.
//!
//! ```text
//! up:   ensure state bucket -> init -> plan -out -> (ask) -> apply -> outputs -> upload pyspark/
//! down: init -> plan -destroy -out -> (ask) -> delete labelled Dataproc clusters
//!       -> delete the dataset's tables -> lift deletion protection -> apply the destroy
//! ```

use anyhow::{Context, Result};

use crate::assets;
use crate::commands::upload_code;
use crate::ui;

use super::runner::PlanOptions;
use super::{Cloud, Outputs, PlanSummary, RootValues, Terraform};

const UP_PLAN: &str = "up.tfplan";
const DOWN_PLAN: &str = "down.tfplan";
const UNPROTECT_PLAN: &str = "unprotect.tfplan";

/// What `up` did.
#[derive(Debug)]
pub struct UpReport {
    /// False when the plan had no changes, or the user said no.
    pub applied: bool,
    /// None when the user declined the plan.
    pub outputs: Option<Outputs>,
    /// PySpark scripts uploaded (unchanged ones are skipped).
    pub uploaded: usize,
}

/// Provisions everything: bootstraps the state bucket, plans, asks (unless
/// `yes`), applies, reads the outputs and uploads `pyspark/`.
pub async fn up(
    values: &RootValues,
    tf: &Terraform,
    cloud: &dyn Cloud,
    yes: bool,
) -> Result<UpReport> {
    ui::status(format!("state bucket gs://{}", values.state_bucket));
    cloud
        .ensure_state_bucket(
            &values.project,
            &values.state_bucket,
            &values.region,
            &values.labels(),
        )
        .await
        .with_context(|| {
            format!(
                "cannot create the Terraform state bucket gs://{}",
                values.state_bucket
            )
        })?;
    ui::status(format!("terraform init in {}", tf.dir().display()));
    tf.init().await?;
    let plan = tf.plan(UP_PLAN, &PlanOptions::default()).await?;
    show_plan(&format!("plan for project {}", values.project), &plan);
    let applied = if plan.is_empty() {
        tf.discard(UP_PLAN);
        false
    } else {
        if !ask(tf, UP_PLAN, "Apply this plan?", yes)? {
            ui::status("nothing applied");
            return Ok(UpReport {
                applied: false,
                outputs: None,
                uploaded: 0,
            });
        }
        ui::status("terraform apply");
        tf.apply(UP_PLAN).await?;
        true
    };
    let outputs = tf.outputs().await?;
    ui::status(format!(
        "uploading {} PySpark scripts to gs://{}",
        assets::PYSPARK_SCRIPTS.len(),
        outputs.code_bucket
    ));
    let bucket = cloud.code_bucket(&outputs.code_bucket);
    let uploaded = upload_code(bucket.as_ref())
        .await
        .with_context(|| format!("cannot upload pyspark/ to gs://{}", outputs.code_bucket))?;
    Ok(UpReport {
        applied,
        outputs: Some(outputs),
        uploaded,
    })
}

/// What `down` did.
#[derive(Debug, Default)]
pub struct DownReport {
    /// False when there was nothing to destroy, or the user said no.
    pub destroyed: bool,
    pub dataproc_clusters: Vec<String>,
    pub tables: Vec<String>,
}

/// A resource Terraform refuses to destroy while its deletion protection,
/// set by the root variable `var`, is on in state.
#[derive(Debug, Clone, Copy)]
pub struct Protected {
    pub var: &'static str,
    pub address: &'static str,
    /// Whether the settings turn the protection on.
    pub enabled: fn(&RootValues) -> bool,
}

/// The root module's protected resources (templates/terraform/main.tf.tera).
pub const PROTECTED: &[Protected] = &[
    Protected {
        var: "gke_deletion_protection",
        address: "module.gke.google_container_cluster.airflow",
        enabled: |values| values.gke_deletion_protection,
    },
    Protected {
        var: "database_deletion_protection",
        address: "module.cloudsql.google_sql_database_instance.postgres",
        enabled: |values| values.database_deletion_protection,
    },
];

/// Destroys everything: after asking (unless `yes`), deletes what
/// Terraform doesn't own (Dataproc clusters labelled by this deployment,
/// the dataset's tables), lifts deletion protection, then applies the
/// destroy plan.
pub async fn down(
    values: &RootValues,
    tf: &Terraform,
    cloud: &dyn Cloud,
    yes: bool,
) -> Result<DownReport> {
    down_with(values, tf, cloud, yes, PROTECTED).await
}

/// [`down`] for a root whose protected resources are `protected`.
pub async fn down_with(
    values: &RootValues,
    tf: &Terraform,
    cloud: &dyn Cloud,
    yes: bool,
    protected: &[Protected],
) -> Result<DownReport> {
    ui::status(format!("terraform init in {}", tf.dir().display()));
    tf.init().await?;
    let plan = tf
        .plan(
            DOWN_PLAN,
            &PlanOptions {
                destroy: true,
                ..PlanOptions::default()
            },
        )
        .await?;
    if plan.is_empty() {
        tf.discard(DOWN_PLAN);
        ui::status(format!("nothing to destroy in project {}", values.project));
        return Ok(DownReport::default());
    }
    show_plan(
        &format!("destroy plan for project {}", values.project),
        &plan,
    );
    let labels = values.labels();
    let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    ui::detail(format!(
        "first: delete Dataproc clusters in {} labelled {}, and every table in BigQuery dataset {}",
        values.region,
        selector.join(","),
        values.dataset
    ));
    if !ask(tf, DOWN_PLAN, "Destroy all of this?", yes)? {
        ui::status("nothing destroyed");
        return Ok(DownReport::default());
    }
    let dataproc_clusters = cloud
        .delete_labelled_dataproc_clusters(&values.project, &values.region, &labels)
        .await
        .with_context(|| {
            format!(
                "cannot delete the Dataproc clusters labelled {}",
                selector.join(",")
            )
        })?;
    for name in &dataproc_clusters {
        ui::detail(format!("deleted Dataproc cluster {name}"));
    }
    let tables = cloud
        .delete_dataset_tables(&values.project, &values.dataset)
        .await
        .with_context(|| {
            format!(
                "cannot delete the tables of BigQuery dataset {}",
                values.dataset
            )
        })?;
    for table in &tables {
        ui::detail(format!("deleted table {}.{table}", values.dataset));
    }
    let unprotect = unprotect(values, tf, protected).await?;
    if unprotect.targets.is_empty() {
        ui::status("terraform apply (destroy)");
        tf.apply(DOWN_PLAN).await?;
    } else {
        // Deletion protection lives in Terraform state: it must be applied
        // as false before a destroy can proceed, and that makes the saved
        // destroy plan stale, so it is planned again. The lift targets the
        // protected resources only, so a half-finished earlier destroy is
        // not undone by re-creating what it already removed.
        tf.discard(DOWN_PLAN);
        ui::status(format!(
            "lifting deletion protection on {}",
            unprotect.targets.join(", ")
        ));
        tf.plan(UNPROTECT_PLAN, &unprotect).await?;
        tf.apply(UNPROTECT_PLAN).await?;
        let destroy = PlanOptions {
            destroy: true,
            vars: unprotect.vars,
            targets: Vec::new(),
        };
        tf.plan(DOWN_PLAN, &destroy).await?;
        ui::status("terraform apply (destroy)");
        tf.apply(DOWN_PLAN).await?;
    }
    Ok(DownReport {
        destroyed: true,
        dataproc_clusters,
        tables,
    })
}

/// The plan that turns deletion protection off: a `-var` per protection
/// the settings turn on, targeting the protected resources still in state.
async fn unprotect(
    values: &RootValues,
    tf: &Terraform,
    protected: &[Protected],
) -> Result<PlanOptions> {
    let mut options = PlanOptions::default();
    if !protected.iter().any(|p| (p.enabled)(values)) {
        return Ok(options);
    }
    let in_state = tf.state_list().await?;
    for p in protected.iter().filter(|p| (p.enabled)(values)) {
        options.vars.push((p.var.to_owned(), "false".to_owned()));
        if in_state.iter().any(|address| address == p.address) {
            options.targets.push(p.address.to_owned());
        }
    }
    Ok(options)
}

/// Asks before applying `plan_file`, unless `yes`. The plan file holds a
/// state snapshot, so it is removed unless the answer is yes.
fn ask(tf: &Terraform, plan_file: &str, question: &str, yes: bool) -> Result<bool> {
    let answer = if yes {
        Ok(true)
    } else {
        ui::confirm(question, "--yes")
    };
    if !matches!(answer, Ok(true)) {
        tf.discard(plan_file);
    }
    answer
}

fn show_plan(title: &str, plan: &PlanSummary) {
    ui::status(title);
    for line in plan.to_string().lines() {
        ui::detail(line);
    }
}
