# PostgreSQL, Redis and the backup storage.

resource "azurerm_private_dns_zone" "postgres" {
  name                = "${local.name}.private.postgres.database.azure.com"
  resource_group_name = azurerm_resource_group.medai.name
  tags                = local.tags
}

resource "azurerm_private_dns_zone_virtual_network_link" "postgres" {
  name                  = "postgres"
  private_dns_zone_name = azurerm_private_dns_zone.postgres.name
  resource_group_name   = azurerm_resource_group.medai.name
  virtual_network_id    = azurerm_virtual_network.medai.id
}

resource "azurerm_postgresql_flexible_server" "medai" {
  # checkov:skip=CKV2_AZURE_57:VNet integration (delegated subnet, public access off) is the private access mode; Flexible Server does not take a private endpoint in that mode
  # checkov:skip=CKV_AZURE_136:geo-redundant backup with a customer-managed key needs a second key in the paired region's vault; medai's backups go to the GZRS (geo-zone-redundant) backup account instead
  name                              = local.name
  location                          = azurerm_resource_group.medai.location
  resource_group_name               = azurerm_resource_group.medai.name
  version                           = "16"
  sku_name                          = var.postgres_sku
  storage_mb                        = 131072
  auto_grow_enabled                 = true
  zone                              = "1"
  delegated_subnet_id               = azurerm_subnet.postgres.id
  private_dns_zone_id               = azurerm_private_dns_zone.postgres.id
  public_network_access_enabled     = false
  backup_retention_days             = 35
  geo_redundant_backup_enabled      = false
  administrator_login               = "medai_admin"
  administrator_password_wo         = var.postgres_admin_password
  administrator_password_wo_version = var.postgres_admin_password_version
  tags                              = local.tags
  depends_on                        = [azurerm_private_dns_zone_virtual_network_link.postgres]

  high_availability {
    mode                      = "ZoneRedundant"
    standby_availability_zone = "2"
  }

  authentication {
    active_directory_auth_enabled = true
    password_auth_enabled         = true
    tenant_id                     = data.azurerm_client_config.current.tenant_id
  }

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.data.id]
  }

  customer_managed_key {
    key_vault_key_id                  = azurerm_key_vault_key.data.versionless_id
    primary_user_assigned_identity_id = azurerm_user_assigned_identity.data.id
  }

  maintenance_window {
    day_of_week  = 0
    start_hour   = 3
    start_minute = 0
  }
}

resource "azurerm_postgresql_flexible_server_active_directory_administrator" "medai" {
  server_name         = azurerm_postgresql_flexible_server.medai.name
  resource_group_name = azurerm_resource_group.medai.name
  tenant_id           = data.azurerm_client_config.current.tenant_id
  object_id           = var.postgres_admin_group_object_id
  principal_name      = var.postgres_admin_group_name
  principal_type      = "Group"
}

resource "azurerm_postgresql_flexible_server_database" "medai" {
  name      = "medai"
  server_id = azurerm_postgresql_flexible_server.medai.id
  charset   = "UTF8"
  collation = "en_US.utf8"
}

resource "azurerm_postgresql_flexible_server_configuration" "settings" {
  for_each = {
    "require_secure_transport"  = "on"
    "ssl_min_protocol_version"  = "TLSv1.3"
    "azure.extensions"          = "PGAUDIT"
    "shared_preload_libraries"  = "pgaudit"
    "pgaudit.log"               = "ddl,role,write"
    "pgaudit.log_parameter"     = "off"
    "log_connections"           = "on"
    "log_disconnections"        = "on"
    "log_checkpoints"           = "on"
    "connection_throttle.enable" = "on"
  }
  name      = each.key
  server_id = azurerm_postgresql_flexible_server.medai.id
  value     = each.value
}

resource "azurerm_redis_cache" "medai" {
  name                          = local.name
  location                      = azurerm_resource_group.medai.location
  resource_group_name           = azurerm_resource_group.medai.name
  capacity                      = 1
  family                        = "P"
  sku_name                      = "Premium"
  non_ssl_port_enabled          = false
  minimum_tls_version           = "1.2"
  public_network_access_enabled = false
  zones                         = ["1", "2", "3"]
  replicas_per_primary          = 2
  tags                          = local.tags

  redis_configuration {
    authentication_enabled = true
  }
}

resource "azurerm_private_dns_zone" "redis" {
  name                = "privatelink.redis.cache.windows.net"
  resource_group_name = azurerm_resource_group.medai.name
  tags                = local.tags
}

resource "azurerm_private_dns_zone_virtual_network_link" "redis" {
  name                  = "redis"
  private_dns_zone_name = azurerm_private_dns_zone.redis.name
  resource_group_name   = azurerm_resource_group.medai.name
  virtual_network_id    = azurerm_virtual_network.medai.id
}

resource "azurerm_private_endpoint" "redis" {
  name                = "${local.name}-redis"
  location            = azurerm_resource_group.medai.location
  resource_group_name = azurerm_resource_group.medai.name
  subnet_id           = azurerm_subnet.endpoints.id
  tags                = local.tags

  private_service_connection {
    name                           = "redis"
    private_connection_resource_id = azurerm_redis_cache.medai.id
    subresource_names              = ["redisCache"]
    is_manual_connection           = false
  }
  private_dns_zone_group {
    name                 = "redis"
    private_dns_zone_ids = [azurerm_private_dns_zone.redis.id]
  }
}

resource "azurerm_storage_account" "backups" {
  # checkov:skip=CKV_AZURE_33:the account serves blobs only; its queue service holds nothing to log
  name                            = var.backup_storage_account_name
  location                        = azurerm_resource_group.medai.location
  resource_group_name             = azurerm_resource_group.medai.name
  account_tier                    = "Standard"
  account_replication_type        = "GZRS"
  account_kind                    = "StorageV2"
  min_tls_version                 = "TLS1_2"
  https_traffic_only_enabled      = true
  allow_nested_items_to_be_public = false
  shared_access_key_enabled       = false
  public_network_access_enabled   = false
  infrastructure_encryption_enabled = true
  tags                            = local.tags

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.data.id]
  }
  customer_managed_key {
    key_vault_key_id          = azurerm_key_vault_key.data.versionless_id
    user_assigned_identity_id = azurerm_user_assigned_identity.data.id
  }
  blob_properties {
    versioning_enabled = true
    delete_retention_policy {
      days = 30
    }
    container_delete_retention_policy {
      days = 30
    }
  }
  immutability_policy {
    allow_protected_append_writes = false
    state                         = "Unlocked"
    period_since_creation_in_days = var.backup_retention_days
  }
  sas_policy {
    expiration_period = "01.00:00:00"
  }
  network_rules {
    default_action             = "Deny"
    bypass                     = ["AzureServices", "Logging", "Metrics"]
    virtual_network_subnet_ids = [azurerm_subnet.aks.id]
  }
}

resource "azurerm_storage_container" "backups" {
  # checkov:skip=CKV2_AZURE_21:blob reads, writes and deletes go to Log Analytics through azurerm_monitor_diagnostic_setting.backups_blob; Storage Insights would need the account key, which is disabled
  name                  = "backups"
  storage_account_id    = azurerm_storage_account.backups.id
  container_access_type = "private"
}

resource "azurerm_storage_container_immutability_policy" "backups" {
  storage_container_resource_manager_id = azurerm_storage_container.backups.id
  immutability_period_in_days           = var.backup_retention_days
  protected_append_writes_enabled       = false
}

resource "azurerm_private_endpoint" "backups" {
  name                = "${local.name}-backups"
  location            = azurerm_resource_group.medai.location
  resource_group_name = azurerm_resource_group.medai.name
  subnet_id           = azurerm_subnet.endpoints.id
  tags                = local.tags

  private_service_connection {
    name                           = "blob"
    private_connection_resource_id = azurerm_storage_account.backups.id
    subresource_names              = ["blob"]
    is_manual_connection           = false
  }
}

# Blob reads, writes and deletes on the backup account are logged to Log Analytics.
resource "azurerm_monitor_diagnostic_setting" "backups_blob" {
  name                       = "blob-audit"
  target_resource_id         = "${azurerm_storage_account.backups.id}/blobServices/default"
  log_analytics_workspace_id = azurerm_log_analytics_workspace.medai.id

  enabled_log {
    category = "StorageRead"
  }
  enabled_log {
    category = "StorageWrite"
  }
  enabled_log {
    category = "StorageDelete"
  }
}
