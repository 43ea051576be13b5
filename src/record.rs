//! Run records: what each run did, kept in the state dir.
//!
//! Every run has an id and a JSON record under `<state>/runs/`, rewritten
//! atomically before and after every step: start and end times, row counts,
//! outcome and error. `infra status` prints the newest; `run --from` resumes
//! it, keeping its id and start time, so a retried step writes the same
//! `insert_date`. A lock file keeps two of `up`, `run` and `down` off one
//! state dir; it holds the holder's pid and verb, so the refusal can name
//! it, and `status` can tell a run whose process is gone (the kernel freed
//! its lock) from one still running.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, SubsecRound, Utc};
use nix::fcntl::{Flock, FlockArg};
use rand::Rng as _;
use serde::{Deserialize, Serialize};

use crate::backend::{Remote, RemoteKind};
use crate::plan::Step;

/// Rows into and out of a step, and rows it rejected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub rows_in: u64,
    pub rows_out: u64,
    pub rows_rejected: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Running,
    Succeeded,
    Failed,
    Interrupted,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Running => "running",
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: Step,
    pub outcome: Outcome,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub seconds: Option<f64>,
    pub counts: Option<Counts>,
    pub error: Option<String>,
    /// How many times this step has run in this run (resumes add one).
    pub attempt: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub target: String,
    /// When the run started; the metric's `insert_date`.
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: Outcome,
    pub steps: Vec<StepRecord>,
    /// Remote work the steps started, in order, saved before it is waited on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remotes: Vec<RemoteRecord>,
}

/// A cluster, job or operation a step started, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteRecord {
    pub step: Step,
    pub attempt: u32,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub remote: Remote,
}

impl RunRecord {
    pub fn new(target: &str, now: DateTime<Utc>) -> RunRecord {
        let now = now.trunc_subsecs(0);
        let suffix: u16 = rand::rng().random();
        RunRecord {
            id: format!("{}-{suffix:04x}", now.format("%Y%m%dT%H%M%SZ")),
            target: target.to_owned(),
            started_at: now,
            finished_at: None,
            outcome: Outcome::Running,
            steps: Vec::new(),
            remotes: Vec::new(),
        }
    }

    /// Records `remote` for `step`'s `attempt`; the same remote again (a
    /// cluster whose uuid is now known) updates the entry.
    pub fn record_remote(&mut self, step: Step, attempt: u32, remote: Remote, now: DateTime<Utc>) {
        match self
            .remotes
            .iter_mut()
            .find(|r| r.remote.kind == remote.kind && r.remote.id == remote.id)
        {
            Some(entry) => entry.remote = remote,
            None => self.remotes.push(RemoteRecord {
                step,
                attempt,
                at: now,
                remote,
            }),
        }
    }

    /// What a new attempt of `step` may re-attach to: the remote work of
    /// its last attempt when that did not succeed (it may still be in
    /// flight: the process was killed, or lost track of it), and work that
    /// spans steps (the run's cluster) whatever step started it. Call it
    /// before [`start_step`](Self::start_step).
    pub fn earlier_remotes(&self, step: Step) -> Vec<Remote> {
        let unfinished = self
            .step(step)
            .filter(|s| s.outcome != Outcome::Succeeded)
            .map(|s| s.attempt);
        self.remotes
            .iter()
            .filter(|r| {
                r.remote.kind.spans_steps() || (r.step == step && Some(r.attempt) == unfinished)
            })
            .map(|r| r.remote.clone())
            .collect()
    }

    /// The remote work of kind `kind`, newest last.
    pub fn remotes_of(&self, kind: RemoteKind) -> impl Iterator<Item = &RemoteRecord> {
        self.remotes.iter().filter(move |r| r.remote.kind == kind)
    }

    pub fn step(&self, step: Step) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.step == step)
    }

    /// Marks `step` as started, replacing any earlier attempt.
    pub fn start_step(&mut self, step: Step, now: DateTime<Utc>) {
        let attempt = self.step(step).map_or(1, |s| s.attempt + 1);
        self.steps.retain(|s| s.step != step);
        self.steps.push(StepRecord {
            step,
            outcome: Outcome::Running,
            started_at: now,
            finished_at: None,
            seconds: None,
            counts: None,
            error: None,
            attempt,
        });
        self.steps.sort_by_key(|s| s.step);
        self.outcome = Outcome::Running;
        self.finished_at = None;
    }

    /// Records how `step` ended.
    pub fn finish_step(
        &mut self,
        step: Step,
        result: Result<Counts, (Outcome, String)>,
        now: DateTime<Utc>,
    ) {
        let record = self
            .steps
            .iter_mut()
            .find(|s| s.step == step)
            .expect("a step is started before it finishes");
        record.finished_at = Some(now);
        record.seconds = Some((now - record.started_at).as_seconds_f64());
        match result {
            Ok(counts) => {
                record.outcome = Outcome::Succeeded;
                record.counts = Some(counts);
            }
            Err((outcome, error)) => {
                record.outcome = outcome;
                record.error = Some(error);
            }
        }
    }

    /// The run as it stands when no process runs it any more: a run or
    /// step still marked running was cut off (SIGKILL, a crash, a reboot)
    /// and reads as interrupted.
    pub fn as_abandoned(mut self) -> RunRecord {
        if self.outcome == Outcome::Running {
            self.outcome = Outcome::Interrupted;
        }
        for step in &mut self.steps {
            if step.outcome == Outcome::Running {
                step.outcome = Outcome::Interrupted;
                step.error.get_or_insert_with(|| {
                    "its process is gone (killed, or the machine restarted)".to_owned()
                });
            }
        }
        self
    }

    /// Closes the run: it succeeded if every step did.
    pub fn finish(&mut self, now: DateTime<Utc>) {
        self.finished_at = Some(now);
        self.outcome = self
            .steps
            .iter()
            .map(|s| s.outcome)
            .find(|o| *o != Outcome::Succeeded)
            .unwrap_or(Outcome::Succeeded);
    }
}

/// The run records of one state dir.
pub struct Records {
    dir: PathBuf,
}

impl Records {
    pub fn new(state_dir: &Path) -> Records {
        Records {
            dir: state_dir.join("runs"),
        }
    }

    /// Whether any run has been recorded (or locked) here.
    pub fn exist(&self) -> bool {
        self.dir.is_dir()
    }

    /// Takes the state dir's run lock for `infra {verb}`, or refuses naming
    /// the process that holds it. It is released when the guard drops (the
    /// kernel releases it if the process dies).
    pub fn lock(&self, verb: &str) -> Result<Flock<File>> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let path = self.dir.join("run.lock");
        // Not truncated on open: the holder's pid must survive a refused try.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        // `status` holds a shared lock for an instant to see whether a run
        // is alive: a few quick tries get past it.
        let mut file = file;
        let mut tries = 0;
        let locked = loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Err((f, nix::errno::Errno::EWOULDBLOCK)) if tries < 5 => {
                    file = f;
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other,
            }
        };
        match locked {
            Ok(guard) => {
                let mut file: &File = &guard;
                file.set_len(0)?;
                writeln!(file, "{} {verb}", std::process::id())
                    .with_context(|| format!("cannot write {}", path.display()))?;
                Ok(guard)
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                let (pid, what) = holder.trim().split_once(' ').unwrap_or(("?", "run"));
                bail!(
                    "`infra {what}` (pid {pid}) is using {}\nhint: wait for it to finish, or stop it with `kill {pid}`",
                    self.dir.parent().unwrap_or(&self.dir).display()
                )
            }
            Err((_, e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
    }

    /// The process holding the lock, as `(pid, verb)`, or `None` when no
    /// process does. It looks by taking a shared lock for an instant.
    pub fn holder(&self) -> Result<Option<(String, String)>> {
        let path = self.dir.join("run.lock");
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
        };
        match Flock::lock(file, FlockArg::LockSharedNonblock) {
            Ok(_free) => Ok(None),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let (pid, verb) = text.trim().split_once(' ').unwrap_or(("?", "run"));
                Ok(Some((pid.to_owned(), verb.to_owned())))
            }
            Err((_, e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
    }

    /// The newest run as it stands: one that is marked running but that no
    /// `infra run` holds the lock for any more is shown
    /// [abandoned](RunRecord::as_abandoned), as interrupted.
    pub fn latest_as_seen(&self) -> Result<Option<RunRecord>> {
        let Some(run) = self.latest()? else {
            return Ok(None);
        };
        if run.outcome != Outcome::Running {
            return Ok(Some(run));
        }
        let alive = matches!(self.holder()?, Some((_, verb)) if verb == "run");
        Ok(Some(if alive { run } else { run.as_abandoned() }))
    }

    /// Where a step's whole output is kept when the error shows only its
    /// cause: `runs/<id>/<step>.log`.
    pub fn step_log(&self, id: &str, step: Step) -> PathBuf {
        self.dir.join(id).join(format!("{}.log", step.name()))
    }

    /// Writes `record` atomically.
    pub fn save(&self, record: &RunRecord) -> Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(format!("{}.json", record.id));
        let tmp = path.with_extension("json.tmp");
        // A full disk fails the write, not the rename: the old record stays
        // whole and no half-written one is left.
        let written = std::fs::write(&tmp, serde_json::to_vec_pretty(record)?)
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("cannot write {}", path.display()));
        }
        Ok(())
    }

    /// The run `id`, or an error that says which runs there are.
    pub fn get(&self, id: &str) -> Result<RunRecord> {
        let path = self.dir.join(format!("{id}.json"));
        if id.contains('/') || !path.is_file() {
            bail!(
                "there is no run `{id}` in {}\nhint: `infra status` shows the last run; run ids are the file names in that directory",
                self.dir.display()
            );
        }
        let text =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a run record", path.display()))
    }

    /// The newest run, if any.
    pub fn latest(&self) -> Result<Option<RunRecord>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", self.dir.display())),
        };
        // Ids start with the start second; two runs started in the same
        // second are told apart by which record was written last.
        let newest = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|ext| ext == "json"))
            .map(|p| {
                let second = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.split('-').next())
                    .unwrap_or_default()
                    .to_owned();
                let written = std::fs::metadata(&p).and_then(|m| m.modified()).ok();
                ((second, written), p)
            })
            .max()
            .map(|(_, p)| p);
        let Some(path) = newest else {
            return Ok(None);
        };
        let text =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let record = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a run record", path.display()))?;
        Ok(Some(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_the_newest_wins() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::new(dir.path());
        assert!(records.latest().unwrap().is_none());
        let t0 = "2026-11-24T21:40:00Z".parse().unwrap();
        let mut first = RunRecord::new("local", t0);
        first.start_step(Step::LoadPurchases, t0);
        first.finish_step(
            Step::LoadPurchases,
            Ok(Counts {
                rows_in: 3,
                rows_out: 2,
                rows_rejected: 1,
            }),
            t0,
        );
        first.finish(t0);
        records.save(&first).unwrap();
        let second = RunRecord::new("local", "2026-11-25T08:00:00Z".parse().unwrap());
        records.save(&second).unwrap();
        assert_eq!(records.latest().unwrap().unwrap(), second);
        assert_eq!(first.outcome, Outcome::Succeeded);
    }

    /// Regression: ids start with the second, so of two runs started in
    /// the same second the older could sort last and be resumed.
    #[test]
    fn of_two_runs_in_one_second_the_last_written_is_the_latest() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::new(dir.path());
        let t0 = "2026-11-24T21:40:00Z".parse().unwrap();
        let mut first = RunRecord::new("local", t0);
        first.id = "20261124T214000Z-ffff".into();
        let mut second = RunRecord::new("local", t0);
        second.id = "20261124T214000Z-0000".into();
        records.save(&first).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        records.save(&second).unwrap();
        assert_eq!(records.latest().unwrap().unwrap().id, second.id);
    }

    #[test]
    fn a_retried_step_replaces_the_failed_attempt() {
        let t0 = "2026-11-24T21:40:00Z".parse().unwrap();
        let mut run = RunRecord::new("local", t0);
        run.start_step(Step::UserBehavior, t0);
        run.finish_step(
            Step::UserBehavior,
            Err((Outcome::Failed, "boom".into())),
            t0,
        );
        run.finish(t0);
        assert_eq!(run.outcome, Outcome::Failed);
        run.start_step(Step::UserBehavior, t0);
        run.finish_step(Step::UserBehavior, Ok(Counts::default()), t0);
        run.finish(t0);
        assert_eq!(run.steps.len(), 1);
        assert_eq!(run.steps[0].attempt, 2);
        assert_eq!(run.outcome, Outcome::Succeeded);
    }

    fn job(id: &str) -> Remote {
        Remote {
            kind: RemoteKind::DataprocJob,
            id: id.into(),
            uuid: None,
            link: None,
        }
    }

    #[test]
    fn a_new_attempt_sees_the_remote_work_of_an_unfinished_one_only() {
        let t0 = "2026-11-24T21:40:00Z".parse().unwrap();
        let mut run = RunRecord::new("gcp", t0);
        run.start_step(Step::Tokenize, t0);
        let cluster = Remote {
            kind: RemoteKind::DataprocCluster,
            id: "c".into(),
            uuid: None,
            link: None,
        };
        run.record_remote(Step::Tokenize, 1, cluster.clone(), t0);
        run.record_remote(Step::Tokenize, 1, job("j1"), t0);
        // Its uuid, once known, updates the same entry.
        let with_uuid = Remote {
            uuid: Some("u".into()),
            ..cluster.clone()
        };
        run.record_remote(Step::Tokenize, 1, with_uuid.clone(), t0);
        assert_eq!(run.remotes.len(), 2);
        // The process died with the step running: a re-run re-attaches.
        assert_eq!(
            run.earlier_remotes(Step::Tokenize),
            [with_uuid.clone(), job("j1")]
        );
        // Another step sees the cluster only.
        assert_eq!(
            run.earlier_remotes(Step::UserBehavior),
            std::slice::from_ref(&with_uuid)
        );
        // Once the step succeeded, running it again starts afresh.
        run.finish_step(Step::Tokenize, Ok(Counts::default()), t0);
        assert_eq!(run.earlier_remotes(Step::Tokenize), [with_uuid]);
        let text = serde_json::to_string(&run).unwrap();
        let back: RunRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(back, run);
    }

    #[test]
    fn a_running_run_whose_lock_is_free_reads_as_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::new(dir.path());
        let t0 = "2026-11-24T21:40:00Z".parse().unwrap();
        let mut run = RunRecord::new("local", t0);
        run.start_step(Step::LoadPurchases, t0);
        run.finish_step(Step::LoadPurchases, Ok(Counts::default()), t0);
        run.start_step(Step::DumpPurchases, t0);
        records.save(&run).unwrap();
        // Its run holds the lock: it is running.
        let held = records.lock("run").unwrap();
        assert_eq!(records.holder().unwrap().unwrap().1, "run");
        let seen = records.latest_as_seen().unwrap().unwrap();
        assert_eq!(seen.outcome, Outcome::Running);
        // The process is gone (the kernel freed its lock): interrupted.
        drop(held);
        assert_eq!(records.holder().unwrap(), None);
        let seen = records.latest_as_seen().unwrap().unwrap();
        assert_eq!(seen.outcome, Outcome::Interrupted);
        assert_eq!(seen.steps[0].outcome, Outcome::Succeeded);
        assert_eq!(seen.steps[1].outcome, Outcome::Interrupted);
        assert!(seen.steps[1].error.as_deref().unwrap().contains("gone"));
        // `up` holding the lock does not make the run alive.
        let _up = records.lock("up").unwrap();
        let seen = records.latest_as_seen().unwrap().unwrap();
        assert_eq!(seen.outcome, Outcome::Interrupted);
    }

    #[test]
    fn a_second_lock_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::new(dir.path());
        let _held = records.lock("run").unwrap();
        let err = records.lock("down").unwrap_err();
        let pid = std::process::id();
        assert!(
            err.to_string()
                .contains(&format!("`infra run` (pid {pid})")),
            "{err}"
        );
    }
}
