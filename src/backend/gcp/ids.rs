//! Google's rules for the names and ids `infra` chooses, in one place.
//!
//! Each API documents its own alphabet and length: a Dataproc job id is not
//! a BigQuery job id is not a label value. Every id `infra` sends is built
//! here, so each rule is written (and tested against its documented limit)
//! once.
//!
//! | what | characters | length | source |
//! | --- | --- | --- | --- |
//! | Dataproc `requestId` | `A-Za-z0-9_-` | ≤ 40 | dataproc.v1.json, `requestId` |
//! | Dataproc job id | `A-Za-z0-9_-` | ≤ 100 | dataproc.v1.json, `JobReference.jobId` |
//! | Dataproc batch id | `a-z0-9-` | 4–63 | dataproc.v1.json, `batchId` |
//! | Dataproc cluster name | `a-z0-9-`, starts with a letter, no trailing `-` | ≤ 51 | Dataproc docs |
//! | label value | `a-z0-9_-` | ≤ 63 | resource-manager label rules |
//! | BigQuery job id | `A-Za-z0-9_-` | ≤ 1024 | bigquery.v2.json, `JobReference.jobId` |

use rand::Rng as _;

pub const REQUEST_ID_MAX: usize = 40;
pub const DATAPROC_JOB_ID_MAX: usize = 100;
pub const BATCH_ID_MAX: usize = 63;
pub const BATCH_ID_MIN: usize = 4;
pub const CLUSTER_NAME_MAX: usize = 51;
pub const LABEL_VALUE_MAX: usize = 63;
pub const BIGQUERY_JOB_ID_MAX: usize = 1024;

/// Keeps `A-Za-z0-9_-`, replacing anything else with `replacement`.
fn keep(text: &str, lower: bool, underscore: bool, replacement: char) -> String {
    text.chars()
        .map(|c| if lower { c.to_ascii_lowercase() } else { c })
        .map(|c| {
            let ok = (c.is_ascii_digit() || c == '-')
                || (c == '_' && underscore)
                || (c.is_ascii_lowercase())
                || (c.is_ascii_uppercase() && !lower);
            if ok { c } else { replacement }
        })
        .collect()
}

fn truncate(mut text: String, max: usize) -> String {
    text.truncate(max);
    text
}

/// 16 random hex digits: enough that two attempts never share an id.
fn nonce() -> String {
    format!("{:016x}", rand::rng().random::<u64>())
}

/// A Dataproc `requestId`, fresh for each logical attempt (a retry of the
/// same HTTP call reuses it; a new attempt gets a new one). The readable
/// `purpose` is cut so the id stays within 40 characters: a reused id
/// would return the operation of an earlier, different request.
pub fn request_id(purpose: &str) -> String {
    let nonce = nonce();
    let room = REQUEST_ID_MAX - nonce.len() - 1;
    let purpose = truncate(keep(purpose, false, true, '-'), room);
    format!("{purpose}-{nonce}")
}

/// A Dataproc job id: `A-Za-z0-9_-`, at most 100 characters.
pub fn dataproc_job_id(parts: &[&str]) -> String {
    truncate(
        keep(&parts.join("-"), false, true, '-'),
        DATAPROC_JOB_ID_MAX,
    )
}

/// A Serverless batch id: lower-case letters, digits and `-`, 4 to 63
/// characters (too short an id is padded).
pub fn batch_id(parts: &[&str]) -> String {
    let mut id = truncate(keep(&parts.join("-"), true, false, '-'), BATCH_ID_MAX);
    while id.len() < BATCH_ID_MIN {
        id.push('0');
    }
    id
}

/// A Dataproc cluster name: starts with a lower-case letter, then letters,
/// digits and `-`, no trailing `-`, at most 51 characters. The random tail
/// keeps a new cluster's name apart from one still being deleted.
pub fn cluster_name(deployment: &str, run_id: &str) -> String {
    let tail = &nonce()[..4];
    let run = keep(run_id, true, false, '-');
    let room = CLUSTER_NAME_MAX - tail.len() - 1;
    let mut head = keep(&format!("{deployment}-{run}"), true, false, '-');
    if !head.starts_with(|c: char| c.is_ascii_lowercase()) {
        head.insert_str(0, "infra-");
    }
    let head = truncate(head, room);
    format!("{}-{tail}", head.trim_end_matches('-'))
}

/// A label value: lower-case letters, digits, `_` and `-`, at most 63.
pub fn label_value(text: &str) -> String {
    truncate(keep(text, true, true, '_'), LABEL_VALUE_MAX)
}

/// A BigQuery job id: `A-Za-z0-9_-`, at most 1024 characters.
pub fn bigquery_job_id(parts: &[&str]) -> String {
    truncate(
        keep(&parts.join("_"), false, true, '_'),
        BIGQUERY_JOB_ID_MAX,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(text: &str, allowed: impl Fn(char) -> bool) -> bool {
        text.chars().all(allowed)
    }

    fn id_char(c: char) -> bool {
        c.is_ascii_alphanumeric() || c == '_' || c == '-'
    }

    #[test]
    fn request_ids_fit_40_characters_and_differ_per_attempt() {
        for purpose in [
            "",
            "delete",
            &"infra-down-delete-".repeat(10),
            "create cluster/é",
        ] {
            let id = request_id(purpose);
            assert!(id.len() <= REQUEST_ID_MAX, "{id} has {} chars", id.len());
            assert!(only(&id, id_char), "{id}");
        }
        // The review finding: `infra-down-delete-{cluster}` was reused for a
        // later cluster of the same name, which then was never deleted.
        assert_ne!(request_id("delete-c"), request_id("delete-c"));
    }

    #[test]
    fn dataproc_job_ids_fit_100_characters() {
        assert_eq!(
            dataproc_job_id(&["run-2026.11.24", "user behavior"]),
            "run-2026-11-24-user-behavior"
        );
        let long = dataproc_job_id(&[&"x".repeat(120), "t"]);
        assert_eq!(long.len(), DATAPROC_JOB_ID_MAX);
        assert!(only(&long, id_char));
    }

    #[test]
    fn batch_ids_are_lower_case_4_to_63() {
        let id = batch_id(&["20261125T144000Z-ab12", "user_behavior", "1"]);
        assert_eq!(id, "20261125t144000z-ab12-user-behavior-1");
        assert_eq!(batch_id(&[&"A".repeat(80)]).len(), BATCH_ID_MAX);
        assert_eq!(batch_id(&["a"]), "a000");
        assert!(only(&batch_id(&["Ö_x y"]), |c| c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || c == '-'));
    }

    #[test]
    fn cluster_names_start_with_a_letter_and_fit_51() {
        for (deployment, run) in [
            ("infra", "20261125T144000Z-ab12"),
            ("9lives", "r"),
            (
                &"Very_Long-Deployment".repeat(5) as &str,
                "20261125T144000Z-ab12",
            ),
        ] {
            let name = cluster_name(deployment, run);
            assert!(name.len() <= CLUSTER_NAME_MAX, "{name}");
            assert!(name.starts_with(|c: char| c.is_ascii_lowercase()), "{name}");
            assert!(!name.ends_with('-'), "{name}");
            assert!(
                only(&name, |c| c.is_ascii_lowercase()
                    || c.is_ascii_digit()
                    || c == '-'),
                "{name}"
            );
        }
        assert!(
            cluster_name("infra", "20261125T144000Z-ab12")
                .starts_with("infra-20261125t144000z-ab12-")
        );
    }

    #[test]
    fn label_values_are_lower_case_and_fit_63() {
        assert_eq!(label_value("User Behavior"), "user_behavior");
        assert_eq!(label_value(&"a".repeat(70)).len(), LABEL_VALUE_MAX);
    }

    #[test]
    fn bigquery_job_ids_fit_1024() {
        assert_eq!(
            bigquery_job_id(&["run-1", "load", "ds", "t.x"]),
            "run-1_load_ds_t_x"
        );
        assert_eq!(
            bigquery_job_id(&[&"x".repeat(2000)]).len(),
            BIGQUERY_JOB_ID_MAX
        );
    }
}
