//! Renders the Terraform root module from the resolved settings.
//!
//! Settings are validated into [`RootValues`] first, so a bad name or an
//! open CIDR is an error that names the setting, not a Terraform failure
//! ten minutes into an apply. Values reach the templates already encoded as
//! HCL literals, so no setting can inject HCL. The output is deterministic:
//! the same settings give byte-identical files, and a file is rewritten only
//! when its bytes change.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::assets;
use crate::settings::{Settings, env_var};

use super::cidr::{validate_operator_cidr, validate_private_services_range};

/// Everything the root module is rendered from, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RootValues {
    pub project: String,
    pub region: String,
    pub zone: String,
    pub deployment: String,
    pub state_bucket: String,
    pub impersonate_service_account: Option<String>,
    /// Who runs `up`: granted Token Creator on the pipeline's account.
    pub operator: Option<String>,
    pub raw_bucket_name: Option<String>,
    pub staging_bucket_name: Option<String>,
    pub code_bucket_name: Option<String>,
    pub buckets_force_destroy: bool,
    pub gke_node_count: u32,
    pub gke_machine_type: String,
    pub gke_deletion_protection: bool,
    pub database_version: u32,
    pub database_tier: String,
    pub database_name: String,
    pub database_user: String,
    pub database_deletion_protection: bool,
    pub operator_cidr: Option<String>,
    pub dataset: String,
    /// First address and prefix length of the private services range.
    pub private_services_address: String,
    pub private_services_prefix_length: u8,
}

/// Where `infra` renders the root: `<state-dir>/terraform`.
pub fn root_dir(settings: &Settings) -> PathBuf {
    settings.state_dir.join("terraform")
}

impl RootValues {
    /// Validates the settings the root module needs. Only the project is
    /// required; everything else has a default.
    pub fn from_settings(settings: &Settings) -> Result<RootValues> {
        let project = settings.require_project()?.to_owned();
        if let Some((domain, _)) = project.split_once(':') {
            bail!(
                "project `{project}` is domain-scoped ({domain}): infra derives bucket names, the state bucket and service account ids from the project id, and none of those may hold `:` or come out the same for two domains\nhint: create the deployment in a project with a plain id, or set `terraform.state_bucket` and every `buckets.*` name and use a project id without a domain"
            );
        }
        check(
            &project,
            "project",
            is_project_id,
            "6-30 lowercase letters, digits and hyphens, starting with a letter",
        )?;
        check(
            &settings.region,
            "region",
            is_location,
            "a region such as us-central1",
        )?;
        let deployment = settings.deployment.clone();
        check(
            &deployment,
            "deployment",
            is_deployment,
            "1-20 lowercase letters, digits and hyphens, starting with a letter (it prefixes resource names and service account ids)",
        )?;
        let zone = settings
            .gke_zone
            .clone()
            .unwrap_or_else(|| format!("{}-b", settings.region));
        check(
            &zone,
            "gke.zone",
            |z| is_location(z) && z.starts_with(&format!("{}-", settings.region)),
            "a zone of the region, such as us-central1-b",
        )?;
        let state_bucket = settings
            .terraform_state_bucket
            .clone()
            .unwrap_or_else(|| format!("{project}-{deployment}-tfstate"));
        check(
            &state_bucket,
            "terraform.state_bucket",
            is_bucket_name,
            BUCKET_RULE,
        )?;
        let mut buckets = vec![("terraform.state_bucket", &state_bucket)];
        for (key, name) in [
            ("buckets.raw", &settings.bucket_raw),
            ("buckets.staging", &settings.bucket_staging),
            ("buckets.code", &settings.bucket_code),
        ] {
            if let Some(name) = name {
                check(name, key, is_bucket_name, BUCKET_RULE)?;
                buckets.push((key, name));
            }
        }
        for (key, name) in buckets {
            if name.contains('.') && !settings.bucket_allow_dotted_names {
                bail!(
                    "invalid `{key}` = `{name}`: a bucket name with dots is a domain name, and Google creates it only for an owner verified for that domain\nhint: use hyphens instead, or set `buckets.allow_dotted_names = true` ({}) once the domain is verified",
                    env_var("buckets.allow_dotted_names")
                );
            }
        }
        if settings.gke_node_count == 0 {
            bail!(invalid("gke.node_count", "0", "at least 1"));
        }
        check(
            &settings.gke_machine_type,
            "gke.machine_type",
            is_location,
            "a machine type such as e2-standard-2",
        )?;
        if !(10..=99).contains(&settings.database_version) {
            bail!(invalid(
                "database.version",
                &settings.database_version.to_string(),
                "a PostgreSQL major version such as 15"
            ));
        }
        check(
            &settings.database_tier,
            "database.tier",
            is_location,
            "a Cloud SQL tier such as db-custom-1-3840",
        )?;
        check(
            &settings.database_name,
            "database.name",
            is_sql_identifier,
            "letters, digits and underscores, starting with a letter",
        )?;
        check(
            &settings.database_user,
            "database.user",
            is_sql_identifier,
            "letters, digits and underscores, starting with a letter",
        )?;
        check(
            &settings.dataset,
            "warehouse.dataset",
            is_sql_identifier,
            "letters, digits and underscores, starting with a letter",
        )?;
        if let Some(member) = &settings.operator {
            check(
                member,
                "operator",
                |m| {
                    (m.starts_with("user:")
                        || m.starts_with("serviceAccount:")
                        || m.starts_with("group:"))
                        && m.contains('@')
                        && !m.contains(char::is_whitespace)
                },
                "an IAM member such as user:you@example.com or serviceAccount:ci@p.iam.gserviceaccount.com",
            )?;
        }
        if let Some(account) = &settings.impersonate_service_account {
            check(
                account,
                "impersonate_service_account",
                |a| a.contains('@') && !a.contains(char::is_whitespace),
                "a service account email",
            )?;
        }
        let operator_cidr = settings
            .database_operator_cidr
            .as_deref()
            .map(validate_operator_cidr)
            .transpose()
            .with_context(|| {
                format!(
                    "invalid `database.operator_cidr` ({})",
                    env_var("database.operator_cidr")
                )
            })?;
        let (address, prefix_length) =
            validate_private_services_range(&settings.network_private_services_range)
                .with_context(|| {
                    format!(
                        "invalid `network.private_services_range` ({})",
                        env_var("network.private_services_range")
                    )
                })?;
        Ok(RootValues {
            project,
            region: settings.region.clone(),
            zone,
            deployment,
            state_bucket,
            impersonate_service_account: settings.impersonate_service_account.clone(),
            operator: settings.operator.clone(),
            raw_bucket_name: settings.bucket_raw.clone(),
            staging_bucket_name: settings.bucket_staging.clone(),
            code_bucket_name: settings.bucket_code.clone(),
            buckets_force_destroy: settings.bucket_force_destroy,
            gke_node_count: settings.gke_node_count,
            gke_machine_type: settings.gke_machine_type.clone(),
            gke_deletion_protection: settings.gke_deletion_protection,
            database_version: settings.database_version,
            database_tier: settings.database_tier.clone(),
            database_name: settings.database_name.clone(),
            database_user: settings.database_user.clone(),
            database_deletion_protection: settings.database_deletion_protection,
            operator_cidr,
            dataset: settings.dataset.clone(),
            private_services_address: address.to_string(),
            private_services_prefix_length: prefix_length,
        })
    }

    /// The VPC's name, as `terraform/modules/network` builds it.
    pub fn network_name(&self) -> String {
        format!("{}-vpc", self.deployment)
    }

    /// The labels every resource carries.
    pub fn labels(&self) -> std::collections::BTreeMap<String, String> {
        crate::labels::for_deployment(&self.deployment)
    }

    /// The Tera context: every value as an HCL literal.
    fn context(&self) -> tera::Context {
        let mut context = tera::Context::new();
        let strings = [
            ("project", Some(&self.project)),
            ("region", Some(&self.region)),
            ("zone", Some(&self.zone)),
            ("deployment", Some(&self.deployment)),
            ("state_bucket", Some(&self.state_bucket)),
            ("state_prefix", Some(&self.deployment)),
            (
                "impersonate_service_account",
                self.impersonate_service_account.as_ref(),
            ),
            ("operator", self.operator.as_ref()),
            ("raw_bucket_name", self.raw_bucket_name.as_ref()),
            ("staging_bucket_name", self.staging_bucket_name.as_ref()),
            ("code_bucket_name", self.code_bucket_name.as_ref()),
            ("gke_machine_type", Some(&self.gke_machine_type)),
            ("database_tier", Some(&self.database_tier)),
            ("database_name", Some(&self.database_name)),
            ("database_user", Some(&self.database_user)),
            ("operator_cidr", self.operator_cidr.as_ref()),
            ("dataset", Some(&self.dataset)),
            (
                "private_services_address",
                Some(&self.private_services_address),
            ),
        ];
        for (key, value) in strings {
            context.insert(
                key,
                &value.map_or_else(|| "null".to_owned(), |v| hcl_string(v)),
            );
        }
        let literals = [
            (
                "buckets_force_destroy",
                self.buckets_force_destroy.to_string(),
            ),
            ("gke_node_count", self.gke_node_count.to_string()),
            (
                "gke_deletion_protection",
                self.gke_deletion_protection.to_string(),
            ),
            ("database_version", self.database_version.to_string()),
            (
                "database_deletion_protection",
                self.database_deletion_protection.to_string(),
            ),
            (
                "database_public_ip",
                self.operator_cidr.is_some().to_string(),
            ),
            (
                "private_services_prefix_length",
                self.private_services_prefix_length.to_string(),
            ),
        ];
        for (key, value) in literals {
            context.insert(key, &value);
        }
        context.insert("labels", &hcl_map(&self.labels()));
        context
    }
}

const BUCKET_RULE: &str = "3-63 lowercase letters, digits, hyphens, underscores and dots, starting and ending with a letter or digit";

fn invalid(key: &str, value: &str, rule: &str) -> String {
    format!(
        "invalid `{key}` = `{value}`: expected {rule}\nhint: set `{key}` in infra.toml or {}",
        env_var(key)
    )
}

fn check(value: &str, key: &str, valid: impl Fn(&str) -> bool, rule: &str) -> Result<()> {
    if valid(value) {
        Ok(())
    } else {
        bail!(invalid(key, value, rule))
    }
}

fn lower_alnum_hyphen(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_project_id(s: &str) -> bool {
    (6..=30).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && lower_alnum_hyphen(s)
}

fn is_deployment(s: &str) -> bool {
    (1..=20).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && lower_alnum_hyphen(s)
}

/// Regions, zones, machine types and tiers share one alphabet.
fn is_location(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && lower_alnum_hyphen(s)
}

fn is_bucket_name(s: &str) -> bool {
    let edge = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    (3..=63).contains(&s.len())
        && s.starts_with(edge)
        && s.ends_with(edge)
        && s.chars().all(|c| edge(c) || "-_.".contains(c))
        && !s.starts_with("goog")
}

fn is_sql_identifier(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `s` as an HCL quoted string: quotes, backslashes and control characters
/// escaped, and `${`/`%{` doubled so they stay literal text.
pub fn hcl_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                out.push(c);
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `map` as a multi-line HCL object, keys quoted and `=` aligned as
/// `terraform fmt` aligns them.
fn hcl_map(map: &std::collections::BTreeMap<String, String>) -> String {
    let keys: Vec<String> = map.keys().map(|k| hcl_string(k)).collect();
    let width = keys.iter().map(String::len).max().unwrap_or(0);
    let mut out = String::from("{\n");
    for (key, value) in keys.iter().zip(map.values()) {
        out.push_str(&format!("  {key:<width$} = {}\n", hcl_string(value)));
    }
    out.push('}');
    out
}

/// The rendered root: (path relative to the root, contents), sorted by path.
/// It holds the root's files and a copy of every module, so the directory
/// is self-contained.
pub fn render(values: &RootValues) -> Result<Vec<(String, String)>> {
    let mut tera = tera::Tera::default();
    tera.autoescape_on(Vec::new());
    for (name, template) in assets::TERRAFORM_TEMPLATES {
        tera.add_raw_template(name, template)
            .with_context(|| format!("template templates/terraform/{name}.tera does not parse"))?;
    }
    let context = values.context();
    let mut files = Vec::new();
    for (name, _) in assets::TERRAFORM_TEMPLATES {
        let text = tera
            .render(name, &context)
            .with_context(|| format!("cannot render templates/terraform/{name}.tera"))?;
        files.push(((*name).to_owned(), text));
    }
    for (path, text) in assets::TERRAFORM_MODULES {
        files.push(((*path).to_owned(), (*text).to_owned()));
    }
    files.sort();
    Ok(files)
}

/// Writes `files` into `dir` (created 0700: plan files saved there hold
/// state), rewriting only changed files and removing `.tf`/`.tfvars` files
/// and module files that are no longer rendered. terraform's own files
/// (`.terraform/`, the lock file, plan files) are left alone.
pub fn write(dir: &Path, files: &[(String, String)]) -> Result<()> {
    create_private_dir(dir)?;
    let expected: BTreeSet<PathBuf> = files.iter().map(|(path, _)| dir.join(path)).collect();
    for (path, text) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        if std::fs::read(&path).is_ok_and(|old| old == text.as_bytes()) {
            continue;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        let rendered = path
            .extension()
            .is_some_and(|ext| ext == "tf" || ext == "tfvars");
        if rendered && path.is_file() && !expected.contains(&path) {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove stale {}", path.display()))?;
        }
    }
    remove_stale(&dir.join("modules"), &expected)?;
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private", dir.display()))
}

/// Removes files under `dir` that are not `expected`, then empty directories.
fn remove_stale(dir: &Path, expected: &BTreeSet<PathBuf>) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            remove_stale(&path, expected)?;
            if std::fs::read_dir(&path).is_ok_and(|mut d| d.next().is_none()) {
                std::fs::remove_dir(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
            }
        } else if !expected.contains(&path) {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove stale {}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Layer;

    fn settings(env: &[(&str, &str)]) -> Result<Settings> {
        crate::settings::testing::resolve("", env, Layer::default())
    }

    #[test]
    fn project_and_region_are_enough() {
        let s = settings(&[
            ("INFRA_PROJECT", "my-project"),
            ("INFRA_REGION", "europe-west1"),
        ])
        .unwrap();
        let values = RootValues::from_settings(&s).unwrap();
        assert_eq!(values.zone, "europe-west1-b");
        assert_eq!(values.state_bucket, "my-project-infra-tfstate");
        assert_eq!(values.operator_cidr, None);
        let files = render(&values).unwrap();
        assert_eq!(
            files,
            render(&values).unwrap(),
            "rendering is deterministic"
        );
        let tfvars = &files
            .iter()
            .find(|(p, _)| p == "terraform.tfvars")
            .unwrap()
            .1;
        assert!(
            tfvars.contains("project                      = \"my-project\"\n"),
            "{tfvars}"
        );
        assert!(
            tfvars.contains("operator_cidr                = null\n"),
            "{tfvars}"
        );
        assert!(
            tfvars.contains("database_public_ip           = false\n"),
            "{tfvars}"
        );
        assert!(
            files.iter().all(|(_, text)| !text.contains("{{")),
            "unrendered template syntax"
        );
    }

    #[test]
    fn a_missing_project_says_how_to_set_it() {
        let s = settings(&[]).unwrap();
        let err = format!("{:#}", RootValues::from_settings(&s).unwrap_err());
        assert!(err.contains("no Google Cloud project"), "{err}");
        assert!(err.contains("INFRA_PROJECT"), "{err}");
    }

    #[test]
    fn bad_settings_are_named() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("INFRA_PROJECT", "My_Project")], "`project`"),
            (
                &[
                    ("INFRA_PROJECT", "my-project"),
                    ("INFRA_DEPLOYMENT", "a-much-too-long-deployment-name"),
                ],
                "`deployment`",
            ),
            (
                &[
                    ("INFRA_PROJECT", "my-project"),
                    ("INFRA_BUCKETS_RAW", "Bad Bucket"),
                ],
                "`buckets.raw`",
            ),
            (
                &[
                    ("INFRA_PROJECT", "my-project"),
                    ("INFRA_GKE_ZONE", "europe-west1-b"),
                ],
                "`gke.zone`",
            ),
            (
                &[
                    ("INFRA_PROJECT", "my-project"),
                    ("INFRA_GKE_NODE_COUNT", "0"),
                ],
                "`gke.node_count`",
            ),
            (
                &[
                    ("INFRA_PROJECT", "my-project"),
                    ("INFRA_DATABASE_NAME", "x\"; drop"),
                ],
                "`database.name`",
            ),
            (
                &[
                    ("INFRA_PROJECT", "my-project"),
                    ("INFRA_DATABASE_OPERATOR_CIDR", "0.0.0.0/0"),
                ],
                "whole internet",
            ),
        ];
        for (env, expected) in cases {
            // SQL identifiers are refused when the settings are resolved,
            // before any command runs; the rest when the root is built.
            let err = match settings(env) {
                Ok(s) => format!("{:#}", RootValues::from_settings(&s).unwrap_err()),
                Err(e) => format!("{e:#}"),
            };
            assert!(err.contains(expected), "{env:?}: {err}");
            assert!(err.contains("hint:"), "{env:?}: {err}");
        }
    }

    #[test]
    fn an_operator_cidr_turns_on_the_public_ip() {
        let s = settings(&[
            ("INFRA_PROJECT", "my-project"),
            ("INFRA_DATABASE_OPERATOR_CIDR", "203.0.113.7/32"),
        ])
        .unwrap();
        let files = render(&RootValues::from_settings(&s).unwrap()).unwrap();
        let tfvars = &files
            .iter()
            .find(|(p, _)| p == "terraform.tfvars")
            .unwrap()
            .1;
        assert!(
            tfvars.contains("database_public_ip           = true\n"),
            "{tfvars}"
        );
        assert!(
            tfvars.contains("operator_cidr                = \"203.0.113.7/32\"\n"),
            "{tfvars}"
        );
    }

    // Issue 11: dotted bucket names need domain verification.
    #[test]
    fn bucket_names_with_dots_are_refused_unless_opted_in() {
        for (var, key) in [
            ("INFRA_BUCKETS_RAW", "buckets.raw"),
            ("INFRA_TERRAFORM_STATE_BUCKET", "terraform.state_bucket"),
        ] {
            let env = [("INFRA_PROJECT", "my-project"), (var, "data.example.com")];
            let err = format!(
                "{:#}",
                RootValues::from_settings(&settings(&env).unwrap()).unwrap_err()
            );
            assert!(err.contains(&format!("`{key}`")), "{err}");
            assert!(err.contains("verified"), "{err}");
            assert!(err.contains("buckets.allow_dotted_names"), "{err}");
            let opted_in = [env[0], env[1], ("INFRA_BUCKETS_ALLOW_DOTTED_NAMES", "true")];
            RootValues::from_settings(&settings(&opted_in).unwrap()).unwrap();
        }
    }

    // Issue 11: domain-scoped project ids are refused with a clear error.
    #[test]
    fn a_domain_scoped_project_is_refused_clearly() {
        let s = settings(&[("INFRA_PROJECT", "example.com:analytics")]).unwrap();
        let err = format!("{:#}", RootValues::from_settings(&s).unwrap_err());
        assert!(err.contains("domain-scoped (example.com)"), "{err}");
        assert!(err.contains("hint:"), "{err}");
    }

    // Issue 11: the private services range comes from config, checked.
    #[test]
    fn the_private_services_range_is_pinned_from_config() {
        let s = settings(&[
            ("INFRA_PROJECT", "my-project"),
            ("INFRA_NETWORK_PRIVATE_SERVICES_RANGE", "10.64.0.0/22"),
        ])
        .unwrap();
        let values = RootValues::from_settings(&s).unwrap();
        let files = render(&values).unwrap();
        let tfvars = &files
            .iter()
            .find(|(p, _)| p == "terraform.tfvars")
            .unwrap()
            .1;
        assert!(
            tfvars.contains("private_services_address       = \"10.64.0.0\"\n"),
            "{tfvars}"
        );
        assert!(
            tfvars.contains("private_services_prefix_length = 22\n"),
            "{tfvars}"
        );
        let s = settings(&[
            ("INFRA_PROJECT", "my-project"),
            ("INFRA_NETWORK_PRIVATE_SERVICES_RANGE", "172.16.0.0/20"),
        ])
        .unwrap();
        let err = format!("{:#}", RootValues::from_settings(&s).unwrap_err());
        assert!(err.contains("network.private_services_range"), "{err}");
        assert!(err.contains("control-plane"), "{err}");
    }

    #[test]
    fn hcl_strings_cannot_break_out() {
        assert_eq!(hcl_string("plain"), "\"plain\"");
        assert_eq!(hcl_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(hcl_string("${var.x} %{if}"), "\"$${var.x} %%{if}\"");
        assert_eq!(hcl_string("line\nnext"), "\"line\\nnext\"");
        assert_eq!(hcl_string("$5 100%"), "\"$5 100%\"");
    }

    #[test]
    fn writing_removes_stale_files_and_keeps_terraform_state() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("terraform");
        std::fs::create_dir_all(root.join("modules/old")).unwrap();
        std::fs::create_dir_all(root.join(".terraform")).unwrap();
        std::fs::write(root.join("modules/old/main.tf"), "").unwrap();
        std::fs::write(root.join("old.tf"), "").unwrap();
        std::fs::write(root.join(".terraform.lock.hcl"), "lock").unwrap();
        let files = vec![
            ("main.tf".to_owned(), "# main\n".to_owned()),
            ("modules/new/main.tf".to_owned(), "# new\n".to_owned()),
        ];
        write(&root, &files).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("main.tf")).unwrap(),
            "# main\n"
        );
        assert!(root.join("modules/new/main.tf").is_file());
        assert!(!root.join("old.tf").exists());
        assert!(!root.join("modules/old").exists());
        assert!(root.join(".terraform").is_dir());
        assert!(root.join(".terraform.lock.hcl").is_file());
    }
}
