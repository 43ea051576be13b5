//! A Dataproc v1 stand-in that EXECUTES: clusters (create, get, list,
//! delete, with long-running operations), jobs (submit, get, cancel) and
//! Serverless batches (create, get, delete, cancel through their
//! operation). A submitted PySpark job runs with a local `spark-submit`:
//! every `gs://` argument is mirrored from fake-gcs-server into a work dir
//! and rewritten to `file://`, the driver's output is uploaded as it comes
//! (`driveroutput.000000000`, … like Dataproc's), and what the job wrote is
//! synced back (new and changed files uploaded, files it removed deleted),
//! as the GCS connector would have written them. Cancelling a job, or
//! deleting its cluster, kills its process group.
//!
//! Cluster and job life times go to the request log as events, for the
//! cluster-minutes report.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::front::{Call, Front, error, not_found};
use crate::gcs::{Gcs, split_uri};

/// How the stand-in runs jobs.
#[derive(Debug, Clone)]
pub struct DataprocConfig {
    /// `spark-submit` from a pyspark install.
    pub spark_submit: PathBuf,
    /// `--master` for local runs, e.g. `local[2]`.
    pub master: String,
    /// Where jobs get their work dirs.
    pub work: PathBuf,
    /// The bucket for driver output when a cluster names no `configBucket`.
    pub staging_bucket: String,
    /// How long a cluster stays CREATING (the real ones take about 90 s).
    pub startup: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Job,
    Batch,
}

struct Run {
    kind: Kind,
    resource: Value,
    state: String,
    details: Option<String>,
    history: Vec<Value>,
    state_time: String,
    /// The process group of the running spark-submit.
    pgid: Option<i32>,
    cluster: Option<String>,
}

struct ClusterRec {
    resource: Value,
    uuid: String,
    deleting: bool,
}

struct Operation {
    name: String,
    metadata: Value,
    /// Done once this instant passes (None: when `result` is set).
    done_at: Option<Instant>,
    result: Option<Result<Value, Value>>,
    /// On completion: a cluster to mark RUNNING, or to remove.
    on_done: OnDone,
}

#[derive(Clone)]
enum OnDone {
    Nothing,
    ClusterRunning(String),
    ClusterGone(String),
}

#[derive(Default)]
struct State {
    clusters: BTreeMap<String, ClusterRec>,
    operations: BTreeMap<String, Operation>,
    /// requestId -> operation name: a repeated request id returns the
    /// operation it first started, as Dataproc does.
    request_ids: BTreeMap<String, String>,
    runs: BTreeMap<(Kind, String), Run>,
    /// Scripts (by file name) whose next run fails: the stand-in runs a
    /// script that prints these lines and raises instead.
    broken: BTreeMap<String, Vec<String>>,
    next: u64,
}

#[derive(Clone)]
pub struct Dataproc {
    front: Front,
    gcs: Gcs,
    config: Arc<DataprocConfig>,
    state: Arc<Mutex<State>>,
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn uuid(n: u64) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (nanos >> 32) as u32,
        (nanos >> 16) as u16,
        n & 0xfff,
        (nanos >> 4) & 0xfff,
        nanos & 0xffff_ffff_ffff
    )
}

impl Dataproc {
    pub fn new(front: Front, gcs: Gcs, config: DataprocConfig) -> Dataproc {
        Dataproc {
            front,
            gcs,
            config: Arc::new(config),
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    /// Clusters that exist (any state but gone).
    pub fn clusters(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .clusters
            .keys()
            .cloned()
            .collect()
    }

    /// Job ids ever submitted, in id order.
    pub fn jobs(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .runs
            .keys()
            .filter(|(k, _)| *k == Kind::Job)
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// Jobs and batches whose spark-submit still runs.
    pub fn running(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .runs
            .iter()
            .filter(|(_, r)| r.pgid.is_some())
            .map(|((_, id), _)| id.clone())
            .collect()
    }

    /// The next run of the script named `file` (e.g. `user_behavior.py`)
    /// prints `lines` and fails with a Python traceback.
    pub fn break_script(&self, file: &str, lines: &[&str]) {
        self.state.lock().unwrap().broken.insert(
            file.to_owned(),
            lines.iter().map(|l| l.to_string()).collect(),
        );
    }

    /// Clusters that are not being deleted, after finishing what is due.
    pub fn alive(&self) -> Vec<String> {
        let mut s = self.state.lock().unwrap();
        self.settle(&mut s);
        s.clusters
            .iter()
            .filter(|(_, c)| !c.deleting)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// How many times each job or batch id started running.
    pub fn executions(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for event in self.front.events() {
            if (event["event"] == "job" || event["event"] == "batch") && event["state"] == "RUNNING"
            {
                *out.entry(event["id"].as_str().unwrap_or_default().to_owned())
                    .or_default() += 1;
            }
        }
        out
    }

    /// The state of a job, if it exists.
    pub fn job_state(&self, id: &str) -> Option<String> {
        self.state
            .lock()
            .unwrap()
            .runs
            .get(&(Kind::Job, id.to_owned()))
            .map(|r| r.state.clone())
    }

    /// Kills every running spark-submit (the stand-ins are stopping).
    pub fn kill_all(&self) {
        let s = self.state.lock().unwrap();
        for run in s.runs.values() {
            if let Some(pgid) = run.pgid {
                kill_group(pgid);
            }
        }
    }

    pub async fn dispatch(&self, call: Call) -> (u16, Value) {
        let request_id = call
            .req
            .param("requestId")
            .map(str::to_owned)
            .or_else(|| call.body["requestId"].as_str().map(str::to_owned));
        // dataproc.v1.json: at most 40 characters, letters, digits, `_` and `-`.
        if let Some(id) = request_id
            && (id.len() > 40
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        {
            let text = format!("{}: requestId `{id}` breaks the 40-character rule", call.id);
            self.front.violation(text.clone());
            return error(400, "INVALID_ARGUMENT", &text);
        }
        let project = call.seg.get(2).cloned().unwrap_or_default();
        let region = call.seg.get(4).cloned().unwrap_or_default();
        match call.short().as_str() {
            "projects.regions.clusters.create" => self.create_cluster(&call, &project, &region),
            "projects.regions.clusters.get" => self.get_cluster(call.last()),
            "projects.regions.clusters.list" => self.list_clusters(&call),
            "projects.regions.clusters.delete" => self.delete_cluster(&call, &project, &region),
            "projects.regions.operations.get" | "projects.locations.operations.get" => {
                self.get_operation(&call.seg[1..].join("/"))
            }
            "projects.regions.operations.cancel" | "projects.locations.operations.cancel" => {
                let name = call.seg[1..].join("/");
                self.cancel_operation(name.trim_end_matches(":cancel"))
            }
            "projects.regions.jobs.submit" => self.submit_job(&call, &project, &region),
            "projects.regions.jobs.get" => self.get_run(Kind::Job, call.last()),
            "projects.regions.jobs.cancel" => {
                self.cancel_job(call.last().trim_end_matches(":cancel"))
            }
            "projects.locations.batches.create" => self.create_batch(&call, &project, &region),
            "projects.locations.batches.get" => self.get_run(Kind::Batch, call.last()),
            "projects.locations.batches.delete" => self.delete_batch(call.last()),
            "projects.locations.batches.list" => self.list_batches(&call),
            other => {
                self.front
                    .violation(format!("the Dataproc stand-in does not play {other}"));
                (501, Value::Null)
            }
        }
    }

    fn event(&self, event: Value) {
        self.front.event(event);
    }

    fn operation_name(s: &mut State, project: &str, region: &str) -> String {
        s.next += 1;
        format!(
            "projects/{project}/regions/{region}/operations/{}",
            uuid(s.next)
        )
    }

    /// Returns the operation a repeated request id started, if any.
    fn replay(&self, s: &State, request_id: Option<&str>) -> Option<(u16, Value)> {
        let name = s.request_ids.get(request_id?)?;
        let op = s.operations.get(name)?;
        Some((200, operation_json(op)))
    }

    fn create_cluster(&self, call: &Call, project: &str, region: &str) -> (u16, Value) {
        let request_id = call.req.param("requestId");
        if request_id.is_none() {
            self.front.violation("clusters.create without requestId");
        }
        let mut s = self.state.lock().unwrap();
        if let Some(replayed) = self.replay(&s, request_id) {
            return replayed;
        }
        if let Err(refusal) = check_cluster_config(&call.body["config"]) {
            return error(400, "INVALID_ARGUMENT", &refusal);
        }
        let name = call.body["clusterName"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if s.clusters.contains_key(&name) {
            return error(
                409,
                "ALREADY_EXISTS",
                &format!(
                    "Already exists: Failed to create cluster: Cluster projects/{project}/regions/{region}/clusters/{name}"
                ),
            );
        }
        s.next += 1;
        let cluster_uuid = uuid(s.next);
        let mut resource = call.body.clone();
        resource["clusterUuid"] = json!(cluster_uuid);
        resource["status"] = json!({"state": "CREATING", "stateStartTime": now()});
        let op = Self::operation_name(&mut s, project, region);
        let ready_at = Instant::now() + self.config.startup;
        s.clusters.insert(
            name.clone(),
            ClusterRec {
                resource: resource.clone(),
                uuid: cluster_uuid.clone(),
                deleting: false,
            },
        );
        let metadata = json!({
            "@type": "type.googleapis.com/google.cloud.dataproc.v1.ClusterOperationMetadata",
            "clusterName": name,
            "clusterUuid": cluster_uuid,
            "operationType": "CREATE",
            "status": {"state": "PENDING"},
        });
        let operation = Operation {
            name: op.clone(),
            metadata,
            done_at: Some(ready_at),
            result: None,
            on_done: OnDone::ClusterRunning(name.clone()),
        };
        let answer = operation_json(&operation);
        s.operations.insert(op.clone(), operation);
        if let Some(id) = request_id {
            s.request_ids.insert(id.to_owned(), op);
        }
        drop(s);
        self.event(json!({"event": "cluster", "cluster": name, "state": "CREATING"}));
        (200, answer)
    }

    /// Completes operations whose time has come.
    fn settle(&self, s: &mut State) {
        let due: Vec<String> = s
            .operations
            .values()
            .filter(|o| o.result.is_none() && o.done_at.is_some_and(|t| t <= Instant::now()))
            .map(|o| o.name.clone())
            .collect();
        for name in due {
            let on_done = s.operations[&name].on_done.clone();
            let result = match on_done {
                OnDone::ClusterRunning(cluster) => match s.clusters.get_mut(&cluster) {
                    Some(c) if !c.deleting => {
                        c.resource["status"] = json!({"state": "RUNNING", "stateStartTime": now()});
                        self.event(
                            json!({"event": "cluster", "cluster": cluster, "state": "RUNNING"}),
                        );
                        let mut r = c.resource.clone();
                        r["@type"] = json!("type.googleapis.com/google.cloud.dataproc.v1.Cluster");
                        Ok(r)
                    }
                    _ => Err(
                        json!({"code": 9, "message": format!("Cluster {cluster} was deleted while it was being created")}),
                    ),
                },
                OnDone::ClusterGone(cluster) => {
                    s.clusters.remove(&cluster);
                    self.event(json!({"event": "cluster", "cluster": cluster, "state": "DELETED"}));
                    Ok(json!({"@type": "type.googleapis.com/google.protobuf.Empty"}))
                }
                OnDone::Nothing => {
                    Ok(json!({"@type": "type.googleapis.com/google.protobuf.Empty"}))
                }
            };
            if let Some(op) = s.operations.get_mut(&name) {
                op.result = Some(result);
            }
        }
    }

    fn get_cluster(&self, name: &str) -> (u16, Value) {
        let mut s = self.state.lock().unwrap();
        self.settle(&mut s);
        match s.clusters.get(name) {
            Some(c) => (200, c.resource.clone()),
            None => not_found(&format!("Cluster {name}")),
        }
    }

    fn list_clusters(&self, call: &Call) -> (u16, Value) {
        let mut s = self.state.lock().unwrap();
        self.settle(&mut s);
        let filter = call.req.param("filter").unwrap_or_default();
        let mut terms = Vec::new();
        for term in split_and(filter) {
            let Some((key, value)) = term.split_once('=') else {
                return error(
                    400,
                    "INVALID_ARGUMENT",
                    &format!("Invalid filter: {filter}"),
                );
            };
            terms.push((
                key.trim().to_owned(),
                value.trim().trim_matches('"').to_owned(),
            ));
        }
        let matching: Vec<Value> = s
            .clusters
            .values()
            .filter(|c| {
                terms.iter().all(|(key, value)| {
                    if let Some(label) = key.strip_prefix("labels.") {
                        c.resource["labels"][label] == value.as_str()
                    } else if key == "status.state" {
                        let state = c.resource["status"]["state"].as_str().unwrap_or_default();
                        match value.as_str() {
                            "ACTIVE" => {
                                matches!(state, "CREATING" | "RUNNING" | "UPDATING" | "ERROR")
                            }
                            "INACTIVE" => matches!(state, "DELETING"),
                            other => state == other,
                        }
                    } else if key == "clusterName" {
                        c.resource["clusterName"] == value.as_str()
                    } else {
                        false
                    }
                })
            })
            .map(|c| c.resource.clone())
            .collect();
        let size: usize = call
            .req
            .param("pageSize")
            .and_then(|p| p.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(100);
        let start: usize = call
            .req
            .param("pageToken")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let page: Vec<Value> = matching.iter().skip(start).take(size).cloned().collect();
        let mut answer = json!({});
        if !page.is_empty() {
            answer["clusters"] = json!(page);
        }
        if start + size < matching.len() {
            answer["nextPageToken"] = json!((start + size).to_string());
        }
        (200, answer)
    }

    fn delete_cluster(&self, call: &Call, project: &str, region: &str) -> (u16, Value) {
        let name = call.last().to_owned();
        let request_id = call.req.param("requestId");
        let mut s = self.state.lock().unwrap();
        self.settle(&mut s);
        if let Some(replayed) = self.replay(&s, request_id) {
            return replayed;
        }
        let Some(cluster) = s.clusters.get(&name) else {
            return not_found(&format!(
                "Cluster projects/{project}/regions/{region}/clusters/{name}"
            ));
        };
        if let Some(want) = call.req.param("clusterUuid")
            && want != cluster.uuid
        {
            return not_found(&format!("Cluster {name} with UUID {want}"));
        }
        if cluster.deleting {
            return error(
                400,
                "FAILED_PRECONDITION",
                &format!("Cluster {name} is being deleted"),
            );
        }
        let uuid_of = cluster.uuid.clone();
        // Deleting a cluster kills its drivers; their jobs end in ERROR.
        let doomed: Vec<(Kind, String)> = s
            .runs
            .iter()
            .filter(|(_, r)| r.cluster.as_deref() == Some(&name) && !is_final(&r.state))
            .map(|(k, _)| k.clone())
            .collect();
        for key in doomed {
            if let Some(run) = s.runs.get_mut(&key) {
                if let Some(pgid) = run.pgid.take() {
                    kill_group(pgid);
                }
                set_state(
                    run,
                    "ERROR",
                    Some("Job terminated: the cluster was deleted".into()),
                );
            }
        }
        let c = s.clusters.get_mut(&name).unwrap();
        c.deleting = true;
        c.resource["status"] = json!({"state": "DELETING", "stateStartTime": now()});
        let op = Self::operation_name(&mut s, project, region);
        let operation = Operation {
            name: op.clone(),
            metadata: json!({
                "@type": "type.googleapis.com/google.cloud.dataproc.v1.ClusterOperationMetadata",
                "clusterName": name,
                "clusterUuid": uuid_of,
                "operationType": "DELETE",
            }),
            done_at: Some(Instant::now() + Duration::from_millis(200)),
            result: None,
            on_done: OnDone::ClusterGone(name.clone()),
        };
        let answer = operation_json(&operation);
        s.operations.insert(op.clone(), operation);
        if let Some(id) = request_id {
            s.request_ids.insert(id.to_owned(), op);
        }
        drop(s);
        self.event(json!({"event": "cluster", "cluster": name, "state": "DELETING"}));
        (200, answer)
    }

    fn get_operation(&self, name: &str) -> (u16, Value) {
        let mut s = self.state.lock().unwrap();
        self.settle(&mut s);
        match s.operations.get(name) {
            Some(op) => (200, operation_json(op)),
            None => not_found(&format!("Operation {name}")),
        }
    }

    fn cancel_operation(&self, name: &str) -> (u16, Value) {
        let batch = {
            let s = self.state.lock().unwrap();
            let Some(op) = s.operations.get(name) else {
                return not_found(&format!("Operation {name}"));
            };
            op.metadata["batch"]
                .as_str()
                .and_then(|b| b.rsplit('/').next())
                .map(str::to_owned)
        };
        match batch {
            Some(batch) => {
                self.cancel(Kind::Batch, &batch);
                (200, json!({}))
            }
            None => error(
                400,
                "FAILED_PRECONDITION",
                "This operation cannot be cancelled",
            ),
        }
    }

    fn submit_job(&self, call: &Call, project: &str, region: &str) -> (u16, Value) {
        let job = &call.body["job"];
        let job_id = job["reference"]["jobId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if job_id.is_empty() || call.body["requestId"].is_null() {
            self.front
                .violation("jobs.submit without reference.jobId or requestId");
        }
        let cluster = job["placement"]["clusterName"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut s = self.state.lock().unwrap();
        self.settle(&mut s);
        if s.runs.contains_key(&(Kind::Job, job_id.clone())) {
            return error(
                409,
                "ALREADY_EXISTS",
                &format!("Already exists: Job projects/{project}/regions/{region}/jobs/{job_id}"),
            );
        }
        let Some(c) = s.clusters.get(&cluster) else {
            return not_found(&format!(
                "Cluster projects/{project}/regions/{region}/clusters/{cluster}"
            ));
        };
        if c.resource["status"]["state"] != "RUNNING" {
            return error(
                400,
                "FAILED_PRECONDITION",
                &format!(
                    "Cluster {cluster} is not running (state {})",
                    c.resource["status"]["state"]
                ),
            );
        }
        let bucket = c.resource["config"]["configBucket"]
            .as_str()
            .unwrap_or(&self.config.staging_bucket)
            .to_owned();
        let cluster_uuid = c.uuid.clone();
        s.next += 1;
        let mut resource = job.clone();
        resource["reference"]["projectId"] = json!(project);
        resource["placement"]["clusterUuid"] = json!(cluster_uuid);
        resource["jobUuid"] = json!(uuid(s.next));
        let control =
            format!("gs://{bucket}/google-cloud-dataproc-metainfo/{cluster_uuid}/jobs/{job_id}");
        resource["driverControlFilesUri"] = json!(format!("{control}/"));
        resource["driverOutputResourceUri"] = json!(format!("{control}/driveroutput"));
        let mut run = Run {
            kind: Kind::Job,
            resource,
            state: String::new(),
            details: None,
            history: Vec::new(),
            state_time: now(),
            pgid: None,
            cluster: Some(cluster),
        };
        set_state(&mut run, "PENDING", None);
        let answer = run_json(&run);
        let pyspark = job["pysparkJob"].clone();
        s.runs.insert((Kind::Job, job_id.clone()), run);
        drop(s);
        self.event(json!({"event": "job", "id": job_id, "state": "PENDING"}));
        let this = self.clone();
        let output = format!("{control}/driveroutput");
        tokio::spawn(async move {
            this.execute(Kind::Job, job_id, pyspark, output).await;
        });
        (200, answer)
    }

    fn create_batch(&self, call: &Call, project: &str, region: &str) -> (u16, Value) {
        let batch_id = call.req.param("batchId").unwrap_or_default().to_owned();
        let request_id = call.req.param("requestId");
        let mut s = self.state.lock().unwrap();
        if let Some(replayed) = self.replay(&s, request_id) {
            return replayed;
        }
        if s.runs.contains_key(&(Kind::Batch, batch_id.clone())) {
            return error(
                409,
                "ALREADY_EXISTS",
                &format!(
                    "Already exists: Batch projects/{project}/locations/{region}/batches/{batch_id}"
                ),
            );
        }
        s.next += 1;
        let batch_uuid = uuid(s.next);
        let name = format!("projects/{project}/locations/{region}/batches/{batch_id}");
        let op = Self::operation_name(&mut s, project, region);
        let output = format!(
            "gs://{}/google-cloud-dataproc-metainfo/{batch_uuid}/jobs/srvls-batch-{batch_uuid}/driveroutput",
            self.config.staging_bucket
        );
        let mut resource = call.body.clone();
        resource["name"] = json!(name);
        resource["uuid"] = json!(batch_uuid);
        resource["createTime"] = json!(now());
        resource["operation"] = json!(op);
        resource["runtimeInfo"] = json!({"outputUri": output});
        let mut run = Run {
            kind: Kind::Batch,
            resource,
            state: String::new(),
            details: None,
            history: Vec::new(),
            state_time: now(),
            pgid: None,
            cluster: None,
        };
        set_state(&mut run, "PENDING", None);
        let operation = Operation {
            name: op.clone(),
            metadata: json!({
                "@type": "type.googleapis.com/google.cloud.dataproc.v1.BatchOperationMetadata",
                "batch": name,
                "batchUuid": batch_uuid,
                "operationType": "BATCH",
            }),
            done_at: None,
            result: None,
            on_done: OnDone::Nothing,
        };
        let answer = operation_json(&operation);
        s.operations.insert(op.clone(), operation);
        if let Some(id) = request_id {
            s.request_ids.insert(id.to_owned(), op);
        }
        let pyspark = call.body["pysparkBatch"].clone();
        s.runs.insert((Kind::Batch, batch_id.clone()), run);
        drop(s);
        self.event(json!({"event": "batch", "id": batch_id, "state": "PENDING"}));
        let this = self.clone();
        tokio::spawn(async move {
            this.execute(Kind::Batch, batch_id, pyspark, output).await;
        });
        (200, answer)
    }

    /// `batches.list` with a filter of `labels.<k> = <v>` and `state = <S>`
    /// terms joined by AND (one page: the stand-in holds few batches).
    fn list_batches(&self, call: &Call) -> (u16, Value) {
        let s = self.state.lock().unwrap();
        let filter = call.req.param("filter").unwrap_or_default();
        let mut terms = Vec::new();
        for term in split_and(filter) {
            let Some((key, value)) = term.split_once('=') else {
                return error(
                    400,
                    "INVALID_ARGUMENT",
                    &format!("Invalid filter: {filter}"),
                );
            };
            terms.push((
                key.trim().to_owned(),
                value.trim().trim_matches('"').to_owned(),
            ));
        }
        let batches: Vec<Value> = s
            .runs
            .iter()
            .filter(|((kind, _), _)| *kind == Kind::Batch)
            .map(|(_, run)| run_json(run))
            .filter(|b| {
                terms
                    .iter()
                    .all(|(key, value)| match key.strip_prefix("labels.") {
                        Some(label) => b["labels"][label] == value.as_str(),
                        None => key == "state" && b["state"] == value.as_str(),
                    })
            })
            .collect();
        if batches.is_empty() {
            return (200, json!({}));
        }
        (200, json!({"batches": batches}))
    }

    fn get_run(&self, kind: Kind, id: &str) -> (u16, Value) {
        let s = self.state.lock().unwrap();
        match s.runs.get(&(kind, id.to_owned())) {
            Some(run) => (200, run_json(run)),
            None => not_found(&format!("{kind:?} {id}")),
        }
    }

    fn cancel_job(&self, id: &str) -> (u16, Value) {
        if !self
            .state
            .lock()
            .unwrap()
            .runs
            .contains_key(&(Kind::Job, id.to_owned()))
        {
            return not_found(&format!("Job {id}"));
        }
        self.cancel(Kind::Job, id);
        self.get_run(Kind::Job, id)
    }

    fn cancel(&self, kind: Kind, id: &str) {
        let mut s = self.state.lock().unwrap();
        let Some(run) = s.runs.get_mut(&(kind, id.to_owned())) else {
            return;
        };
        if is_final(&run.state) {
            return;
        }
        let pending = if kind == Kind::Job {
            "CANCEL_PENDING"
        } else {
            "CANCELLING"
        };
        set_state(run, pending, None);
        match run.pgid {
            // The runner sees the exit and records CANCELLED.
            Some(pgid) => kill_group(pgid),
            None => set_state(run, "CANCELLED", None),
        }
        drop(s);
        self.event(json!({"event": "cancel", "id": id}));
    }

    fn delete_batch(&self, id: &str) -> (u16, Value) {
        let mut s = self.state.lock().unwrap();
        let key = (Kind::Batch, id.to_owned());
        match s.runs.get(&key) {
            None => not_found(&format!("Batch {id}")),
            Some(run) if !is_final(&run.state) => error(
                400,
                "FAILED_PRECONDITION",
                &format!("Batch {id} is in state {} and cannot be deleted", run.state),
            ),
            Some(_) => {
                s.runs.remove(&key);
                (200, json!({}))
            }
        }
    }

    /// Runs one PySpark job or batch to its end state.
    async fn execute(&self, kind: Kind, id: String, pyspark: Value, output: String) {
        let key = (kind, id.clone());
        let outcome = self.run_spark(&key, &pyspark, &output).await;
        let mut s = self.state.lock().unwrap();
        let Some(run) = s.runs.get_mut(&key) else {
            return;
        };
        run.pgid = None;
        let cancelled = matches!(
            run.state.as_str(),
            "CANCEL_PENDING" | "CANCEL_STARTED" | "CANCELLING"
        );
        let (ok, fail) = match kind {
            Kind::Job => ("DONE", "ERROR"),
            Kind::Batch => ("SUCCEEDED", "FAILED"),
        };
        if cancelled {
            set_state(run, "CANCELLED", None);
        } else if is_final(&run.state) {
            // Already ended (its cluster was deleted).
        } else {
            match outcome {
                Ok(()) => set_state(run, ok, None),
                Err(e) => set_state(run, fail, Some(format!("{e:#}"))),
            }
        }
        let state = run.state.clone();
        if kind == Kind::Batch
            && let Some(op) = run.resource["operation"].as_str().map(str::to_owned)
        {
            let resource = run_json(run);
            if let Some(operation) = s.operations.get_mut(&op) {
                operation.result = Some(if state == "SUCCEEDED" {
                    let mut r = resource;
                    r["@type"] = json!("type.googleapis.com/google.cloud.dataproc.v1.Batch");
                    Ok(r)
                } else {
                    Err(json!({"code": 9, "message": format!("Batch {id} ended {state}")}))
                });
            }
        }
        drop(s);
        self.event(json!({"event": if kind == Kind::Job { "job" } else { "batch" }, "id": id, "state": state}));
    }

    async fn run_spark(&self, key: &(Kind, String), pyspark: &Value, output: &str) -> Result<()> {
        let work = tempfile::Builder::new()
            .prefix(&format!("{}-", key.1))
            .tempdir_in(&self.config.work)
            .context("cannot make the job's work dir")?;
        let mirror = Mirror::new(self.gcs.clone(), work.path().join("gcs"));
        let main_uri = pyspark["mainPythonFileUri"].as_str().unwrap_or_default();
        let mut main = mirror.fetch(main_uri).await?;
        let file = main_uri.rsplit('/').next().unwrap_or_default().to_owned();
        let broken = self.state.lock().unwrap().broken.remove(&file);
        if let Some(lines) = broken {
            let path = work.path().join(format!("broken-{file}"));
            let mut script = String::from("import sys\n");
            for line in &lines {
                script.push_str(&format!("print({line:?}, flush=True)\n"));
            }
            script.push_str("raise ValueError('the rehearsal broke this job on purpose')\n");
            std::fs::write(&path, script)?;
            main = format!("file://{}", path.display());
        }
        let mut args = Vec::new();
        for arg in pyspark["args"].as_array().into_iter().flatten() {
            let arg = arg.as_str().unwrap_or_default();
            args.push(if arg.starts_with("gs://") {
                mirror.fetch(arg).await?
            } else {
                arg.to_owned()
            });
        }
        let mut py_files = Vec::new();
        for f in pyspark["pythonFileUris"].as_array().into_iter().flatten() {
            py_files.push(mirror.fetch(f.as_str().unwrap_or_default()).await?);
        }
        let spark_home = self
            .config
            .spark_submit
            .parent()
            .and_then(Path::parent)
            .context("spark-submit is not in SPARK_HOME/bin")?;
        // The venv pyspark lives in: its python runs the driver and workers.
        let python = spark_home
            .ancestors()
            .find(|dir| dir.join("pyvenv.cfg").is_file())
            .map_or_else(|| PathBuf::from("python3"), |venv| venv.join("bin/python"));
        let mut cmd = tokio::process::Command::new(&self.config.spark_submit);
        cmd.args(["--master", &self.config.master])
            .args(["--conf", "spark.ui.enabled=false"])
            .arg("--conf")
            .arg(format!(
                "spark.local.dir={}",
                work.path().join("spark-local").display()
            ))
            .env("SPARK_HOME", spark_home)
            .env("PYSPARK_PYTHON", &python)
            .env("PYSPARK_DRIVER_PYTHON", &python)
            .env("SPARK_LOCAL_IP", "127.0.0.1")
            .env_remove("PYTHONPATH");
        if !py_files.is_empty() {
            cmd.args(["--py-files", &py_files.join(",")]);
        }
        for (k, v) in pyspark["properties"].as_object().into_iter().flatten() {
            cmd.arg("--conf")
                .arg(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
        cmd.arg(main.trim_start_matches("file://"))
            .args(&args)
            .current_dir(work.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        {
            let mut s = self.state.lock().unwrap();
            if let Some(run) = s.runs.get_mut(key) {
                if is_final(&run.state) || run.state.starts_with("CANCEL") {
                    anyhow::bail!("cancelled before it started");
                }
                if key.0 == Kind::Job {
                    set_state(run, "SETUP_DONE", None);
                }
            }
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot run {}", self.config.spark_submit.display()))?;
        {
            let mut s = self.state.lock().unwrap();
            if let Some(run) = s.runs.get_mut(key) {
                run.pgid = child.id().map(|p| p as i32);
                set_state(run, "RUNNING", None);
            }
        }
        self.event(json!({"event": if key.0 == Kind::Job { "job" } else { "batch" }, "id": key.1, "state": "RUNNING"}));
        let (bucket, prefix) = split_uri(output).context("driver output is not a gs:// URI")?;
        let driver = DriverOutput::new(self.gcs.clone(), bucket, prefix);
        let pump = driver.pump(child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let (status, tail) = tokio::join!(child.wait(), pump);
        let status = status?;
        let tail = tail?;
        if !status.success() {
            let how = match (status.code(), status.signal()) {
                (Some(code), _) => format!("exit code {code}"),
                (None, Some(signal)) => format!("signal {signal}"),
                _ => status.to_string(),
            };
            let last = tail
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            anyhow::bail!(
                "Job failed with message [{}] ({how}). Additional details can be found at: {output}",
                last.trim()
            );
        }
        mirror.sync_back().await?;
        Ok(())
    }
}

/// The published image versions, the list `infra` checks its settings
/// against (with its sources and date).
const IMAGE_VERSIONS: &str = include_str!("../../../vendor/dataproc/image-versions.txt");

/// Dataproc's documented limits on a cluster's config. The rules:
/// - `LifecycleConfig.idleDeleteTtl`: "Minimum value is 5 minutes; maximum
///   value is 14 days"; `autoDeleteTtl`: "Minimum value is 10 minutes;
///   maximum value is 14 days" (dataproc.v1.json);
/// - `ClusterConfig.ClusterType` `STANDARD`: "Standard dataproc cluster
///   with a minimum of two primary workers" (dataproc.v1 reference; a
///   single-node cluster has none and sets
///   `dataproc:dataproc.allow.zero.workers`);
/// - `SoftwareConfig.imageVersion`: "It must be one of the supported Image
///   Versions" (dataproc.v1.json), as vendored in
///   `vendor/dataproc/image-versions.txt`.
///
/// The refusal texts are the stand-in's own: Google's exact wording for
/// these is not documented.
pub fn check_cluster_config(config: &Value) -> Result<(), String> {
    let seconds = |field: &str| {
        config["lifecycleConfig"][field]
            .as_str()
            .and_then(|d| d.strip_suffix('s'))
            .and_then(|d| d.parse::<f64>().ok())
    };
    let day = 24.0 * 3600.0;
    if let Some(idle) = seconds("idleDeleteTtl")
        && !(300.0..=14.0 * day).contains(&idle)
    {
        return Err(format!(
            "lifecycleConfig.idleDeleteTtl {idle}s: must be at least 5 minutes and at most 14 days"
        ));
    }
    if let Some(auto) = seconds("autoDeleteTtl")
        && !(600.0..=14.0 * day).contains(&auto)
    {
        return Err(format!(
            "lifecycleConfig.autoDeleteTtl {auto}s: must be at least 10 minutes and at most 14 days"
        ));
    }
    let workers = config["workerConfig"]["numInstances"].as_i64().unwrap_or(0);
    let single_node =
        config["softwareConfig"]["properties"]["dataproc:dataproc.allow.zero.workers"] == "true";
    if !(workers >= 2 || single_node && workers == 0) {
        return Err(format!(
            "workerConfig.numInstances {workers}: a standard cluster needs at least 2 primary workers"
        ));
    }
    if let Some(image) = config["softwareConfig"]["imageVersion"].as_str() {
        let listed = || {
            IMAGE_VERSIONS
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .filter_map(|l| l.split_whitespace().next())
        };
        let (number, os) = image
            .split_once('-')
            .map_or((image, None), |(n, o)| (n, Some(o)));
        let of_line = |v: &str| {
            let Some((n, o)) = v.split_once('-') else {
                return false;
            };
            (n == number || n.starts_with(&format!("{number}.")))
                && os.is_none_or(|os| o == os || o.ends_with(&format!("-{os}")))
        };
        let published = listed().any(|v| v == image)
            || number.matches('.').count() == 1 && listed().any(of_line);
        if !published {
            return Err(format!(
                "softwareConfig.imageVersion {image}: not a supported Dataproc image version"
            ));
        }
    }
    Ok(())
}

fn split_and(filter: &str) -> Vec<&str> {
    if filter.trim().is_empty() {
        return Vec::new();
    }
    filter
        .split(" AND ")
        .flat_map(|p| p.split(" and "))
        .map(str::trim)
        .collect()
}

fn kill_group(pgid: i32) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
    // spark-submit's JVM may linger on SIGTERM; make sure it goes.
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    });
}

fn is_final(state: &str) -> bool {
    matches!(
        state,
        "DONE" | "ERROR" | "CANCELLED" | "SUCCEEDED" | "FAILED"
    )
}

fn set_state(run: &mut Run, state: &str, details: Option<String>) {
    if !run.state.is_empty() {
        let mut previous = json!({"state": run.state, "stateStartTime": run.state_time});
        if run.kind == Kind::Batch {
            previous = json!({"state": run.state, "stateStartTime": run.state_time});
        }
        run.history.push(previous);
    }
    run.state = state.to_owned();
    run.state_time = now();
    run.details = details;
}

fn run_json(run: &Run) -> Value {
    let mut r = run.resource.clone();
    match run.kind {
        Kind::Job => {
            let mut status = json!({"state": run.state, "stateStartTime": run.state_time});
            if let Some(details) = &run.details {
                status["details"] = json!(details);
            }
            r["status"] = status;
            if !run.history.is_empty() {
                r["statusHistory"] = json!(run.history);
            }
            r["done"] = json!(is_final(&run.state));
        }
        Kind::Batch => {
            r["state"] = json!(run.state);
            r["stateTime"] = json!(run.state_time);
            if let Some(details) = &run.details {
                r["stateMessage"] = json!(details);
            }
            if !run.history.is_empty() {
                r["stateHistory"] = json!(run.history);
            }
        }
    }
    r
}

fn operation_json(op: &Operation) -> Value {
    let mut v = json!({"name": op.name, "metadata": op.metadata, "done": op.result.is_some()});
    match &op.result {
        Some(Ok(response)) => v["response"] = response.clone(),
        Some(Err(status)) => v["error"] = status.clone(),
        None => {}
    }
    v
}

/// `gs://` locations mirrored into a local dir for one job.
struct Mirror {
    gcs: Gcs,
    root: PathBuf,
    /// Each fetched object's local path, bucket, name, size and mtime.
    objects: Mutex<BTreeMap<PathBuf, (String, String, u64, SystemTime)>>,
}

impl Mirror {
    fn new(gcs: Gcs, root: PathBuf) -> Mirror {
        Mirror {
            gcs,
            root,
            objects: Mutex::new(BTreeMap::new()),
        }
    }

    /// Downloads the object `uri` names, or every object under `uri/`, and
    /// returns the `file://` URI of the local copy.
    async fn fetch(&self, uri: &str) -> Result<String> {
        let (bucket, key) =
            split_uri(uri).with_context(|| format!("{uri} is not gs://bucket/key"))?;
        let key = key.trim_end_matches('/');
        let local = self.root.join(bucket).join(key);
        let exact = self.gcs.list(bucket, key).await?;
        for name in exact {
            if name != key && !name.starts_with(&format!("{key}/")) {
                continue;
            }
            let path = self.root.join(bucket).join(&name);
            if name.ends_with('/') {
                continue;
            }
            self.gcs.download(bucket, &name, &path).await?;
            let meta = std::fs::metadata(&path)?;
            self.objects.lock().unwrap().insert(
                path,
                (bucket.to_owned(), name, meta.len(), meta.modified()?),
            );
        }
        if let Some(parent) = local.parent() {
            std::fs::create_dir_all(parent)?;
        }
        Ok(format!("file://{}", local.display()))
    }

    /// Uploads what the job wrote or changed and deletes what it removed.
    async fn sync_back(&self) -> Result<()> {
        let mut files = Vec::new();
        walk(&self.root, &mut files)?;
        let objects = self.objects.lock().unwrap().clone();
        let mut seen = BTreeSet::new();
        for path in files {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            // Hadoop's local file system leaves checksum files and a
            // temporary dir; the GCS connector writes neither.
            if (name.starts_with('.') && name.ends_with(".crc"))
                || path.components().any(|c| c.as_os_str() == "_temporary")
            {
                continue;
            }
            seen.insert(path.clone());
            let meta = std::fs::metadata(&path)?;
            let modified = meta.modified()?;
            let unchanged = objects
                .get(&path)
                .is_some_and(|(_, _, len, mtime)| *len == meta.len() && modified == *mtime);
            if unchanged {
                continue;
            }
            let rel = path.strip_prefix(&self.root)?;
            let mut parts = rel.iter();
            let bucket = parts
                .next()
                .and_then(|b| b.to_str())
                .unwrap_or_default()
                .to_owned();
            let key: PathBuf = parts.collect();
            self.gcs
                .upload_file(&bucket, &key.to_string_lossy(), &path)
                .await?;
        }
        for (path, (bucket, key, _, _)) in &objects {
            if !seen.contains(path) {
                self.gcs.delete(bucket, key).await?;
            }
        }
        Ok(())
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// The driver's output, uploaded in numbered chunks as it comes.
struct DriverOutput {
    gcs: Gcs,
    bucket: String,
    prefix: String,
}

impl DriverOutput {
    fn new(gcs: Gcs, bucket: &str, prefix: &str) -> DriverOutput {
        DriverOutput {
            gcs,
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        }
    }

    /// Copies both streams into chunk objects, flushing about every
    /// second; returns the last lines, for the failure details.
    async fn pump(
        &self,
        stdout: impl AsyncRead + Unpin + Send + 'static,
        stderr: impl AsyncRead + Unpin + Send + 'static,
    ) -> Result<String> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        for stream in [
            Box::new(stdout) as Box<dyn AsyncRead + Unpin + Send>,
            Box::new(stderr),
        ] {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut pending = String::new();
        let mut tail: std::collections::VecDeque<String> = Default::default();
        let mut chunk = 0u32;
        let mut last_flush = Instant::now();
        loop {
            let line = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await;
            let closed = matches!(line, Ok(None));
            if let Ok(Some(line)) = line {
                if tail.len() == 5 {
                    tail.pop_front();
                }
                tail.push_back(line.clone());
                pending.push_str(&line);
                pending.push('\n');
            }
            if !pending.is_empty() && (closed || last_flush.elapsed() > Duration::from_secs(1)) {
                let key = format!("{}.{chunk:09}", self.prefix);
                self.gcs
                    .write(
                        &self.bucket,
                        &key,
                        std::mem::take(&mut pending).into_bytes(),
                    )
                    .await?;
                chunk += 1;
                last_flush = Instant::now();
            }
            if closed {
                break;
            }
        }
        Ok(tail.into_iter().collect::<Vec<_>>().join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(idle: &str, auto: &str, workers: i64, image: &str) -> Value {
        json!({
            "lifecycleConfig": {"idleDeleteTtl": idle, "autoDeleteTtl": auto},
            "workerConfig": {"numInstances": workers},
            "softwareConfig": {"imageVersion": image},
        })
    }

    #[test]
    fn clusters_outside_dataprocs_documented_limits_are_refused() {
        assert_eq!(
            check_cluster_config(&config("1800s", "14400s", 2, "3.0-debian12")),
            Ok(())
        );
        assert_eq!(
            check_cluster_config(&config("300s", "600s", 2, "3.0")),
            Ok(())
        );
        for (bad, what) in [
            (config("299s", "14400s", 2, "3.0"), "idleDeleteTtl"),
            (config("1800s", "599s", 2, "3.0"), "autoDeleteTtl"),
            (config("1800s", "1209601s", 2, "3.0"), "autoDeleteTtl"),
            (config("1800s", "14400s", 1, "3.0"), "numInstances"),
            (config("1800s", "14400s", 0, "3.0"), "numInstances"),
            (
                config("1800s", "14400s", 2, "3.0.2-debian12"),
                "imageVersion",
            ),
            (config("1800s", "14400s", 2, "3.1"), "imageVersion"),
        ] {
            let refusal = check_cluster_config(&bad).unwrap_err();
            assert!(refusal.contains(what), "{refusal}");
        }
        let mut single = config("1800s", "14400s", 0, "3.0");
        single["softwareConfig"]["properties"] =
            json!({"dataproc:dataproc.allow.zero.workers": "true"});
        assert_eq!(check_cluster_config(&single), Ok(()));
    }
}
