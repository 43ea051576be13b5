//! The GCP target's clients, against local stand-ins (crate `gcp-fakes`):
//! the real fake-gcs-server for Cloud Storage, and a contract-checking fake
//! of Dataproc, BigQuery and the Cloud SQL Admin API that holds every request to Google's discovery
//! documents.

use std::sync::Arc;
use std::time::Duration;

use infra::backend::gcp::auth::StaticToken;
use infra::backend::gcp::http::{Http, RetryPolicy};
use infra::backend::gcp::storage::{GcsClient, StorageEndpoint, Transfer};

mod journal;

mod auth;
mod bigquery;
mod cloudsql;
mod dataproc;
mod deadlines;
mod faults;
mod storage;

/// Retries and deadlines short enough for tests, with the real retry logic.
pub fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        attempt_timeout: Duration::from_secs(10),
        deadline: Duration::from_secs(30),
        min_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        max_retries: 4,
    }
}

/// An HTTP client holding the token the contract-checking fake expects.
pub fn http(policy: RetryPolicy) -> Http {
    Http::new(Arc::new(StaticToken::new(gcp_fakes::google::TOKEN)), policy).unwrap()
}

/// A Cloud Storage client for the fake-gcs-server at `url`.
pub fn emulator_storage(url: &str) -> GcsClient {
    GcsClient::new(
        &StorageEndpoint::emulator(url),
        Arc::new(StaticToken::new("unused")),
        fast_policy(),
        Transfer::default(),
    )
    .unwrap()
}
