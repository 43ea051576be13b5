//! The `up` and `down` sequences for the gcp target, written against a
//! [`Terraform`] runner and a [`Cloud`], so they run the same against the
//! real root and clients as against a test root and a fake.
//!
//! Each sequence is split where the user is asked: `plan_*` computes what
//! would change and saves the plan (data the command shows), `apply_*`
//! carries it out. Asking is the command's job; nothing here reads stdin.
//!
//! ```text
//! up:   enable the bootstrap APIs -> ensure state bucket -> init -> plan -out
//!       | apply (again, a bounded number of times, on API-propagation errors) -> outputs
//! down: init -> plan -destroy -out
//!       | delete labelled Dataproc clusters -> delete the dataset's tables
//!       -> lift deletion protection -> destroy the Cloud SQL instance
//!       -> remove its VPC peering (retried while in use) -> destroy the rest
//! ```
//!
//! Propagation: APIs enabled a moment ago, and the service agents they
//! create, take minutes to be usable everywhere; creating the networking
//! connection or the GKE cluster right away can fail. `apply_up` retries
//! the apply (a fresh plan of the same configuration each time) a bounded
//! number of times, and only on errors that say exactly that
//! ([`is_propagation_error`]); any other error fails at once.

use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::process::Failed;
use crate::ui;

use super::runner::PlanOptions;
use super::{
    BOOTSTRAP_SERVICES, Cloud, Outputs, PeeringRemoval, PlanSummary, RootValues,
    SERVICE_NETWORKING_PEERING, Terraform,
};

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
    ui::status(format!(
        "enabling {} in project {}",
        BOOTSTRAP_SERVICES.join(", "),
        values.project
    ));
    cloud
        .enable_services(&values.project, BOOTSTRAP_SERVICES)
        .await
        .with_context(|| {
            format!(
                "cannot enable the APIs Terraform needs in project {}",
                values.project
            )
        })?;
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

/// How often, and how far apart, a step is tried again.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Tries after the first.
    pub retries: u32,
    pub wait: Duration,
}

/// Retries of the apply on API-propagation errors: Google documents
/// enablement as taking "a few minutes" to propagate.
pub const PROPAGATION: Retry = Retry {
    retries: 3,
    wait: Duration::from_secs(60),
};

/// Retries of the peering removal while Cloud SQL still holds it, which it
/// can do for a while after the instance is deleted.
pub const PEERING_IN_USE: Retry = Retry {
    retries: 20,
    wait: Duration::from_secs(30),
};

/// Applies `plan` (nothing when it changes nothing), then reads the
/// outputs. An apply that fails on API propagation ([`is_propagation_error`])
/// is planned and applied again after `retry.wait`, up to `retry.retries`
/// times; what the first attempt created stays, so each retry does the rest.
pub async fn apply_up(tf: &Terraform, plan: UpPlan, retry: Retry) -> Result<Outputs> {
    if !plan.changes.is_empty() {
        ui::status("terraform apply");
        let mut result = tf.apply(UP_PLAN).await;
        let mut retries = 0;
        while let Err(err) = &result {
            if retries == retry.retries || !is_propagation_error(err) {
                break;
            }
            retries += 1;
            ui::status(format!(
                "the apply failed while newly enabled APIs propagate; waiting {}s, then applying again ({retries} of {})",
                retry.wait.as_secs(),
                retry.retries
            ));
            tokio::time::sleep(retry.wait).await;
            result = async {
                tf.plan(UP_PLAN, &PlanOptions::default()).await?;
                tf.apply(UP_PLAN).await
            }
            .await;
        }
        result?;
    }
    tf.outputs().await
}

/// Whether a failed terraform run failed because an API or a service agent
/// was enabled too recently to be usable: the errors the google provider
/// reports then (provider issues on `google_project_service` and
/// `google_service_networking_connection`).
pub fn is_propagation_error(err: &anyhow::Error) -> bool {
    const SIGNS: &[&[&str]] = &[
        &["SERVICE_DISABLED"],
        &["accessNotConfigured"],
        &["has not been used in project", "disabled"],
        &["API has not been used"],
        // A service agent (service-NNN@gcp-sa-….iam.gserviceaccount.com)
        // that enablement creates, not yet visible to IAM.
        &["gcp-sa-", "does not exist"],
        // Service Networking's own agent lacking its role for a moment.
        &["servicenetworking", "Permission denied to add peering"],
    ];
    err.chain()
        .filter_map(|e| e.downcast_ref::<Failed>())
        .any(|f| {
            SIGNS
                .iter()
                .any(|all| all.iter().all(|sign| f.tail.contains(sign)))
        })
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
    pub serverless_batches: Vec<String>,
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
        "destroy the Cloud SQL instance, then remove its VPC peering \
         (servicenetworking-googleapis-com), retrying while Cloud SQL still holds it"
            .to_owned(),
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

/// How to take a root down: its protected resources, the Cloud SQL
/// instance that holds the VPC peering, and how long to wait for the peering.
#[derive(Debug, Clone, Copy)]
pub struct Teardown<'a> {
    pub protected: &'a [Protected],
    /// Destroyed on its own first, so its peering can be removed before
    /// the network goes.
    pub instance: &'a str,
    pub peering: Retry,
}

/// The real root's teardown.
pub const TEARDOWN: Teardown<'static> = Teardown {
    protected: PROTECTED,
    instance: "module.cloudsql.google_sql_database_instance.postgres",
    peering: PEERING_IN_USE,
};

/// Carries out `plan`: deletes what Terraform doesn't own (Dataproc
/// clusters labelled by this deployment, the dataset's tables), lifts
/// deletion protection, destroys the Cloud SQL instance, removes its VPC
/// peering (Terraform only forgets the connection: deletion_policy
/// ABANDON), then destroys the rest. Every stage is planned afresh from
/// state, so a `down` that stopped half-way picks up where it stopped.
pub async fn apply_down(
    values: &RootValues,
    tf: &Terraform,
    cloud: &dyn Cloud,
    plan: DownPlan,
    teardown: &Teardown<'_>,
) -> Result<DownReport> {
    if plan.changes.is_empty() {
        return Ok(DownReport::default());
    }
    plan.discard(tf);
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
    let serverless_batches = cloud
        .cancel_labelled_batches(&values.project, &values.region, &labels)
        .await
        .with_context(|| {
            format!(
                "cannot cancel the Serverless batches labelled {}",
                selector(values)
            )
        })?;
    for id in &serverless_batches {
        ui::detail(format!("cancelled Dataproc Serverless batch {id}"));
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
    let in_state = tf.state_list().await?;
    let unprotect = unprotect(values, &in_state, teardown.protected);
    if !unprotect.targets.is_empty() {
        // Deletion protection lives in Terraform state: it must be applied
        // as false before a destroy can proceed. The lift targets the
        // protected resources only, so a half-finished earlier destroy is
        // not undone by re-creating what it already removed.
        ui::status(format!(
            "lifting deletion protection on {}",
            unprotect.targets.join(", ")
        ));
        tf.plan(UNPROTECT_PLAN, &unprotect).await?;
        tf.apply(UNPROTECT_PLAN).await?;
    }
    if in_state.iter().any(|a| a == teardown.instance) {
        ui::status(format!("destroying {}", teardown.instance));
        let instance = PlanOptions {
            destroy: true,
            vars: unprotect.vars.clone(),
            targets: vec![teardown.instance.to_owned()],
        };
        tf.plan(DOWN_PLAN, &instance).await?;
        tf.apply(DOWN_PLAN).await?;
    }
    remove_peering(values, cloud, teardown.peering).await?;
    let destroy = PlanOptions {
        destroy: true,
        vars: unprotect.vars,
        targets: Vec::new(),
    };
    tf.plan(DOWN_PLAN, &destroy).await?;
    ui::status("terraform apply (destroy)");
    tf.apply(DOWN_PLAN).await?;
    Ok(DownReport {
        dataproc_clusters,
        serverless_batches,
        tables,
    })
}

/// Removes Cloud SQL's peering from the deployment's network, trying again
/// while Cloud SQL still holds it. Gives up after `retry` with an error
/// that says how to finish: the network can't be deleted before it goes.
async fn remove_peering(values: &RootValues, cloud: &dyn Cloud, retry: Retry) -> Result<()> {
    let network = values.network_name();
    let mut tries = 0;
    loop {
        let removal = cloud
            .remove_peering(&values.project, &network, SERVICE_NETWORKING_PEERING)
            .await
            .with_context(|| {
                format!("cannot remove peering {SERVICE_NETWORKING_PEERING} from network {network}")
            })?;
        match removal {
            PeeringRemoval::Removed => {
                ui::detail(format!(
                    "removed peering {SERVICE_NETWORKING_PEERING} from network {network}"
                ));
                return Ok(());
            }
            PeeringRemoval::Absent => return Ok(()),
            PeeringRemoval::InUse(why) if tries < retry.retries => {
                tries += 1;
                ui::detail(format!(
                    "peering {SERVICE_NETWORKING_PEERING} is still in use ({why}); trying again in {}s ({tries} of {})",
                    retry.wait.as_secs(),
                    retry.retries
                ));
                tokio::time::sleep(retry.wait).await;
            }
            PeeringRemoval::InUse(why) => bail!(
                "peering {SERVICE_NETWORKING_PEERING} on network {network} is still in use after {} tries: {why}\nhint: Cloud SQL can hold it for a while after the instance is gone; run `infra down` again later, and it continues from here",
                tries + 1
            ),
        }
    }
}

/// The plan that turns deletion protection off: a `-var` per protection
/// the settings turn on, targeting the protected resources still in state.
fn unprotect(values: &RootValues, in_state: &[String], protected: &[Protected]) -> PlanOptions {
    let mut options = PlanOptions::default();
    for p in protected.iter().filter(|p| (p.enabled)(values)) {
        options.vars.push((p.var.to_owned(), "false".to_owned()));
        if in_state.iter().any(|address| address == p.address) {
            options.targets.push(p.address.to_owned());
        }
    }
    options
}
