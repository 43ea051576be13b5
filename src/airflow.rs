//! The pipeline as an Airflow DAG (`infra dags`), for teams that schedule
//! it in Airflow; `infra run` stays the on-demand path.
//!
//! The DAG is not a second description of the pipeline. `commands::dags`
//! takes the requests the GCP run would send (the same previews `infra run
//! --dry-run` prints: Cloud SQL import and export contexts, the Dataproc
//! cluster and job bodies, the BigQuery load configuration) for a
//! placeholder run, and this module turns each into the Google provider's
//! operator, with the placeholder replaced by a per-run key that Airflow
//! fills in. What no operator does (step 0's validation, the header of
//! step 1's dump, the row-count checks) is a Python task in the DAG, and
//! step 0's validator is `templates/airflow/infra_purchases.py`, held to
//! the loader's verdicts by `tests/it/airflow_conformance.rs`.
//!
//! Files, rendered from `templates/airflow/` with Tera, every value
//! reaching the template already a Python literal:
//!
//! ```text
//! <dag_id>.py             the DAG
//! infra_purchases.py      step 0's validator, imported by the DAG
//! sql/1-create.sql        the schema and a fresh load table (step 0's first import)
//! sql/3-swap.sql.tmpl     the count check and swap, `__ROWS__` filled in per run
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::assets;

/// The code bucket's folder the DAG folder is uploaded to, which Airflow's
/// GCS DAG bundle reads (`templates/terraform-airflow/`).
pub const DAGS_PREFIX: &str = "dags";

/// The run id the previews are made for; every occurrence in a request
/// becomes [`RUN_KEY`] in the DAG. Lower-case, so it survives the label
/// and cluster-name rules unchanged.
pub const PLACEHOLDER_RUN: &str = "airflowrunkey";

/// The insert date the previews are made for (the run's start in the GCP
/// run); it becomes [`INSERT_DATE`].
pub const PLACEHOLDER_INSERT_DATE: &str = "2000-01-01T00:00:00Z";

/// The Jinja expression of a DAG run's key: a label value and the tail of
/// the cluster name, the same for every try of the run (`run_key` in the DAG).
pub const RUN_KEY: &str = "{{ run_key(run_id) }}";

/// The Jinja expression of step 3's `--insert-date`: the DAG run's start.
pub const INSERT_DATE: &str = "{{ insert_date(dag_run) }}";

/// The longest Dataproc cluster name.
const CLUSTER_NAME_MAX: usize = 51;

/// The length of a run key (`r` and 12 hex digits).
const RUN_KEY_LEN: usize = 13;

/// One PySpark job of steps 2 and 3.
#[derive(Debug, Clone)]
pub struct Job {
    /// `tokenizer`, `user_behavior`: the task id.
    pub name: String,
    /// `jobs.submit`'s `job`, as the GCP run sends it.
    pub body: Value,
}

/// What the DAG is rendered from: the deployment's names and the GCP run's
/// requests for [`PLACEHOLDER_RUN`].
#[derive(Debug, Clone)]
pub struct Inputs {
    pub dag_id: String,
    /// A cron expression or preset; `None`: manual runs only.
    pub schedule: Option<String>,
    pub deployment: String,
    pub project: String,
    pub region: String,
    pub raw_bucket: String,
    pub staging_bucket: String,
    pub sql_instance: String,
    /// The four `importContext`s of step 0: create, rows, the rows with a
    /// line break in a field (as SQL), swap.
    pub imports: [Value; 4],
    /// Step 1's `exportContext`.
    pub export: Value,
    /// The header line step 1 puts before the export (no line end).
    pub header: String,
    /// `clusters.create`'s body.
    pub cluster: Value,
    pub jobs: Vec<Job>,
    /// BigQuery `jobs.insert`'s `configuration`.
    pub load: Value,
    /// `1-create.sql` as the GCP run writes it.
    pub create_sql: String,
    /// `3-swap.sql` as the GCP run writes it for [`SWAP_ROWS`] rows.
    pub swap_sql: String,
    /// Where step 1's dump and the metrics live (keys in staging).
    pub keys: Keys,
}

/// The row count the swap SQL is previewed with; the DAG writes the real one.
pub const SWAP_ROWS: u64 = 987_654_321_987;

/// Staging keys the DAG's Python tasks read and write.
#[derive(Debug, Clone, Serialize)]
pub struct Keys {
    pub purchases_csv: String,
    pub purchase_rejects: String,
    pub tokenizer_metrics: String,
    pub user_behavior_metrics: String,
    pub warehouse_source: String,
    pub dataset: String,
    pub table: String,
}

/// The rendered files: (path relative to the DAG folder, contents), sorted.
pub fn render(inputs: &Inputs) -> Result<Vec<(String, String)>> {
    let dag = render_dag(inputs)?;
    let swap = inputs.swap_sql.replace(&SWAP_ROWS.to_string(), "__ROWS__");
    if swap == inputs.swap_sql {
        bail!("the swap SQL does not name its row count");
    }
    let mut files = vec![
        (format!("{}.py", inputs.dag_id), dag),
        (
            "infra_purchases.py".to_owned(),
            assets::AIRFLOW_VALIDATOR.to_owned(),
        ),
        ("sql/1-create.sql".to_owned(), inputs.create_sql.clone()),
        ("sql/3-swap.sql.tmpl".to_owned(), swap),
    ];
    files.sort();
    Ok(files)
}

fn render_dag(inputs: &Inputs) -> Result<String> {
    let mut tera = tera::Tera::default();
    tera.autoescape_on(Vec::new());
    tera.add_raw_template("dag", assets::AIRFLOW_DAG_TEMPLATE)
        .context("template templates/airflow/dag.py.tera does not parse")?;
    let mut context = tera::Context::new();
    // Operator arguments sit two levels deep (in `with DAG(...)`, in a call).
    let py = |v: &Value| python(&placeholders(v), 2);
    let s = |text: &str| python(&Value::String(text.to_owned()), 0);

    let cluster = &inputs.cluster;
    let config = cluster
        .get("config")
        .context("the cluster body has no config")?;
    let mut labels = cluster
        .get("labels")
        .cloned()
        .unwrap_or(Value::Object(Map::new()));
    if let Some(map) = labels.as_object_mut() {
        map.insert("run".into(), Value::String(PLACEHOLDER_RUN.into()));
    }
    context.insert("dag_id", &s(&inputs.dag_id));
    context.insert("dag_id_text", &inputs.dag_id);
    context.insert("deployment_text", &inputs.deployment);
    context.insert(
        "schedule",
        &inputs.schedule.as_deref().map_or("None".to_owned(), s),
    );
    context.insert("project", &s(&inputs.project));
    context.insert("region", &s(&inputs.region));
    context.insert("raw_bucket", &s(&inputs.raw_bucket));
    context.insert("staging_bucket", &s(&inputs.staging_bucket));
    context.insert("sql_instance", &s(&inputs.sql_instance));
    context.insert("header", &s(&inputs.header));
    context.insert(
        "import_create",
        &py(&json_wrap("importContext", &inputs.imports[0])),
    );
    context.insert(
        "import_rows",
        &py(&json_wrap("importContext", &inputs.imports[1])),
    );
    context.insert(
        "import_line_breaks",
        &py(&json_wrap("importContext", &inputs.imports[2])),
    );
    context.insert(
        "import_swap",
        &py(&json_wrap("importContext", &inputs.imports[3])),
    );
    let csv_options = &inputs.imports[1]["csvImportOptions"];
    let load_table = csv_options["table"]
        .as_str()
        .context("the CSV import names no table")?;
    context.insert("load_table", &s(load_table));
    context.insert("load_columns", &python(&csv_options["columns"], 0));
    context.insert("export", &py(&json_wrap("exportContext", &inputs.export)));
    context.insert("cluster_name", &s(&cluster_name(&inputs.deployment)));
    context.insert("cluster_config", &py(&gapic(config)));
    context.insert("cluster_labels", &py(&labels));
    let mut jobs = Vec::new();
    for job in &inputs.jobs {
        let mut body = job.body.clone();
        let object = body.as_object_mut().context("a job body is no object")?;
        // The operator's request id makes a retried submit a no-op; the
        // service names the job.
        object.remove("reference");
        object.insert("placement".into(), serde_json::json!({}));
        let mut gapic_body = gapic(&body);
        gapic_body["placement"]["cluster_name"] = Value::String(cluster_name(&inputs.deployment));
        jobs.push(BTreeMap::from([
            ("name", job.name.clone()),
            ("task_id", s(&job.name)),
            ("body", py(&gapic_body)),
        ]));
    }
    context.insert("jobs", &jobs);
    let load = inputs
        .load
        .get("load")
        .context("the load configuration has no `load`")?;
    let table = &load["destinationTable"];
    context.insert(
        "destination_table",
        &s(&format!(
            "{}.{}.{}",
            str_of(table, "projectId")?,
            str_of(table, "datasetId")?,
            str_of(table, "tableId")?
        )),
    );
    let source = load["sourceUris"][0].as_str().context("no source URI")?;
    let object = source
        .strip_prefix(&format!("gs://{}/", inputs.staging_bucket))
        .with_context(|| format!("the load reads {source}, outside the staging bucket"))?;
    context.insert(
        "load_source_objects",
        &py(&Value::Array(vec![object.into()])),
    );
    context.insert("load_schema", &py(&load["schema"]["fields"]));
    context.insert("load_source_format", &s(str_of(load, "sourceFormat")?));
    context.insert("load_write", &s(str_of(load, "writeDisposition")?));
    context.insert("load_create", &s(str_of(load, "createDisposition")?));
    context.insert(
        "load_labels",
        &py(inputs.load.get("labels").unwrap_or(&Value::Null)),
    );
    context.insert("keys", &python(&to_value(&inputs.keys), 0));
    tera.render("dag", &context)
        .context("cannot render templates/airflow/dag.py.tera")
}

fn to_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("plain data serializes")
}

fn json_wrap(key: &str, value: &Value) -> Value {
    let mut map = Map::new();
    map.insert(key.to_owned(), value.clone());
    Value::Object(map)
}

fn str_of<'a>(value: &'a Value, key: &str) -> Result<&'a str> {
    value
        .get(key)
        .and_then(Value::as_str)
        .with_context(|| format!("the request has no `{key}`"))
}

/// The DAG run's cluster: the deployment's name (as the GCP run's clusters
/// carry it), then the run key; at most 51 characters, starting with a letter.
pub fn cluster_name(deployment: &str) -> String {
    let mut head: String = deployment
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    if !head.starts_with(|c: char| c.is_ascii_lowercase()) {
        head.insert_str(0, "infra-");
    }
    head.truncate(CLUSTER_NAME_MAX - RUN_KEY_LEN - 1);
    format!("{}-{RUN_KEY}", head.trim_end_matches('-'))
}

/// Replaces the placeholder run and insert date in every string.
fn placeholders(value: &Value) -> Value {
    match value {
        Value::String(text) => Value::String(
            text.replace(&format!("{PLACEHOLDER_RUN}-1"), RUN_KEY)
                .replace(PLACEHOLDER_RUN, RUN_KEY)
                .replace(PLACEHOLDER_INSERT_DATE, INSERT_DATE),
        ),
        Value::Array(items) => Value::Array(items.iter().map(placeholders).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), placeholders(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A REST (JSON) body as the GAPIC clients of the Dataproc operators take
/// it: snake_case field names (map keys such as labels and properties kept
/// as they are), and durations (`"1800s"`) as `{"seconds": 1800}`.
pub fn gapic(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = snake_case(k);
                    let v = if k == "labels" || k == "properties" {
                        v.clone()
                    } else if k.ends_with("Ttl") {
                        duration(v)
                    } else {
                        gapic(v)
                    };
                    (key, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(gapic).collect()),
        other => other.clone(),
    }
}

fn duration(value: &Value) -> Value {
    match value
        .as_str()
        .and_then(|s| s.strip_suffix('s'))
        .and_then(|s| s.parse::<u64>().ok())
    {
        Some(seconds) => serde_json::json!({ "seconds": seconds }),
        None => value.clone(),
    }
}

fn snake_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `value` as a Python literal, indented by `indent` levels of four
/// spaces after its first line. Strings are JSON strings, which Python
/// reads the same (`\uXXXX` escapes included); nothing else is emitted.
pub fn python(value: &Value, indent: usize) -> String {
    let mut out = String::new();
    write_python(&mut out, value, indent);
    out
}

fn write_python(out: &mut String, value: &Value, indent: usize) {
    let pad = |n: usize| "    ".repeat(n);
    match value {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => out.push_str(&Value::String(s.clone()).to_string()),
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Array(items) => {
            out.push_str("[\n");
            for item in items {
                out.push_str(&pad(indent + 1));
                write_python(out, item, indent + 1);
                out.push_str(",\n");
            }
            out.push_str(&pad(indent));
            out.push(']');
        }
        Value::Object(map) if map.is_empty() => out.push_str("{}"),
        Value::Object(map) => {
            out.push_str("{\n");
            for (key, item) in map {
                out.push_str(&pad(indent + 1));
                out.push_str(&Value::String(key.clone()).to_string());
                out.push_str(": ");
                write_python(out, item, indent + 1);
                out.push_str(",\n");
            }
            out.push_str(&pad(indent));
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rest_bodies_become_gapic_dicts_with_map_keys_kept() {
        let body = json!({
            "gceClusterConfig": {"internalIpOnly": true},
            "lifecycleConfig": {"idleDeleteTtl": "1800s", "autoDeleteTtl": "14400s"},
            "labels": {"managed-by": "infra", "someKey": "v"},
            "pysparkJob": {"properties": {"spark.executor.memoryOverhead": "1g"}},
        });
        assert_eq!(
            gapic(&body),
            json!({
                "gce_cluster_config": {"internal_ip_only": true},
                "lifecycle_config": {"idle_delete_ttl": {"seconds": 1800}, "auto_delete_ttl": {"seconds": 14400}},
                "labels": {"managed-by": "infra", "someKey": "v"},
                "pyspark_job": {"properties": {"spark.executor.memoryOverhead": "1g"}},
            })
        );
    }

    #[test]
    fn python_literals_cannot_break_out_of_their_string() {
        let text = python(
            &json!({"a": "x\"); import os #\n\u{7}", "b": [true, null, 3]}),
            0,
        );
        assert_eq!(
            text,
            "{\n    \"a\": \"x\\\"); import os #\\n\\u0007\",\n    \"b\": [\n        True,\n        None,\n        3,\n    ],\n}"
        );
    }

    #[test]
    fn cluster_names_fit_dataprocs_rules() {
        assert_eq!(cluster_name("infra"), format!("infra-{RUN_KEY}"));
        assert_eq!(cluster_name("9_lives"), format!("infra-9-lives-{RUN_KEY}"));
        let long = cluster_name(&"a".repeat(80));
        let head = long.strip_suffix(&format!("-{RUN_KEY}")).unwrap();
        assert_eq!(head.len() + 1 + RUN_KEY_LEN, CLUSTER_NAME_MAX);
    }

    #[test]
    fn placeholders_become_jinja_in_every_string() {
        let v = placeholders(&json!({
            "uri": format!("gs://s/_cloudsql/{PLACEHOLDER_RUN}-1/2-rows.csv"),
            "args": ["--insert-date", PLACEHOLDER_INSERT_DATE],
        }));
        assert_eq!(v["uri"], format!("gs://s/_cloudsql/{RUN_KEY}/2-rows.csv"));
        assert_eq!(v["args"][1], INSERT_DATE);
    }
}
