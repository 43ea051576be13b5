//! A FAKE of Dataproc v1, BigQuery v2 and the Cloud SQL Admin API v1, for
//! tests only. It is not Google: it knows a handful of methods and plays
//! scripted state machines (it executes no job, no import, no SQL). What it does hold to is the contract: every request must
//! match a method of Google's discovery documents (verb, path, query
//! parameters, body schema with no unknown or output-only fields, enums,
//! types), and every answer it gives is checked against the method's
//! response schema. A mismatch answers 400 and is recorded, and
//! [`FakeGoogle::assert_clean`] fails the test.
//!
//! Faults on demand: an error status (429 with `Retry-After`, 503 bursts),
//! a slow answer, or a request that takes effect but whose answer is lost.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::contract::Discovery;
use crate::front::{self, Call, Front};
use crate::server::Request;

pub use crate::front::{Fault, Logged, TOKEN};

struct Script {
    states: VecDeque<&'static str>,
    resource: Value,
}

#[derive(Default)]
struct State {
    /// Cloud SQL imports whose URI contains one of these end in an error.
    failing_imports: Vec<String>,
    /// The next cluster created ends in ERROR instead of RUNNING.
    cluster_fails: bool,
    /// Kinds of work ([`Endless`]) that, once started, stay running until
    /// cancelled.
    endless: BTreeSet<Endless>,
    /// Every `requestId` seen, with the request it came with.
    request_ids: BTreeMap<String, String>,
    /// Cloud SQL operations by name: the states still to report (the
    /// first is the current one), and the operation. Names are `sqlop-<n>`
    /// with `n` rising, so the map's order is their start order.
    sql_operations: BTreeMap<String, (VecDeque<&'static str>, Value)>,
    operations: BTreeMap<String, (usize, Value)>,
    clusters: BTreeMap<String, Value>,
    jobs: BTreeMap<String, Script>,
    batches: BTreeMap<String, Script>,
    datasets: BTreeSet<String>,
    tables: BTreeMap<(String, String), u64>,
    bq_jobs: BTreeMap<String, Script>,
    queries: BTreeMap<String, usize>,
    next: usize,
}

/// Work the fake can leave running forever, for the caller's deadline to
/// catch: what a stuck service looks like from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Endless {
    /// Cloud SQL imports and exports stay RUNNING.
    CloudSqlOperation,
    /// Dataproc jobs stay RUNNING.
    DataprocJob,
    /// BigQuery jobs stay RUNNING.
    BigQueryJob,
}

pub struct FakeGoogle {
    pub url: String,
    pub front: Front,
    state: Arc<Mutex<State>>,
}

/// Rows the fake's load jobs report: any source loads this many.
pub const LOADED_ROWS: u64 = 1234;

impl FakeGoogle {
    /// Starts the fake. `driver_bucket` is where it says jobs write their
    /// driver output (`gs://<bucket>/driver/<job id>/driveroutput`).
    pub async fn start(driver_bucket: &str) -> FakeGoogle {
        let documents = crate::venv::documents_dir().unwrap_or_else(|e| panic!("{e:#}"));
        FakeGoogle::start_with(&documents, driver_bucket).await
    }

    /// [`FakeGoogle::start`] with the discovery documents in `documents`.
    pub async fn start_with(documents: &Path, driver_bucket: &str) -> FakeGoogle {
        let load =
            |name| Arc::new(Discovery::load(documents, name).unwrap_or_else(|e| panic!("{e:#}")));
        let docs = vec![
            load("dataproc.v1"),
            load("bigquery.v2"),
            load("sqladmin.v1"),
        ];
        let state = Arc::new(Mutex::new(State::default()));
        let front = Front::new();
        let (shared, checks) = (state.clone(), front.clone());
        let driver_bucket = driver_bucket.to_owned();
        let addr = front::serve(
            docs,
            front.clone(),
            0,
            Arc::new(move |call: Call| {
                let answer = dispatch(&mut shared.lock().unwrap(), &checks, &driver_bucket, &call);
                Box::pin(async move { answer })
            }),
        )
        .await
        .unwrap();
        FakeGoogle {
            url: format!("http://{addr}"),
            front,
            state,
        }
    }

    /// The next `times` calls of `method` get `fault`.
    pub fn inject(&self, method: &str, times: usize, fault: Fault) {
        self.front.inject(method, times, fault);
    }

    /// Cloud SQL imports of a URI containing `fragment` end in an error.
    pub fn fail_imports_of(&self, fragment: &str) {
        self.state
            .lock()
            .unwrap()
            .failing_imports
            .push(fragment.to_owned());
    }

    /// Starts a Cloud SQL operation of `kind` (`BACKUP_VOLUME`,
    /// `MAINTENANCE`) on instance `instance` that reports RUNNING to the
    /// next `polls` `operations.get` of it, then DONE. Until then the
    /// instance refuses imports and exports (409 `operationInProgress`).
    pub fn hold_sql_operation(&self, instance: &str, kind: &str, polls: usize) -> String {
        let mut s = self.state.lock().unwrap();
        s.next += 1;
        let name = format!("sqlop-{:06}", s.next);
        let mut states = VecDeque::from(vec!["RUNNING"; polls + 1]);
        states.push_back("DONE");
        let op = json!({
            "kind": "sql#operation",
            "name": name,
            "operationType": kind,
            "status": "RUNNING",
            "targetId": instance,
            "targetProject": "proj",
        });
        s.sql_operations.insert(name.clone(), (states, op));
        name
    }

    /// The Cloud SQL operations the fake created, oldest first.
    pub fn sql_operations(&self) -> Vec<Value> {
        self.state
            .lock()
            .unwrap()
            .sql_operations
            .values()
            .map(|(_, op)| op.clone())
            .collect()
    }

    /// Work of `kind` started from now on never ends by itself.
    pub fn never_finish(&self, kind: Endless) {
        self.state.lock().unwrap().endless.insert(kind);
    }

    /// The next cluster created ends in ERROR.
    pub fn fail_next_cluster(&self) {
        self.state.lock().unwrap().cluster_fails = true;
    }

    /// Every call, in order.
    pub fn log(&self) -> Vec<Logged> {
        self.front.log()
    }

    pub fn calls(&self, method: &str) -> Vec<Logged> {
        self.front.calls(method)
    }

    pub fn jobs(&self) -> usize {
        self.state.lock().unwrap().jobs.len()
    }

    pub fn bq_jobs(&self) -> usize {
        self.state.lock().unwrap().bq_jobs.len()
    }

    pub fn tables(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().tables.keys().cloned().collect()
    }

    pub fn add_table(&self, dataset: &str, table: &str) {
        let mut s = self.state.lock().unwrap();
        s.datasets.insert(dataset.to_owned());
        s.tables.insert((dataset.to_owned(), table.to_owned()), 1);
    }

    pub fn add_cluster(&self, name: &str, labels: Value) {
        self.state.lock().unwrap().clusters.insert(
            name.to_owned(),
            json!({"projectId": "proj", "clusterName": name, "labels": labels, "status": {"state": "RUNNING"}}),
        );
    }

    pub fn clusters(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .clusters
            .keys()
            .cloned()
            .collect()
    }

    /// Fails the test if any request broke the contract.
    #[track_caller]
    pub fn assert_clean(&self) {
        self.front.assert_clean();
    }
}

/// dataproc.v1.json: a `requestId` has at most 40 characters, letters,
/// digits, `_` and `-`; and Google answers a reused id with the first
/// request's operation, so reusing one for a different request is a bug.
fn check_request_id(s: &mut State, front: &Front, call: &Call) {
    let request_id = call
        .req
        .param("requestId")
        .map(str::to_owned)
        .or_else(|| call.body["requestId"].as_str().map(str::to_owned));
    let Some(request_id) = request_id else { return };
    let id = &call.id;
    if request_id.len() > 40
        || !request_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        front.violation(format!(
            "{id}: requestId `{request_id}` breaks the 40-character rule"
        ));
    }
    let what = format!("{id} {} {}", call.req.path, call.body);
    match s.request_ids.get(&request_id) {
        Some(first) if *first != what => front.violation(format!(
            "{id}: requestId `{request_id}` reused for a different request"
        )),
        _ => {
            s.request_ids.insert(request_id, what);
        }
    }
}

/// A Cloud SQL operation as it stands: its current state (the first of
/// `states`), with the error of a FAILED one.
fn sql_operation_now(states: &VecDeque<&'static str>, op: &Value) -> Value {
    let mut op = op.clone();
    match states[0] {
        "FAILED" => {
            op["status"] = json!("DONE");
            op["error"] = json!({"kind": "sql#operationErrors", "errors": [
                {"kind": "sql#operationError", "code": "ERROR_RDBMS", "message": "ERROR:  invalid input syntax for type integer: \"x\""}
            ]});
        }
        state => op["status"] = json!(state),
    }
    op
}

fn advance(script: &mut Script) -> &'static str {
    if script.states.len() > 1 {
        script.states.pop_front();
    }
    script.states[0]
}

fn dispatch(s: &mut State, front: &Front, driver_bucket: &str, call: &Call) -> (u16, Value) {
    let (seg, req, body): (&[String], &Request, &Value) = (&call.seg, &call.req, &call.body);
    s.next += 1;
    let n = s.next;
    let last = call.last().to_owned();
    let short = call.short();
    check_request_id(s, front, call);
    match short.as_str() {
        "projects.regions.clusters.create" => {
            let name = body["clusterName"].as_str().unwrap_or_default().to_owned();
            if req.param("requestId").is_none() {
                front.violation("clusters.create without requestId");
            }
            if s.clusters.contains_key(&name) {
                return (
                    409,
                    json!({"error": {"code": 409, "message": "Already exists", "status": "ALREADY_EXISTS"}}),
                );
            }
            let mut cluster = body.clone();
            cluster["status"] = json!({"state": "CREATING"});
            cluster["clusterUuid"] = json!(format!("uuid-{n}"));
            let end = if std::mem::take(&mut s.cluster_fails) {
                "ERROR"
            } else {
                "RUNNING"
            };
            cluster["@end"] = json!(end);
            s.clusters.insert(name.clone(), cluster.clone());
            let op = format!("projects/{}/regions/{}/operations/op-{n}", seg[2], seg[4]);
            cluster["status"] = json!({"state": end});
            cluster["@type"] = json!("type.googleapis.com/google.cloud.dataproc.v1.Cluster");
            s.operations.insert(op.clone(), (1, cluster));
            (
                200,
                json!({"name": op, "done": false, "metadata": {"clusterName": name}}),
            )
        }
        "projects.regions.operations.get" => {
            let name = seg[1..].join("/");
            let Some((polls, response)) = s.operations.get_mut(&name) else {
                return (404, Value::Null);
            };
            if *polls > 0 {
                *polls -= 1;
                return (200, json!({"name": name, "done": false}));
            }
            let mut response = response.clone();
            if let Some(cluster) = response["clusterName"].as_str()
                && let Some(c) = s.clusters.get_mut(cluster)
            {
                let end = c["@end"].as_str().unwrap_or("RUNNING").to_owned();
                c["status"] = json!({"state": end});
            }
            if let Some(object) = response.as_object_mut() {
                object.remove("@end");
            }
            (
                200,
                json!({"name": name, "done": true, "response": response}),
            )
        }
        "projects.regions.clusters.get" => match s.clusters.get_mut(&last) {
            Some(c) => {
                // CREATING on the first look, then how creation ended.
                if c["status"]["state"] == "CREATING" {
                    if c["@seen"] == true {
                        let end = c["@end"].as_str().unwrap_or("RUNNING").to_owned();
                        c["status"] = json!({"state": end});
                    } else {
                        c["@seen"] = json!(true);
                    }
                }
                let mut c = c.clone();
                c.as_object_mut().unwrap().remove("@end");
                c.as_object_mut().unwrap().remove("@seen");
                (200, c)
            }
            None => (
                404,
                json!({"error": {"code": 404, "message": "Not found", "status": "NOT_FOUND"}}),
            ),
        },
        "projects.regions.clusters.delete" => {
            // The uuid, when given, must be this cluster's (else NOT_FOUND).
            let uuid_differs = match (req.param("clusterUuid"), s.clusters.get(&last)) {
                (Some(uuid), Some(c)) => c["clusterUuid"] != uuid,
                _ => false,
            };
            if uuid_differs || s.clusters.remove(&last).is_none() {
                return (
                    404,
                    json!({"error": {"code": 404, "message": "Not found", "status": "NOT_FOUND"}}),
                );
            }
            let op = format!("projects/{}/regions/{}/operations/op-{n}", seg[2], seg[4]);
            s.operations.insert(
                op.clone(),
                (
                    1,
                    json!({"@type": "type.googleapis.com/google.protobuf.Empty"}),
                ),
            );
            (200, json!({"name": op, "done": false}))
        }
        "projects.regions.clusters.list" => {
            let filter = req.param("filter").unwrap_or_default();
            let (key, value) = filter
                .strip_prefix("labels.")
                .and_then(|f| f.split_once(" = "))
                .unwrap_or(("", ""));
            let matching: Vec<Value> = s
                .clusters
                .values()
                .filter(|c| key.is_empty() || c["labels"][key] == value)
                .map(|c| {
                    let mut c = c.clone();
                    c.as_object_mut().unwrap().remove("@end");
                    c.as_object_mut().unwrap().remove("@seen");
                    c
                })
                .collect();
            // One cluster per page, so paging is exercised.
            let start: usize = req.param("pageToken").map_or(0, |t| t.parse().unwrap());
            let mut page = json!({"clusters": matching.get(start).map(|c| vec![c.clone()]).unwrap_or_default()});
            if start + 1 < matching.len() {
                page["nextPageToken"] = json!((start + 1).to_string());
            }
            (200, page)
        }
        "projects.regions.jobs.submit" => {
            let job_id = body["job"]["reference"]["jobId"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if job_id.is_empty() || body["requestId"].is_null() {
                front.violation("jobs.submit without reference.jobId or requestId");
            }
            if s.jobs.contains_key(&job_id) {
                return (
                    409,
                    json!({"error": {"code": 409, "message": format!("Already exists: Job projects/proj/regions/r/jobs/{job_id}"), "status": "ALREADY_EXISTS"}}),
                );
            }
            let fails = body["job"]["pysparkJob"]["args"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == "--fail"));
            let mut job = body["job"].clone();
            job["driverOutputResourceUri"] =
                json!(format!("gs://{driver_bucket}/driver/{job_id}/driveroutput"));
            job["status"] = json!({"state": "PENDING"});
            let end = if fails { "ERROR" } else { "DONE" };
            let mut states = VecDeque::from(["PENDING", "SETUP_DONE", "RUNNING", "RUNNING", end]);
            if s.endless.contains(&Endless::DataprocJob) {
                states.pop_back();
            }
            s.jobs.insert(
                job_id,
                Script {
                    states,
                    resource: job.clone(),
                },
            );
            (200, job)
        }
        "projects.regions.jobs.get" => match s.jobs.get_mut(&last) {
            Some(script) => {
                let state = advance(script);
                let mut job = script.resource.clone();
                job["status"] = json!({"state": state});
                if state == "ERROR" {
                    job["status"]["details"] = json!("Job failed with message [ValueError: boom]");
                }
                (200, job)
            }
            None => (
                404,
                json!({"error": {"code": 404, "message": "Not found", "status": "NOT_FOUND"}}),
            ),
        },
        "projects.regions.jobs.cancel" => {
            let job_id = last.trim_end_matches(":cancel").to_owned();
            match s.jobs.get_mut(&job_id) {
                Some(script) => {
                    script.states = VecDeque::from(["CANCEL_PENDING", "CANCELLED"]);
                    let mut job = script.resource.clone();
                    job["status"] = json!({"state": "CANCEL_PENDING"});
                    (200, job)
                }
                None => (404, Value::Null),
            }
        }
        "projects.locations.batches.create" => {
            let batch_id = req.param("batchId").unwrap_or_default().to_owned();
            if s.batches.contains_key(&batch_id) {
                return (
                    409,
                    json!({"error": {"code": 409, "message": "Already exists", "status": "ALREADY_EXISTS"}}),
                );
            }
            let fails = body["pysparkBatch"]["args"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == "--fail"));
            let name = format!(
                "projects/{}/locations/{}/batches/{batch_id}",
                seg[2], seg[4]
            );
            let op = format!("projects/{}/regions/{}/operations/op-{n}", seg[2], seg[4]);
            let mut batch = body.clone();
            batch["name"] = json!(name);
            batch["operation"] = json!(op);
            let end = if fails { "FAILED" } else { "SUCCEEDED" };
            s.batches.insert(
                batch_id,
                Script {
                    states: VecDeque::from(["PENDING", "RUNNING", "RUNNING", "RUNNING", end]),
                    resource: batch,
                },
            );
            (200, json!({"name": op, "done": false}))
        }
        "projects.regions.operations.cancel" => {
            let name = seg[1..].join("/");
            let name = name.trim_end_matches(":cancel");
            match s
                .batches
                .values_mut()
                .find(|b| b.resource["operation"] == name)
            {
                Some(script) => {
                    script.states = VecDeque::from(["CANCELLING", "CANCELLED"]);
                    (200, json!({}))
                }
                None => (
                    404,
                    json!({"error": {"code": 404, "message": "Not found", "status": "NOT_FOUND"}}),
                ),
            }
        }
        "projects.locations.batches.get" => match s.batches.get_mut(&last) {
            Some(script) => {
                let state = advance(script);
                let mut batch = script.resource.clone();
                batch["state"] = json!(state);
                if state == "FAILED" {
                    batch["stateMessage"] = json!("Job failed with message [ValueError: boom]");
                }
                (200, batch)
            }
            None => (404, Value::Null),
        },
        "projects.locations.batches.list" => {
            let batches: Vec<Value> = s
                .batches
                .values()
                .map(|b| {
                    let mut batch = b.resource.clone();
                    batch["state"] = json!(b.states[0]);
                    batch
                })
                .collect();
            (200, json!({"batches": batches}))
        }
        "projects.locations.batches.delete" => match s.batches.remove(&last) {
            Some(_) => (200, json!({})),
            None => (
                404,
                json!({"error": {"code": 404, "message": "Not found", "status": "NOT_FOUND"}}),
            ),
        },
        "datasets.insert" => {
            let dataset = body["datasetReference"]["datasetId"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if !s.datasets.insert(dataset.clone()) {
                return (
                    409,
                    json!({"error": {"code": 409, "message": format!("Already Exists: Dataset proj:{dataset}")}}),
                );
            }
            (
                200,
                json!({"datasetReference": body["datasetReference"], "location": body["location"], "id": format!("proj:{dataset}")}),
            )
        }
        "datasets.delete" => {
            let dataset = seg[5].clone();
            if !s.datasets.contains(&dataset) {
                return (
                    404,
                    json!({"error": {"code": 404, "message": "Not found: Dataset"}}),
                );
            }
            let has_tables = s.tables.keys().any(|(d, _)| *d == dataset);
            if has_tables && req.param("deleteContents") != Some("true") {
                return (
                    400,
                    json!({"error": {"code": 400, "message": "Dataset is still in use"}}),
                );
            }
            s.datasets.remove(&dataset);
            s.tables.retain(|(d, _), _| *d != dataset);
            (204, Value::Null)
        }
        "tables.list" => {
            let dataset = seg[5].clone();
            if !s.datasets.contains(&dataset) {
                return (
                    404,
                    json!({"error": {"code": 404, "message": "Not found: Dataset"}}),
                );
            }
            let all: Vec<String> = s
                .tables
                .keys()
                .filter(|(d, _)| *d == dataset)
                .map(|(_, t)| t.clone())
                .collect();
            // Two tables per page.
            let start: usize = req.param("pageToken").map_or(0, |t| t.parse().unwrap());
            let tables: Vec<Value> = all
                .iter()
                .skip(start)
                .take(2)
                .map(|t| json!({"tableReference": {"projectId": "proj", "datasetId": dataset, "tableId": t}, "id": format!("proj:{dataset}.{t}")}))
                .collect();
            let mut page = json!({"tables": tables, "totalItems": all.len()});
            if start + 2 < all.len() {
                page["nextPageToken"] = json!((start + 2).to_string());
            }
            (200, page)
        }
        "tables.get" => match s.tables.get(&(seg[5].clone(), seg[7].clone())) {
            Some(rows) => (
                200,
                json!({"tableReference": {"projectId": "proj", "datasetId": seg[5], "tableId": seg[7]}, "numRows": rows.to_string()}),
            ),
            None => (
                404,
                json!({"error": {"code": 404, "message": "Not found: Table"}}),
            ),
        },
        "tables.delete" => match s.tables.remove(&(seg[5].clone(), seg[7].clone())) {
            Some(_) => (204, Value::Null),
            None => (
                404,
                json!({"error": {"code": 404, "message": "Not found: Table"}}),
            ),
        },
        "jobs.insert" => {
            let job_id = body["jobReference"]["jobId"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if s.bq_jobs.contains_key(&job_id) {
                return (
                    409,
                    json!({"error": {"code": 409, "message": format!("Already Exists: Job proj:US.{job_id}"), "status": "ALREADY_EXISTS"}}),
                );
            }
            let load = &body["configuration"]["load"];
            for (field, want) in [
                ("writeDisposition", "WRITE_TRUNCATE"),
                ("sourceFormat", "PARQUET"),
            ] {
                if load[field] != want {
                    front.violation(format!(
                        "load job {job_id}: {field} is {}, not {want}",
                        load[field]
                    ));
                }
            }
            let broken = load["sourceUris"].to_string().contains("broken");
            let mut job = json!({
                "jobReference": body["jobReference"],
                "configuration": body["configuration"],
                "status": {"state": "PENDING"},
            });
            let mut states =
                VecDeque::from(["PENDING", "RUNNING", if broken { "BROKEN" } else { "DONE" }]);
            if s.endless.contains(&Endless::BigQueryJob) {
                states.pop_back();
            }
            s.bq_jobs.insert(
                job_id,
                Script {
                    states,
                    resource: job.clone(),
                },
            );
            job["id"] = json!("proj:US.job");
            (200, job)
        }
        "jobs.get" => {
            let Some(script) = s.bq_jobs.get_mut(&seg[5]) else {
                return (
                    404,
                    json!({"error": {"code": 404, "message": "Not found: Job"}}),
                );
            };
            let state = advance(script);
            let mut job = script.resource.clone();
            match state {
                "BROKEN" => {
                    job["status"] = json!({
                        "state": "DONE",
                        "errorResult": {"reason": "invalid", "message": "Error while reading data, error message: Parquet column 'amount_spent' has type INT64 which does not match the target cpp_type NUMERIC"},
                        "errors": [
                            {"reason": "invalid", "message": "Error while reading data", "location": "gs://staging/broken/part-0.parquet"},
                            {"reason": "invalid", "message": "Parquet column 'amount_spent' has type INT64"},
                        ],
                    });
                }
                // https://cloud.google.com/bigquery/docs/error-messages:
                // `stopped` is "returned when a job is canceled".
                "STOPPED" => {
                    job["status"] = json!({
                        "state": "DONE",
                        "errorResult": {"reason": "stopped", "message": "Job execution was cancelled: User requested cancellation"},
                    });
                }
                "DONE" => {
                    job["status"] = json!({"state": "DONE"});
                    job["statistics"] =
                        json!({"load": {"outputRows": LOADED_ROWS.to_string(), "badRecords": "0"}});
                    let table = &job["configuration"]["load"]["destinationTable"];
                    let key = (
                        table["datasetId"].as_str().unwrap().to_owned(),
                        table["tableId"].as_str().unwrap().to_owned(),
                    );
                    s.tables.insert(key, LOADED_ROWS);
                }
                other => job["status"] = json!({"state": other}),
            }
            (200, job)
        }
        // https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs/cancel:
        // returns at once; the job ends DONE later, with reason `stopped`.
        "jobs.cancel" => {
            let Some(script) = s.bq_jobs.get_mut(&seg[5]) else {
                return (
                    404,
                    json!({"error": {"code": 404, "message": "Not found: Job"}}),
                );
            };
            script.states = VecDeque::from(["RUNNING", "STOPPED"]);
            let mut job = script.resource.clone();
            job["status"] = json!({"state": "RUNNING"});
            (
                200,
                json!({"kind": "bigquery#jobCancelResponse", "job": job}),
            )
        }
        "jobs.query" => {
            let job_id = format!("query-{n}");
            s.queries.insert(job_id.clone(), 0);
            (
                200,
                json!({"jobComplete": false, "jobReference": {"projectId": "proj", "jobId": job_id, "location": body["location"]}}),
            )
        }
        "jobs.getQueryResults" => {
            let job_id = seg[5].clone();
            let Some(calls) = s.queries.get_mut(&job_id) else {
                return (404, Value::Null);
            };
            *calls += 1;
            if *calls == 1 {
                return (
                    200,
                    json!({"jobComplete": false, "jobReference": {"projectId": "proj", "jobId": job_id}}),
                );
            }
            let rows = [
                json!({"f": [{"v": "1"}, {"v": "12345678901234567890123456789.125"}, {"v": "1795729200500000"}, {"v": "0.5"}, {"v": "true"}, {"v": "a"}]}),
                json!({"f": [{"v": "2"}, {"v": "0.001"}, {"v": "0"}, {"v": "-1.25"}, {"v": "false"}, {"v": null}]}),
                json!({"f": [{"v": "3"}, {"v": null}, {"v": null}, {"v": null}, {"v": null}, {"v": "c"}]}),
            ];
            // Page by page: one row per page after the first two.
            let start: usize = req.param("pageToken").map_or(0, |t| t.parse().unwrap());
            let take = if start == 0 { 2 } else { 1 };
            let mut page = json!({
                "jobComplete": true,
                "jobReference": {"projectId": "proj", "jobId": job_id},
                "totalRows": "3",
                "schema": {"fields": [
                    {"name": "customer_id", "type": "INTEGER", "mode": "REQUIRED"},
                    {"name": "amount_spent", "type": "NUMERIC", "mode": "NULLABLE"},
                    {"name": "insert_date", "type": "TIMESTAMP", "mode": "NULLABLE"},
                    {"name": "ratio", "type": "FLOAT", "mode": "NULLABLE"},
                    {"name": "positive", "type": "BOOLEAN", "mode": "NULLABLE"},
                    {"name": "note", "type": "STRING", "mode": "NULLABLE"},
                ]},
                "rows": rows[start..(start + take).min(3)].to_vec(),
            });
            if start + take < 3 {
                page["pageToken"] = json!((start + take).to_string());
            }
            (200, page)
        }
        "instances.import" | "instances.export" => {
            let context = if short == "instances.import" {
                &body["importContext"]
            } else {
                &body["exportContext"]
            };
            let uri = context["uri"].as_str().unwrap_or_default().to_owned();
            if !uri.starts_with("gs://") {
                front.violation(format!("{short}: uri `{uri}` is not in Cloud Storage"));
            }
            // One operation at a time per instance: see
            // `sqladmin::operation_in_progress` for Google's page and error.
            if s.sql_operations.values().any(|(states, op)| {
                states.len() > 1 && op["targetId"].as_str() == Some(seg[4].as_str())
            }) {
                return crate::sqladmin::operation_in_progress();
            }
            let name = format!("sqlop-{n:06}");
            let failing = short == "instances.import"
                && s.failing_imports.iter().any(|f| uri.contains(f.as_str()));
            let end = if failing { "FAILED" } else { "DONE" };
            let kind = if short == "instances.import" {
                "IMPORT"
            } else {
                "EXPORT"
            };
            let mut op = json!({
                "kind": "sql#operation",
                "name": name,
                "operationType": kind,
                "status": "PENDING",
                "targetId": seg[4],
                "targetProject": seg[2],
            });
            let key = if kind == "IMPORT" {
                "importContext"
            } else {
                "exportContext"
            };
            op[key] = context.clone();
            let mut states = VecDeque::from(["PENDING", "RUNNING", end]);
            if s.endless.contains(&Endless::CloudSqlOperation) {
                states.pop_back();
            }
            s.sql_operations.insert(name, (states, op.clone()));
            (200, op)
        }
        "operations.list" => {
            let Some(instance) = req.param("instance") else {
                front.violation("operations.list without `instance`");
                return (400, Value::Null);
            };
            // "in the reverse chronological order of the start time" (sqladmin.v1.json)
            let items: Vec<Value> = s
                .sql_operations
                .values()
                .rev()
                .filter(|(_, op)| op["targetId"] == instance)
                .map(|(states, op)| sql_operation_now(states, op))
                .collect();
            (200, json!({"kind": "sql#operationsList", "items": items}))
        }
        // https://cloud.google.com/sql/docs/postgres/admin-api/rest/v1/operations/cancel:
        // the response body is empty. The fake only records the call (the
        // log): the page does not say how a cancelled operation ends.
        "operations.cancel" => {
            if s.sql_operations.contains_key(&seg[4]) {
                (200, json!({}))
            } else {
                (
                    404,
                    json!({"error": {"code": 404, "message": "The Cloud SQL operation does not exist.", "status": "NOT_FOUND"}}),
                )
            }
        }
        "operations.get" => {
            let Some((states, op)) = s.sql_operations.get_mut(&last) else {
                return (
                    404,
                    json!({"error": {"code": 404, "message": "The Cloud SQL operation does not exist.", "status": "NOT_FOUND"}}),
                );
            };
            if states.len() > 1 {
                states.pop_front();
            }
            (200, sql_operation_now(states, op))
        }
        other => {
            front.violation(format!("the fake does not play {other}"));
            (501, Value::Null)
        }
    }
}
