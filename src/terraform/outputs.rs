//! Terraform's outputs as one typed struct, read from `terraform output
//! -json`. The rest of `infra` reads bucket names, the Cloud SQL
//! connection and the service account from here, never from state files.
//!
//! There is no password among them: the SQL user's password is write-only
//! and ephemeral (`terraform/modules/cloudsql`), so neither the state nor
//! the outputs hold one.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// What the root module outputs (templates/terraform/outputs.tf.tera).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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
    pub service_account_email: String,
    pub gke_cluster_name: String,
    pub gke_location: String,
    /// The private subnet Dataproc clusters run in.
    pub subnetwork: String,
    pub dataset: String,
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
        serde_json::Value::Object(map).to_string()
    }

    #[test]
    fn outputs_parse_into_the_typed_struct() {
        let out = Outputs::from_json(&sample()).unwrap();
        assert_eq!(out.code_bucket, "code_bucket-value");
        assert_eq!(out.sql_connection_name, "sql_connection_name-value");
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
        json["sql_ip"]["value"] = serde_json::json!(["10.1.2.3-do-not-quote"]);
        let err = format!("{:#}", Outputs::from_json(&json.to_string()).unwrap_err());
        assert!(!err.contains("do-not-quote"), "{err}");
    }
}
