module "helm_values" {
  source = "../modules/helm-values"

  host                        = var.host
  image_repository            = var.image_repository
  trusted_proxies             = [var.vpc_cidr]
  service_account_annotations = { "eks.amazonaws.com/role-arn" = aws_iam_role.medai.arn }
  ingress_class               = "alb"
  tls_secret_name             = ""
  ingress_annotations = {
    "alb.ingress.kubernetes.io/scheme"          = "internet-facing"
    "alb.ingress.kubernetes.io/target-type"     = "ip"
    "alb.ingress.kubernetes.io/listen-ports"    = "[{\"HTTPS\":443}]"
    "alb.ingress.kubernetes.io/ssl-policy"      = "ELBSecurityPolicy-TLS13-1-3-2021-06"
    "alb.ingress.kubernetes.io/certificate-arn" = var.certificate_arn
    "alb.ingress.kubernetes.io/wafv2-acl-arn"   = aws_wafv2_web_acl.medai.arn
  }
  secret_store_name = "aws-secrets-manager"
  secret_remote_keys = {
    databaseUrl = "medai/${var.environment}/database-url"
    redisUrl    = "medai/${var.environment}/redis-url"
    masterKey   = "medai/${var.environment}/master-key"
  }
  database_cidrs = module.vpc.database_subnets_cidr_blocks
  redis_port     = aws_elasticache_replication_group.redis.port
}

output "cluster_name" {
  description = "EKS cluster name (aws eks update-kubeconfig --name …)."
  value       = module.eks.cluster_name
}

output "database_endpoint" {
  description = "RDS endpoint (host:port) for the database URL."
  value       = aws_db_instance.postgres.endpoint
}

output "database_master_secret_arn" {
  description = "Secrets Manager secret RDS manages for the admin user (never in this state)."
  value       = aws_db_instance.postgres.master_user_secret[0].secret_arn
}

output "redis_endpoint" {
  description = "ElastiCache primary endpoint (rediss://)."
  value       = aws_elasticache_replication_group.redis.primary_endpoint_address
}

output "backup_bucket" {
  description = "Object-locked backup bucket."
  value       = aws_s3_bucket.backups.bucket
}

output "kms_key_arn" {
  description = "KMS key for data at rest."
  value       = aws_kms_key.data.arn
}

output "helm_values_yaml" {
  description = "Values for deploy/helm/medai (helm upgrade -f)."
  value       = module.helm_values.values_yaml
}
