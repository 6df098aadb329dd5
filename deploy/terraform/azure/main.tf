# medai on Azure: AKS with Azure CNI (general and GPU pools, workload identity), PostgreSQL
# Flexible Server with zone-redundant HA, Azure Cache for Redis (TLS only, private endpoint),
# Key Vault with a rotating key, Application Gateway WAF_v2, an immutable Blob backup container,
# and Log Analytics keeping 7 years.

data "azurerm_client_config" "current" {}

locals {
  name = "medai-${var.environment}"
  tags = {
    application = "medai"
    environment = var.environment
    data-class  = "phi"
  }
}

resource "azurerm_resource_group" "medai" {
  name     = local.name
  location = var.location
  tags     = local.tags
}

# ---------------------------------------------------------------- network

resource "azurerm_virtual_network" "medai" {
  name                = local.name
  location            = azurerm_resource_group.medai.location
  resource_group_name = azurerm_resource_group.medai.name
  address_space       = [var.vnet_cidr]
  tags                = local.tags
}

resource "azurerm_subnet" "aks" {
  name                 = "aks"
  resource_group_name  = azurerm_resource_group.medai.name
  virtual_network_name = azurerm_virtual_network.medai.name
  address_prefixes     = [cidrsubnet(var.vnet_cidr, 6, 4)]
}

resource "azurerm_subnet" "appgw" {
  name                 = "appgw"
  resource_group_name  = azurerm_resource_group.medai.name
  virtual_network_name = azurerm_virtual_network.medai.name
  address_prefixes     = [cidrsubnet(var.vnet_cidr, 8, 2)]
}

resource "azurerm_subnet" "postgres" {
  name                 = "postgres"
  resource_group_name  = azurerm_resource_group.medai.name
  virtual_network_name = azurerm_virtual_network.medai.name
  address_prefixes     = [cidrsubnet(var.vnet_cidr, 8, 3)]
  service_endpoints    = ["Microsoft.Storage"]
  delegation {
    name = "postgres"
    service_delegation {
      name    = "Microsoft.DBforPostgreSQL/flexibleServers"
      actions = ["Microsoft.Network/virtualNetworks/subnets/join/action"]
    }
  }
}

resource "azurerm_subnet" "endpoints" {
  name                 = "private-endpoints"
  resource_group_name  = azurerm_resource_group.medai.name
  virtual_network_name = azurerm_virtual_network.medai.name
  address_prefixes     = [cidrsubnet(var.vnet_cidr, 8, 4)]
}

resource "azurerm_network_security_group" "data" {
  name                = "${local.name}-data"
  location            = azurerm_resource_group.medai.location
  resource_group_name = azurerm_resource_group.medai.name
  tags                = local.tags

  security_rule {
    name                       = "postgres-and-redis-from-aks"
    priority                   = 100
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_address_prefix      = cidrsubnet(var.vnet_cidr, 6, 4)
    source_port_range          = "*"
    destination_address_prefix = "*"
    destination_port_ranges    = ["5432", "6380"]
  }
  security_rule {
    name                       = "deny-other-inbound"
    priority                   = 4000
    direction                  = "Inbound"
    access                     = "Deny"
    protocol                   = "*"
    source_address_prefix      = "*"
    source_port_range          = "*"
    destination_address_prefix = "*"
    destination_port_range     = "*"
  }
}

resource "azurerm_network_security_group" "aks" {
  name                = "${local.name}-aks"
  location            = azurerm_resource_group.medai.location
  resource_group_name = azurerm_resource_group.medai.name
  tags                = local.tags

  security_rule {
    name                       = "medai-from-appgw"
    priority                   = 100
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_address_prefix      = cidrsubnet(var.vnet_cidr, 8, 2)
    source_port_range          = "*"
    destination_address_prefix = "*"
    destination_port_range     = "8080"
  }
}

resource "azurerm_subnet_network_security_group_association" "aks" {
  subnet_id                 = azurerm_subnet.aks.id
  network_security_group_id = azurerm_network_security_group.aks.id
}

# Application Gateway v2 needs GatewayManager on 65200-65535 and the Azure load balancer probe.
resource "azurerm_network_security_group" "appgw" {
  name                = "${local.name}-appgw"
  location            = azurerm_resource_group.medai.location
  resource_group_name = azurerm_resource_group.medai.name
  tags                = local.tags

  security_rule {
    name                       = "https-from-internet"
    priority                   = 100
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_address_prefix      = "Internet"
    source_port_range          = "*"
    destination_address_prefix = "*"
    destination_port_range     = "443"
  }
  security_rule {
    name                       = "gateway-manager"
    priority                   = 110
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_address_prefix      = "GatewayManager"
    source_port_range          = "*"
    destination_address_prefix = "*"
    destination_port_range     = "65200-65535"
  }
  security_rule {
    name                       = "azure-load-balancer"
    priority                   = 120
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "*"
    source_address_prefix      = "AzureLoadBalancer"
    source_port_range          = "*"
    destination_address_prefix = "*"
    destination_port_range     = "*"
  }
}

resource "azurerm_subnet_network_security_group_association" "appgw" {
  subnet_id                 = azurerm_subnet.appgw.id
  network_security_group_id = azurerm_network_security_group.appgw.id
}

resource "azurerm_subnet_network_security_group_association" "postgres" {
  subnet_id                 = azurerm_subnet.postgres.id
  network_security_group_id = azurerm_network_security_group.data.id
}

resource "azurerm_subnet_network_security_group_association" "endpoints" {
  subnet_id                 = azurerm_subnet.endpoints.id
  network_security_group_id = azurerm_network_security_group.data.id
}

# ---------------------------------------------------------------- Key Vault

resource "azurerm_user_assigned_identity" "data" {
  name                = "${local.name}-data"
  location            = azurerm_resource_group.medai.location
  resource_group_name = azurerm_resource_group.medai.name
  tags                = local.tags
}

resource "azurerm_key_vault" "medai" {
  name                          = var.key_vault_name
  location                      = azurerm_resource_group.medai.location
  resource_group_name           = azurerm_resource_group.medai.name
  tenant_id                     = data.azurerm_client_config.current.tenant_id
  sku_name                      = "premium"
  enable_rbac_authorization     = true
  purge_protection_enabled      = true
  soft_delete_retention_days    = 90
  public_network_access_enabled = true
  tags                          = local.tags

  network_acls {
    default_action             = "Deny"
    bypass                     = "AzureServices"
    ip_rules                   = var.admin_cidrs
    virtual_network_subnet_ids = [azurerm_subnet.aks.id]
  }
}

resource "azurerm_private_endpoint" "key_vault" {
  name                = "${local.name}-kv"
  location            = azurerm_resource_group.medai.location
  resource_group_name = azurerm_resource_group.medai.name
  subnet_id           = azurerm_subnet.endpoints.id
  tags                = local.tags

  private_service_connection {
    name                           = "vault"
    private_connection_resource_id = azurerm_key_vault.medai.id
    subresource_names              = ["vault"]
    is_manual_connection           = false
  }
}

resource "azurerm_role_assignment" "kv_admin" {
  scope                = azurerm_key_vault.medai.id
  role_definition_name = "Key Vault Administrator"
  principal_id         = data.azurerm_client_config.current.object_id
}

resource "azurerm_role_assignment" "kv_data_identity" {
  scope                = azurerm_key_vault.medai.id
  role_definition_name = "Key Vault Crypto Service Encryption User"
  principal_id         = azurerm_user_assigned_identity.data.principal_id
}

resource "azurerm_key_vault_key" "data" {
  name            = "data"
  key_vault_id    = azurerm_key_vault.medai.id
  key_type        = "RSA-HSM"
  key_size        = 3072
  key_opts        = ["wrapKey", "unwrapKey"]
  expiration_date = "2030-01-01T00:00:00Z"
  depends_on      = [azurerm_role_assignment.kv_admin]

  rotation_policy {
    automatic {
      time_before_expiry = "P30D"
    }
    expire_after         = "P2Y"
    notify_before_expiry = "P30D"
  }
}

# ---------------------------------------------------------------- logs

resource "azurerm_log_analytics_workspace" "medai" {
  name                = local.name
  location            = azurerm_resource_group.medai.location
  resource_group_name = azurerm_resource_group.medai.name
  sku                 = "PerGB2018"
  retention_in_days   = 730
  tags                = local.tags
}

# Interactive retention is at most 2 years; the archive tier keeps the rest of the 7 years.
resource "azurerm_log_analytics_workspace_table" "container_logs" {
  workspace_id            = azurerm_log_analytics_workspace.medai.id
  name                    = "ContainerLogV2"
  retention_in_days       = 730
  total_retention_in_days = var.log_retention_days
}

# ---------------------------------------------------------------- AKS

resource "azurerm_kubernetes_cluster" "medai" {
  # checkov:skip=CKV_AZURE_6:private cluster: the API server has no public endpoint, so authorized IP ranges do not apply
  private_cluster_enabled           = true
  name                              = local.name
  location                          = azurerm_resource_group.medai.location
  resource_group_name               = azurerm_resource_group.medai.name
  dns_prefix                        = local.name
  kubernetes_version                = var.kubernetes_version
  sku_tier                          = "Standard"
  automatic_upgrade_channel         = "patch"
  node_os_upgrade_channel           = "NodeImage"
  oidc_issuer_enabled               = true
  workload_identity_enabled         = true
  local_account_disabled            = true
  role_based_access_control_enabled = true
  azure_policy_enabled              = true
  disk_encryption_set_id            = azurerm_disk_encryption_set.medai.id
  tags                              = local.tags

  azure_active_directory_role_based_access_control {
    azure_rbac_enabled     = true
    admin_group_object_ids = var.admin_group_object_ids
  }

  default_node_pool {
    name                         = "system"
    vm_size                      = "Standard_D4ds_v5"
    vnet_subnet_id               = azurerm_subnet.aks.id
    zones                        = ["1", "2", "3"]
    auto_scaling_enabled         = true
    min_count                    = 3
    max_count                    = 9
    max_pods                     = 50
    os_disk_type                 = "Ephemeral"
    host_encryption_enabled      = true
    only_critical_addons_enabled = true
    upgrade_settings {
      max_surge = "33%"
    }
  }

  identity {
    type = "SystemAssigned"
  }

  network_profile {
    network_plugin = "azure"
    network_policy = "azure"
    service_cidr   = "10.41.0.0/16"
    dns_service_ip = "10.41.0.10"
    outbound_type  = "loadBalancer"
  }

  ingress_application_gateway {
    gateway_id = azurerm_application_gateway.medai.id
  }

  key_vault_secrets_provider {
    secret_rotation_enabled = true
  }

  oms_agent {
    log_analytics_workspace_id = azurerm_log_analytics_workspace.medai.id
  }
}

resource "azurerm_kubernetes_cluster_node_pool" "general" {
  name                    = "general"
  kubernetes_cluster_id   = azurerm_kubernetes_cluster.medai.id
  vm_size                 = "Standard_D4ds_v5"
  vnet_subnet_id          = azurerm_subnet.aks.id
  zones                   = ["1", "2", "3"]
  auto_scaling_enabled    = true
  min_count               = 3
  max_count               = 9
  max_pods                = 50
  os_disk_type            = "Ephemeral"
  host_encryption_enabled = true
  node_labels             = { "medai/node-pool" = "general" }
  tags                    = local.tags
  upgrade_settings {
    max_surge = "33%"
  }
}

resource "azurerm_kubernetes_cluster_node_pool" "gpu" {
  name                    = "gpu"
  kubernetes_cluster_id   = azurerm_kubernetes_cluster.medai.id
  vm_size                 = var.gpu_vm_size
  vnet_subnet_id          = azurerm_subnet.aks.id
  zones                   = ["1", "2", "3"]
  auto_scaling_enabled    = true
  min_count               = 0
  max_count               = 3
  max_pods                = 50
  host_encryption_enabled = true
  node_labels             = { "medai/node-pool" = "gpu" }
  node_taints             = ["nvidia.com/gpu=present:NoSchedule"]
  tags                    = local.tags
}

resource "azurerm_disk_encryption_set" "medai" {
  name                      = local.name
  location                  = azurerm_resource_group.medai.location
  resource_group_name       = azurerm_resource_group.medai.name
  key_vault_key_id          = azurerm_key_vault_key.data.versionless_id
  auto_key_rotation_enabled = true
  tags                      = local.tags
  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.data.id]
  }
  depends_on = [azurerm_role_assignment.kv_data_identity]
}

# medai's identity, federated with its Kubernetes ServiceAccount (Workload Identity).
resource "azurerm_user_assigned_identity" "app" {
  name                = "${local.name}-app"
  location            = azurerm_resource_group.medai.location
  resource_group_name = azurerm_resource_group.medai.name
  tags                = local.tags
}

resource "azurerm_federated_identity_credential" "app" {
  name                = "medai"
  resource_group_name = azurerm_resource_group.medai.name
  parent_id           = azurerm_user_assigned_identity.app.id
  audience            = ["api://AzureADTokenExchange"]
  issuer              = azurerm_kubernetes_cluster.medai.oidc_issuer_url
  subject             = "system:serviceaccount:medai:medai"
}

resource "azurerm_role_assignment" "app_backups" {
  scope                = azurerm_storage_container.backups.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_user_assigned_identity.app.principal_id
}

resource "azurerm_role_assignment" "app_secrets" {
  scope                = azurerm_key_vault.medai.id
  role_definition_name = "Key Vault Secrets User"
  principal_id         = azurerm_user_assigned_identity.app.principal_id
}

resource "azurerm_container_registry" "medai" {
  name                          = var.registry_name
  location                      = azurerm_resource_group.medai.location
  resource_group_name           = azurerm_resource_group.medai.name
  sku                           = "Premium"
  admin_enabled                 = false
  quarantine_policy_enabled     = true
  public_network_access_enabled = false
  zone_redundancy_enabled       = true
  data_endpoint_enabled         = true
  tags                          = local.tags

  retention_policy_in_days = 30
  trust_policy_enabled     = true
  georeplications {
    location                = "northeurope"
    zone_redundancy_enabled = true
  }
}

resource "azurerm_role_assignment" "aks_pull" {
  scope                = azurerm_container_registry.medai.id
  role_definition_name = "AcrPull"
  principal_id         = azurerm_kubernetes_cluster.medai.kubelet_identity[0].object_id
}
