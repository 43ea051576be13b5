//! The GCP target's clients, against local stand-ins (crate `gcp-fakes`):
//! the real fake-gcs-server for Cloud Storage, and a contract-checking fake
//! of Dataproc, BigQuery and the Cloud SQL Admin API that holds every request to Google's discovery
//! documents.

mod journal;

mod auth;
mod bigquery;
mod cloudsql;
mod dataproc;
mod faults;
mod storage;
