//! The Google Cloud calls `infra up` and `down` make outside Terraform
//! (`terraform::Cloud`), made with this target's clients.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use async_trait::async_trait;

use super::storage::GcsBucket;
use super::{Clients, Endpoints};
use crate::settings::Settings;
use crate::target::Bucket;
use crate::terraform::Cloud;

/// `terraform::Cloud` over the real clients, bound to one project and region.
pub struct GcpCloud {
    clients: Clients,
}

impl GcpCloud {
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

/// A Dataproc list filter that matches clusters carrying every label.
fn label_filter(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("labels.{k} = {v}"))
        .collect::<Vec<_>>()
        .join(" AND ")
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
        let dataproc = &self.clients.dataproc;
        let clusters = dataproc
            .list_clusters(&label_filter(labels))
            .await
            .with_context(|| format!("cannot list infra's Dataproc clusters in {region}"))?;
        let mut deleted = Vec::new();
        for cluster in clusters {
            let name = cluster.cluster_name;
            // The same request id on a retry: Dataproc runs the delete once.
            dataproc
                .delete_cluster(&name, &format!("infra-down-{name}"))
                .await?;
            deleted.push(name);
        }
        Ok(deleted)
    }

    async fn delete_dataset_tables(&self, _project: &str, dataset: &str) -> Result<Vec<String>> {
        let bigquery = &self.clients.bigquery;
        let tables = bigquery.list_tables(dataset).await?;
        for table in &tables {
            bigquery.delete_table(dataset, table).await?;
        }
        Ok(tables)
    }

    fn code_bucket(&self, name: &str) -> Box<dyn Bucket> {
        Box::new(GcsBucket::new("code", name, self.clients.storage.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_must_carry_every_label() {
        let labels = crate::terraform::labels("prod");
        assert_eq!(
            label_filter(&labels),
            "labels.deployment = prod AND labels.managed-by = infra"
        );
    }
}
