# Application Gateway WAF_v2 in front of AKS (AGIC manages its listeners from the Ingress).

resource "azurerm_public_ip" "appgw" {
  name                = "${local.name}-appgw"
  location            = azurerm_resource_group.medai.location
  resource_group_name = azurerm_resource_group.medai.name
  allocation_method   = "Static"
  sku                 = "Standard"
  zones               = ["1", "2", "3"]
  tags                = local.tags
}

resource "azurerm_web_application_firewall_policy" "medai" {
  name                = local.name
  location            = azurerm_resource_group.medai.location
  resource_group_name = azurerm_resource_group.medai.name
  tags                = local.tags

  policy_settings {
    enabled                     = true
    mode                        = "Prevention"
    request_body_check          = true
    max_request_body_size_in_kb = 128
    file_upload_limit_in_mb     = 1
  }

  managed_rules {
    managed_rule_set {
      type    = "OWASP"
      version = "3.2"
    }
    managed_rule_set {
      type    = "Microsoft_BotManagerRuleSet"
      version = "1.0"
    }
  }

  custom_rules {
    name      = "signinrate"
    priority  = 10
    rule_type = "RateLimitRule"
    action    = "Block"
    rate_limit_duration  = "OneMin"
    rate_limit_threshold = 100
    group_rate_limit_by  = "ClientAddr"
    match_conditions {
      match_variables {
        variable_name = "RequestUri"
      }
      operator     = "BeginsWith"
      match_values = ["/api/v1/auth/"]
    }
  }
}

resource "azurerm_application_gateway" "medai" {
  # checkov:skip=CKV_AZURE_217:the port-80 listener is a placeholder that AGIC replaces; the Ingress sets ssl-redirect, so plain HTTP only redirects to HTTPS
  name                = local.name
  location            = azurerm_resource_group.medai.location
  resource_group_name = azurerm_resource_group.medai.name
  zones               = ["1", "2", "3"]
  firewall_policy_id  = azurerm_web_application_firewall_policy.medai.id
  tags                = local.tags

  sku {
    name = "WAF_v2"
    tier = "WAF_v2"
  }
  autoscale_configuration {
    min_capacity = 2
    max_capacity = 10
  }
  ssl_policy {
    policy_type = "Predefined"
    policy_name = "AppGwSslPolicy20220101S"
  }
  gateway_ip_configuration {
    name      = "gateway"
    subnet_id = azurerm_subnet.appgw.id
  }
  frontend_ip_configuration {
    name                 = "public"
    public_ip_address_id = azurerm_public_ip.appgw.id
  }
  frontend_port {
    name = "https"
    port = 443
  }
  # Placeholder listener and pool: AGIC replaces them from the Ingress; ignore_changes keeps
  # Terraform from fighting it.
  backend_address_pool {
    name = "placeholder"
  }
  backend_http_settings {
    name                  = "placeholder"
    cookie_based_affinity = "Disabled"
    port                  = 8080
    protocol              = "Http"
    request_timeout       = 60
  }
  frontend_port {
    name = "http"
    port = 80
  }
  http_listener {
    name                           = "placeholder"
    frontend_ip_configuration_name = "public"
    frontend_port_name             = "http"
    protocol                       = "Http"
  }
  request_routing_rule {
    name                       = "placeholder"
    priority                   = 20000
    rule_type                  = "Basic"
    http_listener_name         = "placeholder"
    backend_address_pool_name  = "placeholder"
    backend_http_settings_name = "placeholder"
  }

  lifecycle {
    ignore_changes = [
      backend_address_pool, backend_http_settings, frontend_port, http_listener, probe,
      request_routing_rule, redirect_configuration, ssl_certificate, url_path_map, tags,
    ]
  }
}
