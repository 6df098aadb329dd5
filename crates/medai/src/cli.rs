//! Command-line interface (clap derive). Every command's help ends with an example.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// medai: self-hosted medical AI assistant, and the operations tools that run it.
#[derive(Parser, Debug)]
#[command(
    name = "medai",
    version,
    about,
    propagate_version = true,
    after_help = "Configuration comes from medai.toml (or --config / MEDAI_CONFIG), then MEDAI_* environment\nvariables (nested keys with __, e.g. MEDAI_AUTH__SESSION_IDLE_TIMEOUT=10m), then flags.\n\nExample:\n  medai serve --data-dir /var/lib/medai"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts; they override the file and the environment.
#[derive(Args, Debug, Clone, Default)]
pub struct GlobalArgs {
    /// Path of medai.toml (default: ./medai.toml if it exists).
    #[arg(long, global = true, env = "MEDAI_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (SQLite database, key file); config key `data_dir`.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL, sqlite:… or postgres://…; config key `database_url`.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Redis URL for shared sessions and throttling; config key `redis_url`.
    #[arg(long, global = true, value_name = "URL")]
    pub redis_url: Option<String>,
    /// Public listen address; config key `listen`.
    #[arg(long, global = true, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Internal /metrics listen address; config key `metrics_listen`.
    #[arg(long, global = true, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (initialises an empty data directory first).
    #[command(after_help = "Example:\n  medai serve --listen 127.0.0.1:8080")]
    Serve,
    /// Initialise the data directory, key file and database, and print the first administrator's
    /// setup link, without serving.
    #[command(after_help = "Example:\n  medai init --print-setup-url")]
    Init {
        /// Print only the setup URL (fails if an administrator already exists).
        #[arg(long)]
        print_setup_url: bool,
    },
    /// Apply pending database migrations.
    #[command(
        after_help = "Example:\n  MEDAI_DATABASE_URL=postgres://medai@db/medai medai migrate"
    )]
    Migrate,
    /// Inspect configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage service API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate and print the resolved configuration with secrets masked.
    #[command(after_help = "Example:\n  medai config check --config /etc/medai/medai.toml")]
    Check,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user; interactive users get a single-use enrolment link to set their password
    /// and TOTP.
    #[command(
        after_help = "Example:\n  medai user add alice --role clinician --care-team cardiology"
    )]
    Add {
        /// Username (3–64 lowercase letters, digits, '.', '_', '-').
        username: String,
        /// clinician, nurse, admin, compliance_officer or service.
        #[arg(long)]
        role: String,
        /// Care team to join (created if it does not exist); repeat for several.
        #[arg(long = "care-team", value_name = "NAME")]
        care_teams: Vec<String>,
    },
    /// List users.
    #[command(after_help = "Example:\n  medai user list")]
    List,
    /// Disable a user and end their sessions.
    #[command(after_help = "Example:\n  medai user disable alice")]
    Disable {
        /// Username or id.
        user: String,
    },
    /// Remove a user's TOTP and recovery codes, end their sessions, and print a new enrolment link.
    #[command(after_help = "Example:\n  medai user reset-mfa alice")]
    ResetMfa {
        /// Username or id.
        user: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a bearer token for a service account; the token is printed once.
    #[command(
        after_help = "Example:\n  medai token create --user ehr-feed --name 'EHR ADT feed' --days 90"
    )]
    Create {
        /// The service account (username or id).
        #[arg(long)]
        user: String,
        /// What the token is for.
        #[arg(long)]
        name: String,
        /// Lifetime in days (1–366).
        #[arg(long, default_value_t = 90)]
        days: u32,
    },
    /// Revoke a token.
    #[command(after_help = "Example:\n  medai token revoke 0193a1b2-...")]
    Revoke {
        /// Token id.
        id: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_has_an_example() {
        fn walk(cmd: &clap::Command, path: &str) {
            for sub in cmd.get_subcommands() {
                let p = format!("{path} {}", sub.get_name());
                if sub.has_subcommands() {
                    walk(sub, &p);
                } else {
                    let help = sub
                        .get_after_help()
                        .map(|h| h.to_string())
                        .unwrap_or_default();
                    assert!(help.contains("Example:"), "{p} has no example");
                }
            }
        }
        walk(&Cli::command(), "medai");
    }

    #[test]
    fn parses_user_add() {
        let c = Cli::try_parse_from([
            "medai",
            "user",
            "add",
            "alice",
            "--role",
            "clinician",
            "--care-team",
            "a",
            "--care-team",
            "b",
        ])
        .unwrap();
        match c.command {
            Command::User(UserCommand::Add {
                username,
                role,
                care_teams,
            }) => {
                assert_eq!(username, "alice");
                assert_eq!(role, "clinician");
                assert_eq!(care_teams, vec!["a", "b"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["medai", "serve", "--listen", "not-an-addr"]).is_err());
    }
}
