//! Stopping on a signal: SIGINT (Ctrl-C), SIGTERM (`kill`, a service
//! manager) and SIGHUP (a closed terminal) are handled alike.
//!
//! [`Signals::arm`] installs the handlers for the rest of the process, so a
//! signal that arrives between two steps waits for the next check instead
//! of being lost or killing `infra` mid-write. While they are armed,
//! `process::Cmd` starts each child in a process group of its own: the
//! terminal's signal no longer reaches the child directly, and `infra`
//! stops the whole group (the JVM and its Python workers with it) by
//! dropping the future that runs it. The exit code is 128 + the signal's
//! number, as a shell reports a process the signal killed.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use tokio::signal::unix::{SignalKind, signal};

/// A signal `infra` stops on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
    Hangup,
}

impl Signal {
    pub fn number(self) -> i32 {
        match self {
            Signal::Interrupt => nix::libc::SIGINT,
            Signal::Terminate => nix::libc::SIGTERM,
            Signal::Hangup => nix::libc::SIGHUP,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
            Signal::Hangup => "SIGHUP",
        }
    }

    /// 130, 143 or 129.
    pub fn exit_code(self) -> u8 {
        128 + self.number() as u8
    }
}

/// The work was stopped by a signal.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("interrupted by {}", .0.name())]
pub struct Interrupted(pub Signal);

static ARMED: AtomicBool = AtomicBool::new(false);

/// Whether `infra` handles the stop signals itself (see the module doc).
pub fn armed() -> bool {
    ARMED.load(Ordering::Relaxed)
}

/// The three stop signals, listened for from [`Signals::arm`] on.
pub struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers. A signal received from now on is kept until
    /// [`Signals::recv`] or [`Signals::guard`] sees it.
    pub fn arm() -> Result<Signals> {
        let listen = |kind: SignalKind| signal(kind).context("cannot install a signal handler");
        let signals = Signals {
            interrupt: listen(SignalKind::interrupt())?,
            terminate: listen(SignalKind::terminate())?,
            hangup: listen(SignalKind::hangup())?,
        };
        ARMED.store(true, Ordering::Relaxed);
        Ok(signals)
    }

    /// The next stop signal.
    pub async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.interrupt.recv() => Signal::Interrupt,
            _ = self.terminate.recv() => Signal::Terminate,
            _ = self.hangup.recv() => Signal::Hangup,
        }
    }

    /// Runs `work` unless a signal comes first (or came already), in which
    /// case `work` is dropped, stopping its children, and the result is
    /// [`Interrupted`].
    pub async fn guard<T>(&mut self, work: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::select! {
            biased;
            signal = self.recv() => Err(Interrupted(signal).into()),
            result = work => result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_signal_that_came_before_the_work_stops_it() {
        let mut signals = Signals::arm().unwrap();
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGHUP).unwrap();
        let err = signals
            .guard(std::future::pending::<Result<()>>())
            .await
            .unwrap_err();
        let interrupted = err.downcast_ref::<Interrupted>().unwrap();
        assert_eq!(interrupted.0, Signal::Hangup);
        assert_eq!(interrupted.0.exit_code(), 129);
        assert!(armed());
    }

    #[test]
    fn exit_codes_are_128_plus_the_signal() {
        assert_eq!(Signal::Interrupt.exit_code(), 130);
        assert_eq!(Signal::Terminate.exit_code(), 143);
        assert_eq!(Signal::Hangup.exit_code(), 129);
    }
}
