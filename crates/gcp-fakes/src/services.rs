//! The two small APIs `up` and `down` call outside Terraform: Service
//! Usage (`services.batchEnable`, `services.get`, `services.batchGet`,
//! `operations.get`) and
//! Compute Engine (`networks.get`, `networks.removePeering`,
//! `globalOperations.get`/`wait`), played over a project with one VPC
//! network and its private-services peering.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::front::{Call, Front, error, not_found};

#[derive(Default)]
struct State {
    enabled: BTreeSet<String>,
    operations: BTreeMap<String, Value>,
    /// network -> peering names.
    peerings: BTreeMap<String, BTreeSet<String>>,
    next: u64,
}

#[derive(Clone)]
pub struct Services {
    front: Front,
    project: String,
    state: Arc<Mutex<State>>,
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Services {
    /// `network` has the peering `peering` until `removePeering`.
    pub fn new(front: Front, project: &str, network: &str, peering: &str) -> Services {
        let mut state = State::default();
        state
            .peerings
            .insert(network.to_owned(), BTreeSet::from([peering.to_owned()]));
        Services {
            front,
            project: project.to_owned(),
            state: Arc::new(Mutex::new(state)),
        }
    }

    pub fn enabled(&self) -> Vec<String> {
        self.state.lock().unwrap().enabled.iter().cloned().collect()
    }

    pub fn peerings(&self, network: &str) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .peerings
            .get(network)
            .map(|p| p.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub async fn dispatch(&self, call: Call) -> (u16, Value) {
        let mut s = self.state.lock().unwrap();
        s.next += 1;
        let n = s.next;
        match call.id.as_str() {
            "serviceusage.services.batchEnable" => {
                let ids: Vec<String> = call.body["serviceIds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect();
                if ids.is_empty() || ids.len() > 20 {
                    return error(
                        400,
                        "INVALID_ARGUMENT",
                        "serviceIds must name 1 to 20 services",
                    );
                }
                let parent = format!("{}/{}", call.seg[1], call.seg[2]);
                let services: Vec<Value> = ids
                    .iter()
                    .map(|id| json!({"name": format!("{parent}/services/{id}"), "parent": parent, "state": "ENABLED"}))
                    .collect();
                s.enabled.extend(ids);
                let name = format!("operations/acat.p2-rehearsal-{n}");
                // Done on the first poll, as a quick enable is.
                s.operations.insert(
                    name.clone(),
                    json!({"name": name, "done": true, "response": {
                        "@type": "type.googleapis.com/google.api.serviceusage.v1.BatchEnableServicesResponse",
                        "services": services}}),
                );
                (200, json!({"name": name, "done": false}))
            }
            "serviceusage.services.get" => {
                let id = call.last().to_owned();
                let parent = format!("{}/{}", call.seg[1], call.seg[2]);
                let state = if s.enabled.contains(&id) {
                    "ENABLED"
                } else {
                    "DISABLED"
                };
                (
                    200,
                    json!({"name": format!("{parent}/services/{id}"), "parent": parent, "state": state}),
                )
            }
            "serviceusage.services.batchGet" => {
                let parent = format!("{}/{}", call.seg[1], call.seg[2]);
                let names: Vec<&str> = call
                    .req
                    .query
                    .iter()
                    .filter(|(k, _)| k == "names")
                    .map(|(_, v)| v.as_str())
                    .collect();
                if names.is_empty() || names.len() > 30 {
                    return error(400, "INVALID_ARGUMENT", "names must name 1 to 30 services");
                }
                let mut services = Vec::new();
                for name in names {
                    let Some(id) = name.strip_prefix(&format!("{parent}/services/")) else {
                        return error(
                            400,
                            "INVALID_ARGUMENT",
                            &format!("{name} is not a service of {parent}"),
                        );
                    };
                    let state = if s.enabled.contains(id) {
                        "ENABLED"
                    } else {
                        "DISABLED"
                    };
                    services.push(json!({"name": name, "parent": parent, "state": state}));
                }
                (200, json!({ "services": services }))
            }
            "serviceusage.operations.get" => {
                let name = call.seg[1..].join("/");
                match s.operations.get(&name) {
                    Some(op) => (200, op.clone()),
                    None => not_found(&format!("operation {name}")),
                }
            }
            "compute.networks.get" => {
                let network = call.last().to_owned();
                let Some(peerings) = s.peerings.get(&network) else {
                    return not_found(&format!(
                        "The resource 'projects/{}/global/networks/{network}' was not found",
                        self.project
                    ));
                };
                let link = format!(
                    "https://www.googleapis.com/compute/v1/projects/{}/global/networks/{network}",
                    self.project
                );
                let peerings: Vec<Value> = peerings
                    .iter()
                    .map(|p| json!({"name": p, "network": "https://www.googleapis.com/compute/v1/projects/servicenetworking-rehearsal/global/networks/servicenetworking", "state": "ACTIVE", "stateDetails": "[2025-01-01T00:00:00.000-00:00]: Connected."}))
                    .collect();
                let mut answer = json!({"kind": "compute#network", "name": network, "selfLink": link, "autoCreateSubnetworks": false, "id": "1234567890"});
                if !peerings.is_empty() {
                    answer["peerings"] = json!(peerings);
                }
                (200, answer)
            }
            "compute.networks.removePeering" => {
                let network = call.seg[call.seg.len() - 2].clone();
                let peering = call.body["name"].as_str().unwrap_or_default().to_owned();
                let project = self.project.clone();
                let Some(peerings) = s.peerings.get_mut(&network) else {
                    return not_found(&format!(
                        "The resource 'projects/{project}/global/networks/{network}' was not found"
                    ));
                };
                if !peerings.remove(&peering) {
                    return error(
                        400,
                        "INVALID_ARGUMENT",
                        &format!("There is no peering with name {peering} on network {network}"),
                    );
                }
                let name = format!("operation-rehearsal-{n}");
                let op = json!({
                    "kind": "compute#operation", "id": n.to_string(), "name": name,
                    "operationType": "removePeering", "status": "DONE", "progress": 100,
                    "insertTime": now(), "startTime": now(), "endTime": now(),
                    "targetLink": format!("https://www.googleapis.com/compute/v1/projects/{project}/global/networks/{network}"),
                    "selfLink": format!("https://www.googleapis.com/compute/v1/projects/{project}/global/operations/{name}"),
                });
                s.operations.insert(name, op.clone());
                let mut pending = op;
                pending["status"] = json!("RUNNING");
                pending["progress"] = json!(0);
                (200, pending)
            }
            "compute.globalOperations.get" | "compute.globalOperations.wait" => {
                let name = if call.id.ends_with("wait") {
                    call.seg[call.seg.len() - 2].clone()
                } else {
                    call.last().to_owned()
                };
                match s.operations.get(&name) {
                    Some(op) => (200, op.clone()),
                    None => not_found(&format!(
                        "The resource 'projects/{}/global/operations/{name}' was not found",
                        self.project
                    )),
                }
            }
            other => {
                drop(s);
                self.front
                    .violation(format!("the stand-in does not play {other}"));
                (501, Value::Null)
            }
        }
    }
}
