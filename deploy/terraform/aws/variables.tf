variable "region" {
  description = "AWS region of the deployment."
  type        = string
  default     = "eu-west-1"
}

variable "replica_region" {
  description = "Region receiving the cross-region replica of the backup bucket."
  type        = string
  default     = "eu-central-1"
}

variable "availability_zones" {
  description = "The three availability zones of the region (pinned so the layout never shifts)."
  type        = list(string)
  default     = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
}

variable "environment" {
  description = "Environment name used in resource names (e.g. production)."
  type        = string
  default     = "production"
}

variable "host" {
  description = "Public host name of medai; the ACM certificate must cover it."
  type        = string
}

variable "certificate_arn" {
  description = "ACM certificate ARN for the host (issued and validated outside this stack)."
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR of the VPC (3 AZs, private and public subnets are carved from it)."
  type        = string
  default     = "10.20.0.0/16"
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version (1.30 or newer)."
  type        = string
  default     = "1.31"
}

variable "node_instance_types" {
  description = "Instance types of the general node group."
  type        = list(string)
  default     = ["m6i.xlarge"]
}

variable "gpu_instance_types" {
  description = "Instance types of the GPU node group (model server)."
  type        = list(string)
  default     = ["g5.2xlarge"]
}

variable "gpu_node_count" {
  description = "Desired GPU nodes (0 to run without the model server)."
  type        = number
  default     = 1
}

variable "db_instance_class" {
  description = "RDS PostgreSQL instance class."
  type        = string
  default     = "db.r6g.large"
}

variable "redis_node_type" {
  description = "ElastiCache Redis node type."
  type        = string
  default     = "cache.r6g.large"
}

variable "image_repository" {
  description = "Repository of the medai image (ECR or another registry)."
  type        = string
}

variable "log_retention_days" {
  description = "CloudWatch log retention in days (2557 = 7 years, the HIPAA documentation period rounded up)."
  type        = number
  default     = 2557
}

variable "backup_retention_years" {
  description = "Object-lock (compliance mode) retention of backups, in years."
  type        = number
  default     = 7
}
