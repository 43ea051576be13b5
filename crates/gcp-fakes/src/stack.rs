//! The whole set of stand-ins for one rehearsal, started together on
//! 127.0.0.1: fake-gcs-server, the token endpoint, and the executing
//! Dataproc, BigQuery and Cloud SQL Admin stand-ins, with Service Usage and
//! Compute. They share one request log. The resource names are those the
//! rehearsal's Terraform root (`crates/gcp-fakes/terraform`) outputs, so
//! `infra up` finds what Terraform would have made.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;

use crate::bigquery::BigQuery;
use crate::contract::Discovery;
use crate::dataproc::{Dataproc, DataprocConfig};
use crate::front::{self, Call, Front};
use crate::gcs::{FakeGcs, Gcs};
use crate::iam::{Iam, Parties};
use crate::postgres::Postgres;
use crate::services::Services;
use crate::sqladmin::{SqlAdmin, SqlInstance};

/// A throwaway RSA key made for tests: never a real credential.
pub const TEST_KEY: &str = include_str!("../testdata/TEST-ONLY-service-account-key.pem");
pub const TEST_PUBLIC_KEY: &[u8] =
    include_bytes!("../testdata/TEST-ONLY-service-account-key.pub.der");

/// What the rehearsal's Terraform root names, for a project.
#[derive(Debug, Clone)]
pub struct Names {
    pub project: String,
    pub region: String,
    pub raw_bucket: String,
    pub staging_bucket: String,
    pub code_bucket: String,
    /// Where Dataproc puts driver output (a cluster's `configBucket` wins).
    pub dataproc_bucket: String,
    pub sql_instance: String,
    pub database: String,
    pub database_user: String,
    pub dataset: String,
    pub network: String,
    pub peering: String,
    pub service_account: String,
    /// Who runs `infra up` here: the member the written credentials stand for.
    pub operator: String,
    /// The Cloud SQL instance's own service account.
    pub cloudsql_account: String,
}

impl Names {
    /// The identities and resources IAM binds, for [`Iam::load`].
    pub fn parties(&self) -> Parties {
        Parties {
            project: self.project.clone(),
            operator: self.operator.clone(),
            pipeline: self.service_account.clone(),
            cloudsql_instance: self.cloudsql_account.clone(),
            buckets: [
                ("raw", &self.raw_bucket),
                ("staging", &self.staging_bucket),
                ("code", &self.code_bucket),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.clone()))
            .collect(),
            dataset: self.dataset.clone(),
        }
    }

    /// Must agree with `crates/gcp-fakes/terraform/main.tf`.
    pub fn for_project(project: &str, region: &str) -> Names {
        Names {
            project: project.to_owned(),
            region: region.to_owned(),
            raw_bucket: format!("{project}-raw"),
            staging_bucket: format!("{project}-staging"),
            code_bucket: format!("{project}-code"),
            dataproc_bucket: format!("{project}-dataproc"),
            sql_instance: "infra-pg".into(),
            database: "bootcampdb".into(),
            database_user: "bootcamp".into(),
            dataset: "bootcamp".into(),
            network: "infra-vpc".into(),
            peering: "servicenetworking-googleapis-com".into(),
            service_account: format!("infra-pipeline@{project}.iam.gserviceaccount.com"),
            operator: format!("serviceAccount:rehearsal@{project}.iam.gserviceaccount.com"),
            cloudsql_account: "p123456789-ab12cd@gcp-sa-cloud-sql.iam.gserviceaccount.com".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct StackConfig {
    /// Google's discovery documents (`googleapiclient/discovery_cache/documents`).
    pub documents: PathBuf,
    /// PostgreSQL's data, job work dirs, DuckDB; its parents must be
    /// traversable by `postgres` when we are root.
    pub work: PathBuf,
    pub fake_gcs_binary: PathBuf,
    pub spark_submit: PathBuf,
    pub spark_master: String,
    pub names: Names,
    /// How long a Dataproc cluster stays CREATING here.
    pub cluster_startup: Duration,
    /// Append every call and event to this JSON-lines file.
    pub log: Option<PathBuf>,
    /// Permissions withdrawn from every role (`GCP_FAKES_REVOKE` for the binary).
    pub revoke: Vec<String>,
}

/// The REFRESH token of the TEST-ONLY `authorized_user` file.
const USER_REFRESH_TOKEN: &str = "rehearsal-refresh-token-TEST-ONLY";

/// Where the real Terraform modules and the vendored role definitions are.
fn iam_sources() -> (PathBuf, PathBuf) {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    (
        crate_dir.join("../../terraform/modules"),
        crate_dir.join("iam/predefined-roles.json"),
    )
}

/// Base URLs of the stand-ins.
#[derive(Debug, Clone)]
pub struct Urls {
    pub storage: String,
    pub dataproc: String,
    pub bigquery: String,
    pub sqladmin: String,
    pub serviceusage: String,
    pub compute: String,
    pub iam_credentials: String,
    pub token: String,
}

pub struct Stack {
    pub front: Front,
    pub names: Names,
    pub urls: Urls,
    pub gcs: FakeGcs,
    pub dataproc: Dataproc,
    pub bigquery: BigQuery,
    pub sql: SqlAdmin,
    pub services: Services,
    postgres: Arc<Postgres>,
}

async fn serve(
    docs: Vec<Arc<Discovery>>,
    front: &Front,
    dispatch: front::Dispatch,
) -> Result<String> {
    let addr = front::serve(docs, front.clone(), 0, dispatch).await?;
    Ok(format!("http://{addr}"))
}

impl Stack {
    pub async fn start(config: &StackConfig) -> Result<Stack> {
        let front = Front::new();
        if let Some(log) = &config.log {
            front.log_to(log)?;
        }
        let load = |name: &str| -> Result<Arc<Discovery>> {
            Ok(Arc::new(Discovery::load(&config.documents, name)?))
        };
        let names = config.names.clone();
        let (modules, roles) = iam_sources();
        let iam = Iam::load(&modules, &roles, &names.parties(), &config.revoke)?;
        iam.add_refresh_token(USER_REFRESH_TOKEN, &names.operator);
        front.enforce(iam, &names.cloudsql_account);
        std::fs::create_dir_all(&config.work)
            .with_context(|| format!("cannot create {}", config.work.display()))?;
        let gcs = FakeGcs::spawn(
            &config.fake_gcs_binary,
            &config.work.join("gcs"),
            "memory",
            None,
        )?;
        let client = Gcs::new(&gcs.url);
        for bucket in [
            &names.raw_bucket,
            &names.staging_bucket,
            &names.code_bucket,
            &names.dataproc_bucket,
        ] {
            client.create_bucket(bucket).await?;
        }
        let postgres = Arc::new(Postgres::start(&config.work.join("postgres")).await?);
        postgres
            .ensure_database(&names.database, &names.database_user)
            .await?;

        let jobs = config.work.join("jobs");
        std::fs::create_dir_all(&jobs)?;
        let dataproc = Dataproc::new(
            front.clone(),
            client.clone(),
            DataprocConfig {
                spark_submit: config.spark_submit.clone(),
                master: config.spark_master.clone(),
                work: jobs.clone(),
                staging_bucket: names.dataproc_bucket.clone(),
                startup: config.cluster_startup,
            },
        );
        let bigquery = BigQuery::new(
            front.clone(),
            client.clone(),
            &names.project,
            config.work.clone(),
        )?;
        bigquery.add_dataset(&names.dataset)?;
        let sql = SqlAdmin::new(
            front.clone(),
            client.clone(),
            postgres.clone(),
            SqlInstance {
                project: names.project.clone(),
                name: names.sql_instance.clone(),
                region: names.region.clone(),
                database: names.database.clone(),
                user: names.database_user.clone(),
            },
            jobs,
        );
        let services = Services::new(
            front.clone(),
            &names.project,
            &names.network,
            &names.peering,
        );

        let d = dataproc.clone();
        let dataproc_url = serve(
            vec![load("dataproc.v1")?],
            &front,
            Arc::new(move |call: Call| {
                let d = d.clone();
                Box::pin(async move { d.dispatch(call).await })
            }),
        )
        .await?;
        let b = bigquery.clone();
        let bigquery_url = serve(
            vec![load("bigquery.v2")?],
            &front,
            Arc::new(move |call: Call| {
                let b = b.clone();
                Box::pin(async move { b.dispatch(call).await })
            }),
        )
        .await?;
        let q = sql.clone();
        let sqladmin_url = serve(
            vec![load("sqladmin.v1")?],
            &front,
            Arc::new(move |call: Call| {
                let q = q.clone();
                Box::pin(async move { q.dispatch(call).await })
            }),
        )
        .await?;
        let s = services.clone();
        let serviceusage_url = serve(
            vec![load("serviceusage.v1")?],
            &front,
            Arc::new(move |call: Call| {
                let s = s.clone();
                Box::pin(async move { s.dispatch(call).await })
            }),
        )
        .await?;
        let s = services.clone();
        let compute_url = serve(
            vec![load("compute.v1")?],
            &front,
            Arc::new(move |call: Call| {
                let s = s.clone();
                Box::pin(async move { s.dispatch(call).await })
            }),
        )
        .await?;
        let token = crate::server::serve_on(0, crate::token::handler(front.clone())).await?;
        let storage = crate::gcs_front::serve(front.clone(), gcs.url.clone()).await?;
        let urls = Urls {
            storage: format!("http://{storage}"),
            dataproc: dataproc_url,
            bigquery: bigquery_url,
            sqladmin: sqladmin_url,
            serviceusage: serviceusage_url,
            compute: compute_url,
            iam_credentials: format!("http://{token}"),
            token: format!("http://{token}/token"),
        };
        Ok(Stack {
            front,
            names,
            urls,
            gcs,
            dataproc,
            bigquery,
            sql,
            services,
            postgres,
        })
    }

    /// Writes the operator's credentials: a service-account key file (the
    /// TEST-ONLY key) whose `token_uri` is the stand-ins' token endpoint,
    /// or, for a `user:` operator, an `authorized_user` file as `gcloud auth
    /// application-default login` writes it, with its `quota_project_id`
    /// (none when `quota_project` is `None`).
    pub fn write_credentials(&self, path: &Path) -> Result<()> {
        self.write_credentials_with(path, Some(&self.names.project))
    }

    pub fn write_credentials_with(&self, path: &Path, quota_project: Option<&str>) -> Result<()> {
        let key = match self.names.operator.strip_prefix("user:") {
            Some(_) => {
                let mut file = json!({
                    "type": "authorized_user",
                    "client_id": "rehearsal-client.apps.googleusercontent.com",
                    "client_secret": "rehearsal-secret-TEST-ONLY",
                    "refresh_token": USER_REFRESH_TOKEN,
                    "token_uri": self.urls.token,
                });
                if let Some(project) = quota_project {
                    file["quota_project_id"] = json!(project);
                }
                file
            }
            None => json!({
                "type": "service_account",
                "project_id": self.names.project,
                "private_key_id": "rehearsal-test-only",
                "private_key": TEST_KEY,
                "client_email": self.names.operator.trim_start_matches("serviceAccount:"),
                "client_id": "1",
                "token_uri": self.urls.token,
            }),
        };
        std::fs::write(path, key.to_string())
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// The environment that points `infra --target gcp` at the stand-ins.
    pub fn env(&self, credentials: &Path) -> Vec<(String, String)> {
        let u = &self.urls;
        [
            ("INFRA_ENDPOINTS_STORAGE", u.storage.as_str()),
            ("INFRA_ENDPOINTS_DATAPROC", &u.dataproc),
            ("INFRA_ENDPOINTS_BIGQUERY", &u.bigquery),
            ("INFRA_ENDPOINTS_SQLADMIN", &u.sqladmin),
            ("INFRA_ENDPOINTS_IAM_CREDENTIALS", &u.iam_credentials),
            ("INFRA_ENDPOINTS_OAUTH2", &u.iam_credentials),
            ("INFRA_ENDPOINTS_SERVICEUSAGE", &u.serviceusage),
            ("INFRA_ENDPOINTS_COMPUTE", &u.compute),
            ("STORAGE_EMULATOR_HOST", &u.storage),
            (
                "GOOGLE_APPLICATION_CREDENTIALS",
                &credentials.display().to_string(),
            ),
            ("GOOGLE_CLOUD_PROJECT", &self.names.project),
            ("NO_GCE_CHECK", "True"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// Kills running Spark jobs and stops PostgreSQL and fake-gcs-server.
    pub fn stop(self) {
        self.dataproc.kill_all();
        self.postgres.stop();
        drop(self.gcs);
    }
}
