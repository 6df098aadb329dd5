//! The assistant's records over the API: conversations (scope, ownership, closing), feedback
//! (validation, replacement, safety overrides, per-model metrics), clinical notes, encryption
//! at rest of every text, and re-encryption after a key rotation.

use crate::common::{error_code, metric, setups, TestApp};
use medai_core::Role;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn raw(app: &TestApp, sql: &str, id: &str) -> Vec<u8> {
    let mut c = app.state.store.pool().acquire().await.unwrap();
    let (v,): (Vec<u8>,) = sqlx::query_as(sql)
        .bind(id)
        .fetch_one(&mut *c)
        .await
        .unwrap();
    v
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn detail_of(e: &medai_store::audit::StoredEvent) -> Value {
    serde_json::from_str(e.event.detail.as_deref().unwrap_or("{}")).unwrap()
}

#[tokio::test]
async fn conversations_are_scoped_owned_audited_and_encrypted() {
    for (kind, sessions) in setups() {
        let app = TestApp::start(kind, sessions).await;
        let admin = app.admin().await;
        let team = app.care_team(&admin, "cardiology").await;
        let other = app.care_team(&admin, "oncology").await;
        let doc = app.user(&admin, "doc", Role::Clinician, &[&team]).await;
        let colleague = app
            .user(&admin, "colleague", Role::Clinician, &[&team])
            .await;
        let nurse = app.user(&admin, "nurse", Role::Nurse, &[&team]).await;
        let outsider = app
            .user(&admin, "outsider", Role::Clinician, &[&other])
            .await;
        let pid = app.patient(&doc, "MRN-900", "Quimby", None).await;

        let title = "Quimby chest pain follow-up";
        let cid = app.conversation(&doc, &pid, title).await;
        let stored = raw(
            &app,
            "SELECT title_enc FROM conversations WHERE id = $1",
            &cid,
        )
        .await;
        assert!(
            !contains(&stored, "Quimby"),
            "{kind:?}: title stored in plaintext"
        );

        // Validation: empty, too long, control characters, unknown fields.
        for body in [
            json!({"title": "   "}),
            json!({"title": "x".repeat(201)}),
            json!({"title": "a\u{0007}b"}),
            json!({"title": "ok", "extra": 1}),
        ] {
            let r = doc
                .client
                .post(app.url(&format!("/api/v1/patients/{pid}/conversations")))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "{kind:?} {body}"
            );
        }

        // The care team reads it; the nurse cannot start one; an outsider is refused.
        let read = |c: &reqwest::Client| {
            c.get(app.url(&format!("/api/v1/conversations/{cid}")))
                .send()
        };
        let detail: Value = read(&colleague.client).await.unwrap().json().await.unwrap();
        assert_eq!(detail["conversation"]["title"], title, "{kind:?}");
        assert_eq!(detail["conversation"]["status"], "open");
        assert_eq!(detail["messages"], json!([]));
        assert_eq!(read(&nurse.client).await.unwrap().status(), StatusCode::OK);
        let r = nurse
            .client
            .post(app.url(&format!("/api/v1/patients/{pid}/conversations")))
            .json(&json!({"title": "nurse question"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{kind:?}");
        let (status, code) = error_code(read(&outsider.client).await.unwrap()).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::FORBIDDEN, "outside_care_team")
        );

        // Break-glass opens it, and the read is flagged in the audit log.
        let r = outsider
            .client
            .post(app.url(&format!("/api/v1/patients/{pid}/break-glass")))
            .json(&json!({"reason": "covering the emergency department tonight"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{kind:?}");
        assert_eq!(
            read(&outsider.client).await.unwrap().status(),
            StatusCode::OK
        );
        let reads = app.audit("conversation.read").await;
        let flagged = reads
            .iter()
            .filter(|e| detail_of(e)["break_glass"] == json!(true))
            .count();
        assert_eq!(flagged, 1, "{kind:?}");
        assert!(reads
            .iter()
            .all(|e| e.event.patient_id.as_deref() == Some(pid.as_str())));

        // Listing.
        let second = app.conversation(&colleague, &pid, "Anticoagulation").await;
        let list: Value = doc
            .client
            .get(app.url(&format!("/api/v1/patients/{pid}/conversations?limit=10")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ids: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), 2, "{kind:?}");
        assert!(ids.contains(&cid.as_str()) && ids.contains(&second.as_str()));
        let r = doc
            .client
            .get(app.url(&format!("/api/v1/patients/{pid}/conversations?limit=0")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);

        // Only the clinician who started it closes it; closing twice conflicts.
        let close = |c: &reqwest::Client| {
            c.post(app.url(&format!("/api/v1/conversations/{cid}/close")))
                .send()
        };
        let denied_before = app.audit("access.denied").await.len();
        let (status, code) = error_code(close(&colleague.client).await.unwrap()).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::FORBIDDEN, "not_your_conversation"),
            "{kind:?}"
        );
        assert_eq!(app.audit("access.denied").await.len(), denied_before + 1);
        let closed: Value = close(&doc.client).await.unwrap().json().await.unwrap();
        assert_eq!(closed["status"], "closed", "{kind:?}");
        assert!(closed["closed_at"].is_string());
        let (status, code) = error_code(close(&doc.client).await.unwrap()).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::CONFLICT, "conversation_closed")
        );
        assert_eq!(app.audit("conversation.close").await.len(), 1);
        assert_eq!(app.audit("conversation.create").await.len(), 2);

        // Unknown ids are 404 whatever the caller may see.
        let r = doc
            .client
            .get(app.url("/api/v1/conversations/no-such-conversation"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{kind:?}");
    }
}

#[tokio::test]
async fn feedback_is_validated_replaced_counted_and_unsafe_is_an_override() {
    for (kind, sessions) in setups() {
        let app = TestApp::start(kind, sessions).await;
        let admin = app.admin().await;
        let team = app.care_team(&admin, "cardiology").await;
        let doc = app.user(&admin, "doc", Role::Clinician, &[&team]).await;
        let peer = app.user(&admin, "peer", Role::Clinician, &[&team]).await;
        let pid = app.patient(&doc, "MRN-901", "Quimby", None).await;
        let cid = app.conversation(&doc, &pid, "Heart failure").await;
        let answer = app
            .stored_answer(&cid, "Consider an echocardiogram.", "qwen", "sha256:abc")
            .await;
        let put = |c: &reqwest::Client, id: &str, body: Value| {
            c.put(app.url(&format!("/api/v1/messages/{id}/feedback")))
                .json(&body)
                .send()
        };

        for body in [
            json!({}),
            json!({"comment": "only a comment"}),
            json!({"helpful": "yes"}),
            json!({"verdict": "great"}),
            json!({"verdict": "correct", "comment": "x".repeat(2001)}),
        ] {
            let r = put(&doc.client, &answer, body.clone()).await.unwrap();
            assert_eq!(
                r.status(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "{kind:?} {body}"
            );
        }
        assert_eq!(app.audit("answer.feedback").await.len(), 0, "{kind:?}");
        let r = put(
            &doc.client,
            "no-such-message",
            json!({"verdict": "correct"}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);

        let comment = "Missed Quimby's prior valve surgery";
        let r = put(
            &doc.client,
            &answer,
            json!({"helpful": "helpful", "verdict": "correct", "comment": comment}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{kind:?}");
        let fb: Value = r.json().await.unwrap();
        assert_eq!(fb["verdict"], "correct");
        let stored = raw(
            &app,
            "SELECT comment_enc FROM answer_feedback WHERE message_id = $1",
            &answer,
        )
        .await;
        assert!(
            !contains(&stored, "Quimby"),
            "{kind:?}: comment in plaintext"
        );
        let m = app.metrics().await;
        let acc = "medai_model_accuracy_ratio{model=\"qwen\",version=\"sha256:abc\"}";
        assert_eq!(metric(&m, acc), Some(1.0), "{kind:?}");

        // A second clinician judges it incorrect: accuracy halves.
        put(&peer.client, &answer, json!({"verdict": "incorrect"}))
            .await
            .unwrap();
        assert_eq!(metric(&app.metrics().await, acc), Some(0.5), "{kind:?}");

        // The first clinician changes their mind to unsafe: one override, counted once even if
        // submitted again, and the accuracy is recomputed from the replaced verdicts.
        for _ in 0..2 {
            let r = put(&doc.client, &answer, json!({"verdict": "unsafe"}))
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
        let m = app.metrics().await;
        assert_eq!(metric(&m, acc), Some(0.0), "{kind:?}");
        assert_eq!(
            metric(
                &m,
                "medai_safety_overrides_total{model=\"qwen\",version=\"sha256:abc\"}"
            ),
            Some(1.0),
            "{kind:?}"
        );
        assert_eq!(
            metric(
                &m,
                "medai_assistant_feedback_total{model=\"qwen\",version=\"sha256:abc\",judgement=\"unsafe\"}"
            ),
            Some(2.0)
        );
        let overrides = app.audit("safety.override").await;
        assert_eq!(overrides.len(), 1, "{kind:?}");
        assert_eq!(overrides[0].event.patient_id.as_deref(), Some(pid.as_str()));
        assert_eq!(app.audit("answer.feedback").await.len(), 4);

        // The conversation shows each user's current feedback; questions take none.
        let detail: Value = doc
            .client
            .get(app.url(&format!("/api/v1/conversations/{cid}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let fbs = detail["messages"][0]["feedback"].as_array().unwrap();
        assert_eq!(fbs.len(), 2, "{kind:?}");
        let mine = fbs.iter().find(|f| f["user_id"] == json!(doc.id)).unwrap();
        assert_eq!(mine["verdict"], "unsafe");
        assert_eq!(mine["helpful"], Value::Null, "replaced, not merged");
        assert_eq!(detail["messages"][0]["provenance"]["model"]["id"], "qwen");
    }
}

#[tokio::test]
async fn notes_are_encrypted_validated_and_tamper_evident() {
    for (kind, sessions) in setups() {
        let app = TestApp::start(kind, sessions).await;
        let admin = app.admin().await;
        let team = app.care_team(&admin, "cardiology").await;
        let doc = app.user(&admin, "doc", Role::Clinician, &[&team]).await;
        let nurse = app.user(&admin, "nurse", Role::Nurse, &[&team]).await;
        let pid = app.patient(&doc, "MRN-902", "Quimby", None).await;
        let post = |c: &reqwest::Client, text: &str| {
            c.post(app.url(&format!("/api/v1/patients/{pid}/notes")))
                .json(&json!({ "text": text }))
                .send()
        };
        let r = post(&doc.client, "Mr Quimby reports exertional chest pain.")
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{kind:?}");
        let first: Value = r.json().await.unwrap();
        app.clock.advance(60);
        let r = post(&nurse.client, "Obs stable overnight.").await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{kind:?}");
        for bad in ["", "  ", &"n".repeat(20_001)] {
            let r = post(&doc.client, bad).await.unwrap();
            assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{kind:?}");
        }
        let id = first["id"].as_str().unwrap().to_owned();
        let stored = raw(
            &app,
            "SELECT body_enc FROM patient_notes WHERE id = $1",
            &id,
        )
        .await;
        assert!(!contains(&stored, "Quimby"), "{kind:?}: note in plaintext");

        let list = || {
            doc.client
                .get(app.url(&format!("/api/v1/patients/{pid}/notes")))
                .send()
        };
        let notes: Value = list().await.unwrap().json().await.unwrap();
        let texts: Vec<&str> = notes
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            texts,
            [
                "Obs stable overnight.",
                "Mr Quimby reports exertional chest pain."
            ],
            "{kind:?}: newest first"
        );

        // A flipped byte is a 500, an audit event and a metric; nothing is returned.
        let mut flipped = stored.clone();
        flipped[20] ^= 0x01;
        let mut c = app.state.store.pool().acquire().await.unwrap();
        sqlx::query("UPDATE patient_notes SET body_enc = $1 WHERE id = $2")
            .bind(flipped)
            .bind(&id)
            .execute(&mut *c)
            .await
            .unwrap();
        drop(c);
        let r = list().await.unwrap();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR, "{kind:?}");
        let body = r.text().await.unwrap();
        assert!(
            !body.contains("Obs stable"),
            "{kind:?}: partial data returned"
        );
        assert_eq!(app.audit("phi.decrypt_failed").await.len(), 1);

        // A ciphertext copied from another row does not open either.
        let other: String = {
            let notes = app.audit("note.create").await;
            assert_eq!(notes.len(), 2);
            notes
                .iter()
                .map(|e| detail_of(e)["note_id"].as_str().unwrap().to_owned())
                .find(|n| *n != id)
                .unwrap()
        };
        let other_ct = raw(
            &app,
            "SELECT body_enc FROM patient_notes WHERE id = $1",
            &other,
        )
        .await;
        let mut c = app.state.store.pool().acquire().await.unwrap();
        sqlx::query("UPDATE patient_notes SET body_enc = $1 WHERE id = $2")
            .bind(other_ct)
            .bind(&id)
            .execute(&mut *c)
            .await
            .unwrap();
        drop(c);
        assert_eq!(
            list().await.unwrap().status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "{kind:?}"
        );
    }
}

#[tokio::test]
async fn rotation_and_reencryption_cover_the_assistant_tables() {
    for (kind, sessions) in setups() {
        let app = TestApp::start(kind, sessions).await;
        let admin = app.admin().await;
        let team = app.care_team(&admin, "cardiology").await;
        let doc = app.user(&admin, "doc", Role::Clinician, &[&team]).await;
        let pid = app.patient(&doc, "MRN-903", "Quimby", None).await;
        let cid = app.conversation(&doc, &pid, "Before rotation").await;
        let answer = app.stored_answer(&cid, "Old answer.", "m", "1").await;
        let r = doc
            .client
            .put(app.url(&format!("/api/v1/messages/{answer}/feedback")))
            .json(&json!({"verdict": "correct", "comment": "fine"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let r = doc
            .client
            .post(app.url(&format!("/api/v1/patients/{pid}/notes")))
            .json(&json!({"text": "Old note."}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);

        let mut c = app.state.store.pool().acquire().await.unwrap();
        let v2 = medai_store::phi_keys::rotate(&mut c, &*app.state.kek, app.state.now())
            .await
            .unwrap();
        let phi = medai_store::phi_keys::load_or_init(&mut c, &*app.state.kek, app.state.now())
            .await
            .unwrap();
        assert_eq!(phi.current_version(), Some(v2), "{kind:?}");
        assert_eq!(
            medai_store::conversations::rows_under_older_keys(&mut c, v2)
                .await
                .unwrap(),
            4,
            "{kind:?}: the title, the answer, the feedback and the note"
        );
        let mut total = 0;
        loop {
            let n = medai_store::conversations::reencrypt(&mut c, &phi, 2)
                .await
                .unwrap();
            if n == 0 {
                break;
            }
            total += n;
        }
        assert_eq!(total, 4, "{kind:?}");
        assert_eq!(
            medai_store::conversations::rows_under_older_keys(&mut c, v2)
                .await
                .unwrap(),
            0
        );
        let m = medai_store::conversations::messages(&mut c, &phi, &cid)
            .await
            .unwrap();
        assert_eq!(m[0].body, "Old answer.");
        let f = medai_store::conversations::feedback_in(&mut c, &phi, &cid)
            .await
            .unwrap();
        assert_eq!(f[0].comment.as_deref(), Some("fine"));
        drop(c);
        // The server's cached cipher picks up the new key and still reads everything.
        let detail: Value = doc
            .client
            .get(app.url(&format!("/api/v1/conversations/{cid}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            detail["conversation"]["title"], "Before rotation",
            "{kind:?}"
        );
    }
}
