//! A throwaway Redis that speaks only TLS, for the `rediss://` tests: a CA and a server
//! certificate made with rcgen in a temporary directory, and `redis-server` started as a child
//! process on a free port, killed when the handle is dropped. Readiness is Redis's own
//! "Ready to accept connections" log line, not a sleep.

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

/// A running TLS-only `redis-server`.
pub struct TlsRedis {
    child: Child,
    port: u16,
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

/// A certificate authority: its certificate and the key that signs with it.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl TestCa {
    /// A fresh self-signed CA.
    pub fn new(name: &str) -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    /// Writes the CA certificate as PEM to `path`.
    pub fn write_pem(&self, path: &Path) {
        std::fs::write(path, self.cert.pem()).unwrap();
    }
}

impl TlsRedis {
    /// Starts a server whose certificate (for `127.0.0.1` and `localhost`) is signed by a new
    /// CA; `None`, with the reason printed, when `redis-server` is not installed.
    pub fn start() -> Option<Self> {
        match Command::new("redis-server").arg("--version").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!("redis-server --version failed: {out:?}"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("redis-server is not installed; TLS Redis test skipped");
                return None;
            }
            Err(e) => panic!("cannot run redis-server: {e}"),
        }
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("medai test Redis CA");
        let ca_file = dir.path().join("ca.pem");
        ca.write_pem(&ca_file);
        let server_key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "medai test Redis");
        let server_cert = params.signed_by(&server_key, &ca.cert, &ca.key).unwrap();
        let cert_file = dir.path().join("redis.crt");
        let key_file = dir.path().join("redis.key");
        std::fs::write(&cert_file, server_cert.pem()).unwrap();
        std::fs::write(&key_file, server_key.serialize_pem()).unwrap();

        // The free port can be taken between our probe and Redis binding it; try a few.
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new("redis-server")
                .args(["--port", "0", "--tls-port", &port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .arg("--tls-cert-file")
                .arg(&cert_file)
                .arg("--tls-key-file")
                .arg(&key_file)
                .arg("--tls-ca-cert-file")
                .arg(&ca_file)
                .args(["--tls-auth-clients", "no", "--logfile", ""])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            match wait_until_ready(stdout) {
                Ok(()) => {
                    return Some(Self {
                        child,
                        port,
                        ca_file,
                        _dir: dir,
                    })
                }
                Err(log) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    if !log.contains("Address already in use") {
                        panic!("redis-server did not start:\n{log}");
                    }
                    last_log = log;
                }
            }
        }
        panic!("redis-server found no free port:\n{last_log}");
    }

    /// The `rediss://` URL of the server.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }

    /// The PEM file of the CA that signed the server's certificate.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads Redis's log until it says it accepts connections (then keeps draining it on a thread
/// so the server never blocks on a full pipe), or returns the log if the server exits first.
fn wait_until_ready(stdout: ChildStdout) -> Result<(), String> {
    let mut lines = BufReader::new(stdout).lines();
    let mut log = String::new();
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        log.push_str(&line);
        log.push('\n');
        if line.contains("Ready to accept connections") {
            std::thread::spawn(move || lines.for_each(drop));
            return Ok(());
        }
    }
    Err(log)
}
