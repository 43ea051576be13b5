//! Compute Engine v1 over REST: the two network calls `infra down` needs.
//!
//! Cloud SQL's private IP comes through a VPC peering that the Service
//! Networking connection creates (`servicenetworking-googleapis-com`).
//! Terraform only forgets that connection on destroy (its delete fails
//! while Cloud SQL still holds the peering, which can last days), so
//! `down` removes the peering itself with `networks.removePeering` once
//! the instance is gone, and the network can then be deleted. Field names
//! follow `compute.v1.json`.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::http::{ApiError, Call, Http, Idempotency, encode_segment};
use crate::terraform::PeeringRemoval;

/// `Network`, as far as `down` reads it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Network {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub peerings: Vec<NetworkPeering>,
}

/// `NetworkPeering`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NetworkPeering {
    pub name: String,
    /// `ACTIVE` or `INACTIVE`.
    #[serde(default)]
    pub state: String,
}

/// A global `Operation`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Operation {
    name: String,
    /// `PENDING`, `RUNNING` or `DONE`.
    #[serde(default)]
    status: String,
    #[serde(default)]
    error: Option<OperationError>,
    #[serde(default)]
    http_error_message: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct OperationError {
    #[serde(default)]
    errors: Vec<OperationErrorItem>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct OperationErrorItem {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// Compute Engine, bound to one project.
pub struct Compute {
    http: Http,
    base: String,
    project: String,
    poll: Duration,
}

impl Compute {
    /// `root` is the service's root URL, as the `endpoints.compute` setting
    /// gives it; the `compute/v1` path is added here, as the other clients do.
    pub fn new(http: Http, root: &str, project: &str, poll: Duration) -> Compute {
        Compute {
            http,
            base: format!("{}/compute/v1", root.trim_end_matches('/')),
            project: project.to_owned(),
            poll,
        }
    }

    fn network_url(&self, network: &str) -> String {
        format!(
            "{}/projects/{}/global/networks/{}",
            self.base,
            encode_segment(&self.project),
            encode_segment(network)
        )
    }

    /// `networks.get`; `None` when the network does not exist.
    pub async fn get_network(&self, network: &str) -> Result<Option<Network>> {
        match self.http.json(&Call::get(self.network_url(network))).await {
            Ok(found) => Ok(Some(found)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e).with_context(|| {
                format!("cannot read network {network} in project {}", self.project)
            }),
        }
    }

    /// Removes peering `peering` from `network` (`networks.removePeering`)
    /// and waits for the operation. A peering or network that is gone is
    /// [`PeeringRemoval::Absent`]; one a producer still uses is
    /// [`PeeringRemoval::InUse`], for the caller to retry later.
    pub async fn remove_peering(&self, network: &str, peering: &str) -> Result<PeeringRemoval> {
        let Some(found) = self.get_network(network).await? else {
            return Ok(PeeringRemoval::Absent);
        };
        if !found.peerings.iter().any(|p| p.name == peering) {
            return Ok(PeeringRemoval::Absent);
        }
        // Removing a peering twice is harmless (the second finds none), so
        // the call may be retried.
        let call = Call::new(
            Method::POST,
            format!("{}/removePeering", self.network_url(network)),
            Idempotency::Idempotent,
        )
        .json(&json!({ "name": peering }));
        let operation: Operation = match self.http.json(&call).await {
            Ok(op) => op,
            Err(e) if e.is_not_found() => return Ok(PeeringRemoval::Absent),
            Err(e) if in_use(&e.to_string()) => return Ok(PeeringRemoval::InUse(e.to_string())),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot remove peering {peering} from network {network}")
                });
            }
        };
        let done = self.wait(operation).await.with_context(|| {
            format!("removing peering {peering} from network {network} did not finish")
        })?;
        match operation_error(&done) {
            None => Ok(PeeringRemoval::Removed),
            Some(message) if in_use(&message) => Ok(PeeringRemoval::InUse(message)),
            Some(message) => {
                bail!("removing peering {peering} from network {network} failed: {message}")
            }
        }
    }

    /// Polls `globalOperations.get` until the operation is `DONE`.
    async fn wait(&self, mut operation: Operation) -> Result<Operation, ApiError> {
        while operation.status != "DONE" {
            tokio::time::sleep(self.poll).await;
            let url = format!(
                "{}/projects/{}/global/operations/{}",
                self.base,
                encode_segment(&self.project),
                encode_segment(&operation.name)
            );
            operation = self.http.json(&Call::get(url)).await?;
        }
        Ok(operation)
    }
}

/// The operation's errors as one line, or None when it succeeded.
fn operation_error(operation: &Operation) -> Option<String> {
    let errors = operation
        .error
        .as_ref()
        .map(|e| &e.errors[..])
        .unwrap_or(&[]);
    if errors.is_empty() {
        return None;
    }
    let mut text: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.code, e.message))
        .collect();
    if let Some(http) = &operation.http_error_message {
        text.push(http.clone());
    }
    Some(text.join("; "))
}

/// Whether an error says a producer service still uses the peering, so
/// that trying again later can succeed.
fn in_use(message: &str) -> bool {
    const SIGNS: &[&str] = &[
        "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE",
        "resourceInUseByAnotherResource",
        "still using",
        "is in use",
        "peering operation in progress",
    ];
    SIGNS.iter().any(|sign| message.contains(sign))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_producer_still_holding_the_peering_is_in_use_not_a_failure() {
        assert!(in_use(
            "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE: The peering is still in use by Cloud SQL"
        ));
        assert!(in_use(
            "HTTP 400 Bad Request: Producer services (e.g. CloudSQL) are still using this connection."
        ));
        assert!(!in_use(
            "PERMISSION_DENIED: Required 'compute.networks.removePeering'"
        ));
    }
}
