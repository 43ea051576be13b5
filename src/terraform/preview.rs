//! Planning before anything is deployed.
//!
//! The root's GCS backend needs the state bucket, which only `infra up`
//! creates. So that a first `infra plan` can still show everything `up`
//! would create, a copy of the root is planned against empty local state
//! when `terraform init` fails for that one reason, leaving the real
//! root's backend untouched.

use std::path::Path;

use anyhow::Result;

use crate::process::Failed;

use super::{RootValues, Terraform, render};

/// Overrides the GCS backend in the preview copy of the root.
const BACKEND_OVERRIDE: &str = "# Written by `infra plan` while the state bucket does not exist yet:\n# plan from empty, local state. `infra up` never uses this directory.\n\nterraform {\n  backend \"local\" {}\n}\n";

/// A root that has been through `terraform init`, ready to plan.
pub struct Ready {
    pub tf: Terraform,
    /// Set when the state bucket is missing and `tf` plans a preview copy
    /// from empty state; says so for the user.
    pub note: Option<String>,
}

/// `terraform init` in `tf`'s root; if that fails because the state bucket
/// does not exist, renders a copy of the root into `preview_dir` with a
/// local backend and inits that instead.
pub async fn init_or_preview(
    values: &RootValues,
    tf: Terraform,
    preview_dir: &Path,
) -> Result<Ready> {
    let Err(err) = tf.init().await else {
        return Ok(Ready { tf, note: None });
    };
    if !missing_state_bucket(&err) {
        return Err(err);
    }
    let mut files = render::render(values)?;
    files.push((
        "backend_override.tf".to_owned(),
        BACKEND_OVERRIDE.to_owned(),
    ));
    render::write(preview_dir, &files)?;
    let preview = tf.for_dir(preview_dir);
    preview.init().await?;
    Ok(Ready {
        tf: preview,
        note: Some(format!(
            "the state bucket gs://{} does not exist yet, so nothing is deployed: this plan starts from empty state (`infra up` creates the bucket)",
            values.state_bucket
        )),
    })
}

/// Whether `terraform init` failed because the GCS backend's bucket is missing.
pub(super) fn missing_state_bucket(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|e| e.downcast_ref::<Failed>())
        .any(|f| {
            f.tail.contains("bucket doesn't exist") || f.tail.contains("bucket does not exist")
        })
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    fn init_failure(tail: &str) -> anyhow::Error {
        anyhow::Error::new(Failed {
            argv: "terraform init".to_owned(),
            status: std::process::ExitStatus::from_raw(256),
            code: Some(1),
            tail: tail.to_owned(),
            head: String::new(),
        })
        .context("`terraform init` failed")
    }

    #[test]
    fn a_missing_state_bucket_is_told_from_other_init_failures() {
        // What terraform's gcs backend prints when the bucket is missing.
        let missing = init_failure(
            "Error: Failed to get existing workspaces: querying Cloud Storage failed: storage: bucket doesn't exist",
        );
        assert!(missing_state_bucket(&missing));
        let offline = init_failure(
            "Error: Failed to get existing workspaces: querying Cloud Storage failed: dial tcp: no such host",
        );
        assert!(!missing_state_bucket(&offline));
    }
}
