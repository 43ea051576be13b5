//! Issue 13's supply-chain check: `scripts/deny` runs cargo deny against
//! the RustSec database vendored in `vendor/advisory-db`, with no network.
//! `scripts/test` runs it on infra's own lock file; this test shows that
//! the same script and `deny.toml` fail on a lock file holding a version
//! with a known advisory (`tests/fixtures/deny-advisory`: shlex 1.2.0).

use std::path::Path;
use std::process::Command;

#[test]
fn cargo_deny_fails_on_a_crate_with_a_known_advisory() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(repo.join("scripts/deny"))
        .args(["--manifest-path", "tests/fixtures/deny-advisory/Cargo.toml"])
        .current_dir(repo)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The one-line summary goes to stdout.
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stderr.contains("no such command"),
        "cargo-deny is not installed: `SETUP_DEV=1 source scripts/setup.sh` installs it\n{stderr}"
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ID: RUSTSEC-2024-0006") && stderr.contains("shlex 1.2.0"),
        "{stderr}"
    );
    // The database was read from the snapshot, and nothing else failed.
    assert_eq!(
        summary.trim(),
        "advisories FAILED, bans ok, licenses ok",
        "{stderr}"
    );
}
