# The BigQuery dataset the pipeline loads its metric into. The tables are
# the pipeline's, not Terraform's: `infra down` deletes them before the
# destroy, so the dataset never has to be destroyed with its contents.

terraform {
  required_providers {
    google = {
      source = "hashicorp/google"
    }
  }
}

variable "project" {
  description = "Project the dataset belongs to."
  type        = string
}

variable "dataset" {
  description = "Dataset id."
  type        = string
}

variable "location" {
  description = "Dataset location (the region, next to the buckets)."
  type        = string
}

variable "labels" {
  description = "Labels for the dataset."
  type        = map(string)
  default = {
    managed-by = "infra"
  }
}

resource "google_bigquery_dataset" "warehouse" {
  project                    = var.project
  dataset_id                 = var.dataset
  location                   = var.location
  description                = "Batch analytics results, written by infra run."
  delete_contents_on_destroy = false
  labels                     = var.labels
}

output "dataset_id" {
  description = "The dataset id."
  value       = google_bigquery_dataset.warehouse.dataset_id
}
