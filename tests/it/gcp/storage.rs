//! Cloud Storage against fake-gcs-server, and the same suite against the
//! local bucket, so the two targets' buckets behave alike.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Result;
use async_trait::async_trait;
use infra::backend::Bucket;
use infra::backend::gcp::auth::TokenSource;
use infra::backend::gcp::http::RetryPolicy;
use infra::backend::gcp::storage::{
    BucketCreated, GcsBucket, GcsClient, Progress, StorageEndpoint, Transfer, Versioning,
};
use infra::backend::local::bucket::LocalBucket;
use tokio::io::AsyncReadExt;

use gcp_fakes::gcs::FakeGcs;
use gcp_fakes::server::{self, Request, Response};

/// A token source that must never be asked: an emulator gets no token.
struct NeverAsked(AtomicUsize);

#[async_trait]
impl TokenSource for NeverAsked {
    async fn token(&self) -> Result<Option<String>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        anyhow::bail!("a token was requested for an emulator")
    }
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        attempt_timeout: Duration::from_secs(30),
        deadline: Duration::from_secs(120),
        min_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        max_retries: 5,
    }
}

fn transfer() -> Transfer {
    Transfer {
        simple_limit: 1 << 20,
        chunk_size: 8 << 20,
        page_size: Some(5),
    }
}

/// Deterministic bytes that are not all alike.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn read_all(bucket: &dyn Bucket, key: &str) -> Vec<u8> {
    let mut out = Vec::new();
    bucket
        .get(key)
        .await
        .unwrap()
        .read_to_end(&mut out)
        .await
        .unwrap();
    out
}

/// What every bucket must do, whatever is behind it.
async fn bucket_suite(bucket: &dyn Bucket) {
    assert_eq!(
        bucket
            .put("small/hello.txt", &mut &b"hello, bucket"[..])
            .await
            .unwrap(),
        13
    );
    assert_eq!(read_all(bucket, "small/hello.txt").await, b"hello, bucket");

    // About 50 MB: several 8 MiB chunks on GCS.
    let big = data(50 * 1000 * 1000 + 12_345, 7);
    assert_eq!(
        bucket.put("big/blob.bin", &mut &big[..]).await.unwrap(),
        big.len() as u64
    );
    let back = read_all(bucket, "big/blob.bin").await;
    assert_eq!(back.len(), big.len());
    assert!(back == big, "the 50 MB object came back different");

    // Replacing an object replaces it.
    bucket
        .put("small/hello.txt", &mut &b"bye"[..])
        .await
        .unwrap();
    assert_eq!(read_all(bucket, "small/hello.txt").await, b"bye");

    // More objects than one listing page holds (5 on GCS here).
    for i in (0..23).rev() {
        bucket
            .put(&format!("many/obj-{i:02}"), &mut &b"x"[..])
            .await
            .unwrap();
    }
    let listed = bucket.list("many/").await.unwrap();
    let keys: Vec<String> = listed.iter().map(|o| o.key.clone()).collect();
    let want: Vec<String> = (0..23).map(|i| format!("many/obj-{i:02}")).collect();
    assert_eq!(keys, want);
    assert!(listed.iter().all(|o| o.size == 1));
    let small = bucket.list("small/").await.unwrap();
    assert_eq!(small.len(), 1);
    assert_eq!(
        (small[0].key.as_str(), small[0].size),
        ("small/hello.txt", 3)
    );
    assert!(bucket.list("nothing/").await.unwrap().is_empty());

    assert!(bucket.exists("big/blob.bin").await.unwrap());
    assert!(!bucket.exists("big/blob").await.unwrap());

    bucket.delete("small/hello.txt").await.unwrap();
    bucket.delete("small/hello.txt").await.unwrap();
    assert!(!bucket.exists("small/hello.txt").await.unwrap());
    let err = match bucket.get("small/hello.txt").await {
        Ok(_) => panic!("a deleted object can still be read"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("small/hello.txt"),
        "the error does not name the object: {err}"
    );
}

fn gcs_client(fake: &FakeGcs) -> (GcsClient, Arc<NeverAsked>) {
    let tokens = Arc::new(NeverAsked(AtomicUsize::new(0)));
    let endpoint = StorageEndpoint::from_env_value(Some(&fake.host));
    assert_eq!(endpoint, StorageEndpoint::emulator(&fake.url));
    assert!(endpoint.emulator);
    let client = GcsClient::new(&endpoint, tokens.clone(), fast(), transfer()).unwrap();
    (client, tokens)
}

#[tokio::test]
async fn gcs_bucket_passes_the_bucket_suite() {
    let fake = FakeGcs::start("filesystem");
    fake.bucket("infra-raw").await;
    let (client, tokens) = gcs_client(&fake);
    let bucket = GcsBucket::new("raw", "infra-raw", client);
    assert_eq!(bucket.uri("a/b.csv"), "gs://infra-raw/a/b.csv");
    bucket_suite(&bucket).await;

    // Ranges stream just those bytes.
    let big = data(50 * 1000 * 1000 + 12_345, 7);
    let mut part = Vec::new();
    bucket
        .get_range("big/blob.bin", 30_000_000..30_000_100)
        .await
        .unwrap()
        .read_to_end(&mut part)
        .await
        .unwrap();
    assert_eq!(part, &big[30_000_000..30_000_100]);
    assert_eq!(
        tokens.0.load(Ordering::SeqCst),
        0,
        "the emulator was sent a token"
    );
}

#[tokio::test]
async fn local_bucket_passes_the_bucket_suite() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = LocalBucket::new("raw", dir.path().join("raw"));
    bucket_suite(&bucket).await;
}

#[tokio::test]
async fn an_interrupted_resumable_upload_resumes_in_a_new_session_handle() {
    let fake = FakeGcs::start("filesystem");
    fake.bucket("infra-staging").await;
    let (client, _) = gcs_client(&fake);
    let content = data(3 * 256 * 1024 + 1000, 3);
    let first = 2 * 256 * 1024;

    let mut upload = client
        .start_resumable("infra-staging", "resumed.bin")
        .await
        .unwrap();
    match upload.send_chunk(&content[..first], false).await.unwrap() {
        Progress::Committed(n) => assert_eq!(n, first as u64),
        Progress::Done(_) => panic!("the upload finished after its first chunk"),
    }
    let session = upload.session_uri().to_owned();
    let offset = upload.offset();
    drop(upload); // the process that started it is gone

    let mut resumed = client.resume(&session, offset);
    match resumed.send_chunk(&content[first..], true).await.unwrap() {
        Progress::Done(object) => assert_eq!(object.size, content.len().to_string()),
        Progress::Committed(n) => panic!("not finished: {n} bytes committed"),
    }
    let bucket = GcsBucket::new("staging", "infra-staging", client);
    assert!(read_all(&bucket, "resumed.bin").await == content);
}

#[tokio::test]
async fn buckets_are_created_with_versioning_and_labels() {
    // fake-gcs-server's filesystem backend refuses versioning; memory takes it.
    let fake = FakeGcs::start("memory");
    let (client, _) = gcs_client(&fake);
    let labels = [("managed-by".to_owned(), "infra".to_owned())].into();
    let created = client
        .create_bucket(
            "test",
            "infra-tfstate",
            "US-CENTRAL1",
            Versioning::Keep(10),
            &labels,
        )
        .await
        .unwrap();
    assert_eq!(created, BucketCreated::Created);
    let bucket: serde_json::Value =
        reqwest::get(format!("{}/storage/v1/b/infra-tfstate", fake.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(bucket["versioning"]["enabled"], true, "{bucket}");
    assert_eq!(bucket["name"], "infra-tfstate");
}

/// Real GCS's resumable protocol, with one fault: the second chunk's
/// connection fails after the server kept only part of it. fake-gcs-server
/// cannot play this: it appends whatever it is sent and treats a status
/// query as the end of the upload.
#[tokio::test]
async fn a_failed_chunk_is_resumed_from_the_offset_the_server_reports() {
    #[derive(Default)]
    struct Session {
        data: Vec<u8>,
        puts: Vec<String>,
        failed: bool,
        done: bool,
    }
    let session = Arc::new(std::sync::Mutex::new(Session::default()));
    let state = session.clone();
    let addr = server::serve(Arc::new(move |req: Request| {
        let state = state.clone();
        Box::pin(async move {
            let mut s = state.lock().unwrap();
            if req.method == "POST" {
                assert_eq!(req.param("uploadType"), Some("resumable"));
                let host = req.header("host").unwrap().to_owned();
                return Response::empty(200).header("location", &format!("http://{host}/session/1"));
            }
            let range = req.header("content-range").unwrap().to_owned();
            s.puts.push(range.clone());
            let (span, total) = range.strip_prefix("bytes ").unwrap().split_once('/').unwrap();
            if span != "*" {
                let start: usize = span.split_once('-').unwrap().0.parse().unwrap();
                assert_eq!(start, s.data.len(), "a chunk was sent from the wrong offset");
                if start > 0 && !s.failed {
                    // Keep half of the chunk, then fail.
                    s.failed = true;
                    let keep = req.body.len() / 2;
                    s.data.extend_from_slice(&req.body[..keep]);
                    return Response::empty(503);
                }
                s.data.extend_from_slice(&req.body);
            }
            if total != "*" && s.data.len() == total.parse::<usize>().unwrap() {
                s.done = true;
                let crc = base64_crc(&s.data);
                return Response::json(200, &serde_json::json!({"name": "o", "size": s.data.len().to_string(), "crc32c": crc}));
            }
            let mut response = Response::empty(308);
            if !s.data.is_empty() {
                response = response.header("range", &format!("bytes=0-{}", s.data.len() - 1));
            }
            response
        })
    }))
    .await;
    let endpoint = StorageEndpoint::emulator(&addr.to_string());
    let transfer = Transfer {
        simple_limit: 256 * 1024,
        chunk_size: 512 * 1024,
        page_size: None,
    };
    let client = GcsClient::new(
        &endpoint,
        Arc::new(NeverAsked(AtomicUsize::new(0))),
        fast(),
        transfer,
    )
    .unwrap();
    let content = data(3 * 512 * 1024 + 77, 11);
    let size = client.upload("b", "o", &mut &content[..]).await.unwrap();
    assert_eq!(size, content.len() as u64);
    let s = session.lock().unwrap();
    assert!(
        s.done && s.data == content,
        "the server holds different bytes"
    );
    let half = 512 * 1024 + 256 * 1024;
    assert_eq!(
        s.puts,
        [
            "bytes 0-524287/*".to_owned(),
            "bytes 524288-1048575/*".to_owned(),
            "bytes */*".to_owned(),
            format!("bytes {half}-1048575/*"),
            "bytes 1048576-1572863/*".to_owned(),
            format!("bytes 1572864-{}/{}", content.len() - 1, content.len()),
        ]
    );
}

fn base64_crc(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(crc32c::crc32c(data).to_be_bytes())
}

/// A stand-in for the bucket API that answers what we script, and records
/// the requests: for the cases fake-gcs-server does not play.
async fn scripted(
    answer: fn(&Request) -> Response,
) -> (GcsClient, Arc<std::sync::Mutex<Vec<String>>>) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let addr = server::serve(Arc::new(move |req: Request| {
        log.lock()
            .unwrap()
            .push(format!("{} {}", req.method, req.path));
        let response = answer(&req);
        Box::pin(async move { response })
    }))
    .await;
    let endpoint = StorageEndpoint::emulator(&addr.to_string());
    let client = GcsClient::new(
        &endpoint,
        Arc::new(NeverAsked(AtomicUsize::new(0))),
        fast(),
        transfer(),
    )
    .unwrap();
    (client, seen)
}

#[tokio::test]
async fn an_upload_whose_checksum_differs_is_deleted_and_reported() {
    let (client, seen) = scripted(|req| match req.method.as_str() {
        "POST" => Response::json(
            200,
            &serde_json::json!({"name": "k", "size": "5", "crc32c": "AAAAAA=="}),
        ),
        _ => Response::empty(204),
    })
    .await;
    let err = client
        .upload("b", "k", &mut &b"hello"[..])
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("corrupted") && text.contains("gs://b/k") && text.contains("AAAAAA=="),
        "{text}"
    );
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "POST /upload/storage/v1/b/b/o",
            "DELETE /storage/v1/b/b/o/k"
        ]
    );
}

// Issue 11: on a 409, adopt the bucket only if it is labelled for this
// deployment and in this project.
#[tokio::test]
async fn a_bucket_that_exists_is_adopted_only_if_it_is_this_deployments_and_in_this_project() {
    let labels: BTreeMap<String, String> = [
        ("deployment".to_owned(), "infra".to_owned()),
        ("managed-by".to_owned(), "infra".to_owned()),
    ]
    .into();
    fn conflict() -> Response {
        Response::json(
            409,
            &serde_json::json!({"error": {"code": 409, "message": "You already own this bucket."}}),
        )
    }
    fn ours() -> Response {
        Response::json(
            200,
            &serde_json::json!({"name": "mine", "labels": {"managed-by": "infra", "deployment": "infra"}}),
        )
    }
    let (client, seen) = scripted(|req| match (req.method.as_str(), req.path.as_str()) {
        ("POST", _) => conflict(),
        ("GET", "/storage/v1/b") => {
            assert!(req.query.contains(&("project".to_owned(), "p".to_owned())));
            Response::json(200, &serde_json::json!({"items": [{"name": "mine"}]}))
        }
        _ => ours(),
    })
    .await;
    assert_eq!(
        client
            .create_bucket("p", "mine", "US", Versioning::Keep(10), &labels)
            .await
            .unwrap(),
        BucketCreated::AlreadyOurs
    );
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "POST /storage/v1/b",
            "GET /storage/v1/b/mine",
            "GET /storage/v1/b"
        ]
    );

    // Labelled as ours, but another project's: refused.
    let (client, _) = scripted(|req| match (req.method.as_str(), req.path.as_str()) {
        ("POST", _) => conflict(),
        ("GET", "/storage/v1/b") => Response::json(200, &serde_json::json!({})),
        _ => ours(),
    })
    .await;
    let err = client
        .create_bucket("p", "mine", "US", Versioning::Keep(10), &labels)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("not in project p"), "{err:#}");

    // infra's, but another deployment's: refused.
    let (client, _) = scripted(|req| match req.method.as_str() {
        "POST" => Response::json(409, &serde_json::json!({"error": {"code": 409, "message": "You already own this bucket."}})),
        _ => Response::json(
            200,
            &serde_json::json!({"name": "mine", "labels": {"managed-by": "infra", "deployment": "other"}}),
        ),
    })
    .await;
    let err = client
        .create_bucket("p", "mine", "US", Versioning::Keep(10), &labels)
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("lacks the labels deployment=infra"),
        "{err:#}"
    );

    let (client, _) = scripted(|req| match req.method.as_str() {
        "POST" => Response::json(409, &serde_json::json!({"error": {"code": 409, "message": "The requested bucket name is not available."}})),
        _ => Response::json(403, &serde_json::json!({"error": {"code": 403, "message": "no access"}})),
    })
    .await;
    let err = client
        .create_bucket("p", "taken", "US", Versioning::Keep(10), &labels)
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("bucket names are global"),
        "{err:#}"
    );
}
