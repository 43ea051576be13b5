//! Test-only pause points, so a test can stop a run at an exact moment.
//!
//! Some moments a signal must be tested in are microseconds wide: the gap
//! between two steps, or the instant inside step 4's transaction after the
//! rows are in and before the commit. No timing makes a test land there
//! every time, so `infra` pauses at a named point when the directory in
//! `INFRA_TEST_HOLD_DIR` holds a file of that name. It writes
//! `<name>.reached` beside it and waits until the file is removed (or, for
//! work that can be stopped, until it is stopped). Without the variable,
//! as in every real use, a point costs one environment lookup.
//!
//! A pause does not listen for signals: a signal that comes during one is
//! kept until the run's next check, exactly as in the real gap.
//!
//! | point            | where |
//! | ---------------- | ----- |
//! | `after-N`        | step N succeeded and is recorded, step N+1 not started (`pipeline::execute`) |
//! | `warehouse-load` | the local warehouse's rows are inserted and counted, not committed (`backend::local::duckdb`) |

use std::path::PathBuf;
use std::time::Duration;

/// The variable that names the directory of pause files.
pub const ENV: &str = "INFRA_TEST_HOLD_DIR";

const POLL: Duration = Duration::from_millis(50);

/// The pause file of `point`, if a test asked to pause there. Its
/// `.reached` marker is written before this returns.
fn requested(point: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os(ENV)?);
    let file = dir.join(point);
    if !file.exists() {
        return None;
    }
    // Best effort: a test that cannot see the marker fails on its own wait.
    let _ = std::fs::write(dir.join(format!("{point}.reached")), b"");
    Some(file)
}

/// Pauses at `point` until its file is removed.
pub async fn pause(point: &str) {
    let Some(file) = requested(point) else {
        return;
    };
    while file.exists() {
        tokio::time::sleep(POLL).await;
    }
}

/// Pauses a blocking thread at `point` until its file is removed or
/// `stopped` returns true.
pub fn pause_blocking(point: &str, stopped: impl Fn() -> bool) {
    let Some(file) = requested(point) else {
        return;
    };
    while file.exists() && !stopped() {
        std::thread::sleep(POLL);
    }
}
