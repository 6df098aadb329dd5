module "helm_values" {
  source = "../modules/helm-values"

  host                        = var.host
  image_repository            = "${azurerm_container_registry.medai.login_server}/medai"
  trusted_proxies             = azurerm_subnet.appgw.address_prefixes
  service_account_annotations = { "azure.workload.identity/client-id" = azurerm_user_assigned_identity.app.client_id }
  pod_labels                  = { "azure.workload.identity/use" = "true" }
  ingress_class               = "azure-application-gateway"
  tls_secret_name             = "medai-tls"
  ingress_annotations = {
    "appgw.ingress.kubernetes.io/ssl-redirect"        = "true"
    "appgw.ingress.kubernetes.io/health-probe-path"   = "/readyz"
    "appgw.ingress.kubernetes.io/waf-policy-for-path" = azurerm_web_application_firewall_policy.medai.id
  }
  secret_store_name = "azure-key-vault"
  secret_remote_keys = {
    databaseUrl = "medai-database-url"
    redisUrl    = "medai-redis-url"
    masterKey   = "medai-master-key"
  }
  database_cidrs = concat(azurerm_subnet.postgres.address_prefixes, azurerm_subnet.endpoints.address_prefixes)
  redis_port     = azurerm_redis_cache.medai.ssl_port
}

output "cluster_name" {
  description = "AKS cluster (az aks get-credentials …)."
  value       = azurerm_kubernetes_cluster.medai.name
}

output "postgres_fqdn" {
  description = "PostgreSQL Flexible Server host for the database URL."
  value       = azurerm_postgresql_flexible_server.medai.fqdn
}

output "redis_hostname" {
  description = "Azure Cache for Redis host (TLS port 6380)."
  value       = azurerm_redis_cache.medai.hostname
}

output "key_vault_uri" {
  description = "Key Vault holding medai's secrets."
  value       = azurerm_key_vault.medai.vault_uri
}

output "backup_container" {
  description = "Immutable backup container (account/container)."
  value       = "${azurerm_storage_account.backups.name}/${azurerm_storage_container.backups.name}"
}

output "helm_values_yaml" {
  description = "Values for deploy/helm/medai (helm upgrade -f)."
  value       = module.helm_values.values_yaml
}
