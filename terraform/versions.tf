# Provider and Terraform versions. Pinned to a major so a provider release cannot silently change
# resource defaults (for example deletion_protection) under an existing deployment.
terraform {
  required_version = ">= 1.6.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.30"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
  zone    = var.zone

  default_labels = {
    app        = "binance-pipeline"
    managed-by = "terraform"
  }
}
