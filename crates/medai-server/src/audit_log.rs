//! The audit log's moving parts in a running server: the group-committing appender, the
//! integrator that places committed events in the Merkle tree, the checkpointer that signs a
//! checkpoint every `audit.checkpoint_interval` (and at shutdown) into the database and the
//! external checkpoint sinks (the directory, and S3 or Cloud Storage with a retention lock),
//! and the periodic verifier whose result feeds metrics and `GET /api/v1/audit/status`.
//!
//! A sink that fails never loses the checkpoint: it is committed to the database first, the
//! failure is counted in `medai_audit_log_errors_total`, and the next tick delivers the newest
//! checkpoint to every sink that has not received it.

use crate::metrics::AuditMetrics;
use medai_audit::{CheckpointSigner, CheckpointVerifier, SignedCheckpoint};
use medai_core::audit::AuditEvent;
use medai_core::Clock;
use medai_kms::sink::CheckpointSink;
use medai_store::audit_log::{self, Appender, VerifyFrom};
use medai_store::{Store, StoreError};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// The audit log of one server. Clones share the same appender, signer and store (the
/// background tasks hold clones).
#[derive(Clone)]
pub struct AuditLog {
    appender: Appender,
    notify: Arc<Notify>,
    signer: Arc<CheckpointSigner>,
    sinks: Arc<Sinks>,
    store: Store,
    metrics: AuditMetrics,
    retired: Arc<Vec<String>>,
}

/// The checkpoint sinks and the newest tree size each has received.
#[derive(Debug, Default)]
pub struct Sinks {
    dir: PathBuf,
    directory: bool,
    objects: Vec<Arc<dyn CheckpointSink>>,
    delivered: Vec<AtomicU64>,
}

impl Sinks {
    /// The directory sink `dir` (written when `directory` is true) and the object-storage
    /// sinks.
    pub fn new(dir: PathBuf, directory: bool, objects: Vec<Arc<dyn CheckpointSink>>) -> Self {
        let delivered = objects.iter().map(|_| AtomicU64::new(0)).collect();
        Self {
            dir,
            directory,
            objects,
            delivered,
        }
    }

    /// Only the checkpoint directory `dir`.
    pub fn directory_only(dir: PathBuf) -> Self {
        Self::new(dir, true, Vec::new())
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("sinks", &self.sinks)
            .finish_non_exhaustive()
    }
}

/// Intervals of the background tasks.
#[derive(Debug, Clone, Copy)]
pub struct Intervals {
    /// Between signed checkpoints.
    pub checkpoint: Duration,
    /// Between full verifications.
    pub verify: Duration,
}

impl AuditLog {
    /// Starts the appender, integrator, checkpointer and verifier tasks on the current runtime.
    pub fn start(
        store: Store,
        signer: CheckpointSigner,
        retired: Vec<String>,
        sinks: Sinks,
        clock: Arc<dyn Clock>,
        metrics: AuditMetrics,
        every: Intervals,
    ) -> Self {
        let notify = Arc::new(Notify::new());
        let appender = Appender::start(store.clone(), notify.clone());
        let log = Self {
            appender,
            notify,
            signer: Arc::new(signer),
            sinks: Arc::new(sinks),
            store,
            metrics,
            retired: Arc::new(retired),
        };
        log.spawn_integrator();
        log.spawn_checkpointer(clock.clone(), every.checkpoint);
        log.spawn_verifier(clock, every.verify);
        log
    }

    fn spawn_integrator(&self) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = me.notify.notified() => {},
                    () = tokio::time::sleep(Duration::from_millis(250)) => {},
                }
                if me.store.pool().is_closed() {
                    return;
                }
                if let Err(e) = me.integrate().await {
                    me.metrics.log_errors.inc();
                    tracing::warn!(target: "security", error = %e, "audit log integration failed");
                }
            }
        });
    }

    fn spawn_checkpointer(&self, clock: Arc<dyn Clock>, every: Duration) {
        self.spawn_periodic(every, "checkpoint", move |log| {
            let now = clock.now();
            async move { log.checkpoint(now).await.map(drop) }
        });
    }

    fn spawn_verifier(&self, clock: Arc<dyn Clock>, every: Duration) {
        self.spawn_periodic(every, "verification", move |log| {
            let now = clock.now();
            async move { log.verify(now).await.map(drop) }
        });
    }

    /// Runs `task` every `every`, the first time one interval after start (not at start-up),
    /// until the database pool closes; a failure is counted and logged, and the next tick
    /// tries again.
    fn spawn_periodic<F, Fut>(&self, every: Duration, what: &'static str, task: F)
    where
        F: Fn(Self) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), StoreError>> + Send,
    {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick fires at once.
            tick.tick().await;
            loop {
                tick.tick().await;
                if me.store.pool().is_closed() {
                    return;
                }
                if let Err(e) = task(me.clone()).await {
                    me.metrics.log_errors.inc();
                    tracing::warn!(target: "security", error = %e, task = what, "audit log task failed");
                }
            }
        });
    }

    /// Queues an event with no transaction of its own and waits until it is committed
    /// (group commit).
    pub async fn append(&self, e: &AuditEvent) -> Result<(), StoreError> {
        self.appender.append(e.clone()).await
    }

    /// Places every committed event in the tree now.
    pub async fn integrate(&self) -> Result<u64, StoreError> {
        let n = audit_log::integrate_all(&self.store).await?;
        if n > 0 {
            self.metrics.events_appended.inc_by(n);
            let mut c = self.store.pool().acquire().await?;
            let size = audit_log::tree_size(&mut c).await?;
            self.metrics
                .tree_size
                .set(i64::try_from(size).unwrap_or(i64::MAX));
        }
        Ok(n)
    }

    /// Integrates, signs a checkpoint if the tree grew (committed to the database), and writes
    /// it to every checkpoint sink. When the tree has not grown, the newest checkpoint goes to
    /// any sink that has not received it (one that failed earlier). A sink failure is counted
    /// and logged and does not undo the database checkpoint; the first one is returned after
    /// every sink was tried.
    pub async fn checkpoint(&self, now: i64) -> Result<Option<SignedCheckpoint>, StoreError> {
        self.integrate().await?;
        let cp = audit_log::checkpoint(&self.store, &self.signer, now).await?;
        let (size, note) = match &cp {
            Some(cp) => {
                self.metrics.checkpoints.inc();
                (cp.size, cp.note.clone())
            }
            None => {
                let mut c = self.store.pool().acquire().await?;
                match audit_log::latest_checkpoint(&mut c).await? {
                    Some(last) => (last.tree_size, last.note),
                    None => return Ok(None),
                }
            }
        };
        match self.deliver(size, &note).await {
            Some(first) => Err(first),
            None => Ok(cp),
        }
    }

    /// Writes the checkpoint to each sink that has not received it; returns the first failure
    /// (each one is counted in `log_errors` and logged).
    async fn deliver(&self, size: u64, note: &str) -> Option<StoreError> {
        let mut first = None;
        let mut fail = |e: StoreError| {
            self.metrics.log_errors.inc();
            tracing::warn!(target: "security", error = %e, tree_size = size, "checkpoint sink write failed; the checkpoint is in the database and is retried");
            first.get_or_insert(e);
        };
        if self.sinks.directory {
            if let Err(e) = write_checkpoint(&self.sinks.dir, size, note) {
                fail(StoreError::Corrupt(format!(
                    "checkpoint directory {}: {e}",
                    self.sinks.dir.display()
                )));
            }
        }
        for (sink, delivered) in self.sinks.objects.iter().zip(&self.sinks.delivered) {
            if delivered.load(Ordering::Acquire) >= size {
                continue;
            }
            match sink.put(size, note).await {
                Ok(_) => {
                    delivered.fetch_max(size, Ordering::AcqRel);
                }
                Err(e) => fail(StoreError::Corrupt(e.to_string())),
            }
        }
        first
    }

    /// Every checkpoint in the sinks, as (location, note): the directory's files and each
    /// object-storage sink's objects. A sink that cannot be read is counted and skipped.
    pub async fn exported_checkpoints(&self) -> Vec<(String, String)> {
        let mut out = if self.sinks.directory {
            read_checkpoint_dir(&self.sinks.dir).unwrap_or_default()
        } else {
            Vec::new()
        };
        for sink in &self.sinks.objects {
            match sink.read_all().await {
                Ok(v) => out.extend(v),
                Err(e) => {
                    self.metrics.log_errors.inc();
                    tracing::warn!(target: "security", error = %e, "reading checkpoints back from a sink failed");
                }
            }
        }
        out
    }

    /// Verifies the whole log against the stored and exported checkpoints, records the result
    /// and sets the metrics.
    pub async fn verify(&self, now: i64) -> Result<medai_audit::verify::Report, StoreError> {
        let started = std::time::Instant::now();
        let keys = std::iter::once(self.signer.verifier_key())
            .chain(self.retired.iter().map(String::as_str))
            .map(CheckpointVerifier::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let extra = self.exported_checkpoints().await;
        let report = audit_log::verify(&self.store, &keys, VerifyFrom::default(), extra).await?;
        let mut c = self.store.pool().acquire().await?;
        audit_log::record_verification(&mut c, now, &report).await?;
        self.metrics.verification_ok.set(i64::from(report.ok()));
        self.metrics.last_verification.set(now);
        self.metrics
            .verification_seconds
            .set(started.elapsed().as_secs_f64());
        if let Some(first) = report.findings.first() {
            tracing::error!(target: "security", problem = %first, "audit log verification failed");
        }
        Ok(report)
    }

    /// The public key that verifies this log's checkpoints.
    pub fn verifier_key(&self) -> &str {
        self.signer.verifier_key()
    }

    /// The checkpoint directory (written to unless `audit.directory_sink` is false).
    pub fn checkpoint_dir(&self) -> &Path {
        &self.sinks.dir
    }
}

/// Writes a signed checkpoint as `checkpoint-<size>.txt` (never overwriting; written to a
/// temporary name, synced, then renamed). The directory is created 0700 if missing.
pub fn write_checkpoint(dir: &Path, size: u64, note: &str) -> std::io::Result<PathBuf> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        b.mode(0o700);
    }
    b.create(dir)?;
    let path = dir.join(format!("checkpoint-{size:016}.txt"));
    if path.exists() {
        return Ok(path);
    }
    let tmp = dir.join(format!(".checkpoint-{size:016}.{}.tmp", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(note.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Reads every `checkpoint-*.txt` in `dir` as (file name, note).
pub fn read_checkpoint_dir(dir: &Path) -> std::io::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("checkpoint-") && name.ends_with(".txt") {
            // Checkpoints are small; a huge file is not one of ours.
            if entry.metadata()?.len() > 64 * 1024 {
                out.push((name, String::new()));
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            out.push((name, text));
        }
    }
    out.sort();
    Ok(out)
}
