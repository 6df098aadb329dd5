//! Encryption at rest seen from the API: tampered stored bytes give a generic 500, an audit
//! event and a metric, never data; the wrong key file refuses to start.

use crate::common::{setups, TestApp};
use medai_core::Role;
use reqwest::StatusCode;
use serde_json::Value;

async fn column(app: &TestApp, id: &str, column: &str) -> Vec<u8> {
    let mut c = app.state.store.pool().acquire().await.unwrap();
    let (v,): (Vec<u8>,) = sqlx::query_as(&format!("SELECT {column} FROM patients WHERE id = $1"))
        .bind(id)
        .fetch_one(&mut *c)
        .await
        .unwrap();
    v
}

async fn set_column(app: &TestApp, id: &str, column: &str, v: Vec<u8>) {
    let mut c = app.state.store.pool().acquire().await.unwrap();
    sqlx::query(&format!("UPDATE patients SET {column} = $1 WHERE id = $2"))
        .bind(v)
        .bind(id)
        .execute(&mut *c)
        .await
        .unwrap();
}

fn counter(metrics: &str, reason: &str) -> u64 {
    let prefix = format!("medai_phi_decrypt_failures_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn tampered_ciphertext_is_a_500_an_audit_event_and_a_metric() {
    for (kind, sessions) in setups() {
        let app = TestApp::start(kind, sessions).await;
        let admin = app.admin().await;
        let team = app.care_team(&admin, "cardiology").await;
        let doc = app.user(&admin, "doc", Role::Clinician, &[&team]).await;
        let pid = app.patient(&doc, "MRN-501", "Quimby", None).await;
        let get = || {
            doc.client
                .get(app.url(&format!("/api/v1/patients/{pid}")))
                .send()
        };
        assert_eq!(get().await.unwrap().status(), StatusCode::OK, "{kind:?}");

        let original = column(&app, &pid, "family_name_enc").await;
        let mut flipped = original.clone();
        flipped[20] ^= 0x40;
        set_column(&app, &pid, "family_name_enc", flipped).await;
        let r = get().await.unwrap();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR, "{kind:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "internal", "{body}");
        let list = doc
            .client
            .get(app.url("/api/v1/patients"))
            .send()
            .await
            .unwrap();
        assert_eq!(list.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let text = list.text().await.unwrap();
        assert!(
            !text.contains("Quimby") && !text.contains("MRN-501"),
            "{text}"
        );

        let events = app.audit("phi.decrypt_failed").await;
        assert_eq!(events.len(), 2, "{kind:?}");
        assert!(events
            .iter()
            .all(|e| e.event.patient_id.as_deref() == Some(pid.as_str())
                && e.event.actor_id.as_deref() == Some(doc.id.as_str())));
        assert!(events[0]
            .event
            .detail
            .as_deref()
            .unwrap()
            .contains("family_name"));
        // The failed read itself was not recorded as a successful read.
        assert_eq!(app.audit("patient.read").await.len(), 1);
        assert_eq!(counter(&app.metrics().await, "authentication"), 2);

        // A key version the server does not hold.
        let mut relabelled = original.clone();
        relabelled[1..5].copy_from_slice(&7u32.to_be_bytes());
        set_column(&app, &pid, "family_name_enc", relabelled).await;
        assert_eq!(
            get().await.unwrap().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(counter(&app.metrics().await, "missing_key_version"), 1);
        set_column(&app, &pid, "family_name_enc", original[..9].to_vec()).await;
        assert_eq!(
            get().await.unwrap().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(counter(&app.metrics().await, "malformed"), 1);

        set_column(&app, &pid, "family_name_enc", original).await;
        let ok: Value = get().await.unwrap().json().await.unwrap();
        assert_eq!(ok["family_name"], "Quimby");
    }
}

#[tokio::test]
async fn the_wrong_key_file_refuses_to_start_and_is_audited() {
    for (kind, sessions) in setups() {
        let app = TestApp::start(kind, sessions).await;
        let mut config = app.state.config.clone();
        config.data_dir = tempfile::tempdir().unwrap().keep();
        let err = medai_server::bootstrap::prepare(&config, 1_700_000_000)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("cannot unwrap the"), "{kind:?}: {err}");
        assert_eq!(
            app.audit("phi.key_unwrap_failed").await.len(),
            1,
            "{kind:?}"
        );
    }
}

async fn key_version(app: &TestApp, id: &str) -> i64 {
    let mut c = app.state.store.pool().acquire().await.unwrap();
    let (v,): (i64,) = sqlx::query_as("SELECT key_version FROM patients WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *c)
        .await
        .unwrap();
    v
}

#[tokio::test]
async fn a_rotation_by_another_process_takes_effect_for_the_running_server_at_once() {
    for (kind, sessions) in setups() {
        let app = TestApp::start(kind, sessions).await;
        let admin = app.admin().await;
        let team = app.care_team(&admin, "cardiology").await;
        let doc = app.user(&admin, "doc", Role::Clinician, &[&team]).await;
        let before = app.patient(&doc, "MRN-601", "Before", None).await;
        assert_eq!(key_version(&app, &before).await, 1, "{kind:?}");

        // What `medai keys rotate` does, from outside the server.
        let store = app.state.store.clone();
        let mut tx = store.begin().await.unwrap();
        let v = medai_store::phi_keys::rotate(&mut tx, &app.state.key, 5)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(v, 2);

        let after = app.patient(&doc, "MRN-602", "After", None).await;
        assert_eq!(
            key_version(&app, &after).await,
            2,
            "{kind:?}: new writes use the new key"
        );
        // What `medai keys reencrypt` does; the server reads the rows it rewrote.
        let mut c = store.pool().acquire().await.unwrap();
        let phi = medai_store::phi_keys::load_or_init(&mut c, &app.state.key, 5)
            .await
            .unwrap();
        assert_eq!(
            medai_store::patients::reencrypt(&mut c, &phi, 10)
                .await
                .unwrap(),
            1
        );
        drop(c);
        assert_eq!(key_version(&app, &before).await, 2);
        let got: Value = doc
            .client
            .get(app.url(&format!("/api/v1/patients/{before}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(got["family_name"], "Before");
        let list: Vec<Value> = doc
            .client
            .get(app.url("/api/v1/patients?name=fter"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["id"], after.as_str());
    }
}

#[tokio::test]
async fn a_new_key_the_provider_cannot_unwrap_is_a_500_an_audit_event_and_a_metric() {
    for (kind, sessions) in setups() {
        let app = TestApp::start(kind, sessions).await;
        let admin = app.admin().await;
        let team = app.care_team(&admin, "cardiology").await;
        let doc = app.user(&admin, "doc", Role::Clinician, &[&team]).await;
        let pid = app.patient(&doc, "MRN-611", "Keyless", None).await;
        // Another process adds a data key the configured provider cannot unwrap (as a KMS that
        // refuses or times out looks to the server): the reload fails.
        let store = app.state.store.clone();
        let mut c = store.pool().acquire().await.unwrap();
        sqlx::query(
            "INSERT INTO phi_keys (purpose, version, wrapped, provider, created_at) \
             VALUES ('data', 2, $1, 'local-file', 5)",
        )
        .bind(vec![1u8; 60])
        .execute(&mut *c)
        .await
        .unwrap();
        drop(c);
        let r = doc
            .client
            .get(app.url(&format!("/api/v1/patients/{pid}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR, "{kind:?}");
        let text = r.text().await.unwrap();
        assert!(
            !text.contains("Keyless") && !text.contains("MRN-611"),
            "{text}"
        );
        let events = app.audit("phi.key_unwrap_failed").await;
        assert_eq!(events.len(), 1, "{kind:?}");
        assert!(events[0]
            .event
            .detail
            .as_deref()
            .unwrap()
            .contains("local-file"));
        let metrics = app.metrics().await;
        assert!(
            metrics.contains("medai_phi_key_unwrap_failures_total{provider=\"local-file\"} 1"),
            "{metrics}"
        );
    }
}
