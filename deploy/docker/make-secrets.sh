#!/usr/bin/env bash
# Creates ./secrets for compose.yaml: random PostgreSQL, Redis and Grafana passwords, medai.toml
# with the connection URLs, and a self-signed TLS certificate for the host name given (replace
# tls.crt/tls.key with your hospital's certificate). Never overwrites an existing file.
# Usage: ./make-secrets.sh medai.example-hospital.org
set -euo pipefail
cd "$(dirname "$0")"

host="${1:-localhost}"
if [[ ! "$host" =~ ^[A-Za-z0-9.-]+$ ]]; then
  echo "error: '$host' is not a host name" >&2
  exit 2
fi
umask 077
mkdir -p secrets

random() { openssl rand -hex 32; }

write_new() {
  local path="secrets/$1"
  if [[ -e "$path" ]]; then
    echo "kept     $path"
    return 1
  fi
  echo "created  $path"
}

if write_new postgres_password; then random >secrets/postgres_password; fi
if write_new grafana_admin_password; then random >secrets/grafana_admin_password; fi
if write_new redis.conf; then
  printf 'requirepass %s\nappendonly yes\ndir /data\nprotected-mode yes\n' "$(random)" >secrets/redis.conf
fi
if write_new medai.toml; then
  pg="$(tr -d '\n' <secrets/postgres_password)"
  redis="$(sed -n 's/^requirepass //p' secrets/redis.conf)"
  cat >secrets/medai.toml <<TOML
# medai configuration with secrets; mounted as /run/secrets/medai_config.
database_url = "postgres://medai:${pg}@postgres:5432/medai"
redis_url = "redis://:${redis}@redis:6379"
TOML
fi
if write_new tls.crt; then
  openssl req -x509 -newkey rsa:3072 -nodes -days 365 -subj "/CN=${host}" \
    -addext "subjectAltName=DNS:${host}" \
    -keyout secrets/tls.key -out secrets/tls.crt 2>/dev/null
fi
# The containers run as their own users and read these through bind mounts: the directory stays
# private to the host user, the files readable inside the containers.
chmod 0700 secrets
chmod 0644 secrets/*
