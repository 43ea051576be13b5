//! Reads a rehearsal's request log back: the cluster-minutes each run
//! cost, with a model of a real cluster's start-up, next to the original
//! design's one cluster per job; and each API method called, with the
//! stand-in that checked it.
//!
//! The model: a real Dataproc cluster bills from creation to deletion and
//! takes about `startup` (90 s) to come up, where the stand-in's takes
//! `standin_startup`. So a real run's cluster lives
//! `startup + (delete − create − standin_startup)`. The original design
//! made a cluster per job: each lives `startup + its job's run time`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde_json::Value;

#[derive(Debug, Default, Clone)]
pub struct ClusterLife {
    pub name: String,
    pub created: Option<DateTime<Utc>>,
    pub running: Option<DateTime<Utc>>,
    pub deleting: Option<DateTime<Utc>>,
}

#[derive(Debug, Default)]
pub struct Summary {
    pub clusters: Vec<ClusterLife>,
    /// Job id -> seconds from RUNNING to its end state.
    pub job_seconds: BTreeMap<String, f64>,
    /// Job id -> the number of submit calls that named it.
    pub submits: BTreeMap<String, usize>,
    /// Method id -> calls.
    pub methods: BTreeMap<String, usize>,
    pub violations: Vec<String>,
}

fn time(v: &Value) -> Option<DateTime<Utc>> {
    v["time"].as_str()?.parse().ok()
}

/// Parses the JSON lines of a request log.
pub fn summarize(log: &str) -> Result<Summary> {
    let mut s = Summary::default();
    let mut started: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for (n, line) in log.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("line {} of the log is not JSON", n + 1))?;
        if let Some(violation) = v["violation"].as_str() {
            s.violations.push(violation.to_owned());
        } else if let Some(method) = v["method"].as_str() {
            *s.methods.entry(method.to_owned()).or_default() += 1;
            if method.ends_with("jobs.submit") {
                let id = v["body"]["job"]["reference"]["jobId"]
                    .as_str()
                    .unwrap_or_default();
                *s.submits.entry(id.to_owned()).or_default() += 1;
            }
        } else if v["event"] == "cluster" {
            let name = v["cluster"].as_str().unwrap_or_default().to_owned();
            let at = time(&v);
            match v["state"].as_str() {
                Some("CREATING") => {
                    // A name may be reused by a later run: a new life.
                    s.clusters.push(ClusterLife {
                        name,
                        created: at,
                        ..ClusterLife::default()
                    });
                }
                Some("RUNNING") => set(&mut s.clusters, &name, |c| c.running = at),
                Some("DELETING") => set(&mut s.clusters, &name, |c| c.deleting = at),
                _ => {}
            }
        } else if v["event"] == "job" || v["event"] == "batch" {
            let id = v["id"].as_str().unwrap_or_default().to_owned();
            match (v["state"].as_str(), time(&v)) {
                (Some("RUNNING"), Some(at)) => {
                    started.insert(id, at);
                }
                (Some("DONE" | "ERROR" | "CANCELLED" | "SUCCEEDED" | "FAILED"), Some(at)) => {
                    if let Some(start) = started.get(&id) {
                        s.job_seconds
                            .insert(id, (at - *start).num_milliseconds() as f64 / 1000.0);
                    }
                }
                _ => {}
            }
        }
    }
    Ok(s)
}

fn set(clusters: &mut [ClusterLife], name: &str, f: impl FnOnce(&mut ClusterLife)) {
    if let Some(c) = clusters.iter_mut().rev().find(|c| c.name == name) {
        f(c);
    }
}

/// The stand-in that checked each API's calls.
fn checker(method: &str) -> &'static str {
    match method.split('.').next().unwrap_or_default() {
        "dataproc" => "Dataproc stand-in, executing with spark-submit (dataproc.v1.json)",
        "bigquery" => "BigQuery stand-in, executing on DuckDB (bigquery.v2.json)",
        "sql" => "Cloud SQL Admin stand-in, executing on PostgreSQL (sqladmin.v1.json)",
        "serviceusage" => "Service Usage stand-in (serviceusage.v1.json)",
        "compute" => "Compute Engine stand-in (compute.v1.json)",
        _ => "unknown",
    }
}

/// The report `scripts/rehearse` prints.
pub fn render(s: &Summary, startup: f64, standin_startup: f64, nodes: u32) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cluster-minutes (model: a real cluster takes {startup:.0} s to start; {nodes} nodes each):"
    );
    let original: f64 = s.job_seconds.values().map(|d| startup + d).sum();
    let mut ours = 0.0;
    for c in &s.clusters {
        let (Some(created), Some(deleting)) = (c.created, c.deleting) else {
            let _ = writeln!(out, "  cluster {}: created, never deleted", c.name);
            continue;
        };
        let lived = (deleting - created).num_milliseconds() as f64 / 1000.0;
        let real = startup + (lived - standin_startup).max(0.0);
        ours += real;
        let _ = writeln!(
            out,
            "  cluster {}: lived {lived:.1} s here; on Dataproc about {:.2} cluster-minutes ({:.2} VM-minutes)",
            c.name,
            real / 60.0,
            real / 60.0 * nodes as f64
        );
    }
    let _ = writeln!(
        out,
        "  this design: {} cluster(s), {:.2} cluster-minutes; the original's one cluster per job: {} clusters, {:.2} cluster-minutes",
        s.clusters.len(),
        ours / 60.0,
        s.job_seconds.len(),
        original / 60.0
    );
    for (job, secs) in &s.job_seconds {
        let _ = writeln!(out, "    job {job}: ran {secs:.1} s");
    }
    let _ = writeln!(
        out,
        "API methods called (each request checked against Google's discovery document):"
    );
    for (method, calls) in &s.methods {
        let _ = writeln!(out, "  {method:<55} {calls:>4}  {}", checker(method));
    }
    let _ = writeln!(
        out,
        "  storage.* (Cloud Storage JSON API)                          the real fake-gcs-server"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_with_one_cluster_and_two_jobs() {
        let log = r#"{"event":"cluster","cluster":"infra-r1","state":"CREATING","time":"2026-01-01T00:00:00Z"}
{"time":"2026-01-01T00:00:01Z","method":"dataproc.projects.regions.jobs.submit","path":"/x","query":[],"body":{"job":{"reference":{"jobId":"r1-tokenizer"}}}}
{"event":"job","id":"r1-tokenizer","state":"RUNNING","time":"2026-01-01T00:00:02Z"}
{"event":"job","id":"r1-tokenizer","state":"DONE","time":"2026-01-01T00:00:12Z"}
{"event":"job","id":"r1-user","state":"RUNNING","time":"2026-01-01T00:00:13Z"}
{"event":"job","id":"r1-user","state":"DONE","time":"2026-01-01T00:00:23Z"}
{"event":"cluster","cluster":"infra-r1","state":"DELETING","time":"2026-01-01T00:00:25Z"}
{"violation":"x: unknown field"}"#;
        let s = summarize(log).unwrap();
        assert_eq!(s.clusters.len(), 1);
        assert_eq!(s.job_seconds["r1-tokenizer"], 10.0);
        assert_eq!(s.submits["r1-tokenizer"], 1);
        assert_eq!(s.violations, ["x: unknown field"]);
        let text = render(&s, 90.0, 1.0, 3);
        // Ours: 90 + (25 - 1) = 114 s; the original: (90 + 10) * 2 = 200 s.
        assert!(
            text.contains("1 cluster(s), 1.90 cluster-minutes"),
            "{text}"
        );
        assert!(text.contains("2 clusters, 3.33 cluster-minutes"), "{text}");
    }
}
