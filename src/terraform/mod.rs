//! Terraform for the gcp target: render the root module, run terraform,
//! read its outputs.
//!
//! ```text
//! render       settings -> validated RootValues -> <state-dir>/terraform/*.tf (Tera)
//! airflow      the second root: Airflow's chart on GKE, after the main root's outputs
//! runner       the terraform binary through process::Cmd: init, plan -out, apply, output -json
//! outputs      the typed Outputs the rest of infra reads (no password among them)
//! cidr         the operator CIDR check (never the whole internet)
//! deploy       the up and down sequences, against a Cloud for what Terraform can't do
//! leftovers    what a deployment left in its project, and why (status after down)
//! preview      planning before the state bucket exists (local backend override)
//! inspect      what the rendered root would create, from its .tf files alone (no credentials)
//! ```
//!
//! Terraform owns the resources. What it can't do (create its own state
//! bucket, delete the Dataproc clusters and BigQuery tables that runs
//! create) goes through the narrow [`Cloud`] seam, so the sequences are
//! tested against a fake and the real Google clients live elsewhere:
//! `backend::gcp` implements `Cloud`, and nothing here imports `backend`.

pub mod airflow;
pub mod cidr;
pub mod deploy;
pub mod inspect;
pub mod leftovers;
pub mod outputs;
pub mod preview;
pub mod render;
pub mod runner;

use std::collections::BTreeMap;

use anyhow::Result;
use async_trait::async_trait;

pub use outputs::Outputs;
pub use render::RootValues;
pub use runner::{PlanSummary, Terraform};

/// The Google Cloud calls `up` and `down` make outside Terraform.
///
/// Every method is idempotent: a retried `up` or `down` must be safe.
#[async_trait]
pub trait Cloud: Send + Sync {
    /// Creates the Terraform state bucket unless it exists: in `location`,
    /// with object versioning, uniform bucket-level access, public access
    /// prevention enforced, and `labels`. An existing bucket is left as is.
    async fn ensure_state_bucket(
        &self,
        project: &str,
        name: &str,
        location: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<()>;

    /// Deletes every Dataproc cluster in `region` that carries all of
    /// `labels`, and waits until they are gone. Returns their names.
    async fn delete_labelled_dataproc_clusters(
        &self,
        project: &str,
        region: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<String>>;

    /// Cancels every Serverless batch in `region` that carries all of
    /// `labels` and has not ended, and waits until each has. Returns their
    /// ids.
    async fn cancel_labelled_batches(
        &self,
        project: &str,
        region: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<String>>;

    /// Deletes every table in `dataset`, which stays. A missing dataset is
    /// not an error. Returns the deleted table ids.
    async fn delete_dataset_tables(&self, project: &str, dataset: &str) -> Result<Vec<String>>;

    /// Enables the API `services` (`services:batchEnable`) and waits until
    /// they are enabled.
    async fn enable_services(&self, project: &str, services: &[&str]) -> Result<()>;

    /// Removes VPC peering `peering` from `network` (`networks.removePeering`)
    /// and waits for it. Says whether it was removed, was not there, or is
    /// still in use by a producer service (try again later).
    async fn remove_peering(
        &self,
        project: &str,
        network: &str,
        peering: &str,
    ) -> Result<PeeringRemoval>;

    /// Whether `network` has peering `peering`; false when the network is gone.
    async fn has_peering(&self, project: &str, network: &str, peering: &str) -> Result<bool>;

    /// Whether bucket `name` exists.
    async fn bucket_exists(&self, name: &str) -> Result<bool>;
}

/// What became of a peering `down` asked to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeeringRemoval {
    Removed,
    /// The peering, or its network, was not there.
    Absent,
    /// A producer service still uses it; Google's words.
    InUse(String),
}

/// The APIs `up` enables before `terraform init`: Terraform needs
/// serviceusage to enable the others and cloudresourcemanager to grant
/// project roles, and impersonation needs iamcredentials before the
/// provider starts. `terraform/modules/services` lists them too.
pub const BOOTSTRAP_SERVICES: &[&str] = &[
    "cloudresourcemanager.googleapis.com",
    "serviceusage.googleapis.com",
    "iamcredentials.googleapis.com",
];

/// The peering the Service Networking connection creates for Cloud SQL.
pub const SERVICE_NETWORKING_PEERING: &str = "servicenetworking-googleapis-com";
