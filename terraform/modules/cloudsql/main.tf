# Cloud SQL for PostgreSQL: the pipeline's source database. Private IP by
# default; a public IP only on request, and then only the operator CIDR is
# an authorized network. Every connection must use TLS. Backups with
# point-in-time recovery are on.

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
  description = "Project the instance belongs to."
  type        = string
}

variable "name" {
  description = "Prefix of the instance name (the deployment name)."
  type        = string
}

variable "region" {
  description = "Region of the instance."
  type        = string
}

variable "private_network" {
  description = "VPC id the instance gets its private IP in (peered through service networking)."
  type        = string
}

variable "database_version" {
  description = "PostgreSQL major version."
  type        = number
  default     = 15
}

variable "tier" {
  description = "Machine tier."
  type        = string
  default     = "db-custom-1-3840"
}

variable "database" {
  description = "Name of the database to create."
  type        = string
  default     = "bootcampdb"
}

variable "user" {
  description = "Name of the user the pipeline connects as."
  type        = string
  default     = "bootcamp"
}

variable "public_ip" {
  description = "Give the instance a public IP (reachable only from operator_cidr, or through the Cloud SQL connectors)."
  type        = bool
  default     = false
}

variable "operator_cidr" {
  description = "CIDR allowed to reach the public IP. Null: none."
  type        = string
  default     = null

  validation {
    condition     = var.operator_cidr == null || !endswith(coalesce(var.operator_cidr, "x"), "/0")
    error_message = "operator_cidr must not open the instance to the whole internet (/0)."
  }
}

variable "deletion_protection" {
  description = "Refuse to destroy the instance (Terraform-side guard)."
  type        = bool
  default     = false
}

variable "labels" {
  description = "Labels for the instance."
  type        = map(string)
  default = {
    managed-by = "infra"
  }
}

# Instance names can't be reused for about a week after a delete, so every
# instance gets a fresh suffix.
resource "random_id" "instance" {
  byte_length = 3
}

# The SQL user's password exists only while Terraform runs: an ephemeral
# value, passed write-only (`password_wo`), so neither the plan nor the
# state holds it. Nothing in infra logs in with it: Cloud SQL's imports and
# exports run inside the instance, and the user exists to own the tables.
ephemeral "random_password" "user" {
  length           = 32
  special          = true
  override_special = "-_.~"
}

resource "google_sql_database_instance" "postgres" {
  project             = var.project
  name                = "${var.name}-pg-${random_id.instance.hex}"
  region              = var.region
  database_version    = "POSTGRES_${var.database_version}"
  deletion_protection = var.deletion_protection

  settings {
    tier              = var.tier
    edition           = "ENTERPRISE"
    availability_type = "ZONAL"
    disk_autoresize   = true
    user_labels       = var.labels

    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
      start_time                     = "03:00"

      backup_retention_settings {
        retained_backups = 7
      }
    }

    ip_configuration {
      ipv4_enabled    = var.public_ip
      private_network = var.private_network
      ssl_mode        = "ENCRYPTED_ONLY"

      enable_private_path_for_google_cloud_services = true

      dynamic "authorized_networks" {
        for_each = var.operator_cidr == null ? [] : [var.operator_cidr]
        content {
          name  = "operator"
          value = authorized_networks.value
        }
      }
    }

    insights_config {
      query_insights_enabled = true
    }

    # Logging flags recommended by the CIS benchmark for Cloud SQL PostgreSQL.
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "log_duration"
      value = "on"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
  }
}

# The database and the user go with the instance. Deleting them first
# fails once step 0 has created tables as the user ("role cannot be dropped
# because some objects depend on it") and races the database's deletion,
# so a destroy only forgets them.
resource "google_sql_database" "pipeline" {
  project         = var.project
  name            = var.database
  instance        = google_sql_database_instance.postgres.name
  deletion_policy = "ABANDON"
}

resource "google_sql_user" "pipeline" {
  project             = var.project
  name                = var.user
  instance            = google_sql_database_instance.postgres.name
  password_wo         = ephemeral.random_password.user.result
  password_wo_version = 1
  deletion_policy     = "ABANDON"
}

output "instance_name" {
  description = "The instance's name."
  value       = google_sql_database_instance.postgres.name
}

output "service_account_email" {
  description = "The instance's own service account: it reads and writes the staging bucket for import and export."
  value       = google_sql_database_instance.postgres.service_account_email_address
}

output "connection_name" {
  description = "project:region:instance, for the Cloud SQL connectors."
  value       = google_sql_database_instance.postgres.connection_name
}

output "ip_address" {
  description = "The public IP when there is one, else the private IP."
  value       = coalesce(google_sql_database_instance.postgres.public_ip_address, google_sql_database_instance.postgres.private_ip_address)
}

output "database" {
  description = "The database's name."
  value       = google_sql_database.pipeline.name
}

output "user" {
  description = "The user's name."
  value       = google_sql_user.pipeline.name
}

