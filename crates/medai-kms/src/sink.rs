//! External sinks for signed audit checkpoints in object storage with a retention lock: Amazon
//! S3 with Object Lock ([`s3::S3Sink`], the official SDK) and Google Cloud Storage with a locked
//! retention policy or per-object retention ([`gcs::GcsSink`], the JSON API). Each checkpoint is
//! one object, `<prefix>checkpoint-<tree size, 16 digits>.txt`, holding the signed note, the
//! same name the directory sink uses; objects are never overwritten.
//!
//! Both sinks check at start that the bucket really locks what is written to it and refuse to
//! start otherwise, so a misconfigured bucket is found on the first deployment, not in an audit.

pub mod gcs;
pub mod s3;

use medai_core::config::AuditConfig;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Why a sink call failed; names the sink (`s3://bucket/prefix`), never a credential.
#[derive(Debug, thiserror::Error)]
#[error("checkpoint sink {sink}: {detail}")]
pub struct SinkError {
    /// The sink, e.g. `s3://bucket/medai-audit/`.
    pub sink: String,
    /// What happened.
    pub detail: String,
}

/// A boxed future, so sinks fit behind one trait object.
pub type SinkFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, SinkError>> + Send + 'a>>;

/// Somewhere signed checkpoints are kept outside the database.
pub trait CheckpointSink: Send + Sync + std::fmt::Debug {
    /// Where it writes, e.g. `s3://bucket/prefix/`, for messages.
    fn describe(&self) -> String;
    /// Writes the checkpoint of tree size `size` unless an object of that name exists already
    /// (a checkpoint of one size is only ever signed once). Returns the object's location.
    fn put<'a>(&'a self, size: u64, note: &'a str) -> SinkFuture<'a, String>;
    /// Every checkpoint written, as (object name, signed note), sorted by name.
    fn read_all(&self) -> SinkFuture<'_, Vec<(String, String)>>;
}

/// The object name of the checkpoint of tree size `size` under `prefix`.
pub fn object_name(prefix: &str, size: u64) -> String {
    format!("{prefix}checkpoint-{size:016}.txt")
}

/// Whether `name` (below the prefix) is a checkpoint object's name.
pub(crate) fn is_checkpoint(prefix: &str, name: &str) -> bool {
    name.strip_prefix(prefix).is_some_and(|rest| {
        rest.starts_with("checkpoint-") && rest.ends_with(".txt") && !rest.contains('/')
    })
}

/// Checkpoints are small: a larger object is not one of ours and is read as empty (which
/// verification reports as malformed).
pub(crate) const MAX_CHECKPOINT_BYTES: u64 = 64 * 1024;

/// Connects the object-storage sinks `[audit.s3]` and `[audit.gcs]` configure, checking that
/// each bucket locks its objects. Refuses (an error naming the sink) when a bucket is missing,
/// unreachable or has no retention lock.
pub async fn connect(
    config: &AuditConfig,
    timeout: Duration,
) -> Result<Vec<std::sync::Arc<dyn CheckpointSink>>, SinkError> {
    let mut out: Vec<std::sync::Arc<dyn CheckpointSink>> = Vec::new();
    if let Some(c) = &config.s3 {
        let sink = s3::S3Sink::connect(c, timeout, None).await?;
        sink.check_lock().await?;
        out.push(std::sync::Arc::new(sink));
    }
    if let Some(c) = &config.gcs {
        let sink = gcs::GcsSink::new(c, timeout)?;
        sink.check_lock().await?;
        out.push(std::sync::Arc::new(sink));
    }
    Ok(out)
}

/// The retain-until time (Unix seconds) of an object written now: the wall clock plus `days`.
pub(crate) fn retain_until(days: u32) -> Result<i64, String> {
    use medai_core::Clock as _;
    medai_core::SystemClock
        .now()
        .checked_add(i64::from(days) * 86_400)
        .ok_or_else(|| "retention_days is out of range".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_names_sort_by_size_and_stay_under_their_prefix() {
        assert_eq!(object_name("p/", 42), "p/checkpoint-0000000000000042.txt");
        assert!(object_name("p/", 9) < object_name("p/", 10));
        assert!(is_checkpoint("p/", &object_name("p/", 1)));
        assert!(!is_checkpoint("p/", "p/sub/checkpoint-1.txt"));
        assert!(!is_checkpoint("p/", "q/checkpoint-1.txt"));
        assert!(!is_checkpoint("p/", "p/notes.txt"));
    }
}
