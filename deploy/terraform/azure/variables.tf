variable "subscription_id" {
  description = "Azure subscription of the deployment."
  type        = string
}

variable "location" {
  description = "Azure region (with availability zones)."
  type        = string
  default     = "westeurope"
}

variable "environment" {
  description = "Environment name used in resource names (e.g. production)."
  type        = string
  default     = "production"
}

variable "host" {
  description = "Public host name of medai."
  type        = string
}

variable "vnet_cidr" {
  description = "Address space of the virtual network."
  type        = string
  default     = "10.40.0.0/16"
}

variable "admin_cidrs" {
  description = "CIDRs allowed to reach the AKS API server and Key Vault (your bastion or VPN)."
  type        = list(string)
}

variable "admin_group_object_ids" {
  description = "Entra ID groups that administer the AKS cluster."
  type        = list(string)
}

variable "kubernetes_version" {
  description = "AKS Kubernetes version (1.30 or newer)."
  type        = string
  default     = "1.31"
}

variable "gpu_vm_size" {
  description = "VM size of the GPU node pool."
  type        = string
  default     = "Standard_NC8as_T4_v3"
}

variable "postgres_sku" {
  description = "PostgreSQL Flexible Server SKU."
  type        = string
  default     = "GP_Standard_D4ds_v5"
}

variable "postgres_admin_group_object_id" {
  description = "Entra ID group that administers PostgreSQL (password authentication is off)."
  type        = string
}

variable "postgres_admin_group_name" {
  description = "Display name of that Entra ID group."
  type        = string
}

variable "log_retention_days" {
  description = "Total retention of logs in Log Analytics (interactive plus archive), in days (2557 = 7 years)."
  type        = number
  default     = 2557
}

variable "backup_retention_days" {
  description = "Immutability (WORM) period of the backup container, in days (2557 = 7 years)."
  type        = number
  default     = 2557
}

variable "postgres_admin_password" {
  description = "Password of the PostgreSQL administrator role; write-only, never stored in state (Terraform 1.11+). Pass with TF_VAR_postgres_admin_password."
  type        = string
  sensitive   = true
  ephemeral   = true
}

variable "postgres_admin_password_version" {
  description = "Increase to apply a new postgres_admin_password."
  type        = number
  default     = 1
}

variable "key_vault_name" {
  description = "Globally unique Key Vault name (3-24 letters, digits and dashes)."
  type        = string
  default     = "medai-production-kv"
}

variable "registry_name" {
  description = "Globally unique container registry name (5-50 letters and digits)."
  type        = string
  default     = "medaiproductionacr"
}

variable "backup_storage_account_name" {
  description = "Globally unique storage account name for backups (3-24 lowercase letters and digits)."
  type        = string
  default     = "medaiprodbackups"
  validation {
    condition     = can(regex("^[a-z0-9]{3,24}$", var.backup_storage_account_name))
    error_message = "backup_storage_account_name must be 3-24 lowercase letters and digits."
  }
}
