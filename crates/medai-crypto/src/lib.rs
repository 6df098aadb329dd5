//! medai key material: the local key file, created on first run with mode 0600, and
//! authenticated encryption (AES-256-GCM) of small secrets at rest such as TOTP seeds.
//!
//! This crate never logs or prints key material and never writes a key file readable by others.
//! Envelope encryption with rotating data keys and cloud KMS providers build on this.

pub mod envelope;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Errors from key handling and sealing.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The key file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The key file exists but is not a medai key file.
    #[error("key file {0} is malformed: expected one line `medai-key-v1 <base64 of 32 bytes>`")]
    Malformed(PathBuf),
    /// The key file is readable by group or others.
    #[error("key file {0} is readable by other users; run `chmod 600` on it")]
    Permissions(PathBuf),
    /// A sealed value failed authentication (wrong key, tampering or truncation).
    #[error("sealed value failed authentication")]
    Open,
    /// A key provider (a cloud KMS) refused, failed or timed out. The detail never holds key
    /// material.
    #[error("key provider {provider}: {detail}")]
    Provider {
        /// The provider's name, e.g. `aws-kms`.
        provider: String,
        /// What went wrong and, where it helps, what to check.
        detail: String,
    },
}

const KEY_HEADER: &str = "medai-key-v1";
const SEALED_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// A 256-bit key encryption key held in memory; zeroed on drop.
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(k.as_mut());
        Self(k)
    }

    /// Loads the key file at `path`, creating it (mode 0600, never overwriting) if it does not
    /// exist. Returns the key and whether it was created now.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), CryptoError> {
        match Self::load(path) {
            Ok(k) => Ok((k, false)),
            Err(CryptoError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                let key = Self::generate();
                key.write_new(path)?;
                Ok((key, true))
            }
            Err(e) => Err(e),
        }
    }

    /// Loads an existing key file, refusing one that others can read.
    pub fn load(path: &Path) -> Result<Self, CryptoError> {
        let io = |source| CryptoError::Io {
            path: path.to_owned(),
            source,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let meta = std::fs::metadata(path).map_err(io)?;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(CryptoError::Permissions(path.to_owned()));
            }
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        let malformed = || CryptoError::Malformed(path.to_owned());
        let b64 = text
            .trim()
            .strip_prefix(KEY_HEADER)
            .map(str::trim)
            .ok_or_else(malformed)?;
        let raw = Zeroizing::new(STANDARD.decode(b64).map_err(|_| malformed())?);
        let arr: [u8; 32] = raw.as_slice().try_into().map_err(|_| malformed())?;
        Ok(Self(Zeroizing::new(arr)))
    }

    fn write_new(&self, path: &Path) -> Result<(), CryptoError> {
        let io = |source| CryptoError::Io {
            path: path.to_owned(),
            source,
        };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(io)?;
        let line = Zeroizing::new(format!("{KEY_HEADER} {}\n", STANDARD.encode(*self.0)));
        f.write_all(line.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)
    }

    /// Encrypts `plaintext`, binding it to `context` (for example `"totp:<user id>"`), so a
    /// sealed value copied to another row does not open. Output: version byte, nonce, ciphertext.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
        let cipher = Aes256Gcm::new(self.0.as_ref().into());
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plaintext,
            aad: context,
        };
        // Encryption only fails for messages beyond 64 GiB; sealed values are small.
        let ct = cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(SEALED_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypts a value from [`MasterKey::seal`] with the same `context`.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.len() < 1 + NONCE_LEN + 16 || sealed[0] != SEALED_VERSION {
            return Err(CryptoError::Open);
        }
        let (nonce, ct) = sealed[1..].split_at(NONCE_LEN);
        let cipher = Aes256Gcm::new(self.0.as_ref().into());
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: context,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn key_file_is_created_0600_once_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("master.key");
        let (k1, created) = MasterKey::load_or_create(&p).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let (k2, created) = MasterKey::load_or_create(&p).unwrap();
        assert!(!created);
        let sealed = k1.seal(b"secret", b"ctx");
        assert_eq!(k2.open(&sealed, b"ctx").unwrap().as_slice(), b"secret");
    }

    #[cfg(unix)]
    #[test]
    fn world_readable_key_file_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("master.key");
        MasterKey::load_or_create(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            MasterKey::load(&p),
            Err(CryptoError::Permissions(_))
        ));
    }

    #[test]
    fn malformed_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("master.key");
        std::fs::write(&p, "medai-key-v1 AAAA\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert!(matches!(
            MasterKey::load(&p),
            Err(CryptoError::Malformed(_))
        ));
    }

    #[test]
    fn tampering_wrong_context_and_wrong_key_fail() {
        let k = MasterKey::generate();
        let mut sealed = k.seal(b"totp seed", b"totp:u1");
        assert!(k.open(&sealed, b"totp:u2").is_err());
        assert!(MasterKey::generate().open(&sealed, b"totp:u1").is_err());
        assert!(k.open(&sealed[..10], b"totp:u1").is_err());
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(k.open(&sealed, b"totp:u1").is_err());
        assert!(!format!("{k:?}").contains(|c: char| c.is_ascii_digit()));
    }

    proptest! {
        #[test]
        fn seal_open_round_trip(msg in proptest::collection::vec(any::<u8>(), 0..512), ctx in proptest::collection::vec(any::<u8>(), 0..32)) {
            let k = MasterKey::generate();
            let sealed = k.seal(&msg, &ctx);
            let opened = k.open(&sealed, &ctx).unwrap();
            prop_assert_eq!(opened.as_slice(), msg.as_slice());
        }

        #[test]
        fn open_never_panics(junk in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = MasterKey::generate().open(&junk, b"");
        }
    }
}
