//! The second Terraform root: Airflow on the GKE cluster, through the
//! official `apache-airflow` chart and the `hashicorp/helm` provider.
//!
//! It is rendered into `<state-dir>/terraform-airflow/` from the settings
//! and the main root's outputs, so it exists only once the cluster does:
//! the helm provider cannot connect to a cluster that is not there yet
//! (terraform-provider-helm#1181). `up` applies it after the main root and
//! `down` destroys it first. Its state sits beside the main root's, in the
//! same bucket, under `<deployment>-airflow`.
//!
//! ```text
//! versions.tf           pins, backend, the google and helm providers (the DNS endpoint, a token)
//! variables.tf          what the main root's outputs fill in
//! terraform.tfvars      their values
//! main.tf               the metadata database and user, Workload Identity, helm_release
//! airflow-values.yaml   the chart's values (no secret: the password is set_sensitive)
//! ```

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use super::render::hcl_string;
use super::{Outputs, RootValues};
use crate::assets;
use crate::settings::Settings;

/// The chart release `helm_release` installs.
pub const CHART_VERSION: &str = "1.22.0";

/// The Airflow the chart runs: the image tag, and the version the DAG tests load.
pub const AIRFLOW_VERSION: &str = "3.3.2";

/// Where the Airflow root is rendered: `<state-dir>/terraform-airflow`.
pub fn root_dir(settings: &Settings) -> PathBuf {
    settings.state_dir.join("terraform-airflow")
}

/// Airflow's executors `airflow.executor` may name.
const EXECUTORS: [&str; 2] = ["KubernetesExecutor", "LocalExecutor"];

/// Everything the Airflow root is rendered from.
#[derive(Debug, Clone)]
pub struct AirflowValues {
    pub project: String,
    pub region: String,
    pub deployment: String,
    pub state_bucket: String,
    pub impersonate_service_account: Option<String>,
    pub gke_cluster_name: String,
    pub gke_location: String,
    pub sql_instance: String,
    pub service_account_email: String,
    pub code_bucket: String,
    pub executor: String,
    pub task_cpu: String,
    pub task_memory: String,
}

impl AirflowValues {
    /// From the main root's values and outputs, and the `airflow.*` settings.
    pub fn new(settings: &Settings, root: &RootValues, outputs: &Outputs) -> Result<AirflowValues> {
        if !EXECUTORS.contains(&settings.airflow_executor.as_str()) {
            bail!(
                "invalid `airflow.executor` = `{}`: expected {}\nhint: Celery is not offered: Redis and always-on workers for tasks that only submit and poll API calls",
                settings.airflow_executor,
                EXECUTORS.join(" or ")
            );
        }
        for (key, value) in [
            ("airflow.task_cpu", &settings.airflow_task_cpu),
            ("airflow.task_memory", &settings.airflow_task_memory),
        ] {
            if value.is_empty() || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
                bail!(
                    "invalid `{key}` = `{value}`: expected a Kubernetes quantity such as 500m or 1Gi"
                );
            }
        }
        let sql_instance = outputs
            .sql_connection_name
            .rsplit(':')
            .next()
            .context("the Cloud SQL connection name is empty")?
            .to_owned();
        Ok(AirflowValues {
            project: root.project.clone(),
            region: root.region.clone(),
            deployment: root.deployment.clone(),
            state_bucket: root.state_bucket.clone(),
            impersonate_service_account: root.impersonate_service_account.clone(),
            gke_cluster_name: outputs.gke_cluster_name.clone(),
            gke_location: outputs.gke_location.clone(),
            sql_instance,
            service_account_email: outputs.service_account_email.clone(),
            code_bucket: outputs.code_bucket.clone(),
            executor: settings.airflow_executor.clone(),
            task_cpu: settings.airflow_task_cpu.clone(),
            task_memory: settings.airflow_task_memory.clone(),
        })
    }

    fn context(&self) -> tera::Context {
        let mut c = tera::Context::new();
        let yaml = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
        c.insert("project", &hcl_string(&self.project));
        c.insert("region", &hcl_string(&self.region));
        c.insert(
            "impersonate_service_account",
            &self
                .impersonate_service_account
                .as_deref()
                .map_or_else(|| "null".to_owned(), hcl_string),
        );
        c.insert("state_bucket", &hcl_string(&self.state_bucket));
        c.insert(
            "state_prefix",
            &hcl_string(&format!("{}-airflow", self.deployment)),
        );
        c.insert("gke_cluster_name", &hcl_string(&self.gke_cluster_name));
        c.insert("gke_location", &hcl_string(&self.gke_location));
        c.insert("sql_instance", &hcl_string(&self.sql_instance));
        c.insert("namespace", &hcl_string("airflow"));
        c.insert("chart_version", &hcl_string(CHART_VERSION));
        // YAML takes JSON strings as they are: every value below is one.
        c.insert("chart_version_text", CHART_VERSION);
        c.insert("deployment", &self.deployment);
        c.insert("airflow_version", &yaml(AIRFLOW_VERSION));
        c.insert("executor", &yaml(&self.executor));
        let bundles = serde_json::json!([{
            "name": "infra",
            "classpath": "airflow.providers.google.cloud.bundles.gcs.GCSDagBundle",
            "kwargs": {
                "bucket_name": self.code_bucket,
                "prefix": crate::airflow::DAGS_PREFIX,
                "gcp_conn_id": "google_cloud_default",
            },
        }]);
        c.insert("dag_bundles", &yaml(&bundles.to_string()));
        let connection = serde_json::json!({
            "conn_type": "google_cloud_platform",
            "extra": { "project": self.project },
        });
        c.insert("google_connection", &yaml(&connection.to_string()));
        c.insert("service_account_email", &yaml(&self.service_account_email));
        c.insert("task_cpu", &yaml(&self.task_cpu));
        c.insert("task_memory", &yaml(&self.task_memory));
        // Tasks run in worker pods (KubernetesExecutor) or in the
        // scheduler (LocalExecutor): that component gets the task resources.
        let tasks_in = if self.executor == "LocalExecutor" {
            "scheduler"
        } else {
            "workers"
        };
        let components: Vec<serde_json::Value> = [
            "apiServer",
            "dagProcessor",
            "scheduler",
            "triggerer",
            "workers",
        ]
        .iter()
        .map(|key| serde_json::json!({"key": key, "resources": *key == tasks_in}))
        .collect();
        c.insert("components", &components);
        // The HCL context holds the HCL-quoted email; the values file's is set above.
        c.insert(
            "service_account_email_hcl",
            &hcl_string(&self.service_account_email),
        );
        c
    }
}

/// The rendered Airflow root: (file name, contents), sorted by name.
pub fn render(values: &AirflowValues) -> Result<Vec<(String, String)>> {
    let mut tera = tera::Tera::default();
    tera.autoescape_on(Vec::new());
    for (name, template) in assets::AIRFLOW_TERRAFORM_TEMPLATES {
        tera.add_raw_template(name, template).with_context(|| {
            format!("template templates/terraform-airflow/{name}.tera does not parse")
        })?;
    }
    let context = values.context();
    let mut files = Vec::new();
    for (name, _) in assets::AIRFLOW_TERRAFORM_TEMPLATES {
        let text = tera
            .render(name, &context)
            .with_context(|| format!("cannot render templates/terraform-airflow/{name}.tera"))?;
        files.push(((*name).to_owned(), text));
    }
    files.sort();
    Ok(files)
}
