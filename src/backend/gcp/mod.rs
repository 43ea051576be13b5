//! The GCP target's building blocks: Cloud Storage, Dataproc, BigQuery and
//! Cloud SQL, reached over their REST APIs with `reqwest` and tokens from
//! `yup-oauth2`.
//!
//! Each module owns one concern. `http` holds what the three JSON APIs
//! share (tokens, deadlines, retries); `auth` finds credentials;
//! `storage`, `dataproc` and `bigquery` implement [`Bucket`](crate::backend::Bucket),
//! [`Spark`](crate::backend::Spark) and [`Warehouse`](crate::backend::Warehouse);
//! `cloudsql` builds the database connection options. Nothing here imports
//! `backend::local`, and nothing there imports this.

pub mod auth;
pub mod bigquery;
pub mod cloud;
pub mod cloudsql;
pub mod dataproc;
pub mod http;
pub mod storage;

pub use crate::labels::MANAGED_BY;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use auth::{AdcSources, IAM_CREDENTIALS_URL};
use bigquery::{BIGQUERY_URL, BigQuery};
use dataproc::{DATAPROC_URL, Dataproc};
use http::{Http, RetryPolicy};
use storage::{GcsClient, StorageEndpoint, Transfer};

/// Where each API lives. Emulators and tests replace them.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub storage: StorageEndpoint,
    pub dataproc: String,
    pub bigquery: String,
    pub iam_credentials: String,
}

impl Endpoints {
    pub fn google() -> Endpoints {
        Endpoints {
            storage: StorageEndpoint::google(),
            dataproc: DATAPROC_URL.to_owned(),
            bigquery: BIGQUERY_URL.to_owned(),
            iam_credentials: IAM_CREDENTIALS_URL.to_owned(),
        }
    }

    /// Google's, except Cloud Storage when `STORAGE_EMULATOR_HOST` is set.
    pub fn from_env() -> Endpoints {
        let emulator = std::env::var("STORAGE_EMULATOR_HOST").ok();
        Endpoints {
            storage: StorageEndpoint::from_env_value(emulator.as_deref()),
            ..Endpoints::google()
        }
    }
}

/// How often a job or operation is polled.
const POLL: Duration = Duration::from_secs(3);

/// The clients for one project and region, sharing one token source.
pub struct Clients {
    pub storage: GcsClient,
    pub dataproc: Arc<Dataproc>,
    pub bigquery: BigQuery,
}

impl Clients {
    /// Finds credentials (Application Default Credentials, impersonated
    /// when asked) and builds every client. No API is called yet.
    pub async fn connect(
        project: &str,
        region: &str,
        impersonate: Option<&str>,
        endpoints: &Endpoints,
    ) -> Result<Clients> {
        let tokens = auth::for_settings(
            impersonate,
            &AdcSources::from_env(),
            &endpoints.iam_credentials,
        )
        .await?;
        let policy = RetryPolicy::default();
        let http = Http::new(tokens.clone(), policy.clone())?;
        Ok(Clients {
            storage: GcsClient::new(&endpoints.storage, tokens, policy, Transfer::default())?,
            dataproc: Arc::new(Dataproc::new(
                http.clone(),
                &endpoints.dataproc,
                project,
                region,
                POLL,
            )),
            // A region is also a BigQuery location; the dataset lives beside the data.
            bigquery: BigQuery::new(http, &endpoints.bigquery, project, region, POLL),
        })
    }
}
