# The Google APIs the deployment uses. They stay enabled on destroy: other
# resources in the project may rely on them, and turning an API off can
# delete data held by that service. cloudresourcemanager, serviceusage and
# iamcredentials are enabled by `infra up` before `terraform init` too
# (Terraform needs them to enable the others and to impersonate); they are
# listed here so the set is complete in one place Terraform can see.

terraform {
  required_providers {
    google = {
      source = "hashicorp/google"
    }
  }
}

variable "project" {
  description = "Project to enable the APIs in."
  type        = string
}

variable "services" {
  description = "API service names, such as container.googleapis.com."
  type        = set(string)
  default = [
    "bigquery.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "compute.googleapis.com",
    "container.googleapis.com",
    "dataproc.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "servicenetworking.googleapis.com",
    "serviceusage.googleapis.com",
    "sqladmin.googleapis.com",
    "storage.googleapis.com",
  ]
}

resource "google_project_service" "api" {
  for_each = var.services

  project            = var.project
  service            = each.value
  disable_on_destroy = false
}

output "enabled" {
  description = "The enabled API service names."
  value       = sort([for api in google_project_service.api : api.service])
}
