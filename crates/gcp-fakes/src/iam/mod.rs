//! IAM as the stand-ins enforce it, so that a grant the real Terraform
//! modules forget fails here as it would in a project.
//!
//! - Who: every access token names one principal (`serviceAccount:…` or
//!   `user:…`): the token endpoint mints one per key or refresh token, and
//!   `generateAccessToken` one per impersonated account.
//! - What each call needs: [`required`] maps each discovery method id to
//!   the permission Google's reference names for it, on the resource it is
//!   checked on, plus what the call makes Google do as someone else (Cloud
//!   SQL's own account reading an import, a BigQuery load reading its
//!   sources as the caller).
//! - Who may: roles from Google's published definitions
//!   (`iam/predefined-roles.json`, dated and trimmed), granted as the
//!   modules in `terraform/modules` grant them ([`grants`]): the grants are
//!   read from the modules themselves, never from a copy.
//! - A denial is Google's: HTTP 403 `PERMISSION_DENIED`, "Permission 'X'
//!   denied on resource 'R' (or it may not exist).", with an `ErrorInfo`
//!   detail (https://cloud.google.com/apis/design/errors#error_info).
//!
//! `GCP_FAKES_REVOKE=perm[,perm…]` withdraws permissions from every role,
//! so a test can prove that each step fails clearly without its own.

pub mod grants;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::{Value, json};

pub use grants::{Grant, Scope};

/// The environment variable that withdraws permissions.
pub const REVOKE_ENV: &str = "GCP_FAKES_REVOKE";

/// What a permission is checked on. A grant on the project covers every
/// resource in it (https://cloud.google.com/iam/docs/resource-hierarchy-access-control).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    Project,
    Bucket(String),
    /// An object of this bucket: what object permissions are checked on.
    Object(String),
    Dataset(String),
    ServiceAccount(String),
}

impl Resource {
    /// `resource.type` as IAM Conditions name it
    /// (https://cloud.google.com/iam/docs/conditions-resource-attributes#resource-type).
    pub fn kind(&self) -> &'static str {
        match self {
            Resource::Project => "cloudresourcemanager.googleapis.com/Project",
            Resource::Bucket(_) => "storage.googleapis.com/Bucket",
            Resource::Object(_) => "storage.googleapis.com/Object",
            Resource::Dataset(_) => "bigquery.googleapis.com/Dataset",
            Resource::ServiceAccount(_) => "iam.googleapis.com/ServiceAccount",
        }
    }

    /// Whether a grant on `self` reaches `on`: the project reaches
    /// everything, a bucket its objects.
    fn covers(&self, on: &Resource) -> bool {
        match (self, on) {
            (Resource::Project, _) => true,
            (Resource::Bucket(b), Resource::Object(o)) => b == o,
            _ => self == on,
        }
    }

    /// The resource as Google's denials name it.
    pub fn full_name(&self, project: &str) -> String {
        match self {
            Resource::Project => format!("projects/{project}"),
            Resource::Bucket(b) | Resource::Object(b) => format!("projects/_/buckets/{b}"),
            Resource::Dataset(d) => format!("projects/{project}/datasets/{d}"),
            Resource::ServiceAccount(e) => format!("projects/-/serviceAccounts/{e}"),
        }
    }
}

/// One permission a call needs: any one of `any_of` on `on`, held by `who`
/// (`None`: the caller; `Some`: an identity Google acts as, such as Cloud
/// SQL's own service account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub any_of: Vec<&'static str>,
    pub on: Resource,
    pub who: Option<String>,
}

fn need(permission: &'static str, on: Resource) -> Need {
    Need {
        any_of: vec![permission],
        on,
        who: None,
    }
}

/// The identities of one deployment, as Terraform would have made them.
#[derive(Debug, Clone)]
pub struct Parties {
    pub project: String,
    /// The member who runs `infra up` (`user:…` or `serviceAccount:…`).
    pub operator: String,
    pub pipeline: String,
    pub cloudsql_instance: String,
    /// Bucket names by role: raw, staging, code.
    pub buckets: BTreeMap<String, String>,
    pub dataset: String,
}

#[derive(Deserialize)]
struct RolesFile {
    roles: BTreeMap<String, RoleDef>,
}

#[derive(Deserialize)]
struct RoleDef {
    permissions: Vec<String>,
}

/// A role's permissions: `*` holds every permission but those listed as
/// `-name` (roles/owner without Token Creator's).
#[derive(Debug, Clone)]
struct Role {
    all: bool,
    permissions: BTreeSet<String>,
    except: BTreeSet<String>,
}

impl Role {
    fn from_list(list: &[String]) -> Role {
        let mut role = Role {
            all: false,
            permissions: BTreeSet::new(),
            except: BTreeSet::new(),
        };
        for p in list {
            if p == "*" {
                role.all = true;
            } else if let Some(p) = p.strip_prefix('-') {
                role.except.insert(p.to_owned());
            } else {
                role.permissions.insert(p.clone());
            }
        }
        role
    }

    fn has(&self, permission: &str) -> bool {
        if self.except.contains(permission) {
            return false;
        }
        self.all || self.permissions.contains(permission)
    }
}

#[derive(Debug, Clone)]
struct Binding {
    member: String,
    role: String,
    on: Resource,
    condition: Option<Condition>,
}

/// A binding's IAM Condition. The stand-in evaluates one form, the one the
/// modules use, and refuses to load any other rather than misread it:
/// `resource.type != "T"` (CEL, https://cloud.google.com/iam/docs/conditions-overview).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Condition {
    not_type: String,
}

impl Condition {
    fn parse(expression: &str) -> Result<Condition> {
        let not_type = expression
            .trim()
            .strip_prefix("resource.type != \"")
            .and_then(|t| t.strip_suffix('"'))
            .filter(|t| !t.contains('"'))
            .with_context(|| {
                format!(
                    "the IAM stand-in evaluates only `resource.type != \"…\"`, not `{expression}`"
                )
            })?;
        Ok(Condition {
            not_type: not_type.to_owned(),
        })
    }

    fn holds(&self, on: &Resource) -> bool {
        on.kind() != self.not_type
    }
}

#[derive(Default)]
struct Tokens {
    by_token: BTreeMap<String, String>,
    refresh: BTreeMap<String, String>,
    next: u64,
}

struct State {
    project: String,
    roles: BTreeMap<String, Role>,
    bindings: Vec<Binding>,
    revoked: Mutex<BTreeSet<String>>,
    /// Members whose grants are not in effect yet, and until when.
    propagating: Mutex<BTreeMap<String, std::time::Instant>>,
    tokens: Mutex<Tokens>,
}

/// The policy of one rehearsal project, and the tokens minted in it.
#[derive(Clone)]
pub struct Iam(Arc<State>);

impl Iam {
    /// The policy the real modules in `modules_dir` grant to `parties`,
    /// with roles from `roles_file`, minus `revoked` permissions. The
    /// operator holds roles/owner on the project, as docs/iam.md requires
    /// of whoever runs `infra up`.
    pub fn load(
        modules_dir: &Path,
        roles_file: &Path,
        parties: &Parties,
        revoked: &[String],
    ) -> Result<Iam> {
        let text = std::fs::read_to_string(roles_file)
            .with_context(|| format!("cannot read {}", roles_file.display()))?;
        let file: RolesFile = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a roles file", roles_file.display()))?;
        let mut roles: BTreeMap<String, Role> = file
            .roles
            .into_iter()
            .map(|(name, def)| (name, Role::from_list(&def.permissions)))
            .collect();
        let found = grants::from_modules(modules_dir)?;
        for (name, permissions) in &found.custom_roles {
            roles.insert(
                format!("custom:{name}"),
                Role::from_list(&permissions.to_vec()),
            );
        }
        let mut bindings = vec![Binding {
            member: parties.operator.clone(),
            role: "roles/owner".into(),
            on: Resource::Project,
            condition: None,
        }];
        for grant in &found.grants {
            let Some(member) = member_of(&grant.principal, parties) else {
                continue;
            };
            if !roles.contains_key(&grant.role) {
                bail!(
                    "terraform/modules grants {} to {}, and {} has no definition of it: add it, from Google's published roles",
                    grant.role,
                    grant.principal,
                    roles_file.display()
                );
            }
            let on = match &grant.scope {
                Scope::Project => Resource::Project,
                Scope::Dataset => Resource::Dataset(parties.dataset.clone()),
                Scope::Bucket(role) => Resource::Bucket(
                    parties
                        .buckets
                        .get(role)
                        .with_context(|| format!("no {role} bucket in this rehearsal"))?
                        .clone(),
                ),
                Scope::ServiceAccount(principal) => Resource::ServiceAccount(
                    member_of(principal, parties)
                        .and_then(|m| m.strip_prefix("serviceAccount:").map(str::to_owned))
                        .with_context(|| format!("no service account `{principal}`"))?,
                ),
            };
            bindings.push(Binding {
                member,
                role: grant.role.clone(),
                on,
                condition: grant
                    .condition
                    .as_deref()
                    .map(Condition::parse)
                    .transpose()?,
            });
        }
        Ok(Iam(Arc::new(State {
            project: parties.project.clone(),
            roles,
            bindings,
            revoked: Mutex::new(revoked.iter().cloned().collect()),
            propagating: Mutex::new(BTreeMap::new()),
            tokens: Mutex::new(Tokens::default()),
        })))
    }

    /// The permissions `GCP_FAKES_REVOKE` names.
    pub fn revoked_from_env() -> Vec<String> {
        std::env::var(REVOKE_ENV)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect()
    }

    pub fn project(&self) -> &str {
        &self.0.project
    }

    /// A new access token for `member`.
    pub fn mint(&self, member: &str) -> String {
        let mut tokens = self.0.tokens.lock().unwrap();
        tokens.next += 1;
        let token = format!(
            "ya29.rehearsal-{}-{}",
            tokens.next,
            crate::front::random_hex()
        );
        tokens.by_token.insert(token.clone(), member.to_owned());
        token
    }

    /// Whose token this is.
    pub fn who(&self, token: &str) -> Option<String> {
        self.0.tokens.lock().unwrap().by_token.get(token).cloned()
    }

    /// A refresh token of an `authorized_user` file that stands for `member`.
    pub fn add_refresh_token(&self, refresh_token: &str, member: &str) {
        self.0
            .tokens
            .lock()
            .unwrap()
            .refresh
            .insert(refresh_token.to_owned(), member.to_owned());
    }

    pub fn refresh_token_member(&self, refresh_token: &str) -> Option<String> {
        self.0
            .tokens
            .lock()
            .unwrap()
            .refresh
            .get(refresh_token)
            .cloned()
    }

    /// Withdraws `permission` from every role, from now on.
    pub fn revoke(&self, permission: &str) {
        self.0.revoked.lock().unwrap().insert(permission.to_owned());
    }

    /// Gives back a permission [`Iam::revoke`] withdrew.
    pub fn restore(&self, permission: &str) {
        self.0.revoked.lock().unwrap().remove(permission);
    }

    /// Holds back every grant to `member` for `delay`, as a new grant
    /// propagates: a policy change takes "Typically 2 minutes, potentially
    /// 7 minutes or longer"
    /// (https://cloud.google.com/iam/docs/access-change-propagation).
    pub fn propagate(&self, member: &str, delay: std::time::Duration) {
        self.0
            .propagating
            .lock()
            .unwrap()
            .insert(member.to_owned(), std::time::Instant::now() + delay);
    }

    /// Whether `member` holds `permission` on `on`.
    pub fn allows(&self, member: &str, permission: &str, on: &Resource) -> bool {
        if self.0.revoked.lock().unwrap().contains(permission) {
            return false;
        }
        if self
            .0
            .propagating
            .lock()
            .unwrap()
            .get(member)
            .is_some_and(|until| std::time::Instant::now() < *until)
        {
            return false;
        }
        self.0.bindings.iter().any(|b| {
            b.member == member
                && b.on.covers(on)
                && b.condition.as_ref().is_none_or(|c| c.holds(on))
                && self.0.roles.get(&b.role).is_some_and(|r| r.has(permission))
        })
    }

    /// Google's denial when `caller` (or whom the need names) lacks it.
    pub fn check(&self, caller: &str, need: &Need, domain: &str) -> Result<(), (u16, Value)> {
        let who = need.who.as_deref().unwrap_or(caller);
        if need.any_of.iter().any(|p| self.allows(who, p, &need.on)) {
            return Ok(());
        }
        if need.who.is_some() && domain == "sqladmin.googleapis.com" {
            return Err(instance_account_denied());
        }
        Err(denied(
            need.any_of[0],
            &need.on.full_name(&self.0.project),
            domain,
        ))
    }
}

/// HTTP 403 as Google's APIs deny a permission
/// (https://cloud.google.com/iam/docs/troubleshooting-access#permission-denied).
pub fn denied(permission: &str, resource: &str, domain: &str) -> (u16, Value) {
    (
        403,
        json!({"error": {
            "code": 403,
            "message": format!("Permission '{permission}' denied on resource '{resource}' (or it may not exist)."),
            "status": "PERMISSION_DENIED",
            "details": [{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "IAM_PERMISSION_DENIED",
                "domain": domain,
                "metadata": {"permission": permission, "resource": resource},
            }],
        }}),
    )
}

/// Cloud SQL refuses an import or export whose bucket its instance's
/// service account cannot use with its own 403, naming no permission. No
/// Google page documents it; the status and text are those users report
/// from `gcloud sql import`/`export` ("HTTPError 403: The service account
/// does not have the required permissions for the bucket.").
pub fn instance_account_denied() -> (u16, Value) {
    let message = "The service account does not have the required permissions for the bucket.";
    (403, json!({"error": {"code": 403, "message": message}}))
}

fn member_of(principal: &str, parties: &Parties) -> Option<String> {
    Some(match principal {
        "operator" => parties.operator.clone(),
        "pipeline" => format!("serviceAccount:{}", parties.pipeline),
        "cloudsql-instance" => format!("serviceAccount:{}", parties.cloudsql_instance),
        // The GKE nodes make no call a stand-in serves.
        _ => return None,
    })
}

/// `storage.objects.get`, as `account`, on the bucket of every `gs://`
/// string in `value` (a job's or batch's script, files and arguments).
fn reads_as(value: &Value, account: &str) -> Vec<Need> {
    fn walk(value: &Value, buckets: &mut std::collections::BTreeSet<String>) {
        match value {
            Value::String(s) => buckets.extend(bucket_of(s)),
            Value::Array(items) => items.iter().for_each(|v| walk(v, buckets)),
            Value::Object(fields) => fields.values().for_each(|v| walk(v, buckets)),
            _ => {}
        }
    }
    let mut buckets = std::collections::BTreeSet::new();
    walk(value, &mut buckets);
    buckets
        .into_iter()
        .map(|bucket| Need {
            any_of: vec!["storage.objects.get"],
            on: Resource::Object(bucket),
            who: Some(format!("serviceAccount:{account}")),
        })
        .collect()
}

fn bucket_of(uri: &str) -> Option<String> {
    uri.strip_prefix("gs://")?
        .split('/')
        .next()
        .map(str::to_owned)
}

/// What a call to discovery method `id` needs, from its path segments and
/// body; `None` for a method no rule covers (the caller treats that as a
/// violation, so a new call cannot slip past IAM). `cloudsql_account` is
/// the instance's own service account; `cluster_account` the service
/// account of the cluster a submitted job is placed on, as created.
///
/// Sources, one page per API:
/// Cloud SQL https://cloud.google.com/sql/docs/postgres/iam-permissions,
/// Dataproc https://cloud.google.com/dataproc/docs/concepts/iam/iam#permissions,
/// BigQuery https://cloud.google.com/bigquery/docs/access-control#bq-permissions,
/// Service Usage https://cloud.google.com/service-usage/docs/access-control,
/// Compute https://cloud.google.com/compute/docs/reference/rest/v1/networks (each method's "IAM Permissions"),
/// IAM Credentials https://cloud.google.com/iam/docs/service-account-permissions#token-creator-role.
pub fn required(
    id: &str,
    seg: &[String],
    body: &Value,
    cloudsql_account: &str,
    cluster_account: Option<&str>,
) -> Option<Vec<Need>> {
    use Resource::*;
    let after = |name: &str| {
        seg.iter()
            .position(|s| s == name)
            .and_then(|i| seg.get(i + 1))
            .cloned()
            .unwrap_or_default()
    };
    let act_as = |account: &Value| {
        account
            .as_str()
            .map(|a| need("iam.serviceAccounts.actAs", ServiceAccount(a.to_owned())))
    };
    let short = id.split_once('.').map_or(id, |(_, rest)| rest);
    // sqladmin.v1.json names its methods `sql.…`.
    let api = match id.split('.').next().unwrap_or_default() {
        "sql" => "sqladmin",
        api => api,
    };
    let needs = match (api, short) {
        // Cloud SQL checks instances.import and export on the project, then
        // reads or writes the object as the instance's own service account
        // (https://cloud.google.com/sql/docs/postgres/import-export/import-export-csv#required_roles_and_permissions_for_importing_to_cloud_sql_for_postgresql).
        ("sqladmin", "instances.import") => {
            let mut needs = vec![need("cloudsql.instances.import", Project)];
            if let Some(bucket) = body["importContext"]["uri"].as_str().and_then(bucket_of) {
                needs.push(Need {
                    any_of: vec!["storage.objects.get"],
                    on: Object(bucket),
                    who: Some(format!("serviceAccount:{cloudsql_account}")),
                });
            }
            needs
        }
        ("sqladmin", "instances.export") => {
            let mut needs = vec![need("cloudsql.instances.export", Project)];
            if let Some(bucket) = body["exportContext"]["uri"].as_str().and_then(bucket_of) {
                needs.push(Need {
                    any_of: vec!["storage.objects.create"],
                    on: Object(bucket),
                    who: Some(format!("serviceAccount:{cloudsql_account}")),
                });
            }
            needs
        }
        ("sqladmin", "instances.get" | "operations.get" | "operations.list") => {
            vec![need("cloudsql.instances.get", Project)]
        }
        ("sqladmin", "instances.list") => vec![need("cloudsql.instances.list", Project)],
        // UNCONFIRMED: neither operations.cancel's reference nor Cloud SQL's
        // permissions page names the permission it checks. The stand-in asks
        // for what started the operation (infra cancels only its own import
        // or export); infra treats a refused cancel as a warning.
        ("sqladmin", "operations.cancel") => vec![Need {
            any_of: vec!["cloudsql.instances.import", "cloudsql.instances.export"],
            on: Project,
            who: None,
        }],
        // Creating a cluster or batch that runs as a service account needs
        // actAs on it (https://cloud.google.com/dataproc/docs/concepts/iam/dataproc-principals#vm_service_account_data_plane_identity).
        ("dataproc", "projects.regions.clusters.create") => {
            let mut needs = vec![need("dataproc.clusters.create", Project)];
            needs.extend(act_as(
                &body["config"]["gceClusterConfig"]["serviceAccount"],
            ));
            needs
        }
        ("dataproc", "projects.regions.clusters.get") => {
            vec![need("dataproc.clusters.get", Project)]
        }
        ("dataproc", "projects.regions.clusters.list") => {
            vec![need("dataproc.clusters.list", Project)]
        }
        ("dataproc", "projects.regions.clusters.delete") => {
            vec![need("dataproc.clusters.delete", Project)]
        }
        // The job's driver and executors run on the cluster's VMs, as its
        // VM service account: that account reads the script and every
        // gs:// input the job names
        // (https://cloud.google.com/dataproc/docs/concepts/iam/dataproc-principals#vm_service_account_data_plane_identity).
        ("dataproc", "projects.regions.jobs.submit") => {
            let mut needs = vec![
                need("dataproc.jobs.create", Project),
                need("dataproc.clusters.use", Project),
            ];
            if let Some(account) = cluster_account {
                needs.extend(reads_as(&body["job"], account));
            }
            needs
        }
        ("dataproc", "projects.regions.jobs.get") => vec![need("dataproc.jobs.get", Project)],
        ("dataproc", "projects.regions.jobs.list") => vec![need("dataproc.jobs.list", Project)],
        ("dataproc", "projects.regions.jobs.cancel") => vec![need("dataproc.jobs.cancel", Project)],
        ("dataproc", "projects.regions.operations.get") => {
            vec![need("dataproc.operations.get", Project)]
        }
        ("dataproc", "projects.regions.operations.list") => {
            vec![need("dataproc.operations.list", Project)]
        }
        ("dataproc", "projects.regions.operations.cancel") => {
            vec![need("dataproc.operations.cancel", Project)]
        }
        ("dataproc", "projects.locations.batches.create") => {
            let account = &body["environmentConfig"]["executionConfig"]["serviceAccount"];
            let mut needs = vec![need("dataproc.batches.create", Project)];
            needs.extend(act_as(account));
            if let Some(account) = account.as_str() {
                needs.extend(reads_as(body, account));
            }
            needs
        }
        ("dataproc", "projects.locations.batches.get") => {
            vec![need("dataproc.batches.get", Project)]
        }
        ("dataproc", "projects.locations.batches.list") => {
            vec![need("dataproc.batches.list", Project)]
        }
        ("dataproc", "projects.locations.batches.delete") => {
            vec![need("dataproc.batches.delete", Project)]
        }
        ("dataproc", "projects.locations.operations.cancel") => {
            vec![need("dataproc.operations.cancel", Project)]
        }
        ("dataproc", "projects.locations.operations.get") => {
            vec![need("dataproc.operations.get", Project)]
        }
        ("bigquery", "datasets.insert") => vec![need("bigquery.datasets.create", Project)],
        ("bigquery", "datasets.delete") => {
            vec![need("bigquery.datasets.delete", Dataset(after("datasets")))]
        }
        ("bigquery", "datasets.get") => {
            vec![need("bigquery.datasets.get", Dataset(after("datasets")))]
        }
        // A load job writes its table and reads Cloud Storage as the caller
        // (https://cloud.google.com/bigquery/docs/batch-loading-data#permissions-load-data-from-cloud-storage).
        ("bigquery", "jobs.insert") => {
            let mut needs = vec![need("bigquery.jobs.create", Project)];
            let load = &body["configuration"]["load"];
            if let Some(dataset) = load["destinationTable"]["datasetId"].as_str() {
                for p in ["bigquery.tables.create", "bigquery.tables.updateData"] {
                    needs.push(need(p, Dataset(dataset.to_owned())));
                }
                for uri in load["sourceUris"].as_array().into_iter().flatten() {
                    if let Some(bucket) = uri.as_str().and_then(bucket_of) {
                        needs.push(need("storage.objects.get", Object(bucket)));
                    }
                }
            }
            needs
        }
        ("bigquery", "jobs.query") => vec![need("bigquery.jobs.create", Project)],
        // A caller may read and cancel its own jobs with jobs.create
        // (https://cloud.google.com/bigquery/docs/managing-jobs#required_permissions).
        ("bigquery", "jobs.get" | "jobs.getQueryResults") => vec![Need {
            any_of: vec!["bigquery.jobs.get", "bigquery.jobs.create"],
            on: Project,
            who: None,
        }],
        ("bigquery", "jobs.cancel") => vec![Need {
            any_of: vec!["bigquery.jobs.update", "bigquery.jobs.create"],
            on: Project,
            who: None,
        }],
        ("bigquery", "tables.get") => vec![need("bigquery.tables.get", Dataset(after("datasets")))],
        ("bigquery", "tables.list") => {
            vec![need("bigquery.tables.list", Dataset(after("datasets")))]
        }
        ("bigquery", "tables.delete") => {
            vec![need("bigquery.tables.delete", Dataset(after("datasets")))]
        }
        ("serviceusage", "services.batchEnable" | "services.enable") => {
            vec![need("serviceusage.services.enable", Project)]
        }
        ("serviceusage", "services.batchGet" | "services.get") => {
            vec![need("serviceusage.services.get", Project)]
        }
        ("serviceusage", "services.list") => vec![need("serviceusage.services.list", Project)],
        ("serviceusage", "operations.get") => vec![need("serviceusage.operations.get", Project)],
        ("compute", "networks.get") => vec![need("compute.networks.get", Project)],
        ("compute", "networks.removePeering") => {
            vec![need("compute.networks.removePeering", Project)]
        }
        ("compute", "globalOperations.get" | "globalOperations.wait") => {
            vec![need("compute.globalOperations.get", Project)]
        }
        _ => return None,
    };
    Some(needs)
}

/// What a Cloud Storage JSON API request needs, from its verb, decoded path
/// and query (https://cloud.google.com/storage/docs/access-control/iam-json).
/// `None`: a request no rule covers.
pub fn storage_required(method: &str, path: &str) -> Option<Vec<Need>> {
    use Resource::*;
    let path = path
        .trim_start_matches("/upload")
        .trim_start_matches("/download")
        .trim_start_matches("/storage/v1");
    let seg: Vec<&str> = path.trim_start_matches('/').splitn(4, '/').collect();
    let needs = match (method, seg.as_slice()) {
        ("POST", ["b"]) => vec![need("storage.buckets.create", Project)],
        ("GET", ["b"]) => vec![need("storage.buckets.list", Project)],
        ("GET", ["b", b]) => vec![need("storage.buckets.get", Bucket(b.to_string()))],
        ("PATCH" | "PUT", ["b", b]) => vec![need("storage.buckets.update", Bucket(b.to_string()))],
        ("DELETE", ["b", b]) => vec![need("storage.buckets.delete", Bucket(b.to_string()))],
        ("GET", ["b", b, "o"]) => vec![need("storage.objects.list", Bucket(b.to_string()))],
        ("POST" | "PUT", ["b", b, "o"]) => {
            vec![need("storage.objects.create", Object(b.to_string()))]
        }
        ("GET", ["b", b, "o", _]) => vec![need("storage.objects.get", Object(b.to_string()))],
        ("DELETE", ["b", b, "o", _]) => {
            vec![need("storage.objects.delete", Object(b.to_string()))]
        }
        ("PATCH", ["b", b, "o", _]) => vec![need("storage.objects.update", Object(b.to_string()))],
        // objects.compose reads the sources and creates the destination
        // (https://cloud.google.com/storage/docs/json_api/v1/objects/compose).
        ("POST", ["b", b, "o", object]) if object.ends_with("/compose") => vec![
            need("storage.objects.create", Object(b.to_string())),
            need("storage.objects.get", Object(b.to_string())),
        ],
        _ => return None,
    };
    Some(needs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_lacks_only_what_it_is_told_to() {
        let owner = Role::from_list(&["*".into(), "-iam.serviceAccounts.getAccessToken".into()]);
        assert!(owner.has("cloudsql.instances.import"));
        assert!(!owner.has("iam.serviceAccounts.getAccessToken"));
    }

    #[test]
    fn every_call_infra_makes_has_a_rule() {
        for id in [
            "sql.instances.import",
            "sql.operations.get",
            "sql.operations.cancel",
            "dataproc.projects.regions.clusters.create",
            "dataproc.projects.regions.jobs.submit",
            "bigquery.jobs.insert",
            "bigquery.tables.get",
            "serviceusage.services.batchEnable",
            "compute.networks.removePeering",
        ] {
            assert!(
                required(id, &[], &Value::Null, "sa", None).is_some(),
                "{id}"
            );
        }
        assert_eq!(
            required("sqladmin.instances.delete", &[], &Value::Null, "sa", None),
            None
        );
    }

    #[test]
    fn a_cloud_sql_import_is_read_as_the_instance_account() {
        let body = json!({"importContext": {"uri": "gs://stage/x.csv"}});
        let needs = required("sql.instances.import", &[], &body, "sql@x", None).unwrap();
        assert_eq!(needs[1].who.as_deref(), Some("serviceAccount:sql@x"));
        assert_eq!(needs[1].on, Resource::Object("stage".into()));
    }

    #[test]
    fn a_job_reads_its_files_as_the_clusters_account() {
        let body = json!({"job": {
            "placement": {"clusterName": "c"},
            "pysparkJob": {
                "mainPythonFileUri": "gs://code/tokenizer.py",
                "args": ["--reviews", "gs://raw/reviews.csv", "--out", "gs://stage/reviews"],
            },
        }});
        let id = "dataproc.projects.regions.jobs.submit";
        let needs = required(id, &[], &body, "sql@x", Some("vm@x")).unwrap();
        let reads: Vec<_> = needs.iter().filter(|n| n.who.is_some()).collect();
        assert_eq!(reads.len(), 3);
        assert!(
            reads
                .iter()
                .all(|n| n.who.as_deref() == Some("serviceAccount:vm@x"))
        );
        assert!(reads.iter().any(|n| n.on == Resource::Object("raw".into())));
    }

    #[test]
    fn storage_paths_map_to_bucket_permissions() {
        let get = storage_required("GET", "/storage/v1/b/raw/o/dir/file.csv").unwrap();
        assert_eq!(get[0].any_of, vec!["storage.objects.get"]);
        assert_eq!(get[0].on, Resource::Object("raw".into()));
        let upload = storage_required("POST", "/upload/storage/v1/b/raw/o").unwrap();
        assert_eq!(upload[0].any_of, vec!["storage.objects.create"]);
        let compose = storage_required("POST", "/storage/v1/b/stage/o/a/b.csv/compose").unwrap();
        assert_eq!(compose.len(), 2);
    }
}
