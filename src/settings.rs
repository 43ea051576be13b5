//! Configuration, resolved once.
//!
//! Every setting is declared once, in the `settings!` table below, with its
//! key in `infra.toml`, its `INFRA_*` environment variable, its type and its
//! default. Precedence, written here and nowhere else:
//!
//! ```text
//! flags  >  INFRA_* environment  >  infra.toml  >  defaults
//! ```
//!
//! Each source becomes a partial [`Layer`]; layers are merged field by field
//! and resolved into [`Settings`], which the rest of `infra` reads.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use serde::Serialize;

/// Where the pipeline runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// One machine, no cloud account: directories, a private PostgreSQL, local Spark, DuckDB.
    Local,
    /// Google Cloud: GCS, Cloud SQL, Dataproc, BigQuery, provisioned by Terraform.
    Gcp,
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetKind::Local => "local",
            TargetKind::Gcp => "gcp",
        })
    }
}

impl FromStr for TargetKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "local" => Ok(TargetKind::Local),
            "gcp" => Ok(TargetKind::Gcp),
            other => bail!("unknown target `{other}` (expected `local` or `gcp`)"),
        }
    }
}

/// A raw value from one source, before it is parsed into a setting's type.
pub enum Raw<'a> {
    Toml(&'a toml::Value),
    Text(&'a str),
}

/// A type a setting can have: parsed from a TOML value or from the text of
/// an environment variable or flag.
pub trait SettingValue: Sized {
    fn from_raw(raw: Raw<'_>) -> Result<Self>;
}

impl SettingValue for String {
    fn from_raw(raw: Raw<'_>) -> Result<Self> {
        match raw {
            Raw::Toml(toml::Value::String(s)) => Ok(s.clone()),
            Raw::Toml(other) => bail!("expected a string, found {}", other.type_str()),
            Raw::Text(s) => Ok(s.to_owned()),
        }
    }
}

impl SettingValue for PathBuf {
    fn from_raw(raw: Raw<'_>) -> Result<Self> {
        String::from_raw(raw).map(PathBuf::from)
    }
}

impl SettingValue for TargetKind {
    fn from_raw(raw: Raw<'_>) -> Result<Self> {
        String::from_raw(raw)?.parse()
    }
}

impl SettingValue for bool {
    fn from_raw(raw: Raw<'_>) -> Result<Self> {
        match raw {
            Raw::Toml(toml::Value::Boolean(b)) => Ok(*b),
            Raw::Toml(other) => bail!("expected true or false, found {}", other.type_str()),
            Raw::Text(s) => match s.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => bail!("expected true or false, found `{s}`"),
            },
        }
    }
}

impl SettingValue for u32 {
    fn from_raw(raw: Raw<'_>) -> Result<Self> {
        match raw {
            Raw::Toml(toml::Value::Integer(i)) => u32::try_from(*i)
                .map_err(|_| anyhow::anyhow!("{i} is out of range (0-{})", u32::MAX)),
            Raw::Toml(other) => bail!("expected a whole number, found {}", other.type_str()),
            Raw::Text(s) => s
                .parse()
                .map_err(|_| anyhow::anyhow!("expected a whole number, found `{s}`")),
        }
    }
}

impl SettingValue for u16 {
    fn from_raw(raw: Raw<'_>) -> Result<Self> {
        let n = u32::from_raw(raw)?;
        u16::try_from(n).map_err(|_| anyhow::anyhow!("{n} is out of range: a port is 0-65535"))
    }
}

/// `key=value` pairs: a TOML table, or `k=v,k=v` in the environment.
impl SettingValue for BTreeMap<String, String> {
    fn from_raw(raw: Raw<'_>) -> Result<Self> {
        match raw {
            Raw::Toml(toml::Value::Table(t)) => t
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        toml::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    Ok((k.clone(), v))
                })
                .collect(),
            Raw::Toml(other) => bail!("expected a table, found {}", other.type_str()),
            Raw::Text(s) => s
                .split(',')
                .filter(|pair| !pair.trim().is_empty())
                .map(|pair| {
                    let (k, v) = pair
                        .split_once('=')
                        .with_context(|| format!("expected key=value, found `{pair}`"))?;
                    Ok((k.trim().to_owned(), v.trim().to_owned()))
                })
                .collect(),
        }
    }
}

/// Declares every setting once: field, type, `infra.toml` key, default, and
/// a one-line description. The environment variable is the key upper-cased
/// with dots as underscores, prefixed `INFRA_` (`spark.master` →
/// `INFRA_SPARK_MASTER`).
macro_rules! settings {
    ($( $field:ident : $ty:ty = $key:literal, $default:expr, $doc:literal; )*) => {
        /// One source's settings, each present or not.
        #[derive(Debug, Clone, Default)]
        pub struct Layer {
            $( pub $field: Option<$ty>, )*
        }

        /// Every setting, resolved.
        #[derive(Debug, Clone, Serialize)]
        pub struct Values {
            $( #[doc = $doc] pub $field: $ty, )*
        }

        /// Every key with its description, in declaration order.
        pub const KEYS: &[(&str, &str)] = &[ $( ($key, $doc), )* ];

        impl Layer {
            /// Sets `key` from `raw`; `Ok(false)` when no setting has that key.
            fn set(&mut self, key: &str, raw: Raw<'_>) -> Result<bool> {
                match key {
                    $( $key => self.$field = Some(<$ty>::from_raw(raw)?), )*
                    _ => return Ok(false),
                }
                Ok(true)
            }

            /// Field by field, `self` wins over `lower`.
            pub fn or(self, lower: Layer) -> Layer {
                Layer { $( $field: self.$field.or(lower.$field), )* }
            }

            fn resolve(self) -> Values {
                Values { $( $field: self.$field.unwrap_or_else(|| $default), )* }
            }
        }
    };
}

settings! {
    target: Option<TargetKind> = "target", None,
        "Where to run: `local` or `gcp`. Defaults to `gcp` when a project is set, else `local`.";
    state_dir: PathBuf = "state_dir", PathBuf::from(".infra"),
        "Directory holding everything infra creates locally.";
    cache_dir: Option<PathBuf> = "cache_dir", None,
        "Directory for caches shared by every state dir, such as the pyspark venv [default: ~/.cache/infra].";
    deployment: String = "deployment", "infra".to_owned(),
        "Name of this deployment, used in resource names and labels.";
    project: Option<String> = "project", None,
        "Google Cloud project id.";
    region: String = "region", "us-central1".to_owned(),
        "Google Cloud region.";
    impersonate_service_account: Option<String> = "impersonate_service_account", None,
        "Service account to impersonate for every Google Cloud call, Terraform's included (the credentials then only mint its tokens).";
    run_as: RunAs = "run_as", RunAs::Pipeline,
        "Who `run`, `query`, `status` and `report` act as on GCP: `pipeline` (the deployment's pipeline service account, impersonated; `up` grants the operator Token Creator on it) or `caller` (the credentials themselves).";
    operator: Option<String> = "operator", None,
        "The member who runs `up` (`user:…` or `serviceAccount:…`), granted Token Creator on the pipeline account [default: asked of Google's tokeninfo for the credentials].";
    bucket_raw: Option<String> = "buckets.raw", None,
        "Raw bucket name on GCP (default: derived from project and a random suffix).";
    bucket_staging: Option<String> = "buckets.staging", None,
        "Staging bucket name on GCP (default: derived from project and a random suffix).";
    bucket_code: Option<String> = "buckets.code", None,
        "Code bucket name on GCP (default: derived from project and a random suffix).";
    bucket_force_destroy: bool = "buckets.force_destroy", true,
        "Let `down` delete GCS buckets that still hold objects.";
    database_name: String = "database.name", "bootcampdb".to_owned(),
        "PostgreSQL database name.";
    database_user: String = "database.user", "bootcamp".to_owned(),
        "PostgreSQL user the pipeline connects as.";
    database_version: u32 = "database.version", 15,
        "Cloud SQL PostgreSQL major version.";
    database_tier: String = "database.tier", "db-custom-1-3840".to_owned(),
        "Cloud SQL machine tier.";
    database_operator_cidr: Option<String> = "database.operator_cidr", None,
        "CIDR allowed to reach Cloud SQL's public IP (never 0.0.0.0/0). Unset: private IP only.";
    database_deletion_protection: bool = "database.deletion_protection", false,
        "Protect the Cloud SQL instance from deletion (`down` lifts it first).";
    database_port: u16 = "database.port", 0,
        "Port of the local PostgreSQL server (0: pick a free one).";
    database_connect_timeout_secs: u32 = "database.connect_timeout_secs", 10,
        "How long `run` waits for the local PostgreSQL server to accept a session before the step fails.";
    database_statement_timeout_secs: u32 = "database.statement_timeout_secs", 3600,
        "The longest one statement of a step may run on the local PostgreSQL server (its `statement_timeout`); `run` also gives up on a server that answers nothing for this long.";
    dataset: String = "warehouse.dataset", "bootcamp".to_owned(),
        "Warehouse dataset (BigQuery) or schema (DuckDB).";
    table: String = "warehouse.table", "user_behavior_metric".to_owned(),
        "Warehouse table for the metric.";
    run_max_rejected: Option<MaxRejected> = "run.max_rejected", None,
        "Most rows step 0 may reject, as a count (`100`) or a fraction of the rows read (`0.01`, `1%`); above it the step fails after writing the rejects, and the previous table stays. Unset: no limit.";
    warehouse_lock_wait_secs: u32 = "warehouse.lock_wait_secs", 60,
        "How long step 4 waits for another program's connection to the local DuckDB warehouse to close before it fails, naming that program.";
    spark_master: String = "spark.master", "local[*]".to_owned(),
        "Spark master for the local target.";
    spark_driver_memory: String = "spark.driver_memory", "2g".to_owned(),
        "Spark driver memory.";
    spark_properties: BTreeMap<String, String> = "spark.properties", BTreeMap::new(),
        "Extra Spark properties, passed as --conf key=value.";
    spark_connect_port: u16 = "spark.connect_port", 0,
        "Port of the local Spark Connect server (0: pick a free one).";
    spark_heartbeat_timeout_secs: u32 = "spark.heartbeat_timeout_secs", 60,
        "How long the local Spark Connect server may leave heartbeats (an HTTP/2 ping every few seconds) unanswered while a step runs before the step fails and the server is killed; the next `run` starts a fresh one.";
    spark_warm_up: bool = "spark.warm_up", true,
        "Let `up` run both Spark jobs once on a small sample, so the first `run` finds the local Spark Connect server warm.";
    gke_node_count: u32 = "gke.node_count", 2,
        "Nodes in the GKE node pool that hosts Airflow.";
    gke_machine_type: String = "gke.machine_type", "e2-standard-2".to_owned(),
        "Machine type of the GKE nodes.";
    gke_deletion_protection: bool = "gke.deletion_protection", false,
        "Protect the GKE cluster from deletion (`down` lifts it first).";
    gke_zone: Option<String> = "gke.zone", None,
        "Zone of the (zonal) GKE cluster [default: <region>-b].";
    terraform_state_bucket: Option<String> = "terraform.state_bucket", None,
        "GCS bucket holding Terraform state; `up` creates it [default: <project>-<deployment>-tfstate].";
    bucket_allow_dotted_names: bool = "buckets.allow_dotted_names", false,
        "Accept bucket names with dots, which Google creates only after you verify the domain they name.";
    network_private_services_range: String = "network.private_services_range", "10.40.0.0/20".to_owned(),
        "Range reserved for private services access (Cloud SQL's private IP); must not overlap the subnet, GKE or control-plane ranges.";
    endpoints_compute: String = "endpoints.compute", "https://compute.googleapis.com".to_owned(),
        "Base URL of the Compute Engine API (`down` removes Cloud SQL's peering through it).";
    endpoints_serviceusage: String = "endpoints.serviceusage", "https://serviceusage.googleapis.com".to_owned(),
        "Base URL of the Service Usage API (`up` enables the bootstrap APIs through it).";
    terraform_root: Option<PathBuf> = "terraform.root", None,
        "A ready Terraform root module `up` and `down` use instead of rendering templates/ (tests, rehearsals).";
    terraform_airflow_root: Option<PathBuf> = "terraform.airflow_root", None,
        "A ready Terraform root `up` applies after the main one and `down` destroys first, instead of rendering templates/terraform-airflow/ (rehearsals; with terraform.root).";
    spark_mode: SparkMode = "spark.mode", SparkMode::Cluster,
        "How the gcp target runs Spark: `cluster` (one ephemeral Dataproc cluster per run) or `serverless` (Dataproc Serverless batches).";
    dataproc_image_version: String = "dataproc.image_version", "3.0-debian12".to_owned(),
        "Dataproc image of the run's cluster (3.0 ships Spark 4.0, the line the local pyspark is pinned to).";
    dataproc_serverless_runtime: String = "dataproc.serverless_runtime", "3.0".to_owned(),
        "Dataproc Serverless runtime version for `spark.mode = serverless` (3.0 ships Spark 4.0.x).";
    dataproc_master_machine_type: String = "dataproc.master_machine_type", "n1-standard-2".to_owned(),
        "Machine type of the cluster's master.";
    dataproc_worker_machine_type: String = "dataproc.worker_machine_type", "n1-standard-2".to_owned(),
        "Machine type of the cluster's workers.";
    dataproc_workers: u32 = "dataproc.workers", 2,
        "Number of primary workers.";
    dataproc_boot_disk_gb: u32 = "dataproc.boot_disk_gb", 50,
        "Boot disk size of each cluster VM, in GB.";
    dataproc_idle_ttl_secs: u32 = "dataproc.idle_ttl_secs", 1800,
        "Dataproc deletes the run's cluster after this long without a job (a backstop; `run` deletes it itself).";
    dataproc_max_age_secs: u32 = "dataproc.max_age_secs", 14400,
        "Dataproc deletes the run's cluster this long after creation, whatever happens (a backstop).";
    deadlines_cloudsql_operation_secs: u32 = "deadlines.cloudsql_operation_secs", 3600,
        "How long `run` waits for one Cloud SQL import or export before it fails the step (with the operation's console link).";
    deadlines_dataproc_cluster_secs: u32 = "deadlines.dataproc_cluster_secs", 1800,
        "How long `run` waits for the run's Dataproc cluster to be RUNNING, or to be deleted.";
    deadlines_dataproc_job_secs: u32 = "deadlines.dataproc_job_secs", 7200,
        "How long `run` waits for one Dataproc job before it cancels it, deletes the cluster and fails the step.";
    deadlines_dataproc_batch_secs: u32 = "deadlines.dataproc_batch_secs", 7200,
        "How long `run` waits for one Dataproc Serverless batch before it cancels it and fails the step.";
    deadlines_bigquery_job_secs: u32 = "deadlines.bigquery_job_secs", 3600,
        "How long `run` waits for one BigQuery load job before it cancels it and fails the step.";
    deadlines_http_attempt_secs: u32 = "deadlines.http_attempt_secs", 60,
        "On gcp, how long one HTTP attempt waits for an answer (or a download for its next bytes) before it is retried.";
    deadlines_http_call_secs: u32 = "deadlines.http_call_secs", 300,
        "On gcp, how long one API call may take, all its retries included, before the command fails.";
    airflow_executor: String = "airflow.executor", "KubernetesExecutor".to_owned(),
        "Airflow's executor on GKE: `KubernetesExecutor` (a pod per task) or `LocalExecutor` (tasks in the scheduler).";
    airflow_task_cpu: String = "airflow.task_cpu", "500m".to_owned(),
        "CPU request of the pods that run Airflow tasks (Kubernetes quantity).";
    airflow_task_memory: String = "airflow.task_memory", "1Gi".to_owned(),
        "Memory request and limit of the pods that run Airflow tasks (Kubernetes quantity).";
    airflow_schedule: Option<String> = "airflow.schedule", None,
        "Schedule of the Airflow DAG `infra dags` renders: a cron expression or preset such as `@daily`. Unset: manual runs only.";
    endpoints_storage: Option<String> = "endpoints.storage", None,
        "Cloud Storage base URL [default: https://storage.googleapis.com, or STORAGE_EMULATOR_HOST when set].";
    endpoints_dataproc: String = "endpoints.dataproc", "https://dataproc.googleapis.com".to_owned(),
        "Dataproc API base URL.";
    endpoints_bigquery: String = "endpoints.bigquery", "https://bigquery.googleapis.com".to_owned(),
        "BigQuery API base URL.";
    endpoints_sqladmin: String = "endpoints.sqladmin", "https://sqladmin.googleapis.com".to_owned(),
        "Cloud SQL Admin API base URL.";
    endpoints_iam_credentials: String = "endpoints.iam_credentials", "https://iamcredentials.googleapis.com".to_owned(),
        "IAM Credentials API base URL (impersonation: `run_as = pipeline`, --impersonate-service-account).";
    endpoints_oauth2: String = "endpoints.oauth2", "https://oauth2.googleapis.com".to_owned(),
        "Google's OAuth 2.0 base URL: `tokeninfo` says whose the credentials are.";
}

/// `run.max_rejected`: how many rejected rows step 0 accepts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MaxRejected {
    Rows(u64),
    /// Of the rows read, 0 to 1.
    Fraction(f64),
}

impl MaxRejected {
    /// Whether `rejected` of `read` rows is more than this allows.
    pub fn exceeded(self, read: u64, rejected: u64) -> bool {
        match self {
            MaxRejected::Rows(max) => rejected > max,
            MaxRejected::Fraction(max) => read > 0 && rejected as f64 / read as f64 > max,
        }
    }

    fn fraction(value: f64, text: &str) -> Result<MaxRejected> {
        if !(0.0..=1.0).contains(&value) {
            bail!("`{text}` is not a fraction from 0 to 1 (or a percentage up to 100%)");
        }
        Ok(MaxRejected::Fraction(value))
    }
}

impl std::fmt::Display for MaxRejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxRejected::Rows(n) => write!(f, "{n} rows"),
            MaxRejected::Fraction(x) => write!(f, "{}% of the rows read", x * 100.0),
        }
    }
}

impl SettingValue for Option<MaxRejected> {
    fn from_raw(raw: Raw<'_>) -> Result<Self> {
        match raw {
            Raw::Toml(toml::Value::Integer(i)) => u64::try_from(*i)
                .map(|n| Some(MaxRejected::Rows(n)))
                .map_err(|_| anyhow::anyhow!("expected a count of rows, found {i}")),
            Raw::Toml(toml::Value::Float(x)) => MaxRejected::fraction(*x, &x.to_string()).map(Some),
            Raw::Toml(toml::Value::String(s)) => Self::from_raw(Raw::Text(s)),
            Raw::Toml(other) => bail!(
                "expected a count (100) or a fraction (0.01, \"1%\"), found {}",
                other.type_str()
            ),
            Raw::Text(s) => {
                let s = s.trim();
                if s.is_empty() || s == "off" {
                    return Ok(None);
                }
                let bad = || {
                    anyhow::anyhow!("expected a count (100) or a fraction (0.01, 1%), found `{s}`")
                };
                if let Some(percent) = s.strip_suffix('%') {
                    let x: f64 = percent.trim().parse().map_err(|_| bad())?;
                    return MaxRejected::fraction(x / 100.0, s).map(Some);
                }
                if s.contains('.') {
                    let x: f64 = s.parse().map_err(|_| bad())?;
                    return MaxRejected::fraction(x, s).map(Some);
                }
                s.parse()
                    .map(|n| Some(MaxRejected::Rows(n)))
                    .map_err(|_| bad())
            }
        }
    }
}

/// How the gcp target runs the Spark steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SparkMode {
    /// One ephemeral Dataproc cluster per run, deleted at its end.
    Cluster,
    /// Dataproc Serverless batches: no cluster.
    Serverless,
}

/// Whom the pipeline's own calls on GCP act as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunAs {
    /// The deployment's pipeline service account, through impersonation:
    /// the run holds only the grants docs/iam.md lists for it.
    Pipeline,
    /// The credentials themselves (or `impersonate_service_account`).
    Caller,
}

impl SettingValue for RunAs {
    fn from_raw(raw: Raw<'_>) -> Result<Self> {
        match String::from_raw(raw)?.as_str() {
            "pipeline" => Ok(RunAs::Pipeline),
            "caller" => Ok(RunAs::Caller),
            other => bail!("unknown run_as `{other}` (expected `pipeline` or `caller`)"),
        }
    }
}

impl SettingValue for SparkMode {
    fn from_raw(raw: Raw<'_>) -> Result<Self> {
        match String::from_raw(raw)?.as_str() {
            "cluster" => Ok(SparkMode::Cluster),
            "serverless" => Ok(SparkMode::Serverless),
            other => bail!("unknown spark mode `{other}` (expected `cluster` or `serverless`)"),
        }
    }
}

impl SettingValue for Option<String> {
    fn from_raw(raw: Raw<'_>) -> Result<Self> {
        String::from_raw(raw).map(|s| Some(s).filter(|s| !s.is_empty()))
    }
}

impl SettingValue for Option<PathBuf> {
    fn from_raw(raw: Raw<'_>) -> Result<Self> {
        PathBuf::from_raw(raw).map(Some)
    }
}

impl SettingValue for Option<TargetKind> {
    fn from_raw(raw: Raw<'_>) -> Result<Self> {
        TargetKind::from_raw(raw).map(Some)
    }
}

/// The known key nearest to `key`, if it is near enough to be a typo.
fn closest(key: &str) -> Option<&'static str> {
    KEYS.iter()
        .map(|(k, _)| (edit_distance(key, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k)
}

/// `INFRA_*` names that are no setting and still ours: the test suite's and
/// the developer scripts' variables, which reach `infra` through the tests.
const OTHER_INFRA_VARS: [&str; 4] = [
    "INFRA_TEST_",
    "INFRA_DUCKDB",
    "INFRA_CARGO_ARGS",
    "INFRA_ADVISORY_DBS",
];

/// The warning for an `INFRA_*` variable that names no setting (a typo
/// would otherwise be ignored without a word), or `None` for a setting's.
pub fn unknown_env_var(name: &str) -> Option<String> {
    if !name.starts_with("INFRA_")
        || KEYS.iter().any(|(k, _)| env_var(k) == name)
        || OTHER_INFRA_VARS.iter().any(|p| name.starts_with(p))
    {
        return None;
    }
    let near = KEYS
        .iter()
        .map(|(k, _)| env_var(k))
        .map(|var| (edit_distance(name, &var), var))
        .filter(|(d, var)| *d <= 2.max((var.len() - "INFRA_".len()) / 4))
        .min();
    Some(match near {
        Some((_, var)) => {
            format!("{name} is not an infra setting, and is ignored: did you mean {var}?")
        }
        None => format!(
            "{name} is not an infra setting, and is ignored\nhint: `infra config` lists every setting with its INFRA_* variable"
        ),
    })
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Names that reach SQL (schema, table, database, role) must be plain
/// identifiers: letters, digits and underscores, starting with a letter or
/// underscore, at most 63 characters (PostgreSQL's limit, and within
/// BigQuery's). They are quoted where used as well; this check makes a
/// typo fail before anything is created.
fn check_identifiers(values: &Values) -> Result<()> {
    for (key, value) in [
        ("warehouse.dataset", &values.dataset),
        ("warehouse.table", &values.table),
        ("database.name", &values.database_name),
        ("database.user", &values.database_user),
    ] {
        let valid = (1..=63).contains(&value.len())
            && value.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            bail!(
                "invalid `{key}` = `{value}`: expected 1-63 letters, digits and underscores, starting with a letter or underscore\nhint: set `{key}` in infra.toml or {}",
                env_var(key)
            );
        }
    }
    Ok(())
}

fn is_key(key: &str) -> bool {
    KEYS.iter().any(|(k, _)| *k == key)
}

/// The environment variable that sets `key`.
pub fn env_var(key: &str) -> String {
    format!("INFRA_{}", key.replace('.', "_").to_ascii_uppercase())
}

impl Layer {
    /// Reads `infra.toml` text. An unknown key is an error that names it.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Layer> {
        let table: toml::Table = toml::from_str(text)
            .with_context(|| format!("{} is not valid TOML", origin.display()))?;
        let mut layer = Layer::default();
        for (key, value) in &table {
            match value {
                // `[section]` tables hold dotted keys; `spark.properties` is itself a table.
                toml::Value::Table(section) if !is_key(key) => {
                    for (sub, value) in section {
                        let dotted = format!("{key}.{sub}");
                        layer.set_checked(&dotted, Raw::Toml(value), origin)?;
                    }
                }
                _ => layer.set_checked(key, Raw::Toml(value), origin)?,
            }
        }
        Ok(layer)
    }

    fn set_checked(&mut self, key: &str, raw: Raw<'_>, origin: &Path) -> Result<()> {
        let section: Vec<&str> = KEYS
            .iter()
            .filter_map(|(k, _)| k.strip_prefix(key)?.strip_prefix('.'))
            .collect();
        if !section.is_empty() {
            bail!(
                "`{key}` in {} is a section, not a value: write it as a table, `[{key}]`, with the keys {}",
                origin.display(),
                section.join(", ")
            );
        }
        let known = self.set(key, raw).map_err(|e| {
            anyhow::anyhow!("invalid value for `{key}` in {}: {e}", origin.display())
        })?;
        if !known {
            let hint = match closest(key) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!(
                    "known keys: {}",
                    KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
                ),
            };
            bail!("unknown key `{key}` in {}\nhint: {hint}", origin.display());
        }
        Ok(())
    }

    /// Reads `INFRA_*` variables from `vars`. Variables that name no setting
    /// are left out here; the command warns about them
    /// ([`unknown_env_var`]).
    pub fn from_env<I, K, V>(vars: I) -> Result<Layer>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let by_var: BTreeMap<String, &str> = KEYS.iter().map(|(k, _)| (env_var(k), *k)).collect();
        let mut layer = Layer::default();
        for (name, value) in vars {
            if let Some(key) = by_var.get(name.as_ref()) {
                layer
                    .set(key, Raw::Text(value.as_ref()))
                    .with_context(|| format!("invalid value in {}", name.as_ref()))?;
            }
        }
        Ok(layer)
    }

    /// Sets one key from text, as a flag would.
    pub fn with(mut self, key: &str, value: &str) -> Result<Layer> {
        if !self.set(key, Raw::Text(value))? {
            bail!("unknown setting `{key}`");
        }
        Ok(self)
    }
}

impl Values {
    /// Every setting at its default.
    pub fn defaults() -> Values {
        Layer::default().resolve()
    }
}

/// The resolved configuration that commands, targets and the pipeline read.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub target: TargetKind,
    #[serde(flatten)]
    pub values: Values,
}

impl std::ops::Deref for Settings {
    type Target = Values;
    fn deref(&self) -> &Values {
        &self.values
    }
}

/// Where the layers come from.
pub struct Sources<'a> {
    /// `--config`, if given: it must exist.
    pub config: Option<&'a Path>,
    /// The directory `infra.toml` is looked for in when `--config` is absent.
    pub cwd: &'a Path,
    /// The environment, as `(name, value)` pairs.
    pub env: Vec<(String, String)>,
    /// The flags, as a layer.
    pub flags: Layer,
}

impl Settings {
    /// Resolves every setting: flags > environment > `infra.toml` > defaults.
    pub fn resolve(sources: Sources<'_>) -> Result<Settings> {
        let file = match sources.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                Layer::from_toml(&text, path)?
            }
            None => {
                let path = sources.cwd.join("infra.toml");
                match std::fs::read_to_string(&path) {
                    Ok(text) => Layer::from_toml(&text, &path)?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Layer::default(),
                    Err(e) => {
                        return Err(e).with_context(|| format!("cannot read {}", path.display()));
                    }
                }
            }
        };
        let env = Layer::from_env(sources.env)?;
        let values = sources.flags.or(env).or(file).resolve();
        check_identifiers(&values)?;
        let target = values.target.unwrap_or(if values.project.is_some() {
            TargetKind::Gcp
        } else {
            TargetKind::Local
        });
        let mut values = values;
        if values.state_dir.is_relative() {
            values.state_dir = sources.cwd.join(&values.state_dir);
        }
        for root in [
            values.terraform_root.as_mut(),
            values.terraform_airflow_root.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            if root.is_relative() {
                *root = sources.cwd.join(&*root);
            }
        }
        Ok(Settings { target, values })
    }

    /// The cache dir: the setting, else `$XDG_CACHE_HOME/infra`, else `~/.cache/infra`.
    pub fn cache_dir(&self) -> PathBuf {
        if let Some(dir) = &self.cache_dir {
            return dir.clone();
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        base.join("infra")
    }

    /// The project, or an error that says how to set it.
    pub fn require_project(&self) -> Result<&str> {
        self.project.as_deref().with_context(|| {
            format!(
                "no Google Cloud project is configured\nhint: set `project` in infra.toml or {}",
                env_var("project")
            )
        })
    }

    /// The resolved settings as TOML, for `infra config`.
    pub fn to_toml(&self) -> Result<String> {
        let mut table = toml::Table::new();
        let json = serde_json::to_value(&self.values)?;
        let json = json.as_object().expect("Values serializes to an object");
        for (key, _) in KEYS {
            if !applies(key, self.target) {
                continue;
            }
            let field = field_name(key);
            let value = match (key, &json[&field]) {
                (&"target", _) => serde_json::Value::String(self.target.to_string()),
                // Shown resolved: the default depends on the environment.
                (&"cache_dir", _) => {
                    serde_json::Value::String(self.cache_dir().display().to_string())
                }
                (_, v) => v.clone(),
            };
            let Some(value) = json_to_toml(value) else {
                continue;
            };
            match key.split_once('.') {
                Some((section, sub)) => {
                    table
                        .entry(section)
                        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                        .as_table_mut()
                        .expect("sections are tables")
                        .insert(sub.to_owned(), value);
                }
                None => {
                    table.insert((*key).to_owned(), value);
                }
            }
        }
        Ok(toml::to_string(&table)?)
    }
}

/// Whether `key` means anything on `target`, for `infra config`: the GKE,
/// Cloud SQL, bucket and Terraform keys only shape the gcp target, the local
/// server's port and Spark master only the local one. `project` and
/// `region` stay: setting a project is what makes gcp the default.
fn applies(key: &str, target: TargetKind) -> bool {
    let gcp_only = key.starts_with("gke.")
        || key.starts_with("buckets.")
        || key.starts_with("terraform.")
        || matches!(
            key,
            "impersonate_service_account"
                | "run_as"
                | "operator"
                | "database.version"
                | "database.tier"
                | "database.operator_cidr"
                | "database.deletion_protection"
        );
    let local_only = matches!(key, "database.port" | "spark.master");
    match target {
        TargetKind::Local => !gcp_only,
        TargetKind::Gcp => !local_only,
    }
}

/// The struct field behind a key (`buckets.raw` → `bucket_raw`).
fn field_name(key: &str) -> String {
    match key {
        "warehouse.dataset" => "dataset".into(),
        "warehouse.table" => "table".into(),
        k if k.starts_with("buckets.") => format!("bucket_{}", &k["buckets.".len()..]),
        k => k.replace('.', "_"),
    }
}

fn json_to_toml(value: serde_json::Value) -> Option<toml::Value> {
    Some(match value {
        serde_json::Value::Null => return None,
        serde_json::Value::Bool(b) => toml::Value::Boolean(b),
        serde_json::Value::Number(n) => toml::Value::Integer(n.as_i64()?),
        serde_json::Value::String(s) => toml::Value::String(s),
        serde_json::Value::Object(map) => toml::Value::Table(
            map.into_iter()
                .filter_map(|(k, v)| Some((k, json_to_toml(v)?)))
                .collect(),
        ),
        serde_json::Value::Array(items) => {
            toml::Value::Array(items.into_iter().filter_map(json_to_toml).collect())
        }
    })
}

/// Settings for unit tests, resolved from an `infra.toml` text, variables
/// and flags in a temp dir.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub fn resolve(toml: &str, env: &[(&str, &str)], flags: Layer) -> Result<Settings> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("infra.toml"), toml)?;
        Settings::resolve(Sources {
            config: None,
            cwd: dir.path(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            flags,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 21): a typo in an `INFRA_*` name was ignored
    /// without a word, where the same typo in infra.toml is an error.
    #[test]
    fn an_unknown_infra_variable_gets_a_did_you_mean() {
        let typo = unknown_env_var("INFRA_SPARK_MASTR").unwrap();
        assert!(typo.contains("did you mean INFRA_SPARK_MASTER?"), "{typo}");
        let far = unknown_env_var("INFRA_SOMETHING_ELSE_ENTIRELY").unwrap();
        assert!(far.contains("infra config"), "{far}");
        assert_eq!(unknown_env_var("INFRA_SPARK_MASTER"), None);
        assert_eq!(unknown_env_var("INFRA_TEST_HOLD_DIR"), None);
        assert_eq!(unknown_env_var("PATH"), None);
    }

    #[test]
    fn max_rejected_is_a_count_or_a_fraction() {
        let parse = |s: &str| Option::<MaxRejected>::from_raw(Raw::Text(s));
        assert_eq!(parse("100").unwrap(), Some(MaxRejected::Rows(100)));
        assert_eq!(parse("0.01").unwrap(), Some(MaxRejected::Fraction(0.01)));
        assert_eq!(parse("1%").unwrap(), Some(MaxRejected::Fraction(0.01)));
        assert_eq!(parse("off").unwrap(), None);
        assert!(parse("1.5").is_err());
        assert!(parse("lots").is_err());
        let toml = |v: toml::Value| Option::<MaxRejected>::from_raw(Raw::Toml(&v));
        assert_eq!(
            toml(toml::Value::Integer(5)).unwrap(),
            Some(MaxRejected::Rows(5))
        );
        assert_eq!(
            toml(toml::Value::Float(0.5)).unwrap(),
            Some(MaxRejected::Fraction(0.5))
        );
        assert!(toml(toml::Value::Integer(-1)).is_err());
        assert!(MaxRejected::Rows(3).exceeded(10, 4));
        assert!(!MaxRejected::Rows(3).exceeded(10, 3));
        assert!(MaxRejected::Fraction(0.1).exceeded(100, 11));
        assert!(!MaxRejected::Fraction(0.1).exceeded(100, 10));
        assert!(!MaxRejected::Fraction(0.0).exceeded(0, 0));
    }

    use super::testing::resolve;

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let s = resolve("", &[], Layer::default()).unwrap();
        assert_eq!(s.target, TargetKind::Local);
        assert_eq!(s.dataset, "bootcamp");
        assert_eq!(s.table, "user_behavior_metric");
        assert_eq!(s.database_name, "bootcampdb");
        assert_eq!(s.spark_master, "local[*]");
        assert!(s.state_dir.ends_with(".infra"));
    }

    #[test]
    fn flags_beat_env_beat_file_beat_defaults() {
        let file = "region = \"from-file\"\n[spark]\nmaster = \"from-file\"\ndriver_memory = \"3g\"\n[warehouse]\ntable = \"t_file\"\n";
        let env = [
            ("INFRA_REGION", "from-env"),
            ("INFRA_SPARK_MASTER", "from-env"),
        ];
        let flags = Layer::default().with("region", "from-flag").unwrap();
        let s = resolve(file, &env, flags).unwrap();
        assert_eq!(s.region, "from-flag");
        assert_eq!(s.spark_master, "from-env");
        assert_eq!(s.spark_driver_memory, "3g");
        assert_eq!(s.table, "t_file");
        assert_eq!(s.dataset, "bootcamp");
    }

    #[test]
    fn a_project_makes_gcp_the_default_target() {
        let s = resolve("project = \"p\"", &[], Layer::default()).unwrap();
        assert_eq!(s.target, TargetKind::Gcp);
        let s = resolve("project = \"p\"\ntarget = \"local\"", &[], Layer::default()).unwrap();
        assert_eq!(s.target, TargetKind::Local);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = resolve("[spark]\nmastr = \"x\"", &[], Layer::default()).unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown key `spark.mastr`"),
            "{err:#}"
        );
        let err = resolve("colour = 1", &[], Layer::default()).unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown key `colour`"),
            "{err:#}"
        );
    }

    #[test]
    fn config_mistakes_get_a_message_that_says_what_to_do() {
        let message =
            |toml: &str| format!("{:#}", resolve(toml, &[], Layer::default()).unwrap_err());
        let typo = message("[spark]\nmastr = \"x\"");
        assert!(typo.contains("did you mean `spark.master`?"), "{typo}");
        let port = message("[database]\nport = 99999");
        assert!(
            port.contains("99999 is out of range: a port is 0-65535"),
            "{port}"
        );
        assert!(!port.contains("integral type conversion"), "{port}");
        let section = message("spark = \"x\"");
        assert!(section.contains("`spark` in"), "{section}");
        assert!(section.contains("is a section"), "{section}");
        assert!(!section.contains("unknown key"), "{section}");
        for bad in [
            "[warehouse]\ndataset = \"a;drop\"",
            "[warehouse]\ntable = \"t\\\"x\"",
            "[database]\nname = \"\"",
            "[database]\nuser = \"1st\"",
        ] {
            let err = message(bad);
            assert!(err.contains("invalid `"), "{bad}: {err}");
        }
    }

    #[test]
    fn bad_values_name_their_source() {
        let err = resolve("[gke]\nnode_count = \"two\"", &[], Layer::default()).unwrap_err();
        assert!(format!("{err:#}").contains("gke.node_count"), "{err:#}");
        let err = resolve("", &[("INFRA_GKE_NODE_COUNT", "two")], Layer::default()).unwrap_err();
        assert!(
            format!("{err:#}").contains("INFRA_GKE_NODE_COUNT"),
            "{err:#}"
        );
    }

    #[test]
    fn spark_properties_come_from_a_table_or_pairs() {
        let s = resolve(
            "[spark.properties]\n\"spark.sql.shuffle.partitions\" = 4",
            &[],
            Layer::default(),
        )
        .unwrap();
        assert_eq!(s.spark_properties["spark.sql.shuffle.partitions"], "4");
        let s = resolve(
            "",
            &[("INFRA_SPARK_PROPERTIES", "a=1, b=two")],
            Layer::default(),
        )
        .unwrap();
        assert_eq!(s.spark_properties["a"], "1");
        assert_eq!(s.spark_properties["b"], "two");
    }

    #[test]
    fn resolved_settings_print_as_toml_that_reads_back() {
        let s = resolve(
            "project = \"p\"\n[gke]\nnode_count = 3",
            &[],
            Layer::default(),
        )
        .unwrap();
        let text = s.to_toml().unwrap();
        let back = Layer::from_toml(&text, Path::new("printed")).unwrap();
        assert_eq!(back.project.flatten().as_deref(), Some("p"));
        assert_eq!(back.gke_node_count, Some(3));
    }

    /// Issue 14: `config` showed GKE and Cloud SQL keys on the local target
    /// and hid `cache_dir`.
    #[test]
    fn config_shows_the_keys_of_its_target_and_the_resolved_cache_dir() {
        let local = resolve("", &[("INFRA_CACHE_DIR", "/c")], Layer::default()).unwrap();
        let text = local.to_toml().unwrap();
        assert!(text.contains("cache_dir = \"/c\""), "{text}");
        assert!(text.contains("port = 0"), "{text}");
        for hidden in ["[gke]", "tier", "operator_cidr", "[buckets]", "[terraform]"] {
            assert!(
                !text.contains(hidden),
                "{hidden} on the local target:\n{text}"
            );
        }
        let gcp = resolve("project = \"p\"", &[], Layer::default()).unwrap();
        let text = gcp.to_toml().unwrap();
        assert!(text.contains("[gke]") && text.contains("tier"), "{text}");
        assert!(
            !text.contains("\nport = 0") && !text.contains("\nmaster = "),
            "{text}"
        );
        assert!(text.contains("cache_dir = "), "{text}");
    }
}
