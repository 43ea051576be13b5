//! Files `infra` carries inside its binary, so it runs from any directory.
//!
//! The sources stay readable where a user expects them (`sql/`,
//! `pyspark/`); they are compiled in here and written out or uploaded by
//! the steps that need them.

/// Step 0's DDL.
pub const CREATE_SCHEMA_SQL: &str = include_str!("../sql/create_schema.sql");

/// The pins of the venv that runs Spark locally.
pub const PYSPARK_REQUIREMENTS: &str = include_str!("../pyspark/requirements.txt");

/// The PySpark jobs `up` uploads to the code bucket: (key, contents).
pub const PYSPARK_SCRIPTS: &[(&str, &str)] = &[
    ("tokenizer.py", include_str!("../pyspark/tokenizer.py")),
    (
        "user_behavior.py",
        include_str!("../pyspark/user_behavior.py"),
    ),
];

/// The reusable Terraform modules, copied into every rendered root under
/// `modules/` so the root is self-contained: (path in the root, contents).
pub const TERRAFORM_MODULES: &[(&str, &str)] = &[
    (
        "modules/buckets/main.tf",
        include_str!("../terraform/modules/buckets/main.tf"),
    ),
    (
        "modules/cloudsql/main.tf",
        include_str!("../terraform/modules/cloudsql/main.tf"),
    ),
    (
        "modules/gke/main.tf",
        include_str!("../terraform/modules/gke/main.tf"),
    ),
    (
        "modules/iam/main.tf",
        include_str!("../terraform/modules/iam/main.tf"),
    ),
    (
        "modules/network/main.tf",
        include_str!("../terraform/modules/network/main.tf"),
    ),
    (
        "modules/services/main.tf",
        include_str!("../terraform/modules/services/main.tf"),
    ),
    (
        "modules/warehouse/main.tf",
        include_str!("../terraform/modules/warehouse/main.tf"),
    ),
];

/// The Tera templates of the root module: (rendered file name, template).
pub const TERRAFORM_TEMPLATES: &[(&str, &str)] = &[
    (
        "main.tf",
        include_str!("../templates/terraform/main.tf.tera"),
    ),
    (
        "outputs.tf",
        include_str!("../templates/terraform/outputs.tf.tera"),
    ),
    (
        "terraform.tfvars",
        include_str!("../templates/terraform/terraform.tfvars.tera"),
    ),
    (
        "variables.tf",
        include_str!("../templates/terraform/variables.tf.tera"),
    ),
    (
        "versions.tf",
        include_str!("../templates/terraform/versions.tf.tera"),
    ),
];

/// The Airflow DAG's template (`infra dags`).
pub const AIRFLOW_DAG_TEMPLATE: &str = include_str!("../templates/airflow/dag.py.tera");

/// Step 0's validator in Python, shipped beside the DAG as it is.
pub const AIRFLOW_VALIDATOR: &str = include_str!("../templates/airflow/infra_purchases.py");

/// The Tera templates of the Airflow root: (rendered file name, template).
pub const AIRFLOW_TERRAFORM_TEMPLATES: &[(&str, &str)] = &[
    (
        "airflow-values.yaml",
        include_str!("../templates/terraform-airflow/airflow-values.yaml.tera"),
    ),
    (
        "main.tf",
        include_str!("../templates/terraform-airflow/main.tf.tera"),
    ),
    (
        "terraform.tfvars",
        include_str!("../templates/terraform-airflow/terraform.tfvars.tera"),
    ),
    (
        "variables.tf",
        include_str!("../templates/terraform-airflow/variables.tf.tera"),
    ),
    (
        "versions.tf",
        include_str!("../templates/terraform-airflow/versions.tf.tera"),
    ),
];
