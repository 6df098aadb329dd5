//! The tamper-evident audit log through the API: every path that audits (logins, patient
//! reads and writes, admin actions, refusals) produces leaves that verify; compliance officers
//! read events with filters and a cursor, and the log's status; reading is itself audited.

use crate::common::{client, error_code, setups, TestApp};
use medai_core::{Clock as _, Role};
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn every_audited_path_yields_verifiable_leaves_and_officers_can_page_and_filter() {
    for (kind, sessions) in setups() {
        // Checkpoints only when this test asks (the background one signs once, at start).
        let mut config = crate::common::test_config();
        config.audit.checkpoint_interval = std::time::Duration::from_secs(3600);
        let app = TestApp::start_with(kind, sessions, config).await;
        let admin = app.admin().await;
        let team = app.care_team(&admin, "cardiology").await;
        let doc = app.user(&admin, "doc", Role::Clinician, &[&team]).await;
        let officer = app.user(&admin, "olga", Role::ComplianceOfficer, &[]).await;
        let pid = app.patient(&doc, "MRN-1", "Alpha", None).await;
        for _ in 0..3 {
            let s = doc
                .client
                .get(app.url(&format!("/api/v1/patients/{pid}")))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(s, StatusCode::OK);
        }
        // A refusal (the admin may not read clinical content) and a failed login.
        let s = admin
            .client
            .get(app.url(&format!("/api/v1/patients/{pid}")))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(s, StatusCode::FORBIDDEN);
        let s = client()
            .post(app.url("/api/v1/auth/login"))
            .json(&serde_json::json!({"username": "doc", "password": "wrong-password-123"}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(s, StatusCode::UNAUTHORIZED);

        // Seal and verify: every event so far is a leaf, and the tree matches its checkpoint.
        let cp = app
            .state
            .audit
            .checkpoint(app.clock.now())
            .await
            .unwrap()
            .unwrap();
        let report = app.state.audit.verify(app.clock.now()).await.unwrap();
        assert!(report.ok(), "{kind:?}: {:?}", report.findings);
        assert_eq!(report.tree_size, cp.size);
        assert!(cp.size >= 10, "{kind:?}: {}", cp.size);
        let files =
            medai_server::audit_log::read_checkpoint_dir(app.state.audit.checkpoint_dir()).unwrap();
        assert!(
            files.iter().any(|(_, note)| note == &cp.note),
            "written to the checkpoint directory"
        );

        // Filters and cursor pagination.
        let page: Value = officer
            .client
            .get(app.url(&format!(
                "/api/v1/audit/events?patient={pid}&action=patient.read&limit=2"
            )))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let events = page["events"].as_array().unwrap();
        assert_eq!(events.len(), 2, "{kind:?} {page}");
        assert!(events
            .iter()
            .all(|e| e["patient_id"] == pid.as_str() && e["action"] == "patient.read"));
        let cursor = page["next_cursor"].as_i64().unwrap();
        let rest: Value = officer
            .client
            .get(app.url(&format!(
                "/api/v1/audit/events?patient={pid}&action=patient.read&limit=2&cursor={cursor}"
            )))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(rest["events"].as_array().unwrap().len(), 1);
        assert!(rest["next_cursor"].is_null());
        let denied: Value = officer
            .client
            .get(app.url("/api/v1/audit/events?outcome=denied&since=2000-01-01T00:00:00Z"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(denied["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["outcome"] == "denied"));
        assert!(!denied["events"].as_array().unwrap().is_empty());
        let none: Value = officer
            .client
            .get(app.url("/api/v1/audit/events?until=2000-01-01T00:00:00Z"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(none["events"].as_array().unwrap().is_empty());
        for bad in ["outcome=maybe", "since=yesterday", "limit=0", "colour=red"] {
            let r = officer
                .client
                .get(app.url(&format!("/api/v1/audit/events?{bad}")))
                .send()
                .await
                .unwrap();
            let (s, code) = error_code(r).await;
            assert_eq!(
                (s, code.as_str()),
                (StatusCode::BAD_REQUEST, "invalid_query"),
                "{bad}"
            );
        }

        // Status: head, last checkpoint, last verification; reading it is audited.
        let st: Value = officer
            .client
            .get(app.url("/api/v1/audit/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(st["tree_size"].as_u64().unwrap() >= cp.size);
        assert_eq!(st["last_checkpoint"]["note"], cp.note.as_str());
        assert_eq!(st["last_verification"]["ok"], true);
        assert!(st["public_key"]
            .as_str()
            .unwrap()
            .starts_with("medai.local/audit+"));
        assert!(!app.audit("audit.read").await.is_empty());
        assert_eq!(app.audit("audit.status.read").await.len(), 1);

        let m = app.metrics().await;
        assert!(m.contains("medai_audit_verification_ok 1"), "{m}");
        let signed: u64 = m
            .lines()
            .find_map(|l| l.strip_prefix("medai_audit_checkpoints_total "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(signed >= 1, "{m}");
        assert!(m.contains("medai_audit_events_appended_total"));

        // Everything read above was itself audited and verifies too.
        app.state.audit.checkpoint(app.clock.now()).await.unwrap();
        assert!(app.state.audit.verify(app.clock.now()).await.unwrap().ok());
    }
}

#[tokio::test]
async fn service_tokens_read_the_audit_log_only_with_the_audit_scope() {
    let (kind, sessions) = setups().into_iter().next_back().unwrap();
    let app = TestApp::start(kind, sessions).await;
    let admin = app.admin().await;
    let siem = app.user(&admin, "siem", Role::Service, &[]).await;
    let token = |scopes: Value| {
        let (c, url, id) = (
            admin.client.clone(),
            app.url("/api/v1/tokens"),
            siem.id.clone(),
        );
        async move {
            let r = c
                .post(url)
                .json(&serde_json::json!({"user_id": id, "name": "SIEM export", "scopes": scopes}))
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let (s, scoped) = token(serde_json::json!(["audit.read"])).await;
    assert_eq!(s, StatusCode::CREATED, "{scoped}");
    let (s, plain) = token(serde_json::json!([])).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, body) = token(serde_json::json!(["patient.read"])).await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "only audit.read is grantable: {body}"
    );

    let get = |tok: String, path: &'static str| {
        let url = app.url(path);
        async move {
            client()
                .get(url)
                .bearer_auth(tok)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let scoped = scoped["token"].as_str().unwrap().to_owned();
    let plain = plain["token"].as_str().unwrap().to_owned();
    assert_eq!(
        get(scoped.clone(), "/api/v1/audit/events").await,
        StatusCode::OK
    );
    assert_eq!(
        get(scoped.clone(), "/api/v1/audit/status").await,
        StatusCode::OK
    );
    assert_eq!(
        get(plain.clone(), "/api/v1/audit/events").await,
        StatusCode::FORBIDDEN
    );
    // The scope grants audit reading, nothing else.
    assert_eq!(
        get(scoped, "/api/v1/break-glass").await,
        StatusCode::FORBIDDEN
    );
    let reads = app.audit("audit.read").await;
    assert!(reads
        .iter()
        .any(|e| e.event.actor_id.as_deref() == Some(siem.id.as_str())));
}

#[tokio::test]
async fn checkpoints_of_a_retired_key_verify_once_its_public_key_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let old = medai_audit::CheckpointSigner::generate("medai.local/audit").unwrap();
    let pub_file = dir.path().join("retired.pub");
    std::fs::write(&pub_file, old.verifier_key()).unwrap();
    for configured in [false, true] {
        let mut config = crate::common::test_config();
        if configured {
            config.audit.retired_public_keys = vec![pub_file.clone()];
        }
        let app = TestApp::start_with(
            medai_store::DatabaseKind::Sqlite,
            crate::common::Sessions::Memory,
            config,
        )
        .await;
        // A checkpoint signed before the rotation, with the old key, kept in the sink.
        medai_store::audit_log::integrate_all(&app.state.store)
            .await
            .unwrap();
        let mut c = app.state.store.pool().acquire().await.unwrap();
        let size = medai_store::audit_log::tree_size(&mut c).await.unwrap();
        let root = medai_store::audit_log::stored_frontier(&mut c, size)
            .await
            .unwrap()
            .root();
        drop(c);
        let cp = old.sign(size, root).unwrap();
        std::fs::create_dir_all(app.state.audit.checkpoint_dir()).unwrap();
        std::fs::write(
            app.state
                .audit
                .checkpoint_dir()
                .join("checkpoint-retired.txt"),
            cp.note,
        )
        .unwrap();
        let r = app.state.audit.verify(app.clock.now()).await.unwrap();
        assert_eq!(r.ok(), configured, "{:?}", r.findings);
    }
    let mut bad = crate::common::test_config();
    bad.audit.retired_public_keys = vec![dir.path().join("missing.pub")];
    bad.data_dir = dir.path().join("data");
    let db = medai_store::testkit::fresh_database(medai_store::DatabaseKind::Sqlite)
        .await
        .unwrap();
    bad.database_url = Some(db.url.clone().into());
    let prepared = medai_server::bootstrap::prepare(&bad, 1).await.unwrap();
    let err = medai_server::bootstrap::state_with(
        bad,
        prepared.store,
        prepared.key,
        medai_store::ephemeral::Ephemeral::memory(),
        std::sync::Arc::new(medai_core::SystemClock),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("audit.retired_public_keys"), "{err}");
}

/// Checkpoints reach an S3 bucket with Object Lock (moto's server, `MEDAI_TEST_MOTO_SERVER`)
/// instead of the directory; verification reads them back from it; a sink that fails is
/// counted in `medai_audit_log_errors_total` and never costs the database checkpoint.
#[tokio::test]
async fn checkpoints_go_to_an_object_locked_bucket_and_a_failing_sink_loses_nothing() {
    use medai_kms::sink::s3::S3Sink;
    use medai_kms::sink::CheckpointSink as _;
    let Ok(moto) = std::env::var("MEDAI_TEST_MOTO_SERVER") else {
        eprintln!("MEDAI_TEST_MOTO_SERVER is not set: skipping the S3 checkpoint sink test");
        return;
    };
    let creds = || medai_kms::aws::StaticCredentials {
        access_key_id: "testing".into(),
        secret_access_key: "testing".to_owned().into(),
    };
    let bucket = format!(
        "medai-api-{}",
        medai_store::testkit::unique_prefix()
            .trim_start_matches("medai-test:")
            .trim_end_matches(':')
    );
    let cfg = |endpoint: &str| medai_core::config::S3SinkConfig {
        bucket: bucket.clone(),
        region: Some("us-east-1".into()),
        endpoint: Some(endpoint.into()),
        force_path_style: true,
        retention_days: 1,
        ..Default::default()
    };
    let timeout = std::time::Duration::from_secs(5);
    let good = S3Sink::connect(&cfg(&moto), timeout, Some(creds()))
        .await
        .unwrap();
    good.client()
        .create_bucket()
        .bucket(&bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    good.check_lock().await.unwrap();
    let broken = S3Sink::connect(
        &cfg("http://127.0.0.1:9"),
        std::time::Duration::from_millis(300),
        Some(creds()),
    )
    .await
    .unwrap();
    let good = std::sync::Arc::new(good);
    let objects: Vec<std::sync::Arc<dyn medai_kms::sink::CheckpointSink>> =
        vec![good.clone(), std::sync::Arc::new(broken)];
    let mut config = crate::common::test_config();
    config.audit.checkpoint_interval = std::time::Duration::from_secs(3600);
    let app = TestApp::start_with_sinks(
        medai_store::DatabaseKind::Sqlite,
        crate::common::Sessions::Memory,
        config,
        false,
        objects,
    )
    .await;
    let _admin = app.admin().await;
    let errors = |m: &str| crate::common::metric(m, "medai_audit_log_errors_total").unwrap_or(0.0);
    let before = errors(&app.metrics().await);

    // The broken sink fails the call, but the checkpoint is in the database and the bucket.
    let e = app
        .state
        .audit
        .checkpoint(app.clock.now())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(&format!("s3://{bucket}/")), "{e}");
    assert_eq!(errors(&app.metrics().await), before + 1.0);
    let mut c = app.state.store.pool().acquire().await.unwrap();
    let stored = medai_store::audit_log::latest_checkpoint(&mut c)
        .await
        .unwrap()
        .unwrap();
    drop(c);
    let in_bucket = good.read_all().await.unwrap();
    assert!(
        in_bucket.iter().any(|(_, n)| n == &stored.note),
        "{in_bucket:?}"
    );
    // The directory sink is off.
    assert!(!app.state.audit.checkpoint_dir().exists());

    // Verification reads the bucket back: honest, it verifies; a forged object there is found.
    let report = app.state.audit.verify(app.clock.now()).await.unwrap();
    assert!(report.ok(), "{:?}", report.findings);
    good.put(stored.tree_size + 1000, "not a signed checkpoint\n")
        .await
        .unwrap();
    let report = app.state.audit.verify(app.clock.now()).await.unwrap();
    assert!(
        !report.ok(),
        "a forged checkpoint in the bucket went unnoticed"
    );
}
