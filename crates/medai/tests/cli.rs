//! The binary as an operator uses it: init, config check, migrate, user and token commands.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "integration test")]

use std::process::{Command, Output};

fn medai(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medai"))
        .args(["--data-dir", dir.to_str().unwrap()])
        .args(args)
        .env_remove("MEDAI_CONFIG")
        .env_remove("MEDAI_DATABASE_URL")
        .env_remove("MEDAI_REDIS_URL")
        .env("MEDAI_LOG_FORMAT", "text")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn operator_commands_on_a_fresh_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");

    // Commands that need a database refuse an uninitialised one with the fix.
    let o = medai(&dir, &["user", "list"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("medai init"),
        "{o:?}"
    );

    let o = medai(&dir, &["init", "--print-setup-url"]);
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "only the URL: {out}");
    assert!(
        lines[0].starts_with("http://127.0.0.1:8080/setup?token="),
        "{out}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join("master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let o = medai(&dir, &["migrate"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("nothing to apply"));

    let o = medai(
        &dir,
        &[
            "user",
            "add",
            "alice",
            "--role",
            "clinician",
            "--care-team",
            "cardiology",
        ],
    );
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    assert!(
        out.lines()
            .any(|l| l.starts_with("http://127.0.0.1:8080/setup?token=")),
        "{out}"
    );
    let o = medai(&dir, &["user", "add", "alice", "--role", "nurse"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("taken"));
    let o = medai(&dir, &["user", "add", "bob", "--role", "surgeon"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown role"));
    let o = medai(&dir, &["user", "add", "feed", "--role", "service"]);
    assert!(o.status.success());

    let o = medai(
        &dir,
        &[
            "token", "create", "--user", "feed", "--name", "ADT", "--days", "30",
        ],
    );
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    let token_id = out.split_whitespace().nth(1).unwrap().to_owned();
    assert!(out.lines().any(|l| l.starts_with("medai_")));
    let o = medai(&dir, &["token", "create", "--user", "alice", "--name", "x"]);
    assert!(!o.status.success(), "no tokens for people");
    let o = medai(&dir, &["token", "revoke", &token_id]);
    assert!(o.status.success(), "{o:?}");

    let o = medai(&dir, &["user", "list"]);
    let out = stdout(&o);
    assert!(out.contains("alice") && out.contains("clinician") && out.contains("pending"));
    let o = medai(&dir, &["user", "reset-mfa", "alice"]);
    assert!(o.status.success());
    let o = medai(&dir, &["user", "disable", "alice"]);
    assert!(o.status.success());
    assert!(stdout(&medai(&dir, &["user", "list"])).contains("disabled"));
}

#[test]
fn config_check_masks_secrets_and_bad_config_names_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("medai.toml");
    std::fs::write(&cfg, "database_url = \"postgres://medai:hunter2@db.internal/medai\"\n[auth]\nsession_idle_timeout = \"10m\"\n").unwrap();
    let o = medai(
        tmp.path(),
        &["--config", cfg.to_str().unwrap(), "config", "check"],
    );
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    assert!(
        out.contains("postgres://medai:****@db.internal/medai"),
        "{out}"
    );
    assert!(!out.contains("hunter2"));
    assert!(out.contains("session_idle_timeout = \"10m\""));

    std::fs::write(&cfg, "[auth]\nsesion_idle_timeout = \"10m\"\n").unwrap();
    let o = medai(
        tmp.path(),
        &["--config", cfg.to_str().unwrap(), "config", "check"],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("sesion_idle_timeout"));

    let o = Command::new(env!("CARGO_BIN_EXE_medai"))
        .args(["config", "check"])
        .env("MEDAI_CONFIG", cfg.to_str().unwrap())
        .env("MEDAI_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert!(!o.status.success());
}
