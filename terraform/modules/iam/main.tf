# The pipeline's service account and every grant it and its helpers need,
# each at the narrowest scope Google offers for it. docs/iam.md lists every
# grant with the step that needs it, and says why each project-level one
# can't be narrower; tests/it/terraform.rs holds the modules to that table.
# Grants are one member at a time (`*_iam_member`), never authoritative, so
# grants made by others are left alone. No key is created; callers use
# Workload Identity, attached service accounts or impersonation.

terraform {
  required_providers {
    google = {
      source = "hashicorp/google"
    }
  }
}

variable "project" {
  description = "Project the service account and its roles belong to."
  type        = string
}

variable "name" {
  description = "Prefix of the service account id (the deployment name)."
  type        = string
}

variable "project_roles" {
  description = "Roles the pipeline's service account holds on the project: only those with no narrower scope (docs/iam.md says why for each)."
  type        = set(string)
  default = [
    "roles/bigquery.user",
    "roles/dataproc.editor",
  ]
}

variable "buckets" {
  description = "The pipeline's buckets by role (raw, staging, code): the pipeline gets roles/storage.objectAdmin on each, and on nothing else."
  type        = map(string)
}

variable "dataset" {
  description = "The warehouse dataset: the pipeline gets roles/bigquery.dataEditor on it."
  type        = string
}

variable "operator" {
  description = "Who runs `infra up`: a `user:` or `serviceAccount:` member. It gets roles/iam.serviceAccountTokenCreator on the pipeline's account, so `infra run` can act as that account. Null: no such grant."
  type        = string
  default     = null
}

variable "sql_service_account" {
  description = "The Cloud SQL instance's own service account: it reads (import) and writes (export) the staging bucket."
  type        = string
}

resource "google_service_account" "pipeline" {
  project      = var.project
  account_id   = "${var.name}-pipeline"
  display_name = "${var.name} pipeline"
  description  = "Runs the batch analytics pipeline and its Dataproc VMs."
}

resource "google_project_iam_member" "pipeline" {
  for_each = var.project_roles

  project = var.project
  role    = each.value
  member  = "serviceAccount:${google_service_account.pipeline.email}"
}

# Dataproc's VMs run as this account and need Dataproc Worker, which Google
# documents at project level only. It also carries storage.objects.* on
# every bucket of the project, the Terraform state bucket included: the
# condition takes every object out of it (the documented pattern for a
# role that spans services: limit by resource.type), and the VMs reach
# objects only through the per-bucket grants below.
resource "google_project_iam_member" "pipeline_dataproc_worker" {
  project = var.project
  role    = "roles/dataproc.worker"
  member  = "serviceAccount:${google_service_account.pipeline.email}"

  condition {
    title       = "no-objects"
    description = "Dataproc Worker without object access: objects come from per-bucket grants."
    expression  = "resource.type != \"storage.googleapis.com/Object\""
  }
}

# Steps 0 and 1 import into and export from Cloud SQL. Cloud SQL has no
# instance-level IAM, and Cloud SQL Editor lacks cloudsql.instances.import
# (Cloud SQL's import page asks for Admin or a custom role): this role holds
# exactly what the import and export pages list, not all of Admin.
resource "google_project_iam_custom_role" "cloudsql_import_export" {
  project     = var.project
  role_id     = "${replace(var.name, "-", "_")}_cloudsql_import_export"
  title       = "${var.name} Cloud SQL import and export"
  description = "Import into and export from Cloud SQL through the Admin API (infra steps 0 and 1)."
  permissions = [
    "cloudsql.instances.export",
    "cloudsql.instances.get",
    "cloudsql.instances.import",
  ]
}

resource "google_project_iam_member" "pipeline_cloudsql" {
  project = var.project
  role    = google_project_iam_custom_role.cloudsql_import_export.name
  member  = "serviceAccount:${google_service_account.pipeline.email}"
}

# `infra run` acts as the pipeline's account through the IAM Credentials
# API: the operator may mint tokens for this one account, and no other.
resource "google_service_account_iam_member" "operator_token_creator" {
  count = var.operator == null ? 0 : 1

  service_account_id = google_service_account.pipeline.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = var.operator
}

# Dataproc clusters run as the pipeline's account, and creating one needs
# actAs on that account: granted on this account only, so the pipeline can't
# act as any other (the Compute default account holds Editor).
resource "google_service_account_iam_member" "pipeline_act_as_self" {
  service_account_id = google_service_account.pipeline.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.pipeline.email}"
}

# Per bucket, never project-wide: the project also holds the Terraform state
# bucket, which is the operator's alone.
resource "google_storage_bucket_iam_member" "pipeline" {
  for_each = var.buckets

  bucket = each.value
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.pipeline.email}"
}

# Load jobs replace the metric table: tables.create/updateData on this
# dataset only (roles/bigquery.user alone can't replace a table Terraform's
# dataset holds).
resource "google_bigquery_dataset_iam_member" "pipeline" {
  project    = var.project
  dataset_id = var.dataset
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.pipeline.email}"
}

# Cloud SQL imports validated rows from, and exports dumps to, staging as
# its own service account.
resource "google_storage_bucket_iam_member" "sql_staging" {
  bucket = var.buckets["staging"]
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${var.sql_service_account}"
}

output "email" {
  description = "The pipeline service account's email."
  value       = google_service_account.pipeline.email
}

output "project_roles" {
  description = "The project-level roles granted, sorted."
  value       = sort(concat([for grant in google_project_iam_member.pipeline : grant.role], [google_project_iam_member.pipeline_cloudsql.role, google_project_iam_member.pipeline_dataproc_worker.role]))
}
