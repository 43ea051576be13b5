//! The Google Cloud calls `infra up` and `down` make outside Terraform
//! (`terraform::Cloud`), made with this target's clients.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use async_trait::async_trait;

use super::storage::{GcsBucket, Versioning};
use super::{Clients, Endpoints};
use crate::backend::Bucket;
use crate::settings::Settings;
use crate::terraform::{Cloud, PeeringRemoval};

/// Noncurrent versions of each state object the state bucket keeps: enough
/// to roll back a bad apply, bounded so history can't pile up.
const STATE_VERSIONS_KEPT: u32 = 20;

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
        let impersonate: Vec<&str> = settings
            .impersonate_service_account
            .as_deref()
            .into_iter()
            .collect();
        let clients = Clients::connect(
            settings.require_project()?,
            &settings.region,
            &impersonate,
            &Endpoints::from_settings(settings),
            super::deadline::http_policy(settings),
        )
        .await?;
        Ok(GcpCloud { clients })
    }

    /// Who runs `up`, as an IAM member: the `operator` setting, else whom
    /// the credentials are for. Terraform grants it Token Creator on the
    /// pipeline's account, so `run` can act as that account.
    pub async fn operator(&self, settings: &Settings) -> Result<String> {
        match &settings.operator {
            Some(member) => Ok(member.clone()),
            None => self.clients.member(&settings.endpoints_oauth2).await,
        }
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
            .create_bucket(
                project,
                name,
                location,
                Versioning::Keep(STATE_VERSIONS_KEPT),
                labels,
            )
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
            .delete_labelled_clusters(labels)
            .await
            .with_context(|| format!("cannot delete infra's Dataproc clusters in {region}"))
    }

    async fn cancel_labelled_batches(
        &self,
        _project: &str,
        region: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<String>> {
        self.clients
            .dataproc
            .cancel_labelled_batches(labels)
            .await
            .with_context(|| format!("cannot cancel infra's Dataproc batches in {region}"))
    }

    async fn delete_dataset_tables(&self, _project: &str, dataset: &str) -> Result<Vec<String>> {
        let bigquery = &self.clients.bigquery;
        let tables = bigquery.list_tables(dataset).await?;
        for table in &tables {
            bigquery.delete_table(dataset, table).await?;
        }
        Ok(tables)
    }

    async fn enable_services(&self, _project: &str, services: &[&str]) -> Result<()> {
        self.clients.serviceusage.batch_enable(services).await
    }

    async fn remove_peering(
        &self,
        _project: &str,
        network: &str,
        peering: &str,
    ) -> Result<PeeringRemoval> {
        self.clients.compute.remove_peering(network, peering).await
    }

    async fn has_peering(&self, _project: &str, network: &str, peering: &str) -> Result<bool> {
        Ok(self
            .clients
            .compute
            .get_network(network)
            .await?
            .is_some_and(|n| n.peerings.iter().any(|p| p.name == peering)))
    }

    async fn bucket_exists(&self, name: &str) -> Result<bool> {
        self.clients.storage.bucket_exists(name).await
    }
}
