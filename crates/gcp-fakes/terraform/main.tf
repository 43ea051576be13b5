# The cloud rehearsal's Terraform root (setting `terraform.root`): the real
# terraform binary runs it, but it holds only the built-in terraform_data
# resource. Google's resources (buckets, Cloud SQL, network, service
# account, dataset) are replaced by the stand-ins `gcp-fakes serve` starts;
# its outputs name exactly what they serve (crates/gcp-fakes/src/stack.rs,
# `Names::for_project`), so the rest of infra learns the names the way it
# does in a real project: from `terraform output -json`.

variable "project" {
  type    = string
  default = "rehearsal-project"
}

variable "region" {
  type    = string
  default = "us-central1"
}

# The real root's deletion-protection variables, so `infra down` can lift
# protection the way it does for the real one.
variable "gke_deletion_protection" {
  type    = bool
  default = false
}

variable "database_deletion_protection" {
  type    = bool
  default = false
}

resource "terraform_data" "rehearsal" {
  input = {
    raw     = "${var.project}-raw"
    staging = "${var.project}-staging"
    code    = "${var.project}-code"
  }
}

output "raw_bucket" {
  value = terraform_data.rehearsal.output.raw
}

output "staging_bucket" {
  value = terraform_data.rehearsal.output.staging
}

output "code_bucket" {
  value = terraform_data.rehearsal.output.code
}

output "sql_connection_name" {
  value = "${var.project}:${var.region}:infra-pg"
}

output "sql_ip" {
  value = "10.99.0.3"
}

output "database_name" {
  value = "bootcampdb"
}

output "database_user" {
  value = "bootcamp"
}


output "service_account_email" {
  value = "infra-pipeline@${var.project}.iam.gserviceaccount.com"
}

output "gke_cluster_name" {
  value = "infra-airflow"
}

output "gke_location" {
  value = "${var.region}-b"
}

output "subnetwork" {
  value = "projects/${var.project}/regions/${var.region}/subnetworks/infra-private"
}

output "dataset" {
  value = "bootcamp"
}
