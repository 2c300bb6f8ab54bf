# Provider and Terraform versions. Pinned to a major so a provider release cannot silently change
# resource defaults (for example deletion_protection) under an existing deployment. The lower bound
# is the provider version tests/terraform/test_provider_schema.py checks this configuration
# against (6.50.0, see scripts/setup-provider-schema); the test fails if the two drift apart.
terraform {
  required_version = ">= 1.6.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.50"
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
