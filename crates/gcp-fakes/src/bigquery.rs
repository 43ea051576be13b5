//! A BigQuery v2 stand-in that EXECUTES, on an embedded DuckDB: datasets,
//! tables, Parquet load jobs (explicit schema, `writeDisposition`,
//! `decimalTargetTypes`), queries (`jobs.query`, query jobs) and
//! `jobs.getQueryResults`, answering in BigQuery's own shape: a schema and
//! rows of `{"f": [{"v": …}]}` with every value a string.
//!
//! How it holds to BigQuery's behaviour:
//! - a Parquet DECIMAL(p,s) column is read as the type
//!   `decimalTargetTypes` picks (default `["NUMERIC"]`), and a value out of
//!   that type's range fails the job (see [`decimal_read_type`]);
//! - a Parquet DECIMAL(p,s) column loads into NUMERIC only if it has at
//!   most 29 integer digits and scale 9, into BIGNUMERIC only up to 38
//!   integer digits (or the field's own precision and scale); otherwise
//!   the job fails with `invalid`, as BigQuery's does;
//! - WRITE_TRUNCATE replaces the table atomically; a failed load leaves
//!   the old one;
//! - NUMERIC and BIGNUMERIC values come back without trailing zeros, and a
//!   query's result schema carries no precision or scale, even for a
//!   parameterized column (`SELECT` loses type parameters, `tabledata.list`
//!   keeps them: googleapis/python-bigquery#673); TIMESTAMP as microseconds when `formatOptions.useInt64Timestamp` is
//!   set and as floating-point seconds (`1.7957292005E9`) otherwise.
//!
//! A test can leave the next load job running forever
//! ([`BigQuery::stall_next_load`]), for the caller's deadline to catch.
//! `jobs.cancel` follows
//! https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs/cancel:
//! it "will return immediately", answering a `bigquery#jobCancelResponse`
//! with the job, and "the client will need to poll for the job status to
//! see if the cancel completed successfully". A stalled job then ends DONE
//! with `errorResult.reason` `stopped`, which "returns when a job is
//! canceled" (https://cloud.google.com/bigquery/docs/error-messages);
//! BigQuery has no CANCELLED state (JobStatus.state is PENDING, RUNNING or
//! DONE). A load already running in DuckDB is not interrupted: it ends as
//! its work does, as a cancel that came too late does on BigQuery.
//!
//! Where it cannot: DuckDB decimals hold 38 digits, so a BIGNUMERIC field
//! must give a precision of at most 38; queries run in DuckDB's SQL, with
//! BigQuery's backquoted `project.dataset.table` names rewritten.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use chrono::Utc;
use serde_json::{Value, json};

use crate::front::{Call, Front, error, not_found};
use crate::gcs::{Gcs, split_uri};

/// A query's answer, kept for `getQueryResults`.
#[derive(Clone)]
struct ResultSet {
    fields: Vec<Value>,
    /// Timestamps are kept as microseconds and formatted per request.
    rows: Vec<Vec<Option<String>>>,
}

struct Job {
    resource: Value,
    /// PENDING, RUNNING, DONE.
    state: String,
    error: Option<String>,
    result: Option<ResultSet>,
    /// Left running on purpose: nothing works on it until a cancel.
    stalled: bool,
    /// Ended by `jobs.cancel` (reason `stopped`).
    stopped: bool,
}

#[derive(Default)]
struct State {
    datasets: BTreeSet<String>,
    /// (dataset, table) -> the BigQuery schema fields of its last load.
    tables: BTreeMap<(String, String), Vec<Value>>,
    jobs: BTreeMap<String, Job>,
    next: u64,
    /// The next `n` load jobs stay RUNNING until cancelled.
    stall_loads: usize,
}

#[derive(Clone)]
pub struct BigQuery {
    front: Front,
    gcs: Gcs,
    project: String,
    work: PathBuf,
    db: Arc<Mutex<duckdb::Connection>>,
    state: Arc<Mutex<State>>,
}

fn now_ms() -> String {
    Utc::now().timestamp_millis().to_string()
}

impl BigQuery {
    pub fn new(front: Front, gcs: Gcs, project: &str, work: PathBuf) -> Result<BigQuery> {
        let db = duckdb::Connection::open(work.join("bigquery.duckdb"))
            .context("cannot open the BigQuery stand-in's DuckDB file")?;
        Ok(BigQuery {
            front,
            gcs,
            project: project.to_owned(),
            work,
            db: Arc::new(Mutex::new(db)),
            state: Arc::new(Mutex::new(State::default())),
        })
    }

    /// Creates a dataset, as Terraform would.
    pub fn add_dataset(&self, dataset: &str) -> Result<()> {
        self.db
            .lock()
            .unwrap()
            .execute_batch(&format!("CREATE SCHEMA IF NOT EXISTS {}", ident(dataset)))?;
        self.state
            .lock()
            .unwrap()
            .datasets
            .insert(dataset.to_owned());
        Ok(())
    }

    /// Load and query jobs ever inserted.
    pub fn job_ids(&self) -> Vec<String> {
        self.state.lock().unwrap().jobs.keys().cloned().collect()
    }

    /// Runs SQL for a test to look at the warehouse; rows as text.
    pub fn query_text(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        let db = self.db.lock().unwrap();
        Ok(run_query(&db, sql)?.rows)
    }

    pub async fn dispatch(&self, call: Call) -> (u16, Value) {
        // bigquery/v2/projects/{p}/datasets/{d}/tables/{t}
        let seg = |i: usize| call.seg.get(i).cloned().unwrap_or_default();
        match call.short().as_str() {
            "datasets.insert" => {
                let dataset = call.body["datasetReference"]["datasetId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if self.state.lock().unwrap().datasets.contains(&dataset) {
                    return error(
                        409,
                        "ALREADY_EXISTS",
                        &format!("Already Exists: Dataset {}:{dataset}", self.project),
                    );
                }
                if let Err(e) = self.add_dataset(&dataset) {
                    return error(500, "INTERNAL", &format!("{e:#}"));
                }
                let mut answer = call.body.clone();
                answer["datasetReference"]["projectId"] = json!(self.project);
                answer["id"] = json!(format!("{}:{dataset}", self.project));
                answer["kind"] = json!("bigquery#dataset");
                (200, answer)
            }
            "datasets.get" => {
                let dataset = seg(5);
                if !self.state.lock().unwrap().datasets.contains(&dataset) {
                    return not_found(&format!("Dataset {}:{dataset}", self.project));
                }
                (
                    200,
                    json!({"kind": "bigquery#dataset", "id": format!("{}:{dataset}", self.project),
                    "datasetReference": {"projectId": self.project, "datasetId": dataset}}),
                )
            }
            "datasets.delete" => {
                self.delete_dataset(&seg(5), call.req.param("deleteContents") == Some("true"))
            }
            "tables.list" => self.list_tables(&seg(5)),
            "tables.get" => self.get_table(&seg(5), &seg(7)),
            "tables.delete" => self.delete_table(&seg(5), &seg(7)),
            "jobs.insert" => self.insert_job(&call),
            "jobs.get" => self.get_job(&seg(5)),
            "jobs.cancel" => self.cancel_job(&seg(5)),
            "jobs.query" => self.query(&call).await,
            "jobs.getQueryResults" => self.results(&call, &seg(5)),
            other => {
                self.front
                    .violation(format!("the BigQuery stand-in does not play {other}"));
                (501, Value::Null)
            }
        }
    }

    fn delete_dataset(&self, dataset: &str, contents: bool) -> (u16, Value) {
        let mut s = self.state.lock().unwrap();
        if !s.datasets.contains(dataset) {
            return not_found(&format!("Dataset {}:{dataset}", self.project));
        }
        let has_tables = s.tables.keys().any(|(d, _)| d == dataset);
        if has_tables && !contents {
            return error(
                400,
                "FAILED_PRECONDITION",
                &format!("Dataset {}:{dataset} is still in use", self.project),
            );
        }
        if let Err(e) = self
            .db
            .lock()
            .unwrap()
            .execute_batch(&format!("DROP SCHEMA {} CASCADE", ident(dataset)))
        {
            return error(500, "INTERNAL", &format!("{e:#}"));
        }
        s.datasets.remove(dataset);
        s.tables.retain(|(d, _), _| d != dataset);
        (204, Value::Null)
    }

    fn list_tables(&self, dataset: &str) -> (u16, Value) {
        let s = self.state.lock().unwrap();
        if !s.datasets.contains(dataset) {
            return not_found(&format!("Dataset {}:{dataset}", self.project));
        }
        let tables: Vec<Value> = s
            .tables
            .keys()
            .filter(|(d, _)| d == dataset)
            .map(|(_, t)| json!({"kind": "bigquery#table", "type": "TABLE", "id": format!("{}:{dataset}.{t}", self.project),
                "tableReference": {"projectId": self.project, "datasetId": dataset, "tableId": t}}))
            .collect();
        (
            200,
            json!({"kind": "bigquery#tableList", "totalItems": tables.len(), "tables": tables}),
        )
    }

    fn get_table(&self, dataset: &str, table: &str) -> (u16, Value) {
        let fields = self
            .state
            .lock()
            .unwrap()
            .tables
            .get(&(dataset.to_owned(), table.to_owned()))
            .cloned();
        let Some(fields) = fields else {
            return not_found(&format!("Table {}:{dataset}.{table}", self.project));
        };
        let count: Result<i64> = (|| {
            let db = self.db.lock().unwrap();
            Ok(db.query_row(
                &format!("SELECT count(*) FROM {}.{}", ident(dataset), ident(table)),
                [],
                |r| r.get(0),
            )?)
        })();
        match count {
            Ok(rows) => (
                200,
                json!({"kind": "bigquery#table", "type": "TABLE",
                "id": format!("{}:{dataset}.{table}", self.project),
                "tableReference": {"projectId": self.project, "datasetId": dataset, "tableId": table},
                "schema": {"fields": fields}, "numRows": rows.to_string()}),
            ),
            Err(e) => error(500, "INTERNAL", &format!("{e:#}")),
        }
    }

    fn delete_table(&self, dataset: &str, table: &str) -> (u16, Value) {
        let mut s = self.state.lock().unwrap();
        if s.tables
            .remove(&(dataset.to_owned(), table.to_owned()))
            .is_none()
        {
            return not_found(&format!("Table {}:{dataset}.{table}", self.project));
        }
        let _ = self.db.lock().unwrap().execute_batch(&format!(
            "DROP TABLE IF EXISTS {}.{}",
            ident(dataset),
            ident(table)
        ));
        (204, Value::Null)
    }

    fn insert_job(&self, call: &Call) -> (u16, Value) {
        let mut s = self.state.lock().unwrap();
        s.next += 1;
        let job_id = call.body["jobReference"]["jobId"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("job_rehearsal_{}", s.next));
        if s.jobs.contains_key(&job_id) {
            return error(
                409,
                "ALREADY_EXISTS",
                &format!(
                    "Already Exists: Job {}:{}.{job_id}",
                    self.project,
                    location(&call.body)
                ),
            );
        }
        let mut resource = json!({
            "kind": "bigquery#job",
            "id": format!("{}:{}.{job_id}", self.project, location(&call.body)),
            "jobReference": {"projectId": self.project, "jobId": job_id, "location": location(&call.body)},
            "configuration": call.body["configuration"],
            "statistics": {"creationTime": now_ms()},
            "status": {"state": "PENDING"},
        });
        let config = call.body["configuration"].clone();
        if config["load"].is_null() && config["query"].is_null() {
            return error(
                400,
                "INVALID_ARGUMENT",
                "the stand-in runs load and query jobs only",
            );
        }
        s.jobs.insert(
            job_id.clone(),
            Job {
                resource: resource.clone(),
                state: "PENDING".into(),
                error: None,
                result: None,
                stalled: false,
                stopped: false,
            },
        );
        if !config["load"].is_null() && s.stall_loads > 0 {
            s.stall_loads -= 1;
            drop(s);
            self.with_job(&job_id, |job| job.stalled = true);
            self.set_job(&job_id, "RUNNING", None, None);
            self.front
                .event(json!({"event": "bigquery-job", "job": job_id, "stalled": true}));
            resource["status"] = json!({"state": "RUNNING"});
            return (200, resource);
        }
        drop(s);
        resource["status"] = json!({"state": "PENDING"});
        let this = self.clone();
        let id = job_id.clone();
        tokio::spawn(async move {
            this.set_job(&id, "RUNNING", None, None);
            let outcome = if !config["load"].is_null() {
                this.load(&config["load"])
                    .await
                    .map(|rows| (Some(rows), None))
            } else {
                let this2 = this.clone();
                let q = config["query"].clone();
                tokio::task::spawn_blocking(move || {
                    this2.run_sql(&q["query"], &q["defaultDataset"])
                })
                .await
                .map_err(anyhow::Error::from)
                .and_then(|r| r)
                .map(|rs| (None, Some(rs)))
            };
            match outcome {
                Ok((rows, result)) => {
                    if let Some(rows) = rows {
                        this.with_job(&id, |job| {
                            job.resource["statistics"]["load"] = json!({"outputRows": rows.to_string(), "badRecords": "0", "inputFiles": "1"});
                        });
                    }
                    this.set_job(&id, "DONE", None, result);
                }
                Err(e) => this.set_job(&id, "DONE", Some(format!("{e:#}")), None),
            }
            this.front
                .event(json!({"event": "bigquery-job", "job": id}));
        });
        (200, resource)
    }

    fn with_job(&self, id: &str, f: impl FnOnce(&mut Job)) {
        if let Some(job) = self.state.lock().unwrap().jobs.get_mut(id) {
            f(job);
        }
    }

    fn set_job(&self, id: &str, state: &str, error: Option<String>, result: Option<ResultSet>) {
        self.with_job(id, |job| {
            job.state = state.to_owned();
            match state {
                "RUNNING" => job.resource["statistics"]["startTime"] = json!(now_ms()),
                "DONE" => job.resource["statistics"]["endTime"] = json!(now_ms()),
                _ => {}
            }
            job.error = error;
            if result.is_some() {
                job.result = result;
            }
        });
    }

    fn job_json(job: &Job) -> Value {
        let mut r = job.resource.clone();
        r["status"] = json!({"state": job.state});
        if let Some(message) = &job.error {
            let reason = if job.stopped {
                "stopped"
            } else if message.contains("not found") {
                "notFound"
            } else {
                "invalid"
            };
            r["status"]["errorResult"] = json!({"reason": reason, "message": message});
            r["status"]["errors"] = json!([{"reason": reason, "message": message}]);
        }
        r
    }

    fn get_job(&self, id: &str) -> (u16, Value) {
        match self.state.lock().unwrap().jobs.get(id) {
            Some(job) => (200, Self::job_json(job)),
            None => not_found(&format!("Job {}:{id}", self.project)),
        }
    }

    /// The next `times` load jobs stay RUNNING, doing nothing, until they
    /// are cancelled: a job that never finishes.
    pub fn stall_next_load(&self, times: usize) {
        self.state.lock().unwrap().stall_loads += times;
    }

    /// The state of a job (`PENDING`, `RUNNING`, `DONE`), with the reason
    /// of its error, if it exists.
    pub fn job_state(&self, id: &str) -> Option<(String, Option<String>)> {
        let s = self.state.lock().unwrap();
        let job = s.jobs.get(id)?;
        let json = Self::job_json(job);
        Some((
            job.state.clone(),
            json["status"]["errorResult"]["reason"]
                .as_str()
                .map(str::to_owned),
        ))
    }

    /// `jobs.cancel`: see the module's doc for the rules.
    fn cancel_job(&self, id: &str) -> (u16, Value) {
        let mut s = self.state.lock().unwrap();
        let Some(job) = s.jobs.get_mut(id) else {
            return not_found(&format!("Job {}:{id}", self.project));
        };
        if job.stalled && job.state != "DONE" {
            job.state = "DONE".into();
            job.stopped = true;
            job.error = Some("Job execution was cancelled: User requested cancellation".into());
            job.resource["statistics"]["endTime"] = json!(now_ms());
        }
        let answer = json!({"kind": "bigquery#jobCancelResponse", "job": Self::job_json(job)});
        drop(s);
        self.front
            .event(json!({"event": "bigquery-job", "job": id, "cancel": true}));
        (200, answer)
    }

    async fn query(&self, call: &Call) -> (u16, Value) {
        let body = call.body.clone();
        let job_id = {
            let mut s = self.state.lock().unwrap();
            s.next += 1;
            format!("job_rehearsal_query_{}", s.next)
        };
        let this = self.clone();
        let (q, dd) = (body["query"].clone(), body["defaultDataset"].clone());
        let outcome = tokio::task::spawn_blocking(move || this.run_sql(&q, &dd)).await;
        let result = match outcome {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => return error(400, "INVALID_ARGUMENT", &format!("{e:#}")),
            Err(e) => return error(500, "INTERNAL", &e.to_string()),
        };
        let reference =
            json!({"projectId": self.project, "jobId": job_id, "location": location(&body)});
        self.state.lock().unwrap().jobs.insert(
            job_id.clone(),
            Job {
                resource: json!({"kind": "bigquery#job", "jobReference": reference, "configuration": {"query": {"query": body["query"]}}}),
                state: "DONE".into(),
                error: None,
                result: Some(result.clone()),
                stalled: false,
                stopped: false,
            },
        );
        let max = body["maxResults"].as_u64().map(|m| m as usize);
        let int64 = body["formatOptions"]["useInt64Timestamp"] == true;
        let mut page = page_json(&result, 0, max, int64);
        page["kind"] = json!("bigquery#queryResponse");
        page["jobReference"] = reference;
        (200, page)
    }

    fn results(&self, call: &Call, id: &str) -> (u16, Value) {
        let s = self.state.lock().unwrap();
        let Some(job) = s.jobs.get(id) else {
            return not_found(&format!("Job {}:{id}", self.project));
        };
        let reference = job.resource["jobReference"].clone();
        if job.state != "DONE" {
            return (
                200,
                json!({"kind": "bigquery#getQueryResultsResponse", "jobComplete": false, "jobReference": reference}),
            );
        }
        if let Some(message) = &job.error {
            return error(400, "INVALID_ARGUMENT", message);
        }
        let Some(result) = &job.result else {
            return error(400, "INVALID_ARGUMENT", &format!("Job {id} is not a query"));
        };
        let start = call
            .req
            .param("pageToken")
            .or(call.req.param("startIndex"))
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let max = call.req.param("maxResults").and_then(|m| m.parse().ok());
        let int64 = call.req.param("formatOptions.useInt64Timestamp") == Some("true");
        let mut page = page_json(result, start, max, int64);
        page["kind"] = json!("bigquery#getQueryResultsResponse");
        page["jobReference"] = reference;
        (200, page)
    }

    fn run_sql(&self, query: &Value, default_dataset: &Value) -> Result<ResultSet> {
        let sql = query.as_str().context("no query")?;
        let sql = rewrite_names(sql);
        let db = self.db.lock().unwrap();
        if let Some(dataset) = default_dataset["datasetId"].as_str() {
            db.execute_batch(&format!("SET search_path = '{dataset}'"))?;
        }
        let result = run_query(&db, &sql);
        db.execute_batch("RESET search_path")?;
        result
    }

    /// Runs a load job; returns the rows loaded.
    async fn load(&self, load: &Value) -> Result<u64> {
        if load["sourceFormat"] != "PARQUET" {
            bail!(
                "sourceFormat {}: the stand-in loads PARQUET only",
                load["sourceFormat"]
            );
        }
        let table = &load["destinationTable"];
        let dataset = table["datasetId"]
            .as_str()
            .context("no destinationTable.datasetId")?
            .to_owned();
        let table_id = table["tableId"]
            .as_str()
            .context("no destinationTable.tableId")?
            .to_owned();
        if !self.state.lock().unwrap().datasets.contains(&dataset) {
            bail!("Not found: Dataset {}:{dataset}", self.project);
        }
        let dir = tempfile::tempdir_in(&self.work)?;
        let mut files = Vec::new();
        for uri in load["sourceUris"].as_array().context("no sourceUris")? {
            let uri = uri.as_str().unwrap_or_default();
            files.extend(self.fetch(uri, dir.path()).await?);
        }
        if files.is_empty() {
            bail!("Not found: Uris {}", load["sourceUris"]);
        }
        let fields: Vec<Value> = load["schema"]["fields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let targets: Vec<String> = load["decimalTargetTypes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let disposition = load["writeDisposition"]
            .as_str()
            .unwrap_or("WRITE_APPEND")
            .to_owned();
        let this = self.clone();
        let (ds, t) = (dataset.clone(), table_id.clone());
        let fields2 = fields.clone();
        let rows = tokio::task::spawn_blocking(move || {
            let db = this.db.lock().unwrap();
            load_blocking(&db, &ds, &t, &files, &fields2, &targets, &disposition)
        })
        .await??;
        self.state
            .lock()
            .unwrap()
            .tables
            .insert((dataset, table_id), fields);
        Ok(rows)
    }

    /// Downloads the objects a source URI names (one `*` wildcard allowed).
    async fn fetch(&self, uri: &str, dir: &Path) -> Result<Vec<PathBuf>> {
        let (bucket, pattern) =
            split_uri(uri).with_context(|| format!("{uri} is not gs://bucket/object"))?;
        let (prefix, suffix) = pattern.split_once('*').unwrap_or((pattern, ""));
        let wildcard = pattern.contains('*');
        let mut out = Vec::new();
        for name in self.gcs.list(bucket, prefix).await? {
            let matches = if wildcard {
                name.starts_with(prefix)
                    && name.ends_with(suffix)
                    && name.len() >= prefix.len() + suffix.len()
            } else {
                name == pattern
            };
            if !matches {
                continue;
            }
            let path = dir.join(format!("{}.parquet", out.len()));
            self.gcs.download(bucket, &name, &path).await?;
            out.push(path);
        }
        Ok(out)
    }
}

fn location(body: &Value) -> String {
    body["jobReference"]["location"]
        .as_str()
        .or(body["location"].as_str())
        .unwrap_or("US")
        .to_owned()
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `project.dataset.table` in backquotes becomes `"dataset"."table"`.
fn rewrite_names(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut parts = sql.split('`');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    let rest: Vec<&str> = parts.collect();
    for (i, part) in rest.iter().enumerate() {
        if i % 2 == 0 {
            let names: Vec<&str> = part.split('.').collect();
            let keep = &names[names.len().saturating_sub(2)..];
            out.push_str(&keep.iter().map(|n| ident(n)).collect::<Vec<_>>().join("."));
        } else {
            out.push_str(part);
        }
    }
    out
}

/// BigQuery's type name -> DuckDB's, with the field's precision and scale.
fn duck_type(field: &Value) -> Result<String> {
    let kind = field["type"]
        .as_str()
        .unwrap_or("STRING")
        .to_ascii_uppercase();
    let precision = field["precision"]
        .as_str()
        .and_then(|p| p.parse::<u32>().ok());
    let scale = field["scale"]
        .as_str()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(0);
    Ok(match kind.as_str() {
        "INTEGER" | "INT64" => "BIGINT".into(),
        "FLOAT" | "FLOAT64" => "DOUBLE".into(),
        "BOOLEAN" | "BOOL" => "BOOLEAN".into(),
        "STRING" => "VARCHAR".into(),
        "TIMESTAMP" => "TIMESTAMPTZ".into(),
        "DATETIME" => "TIMESTAMP".into(),
        "DATE" => "DATE".into(),
        "NUMERIC" => match precision {
            Some(p) => format!("DECIMAL({p},{scale})"),
            None => "DECIMAL(38,9)".into(),
        },
        "BIGNUMERIC" => match precision {
            Some(p) if p <= 38 => format!("DECIMAL({p},{scale})"),
            _ => bail!(
                "field {}: the rehearsal's DuckDB holds 38 decimal digits; give BIGNUMERIC a precision of at most 38",
                field["name"]
            ),
        },
        other => bail!(
            "field {}: type {other} is not supported by the stand-in",
            field["name"]
        ),
    })
}

/// (integer digits, scale) a decimal target type holds.
fn decimal_room(field: &Value) -> (u32, u32) {
    let kind = field["type"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_uppercase();
    let precision = field["precision"]
        .as_str()
        .and_then(|p| p.parse::<u32>().ok());
    let scale = field["scale"]
        .as_str()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(0);
    match (kind.as_str(), precision) {
        (_, Some(p)) => (p - scale.min(p), scale),
        ("NUMERIC", None) => (29, 9),
        _ => (38, 38),
    }
}

/// The type BigQuery reads a Parquet DECIMAL(p,s) column as, and whether
/// that type holds every DECIMAL(p,s) value. The rule is
/// `JobConfigurationLoad.decimalTargetTypes` (bigquery.v2.json, and
/// https://cloud.google.com/bigquery/docs/reference/rest/v2/Job#JobConfigurationLoad):
/// "In the order of NUMERIC, BIGNUMERIC, and STRING, a type is picked if it
/// is in the specified list and if it supports the precision and the scale.
/// [...] If none of the listed types supports the precision and the scale,
/// the type supporting the widest range in the specified list is picked,
/// and if a value exceeds the supported range when reading the data, an
/// error will be thrown. [...] Defaults to ["NUMERIC", "STRING"] for ORC
/// and ["NUMERIC"] for the other file formats." Its examples for
/// ["NUMERIC", "BIGNUMERIC"]: (38,9) -> NUMERIC, (39,9) -> BIGNUMERIC
/// ("NUMERIC cannot hold 30 integer digits"), (76,38) -> BIGNUMERIC.
pub fn decimal_read_type(precision: u32, scale: u32, targets: &[String]) -> (&'static str, bool) {
    // (type, integer digits, scale) each type holds, in the rule's order.
    const ROOM: [(&str, u32, u32); 3] = [
        ("NUMERIC", 29, 9),
        ("BIGNUMERIC", 38, 38),
        ("STRING", u32::MAX, u32::MAX),
    ];
    let listed: Vec<&(&str, u32, u32)> = if targets.is_empty() {
        vec![&ROOM[0]]
    } else {
        ROOM.iter()
            .filter(|(kind, _, _)| targets.iter().any(|t| t == kind))
            .collect()
    };
    let fits =
        |&&(_, int, sc): &&(&str, u32, u32)| precision - scale.min(precision) <= int && scale <= sc;
    match listed.iter().copied().find(fits) {
        Some((kind, _, _)) => (kind, true),
        None => (listed.last().map_or("NUMERIC", |(kind, _, _)| kind), false),
    }
}

/// Fails when `column` (DECIMAL(p,s)) holds a value the type it is read as
/// cannot: more integer digits, or more fractional digits, than it has.
fn check_decimal_range(
    db: &duckdb::Connection,
    source: &str,
    column: &str,
    (precision, scale): (u32, u32),
    targets: &[String],
) -> Result<()> {
    let (kind, holds_all) = decimal_read_type(precision, scale, targets);
    if holds_all || kind == "STRING" {
        return Ok(());
    }
    let (int_digits, max_scale) = if kind == "NUMERIC" { (29, 9) } else { (38, 38) };
    let mut conditions = Vec::new();
    if int_digits < precision - scale.min(precision) {
        conditions.push(format!(
            "abs({c}) >= CAST('1{}' AS DECIMAL(38,0))",
            "0".repeat(int_digits as usize),
            c = ident(column)
        ));
    }
    if max_scale < scale {
        conditions.push(format!("{c} <> round({c}, {max_scale})", c = ident(column)));
    }
    if conditions.is_empty() {
        return Ok(());
    }
    let bad = db.query_row(
        &format!(
            "SELECT CAST({} AS VARCHAR) FROM {source} WHERE {} LIMIT 1",
            ident(column),
            conditions.join(" OR ")
        ),
        [],
        |r| r.get::<_, String>(0),
    );
    if let Err(duckdb::Error::QueryReturnedNoRows) = bad {
        return Ok(());
    }
    let value = bad?;
    bail!(
        "Error while reading data, error message: Parquet column '{column}' (DECIMAL({precision},{scale})) is read as {kind} (decimalTargetTypes {targets:?}), which cannot hold the value {value}"
    )
}

fn parse_decimal(duck: &str) -> Option<(u32, u32)> {
    let inner = duck.strip_prefix("DECIMAL(")?.strip_suffix(')')?;
    let (p, s) = inner.split_once(',')?;
    Some((p.trim().parse().ok()?, s.trim().parse().ok()?))
}

fn load_blocking(
    db: &duckdb::Connection,
    dataset: &str,
    table: &str,
    files: &[PathBuf],
    fields: &[Value],
    targets: &[String],
    disposition: &str,
) -> Result<u64> {
    let list = files
        .iter()
        .map(|f| format!("'{}'", f.display().to_string().replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ");
    let source = format!("read_parquet([{list}])");
    let mut described = BTreeMap::new();
    {
        let mut stmt = db.prepare(&format!("DESCRIBE SELECT * FROM {source}"))?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let name: String = row.get(0)?;
            let kind: String = row.get(1)?;
            described.insert(name, kind);
        }
    }
    let mut columns = Vec::new();
    for field in fields {
        let name = field["name"]
            .as_str()
            .context("a schema field has no name")?;
        let target = duck_type(field)?;
        let Some(source_type) = described.get(name) else {
            if field["mode"] == "REQUIRED" {
                bail!("Required field {name} cannot be null: it is not in the Parquet files");
            }
            columns.push(format!("CAST(NULL AS {target}) AS {}", ident(name)));
            continue;
        };
        if let Some((p, s)) = parse_decimal(source_type) {
            check_decimal_range(db, &source, name, (p, s), targets)?;
            let kind = field["type"]
                .as_str()
                .unwrap_or_default()
                .to_ascii_uppercase();
            if kind == "NUMERIC" || kind == "BIGNUMERIC" {
                let (int_digits, scale) = decimal_room(field);
                if p - s > int_digits || s > scale {
                    bail!(
                        "Error while reading data, error message: Parquet column '{name}' has type DECIMAL({p},{s}) which does not match the target cpp_type {kind}; the target holds {int_digits} integer digits and scale {scale}{}",
                        if targets.is_empty() {
                            String::new()
                        } else {
                            format!(" (decimalTargetTypes {targets:?})")
                        }
                    );
                }
            }
        }
        columns.push(format!(
            "CAST({} AS {target}) AS {}",
            ident(name),
            ident(name)
        ));
    }
    if fields.is_empty() {
        columns.push("*".into());
    }
    let qualified = format!("{}.{}", ident(dataset), ident(table));
    let select = format!("SELECT {} FROM {source}", columns.join(", "));
    db.execute_batch("BEGIN")?;
    let outcome = (|| -> Result<u64> {
        match disposition {
            "WRITE_TRUNCATE" => {
                db.execute_batch(&format!("CREATE OR REPLACE TABLE {qualified} AS {select}"))?
            }
            "WRITE_EMPTY" | "WRITE_APPEND" => {
                let exists: i64 = db.query_row(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
                    [dataset, table],
                    |r| r.get(0),
                )?;
                if exists == 0 {
                    db.execute_batch(&format!("CREATE TABLE {qualified} AS {select}"))?;
                } else {
                    if disposition == "WRITE_EMPTY" {
                        let rows: i64 =
                            db.query_row(&format!("SELECT count(*) FROM {qualified}"), [], |r| {
                                r.get(0)
                            })?;
                        if rows > 0 {
                            bail!(
                                "Already Exists: Table {dataset}.{table} is not empty (WRITE_EMPTY)"
                            );
                        }
                    }
                    db.execute_batch(&format!("INSERT INTO {qualified} {select}"))?;
                }
            }
            other => bail!("writeDisposition {other} is not supported"),
        }
        let rows: i64 =
            db.query_row(&format!("SELECT count(*) FROM {source}"), [], |r| r.get(0))?;
        Ok(rows as u64)
    })();
    match outcome {
        Ok(rows) => {
            db.execute_batch("COMMIT")?;
            Ok(rows)
        }
        Err(e) => {
            let _ = db.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// BigQuery's name for a DuckDB type.
fn bigquery_type(duck: &str) -> &'static str {
    let upper = duck.to_ascii_uppercase();
    match upper.as_str() {
        "BIGINT" | "INTEGER" | "SMALLINT" | "TINYINT" | "HUGEINT" | "UBIGINT" | "UINTEGER" => {
            "INTEGER"
        }
        "DOUBLE" | "FLOAT" | "REAL" => "FLOAT",
        "BOOLEAN" => "BOOLEAN",
        "DATE" => "DATE",
        "TIMESTAMP WITH TIME ZONE" | "TIMESTAMPTZ" => "TIMESTAMP",
        "TIMESTAMP" => "DATETIME",
        _ if upper == "DECIMAL(38,9)" => "NUMERIC",
        _ if upper.starts_with("DECIMAL") => "BIGNUMERIC",
        _ => "STRING",
    }
}

fn run_query(db: &duckdb::Connection, sql: &str) -> Result<ResultSet> {
    let sql = sql.trim().trim_end_matches(';');
    let mut names = Vec::new();
    {
        let mut stmt = db
            .prepare(&format!("DESCRIBE {sql}"))
            .context("the query failed")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let name: String = row.get(0)?;
            let kind: String = row.get(1)?;
            names.push((name, kind));
        }
    }
    let exprs: Vec<String> = names
        .iter()
        .map(|(name, kind)| {
            let col = format!("q.{}", ident(name));
            match bigquery_type(kind) {
                "TIMESTAMP" => format!("CAST(epoch_us({col}) AS VARCHAR)"),
                "DATETIME" => format!("strftime({col}, '%Y-%m-%dT%H:%M:%S.%f')"),
                "BOOLEAN" => format!("CASE WHEN {col} THEN 'true' WHEN NOT {col} THEN 'false' END"),
                _ => format!("CAST({col} AS VARCHAR)"),
            }
        })
        .collect();
    let fields: Vec<Value> = names
        .iter()
        .map(|(name, kind)| json!({"name": name, "type": bigquery_type(kind), "mode": "NULLABLE"}))
        .collect();
    let mut rows = Vec::new();
    if !exprs.is_empty() {
        let mut stmt = db.prepare(&format!("SELECT {} FROM ({sql}) AS q", exprs.join(", ")))?;
        let mut result = stmt.query([])?;
        while let Some(row) = result.next()? {
            let mut out = Vec::with_capacity(names.len());
            for (i, (_, kind)) in names.iter().enumerate() {
                let value: Option<String> = row.get(i)?;
                out.push(value.map(|v| match bigquery_type(kind) {
                    "NUMERIC" | "BIGNUMERIC" => canonical_decimal(&v),
                    _ => v,
                }));
            }
            rows.push(out);
        }
    }
    Ok(ResultSet { fields, rows })
}

/// BigQuery prints NUMERIC and BIGNUMERIC without trailing zeros.
fn canonical_decimal(text: &str) -> String {
    if !text.contains('.') {
        return text.to_owned();
    }
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn page_json(
    result: &ResultSet,
    start: usize,
    max: Option<usize>,
    int64_timestamps: bool,
) -> Value {
    let size = max.unwrap_or(usize::MAX).max(1);
    let end = start.saturating_add(size).min(result.rows.len());
    let rows: Vec<Value> = result.rows[start.min(end)..end]
        .iter()
        .map(|row| {
            let cells: Vec<Value> = row
                .iter()
                .zip(&result.fields)
                .map(|(v, f)| match v {
                    None => json!({"v": null}),
                    Some(v) if f["type"] == "TIMESTAMP" && !int64_timestamps => {
                        let micros: i64 = v.parse().unwrap_or(0);
                        json!({"v": format!("{:E}", micros as f64 / 1e6)})
                    }
                    Some(v) => json!({"v": v}),
                })
                .collect();
            json!({"f": cells})
        })
        .collect();
    let mut page = json!({
        "jobComplete": true,
        "schema": {"fields": result.fields},
        "totalRows": result.rows.len().to_string(),
        "rows": rows,
    });
    if end < result.rows.len() {
        page["pageToken"] = json!(end.to_string());
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_target_types_pick_as_google_documents() {
        let both = ["NUMERIC".to_owned(), "BIGNUMERIC".to_owned()];
        // The examples of JobConfigurationLoad.decimalTargetTypes.
        assert_eq!(decimal_read_type(38, 9, &both), ("NUMERIC", true));
        assert_eq!(decimal_read_type(39, 9, &both), ("BIGNUMERIC", true));
        assert_eq!(decimal_read_type(38, 10, &both), ("BIGNUMERIC", true));
        assert_eq!(decimal_read_type(76, 38, &both), ("BIGNUMERIC", true));
        assert_eq!(decimal_read_type(77, 38, &both), ("BIGNUMERIC", false));
        // The default for Parquet is ["NUMERIC"]: DECIMAL(38,3) has 35
        // integer digits, NUMERIC 29.
        assert_eq!(decimal_read_type(38, 3, &[]), ("NUMERIC", false));
        assert_eq!(decimal_read_type(38, 3, &both), ("BIGNUMERIC", true));
    }

    /// A DECIMAL(38,3) value with 33 integer digits: NUMERIC (the default
    /// target type) cannot hold it, so the load fails unless
    /// `decimalTargetTypes` lets BigQuery read it as BIGNUMERIC.
    #[test]
    fn a_decimal_38_3_beyond_numeric_needs_bignumeric_among_the_target_types() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("big.parquet");
        let db = duckdb::Connection::open_in_memory().unwrap();
        db.execute_batch(&format!(
            "COPY (SELECT CAST('123456789012345678901234567890123.456' AS DECIMAL(38,3)) AS amount) TO '{}' (FORMAT parquet)",
            file.display()
        ))
        .unwrap();
        db.execute_batch("CREATE SCHEMA ds").unwrap();
        let fields =
            [json!({"name": "amount", "type": "BIGNUMERIC", "precision": "38", "scale": "3"})];
        let load = |targets: &[String]| {
            load_blocking(
                &db,
                "ds",
                "t",
                std::slice::from_ref(&file),
                &fields,
                targets,
                "WRITE_TRUNCATE",
            )
        };
        let err = load(&[]).unwrap_err().to_string();
        assert!(
            err.contains("is read as NUMERIC")
                && err.contains("123456789012345678901234567890123.456"),
            "{err}"
        );
        assert_eq!(load(&["NUMERIC".into(), "BIGNUMERIC".into()]).unwrap(), 1);
        let back: String = db
            .query_row("SELECT CAST(amount AS VARCHAR) FROM ds.t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(back, "123456789012345678901234567890123.456");
    }

    #[test]
    fn backquoted_names_become_duckdb_names() {
        assert_eq!(
            rewrite_names("SELECT * FROM `proj.bootcamp.t` WHERE x = 1"),
            "SELECT * FROM \"bootcamp\".\"t\" WHERE x = 1"
        );
        assert_eq!(canonical_decimal("12.500"), "12.5");
        assert_eq!(canonical_decimal("3.000"), "3");
        assert_eq!(format!("{:E}", 1795729200.5f64), "1.7957292005E9");
    }

    #[test]
    fn a_decimal_38_3_fits_bignumeric_38_3_but_not_numeric() {
        let numeric = json!({"name": "a", "type": "NUMERIC"});
        let big = json!({"name": "a", "type": "BIGNUMERIC", "precision": "38", "scale": "3"});
        assert_eq!(decimal_room(&numeric), (29, 9));
        assert_eq!(decimal_room(&big), (35, 3));
        assert_eq!(duck_type(&big).unwrap(), "DECIMAL(38,3)");
        assert!(duck_type(&json!({"name": "a", "type": "BIGNUMERIC"})).is_err());
    }
}
