//! Stand-ins for the Google Cloud APIs `infra` calls, for its integration
//! tests and for `scripts/rehearse`. They are FAKES, not Google: each holds
//! to the contract of Google's discovery documents (every request checked
//! against the method's verb, path, parameters and body schema, every
//! answer against the response schema), and the executing ones do the work
//! for real on local engines: PostgreSQL behind the Cloud SQL Admin API,
//! `spark-submit` behind Dataproc, DuckDB behind BigQuery, with objects in
//! the real fake-gcs-server.
//!
//! - `server`, `contract`, `front`: HTTP, the discovery contract, and the
//!   checks, log and fault injection every stand-in shares.
//! - `google`: the scripted Dataproc and BigQuery fake the client tests use.
//! - `gcs`, `venv`: fake-gcs-server and the test venv that holds it.
//! - `token`, `sqladmin`, `dataproc`, `bigquery`, `services`: the executing
//!   stand-ins of the rehearsal, started together by `stack`.
//! - `iam`, `gcs_front`: IAM as Google enforces it (the grants read from the
//!   real Terraform modules, roles from Google's published definitions),
//!   and the proxy that puts Cloud Storage behind it too.

pub mod bigquery;
pub mod contract;
pub mod dataproc;
pub mod front;
pub mod gcs;
pub mod gcs_front;
pub mod google;
pub mod iam;
pub mod postgres;
pub mod report;
pub mod server;
pub mod services;
pub mod sqladmin;
pub mod stack;
pub mod token;
pub mod venv;
