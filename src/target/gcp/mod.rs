//! The GCP target's building blocks: Cloud Storage, Dataproc, BigQuery and
//! Cloud SQL, reached over their REST APIs with `reqwest` and tokens from
//! `yup-oauth2`.
//!
//! Each module owns one concern. `http` holds what the three JSON APIs
//! share (tokens, deadlines, retries); `auth` finds credentials;
//! `storage`, `dataproc` and `bigquery` implement [`Bucket`](crate::target::Bucket),
//! [`Spark`](crate::target::Spark) and [`Warehouse`](crate::target::Warehouse);
//! `cloudsql` builds the database connection options. Nothing here imports
//! `target::local`, and nothing there imports this.

pub mod auth;
pub mod bigquery;
pub mod cloudsql;
pub mod dataproc;
pub mod http;
pub mod storage;

/// The label every resource `infra` creates carries, and `down` looks for.
pub const MANAGED_BY: (&str, &str) = ("managed-by", "infra");
