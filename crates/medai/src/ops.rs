//! The commands.

use crate::cli::{
    Cli, Command, ConfigCommand, KeysCommand, ModelCommand, ServeArgs, ServeRole, TokenCommand,
    UserCommand,
};
use crate::config;
use anyhow::{bail, Context as _};
use medai_core::audit::{AuditEvent, Outcome};
use medai_core::config::{database_kind, Config, LogFormat};
use medai_core::{Clock as _, Role, SystemClock};
use medai_server::accounts;
use medai_server::bootstrap;
use medai_store::{care_teams, new_id, users, StoreError};
use std::sync::Arc;

/// Runs one command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = match cli.command {
        // text in, text out: no configuration, database or key file involved
        Command::Phi(cmd) => return crate::phi::run(cmd),
        Command::Triage(cmd) => return crate::triage::run(cmd),
        other => other,
    };
    let cfg = config::load(&cli.global)?;
    let traces = match command {
        Command::Serve(_) => crate::telemetry::tracer_provider(&cfg)?,
        _ => None,
    };
    init_logging(&cfg, traces.as_ref());
    match command {
        Command::Serve(args) => {
            let result = match args.role {
                ServeRole::App => serve(cfg, args).await,
                ServeRole::ModelServer => {
                    crate::serve_model::run(cfg, args, shutdown_signal()?).await
                }
            };
            if let Some(provider) = traces {
                crate::telemetry::shutdown(provider).await;
            }
            result
        }
        Command::Init { print_setup_url } => init(cfg, print_setup_url).await,
        Command::Migrate => migrate(cfg).await,
        Command::Config(ConfigCommand::Check) => config_check(&cfg),
        Command::User(cmd) => user(cfg, cmd).await,
        Command::Token(cmd) => token(cfg, cmd).await,
        Command::Phi(cmd) => crate::phi::run(cmd),
        Command::Healthcheck {
            ready,
            timeout_secs,
        } => healthcheck(&cfg, ready, timeout_secs).await,
        Command::Audit(cmd) => crate::audit_ops::run(cfg, cmd).await,
        Command::Keys(KeysCommand::Status) => keys_status(cfg).await,
        Command::Keys(KeysCommand::Rotate {
            blind_index: true,
            batch,
            ..
        }) => keys_rotate_blind_index(cfg, batch).await,
        Command::Keys(KeysCommand::Rotate {
            reencrypt, batch, ..
        }) => keys_rotate(cfg, reencrypt, batch).await,
        Command::Keys(KeysCommand::RetireBlindIndex) => keys_retire_blind_index(cfg).await,
        Command::Keys(KeysCommand::Reencrypt { batch }) => keys_reencrypt(cfg, batch).await,
        Command::Keys(KeysCommand::Rewrap {
            to_provider: None, ..
        }) => keys_rewrap(cfg).await,
        Command::Keys(KeysCommand::Rewrap {
            to_provider: Some(provider),
            to_key_id,
        }) => keys_move(cfg, &provider, to_key_id).await,
        Command::Triage(cmd) => crate::triage::run(cmd),
        Command::Model(ModelCommand::List) => model_list(&cfg).await,
        Command::Model(ModelCommand::Pull(args)) => crate::model_ops::pull(&cfg, *args).await,
        Command::Model(ModelCommand::Verify) => crate::model_ops::verify(&cfg).await,
    }
}

/// Logs on standard error (JSON or text), filtered by `MEDAI_LOG`; with a tracer provider, spans
/// are also exported over OTLP. Inside a request every line carries the request's `trace_id`.
fn init_logging(cfg: &Config, traces: Option<&opentelemetry_sdk::trace::SdkTracerProvider>) {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("MEDAI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let otel = traces.map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("medai")));
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let _ = match cfg.log_format {
        LogFormat::Json => registry
            .with(fmt.json().flatten_event(true).with_current_span(true))
            .try_init(),
        LogFormat::Text => registry.with(fmt).try_init(),
    };
}

#[expect(
    clippy::print_stdout,
    reason = "the setup link is printed on standard output by contract"
)]
fn print_setup(url: &str) {
    println!("No administrator exists yet. Open this single-use link to create one (valid 24 hours by default):");
    println!("{url}");
}

async fn serve(mut cfg: Config, args: ServeArgs) -> anyhow::Result<()> {
    if cfg.llm.is_none() && !args.no_default_model {
        // No model configured: the built-in default through the embedded engine, fetched on
        // first use and re-hashed at every start.
        let record = crate::model_ops::ensure_default(&cfg, args.offline).await?;
        tracing::info!(model = %record.id, "no [llm] configured: answering with the default model");
        cfg.llm = Some(crate::model_ops::embedded_llm_config(&record));
    }
    let clock = Arc::new(SystemClock);
    let prepared = bootstrap::prepare(&cfg, clock.now()).await?;
    if prepared.key_created {
        tracing::info!(path = %bootstrap::key_path(&cfg).display(), "created local key file (mode 0600)");
    }
    if prepared.migrated {
        tracing::info!("initialised a fresh database");
    }
    if let Some(url) = &prepared.setup_url {
        print_setup(url);
    }
    let state = bootstrap::state(cfg, prepared, clock).await?;
    let shutdown = shutdown_signal()?;
    medai_server::serve::run_until(state, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called, not when the
/// future is first polled: a signal that arrives right after "medai serving" is logged must still
/// mean a graceful shutdown, not the default action (an immediate kill).
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term =
            signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
        let mut int =
            signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

#[expect(clippy::print_stdout, reason = "command output")]
async fn init(cfg: Config, print_setup_url: bool) -> anyhow::Result<()> {
    let prepared = bootstrap::prepare(&cfg, SystemClock.now()).await?;
    if print_setup_url {
        match &prepared.setup_url {
            Some(url) => println!("{url}"),
            None => {
                bail!("an administrator already exists; create more users with `medai user add`")
            }
        }
        return Ok(());
    }
    println!("data directory: {}", cfg.data_dir.display());
    println!(
        "key file: {} ({})",
        bootstrap::key_path(&cfg).display(),
        if prepared.key_created {
            "created, mode 0600"
        } else {
            "existing"
        }
    );
    println!(
        "database: {}",
        if prepared.migrated {
            "created and migrated"
        } else {
            "up to date"
        }
    );
    match &prepared.setup_url {
        Some(url) => print_setup(url),
        None => println!("an administrator exists; create more users with `medai user add`"),
    }
    prepared.store.close().await;
    Ok(())
}

#[expect(clippy::print_stdout, reason = "command output")]
async fn migrate(cfg: Config) -> anyhow::Result<()> {
    let store = bootstrap::connect(&cfg).await?;
    let applied = store.migrate().await?;
    if applied.is_empty() {
        println!("database schema is current; nothing to apply");
    } else {
        println!("applied {} migration(s): {applied:?}", applied.len());
    }
    // Patient rows written before encryption at rest are encrypted now, in committed batches
    // (an interrupted run resumes); `serve` does the same at start.
    medai_crypto::MasterKey::load_or_create(&bootstrap::key_path(&cfg))?;
    let provider = bootstrap::key_provider(&cfg).await?;
    let (_, encrypted) = bootstrap::load_phi_keys(&store, &*provider, SystemClock.now()).await?;
    if encrypted > 0 {
        println!("encrypted {encrypted} patient row(s) that were held in plaintext");
    }
    store.close().await;
    Ok(())
}

#[expect(clippy::print_stdout, reason = "command output")]
async fn keys_rotate(cfg: Config, reencrypt: bool, batch: i64) -> anyhow::Result<()> {
    let store = bootstrap::connect_current(&cfg).await?;
    let key = bootstrap::key_provider(&cfg).await?;
    let now = SystemClock.now();
    let mut tx = store.begin().await?;
    let version = medai_store::phi_keys::rotate(&mut tx, &*key, now).await?;
    medai_store::audit::append(
        &mut tx,
        &cli_event(now, "keys.rotate").detail(&serde_json::json!({
            "data_key_version": version,
            "provider": key.name(),
        })),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    println!(
        "data key version {version} added; new writes use it; every stored key re-wrapped by {}",
        key.name()
    );
    store.close().await;
    if reencrypt {
        keys_reencrypt(cfg, batch).await?;
    }
    Ok(())
}

/// Rotates the blind-index key (or resumes an unfinished rotation) and re-indexes every patient
/// row under the newest version in committed batches.
#[expect(clippy::print_stdout, reason = "command output")]
async fn keys_rotate_blind_index(cfg: Config, batch: i64) -> anyhow::Result<()> {
    use medai_store::phi_keys;
    let store = bootstrap::connect_current(&cfg).await?;
    let key = bootstrap::key_provider(&cfg).await?;
    let now = SystemClock.now();
    let mut tx = store.begin().await?;
    let newest = phi_keys::latest_index_version(&mut tx).await?;
    let left = medai_store::patients::rows_under_older_index(&mut tx, newest).await?;
    if left > 0 {
        tx.commit().await.map_err(StoreError::from)?;
        println!("resuming the rotation to blind-index version {newest}: {left} row(s) left");
    } else {
        let version = phi_keys::rotate_blind_index(&mut tx, &*key, now).await?;
        medai_store::audit::append(
            &mut tx,
            &cli_event(now, "keys.rotate_blind_index").detail(&serde_json::json!({
                "blind_index_version": version,
                "provider": key.name(),
            })),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        println!("blind-index key version {version} added; new writes index under it, lookups match every version until the old one is retired");
    }
    let mut conn = store.pool().acquire().await.map_err(StoreError::from)?;
    let phi = phi_keys::load_or_init(&mut conn, &*key, now).await?;
    drop(conn);
    let newest = phi.index_version();
    let (mut total, mut stalls) = (0u64, 0u32);
    loop {
        let mut tx = store.begin().await?;
        let n = medai_store::patients::reindex(&mut tx, &phi, batch).await?;
        let left = medai_store::patients::rows_under_older_index(&mut tx, newest).await?;
        tx.commit().await.map_err(StoreError::from)?;
        total += n;
        if left == 0 {
            break;
        }
        stalls = if n == 0 { stalls + 1 } else { 0 };
        if stalls >= REENCRYPT_STALLS {
            bail!("{left} row(s) kept changing under re-indexing; run `medai keys rotate --blind-index` again to resume");
        }
        println!("re-indexed {total}; {left} left");
    }
    let mut conn = store.pool().acquire().await.map_err(StoreError::from)?;
    medai_store::audit::append(
        &mut conn,
        &cli_event(SystemClock.now(), "keys.reindex")
            .detail(&serde_json::json!({ "blind_index_version": newest, "rows": total })),
    )
    .await?;
    drop(conn);
    store.close().await;
    println!("re-indexed {total} row(s); every patient is indexed under blind-index version {newest}; `medai keys retire-blind-index` removes the older version(s)");
    Ok(())
}

#[expect(clippy::print_stdout, reason = "command output")]
async fn keys_retire_blind_index(cfg: Config) -> anyhow::Result<()> {
    let store = bootstrap::connect_current(&cfg).await?;
    let mut tx = store.begin().await?;
    let retired = medai_store::phi_keys::retire_blind_index(&mut tx).await?;
    medai_store::audit::append(
        &mut tx,
        &cli_event(SystemClock.now(), "keys.retire_blind_index")
            .detail(&serde_json::json!({ "retired_versions": retired })),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    store.close().await;
    println!("retired blind-index key version(s) {retired:?}");
    Ok(())
}

/// Consecutive batches that may make no progress (rows changed under them by the server) before
/// re-encryption gives up and asks to be run again.
const REENCRYPT_STALLS: u32 = 100;

#[expect(clippy::print_stdout, reason = "command output")]
async fn keys_reencrypt(cfg: Config, batch: i64) -> anyhow::Result<()> {
    let store = bootstrap::connect_current(&cfg).await?;
    let key = bootstrap::key_provider(&cfg).await?;
    let now = SystemClock.now();
    let mut conn = store.pool().acquire().await.map_err(StoreError::from)?;
    let phi = medai_store::phi_keys::load_or_init(&mut conn, &*key, now).await?;
    drop(conn);
    let current = phi.current_version().context("no data key is loaded")?;
    let (mut total, mut stalls) = (0u64, 0u32);
    loop {
        let mut tx = store.begin().await?;
        // Patients, then the assistant's texts (titles, messages, feedback comments, notes).
        let n = medai_store::patients::reencrypt(&mut tx, &phi, batch).await?
            + medai_store::conversations::reencrypt(&mut tx, &phi, batch).await?;
        let left = medai_store::patients::rows_under_older_keys(&mut tx, current).await?
            + medai_store::conversations::rows_under_older_keys(&mut tx, current).await?;
        tx.commit().await.map_err(StoreError::from)?;
        total += n;
        if left == 0 {
            break;
        }
        stalls = if n == 0 { stalls + 1 } else { 0 };
        if stalls >= REENCRYPT_STALLS {
            bail!(
                "{left} row(s) kept changing under re-encryption; run `medai keys reencrypt` again"
            );
        }
        println!("re-encrypted {total}; {left} left");
    }
    let mut conn = store.pool().acquire().await.map_err(StoreError::from)?;
    medai_store::audit::append(
        &mut conn,
        &cli_event(SystemClock.now(), "keys.reencrypt")
            .detail(&serde_json::json!({ "data_key_version": current, "rows": total })),
    )
    .await?;
    drop(conn);
    store.close().await;
    println!("re-encrypted {total} row(s); every PHI row uses data key version {current}");
    Ok(())
}

#[expect(clippy::print_stdout, reason = "command output")]
async fn keys_status(cfg: Config) -> anyhow::Result<()> {
    let store = bootstrap::connect_current(&cfg).await?;
    let key = bootstrap::key_provider(&cfg).await?;
    let mut conn = store.pool().acquire().await.map_err(StoreError::from)?;
    let keys = medai_store::phi_keys::status(&mut conn, &*key).await?;
    let plaintext = medai_store::phi_keys::plaintext_patient_rows(&mut conn).await?;
    drop(conn);
    store.close().await;
    let now = SystemClock.now();
    let current = keys
        .iter()
        .filter(|k| k.purpose == "data")
        .map(|k| k.version)
        .max();
    println!("configured provider: {}", key.name());
    println!(
        "purpose      version  provider         created               age_days  unwraps  protects"
    );
    for k in &keys {
        let created = time::OffsetDateTime::from_unix_timestamp(k.created_at)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| k.created_at.to_string());
        let protects = if k.purpose == "data" {
            format!("{} patient rows", k.patient_rows)
        } else {
            format!(
                "MRN, date-of-birth and name indexes of {} patients",
                k.patient_rows
            )
        };
        let note = if k.purpose == "data" && Some(k.version) == current {
            "  (new writes)"
        } else {
            ""
        };
        let key = k
            .key_id
            .as_deref()
            .map(|id| format!("  [key {id}]"))
            .unwrap_or_default();
        println!(
            "{:<12} {:<8} {:<16} {:<21} {:<9} {:<8} {}{}{}",
            k.purpose,
            k.version,
            k.provider,
            created,
            (now - k.created_at).max(0) / 86_400,
            if k.unwraps { "yes" } else { "NO" },
            protects,
            note,
            key
        );
    }
    if plaintext > 0 {
        println!("{plaintext} patient row(s) are still in plaintext; run `medai migrate`");
    }
    if keys.iter().any(|k| k.provider != key.name()) {
        println!(
            "some keys are wrapped by another provider than {}; `medai keys rewrap` moves them",
            key.name()
        );
    } else if keys
        .iter()
        .any(|k| k.key_id.is_some() && k.key_id.as_deref() != key.key_id())
    {
        println!(
            "some keys are wrapped under another {} key than the configured one; `medai keys rewrap` moves them",
            key.name()
        );
    }
    if keys.iter().any(|k| !k.unwraps) {
        bail!(
            "the configured key provider ({}) does not unwrap every PHI key; check [keys] and \
             that this is the installation's master.key",
            key.name()
        );
    }
    Ok(())
}

#[expect(clippy::print_stdout, reason = "command output")]
async fn keys_rewrap(cfg: Config) -> anyhow::Result<()> {
    let store = bootstrap::connect_current(&cfg).await?;
    let key = bootstrap::key_provider(&cfg).await?;
    let now = SystemClock.now();
    let mut tx = store.begin().await?;
    let (count, _) = medai_store::phi_keys::rewrap(&mut tx, &*key).await?;
    medai_store::audit::append(
        &mut tx,
        &cli_event(now, "keys.rewrap").detail(&serde_json::json!({
            "keys": count,
            "provider": key.name(),
        })),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    store.close().await;
    println!("{count} PHI key(s) re-wrapped by {}", key.name());
    Ok(())
}

/// The `[keys]` settings of the move target: the configured ones with the provider and key
/// replaced.
fn target_keys(
    cfg: &Config,
    provider: &str,
    key_id: Option<String>,
) -> anyhow::Result<medai_core::config::KeysConfig> {
    use medai_core::config::KeyProviderKind;
    let kind = match provider {
        "local-file" => KeyProviderKind::LocalFile,
        "aws-kms" => KeyProviderKind::AwsKms,
        "gcp-kms" => KeyProviderKind::GcpKms,
        "azure-key-vault" => KeyProviderKind::AzureKeyVault,
        other => bail!("--to-provider {other:?} is not a key provider"),
    };
    let mut keys = cfg.keys.clone();
    keys.provider = kind;
    match (kind, key_id) {
        (KeyProviderKind::LocalFile, None) => {}
        (KeyProviderKind::LocalFile, Some(_)) => {
            bail!("--to-key-id does not apply to --to-provider local-file")
        }
        (_, None) => bail!("--to-provider {provider} needs --to-key-id"),
        (KeyProviderKind::AwsKms, Some(id)) => {
            keys.aws.get_or_insert_with(Default::default).key_id = id
        }
        (KeyProviderKind::GcpKms, Some(id)) => {
            keys.gcp.get_or_insert_with(Default::default).key_name = id
        }
        (KeyProviderKind::AzureKeyVault, Some(id)) => {
            keys.azure.get_or_insert_with(Default::default).key_name = id
        }
    }
    let mut check = cfg.clone();
    check.keys = keys.clone();
    check
        .validate()
        .context("--to-provider/--to-key-id (with the rest of [keys])")?;
    Ok(keys)
}

/// Moves every PHI key to another provider or KMS key, one committed and audited key at a time.
#[expect(clippy::print_stdout, reason = "command output")]
async fn keys_move(cfg: Config, provider: &str, key_id: Option<String>) -> anyhow::Result<()> {
    let target_cfg = target_keys(&cfg, provider, key_id)?;
    let store = bootstrap::connect_current(&cfg).await?;
    let source = bootstrap::key_provider(&cfg).await?;
    let local = medai_crypto::MasterKey::load(&bootstrap::key_path(&cfg))?;
    let target = medai_kms::ConfiguredProvider::from_config(&target_cfg, local).await?;
    use medai_crypto::envelope::KeyProvider as _;
    let to_key = target.key_id().map(str::to_owned);
    let mut moved = 0usize;
    // Each pass moves one key; the bound only guards against a store that never converges.
    for _ in 0..100_000 {
        let mut tx = store.begin().await?;
        let Some(m) = medai_store::phi_keys::move_next(&mut tx, &*source, &target).await? else {
            break;
        };
        medai_store::audit::append(
            &mut tx,
            &cli_event(SystemClock.now(), "keys.move").detail(&serde_json::json!({
                "purpose": m.purpose,
                "version": m.version,
                "from_provider": m.from.0,
                "from_key_id": m.from.1,
                "to_provider": target.name(),
                "to_key_id": to_key,
            })),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        moved += 1;
    }
    store.close().await;
    let to = match &to_key {
        Some(k) => format!("{} key {k}", target.name()),
        None => target.name().to_owned(),
    };
    println!("{moved} PHI key(s) moved to {to}; every key is now wrapped there");
    if target.name() != source.name() || to_key.as_deref() != source.key_id() {
        println!("next: configure keys.provider and its key id to match (the server reads keys under any recorded key of the same provider meanwhile), then the old key can be disabled");
    }
    Ok(())
}

#[expect(clippy::print_stdout, reason = "command output")]
async fn model_list(cfg: &Config) -> anyhow::Result<()> {
    let metrics = medai_server::metrics::Metrics::new();
    let assistant = medai_server::assistant::Assistant::new(cfg.llm.as_ref(), &metrics.llm)?;
    let registered = crate::model_ops::print_registered(cfg)?;
    let Some(registry) = assistant.registry else {
        if registered > 0 {
            return Ok(());
        }
        bail!("no model is configured: add [llm] with default_model and [[llm.models]] to medai.toml (see docs/assistant.md), or pull one with `medai model pull`; with neither, `medai serve` fetches the default model {}", crate::models::default_model::DEFAULT_MODEL.repo);
    };
    if registered > 0 {
        println!();
    }
    let health = registry.health().await;
    let mut unhealthy = 0;
    println!("id\tprovider\tendpoint\tupstream model\tcontext\tdefault\tfailover\thealth");
    for m in registry.list() {
        let d = &m.description;
        let h = health.iter().find(|(id, _)| *id == d.id).map(|(_, h)| h);
        let status = match h {
            Some(h) if h.ok => format!("ok ({} ms)", h.latency.as_millis()),
            Some(h) => {
                unhealthy += 1;
                format!("DOWN ({})", h.detail.as_deref().unwrap_or("no detail"))
            }
            None => {
                unhealthy += 1;
                "not probed".to_owned()
            }
        };
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{status}",
            d.id,
            d.provider.as_str(),
            d.endpoint,
            d.upstream_model,
            d.context_window,
            if m.is_default { "yes" } else { "" },
            m.failover.as_deref().unwrap_or("-"),
        );
    }
    if unhealthy > 0 {
        bail!("{unhealthy} model(s) unhealthy");
    }
    Ok(())
}

#[expect(clippy::print_stdout, reason = "command output")]
fn config_check(cfg: &Config) -> anyhow::Result<()> {
    if let Some(llm) = &cfg.llm {
        medai_server::assistant::check_llm_config(llm)?;
    }
    let text = toml::to_string_pretty(cfg).context("cannot render the configuration")?;
    let db = match database_kind(&cfg.effective_database_url()) {
        Some(medai_core::config::DatabaseKind::Postgres) => "postgresql",
        _ => "sqlite",
    };
    println!(
        "# configuration is valid (secrets masked); database: {db}; sessions: {}",
        if cfg.redis_url.is_some() {
            "redis"
        } else {
            "in process"
        }
    );
    println!("{text}");
    Ok(())
}

pub(crate) fn cli_event(now: i64, action: &str) -> AuditEvent {
    let os_user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    AuditEvent::new(now, action, Outcome::Success)
        .actor("cli", "operator_cli")
        .detail(&serde_json::json!({ "os_user": os_user }))
}

#[expect(clippy::print_stdout, reason = "command output")]
async fn user(cfg: Config, cmd: UserCommand) -> anyhow::Result<()> {
    let store = bootstrap::connect_current(&cfg).await?;
    let now = SystemClock.now();
    let mut tx = store.begin().await?;
    match cmd {
        UserCommand::Add {
            username,
            role,
            care_teams: teams,
        } => {
            let role: Role = role.parse()?;
            if !teams.is_empty() && !role.is_care_team_scoped() {
                bail!("only clinicians and nurses join care teams");
            }
            let created = accounts::create_user(
                &mut tx,
                &cfg,
                &cli_event(now, "user.create"),
                &username,
                role,
                now,
            )
            .await?;
            for name in &teams {
                let name = name.trim();
                if name.is_empty() || name.chars().count() > 100 {
                    bail!("care team names are 1 to 100 characters");
                }
                let team = match care_teams::find(&mut tx, name).await? {
                    Some(t) => t,
                    None => {
                        let id = new_id();
                        care_teams::insert(&mut tx, &id, name, now).await?;
                        medai_store::audit::append(
                            &mut tx,
                            &cli_event(now, "care_team.create")
                                .detail(&serde_json::json!({ "care_team_id": id })),
                        )
                        .await?;
                        care_teams::CareTeam {
                            id,
                            name: name.to_owned(),
                        }
                    }
                };
                care_teams::add_member(&mut tx, &team.id, &created.user_id).await?;
                medai_store::audit::append(
                    &mut tx,
                    &cli_event(now, "care_team.add_member")
                        .target_user(&created.user_id)
                        .detail(&serde_json::json!({ "care_team_id": team.id })),
                )
                .await?;
            }
            tx.commit().await.map_err(StoreError::from)?;
            println!(
                "created user {} ({}) with id {}",
                username.trim().to_lowercase(),
                role,
                created.user_id
            );
            match created.enrolment_url {
                Some(url) => {
                    println!(
                        "Give the user this single-use enrolment link to set a password and TOTP:"
                    );
                    println!("{url}");
                }
                None => println!(
                    "service account: create a token with `medai token create --user {}`",
                    username.trim().to_lowercase()
                ),
            }
        }
        UserCommand::List => {
            let all = users::list(&mut tx).await?;
            println!(
                "{:<38} {:<24} {:<20} {:<9} MFA",
                "ID", "USERNAME", "ROLE", "STATE"
            );
            for u in all {
                println!(
                    "{:<38} {:<24} {:<20} {:<9} {}",
                    u.id,
                    u.username,
                    u.role.as_str(),
                    if u.disabled_at.is_some() {
                        "disabled"
                    } else {
                        "active"
                    },
                    if u.totp_secret.is_some() {
                        "enrolled"
                    } else {
                        "pending"
                    }
                );
            }
            tx.commit().await.map_err(StoreError::from)?;
        }
        UserCommand::Disable { user } => {
            let u = accounts::find_user(&mut tx, &user).await?;
            accounts::disable_user(&mut tx, &cli_event(now, "user.disable"), &u.id, now).await?;
            tx.commit().await.map_err(StoreError::from)?;
            println!("disabled {} and ended their sessions", u.username);
        }
        UserCommand::ResetMfa { user } => {
            let u = accounts::find_user(&mut tx, &user).await?;
            let url =
                accounts::reset_mfa(&mut tx, &cfg, &cli_event(now, "user.reset_mfa"), &u.id, now)
                    .await?;
            tx.commit().await.map_err(StoreError::from)?;
            println!(
                "reset MFA of {}; their sessions are ended. New single-use enrolment link:",
                u.username
            );
            println!("{url}");
        }
    }
    store.close().await;
    Ok(())
}

#[expect(clippy::print_stdout, reason = "command output")]
async fn token(cfg: Config, cmd: TokenCommand) -> anyhow::Result<()> {
    let store = bootstrap::connect_current(&cfg).await?;
    let now = SystemClock.now();
    let mut tx = store.begin().await?;
    match cmd {
        TokenCommand::Create {
            user,
            name,
            days,
            scopes,
        } => {
            let u = accounts::find_user(&mut tx, &user).await?;
            let (t, secret) = accounts::create_token(
                &mut tx,
                &cli_event(now, "token.create"),
                &u.id,
                &name,
                days,
                &scopes,
                now,
            )
            .await?;
            tx.commit().await.map_err(StoreError::from)?;
            println!(
                "token {} for {} expires in {days} days. It is shown only now:",
                t.id, u.username
            );
            println!("{secret}");
        }
        TokenCommand::Revoke { id } => {
            accounts::revoke_token(&mut tx, &cli_event(now, "token.revoke"), &id, now).await?;
            tx.commit().await.map_err(StoreError::from)?;
            println!("revoked token {id}");
        }
    }
    store.close().await;
    Ok(())
}

#[expect(clippy::print_stdout, reason = "command output")]
async fn healthcheck(cfg: &Config, ready: bool, timeout_secs: u64) -> anyhow::Result<()> {
    let probe = crate::healthcheck::Probe {
        ready,
        timeout: std::time::Duration::from_secs(timeout_secs),
    };
    println!("{}", crate::healthcheck::run(cfg, probe).await?);
    Ok(())
}
