//! The gcp target's Terraform, tested without Google Cloud.
//!
//! The google provider can't be downloaded here, so `terraform validate`
//! can't run. These are the strongest stand-ins: snapshots of the rendered
//! root, `terraform fmt -check`, a conformance check of every `.tf` file
//! against the providers' schemas (vendored in `tests/fixtures/terraform-schema`), checkov,
//! and the real `terraform` binary driving a root of `terraform_data`
//! resources through `up` and `down` with a fake [`Cloud`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;
use async_trait::async_trait;
use hcl::{Block, Body, Expression, ObjectKey};
use infra::backend::local::bucket::LocalBucket;
use infra::process::Echo;
use infra::settings::{Layer, Settings, Sources};
use infra::terraform::deploy::{self, DownReport, Protected, Retry, Teardown};
use infra::terraform::leftovers::leftovers;
use infra::terraform::runner::PlanOptions;
use infra::terraform::{Cloud, Outputs, PeeringRemoval, RootValues, Terraform};
use serde::Deserialize;

use crate::harness::Env;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn repo_path(path: &str) -> PathBuf {
    repo().join(path)
}

fn schema_dir() -> PathBuf {
    repo().join("tests/fixtures/terraform-schema")
}

/// Every setting the root reads, away from its default.
const NON_DEFAULT_TOML: &str = r#"project = "acme-analytics-prod"
region = "europe-west1"
deployment = "bootcamp-prod"
impersonate_service_account = "deployer@acme-analytics-prod.iam.gserviceaccount.com"

[buckets]
raw = "acme-raw-data"
staging = "acme-staging-data"
force_destroy = false

[gke]
node_count = 3
machine_type = "e2-standard-4"
deletion_protection = true
zone = "europe-west1-c"

[database]
version = 16
tier = "db-custom-2-7680"
name = "analytics"
user = "pipeline"
operator_cidr = "203.0.113.7/32"
deletion_protection = true

[warehouse]
dataset = "analytics"

[terraform]
state_bucket = "acme-tfstate"
"#;

fn default_env() -> Env {
    Env::new()
        .var("INFRA_PROJECT", "my-project")
        .var("INFRA_REGION", "us-central1")
}

fn non_default_env() -> Env {
    let env = Env::new();
    env.write("infra.toml", NON_DEFAULT_TOML);
    env
}

/// Runs `infra render` and returns the directory it printed.
fn render(env: &Env) -> PathBuf {
    let out = env.infra(&["render"]).ok();
    let dir = PathBuf::from(out.stdout.trim());
    assert_eq!(dir, env.state().join("terraform"), "{}", out.stderr);
    dir
}

/// Every file under `dir` (terraform's own `.terraform/` aside), by relative path.
fn read_tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel.starts_with(".terraform") {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.insert(rel, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The root's own files in full; the module copies are checked to be
/// byte-identical to `terraform/modules` and only listed.
fn snapshot_text(dir: &Path) -> String {
    let mut text = String::new();
    for (path, contents) in read_tree(dir) {
        if let Some(module) = path.strip_prefix("modules/") {
            let original =
                std::fs::read_to_string(repo().join("terraform/modules").join(module)).unwrap();
            assert_eq!(
                contents, original,
                "{path} is not a copy of terraform/modules/{module}"
            );
            text.push_str(&format!("=== {path}: copy of terraform/modules/{module}\n"));
        } else {
            text.push_str(&format!("=== {path}\n{contents}"));
        }
    }
    text
}

fn assert_rendered_snapshot(name: &str, env: &Env) {
    let out = env.infra(&["render"]).ok();
    let dir = PathBuf::from(out.stdout.trim());
    let text = format!(
        "$ infra render\n{}{}\n{}",
        out.stdout,
        out.stderr,
        snapshot_text(&dir)
    );
    insta::with_settings!({filters => vec![(r"/[^\s]*/infra-it-[A-Za-z0-9_]+", "[TEMP]")]}, {
        insta::assert_snapshot!(name, text);
    });
}

#[test]
fn the_default_root_renders_from_project_and_region_alone() {
    assert_rendered_snapshot("rendered_default", &default_env());
}

#[test]
fn a_non_default_root_carries_every_setting() {
    assert_rendered_snapshot("rendered_non_default", &non_default_env());
}

#[test]
fn rendering_is_deterministic() {
    let first = non_default_env();
    let dir = render(&first);
    let before = read_tree(&dir);
    render(&first);
    assert_eq!(before, read_tree(&dir), "a second render changed files");
    let second = non_default_env();
    let other = read_tree(&render(&second));
    assert_eq!(before, other, "two state dirs with the same config differ");
}

#[test]
fn render_refuses_an_open_operator_cidr_and_a_missing_project() {
    let env = default_env().var("INFRA_DATABASE_OPERATOR_CIDR", "0.0.0.0/0");
    let out = env.infra(&["render"]).fails(1);
    assert!(out.stderr.contains("whole internet"), "{}", out.stderr);
    assert!(out.stderr.contains("hint:"), "{}", out.stderr);

    let env = Env::new();
    let out = env.infra(&["render"]).fails(1);
    assert!(
        out.stderr.contains("no Google Cloud project is configured"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("hint: set `project` in infra.toml or INFRA_PROJECT"),
        "{}",
        out.stderr
    );
    let out = env.infra(&["--target", "gcp", "plan"]).fails(1);
    assert!(out.stderr.contains("hint: set `project`"), "{}", out.stderr);
}

/// `infra` with no Google credentials anywhere it looks.
fn without_credentials(env: &Env, args: &[&str]) -> std::process::Output {
    let home = env.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    env.command(args)
        .env("HOME", &home)
        .env("NO_GCE_CHECK", "True")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("CLOUDSDK_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn gcp_plan_without_credentials_renders_then_plans_offline_without_terraform() {
    let env = default_env();
    let out = without_credentials(&env, &["--target", "gcp", "plan"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("why offline: no Google Cloud credentials found"),
        "{stdout}"
    );
    let root = env.state().join("terraform");
    assert!(root.join("main.tf").is_file(), "plan renders first");
    assert!(
        !root.join(".terraform").exists(),
        "terraform init ran without credentials"
    );
}

#[test]
fn gcp_plan_without_terraform_says_how_to_install_it() {
    let env = default_env();
    let key = env.write("key.json", "{}");
    let empty = env.path().join("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let out = env
        .command(&["--target", "gcp", "plan"])
        .env("GOOGLE_APPLICATION_CREDENTIALS", &key)
        .env("PATH", &empty)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("`terraform` was not found"), "{stderr}");
    assert!(stderr.contains("hint: install Terraform"), "{stderr}");
}

/// terraform, with a CLI config that exists (the machines point
/// `TF_CLI_CONFIG_FILE` at one that doesn't).
pub(crate) fn terraform(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new("terraform")
        .args(args)
        .current_dir(dir)
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .expect("terraform is on PATH")
}

#[test]
fn terraform_fmt_check_passes_on_the_modules_and_the_rendered_roots() {
    let default = default_env();
    let non_default = non_default_env();
    let dirs = [
        repo().join("terraform"),
        repo().join("tests/fixtures/terraform_data"),
        render(&default),
        render(&non_default),
    ];
    for dir in &dirs {
        let out = terraform(&["fmt", "-check", "-recursive", "-diff", "."], dir);
        assert!(
            out.status.success(),
            "terraform fmt -check failed in {}:\n{}{}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ---------------------------------------------------------------------------
// Conformance against the provider schemas.

#[derive(Deserialize)]
struct ProviderSchema {
    provider: String,
    resources: BTreeMap<String, Node>,
    data_sources: BTreeMap<String, Node>,
    #[serde(default)]
    ephemeral_resources: BTreeMap<String, Node>,
    /// The `provider` block's arguments.
    #[serde(default)]
    provider_config: Option<Node>,
}

#[derive(Deserialize, Default)]
struct Node {
    #[serde(default)]
    attributes: BTreeMap<String, Flag>,
    #[serde(default)]
    blocks: BTreeMap<String, BlockSchema>,
}

#[derive(Deserialize)]
struct BlockSchema {
    required: bool,
    list: bool,
    #[serde(flatten)]
    node: Node,
}

#[derive(Deserialize)]
struct Flag {
    required: bool,
    /// A nested attribute (an object such as helm 3's `kubernetes`): its keys.
    #[serde(default)]
    attributes: Option<BTreeMap<String, Flag>>,
}

pub(crate) struct Schemas {
    resources: BTreeMap<String, Node>,
    data_sources: BTreeMap<String, Node>,
    ephemeral: BTreeMap<String, Node>,
    /// provider name -> its `provider` block's schema
    providers: BTreeMap<String, Node>,
    /// provider name -> the version the schema file describes
    versions: BTreeMap<String, String>,
}

pub(crate) fn load_schemas() -> Schemas {
    let dir = schema_dir();
    let mut schemas = Schemas {
        resources: BTreeMap::new(),
        data_sources: BTreeMap::new(),
        ephemeral: BTreeMap::new(),
        providers: BTreeMap::new(),
        versions: BTreeMap::new(),
    };
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the provider schemas in {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        let schema: ProviderSchema = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // The file name carries the provider's version (the JSON's
        // `version` is the CDKTF bindings' own).
        let stem = path.file_stem().unwrap().to_str().unwrap();
        let version = stem.strip_prefix(&format!("{}-", schema.provider)).unwrap();
        schemas
            .versions
            .insert(schema.provider.clone(), version.to_owned());
        schemas.resources.extend(schema.resources);
        schemas.data_sources.extend(schema.data_sources);
        schemas.ephemeral.extend(schema.ephemeral_resources);
        if let Some(config) = schema.provider_config {
            schemas.providers.insert(schema.provider.clone(), config);
        }
    }
    assert!(
        schemas.resources.contains_key("google_storage_bucket"),
        "no google schema in {}",
        dir.display()
    );
    schemas
}

const RESOURCE_META_ATTRS: &[&str] = &["count", "for_each", "depends_on", "provider"];
const RESOURCE_META_BLOCKS: &[&str] = &["lifecycle", "provisioner", "connection"];
const MODULE_META_ATTRS: &[&str] = &[
    "source",
    "version",
    "count",
    "for_each",
    "depends_on",
    "providers",
];

pub(crate) fn label(block: &Block, i: usize) -> &str {
    block.labels().get(i).map_or("", |l| l.as_str())
}

fn string_value(expr: &Expression) -> Option<&str> {
    match expr {
        Expression::String(s) => Some(s),
        _ => None,
    }
}

fn object_entries(expr: &Expression) -> Vec<(String, &Expression)> {
    let Expression::Object(object) = expr else {
        return Vec::new();
    };
    object
        .iter()
        .filter_map(|(key, value)| {
            let key = match key {
                ObjectKey::Identifier(id) => id.as_str().to_owned(),
                ObjectKey::Expression(e) => string_value(e)?.to_owned(),
                _ => return None,
            };
            Some((key, value))
        })
        .collect()
}

pub(crate) fn parse(path: &Path) -> Body {
    let text = std::fs::read_to_string(path).unwrap();
    hcl::parse(&text).unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()))
}

pub(crate) fn tf_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "tf"))
        .collect();
    files.sort();
    files
}

/// Every directory holding `.tf` files under `root` (`.terraform` aside).
fn module_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if !tf_files(root).is_empty() {
        dirs.push(root.to_path_buf());
    }
    let mut children: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    children.sort();
    for child in children {
        dirs.extend(module_dirs(&child));
    }
    dirs
}

/// A module's variables: name -> required (no default).
fn variables(dir: &Path) -> BTreeMap<String, bool> {
    let mut vars = BTreeMap::new();
    for file in tf_files(dir) {
        for block in parse(&file)
            .blocks()
            .filter(|b| b.identifier() == "variable")
        {
            let required = !block.body().attributes().any(|a| a.key() == "default");
            vars.insert(label(block, 0).to_owned(), required);
        }
    }
    vars
}

/// Checks a resource (or nested block) body against its schema node.
fn check_body(body: &Body, node: &Node, at: &str, top: bool, errors: &mut Vec<String>) {
    for attr in body.attributes() {
        let key = attr.key();
        if !(node.attributes.contains_key(key) || top && RESOURCE_META_ATTRS.contains(&key)) {
            errors.push(format!("{at}: unknown attribute `{key}`"));
        }
        if let Some(nested) = node.attributes.get(key).and_then(|f| f.attributes.as_ref()) {
            check_object(attr.expr(), nested, &format!("{at}.{key}"), errors);
        }
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for block in body.blocks() {
        let name = block.identifier();
        if top && RESOURCE_META_BLOCKS.contains(&name) {
            continue;
        }
        let (name, content) = if name == "dynamic" {
            let name = label(block, 0);
            let attrs: BTreeSet<&str> = block.body().attributes().map(|a| a.key()).collect();
            if !attrs.contains("for_each") {
                errors.push(format!("{at}: dynamic \"{name}\" has no for_each"));
            }
            for extra in attrs
                .iter()
                .filter(|a| !["for_each", "iterator", "labels"].contains(a))
            {
                errors.push(format!(
                    "{at}: dynamic \"{name}\" has unknown attribute `{extra}`"
                ));
            }
            let Some(content) = block.body().blocks().find(|b| b.identifier() == "content") else {
                errors.push(format!("{at}: dynamic \"{name}\" has no content block"));
                continue;
            };
            (name, content.body())
        } else {
            (name, block.body())
        };
        *seen.entry(name.to_owned()).or_default() += 1;
        match node.blocks.get(name) {
            Some(schema) => check_body(
                content,
                &schema.node,
                &format!("{at}.{name}"),
                false,
                errors,
            ),
            None if node.attributes.contains_key(name) => errors.push(format!(
                "{at}: `{name}` is an attribute (`{name} = {{ … }}`), not a block"
            )),
            None => errors.push(format!("{at}: unknown block `{name}`")),
        }
    }
    for (name, flag) in &node.attributes {
        if flag.required && !body.attributes().any(|a| a.key() == name) {
            errors.push(format!("{at}: required attribute `{name}` is missing"));
        }
    }
    for (name, schema) in &node.blocks {
        let count = seen.get(name).copied().unwrap_or(0);
        if schema.required && count == 0 {
            errors.push(format!("{at}: required block `{name}` is missing"));
        }
        if !schema.list && count > 1 {
            errors.push(format!(
                "{at}: block `{name}` may appear once, found {count}"
            ));
        }
    }
}

/// Checks an object given to a nested attribute: known keys, required ones set.
fn check_object(
    expr: &Expression,
    attributes: &BTreeMap<String, Flag>,
    at: &str,
    errors: &mut Vec<String>,
) {
    let Expression::Object(_) = expr else {
        // A reference or a function call: nothing to check statically.
        return;
    };
    let entries = object_entries(expr);
    for (key, value) in &entries {
        match attributes.get(key) {
            None => errors.push(format!("{at}: unknown attribute `{key}`")),
            Some(flag) => {
                if let Some(nested) = &flag.attributes {
                    check_object(value, nested, &format!("{at}.{key}"), errors);
                }
            }
        }
    }
    for (name, flag) in attributes {
        if flag.required && !entries.iter().any(|(k, _)| k == name) {
            errors.push(format!("{at}: required attribute `{name}` is missing"));
        }
    }
}

/// Every schema node that takes labels must get them ("labels on everything").
fn check_labels(body: &Body, node: &Node, at: &str, errors: &mut Vec<String>) {
    const LABELS: &[&str] = &["labels", "resource_labels", "user_labels"];
    let takes = LABELS.iter().any(|l| node.attributes.contains_key(*l));
    let has = body.attributes().any(|a| LABELS.contains(&a.key()));
    if takes && !has {
        errors.push(format!("{at}: takes labels but sets none"));
    }
    for block in body.blocks() {
        if let Some(schema) = node.blocks.get(block.identifier()) {
            check_labels(
                block.body(),
                &schema.node,
                &format!("{at}.{}", block.identifier()),
                errors,
            );
        }
    }
}

/// Whether `version` satisfies a constraint such as `~> 6.50` or `>= 1.5`.
fn satisfies(version: &str, constraint: &str) -> bool {
    let parse = |v: &str| -> Vec<u64> { v.trim().split('.').map(|p| p.parse().unwrap()).collect() };
    let have = parse(version);
    constraint.split(',').all(|part| {
        let part = part.trim();
        if let Some(want) = part.strip_prefix("~>") {
            let want = parse(want);
            let prefix = &want[..want.len() - 1];
            have >= want && have[..prefix.len()] == *prefix
        } else if let Some(want) = part.strip_prefix(">=") {
            have >= parse(want)
        } else if let Some(want) = part.strip_prefix('=') {
            have == parse(want)
        } else {
            have == parse(part)
        }
    })
}

/// Checks one module directory; returns the provider pins it declares.
pub(crate) fn check_module(
    dir: &Path,
    schemas: &Schemas,
    errors: &mut Vec<String>,
) -> BTreeMap<String, String> {
    let mut pins = BTreeMap::new();
    for file in tf_files(dir) {
        let name = file
            .strip_prefix(repo())
            .unwrap_or(&file)
            .display()
            .to_string();
        for block in parse(&file).blocks() {
            let at = format!("{name}: {} {}", block.identifier(), label(block, 0));
            match block.identifier() {
                "resource" | "data" | "ephemeral" => {
                    let kind = label(block, 0);
                    let at = format!("{name}: {kind}.{}", label(block, 1));
                    let table = match block.identifier() {
                        "resource" => &schemas.resources,
                        "data" => &schemas.data_sources,
                        _ => &schemas.ephemeral,
                    };
                    match table.get(kind) {
                        Some(node) => {
                            check_body(block.body(), node, &at, true, errors);
                            check_labels(block.body(), node, &at, errors);
                        }
                        None => errors.push(format!(
                            "{at}: unknown {} type `{kind}`",
                            block.identifier()
                        )),
                    }
                }
                "module" => {
                    let Some(source) = block
                        .body()
                        .attributes()
                        .find(|a| a.key() == "source")
                        .and_then(|a| string_value(a.expr()))
                    else {
                        errors.push(format!("{at}: no literal source"));
                        continue;
                    };
                    let module_dir = dir.join(source);
                    if !module_dir.is_dir() {
                        errors.push(format!("{at}: source {source} is not a directory"));
                        continue;
                    }
                    let declared = variables(&module_dir);
                    let passed: BTreeSet<&str> = block
                        .body()
                        .attributes()
                        .map(|a| a.key())
                        .filter(|k| !MODULE_META_ATTRS.contains(k))
                        .collect();
                    for var in &passed {
                        if !declared.contains_key(*var) {
                            errors.push(format!(
                                "{at}: passes `{var}`, which {source} does not declare"
                            ));
                        }
                    }
                    for (var, required) in &declared {
                        if *required && !passed.contains(var.as_str()) {
                            errors.push(format!(
                                "{at}: required variable `{var}` of {source} is not set"
                            ));
                        }
                    }
                }
                "terraform" => {
                    for providers in block
                        .body()
                        .blocks()
                        .filter(|b| b.identifier() == "required_providers")
                    {
                        for attr in providers.body().attributes() {
                            let entries = object_entries(attr.expr());
                            let get = |key: &str| {
                                entries
                                    .iter()
                                    .find(|(k, _)| k == key)
                                    .and_then(|(_, v)| string_value(v))
                            };
                            let source = get("source").unwrap_or_default();
                            if source != format!("hashicorp/{}", attr.key()) {
                                errors.push(format!(
                                    "{at}: provider {} has source `{source}`",
                                    attr.key()
                                ));
                            }
                            if let Some(version) = get("version") {
                                pins.insert(attr.key().to_owned(), version.to_owned());
                            }
                        }
                    }
                }
                "provider" => {
                    let provider = label(block, 0);
                    match schemas.providers.get(provider) {
                        Some(node) => {
                            let mut body = block.body().clone();
                            // `alias` is Terraform's own.
                            body = body
                                .into_iter()
                                .filter(|s| s.as_attribute().is_none_or(|a| a.key() != "alias"))
                                .collect();
                            check_body(
                                &body,
                                node,
                                &format!("{name}: provider {provider}"),
                                false,
                                errors,
                            );
                        }
                        None => errors.push(format!("{at}: no schema for provider `{provider}`")),
                    }
                }
                "variable" | "output" | "locals" => {}
                other => errors.push(format!("{at}: unexpected top-level block `{other}`")),
            }
        }
    }
    for (provider, constraint) in &pins {
        match schemas.versions.get(provider) {
            Some(version) if satisfies(version, constraint) => {}
            Some(version) => errors.push(format!(
                "{}: pins {provider} `{constraint}`, which the schema's version {version} does not satisfy",
                dir.display()
            )),
            None => errors.push(format!("{}: pins {provider}, which has no schema", dir.display())),
        }
    }
    pins
}

/// Checks the root's terraform.tfvars against its variables.
pub(crate) fn check_tfvars(root: &Path, errors: &mut Vec<String>) {
    let declared = variables(root);
    let tfvars = parse(&root.join("terraform.tfvars"));
    let set: BTreeSet<&str> = tfvars.attributes().map(|a| a.key()).collect();
    for key in &set {
        if !declared.contains_key(*key) {
            errors.push(format!(
                "terraform.tfvars sets `{key}`, which the root does not declare"
            ));
        }
    }
    for (var, required) in &declared {
        if *required && !set.contains(var.as_str()) {
            errors.push(format!(
                "terraform.tfvars does not set required variable `{var}`"
            ));
        }
    }
}

#[test]
fn every_tf_file_conforms_to_the_provider_schemas() {
    let schemas = load_schemas();
    assert!(
        satisfies("6.50.0", "~> 6.50")
            && !satisfies("7.0.0", "~> 6.50")
            && satisfies("3.7.2", "~> 3.7")
    );
    let mut errors = Vec::new();
    for dir in module_dirs(&repo().join("terraform")) {
        check_module(&dir, &schemas, &mut errors);
    }
    let default = default_env();
    let non_default = non_default_env();
    for root in [render(&default), render(&non_default)] {
        let mut used_providers = BTreeSet::new();
        let mut pins = BTreeMap::new();
        for dir in module_dirs(&root) {
            let dir_pins = check_module(&dir, &schemas, &mut errors);
            if dir == root {
                pins = dir_pins;
            }
            for file in tf_files(&dir) {
                for block in parse(&file)
                    .blocks()
                    .filter(|b| b.identifier() == "resource")
                {
                    used_providers.insert(label(block, 0).split('_').next().unwrap().to_owned());
                }
            }
        }
        for provider in &used_providers {
            if !pins.contains_key(provider) {
                errors.push(format!(
                    "{}: uses {provider} resources but does not pin {provider}",
                    root.display()
                ));
            }
        }
        check_tfvars(&root, &mut errors);
    }
    assert!(
        errors.is_empty(),
        "{} conformance errors:\n{}",
        errors.len(),
        errors.join("\n")
    );
}

/// Every resource of `kind` in the modules, with its body.
fn resources(kind: &str) -> Vec<(String, Body)> {
    let mut found = Vec::new();
    for dir in module_dirs(&repo().join("terraform")) {
        for file in tf_files(&dir) {
            for block in parse(&file).blocks() {
                if block.identifier() == "resource" && label(block, 0) == kind {
                    found.push((
                        format!("{}.{}", kind, label(block, 1)),
                        block.body().clone(),
                    ));
                }
            }
        }
    }
    found
}

pub(crate) fn attr<'a>(body: &'a Body, path: &[&str]) -> Option<&'a Expression> {
    let (last, blocks) = path.split_last().unwrap();
    let mut body = body;
    for name in blocks {
        body = body.blocks().find(|b| b.identifier() == *name)?.body();
    }
    body.attributes()
        .find(|a| a.key() == *last)
        .map(|a| a.expr())
}

#[test]
fn the_security_defaults_are_in_the_modules() {
    let all_kinds: BTreeSet<String> = module_dirs(&repo().join("terraform"))
        .iter()
        .flat_map(|dir| tf_files(dir))
        .flat_map(|file| {
            parse(&file)
                .blocks()
                .filter(|b| b.identifier() == "resource")
                .map(|b| label(b, 0).to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    for forbidden in [
        "google_project_iam_binding",
        "google_project_iam_policy",
        "google_service_account_key",
        "google_storage_bucket_iam_binding",
        "google_storage_bucket_iam_policy",
    ] {
        assert!(!all_kinds.contains(forbidden), "{forbidden} is used");
    }

    let yes = Expression::Bool(true);
    for (name, body) in resources("google_storage_bucket") {
        assert_eq!(
            attr(&body, &["uniform_bucket_level_access"]),
            Some(&yes),
            "{name}"
        );
        assert_eq!(
            attr(&body, &["public_access_prevention"]),
            Some(&Expression::from("enforced")),
            "{name}"
        );
        assert_eq!(
            attr(&body, &["versioning", "enabled"]),
            Some(&yes),
            "{name}"
        );
    }
    for (name, body) in resources("google_project_service") {
        assert_eq!(
            attr(&body, &["disable_on_destroy"]),
            Some(&Expression::Bool(false)),
            "{name}"
        );
    }
    for (name, body) in resources("google_sql_database_instance") {
        assert_eq!(
            attr(&body, &["settings", "backup_configuration", "enabled"]),
            Some(&yes),
            "{name}"
        );
        assert_eq!(
            attr(&body, &["settings", "ip_configuration", "ssl_mode"]),
            Some(&Expression::from("ENCRYPTED_ONLY")),
            "{name}"
        );
    }
    for (name, body) in resources("google_container_cluster") {
        assert_eq!(
            attr(&body, &["remove_default_node_pool"]),
            Some(&yes),
            "{name}"
        );
        assert!(
            attr(&body, &["workload_identity_config", "workload_pool"]).is_some(),
            "{name}"
        );
        assert_eq!(
            attr(&body, &["private_cluster_config", "enable_private_nodes"]),
            Some(&yes),
            "{name}"
        );
    }
    let text: String = module_dirs(&repo().join("terraform"))
        .iter()
        .flat_map(|dir| tf_files(dir))
        .map(|file| std::fs::read_to_string(file).unwrap())
        .collect();
    assert!(
        !text.contains("0.0.0.0/0"),
        "a module opens something to the internet"
    );
    for role in [
        "roles/bigquery.user",
        "roles/bigquery.dataEditor",
        "cloudsql.instances.import",
        "roles/dataproc.editor",
        "roles/dataproc.worker",
        "roles/iam.serviceAccountUser",
        "roles/storage.objectAdmin",
        "roles/iam.serviceAccountTokenCreator",
    ] {
        assert!(
            text.contains(&format!("\"{role}\"")),
            "{role} is not granted"
        );
    }
    for api in [
        "container",
        "sqladmin",
        "dataproc",
        "bigquery",
        "storage",
        "iam",
        "servicenetworking",
        "compute",
        "cloudresourcemanager",
        "serviceusage",
        "iamcredentials",
    ] {
        assert!(
            text.contains(&format!("\"{api}.googleapis.com\"")),
            "{api} API is not enabled"
        );
    }
}

// ---------------------------------------------------------------------------
// Issue 11: what `up` and `down` need on a real, brand-new project.

fn only(kind: &str) -> (String, Body) {
    let mut found = resources(kind);
    assert_eq!(found.len(), 1, "one {kind} expected");
    found.remove(0)
}

/// The default of variable `name` in the module directory `module`.
fn variable_default(module: &str, name: &str) -> Expression {
    let body = parse(
        &repo()
            .join("terraform/modules")
            .join(module)
            .join("main.tf"),
    );
    let block = body
        .blocks()
        .find(|b| b.identifier() == "variable" && label(b, 0) == name)
        .unwrap_or_else(|| panic!("modules/{module} has no variable {name}"));
    attr(block.body(), &["default"])
        .unwrap_or_else(|| panic!("variable {name} has no default"))
        .clone()
}

fn strings(expr: &Expression) -> Vec<String> {
    match expr {
        Expression::Array(items) => items
            .iter()
            .filter_map(|e| string_value(e).map(str::to_owned))
            .collect(),
        Expression::FuncCall(call) => call.args.iter().flat_map(strings).collect(),
        other => string_value(other).map(str::to_owned).into_iter().collect(),
    }
}

#[test]
fn down_leaves_no_trap_the_connection_user_and_database_are_abandoned() {
    let abandon = Expression::from("ABANDON");
    for kind in [
        "google_service_networking_connection",
        "google_sql_user",
        "google_sql_database",
    ] {
        let (name, body) = only(kind);
        assert_eq!(attr(&body, &["deletion_policy"]), Some(&abandon), "{name}");
    }
}

#[test]
fn the_bootstrap_apis_are_in_the_services_module() {
    let listed = strings(&variable_default("services", "services"));
    for api in infra::terraform::BOOTSTRAP_SERVICES {
        assert!(listed.iter().any(|l| l == api), "{api} is not listed");
    }
}

#[test]
fn the_private_services_range_is_pinned_and_clear_of_the_vpc_ranges() {
    let (name, body) = only("google_compute_global_address");
    let text = |path: &[&str]| attr(&body, path).map(|e| e.to_string());
    assert_eq!(
        text(&["address"]).as_deref(),
        Some("var.private_services_address"),
        "{name}"
    );
    assert_eq!(
        text(&["prefix_length"]).as_deref(),
        Some("var.private_services_prefix_length"),
        "{name}"
    );
    // The ranges the Rust check keeps clear of are the modules' own.
    let module_ranges = [
        ("network", "subnet_cidr"),
        ("network", "pods_cidr"),
        ("network", "services_cidr"),
        ("gke", "master_cidr"),
    ]
    .map(|(module, var)| strings(&variable_default(module, var)).remove(0));
    let checked: Vec<&str> = infra::terraform::cidr::VPC_RANGES
        .iter()
        .map(|(_, r)| *r)
        .collect();
    assert_eq!(module_ranges.to_vec(), checked);
    // And the root passes the configured range through.
    let env = default_env().var("INFRA_NETWORK_PRIVATE_SERVICES_RANGE", "10.96.0.0/22");
    let root = render(&env);
    let tfvars = std::fs::read_to_string(root.join("terraform.tfvars")).unwrap();
    assert!(
        tfvars.contains("private_services_address       = \"10.96.0.0\""),
        "{tfvars}"
    );
    assert!(
        tfvars.contains("private_services_prefix_length = 22"),
        "{tfvars}"
    );
}

#[test]
fn pgaudit_is_not_half_configured() {
    // Issue 11: `cloudsql.enable_pgaudit` logs nothing without `pgaudit.log`
    // and `CREATE EXTENSION pgaudit`, which need a connection infra doesn't
    // have on GCP. It is removed; log_statement = ddl and the connection
    // logs stay.
    let (name, body) = only("google_sql_database_instance");
    let settings = body
        .blocks()
        .find(|b| b.identifier() == "settings")
        .unwrap();
    let flags: Vec<String> = settings
        .body()
        .blocks()
        .filter(|b| b.identifier() == "database_flags")
        .filter_map(|b| {
            attr(b.body(), &["name"])
                .and_then(string_value)
                .map(str::to_owned)
        })
        .collect();
    assert!(
        !flags.iter().any(|f| f.contains("pgaudit")),
        "{name}: {flags:?}"
    );
    assert!(
        flags.iter().any(|f| f == "log_statement"),
        "{name}: {flags:?}"
    );
}

/// One row of docs/iam.md's table.
#[derive(Debug)]
pub(crate) struct Grant {
    pub(crate) principal: String,
    pub(crate) role: String,
    pub(crate) scope: String,
    pub(crate) why: String,
}

pub(crate) fn documented_grants() -> Vec<Grant> {
    let text = std::fs::read_to_string(repo().join("docs/iam.md")).unwrap();
    // Every table whose header is `| principal | role | …`: the main
    // root's, then the Airflow root's.
    let mut in_table = false;
    text.lines()
        .filter(|l| {
            if l.starts_with("| principal | role |") {
                in_table = true;
            } else if !l.starts_with('|') {
                in_table = false;
            }
            in_table
        })
        .filter(|l| !l.starts_with("| principal") && !l.starts_with("| ---"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(cells.len(), 5, "docs/iam.md row: {l}");
            Grant {
                principal: cells[0].to_owned(),
                role: cells[1].to_owned(),
                scope: cells[2].to_owned(),
                why: cells[4].to_owned(),
            }
        })
        .collect()
}

/// Every grant the modules make: (principal, role, scope) as docs/iam.md
/// names them, read by the same code the stand-ins enforce them with.
fn granted() -> BTreeSet<(String, String, String)> {
    let mut out: BTreeSet<_> =
        gcp_fakes::iam::grants::from_modules(&repo().join("terraform/modules"))
            .unwrap()
            .grants
            .into_iter()
            .map(|g| {
                let scope = match &g.condition {
                    Some(condition) => format!("{}, if `{condition}`", g.scope),
                    None => g.scope.to_string(),
                };
                (g.principal, g.role, scope)
            })
            .collect();
    out.extend(crate::terraform_airflow::granted());
    out
}

#[test]
fn every_iam_grant_is_in_docs_iam_md() {
    let documented = documented_grants();
    let table: BTreeSet<(String, String, String)> = documented
        .iter()
        .map(|g| (g.principal.clone(), g.role.clone(), g.scope.clone()))
        .collect();
    let granted = granted();
    let undocumented: Vec<_> = granted.difference(&table).collect();
    assert!(
        undocumented.is_empty(),
        "granted but not in docs/iam.md: {undocumented:?}"
    );
    let stale: Vec<_> = table.difference(&granted).collect();
    assert!(
        stale.is_empty(),
        "in docs/iam.md but granted nowhere: {stale:?}"
    );
    for grant in &documented {
        if grant.scope == "project" {
            assert!(
                grant.why.len() > 20,
                "{} has {} at project level without saying why",
                grant.principal,
                grant.role
            );
        }
    }
    // The two grants the issue names as too broad at project level.
    for role in ["roles/iam.serviceAccountUser", "roles/storage.objectAdmin"] {
        assert!(
            !granted
                .iter()
                .any(|(_, r, scope)| r == role && scope == "project"),
            "{role} is granted at project level"
        );
    }
    assert!(granted.contains(&(
        "cloudsql-instance".to_owned(),
        "roles/storage.objectAdmin".to_owned(),
        "bucket: staging".to_owned()
    )));
    assert!(granted.contains(&(
        "pipeline".to_owned(),
        "roles/bigquery.dataEditor".to_owned(),
        "dataset".to_owned()
    )));
}

// ---------------------------------------------------------------------------
// checkov

pub(crate) fn checkov() -> PathBuf {
    let venv = std::env::var_os("INFRA_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root/.cache/infra/dev-venv"));
    let bin = venv.join("bin/checkov");
    assert!(
        bin.is_file(),
        "checkov is not installed at {}: create the dev venv with `python3 -m venv {venv} && {venv}/bin/pip install -r requirements-dev.txt`, or point INFRA_TEST_VENV at a venv that has checkov",
        bin.display(),
        venv = venv.display()
    );
    bin
}

#[derive(Deserialize)]
pub(crate) struct CheckovReport {
    pub(crate) summary: CheckovSummary,
    pub(crate) results: CheckovResults,
}

#[derive(Deserialize)]
pub(crate) struct CheckovSummary {
    pub(crate) passed: u64,
    pub(crate) failed: u64,
    pub(crate) parsing_errors: u64,
}

#[derive(Deserialize)]
pub(crate) struct CheckovResults {
    #[serde(default)]
    pub(crate) failed_checks: Vec<CheckovCheck>,
}

#[derive(Deserialize)]
pub(crate) struct CheckovCheck {
    pub(crate) check_id: String,
    pub(crate) resource: String,
    #[serde(default)]
    pub(crate) file_path: String,
}

/// The check ids `terraform/.checkov.yaml` skips.
fn skip_list() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("terraform/.checkov.yaml")).unwrap();
    let mut in_list = false;
    let mut ids = Vec::new();
    for line in text.lines() {
        if line.starts_with("skip-check:") {
            in_list = true;
        } else if in_list && let Some(item) = line.trim_start().strip_prefix("- ") {
            ids.push(item.split('#').next().unwrap().trim().to_owned());
        } else if !line.starts_with(' ') && !line.starts_with('#') && !line.is_empty() {
            in_list = false;
        }
    }
    ids
}

/// Runs checkov on `dir`, with the skip list or without it.
fn run_checkov(bin: &Path, dir: &Path, with_skips: bool) -> CheckovReport {
    let mut cmd = Command::new(bin);
    cmd.arg("-d").arg(dir);
    if with_skips {
        cmd.arg("--config-file")
            .arg(repo().join("terraform/.checkov.yaml"));
    }
    let out = cmd
        .args([
            "--framework",
            "terraform",
            "--skip-download",
            "--quiet",
            "--compact",
            "-o",
            "json",
        ])
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "checkov printed no report for {}: {e}\nstdout:\n{stdout}\nstderr:\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn checkov_finds_no_failed_checks() {
    let bin = checkov();
    let skips: BTreeSet<String> = skip_list().into_iter().collect();
    assert!(!skips.is_empty());
    let default = default_env();
    let mut failing_without_skips = BTreeSet::new();
    for dir in [repo().join("terraform"), render(&default)] {
        let report = run_checkov(&bin, &dir, true);
        let failed: Vec<String> = report
            .results
            .failed_checks
            .iter()
            .map(|c| format!("{} {} ({})", c.check_id, c.resource, c.file_path))
            .collect();
        assert_eq!(
            report.summary.failed,
            0,
            "checkov failed in {}:\n{}",
            dir.display(),
            failed.join("\n")
        );
        assert_eq!(
            report.summary.parsing_errors,
            0,
            "checkov could not parse {}",
            dir.display()
        );
        assert!(
            report.summary.passed > 50,
            "checkov checked almost nothing in {}",
            dir.display()
        );
        let unskipped = run_checkov(&bin, &dir, false);
        failing_without_skips.extend(
            unskipped
                .results
                .failed_checks
                .into_iter()
                .map(|c| c.check_id),
        );
    }
    let stale: Vec<&String> = skips.difference(&failing_without_skips).collect();
    assert!(
        stale.is_empty(),
        "terraform/.checkov.yaml skips checks that pass anyway: {stale:?}"
    );
}

// ---------------------------------------------------------------------------
// The runner and the up/down sequences, with real terraform.

/// A fake [`Cloud`]: it records every call, and appends the ones `down`
/// orders to `order.log` in the root, where the fixture's destroy-time
/// provisioners write too. It reports one Dataproc cluster and one table
/// deleted, answers peering removals from a script, and says the state
/// bucket exists.
struct FakeCloud {
    calls: Mutex<Vec<String>>,
    order_log: PathBuf,
    /// Answers to `remove_peering`, first first; `Absent` once empty.
    peering: Mutex<VecDeque<PeeringRemoval>>,
    peering_present: Mutex<bool>,
    buckets: PathBuf,
}

impl FakeCloud {
    fn new(tmp: &Path, tf: &Terraform) -> FakeCloud {
        FakeCloud {
            calls: Mutex::new(Vec::new()),
            order_log: tf.dir().join("order.log"),
            peering: Mutex::new(VecDeque::new()),
            peering_present: Mutex::new(false),
            buckets: tmp.join("gcs"),
        }
    }

    fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.calls.lock().unwrap())
    }

    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }

    fn log(&self, line: &str) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.order_log)
            .unwrap();
        writeln!(file, "{line}").unwrap();
    }

    fn script_peering(&self, answers: impl IntoIterator<Item = PeeringRemoval>) {
        self.peering.lock().unwrap().extend(answers);
    }

    /// The lines of order.log, which is then emptied.
    fn take_order(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.order_log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.order_log);
        text.lines().map(str::to_owned).collect()
    }
}

fn pairs(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[async_trait]
impl Cloud for FakeCloud {
    async fn ensure_state_bucket(
        &self,
        project: &str,
        name: &str,
        location: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<()> {
        self.record(format!(
            "ensure_state_bucket {project} {name} {location} {}",
            pairs(labels)
        ));
        Ok(())
    }

    async fn delete_labelled_dataproc_clusters(
        &self,
        project: &str,
        region: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<String>> {
        self.record(format!(
            "delete_labelled_dataproc_clusters {project} {region} {}",
            pairs(labels)
        ));
        self.log("delete Dataproc clusters");
        Ok(vec!["run-cluster-1".to_owned()])
    }

    async fn cancel_labelled_batches(
        &self,
        project: &str,
        region: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<String>> {
        self.record(format!(
            "cancel_labelled_batches {project} {region} {}",
            pairs(labels)
        ));
        self.log("cancel Serverless batches");
        Ok(vec!["run-tokenizer-1".to_owned()])
    }

    async fn delete_dataset_tables(&self, project: &str, dataset: &str) -> Result<Vec<String>> {
        self.record(format!("delete_dataset_tables {project} {dataset}"));
        self.log("delete tables");
        Ok(vec!["user_behavior_metric".to_owned()])
    }

    async fn enable_services(&self, project: &str, services: &[&str]) -> Result<()> {
        self.record(format!("enable_services {project} {}", services.join(",")));
        Ok(())
    }

    async fn remove_peering(
        &self,
        project: &str,
        network: &str,
        peering: &str,
    ) -> Result<PeeringRemoval> {
        self.record(format!("remove_peering {project} {network} {peering}"));
        let answer = self
            .peering
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(PeeringRemoval::Absent);
        self.log(match answer {
            PeeringRemoval::Removed => "remove peering: removed",
            PeeringRemoval::Absent => "remove peering: absent",
            PeeringRemoval::InUse(_) => "remove peering: in use",
        });
        if answer == PeeringRemoval::Removed {
            *self.peering_present.lock().unwrap() = false;
        }
        Ok(answer)
    }

    async fn has_peering(&self, _project: &str, _network: &str, _peering: &str) -> Result<bool> {
        Ok(*self.peering_present.lock().unwrap())
    }

    async fn bucket_exists(&self, name: &str) -> Result<bool> {
        Ok(name == "fixture-project-infra-tfstate")
    }
}

/// `infra up --yes` on the gcp target, as `commands::up` runs it: plan,
/// apply (retrying on propagation errors as `retry` says), then upload the
/// code to the "code bucket" (a local directory). Returns whether anything
/// was applied, the outputs, and the upload count.
async fn up_with(
    values: &RootValues,
    tf: &Terraform,
    cloud: &FakeCloud,
    retry: Retry,
) -> Result<(bool, Outputs, usize)> {
    let plan = deploy::plan_up(values, tf, cloud).await?;
    let applied = !plan.changes.is_empty();
    let outputs = deploy::apply_up(tf, plan, retry).await?;
    let code = LocalBucket::new("code", cloud.buckets.join(&outputs.code_bucket));
    let uploaded = infra::backend::upload_code(&code).await?;
    Ok((applied, outputs, uploaded))
}

const NO_RETRY: Retry = Retry {
    retries: 0,
    wait: Duration::ZERO,
};

async fn up(
    values: &RootValues,
    tf: &Terraform,
    cloud: &FakeCloud,
) -> Result<(bool, Outputs, usize)> {
    up_with(values, tf, cloud, NO_RETRY).await
}

/// The fixture's teardown: its protected resources, its "instance", and
/// peering retries that don't wait.
fn teardown(protected: &[Protected]) -> Teardown<'_> {
    Teardown {
        protected,
        instance: "terraform_data.database",
        peering: Retry {
            retries: 3,
            wait: Duration::ZERO,
        },
    }
}

const FIXTURE_PROTECTED: &[Protected] = &[
    Protected {
        var: "gke_deletion_protection",
        address: "terraform_data.cluster",
        enabled: |values| values.gke_deletion_protection,
    },
    Protected {
        var: "database_deletion_protection",
        address: "terraform_data.database",
        enabled: |values| values.database_deletion_protection,
    },
];

/// `infra down --yes` on the gcp target. None when there was nothing to destroy.
async fn down(
    values: &RootValues,
    tf: &Terraform,
    cloud: &FakeCloud,
) -> Result<Option<DownReport>> {
    let plan = deploy::plan_down(values, tf).await?;
    if plan.changes.is_empty() {
        return Ok(None);
    }
    let teardown = teardown(FIXTURE_PROTECTED);
    Ok(Some(
        deploy::apply_down(values, tf, cloud, plan, &teardown).await?,
    ))
}

/// A copy of the terraform_data fixture, settings for it, and a runner.
/// `tfvars` becomes the root's terraform.tfvars, as rendering writes the real one.
fn fixture(env: &[(&str, &str)], tfvars: &str) -> (tempfile::TempDir, RootValues, Terraform) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::copy(
        repo().join("tests/fixtures/terraform_data/main.tf"),
        root.join("main.tf"),
    )
    .unwrap();
    std::fs::write(root.join("terraform.tfvars"), tfvars).unwrap();
    let mut vars = vec![("INFRA_PROJECT".to_owned(), "fixture-project".to_owned())];
    vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let settings = Settings::resolve(Sources {
        config: None,
        cwd: tmp.path(),
        env: vars,
        flags: Layer::default(),
    })
    .unwrap();
    let values = RootValues::from_settings(&settings).unwrap();
    let tf = Terraform::new(&root, &tmp.path().join("cache"), Echo::Quiet).unwrap();
    (tmp, values, tf)
}

const BOOTSTRAP: &str = "enable_services fixture-project cloudresourcemanager.googleapis.com,serviceusage.googleapis.com,iamcredentials.googleapis.com";

#[tokio::test]
async fn up_and_down_drive_real_terraform_and_the_cloud_seam() {
    let (tmp, values, tf) = fixture(&[], "");
    let cloud = FakeCloud::new(tmp.path(), &tf);

    let (applied, outputs, uploaded) = up(&values, &tf, &cloud).await.unwrap();
    assert!(applied);
    assert_eq!(uploaded, infra::assets::PYSPARK_SCRIPTS.len());
    assert_eq!(outputs.code_bucket, "fixture-project-code-fixture");
    assert_eq!(
        outputs.sql_connection_name,
        "fixture-project:us-central1:fixture-pg"
    );
    assert_eq!(
        outputs.service_account_email,
        "infra-pipeline@fixture-project.iam.gserviceaccount.com"
    );
    // Issue 11: the bootstrap APIs are enabled before the state bucket and init.
    assert_eq!(
        cloud.take_calls(),
        [
            BOOTSTRAP,
            "ensure_state_bucket fixture-project fixture-project-infra-tfstate us-central1 deployment=infra,managed-by=infra",
        ]
    );
    let uploaded = tmp
        .path()
        .join("gcs/fixture-project-code-fixture/tokenizer.py");
    assert!(uploaded.is_file(), "tokenizer.py was not uploaded");
    assert!(
        !tf.dir().join("up.tfplan").exists(),
        "the applied plan file (it holds state) was left behind"
    );

    // Outputs parse on their own too, and the state has no changes pending.
    assert_eq!(tf.outputs().await.unwrap(), outputs);
    let summary = tf
        .plan("check.tfplan", &PlanOptions::default())
        .await
        .unwrap();
    tf.discard("check.tfplan");
    assert!(summary.is_empty(), "{summary}");

    // A second up applies nothing and uploads nothing: the checksums match.
    let (applied, _, uploaded) = up(&values, &tf, &cloud).await.unwrap();
    assert!(!applied);
    assert_eq!(uploaded, 0);
    cloud.take_calls();

    let report = down(&values, &tf, &cloud)
        .await
        .unwrap()
        .expect("something to destroy");
    assert_eq!(report.dataproc_clusters, ["run-cluster-1"]);
    assert_eq!(report.serverless_batches, ["run-tokenizer-1"]);
    assert_eq!(report.tables, ["user_behavior_metric"]);
    assert_eq!(
        cloud.take_calls(),
        [
            "delete_labelled_dataproc_clusters fixture-project us-central1 deployment=infra,managed-by=infra",
            "cancel_labelled_batches fixture-project us-central1 deployment=infra,managed-by=infra",
            "delete_dataset_tables fixture-project bootcamp",
            "remove_peering fixture-project infra-vpc servicenetworking-googleapis-com",
        ]
    );
    let err = format!("{:#}", tf.outputs().await.unwrap_err());
    assert!(err.contains("nothing is deployed"), "{err}");
    assert!(
        !tf.dir().join("down.tfplan").exists(),
        "a plan file (it holds state) was left behind"
    );

    // Nothing left: a second down does nothing, and calls nothing.
    let again = down(&values, &tf, &cloud).await.unwrap();
    assert!(again.is_none());
    assert!(cloud.take_calls().is_empty());
}

#[tokio::test]
async fn down_lifts_deletion_protection_first() {
    let protected = [
        ("INFRA_GKE_DELETION_PROTECTION", "true"),
        ("INFRA_DATABASE_DELETION_PROTECTION", "true"),
    ];
    // The fixture's variables follow the settings, as terraform.tfvars does for the real root.
    let (tmp, values, tf) = fixture(
        &protected,
        "gke_deletion_protection      = true\ndatabase_deletion_protection = true\n",
    );
    let cloud = FakeCloud::new(tmp.path(), &tf);
    up(&values, &tf, &cloud).await.unwrap();

    // A plain destroy fails while the state says protected...
    let destroy = PlanOptions {
        destroy: true,
        ..PlanOptions::default()
    };
    tf.plan("plain.tfplan", &destroy).await.unwrap();
    let err = format!("{:#}", tf.apply("plain.tfplan").await.unwrap_err());
    assert!(err.contains("deletion_protection is on"), "{err}");

    // ...and down lifts it, then destroys.
    let report = down(&values, &tf, &cloud).await.unwrap();
    assert!(report.is_some());
    let err = format!("{:#}", tf.outputs().await.unwrap_err());
    assert!(err.contains("nothing is deployed"), "{err}");
}

// Issue 11: `down` goes Dataproc clusters, tables, deletion protection, the
// Cloud SQL instance, peering removal (retried while in use), then the rest.
#[tokio::test]
async fn down_removes_the_peering_after_the_instance_and_before_the_network() {
    let (tmp, values, tf) = fixture(
        &[("INFRA_DATABASE_DELETION_PROTECTION", "true")],
        "database_deletion_protection = true\n",
    );
    let cloud = FakeCloud::new(tmp.path(), &tf);
    up(&values, &tf, &cloud).await.unwrap();
    let held = "Producer services (e.g. CloudSQL) are still using this connection.";
    cloud.script_peering([
        PeeringRemoval::InUse(held.to_owned()),
        PeeringRemoval::InUse(held.to_owned()),
        PeeringRemoval::Removed,
    ]);
    cloud.take_order();

    down(&values, &tf, &cloud)
        .await
        .unwrap()
        .expect("destroyed");
    let order = cloud.take_order();
    assert_eq!(
        order[..7],
        [
            "delete Dataproc clusters",
            // Before the buckets its jobs write to go.
            "cancel Serverless batches",
            "delete tables",
            // Only possible once protection is lifted: the provisioner
            // refuses while the state says protected.
            "destroy database",
            "remove peering: in use",
            "remove peering: in use",
            "remove peering: removed",
        ],
        "{order:?}"
    );
    let rest: BTreeSet<&str> = order[7..].iter().map(String::as_str).collect();
    assert_eq!(
        rest,
        BTreeSet::from(["destroy buckets", "destroy cluster", "destroy network"]),
        "{order:?}"
    );
}

// Issue 11: a peering Cloud SQL holds past every retry stops `down` before
// the network, with a hint; a later `down` finishes the job.
#[tokio::test]
async fn a_peering_held_past_the_retries_stops_down_before_the_network() {
    let (tmp, values, tf) = fixture(&[], "");
    let cloud = FakeCloud::new(tmp.path(), &tf);
    up(&values, &tf, &cloud).await.unwrap();
    let held = "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE";
    cloud.script_peering((0..4).map(|_| PeeringRemoval::InUse(held.to_owned())));
    *cloud.peering_present.lock().unwrap() = true;
    cloud.take_order();

    let err = format!("{:#}", down(&values, &tf, &cloud).await.unwrap_err());
    assert!(err.contains("still in use after 4 tries"), "{err}");
    assert!(err.contains("hint: "), "{err}");
    let order = cloud.take_order();
    assert!(!order.iter().any(|l| l == "destroy network"), "{order:?}");
    let in_state = tf.state_list().await.unwrap();
    assert!(
        in_state.iter().any(|a| a == "terraform_data.network"),
        "{in_state:?}"
    );
    assert!(
        !in_state.iter().any(|a| a == "terraform_data.database"),
        "{in_state:?}"
    );

    // status names what is left, and why.
    let left = leftovers(&values, &tf, &cloud).await.unwrap();
    let peering = left
        .iter()
        .find(|l| l.what.contains("servicenetworking-googleapis-com"))
        .expect("the peering is listed");
    assert!(
        !peering.on_purpose && peering.why.contains("infra down"),
        "{left:?}"
    );
    assert!(
        left.iter()
            .any(|l| l.what == "terraform_data.network" && !l.on_purpose),
        "{left:?}"
    );

    cloud.script_peering([PeeringRemoval::Removed]);
    down(&values, &tf, &cloud)
        .await
        .unwrap()
        .expect("the rest destroyed");
    assert!(cloud.take_order().iter().any(|l| l == "destroy network"));
    assert!(tf.state_list().await.unwrap().is_empty());
}

// Issue 11: after `down`, status lists only what stays on purpose, and why.
#[tokio::test]
async fn after_down_only_the_state_bucket_and_the_apis_are_left_on_purpose() {
    let (tmp, values, tf) = fixture(&[], "");
    let cloud = FakeCloud::new(tmp.path(), &tf);
    up(&values, &tf, &cloud).await.unwrap();
    down(&values, &tf, &cloud)
        .await
        .unwrap()
        .expect("destroyed");

    let left = leftovers(&values, &tf, &cloud).await.unwrap();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().all(|l| l.on_purpose), "{left:?}");
    assert_eq!(
        left[0].what,
        "Terraform state bucket gs://fixture-project-infra-tfstate"
    );
    assert!(left[0].why.contains("kept on purpose"), "{left:?}");
    assert!(left[1].what.contains("sqladmin.googleapis.com"), "{left:?}");
    assert!(left[1].why.contains("kept on purpose"), "{left:?}");
}

// Issue 11: newly enabled APIs take a while to propagate; the apply is
// tried again on exactly those errors, a bounded number of times.
#[tokio::test]
async fn up_retries_the_apply_on_api_propagation_errors_only() {
    let propagating = "Error: googleapi: Error 403: Service Networking API has not been used in project 123 before or it is disabled. Reason: SERVICE_DISABLED";
    let retry = Retry {
        retries: 2,
        wait: Duration::ZERO,
    };
    let (tmp, values, tf) = fixture(&[], &format!("fail_first_apply_with = \"{propagating}\"\n"));
    let cloud = FakeCloud::new(tmp.path(), &tf);
    let err = format!(
        "{:#}",
        up_with(&values, &tf, &cloud, NO_RETRY).await.unwrap_err()
    );
    assert!(err.contains("SERVICE_DISABLED"), "{err}");

    let (tmp, values, tf) = fixture(&[], &format!("fail_first_apply_with = \"{propagating}\"\n"));
    let cloud = FakeCloud::new(tmp.path(), &tf);
    let (applied, outputs, _) = up_with(&values, &tf, &cloud, retry).await.unwrap();
    assert!(applied);
    assert_eq!(outputs.code_bucket, "fixture-project-code-fixture");
    assert!(
        tf.state_list()
            .await
            .unwrap()
            .iter()
            .any(|a| a == "terraform_data.propagation[0]")
    );

    let other = "Error: googleapi: Error 400: Invalid value for field resource.tier";
    let (tmp, values, tf) = fixture(&[], &format!("fail_first_apply_with = \"{other}\"\n"));
    let cloud = FakeCloud::new(tmp.path(), &tf);
    let err = format!(
        "{:#}",
        up_with(&values, &tf, &cloud, retry).await.unwrap_err()
    );
    assert!(err.contains("Invalid value"), "{err}");
}

// Issue 11: `terraform init` must follow backend settings that changed.
#[tokio::test]
async fn init_follows_a_changed_backend() {
    let (_tmp, _values, tf) = fixture(&[], "");
    let backend = |path: &str| {
        std::fs::write(
            tf.dir().join("backend.tf"),
            format!("terraform {{\n  backend \"local\" {{\n    path = \"{path}\"\n  }}\n}}\n"),
        )
        .unwrap();
    };
    backend("first.tfstate");
    tf.init().await.unwrap();
    backend("second.tfstate");
    tf.init().await.unwrap();
    let summary = tf
        .plan("check.tfplan", &PlanOptions::default())
        .await
        .unwrap();
    tf.discard("check.tfplan");
    assert!(!summary.is_empty(), "the second backend starts empty");
}

/// Issue 19, section 5: no database password reaches the plan, the state
/// or the outputs. The user's password is write-only (`password_wo`) from
/// an ephemeral value; no module keeps a `random_password` resource or
/// outputs a password.
#[test]
fn the_database_password_never_reaches_the_state() {
    let mut users = 0;
    for dir in module_dirs(&repo().join("terraform/modules")) {
        for file in tf_files(&dir) {
            let body = parse(&file);
            for block in body.blocks() {
                let (kind, name) = (label(block, 0), label(block, 1));
                let attrs: Vec<&str> = block.body().attributes().map(|a| a.key()).collect();
                match (block.identifier(), kind) {
                    ("resource", "random_password") => {
                        panic!(
                            "{}: random_password.{name} keeps its result in state",
                            file.display()
                        )
                    }
                    ("resource", "google_sql_user") => {
                        users += 1;
                        assert!(
                            attrs.contains(&"password_wo") && !attrs.contains(&"password"),
                            "{}: google_sql_user.{name} must set password_wo, not password",
                            file.display()
                        );
                    }
                    ("output", _) => assert!(
                        !kind.contains("password"),
                        "{}: output {kind}",
                        file.display()
                    ),
                    _ => {}
                }
            }
        }
    }
    assert_eq!(users, 1, "the Cloud SQL user was not found");
    let outputs =
        std::fs::read_to_string(repo().join("templates/terraform/outputs.tf.tera")).unwrap();
    assert!(!outputs.contains("password"), "the root outputs a password");
}
