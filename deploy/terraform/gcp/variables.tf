variable "project_id" {
  description = "GCP project that holds the deployment."
  type        = string
}

variable "region" {
  description = "GCP region."
  type        = string
  default     = "europe-west4"
}

variable "environment" {
  description = "Environment name used in resource names (e.g. production)."
  type        = string
  default     = "production"
}

variable "host" {
  description = "Public host name of medai (a Google-managed certificate is issued for it)."
  type        = string
}

variable "subnet_cidr" {
  description = "Primary range of the GKE subnet (nodes)."
  type        = string
  default     = "10.50.0.0/20"
}

variable "pods_cidr" {
  description = "Secondary range for pods."
  type        = string
  default     = "10.52.0.0/14"
}

variable "services_cidr" {
  description = "Secondary range for services."
  type        = string
  default     = "10.56.0.0/20"
}

variable "master_cidr" {
  description = "/28 range of the private GKE control plane."
  type        = string
  default     = "172.16.0.0/28"
}

variable "private_services_cidr_prefix" {
  description = "Prefix length of the range reserved for Cloud SQL and Memorystore (private services access)."
  type        = number
  default     = 16
}

variable "private_services_address" {
  description = "First address of the private services range."
  type        = string
  default     = "10.60.0.0"
}

variable "admin_cidrs" {
  description = "CIDRs allowed to reach the GKE control plane (your bastion or VPN)."
  type        = list(string)
}

variable "kubernetes_version_channel" {
  description = "GKE release channel (REGULAR or STABLE)."
  type        = string
  default     = "STABLE"
}

variable "gpu_type" {
  description = "GPU accelerator type of the GPU node pool."
  type        = string
  default     = "nvidia-l4"
}

variable "gpu_machine_type" {
  description = "Machine type of the GPU node pool."
  type        = string
  default     = "g2-standard-8"
}

variable "db_tier" {
  description = "Cloud SQL machine tier."
  type        = string
  default     = "db-custom-4-16384"
}

variable "backup_retention_days" {
  description = "Retention policy of the backup bucket, in days (2557 = 7 years)."
  type        = number
  default     = 2557
}

variable "rbac_security_group" {
  description = "Google Group (gke-security-groups@your-domain) whose member groups get Kubernetes RBAC roles."
  type        = string
}
