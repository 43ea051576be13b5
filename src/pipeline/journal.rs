//! The [`Journal`] a step's remote work is recorded in: the run record,
//! saved to disk before anything waits on that work, so a re-run after a
//! crash finds the cluster, job or operation it should re-attach to.

use std::sync::Mutex;

use anyhow::Result;
use chrono::Utc;

use crate::backend::{Journal, Remote, RemoteKind};
use crate::plan::Step;
use crate::record::{Records, RunRecord};

pub struct StepJournal<'a> {
    run: Mutex<&'a mut RunRecord>,
    records: &'a Records,
    run_id: String,
    step: Step,
    attempt: u32,
    /// What an earlier, unfinished attempt started (and what spans steps).
    earlier: Vec<Remote>,
}

impl<'a> StepJournal<'a> {
    /// The journal of `step`'s current attempt; `earlier` is what
    /// [`RunRecord::earlier_remotes`] found before the attempt started.
    pub fn new(
        run: &'a mut RunRecord,
        records: &'a Records,
        step: Step,
        earlier: Vec<Remote>,
    ) -> StepJournal<'a> {
        let attempt = run.step(step).map_or(1, |s| s.attempt);
        StepJournal {
            run_id: run.id.clone(),
            run: Mutex::new(run),
            records,
            step,
            attempt,
            earlier,
        }
    }
}

impl Journal for StepJournal<'_> {
    fn run_id(&self) -> &str {
        &self.run_id
    }

    fn attempt(&self) -> u32 {
        self.attempt
    }

    fn started(&self, remote: Remote) -> Result<()> {
        let mut run = self.run.lock().unwrap_or_else(|e| e.into_inner());
        run.record_remote(self.step, self.attempt, remote, Utc::now());
        self.records.save(&run)
    }

    fn earlier(&self, kind: RemoteKind) -> Vec<Remote> {
        self.earlier
            .iter()
            .filter(|r| r.kind == kind)
            .cloned()
            .collect()
    }
}
