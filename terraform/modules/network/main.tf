# A VPC with one private subnet: GKE nodes, Dataproc VMs and Cloud SQL's
# private IP live here. Nothing gets an external IP; Cloud NAT gives egress
# (container images, pip), and private services access peers Cloud SQL in.

terraform {
  required_providers {
    google = {
      source = "hashicorp/google"
    }
  }
}

variable "project" {
  description = "Project the network belongs to."
  type        = string
}

variable "name" {
  description = "Prefix of every resource name (the deployment name)."
  type        = string
}

variable "region" {
  description = "Region of the subnet, router and NAT."
  type        = string
}

variable "labels" {
  description = "Labels for the resources that take them."
  type        = map(string)
  default = {
    managed-by = "infra"
  }
}

variable "subnet_cidr" {
  description = "Primary range of the private subnet (nodes, Dataproc VMs)."
  type        = string
  default     = "10.10.0.0/20"
}

variable "pods_cidr" {
  description = "Secondary range for GKE pods."
  type        = string
  default     = "10.20.0.0/16"
}

variable "private_services_address" {
  description = "First address of the range reserved for private services access (Cloud SQL's private IP). Pinned, so it can't land on the GKE control-plane or subnet ranges."
  type        = string
}

variable "private_services_prefix_length" {
  description = "Prefix length of the range reserved for private services access."
  type        = number
}

variable "services_cidr" {
  description = "Secondary range for GKE services."
  type        = string
  default     = "10.30.0.0/20"
}

resource "google_compute_network" "vpc" {
  project                 = var.project
  name                    = "${var.name}-vpc"
  auto_create_subnetworks = false
  routing_mode            = "REGIONAL"
}

resource "google_compute_subnetwork" "private" {
  project                  = var.project
  name                     = "${var.name}-private"
  region                   = var.region
  network                  = google_compute_network.vpc.id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true

  secondary_ip_range {
    range_name    = "pods"
    ip_cidr_range = var.pods_cidr
  }

  secondary_ip_range {
    range_name    = "services"
    ip_cidr_range = var.services_cidr
  }

  log_config {
    aggregation_interval = "INTERVAL_10_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Dataproc nodes talk to each other on every port; nothing else gets in.
resource "google_compute_firewall" "internal" {
  project       = var.project
  name          = "${var.name}-allow-internal"
  network       = google_compute_network.vpc.id
  direction     = "INGRESS"
  source_ranges = [var.subnet_cidr]

  allow {
    protocol = "tcp"
  }

  allow {
    protocol = "udp"
  }

  allow {
    protocol = "icmp"
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_router" "nat" {
  project = var.project
  name    = "${var.name}-router"
  region  = var.region
  network = google_compute_network.vpc.id
}

resource "google_compute_router_nat" "nat" {
  project                            = var.project
  name                               = "${var.name}-nat"
  region                             = var.region
  router                             = google_compute_router.nat.name
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

# Private services access: the range Cloud SQL's private IP comes from.
resource "google_compute_global_address" "private_services" {
  project       = var.project
  name          = "${var.name}-private-services"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  address       = var.private_services_address
  prefix_length = var.private_services_prefix_length
  network       = google_compute_network.vpc.id
  labels        = var.labels
}

# Deleting the connection fails while Cloud SQL still holds the peering,
# which it can do for days after the instance is gone (provider issues
# #16275, #18834, #19908). So a destroy only forgets it, and `infra down`
# removes the peering itself (Compute networks.removePeering of
# servicenetworking-googleapis-com, retried while in use) after the
# instance and before the network.
resource "google_service_networking_connection" "private_services" {
  network                 = google_compute_network.vpc.id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_services.name]
  deletion_policy         = "ABANDON"
}

output "network_id" {
  description = "The VPC's id."
  value       = google_compute_network.vpc.id
}

output "network_name" {
  description = "The VPC's name."
  value       = google_compute_network.vpc.name
}

output "subnetwork_id" {
  description = "The private subnet's id."
  value       = google_compute_subnetwork.private.id
}

output "subnetwork_name" {
  description = "The private subnet's name."
  value       = google_compute_subnetwork.private.name
}

output "pods_range_name" {
  description = "Secondary range name for GKE pods."
  value       = google_compute_subnetwork.private.secondary_ip_range[0].range_name
}

output "services_range_name" {
  description = "Secondary range name for GKE services."
  value       = google_compute_subnetwork.private.secondary_ip_range[1].range_name
}

output "private_services_network" {
  description = "The VPC id, read through the peering so that Cloud SQL waits for it."
  value       = google_service_networking_connection.private_services.network
}
