//! `medai healthcheck` as a container runs it: against a live server (plain HTTP and TLS), a
//! closed port, a listener that answers 404, and a server whose certificate it must not trust.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A `medai serve` child process, killed when dropped.
struct Server {
    child: Child,
    addr: String,
    metrics_addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base(cmd: &mut Command) -> &mut Command {
    cmd.env_remove("MEDAI_CONFIG")
        .env_remove("MEDAI_DATABASE_URL")
        .env_remove("MEDAI_REDIS_URL")
        // no [llm]: serve without fetching the default model (no network in tests)
        .env("MEDAI_NO_DEFAULT_MODEL", "true")
        .env_remove("MEDAI_LISTEN")
        .env_remove("MEDAI_PUBLIC_URL")
        .env("MEDAI_LOG_FORMAT", "json")
}

/// Starts `medai serve` on free ports and waits for its "medai serving" log line.
fn serve(data_dir: &Path, config: Option<&Path>) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_medai"));
    base(&mut cmd)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .args(["--data-dir", data_dir.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(c) = config {
        cmd.args(["--config", c.to_str().unwrap()]);
    }
    // Owned by `Server` from the start, so a failed wait below still kills the process.
    let mut server = Server {
        child: cmd.spawn().unwrap(),
        addr: String::new(),
        metrics_addr: String::new(),
    };
    let (tx, rx) = mpsc::channel::<String>();
    let stderr = server.child.stderr.take().unwrap();
    std::thread::spawn(move || {
        // Keep draining after the test stops listening: a closed pipe would break the server.
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("medai serve did not report serving");
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v["message"] == "medai serving" {
            server.addr = v["addr"].as_str().unwrap().to_owned();
            server.metrics_addr = v["metrics_addr"].as_str().unwrap().to_owned();
            return server;
        }
    }
}

fn healthcheck(listen: &str, config: Option<&Path>, extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_medai"));
    base(&mut cmd).args(["healthcheck", "--listen", listen]);
    if let Some(c) = config {
        cmd.args(["--config", c.to_str().unwrap()]);
    }
    cmd.args(extra).output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn healthy_server_passes_and_closed_port_or_wrong_endpoint_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let server = serve(&tmp.path().join("data"), None);

    let o = healthcheck(&server.addr, None, &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains(&format!("http://{}/healthz", server.addr)) && out.contains("200"),
        "{out}"
    );

    let o = healthcheck(&server.addr, None, &["--ready", "--timeout-secs", "10"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("/readyz"), "{out}");

    // The metrics listener answers HTTP but has no /healthz: a non-2xx answer is unhealthy.
    let o = healthcheck(&server.metrics_addr, None, &[]);
    let (out, err) = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(err.contains("unhealthy") && err.contains("404"), "{err}");

    // A port nobody listens on: bind one, note it, close it.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let o = healthcheck(&closed, None, &["--timeout-secs", "2"]);
    let (out, err) = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("unhealthy") && err.contains(&closed) && err.contains("cannot connect"),
        "{err}"
    );

    // Bad arguments are refused before any probe.
    let o = healthcheck(&server.addr, None, &["--timeout-secs", "0"]);
    assert!(!o.status.success());
}

#[test]
fn tls_server_is_probed_over_verified_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = tmp.path().join("tls.crt");
    let key_path = tmp.path().join("tls.key");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let config = tmp.path().join("medai.toml");
    std::fs::write(
        &config,
        format!(
            "[tls]\ncert_path = {:?}\nkey_path = {:?}\n",
            cert_path.to_str().unwrap(),
            key_path.to_str().unwrap()
        ),
    )
    .unwrap();
    let server = serve(&tmp.path().join("data"), Some(&config));

    let o = healthcheck(&server.addr, Some(&config), &["--ready"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    let port = server.addr.rsplit(':').next().unwrap();
    assert!(
        out.contains(&format!("https://localhost:{port}/readyz")),
        "{out}"
    );

    // Plain HTTP against the TLS listener is not a pass.
    let o = healthcheck(&server.addr, None, &["--timeout-secs", "3"]);
    assert!(!o.status.success(), "{:?}", text(&o));

    // A certificate the probe was not given is not trusted.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other_cert = other_dir.path().join("tls.crt");
    let other_key = other_dir.path().join("tls.key");
    std::fs::write(&other_cert, other.cert.pem()).unwrap();
    std::fs::write(&other_key, other.key_pair.serialize_pem()).unwrap();
    let other_config = other_dir.path().join("medai.toml");
    std::fs::write(
        &other_config,
        format!(
            "[tls]\ncert_path = {:?}\nkey_path = {:?}\n",
            other_cert.to_str().unwrap(),
            other_key.to_str().unwrap()
        ),
    )
    .unwrap();
    let o = healthcheck(&server.addr, Some(&other_config), &["--timeout-secs", "3"]);
    let (out, err) = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(err.contains("unhealthy"), "{err}");

    // A missing certificate file is named.
    std::fs::remove_file(&other_cert).unwrap();
    let o = healthcheck(&server.addr, Some(&other_config), &[]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("tls.cert_path"), "{err}");
}
