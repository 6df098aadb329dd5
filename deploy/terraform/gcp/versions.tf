terraform {
  required_version = ">= 1.6.0"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.14"
    }
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 6.14"
    }
  }
  # Remote state: a GCS bucket with versioning and a CMEK key, created before this stack.
  #   terraform init -backend-config=bucket=… -backend-config=prefix=medai/production
  backend "gcs" {}
}

provider "google-beta" {
  project = var.project_id
  region  = var.region
}

provider "google" {
  project = var.project_id
  region  = var.region
  default_labels = {
    application = "medai"
    environment = var.environment
    data-class  = "phi"
  }
}
