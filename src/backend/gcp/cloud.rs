//! The Google Cloud calls `infra up` and `down` make outside Terraform
//! (`terraform::Cloud`), made with this target's clients.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use async_trait::async_trait;

use super::storage::GcsBucket;
use super::{Clients, Endpoints};
use crate::backend::Bucket;
use crate::settings::Settings;
use crate::terraform::Cloud;

/// `terraform::Cloud` over the real clients, bound to one project and region.
pub struct GcpCloud {
    clients: Clients,
}

impl GcpCloud {
    /// The code bucket `name`, which `up` uploads `pyspark/` to.
    pub fn code_bucket(&self, name: &str) -> Box<dyn Bucket> {
        Box::new(GcsBucket::new("code", name, self.clients.storage.clone()))
    }

    /// Connects with Application Default Credentials, impersonated when
    /// configured. No API is called yet.
    pub async fn connect(settings: &Settings) -> Result<GcpCloud> {
        let clients = Clients::connect(
            settings.require_project()?,
            &settings.region,
            settings.impersonate_service_account.as_deref(),
            &Endpoints::from_env(),
        )
        .await?;
        Ok(GcpCloud { clients })
    }
}

#[async_trait]
impl Cloud for GcpCloud {
    async fn ensure_state_bucket(
        &self,
        project: &str,
        name: &str,
        location: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<()> {
        self.clients
            .storage
            .create_bucket(project, name, location, true, labels)
            .await
            .with_context(|| format!("cannot bootstrap the Terraform state bucket gs://{name}"))?;
        Ok(())
    }

    async fn delete_labelled_dataproc_clusters(
        &self,
        _project: &str,
        region: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<String>> {
        self.clients
            .dataproc
            .delete_labelled_clusters(labels, "infra-down")
            .await
            .with_context(|| format!("cannot delete infra's Dataproc clusters in {region}"))
    }

    async fn delete_dataset_tables(&self, _project: &str, dataset: &str) -> Result<Vec<String>> {
        let bigquery = &self.clients.bigquery;
        let tables = bigquery.list_tables(dataset).await?;
        for table in &tables {
            bigquery.delete_table(dataset, table).await?;
        }
        Ok(tables)
    }
}
