terraform {
  required_version = ">= 1.6.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }
  # Remote state: S3 with DynamoDB locking, encrypted with a KMS key you create first.
  # Configure at init time (docs/deploy.md):
  #   terraform init -backend-config=bucket=… -backend-config=key=medai/production.tfstate \
  #     -backend-config=region=… -backend-config=dynamodb_table=… -backend-config=encrypt=true \
  #     -backend-config=kms_key_id=…
  backend "s3" {}
}

provider "aws" {
  region = var.region
  default_tags {
    tags = {
      application = "medai"
      environment = var.environment
      data-class  = "phi"
    }
  }
}

provider "aws" {
  alias  = "replica"
  region = var.replica_region
  default_tags {
    tags = {
      application = "medai"
      environment = var.environment
      data-class  = "phi"
    }
  }
}
