# medai on GCP: private GKE with a GPU node pool, Cloud SQL PostgreSQL (regional HA, PITR, CMEK),
# Memorystore Redis with AUTH and TLS, Cloud KMS keys with rotation, Artifact Registry, a GCS
# backup bucket with a retention policy, and Cloud Armor for the load balancer.

data "google_project" "current" {}

locals {
  name = "medai-${var.environment}"
}

# ---------------------------------------------------------------- keys

resource "google_kms_key_ring" "medai" {
  name     = local.name
  location = var.region
}

resource "google_kms_crypto_key" "data" {
  name            = "data"
  key_ring        = google_kms_key_ring.medai.id
  rotation_period = "7776000s"
  lifecycle {
    prevent_destroy = true
  }
}

# The Google service agents that encrypt with the key.
resource "google_project_service_identity" "sql" {
  provider = google-beta
  service  = "sqladmin.googleapis.com"
}

resource "google_kms_crypto_key_iam_member" "agents" {
  for_each = {
    sql     = "serviceAccount:${google_project_service_identity.sql.email}"
    storage = "serviceAccount:service-${data.google_project.current.number}@gs-project-accounts.iam.gserviceaccount.com"
    redis   = "serviceAccount:service-${data.google_project.current.number}@cloud-redis.iam.gserviceaccount.com"
    gke     = "serviceAccount:service-${data.google_project.current.number}@container-engine-robot.iam.gserviceaccount.com"
    ar      = "serviceAccount:service-${data.google_project.current.number}@gcp-sa-artifactregistry.iam.gserviceaccount.com"
  }
  crypto_key_id = google_kms_crypto_key.data.id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = each.value
}

# ---------------------------------------------------------------- network

resource "google_compute_network" "medai" {
  name                    = local.name
  auto_create_subnetworks = false
}

resource "google_compute_subnetwork" "gke" {
  name                     = "${local.name}-gke"
  network                  = google_compute_network.medai.id
  region                   = var.region
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true

  secondary_ip_range {
    range_name    = "pods"
    ip_cidr_range = var.pods_cidr
  }
  secondary_ip_range {
    range_name    = "services"
    ip_cidr_range = var.services_cidr
  }
  log_config {
    aggregation_interval = "INTERVAL_5_SEC"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_router" "medai" {
  name    = local.name
  network = google_compute_network.medai.id
  region  = var.region
}

resource "google_compute_router_nat" "medai" {
  name                               = local.name
  router                             = google_compute_router.medai.name
  region                             = var.region
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"
  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

resource "google_compute_global_address" "private_services" {
  name          = "${local.name}-private-services"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  address       = var.private_services_address
  prefix_length = var.private_services_cidr_prefix
  network       = google_compute_network.medai.id
}

resource "google_service_networking_connection" "private_services" {
  network                 = google_compute_network.medai.id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_services.name]
}

# No default firewall: deny all ingress, then allow Google's load balancer and health checkers to
# reach the nodes (container-native load balancing sends to pod addresses).
resource "google_compute_firewall" "deny_all_ingress" {
  name      = "${local.name}-deny-all-ingress"
  network   = google_compute_network.medai.id
  direction = "INGRESS"
  priority  = 65534
  deny {
    protocol = "all"
  }
  source_ranges = ["0.0.0.0/0"]
  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_firewall" "load_balancer" {
  name          = "${local.name}-allow-load-balancer"
  network       = google_compute_network.medai.id
  direction     = "INGRESS"
  priority      = 1000
  source_ranges = ["130.211.0.0/22", "35.191.0.0/16"]
  allow {
    protocol = "tcp"
    ports    = ["8080"]
  }
  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_global_address" "ingress" {
  name = local.name
}

# ---------------------------------------------------------------- GKE

resource "google_service_account" "nodes" {
  account_id   = "${local.name}-nodes"
  display_name = "medai GKE nodes (logging, monitoring and image pulls only)"
}

resource "google_project_iam_member" "nodes" {
  for_each = toset([
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/monitoring.viewer",
    "roles/artifactregistry.reader",
  ])
  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.nodes.email}"
}

resource "google_container_cluster" "medai" {
  # checkov:skip=CKV_GCP_12:Dataplane V2 (ADVANCED_DATAPATH) enforces NetworkPolicies itself; the legacy Calico network_policy block conflicts with it
  # checkov:skip=CKV_GCP_69:the default node pool is removed; both node pools set workload_metadata_config GKE_METADATA
  name                     = local.name
  location                 = var.region
  network                  = google_compute_network.medai.id
  subnetwork               = google_compute_subnetwork.gke.id
  remove_default_node_pool = true
  initial_node_count       = 1
  deletion_protection      = true
  enable_intranode_visibility = true
  enable_shielded_nodes    = true
  networking_mode          = "VPC_NATIVE"
  datapath_provider        = "ADVANCED_DATAPATH"

  release_channel {
    channel = var.kubernetes_version_channel
  }
  ip_allocation_policy {
    cluster_secondary_range_name  = "pods"
    services_secondary_range_name = "services"
  }
  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = true
    master_ipv4_cidr_block  = var.master_cidr
  }
  master_authorized_networks_config {
    dynamic "cidr_blocks" {
      for_each = var.admin_cidrs
      content {
        cidr_block   = cidr_blocks.value
        display_name = "admin"
      }
    }
  }
  workload_identity_config {
    workload_pool = "${var.project_id}.svc.id.goog"
  }
  database_encryption {
    state    = "ENCRYPTED"
    key_name = google_kms_crypto_key.data.id
  }
  binary_authorization {
    evaluation_mode = "PROJECT_SINGLETON_POLICY_ENFORCE"
  }
  authenticator_groups_config {
    security_group = var.rbac_security_group
  }
  master_auth {
    client_certificate_config {
      issue_client_certificate = false
    }
  }
  security_posture_config {
    mode               = "BASIC"
    vulnerability_mode = "VULNERABILITY_BASIC"
  }
  logging_config {
    enable_components = ["SYSTEM_COMPONENTS", "WORKLOADS", "APISERVER"]
  }
  monitoring_config {
    enable_components = ["SYSTEM_COMPONENTS"]
    managed_prometheus {
      enabled = true
    }
  }
  resource_labels = {
    application = "medai"
  }
}

resource "google_container_node_pool" "general" {
  name     = "general"
  cluster  = google_container_cluster.medai.id
  location = var.region

  autoscaling {
    min_node_count = 1
    max_node_count = 3
  }
  management {
    auto_repair  = true
    auto_upgrade = true
  }
  node_config {
    machine_type    = "e2-standard-4"
    image_type      = "COS_CONTAINERD"
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    labels          = { "medai/node-pool" = "general" }
    workload_metadata_config {
      mode = "GKE_METADATA"
    }
    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
    metadata = {
      disable-legacy-endpoints = "true"
    }
  }
}

resource "google_container_node_pool" "gpu" {
  name     = "gpu"
  cluster  = google_container_cluster.medai.id
  location = var.region

  autoscaling {
    min_node_count = 0
    max_node_count = 2
  }
  management {
    auto_repair  = true
    auto_upgrade = true
  }
  node_config {
    machine_type    = var.gpu_machine_type
    image_type      = "COS_CONTAINERD"
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    labels          = { "medai/node-pool" = "gpu" }
    guest_accelerator {
      type  = var.gpu_type
      count = 1
      gpu_driver_installation_config {
        gpu_driver_version = "LATEST"
      }
    }
    taint {
      key    = "nvidia.com/gpu"
      value  = "present"
      effect = "NO_SCHEDULE"
    }
    workload_metadata_config {
      mode = "GKE_METADATA"
    }
    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
    metadata = {
      disable-legacy-endpoints = "true"
    }
  }
}

# medai's Google service account, bound to its Kubernetes ServiceAccount (Workload Identity).
resource "google_service_account" "medai" {
  account_id   = "${local.name}-app"
  display_name = "medai application (backups bucket, KMS key)"
}

resource "google_service_account_iam_member" "workload_identity" {
  service_account_id = google_service_account.medai.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[medai/medai]"
}

resource "google_storage_bucket_iam_member" "medai_backups" {
  bucket = google_storage_bucket.backups.name
  role   = "roles/storage.objectCreator"
  member = "serviceAccount:${google_service_account.medai.email}"
}

# ---------------------------------------------------------------- Cloud SQL

resource "google_sql_database_instance" "postgres" {
  # checkov:skip=CKV_GCP_6:ENCRYPTED_ONLY refuses every connection without TLS; client certificates are not used because medai authenticates with a password in its database URL
  # checkov:skip=CKV_GCP_79:PostgreSQL 16 is the major medai runs on in every stack (RDS 16, Azure 16); move all three together once CI tests a newer one
  name                = local.name
  database_version    = "POSTGRES_16"
  region              = var.region
  encryption_key_name = google_kms_crypto_key.data.id
  deletion_protection = true
  depends_on          = [google_service_networking_connection.private_services, google_kms_crypto_key_iam_member.agents]

  settings {
    tier              = var.db_tier
    edition           = "ENTERPRISE"
    availability_type = "REGIONAL"
    disk_autoresize   = true
    disk_type         = "PD_SSD"

    ip_configuration {
      ipv4_enabled                                  = false
      private_network                               = google_compute_network.medai.id
      ssl_mode                                      = "ENCRYPTED_ONLY"
      enable_private_path_for_google_cloud_services = true
    }
    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
      start_time                     = "02:00"
      transaction_log_retention_days = 7
      backup_retention_settings {
        retained_backups = 35
        retention_unit   = "COUNT"
      }
    }
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }
    database_flags {
      name  = "pgaudit.log"
      value = "ddl,role,write"
    }
    database_flags {
      name  = "log_duration"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    insights_config {
      query_insights_enabled  = true
      record_application_tags = false
      record_client_address   = false
    }
    maintenance_window {
      day  = 7
      hour = 3
    }
  }
}

resource "google_sql_database" "medai" {
  name     = "medai"
  instance = google_sql_database_instance.postgres.name
}

# ---------------------------------------------------------------- Memorystore

resource "google_redis_instance" "medai" {
  name                    = local.name
  tier                    = "STANDARD_HA"
  memory_size_gb          = 5
  region                  = var.region
  redis_version           = "REDIS_7_2"
  authorized_network      = google_compute_network.medai.id
  connect_mode            = "PRIVATE_SERVICE_ACCESS"
  auth_enabled            = true
  transit_encryption_mode = "SERVER_AUTHENTICATION"
  customer_managed_key    = google_kms_crypto_key.data.id
  depends_on              = [google_service_networking_connection.private_services, google_kms_crypto_key_iam_member.agents]
}

# ---------------------------------------------------------------- images and backups

resource "google_artifact_registry_repository" "medai" {
  repository_id = "medai"
  location      = var.region
  format        = "DOCKER"
  kms_key_name  = google_kms_crypto_key.data.id
  depends_on    = [google_kms_crypto_key_iam_member.agents]
  docker_config {
    immutable_tags = true
  }
}

resource "google_storage_bucket" "backups" {
  name                        = "${var.project_id}-${local.name}-backups"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  depends_on                  = [google_kms_crypto_key_iam_member.agents]

  versioning {
    enabled = true
  }
  retention_policy {
    retention_period = var.backup_retention_days * 86400
    is_locked        = false
  }
  encryption {
    default_kms_key_name = google_kms_crypto_key.data.id
  }
  logging {
    log_bucket = google_storage_bucket.access_logs.name
  }
}

resource "google_storage_bucket" "access_logs" {
  # checkov:skip=CKV_GCP_62:this is the access-log bucket; logging it into itself would loop
  name                        = "${var.project_id}-${local.name}-access-logs"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  versioning {
    enabled = true
  }
}

# ---------------------------------------------------------------- Cloud Armor

resource "google_compute_security_policy" "medai" {
  name = local.name

  rule {
    action   = "deny(403)"
    priority = 1000
    match {
      expr {
        expression = "evaluatePreconfiguredWaf('sqli-v33-stable') || evaluatePreconfiguredWaf('xss-v33-stable') || evaluatePreconfiguredWaf('lfi-v33-stable') || evaluatePreconfiguredWaf('rce-v33-stable')"
      }
    }
    description = "OWASP preconfigured rules"
  }

  rule {
    action   = "deny(403)"
    priority = 900
    preview  = false
    match {
      expr {
        expression = "evaluatePreconfiguredWaf('cve-canary')"
      }
    }
    description = "Log4j message lookups (CVE-2021-44228)"
  }

  rule {
    action   = "throttle"
    priority = 2000
    match {
      expr {
        expression = "request.path.startsWith('/api/v1/auth/')"
      }
    }
    rate_limit_options {
      conform_action = "allow"
      exceed_action  = "deny(429)"
      enforce_on_key = "IP"
      rate_limit_threshold {
        count        = 100
        interval_sec = 60
      }
    }
    description = "Sign-in rate limit per client address"
  }

  rule {
    action   = "allow"
    priority = 2147483647
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
    description = "Default: allow what the rules above did not stop"
  }
}
