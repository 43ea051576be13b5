# A Standard GKE cluster for Airflow (docs/gke.md says why Standard): one
# zonal node pool whose size and machine type come from the configuration,
# private nodes, Workload Identity, shielded COS nodes that run as a
# dedicated least-privilege service account. The default node pool is
# removed as soon as the cluster exists.

terraform {
  required_providers {
    google = {
      source = "hashicorp/google"
    }
  }
}

variable "project" {
  description = "Project the cluster belongs to."
  type        = string
}

variable "name" {
  description = "Prefix of the cluster and service account names (the deployment name)."
  type        = string
}

variable "zone" {
  description = "Zone of the cluster and its nodes (a zonal cluster keeps node_count exact and cheap)."
  type        = string
}

variable "network" {
  description = "VPC id."
  type        = string
}

variable "subnetwork" {
  description = "Private subnet id."
  type        = string
}

variable "pods_range_name" {
  description = "Subnet secondary range for pods."
  type        = string
}

variable "services_range_name" {
  description = "Subnet secondary range for services."
  type        = string
}

variable "master_cidr" {
  description = "The /28 the control plane's private endpoint uses."
  type        = string
  default     = "172.16.0.0/28"
}

variable "operator_cidr" {
  description = "CIDR allowed to reach the control plane's public endpoint. Null: only from inside the VPC."
  type        = string
  default     = null

  validation {
    condition     = var.operator_cidr == null || !endswith(coalesce(var.operator_cidr, "x"), "/0")
    error_message = "operator_cidr must not open the control plane to the whole internet (/0)."
  }
}

variable "node_count" {
  description = "Nodes in the Airflow node pool."
  type        = number
  default     = 2
}

variable "machine_type" {
  description = "Machine type of the nodes."
  type        = string
  default     = "e2-standard-2"
}

variable "deletion_protection" {
  description = "Refuse to destroy the cluster (Terraform-side guard; `infra down` lifts it first)."
  type        = bool
  default     = false
}

variable "labels" {
  description = "Labels for the cluster and its nodes."
  type        = map(string)
  default = {
    managed-by = "infra"
  }
}

locals {
  # The hardened node settings, shared by the short-lived default pool and the real one.
  oauth_scopes = ["https://www.googleapis.com/auth/cloud-platform"]
  node_metadata = {
    disable-legacy-endpoints = "true"
  }
}

# Nodes run as this account, not the Compute Engine default account (which
# holds Editor on the project).
resource "google_service_account" "nodes" {
  project      = var.project
  account_id   = "${var.name}-gke-nodes"
  display_name = "${var.name} GKE nodes"
  description  = "Runs the GKE nodes that host Airflow; logs, metrics and image pulls only."
}

resource "google_project_iam_member" "nodes" {
  for_each = toset([
    "roles/artifactregistry.reader",
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/monitoring.viewer",
    "roles/stackdriver.resourceMetadata.writer",
  ])

  project = var.project
  role    = each.value
  member  = "serviceAccount:${google_service_account.nodes.email}"
}

resource "google_container_cluster" "airflow" {
  project             = var.project
  name                = "${var.name}-airflow"
  location            = var.zone
  network             = var.network
  subnetwork          = var.subnetwork
  networking_mode     = "VPC_NATIVE"
  datapath_provider   = "ADVANCED_DATAPATH"
  deletion_protection = var.deletion_protection
  resource_labels     = var.labels

  remove_default_node_pool    = true
  initial_node_count          = 1
  enable_shielded_nodes       = true
  enable_intranode_visibility = true
  enable_legacy_abac          = false

  # Dataplane V2 enforces NetworkPolicy itself; the legacy Calico add-on stays off.
  network_policy {
    enabled = false
  }

  ip_allocation_policy {
    cluster_secondary_range_name  = var.pods_range_name
    services_secondary_range_name = var.services_range_name
  }

  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = false
    master_ipv4_cidr_block  = var.master_cidr
  }

  master_authorized_networks_config {
    gcp_public_cidrs_access_enabled = false

    dynamic "cidr_blocks" {
      for_each = var.operator_cidr == null ? [] : [var.operator_cidr]
      content {
        cidr_block   = cidr_blocks.value
        display_name = "operator"
      }
    }
  }

  # Airflow's Terraform root (templates/terraform-airflow) reaches the
  # control plane through its DNS-based endpoint: access is checked by IAM
  # on every request, with no IP allow-list, and the endpoint's certificate
  # is publicly signed.
  control_plane_endpoints_config {
    dns_endpoint_config {
      allow_external_traffic = true
    }
  }

  master_auth {
    client_certificate_config {
      issue_client_certificate = false
    }
  }

  workload_identity_config {
    workload_pool = "${var.project}.svc.id.goog"
  }

  release_channel {
    channel = "REGULAR"
  }

  # Applies to the default pool for the minute it exists: even it gets no
  # legacy scopes, no legacy metadata endpoints and the nodes' own account.
  node_config {
    service_account = google_service_account.nodes.email
    oauth_scopes    = local.oauth_scopes
    metadata        = local.node_metadata
    image_type      = "COS_CONTAINERD"
    resource_labels = var.labels

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }
  }
}

resource "google_container_node_pool" "airflow" {
  project    = var.project
  name       = "airflow"
  cluster    = google_container_cluster.airflow.id
  location   = var.zone
  node_count = var.node_count

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    machine_type    = var.machine_type
    image_type      = "COS_CONTAINERD"
    disk_type       = "pd-balanced"
    disk_size_gb    = 50
    service_account = google_service_account.nodes.email
    oauth_scopes    = local.oauth_scopes
    metadata        = local.node_metadata
    labels          = var.labels
    resource_labels = var.labels

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }
  }
}

output "cluster_name" {
  description = "The cluster's name."
  value       = google_container_cluster.airflow.name
}

output "location" {
  description = "The cluster's zone."
  value       = google_container_cluster.airflow.location
}

output "workload_pool" {
  description = "The Workload Identity pool (PROJECT.svc.id.goog)."
  value       = google_container_cluster.airflow.workload_identity_config[0].workload_pool
}
