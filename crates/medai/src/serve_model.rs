//! `medai serve --role model-server`: the embedded engine behind medai's own OpenAI-compatible
//! server (crate `medai-model-server`). No database, no key file: only the model registry and
//! the Hugging Face cache. The listeners come up at once (`/healthz` answers, `/readyz` says
//! "loading"); checking the model's hashes (or fetching the default model) and loading it run in
//! the background, and a failure there stops the process with the reason.

use crate::cli::ServeArgs;
use crate::model_ops;
use anyhow::{bail, Context as _};
use medai_core::config::Config;
use medai_engine::{Engine, EngineConfig};
use medai_model_server::{BearerToken, LoadStats, ServerState};
use std::sync::Arc;

/// The variable holding the token when `--token-file` is not given.
pub const TOKEN_VAR: &str = "MEDAI_MODEL_SERVER_TOKEN";

fn token(args: &ServeArgs) -> anyhow::Result<BearerToken> {
    let raw = match &args.token_file {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read the token file {}", p.display()))?,
        None => match std::env::var(TOKEN_VAR) {
            Ok(t) if !t.trim().is_empty() => t,
            _ => bail!(
                "the model server requires a bearer token: set {TOKEN_VAR} or pass --token-file FILE (e.g. `openssl rand -hex 32 > token`); clients send it as `Authorization: Bearer ...`"
            ),
        },
    };
    Ok(BearerToken::new(&raw)?)
}

/// Runs the model server until SIGTERM/SIGINT or a failed load.
pub async fn run(
    cfg: Config,
    args: ServeArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let token = token(&args)?;
    if let Some(id) = &args.model {
        crate::models::spec::model_id(id).map_err(anyhow::Error::msg)?;
    }
    let model_id = args
        .model
        .clone()
        .unwrap_or_else(|| crate::models::default_model::DEFAULT_MODEL.id.to_owned());
    let state = ServerState::new(model_id.clone(), token, Arc::new(medai_core::SystemClock));
    let bind = |addr| {
        std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))
    };
    let public = bind(cfg.listen)?;
    let metrics = bind(cfg.metrics_listen)?;
    let tls = match &cfg.tls {
        Some(t) => Some(Arc::new(medai_server::serve::rustls_config(t)?)),
        None => None,
    };
    let running = medai_model_server::start(state.clone(), public, metrics, tls)?;
    tracing::info!(addr = %running.addr, metrics_addr = %running.metrics_addr, model = %model_id, "medai model server listening; loading the model");

    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<anyhow::Error>();
    let loader_state = state.clone();
    let loader = tokio::spawn(async move {
        match load(&cfg, &args, &model_id).await {
            Ok(engine) => {
                let engine = Arc::new(engine);
                let stats_engine = engine.clone();
                let stats = move || {
                    let s = stats_engine.stats();
                    LoadStats {
                        queue_depth: s.queue_depth,
                        queue_capacity: s.queue_capacity,
                        running: s.running,
                        max_running: s.max_running,
                        cached_prompt_tokens: s.cached_prompt_tokens,
                    }
                };
                loader_state.set_loaded(engine, Arc::new(stats));
                tracing::info!(model = %model_id, "model loaded; ready");
            }
            Err(e) => {
                loader_state.set_failed(e.to_string());
                let _ = failed_tx.send(e);
            }
        }
    });
    let grace = std::time::Duration::from_secs(30);
    let outcome = tokio::select! {
        _ = shutdown => Ok(()),
        Ok(e) = failed_rx => Err(e),
    };
    loader.abort();
    tracing::info!("model server stopping: draining in-flight answers");
    running.shutdown(grace);
    running.wait().await?;
    outcome
}

async fn load(cfg: &Config, args: &ServeArgs, model_id: &str) -> anyhow::Result<Engine> {
    let record = match &args.model {
        Some(id) => model_ops::registered(cfg, id).await?,
        None => model_ops::ensure_default(cfg, args.offline).await?,
    };
    let mut config = EngineConfig::new(
        record.id.clone(),
        record.weights.path.clone(),
        record.tokenizer.path.clone(),
    );
    // medai's assistant is this server's main client: its system prompt is warmed up and kept.
    config.warmup_system_prompt = Some(medai_server::assistant::system_prompt_prefix());
    let started = std::time::Instant::now();
    let engine = tokio::task::spawn_blocking(move || Engine::load(config))
        .await
        .context("the loader thread failed")?
        .with_context(|| format!("cannot load model {model_id}"))?;
    tracing::info!(
        model = %model_id,
        load_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "engine loaded"
    );
    Ok(engine)
}
