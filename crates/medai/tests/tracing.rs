//! Tracing with `medai serve` as a process: with `telemetry.otlp_endpoint` set, each request's
//! span reaches an OTLP/HTTP collector (started here; it decodes the protobuf), continuing the
//! caller's W3C `traceparent`; every log line inside a request carries the trace id, in JSON
//! and in text, with export on or off.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test"
)]
#![cfg(unix)]

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";

/// Spans (with their resource's service name) posted to `/v1/traces`.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

async fn traces(
    axum::extract::State(c): axum::extract::State<Collector>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    assert_eq!(headers["content-type"], "application/x-protobuf");
    let req = ExportTraceServiceRequest::decode(body).unwrap();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|a| a.key == "service.name")
            .and_then(|a| a.value.as_ref())
            .map(|v| format!("{:?}", v.value))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for span in ss.spans {
                c.spans.lock().unwrap().push((service.clone(), span));
            }
        }
    }
    axum::http::StatusCode::OK
}

async fn collector() -> (Collector, String) {
    let c = Collector::default();
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(traces))
        .with_state(c.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (c, format!("http://{addr}"))
}

struct Serve {
    child: Child,
    lines: mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

impl Serve {
    fn start(format: &str, endpoint: Option<&str>) -> (Serve, String) {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_medai"));
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .args(["--data-dir", dir.path().join("data").to_str().unwrap()])
        .env_remove("MEDAI_CONFIG")
        .env_remove("MEDAI_DATABASE_URL")
        .env_remove("MEDAI_REDIS_URL")
        // no [llm]: serve without fetching the default model (no network in tests)
        .env("MEDAI_NO_DEFAULT_MODEL", "true")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env("MEDAI_LOG_FORMAT", format)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        if let Some(e) = endpoint {
            cmd.env("MEDAI_TELEMETRY__OTLP_ENDPOINT", e);
        }
        let mut child = cmd.spawn().unwrap();
        let (tx, lines) = mpsc::channel::<String>();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(strip_ansi(&line)).is_err() {
                    break;
                }
            }
        });
        let mut serve = Serve {
            child,
            lines,
            _dir: dir,
        };
        let line = serve.next_containing("medai serving");
        let addr = line
            .split("addr")
            .nth(1)
            .unwrap()
            .trim_start_matches(['"', ':', '='])
            .split(['"', ' ', ','])
            .next()
            .unwrap()
            .to_owned();
        (serve, addr)
    }

    fn next_containing(&mut self, want: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .expect("medai serve went quiet");
            if line.contains(want) {
                return line;
            }
        }
    }

    fn stop(&mut self) {
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn get(addr: &str, path: &str, traceparent: Option<&str>) {
    let mut r = reqwest::Client::new().get(format!("http://{addr}{path}"));
    if let Some(tp) = traceparent {
        r = r.header("traceparent", tp);
    }
    assert_eq!(r.send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_reach_the_collector_and_json_logs_carry_the_trace_id() {
    let (collector, endpoint) = collector().await;
    let (mut serve, addr) = Serve::start("json", Some(&endpoint));
    let traceparent = format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01");
    get(&addr, "/healthz", Some(&traceparent)).await;
    let access = serve.next_containing("\"message\":\"request\"");
    let v: serde_json::Value = serde_json::from_str(&access).unwrap();
    assert_eq!(v["span"]["trace_id"], TRACE_ID, "{access}");
    assert_eq!(v["route"], "/healthz");

    // A request without a traceparent starts its own trace, exported with the id it logged.
    get(&addr, "/readyz", None).await;
    let access = serve.next_containing("\"route\":\"/readyz\"");
    let v: serde_json::Value = serde_json::from_str(&access).unwrap();
    let own = v["span"]["trace_id"].as_str().unwrap().to_owned();
    assert_eq!(own.len(), 32);
    assert_ne!(own, TRACE_ID);

    let find = |trace: &str| {
        collector
            .spans
            .lock()
            .unwrap()
            .iter()
            .find(|(_, s)| hex(&s.trace_id) == trace)
            .cloned()
    };
    let mut found = None;
    for _ in 0..100 {
        if let (Some(a), Some(b)) = (find(TRACE_ID), find(&own)) {
            found = Some((a, b));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ((service, continued), (_, fresh)) = found.expect("the spans never reached the collector");
    assert!(service.contains("medai"), "{service}");
    assert_eq!(continued.name, "GET /healthz");
    assert_eq!(hex(&continued.parent_span_id), PARENT_SPAN_ID);
    assert_eq!(continued.kind, 2, "a server span");
    assert_eq!(fresh.name, "GET /readyz");
    assert!(fresh.parent_span_id.is_empty());
    serve.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_carry_the_trace_id_with_export_off() {
    let (mut serve, addr) = Serve::start("text", None);
    let traceparent = format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01");
    get(&addr, "/healthz", Some(&traceparent)).await;
    let line = serve.next_containing("route=/healthz");
    assert!(line.contains(&format!("trace_id={TRACE_ID}")), "{line}");
    // A malformed traceparent is ignored: the request gets a fresh id.
    get(&addr, "/readyz", Some("00-zz-yy-01")).await;
    let line = serve.next_containing("route=/readyz");
    let id = line
        .split("trace_id=")
        .nth(1)
        .unwrap()
        .split([' ', '}', ':'])
        .next()
        .unwrap();
    assert_eq!(id.len(), 32, "{line}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(id, TRACE_ID);
    serve.stop();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The line without terminal colour sequences (`ESC [ … m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
