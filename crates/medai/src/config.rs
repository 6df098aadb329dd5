//! Loading the configuration: defaults, then `medai.toml`, then `MEDAI_*` variables, then flags.
//! Unknown keys and bad values are errors that name the key and where it came from.

use crate::cli::GlobalArgs;
use anyhow::{bail, Context as _};
use figment::providers::{Env, Format as _, Serialized, Toml};
use figment::Figment;
use medai_core::config::Config;
use medai_store::redis_tls::RedisCa;
use serde::Serialize;
use std::path::PathBuf;

/// Environment variables with the `MEDAI_` prefix that are not configuration keys.
const NOT_CONFIG: &[&str] = &["config", "log", "no_default_model", "model_server_token"];

#[derive(Serialize, Default)]
struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    redis_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_listen: Option<String>,
}

/// Resolves and validates the configuration.
pub fn load(flags: &GlobalArgs) -> anyhow::Result<Config> {
    load_from(flags, Env::prefixed("MEDAI_"))
}

fn load_from(flags: &GlobalArgs, env: Env) -> anyhow::Result<Config> {
    let mut fig = Figment::new();
    match &flags.config {
        Some(path) => {
            if !path.is_file() {
                bail!(
                    "config file {} does not exist (from --config or MEDAI_CONFIG)",
                    path.display()
                );
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        None => {
            let default = PathBuf::from("medai.toml");
            if default.is_file() {
                fig = fig.merge(Toml::file_exact(default));
            }
        }
    }
    let env = env.split("__").filter(|k| {
        let k = k.as_str().to_ascii_lowercase();
        !k.starts_with("test_") && !NOT_CONFIG.contains(&k.as_str())
    });
    fig = fig.merge(env);
    let overrides = Overrides {
        data_dir: flags.data_dir.clone(),
        database_url: flags.database_url.clone(),
        redis_url: flags.redis_url.clone(),
        listen: flags.listen.map(|a| a.to_string()),
        metrics_listen: flags.metrics_listen.map(|a| a.to_string()),
    };
    fig = fig.merge(Serialized::defaults(overrides));
    let config: Config = fig.extract().map_err(|e| {
        let msgs: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
        anyhow::anyhow!("invalid configuration: {}", msgs.join("; "))
    })?;
    config.validate().context("configuration rejected")?;
    if let Some(ca) = &config.redis_ca_file {
        // Read here so that `medai config check` and every command report a bad file at once.
        RedisCa::load(ca).context("configuration rejected")?;
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn flags_with(path: &std::path::Path) -> GlobalArgs {
        GlobalArgs {
            config: Some(path.to_owned()),
            ..GlobalArgs::default()
        }
    }

    // Environment variables are process-global and tests run in parallel: only the jailed test
    // sets variables, under its own prefix; the others read a prefix nobody sets.
    fn env() -> Env {
        Env::prefixed("MEDAI_CFGTEST_")
    }

    fn jail_env() -> Env {
        Env::prefixed("MEDAI_CFGJAIL_")
    }

    #[test]
    #[allow(
        clippy::result_large_err,
        reason = "figment::Jail's closure type is fixed by figment"
    )]
    fn file_then_env_then_flags() {
        let f = file("listen = \"127.0.0.1:9000\"\ndata_dir = \"/tmp/a\"\n[auth]\nsession_idle_timeout = \"10m\"\n");
        let mut flags = flags_with(f.path());
        let c = load_from(&flags, env()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(c.auth.session_idle_timeout.as_secs(), 600);
        figment::Jail::expect_with(|jail| {
            jail.set_env("MEDAI_CFGJAIL_LISTEN", "127.0.0.1:9001");
            jail.set_env("MEDAI_CFGJAIL_AUTH__SESSION_IDLE_TIMEOUT", "5m");
            jail.set_env("MEDAI_CFGJAIL_TEST_POSTGRES_URL", "ignored");
            let c = load_from(&flags, jail_env()).map_err(|e| e.to_string())?;
            assert_eq!(c.listen.to_string(), "127.0.0.1:9001");
            assert_eq!(c.auth.session_idle_timeout.as_secs(), 300);
            Ok(())
        });
        flags.listen = Some("127.0.0.1:9002".parse().unwrap());
        let c = load_from(&flags, env()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9002");
    }

    #[test]
    fn unknown_key_is_named() {
        let f = file("[auth]\nsession_idle_timout = \"10m\"\n");
        let err = load_from(&flags_with(f.path()), env())
            .unwrap_err()
            .to_string();
        assert!(err.contains("session_idle_timout"), "{err}");
    }

    #[test]
    fn bad_value_is_named() {
        let f = file("listen = \"not an address\"\n");
        let err = load_from(&flags_with(f.path()), env())
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen"), "{err}");
        let f = file("[auth]\npassword_min_length = 6\n");
        let err = format!("{:#}", load_from(&flags_with(f.path()), env()).unwrap_err());
        assert!(err.contains("auth.password_min_length"), "{err}");
        let f = file("[auth]\nsession_idle_timeout = \"soon\"\n");
        let err = load_from(&flags_with(f.path()), env())
            .unwrap_err()
            .to_string();
        assert!(err.contains("session_idle_timeout"), "{err}");
    }

    #[test]
    fn redis_ca_file_must_exist_and_be_pem() {
        let missing = file(
            "redis_url = \"rediss://cache:6378\"\nredis_ca_file = \"/nonexistent/redis-ca.pem\"\n",
        );
        let err = format!(
            "{:#}",
            load_from(&flags_with(missing.path()), env()).unwrap_err()
        );
        assert!(
            err.contains("`redis_ca_file` /nonexistent/redis-ca.pem: cannot be read"),
            "{err}"
        );
        let not_pem = file("not a certificate");
        let f = file(&format!(
            "redis_url = \"rediss://cache:6378\"\nredis_ca_file = \"{}\"\n",
            not_pem.path().display()
        ));
        let err = format!("{:#}", load_from(&flags_with(f.path()), env()).unwrap_err());
        assert!(err.contains("holds no PEM certificate"), "{err}");
        let f = file(&format!(
            "redis_url = \"redis://cache:6379\"\nredis_ca_file = \"{}\"\n",
            not_pem.path().display()
        ));
        let err = format!("{:#}", load_from(&flags_with(f.path()), env()).unwrap_err());
        assert!(
            err.contains("`redis_ca_file` needs a `redis_url` starting with rediss://"),
            "{err}"
        );
    }

    #[test]
    fn missing_config_file_is_an_error() {
        let err = load_from(
            &flags_with(std::path::Path::new("/nonexistent/medai.toml")),
            env(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("does not exist"));
    }
}
