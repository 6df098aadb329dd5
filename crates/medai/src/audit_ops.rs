//! `medai audit …`: verification, proofs, offline proof checks, exports and checkpoints.

use crate::cli::{AuditCommand, ExportFormat};
use crate::ops::cli_event;
use anyhow::{bail, Context as _};
use medai_audit::proof::{verify_document, Verified};
use medai_audit::{CheckpointSigner, CheckpointVerifier};
use medai_core::config::Config;
use medai_core::{Clock as _, SystemClock};
use medai_server::audit_log::{read_checkpoint_dir, write_checkpoint};
use medai_server::bootstrap;
use medai_store::audit_log::{self, VerifyFrom};
use medai_store::{audit, StoreError};
use std::io::Write as _;
use std::path::Path;

/// Runs one audit command.
pub async fn run(cfg: Config, cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::CheckProof { public_key, proof } => check_proof(&public_key, &proof),
        AuditCommand::Verify {
            from,
            checkpoints,
            public_keys,
        } => verify(&cfg, from, checkpoints.as_deref(), &public_keys).await,
        AuditCommand::Prove {
            seq,
            size,
            consistency,
        } => prove(&cfg, seq, size, consistency).await,
        AuditCommand::Export {
            format,
            since,
            until,
            user,
            patient,
            output,
        } => {
            let filter = audit::Filter {
                actor_id: user,
                patient_id: patient,
                since: parse_time("--since", since.as_deref())?,
                until: parse_time("--until", until.as_deref())?,
                limit: 5000,
                ..Default::default()
            };
            export(&cfg, format, filter, output.as_deref()).await
        }
        AuditCommand::Checkpoint => checkpoint(&cfg).await,
    }
}

fn parse_time(flag: &str, v: Option<&str>) -> anyhow::Result<Option<i64>> {
    v.map(|t| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .map(|t| t.unix_timestamp())
            .with_context(|| format!("{flag} must be an RFC 3339 time, e.g. 2026-01-31T00:00:00Z"))
    })
    .transpose()
}

fn load_key(path: &Path) -> anyhow::Result<CheckpointVerifier> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read public key file {}", path.display()))?;
    CheckpointVerifier::new(&text).with_context(|| format!("public key file {}", path.display()))
}

#[expect(clippy::print_stdout, reason = "command output")]
fn check_proof(public_key: &Path, proof: &Path) -> anyhow::Result<()> {
    let key = load_key(public_key)?;
    let text = std::fs::read_to_string(proof)
        .with_context(|| format!("cannot read proof file {}", proof.display()))?;
    match verify_document(&text, &key).context("the proof does NOT verify")? {
        Verified::Inclusion { index, checkpoint } => println!(
            "OK: the event is entry {index} of the log {} as signed at tree size {} (root {})",
            checkpoint.origin, checkpoint.size, checkpoint.root
        ),
        Verified::Consistency { old, new } => println!(
            "OK: the log {} at tree size {} is a prefix of the log at tree size {}",
            new.origin, old.size, new.size
        ),
    }
    Ok(())
}

#[expect(clippy::print_stdout, reason = "command output")]
async fn verify(
    cfg: &Config,
    from: Option<i64>,
    checkpoints: Option<&Path>,
    public_keys: &[std::path::PathBuf],
) -> anyhow::Result<()> {
    let store = bootstrap::connect_current(cfg).await?;
    let keys = if public_keys.is_empty() {
        vec![load_key(&medai_audit::checkpoint::public_key_path(
            &cfg.audit_key_path(),
        ))?]
    } else {
        public_keys
            .iter()
            .map(|p| load_key(p))
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    let extra = match checkpoints {
        Some(dir) => read_checkpoint_dir(dir)
            .with_context(|| format!("cannot read checkpoint directory {}", dir.display()))?,
        None => configured_sink_checkpoints(cfg).await?,
    };
    let exported = extra.len();
    let started = std::time::Instant::now();
    let report = audit_log::verify(&store, &keys, VerifyFrom { seq: from }, extra).await?;
    let secs = started.elapsed().as_secs_f64();
    let mut conn = store.pool().acquire().await.map_err(StoreError::from)?;
    let pending = audit_log::pending_count(&mut conn).await?;
    audit_log::record_verification(&mut conn, SystemClock.now(), &report).await?;
    drop(conn);
    store.close().await;
    println!(
        "checked {} events (tree size {}, root {}) against the stored checkpoints and {exported} exported ones in {secs:.2}s; {pending} events pending placement",
        report.events_checked, report.tree_size, report.root
    );
    if report.ok() {
        println!("OK: the audit log verifies");
        return Ok(());
    }
    for (i, f) in report.findings.iter().enumerate() {
        println!("{}: {f}", if i == 0 { "FIRST BREAK" } else { "also" });
    }
    bail!(
        "the audit log does NOT verify ({} problem(s)); first: {}",
        report.findings.len(),
        report
            .findings
            .first()
            .map(ToString::to_string)
            .unwrap_or_default()
    )
}

#[expect(clippy::print_stdout, reason = "command output")]
async fn prove(
    cfg: &Config,
    seq: Option<i64>,
    size: Option<u64>,
    consistency: Option<Vec<u64>>,
) -> anyhow::Result<()> {
    let store = bootstrap::connect_current(cfg).await?;
    let mut conn = store.pool().acquire().await.map_err(StoreError::from)?;
    let text = match (seq, consistency.as_deref()) {
        (_, Some([old, new])) => serde_json::to_string_pretty(
            &audit_log::consistency_proof(&mut conn, *old, *new).await?,
        )?,
        (Some(seq), None) => {
            serde_json::to_string_pretty(&audit_log::inclusion_proof(&mut conn, seq, size).await?)?
        }
        _ => bail!("give an event sequence number, or --consistency OLD NEW"),
    };
    drop(conn);
    store.close().await;
    println!("{text}");
    Ok(())
}

async fn export(
    cfg: &Config,
    format: ExportFormat,
    mut filter: audit::Filter,
    output: Option<&Path>,
) -> anyhow::Result<()> {
    let store = bootstrap::connect_current(cfg).await?;
    let mut out: Box<dyn std::io::Write> = match output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut bundle = Vec::new();
    let mut count = 0usize;
    loop {
        let mut conn = store.pool().acquire().await.map_err(StoreError::from)?;
        let page = audit::list(&mut conn, &filter).await?;
        drop(conn);
        let Some(last) = page.last().map(|e| e.seq) else {
            break;
        };
        for s in &page {
            match format {
                ExportFormat::Jsonl => {
                    let mut v = serde_json::to_value(&s.event)?;
                    v["seq"] = serde_json::json!(s.seq);
                    v["time"] = serde_json::json!(medai_server::session::rfc3339(s.event.at));
                    writeln!(out, "{v}")?;
                }
                ExportFormat::FhirNdjson => {
                    writeln!(out, "{}", medai_audit::fhir::audit_event(s.seq, &s.event))?
                }
                ExportFormat::Fhir => bundle.push(medai_audit::fhir::audit_event(s.seq, &s.event)),
            }
        }
        count += page.len();
        filter.after_seq = Some(last);
    }
    if format == ExportFormat::Fhir {
        writeln!(out, "{}", medai_audit::fhir::bundle(bundle))?;
    }
    out.flush()?;
    // Exporting the log is reading it: recorded like any other read.
    let mut tx = store.begin().await?;
    audit::append(
        &mut tx,
        &cli_event(SystemClock.now(), "audit.export")
            .detail(&serde_json::json!({ "results": count })),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    store.close().await;
    Ok(())
}

/// The checkpoints in every configured sink: the directory (when enabled and present) and the
/// object-storage sinks, read back.
async fn configured_sink_checkpoints(cfg: &Config) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    if cfg.audit.directory_sink {
        let dir = cfg.effective_checkpoint_dir();
        match read_checkpoint_dir(&dir) {
            Ok(v) => out.extend(v),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => bail!("cannot read checkpoint directory {}: {e}", dir.display()),
        }
    }
    let sinks = medai_kms::sink::connect(&cfg.audit, cfg.keys.effective_timeout()).await?;
    for sink in sinks {
        out.extend(sink.read_all().await?);
    }
    Ok(out)
}

#[expect(clippy::print_stdout, reason = "command output")]
async fn checkpoint(cfg: &Config) -> anyhow::Result<()> {
    let store = bootstrap::connect_current(cfg).await?;
    let signer = CheckpointSigner::load(&cfg.audit_key_path())
        .with_context(|| "the audit signing key (run `medai init` first)")?;
    let placed = audit_log::integrate_all(&store).await?;
    let cp = audit_log::checkpoint(&store, &signer, SystemClock.now()).await?;
    // Unchanged tree: the newest stored checkpoint still goes to every sink (a sink configured
    // since, or one that failed before, receives it; existing objects are left as they are).
    let (size, note) = match &cp {
        Some(cp) => (cp.size, cp.note.clone()),
        None => {
            let mut conn = store.pool().acquire().await.map_err(StoreError::from)?;
            match audit_log::latest_checkpoint(&mut conn).await? {
                Some(last) => (last.tree_size, last.note),
                None => {
                    drop(conn);
                    store.close().await;
                    println!("placed {placed} events; the log is empty, nothing to sign");
                    return Ok(());
                }
            }
        }
    };
    store.close().await;
    let mut places = Vec::new();
    if cfg.audit.directory_sink {
        let dir = cfg.effective_checkpoint_dir();
        let path = write_checkpoint(&dir, size, &note)
            .with_context(|| format!("checkpoint directory {}", dir.display()))?;
        places.push(path.display().to_string());
    }
    let sinks = medai_kms::sink::connect(&cfg.audit, cfg.keys.effective_timeout()).await?;
    for sink in sinks {
        places.push(sink.put(size, &note).await?);
    }
    let places = places.join(", ");
    if cp.is_some() {
        println!(
            "placed {placed} events; signed checkpoint of tree size {size} written to the database and {places}"
        );
    } else {
        println!(
            "placed {placed} events; the tree has not grown since the last checkpoint (tree size {size}), which is in {places}"
        );
    }
    Ok(())
}
