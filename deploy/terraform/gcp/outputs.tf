module "helm_values" {
  source = "../modules/helm-values"

  host                        = var.host
  image_repository            = "${google_artifact_registry_repository.medai.location}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.medai.repository_id}/medai"
  trusted_proxies             = ["130.211.0.0/22", "35.191.0.0/16"]
  service_account_annotations = { "iam.gke.io/gcp-service-account" = google_service_account.medai.email }
  ingress_class               = "gce"
  tls_secret_name             = ""
  ingress_annotations = {
    "kubernetes.io/ingress.global-static-ip-name" = google_compute_global_address.ingress.name
    "kubernetes.io/ingress.allow-http"            = "false"
    "networking.gke.io/managed-certificates"      = "medai"
    "networking.gke.io/v1beta1.FrontendConfig"    = "medai"
  }
  secret_store_name = "gcp-secret-manager"
  secret_remote_keys = {
    databaseUrl = "${local.name}-database-url"
    redisUrl    = "${local.name}-redis-url"
    masterKey   = "${local.name}-master-key"
  }
  database_cidrs = ["${var.private_services_address}/${var.private_services_cidr_prefix}"]
  redis_port     = google_redis_instance.medai.port
}

output "cluster_name" {
  description = "GKE cluster (gcloud container clusters get-credentials …)."
  value       = google_container_cluster.medai.name
}

output "database_connection_name" {
  description = "Cloud SQL instance connection name."
  value       = google_sql_database_instance.postgres.connection_name
}

output "database_private_ip" {
  description = "Cloud SQL private address for the database URL."
  value       = google_sql_database_instance.postgres.private_ip_address
}

output "redis_host" {
  description = "Memorystore address (TLS; AUTH string via gcloud redis instances get-auth-string)."
  value       = google_redis_instance.medai.host
}

output "security_policy" {
  description = "Cloud Armor policy name for the BackendConfig."
  value       = google_compute_security_policy.medai.name
}

output "backup_bucket" {
  description = "GCS backup bucket with its retention policy."
  value       = google_storage_bucket.backups.name
}

output "helm_values_yaml" {
  description = "Values for deploy/helm/medai (helm upgrade -f)."
  value       = module.helm_values.values_yaml
}
