# The pipeline's service account and its project roles. Roles are granted
# one member at a time (google_project_iam_member): never authoritatively,
# so grants made by others in the project are left alone. No key is created;
# callers use Workload Identity, attached service accounts or impersonation.

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

variable "roles" {
  description = "Project roles the pipeline's service account holds."
  type        = set(string)
  default = [
    "roles/bigquery.user",
    "roles/cloudsql.editor",
    "roles/dataproc.admin",
    "roles/dataproc.worker",
    "roles/iam.serviceAccountUser",
    "roles/storage.objectAdmin",
  ]
}

resource "google_service_account" "pipeline" {
  project      = var.project
  account_id   = "${var.name}-pipeline"
  display_name = "${var.name} pipeline"
  description  = "Runs the batch analytics pipeline and its Dataproc VMs."
}

resource "google_project_iam_member" "pipeline" {
  for_each = var.roles

  project = var.project
  role    = each.value
  member  = "serviceAccount:${google_service_account.pipeline.email}"
}

output "email" {
  description = "The pipeline service account's email."
  value       = google_service_account.pipeline.email
}

output "roles" {
  description = "The roles granted, sorted."
  value       = sort([for grant in google_project_iam_member.pipeline : grant.role])
}
