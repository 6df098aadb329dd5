//! The model registry: `<data_dir>/models/registry.json`, one record per pulled model with where
//! it came from, its SHA-256 and size, where its files are, and when it was pulled.
//!
//! A JSON file rather than a database table: the weights live on this machine's disk (the
//! Hugging Face cache), while the database may be PostgreSQL shared by every replica, where a row
//! would claim files other nodes do not have; and `serve --role model-server` runs with no
//! database at all. The file is replaced atomically (write a temporary file, fsync, rename), so
//! a crash leaves the old or the new registry, never half of one.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

/// The format version written; a newer one is refused rather than misread.
const VERSION: u32 = 1;

/// Everything pulled on this machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// The models, in pull order.
    pub models: Vec<ModelRecord>,
}

/// One pulled model: its weights and its tokenizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRecord {
    /// The id used by `[llm]`, `--model` and metrics (`[a-z0-9._-]`).
    pub id: String,
    /// The GGUF weights.
    pub weights: FileRecord,
    /// The tokenizer (`tokenizer.json`).
    pub tokenizer: FileRecord,
    /// When the model was pulled (RFC 3339, UTC).
    pub pulled_at: String,
}

/// One verified file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRecord {
    /// Hub repository.
    pub repo: String,
    /// Path in the repository.
    pub file: String,
    /// The revision asked for.
    pub revision: String,
    /// The commit the revision resolved to, when known.
    pub commit: Option<String>,
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Where the file is on this machine.
    pub path: PathBuf,
}

/// Why the registry could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Reading or writing failed.
    #[error("model registry {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a registry this version understands.
    #[error(
        "model registry {path} is unreadable ({reason}); move it aside and pull the models again"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The registry file of a data directory.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("models").join("registry.json")
}

impl Manifest {
    /// Reads the registry; a missing file is an empty registry.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    version: VERSION,
                    models: Vec::new(),
                })
            }
            Err(source) => {
                return Err(ManifestError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let corrupt = |reason: String| ManifestError::Corrupt {
            path: path.to_owned(),
            reason,
        };
        let m: Manifest = serde_json::from_slice(&text).map_err(|e| corrupt(e.to_string()))?;
        if m.version != VERSION {
            return Err(corrupt(format!(
                "format version {} (this medai reads {VERSION})",
                m.version
            )));
        }
        Ok(m)
    }

    /// Writes the registry atomically.
    pub fn save(&self, path: &Path) -> Result<(), ManifestError> {
        let io = |source| ManifestError::Io {
            path: path.to_owned(),
            source,
        };
        let dir = path
            .parent()
            .ok_or_else(|| io(std::io::Error::other("no parent directory")))?;
        std::fs::create_dir_all(dir).map_err(io)?;
        let text = serde_json::to_vec_pretty(self).map_err(|e| io(std::io::Error::other(e)))?;
        let tmp = dir.join(format!(".registry.json.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            // The rename is durable once the directory entry is.
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }

    /// Adds `record`, replacing a record with the same id or the same weights (repository, file
    /// and revision).
    pub fn upsert(&mut self, record: ModelRecord) {
        self.models.retain(|m| {
            m.id != record.id
                && !(m.weights.repo == record.weights.repo
                    && m.weights.file == record.weights.file
                    && m.weights.revision == record.weights.revision)
        });
        self.models.push(record);
    }

    /// The record with this id.
    pub fn get(&self, id: &str) -> Option<&ModelRecord> {
        self.models.iter().find(|m| m.id == id)
    }
}

/// The SHA-256 (lowercase hex) and size of a file, read in 1 MiB pieces (never whole in memory).
pub fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// [`hash_file`] on the blocking pool (676 MB took 0.6 s on the development machine).
pub async fn hash_file_async(path: PathBuf) -> std::io::Result<(String, u64)> {
    tokio::task::spawn_blocking(move || hash_file(&path))
        .await
        .map_err(std::io::Error::other)?
}

/// The result of checking one file against its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileCheck {
    /// Hash and size match.
    Ok,
    /// The file is gone or unreadable.
    Unreadable(String),
    /// The content differs.
    Mismatch {
        /// What the file hashes to now.
        actual_sha256: String,
        /// Its size now.
        actual_size: u64,
    },
}

/// Re-hashes a recorded file.
pub async fn check_file(record: &FileRecord) -> FileCheck {
    match hash_file_async(record.path.clone()).await {
        Err(e) => FileCheck::Unreadable(e.to_string()),
        Ok((sha, size)) if sha == record.sha256 && size == record.size => FileCheck::Ok,
        Ok((actual_sha256, actual_size)) => FileCheck::Mismatch {
            actual_sha256,
            actual_size,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, file: &str) -> ModelRecord {
        let f = |name: &str| FileRecord {
            repo: "o/r".into(),
            file: name.into(),
            revision: "main".into(),
            commit: None,
            sha256: "0".repeat(64),
            size: 1,
            path: PathBuf::from("/nowhere"),
        };
        ModelRecord {
            id: id.into(),
            weights: f(file),
            tokenizer: f("tokenizer.json"),
            pulled_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn round_trip_upsert_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        let mut m = Manifest::load(&p).unwrap();
        assert!(m.models.is_empty());
        m.upsert(record("a", "a.gguf"));
        m.upsert(record("b", "b.gguf"));
        m.upsert(record("a2", "a.gguf"));
        m.save(&p).unwrap();
        let back = Manifest::load(&p).unwrap();
        assert_eq!(back, m);
        let ids: Vec<&str> = back.models.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["b", "a2"]);
        assert!(back.get("a").is_none());
        // no temporary file is left behind
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["registry.json"]);

        std::fs::write(&p, "{\"version\": 2, \"models\": []}").unwrap();
        assert!(matches!(
            Manifest::load(&p),
            Err(ManifestError::Corrupt { .. })
        ));
        std::fs::write(&p, "not json").unwrap();
        let e = Manifest::load(&p).unwrap_err().to_string();
        assert!(e.contains("pull the models again"), "{e}");
    }

    #[test]
    fn hashes_stream_and_detect_changes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x");
        // more than one 1 MiB read
        let data: Vec<u8> = (0..(3 << 20) + 17).map(|i| (i % 251) as u8).collect();
        std::fs::write(&f, &data).unwrap();
        let (sha, size) = hash_file(&f).unwrap();
        assert_eq!(size, data.len() as u64);
        assert_eq!(sha, hex::encode(Sha256::digest(&data)));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut rec = record("x", "x.gguf").weights;
        rec.path = f.clone();
        rec.sha256 = sha;
        rec.size = size;
        assert_eq!(rt.block_on(check_file(&rec)), FileCheck::Ok);
        let mut changed = data.clone();
        changed[5] ^= 1;
        std::fs::write(&f, &changed).unwrap();
        assert!(matches!(
            rt.block_on(check_file(&rec)),
            FileCheck::Mismatch { actual_size, .. } if actual_size == size
        ));
        std::fs::remove_file(&f).unwrap();
        assert!(matches!(
            rt.block_on(check_file(&rec)),
            FileCheck::Unreadable(_)
        ));
    }
}
