//! What is left of a deployment in its project, and why: for
//! `infra status --target gcp`, which after `down` must name each leftover
//! or list nothing.
//!
//! Two things stay on purpose: the Terraform state bucket (its versioned
//! history, reused by the next `up`) and the APIs the deployment enabled
//! (turning an API off can delete data that other resources in the project
//! hold). Anything else is a `down` that has not finished: resources still
//! in Terraform state, or Cloud SQL's VPC peering, which can outlive the
//! instance for a while.

use anyhow::Result;

use crate::assets;

use super::preview::missing_state_bucket;
use super::{Cloud, RootValues, SERVICE_NETWORKING_PEERING, Terraform};

/// One thing left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub what: String,
    pub why: String,
    /// Left on purpose, as opposed to a `down` that has not finished.
    pub on_purpose: bool,
}

/// Everything of this deployment still in the project. Runs `terraform
/// init` and `state list` in `tf`'s root (rendered for these values).
pub async fn leftovers(
    values: &RootValues,
    tf: &Terraform,
    cloud: &dyn Cloud,
) -> Result<Vec<Leftover>> {
    let mut found = Vec::new();
    let in_state = match tf.init().await {
        Ok(()) => tf.state_list().await?,
        Err(err) if missing_state_bucket(&err) => Vec::new(),
        Err(err) => return Err(err),
    };
    for address in in_state {
        found.push(Leftover {
            what: address,
            why: "still in Terraform state: `infra down` has not finished; run it again".to_owned(),
            on_purpose: false,
        });
    }
    let network = values.network_name();
    if cloud
        .has_peering(&values.project, &network, SERVICE_NETWORKING_PEERING)
        .await?
    {
        found.push(Leftover {
            what: format!("VPC peering {SERVICE_NETWORKING_PEERING} on network {network}"),
            why: "Cloud SQL still held it when `down` last tried; run `infra down` again to remove it and the network".to_owned(),
            on_purpose: false,
        });
    }
    if cloud.bucket_exists(&values.state_bucket).await? {
        found.push(Leftover {
            what: format!("Terraform state bucket gs://{}", values.state_bucket),
            why: format!(
                "kept on purpose: it holds the versioned Terraform state history, and the next `up` reuses it; once nothing is deployed, `gcloud storage rm --recursive gs://{}` removes it",
                values.state_bucket
            ),
            on_purpose: true,
        });
    }
    found.push(Leftover {
        what: format!("enabled APIs: {}", enabled_apis().join(", ")),
        why: "kept on purpose: turning an API off can delete data that other resources in the project hold".to_owned(),
        on_purpose: true,
    });
    Ok(found)
}

/// The APIs the services module enables, read from the module itself so
/// the list is written once.
pub fn enabled_apis() -> Vec<&'static str> {
    let text = assets::TERRAFORM_MODULES
        .iter()
        .find(|(path, _)| *path == "modules/services/main.tf")
        .map_or("", |(_, text)| *text);
    text.split('"')
        .filter(|s| s.ends_with(".googleapis.com") && !s.contains(char::is_whitespace))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_enabled_apis_are_read_from_the_services_module() {
        let apis = enabled_apis();
        for api in super::super::BOOTSTRAP_SERVICES {
            assert!(apis.contains(api), "{api} is not in the services module");
        }
        assert!(apis.contains(&"sqladmin.googleapis.com"), "{apis:?}");
        assert!(apis.len() >= 11, "{apis:?}");
    }
}
