//! `medai model pull|verify|list` and the model roles of `medai serve`, against a Hugging Face
//! Hub served by the test itself (HF_ENDPOINT): the resolve URLs, range requests and the
//! `etag` / `x-repo-commit` headers hf-hub reads, a bearer token it checks (HF_TOKEN), and a
//! request counter that proves offline runs and cached pulls never touch it. The model files are
//! the engine's tiny random-weight fixtures, so a pulled model really loads and answers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test"
)]

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const HF_TOKEN: &str = "hf_test_token_abc";

#[derive(Clone)]
struct Hub {
    /// `repo/file` -> content.
    files: Arc<HashMap<String, Vec<u8>>>,
    requests: Arc<AtomicUsize>,
}

async fn resolve(
    axum::extract::State(hub): axum::extract::State<Hub>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    hub.requests.fetch_add(1, Ordering::SeqCst);
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {HF_TOKEN}"))
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    // /{org}/{name}/resolve/{revision}/{file}
    let parts: Vec<&str> = uri.path().trim_start_matches('/').splitn(5, '/').collect();
    if parts.len() != 5 || parts[2] != "resolve" || !(parts[3] == COMMIT || parts[3] == "main") {
        return StatusCode::NOT_FOUND.into_response();
    }
    let Some(data) = hub
        .files
        .get(&format!("{}/{}/{}", parts[0], parts[1], parts[4]))
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let etag = format!("\"{}\"", hex::encode(Sha256::digest(data)));
    let len = data.len();
    let range = headers
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .map(|(a, b)| (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()));
    let mut h = HeaderMap::new();
    h.insert("etag", etag.parse().unwrap());
    h.insert("x-repo-commit", COMMIT.parse().unwrap());
    match range {
        Some((start, end)) => {
            let end = end.min(len - 1);
            h.insert(
                "content-range",
                format!("bytes {start}-{end}/{len}").parse().unwrap(),
            );
            (StatusCode::PARTIAL_CONTENT, h, data[start..=end].to_vec()).into_response()
        }
        None => (StatusCode::OK, h, data.clone()).into_response(),
    }
}

struct Fixture {
    tmp: tempfile::TempDir,
    endpoint: String,
    hub: Hub,
    gguf: Vec<u8>,
    tokenizer: Vec<u8>,
    _rt: tokio::runtime::Runtime,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let (gguf, tok) = medai_engine::fixture::write_tiny_model(
            &tmp.path().join("src"),
            medai_engine::Arch::Qwen2,
        )
        .unwrap();
        let gguf = std::fs::read(gguf).unwrap();
        let tokenizer = std::fs::read(tok).unwrap();
        let mut files = HashMap::new();
        files.insert("org/tiny-GGUF/tiny-q8_0.gguf".to_owned(), gguf.clone());
        files.insert("org/tiny-GGUF/tokenizer.json".to_owned(), tokenizer.clone());
        let hub = Hub {
            files: Arc::new(files),
            requests: Arc::new(AtomicUsize::new(0)),
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let app = axum::Router::new()
            .fallback(resolve)
            .with_state(hub.clone());
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
        Fixture {
            tmp,
            endpoint,
            hub,
            gguf,
            tokenizer,
            _rt: rt,
        }
    }

    fn data(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    fn hf_home(&self) -> PathBuf {
        self.tmp.path().join("hf")
    }

    fn requests(&self) -> usize {
        self.hub.requests.load(Ordering::SeqCst)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_medai"));
        c.args(["--data-dir", self.data().to_str().unwrap()])
            .args(args)
            .env_remove("MEDAI_CONFIG")
            .env_remove("MEDAI_DATABASE_URL")
            .env_remove("MEDAI_REDIS_URL")
            .env_remove("HF_HUB_OFFLINE")
            .env_remove("MEDAI_MODEL_SERVER_TOKEN")
            .env("HF_ENDPOINT", &self.endpoint)
            .env("HF_HOME", self.hf_home())
            .env("HF_TOKEN", HF_TOKEN)
            .env("MEDAI_LOG_FORMAT", "text")
            .current_dir(self.tmp.path());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn pull(&self, sha: &str, extra: &[&str]) -> Output {
        let mut a = vec![
            "model",
            "pull",
            "org/tiny-GGUF",
            "tiny-q8_0.gguf",
            "--revision",
            COMMIT,
            "--sha256",
            sha,
        ];
        a.extend_from_slice(extra);
        self.run(&a)
    }

    fn sha(&self) -> String {
        hex::encode(Sha256::digest(&self.gguf))
    }

    fn snapshot(&self, file: &str) -> PathBuf {
        self.hf_home()
            .join("hub/models--org--tiny-GGUF/snapshots")
            .join(COMMIT)
            .join(file)
    }

    fn registry(&self) -> serde_json::Value {
        let p = self.data().join("models/registry.json");
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    }
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn pull_verifies_records_and_verify_catches_a_changed_file() {
    let f = Fixture::new();
    let tok_sha = hex::encode(Sha256::digest(&f.tokenizer));
    let o = f.pull(&f.sha(), &["--tokenizer-sha256", &tok_sha]);
    assert!(o.status.success(), "{o:?}");
    assert!(out(&o).contains("tiny-q8_0: "), "{}", out(&o));
    assert!(
        f.requests() >= 4,
        "metadata and range requests for two files"
    );
    assert_eq!(std::fs::read(f.snapshot("tiny-q8_0.gguf")).unwrap(), f.gguf);

    let reg = f.registry();
    let m = &reg["models"][0];
    assert_eq!(m["id"], "tiny-q8_0");
    assert_eq!(m["weights"]["repo"], "org/tiny-GGUF");
    assert_eq!(m["weights"]["revision"], COMMIT);
    assert_eq!(m["weights"]["commit"], COMMIT);
    assert_eq!(m["weights"]["sha256"], f.sha());
    assert_eq!(m["weights"]["size"], f.gguf.len() as u64);
    assert_eq!(m["tokenizer"]["sha256"], tok_sha);
    assert!(Path::new(m["weights"]["path"].as_str().unwrap()).is_file());
    assert!(m["pulled_at"].as_str().unwrap().ends_with('Z'));

    // A second pull of a pinned commit comes from the cache: no request at all.
    let before = f.requests();
    let o = f.pull(&f.sha(), &[]);
    assert!(o.status.success(), "{o:?}");
    assert!(out(&o).contains("no --tokenizer-sha256"), "{}", out(&o));
    assert_eq!(f.requests(), before);
    assert_eq!(f.registry()["models"].as_array().unwrap().len(), 1);

    let o = f.run(&["model", "verify"]);
    assert!(o.status.success(), "{o:?}");
    assert!(out(&o).starts_with("ok\ttiny-q8_0\t"), "{}", out(&o));
    let o = f.run(&["model", "list"]);
    assert!(o.status.success(), "{o:?}");
    assert!(
        out(&o).contains("tiny-q8_0\torg/tiny-GGUF\ttiny-q8_0.gguf"),
        "{}",
        out(&o)
    );

    // One byte changed on disk: verify names the file and fails.
    let path = f.snapshot("tiny-q8_0.gguf");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let o = f.run(&["model", "verify"]);
    assert!(!o.status.success(), "{o:?}");
    assert!(
        out(&o).contains("MISMATCH\ttiny-q8_0 weights"),
        "{}",
        out(&o)
    );
    assert!(
        err(&o).contains("1 of 1 registered model(s) failed verification"),
        "{}",
        err(&o)
    );
}

#[test]
fn a_hash_mismatch_is_refused_removed_and_not_recorded() {
    let f = Fixture::new();
    let wrong = "ab".repeat(32);
    let o = f.pull(&wrong, &[]);
    assert!(!o.status.success(), "{o:?}");
    let e = err(&o);
    assert!(e.contains("SHA-256 mismatch"), "{e}");
    assert!(e.contains(&wrong) && e.contains(&f.sha()), "{e}");
    assert!(
        !f.snapshot("tiny-q8_0.gguf").exists(),
        "the bad file was left in the cache"
    );
    let blobs = f.hf_home().join("hub/models--org--tiny-GGUF/blobs");
    let left: Vec<_> = std::fs::read_dir(&blobs)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.iter().all(|n| n.to_string_lossy().ends_with(".lock")),
        "blob kept: {left:?}"
    );
    assert!(!f.data().join("models/registry.json").exists());
}

#[test]
fn offline_uses_only_the_cache_and_says_where_files_go() {
    let f = Fixture::new();
    for (flag, env) in [(true, false), (false, true)] {
        let mut c = f.cmd(&[
            "model",
            "pull",
            "org/tiny-GGUF",
            "tiny-q8_0.gguf",
            "--revision",
            COMMIT,
            "--sha256",
            &f.sha(),
        ]);
        if flag {
            c.arg("--offline");
        }
        if env {
            c.env("HF_HUB_OFFLINE", "1");
        }
        let o = c.output().unwrap();
        assert!(!o.status.success(), "{o:?}");
        let e = err(&o);
        assert!(e.contains("offline"), "{e}");
        assert!(
            e.contains(f.snapshot("tiny-q8_0.gguf").to_str().unwrap()),
            "{e}"
        );
    }
    assert_eq!(f.requests(), 0, "offline touched the network");

    // Files placed in the cache by hand are found offline.
    for (name, data) in [
        ("tiny-q8_0.gguf", &f.gguf),
        ("tokenizer.json", &f.tokenizer),
    ] {
        let p = f.snapshot(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    let o = f.pull(&f.sha(), &["--offline"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(f.requests(), 0);

    // A Hub that cannot be reached, and one that refuses the token.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let g = Fixture::new();
    let o = g
        .cmd(&[
            "model",
            "pull",
            "org/tiny-GGUF",
            "tiny-q8_0.gguf",
            "--revision",
            COMMIT,
            "--sha256",
            &g.sha(),
        ])
        .env("HF_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(err(&o).contains("cannot reach"), "{}", err(&o));
    let o = g
        .cmd(&[
            "model",
            "pull",
            "org/tiny-GGUF",
            "tiny-q8_0.gguf",
            "--revision",
            COMMIT,
            "--sha256",
            &g.sha(),
        ])
        .env_remove("HF_TOKEN")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(err(&o).contains("HF_TOKEN"), "{}", err(&o));
}

#[test]
fn bad_arguments_are_refused_before_any_request() {
    let f = Fixture::new();
    let sha = f.sha();
    let cases: [(&[&str], &str); 6] = [
        (
            &[
                "model",
                "pull",
                "org/../x",
                "a.gguf",
                "--revision",
                COMMIT,
                "--sha256",
                &sha,
            ],
            "repository id",
        ),
        (
            &[
                "model",
                "pull",
                "org/x",
                "../a.gguf",
                "--revision",
                COMMIT,
                "--sha256",
                &sha,
            ],
            "file name",
        ),
        (
            &[
                "model",
                "pull",
                "org/x",
                "a.bin",
                "--revision",
                COMMIT,
                "--sha256",
                &sha,
            ],
            ".gguf",
        ),
        (
            &[
                "model",
                "pull",
                "org/x",
                "a.gguf",
                "--revision",
                "a b",
                "--sha256",
                &sha,
            ],
            "revision",
        ),
        (
            &[
                "model",
                "pull",
                "org/x",
                "a.gguf",
                "--revision",
                COMMIT,
                "--sha256",
                &sha[1..],
            ],
            "64 hex digits",
        ),
        (
            &[
                "model",
                "pull",
                "org/x",
                "a.gguf",
                "--revision",
                COMMIT,
                "--sha256",
                &sha,
                "--tokenizer-repo",
                "other/tok",
            ],
            "--tokenizer-revision",
        ),
    ];
    for (args, want) in cases {
        let o = f.run(args);
        assert!(!o.status.success(), "{args:?}");
        assert!(err(&o).contains(want), "{args:?}: {}", err(&o));
    }
    let o = f
        .cmd(&[
            "model",
            "pull",
            "org/x",
            "a.gguf",
            "--revision",
            COMMIT,
            "--sha256",
            &sha,
        ])
        .env("HF_ENDPOINT", "ftp://hub")
        .output()
        .unwrap();
    assert!(err(&o).contains("HF_ENDPOINT"), "{}", err(&o));
    assert_eq!(f.requests(), 0);
}

#[test]
fn serve_without_network_names_the_command_and_the_files() {
    let f = Fixture::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = f
        .cmd(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .env("HF_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert!(!o.status.success(), "{o:?}");
    let e = err(&o);
    assert!(e.contains("medai model pull Qwen/Qwen2.5-0.5B-Instruct-GGUF qwen2.5-0.5b-instruct-q8_0.gguf --revision 9217f5db79a29953eb74d5343926648285ec7e67 --sha256 ca59ca7f13d0e15a8cfa77bd17e65d24f6844b554a7b6c12e07a5f89ff76844e --tokenizer-repo Qwen/Qwen2.5-0.5B-Instruct --tokenizer-file tokenizer.json --tokenizer-revision 7ae557604adf67be50417f59c2c2f167def9a775 --tokenizer-sha256 c0382117ea329cdf097041132f6d735924b697924d6f6fc3945713e96ce87539"), "{e}");
    assert!(e.contains("models--Qwen--Qwen2.5-0.5B-Instruct-GGUF/snapshots/9217f5db79a29953eb74d5343926648285ec7e67/qwen2.5-0.5b-instruct-q8_0.gguf"), "{e}");
    assert!(e.contains("683 MB"), "{e}");
    assert!(e.contains("--no-default-model"), "{e}");
    // Offline: the same advice, and no request anywhere.
    let o = f
        .cmd(&[
            "serve",
            "--offline",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(err(&o).contains("medai model pull Qwen/"), "{}", err(&o));
    assert_eq!(f.requests(), 0);
}

/// Reads stderr lines of a child until one contains `want` (or the child ends).
fn wait_for_line(child: &mut std::process::Child, want: &str) -> (bool, String) {
    use std::io::{BufRead as _, BufReader};
    let stderr = child.stderr.take().unwrap();
    let mut seen = String::new();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(want) {
            return (true, seen);
        }
    }
    (false, seen)
}

#[test]
fn model_server_role_serves_a_pulled_model_with_a_token() {
    let f = Fixture::new();
    let o = f.pull(&f.sha(), &["--id", "tiny"]);
    assert!(o.status.success(), "{o:?}");

    // No token, a weak token, an unknown model: refused before listening.
    let serve = [
        "serve",
        "--role",
        "model-server",
        "--model",
        "tiny",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
    ];
    let o = f.run(&serve);
    assert!(!o.status.success());
    assert!(err(&o).contains("MEDAI_MODEL_SERVER_TOKEN"), "{}", err(&o));
    let o = f
        .cmd(&serve)
        .env("MEDAI_MODEL_SERVER_TOKEN", "short")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(err(&o).contains("32 to 512"), "{}", err(&o));

    // A port for the server, found free just before.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let token = "k".repeat(40);
    let mut child = f
        .cmd(&[
            "serve",
            "--role",
            "model-server",
            "--model",
            "tiny",
            "--listen",
            &listen,
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .env("MEDAI_MODEL_SERVER_TOKEN", &token)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (ready, log) = wait_for_line(&mut child, "model loaded; ready");
    assert!(ready, "{log}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, body) = rt.block_on(async {
        let http = reqwest::Client::new();
        let r = http
            .get(format!("http://{listen}/readyz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let r = http
            .post(format!("http://{listen}/v1/chat/completions"))
            .bearer_auth(&token)
            .json(
                &serde_json::json!({"model": "tiny", "max_tokens": 5, "seed": 1,
                "messages": [{"role": "user", "content": "hello"}]}),
            )
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<serde_json::Value>().await.unwrap())
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["model"], "tiny");

    // The weights changed on disk: the model server refuses to load them.
    let path = f.snapshot("tiny-q8_0.gguf");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let o = f
        .cmd(&[
            "serve",
            "--role",
            "model-server",
            "--model",
            "tiny",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .env("MEDAI_MODEL_SERVER_TOKEN", &token)
        .output()
        .unwrap();
    assert!(!o.status.success(), "{o:?}");
    assert!(err(&o).contains("failed its hash check"), "{}", err(&o));
}
