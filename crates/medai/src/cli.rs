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
    /// Run the server (initialises an empty data directory first). With no `[llm]` configured,
    /// the assistant answers with the built-in default model through the embedded engine,
    /// downloaded once from the Hugging Face Hub and checked against its pinned SHA-256.
    #[command(
        after_help = "Roles:\n  app           the assistant: web UI, API, database (default)\n  model-server  only an OpenAI-compatible model server for the embedded engine\n                (/v1/chat/completions, /v1/models, /healthz, /readyz), bearer token\n                required (MEDAI_MODEL_SERVER_TOKEN or --token-file); no database\n\nExamples:\n  medai serve --listen 127.0.0.1:8080\n  MEDAI_MODEL_SERVER_TOKEN=$(cat /run/secrets/model-token) medai serve --role model-server --listen 0.0.0.0:8000"
    )]
    Serve(ServeArgs),
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
    /// Find and remove PHI in text, and measure the detector (no configuration needed).
    #[command(subcommand)]
    Phi(PhiCommand),
    /// Check that the server at the configured listen address is healthy (for container health
    /// checks: no shell or curl needed). Exits 0 when healthy, 1 with the reason otherwise.
    #[command(
        after_help = "Probes /healthz (or /readyz with --ready) over plain HTTP, or over TLS when tls.* is\nconfigured; 0.0.0.0 and :: are probed on loopback.\n\nExample:\n  medai healthcheck --ready --timeout-secs 3"
    )]
    Healthcheck {
        /// Probe /readyz (database, schema and session store reachable) instead of /healthz.
        #[arg(long)]
        ready: bool,
        /// Seconds to wait for the answer (1–300).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
        timeout_secs: u64,
    },
    /// The tamper-evident audit log: verify, prove, export, checkpoint.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The keys that encrypt PHI at rest.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Red-flag safety triage of clinical text against the versioned rule set, and its scores
    /// on labelled cases (no configuration needed).
    #[command(subcommand)]
    Triage(TriageCommand),
    /// The models the assistant answers with (`[llm]` in medai.toml).
    #[command(subcommand)]
    Model(ModelCommand),
}

/// What `medai serve` runs.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServeRole {
    /// The assistant (web UI, API, database).
    #[default]
    App,
    /// Only the OpenAI-compatible model server for the embedded engine.
    ModelServer,
}

/// Options of `medai serve`.
#[derive(Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// app or model-server.
    #[arg(long, value_enum, default_value_t = ServeRole::App)]
    pub role: ServeRole,
    /// With no `[llm]` configured, start without any model (assistant answers are 503) instead
    /// of fetching and loading the default model.
    #[arg(long, env = "MEDAI_NO_DEFAULT_MODEL")]
    pub no_default_model: bool,
    /// model-server: the registered model to serve (see `medai model list`; default: the
    /// default model, fetched on first use).
    #[arg(long, value_name = "ID")]
    pub model: Option<String>,
    /// model-server: a file holding the bearer token clients must send (instead of
    /// MEDAI_MODEL_SERVER_TOKEN); 32 to 512 printable characters.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Never download: use only models already in the cache (as HF_HUB_OFFLINE=1).
    #[arg(long)]
    pub offline: bool,
}

#[derive(Subcommand, Debug)]
pub enum TriageCommand {
    /// Triage each input line: reads JSON lines {"id", "text"} and writes one JSON line
    /// {"id", "flagged", "rules": [rule ids]} per input, in order. A line that is not such an
    /// object is reported on standard error and as {"line", "error"} on standard output, and the
    /// command exits non-zero.
    #[command(
        after_help = "Example:\n  echo '{\"id\": 1, \"text\": \"c/o chest pain and diaphoresis x 1 h\"}' | medai triage check\n  medai triage check --rules my-rules.toml --input questions.jsonl > flags.jsonl"
    )]
    Check {
        /// A rule file to use instead of the built-in rule set.
        #[arg(long, value_name = "FILE")]
        rules: Option<PathBuf>,
        /// Input file, or - for standard input.
        #[arg(long, default_value = "-", value_name = "FILE")]
        input: PathBuf,
    },
    /// Score the rule set on labelled cases (JSON lines {"id", "text", "expect": [rule ids]}):
    /// TP/FP/FN/TN, sensitivity and specificity per rule and overall, and the misclassified
    /// ids. Exits non-zero when overall sensitivity or specificity is below the goal.
    #[command(
        after_help = "Without --cases, scores the development cases built into medai.\n\nExample:\n  medai triage eval\n  medai triage eval --cases crates/medai-safety/data/triage-heldout.jsonl --min-sensitivity 0.80 --min-specificity 0.90"
    )]
    Eval {
        /// A rule file to use instead of the built-in rule set.
        #[arg(long, value_name = "FILE")]
        rules: Option<PathBuf>,
        /// The labelled case file (default: the built-in development cases).
        #[arg(long, value_name = "FILE")]
        cases: Option<PathBuf>,
        /// The lowest acceptable overall sensitivity (0–1).
        #[arg(long, default_value_t = 0.95, value_parser = fraction)]
        min_sensitivity: f64,
        /// The lowest acceptable overall specificity (0–1).
        #[arg(long, default_value_t = 0.90, value_parser = fraction)]
        min_specificity: f64,
        /// Print one JSON object {"rule_set", "cases", "overall", "by_rule", "misses"} instead of
        /// the table.
        #[arg(long)]
        json: bool,
    },
}

fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number between 0 and 1")),
    }
}

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// List the configured models (provider, endpoint, upstream model, context window, default,
    /// failover) and probe each one's health. Exits 1 when any model is unhealthy.
    #[command(
        after_help = "Example:\n  medai model list\n\nOutput columns: id, provider, endpoint, upstream model, context window,\ndefault, failover, health (probe latency or the reason it failed)."
    )]
    List,
    /// Download GGUF weights and their tokenizer from the Hugging Face Hub (progress bar on a
    /// terminal), check the SHA-256 of each, and record the model in the registry
    /// (`<data_dir>/models/registry.json`). A file whose hash differs is removed and not
    /// recorded. Honours HF_HOME (cache `$HF_HOME/hub`, else `<data_dir>/models/hub`), HF_TOKEN,
    /// HF_ENDPOINT and HF_HUB_OFFLINE.
    #[command(
        after_help = "Example:\n  medai model pull Qwen/Qwen2.5-0.5B-Instruct-GGUF qwen2.5-0.5b-instruct-q8_0.gguf \\\n    --revision 9217f5db79a29953eb74d5343926648285ec7e67 \\\n    --sha256 ca59ca7f13d0e15a8cfa77bd17e65d24f6844b554a7b6c12e07a5f89ff76844e \\\n    --tokenizer-repo Qwen/Qwen2.5-0.5B-Instruct --tokenizer-revision 7ae557604adf67be50417f59c2c2f167def9a775 \\\n    --tokenizer-sha256 c0382117ea329cdf097041132f6d735924b697924d6f6fc3945713e96ce87539"
    )]
    Pull(Box<PullArgs>),
    /// Re-hash every registered model's weights and tokenizer; prints each file's result and
    /// exits non-zero if any is missing or differs from its recorded SHA-256.
    #[command(after_help = "Example:\n  medai model verify")]
    Verify,
}

/// Options of `medai model pull`.
#[derive(Args, Debug, Clone)]
pub struct PullArgs {
    /// Hub repository of the weights (namespace/name).
    #[arg(value_parser = crate::models::spec::repo_id)]
    pub repo: String,
    /// The GGUF file in that repository.
    #[arg(value_parser = |s: &str| crate::models::spec::repo_file(s, ".gguf"))]
    pub file: String,
    /// Commit hash (recommended) or branch/tag of the weights.
    #[arg(long, value_parser = crate::models::spec::revision)]
    pub revision: String,
    /// Expected SHA-256 of the weights (64 hex digits).
    #[arg(long, value_parser = crate::models::spec::sha256)]
    pub sha256: String,
    /// Repository of the tokenizer (default: the weights' repository).
    #[arg(long, value_parser = crate::models::spec::repo_id)]
    pub tokenizer_repo: Option<String>,
    /// The tokenizer file.
    #[arg(long, default_value = "tokenizer.json", value_parser = |s: &str| crate::models::spec::repo_file(s, ".json"))]
    pub tokenizer_file: String,
    /// Revision of the tokenizer (default: --revision when the tokenizer comes from the same
    /// repository; required otherwise).
    #[arg(long, value_parser = crate::models::spec::revision)]
    pub tokenizer_revision: Option<String>,
    /// Expected SHA-256 of the tokenizer; without it, the hash of the first download is recorded
    /// (and checked by `medai model verify` from then on).
    #[arg(long, value_parser = crate::models::spec::sha256)]
    pub tokenizer_sha256: Option<String>,
    /// Registry id (default: the file name without .gguf, lowercased).
    #[arg(long, value_parser = crate::models::spec::model_id)]
    pub id: Option<String>,
    /// Never download: take the files from the cache only (as HF_HUB_OFFLINE=1).
    #[arg(long)]
    pub offline: bool,
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// List the PHI keys: purpose, version, the provider that wrapped each, age, the patient rows
    /// each protects, and whether the configured provider (`[keys]`) unwraps it.
    #[command(after_help = "Example:\n  medai keys status")]
    Status,
    /// Add a new data key wrapped by the configured provider (the running server uses it for new
    /// writes at once) and re-wrap every stored key under that provider; with --reencrypt, also
    /// re-encrypt older rows under it.
    #[command(
        after_help = "Examples:\n  medai keys rotate --reencrypt --batch 500\n  medai keys rotate --blind-index --batch 500"
    )]
    Rotate {
        /// Also re-encrypt every row sealed under an older data key (as `medai keys reencrypt`).
        #[arg(long, conflicts_with = "blind_index")]
        reencrypt: bool,
        /// Rotate the blind-index key instead: add a new version (new writes index under it,
        /// lookups match either version meanwhile) and re-index every patient row under it in
        /// committed batches while the server keeps serving; run it again to resume. Then
        /// `medai keys retire-blind-index` removes the old version.
        #[arg(long)]
        blind_index: bool,
        /// Rows per committed batch (1–10000).
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        batch: i64,
    },
    /// Re-wrap every stored PHI key under the configured provider (`[keys]`), e.g. to move from
    /// the local key file to a KMS; adds no data key and rewrites no rows. All keys move in one
    /// transaction, or none. With --to-provider (and --to-key-id), move them instead to that
    /// provider and key, one committed and audited key at a time (run it again to resume): each
    /// is unwrapped by the provider and key recorded beside it and wrapped by the new one.
    #[command(
        after_help = "Examples:\n  MEDAI_KEYS__PROVIDER=aws-kms medai keys rewrap\n  medai keys rewrap --to-provider aws-kms --to-key-id arn:aws:kms:eu-west-1:111122223333:key/NEW"
    )]
    Rewrap {
        /// Move the keys to this provider: local-file, aws-kms, gcp-kms or azure-key-vault
        /// (its other settings, such as the region, come from `[keys.aws]`, `[keys.gcp]` or
        /// `[keys.azure]`).
        #[arg(long, value_name = "PROVIDER", value_parser = ["local-file", "aws-kms", "gcp-kms", "azure-key-vault"])]
        to_provider: Option<String>,
        /// The target KMS key: AWS key ARN, id or alias; GCP
        /// projects/P/locations/L/keyRings/R/cryptoKeys/K; Azure key name.
        #[arg(long, value_name = "KEY", requires = "to_provider")]
        to_key_id: Option<String>,
    },
    /// Re-encrypt rows sealed under older data keys with the newest one, in committed batches,
    /// while the server keeps serving; run it again to resume after an interruption.
    #[command(after_help = "Example:\n  medai keys reencrypt --batch 500")]
    Reencrypt {
        /// Rows per committed batch (1–10000).
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        batch: i64,
    },
    /// Delete the blind-index keys older than the newest, once `medai keys rotate --blind-index`
    /// has re-indexed every patient row (refuses before).
    #[command(after_help = "Example:\n  medai keys retire-blind-index")]
    RetireBlindIndex,
}

#[derive(Subcommand, Debug)]
pub enum PhiCommand {
    /// Print the PHI spans of each input: one JSON line {"id", "spans": [{"start", "end",
    /// "type", "text", "confidence"}]}, offsets in bytes of the UTF-8 text.
    #[command(
        after_help = "Input: JSON lines {\"id\": ..., \"text\": \"...\"}, or plain text (one input per line, id = line number).\n\nExample:\n  echo '{\"id\": 1, \"text\": \"Seen by Dr. Lee on 2/21/23\"}' | medai phi detect"
    )]
    Detect {
        #[command(flatten)]
        input: PhiInput,
    },
    /// Print each input with its PHI replaced by consistent surrogates (JSON lines {"id",
    /// "text"} for JSON input, plain lines for plain text).
    #[command(after_help = "Example:\n  medai phi deidentify --input notes.jsonl --conversation")]
    Deidentify {
        #[command(flatten)]
        input: PhiInput,
        /// Treat all inputs as one conversation: the same value gets the same surrogate and
        /// every date the same shift across lines.
        #[arg(long)]
        conversation: bool,
    },
    /// Score the detector on an ASQ-PHI corpus: value recall, character recall, character
    /// precision and over-redaction, per type and overall.
    #[command(
        after_help = "Example:\n  medai phi eval --asq ../shared/data/phi/asq-phi-dev.txt --json"
    )]
    Eval {
        /// The corpus file.
        #[arg(long, value_name = "FILE")]
        asq: PathBuf,
        /// Print one JSON object {"overall", "by_type", "documents", "seconds"}.
        #[arg(long)]
        json: bool,
        /// Also print every missed value and spurious span (corpus text) as JSON lines.
        #[arg(long)]
        show_misses: bool,
    },
}

/// Where `medai phi` reads from and how.
#[derive(Args, Debug)]
pub struct PhiInput {
    /// Input file, or - for standard input.
    #[arg(long, default_value = "-", value_name = "FILE")]
    pub input: PathBuf,
    /// auto (JSON lines when the first line starts with '{'), jsonl or text.
    #[arg(long, default_value = "auto", value_parser = ["auto", "jsonl", "text"])]
    pub format: String,
}

/// Output formats of `medai audit export`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
    /// A FHIR R4 Bundle (collection) of AuditEvent resources.
    Fhir,
    /// FHIR R4 AuditEvent resources, one per line (bulk data NDJSON).
    FhirNdjson,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Recompute every leaf and the Merkle tree, check every stored and exported checkpoint;
    /// reports the first break precisely and exits non-zero on any.
    #[command(
        after_help = "Example:\n  medai audit verify --checkpoints /mnt/worm/medai-checkpoints"
    )]
    Verify {
        /// Start at the event with this sequence number (the tree before it is taken as stored).
        #[arg(long, value_name = "SEQ")]
        from: Option<i64>,
        /// Directory of exported signed checkpoints to compare with (default: every configured
        /// sink: `audit.checkpoint_dir` if it exists, and the checkpoints read back from
        /// `[audit.s3]` and `[audit.gcs]`).
        #[arg(long, value_name = "DIR")]
        checkpoints: Option<PathBuf>,
        /// Public key file; repeat to add keys retired by a rotation (default:
        /// `<data_dir>/audit-signing.key.pub`).
        #[arg(long = "public-key", value_name = "FILE")]
        public_keys: Vec<PathBuf>,
    },
    /// Print a proof (JSON) that verifies offline with `medai audit check-proof`: inclusion of
    /// event SEQ in a signed checkpoint, or consistency between two signed checkpoints.
    #[command(
        after_help = "Example:\n  medai audit prove 1234 > event-1234.proof.json\n  medai audit prove --consistency 1000 2000 > 1000-2000.proof.json"
    )]
    Prove {
        /// Sequence number of the event (inclusion proof).
        #[arg(
            required_unless_present = "consistency",
            conflicts_with = "consistency"
        )]
        seq: Option<i64>,
        /// Tree size of the checkpoint to prove against (default: the first that covers it).
        #[arg(long, value_name = "SIZE", conflicts_with = "consistency")]
        size: Option<u64>,
        /// Tree sizes of two stored checkpoints, OLD and NEW.
        #[arg(long, num_args = 2, value_names = ["OLD", "NEW"])]
        consistency: Option<Vec<u64>>,
    },
    /// Check a proof file with the public key alone (no database, no private key).
    #[command(
        after_help = "Example:\n  medai audit check-proof --public-key audit-signing.key.pub event-1234.proof.json"
    )]
    CheckProof {
        /// The log's public key file (`<origin>+<id>+<base64>`).
        #[arg(long, value_name = "FILE")]
        public_key: PathBuf,
        /// The proof file from `medai audit prove`.
        proof: PathBuf,
    },
    /// Write events as JSON lines or FHIR R4 AuditEvent resources.
    #[command(
        after_help = "Example:\n  medai audit export --format fhir --since 2026-01-01T00:00:00Z --patient 0193… > audit.json"
    )]
    Export {
        /// jsonl, fhir (Bundle) or fhir-ndjson.
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// Only events at or after this time (RFC 3339).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only events before this time (RFC 3339).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Only events by this user id.
        #[arg(long, value_name = "ID")]
        user: Option<String>,
        /// Only events about this patient id.
        #[arg(long, value_name = "ID")]
        patient: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Place pending events in the tree and sign a checkpoint now (to the database and every
    /// configured checkpoint sink), e.g. before a backup.
    #[command(after_help = "Example:\n  medai audit checkpoint")]
    Checkpoint,
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
        /// Grant an action beyond the service role; repeatable. Allowed: audit.read.
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
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
                    assert!(
                        help.contains("Example:") || help.contains("Examples:"),
                        "{p} has no example"
                    );
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

    #[test]
    fn parses_serve_roles_and_model_pull() {
        let c = Cli::try_parse_from(["medai", "serve"]).unwrap();
        assert!(matches!(
            c.command,
            Command::Serve(ServeArgs {
                role: ServeRole::App,
                no_default_model: false,
                ..
            })
        ));
        let c = Cli::try_parse_from([
            "medai",
            "serve",
            "--role",
            "model-server",
            "--model",
            "tiny",
            "--token-file",
            "/t",
        ])
        .unwrap();
        match c.command {
            Command::Serve(a) => {
                assert_eq!(a.role, ServeRole::ModelServer);
                assert_eq!(a.model.as_deref(), Some("tiny"));
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["medai", "serve", "--role", "gpu"]).is_err());

        let sha = "AB".repeat(32);
        let c = Cli::try_parse_from([
            "medai",
            "model",
            "pull",
            "org/m-GGUF",
            "m.gguf",
            "--revision",
            "main",
            "--sha256",
            &sha,
        ])
        .unwrap();
        match c.command {
            Command::Model(ModelCommand::Pull(a)) => {
                assert_eq!(a.sha256, "ab".repeat(32));
                assert_eq!(a.tokenizer_file, "tokenizer.json");
                assert!(a.tokenizer_repo.is_none() && a.tokenizer_sha256.is_none());
            }
            other => panic!("{other:?}"),
        }
        // Each argument is checked by the parser.
        for bad in [
            ["org/m--x", "m.gguf", "main", sha.as_str()],
            ["org/m", "m.safetensors", "main", sha.as_str()],
            ["org/m", "m.gguf", "../main", sha.as_str()],
            ["org/m", "m.gguf", "main", "abc"],
        ] {
            let r = Cli::try_parse_from([
                "medai",
                "model",
                "pull",
                bad[0],
                bad[1],
                "--revision",
                bad[2],
                "--sha256",
                bad[3],
            ]);
            assert!(r.is_err(), "{bad:?}");
        }
        assert!(Cli::try_parse_from(["medai", "model", "pull", "org/m", "m.gguf"]).is_err());
    }
}
