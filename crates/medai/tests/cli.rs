//! The binary as an operator uses it: init, config check, migrate, user and token commands.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test"
)]

use std::process::{Command, Output};

fn medai(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medai"))
        .args(["--data-dir", dir.to_str().unwrap()])
        .args(args)
        .env_remove("MEDAI_CONFIG")
        .env_remove("MEDAI_DATABASE_URL")
        .env_remove("MEDAI_REDIS_URL")
        // no [llm]: serve without fetching the default model (no network in tests)
        .env("MEDAI_NO_DEFAULT_MODEL", "true")
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

#[test]
fn llm_section_is_validated_masked_and_model_list_probes_health() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("medai.toml");
    // A port nothing listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        &cfg,
        format!(
            "[llm]\ndefault_model = \"local\"\n[[llm.models]]\nid = \"local\"\nprovider = \"openai\"\nendpoint = \"http://127.0.0.1:{port}\"\nmodel = \"tiny\"\napi_key = \"sk-do-not-print\"\ncontext_window = 4096\ntimeouts = {{ connect = \"1s\" }}\n"
        ),
    )
    .unwrap();
    let args = |cmd: &[&'static str]| -> Vec<String> {
        let mut v = vec!["--config".to_owned(), cfg.to_str().unwrap().to_owned()];
        v.extend(cmd.iter().map(|s| (*s).to_owned()));
        v
    };
    let run = |cmd: &[&'static str]| {
        let a = args(cmd);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        medai(tmp.path(), &a)
    };
    let o = run(&["config", "check"]);
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    assert!(out.contains("context_window = 4096"), "{out}");
    assert!(!out.contains("sk-do-not-print"), "{out}");

    let o = run(&["model", "list"]);
    assert!(
        !o.status.success(),
        "a model nobody serves is unhealthy: {o:?}"
    );
    let out = stdout(&o);
    assert!(out.contains("local\topenai"), "{out}");
    assert!(out.contains("DOWN"), "{out}");
    assert!(!out.contains("sk-do-not-print"));
    assert!(String::from_utf8_lossy(&o.stderr).contains("1 model(s) unhealthy"));

    // A bad section is refused naming the key.
    std::fs::write(
        &cfg,
        "[llm]\ndefault_model = \"missing\"\n[[llm.models]]\nid = \"local\"\nprovider = \"openai\"\nmodel = \"tiny\"\nendpoint = \"http://127.0.0.1:1\"\ncontext_window = 4096\n",
    )
    .unwrap();
    let o = run(&["config", "check"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("default_model"),
        "{o:?}"
    );

    std::fs::write(&cfg, "").unwrap();
    let o = run(&["model", "list"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no model is configured"));
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
        // no [llm]: serve without fetching the default model (no network in tests)
        .env("MEDAI_NO_DEFAULT_MODEL", "true")
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
    // The shutdown sealed the audit log with a signed checkpoint in the checkpoint directory.
    let cps: Vec<_> = std::fs::read_dir(tmp.path().join("data/audit-checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("checkpoint-"))
        .collect();
    assert!(!cps.is_empty());
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs SQL on the data directory's SQLite database as an attacker with the file would.
fn tamper(dir: &std::path::Path, sql: &[&str]) {
    let url = format!("sqlite://{}", dir.join("medai.db").display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = medai_store::Store::connect(&url).await.unwrap();
        let mut c = store.pool().acquire().await.unwrap();
        for s in sql {
            medai_store::testkit::execute(&mut c, s).await.unwrap();
        }
        drop(c);
        store.close().await;
    });
}

#[test]
fn audit_checkpoint_verify_prove_check_export_and_detect_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert!(medai(&dir, &["init"]).status.success());
    for name in ["ann", "ben"] {
        let o = medai(&dir, &["user", "add", name, "--role", "nurse"]);
        assert!(o.status.success(), "{o:?}");
    }
    let o = medai(&dir, &["audit", "checkpoint"]);
    assert!(o.status.success(), "{o:?}");
    assert!(
        stdout(&o).contains("signed checkpoint of tree size"),
        "{}",
        stdout(&o)
    );
    let o = medai(&dir, &["audit", "verify"]);
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("OK: the audit log verifies"));

    // Export: JSON lines, a FHIR Bundle, FHIR NDJSON; filters apply.
    let o = medai(&dir, &["audit", "export", "--format", "jsonl"]);
    assert!(o.status.success(), "{o:?}");
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= 2);
    let first_seq = lines[0]["seq"].as_i64().unwrap();
    let target = lines.iter().find(|l| l["action"] == "user.create").unwrap();
    let o = medai(
        &dir,
        &["audit", "export", "--format", "fhir", "--user", "cli"],
    );
    let bundle: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    let entries = bundle["entry"].as_array().unwrap();
    assert!(!entries.is_empty());
    assert!(entries
        .iter()
        .all(|e| e["resource"]["resourceType"] == "AuditEvent"
            && e["resource"]["agent"][0]["who"]["identifier"]["value"] == "cli"));
    let o = medai(
        &dir,
        &[
            "audit",
            "export",
            "--format",
            "fhir-ndjson",
            "--since",
            "2000-01-01T00:00:00Z",
            "--until",
            "2000-01-02T00:00:00Z",
        ],
    );
    assert!(o.status.success());
    assert_eq!(stdout(&o), "", "nothing in that window");
    let o = medai(&dir, &["audit", "export", "--since", "last tuesday"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--since must be an RFC 3339 time"),
        "{o:?}"
    );

    // Inclusion proof, checked offline with the public key alone.
    let pubkey = dir.join("audit-signing.key.pub");
    let o = medai(&dir, &["audit", "prove", &first_seq.to_string()]);
    assert!(o.status.success(), "{o:?}");
    let proof = tmp.path().join("event.proof.json");
    std::fs::write(&proof, stdout(&o)).unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    let o = medai(
        &elsewhere,
        &[
            "audit",
            "check-proof",
            "--public-key",
            pubkey.to_str().unwrap(),
            proof.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{o:?}");
    assert!(
        stdout(&o).starts_with("OK: the event is entry 0"),
        "{}",
        stdout(&o)
    );
    let mut forged: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&proof).unwrap()).unwrap();
    forged["event"]["action"] = "nothing.happened".into();
    std::fs::write(&proof, forged.to_string()).unwrap();
    let o = medai(
        &elsewhere,
        &[
            "audit",
            "check-proof",
            "--public-key",
            pubkey.to_str().unwrap(),
            proof.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("does NOT verify"), "{o:?}");

    // More events, a second checkpoint, and a consistency proof between the two.
    let first_size: u64 = {
        let o = medai(&dir, &["audit", "verify"]);
        stdout(&o)
            .split("tree size ")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(medai(&dir, &["user", "add", "cat", "--role", "nurse"])
        .status
        .success());
    assert!(medai(&dir, &["audit", "checkpoint"]).status.success());
    let o = medai(&dir, &["audit", "verify"]);
    let second_size: u64 = stdout(&o)
        .split("tree size ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(second_size > first_size);
    let o = medai(
        &dir,
        &[
            "audit",
            "prove",
            "--consistency",
            &first_size.to_string(),
            &second_size.to_string(),
        ],
    );
    assert!(o.status.success(), "{o:?}");
    std::fs::write(&proof, stdout(&o)).unwrap();
    let o = medai(
        &elsewhere,
        &[
            "audit",
            "check-proof",
            "--public-key",
            pubkey.to_str().unwrap(),
            proof.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains(&format!(
        "at tree size {first_size} is a prefix of the log at tree size {second_size}"
    )));

    // Tampering in the database file: verify names the event and exits non-zero.
    let seq = target["seq"].as_i64().unwrap();
    tamper(
        &dir,
        &[
            "DROP TRIGGER audit_events_no_update",
            &format!("UPDATE audit_events SET actor_role = 'admin' WHERE seq = {seq}"),
        ],
    );
    let o = medai(&dir, &["audit", "verify"]);
    assert!(!o.status.success());
    assert!(
        stdout(&o).contains(&format!("FIRST BREAK: event seq {seq} ")),
        "{}",
        stdout(&o)
    );
    assert!(stderr(&o).contains("does NOT verify"));

    // Rewriting the whole log and its database checkpoints is caught by the checkpoint directory.
    tamper(
        &dir,
        &[
            "DROP TRIGGER audit_checkpoints_no_delete",
            "DELETE FROM audit_checkpoints",
            &format!("UPDATE audit_events SET actor_role = 'operator_cli' WHERE seq = {seq}"),
        ],
    );
    let o = medai(&dir, &["audit", "verify"]);
    assert!(o.status.success(), "restored content verifies again: {o:?}");
    tamper(
        &dir,
        &[
            "DROP TRIGGER audit_log_entries_no_delete",
            "DROP TRIGGER audit_tree_hashes_no_delete",
            "DROP TRIGGER audit_events_no_delete",
            "PRAGMA foreign_keys = OFF",
            "DELETE FROM audit_log_entries",
            "DELETE FROM audit_tree_hashes",
            "DELETE FROM audit_events",
        ],
    );
    let o = medai(&dir, &["audit", "verify"]);
    assert!(!o.status.success());
    assert!(
        stdout(&o).contains("log truncated: 0 events, but a signed checkpoint (checkpoint-"),
        "{}",
        stdout(&o)
    );
    let o = medai(
        &dir,
        &[
            "audit",
            "verify",
            "--checkpoints",
            tmp.path().join("missing").to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cannot read checkpoint directory"));
}

/// Kill -9 during concurrent audited requests: every request that got its answer has its event,
/// and after a restart the log places the rest and verifies.
#[test]
fn killed_during_concurrent_appends_every_acknowledged_event_survives_and_verifies() {
    crash_test(None);
    if std::env::var("MEDAI_TEST_POSTGRES_URL").is_ok_and(|u| !u.is_empty()) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let db = rt
            .block_on(medai_store::testkit::fresh_database(
                medai_store::DatabaseKind::Postgres,
            ))
            .unwrap();
        crash_test(Some(&db.url));
        drop(rt);
    }
}

fn crash_test(database_url: Option<&str>) {
    use std::io::{BufRead as _, BufReader};
    use std::process::Stdio;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let db_args: Vec<&str> = match database_url {
        Some(u) => vec!["--database-url", u],
        None => vec![],
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_medai"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .args(["--data-dir", dir.to_str().unwrap()])
        .args(&db_args)
        .env_remove("MEDAI_CONFIG")
        .env_remove("MEDAI_DATABASE_URL")
        .env_remove("MEDAI_REDIS_URL")
        // no [llm]: serve without fetching the default model (no network in tests)
        .env("MEDAI_NO_DEFAULT_MODEL", "true")
        .env("MEDAI_LOG_FORMAT", "json")
        .env("MEDAI_AUTH__IP_THROTTLE__FREE_ATTEMPTS", "1000000")
        .env("MEDAI_AUTH__IP_THROTTLE__LOCKOUT_AFTER", "1000001")
        .env("MEDAI_AUDIT__CHECKPOINT_INTERVAL", "1s")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    // Keep draining the logs, or the server blocks on a full pipe.
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if v["message"] == "medai serving" {
                    let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_owned());
                }
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    assert!(!addr.is_empty());
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let workers: Vec<_> = (0..32)
        .map(|w| {
            let (acked, stop, addr) = (acked.clone(), stop.clone(), addr.clone());
            rt.spawn(async move {
                let c = reqwest::Client::new();
                for i in 0..10_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let id = format!("crash-{w}-{i}");
                    let r = c
                        .post(format!("http://{addr}/api/v1/auth/login"))
                        .header("x-request-id", &id)
                        .json(&serde_json::json!({"username": format!("nobody{w}x{i}"), "password": "wrong-password-123"}))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 401 => acked.lock().unwrap().push(id),
                        Ok(r) => panic!("unexpected status {}", r.status()),
                        Err(_) => break, // the server is gone
                    }
                }
            })
        })
        .collect();
    // Let requests flow, then kill the process without warning.
    rt.block_on(async {
        for _ in 0..600 {
            if acked.lock().unwrap().len() >= 150 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    child.kill().unwrap();
    child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for w in workers {
            w.await.unwrap();
        }
    });
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 50,
        "only {} requests were answered",
        acked.len()
    );

    // After the crash: place the pending events, sign, verify.
    let with_db = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(&db_args);
        medai(&dir, &all)
    };
    let o = with_db(&["audit", "checkpoint"]);
    assert!(o.status.success(), "{o:?}");
    let o = with_db(&["audit", "verify"]);
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("0 events pending"), "{}", stdout(&o));
    let o = with_db(&["audit", "export"]);
    let logged: std::collections::HashSet<String> = stdout(&o)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["request_id"].as_str().map(str::to_owned))
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !logged.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged requests have no audit event: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}

#[test]
fn keys_status_migrate_encrypts_plaintext_rows_and_key_file_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert!(medai(&dir, &["init"]).status.success());
    let o = medai(&dir, &["keys", "status"]);
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    let data = out.lines().find(|l| l.starts_with("data ")).unwrap();
    assert!(
        data.contains("local-file") && data.contains(" yes ") && data.contains("0 patient rows"),
        "{out}"
    );
    assert!(data.ends_with("(new writes)"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("blind-index ")), "{out}");

    // A row written before encryption at rest, as an upgrade finds it.
    tamper(
        &dir,
        &[
            "INSERT INTO patients (id, mrn, given_name, family_name, date_of_birth, sex, \
           created_at, updated_at) VALUES ('legacy-1', 'MRN-9', 'Old', 'Row', '1950-02-03', \
           'male', 1, 1)",
        ],
    );
    let out = stdout(&medai(&dir, &["keys", "status"]));
    assert!(
        out.contains("1 patient row(s) are still in plaintext"),
        "{out}"
    );
    let o = medai(&dir, &["migrate"]);
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("encrypted 1 patient row(s)"), "{o:?}");
    let out = stdout(&medai(&dir, &["keys", "status"]));
    assert!(
        out.contains("1 patient rows") && !out.contains("plaintext"),
        "{out}"
    );
    let db = std::fs::read(dir.join("medai.db")).unwrap();
    let wal = std::fs::read(dir.join("medai.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(5).any(|w| w == b"MRN-9"),
            "plaintext MRN left on disk"
        );
    }
    assert!(stdout(&medai(&dir, &["migrate"])).contains("nothing to apply"));

    let o = medai(&dir, &["keys", "rotate", "--reencrypt", "--batch", "1"]);
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("data key version 2 added"), "{o:?}");
    assert!(stdout(&o).contains("re-encrypted 1 row(s)"), "{o:?}");
    let out = stdout(&medai(&dir, &["keys", "status"]));
    let v1 = out
        .lines()
        .find(|l| l.starts_with("data         1 "))
        .unwrap();
    let v2 = out
        .lines()
        .find(|l| l.starts_with("data         2 "))
        .unwrap();
    assert!(
        v1.contains("0 patient rows") && !v1.contains("new writes"),
        "{out}"
    );
    assert!(
        v2.contains("1 patient rows") && v2.ends_with("(new writes)"),
        "{out}"
    );
    let o = medai(&dir, &["keys", "reencrypt"]);
    assert!(o.status.success(), "{o:?}");
    assert!(
        stdout(&o).contains("re-encrypted 0 row(s)"),
        "resumable: {o:?}"
    );
    let o = medai(&dir, &["keys", "rotate", "--batch", "0"]);
    assert!(!o.status.success(), "batch is validated");

    // Blind-index rotation: a new version, every row re-indexed under it, then the old one
    // retired; the patient is still found by MRN.
    let o = medai(&dir, &["keys", "retire-blind-index"]);
    assert!(o.status.success(), "nothing to retire is fine: {o:?}");
    let o = medai(&dir, &["keys", "rotate", "--blind-index", "--batch", "1"]);
    assert!(o.status.success(), "{o:?}");
    assert!(
        stdout(&o).contains("blind-index key version 1 added")
            && stdout(&o).contains("re-indexed 1 row(s)"),
        "{o:?}"
    );
    let out = stdout(&medai(&dir, &["keys", "status"]));
    let index_lines: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("blind-index "))
        .collect();
    assert_eq!(index_lines.len(), 2, "{out}");
    let o = medai(&dir, &["keys", "retire-blind-index"]);
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("[0]"), "{o:?}");
    let out = stdout(&medai(&dir, &["keys", "status"]));
    let index = out.lines().find(|l| l.starts_with("blind-index ")).unwrap();
    assert!(
        index.starts_with("blind-index  1 ") && index.contains("of 1 patients"),
        "{out}"
    );
    assert!(
        medai(&dir, &["keys", "rotate", "--blind-index", "--reencrypt"])
            .status
            .code()
            == Some(2),
        "the two rotations are separate"
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let key = dir.join("master.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        for cmd in [&["keys", "status"][..], &["migrate"][..]] {
            let o = medai(&dir, cmd);
            assert!(!o.status.success(), "{cmd:?}");
            assert!(stderr(&o).contains("chmod 600"), "{o:?}");
        }
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        // Another installation's key file: nothing unwraps, and status says so.
        std::fs::remove_file(&key).unwrap();
        let other = tmp.path().join("other");
        assert!(medai(&other, &["init"]).status.success());
        std::fs::copy(other.join("master.key"), &key).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let o = medai(&dir, &["keys", "status"]);
        assert!(!o.status.success());
        assert!(stdout(&o).contains(" NO "), "{o:?}");
        assert!(stderr(&o).contains("does not unwrap"), "{o:?}");
    }
}
