//! Terraform for the gcp target: render the root module, run terraform,
//! read its outputs.
//!
//! ```text
//! render       settings -> validated RootValues -> <state-dir>/terraform/*.tf (Tera)
//! runner       the terraform binary through process::Cmd: init, plan -out, apply, output -json
//! outputs      the typed Outputs the rest of infra reads; the password is a redacted Secret
//! credentials  Application Default Credentials, found the way Google's libraries find them
//! cidr         the operator CIDR check (never the whole internet)
//! deploy       the up and down sequences, against a Cloud for what Terraform can't do
//! preview      planning before the state bucket exists (local backend override)
//! ```
//!
//! Terraform owns the resources. What it can't do (create its own state
//! bucket, delete the Dataproc clusters and BigQuery tables that runs
//! create) goes through the narrow [`Cloud`] seam, so the sequences are
//! tested against a fake and the real Google clients live elsewhere:
//! `backend::gcp` implements `Cloud`, and nothing here imports `backend`.

pub mod cidr;
pub mod credentials;
pub mod deploy;
pub mod outputs;
pub mod preview;
pub mod render;
pub mod runner;

use std::collections::BTreeMap;

use anyhow::Result;
use async_trait::async_trait;

pub use outputs::{Outputs, Secret};
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

    /// Deletes every table in `dataset`, which stays. A missing dataset is
    /// not an error. Returns the deleted table ids.
    async fn delete_dataset_tables(&self, project: &str, dataset: &str) -> Result<Vec<String>>;
}
