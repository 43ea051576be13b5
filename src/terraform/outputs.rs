//! Terraform's outputs as one typed struct, read from `terraform output
//! -json`. The rest of `infra` reads bucket names, the Cloud SQL
//! connection and the service account from here, never from state files.
//!
//! The database password is a [`Secret`]: it has no `Display`, its `Debug`
//! prints `****`, and `Outputs`' own `Debug` redacts it too, so it can't
//! reach a log line or an error message by accident.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// A value that must never be printed. Read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it (a connection).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

/// What the root module outputs (templates/terraform/outputs.tf.tera).
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct Outputs {
    pub raw_bucket: String,
    pub staging_bucket: String,
    pub code_bucket: String,
    /// `project:region:instance`, for the Cloud SQL connectors.
    pub sql_connection_name: String,
    /// The public IP when an operator CIDR is set, else the private IP.
    pub sql_ip: String,
    pub database_name: String,
    pub database_user: String,
    pub database_password: Secret,
    pub service_account_email: String,
    pub gke_cluster_name: String,
    pub gke_location: String,
    /// The private subnet Dataproc clusters run in.
    pub subnetwork: String,
    pub dataset: String,
}

impl fmt::Debug for Outputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outputs")
            .field("raw_bucket", &self.raw_bucket)
            .field("staging_bucket", &self.staging_bucket)
            .field("code_bucket", &self.code_bucket)
            .field("sql_connection_name", &self.sql_connection_name)
            .field("sql_ip", &self.sql_ip)
            .field("database_name", &self.database_name)
            .field("database_user", &self.database_user)
            .field("database_password", &"****")
            .field("service_account_email", &self.service_account_email)
            .field("gke_cluster_name", &self.gke_cluster_name)
            .field("gke_location", &self.gke_location)
            .field("subnetwork", &self.subnetwork)
            .field("dataset", &self.dataset)
            .finish()
    }
}

/// One entry of `terraform output -json`.
#[derive(Deserialize)]
struct Entry {
    value: serde_json::Value,
}

impl Outputs {
    /// Parses `terraform output -json`. An empty object means nothing is
    /// deployed; a missing output is named.
    pub fn from_json(json: &str) -> Result<Outputs> {
        let entries: BTreeMap<String, Entry> = serde_json::from_str(json)
            .context("`terraform output -json` did not print a JSON object of outputs")?;
        if entries.is_empty() {
            bail!("Terraform has no outputs: nothing is deployed yet\nhint: run `infra up`");
        }
        let values: serde_json::Map<String, serde_json::Value> = entries
            .into_iter()
            .map(|(name, entry)| (name, entry.value))
            .collect();
        // serde's messages name the field ("missing field `sql_ip`"); a type
        // error could quote a value, so the message is rebuilt without it.
        serde_json::from_value(serde_json::Value::Object(values)).map_err(|e| {
            let text = e.to_string();
            let detail = if text.starts_with("missing field") {
                text
            } else {
                "an output has an unexpected type".to_owned()
            };
            anyhow::anyhow!(
                "Terraform's outputs don't match what infra expects: {detail}\nhint: run `infra up` to apply the current configuration"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> String {
        let mut map = serde_json::Map::new();
        for name in [
            "raw_bucket",
            "staging_bucket",
            "code_bucket",
            "sql_connection_name",
            "sql_ip",
            "database_name",
            "database_user",
            "service_account_email",
            "gke_cluster_name",
            "gke_location",
            "subnetwork",
            "dataset",
        ] {
            map.insert(
                name.to_owned(),
                serde_json::json!({"sensitive": false, "type": "string", "value": format!("{name}-value")}),
            );
        }
        map.insert(
            "database_password".to_owned(),
            serde_json::json!({"sensitive": true, "type": "string", "value": "hunter2-very-secret"}),
        );
        serde_json::Value::Object(map).to_string()
    }

    #[test]
    fn outputs_parse_into_the_typed_struct() {
        let out = Outputs::from_json(&sample()).unwrap();
        assert_eq!(out.code_bucket, "code_bucket-value");
        assert_eq!(out.sql_connection_name, "sql_connection_name-value");
        assert_eq!(out.database_password.expose(), "hunter2-very-secret");
    }

    #[test]
    fn the_password_never_appears_in_debug_output() {
        let out = Outputs::from_json(&sample()).unwrap();
        for text in [
            format!("{out:?}"),
            format!("{out:#?}"),
            format!("{:?}", out.database_password),
        ] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("****"), "{text}");
        }
        assert!(format!("{out:?}").contains("code_bucket-value"));
    }

    #[test]
    fn no_outputs_means_nothing_is_deployed() {
        let err = format!("{:#}", Outputs::from_json("{}").unwrap_err());
        assert!(err.contains("nothing is deployed"), "{err}");
        assert!(err.contains("hint: run `infra up`"), "{err}");
    }

    #[test]
    fn a_missing_output_is_named_and_values_are_not_quoted() {
        let mut json: serde_json::Value = serde_json::from_str(&sample()).unwrap();
        json.as_object_mut().unwrap().remove("sql_ip");
        let err = format!("{:#}", Outputs::from_json(&json.to_string()).unwrap_err());
        assert!(err.contains("missing field `sql_ip`"), "{err}");

        let mut json: serde_json::Value = serde_json::from_str(&sample()).unwrap();
        json["database_password"]["value"] = serde_json::json!(["hunter2-very-secret"]);
        let err = format!("{:#}", Outputs::from_json(&json.to_string()).unwrap_err());
        assert!(!err.contains("hunter2"), "{err}");
    }
}
