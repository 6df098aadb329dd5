variable "host" {
  description = "Public host name of medai (DNS name the certificate covers)."
  type        = string
}

variable "image_repository" {
  description = "Container registry repository of the medai image."
  type        = string
}

variable "trusted_proxies" {
  description = "CIDRs of the load balancer or proxies whose X-Forwarded-For medai believes."
  type        = list(string)
}

variable "service_account_annotations" {
  description = "Workload identity annotations for medai's Kubernetes ServiceAccount."
  type        = map(string)
}

variable "pod_labels" {
  description = "Extra pod labels (Azure Workload Identity needs azure.workload.identity/use)."
  type        = map(string)
  default     = {}
}

variable "ingress_class" {
  description = "IngressClass of the cloud's load balancer controller."
  type        = string
}

variable "tls_secret_name" {
  description = "Kubernetes TLS Secret for the Ingress; empty where the load balancer holds the certificate."
  type        = string
  default     = ""
}

variable "ingress_annotations" {
  description = "Ingress annotations (certificate, WAF, static address)."
  type        = map(string)
}

variable "secret_store_name" {
  description = "Name of the External Secrets ClusterSecretStore reading the cloud secret manager."
  type        = string
}

variable "secret_remote_keys" {
  description = "Secret manager keys of the database URL, Redis URL and medai key file."
  type = object({
    databaseUrl = string
    redisUrl    = string
    masterKey   = string
  })
}

variable "database_cidrs" {
  description = "CIDRs where PostgreSQL and Redis are reachable (for the NetworkPolicy)."
  type        = list(string)
}

variable "redis_port" {
  description = "Redis TLS port of the managed cache."
  type        = number
}
