//! The GCP target: Cloud Storage, Cloud SQL (through its Admin API),
//! Dataproc and BigQuery, reached over their REST APIs with `reqwest` and
//! tokens from `yup-oauth2`.
//!
//! Each module owns one concern. `http` holds what the JSON APIs share
//! (tokens, deadlines, retries); `auth` finds credentials; `ids` holds
//! Google's rules for the ids and labels we choose; `storage`, `cloudsql`,
//! `dataproc` and `bigquery` implement [`Bucket`](crate::backend::Bucket),
//! [`Database`](crate::backend::Database), [`Spark`](crate::backend::Spark)
//! and [`Warehouse`](crate::backend::Warehouse); `compute` and
//! `serviceusage` make the network and API calls `up` and `down` need;
//! `deployment` is what `up` saved about the provisioned resources, from
//! which [`Gcp`] builds the target with no Terraform call. Nothing here
//! imports `backend::local`, and nothing there imports this.

pub mod auth;
pub mod bigquery;
pub mod cloud;
pub mod cloudsql;
pub mod compute;
pub mod dataproc;
pub mod deadline;
pub mod deployment;
pub mod http;
pub mod ids;
pub mod line_breaks;
pub mod serviceusage;
pub mod storage;
pub mod transport;

pub use crate::labels::MANAGED_BY;
pub use deployment::Deployment;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use async_trait::async_trait;

use crate::backend::{Buckets, Database, Spark, Target, Warehouse};
use crate::process::Echo;
use crate::settings::{RunAs, Settings, SparkMode};
use auth::{AdcSources, TokenSource};
use bigquery::{BigQuery, BigQueryWarehouse};
use cloudsql::{CloudSqlAdmin, CloudSqlDatabase};
use compute::Compute;
use dataproc::{ClusterSpark, ClusterSpec, Dataproc, ServerlessSpark, ServerlessSpec};
use deadline::Deadlines;
use http::{Call, Http, RetryPolicy};
use serviceusage::ServiceUsage;
use storage::{GcsBucket, GcsClient, StorageEndpoint, Transfer};

/// Where each API lives. Emulators, stand-ins and tests replace them.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub storage: StorageEndpoint,
    pub dataproc: String,
    pub bigquery: String,
    pub sqladmin: String,
    pub iam_credentials: String,
    pub compute: String,
    pub serviceusage: String,
}

impl Endpoints {
    /// From the `endpoints.*` settings; Cloud Storage falls back to
    /// `STORAGE_EMULATOR_HOST`, then Google's.
    pub fn from_settings(settings: &Settings) -> Endpoints {
        let storage = match &settings.endpoints_storage {
            Some(url) => StorageEndpoint {
                base_url: url.trim_end_matches('/').to_owned(),
                emulator: false,
            },
            None => StorageEndpoint::from_env_value(
                std::env::var("STORAGE_EMULATOR_HOST").ok().as_deref(),
            ),
        };
        Endpoints {
            storage,
            dataproc: settings.endpoints_dataproc.clone(),
            bigquery: settings.endpoints_bigquery.clone(),
            sqladmin: settings.endpoints_sqladmin.clone(),
            iam_credentials: settings.endpoints_iam_credentials.clone(),
            compute: settings.endpoints_compute.clone(),
            serviceusage: settings.endpoints_serviceusage.clone(),
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
    pub compute: Compute,
    pub serviceusage: ServiceUsage,
    pub http: Http,
    tokens: Arc<dyn TokenSource>,
}

impl Clients {
    /// Builds every client on `tokens`. No API is called yet.
    pub fn new(
        project: &str,
        region: &str,
        tokens: Arc<dyn TokenSource>,
        endpoints: &Endpoints,
        policy: RetryPolicy,
        poll: Duration,
    ) -> Result<Clients> {
        let http = Http::new(tokens.clone(), policy.clone())?.with_quota_fallback(project);
        Ok(Clients {
            storage: GcsClient::new(
                &endpoints.storage,
                tokens.clone(),
                policy,
                Transfer::default(),
            )?,
            dataproc: Arc::new(Dataproc::new(
                http.clone(),
                &endpoints.dataproc,
                project,
                region,
                poll,
            )),
            // A region is also a BigQuery location; the dataset lives beside the data.
            bigquery: BigQuery::new(http.clone(), &endpoints.bigquery, project, region, poll),
            compute: Compute::new(http.clone(), &endpoints.compute, project, poll),
            serviceusage: ServiceUsage::new(http.clone(), &endpoints.serviceusage, project, poll),
            http,
            tokens,
        })
    }

    /// Finds credentials (Application Default Credentials, impersonated
    /// when asked) and builds every client, each call within `policy`'s
    /// limits. No API is called yet.
    pub async fn connect(
        project: &str,
        region: &str,
        impersonate: &[&str],
        endpoints: &Endpoints,
        policy: RetryPolicy,
    ) -> Result<Clients> {
        let tokens = auth::for_settings(
            impersonate,
            &AdcSources::from_env(),
            &endpoints.iam_credentials,
            project,
        )
        .await?;
        Clients::new(project, region, tokens, endpoints, policy, POLL)
    }

    /// Who these clients act as, as an IAM member: what the credentials
    /// say, else what Google's `tokeninfo` says of their token
    /// (https://cloud.google.com/docs/authentication/token-types#access-tokens).
    pub async fn member(&self, oauth2_url: &str) -> Result<String> {
        if let Some(member) = self.tokens.identity().member {
            return Ok(member);
        }
        #[derive(serde::Deserialize)]
        struct TokenInfo {
            email: Option<String>,
        }
        let token = self
            .tokens
            .token()
            .await?
            .context("these credentials give no token")?;
        let url = format!("{}/tokeninfo", oauth2_url.trim_end_matches('/'));
        let info: TokenInfo = self
            .http
            .json(&Call::get(url).query("access_token", token))
            .await
            .context("cannot ask Google's tokeninfo whose the credentials are")?;
        info.email
            .map(|email| auth::Identity::member_for_email(&email))
            .context("tokeninfo names no email for these credentials (their token lacks the userinfo.email scope)\nhint: set `operator` in infra.toml, as `user:you@example.com`")
    }
}

/// A token source for plans: building the clients needs one, and a plan
/// must never send a request.
struct PlanOnly;

#[async_trait]
impl TokenSource for PlanOnly {
    async fn token(&self) -> Result<Option<String>> {
        anyhow::bail!("a plan sends no request")
    }
}

/// The deployed GCP target, as `up` saved it.
pub struct Gcp {
    pub deployment: Deployment,
    settings: Settings,
    endpoints: Endpoints,
}

impl Gcp {
    /// Reads `<state>/gcp/outputs.json`; no Terraform call, no network.
    pub fn load(settings: &Settings) -> Result<Gcp> {
        Ok(Gcp {
            deployment: Deployment::load(&settings.state_dir)?,
            settings: settings.clone(),
            endpoints: Endpoints::from_settings(settings),
        })
    }

    /// The deployment `deployment` describes without `up` having saved it:
    /// the offline plan's, built from the rendered root.
    pub fn planned(settings: &Settings, deployment: Deployment) -> Gcp {
        Gcp {
            deployment,
            settings: settings.clone(),
            endpoints: Endpoints::from_settings(settings),
        }
    }

    /// The labels of everything this deployment's runs create.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
            (
                "deployment".to_owned(),
                ids::label_value(&self.deployment.deployment),
            ),
        ])
    }

    /// Clients with real credentials, acting as `run_as` says: the
    /// pipeline's account by default, so a run holds only its own grants.
    pub async fn clients(&self) -> Result<Clients> {
        let mut chain: Vec<&str> = self
            .settings
            .impersonate_service_account
            .as_deref()
            .into_iter()
            .collect();
        if self.settings.run_as == RunAs::Pipeline {
            chain.push(&self.deployment.service_account_email);
        }
        Clients::connect(
            &self.deployment.project,
            &self.deployment.region,
            &chain,
            &self.endpoints,
            deadline::http_policy(&self.settings),
        )
        .await
    }

    /// The target for `plan` and `run --dry-run`: every capability can
    /// preview its requests, none can send one.
    pub fn plan_target(&self) -> Result<Target> {
        let clients = Clients::new(
            &self.deployment.project,
            &self.deployment.region,
            Arc::new(PlanOnly),
            &self.endpoints,
            RetryPolicy::default(),
            POLL,
        )?;
        Ok(self.target_with(clients, Echo::Quiet))
    }

    /// The target that runs the pipeline, with real credentials.
    pub async fn target(&self, echo: Echo) -> Result<Target> {
        Ok(self.target_with(self.clients().await?, echo))
    }

    /// The buckets, over `storage`.
    pub fn buckets(&self, storage: &GcsClient) -> Buckets {
        let d = &self.deployment;
        let bucket = |role: &str, name: &str| Box::new(GcsBucket::new(role, name, storage.clone()));
        Buckets {
            raw: bucket("raw", &d.raw_bucket),
            staging: bucket("staging", &d.staging_bucket),
            code: bucket("code", &d.code_bucket),
        }
    }

    fn target_with(&self, clients: Clients, echo: Echo) -> Target {
        let clients = with_deadlines(clients, Deadlines::from_settings(&self.settings));
        let d = &self.deployment;
        let s = &self.settings;
        let labels = self.labels();
        let database: Box<dyn Database> = Box::new(CloudSqlDatabase {
            admin: CloudSqlAdmin::new(
                clients.http.clone(),
                &self.endpoints.sqladmin,
                &d.project,
                &d.sql_instance,
                POLL,
            )
            .with_deadline(Deadlines::from_settings(&self.settings).cloudsql_operation),
            storage: clients.storage.clone(),
            staging_bucket: d.staging_bucket.clone(),
            database: d.database_name.clone(),
            user: d.database_user.clone(),
        });
        let spark: Box<dyn Spark> = match s.spark_mode {
            SparkMode::Cluster => Box::new(ClusterSpark::new(
                clients.dataproc.clone(),
                clients.storage.clone(),
                ClusterSpec {
                    deployment: ids::label_value(&d.deployment).replace('_', "-"),
                    image_version: s.dataproc_image_version.clone(),
                    master_machine_type: s.dataproc_master_machine_type.clone(),
                    worker_machine_type: s.dataproc_worker_machine_type.clone(),
                    workers: s.dataproc_workers,
                    boot_disk_gb: s.dataproc_boot_disk_gb,
                    idle_ttl_secs: u64::from(s.dataproc_idle_ttl_secs),
                    max_age_secs: u64::from(s.dataproc_max_age_secs),
                    service_account: d.service_account_email.clone(),
                    subnetwork: d.subnetwork.clone(),
                    bucket: d.staging_bucket.clone(),
                    labels: labels.clone(),
                    properties: s.spark_properties.clone(),
                },
                driver_sink(echo),
            )),
            SparkMode::Serverless => Box::new(ServerlessSpark::new(
                clients.dataproc.clone(),
                ServerlessSpec {
                    runtime_version: s.dataproc_serverless_runtime.clone(),
                    service_account: d.service_account_email.clone(),
                    subnetwork: d.subnetwork.clone(),
                    labels: labels.clone(),
                    properties: s.spark_properties.clone(),
                    ttl_secs: u64::from(s.dataproc_max_age_secs),
                },
            )),
        };
        let warehouse: Box<dyn Warehouse> = Box::new(BigQueryWarehouse {
            bigquery: clients.bigquery.clone(),
            labels,
        });
        Target {
            buckets: self.buckets(&clients.storage),
            database,
            spark,
            warehouse,
        }
    }
}

/// `clients` with the overall deadlines of their long-running waits.
fn with_deadlines(clients: Clients, deadlines: Deadlines) -> Clients {
    Clients {
        dataproc: Arc::new((*clients.dataproc).clone().with_deadlines(deadlines)),
        bigquery: clients.bigquery.with_deadline(deadlines.bigquery_job),
        ..clients
    }
}

/// Where a Dataproc driver's output lines go: the terminal with `-v`,
/// the debug log otherwise.
fn driver_sink(echo: Echo) -> Arc<dyn Fn(&str) + Send + Sync> {
    match echo {
        Echo::Stream => Arc::new(|line: &str| eprintln!("{line}")),
        _ => Arc::new(|line: &str| tracing::debug!(target: "infra::driver", "{line}")),
    }
}
