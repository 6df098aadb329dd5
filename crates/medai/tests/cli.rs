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

/// `medai serve` as a process: the setup link alone on a stdout line, JSON logs with request ids
/// on stderr, and SIGTERM ending it cleanly.
#[cfg(unix)]
#[test]
fn serve_prints_the_setup_link_logs_json_and_stops_on_sigterm() {
    use std::io::{BufRead as _, BufReader};
    use std::process::Stdio;
    use std::sync::mpsc;
    use std::time::Duration;

    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_medai"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .args(["--data-dir", tmp.path().join("data").to_str().unwrap()])
        .env_remove("MEDAI_CONFIG")
        .env_remove("MEDAI_DATABASE_URL")
        .env_remove("MEDAI_REDIS_URL")
        .env_remove("MEDAI_LOG_FORMAT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_json = |want: &str| -> serde_json::Value {
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("medai serve went quiet");
            let v: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
            if v["message"] == want {
                return v;
            }
        }
    };
    let serving = next_json("medai serving");
    let addr = serving["addr"].as_str().unwrap().to_owned();

    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    let mut second = String::new();
    stdout.read_line(&mut first).unwrap();
    stdout.read_line(&mut second).unwrap();
    assert!(first.contains("No administrator exists yet"), "{first}");
    assert!(
        second.trim_end().starts_with("http://") && second.contains("/setup?token="),
        "{second}"
    );
    assert_eq!(
        second.split_whitespace().count(),
        1,
        "the URL alone on its line"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = rt
        .block_on(
            reqwest::Client::new()
                .get(format!("http://{addr}/healthz"))
                .header("x-request-id", "probe-1")
                .send(),
        )
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "probe-1");
    let access = next_json("request");
    assert_eq!(access["request_id"], "probe-1");
    assert_eq!(access["route"], "/healthz");
    assert_eq!(access["status"], 200);

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    next_json("stopped");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
