//! `medai model pull|verify`, the registered models in `medai model list`, and the default model
//! that `medai serve` answers with when no `[llm]` is configured.

use crate::cli::PullArgs;
use crate::models::default_model::{PinnedModel, DEFAULT_MODEL};
use crate::models::hub::HubSettings;
use crate::models::manifest::{self, Manifest, ModelRecord};
use crate::models::spec::{self, FileSpec};
use crate::models::{self, PullError, PullRequest};
use anyhow::{bail, Context as _};
use medai_core::config::Config;
use medai_core::{Clock as _, SystemClock};

/// `medai model pull`.
#[expect(clippy::print_stdout, reason = "command output")]
pub async fn pull(cfg: &Config, args: PullArgs) -> anyhow::Result<()> {
    let same_repo = args
        .tokenizer_repo
        .as_deref()
        .is_none_or(|r| r == args.repo);
    let tokenizer_revision = match (args.tokenizer_revision, same_repo) {
        (Some(r), _) => r,
        (None, true) => args.revision.clone(),
        (None, false) => bail!(
            "--tokenizer-revision is required when the tokenizer comes from another repository (--tokenizer-repo)"
        ),
    };
    let request = PullRequest {
        id: args.id.unwrap_or_else(|| spec::default_id(&args.file)),
        weights: FileSpec {
            repo: args.repo.clone(),
            file: args.file,
            revision: args.revision,
            sha256: Some(args.sha256),
        },
        tokenizer: FileSpec {
            repo: args.tokenizer_repo.unwrap_or(args.repo),
            file: args.tokenizer_file,
            revision: tokenizer_revision,
            sha256: args.tokenizer_sha256,
        },
    };
    let hub = HubSettings::from_env(&cfg.data_dir, args.offline)?;
    let registry = manifest::path(&cfg.data_dir);
    let record = models::pull(&hub, &registry, &request, true, SystemClock.now()).await?;
    if request.tokenizer.sha256.is_none() {
        println!(
            "note: no --tokenizer-sha256 was given; recorded the tokenizer as downloaded ({}); pass it next time to pin it",
            record.tokenizer.sha256
        );
    }
    println!(
        "{}: {} ({} bytes, sha256 {}) and {} verified and registered in {}",
        record.id,
        record.weights.path.display(),
        record.weights.size,
        record.weights.sha256,
        record.tokenizer.path.display(),
        registry.display()
    );
    Ok(())
}

/// `medai model verify`: re-hashes every registered model.
#[expect(clippy::print_stdout, reason = "command output")]
pub async fn verify(cfg: &Config) -> anyhow::Result<()> {
    let registry = manifest::path(&cfg.data_dir);
    let m = Manifest::load(&registry)?;
    if m.models.is_empty() {
        println!("no models are registered in {}", registry.display());
        return Ok(());
    }
    let mut bad = 0;
    for record in &m.models {
        match models::check_record(record).await {
            Ok(()) => println!(
                "ok\t{}\t{}\t{}",
                record.id, record.weights.sha256, record.tokenizer.sha256
            ),
            Err(problems) => {
                bad += 1;
                for p in problems {
                    println!("MISMATCH\t{p}");
                }
            }
        }
    }
    if bad > 0 {
        bail!(
            "{bad} of {} registered model(s) failed verification; they will not load (pull them again)",
            m.models.len()
        );
    }
    Ok(())
}

/// The registered models, for `medai model list`.
#[expect(clippy::print_stdout, reason = "command output")]
pub fn print_registered(cfg: &Config) -> anyhow::Result<usize> {
    let registry = manifest::path(&cfg.data_dir);
    let m = Manifest::load(&registry)?;
    if m.models.is_empty() {
        return Ok(0);
    }
    println!("registered (pulled) models in {}:", registry.display());
    println!("id\trepo\tfile\trevision\tsize\tsha256\tpulled at\tpath");
    for r in &m.models {
        let w = &r.weights;
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.id,
            w.repo,
            w.file,
            w.commit.as_deref().unwrap_or(&w.revision),
            w.size,
            w.sha256,
            r.pulled_at,
            w.path.display()
        );
    }
    Ok(m.models.len())
}

/// A registered model, re-hashed: a model whose files changed never loads.
pub async fn registered(cfg: &Config, id: &str) -> anyhow::Result<ModelRecord> {
    let registry = manifest::path(&cfg.data_dir);
    let m = Manifest::load(&registry)?;
    let Some(record) = m.get(id).cloned() else {
        bail!(
            "no model {id:?} is registered in {} (see `medai model list`; add one with `medai model pull`)",
            registry.display()
        );
    };
    if let Err(problems) = models::check_record(&record).await {
        bail!(
            "model {id} failed its hash check and will not load: {}; pull it again",
            problems.join("; ")
        );
    }
    Ok(record)
}

/// The default model: from the cache (hashes checked) or downloaded with a progress bar. Without
/// network the error says exactly which command to run or where to put which files.
pub async fn ensure_default(cfg: &Config, offline: bool) -> anyhow::Result<ModelRecord> {
    ensure_pinned(cfg, &DEFAULT_MODEL, offline).await
}

async fn ensure_pinned(
    cfg: &Config,
    pinned: &PinnedModel,
    offline: bool,
) -> anyhow::Result<ModelRecord> {
    let hub = HubSettings::from_env(&cfg.data_dir, offline)?;
    let registry = manifest::path(&cfg.data_dir);
    let request = PullRequest {
        id: pinned.id.to_owned(),
        weights: pinned.weights(),
        tokenizer: pinned.tokenizer(),
    };
    let (weights_path, _) = hub.cached_path(&request.weights);
    let (tokenizer_path, _) = hub.cached_path(&request.tokenizer);
    if !weights_path.is_file() && !hub.offline {
        tracing::info!(
            repo = pinned.repo,
            file = pinned.file,
            size = pinned.download_size(),
            "downloading the default model (first use)"
        );
    }
    match models::pull(&hub, &registry, &request, true, SystemClock.now()).await {
        Ok(r) => Ok(r),
        Err(PullError::Hub(e)) if e.is_offline() => Err(anyhow::anyhow!(
            "the default model is not available: {e}.\n\
             No [llm] is configured, so medai serve answers with {repo} {file} ({size} download) through the embedded engine.\n\
             Either:\n\
             - run, where {endpoint} is reachable and with the same data directory (or HF_HOME):\n    {cmd}\n\
             - or place the two files here (the cache layout of the Hugging Face Hub):\n    {w}\n    {t}\n\
             - or configure another model in [llm] (docs/assistant.md), or start with --no-default-model to serve without answers.",
            repo = pinned.repo,
            file = pinned.file,
            size = pinned.download_size(),
            endpoint = hub.endpoint,
            cmd = pinned.pull_command(),
            w = weights_path.display(),
            t = tokenizer_path.display(),
        )),
        Err(e) => Err(e).context("the default model could not be prepared"),
    }
}

/// The `[llm]` section that runs `record` through the embedded engine: one model, one
/// generation at a time, the registry's queue in front (the engine's own stays empty), no
/// retries (a local engine fails the same way twice) and generous timeouts for a CPU.
pub fn embedded_llm_config(record: &ModelRecord) -> serde_json::Value {
    serde_json::json!({
        "default_model": record.id,
        "models": [{
            "id": record.id,
            "provider": "embedded",
            "embedded": {
                "gguf": record.weights.path,
                "tokenizer": record.tokenizer.path,
            },
            "retry": {"max_retries": 0},
            "timeouts": {"first_token": "120s", "total": "600s"},
            "limits": {"max_concurrent": 1, "max_queue": 16, "queue_timeout": "120s"},
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::manifest::FileRecord;

    #[test]
    fn the_default_llm_section_is_a_valid_embedded_config() {
        let f = |file: &str| FileRecord {
            repo: "o/r".into(),
            file: file.into(),
            revision: "main".into(),
            commit: None,
            sha256: "0".repeat(64),
            size: 1,
            path: std::path::PathBuf::from("/m").join(file),
        };
        let record = ModelRecord {
            id: DEFAULT_MODEL.id.into(),
            weights: f("w.gguf"),
            tokenizer: f("tokenizer.json"),
            pulled_at: "2026-01-01T00:00:00Z".into(),
        };
        let llm = embedded_llm_config(&record);
        medai_server::assistant::check_llm_config(&llm).unwrap();
        assert_eq!(llm["models"][0]["embedded"]["gguf"], "/m/w.gguf");
        assert_eq!(llm["default_model"], DEFAULT_MODEL.id);
    }
}
