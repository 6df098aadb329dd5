//! The commands.

use crate::cli::{Cli, Command, ConfigCommand, TokenCommand, UserCommand};
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
    let cfg = config::load(&cli.global)?;
    init_logging(&cfg);
    match cli.command {
        Command::Serve => serve(cfg).await,
        Command::Init { print_setup_url } => init(cfg, print_setup_url).await,
        Command::Migrate => migrate(cfg).await,
        Command::Config(ConfigCommand::Check) => config_check(&cfg),
        Command::User(cmd) => user(cfg, cmd).await,
        Command::Token(cmd) => token(cfg, cmd).await,
    }
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MEDAI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match cfg.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => builder.try_init(),
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

async fn serve(cfg: Config) -> anyhow::Result<()> {
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
    medai_server::serve::run_until(state, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
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
    store.close().await;
    Ok(())
}

#[expect(clippy::print_stdout, reason = "command output")]
fn config_check(cfg: &Config) -> anyhow::Result<()> {
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

fn cli_event(now: i64, action: &str) -> AuditEvent {
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
        TokenCommand::Create { user, name, days } => {
            let u = accounts::find_user(&mut tx, &user).await?;
            let (t, secret) = accounts::create_token(
                &mut tx,
                &cli_event(now, "token.create"),
                &u.id,
                &name,
                days,
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
