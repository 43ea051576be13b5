//! The GCP target's clients, against local stand-ins (crate `gcp-fakes`):
//! the real fake-gcs-server for Cloud Storage, and a contract-checking fake
//! of Dataproc and BigQuery that holds every request to Google's discovery
//! documents.

mod auth;
mod bigquery;
mod dataproc;
mod faults;
mod storage;
