//! The `up` and `down` sequences for the gcp target, written against a
//! [`Terraform`] runner and a [`Cloud`], so they run the same against the
//! real root and clients as against a test root and a fake.
//!
//! Each sequence is split where the user is asked: `plan_*` computes what
//! would change and saves the plan (data the command shows), `apply_*`
//! carries it out. Asking is the command's job; nothing here reads stdin.
//!
//! ```text
//! up:   ensure state bucket -> init -> plan -out      | apply -> outputs
//! down: init -> plan -destroy -out                    | delete labelled Dataproc clusters
//!       -> delete the dataset's tables -> lift deletion protection -> apply the destroy
//! ```

use anyhow::{Context, Result};

use crate::ui;

use super::runner::PlanOptions;
use super::{Cloud, Outputs, PlanSummary, RootValues, Terraform};

const UP_PLAN: &str = "up.tfplan";
const DOWN_PLAN: &str = "down.tfplan";
const UNPROTECT_PLAN: &str = "unprotect.tfplan";

/// What `up` would change: a saved plan, not applied yet.
#[derive(Debug)]
pub struct UpPlan {
    pub changes: PlanSummary,
}

/// Bootstraps the state bucket, then inits and plans. The plan is saved
/// in the root: [`apply_up`] applies it, [`UpPlan::discard`] drops it.
pub async fn plan_up(values: &RootValues, tf: &Terraform, cloud: &dyn Cloud) -> Result<UpPlan> {
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
    let changes = tf.plan(UP_PLAN, &PlanOptions::default()).await?;
    if changes.is_empty() {
        tf.discard(UP_PLAN);
    }
    Ok(UpPlan { changes })
}

impl UpPlan {
    /// Removes the saved plan: it holds a state snapshot.
    pub fn discard(self, tf: &Terraform) {
        tf.discard(UP_PLAN);
    }
}

/// Applies `plan` (nothing when it changes nothing), then reads the outputs.
pub async fn apply_up(tf: &Terraform, plan: UpPlan) -> Result<Outputs> {
    if !plan.changes.is_empty() {
        ui::status("terraform apply");
        tf.apply(UP_PLAN).await?;
    }
    tf.outputs().await
}

/// What `down` would do: a saved destroy plan, and what goes first.
#[derive(Debug)]
pub struct DownPlan {
    pub changes: PlanSummary,
    /// What is deleted outside Terraform before the destroy, in order.
    pub first: Vec<String>,
}

impl DownPlan {
    /// Removes the saved plan: it holds a state snapshot.
    pub fn discard(self, tf: &Terraform) {
        tf.discard(DOWN_PLAN);
    }
}

/// What `down` did.
#[derive(Debug, Default)]
pub struct DownReport {
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

/// Inits and plans the destroy. An empty plan means nothing is deployed.
pub async fn plan_down(values: &RootValues, tf: &Terraform) -> Result<DownPlan> {
    ui::status(format!("terraform init in {}", tf.dir().display()));
    tf.init().await?;
    let destroy = PlanOptions {
        destroy: true,
        ..PlanOptions::default()
    };
    let changes = tf.plan(DOWN_PLAN, &destroy).await?;
    if changes.is_empty() {
        tf.discard(DOWN_PLAN);
        return Ok(DownPlan {
            changes,
            first: Vec::new(),
        });
    }
    let first = vec![
        format!(
            "delete the Dataproc clusters in {} labelled {}",
            values.region,
            selector(values)
        ),
        format!("delete every table in BigQuery dataset {}", values.dataset),
    ];
    Ok(DownPlan { changes, first })
}

fn selector(values: &RootValues) -> String {
    values
        .labels()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Carries out `plan`: deletes what Terraform doesn't own (Dataproc
/// clusters labelled by this deployment, the dataset's tables), lifts
/// deletion protection on `protected` ([`PROTECTED`] for the real root),
/// then destroys.
pub async fn apply_down(
    values: &RootValues,
    tf: &Terraform,
    cloud: &dyn Cloud,
    plan: DownPlan,
    protected: &[Protected],
) -> Result<DownReport> {
    if plan.changes.is_empty() {
        return Ok(DownReport::default());
    }
    let labels = values.labels();
    let dataproc_clusters = cloud
        .delete_labelled_dataproc_clusters(&values.project, &values.region, &labels)
        .await
        .with_context(|| {
            format!(
                "cannot delete the Dataproc clusters labelled {}",
                selector(values)
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
