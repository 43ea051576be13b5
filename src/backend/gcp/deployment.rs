//! What `infra up` learned about the provisioned GCP resources, saved as
//! `<state>/gcp/outputs.json`, so every later command builds the target
//! from this file alone: no Terraform call, no network, no secret (the
//! design never needs the database password, so it is not kept).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::terraform::outputs::Outputs;
use crate::terraform::render::RootValues;

/// The deployed resources, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub project: String,
    pub region: String,
    /// The `deployment` setting: the label on everything runs create.
    pub deployment: String,
    pub raw_bucket: String,
    pub staging_bucket: String,
    pub code_bucket: String,
    /// `project:region:instance`.
    pub sql_connection_name: String,
    /// The instance's name, the last part of the connection name.
    pub sql_instance: String,
    pub database_name: String,
    pub database_user: String,
    /// The pipeline's service account: clusters and batches run as it.
    pub service_account_email: String,
    /// The private subnet Dataproc runs in.
    pub subnetwork: String,
    pub dataset: String,
}

impl Deployment {
    /// What `run`, `plan`, `status` and `query` need to know about the
    /// deployment, from the root's values and outputs: Terraform's after
    /// `up`; before it, those `terraform::inspect` reads from the rendered
    /// root, with placeholders where only `up` knows a value.
    pub fn from_outputs(values: &RootValues, outputs: &Outputs) -> Deployment {
        Deployment {
            project: values.project.clone(),
            region: values.region.clone(),
            deployment: values.deployment.clone(),
            raw_bucket: outputs.raw_bucket.clone(),
            staging_bucket: outputs.staging_bucket.clone(),
            code_bucket: outputs.code_bucket.clone(),
            sql_connection_name: outputs.sql_connection_name.clone(),
            sql_instance: outputs
                .sql_connection_name
                .rsplit(':')
                .next()
                .unwrap_or_default()
                .to_owned(),
            database_name: outputs.database_name.clone(),
            database_user: outputs.database_user.clone(),
            service_account_email: outputs.service_account_email.clone(),
            subnetwork: outputs.subnetwork.clone(),
            dataset: outputs.dataset.clone(),
        }
    }

    /// `<state>/gcp/outputs.json`.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("gcp").join("outputs.json")
    }

    /// Reads the file `up` wrote.
    pub fn load(state_dir: &Path) -> Result<Deployment> {
        let path = Deployment::path(state_dir);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
                "the gcp target is not provisioned in this state dir: {} does not exist\nhint: run `infra --target gcp up` first",
                path.display()
            ),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        serde_json::from_slice(&text).with_context(|| {
            format!(
                "{} is not what `infra up` writes\nhint: run `infra --target gcp up` again",
                path.display()
            )
        })
    }

    /// Writes the file atomically.
    pub fn save(&self, state_dir: &Path) -> Result<PathBuf> {
        let path = Deployment::path(state_dir);
        let dir = path.parent().expect("the path has a parent");
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }

    /// Forgets the deployment (after `down`); a missing file is fine.
    pub fn remove(state_dir: &Path) -> Result<()> {
        let path = Deployment::path(state_dir);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_round_trips_and_a_missing_one_says_run_up() {
        let dir = tempfile::tempdir().unwrap();
        let err = format!("{:#}", Deployment::load(dir.path()).unwrap_err());
        assert!(err.contains("infra --target gcp up"), "{err}");
        let d = Deployment {
            project: "p".into(),
            region: "r".into(),
            deployment: "infra".into(),
            raw_bucket: "raw".into(),
            staging_bucket: "staging".into(),
            code_bucket: "code".into(),
            sql_connection_name: "p:r:i".into(),
            sql_instance: "i".into(),
            database_name: "bootcampdb".into(),
            database_user: "bootcamp".into(),
            service_account_email: "sa@p.iam.gserviceaccount.com".into(),
            subnetwork: "subnet".into(),
            dataset: "bootcamp".into(),
        };
        d.save(dir.path()).unwrap();
        assert_eq!(Deployment::load(dir.path()).unwrap(), d);
        Deployment::remove(dir.path()).unwrap();
        assert!(Deployment::load(dir.path()).is_err());
    }
}
