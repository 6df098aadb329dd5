# Turns a stack's outputs into the medai chart's values, so that `terraform output -raw
# helm_values_yaml` can be passed to `helm upgrade -f`. Every key here exists in
# deploy/helm/medai/values.schema.json (checked by crates/medai/tests/deploy/terraform.rs).

terraform {
  required_version = ">= 1.6.0"
}

locals {
  values = {
    image = {
      repository = var.image_repository
    }
    config = {
      publicUrl      = "https://${var.host}"
      trustedProxies = var.trusted_proxies
    }
    serviceAccount = {
      annotations = var.service_account_annotations
    }
    podLabels = var.pod_labels
    ingress = {
      enabled       = true
      className     = var.ingress_class
      host          = var.host
      tlsSecretName = var.tls_secret_name
      annotations   = var.ingress_annotations
    }
    secrets = {
      existingSecret = "medai"
      externalSecret = {
        enabled = true
        storeRef = {
          name = var.secret_store_name
          kind = "ClusterSecretStore"
        }
        remoteKeys = var.secret_remote_keys
      }
    }
    networkPolicy = {
      databaseCIDRs = var.database_cidrs
      redisPort     = var.redis_port
    }
  }
}
