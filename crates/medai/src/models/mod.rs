//! Model files: pulling GGUF weights and tokenizers from the Hugging Face Hub, checking their
//! SHA-256, and the registry of what was pulled (`<data_dir>/models/registry.json`).
//!
//! The rule this module keeps: a file is recorded only after its hash matched, a file that does
//! not match is removed from the cache, and a recorded model is re-hashed before it is loaded.

pub mod default_model;
pub mod hub;
pub mod manifest;
pub mod spec;

use hub::{HubError, HubSettings};
use manifest::{FileCheck, FileRecord, Manifest, ManifestError, ModelRecord};
use spec::FileSpec;
use std::path::Path;

/// What `medai model pull` was asked for.
#[derive(Debug, Clone)]
pub struct PullRequest {
    /// Registry id (default: from the file name).
    pub id: String,
    /// The weights; their SHA-256 is required.
    pub weights: FileSpec,
    /// The tokenizer; without a SHA-256, the first download's hash is recorded.
    pub tokenizer: FileSpec,
}

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// Downloading failed.
    #[error(transparent)]
    Hub(#[from] HubError),
    /// The registry could not be read or written.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The content is not what was pinned; the file was removed.
    #[error("{spec}: SHA-256 mismatch: expected {expected}, the file hashes to {actual} ({size} bytes); it was removed from the cache and is not recorded")]
    HashMismatch {
        /// What was asked for.
        spec: String,
        /// Pinned hash.
        expected: String,
        /// Actual hash.
        actual: String,
        /// Actual size.
        size: u64,
    },
    /// The file could not be read for hashing.
    #[error("{spec}: cannot read {}: {source}", path.display())]
    Read {
        /// What was asked for.
        spec: String,
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Fetches one file (cache or Hub) and checks its hash; a mismatch removes it.
pub async fn fetch_verified(
    hub: &HubSettings,
    spec: &FileSpec,
    progress: bool,
) -> Result<FileRecord, PullError> {
    let fetched = hub.fetch(spec, progress).await?;
    let (actual, size) = manifest::hash_file_async(fetched.path.clone())
        .await
        .map_err(|source| PullError::Read {
            spec: spec.to_string(),
            path: fetched.path.clone(),
            source,
        })?;
    if let Some(expected) = &spec.sha256 {
        if *expected != actual {
            if let Err(e) = hub::discard(&fetched.path) {
                tracing::error!(path = %fetched.path.display(), error = %e, "cannot remove a file that failed its hash check");
            }
            return Err(PullError::HashMismatch {
                spec: spec.to_string(),
                expected: expected.clone(),
                actual,
                size,
            });
        }
    }
    // The snapshot entry is a link into `blobs/`; record the link (stable across re-downloads).
    Ok(FileRecord {
        repo: spec.repo.clone(),
        file: spec.file.clone(),
        revision: spec.revision.clone(),
        commit: fetched.commit,
        sha256: actual,
        size,
        path: fetched.path,
    })
}

/// Pulls both files, checks them, and records the model (replacing an older record of it) as
/// pulled at `now` (Unix seconds).
pub async fn pull(
    hub: &HubSettings,
    registry: &Path,
    request: &PullRequest,
    progress: bool,
    now: i64,
) -> Result<ModelRecord, PullError> {
    let weights = fetch_verified(hub, &request.weights, progress).await?;
    let tokenizer = fetch_verified(hub, &request.tokenizer, progress).await?;
    let record = ModelRecord {
        id: request.id.clone(),
        weights,
        tokenizer,
        pulled_at: rfc3339(now),
    };
    let mut m = Manifest::load(registry)?;
    m.upsert(record.clone());
    m.save(registry)?;
    Ok(record)
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Re-hashes both files of a record; `Err` names every file that does not match.
pub async fn check_record(record: &ModelRecord) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    for (what, f) in [
        ("weights", &record.weights),
        ("tokenizer", &record.tokenizer),
    ] {
        match manifest::check_file(f).await {
            FileCheck::Ok => {}
            FileCheck::Unreadable(e) => problems.push(format!(
                "{} {what} {}: unreadable ({e})",
                record.id,
                f.path.display()
            )),
            FileCheck::Mismatch {
                actual_sha256,
                actual_size,
            } => problems.push(format!(
                "{} {what} {}: SHA-256 {actual_sha256} ({actual_size} bytes), registered {} ({} bytes)",
                record.id,
                f.path.display(),
                f.sha256,
                f.size
            )),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}
