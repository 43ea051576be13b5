//! The GCP target's clients, against local stand-ins: the real
//! fake-gcs-server for Cloud Storage, and a contract-checking fake of
//! Dataproc, BigQuery and the Cloud SQL Admin API that holds every request
//! to Google's discovery documents.

mod contract;
mod fake_gcs;
mod google;
mod journal;
mod server;

mod auth;
mod bigquery;
mod cloudsql;
mod dataproc;
mod faults;
mod storage;
