//! Cloud Storage through its JSON API, behind the same [`Bucket`] trait the
//! local target implements with plain files.
//!
//! Small objects go up in one media upload; larger ones in a resumable
//! upload, chunk by chunk, so memory stays at one chunk whatever the size.
//! A chunk is never blindly re-sent: after a failure the client asks the
//! server how much it committed and goes on from there. Every upload's
//! CRC32C is checked against the object the server reports. Downloads
//! stream (`alt=media`, with ranges); listing follows every page.
//!
//! The base URL is configuration: `STORAGE_EMULATOR_HOST` points the client
//! at an emulator (fake-gcs-server in the tests), which gets no token.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::StreamExt as _;
use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use tokio::io::AsyncReadExt as _;

use super::auth::{NoToken, TokenSource};
use super::http::{ApiError, Call, Http, Idempotency, RetryPolicy, encode_segment};
use crate::backend::{Body, Bucket, ObjectMeta, Source};

/// The real service.
pub const STORAGE_URL: &str = "https://storage.googleapis.com";

/// Resumable chunks must be multiples of this, except the last.
pub const CHUNK_GRANULARITY: usize = 256 * 1024;

/// How many times an upload asks for the committed offset and goes on
/// after a failed chunk, before it gives up.
const CHUNK_RESUMES: usize = 5;

/// The slowest upload rate a body is given time for: 256 KiB/s.
const MIN_UPLOAD_BYTES_PER_SEC: u64 = 256 * 1024;

/// How long one attempt that sends `bytes` may take: the policy's limit
/// for the response, plus the time the body needs at the slowest rate we
/// allow. A fixed limit would fail a 16 MiB chunk on any link under
/// ~280 KiB/s, whatever the server did.
pub fn upload_timeout(policy: &RetryPolicy, bytes: usize) -> std::time::Duration {
    policy.attempt_timeout
        + std::time::Duration::from_secs((bytes as u64).div_ceil(MIN_UPLOAD_BYTES_PER_SEC))
}

/// Where Cloud Storage is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageEndpoint {
    pub base_url: String,
    /// An emulator: no token is sent.
    pub emulator: bool,
}

impl StorageEndpoint {
    pub fn google() -> StorageEndpoint {
        StorageEndpoint {
            base_url: STORAGE_URL.to_owned(),
            emulator: false,
        }
    }

    /// An emulator at `host` (`127.0.0.1:4443` or `http://127.0.0.1:4443`).
    pub fn emulator(host: &str) -> StorageEndpoint {
        let base_url = if host.contains("://") {
            host.trim_end_matches('/').to_owned()
        } else {
            format!("http://{}", host.trim_end_matches('/'))
        };
        StorageEndpoint {
            base_url,
            emulator: true,
        }
    }

    /// `STORAGE_EMULATOR_HOST` when set (the convention Google's client
    /// libraries follow), else the real service.
    pub fn from_env_value(emulator_host: Option<&str>) -> StorageEndpoint {
        match emulator_host.filter(|h| !h.is_empty()) {
            Some(host) => StorageEndpoint::emulator(host),
            None => StorageEndpoint::google(),
        }
    }
}

/// Sizes that decide how objects travel.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// Objects up to this size go in one request.
    pub simple_limit: usize,
    /// Resumable chunk size, a multiple of 256 KiB.
    pub chunk_size: usize,
    /// `maxResults` per listing page (`None`: the server's default, 1000).
    pub page_size: Option<u32>,
}

impl Default for Transfer {
    fn default() -> Transfer {
        Transfer {
            simple_limit: 8 << 20,
            chunk_size: 16 << 20,
            page_size: None,
        }
    }
}

/// A Cloud Storage client for any bucket.
#[derive(Clone)]
pub struct GcsClient {
    http: Http,
    base: String,
    transfer: Transfer,
}

/// An object as the JSON API describes it (the fields we read).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectResource {
    pub name: String,
    /// A decimal string: the API's uint64 encoding.
    pub size: String,
    pub crc32c: Option<String>,
    pub md5_hash: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectList {
    #[serde(default)]
    items: Vec<ObjectResource>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct BucketResource {
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Object versioning for a new bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versioning {
    Off,
    /// On, and a lifecycle rule deletes a noncurrent version once this many
    /// newer versions exist, so history is kept but bounded.
    Keep(u32),
}

/// The `buckets.insert` body.
fn bucket_body(
    name: &str,
    location: &str,
    versioning: Versioning,
    labels: &BTreeMap<String, String>,
) -> serde_json::Value {
    let mut body = serde_json::json!({
        "name": name,
        "location": location,
        "versioning": { "enabled": versioning != Versioning::Off },
        "labels": labels,
        "iamConfiguration": {
            "uniformBucketLevelAccess": { "enabled": true },
            "publicAccessPrevention": "enforced",
        },
    });
    if let Versioning::Keep(newer) = versioning {
        body["lifecycle"] = serde_json::json!({
            "rule": [{
                "action": { "type": "Delete" },
                "condition": { "isLive": false, "numNewerVersions": newer },
            }],
        });
    }
    body
}

/// What `create_bucket` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketCreated {
    Created,
    /// It was there already, with our labels.
    AlreadyOurs,
}

/// How far a resumable upload got.
#[derive(Debug)]
pub enum Progress {
    /// The server holds this many bytes.
    Committed(u64),
    /// The object is complete.
    Done(ObjectResource),
}

impl GcsClient {
    pub fn new(
        endpoint: &StorageEndpoint,
        tokens: Arc<dyn TokenSource>,
        policy: RetryPolicy,
        transfer: Transfer,
    ) -> Result<GcsClient> {
        assert!(
            transfer.chunk_size > 0 && transfer.chunk_size.is_multiple_of(CHUNK_GRANULARITY),
            "the chunk size must be a multiple of 256 KiB"
        );
        let tokens: Arc<dyn TokenSource> = if endpoint.emulator {
            Arc::new(NoToken)
        } else {
            tokens
        };
        Ok(GcsClient {
            http: Http::new(tokens, policy)?,
            base: endpoint.base_url.trim_end_matches('/').to_owned(),
            transfer,
        })
    }

    fn object_url(&self, bucket: &str, key: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.base,
            encode_segment(bucket),
            encode_segment(key)
        )
    }

    fn upload_url(&self, bucket: &str) -> String {
        format!(
            "{}/upload/storage/v1/b/{}/o",
            self.base,
            encode_segment(bucket)
        )
    }

    /// Creates a bucket with uniform access, public access prevention,
    /// `versioning` and `labels`. On a 409 the existing bucket is adopted
    /// only if it carries every one of `labels` (so it is this deployment's)
    /// and is listed in `project`; anything else is an error that says which.
    pub async fn create_bucket(
        &self,
        project: &str,
        name: &str,
        location: &str,
        versioning: Versioning,
        labels: &BTreeMap<String, String>,
    ) -> Result<BucketCreated> {
        let body = bucket_body(name, location, versioning, labels);
        // Creating twice cannot create two buckets: a retry at worst meets our own 409.
        let call = Call::new(
            Method::POST,
            format!("{}/storage/v1/b", self.base),
            Idempotency::Idempotent,
        )
        .query("project", project)
        .json(&body);
        match self.http.send(&call).await {
            Ok(_) => Ok(BucketCreated::Created),
            Err(e) if e.is_conflict() => {
                let existing: BucketResource = self
                    .http
                    .json(&Call::get(format!("{}/storage/v1/b/{}", self.base, encode_segment(name))))
                    .await
                    .with_context(|| format!("bucket gs://{name} exists, and it is not readable by us\nhint: bucket names are global; choose another"))?;
                let missing: Vec<String> = labels
                    .iter()
                    .filter(|(k, v)| existing.labels.get(*k) != Some(v))
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                if !missing.is_empty() {
                    bail!(
                        "bucket gs://{name} already exists and is not this deployment's: it lacks the labels {} (its labels: {:?})\nhint: choose another name, or label the bucket if it really is this deployment's",
                        missing.join(","),
                        existing.labels
                    );
                }
                if !self.project_has_bucket(project, name).await? {
                    bail!(
                        "bucket gs://{name} carries this deployment's labels but is not in project {project}\nhint: bucket names are global; choose another name for this project"
                    );
                }
                Ok(BucketCreated::AlreadyOurs)
            }
            Err(e) => Err(e)
                .with_context(|| format!("cannot create bucket gs://{name} in project {project}")),
        }
    }

    /// Whether `buckets.list` for `project` includes `name`.
    async fn project_has_bucket(&self, project: &str, name: &str) -> Result<bool> {
        #[derive(Deserialize)]
        struct Listing {
            #[serde(default)]
            items: Vec<BucketName>,
        }
        #[derive(Deserialize)]
        struct BucketName {
            name: String,
        }
        let call = Call::get(format!("{}/storage/v1/b", self.base))
            .query("project", project)
            .query("prefix", name);
        let listing: Listing = self
            .http
            .json(&call)
            .await
            .with_context(|| format!("cannot list the buckets of project {project}"))?;
        Ok(listing.items.iter().any(|b| b.name == name))
    }

    /// Whether bucket `name` exists (and is readable).
    pub async fn bucket_exists(&self, name: &str) -> Result<bool> {
        let call = Call::get(format!(
            "{}/storage/v1/b/{}",
            self.base,
            encode_segment(name)
        ));
        match self.http.send(&call).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e).with_context(|| format!("cannot read bucket gs://{name}")),
        }
    }

    /// Streams `key`, or bytes `range` of it.
    pub async fn get(&self, bucket: &str, key: &str, range: Option<Range<u64>>) -> Result<Body> {
        let mut call = Call::get(self.object_url(bucket, key)).query("alt", "media");
        if let Some(range) = &range {
            if range.is_empty() {
                return Ok(Box::new(tokio::io::empty()));
            }
            call = call.header(RANGE, &format!("bytes={}-{}", range.start, range.end - 1));
        }
        let response = self.http.send(&call).await.map_err(|e| match e {
            e if e.is_not_found() => anyhow::anyhow!("gs://{bucket}/{key} does not exist"),
            e => anyhow::Error::new(e).context(format!("cannot read gs://{bucket}/{key}")),
        })?;
        let stream = idle_limited(response.bytes_stream(), self.http.policy().attempt_timeout);
        Ok(Box::new(tokio_util::io::StreamReader::new(Box::pin(
            stream,
        ))))
    }

    /// Every object under `prefix`, sorted by key, through every page.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let mut out = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut call = Call::get(format!(
                "{}/storage/v1/b/{}/o",
                self.base,
                encode_segment(bucket)
            ))
            .query("prefix", prefix)
            .query("fields", "items(name,size),nextPageToken");
            if let Some(size) = self.transfer.page_size {
                call = call.query("maxResults", size);
            }
            if let Some(token) = &page_token {
                call = call.query("pageToken", token);
            }
            let page: ObjectList = self
                .http
                .json(&call)
                .await
                .with_context(|| format!("cannot list gs://{bucket}/{prefix}"))?;
            for item in page.items {
                let size = item.size.parse().with_context(|| {
                    format!("gs://{bucket}/{} has size `{}`", item.name, item.size)
                })?;
                out.push(ObjectMeta {
                    key: item.name,
                    size,
                });
            }
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(token) => page_token = Some(token),
                None => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Deletes `key`; an object already gone is not an error.
    /// The `objects.compose` call that concatenates `sources` into `key`.
    pub fn compose_call(
        &self,
        bucket: &str,
        sources: &[&str],
        key: &str,
        content_type: &str,
    ) -> Call {
        let body = serde_json::json!({
            "sourceObjects": sources.iter().map(|name| serde_json::json!({"name": name})).collect::<Vec<_>>(),
            "destination": {"contentType": content_type},
        });
        // Composing the same sources again writes the same bytes.
        Call::new(
            Method::POST,
            format!("{}/compose", self.object_url(bucket, key)),
            Idempotency::Idempotent,
        )
        .json(&body)
    }

    /// Concatenates `sources` (at most 32, in this bucket) into `key`,
    /// server-side: no byte passes through this machine.
    pub async fn compose(
        &self,
        bucket: &str,
        sources: &[&str],
        key: &str,
        content_type: &str,
    ) -> Result<u64> {
        let object: ObjectResource = self
            .http
            .json(&self.compose_call(bucket, sources, key, content_type))
            .await
            .with_context(|| {
                format!(
                    "cannot compose gs://{bucket}/{key} from {}",
                    sources.join(", ")
                )
            })?;
        object
            .size
            .parse()
            .with_context(|| format!("gs://{bucket}/{key} reports a size that is not a number"))
    }

    pub async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        match self
            .http
            .send(&Call::delete(self.object_url(bucket, key)))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot delete gs://{bucket}/{key}")),
        }
    }

    /// Uploads `body` to `key`: one request when small, else resumable.
    /// Returns the size, after checking the server's CRC32C against ours.
    pub async fn upload(&self, bucket: &str, key: &str, body: Source<'_>) -> Result<u64> {
        let what = || format!("cannot upload gs://{bucket}/{key}");
        let mut pending = Vec::new();
        read_up_to(body, &mut pending, self.transfer.simple_limit + 1)
            .await
            .with_context(what)?;
        if pending.len() <= self.transfer.simple_limit {
            let crc = crc32c::crc32c(&pending);
            let size = pending.len() as u64;
            // Replacing an object with the same bytes again changes nothing.
            let call = Call::new(
                Method::POST,
                self.upload_url(bucket),
                Idempotency::Idempotent,
            )
            .query("uploadType", "media")
            .query("name", key)
            .timeout(upload_timeout(self.http.policy(), pending.len()))
            .bytes(pending.into(), "application/octet-stream");
            let object: ObjectResource = self.http.json(&call).await.with_context(what)?;
            self.check(bucket, key, &object, size, crc).await?;
            return Ok(size);
        }
        let mut upload = self.start_resumable(bucket, key).await.with_context(what)?;
        let mut crc = 0u32;
        loop {
            let want =
                self.transfer.chunk_size + 1 - pending.len().min(self.transfer.chunk_size + 1);
            read_up_to(body, &mut pending, want)
                .await
                .with_context(what)?;
            let last = pending.len() <= self.transfer.chunk_size;
            let take = if last {
                pending.len()
            } else {
                self.transfer.chunk_size
            };
            crc = crc32c::crc32c_append(crc, &pending[..take]);
            let done = upload
                .send_resuming(&pending[..take], last)
                .await
                .with_context(what)?;
            pending.drain(..take);
            if let Some(object) = done {
                let size = upload.offset;
                self.check(bucket, key, &object, size, crc).await?;
                return Ok(size);
            }
            if last {
                bail!(
                    "{}: the server did not finalize the object after its last byte",
                    what()
                );
            }
        }
    }

    /// Compares the stored object with what we sent; a mismatch deletes it.
    async fn check(
        &self,
        bucket: &str,
        key: &str,
        object: &ObjectResource,
        size: u64,
        crc: u32,
    ) -> Result<()> {
        let expected = BASE64.encode(crc.to_be_bytes());
        let problem = if object.size != size.to_string() {
            Some(format!(
                "the server stored {} bytes, we sent {size}",
                object.size
            ))
        } else {
            match &object.crc32c {
                Some(got) if *got != expected => {
                    Some(format!("CRC32C is {got}, we sent {expected}"))
                }
                Some(_) => None,
                None => Some("the server reported no CRC32C".to_owned()),
            }
        };
        if let Some(problem) = problem {
            let _ = self.delete(bucket, key).await;
            bail!(
                "upload of gs://{bucket}/{key} was corrupted in transit ({problem}); the object was deleted"
            );
        }
        Ok(())
    }

    /// Opens a resumable upload session for `key`.
    pub async fn start_resumable(&self, bucket: &str, key: &str) -> Result<ResumableUpload> {
        // An unused session expires on its own; a second one is harmless.
        let call = Call::new(
            Method::POST,
            self.upload_url(bucket),
            Idempotency::Idempotent,
        )
        .query("uploadType", "resumable")
        .query("name", key)
        .json(&serde_json::json!({ "name": key }));
        let response =
            self.http.send(&call).await.with_context(|| {
                format!("cannot start a resumable upload of gs://{bucket}/{key}")
            })?;
        let session = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .with_context(|| {
                format!("the resumable upload of gs://{bucket}/{key} got no session URI")
            })?
            .to_owned();
        Ok(self.resume(&session, 0))
    }

    /// Continues the upload session `session_uri` at `offset`, as from an
    /// earlier process that was interrupted.
    pub fn resume(&self, session_uri: &str, offset: u64) -> ResumableUpload {
        ResumableUpload {
            http: self.http.clone(),
            session: session_uri.to_owned(),
            offset,
        }
    }
}

/// One resumable upload session: its URI and how many bytes the server holds.
pub struct ResumableUpload {
    http: Http,
    session: String,
    offset: u64,
}

impl ResumableUpload {
    pub fn session_uri(&self) -> &str {
        &self.session
    }

    /// Bytes the server has committed, as far as we know.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Sends `data`, which starts at [`offset`](Self::offset). `last` marks
    /// the end of the object. One attempt: a chunk is never re-sent blindly.
    pub async fn send_chunk(&mut self, data: &[u8], last: bool) -> Result<Progress, ApiError> {
        let end = self.offset + data.len() as u64;
        let total = if last {
            end.to_string()
        } else {
            "*".to_owned()
        };
        let range = if data.is_empty() {
            format!("bytes */{total}")
        } else {
            format!("bytes {}-{}/{total}", self.offset, end - 1)
        };
        let call = Call::new(Method::PUT, &self.session, Idempotency::Once)
            .timeout(upload_timeout(self.http.policy(), data.len()))
            .header(CONTENT_RANGE, &range)
            .bytes(
                bytes::Bytes::copy_from_slice(data),
                "application/octet-stream",
            );
        let progress = self.progress(&call).await?;
        if let Progress::Committed(committed) = progress {
            self.offset = committed;
        }
        Ok(progress)
    }

    /// Asks the server how much it holds (`total`: the size, once known).
    pub async fn query(&mut self, total: Option<u64>) -> Result<Progress, ApiError> {
        let total = total.map_or("*".to_owned(), |t| t.to_string());
        let call = Call::new(Method::PUT, &self.session, Idempotency::Idempotent)
            .header(CONTENT_RANGE, &format!("bytes */{total}"));
        let progress = self.progress(&call).await?;
        if let Progress::Committed(committed) = progress {
            self.offset = committed;
        }
        Ok(progress)
    }

    async fn progress(&self, call: &Call) -> Result<Progress, ApiError> {
        let response = self.http.send(call).await?;
        if response.status() == StatusCode::PERMANENT_REDIRECT {
            // `Range: bytes=0-N` means N+1 bytes are committed; no header, none.
            let committed = match response.headers().get(RANGE).and_then(|v| v.to_str().ok()) {
                Some(range) => range
                    .rsplit('-')
                    .next()
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .map(|n| n + 1)
                    .ok_or_else(|| ApiError::Decode(format!("bad Range header `{range}`")))?,
                None => 0,
            };
            return Ok(Progress::Committed(committed));
        }
        let body = response.bytes().await.map_err(ApiError::Transport)?;
        serde_json::from_slice(&body)
            .map(Progress::Done)
            .map_err(|e| ApiError::Decode(format!("{e} in the finished upload's object")))
    }

    /// Sends `chunk` (starting at the current offset) until the server has
    /// all of it, asking for the committed offset after each failure.
    async fn send_resuming(&mut self, chunk: &[u8], last: bool) -> Result<Option<ObjectResource>> {
        let start = self.offset;
        let end = start + chunk.len() as u64;
        let mut failures = 0;
        loop {
            let from = usize::try_from(self.offset - start).expect("a chunk fits in memory");
            let result = self.send_chunk(&chunk[from..], last).await;
            let progress = match result {
                Ok(progress) => progress,
                Err(e)
                    if failures < CHUNK_RESUMES
                        && e.status()
                            .is_none_or(|s| s.is_server_error() || s.as_u16() == 429) =>
                {
                    failures += 1;
                    tracing::info!(
                        "chunk at byte {} failed ({e}); asking the server what it kept",
                        self.offset
                    );
                    self.query(last.then_some(end))
                        .await
                        .context("cannot query the upload's progress")?
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("chunk at byte {} failed", self.offset));
                }
            };
            match progress {
                Progress::Done(object) => {
                    self.offset = end;
                    return Ok(Some(object));
                }
                Progress::Committed(committed) if committed < start || committed > end => {
                    bail!(
                        "the server reports {committed} bytes committed, outside the chunk {start}..{end} we hold"
                    );
                }
                Progress::Committed(committed) if committed == end && !last => return Ok(None),
                Progress::Committed(_) => {}
            }
        }
    }
}

/// Reads from `source` into `buf` until it holds `limit` bytes or the source ends.
async fn read_up_to(source: Source<'_>, buf: &mut Vec<u8>, limit: usize) -> std::io::Result<()> {
    let target = buf.len() + limit;
    buf.reserve(limit);
    while buf.len() < target {
        let n = (&mut *source)
            .take((target - buf.len()) as u64)
            .read_buf(buf)
            .await?;
        if n == 0 {
            break;
        }
    }
    Ok(())
}

/// One bucket, in its role (`raw`, `staging`, `code`).
pub struct GcsBucket {
    role: String,
    name: String,
    client: GcsClient,
}

impl GcsBucket {
    pub fn new(role: &str, name: &str, client: GcsClient) -> GcsBucket {
        GcsBucket {
            role: role.to_owned(),
            name: name.to_owned(),
            client,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn client(&self) -> &GcsClient {
        &self.client
    }

    /// Streams bytes `range` of `key`.
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Body> {
        self.client.get(&self.name, key, Some(range)).await
    }
}

#[async_trait]
impl Bucket for GcsBucket {
    fn role(&self) -> &str {
        &self.role
    }

    fn uri(&self, key: &str) -> String {
        format!("gs://{}/{key}", self.name)
    }

    async fn get(&self, key: &str) -> Result<Body> {
        self.client.get(&self.name, key, None).await
    }

    async fn put(&self, key: &str, body: Source<'_>) -> Result<u64> {
        if key.is_empty() || key.starts_with('/') {
            bail!("invalid object key `{key}` in bucket {}", self.role);
        }
        self.client.upload(&self.name, key, body).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.client.list(&self.name, prefix).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.client.delete(&self.name, key).await
    }
}

/// A download's body as an I/O stream in which no chunk may take longer
/// than `limit`: a server that stops half-way through (stopped, its link
/// gone quiet) is an error instead of a read that never returns.
fn idle_limited<S>(
    stream: S,
    limit: std::time::Duration,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send
where
    S: futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send + 'static,
{
    futures_util::stream::unfold(Some(Box::pin(stream)), move |stream| async move {
        let mut stream = stream?;
        match tokio::time::timeout(limit, stream.next()).await {
            Ok(Some(chunk)) => Some((chunk.map_err(std::io::Error::other), Some(stream))),
            Ok(None) => None,
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the download sent nothing for {limit:?}"),
                )),
                None,
            )),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_download_that_stops_half_way_is_an_error() {
        use tokio::io::AsyncReadExt;
        let first = futures_util::stream::iter([Ok::<_, reqwest::Error>(
            bytes::Bytes::from_static(b"abc"),
        )]);
        let stalled = first.chain(futures_util::stream::pending());
        let mut reader = tokio_util::io::StreamReader::new(Box::pin(idle_limited(
            stalled,
            std::time::Duration::from_millis(100),
        )));
        let mut out = Vec::new();
        let err = reader.read_to_end(&mut out).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(out, b"abc");
    }

    // Issue 11: the state bucket keeps a bounded number of noncurrent versions.
    #[test]
    fn a_kept_history_is_bounded_by_a_lifecycle_rule_on_noncurrent_versions() {
        let labels = BTreeMap::from([("managed-by".to_owned(), "infra".to_owned())]);
        let body = bucket_body("b", "US", Versioning::Keep(10), &labels);
        assert_eq!(body["versioning"]["enabled"], true);
        let rule = &body["lifecycle"]["rule"][0];
        assert_eq!(rule["action"]["type"], "Delete");
        assert_eq!(rule["condition"]["isLive"], false);
        assert_eq!(rule["condition"]["numNewerVersions"], 10);
        assert_eq!(
            body["iamConfiguration"]["publicAccessPrevention"],
            "enforced"
        );
        let off = bucket_body("b", "US", Versioning::Off, &labels);
        assert_eq!(off["versioning"]["enabled"], false);
        assert!(off.get("lifecycle").is_none());
    }

    #[test]
    fn the_upload_timeout_grows_with_the_chunk() {
        let policy = RetryPolicy::default();
        let small = upload_timeout(&policy, 1024);
        let chunk = upload_timeout(&policy, 16 << 20);
        assert_eq!(
            small,
            policy.attempt_timeout + std::time::Duration::from_secs(1)
        );
        // 16 MiB at 256 KiB/s takes 64 s, on top of the wait for the answer.
        assert_eq!(
            chunk,
            policy.attempt_timeout + std::time::Duration::from_secs(64)
        );
    }
}
