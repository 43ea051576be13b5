//! What the rendered root would create, read from its `.tf` files alone:
//! no Terraform, no credentials, no network. `plan --target gcp` shows this
//! to someone who has no project yet, and `run --dry-run` builds its
//! deployment from the root's outputs before `up` has saved the real ones.
//!
//! The files are parsed with `hcl-rs` and every expression is evaluated
//! with the rendered variables, module by module: `for_each` and `count`
//! are expanded as far as static values allow. A value only the apply can
//! know (a random suffix, the Cloud SQL instance's own account, an IP) is
//! a placeholder, `<type.name.attribute>`, naming where it comes from. A
//! few attributes Google derives from arguments in a documented form (a
//! service account's email, an instance's connection name) are computed,
//! each with its page beside it.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use hcl::Value;
use hcl::eval::{Context, Evaluate, FuncArgs, FuncDef, ParamType};
use hcl::{Block, Body, Expression};
use serde::Serialize;

/// Everything `up`'s Terraform would create, as the files say.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub resources: Vec<Resource>,
    /// The APIs `google_project_service` enables.
    pub apis: Vec<String>,
    /// Every `*_iam_member` grant.
    pub grants: Vec<Grant>,
    /// The root module's outputs, placeholders where the apply decides.
    pub outputs: BTreeMap<String, String>,
}

impl Inspection {
    /// The root's outputs as the typed [`Outputs`](super::outputs::Outputs)
    /// `up` reads from Terraform, placeholders included.
    pub fn typed_outputs(&self) -> Result<super::outputs::Outputs> {
        serde_json::from_value(serde_json::to_value(&self.outputs)?)
            .context("the rendered root's outputs are not those infra reads")
    }
}

/// One resource instance, by its Terraform address.
#[derive(Debug, Clone, Serialize)]
pub struct Resource {
    pub address: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Its name, as far as settings decide it (`name`, `account_id`, …).
    pub name: Option<String>,
}

/// One IAM grant: who gets which role on what, and under which condition.
#[derive(Debug, Clone, Serialize)]
pub struct Grant {
    pub address: String,
    pub member: String,
    pub role: String,
    /// `project P`, `bucket B`, `dataset D`, `service account S`.
    pub on: String,
    /// The IAM Condition's expression, when there is one.
    pub condition: Option<String>,
}

/// Reads a rendered root from disk as `render::render` returns it: the
/// root's `.tf` and `.tfvars` files and `modules/*/*.tf`.
pub fn read_root(dir: &std::path::Path) -> Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    let mut read = |rel: String| -> Result<()> {
        let path = dir.join(&rel);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        files.push((rel, text));
        Ok(())
    };
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tf") || name.ends_with(".tfvars") {
            read(name)?;
        }
    }
    let modules = dir.join("modules");
    if modules.is_dir() {
        for module in std::fs::read_dir(&modules)
            .with_context(|| format!("cannot read {}", modules.display()))?
        {
            let module = module?.file_name().to_string_lossy().into_owned();
            let mdir = modules.join(&module);
            if !mdir.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(&mdir)
                .with_context(|| format!("cannot read {}", mdir.display()))?
            {
                let name = entry?.file_name().to_string_lossy().into_owned();
                if name.ends_with(".tf") {
                    read(format!("modules/{module}/{name}"))?;
                }
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Evaluation passes: each pass sees the values the one before resolved
/// (module outputs, locals, other resources' attributes). The modules'
/// references are at most a few levels deep; four passes reach them all.
const PASSES: usize = 4;

/// Inspects the rendered root `files` (path relative to the root, text).
pub fn inspect(files: &[(String, String)]) -> Result<Inspection> {
    let mut root_text = String::new();
    let mut tfvars = String::new();
    let mut modules: BTreeMap<String, String> = BTreeMap::new();
    for (path, text) in files {
        if let Some(rest) = path.strip_prefix("modules/") {
            let (module, _) = rest.split_once('/').unwrap_or((rest, ""));
            let entry = modules.entry(format!("./modules/{module}")).or_default();
            entry.push_str(text);
            entry.push('\n');
        } else if path.ends_with(".tfvars") {
            tfvars.push_str(text);
            tfvars.push('\n');
        } else if path.ends_with(".tf") {
            root_text.push_str(text);
            root_text.push('\n');
        }
    }
    let root: Body = hcl::parse(&root_text).context("the rendered root does not parse")?;
    let tfvars: Body = hcl::parse(&tfvars).context("terraform.tfvars does not parse")?;

    let mut vars = hcl::Map::new();
    for block in root.blocks().filter(|b| b.identifier() == "variable") {
        let default = attr(block.body(), "default")
            .map(|e| eval(e, &Scope::default()))
            .unwrap_or(Value::Null);
        vars.insert(label(block, 0), default);
    }
    for a in tfvars.attributes() {
        vars.insert(a.key.to_string(), eval(&a.expr, &Scope::default()));
    }

    let calls: Vec<&Block> = root
        .blocks()
        .filter(|b| b.identifier() == "module")
        .collect();
    let mut parsed = BTreeMap::new();
    for call in &calls {
        let source = attr(call.body(), "source")
            .and_then(|e| eval(e, &Scope::default()).as_str().map(str::to_owned))
            .with_context(|| format!("module {} has no source", label(call, 0)))?;
        let text = modules.get(&source).with_context(|| {
            format!(
                "module {} reads {source}, which is not rendered",
                label(call, 0)
            )
        })?;
        let body: Body = hcl::parse(text).with_context(|| format!("{source} does not parse"))?;
        parsed.insert(label(call, 0), (body, text.clone()));
    }

    let mut module_outputs = hcl::Map::new();
    let mut instances = Vec::new();
    for _ in 0..PASSES {
        instances.clear();
        let scope = Scope {
            vars: hcl::Map::from_iter([
                ("var".to_owned(), Value::Object(vars.clone())),
                ("module".to_owned(), Value::Object(module_outputs.clone())),
            ]),
        };
        for call in &calls {
            let name = label(call, 0);
            let (body, text) = &parsed[&name];
            let args: hcl::Map<String, Value> = call
                .body()
                .attributes()
                .filter(|a| !matches!(a.key.as_str(), "source" | "depends_on" | "providers"))
                .map(|a| (a.key.to_string(), eval(&a.expr, &scope)))
                .collect();
            let module = Module::evaluate(body, text, &args);
            for mut instance in module.instances {
                instance.address = format!("module.{name}.{}", instance.address);
                instances.push(instance);
            }
            module_outputs.insert(name, Value::Object(module.outputs));
        }
    }
    let scope = Scope {
        vars: hcl::Map::from_iter([
            ("var".to_owned(), Value::Object(vars)),
            ("module".to_owned(), Value::Object(module_outputs)),
        ]),
    };
    let outputs = outputs(&root, &scope)
        .map(|(name, value)| (name, show(&value)))
        .collect();
    Ok(summarize(instances, outputs))
}

/// The resources, APIs and grants of the evaluated instances.
fn summarize(instances: Vec<Instance>, outputs: BTreeMap<String, String>) -> Inspection {
    let mut apis = Vec::new();
    let mut grants = Vec::new();
    let mut resources = Vec::new();
    for i in instances {
        let get = |key: &str| i.attrs.get(key).map(show);
        if i.kind == "google_project_service" {
            apis.extend(get("service"));
        }
        if i.kind.ends_with("_iam_member") {
            let on = [
                ("bucket", "bucket"),
                ("dataset_id", "dataset"),
                ("service_account_id", "service account"),
                ("project", "project"),
            ]
            .iter()
            .find_map(|(key, what)| get(key).map(|v| format!("{what} {v}")))
            .unwrap_or_else(|| "?".to_owned());
            grants.push(Grant {
                address: i.address.clone(),
                member: get("member").unwrap_or_default(),
                role: get("role").unwrap_or_default(),
                on,
                condition: i
                    .condition
                    .as_ref()
                    .and_then(|c| c.get("expression"))
                    .map(show),
            });
        }
        // A grant has no name of its own: it is listed with the grants.
        let name = ["email", "role_id", "dataset_id", "name", "service"]
            .iter()
            .find_map(|key| get(key))
            .filter(|_| !i.kind.ends_with("_iam_member"));
        resources.push(Resource {
            address: i.address,
            kind: i.kind,
            name,
        });
    }
    apis.sort();
    Inspection {
        resources,
        apis,
        grants,
        outputs,
    }
}

/// One expanded resource instance and its evaluated top-level attributes.
#[derive(Debug, Clone)]
struct Instance {
    address: String,
    kind: String,
    attrs: hcl::Map<String, Value>,
    /// The `condition` block's attributes (IAM members).
    condition: Option<hcl::Map<String, Value>>,
}

/// A module evaluated with its call's arguments.
struct Module {
    instances: Vec<Instance>,
    outputs: hcl::Map<String, Value>,
}

impl Module {
    fn evaluate(body: &Body, text: &str, args: &hcl::Map<String, Value>) -> Module {
        let mut vars = hcl::Map::new();
        for block in body.blocks().filter(|b| b.identifier() == "variable") {
            let name = label(block, 0);
            let value = match args.get(&name) {
                Some(value) => value.clone(),
                None => attr(block.body(), "default")
                    .map(|e| eval(e, &Scope::default()))
                    .unwrap_or(Value::Null),
            };
            vars.insert(name, value);
        }
        let declared: Vec<&Block> = body
            .blocks()
            .filter(|b| matches!(b.identifier(), "resource" | "ephemeral" | "data"))
            .collect();
        // Every attribute the module reads of a resource starts as a
        // placeholder; the passes replace those the files decide.
        let mut known: hcl::Map<String, Value> = hcl::Map::new();
        for (root, kind, name, attribute) in references(text, &declared) {
            let path = match root.as_str() {
                "resource" => vec![kind.clone(), name.clone()],
                other => vec![other.to_owned(), kind.clone(), name.clone()],
            };
            insert_path(
                &mut known,
                &path,
                &attribute,
                Value::String(format!("<{}>", path.join(".") + "." + &attribute)),
            );
        }
        let mut locals = hcl::Map::new();
        let mut instances = Vec::new();
        for _ in 0..PASSES {
            let mut scope = Scope {
                vars: known.clone(),
            };
            scope.vars.insert("var".into(), Value::Object(vars.clone()));
            scope
                .vars
                .insert("local".into(), Value::Object(locals.clone()));
            for block in body.blocks().filter(|b| b.identifier() == "locals") {
                for a in block.body().attributes() {
                    locals.insert(a.key.to_string(), eval(&a.expr, &scope));
                }
            }
            scope
                .vars
                .insert("local".into(), Value::Object(locals.clone()));
            instances.clear();
            for block in declared.iter().filter(|b| b.identifier() == "resource") {
                instances.extend(expand(block, &scope));
            }
            // What this pass learned about each resource, for the next.
            for block in declared.iter().filter(|b| b.identifier() == "resource") {
                let (kind, name) = (label(block, 0), label(block, 1));
                let mine: Vec<&Instance> = instances
                    .iter()
                    .filter(|i| i.kind == kind && i.address.starts_with(&format!("{kind}.{name}")))
                    .collect();
                let placeholders = known
                    .get(&kind)
                    .and_then(|v| v.as_object())
                    .and_then(|v| v.get(&name))
                    .and_then(|v| v.as_object())
                    .cloned()
                    .unwrap_or_default();
                let with = |i: &Instance| {
                    let mut attrs = placeholders.clone();
                    for (k, v) in &i.attrs {
                        attrs.insert(k.clone(), v.clone());
                    }
                    Value::Object(attrs)
                };
                let value = if attr(block.body(), "for_each").is_some() {
                    Value::Object(
                        mine.iter()
                            .map(|i| (instance_key(&i.address), with(i)))
                            .collect(),
                    )
                } else if attr(block.body(), "count").is_some() {
                    Value::Array(mine.iter().map(|i| with(i)).collect())
                } else {
                    match mine.first() {
                        Some(i) => with(i),
                        None => Value::Object(placeholders),
                    }
                };
                insert_path(&mut known, &[kind], &name, value);
            }
        }
        let mut scope = Scope { vars: known };
        scope.vars.insert("var".into(), Value::Object(vars));
        scope.vars.insert("local".into(), Value::Object(locals));
        let outputs = outputs(body, &scope).collect();
        Module { instances, outputs }
    }
}

/// Sets `map[path…][key] = value`, creating the objects on the way.
fn insert_path(map: &mut hcl::Map<String, Value>, path: &[String], key: &str, value: Value) {
    let mut at = map;
    for part in path {
        let entry = at
            .entry(part.clone())
            .or_insert_with(|| Value::Object(hcl::Map::new()));
        if !matches!(entry, Value::Object(_)) {
            *entry = Value::Object(hcl::Map::new());
        }
        at = entry.as_object_mut().expect("an object");
    }
    at.insert(key.to_owned(), value);
}

/// `["raw"]` or `[0]` of an address, as the key it stands for.
fn instance_key(address: &str) -> String {
    address
        .rsplit_once('[')
        .map(|(_, key)| key.trim_end_matches(']').trim_matches('"').to_owned())
        .unwrap_or_default()
}

/// The resource attributes `text` reads, as (block kind, type, name,
/// attribute): `google_sql_database_instance.postgres.name`, or
/// `ephemeral.random_password.user.result`.
fn references(text: &str, declared: &[&Block]) -> Vec<(String, String, String, String)> {
    let mut found = Vec::new();
    let words = text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'));
    for word in words {
        let parts: Vec<&str> = word.split('.').collect();
        for block in declared {
            let (kind, name) = (label(block, 0), label(block, 1));
            let offset = match block.identifier() {
                "resource" => 0,
                root if parts.first() == Some(&root) => 1,
                _ => continue,
            };
            if parts.len() > offset + 2 && parts[offset] == kind && parts[offset + 1] == name {
                found.push((
                    block.identifier().to_owned(),
                    kind,
                    name,
                    parts[offset + 2].to_owned(),
                ));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// A resource block's instances: one, or one per `for_each` key or
/// `count` index.
fn expand(block: &Block, scope: &Scope) -> Vec<Instance> {
    let (kind, name) = (label(block, 0), label(block, 1));
    let base = format!("{kind}.{name}");
    let mut keyed: Vec<(String, Scope)> = Vec::new();
    if let Some(for_each) = attr(block.body(), "for_each") {
        let pairs: Vec<(String, Value)> = match eval(for_each, scope) {
            Value::Object(map) => map.into_iter().collect(),
            Value::Array(items) => items.into_iter().map(|v| (show(&v), v)).collect(),
            other => vec![(show(&other), other)],
        };
        for (key, value) in pairs {
            let mut s = scope.clone();
            s.vars.insert(
                "each".into(),
                Value::Object(hcl::Map::from_iter([
                    ("key".to_owned(), Value::String(key.clone())),
                    ("value".to_owned(), value),
                ])),
            );
            keyed.push((
                format!("{base}[{}]", serde_json::to_string(&key).unwrap_or(key)),
                s,
            ));
        }
    } else if let Some(count) = attr(block.body(), "count") {
        let n = match eval(count, scope) {
            Value::Number(n) => n.as_u64().unwrap_or(0),
            _ => 1,
        };
        for index in 0..n {
            let mut s = scope.clone();
            s.vars.insert(
                "count".into(),
                Value::Object(hcl::Map::from_iter([(
                    "index".to_owned(),
                    Value::from(index),
                )])),
            );
            keyed.push((format!("{base}[{index}]"), s));
        }
    } else {
        keyed.push((base, scope.clone()));
    }
    keyed
        .into_iter()
        .map(|(address, s)| {
            let mut attrs: hcl::Map<String, Value> = block
                .body()
                .attributes()
                .filter(|a| !matches!(a.key.as_str(), "for_each" | "count" | "depends_on"))
                .map(|a| (a.key.to_string(), eval(&a.expr, &s)))
                .collect();
            derive(&kind, &mut attrs);
            let condition = block
                .body()
                .blocks()
                .find(|b| b.identifier() == "condition")
                .map(|c| {
                    c.body()
                        .attributes()
                        .map(|a| (a.key.to_string(), eval(&a.expr, &s)))
                        .collect()
                });
            Instance {
                address,
                kind: kind.clone(),
                attrs,
                condition,
            }
        })
        .collect()
}

/// Attributes Google computes from arguments in a documented form.
fn derive(kind: &str, attrs: &mut hcl::Map<String, Value>) {
    let get = |key: &str| attrs.get(key).map(show).unwrap_or_default();
    let derived: Vec<(&str, String)> = match kind {
        // The email is SA_NAME@PROJECT_ID.iam.gserviceaccount.com
        // (https://cloud.google.com/iam/docs/service-accounts-create); the
        // resource name projects/{PROJECT_ID}/serviceAccounts/{ACCOUNT}
        // (https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts).
        "google_service_account" => {
            let email = format!(
                "{}@{}.iam.gserviceaccount.com",
                get("account_id"),
                get("project")
            );
            vec![
                (
                    "name",
                    format!("projects/{}/serviceAccounts/{email}", get("project")),
                ),
                ("member", format!("serviceAccount:{email}")),
                ("email", email),
            ]
        }
        // "project:region:name" (the instance connection name,
        // https://cloud.google.com/go/docs/reference/cloud.google.com/go/cloudsqlconn/latest/instance).
        "google_sql_database_instance" => vec![(
            "connection_name",
            format!("{}:{}:{}", get("project"), get("region"), get("name")),
        )],
        // projects/{project}/roles/{role_id}
        // (registry.terraform.io/providers/hashicorp/google/latest/docs/resources/google_project_iam_custom_role).
        "google_project_iam_custom_role" => vec![(
            "name",
            format!("projects/{}/roles/{}", get("project"), get("role_id")),
        )],
        _ => Vec::new(),
    };
    for (key, value) in derived {
        attrs.entry(key.to_owned()).or_insert(Value::String(value));
    }
}

/// The variables an expression is evaluated with.
#[derive(Debug, Clone, Default)]
struct Scope {
    vars: hcl::Map<String, Value>,
}

/// `expr`'s value in `scope`; what cannot be evaluated statically is a
/// placeholder naming the expression.
fn eval(expr: &Expression, scope: &Scope) -> Value {
    let mut ctx = Context::new();
    for (name, value) in &scope.vars {
        ctx.declare_var(name.as_str(), value.clone());
    }
    declare_functions(&mut ctx);
    expr.evaluate(&ctx)
        .unwrap_or_else(|_| Value::String(format!("<{}>", expr.to_string().trim_matches('"'))))
}

/// The Terraform functions the modules call, as Terraform defines them
/// (developer.hashicorp.com/terraform/language/functions).
fn declare_functions(ctx: &mut Context) {
    fn coalesce(args: FuncArgs) -> Result<Value, String> {
        Ok(args
            .iter()
            .find(|v| !v.is_null() && v.as_str() != Some(""))
            .cloned()
            .unwrap_or(Value::Null))
    }
    fn replace(args: FuncArgs) -> Result<Value, String> {
        let s = |i: usize| args[i].as_str().unwrap_or_default().to_owned();
        Ok(Value::String(s(0).replace(&s(1), &s(2))))
    }
    fn merge(args: FuncArgs) -> Result<Value, String> {
        let mut out = hcl::Map::new();
        for map in args.iter().filter_map(Value::as_object) {
            out.extend(map.clone());
        }
        Ok(Value::Object(out))
    }
    fn toset(args: FuncArgs) -> Result<Value, String> {
        let mut items = args[0].as_array().cloned().unwrap_or_default();
        items.dedup();
        Ok(Value::Array(items))
    }
    fn sort(args: FuncArgs) -> Result<Value, String> {
        let mut items: Vec<String> = args[0]
            .as_array()
            .map(|a| a.iter().map(show).collect())
            .unwrap_or_default();
        items.sort();
        Ok(Value::Array(items.into_iter().map(Value::String).collect()))
    }
    fn concat(args: FuncArgs) -> Result<Value, String> {
        Ok(Value::Array(
            args.iter()
                .filter_map(Value::as_array)
                .flatten()
                .cloned()
                .collect(),
        ))
    }
    ctx.declare_func(
        "coalesce",
        FuncDef::builder()
            .variadic_param(ParamType::Any)
            .build(coalesce),
    );
    ctx.declare_func(
        "replace",
        FuncDef::builder()
            .params([ParamType::String, ParamType::String, ParamType::String])
            .build(replace),
    );
    ctx.declare_func(
        "merge",
        FuncDef::builder()
            .variadic_param(ParamType::Any)
            .build(merge),
    );
    ctx.declare_func(
        "toset",
        FuncDef::builder().param(ParamType::Any).build(toset),
    );
    ctx.declare_func("sort", FuncDef::builder().param(ParamType::Any).build(sort));
    ctx.declare_func(
        "concat",
        FuncDef::builder()
            .variadic_param(ParamType::Any)
            .build(concat),
    );
}

/// A value as one line: strings bare, the rest as JSON.
fn show(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "null".to_owned(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// Each `output` block of `body`: its name and its value in `scope`
/// (null when it has none).
fn outputs<'a>(body: &'a Body, scope: &'a Scope) -> impl Iterator<Item = (String, Value)> + 'a {
    body.blocks()
        .filter(|b| b.identifier() == "output")
        .map(|b| {
            let value = attr(b.body(), "value")
                .map(|e| eval(e, scope))
                .unwrap_or(Value::Null);
            (label(b, 0), value)
        })
}

fn attr<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes()
        .find(|a| a.key.as_str() == key)
        .map(|a| &a.expr)
}

fn label(block: &Block, i: usize) -> String {
    block
        .labels()
        .get(i)
        .map(|l| l.as_str().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Layer;
    use crate::terraform::render::{RootValues, render};

    fn inspect_with(env: &[(&str, &str)]) -> Inspection {
        let settings = crate::settings::testing::resolve("", env, Layer::default()).unwrap();
        let values = RootValues::from_settings(&settings).unwrap();
        inspect(&render(&values).unwrap()).unwrap()
    }

    #[test]
    fn names_and_grants_follow_the_settings_and_unknowns_are_placeholders() {
        let i = inspect_with(&[
            ("INFRA_PROJECT", "my-project"),
            ("INFRA_REGION", "europe-west1"),
            ("INFRA_DEPLOYMENT", "etl"),
        ]);
        let email = "etl-pipeline@my-project.iam.gserviceaccount.com";
        assert_eq!(i.outputs["service_account_email"], email);
        assert_eq!(
            i.outputs["sql_connection_name"],
            "my-project:europe-west1:etl-pg-<random_id.instance.hex>"
        );
        assert_eq!(
            i.outputs["raw_bucket"],
            "my-project-raw-<random_id.suffix.hex>"
        );
        assert!(
            i.apis.iter().any(|a| a == "dataproc.googleapis.com"),
            "{:?}",
            i.apis
        );
        let worker = i
            .grants
            .iter()
            .find(|g| g.role == "roles/dataproc.worker")
            .expect("the Dataproc Worker grant");
        assert_eq!(worker.member, format!("serviceAccount:{email}"));
        assert_eq!(worker.on, "project my-project");
        assert_eq!(
            worker.condition.as_deref(),
            Some("resource.type != \"storage.googleapis.com/Object\"")
        );
        // No operator known: the Token Creator grant (count = 0) is absent.
        assert!(
            !i.grants
                .iter()
                .any(|g| g.role == "roles/iam.serviceAccountTokenCreator"),
            "{:#?}",
            i.grants
        );
        assert!(
            i.resources.iter().any(|r| r.address
                == "module.buckets.google_storage_bucket.bucket[\"staging\"]"
                && r.name.as_deref() == Some("my-project-staging-<random_id.suffix.hex>")),
            "{:#?}",
            i.resources
        );
    }

    #[test]
    fn a_known_operator_and_bucket_names_show_as_they_will_be() {
        let i = inspect_with(&[
            ("INFRA_PROJECT", "my-project"),
            ("INFRA_OPERATOR", "user:ada@example.com"),
            ("INFRA_BUCKETS_RAW", "ada-raw-inputs"),
        ]);
        assert_eq!(i.outputs["raw_bucket"], "ada-raw-inputs");
        let grant = i
            .grants
            .iter()
            .find(|g| g.role == "roles/iam.serviceAccountTokenCreator")
            .expect("the operator's Token Creator grant");
        assert_eq!(grant.member, "user:ada@example.com");
        assert!(
            grant
                .on
                .starts_with("service account projects/my-project/serviceAccounts/infra-pipeline@"),
            "{}",
            grant.on
        );
    }
}
