# medai on AWS: VPC over 3 AZs, EKS (general and GPU node groups), RDS PostgreSQL Multi-AZ,
# ElastiCache Redis with TLS and AUTH, KMS keys with rotation, an object-locked backup bucket
# replicated to a second region, CloudWatch log groups kept 7 years, and a WAF for the ALB.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  name    = "medai-${var.environment}"
  azs     = var.availability_zones
  account = data.aws_caller_identity.current.account_id
}

# ---------------------------------------------------------------- network

module "vpc" {
  # checkov:skip=CKV_TF_1:exact registry release (5.16.0) of terraform-aws-modules; commit pins need the source repository, which this repository vendors nothing from
  source  = "terraform-aws-modules/vpc/aws"
  version = "5.16.0"

  name                    = local.name
  cidr                    = var.vpc_cidr
  azs                     = local.azs
  private_subnets         = [for i in range(3) : cidrsubnet(var.vpc_cidr, 4, i)]
  public_subnets          = [for i in range(3) : cidrsubnet(var.vpc_cidr, 8, 48 + i)]
  database_subnets        = [for i in range(3) : cidrsubnet(var.vpc_cidr, 8, 52 + i)]
  enable_nat_gateway      = true
  one_nat_gateway_per_az  = true
  map_public_ip_on_launch = false
  enable_dns_hostnames    = true

  enable_flow_log                                 = true
  create_flow_log_cloudwatch_log_group            = true
  create_flow_log_cloudwatch_iam_role             = true
  flow_log_cloudwatch_log_group_retention_in_days = var.log_retention_days
  flow_log_cloudwatch_log_group_kms_key_id        = aws_kms_key.logs.arn

  public_subnet_tags  = { "kubernetes.io/role/elb" = "1" }
  private_subnet_tags = { "kubernetes.io/role/internal-elb" = "1" }
}

# ---------------------------------------------------------------- keys

data "aws_iam_policy_document" "kms_data" {
  # checkov:skip=CKV_AWS_109:a key policy's "*" resource is this key only; the account-root statement is AWS's default that lets IAM policies grant use
  # checkov:skip=CKV_AWS_111:a key policy's "*" resource is this key only; without the account-root statement the key becomes unmanageable
  # checkov:skip=CKV_AWS_356:a key policy's "*" resource is this key only (key policies cannot name their own ARN)
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${local.account}:root"]
    }
  }
}

data "aws_iam_policy_document" "kms_logs" {
  # checkov:skip=CKV_AWS_109:a key policy's "*" resource is this key only; the account-root statement is AWS's default that lets IAM policies grant use
  # checkov:skip=CKV_AWS_111:a key policy's "*" resource is this key only; without the account-root statement the key becomes unmanageable
  # checkov:skip=CKV_AWS_356:a key policy's "*" resource is this key only (key policies cannot name their own ARN)
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${local.account}:root"]
    }
  }
  statement {
    sid       = "CloudWatchLogsUse"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }
  }
}

resource "aws_kms_key" "data" {
  description             = "${local.name}: database, cache, backups and EKS secrets"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms_data.json
}

resource "aws_kms_alias" "data" {
  name          = "alias/${local.name}-data"
  target_key_id = aws_kms_key.data.key_id
}

resource "aws_kms_key" "logs" {
  description             = "${local.name}: CloudWatch log groups"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms_logs.json
}

resource "aws_kms_key" "replica" {
  provider                = aws.replica
  description             = "${local.name}: backup replica bucket"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms_data.json
}

# ---------------------------------------------------------------- EKS

module "eks" {
  # checkov:skip=CKV_TF_1:exact registry release (20.31.0) of terraform-aws-modules; commit pins need the source repository, which this repository vendors nothing from
  source  = "terraform-aws-modules/eks/aws"
  version = "20.31.0"

  cluster_name                    = local.name
  cluster_version                 = var.kubernetes_version
  vpc_id                          = module.vpc.vpc_id
  subnet_ids                      = module.vpc.private_subnets
  cluster_endpoint_public_access  = false
  cluster_endpoint_private_access = true
  enable_irsa                     = true
  cluster_encryption_config = {
    provider_key_arn = aws_kms_key.data.arn
    resources        = ["secrets"]
  }
  cluster_enabled_log_types              = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
  cloudwatch_log_group_retention_in_days = var.log_retention_days
  cloudwatch_log_group_kms_key_id        = aws_kms_key.logs.arn

  eks_managed_node_groups = {
    general = {
      instance_types = var.node_instance_types
      min_size       = 3
      max_size       = 9
      desired_size   = 3
      labels         = { "medai/node-pool" = "general" }
    }
    gpu = {
      ami_type       = "AL2023_x86_64_NVIDIA"
      instance_types = var.gpu_instance_types
      min_size       = 0
      max_size       = 4
      desired_size   = var.gpu_node_count
      labels         = { "medai/node-pool" = "gpu" }
      taints = {
        gpu = { key = "nvidia.com/gpu", value = "true", effect = "NO_SCHEDULE" }
      }
    }
  }
}

# ---------------------------------------------------------------- PostgreSQL

resource "aws_security_group" "database" {
  name        = "${local.name}-database"
  description = "PostgreSQL and Redis: reachable from the VPC only"
  vpc_id      = module.vpc.vpc_id

  ingress {
    description = "PostgreSQL from the VPC"
    from_port   = 5432
    to_port     = 5432
    protocol    = "tcp"
    cidr_blocks = [var.vpc_cidr]
  }
  ingress {
    description = "Redis TLS from the VPC"
    from_port   = 6379
    to_port     = 6379
    protocol    = "tcp"
    cidr_blocks = [var.vpc_cidr]
  }
  egress {
    description = "Replies within the VPC"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = [var.vpc_cidr]
  }
}

resource "aws_db_parameter_group" "postgres" {
  name   = "${local.name}-pg16"
  family = "postgres16"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }
  parameter {
    name         = "shared_preload_libraries"
    value        = "pgaudit,pg_stat_statements"
    apply_method = "pending-reboot"
  }
  parameter {
    name  = "pgaudit.log"
    value = "ddl,role,write"
  }
  parameter {
    name  = "pgaudit.log_parameter"
    value = "0"
  }
  parameter {
    name  = "log_connections"
    value = "1"
  }
  parameter {
    name  = "log_disconnections"
    value = "1"
  }
  parameter {
    name  = "log_min_duration_statement"
    value = "-1"
  }
}

data "aws_iam_policy_document" "rds_monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "rds_monitoring" {
  name               = "${local.name}-rds-monitoring"
  assume_role_policy = data.aws_iam_policy_document.rds_monitoring_assume.json
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  role       = aws_iam_role.rds_monitoring.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "postgres" {
  identifier                            = local.name
  engine                                = "postgres"
  engine_version                        = "16.6"
  instance_class                        = var.db_instance_class
  allocated_storage                     = 100
  max_allocated_storage                 = 1000
  storage_type                          = "gp3"
  storage_encrypted                     = true
  kms_key_id                            = aws_kms_key.data.arn
  db_name                               = "medai"
  username                              = "medai_admin"
  manage_master_user_password           = true
  master_user_secret_kms_key_id         = aws_kms_key.data.arn
  iam_database_authentication_enabled   = true
  multi_az                              = true
  db_subnet_group_name                  = module.vpc.database_subnet_group_name
  vpc_security_group_ids                = [aws_security_group.database.id]
  parameter_group_name                  = aws_db_parameter_group.postgres.name
  publicly_accessible                   = false
  backup_retention_period               = 35
  backup_window                         = "02:00-03:00"
  maintenance_window                    = "sun:03:30-sun:04:30"
  deletion_protection                   = true
  skip_final_snapshot                   = false
  final_snapshot_identifier             = "${local.name}-final"
  copy_tags_to_snapshot                 = true
  auto_minor_version_upgrade            = true
  enabled_cloudwatch_logs_exports       = ["postgresql", "upgrade"]
  performance_insights_enabled          = true
  performance_insights_kms_key_id       = aws_kms_key.data.arn
  performance_insights_retention_period = 7
  monitoring_interval                   = 30
  monitoring_role_arn                   = aws_iam_role.rds_monitoring.arn
}

# ---------------------------------------------------------------- Redis

resource "aws_elasticache_subnet_group" "redis" {
  name       = "${local.name}-redis"
  subnet_ids = module.vpc.database_subnets
}

# The one secret this stack cannot keep out of its state: ElastiCache needs the AUTH token at
# creation. The state bucket is KMS-encrypted and access-restricted (docs/deploy.md).
resource "random_password" "redis_auth" {
  length  = 64
  special = false
}

resource "aws_elasticache_replication_group" "redis" {
  replication_group_id       = local.name
  description                = "medai sessions and rate limits"
  engine                     = "redis"
  engine_version             = "7.1"
  node_type                  = var.redis_node_type
  num_cache_clusters         = 3
  port                       = 6379
  automatic_failover_enabled = true
  multi_az_enabled           = true
  subnet_group_name          = aws_elasticache_subnet_group.redis.name
  security_group_ids         = [aws_security_group.database.id]
  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.data.arn
  transit_encryption_enabled = true
  auth_token                 = random_password.redis_auth.result
  snapshot_retention_limit   = 7
  auto_minor_version_upgrade = true
  apply_immediately          = false
}

# ---------------------------------------------------------------- logs

resource "aws_cloudwatch_log_group" "application" {
  name              = "/medai/${var.environment}/application"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.logs.arn
}

resource "aws_cloudwatch_log_group" "waf" {
  name              = "aws-waf-logs-${local.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.logs.arn
}
