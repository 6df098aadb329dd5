//! The user journeys: first-run setup, MFA login, care-team scope, break-glass, sessions,
//! throttling, service tokens.

use crate::common::*;
use medai_core::audit::Outcome;
use medai_core::identity::TotpSecret;
use medai_core::Role;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn first_run_setup_then_admin_login_with_totp_and_recovery_codes() {
    for (kind, sessions) in setups() {
        let app = TestApp::start(kind, sessions).await;
        let token = app.setup_token.clone().unwrap();
        let c = client();
        let start = |body: Value| {
            c.post(app.url("/api/v1/enrolment/start"))
                .json(&body)
                .send()
        };

        // Weak passwords and bad usernames are refused, nothing is created.
        let (s, code) = error_code(
            start(json!({"token": token, "username": "root-admin", "password": "short"}))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (s, code.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "weak_password"),
            "{kind:?}"
        );
        let (_, code) = error_code(start(json!({"token": token, "username": "root-admin", "password": "my root-admin password"})).await.unwrap()).await;
        assert_eq!(code, "weak_password");
        let (_, code) = error_code(
            start(json!({"token": token, "username": "Root Admin", "password": PASSWORD}))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(code, "bad_username");
        let (s, code) = error_code(
            start(json!({"token": "forged", "username": "x-admin", "password": PASSWORD}))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (s, code.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_link")
        );

        // Step one, then a wrong code, then the right one.
        let r = start(json!({"token": token, "username": "root-admin", "password": PASSWORD}))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let ch: Value = r.json().await.unwrap();
        assert!(ch["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/medai:root-admin?"));
        let secret = secret_from_base32(ch["totp_secret"].as_str().unwrap());
        let finish = |code: String| {
            c.post(app.url("/api/v1/enrolment/finish"))
                .json(&json!({"token": token, "code": code}))
                .send()
        };
        let wrong = if app.code(&secret) == "000000" {
            "111111"
        } else {
            "000000"
        };
        let (s, code) = error_code(finish(wrong.into()).await.unwrap()).await;
        assert_eq!(
            (s, code.as_str()),
            (StatusCode::UNAUTHORIZED, "invalid_code")
        );
        let r = finish(app.code(&secret)).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let done: Value = r.json().await.unwrap();
        let codes: Vec<String> = done["recovery_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().into())
            .collect();
        assert_eq!(codes.len(), 10);
        // The link is single-use.
        let (s, code) = error_code(finish(app.code(&secret)).await.unwrap()).await;
        assert_eq!(
            (s, code.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_link")
        );
        app.next_totp_step();

        // Password alone grants nothing.
        let admin = client();
        let r = admin
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"username": "root-admin", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let step: Value = r.json().await.unwrap();
        assert_eq!(step["mfa_required"], true);
        let (s, code) = admin.get(app.url("/api/v1/users")).error_of().await;
        assert_eq!(
            (s, code.as_str()),
            (StatusCode::UNAUTHORIZED, "mfa_required")
        );
        let r = admin
            .post(app.url("/api/v1/auth/totp"))
            .json(&json!({"code": app.code(&secret)}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let info: Value = r.json().await.unwrap();
        assert_eq!(info["role"], "admin");
        assert_eq!(
            admin.get(app.url("/api/v1/users")).status_of().await,
            StatusCode::OK
        );

        // The same code cannot be used again, even for a fresh password step.
        let again = client();
        again
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"username": "root-admin", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        let (s, code) = again
            .post(app.url("/api/v1/auth/totp"))
            .json(&json!({"code": app.code(&secret)}))
            .error_of()
            .await;
        assert_eq!(
            (s, code.as_str()),
            (StatusCode::UNAUTHORIZED, "code_already_used")
        );

        // A recovery code works once.
        let rc = |code: String| {
            again
                .post(app.url("/api/v1/auth/recovery"))
                .json(&json!({"code": code}))
                .send()
        };
        let r = rc(codes[0].to_uppercase()).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.json::<Value>().await.unwrap()["recovery_codes_left"], 9);
        let third = client();
        third
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"username": "root-admin", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        let (s, code) = third
            .post(app.url("/api/v1/auth/recovery"))
            .json(&json!({"code": codes[0]}))
            .error_of()
            .await;
        assert_eq!(
            (s, code.as_str()),
            (StatusCode::UNAUTHORIZED, "invalid_code")
        );

        // Login and MFA events are in the audit log.
        assert!(app
            .audit("auth.login")
            .await
            .iter()
            .any(|e| e.event.outcome == Outcome::Success));
        assert!(app
            .audit("auth.mfa")
            .await
            .iter()
            .any(|e| e.event.outcome == Outcome::Failure));
        assert_eq!(
            app.audit("user.enrol")
                .await
                .iter()
                .filter(|e| e.event.outcome == Outcome::Success)
                .count(),
            1
        );
    }
}

#[tokio::test]
async fn unknown_user_and_wrong_password_get_the_same_answer() {
    for (kind, sessions) in setups() {
        let app = TestApp::start(kind, sessions).await;
        let _admin = app.admin().await;
        let c = client();
        let a = c
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"username": "root-admin", "password": "wrong password!!"}))
            .send()
            .await
            .unwrap();
        let b = c
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"username": "nobody-here", "password": "wrong password!!"}))
            .send()
            .await
            .unwrap();
        assert_eq!(a.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(b.status(), StatusCode::UNAUTHORIZED);
        let mut va: Value = a.json().await.unwrap();
        let mut vb: Value = b.json().await.unwrap();
        va["error"]["request_id"] = Value::Null;
        vb["error"]["request_id"] = Value::Null;
        assert_eq!(va, vb, "{kind:?}");
        assert_eq!(va["error"]["code"], "invalid_credentials");
    }
}

#[tokio::test]
async fn clinician_sees_only_their_care_team_and_breaks_glass_with_a_reason() {
    for (kind, sessions) in setups() {
        let app = TestApp::start(kind, sessions).await;
        let admin = app.admin().await;
        let cardio = app.care_team(&admin, "cardiology").await;
        let onco = app.care_team(&admin, "oncology").await;
        let alice = app.user(&admin, "alice", Role::Clinician, &[&cardio]).await;
        let bob = app.user(&admin, "bob", Role::Clinician, &[&onco]).await;
        let nina = app.user(&admin, "nina", Role::Nurse, &[&cardio]).await;
        let compliance = app
            .user(&admin, "carla", Role::ComplianceOfficer, &[])
            .await;

        let own = app.patient(&alice, "MRN-100", "Alpha", None).await;
        let foreign = app.patient(&bob, "MRN-200", "Bravo", None).await;

        // Lists are scoped.
        let list: Vec<Value> = alice
            .client
            .get(app.url("/api/v1/patients"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list.len(), 1, "{kind:?}");
        assert_eq!(list[0]["id"], own.as_str());
        let list: Vec<Value> = nina
            .client
            .get(app.url("/api/v1/patients?name=alp"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list.len(), 1);
        let list: Vec<Value> = bob
            .client
            .get(app.url("/api/v1/patients?mrn=MRN-100"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(list.is_empty());

        // Reading outside the care team is refused and audited.
        let r = alice
            .client
            .get(app.url(&format!("/api/v1/patients/{foreign}")))
            .send()
            .await
            .unwrap();
        let (s, code) = error_code(r).await;
        assert_eq!(
            (s, code.as_str()),
            (StatusCode::FORBIDDEN, "outside_care_team")
        );
        let denied = app.audit("access.denied").await;
        assert!(denied
            .iter()
            .any(|e| e.event.patient_id.as_deref() == Some(foreign.as_str())
                && e.event.actor_id.as_deref() == Some(alice.id.as_str())));
        // Nurses cannot break glass.
        let bg = format!("/api/v1/patients/{foreign}/break-glass");
        assert_eq!(
            nina.client
                .post(app.url(&bg))
                .json(&json!({"reason": "patient collapsed in corridor"}))
                .status_of()
                .await,
            StatusCode::FORBIDDEN
        );
        // A reason is required.
        let (s, code) = alice
            .client
            .post(app.url(&bg))
            .json(&json!({"reason": "x"}))
            .error_of()
            .await;
        assert_eq!(
            (s, code.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "reason_required")
        );
        // Not needed on one's own patient.
        let (s, _) = alice
            .client
            .post(app.url(&format!("/api/v1/patients/{own}/break-glass")))
            .json(&json!({"reason": "emergency in the ward"}))
            .error_of()
            .await;
        assert_eq!(s, StatusCode::CONFLICT);

        let r = alice
            .client
            .post(app.url(&bg))
            .json(&json!({"reason": "patient unconscious in ED, no team reachable"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let grant: Value = r.json().await.unwrap();
        assert_eq!(grant["expires_in"], 3600);
        assert!(grant["notice"].as_str().unwrap().contains("recorded"));
        let r = alice
            .client
            .get(app.url(&format!("/api/v1/patients/{foreign}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.json::<Value>().await.unwrap()["family_name"], "Bravo");
        let reads = app.audit("patient.read").await;
        let read = reads
            .iter()
            .find(|e| e.event.patient_id.as_deref() == Some(foreign.as_str()))
            .unwrap();
        assert!(read
            .event
            .detail
            .as_deref()
            .unwrap()
            .contains("\"break_glass\":true"));
        assert!(app
            .metrics()
            .await
            .contains("medai_break_glass_grants_total 1"));

        // Compliance sees the grant; clinicians do not see the review list.
        let grants: Vec<Value> = compliance
            .client
            .get(app.url("/api/v1/break-glass"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(grants.len(), 1);
        assert_eq!(grants[0]["user_id"], alice.id.as_str());
        assert_eq!(
            alice
                .client
                .get(app.url("/api/v1/break-glass"))
                .status_of()
                .await,
            StatusCode::FORBIDDEN
        );

        // The grant ends after an hour (keep the session alive meanwhile).
        for _ in 0..6 {
            app.clock.advance(10 * 60);
            for who in [&alice, &admin, &nina] {
                me(&app, &who.client).await;
            }
        }
        app.clock.advance(60);
        assert_eq!(
            alice
                .client
                .get(app.url(&format!("/api/v1/patients/{foreign}")))
                .status_of()
                .await,
            StatusCode::FORBIDDEN
        );

        // Admins manage care teams but cannot read clinical content.
        assert_eq!(
            admin
                .client
                .get(app.url(&format!("/api/v1/patients/{own}")))
                .status_of()
                .await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            admin
                .client
                .put(app.url(&format!("/api/v1/patients/{foreign}/care-teams")))
                .json(&json!({"care_team_ids": [cardio, onco]}))
                .status_of()
                .await,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            nina.client
                .get(app.url(&format!("/api/v1/patients/{foreign}")))
                .status_of()
                .await,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn patient_search_update_and_validation() {
    for (kind, sessions) in setups() {
        let app = TestApp::start(kind, sessions).await;
        let admin = app.admin().await;
        let team = app.care_team(&admin, "ward-7").await;
        let doc = app.user(&admin, "doc", Role::Clinician, &[&team]).await;
        let p = app
            .patient(&doc, "MRN-1", "García", Some(vec![team.clone()]))
            .await;
        app.patient(&doc, "MRN-2", "Smith", None).await;
        let q = |s: &str| {
            doc.client
                .get(app.url(&format!("/api/v1/patients?{s}")))
                .send()
        };
        let list: Vec<Value> = q("name=garc").await.unwrap().json().await.unwrap();
        assert_eq!(list.len(), 1, "{kind:?}");
        let list: Vec<Value> = q("date_of_birth=1970-03-04&sex=female")
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list.len(), 2);
        let list: Vec<Value> = q("sex=male").await.unwrap().json().await.unwrap();
        assert!(list.is_empty());
        assert_eq!(
            q("limit=1000").await.unwrap().status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            q("sex=robot").await.unwrap().status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            q("date_of_birth=yesterday").await.unwrap().status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            q("colour=blue").await.unwrap().status(),
            StatusCode::BAD_REQUEST
        );

        let put = |body: Value| {
            doc.client
                .put(app.url(&format!("/api/v1/patients/{p}")))
                .json(&body)
                .send()
        };
        let r = put(json!({"mrn": "MRN-1", "given_name": "Ana", "family_name": "García López", "date_of_birth": "1970-03-04", "sex": "female"})).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.json::<Value>().await.unwrap()["family_name"],
            "García López"
        );
        let (s, code) = error_code(put(json!({"mrn": "MRN-2", "given_name": "Ana", "family_name": "X", "date_of_birth": "1970-03-04", "sex": "female"})).await.unwrap()).await;
        assert_eq!((s, code.as_str()), (StatusCode::CONFLICT, "mrn_taken"));
        let (s, _) = error_code(put(json!({"mrn": "MRN-1", "given_name": "Ana", "family_name": "X", "date_of_birth": "2999-01-01", "sex": "female"})).await.unwrap()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        let (s, _) = error_code(put(json!({"mrn": "MRN 1", "given_name": "Ana", "family_name": "X", "date_of_birth": "1970-03-04", "sex": "female"})).await.unwrap()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            app.audit("patient.update").await.len(),
            1,
            "failed updates change nothing"
        );
        // Registering on someone else's team is refused.
        let other = app.care_team(&admin, "ward-8").await;
        assert_eq!(doc.client.post(app.url("/api/v1/patients")).json(&json!({"mrn": "MRN-3", "given_name": "A", "family_name": "B", "date_of_birth": "1970-03-04", "sex": "male", "care_team_ids": [other]})).status_of().await, StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn sessions_end_when_idle_too_old_logged_out_or_revoked() {
    for (kind, sessions) in setups() {
        let app = TestApp::start(kind, sessions).await;
        let admin = app.admin().await;
        let team = app.care_team(&admin, "t").await;
        let doc = app.user(&admin, "doc", Role::Clinician, &[&team]).await;

        // Idle for 15 minutes: logged off, and the end is audited.
        // (signing in may have moved the clock up to 30 s to the next TOTP step)
        app.clock.advance(14 * 60);
        me(&app, &doc.client).await;
        app.clock.advance(15 * 60);
        let (s, code) = doc
            .client
            .get(app.url("/api/v1/auth/session"))
            .error_of()
            .await;
        assert_eq!(
            (s, code.as_str()),
            (StatusCode::UNAUTHORIZED, "session_expired"),
            "{kind:?}"
        );
        assert!(app.audit("session.end").await.iter().any(|e| e
            .event
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("idle_timeout")));

        // Active for 12 hours: logged off anyway.
        app.next_totp_step();
        let c = app.login("doc", PASSWORD, &doc.secret).await;
        for _ in 0..(12 * 60 / 14) {
            app.clock.advance(14 * 60);
            me(&app, &c).await;
        }
        app.clock.advance(14 * 60);
        let (s, _) = c.get(app.url("/api/v1/auth/session")).error_of().await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);

        // Logout revokes the session.
        app.next_totp_step();
        let c = app.login("doc", PASSWORD, &doc.secret).await;
        assert_eq!(
            c.post(app.url("/api/v1/auth/logout")).status_of().await,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            c.get(app.url("/api/v1/auth/session")).status_of().await,
            StatusCode::UNAUTHORIZED
        );

        // A password change ends every session of the user.
        app.next_totp_step();
        let a = app.login("doc", PASSWORD, &doc.secret).await;
        app.next_totp_step();
        let b = app.login("doc", PASSWORD, &doc.secret).await;
        assert_eq!(a.post(app.url("/api/v1/auth/password")).json(&json!({"current_password": "wrong wrong wrong", "new_password": "another long passphrase"})).status_of().await, StatusCode::UNAUTHORIZED);
        assert_eq!(
            a.post(app.url("/api/v1/auth/password"))
                .json(&json!({"current_password": PASSWORD, "new_password": "doc1234567890"}))
                .status_of()
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "contains the username"
        );
        assert_eq!(a
            .post(app.url("/api/v1/auth/password"))
            .json(&json!({"current_password": PASSWORD, "new_password": "another long passphrase"})).status_of().await, StatusCode::NO_CONTENT);
        assert_eq!(
            a.get(app.url("/api/v1/auth/session")).status_of().await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            b.get(app.url("/api/v1/auth/session")).status_of().await,
            StatusCode::UNAUTHORIZED
        );
        app.next_totp_step();
        let c = app
            .login("doc", "another long passphrase", &doc.secret)
            .await;

        // Resetting MFA ends sessions and the user re-enrols through the new link. (The admin's
        // session ended with the clock's twelve hours; sign in again.)
        app.next_totp_step();
        let admin = Actor {
            client: app.login("root-admin", PASSWORD, &admin.secret).await,
            id: admin.id.clone(),
            secret: admin.secret.clone(),
        };
        let r = admin
            .client
            .post(app.url(&format!("/api/v1/users/{}/reset-mfa", doc.id)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let url = r.json::<Value>().await.unwrap()["enrolment_url"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            c.get(app.url("/api/v1/auth/session")).status_of().await,
            StatusCode::UNAUTHORIZED
        );
        let (secret, _) = app
            .enrol(
                url.split_once("token=").unwrap().1,
                None,
                "a third long passphrase",
            )
            .await;
        let c = app.login("doc", "a third long passphrase", &secret).await;

        // Disabling ends sessions and refuses new logins with the generic error.
        assert_eq!(
            admin
                .client
                .post(app.url(&format!("/api/v1/users/{}/disable", doc.id)))
                .status_of()
                .await,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            c.get(app.url("/api/v1/auth/session")).status_of().await,
            StatusCode::UNAUTHORIZED
        );
        let r = client()
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"username": "doc", "password": "a third long passphrase"}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(r).await.1, "invalid_credentials");
        // The last administrator cannot be disabled.
        let (s, code) = admin
            .client
            .post(app.url(&format!("/api/v1/users/{}/disable", admin.id)))
            .error_of()
            .await;
        assert_eq!((s, code.as_str()), (StatusCode::CONFLICT, "last_admin"));
    }
}

#[tokio::test]
async fn failed_logins_back_off_then_lock_out() {
    for (kind, sessions) in setups() {
        let app = TestApp::start(kind, sessions).await;
        let admin = app.admin().await;
        let c = client();
        let attempt = |pw: &'static str| {
            c.post(app.url("/api/v1/auth/login"))
                .json(&json!({"username": "root-admin", "password": pw}))
                .send()
        };
        for _ in 0..3 {
            assert_eq!(
                attempt("wrong password 1").await.unwrap().status(),
                StatusCode::UNAUTHORIZED
            );
        }
        assert_eq!(
            attempt("wrong password 1").await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
        // Fourth failure: back off one second; even the right password must wait.
        let r = attempt(PASSWORD).await.unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{kind:?}");
        assert_eq!(r.headers()["retry-after"], "1");
        app.clock.advance(1);
        for i in 5..=10u32 {
            assert_eq!(
                attempt("wrong password 1").await.unwrap().status(),
                StatusCode::UNAUTHORIZED,
                "attempt {i}"
            );
            app.clock.advance(1 << (i - 4));
        }
        // Ten failures: locked out, with the correct password too, until the lockout ends.
        let r = attempt(PASSWORD).await.unwrap();
        let (s, code) = error_code(r).await;
        assert_eq!(
            (s, code.as_str()),
            (StatusCode::TOO_MANY_REQUESTS, "locked_out")
        );
        assert_eq!(app.audit("auth.lockout").await.len(), 1);
        assert!(app.metrics().await.contains("medai_lockouts_total 1"));
        app.clock.advance(15 * 60);
        assert_eq!(attempt(PASSWORD).await.unwrap().status(), StatusCode::OK);
        // Wrong TOTP codes count too.
        drop(admin);
    }
}

#[tokio::test]
async fn service_tokens_authenticate_integrations_only_for_their_role() {
    for (kind, sessions) in setups() {
        let app = TestApp::start(kind, sessions).await;
        let admin = app.admin().await;
        let feed = app.user(&admin, "ehr-feed", Role::Service, &[]).await;
        let r = admin
            .client
            .post(app.url("/api/v1/tokens"))
            .json(&json!({"user_id": feed.id, "name": "ADT feed", "expires_in_days": 30}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let t: Value = r.json().await.unwrap();
        let secret = t["token"].as_str().unwrap().to_owned();
        assert!(secret.starts_with("medai_"));
        let listed: Vec<Value> = admin
            .client
            .get(app.url("/api/v1/tokens"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            !serde_json::to_string(&listed).unwrap().contains(&secret),
            "secret shown once only"
        );

        let c = reqwest::Client::new();
        let bearer = |req: reqwest::RequestBuilder| req.bearer_auth(&secret);
        let r = bearer(c.post(app.url("/api/v1/patients")))
            .json(&json!({"mrn": "EHR-1", "given_name": "A", "family_name": "B", "date_of_birth": "1980-01-01", "sex": "unknown"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{kind:?}");
        let pid = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            bearer(c.get(app.url(&format!("/api/v1/patients/{pid}"))))
                .status_of()
                .await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            bearer(c.get(app.url("/api/v1/users"))).status_of().await,
            StatusCode::FORBIDDEN
        );
        // Tokens cannot be made for people.
        assert_eq!(
            admin
                .client
                .post(app.url("/api/v1/tokens"))
                .json(&json!({"user_id": admin.id, "name": "x"}))
                .status_of()
                .await,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        // Expiry and revocation.
        app.clock.advance(31 * 86_400);
        let (s, code) = bearer(c.get(app.url("/api/v1/auth/session")))
            .error_of()
            .await;
        assert_eq!(
            (s, code.as_str()),
            (StatusCode::UNAUTHORIZED, "invalid_token")
        );
        app.clock.advance(-31 * 86_400);
        let admin = app.login("root-admin", PASSWORD, &admin.secret).await;
        assert_eq!(
            bearer(c.get(app.url("/api/v1/auth/session")))
                .status_of()
                .await,
            StatusCode::OK
        );
        let id = t["id"].as_str().unwrap();
        assert_eq!(
            admin
                .delete(app.url(&format!("/api/v1/tokens/{id}")))
                .status_of()
                .await,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            bearer(c.get(app.url("/api/v1/auth/session")))
                .status_of()
                .await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            admin
                .delete(app.url(&format!("/api/v1/tokens/{id}")))
                .status_of()
                .await,
            StatusCode::NOT_FOUND
        );
    }
}

#[tokio::test]
async fn replicas_share_sessions_and_throttling_through_redis() {
    let setups: Vec<_> = setups()
        .into_iter()
        .filter(|(k, s)| *s == Sessions::Redis && *k == medai_store::DatabaseKind::Postgres)
        .collect();
    if setups.is_empty() {
        eprintln!("needs MEDAI_TEST_POSTGRES_URL and MEDAI_TEST_REDIS_URL; not exercised");
        return;
    }
    let (kind, sessions) = setups[0];
    let a = TestApp::start(kind, sessions).await;
    let admin = a.admin().await;
    let b = a.replica().await;
    // The session made on replica A works on replica B.
    assert_eq!(
        admin.client.get(b.url("/api/v1/users")).status_of().await,
        StatusCode::OK
    );
    // Failures spread over replicas add up.
    let c = client();
    for app in [&a, &b, &a, &b] {
        c.post(app.url("/api/v1/auth/login"))
            .json(&json!({"username": "root-admin", "password": "nope nope nope"}))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(
        c.post(b.url("/api/v1/auth/login"))
            .json(&json!({"username": "root-admin", "password": PASSWORD}))
            .status_of()
            .await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Logout on B ends the session on A.
    assert_eq!(
        admin
            .client
            .post(b.url("/api/v1/auth/logout"))
            .status_of()
            .await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        admin.client.get(a.url("/api/v1/users")).status_of().await,
        StatusCode::UNAUTHORIZED
    );
    let _unused: Option<TotpSecret> = None;
}

#[tokio::test]
async fn when_the_audit_write_fails_the_request_fails_and_changes_nothing() {
    let app = TestApp::start(medai_store::DatabaseKind::Sqlite, Sessions::Memory).await;
    let admin = app.admin().await;
    let team = app.care_team(&admin, "t").await;
    let doc = app.user(&admin, "doc", Role::Clinician, &[&team]).await;
    sqlx_exec(&app, "CREATE TRIGGER audit_down BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'audit store down'); END").await;
    let r = doc
        .client
        .post(app.url("/api/v1/patients"))
        .json(&json!({"mrn": "MRN-9", "given_name": "A", "family_name": "B", "date_of_birth": "1970-01-01", "sex": "male"}))
        .send()
        .await
        .unwrap();
    let (s, code) = error_code(r).await;
    assert_eq!(
        (s, code.as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "internal")
    );
    sqlx_exec(&app, "DROP TRIGGER audit_down").await;
    let list: Vec<Value> = doc
        .client
        .get(app.url("/api/v1/patients?mrn=MRN-9"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        list.is_empty(),
        "the patient was not created without its audit event"
    );
    assert!(
        app.metrics()
            .await
            .contains("medai_audit_append_failures_total 1"),
        "counted for alerting"
    );
}

async fn sqlx_exec(app: &TestApp, sql: &str) {
    let mut tx = app.state.store.begin().await.unwrap();
    medai_store::testkit::execute(&mut tx, sql).await.unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn guesses_spread_over_many_accounts_are_throttled_per_client_address() {
    for (kind, sessions) in setups() {
        let app = TestApp::start(kind, sessions).await;
        let admin = app.admin().await;
        let c = client();
        for i in 0..21 {
            assert_eq!(
                c.post(app.url("/api/v1/auth/login"))
                    .json(&json!({"username": format!("guess-{i}"), "password": "password123456"}))
                    .status_of()
                    .await,
                StatusCode::UNAUTHORIZED,
                "{kind:?} attempt {i}"
            );
        }
        // The address now backs off, even for an account with no failures of its own.
        let r = c
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"username": "root-admin", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        let (s, code) = error_code(r).await;
        assert_eq!(
            (s, code.as_str()),
            (StatusCode::TOO_MANY_REQUESTS, "throttled")
        );
        app.clock.advance(1);
        assert_eq!(
            c.post(app.url("/api/v1/auth/login"))
                .json(&json!({"username": "root-admin", "password": PASSWORD}))
                .status_of()
                .await,
            StatusCode::OK
        );
        drop(admin);
    }
}
