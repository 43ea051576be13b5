//! The labels that mark what a deployment owns.
//!
//! Terraform puts them on every resource it creates (they reach the root
//! module as the `labels` variable), runs put them on the Dataproc clusters
//! and jobs they create, and `down` finds leftovers by them. They are
//! defined here, below both `terraform` and `backend`, so that the two
//! agree without importing each other.

use std::collections::BTreeMap;

/// The label every resource `infra` creates carries.
pub const MANAGED_BY: (&str, &str) = ("managed-by", "infra");

/// The key of the label that names the deployment.
pub const DEPLOYMENT: &str = "deployment";

/// The labels of everything deployment `deployment` owns.
pub fn for_deployment(deployment: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (DEPLOYMENT.to_owned(), deployment.to_owned()),
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_is_marked_as_infra_s_and_by_name() {
        let labels = for_deployment("bootcamp-prod");
        assert_eq!(labels.len(), 2);
        assert_eq!(labels["managed-by"], "infra");
        assert_eq!(labels["deployment"], "bootcamp-prod");
    }
}
