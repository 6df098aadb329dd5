//! Serving: health, readiness, metrics on the internal listener only, OpenAPI, security headers,
//! TLS 1.3, graceful shutdown, and refusing a schema that is ahead.

use crate::common::*;
use medai_core::config::{TlsConfig, TlsVersion};
use medai_server::bootstrap;
use medai_store::testkit::fresh_database;
use medai_store::DatabaseKind;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[tokio::test]
async fn health_readiness_metrics_and_openapi() {
    for (kind, sessions) in setups() {
        let app = TestApp::start(kind, sessions).await;
        let r = reqwest::get(app.url("/healthz")).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        for h in [
            "x-content-type-options",
            "x-frame-options",
            "content-security-policy",
            "referrer-policy",
            "x-request-id",
        ] {
            assert!(r.headers().contains_key(h), "missing {h}");
        }
        assert!(!r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("unsafe-inline"));
        let r = reqwest::get(app.url("/readyz")).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["checks"]["migrations"], "current");

        let _ = reqwest::get(app.url("/api/v1/patients/abc")).await.unwrap();
        let m = app.metrics().await;
        assert!(m.contains("medai_http_requests_total{route=\"/api/v1/patients/{id}\",method=\"GET\",status=\"401\"} 1"), "{m}");
        assert!(m.contains("medai_http_request_duration_seconds_count{route=\"/healthz\",method=\"GET\",status=\"200\"} 1"), "{m}");
        assert!(m.contains("medai_build_info"));
        // (a substring check would trip over hex digests such as medai_config_info's)
        assert!(
            !m.contains("\"abc\"") && !m.contains("/abc"),
            "ids never become labels"
        );
        // /metrics is not on the public listener.
        assert_eq!(
            reqwest::get(app.url("/metrics")).await.unwrap().status(),
            StatusCode::NOT_FOUND
        );

        let doc: Value = reqwest::get(app.url("/api/v1/openapi.json"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        assert!(doc["paths"]["/api/v1/patients/{id}"]["get"].is_object());
        assert!(doc["components"]["securitySchemes"]["session"].is_object());

        // Readiness fails when the database is gone.
        app.state.store.close().await;
        assert_eq!(
            reqwest::get(app.url("/readyz")).await.unwrap().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}

#[tokio::test]
async fn serve_refuses_a_database_migrated_by_a_newer_release() {
    for kind in medai_store::testkit::backends() {
        let db = fresh_database(kind).await.unwrap();
        let mut config = test_config();
        config.data_dir = tempfile::tempdir().unwrap().keep();
        config.database_url = Some(db.url.clone().into());
        let prepared = bootstrap::prepare(&config, 1_700_000_000).await.unwrap();
        assert!(prepared.migrated && prepared.key_created && prepared.setup_url.is_some());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(bootstrap::key_path(&config))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        sqlx_insert_future_migration(&prepared.store).await;
        prepared.store.close().await;
        let err = bootstrap::prepare(&config, 1_700_000_000)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("ahead"), "{kind:?}: {err}");
        let _ = DatabaseKind::Sqlite;
    }
}

async fn sqlx_insert_future_migration(store: &medai_store::Store) {
    let mut tx = store.begin().await.unwrap();
    medai_store::testkit::insert_fake_migration(&mut tx, 99_991_231_000_000)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let app = TestApp::start(DatabaseKind::Sqlite, Sessions::Memory).await;
    let addr = app.running.as_ref().unwrap().addr;
    let body =
        serde_json::to_vec(&json!({"username": "someone", "password": "some password here"}))
            .unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body[..5]).await.unwrap();
    s.flush().await.unwrap();
    // Make sure the server has accepted the connection and is reading the body.
    let probe = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(probe.status(), StatusCode::OK);
    app.running
        .as_ref()
        .unwrap()
        .shutdown(std::time::Duration::from_secs(10));
    // The in-flight request still completes.
    s.write_all(&body[5..]).await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    assert!(resp.contains("invalid_credentials"));
    let running = {
        let mut app = app;
        app.running.take().unwrap()
    };
    running.wait().await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections after shutdown"
    );
}

#[tokio::test]
async fn tls_listener_speaks_tls13_only_unless_configured() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    for min in [TlsVersion::Tls13, TlsVersion::Tls12] {
        let mut config = test_config();
        config.tls = Some(TlsConfig {
            cert_path: cert_path.clone(),
            key_path: key_path.clone(),
            min_version: min,
        });
        let app = TestApp::start_with(DatabaseKind::Sqlite, Sessions::Memory, config).await;
        let port = app.running.as_ref().unwrap().addr.port();
        let url = format!("https://localhost:{port}/healthz");
        let ca = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
        let tls13 = reqwest::Client::builder()
            .add_root_certificate(ca.clone())
            .use_rustls_tls()
            .min_tls_version(reqwest::tls::Version::TLS_1_3)
            .build()
            .unwrap();
        assert_eq!(tls13.get(&url).status_of().await, StatusCode::OK);
        let tls12 = reqwest::Client::builder()
            .add_root_certificate(ca)
            .use_rustls_tls()
            .max_tls_version(reqwest::tls::Version::TLS_1_2)
            .build()
            .unwrap();
        let r = tls12.get(&url).send().await;
        match min {
            TlsVersion::Tls13 => assert!(r.is_err(), "TLS 1.2 must be refused"),
            TlsVersion::Tls12 => assert_eq!(r.unwrap().status(), StatusCode::OK),
        }
        // Cookies are Secure over TLS; HSTS is sent.
        let r = tls13.get(&url).send().await.unwrap();
        assert!(r.headers().contains_key("strict-transport-security"));
        assert!(app.state.config.secure_cookies());
    }
    let mut bad = test_config();
    bad.tls = Some(TlsConfig {
        cert_path: dir.path().join("missing.pem"),
        key_path,
        min_version: TlsVersion::Tls13,
    });
    let db = fresh_database(DatabaseKind::Sqlite).await.unwrap();
    bad.data_dir = tempfile::tempdir().unwrap().keep();
    bad.database_url = Some(db.url.clone().into());
    let prepared = bootstrap::prepare(&bad, 1).await.unwrap();
    let state = bootstrap::state_with(
        bad,
        prepared.store,
        prepared.key,
        medai_store::ephemeral::Ephemeral::memory(),
        std::sync::Arc::new(medai_core::SystemClock),
    )
    .unwrap();
    let err = medai_server::serve::start(state)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("missing.pem"), "{err}");
}
