//! What the two private servers the local target runs (PostgreSQL and the
//! Spark Connect server) share: how a port is chosen on 127.0.0.1, and how
//! a secret file is written. Written once, so both behave alike.

use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// The port to listen on: `configured` if set (an error naming `setting`
/// if it is taken), else the `previous` one if still free, else any free
/// port.
pub fn pick_port(configured: u16, previous: Option<u16>, setting: &str) -> Result<u16> {
    if configured != 0 {
        if !port_is_free(configured) {
            bail!(
                "port {configured} on 127.0.0.1 is in use by another program\nhint: stop it, or set {setting} ({}) to another port, or to 0 to pick a free one",
                crate::settings::env_var(setting)
            );
        }
        return Ok(configured);
    }
    if let Some(previous) = previous
        && port_is_free(previous)
    {
        return Ok(previous);
    }
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Writes `text` to a new file at `path` readable by its owner only (0600),
/// replacing any file there: secrets never sit in a world-readable file,
/// not even for a moment.
pub fn write_private(path: &Path, text: &str) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_taken_configured_port_is_an_error_naming_the_setting() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let err = pick_port(port, None, "database.port").unwrap_err();
        assert!(err.to_string().contains("INFRA_DATABASE_PORT"), "{err}");
        // The previous port is skipped when taken; a free one is found instead.
        let picked = pick_port(0, Some(port), "database.port").unwrap();
        assert_ne!(picked, port);
    }

    #[test]
    fn private_files_are_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_private(&path, "a").unwrap();
        write_private(&path, "b").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "b");
    }
}
