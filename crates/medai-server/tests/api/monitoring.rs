//! Monitoring: the metric catalogue in `docs/metrics.md` matches what a real server exports
//! (names and types, both ways), label values never carry ids, and the monitoring gauges and
//! counters follow real events: sessions, failed logins per source, dependencies going away,
//! a model upstream going down, administrative changes, a PHI field that cannot be sealed.

use crate::common::{metric, setups, test_config, Sessions, TestApp, PASSWORD};
use axum::extract::State;
use axum::routing::{get, post};
use medai_core::Role;
use medai_store::DatabaseKind;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A small OpenAI-compatible upstream: `GET /v1/models` for the health probe and a streamed
/// answer; `down` makes both answer 503.
#[derive(Clone, Default)]
struct Upstream {
    down: Arc<AtomicBool>,
}

async fn models(State(up): State<Upstream>) -> axum::response::Response {
    use axum::response::IntoResponse;
    if up.down.load(Ordering::SeqCst) {
        return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    axum::Json(json!({"object": "list", "data": [{"id": "tiny-upstream", "object": "model"}]}))
        .into_response()
}

async fn completions(State(up): State<Upstream>) -> axum::response::Response {
    use axum::response::IntoResponse;
    if up.down.load(Ordering::SeqCst) {
        return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let mut out = String::new();
    for piece in ["Obtain an ECG. ", "I am not certain without it."] {
        let c = json!({"id": "c1", "object": "chat.completion.chunk", "model": "tiny-upstream-2025",
            "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]});
        out.push_str(&format!("data: {c}\n\n"));
    }
    let end = json!({"id": "c1", "object": "chat.completion.chunk", "model": "tiny-upstream-2025",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}});
    out.push_str(&format!("data: {end}\n\ndata: [DONE]\n\n"));
    (
        [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
        out,
    )
        .into_response()
}

async fn upstream() -> (Upstream, String) {
    let up = Upstream::default();
    let app = axum::Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(completions))
        .with_state(up.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (up, format!("http://{addr}"))
}

/// An address nothing listens on.
async fn closed_endpoint() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

fn model(id: &str, endpoint: &str) -> Value {
    json!({
        "id": id, "provider": "openai", "endpoint": endpoint, "model": "tiny-upstream",
        "context_window": 4096, "retry": {"max_retries": 0},
        "timeouts": {"connect": "1s"}
    })
}

/// `(name as scraped, type)` from the catalogue's table rows.
fn catalogue() -> BTreeMap<String, String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md");
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = BTreeMap::new();
    // The model server's metrics are exported by another process (`serve --role model-server`);
    // crates/medai-model-server/tests/serving.rs checks that section.
    let (app_part, _) = text.split_once("\n## Model server").unwrap_or((&text, ""));
    for line in app_part.lines() {
        let Some(rest) = line.strip_prefix("| `medai_") else {
            continue;
        };
        let cells: Vec<&str> = rest.split(" | ").collect();
        assert!(cells.len() >= 4, "malformed catalogue row: {line}");
        let name = format!("medai_{}", cells[0].trim_end_matches('`'));
        let kind = cells[1].trim().to_owned();
        assert!(
            ["counter", "gauge", "histogram"].contains(&kind.as_str()),
            "unknown type in {line}"
        );
        assert!(
            kind != "counter" || name.ends_with("_total"),
            "a counter is listed with its _total suffix: {line}"
        );
        assert!(
            out.insert(name.clone(), kind).is_none(),
            "{name} is listed twice"
        );
    }
    out
}

/// `(name as scraped, type)` from the `# TYPE` lines (counters get their `_total` suffix).
fn exported(exposition: &str) -> BTreeMap<String, String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            let name = if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_owned()
            };
            (name, kind.to_owned())
        })
        .collect()
}

/// Every label value of every sample.
fn label_values(exposition: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let (Some(open), Some(close)) = (line.find('{'), line.rfind('}')) else {
            continue;
        };
        let mut rest = &line[open + 1..close];
        while let Some(start) = rest.find("=\"") {
            let after = &rest[start + 2..];
            let end = after.find('"').unwrap();
            out.push(after[..end].to_owned());
            rest = &after[end + 1..];
        }
    }
    out
}

fn looks_like_an_id(v: &str) -> bool {
    let hex_uuid = v.len() == 36
        && v.chars().filter(|c| *c == '-').count() == 4
        && v.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    let address = v.parse::<std::net::IpAddr>().is_ok();
    hex_uuid || address || v.contains('@')
}

async fn wait_for(app: &TestApp, sample: &str, want: f64) -> String {
    for _ in 0..100 {
        let m = app.metrics().await;
        if metric(&m, sample) == Some(want) {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{sample} never became {want}:\n{}",
        app.metrics()
            .await
            .lines()
            .filter(|l| l.starts_with(sample.split('{').next().unwrap()))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test]
async fn the_catalogue_matches_the_exposition_and_labels_carry_no_ids() {
    let (_up, endpoint) = upstream().await;
    let mut config = test_config();
    config.llm = Some(json!({
        "default_model": "tiny", "health_interval_secs": 1,
        "models": [model("tiny", &endpoint)]
    }));
    let app = TestApp::start_with(DatabaseKind::Sqlite, Sessions::Memory, config).await;
    let admin = app.admin().await;
    let team = app.care_team(&admin, "cardiology").await;
    let doc = app.user(&admin, "doc", Role::Clinician, &[&team]).await;
    let svc = app.user(&admin, "ingest", Role::Service, &[]).await;
    let patient = app.patient(&doc, "MRN-7", "Okonkwo", None).await;
    let conversation = app.conversation(&doc, &patient, "Chest pain").await;
    let r = doc
        .client
        .post(app.url(&format!("/api/v1/conversations/{conversation}/messages")))
        .json(&json!({"text": "Chest pain for an hour; what next?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.text().await.unwrap();
    assert!(body.contains("event: done"), "{body}");
    // A refusal, a failed login and a token round trip.
    let r = doc
        .client
        .get(app.url("/api/v1/users"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = crate::common::client()
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"username": "doc", "password": "wrong password entirely"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = admin
        .client
        .post(app.url("/api/v1/tokens"))
        .json(&json!({"user_id": svc.id, "name": "ingest"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let token_id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = admin
        .client
        .delete(app.url(&format!("/api/v1/tokens/{token_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = admin
        .client
        .delete(app.url(&format!("/api/v1/care-teams/{team}/members/{}", doc.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = admin
        .client
        .post(app.url(&format!("/api/v1/users/{}/reset-mfa", doc.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = admin
        .client
        .post(app.url(&format!("/api/v1/users/{}/disable", doc.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let m = wait_for(&app, "medai_llm_upstream_up{model=\"tiny\"}", 1.0).await;

    // Names and types, both ways.
    let documented = catalogue();
    let live = exported(&m);
    for (name, kind) in &live {
        assert_eq!(
            documented.get(name),
            Some(kind),
            "{name} ({kind}) is exported but not catalogued as such in docs/metrics.md"
        );
    }
    for (name, kind) in &documented {
        assert_eq!(
            live.get(name),
            Some(kind),
            "docs/metrics.md lists {name} ({kind}) but the server does not export it"
        );
    }
    assert!(live.len() >= 40, "{}", live.len());

    // No label value is an id, an address or a name the test used.
    let ids = [
        &admin.id,
        &doc.id,
        &svc.id,
        &patient,
        &conversation,
        &token_id,
    ];
    for v in label_values(&m) {
        assert!(!looks_like_an_id(&v), "label value {v:?} looks like an id");
        for id in ids {
            assert_ne!(&v, id);
        }
        for name in [
            "root-admin",
            "doc",
            "ingest",
            "Okonkwo",
            "MRN-7",
            "cardiology",
        ] {
            assert_ne!(v, name, "a label carries {name}");
        }
    }

    // The administrative changes, each counted once (users: doc and ingest).
    for (kind, n) in [
        ("user_created", 2.0),
        ("care_team_created", 1.0),
        ("care_team_member_added", 1.0),
        ("care_team_member_removed", 1.0),
        ("token_created", 1.0),
        ("token_revoked", 1.0),
        ("mfa_reset", 1.0),
        ("user_disabled", 1.0),
    ] {
        assert_eq!(
            metric(&m, &format!("medai_admin_changes_total{{kind=\"{kind}\"}}")),
            Some(n),
            "{kind}"
        );
    }
    // The model version that answered, the configuration digest, key ages within a minute of
    // the keys created at start and the default 90-day rotation period.
    assert_eq!(
        metric(
            &m,
            "medai_model_version_info{model=\"tiny\",version=\"tiny-upstream-2025\"}"
        ),
        Some(1.0)
    );
    let digest = medai_server::monitor::config_digest(&app.state.config);
    assert_eq!(
        metric(&m, &format!("medai_config_info{{digest=\"{digest}\"}}")),
        Some(1.0)
    );
    for purpose in ["phi-data", "phi-blind-index", "audit-signing"] {
        let age = metric(
            &m,
            &format!("medai_key_age_seconds{{purpose=\"{purpose}\"}}"),
        )
        .unwrap_or_else(|| panic!("no key age for {purpose}"));
        // Keys made at start-up; the test clock advances at each sign-in, so allow minutes.
        assert!((0.0..=600.0).contains(&age), "{purpose}: {age}");
        assert_eq!(
            metric(
                &m,
                &format!("medai_key_rotation_period_seconds{{purpose=\"{purpose}\"}}")
            ),
            Some(90.0 * 24.0 * 3600.0)
        );
    }
    // The key age follows the clock: a day on the (manual) clock is exactly a day more of age.
    let before = metric(&m, "medai_key_age_seconds{purpose=\"phi-data\"}").unwrap();
    app.clock.advance(86_400);
    let m = app.metrics().await;
    let age = metric(&m, "medai_key_age_seconds{purpose=\"phi-data\"}").unwrap();
    assert_eq!(age - before, 86_400.0, "{before} -> {age}");
    assert!(m.contains("le=\"2.0\""), "the 2 s bucket is missing");
}

#[tokio::test]
async fn active_sessions_follow_logins_logouts_and_idle_time() {
    for (kind, sessions) in setups() {
        let app = TestApp::start(kind, sessions).await;
        let m = app.metrics().await;
        assert_eq!(metric(&m, "medai_active_sessions"), Some(0.0), "{kind:?}");
        let admin = app.admin().await;
        let m = app.metrics().await;
        assert_eq!(metric(&m, "medai_active_sessions"), Some(1.0), "{kind:?}");
        let nurse = app.user(&admin, "nurse", Role::Nurse, &[]).await;
        // A password step without the second factor is not a session yet.
        let half = crate::common::client();
        let r = half
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"username": "nurse", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let m = app.metrics().await;
        assert_eq!(metric(&m, "medai_active_sessions"), Some(2.0), "{kind:?}");
        let r = nurse
            .client
            .post(app.url("/api/v1/auth/logout"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{:?}", r.status());
        let m = app.metrics().await;
        assert_eq!(metric(&m, "medai_active_sessions"), Some(1.0), "{kind:?}");
        // Past the idle timeout the remaining session no longer counts.
        app.clock
            .advance(app.state.config.auth.session_idle_timeout.as_secs() as i64 + 1);
        let m = app.metrics().await;
        assert_eq!(metric(&m, "medai_active_sessions"), Some(0.0), "{kind:?}");
    }
}

#[tokio::test]
async fn failed_logins_from_one_source_raise_the_per_source_maximum() {
    for (kind, sessions) in setups() {
        let app = TestApp::start(kind, sessions).await;
        let m = app.metrics().await;
        assert_eq!(metric(&m, "medai_login_failures_max_per_source"), Some(0.0));
        let c = crate::common::client();
        for (i, user) in ["a-user", "b-user", "c-user"].iter().enumerate() {
            let r = c
                .post(app.url("/api/v1/auth/login"))
                .json(&json!({"username": user, "password": "not the password at all"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{kind:?}");
            let m = app.metrics().await;
            assert_eq!(
                metric(&m, "medai_login_failures_max_per_source"),
                Some(i as f64 + 1.0),
                "{kind:?}"
            );
        }
        // The address throttle's window passes: the maximum falls back to 0.
        app.clock
            .advance(app.state.config.auth.ip_throttle.window.as_secs() as i64);
        let m = app.metrics().await;
        assert_eq!(
            metric(&m, "medai_login_failures_max_per_source"),
            Some(0.0),
            "{kind:?}"
        );
        assert!(!m.contains("127.0.0.1"));
    }
}

/// A private Redis server on a free port, stopped on drop.
struct RedisServer {
    child: std::process::Child,
    url: String,
}

impl RedisServer {
    async fn start() -> Option<Self> {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let url = format!("redis://127.0.0.1:{port}");
        for _ in 0..50 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Some(Self { child, url });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn dependency_up_drops_when_the_database_or_redis_goes_away() {
    let app = TestApp::start(DatabaseKind::Sqlite, Sessions::Memory).await;
    let m = app.metrics().await;
    assert_eq!(
        metric(&m, "medai_dependency_up{dependency=\"database\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "medai_dependency_up{dependency=\"session_store\"}"),
        Some(1.0)
    );
    app.state.store.close().await;
    let started = std::time::Instant::now();
    let m = app.metrics().await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        metric(&m, "medai_dependency_up{dependency=\"database\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric(&m, "medai_dependency_up{dependency=\"session_store\"}"),
        Some(1.0)
    );

    // A Redis session store that stops.
    let Some(mut redis) = RedisServer::start().await else {
        eprintln!("redis-server is not installed; skipping the Redis half");
        return;
    };
    let db = Arc::new(
        medai_store::testkit::fresh_database(DatabaseKind::Sqlite)
            .await
            .unwrap(),
    );
    let mut config = test_config();
    config.data_dir = tempfile::tempdir().unwrap().keep();
    config.database_url = Some(db.url.clone().into());
    let clock = medai_core::ManualClock::new(1_800_000_000);
    let prepared = medai_server::bootstrap::prepare(&config, 1_800_000_000)
        .await
        .unwrap();
    let ephemeral = medai_store::ephemeral::Ephemeral::redis(&redis.url, None, "mon:")
        .await
        .unwrap();
    let state = medai_server::bootstrap::state_with(
        config,
        prepared.store,
        prepared.key,
        ephemeral,
        Arc::new(clock),
    )
    .unwrap();
    let running = medai_server::serve::start(state).await.unwrap();
    let scrape = || async {
        reqwest::get(format!("http://{}/metrics", running.metrics_addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let m = scrape().await;
    assert_eq!(
        metric(&m, "medai_dependency_up{dependency=\"session_store\"}"),
        Some(1.0)
    );
    redis.stop();
    let started = std::time::Instant::now();
    let m = scrape().await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        metric(&m, "medai_dependency_up{dependency=\"session_store\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric(&m, "medai_dependency_up{dependency=\"database\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn upstream_up_follows_the_background_probe() {
    let (up, endpoint) = upstream().await;
    let mut config = test_config();
    config.llm = Some(json!({
        "default_model": "tiny", "health_interval_secs": 1,
        "models": [model("tiny", &endpoint), model("gone", &closed_endpoint().await)]
    }));
    let app = TestApp::start_with(DatabaseKind::Sqlite, Sessions::Memory, config).await;
    let m = wait_for(&app, "medai_llm_upstream_up{model=\"tiny\"}", 1.0).await;
    assert_eq!(
        metric(&m, "medai_llm_upstream_up{model=\"gone\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric(&m, "medai_llm_circuit_state{model=\"gone\"}"),
        Some(0.0)
    );
    up.down.store(true, Ordering::SeqCst);
    wait_for(&app, "medai_llm_upstream_up{model=\"tiny\"}", 0.0).await;
    up.down.store(false, Ordering::SeqCst);
    wait_for(&app, "medai_llm_upstream_up{model=\"tiny\"}", 1.0).await;
}

#[test]
fn the_probe_interval_is_validated() {
    for (v, ok) in [
        (0, false),
        (1, true),
        (30, true),
        (3600, true),
        (3601, false),
    ] {
        let cfg: medai_llm::LlmConfig = serde_json::from_value(json!({
            "default_model": "tiny", "health_interval_secs": v,
            "models": [model("tiny", "http://127.0.0.1:9")]
        }))
        .unwrap();
        let r = cfg.validate();
        assert_eq!(r.is_ok(), ok, "{v}: {r:?}");
        if !ok {
            assert_eq!(r.unwrap_err().key, "llm.health_interval_secs");
        }
    }
}

#[tokio::test]
async fn a_phi_field_that_cannot_be_sealed_is_counted() {
    // The key ring in memory has lost its data keys (and the database holds none to reload).
    let db = Arc::new(
        medai_store::testkit::fresh_database(DatabaseKind::Sqlite)
            .await
            .unwrap(),
    );
    let mut config = test_config();
    config.data_dir = tempfile::tempdir().unwrap().keep();
    config.database_url = Some(db.url.clone().into());
    let now = medai_core::Clock::now(&medai_core::SystemClock);
    let mut prepared = medai_server::bootstrap::prepare(&config, now)
        .await
        .unwrap();
    let setup = prepared.setup_url.clone().unwrap();
    {
        let mut c = prepared.store.pool().acquire().await.unwrap();
        sqlx::query("DELETE FROM phi_keys WHERE purpose = 'data'")
            .execute(&mut *c)
            .await
            .unwrap();
    }
    prepared.key.phi = medai_store::phi_keys::PhiCipher::new(
        medai_crypto::envelope::KeyRing::default(),
        medai_crypto::envelope::BlindIndexKey::generate(),
    );
    let clock = medai_core::ManualClock::new(now);
    let state = medai_server::bootstrap::state_with(
        config,
        prepared.store,
        prepared.key,
        medai_store::ephemeral::Ephemeral::memory(),
        Arc::new(clock.clone()),
    )
    .unwrap();
    let running = medai_server::serve::start(state.clone()).await.unwrap();
    let app = TestApp {
        base: format!("http://{}", running.addr),
        metrics_base: format!("http://{}", running.metrics_addr),
        state,
        clock,
        setup_token: Some(setup.split_once("token=").unwrap().1.to_owned()),
        running: Some(running),
        db,
        redis_prefix: String::new(),
    };
    let admin = app.admin().await;
    let team = app.care_team(&admin, "ward").await;
    let doc = app.user(&admin, "doc", Role::Clinician, &[&team]).await;
    let r = doc
        .client
        .post(app.url("/api/v1/patients"))
        .json(
            &json!({"mrn": "MRN-1", "given_name": "A", "family_name": "B",
            "date_of_birth": "1970-01-01", "sex": "female"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = r.text().await.unwrap();
    assert!(!body.contains("MRN-1"), "{body}");
    let m = app.metrics().await;
    assert_eq!(
        metric(
            &m,
            "medai_phi_encrypt_failures_total{reason=\"no_data_key\"}"
        ),
        Some(1.0)
    );
}
