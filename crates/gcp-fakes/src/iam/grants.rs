//! The grants the real Terraform modules make, read from their HCL: the one
//! source of truth that the stand-ins enforce and that
//! `tests/it/terraform.rs` holds to docs/iam.md. A grant is named the way
//! docs/iam.md names it: a principal (`pipeline`, `operator`,
//! `cloudsql-instance`, `gke-nodes`), a role, and a scope.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use hcl::{Body, Expression};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Project,
    Dataset,
    /// A bucket by its role: raw, staging, code.
    Bucket(String),
    /// A service account by its principal name.
    ServiceAccount(String),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Project => write!(f, "project"),
            Scope::Dataset => write!(f, "dataset"),
            Scope::Bucket(b) => write!(f, "bucket: {b}"),
            Scope::ServiceAccount(p) => write!(f, "service account: {p}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    pub principal: String,
    /// `roles/…`, or `custom:<resource name>` for a role the modules define.
    pub role: String,
    pub scope: Scope,
    /// The binding's IAM Condition (its CEL `expression`), if any.
    pub condition: Option<String>,
}

#[derive(Debug, Default)]
pub struct Found {
    pub grants: Vec<Grant>,
    /// Custom roles by resource name, with their permissions.
    pub custom_roles: BTreeMap<String, Vec<String>>,
}

/// Every grant of every module under `modules_dir` (`terraform/modules`).
pub fn from_modules(modules_dir: &Path) -> Result<Found> {
    let mut found = Found::default();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(modules_dir)
        .with_context(|| format!("cannot list {}", modules_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "tf"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let body: Body =
                hcl::parse(&text).with_context(|| format!("{} does not parse", file.display()))?;
            read_module(&body, &mut found)
                .with_context(|| format!("reading the grants of {}", file.display()))?;
        }
    }
    found.grants.sort();
    Ok(found)
}

fn read_module(body: &Body, found: &mut Found) -> Result<()> {
    for block in body.blocks().filter(|b| b.identifier() == "resource") {
        let kind = label(block, 0);
        let name = label(block, 1);
        let body = block.body();
        if kind == "google_project_iam_custom_role" {
            let permissions = attr(body, "permissions").map(strings).unwrap_or_default();
            found.custom_roles.insert(name.to_owned(), permissions);
            continue;
        }
        let scopes = match kind {
            "google_project_iam_member" => vec![Scope::Project],
            "google_bigquery_dataset_iam_member" => vec![Scope::Dataset],
            "google_service_account_iam_member" => {
                let id = text(body, "service_account_id")?;
                let account = id
                    .strip_prefix("google_service_account.")
                    .and_then(|a| a.strip_suffix(".name"))
                    .with_context(|| format!("{kind}.{name}: service_account_id {id}"))?;
                vec![Scope::ServiceAccount(principal_of_account(account))]
            }
            "google_storage_bucket_iam_member" => {
                let bucket = text(body, "bucket")?;
                if bucket == "each.value" {
                    let for_each = text(body, "for_each")?;
                    if for_each != "var.buckets" {
                        bail!("{kind}.{name}: buckets from {for_each}");
                    }
                    // The root passes module.buckets.names: raw, staging, code.
                    ["raw", "staging", "code"]
                        .map(|b| Scope::Bucket(b.to_owned()))
                        .to_vec()
                } else {
                    let role = bucket
                        .strip_prefix("var.buckets[\"")
                        .and_then(|b| b.strip_suffix("\"]"))
                        .with_context(|| format!("{kind}.{name}: bucket {bucket}"))?;
                    vec![Scope::Bucket(role.to_owned())]
                }
            }
            kind if kind.contains("iam") => {
                bail!("{kind}.{name}: an IAM resource the grants reader doesn't know")
            }
            _ => continue,
        };
        let principal = principal_of_member(&text(body, "member")?)
            .with_context(|| format!("{kind}.{name}: unknown member"))?;
        let condition = body
            .blocks()
            .find(|b| b.identifier() == "condition")
            .map(|c| text(c.body(), "expression"))
            .transpose()?;
        for role in roles(body)? {
            for scope in &scopes {
                found.grants.push(Grant {
                    principal: principal.clone(),
                    role: role.clone(),
                    scope: scope.clone(),
                    condition: condition.clone(),
                });
            }
        }
    }
    // Roles granted through `for_each = var.X` take the variable's default.
    let mut resolved = Vec::new();
    for grant in std::mem::take(&mut found.grants) {
        match grant.role.strip_prefix("var:") {
            Some(var) => {
                for role in variable_default(body, var)? {
                    resolved.push(Grant {
                        role,
                        ..grant.clone()
                    });
                }
            }
            None => resolved.push(grant),
        }
    }
    found.grants.extend(resolved);
    Ok(())
}

fn roles(body: &Body) -> Result<Vec<String>> {
    let role = attr(body, "role").context("no role")?;
    if let Expression::String(role) = role {
        return Ok(vec![role.clone()]);
    }
    let text = role.to_string();
    if let Some(custom) = text
        .strip_prefix("google_project_iam_custom_role.")
        .and_then(|r| r.strip_suffix(".name"))
    {
        return Ok(vec![format!("custom:{custom}")]);
    }
    if text == "each.value" {
        let for_each = attr(body, "for_each").context("each.value without for_each")?;
        return Ok(match for_each.to_string().strip_prefix("var.") {
            Some(var) => vec![format!("var:{var}")],
            None => strings(for_each),
        });
    }
    bail!("role {text}")
}

fn principal_of_account(account: &str) -> String {
    match account {
        "nodes" => "gke-nodes".to_owned(),
        other => other.to_owned(),
    }
}

fn principal_of_member(member: &str) -> Option<String> {
    if member == "var.operator" {
        return Some("operator".into());
    }
    if member.contains("var.sql_service_account") {
        return Some("cloudsql-instance".into());
    }
    let account = member.split("google_service_account.").nth(1)?;
    let account = account.split('.').next()?;
    Some(principal_of_account(account))
}

fn variable_default(body: &Body, name: &str) -> Result<Vec<String>> {
    let block = body
        .blocks()
        .find(|b| b.identifier() == "variable" && label(b, 0) == name)
        .with_context(|| format!("no variable {name}"))?;
    Ok(attr(block.body(), "default")
        .map(strings)
        .unwrap_or_default())
}

fn label(block: &hcl::Block, i: usize) -> &str {
    block.labels().get(i).map_or("", |l| l.as_str())
}

fn attr<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes().find(|a| a.key() == key).map(|a| a.expr())
}

fn text(body: &Body, key: &str) -> Result<String> {
    let expr = attr(body, key).with_context(|| format!("no {key}"))?;
    Ok(match expr {
        Expression::String(s) => s.clone(),
        other => other.to_string(),
    })
}

fn strings(expr: &Expression) -> Vec<String> {
    match expr {
        Expression::Array(items) => items
            .iter()
            .filter_map(|e| match e {
                Expression::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        Expression::String(s) => vec![s.clone()],
        // `toset([...])` and friends.
        Expression::FuncCall(call) => call.args.iter().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_custom_role_and_a_for_each_default_are_read() {
        let body: Body = hcl::parse(
            r#"
variable "project_roles" {
  default = ["roles/a", "roles/b"]
}
resource "google_project_iam_custom_role" "sql" {
  permissions = ["x.y.z"]
}
resource "google_project_iam_member" "each" {
  for_each = var.project_roles
  role     = each.value
  member   = "serviceAccount:${google_service_account.pipeline.email}"
}
resource "google_project_iam_member" "custom" {
  role   = google_project_iam_custom_role.sql.name
  member = "serviceAccount:${google_service_account.pipeline.email}"
}
resource "google_service_account_iam_member" "tc" {
  service_account_id = google_service_account.pipeline.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = var.operator
}
"#,
        )
        .unwrap();
        let mut found = Found::default();
        read_module(&body, &mut found).unwrap();
        let grants: Vec<String> = found
            .grants
            .iter()
            .map(|g| format!("{} {} {}", g.principal, g.role, g.scope))
            .collect();
        assert!(
            grants.contains(&"pipeline roles/a project".to_owned()),
            "{grants:?}"
        );
        assert!(
            grants.contains(&"pipeline roles/b project".to_owned()),
            "{grants:?}"
        );
        assert!(
            grants.contains(&"pipeline custom:sql project".to_owned()),
            "{grants:?}"
        );
        assert!(
            grants.contains(
                &"operator roles/iam.serviceAccountTokenCreator service account: pipeline"
                    .to_owned()
            ),
            "{grants:?}"
        );
        assert_eq!(found.custom_roles["sql"], vec!["x.y.z".to_owned()]);
    }

    #[test]
    fn an_unknown_iam_resource_is_refused() {
        let body: Body =
            hcl::parse("resource \"google_project_iam_binding\" \"b\" {\n  role = \"r\"\n}\n")
                .unwrap();
        assert!(read_module(&body, &mut Found::default()).is_err());
    }
}
