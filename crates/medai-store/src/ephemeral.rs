//! Short-lived shared state: server-side sessions and login-failure counters. In process by
//! default; in Redis when configured, so that every replica sees the same sessions and the same
//! counters (an attacker cannot spread guesses across replicas).
//!
//! Keys are SHA-256 digests of session tokens and opaque account or address keys; no PHI is
//! stored here.

use crate::redis_tls::{install_crypto_provider, RedisCa};
use crate::StoreError;
use medai_core::throttle::FailureRecord;
use redis::aio::ConnectionManager;
use redis::AsyncCommands as _;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;

/// A server-side session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The signed-in user.
    pub user_id: String,
    /// The user's session generation at login; a later bump revokes the session.
    pub generation: i64,
    /// Unix seconds of login (the absolute lifetime counts from here).
    pub created_at: i64,
    /// Unix seconds of the latest request (the idle timeout counts from here).
    pub last_seen: i64,
    /// True between the password step and the TOTP step: the session grants nothing yet.
    pub mfa_pending: bool,
}

/// How the connection is (re)established. The redis crate's default hands its `factor` of 100
/// to backon as a multiplier over a 1 s minimum, so a server that refuses us (a bad certificate,
/// a wrong password) is retried for about five minutes before the error surfaces. Here: attempts
/// 1 s then 2 s apart, each given 10 s, so start-up reports a failure within seconds and a
/// request during an outage fails (503) instead of hanging.
fn connection_config() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_factor(2)
        .set_max_delay(2_000)
        .set_number_of_retries(2)
        .set_connection_timeout(std::time::Duration::from_secs(10))
}

/// Names the server and, when the TLS handshake failed on the certificate, says what to set.
fn connect_error(target: String, source: redis::RedisError, tls: bool, has_ca: bool) -> StoreError {
    let detail = source.to_string().to_ascii_lowercase();
    let certificate = detail.contains("certificate") || detail.contains("unknownissuer");
    let hint = match (tls && certificate, has_ca) {
        (true, false) => {
            " (the server's certificate is not signed by a public CA: set `redis_ca_file` to the \
             PEM file of the CA that signed it)"
        }
        (true, true) => {
            " (the server's certificate does not chain to `redis_ca_file` or does not name the \
             host in `redis_url`)"
        }
        (false, _) => "",
    };
    StoreError::RedisConnect {
        target,
        source,
        hint,
    }
}

/// Where sessions and counters live.
pub enum Ephemeral {
    /// In this process.
    Memory(MemoryStore),
    /// In Redis.
    Redis(RedisStore),
}

impl std::fmt::Debug for Ephemeral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ephemeral::Memory(_) => f.write_str("Ephemeral::Memory"),
            Ephemeral::Redis(r) => write!(f, "Ephemeral::Redis(prefix={})", r.prefix),
        }
    }
}

/// The in-process store.
#[derive(Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<String, (String, i64)>>,
}

/// The Redis store.
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
}

/// The longest session lifetime the configuration allows (7 days).
const MAX_SESSION_SECS: i64 = 7 * 24 * 3600;

impl RedisStore {
    /// The sorted set of signed-in session id hashes, scored by their last request.
    fn active_index(&self) -> String {
        format!("{}sessions:active", self.prefix)
    }
}

fn lock_err() -> StoreError {
    StoreError::Corrupt("in-process session store lock poisoned".into())
}

impl MemoryStore {
    fn put(&self, key: String, value: String, expires_at: i64, now: i64) -> Result<(), StoreError> {
        let mut m = self.entries.lock().map_err(|_| lock_err())?;
        if m.len() % 1024 == 1023 {
            m.retain(|_, (_, exp)| *exp > now);
        }
        m.insert(key, (value, expires_at));
        Ok(())
    }

    fn get(&self, key: &str, now: i64) -> Result<Option<String>, StoreError> {
        let m = self.entries.lock().map_err(|_| lock_err())?;
        Ok(m.get(key)
            .filter(|(_, exp)| *exp > now)
            .map(|(v, _)| v.clone()))
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.entries.lock().map_err(|_| lock_err())?.remove(key);
        Ok(())
    }
}

impl Ephemeral {
    /// The in-process store.
    pub fn memory() -> Self {
        Ephemeral::Memory(MemoryStore::default())
    }

    /// Connects to Redis; every key is put under `prefix` (so tests and deployments can share a
    /// server without colliding). A `rediss://` URL connects over TLS and verifies the server's
    /// certificate against `ca` when given, else against the public roots built into medai.
    pub async fn redis(url: &str, ca: Option<&RedisCa>, prefix: &str) -> Result<Self, StoreError> {
        let tls = url.starts_with("rediss://");
        let client = match ca {
            Some(ca) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.pem().to_vec()),
                },
            )?,
            None => redis::Client::open(url)?,
        };
        if tls {
            install_crypto_provider()?;
        }
        let target = client.get_connection_info().addr.to_string();
        let conn = ConnectionManager::new_with_config(client, connection_config())
            .await
            .map_err(|source| connect_error(target, source, tls, ca.is_some()))?;
        Ok(Ephemeral::Redis(RedisStore {
            conn,
            prefix: prefix.to_owned(),
        }))
    }

    /// Which kind, for health output.
    pub fn kind(&self) -> &'static str {
        match self {
            Ephemeral::Memory(_) => "memory",
            Ephemeral::Redis(_) => "redis",
        }
    }

    /// Checks the store answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Ephemeral::Memory(_) => Ok(()),
            Ephemeral::Redis(r) => {
                let mut c = r.conn.clone();
                let _: String = redis::cmd("PING").query_async(&mut c).await?;
                Ok(())
            }
        }
    }

    fn session_key(&self, id_hash: &str) -> String {
        match self {
            Ephemeral::Memory(_) => format!("session:{id_hash}"),
            Ephemeral::Redis(r) => format!("{}session:{id_hash}", r.prefix),
        }
    }

    fn throttle_key(&self, key: &str) -> String {
        match self {
            Ephemeral::Memory(_) => format!("throttle:{key}"),
            Ephemeral::Redis(r) => format!("{}throttle:{key}", r.prefix),
        }
    }

    /// Stores a session for `ttl_secs` (refreshed on every write).
    pub async fn put_session(
        &self,
        id_hash: &str,
        s: &SessionRecord,
        ttl_secs: u64,
        now: i64,
    ) -> Result<(), StoreError> {
        let key = self.session_key(id_hash);
        let value = serde_json::to_string(s).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        match self {
            Ephemeral::Memory(m) => m.put(key, value, now.saturating_add(ttl_secs as i64), now),
            Ephemeral::Redis(r) => {
                let mut c = r.conn.clone();
                let index = r.active_index();
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .set_ex(key, value, ttl_secs.max(1))
                    .ignore()
                    // Entries older than the longest session lifetime allowed cannot be alive.
                    .zrembyscore(&index, "-inf", now.saturating_sub(MAX_SESSION_SECS))
                    .ignore();
                if s.mfa_pending {
                    pipe.zrem(&index, id_hash).ignore();
                } else {
                    pipe.zadd(&index, id_hash, s.last_seen).ignore();
                }
                let _: () = pipe.query_async(&mut c).await?;
                Ok(())
            }
        }
    }

    /// Signed-in sessions (second factor done) used within the last `idle_secs`: the
    /// in-process store counts its records; Redis keeps a sorted set of session id hashes
    /// scored by their last request, trimmed here, so counting costs two commands.
    pub async fn active_sessions(&self, now: i64, idle_secs: u64) -> Result<u64, StoreError> {
        let since = now.saturating_sub(idle_secs as i64);
        match self {
            Ephemeral::Memory(m) => {
                let map = m.entries.lock().map_err(|_| lock_err())?;
                let n = map
                    .iter()
                    .filter(|(k, (_, exp))| k.starts_with("session:") && *exp > now)
                    .filter_map(|(_, (v, _))| serde_json::from_str::<SessionRecord>(v).ok())
                    .filter(|r| !r.mfa_pending && r.last_seen > since)
                    .count();
                Ok(n as u64)
            }
            Ephemeral::Redis(r) => {
                let mut c = r.conn.clone();
                let index = r.active_index();
                let (n,): (u64,) = redis::pipe()
                    .atomic()
                    .zrembyscore(&index, "-inf", format!("({since}"))
                    .ignore()
                    .zcard(&index)
                    .query_async(&mut c)
                    .await?;
                Ok(n)
            }
        }
    }

    /// The session with this id hash, if it exists and has not expired in the store.
    pub async fn get_session(
        &self,
        id_hash: &str,
        now: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let key = self.session_key(id_hash);
        let raw: Option<String> = match self {
            Ephemeral::Memory(m) => m.get(&key, now)?,
            Ephemeral::Redis(r) => {
                let mut c = r.conn.clone();
                c.get(key).await?
            }
        };
        match raw {
            // A record we cannot parse is treated as no session: the user signs in again.
            Some(v) => Ok(serde_json::from_str(&v).ok()),
            None => Ok(None),
        }
    }

    /// Deletes a session.
    pub async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        let key = self.session_key(id_hash);
        match self {
            Ephemeral::Memory(m) => m.delete(&key),
            Ephemeral::Redis(r) => {
                let mut c = r.conn.clone();
                let _: () = redis::pipe()
                    .atomic()
                    .del(key)
                    .ignore()
                    .zrem(r.active_index(), id_hash)
                    .ignore()
                    .query_async(&mut c)
                    .await?;
                Ok(())
            }
        }
    }

    /// Counts one more failure for `key` at `now`, keeping the counter `retention_secs`.
    pub async fn record_failure(
        &self,
        key: &str,
        now: i64,
        retention_secs: u64,
    ) -> Result<FailureRecord, StoreError> {
        let k = self.throttle_key(key);
        match self {
            Ephemeral::Memory(m) => {
                let mut map = m.entries.lock().map_err(|_| lock_err())?;
                let prev = map
                    .get(&k)
                    .filter(|(_, exp)| *exp > now)
                    .and_then(|(v, _)| serde_json::from_str::<FailureRecord>(v).ok());
                let rec = FailureRecord {
                    count: prev.map_or(0, |p| p.count).saturating_add(1),
                    last_failure: now,
                };
                let v =
                    serde_json::to_string(&rec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                map.insert(k, (v, now.saturating_add(retention_secs as i64)));
                Ok(rec)
            }
            Ephemeral::Redis(r) => {
                let mut c = r.conn.clone();
                let (count,): (u32,) = redis::pipe()
                    .atomic()
                    .hincr(&k, "count", 1)
                    .hset(&k, "last", now)
                    .ignore()
                    .expire(&k, retention_secs.max(1) as i64)
                    .ignore()
                    .query_async(&mut c)
                    .await?;
                Ok(FailureRecord {
                    count,
                    last_failure: now,
                })
            }
        }
    }

    /// The failures recorded for `key`.
    pub async fn failures(&self, key: &str, now: i64) -> Result<Option<FailureRecord>, StoreError> {
        let k = self.throttle_key(key);
        match self {
            Ephemeral::Memory(m) => Ok(m.get(&k, now)?.and_then(|v| serde_json::from_str(&v).ok())),
            Ephemeral::Redis(r) => {
                let mut c = r.conn.clone();
                let (count, last): (Option<u32>, Option<i64>) =
                    c.hget(&k, &["count", "last"]).await?;
                Ok(match (count, last) {
                    (Some(count), Some(last_failure)) => Some(FailureRecord {
                        count,
                        last_failure,
                    }),
                    _ => None,
                })
            }
        }
    }

    /// Forgets the failures of `key` (after a successful login).
    pub async fn clear_failures(&self, key: &str) -> Result<(), StoreError> {
        let k = self.throttle_key(key);
        match self {
            Ephemeral::Memory(m) => m.delete(&k),
            Ephemeral::Redis(r) => {
                let mut c = r.conn.clone();
                let _: () = c.del(k).await?;
                Ok(())
            }
        }
    }
}
