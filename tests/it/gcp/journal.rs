//! A journal for tests: keeps what the clients announce, with when, so a
//! test can check that an id was recorded before it was polled.

use std::sync::Mutex;
use std::time::Instant;

use infra::backend::{Journal, Remote, RemoteKind};

pub struct MemJournal {
    pub run_id: String,
    pub attempt: u32,
    pub earlier: Vec<Remote>,
    pub started: Mutex<Vec<(Instant, Remote)>>,
}

impl MemJournal {
    pub fn new(run_id: &str) -> MemJournal {
        MemJournal {
            run_id: run_id.to_owned(),
            attempt: 1,
            earlier: Vec::new(),
            started: Mutex::new(Vec::new()),
        }
    }

    /// A later attempt of the same step, which sees what this one started.
    pub fn next_attempt(&self) -> MemJournal {
        let mut earlier: Vec<Remote> = Vec::new();
        for (_, remote) in self.started.lock().unwrap().iter() {
            earlier.retain(|r| !(r.kind == remote.kind && r.id == remote.id));
            earlier.push(remote.clone());
        }
        MemJournal {
            run_id: self.run_id.clone(),
            attempt: self.attempt + 1,
            earlier,
            started: Mutex::new(Vec::new()),
        }
    }

    /// The first time a remote of `kind` was recorded, and its last value.
    pub fn first(&self, kind: RemoteKind) -> Option<(Instant, Remote)> {
        let started = self.started.lock().unwrap();
        let at = started.iter().find(|(_, r)| r.kind == kind)?.0;
        let last = started
            .iter()
            .rev()
            .find(|(_, r)| r.kind == kind)?
            .1
            .clone();
        Some((at, last))
    }

    pub fn all(&self, kind: RemoteKind) -> Vec<Remote> {
        self.started
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, r)| r.kind == kind)
            .map(|(_, r)| r.clone())
            .collect()
    }
}

impl Journal for MemJournal {
    fn run_id(&self) -> &str {
        &self.run_id
    }

    fn attempt(&self) -> u32 {
        self.attempt
    }

    fn started(&self, remote: Remote) -> anyhow::Result<()> {
        self.started.lock().unwrap().push((Instant::now(), remote));
        Ok(())
    }

    fn earlier(&self, kind: RemoteKind) -> Vec<Remote> {
        self.earlier
            .iter()
            .filter(|r| r.kind == kind)
            .cloned()
            .collect()
    }
}
