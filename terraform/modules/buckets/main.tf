# The pipeline's three buckets: raw inputs, staging between steps, and the
# PySpark code. Names are global, so the default is the project id plus a
# random suffix; none is ever public.

terraform {
  required_providers {
    google = {
      source = "hashicorp/google"
    }
    random = {
      source = "hashicorp/random"
    }
  }
}

variable "project" {
  description = "Project the buckets belong to."
  type        = string
}

variable "location" {
  description = "Bucket location (the region, so Dataproc reads locally)."
  type        = string
}

variable "names" {
  description = "Bucket name per role (raw, staging, code); a null name is derived from the project and a random suffix."
  type = object({
    raw     = optional(string)
    staging = optional(string)
    code    = optional(string)
  })
  default = {}
}

variable "force_destroy" {
  description = "Let a destroy delete buckets that still hold objects."
  type        = bool
  default     = false
}

variable "noncurrent_version_days" {
  description = "Days an overwritten or deleted object version is kept."
  type        = number
  default     = 7
}

variable "labels" {
  description = "Labels for every bucket."
  type        = map(string)
  default = {
    managed-by = "infra"
  }
}

resource "random_id" "suffix" {
  byte_length = 3
}

locals {
  names = {
    for role in ["raw", "staging", "code"] :
    role => coalesce(var.names[role], "${var.project}-${role}-${random_id.suffix.hex}")
  }
}

resource "google_storage_bucket" "bucket" {
  for_each = local.names

  project                     = var.project
  name                        = each.value
  location                    = var.location
  force_destroy               = var.force_destroy
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = merge(var.labels, { role = each.key })

  # Versions protect against an accidental overwrite; the lifecycle rule keeps
  # them from piling up.
  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }
}

output "names" {
  description = "Bucket name per role."
  value       = { for role, bucket in google_storage_bucket.bucket : role => bucket.name }
}
