//! Bad input gets a clear 4xx JSON error and changes nothing.

use crate::common::*;
use medai_core::Role;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn malformed_oversized_unknown_and_mistyped_bodies_are_refused() {
    for (kind, sessions) in setups() {
        let app = TestApp::start(kind, sessions).await;
        let admin = app.admin().await;
        let team = app.care_team(&admin, "t").await;
        let doc = app.user(&admin, "doc", Role::Clinician, &[&team]).await;
        let pid = app.patient(&doc, "MRN-1", "Original", None).await;
        let url = app.url(&format!("/api/v1/patients/{pid}"));
        let audit_before = app.audit("patient.update").await.len();
        let raw = |body: Vec<u8>, ct: &'static str| {
            doc.client
                .put(url.clone())
                .header("content-type", ct)
                .body(body)
                .send()
        };

        let cases: Vec<(Vec<u8>, &str, StatusCode, &str)> = vec![
            (b"{\"mrn\": ".to_vec(), "application/json", StatusCode::BAD_REQUEST, "malformed_json"),
            (b"{\"mrn\": \"a\",".to_vec(), "application/json", StatusCode::BAD_REQUEST, "malformed_json"),
            (vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}'], "application/json", StatusCode::BAD_REQUEST, "malformed_json"),
            (
                serde_json::to_vec(&json!({"mrn": "MRN-1", "given_name": "A", "family_name": "B", "date_of_birth": "1970-03-04", "sex": "female", "is_admin": true})).unwrap(),
                "application/json",
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
            ),
            (serde_json::to_vec(&json!({"mrn": 5})).unwrap(), "application/json", StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
            (b"mrn=MRN-1".to_vec(), "application/x-www-form-urlencoded", StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            (b"{}".to_vec(), "text/plain", StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            (
                format!("{{\"mrn\": \"{}\"}}", "x".repeat(70 * 1024)).into_bytes(),
                "application/json",
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
            ),
        ];
        for (body, ct, status, code) in cases {
            let r = raw(body, ct).await.unwrap();
            let rid = r
                .headers()
                .get("x-request-id")
                .map(|v| v.to_str().unwrap().to_owned());
            let got_status = r.status();
            let v: Value = r.json().await.unwrap();
            assert_eq!(
                (got_status, v["error"]["code"].as_str().unwrap()),
                (status, code),
                "{kind:?} {ct}: {v}"
            );
            assert!(v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
            assert_eq!(
                v["error"]["request_id"].as_str(),
                rid.as_deref(),
                "error carries the request id"
            );
        }
        // Nothing changed.
        let p: Value = doc
            .client
            .get(url.clone())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(p["family_name"], "Original");
        assert_eq!(app.audit("patient.update").await.len(), audit_before);

        // Unknown routes and methods answer JSON too.
        let (s, code) = doc.client.get(app.url("/api/v1/nope")).error_of().await;
        assert_eq!((s, code.as_str()), (StatusCode::NOT_FOUND, "no_route"));
        let (s, code) = doc
            .client
            .delete(app.url("/api/v1/patients"))
            .error_of()
            .await;
        assert_eq!(
            (s, code.as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
        );
        let (s, _) = doc
            .client
            .get(app.url("/api/v1/patients/does-not-exist"))
            .error_of()
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn forged_expired_and_malformed_credentials_are_refused() {
    for (kind, sessions) in setups() {
        let app = TestApp::start(kind, sessions).await;
        let admin = app.admin().await;
        let plain = reqwest::Client::new();
        let users = app.url("/api/v1/users");
        for cookie in [
            "medai_session=forged",
            "medai_session=",
            "medai_session=a;b",
            "other=1",
            "medai_session=\u{7f}",
        ] {
            let r = plain.get(&users).header("cookie", cookie).send().await;
            if let Ok(r) = r {
                assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{kind:?} {cookie}");
                let v: Value = r.json().await.unwrap();
                assert!(v["error"]["code"].is_string());
            }
        }
        for auth in [
            "Bearer medai_forged",
            "Bearer ",
            "Basic YWRtaW46YWRtaW4=",
            "Bearer medai_\u{e9}",
        ] {
            if let Ok(r) = plain.get(&users).header("authorization", auth).send().await {
                assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{auth}");
            }
        }
        // A session cookie replayed after logout is dead.
        let c = app.login("root-admin", PASSWORD, &admin.secret).await;
        let cookie_header = {
            let jar_url: reqwest::Url = app.url("/").parse().unwrap();
            let _ = jar_url;
            // Capture the cookie by signing in with a raw client.
            let raw = reqwest::Client::new();
            app.next_totp_step();
            let r = raw
                .post(app.url("/api/v1/auth/login"))
                .json(&json!({"username": "root-admin", "password": PASSWORD}))
                .send()
                .await
                .unwrap();
            let pending = r.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned();
            let r = raw
                .post(app.url("/api/v1/auth/totp"))
                .header("cookie", &pending)
                .json(&json!({"code": app.code(&admin.secret)}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let full = r.headers()["set-cookie"].to_str().unwrap().to_owned();
            assert!(
                full.contains("HttpOnly") && full.contains("SameSite=Strict"),
                "{full}"
            );
            assert!(!full.contains("Secure"), "plain http test server");
            // The pending cookie is not the session cookie (fixation).
            let full = full.split(';').next().unwrap().to_owned();
            assert_ne!(full, pending);
            assert_eq!(
                plain
                    .get(&users)
                    .header("cookie", &pending)
                    .status_of()
                    .await,
                StatusCode::UNAUTHORIZED
            );
            full
        };
        assert_eq!(
            plain
                .get(&users)
                .header("cookie", &cookie_header)
                .status_of()
                .await,
            StatusCode::OK
        );
        assert_eq!(
            plain
                .post(app.url("/api/v1/auth/logout"))
                .header("cookie", &cookie_header)
                .status_of()
                .await,
            StatusCode::NO_CONTENT
        );
        let (s, code) = plain
            .get(&users)
            .header("cookie", &cookie_header)
            .error_of()
            .await;
        assert_eq!(
            (s, code.as_str()),
            (StatusCode::UNAUTHORIZED, "session_expired")
        );
        drop(c);
    }
}
