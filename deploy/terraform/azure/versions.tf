terraform {
  required_version = ">= 1.11.0"
  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.23"
    }
  }
  # Remote state: an Azure Storage container (versioning, soft delete, CMK) created first.
  #   terraform init -backend-config=resource_group_name=… -backend-config=storage_account_name=… \
  #     -backend-config=container_name=tfstate -backend-config=key=medai/production.tfstate \
  #     -backend-config=use_azuread_auth=true
  backend "azurerm" {}
}

provider "azurerm" {
  features {
    key_vault {
      purge_soft_delete_on_destroy = false
    }
  }
  subscription_id     = var.subscription_id
  storage_use_azuread = true
}
