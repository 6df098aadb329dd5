//! The keys that protect PHI columns, stored wrapped in `phi_keys`: AES-256-GCM data keys
//! (versioned; new writes use the newest) and the HMAC blind-index key. The key-encryption key
//! comes from a [`KeyProvider`] (the local key file by default) and never reaches the database.

use crate::StoreError;
use medai_crypto::envelope::{BlindIndexKey, DataKey, Field, FieldError, KeyProvider, KeyRing};
use sqlx::AnyConnection;
use zeroize::Zeroizing;

/// The wrap version of the first blind-index key (version 0); data keys are numbered from 1, so
/// the two are never wrapped under the same context.
const BLIND_INDEX_WRAP_VERSION: u32 = 0;

/// Later blind-index key versions `v` are wrapped as `BLIND_INDEX_WRAP_BASE + v`: still never a
/// data key's version, and the KMS providers bind them to the blind-index purpose.
const BLIND_INDEX_WRAP_BASE: u32 = 1 << 31;

/// The version a key of `purpose` and `version` is wrapped under.
fn wrap_version(purpose: &str, version: u32) -> Result<u32, StoreError> {
    match (purpose, version) {
        (PURPOSE_DATA, v) if v < BLIND_INDEX_WRAP_BASE => Ok(v),
        (PURPOSE_BLIND_INDEX, 0) => Ok(BLIND_INDEX_WRAP_VERSION),
        (PURPOSE_BLIND_INDEX, v) if v < BLIND_INDEX_WRAP_BASE => Ok(BLIND_INDEX_WRAP_BASE + v),
        _ => Err(StoreError::Corrupt(format!(
            "phi_keys has an invalid {purpose} version {version}"
        ))),
    }
}

const PURPOSE_DATA: &str = "data";
const PURPOSE_BLIND_INDEX: &str = "blind-index";

/// Unwrapped PHI keys held in memory (zeroed on drop): encrypts and decrypts fields, computes
/// blind-index tokens.
#[derive(Debug)]
pub struct PhiCipher {
    ring: KeyRing,
    /// Blind-index keys by version; new writes index under the newest, lookups match any.
    indexes: std::collections::BTreeMap<u32, BlindIndexKey>,
}

impl PhiCipher {
    /// A cipher over the given keys (tests and tools that hold keys directly); `index` is
    /// blind-index version 0.
    pub fn new(ring: KeyRing, index: BlindIndexKey) -> Self {
        Self {
            ring,
            indexes: std::collections::BTreeMap::from([(0, index)]),
        }
    }

    /// The blind-index version new writes use.
    pub fn index_version(&self) -> u32 {
        self.indexes.keys().next_back().copied().unwrap_or(0)
    }

    /// The blind-index versions loaded.
    pub fn index_versions(&self) -> Vec<u32> {
        self.indexes.keys().copied().collect()
    }

    /// The data-key version new writes use.
    pub fn current_version(&self) -> Option<u32> {
        self.ring.current_version()
    }

    /// The data-key version new writes to `table` use; without any data key, the write fails
    /// as an encryption failure (counted as such by the server).
    pub fn write_version(&self, table: &'static str) -> Result<u32, StoreError> {
        self.current_version().ok_or(StoreError::Encrypt {
            table,
            column: "key_version",
            source: FieldError::MissingKeyVersion(0),
        })
    }

    /// Seals `plaintext` for `table.column` of row `row_id`.
    pub fn seal(
        &self,
        table: &'static str,
        column: &'static str,
        row_id: &str,
        plaintext: &str,
    ) -> Result<Vec<u8>, StoreError> {
        let field = Field {
            table,
            column,
            row_id,
        };
        self.ring
            .encrypt(&field, plaintext.as_bytes())
            .map_err(|source| StoreError::Encrypt {
                table,
                column,
                source,
            })
    }

    /// Opens a value sealed by [`PhiCipher::seal`] for the same field; a failure names the
    /// field and row (never the value).
    pub fn open(
        &self,
        table: &'static str,
        column: &'static str,
        row_id: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<String>, StoreError> {
        let field = Field {
            table,
            column,
            row_id,
        };
        let err = |source| StoreError::Decrypt {
            table,
            column,
            row_id: row_id.to_owned(),
            source,
        };
        let bytes = self.ring.decrypt(&field, sealed).map_err(err)?;
        let text = String::from_utf8(bytes.to_vec()).map_err(|_| err(FieldError::Malformed))?;
        Ok(Zeroizing::new(text))
    }

    /// The blind-index token of `value` (trimmed, lower-cased) in `column`, under the newest
    /// blind-index key (what new writes store).
    pub fn index_token(&self, column: &str, value: &str) -> String {
        self.indexes
            .values()
            .next_back()
            .map(|k| k.token(column, value))
            .unwrap_or_default()
    }

    /// The tokens of `value` in `column` under every loaded blind-index key, newest first: a
    /// lookup matches any, so rows not yet re-indexed after a rotation are still found.
    pub fn index_tokens(&self, column: &str, value: &str) -> Vec<String> {
        self.indexes
            .values()
            .rev()
            .map(|k| k.token(column, value))
            .collect()
    }
}

/// Loads the PHI keys, creating data key version 1 and the blind-index key on first use.
/// A key that the provider cannot unwrap (wrong key file, tampered row) is an error naming the
/// purpose and version.
pub async fn load_or_init(
    conn: &mut AnyConnection,
    provider: &dyn KeyProvider,
    now: i64,
) -> Result<PhiCipher, StoreError> {
    match load_or_init_once(conn, provider, now).await {
        // Another process created the first keys at the same moment: use theirs.
        Err(StoreError::Conflict(_)) => load_or_init_once(conn, provider, now).await,
        other => other,
    }
}

async fn load_or_init_once(
    conn: &mut AnyConnection,
    provider: &dyn KeyProvider,
    now: i64,
) -> Result<PhiCipher, StoreError> {
    let rows: Vec<KeyRow> = sqlx::query_as(
        "SELECT purpose, version, wrapped, provider, key_id FROM phi_keys ORDER BY purpose, version",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut ring = KeyRing::default();
    let mut indexes = std::collections::BTreeMap::new();
    for (purpose, version, wrapped, wrapped_by, key_id) in rows {
        let v = u32::try_from(version).map_err(|_| {
            StoreError::Corrupt(format!("phi_keys has an invalid version {version}"))
        })?;
        let unwrap_err = |e: medai_crypto::CryptoError| StoreError::KeyUnwrap {
            purpose: purpose.clone(),
            version: v,
            detail: e.to_string(),
        };
        match purpose.as_str() {
            PURPOSE_DATA => {
                let key = provider
                    .unwrap_recorded(&wrapped_by, key_id.as_deref(), &wrapped, v)
                    .await
                    .map_err(unwrap_err)?;
                ring.insert(v, key);
            }
            PURPOSE_BLIND_INDEX => {
                let key = provider
                    .unwrap_recorded(
                        &wrapped_by,
                        key_id.as_deref(),
                        &wrapped,
                        wrap_version(PURPOSE_BLIND_INDEX, v)?,
                    )
                    .await
                    .map_err(unwrap_err)?;
                indexes.insert(v, BlindIndexKey::from(key));
            }
            other => {
                return Err(StoreError::Corrupt(format!(
                    "phi_keys has an unknown purpose {other:?}"
                )))
            }
        }
    }
    if ring.current_version().is_none() {
        let key = DataKey::generate();
        let wrapped = provider
            .wrap(&key, 1)
            .await
            .map_err(|e| StoreError::KeyUnwrap {
                purpose: PURPOSE_DATA.into(),
                version: 1,
                detail: e.to_string(),
            })?;
        insert_key(conn, PURPOSE_DATA, 1, &wrapped, provider, now).await?;
        ring.insert(1, key);
    }
    if indexes.is_empty() {
        {
            let key = DataKey::generate();
            let wrapped = provider
                .wrap(&key, BLIND_INDEX_WRAP_VERSION)
                .await
                .map_err(|e| StoreError::KeyUnwrap {
                    purpose: PURPOSE_BLIND_INDEX.into(),
                    version: BLIND_INDEX_WRAP_VERSION,
                    detail: e.to_string(),
                })?;
            insert_key(
                conn,
                PURPOSE_BLIND_INDEX,
                BLIND_INDEX_WRAP_VERSION,
                &wrapped,
                provider,
                now,
            )
            .await?;
            indexes.insert(0, BlindIndexKey::from(key));
        }
    }
    Ok(PhiCipher { ring, indexes })
}

async fn insert_key(
    conn: &mut AnyConnection,
    purpose: &str,
    version: u32,
    wrapped: &[u8],
    provider: &dyn KeyProvider,
    now: i64,
) -> Result<(), StoreError> {
    // Two processes starting at once: the loser's insert is ignored and it must reload.
    let r = sqlx::query(
        "INSERT INTO phi_keys (purpose, version, wrapped, provider, key_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(purpose)
    .bind(i64::from(version))
    .bind(wrapped.to_vec())
    .bind(provider.name())
    .bind(provider.key_id().map(str::to_owned))
    .bind(now)
    .execute(conn)
    .await?;
    if r.rows_affected() == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict("phi key"))
    }
}

/// One stored PHI key, for `medai keys status`.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    /// `data` or `blind-index`.
    pub purpose: String,
    /// The key version (the blind-index key is version 0).
    pub version: u32,
    /// The provider that wrapped it, e.g. `local-file`.
    pub provider: String,
    /// The KMS key it is wrapped under (none for the local key file, or when wrapped before
    /// key ids were recorded).
    pub key_id: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Patient rows it protects: rows sealed under this data key, or (blind-index key) every
    /// encrypted row.
    pub patient_rows: i64,
    /// Whether the key provider unwraps it now.
    pub unwraps: bool,
}

/// Every stored PHI key, with what it protects and whether `provider` unwraps it. Creates
/// nothing.
pub async fn status(
    conn: &mut AnyConnection,
    provider: &dyn KeyProvider,
) -> Result<Vec<KeyInfo>, StoreError> {
    type StatusRow = (String, i64, Vec<u8>, String, Option<String>, i64);
    let rows: Vec<StatusRow> = sqlx::query_as(
        "SELECT purpose, version, wrapped, provider, key_id, created_at FROM phi_keys \
         ORDER BY purpose DESC, version",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (purpose, version, wrapped, key_provider, key_id, created_at) in rows {
        let v = u32::try_from(version).map_err(|_| {
            StoreError::Corrupt(format!("phi_keys has an invalid version {version}"))
        })?;
        let (patient_rows,): (i64,) = if purpose == PURPOSE_DATA {
            sqlx::query_as("SELECT COUNT(*) FROM patients WHERE key_version = $1")
                .bind(version)
                .fetch_one(&mut *conn)
                .await?
        } else {
            sqlx::query_as(
                "SELECT COUNT(*) FROM patients WHERE key_version IS NOT NULL \
                 AND index_version = $1",
            )
            .bind(version)
            .fetch_one(&mut *conn)
            .await?
        };
        let wrap_version = wrap_version(&purpose, v)?;
        let unwraps = provider
            .unwrap_recorded(&key_provider, key_id.as_deref(), &wrapped, wrap_version)
            .await
            .is_ok();
        out.push(KeyInfo {
            purpose,
            version: v,
            provider: key_provider,
            key_id,
            created_at,
            patient_rows,
            unwraps,
        });
    }
    Ok(out)
}

/// When the key in use for each purpose was created (Unix seconds): the newest data key
/// (`data`) and the blind-index key (`blind-index`). One small query; for the key-age metric.
pub async fn current_key_times(conn: &mut AnyConnection) -> Result<Vec<(String, i64)>, StoreError> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT purpose, MAX(created_at) FROM phi_keys GROUP BY purpose")
            .fetch_all(conn)
            .await?;
    Ok(rows)
}

/// Patient rows still held in plaintext (written before encryption at rest).
pub async fn plaintext_patient_rows(conn: &mut AnyConnection) -> Result<i64, StoreError> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM patients WHERE key_version IS NULL")
        .fetch_one(conn)
        .await?;
    Ok(n)
}

/// The newest data-key version stored (none before the first start).
pub async fn latest_data_version(conn: &mut AnyConnection) -> Result<Option<u32>, StoreError> {
    let (v,): (Option<i64>,) =
        sqlx::query_as("SELECT MAX(version) FROM phi_keys WHERE purpose = 'data'")
            .fetch_one(conn)
            .await?;
    v.map(|v| {
        u32::try_from(v)
            .map_err(|_| StoreError::Corrupt(format!("phi_keys has an invalid version {v}")))
    })
    .transpose()
}

/// One `phi_keys` row: purpose, version, wrapped key, provider, key id.
type KeyRow = (String, i64, Vec<u8>, String, Option<String>);

async fn key_rows(conn: &mut AnyConnection) -> Result<Vec<KeyRow>, StoreError> {
    let rows: Vec<KeyRow> = sqlx::query_as(
        "SELECT purpose, version, wrapped, provider, key_id FROM phi_keys ORDER BY purpose, version",
    )
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Err(StoreError::Schema(
            "no PHI keys exist yet; run `medai init` first".into(),
        ));
    }
    Ok(rows)
}

/// Unwraps one stored key with `source` (which routes by the provider and key id recorded
/// beside it), wraps it with `target`, checks that the new wrapping opens, and stores it with
/// `target`'s name and key id. The update only applies if the row is unchanged since it was
/// read.
async fn rewrap_row(
    conn: &mut AnyConnection,
    row: &KeyRow,
    source: &dyn KeyProvider,
    target: &dyn KeyProvider,
) -> Result<u32, StoreError> {
    let (purpose, version, wrapped, wrapped_by, key_id) = row;
    let v = u32::try_from(*version)
        .map_err(|_| StoreError::Corrupt(format!("phi_keys has an invalid version {version}")))?;
    let wrap_version = wrap_version(purpose, v)?;
    let fail = |e: medai_crypto::CryptoError| StoreError::KeyUnwrap {
        purpose: purpose.clone(),
        version: v,
        detail: e.to_string(),
    };
    let key = source
        .unwrap_recorded(wrapped_by, key_id.as_deref(), wrapped, wrap_version)
        .await
        .map_err(fail)?;
    let rewrapped = target.wrap(&key, wrap_version).await.map_err(fail)?;
    // The new wrapping must open before the old one is replaced.
    target
        .unwrap(&rewrapped, wrap_version)
        .await
        .map_err(fail)?;
    let r = sqlx::query(
        "UPDATE phi_keys SET wrapped = $1, provider = $2, key_id = $3 \
         WHERE purpose = $4 AND version = $5 AND wrapped = $6",
    )
    .bind(rewrapped)
    .bind(target.name())
    .bind(target.key_id().map(str::to_owned))
    .bind(purpose)
    .bind(version)
    .bind(wrapped.clone())
    .execute(&mut *conn)
    .await?;
    if r.rows_affected() != 1 {
        return Err(StoreError::Conflict(
            "phi key (changed while it was re-wrapped)",
        ));
    }
    Ok(if purpose == PURPOSE_DATA { v } else { 0 })
}

/// Re-wraps every stored key under `provider` (each unwrapped by the provider and key recorded
/// beside it, e.g. the local key file or another KMS key while moving) and records `provider`'s
/// name and key id. Keys already wrapped by `provider` are re-wrapped too (a KMS key rotated
/// since picks up its new version). Run it in a transaction: either every key moves or none.
/// Returns the number of keys re-wrapped and the newest data-key version.
pub async fn rewrap(
    conn: &mut AnyConnection,
    provider: &dyn KeyProvider,
) -> Result<(usize, u32), StoreError> {
    let rows = key_rows(&mut *conn).await?;
    let mut newest = 0;
    for row in &rows {
        newest = newest.max(rewrap_row(&mut *conn, row, provider, provider).await?);
    }
    Ok((rows.len(), newest))
}

/// A stored key that [`move_next`] moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedKey {
    /// `data` or `blind-index`.
    pub purpose: String,
    /// Its version.
    pub version: u32,
    /// The provider and key id it was wrapped by before.
    pub from: (String, Option<String>),
}

/// Moves the next stored key not yet wrapped by `target` (its provider and key id) to it:
/// unwrapped by `source` under the provider and key recorded beside it, wrapped by `target`.
/// Returns `None` when every key is there. Call it in a transaction per key and commit, so an
/// interrupted move resumes where it stopped and the database always records which key wraps
/// each data key.
pub async fn move_next(
    conn: &mut AnyConnection,
    source: &dyn KeyProvider,
    target: &dyn KeyProvider,
) -> Result<Option<MovedKey>, StoreError> {
    let rows = key_rows(&mut *conn).await?;
    let target_id = target.key_id();
    let Some(row) = rows
        .iter()
        .find(|r| !(r.3 == target.name() && r.4.as_deref() == target_id))
    else {
        return Ok(None);
    };
    rewrap_row(&mut *conn, row, source, target).await?;
    let version = u32::try_from(row.1).unwrap_or_default();
    Ok(Some(MovedKey {
        purpose: row.0.clone(),
        version,
        from: (row.3.clone(), row.4.clone()),
    }))
}

/// Adds data key version `newest + 1` (new writes use it at once) and re-wraps every stored key
/// under `provider`'s current key-encryption key ([`rewrap`]). Run it in a transaction: either
/// all of it happens or none. Returns the new version.
pub async fn rotate(
    conn: &mut AnyConnection,
    provider: &dyn KeyProvider,
    now: i64,
) -> Result<u32, StoreError> {
    let (_, newest) = rewrap(&mut *conn, provider).await?;
    let version = newest.checked_add(1).ok_or(StoreError::Corrupt(
        "data key versions are exhausted".into(),
    ))?;
    let key = DataKey::generate();
    let wrapped = provider
        .wrap(&key, version)
        .await
        .map_err(|e| StoreError::KeyUnwrap {
            purpose: PURPOSE_DATA.into(),
            version,
            detail: e.to_string(),
        })?;
    insert_key(conn, PURPOSE_DATA, version, &wrapped, provider, now).await?;
    Ok(version)
}

/// The newest blind-index key version stored (0 before any rotation).
pub async fn latest_index_version(conn: &mut AnyConnection) -> Result<u32, StoreError> {
    let (v,): (Option<i64>,) =
        sqlx::query_as("SELECT MAX(version) FROM phi_keys WHERE purpose = 'blind-index'")
            .fetch_one(conn)
            .await?;
    u32::try_from(v.unwrap_or(0))
        .map_err(|_| StoreError::Corrupt("phi_keys has an invalid blind-index version".into()))
}

/// Adds blind-index key version `newest + 1`, wrapped by `provider`: new writes index under it
/// as soon as each server reloads its keys (on its next request), lookups match it and the
/// older versions until [`reindex`](crate::patients::reindex) has moved every row and
/// [`retire_blind_index`] removes the old ones. Returns the new version.
pub async fn rotate_blind_index(
    conn: &mut AnyConnection,
    provider: &dyn KeyProvider,
    now: i64,
) -> Result<u32, StoreError> {
    let newest = latest_index_version(&mut *conn).await?;
    let version = newest
        .checked_add(1)
        .filter(|v| *v < BLIND_INDEX_WRAP_BASE)
        .ok_or(StoreError::Corrupt(
            "blind-index key versions are exhausted".into(),
        ))?;
    let key = DataKey::generate();
    let wrapped = provider
        .wrap(&key, wrap_version(PURPOSE_BLIND_INDEX, version)?)
        .await
        .map_err(|e| StoreError::KeyUnwrap {
            purpose: PURPOSE_BLIND_INDEX.into(),
            version,
            detail: e.to_string(),
        })?;
    insert_key(conn, PURPOSE_BLIND_INDEX, version, &wrapped, provider, now).await?;
    Ok(version)
}

/// Deletes the blind-index keys older than the newest once no patient row is indexed under
/// them; refuses (naming how many rows remain) before re-indexing has finished. Returns the
/// versions retired.
pub async fn retire_blind_index(conn: &mut AnyConnection) -> Result<Vec<u32>, StoreError> {
    let newest = latest_index_version(&mut *conn).await?;
    let (left,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM patients WHERE key_version IS NOT NULL AND index_version < $1",
    )
    .bind(i64::from(newest))
    .fetch_one(&mut *conn)
    .await?;
    if left > 0 {
        return Err(StoreError::Schema(format!(
            "{left} patient row(s) are still indexed under an older blind-index key; run `medai keys rotate --blind-index` to finish re-indexing first"
        )));
    }
    let old: Vec<(i64,)> = sqlx::query_as(
        "SELECT version FROM phi_keys WHERE purpose = 'blind-index' AND version < $1 ORDER BY version",
    )
    .bind(i64::from(newest))
    .fetch_all(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM phi_keys WHERE purpose = 'blind-index' AND version < $1")
        .bind(i64::from(newest))
        .execute(&mut *conn)
        .await?;
    Ok(old
        .into_iter()
        .filter_map(|(v,)| u32::try_from(v).ok())
        .collect())
}

/// The PHI keys of a running server: reloaded from the database when another process (`medai
/// keys rotate`) has added a data key or a blind-index key (or retired one), so new writes use
/// the new key at once and rows re-encrypted or re-indexed under it stay readable and findable.
#[derive(Debug)]
pub struct PhiKeyring {
    current: std::sync::RwLock<std::sync::Arc<PhiCipher>>,
}

impl PhiKeyring {
    /// Starts with the keys loaded at start-up.
    pub fn new(cipher: PhiCipher) -> Self {
        Self {
            current: std::sync::RwLock::new(std::sync::Arc::new(cipher)),
        }
    }

    /// The keys in memory, without asking the database.
    pub fn cached(&self) -> std::sync::Arc<PhiCipher> {
        match self.current.read() {
            Ok(g) => std::sync::Arc::clone(&g),
            Err(poisoned) => std::sync::Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The current keys: one small query for the newest data-key version, and a reload (all
    /// keys unwrapped again by `provider`) when it is newer than the one in memory.
    pub async fn current(
        &self,
        conn: &mut AnyConnection,
        provider: &dyn KeyProvider,
        now: i64,
    ) -> Result<std::sync::Arc<PhiCipher>, StoreError> {
        let cached = self.cached();
        let (data, index): (Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT MAX(CASE WHEN purpose = 'data' THEN version END), \
             MAX(CASE WHEN purpose = 'blind-index' THEN version END) FROM phi_keys",
        )
        .fetch_one(&mut *conn)
        .await?;
        let newer_data = data.and_then(|v| u32::try_from(v).ok()) > cached.current_version();
        let index_changed =
            index.and_then(|v| u32::try_from(v).ok()).unwrap_or(0) != cached.index_version();
        if !newer_data && !index_changed {
            return Ok(cached);
        }
        let fresh = std::sync::Arc::new(load_or_init(conn, provider, now).await?);
        match self.current.write() {
            Ok(mut g) => *g = std::sync::Arc::clone(&fresh),
            Err(poisoned) => *poisoned.into_inner() = std::sync::Arc::clone(&fresh),
        }
        Ok(fresh)
    }
}
