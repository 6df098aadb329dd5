//! Envelope encryption of PHI fields (first step of encryption at rest; not yet wired to the
//! PHI columns).
//!
//! Each field is sealed with AES-256-GCM under a *data key*; data keys are wrapped by a
//! key-encryption key held by a [`KeyProvider`] (the local key file today; cloud KMS clients
//! implement the same trait). The associated data binds every ciphertext to its table, column,
//! row id and data-key version, so a ciphertext copied to another row, column or table, or
//! relabelled with another key version, does not decrypt. Equality lookups use keyed blind
//! indexes (HMAC-SHA-256 under a separate key), never plaintext.

use crate::{CryptoError, MasterKey};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::Mac as _;
use rand::rngs::OsRng;
use rand::RngCore as _;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use zeroize::Zeroizing;

/// The field ciphertext format version (first byte).
const FIELD_FORMAT: u8 = 1;
const NONCE_LEN: usize = 12;

/// A 256-bit data key; zeroed on drop, never printed.
pub struct DataKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A data key from its raw bytes (a provider's unwrap result); the caller zeroes its copy.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The raw key, for a provider to wrap; never log it.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// A fresh random data key.
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(k.as_mut());
        Self(k)
    }
}

/// A boxed future, so providers backed by network services fit the same trait.
pub type ProviderFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, CryptoError>> + Send + 'a>>;

/// Holds the key-encryption key: wraps and unwraps data keys. The wrapped form is bound to the
/// data key's version.
pub trait KeyProvider: Send + Sync {
    /// A stable name for status output, e.g. `local-file`.
    fn name(&self) -> &str;
    /// Wraps `key` (version `version`).
    fn wrap<'a>(&'a self, key: &'a DataKey, version: u32) -> ProviderFuture<'a, Vec<u8>>;
    /// Unwraps a key wrapped by [`KeyProvider::wrap`] for `version`.
    fn unwrap<'a>(&'a self, wrapped: &'a [u8], version: u32) -> ProviderFuture<'a, DataKey>;
    /// The key-encryption key's identifier (a KMS key ARN, alias or resource name), recorded
    /// beside each key it wraps (`phi_keys.key_id`); `None` for the local key file.
    fn key_id(&self) -> Option<&str> {
        None
    }

    /// Unwraps a key recorded as wrapped by provider `wrapped_by` under key `key_id` (`None`:
    /// recorded before key ids were, meaning the provider's configured key). A provider that
    /// can reach other keys of its service with the same credentials (AWS, GCP) overrides this
    /// to unwrap under the recorded key, so keys stay readable while they move between KMS
    /// keys; by default another key id is refused with a clear error.
    fn unwrap_recorded<'a>(
        &'a self,
        wrapped_by: &'a str,
        key_id: Option<&'a str>,
        wrapped: &'a [u8],
        version: u32,
    ) -> ProviderFuture<'a, DataKey> {
        match key_id {
            Some(k) if wrapped_by == self.name() && Some(k) != self.key_id() => {
                let configured = self.name().to_owned();
                let k = k.to_owned();
                Box::pin(async move {
                    Err(CryptoError::Provider {
                        provider: configured,
                        detail: format!(
                            "the key was wrapped under key {k:?}, not the configured one"
                        ),
                    })
                })
            }
            _ => self.unwrap_from(wrapped_by, wrapped, version),
        }
    }

    /// Unwraps a key that the provider named `wrapped_by` wrapped (the name stored beside the
    /// wrapped key). A provider that only knows itself refuses other names with a clear error;
    /// one that routes between providers (while keys move from the local file to a KMS)
    /// overrides this.
    fn unwrap_from<'a>(
        &'a self,
        wrapped_by: &'a str,
        wrapped: &'a [u8],
        version: u32,
    ) -> ProviderFuture<'a, DataKey> {
        if wrapped_by == self.name() {
            self.unwrap(wrapped, version)
        } else {
            let configured = self.name().to_owned();
            let other = wrapped_by.to_owned();
            Box::pin(async move {
                Err(CryptoError::Provider {
                    provider: configured,
                    detail: format!(
                        "the key was wrapped by provider {other:?}, which is not configured"
                    ),
                })
            })
        }
    }
}

fn wrap_context(version: u32) -> Vec<u8> {
    let mut c = b"medai.data-key.v1:".to_vec();
    c.extend_from_slice(&version.to_be_bytes());
    c
}

/// The local key file as a key provider.
impl KeyProvider for MasterKey {
    fn name(&self) -> &str {
        "local-file"
    }

    fn wrap<'a>(&'a self, key: &'a DataKey, version: u32) -> ProviderFuture<'a, Vec<u8>> {
        Box::pin(async move { Ok(self.seal(key.0.as_ref(), &wrap_context(version))) })
    }

    fn unwrap<'a>(&'a self, wrapped: &'a [u8], version: u32) -> ProviderFuture<'a, DataKey> {
        Box::pin(async move {
            let raw = self.open(wrapped, &wrap_context(version))?;
            let arr: [u8; 32] = raw.as_slice().try_into().map_err(|_| CryptoError::Open)?;
            Ok(DataKey(Zeroizing::new(arr)))
        })
    }
}

/// Where a field lives; the associated data of its ciphertext.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    /// Table name.
    pub table: &'a str,
    /// Column name.
    pub column: &'a str,
    /// The row's id.
    pub row_id: &'a str,
}

fn aad(field: &Field<'_>, version: u32) -> Vec<u8> {
    let mut a = b"medai.field.v1\0".to_vec();
    for part in [field.table, field.column, field.row_id] {
        a.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        a.extend_from_slice(part.as_bytes());
    }
    a.extend_from_slice(&version.to_be_bytes());
    a
}

/// Errors specific to field decryption, beyond a failed authentication.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FieldError {
    /// The ciphertext is shorter than its header or has an unknown format.
    #[error("field ciphertext is malformed")]
    Malformed,
    /// The ciphertext names a data-key version this key ring does not hold.
    #[error("data key version {0} is not available")]
    MissingKeyVersion(u32),
    /// Authentication failed: wrong key, tampering, or a ciphertext moved to another field.
    #[error("field ciphertext failed authentication")]
    Open,
}

/// The unwrapped data keys in use; new writes use the newest version.
#[derive(Debug, Default)]
pub struct KeyRing {
    keys: BTreeMap<u32, DataKey>,
}

impl KeyRing {
    /// Adds an unwrapped data key.
    pub fn insert(&mut self, version: u32, key: DataKey) {
        self.keys.insert(version, key);
    }

    /// The version new writes use.
    pub fn current_version(&self) -> Option<u32> {
        self.keys.keys().next_back().copied()
    }

    /// Seals `plaintext` for `field` under the newest data key. Output: format byte, version
    /// (4 bytes), nonce (12), ciphertext and tag.
    pub fn encrypt(&self, field: &Field<'_>, plaintext: &[u8]) -> Result<Vec<u8>, FieldError> {
        let (version, key) = self
            .keys
            .iter()
            .next_back()
            .ok_or(FieldError::MissingKeyVersion(0))?;
        let cipher = Aes256Gcm::new(key.0.as_ref().into());
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad(field, *version),
                },
            )
            .map_err(|_| FieldError::Open)?;
        let mut out = Vec::with_capacity(1 + 4 + NONCE_LEN + ct.len());
        out.push(FIELD_FORMAT);
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens a value from [`KeyRing::encrypt`] for the same field.
    pub fn decrypt(
        &self,
        field: &Field<'_>,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, FieldError> {
        if sealed.len() < 1 + 4 + NONCE_LEN + 16 || sealed[0] != FIELD_FORMAT {
            return Err(FieldError::Malformed);
        }
        let version = u32::from_be_bytes([sealed[1], sealed[2], sealed[3], sealed[4]]);
        let key = self
            .keys
            .get(&version)
            .ok_or(FieldError::MissingKeyVersion(version))?;
        let (nonce, ct) = sealed[5..].split_at(NONCE_LEN);
        Aes256Gcm::new(key.0.as_ref().into())
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: &aad(field, version),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| FieldError::Open)
    }
}

/// A blind-index key is generated, wrapped and stored like a data key.
impl From<DataKey> for BlindIndexKey {
    fn from(key: DataKey) -> Self {
        Self(key.0)
    }
}

/// Keyed blind index for equality lookups (MRN, name tokens): HMAC-SHA-256 under its own key,
/// with the column in the input so equal values in different columns do not match.
pub struct BlindIndexKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for BlindIndexKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlindIndexKey(..)")
    }
}

impl BlindIndexKey {
    /// A fresh random key (stored wrapped like a data key).
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(k.as_mut());
        Self(k)
    }

    /// The index token of `value` in `column`, hex; `value` is trimmed and lower-cased first.
    pub fn token(&self, column: &str, value: &str) -> String {
        // HMAC accepts keys of any length; a 32-byte key cannot fail.
        let Ok(mut mac) = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(self.0.as_ref())
        else {
            return String::new();
        };
        mac.update(column.as_bytes());
        mac.update(&[0]);
        mac.update(value.trim().to_lowercase().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn field(row: &str) -> Field<'_> {
        Field {
            table: "patients",
            column: "family_name",
            row_id: row,
        }
    }

    fn block_on<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn fields_are_bound_to_table_column_row_and_version() {
        let mut ring = KeyRing::default();
        ring.insert(1, DataKey::generate());
        let sealed = ring.encrypt(&field("p1"), b"Smith").unwrap();
        assert_eq!(
            ring.decrypt(&field("p1"), &sealed).unwrap().as_slice(),
            b"Smith"
        );
        // Copied to another row, column or table: refused.
        assert_eq!(ring.decrypt(&field("p2"), &sealed), Err(FieldError::Open));
        let other_col = Field {
            column: "given_name",
            ..field("p1")
        };
        assert_eq!(ring.decrypt(&other_col, &sealed), Err(FieldError::Open));
        let other_table = Field {
            table: "notes",
            ..field("p1")
        };
        assert_eq!(ring.decrypt(&other_table, &sealed), Err(FieldError::Open));
        // Relabelled with another version: missing, or refused once that version exists.
        let mut relabelled = sealed.clone();
        relabelled[4] = 2;
        assert_eq!(
            ring.decrypt(&field("p1"), &relabelled),
            Err(FieldError::MissingKeyVersion(2))
        );
        ring.insert(2, DataKey::generate());
        assert_eq!(
            ring.decrypt(&field("p1"), &relabelled),
            Err(FieldError::Open)
        );
        // New writes use version 2; version 1 still opens.
        let newer = ring.encrypt(&field("p1"), b"Jones").unwrap();
        assert_eq!(&newer[1..5], &2u32.to_be_bytes());
        assert_eq!(
            ring.decrypt(&field("p1"), &sealed).unwrap().as_slice(),
            b"Smith"
        );
        // Truncated, flipped, unknown format.
        assert_eq!(
            ring.decrypt(&field("p1"), &sealed[..10]),
            Err(FieldError::Malformed)
        );
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(ring.decrypt(&field("p1"), &flipped), Err(FieldError::Open));
        let mut fmt = sealed;
        fmt[0] = 9;
        assert_eq!(ring.decrypt(&field("p1"), &fmt), Err(FieldError::Malformed));
        assert_eq!(
            KeyRing::default().encrypt(&field("p1"), b"x"),
            Err(FieldError::MissingKeyVersion(0))
        );
    }

    #[test]
    fn data_keys_wrapped_by_the_local_key_file_unwrap_only_with_it_and_their_version() {
        let kek = MasterKey::generate();
        let dek = DataKey::generate();
        let wrapped = block_on(kek.wrap(&dek, 3)).unwrap();
        let back = block_on(kek.unwrap(&wrapped, 3)).unwrap();
        let mut ring = KeyRing::default();
        ring.insert(3, back);
        let mut original = KeyRing::default();
        original.insert(3, dek);
        let sealed = original.encrypt(&field("p"), b"x").unwrap();
        assert_eq!(ring.decrypt(&field("p"), &sealed).unwrap().as_slice(), b"x");
        assert!(
            block_on(kek.unwrap(&wrapped, 4)).is_err(),
            "bound to its version"
        );
        assert!(
            block_on(MasterKey::generate().unwrap(&wrapped, 3)).is_err(),
            "wrong KEK"
        );
        assert_eq!(kek.name(), "local-file");
        assert_eq!(format!("{:?}", DataKey::generate()), "DataKey(..)");
    }

    #[test]
    fn blind_index_tokens_are_keyed_normalised_and_per_column() {
        let k = BlindIndexKey::generate();
        assert_eq!(k.token("mrn", "MRN-1 "), k.token("mrn", "mrn-1"));
        assert_ne!(k.token("mrn", "MRN-1"), k.token("family_name", "MRN-1"));
        assert_ne!(
            k.token("mrn", "MRN-1"),
            BlindIndexKey::generate().token("mrn", "MRN-1")
        );
        assert_eq!(k.token("mrn", "a").len(), 64);
        assert!(!k.token("mrn", "MRN-1").contains("MRN"));
        assert_eq!(format!("{k:?}"), "BlindIndexKey(..)");
    }

    proptest! {
        #[test]
        fn field_round_trip(msg in proptest::collection::vec(any::<u8>(), 0..300), row in "[a-z0-9-]{1,40}") {
            let mut ring = KeyRing::default();
            ring.insert(1, DataKey::generate());
            let sealed = ring.encrypt(&field(&row), &msg).unwrap();
            let opened = ring.decrypt(&field(&row), &sealed).unwrap();
            prop_assert_eq!(opened.as_slice(), msg.as_slice());
        }

        #[test]
        fn decrypt_never_panics(junk in proptest::collection::vec(any::<u8>(), 0..80)) {
            let mut ring = KeyRing::default();
            ring.insert(1, DataKey::generate());
            prop_assert!(ring.decrypt(&field("p"), &junk).is_err());
        }
    }
}
