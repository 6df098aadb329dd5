//! Signed checkpoints: `{origin, tree size, root hash}` in the C2SP tlog-checkpoint format,
//! signed with Ed25519 as a C2SP signed note.
//!
//! The signing key lives in its own file (mode 0600, refused if others can read it) in the
//! signed-note private key format; the public verifier key (`<name>+<id>+<base64>`) is written
//! beside it with the `.pub` suffix. The key name is the log's origin, so a checkpoint from
//! another log or key does not verify.

use crate::AuditError;
use signed_note::{
    Note, Signer as _, StandardSigner, StandardVerifier, Verifier as _, VerifierList,
};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use tlog_tiles::{Checkpoint, Hash};
use zeroize::Zeroizing;

/// A verified (or freshly signed) checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedCheckpoint {
    /// The log's origin line.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// Root hash of the tree of `size` leaves.
    pub root: Hash,
    /// The whole signed note, as stored and exported.
    pub note: String,
}

/// Signs checkpoints; holds the private key (zeroised on drop by `ed25519-dalek`).
pub struct CheckpointSigner {
    signer: StandardSigner,
    vkey: String,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("vkey", &self.vkey)
            .finish_non_exhaustive()
    }
}

/// Whether `origin` can name a signing key (non-empty, no spaces, no `+`).
pub fn is_valid_origin(origin: &str) -> bool {
    signed_note::is_key_name_valid(origin)
}

impl CheckpointSigner {
    /// A fresh key for `origin`, in memory (tests, benchmarks).
    pub fn generate(origin: &str) -> Result<Self, AuditError> {
        Ok(Self::generate_with_text(origin)?.0)
    }

    /// Loads the key file at `path`, creating it (0600) and its `.pub` file for `origin` if it
    /// does not exist. Returns the signer and whether it was created now.
    pub fn load_or_create(path: &Path, origin: &str) -> Result<(Self, bool), AuditError> {
        if path.exists() {
            return Ok((Self::load(path)?, false));
        }
        let key = Self::generate_with_text(origin)?;
        let kerr = |e: std::io::Error| AuditError::KeyFile {
            path: path.to_owned(),
            problem: e.to_string(),
        };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(kerr)?;
        f.write_all(format!("{}\n", key.1.as_str()).as_bytes())
            .map_err(kerr)?;
        f.sync_all().map_err(kerr)?;
        let pub_path = public_key_path(path);
        std::fs::write(&pub_path, format!("{}\n", key.0.vkey)).map_err(|e| {
            AuditError::KeyFile {
                path: pub_path.clone(),
                problem: e.to_string(),
            }
        })?;
        Ok((key.0, true))
    }

    fn generate_with_text(origin: &str) -> Result<(Self, Zeroizing<String>), AuditError> {
        if !is_valid_origin(origin) {
            return Err(AuditError::Malformed {
                what: "audit.origin",
                problem: "must be non-empty, without spaces or '+'".into(),
            });
        }
        let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, origin);
        let skey = Zeroizing::new(skey);
        let signer = StandardSigner::new(&skey).map_err(|e| AuditError::Malformed {
            what: "signing key",
            problem: e.to_string(),
        })?;
        Ok((Self { signer, vkey }, skey))
    }

    /// Loads an existing key file, refusing one that others can read.
    pub fn load(path: &Path) -> Result<Self, AuditError> {
        let kerr = |problem: String| AuditError::KeyFile {
            path: path.to_owned(),
            problem,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let meta = std::fs::metadata(path).map_err(|e| kerr(e.to_string()))?;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(kerr(
                    "readable by other users; run `chmod 600` on it".into(),
                ));
            }
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| kerr(e.to_string()))?);
        let signer = StandardSigner::new(text.trim())
            .map_err(|_| kerr("not a signed-note Ed25519 private key (PRIVATE+KEY+…)".into()))?;
        let vkey = derive_vkey(&signer, text.trim()).ok_or_else(|| kerr("malformed key".into()))?;
        Ok(Self { signer, vkey })
    }

    /// The log origin (the key's name).
    pub fn origin(&self) -> &str {
        self.signer.name()
    }

    /// The public verifier key, `<origin>+<key id>+<base64>`: all an offline verifier needs.
    pub fn verifier_key(&self) -> &str {
        &self.vkey
    }

    /// Signs the checkpoint of a tree of `size` leaves with `root`.
    pub fn sign(&self, size: u64, root: Hash) -> Result<SignedCheckpoint, AuditError> {
        let cp =
            Checkpoint::new(self.origin(), size, root, "").map_err(|e| AuditError::Malformed {
                what: "checkpoint",
                problem: e.to_string(),
            })?;
        let mut note = Note::new(&cp.to_bytes(), &[]).map_err(|e| AuditError::Malformed {
            what: "checkpoint note",
            problem: e.to_string(),
        })?;
        note.add_sigs(&[&self.signer])
            .map_err(|e| AuditError::Signature(e.to_string()))?;
        let note = String::from_utf8(note.to_bytes()).map_err(|e| AuditError::Malformed {
            what: "checkpoint note",
            problem: e.to_string(),
        })?;
        Ok(SignedCheckpoint {
            origin: self.origin().to_owned(),
            size,
            root,
            note,
        })
    }
}

/// The public key of a private key in signed-note form: the verifier key carries the same name
/// and id, and the Ed25519 public key is derived by signing nothing: `signed_note` does not
/// expose it, so it is rebuilt from the private key bytes.
fn derive_vkey(signer: &StandardSigner, skey: &str) -> Option<String> {
    use base64::Engine as _;
    let b64 = skey.splitn(5, '+').nth(4)?;
    let raw = Zeroizing::new(base64::engine::general_purpose::STANDARD.decode(b64).ok()?);
    let secret: [u8; 32] = raw.get(1..33)?.try_into().ok()?;
    let sk = signed_note_key(secret);
    let vkey = signed_note::new_ed25519_verifier_key(signer.name(), &sk);
    (StandardVerifier::new(&vkey).ok()?.key_id() == signer.key_id()).then_some(vkey)
}

fn signed_note_key(secret: [u8; 32]) -> ed25519_dalek::VerifyingKey {
    let sk = ed25519_dalek::SigningKey::from_bytes(&secret);
    sk.verifying_key()
}

/// Where the public key of the key file at `key_path` is written.
pub fn public_key_path(key_path: &Path) -> PathBuf {
    let mut p = key_path.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

/// Verifies checkpoints with a public verifier key alone.
pub struct CheckpointVerifier {
    vkey: String,
}

impl CheckpointVerifier {
    /// From a verifier key `<origin>+<key id>+<base64>` (the `.pub` file's content).
    pub fn new(vkey: &str) -> Result<Self, AuditError> {
        let vkey = vkey.trim();
        StandardVerifier::new(vkey).map_err(|e| AuditError::Malformed {
            what: "public key",
            problem: e.to_string(),
        })?;
        Ok(Self {
            vkey: vkey.to_owned(),
        })
    }

    /// The origin the key signs for.
    pub fn origin(&self) -> &str {
        self.vkey.split('+').next().unwrap_or_default()
    }

    /// Parses `note` and checks its signature and origin; returns the checkpoint it signs.
    pub fn verify(&self, note: &str) -> Result<SignedCheckpoint, AuditError> {
        let parsed = Note::from_bytes(note.as_bytes()).map_err(|e| AuditError::Malformed {
            what: "signed note",
            problem: e.to_string(),
        })?;
        let v = StandardVerifier::new(&self.vkey).map_err(|e| AuditError::Malformed {
            what: "public key",
            problem: e.to_string(),
        })?;
        parsed
            .verify(&VerifierList::new(vec![Box::new(v)]))
            .map_err(|e| AuditError::Signature(e.to_string()))?;
        let cp = Checkpoint::from_bytes(parsed.text()).map_err(|e| AuditError::Malformed {
            what: "checkpoint",
            problem: e.to_string(),
        })?;
        if cp.origin() != self.origin() {
            return Err(AuditError::Signature(
                "the checkpoint's origin is not the key's".into(),
            ));
        }
        Ok(SignedCheckpoint {
            origin: cp.origin().to_owned(),
            size: cp.size(),
            root: *cp.hash(),
            note: note.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_checkpoint_has_the_c2sp_layout_and_verifies() {
        let s = CheckpointSigner::generate("medai.example/audit").unwrap();
        let root = tlog_tiles::record_hash(b"x");
        let cp = s.sign(42, root).unwrap();
        let mut lines = cp.note.lines();
        assert_eq!(lines.next(), Some("medai.example/audit"));
        assert_eq!(lines.next(), Some("42"));
        assert_eq!(lines.next(), Some(root.to_string().as_str()));
        assert_eq!(lines.next(), Some(""));
        assert!(lines
            .next()
            .unwrap()
            .starts_with("\u{2014} medai.example/audit "));
        let v = CheckpointVerifier::new(s.verifier_key()).unwrap();
        assert_eq!(v.verify(&cp.note).unwrap(), cp);
    }

    #[test]
    fn forged_checkpoints_are_refused() {
        let s = CheckpointSigner::generate("medai/audit").unwrap();
        let cp = s.sign(10, tlog_tiles::record_hash(b"a")).unwrap();
        let v = CheckpointVerifier::new(s.verifier_key()).unwrap();
        // A changed size or root keeps the old signature: refused.
        let forged = cp.note.replacen("\n10\n", "\n9\n", 1);
        assert!(matches!(v.verify(&forged), Err(AuditError::Signature(_))));
        // Signed by another key with the same name: refused.
        let other = CheckpointSigner::generate("medai/audit").unwrap();
        let cp2 = other.sign(10, tlog_tiles::record_hash(b"a")).unwrap();
        assert!(v.verify(&cp2.note).is_err());
        // Another origin: refused.
        let third = CheckpointSigner::generate("evil/audit").unwrap();
        assert!(v.verify(&third.sign(1, cp.root).unwrap().note).is_err());
        // Garbage and truncation: errors, not panics.
        for junk in [
            "",
            "\n\n",
            "medai/audit\n10\n",
            &cp.note[..cp.note.len() - 5],
        ] {
            assert!(v.verify(junk).is_err());
        }
        assert!(CheckpointVerifier::new("not a key").is_err());
    }

    #[test]
    fn key_file_round_trips_is_0600_and_writes_the_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit-signing.key");
        let (a, created) = CheckpointSigner::load_or_create(&p, "medai/audit").unwrap();
        assert!(created);
        let (b, created) = CheckpointSigner::load_or_create(&p, "ignored").unwrap();
        assert!(!created);
        assert_eq!(a.verifier_key(), b.verifier_key());
        let pubkey = std::fs::read_to_string(public_key_path(&p)).unwrap();
        assert_eq!(pubkey.trim(), a.verifier_key());
        let note = b.sign(3, tlog_tiles::record_hash(b"r")).unwrap().note;
        CheckpointVerifier::new(&pubkey)
            .unwrap()
            .verify(&note)
            .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
            assert!(CheckpointSigner::load(&p).is_err());
        }
        assert!(format!("{a:?}").contains("vkey"));
        assert!(!format!("{a:?}").contains("PRIVATE"));
    }
}
