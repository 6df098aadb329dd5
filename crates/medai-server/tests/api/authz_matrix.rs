//! The authorisation matrix: every route of the OpenAPI document × every role (and a patient
//! outside the caller's care team), asserting the status. A route added without a row here fails
//! the test, so nothing ships unauthorised by omission.

use crate::common::*;
use medai_core::Role;
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeSet;

const ACTORS: [&str; 8] = [
    "anonymous",
    "clinician/own",
    "clinician/foreign",
    "nurse/own",
    "nurse/foreign",
    "admin",
    "compliance",
    "service",
];

struct Case {
    method: Method,
    template: &'static str,
    own: String,
    foreign: Option<String>,
    body: fn(u32) -> Option<Value>,
    /// Expected status per actor, in the order of `ACTORS`; `None` skips the actor.
    expect: [Option<u16>; 8],
}

fn patient_body(n: u32) -> Option<Value> {
    Some(
        json!({"mrn": format!("MX-{n}"), "given_name": "M", "family_name": "X", "date_of_birth": "1971-01-01", "sex": "other"}),
    )
}

#[tokio::test]
async fn every_route_times_every_role() {
    for (kind, sessions) in setups() {
        let app = TestApp::start(kind, sessions).await;
        let admin = app.admin().await;
        let team = app.care_team(&admin, "team-own").await;
        let other_team = app.care_team(&admin, "team-other").await;
        let spare_team = app.care_team(&admin, "team-spare").await;
        let clin = app.user(&admin, "clin", Role::Clinician, &[&team]).await;
        let nurse = app.user(&admin, "nurse", Role::Nurse, &[&team]).await;
        let outsider = app
            .user(&admin, "outsider", Role::Clinician, &[&other_team])
            .await;
        let compliance = app
            .user(&admin, "auditor", Role::ComplianceOfficer, &[])
            .await;
        let svc = app.user(&admin, "svc", Role::Service, &[]).await;
        let mk_token = |name: &'static str| {
            let c = admin.client.clone();
            let url = app.url("/api/v1/tokens");
            let uid = svc.id.clone();
            async move {
                let r = c
                    .post(url)
                    .json(&json!({"user_id": uid, "name": name}))
                    .send()
                    .await
                    .unwrap();
                r.json::<Value>().await.unwrap()
            }
        };
        let svc_token = mk_token("matrix").await["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let spare_token = mk_token("spare").await["id"].as_str().unwrap().to_owned();
        let victim = app.user(&admin, "victim-disable", Role::Service, &[]).await;
        let victim_mfa = app.user(&admin, "victim-mfa", Role::Nurse, &[]).await;
        let victim_member = app
            .user(&admin, "victim-member", Role::Nurse, &[&spare_team])
            .await;
        let own = app.patient(&clin, "OWN-1", "Own", None).await;
        let foreign = app.patient(&outsider, "FOR-1", "Foreign", None).await;
        let foreign_bg = app.patient(&outsider, "FOR-2", "Foreign", None).await;
        let _ = app.patient(&clin, "OWN-2", "Own", None).await;
        let conv_own = app.conversation(&clin, &own, "Chest pain work-up").await;
        let conv_foreign = app.conversation(&outsider, &foreign, "Foreign").await;
        let answer_own = app.stored_answer(&conv_own, "An answer.", "m", "1").await;
        let answer_foreign = app
            .stored_answer(&conv_foreign, "An answer.", "m", "1")
            .await;
        let c = |id: &str, suffix: &str| format!("/api/v1/conversations/{id}{suffix}");
        let pp = [
            Some(401),
            Some(200),
            Some(403),
            Some(200),
            Some(403),
            Some(403),
            Some(403),
            Some(403),
        ];
        let clin_only = |ok: u16| {
            [
                Some(401),
                Some(ok),
                Some(403),
                Some(403),
                Some(403),
                Some(403),
                Some(403),
                Some(403),
            ]
        };

        let p = |id: &str, suffix: &str| format!("/api/v1/patients/{id}{suffix}");
        let fixed = |s: &str| s.to_owned();
        let none = |_: u32| None;
        let all = |s: u16| {
            [
                Some(s),
                Some(s),
                None,
                Some(s),
                None,
                Some(s),
                Some(s),
                Some(s),
            ]
        };
        let by_role = |anon: u16, clin: u16, nurse: u16, admin: u16, comp: u16, svc: u16| {
            [
                Some(anon),
                Some(clin),
                None,
                Some(nurse),
                None,
                Some(admin),
                Some(comp),
                Some(svc),
            ]
        };
        let cases = vec![
            Case {
                method: Method::GET,
                template: "/healthz",
                own: fixed("/healthz"),
                foreign: None,
                body: none,
                expect: all(200),
            },
            Case {
                method: Method::GET,
                template: "/readyz",
                own: fixed("/readyz"),
                foreign: None,
                body: none,
                expect: all(200),
            },
            Case {
                method: Method::POST,
                template: "/api/v1/auth/login",
                own: fixed("/api/v1/auth/login"),
                foreign: None,
                body: |n| {
                    Some(json!({"username": format!("nobody-{n}"), "password": "wrong password!!"}))
                },
                expect: all(401),
            },
            Case {
                method: Method::POST,
                template: "/api/v1/auth/totp",
                own: fixed("/api/v1/auth/totp"),
                foreign: None,
                body: |_| Some(json!({"code": "123456"})),
                expect: all(401),
            },
            Case {
                method: Method::POST,
                template: "/api/v1/auth/recovery",
                own: fixed("/api/v1/auth/recovery"),
                foreign: None,
                body: |_| Some(json!({"code": "aaaa-bbbb-cccc-dddd"})),
                expect: all(401),
            },
            Case {
                method: Method::POST,
                template: "/api/v1/enrolment/start",
                own: fixed("/api/v1/enrolment/start"),
                foreign: None,
                body: |_| Some(json!({"token": "forged", "password": "long enough password"})),
                expect: all(400),
            },
            Case {
                method: Method::POST,
                template: "/api/v1/enrolment/finish",
                own: fixed("/api/v1/enrolment/finish"),
                foreign: None,
                body: |_| Some(json!({"token": "forged", "code": "123456"})),
                expect: all(400),
            },
            Case {
                method: Method::GET,
                template: "/api/v1/auth/session",
                own: fixed("/api/v1/auth/session"),
                foreign: None,
                body: none,
                expect: by_role(401, 200, 200, 200, 200, 200),
            },
            Case {
                method: Method::POST,
                template: "/api/v1/auth/password",
                own: fixed("/api/v1/auth/password"),
                foreign: None,
                body: |_| {
                    Some(
                        json!({"current_password": "not my password", "new_password": "whatever long enough"}),
                    )
                },
                expect: by_role(401, 401, 401, 401, 401, 400),
            },
            Case {
                method: Method::GET,
                template: "/api/v1/patients",
                own: fixed("/api/v1/patients"),
                foreign: None,
                body: none,
                expect: by_role(401, 200, 200, 403, 403, 403),
            },
            Case {
                method: Method::POST,
                template: "/api/v1/patients",
                own: fixed("/api/v1/patients"),
                foreign: None,
                body: patient_body,
                expect: by_role(401, 201, 403, 403, 403, 201),
            },
            Case {
                method: Method::GET,
                template: "/api/v1/patients/{id}",
                own: p(&own, ""),
                foreign: Some(p(&foreign, "")),
                body: none,
                expect: [
                    Some(401),
                    Some(200),
                    Some(403),
                    Some(200),
                    Some(403),
                    Some(403),
                    Some(403),
                    Some(403),
                ],
            },
            Case {
                method: Method::PUT,
                template: "/api/v1/patients/{id}",
                own: p(&own, ""),
                foreign: Some(p(&foreign, "")),
                body: |_| {
                    Some(
                        json!({"mrn": "OWN-1", "given_name": "Own", "family_name": "Own", "date_of_birth": "1970-03-04", "sex": "female"}),
                    )
                },
                expect: [
                    Some(401),
                    Some(200),
                    Some(403),
                    Some(200),
                    Some(403),
                    Some(403),
                    Some(403),
                    Some(200),
                ],
            },
            Case {
                method: Method::PUT,
                template: "/api/v1/patients/{id}/care-teams",
                own: p(&own, "/care-teams"),
                foreign: Some(p(&foreign, "/care-teams")),
                body: |_| None,
                expect: [
                    Some(401),
                    Some(403),
                    Some(403),
                    Some(403),
                    Some(403),
                    Some(204),
                    Some(403),
                    Some(403),
                ],
            },
            Case {
                method: Method::POST,
                template: "/api/v1/patients/{id}/break-glass",
                own: p(&own, "/break-glass"),
                foreign: Some(p(&foreign_bg, "/break-glass")),
                body: |_| Some(json!({"reason": "emergency: patient unresponsive"})),
                expect: [
                    Some(401),
                    Some(409),
                    Some(201),
                    Some(403),
                    Some(403),
                    Some(403),
                    Some(403),
                    Some(403),
                ],
            },
            Case {
                method: Method::POST,
                template: "/api/v1/patients/{id}/conversations",
                own: p(&own, "/conversations"),
                foreign: Some(p(&foreign, "/conversations")),
                body: |_| Some(json!({"title": "Dyspnoea"})),
                expect: clin_only(201),
            },
            Case {
                method: Method::GET,
                template: "/api/v1/patients/{id}/conversations",
                own: p(&own, "/conversations"),
                foreign: Some(p(&foreign, "/conversations")),
                body: none,
                expect: pp,
            },
            Case {
                method: Method::GET,
                template: "/api/v1/conversations/{id}",
                own: c(&conv_own, ""),
                foreign: Some(c(&conv_foreign, "")),
                body: none,
                expect: pp,
            },
            Case {
                method: Method::PUT,
                template: "/api/v1/messages/{id}/feedback",
                own: format!("/api/v1/messages/{answer_own}/feedback"),
                foreign: Some(format!("/api/v1/messages/{answer_foreign}/feedback")),
                body: |_| Some(json!({"helpful": "helpful", "verdict": "correct"})),
                expect: clin_only(200),
            },
            Case {
                method: Method::POST,
                template: "/api/v1/patients/{id}/notes",
                own: p(&own, "/notes"),
                foreign: Some(p(&foreign, "/notes")),
                body: |_| Some(json!({"text": "BP 120/80, afebrile."})),
                expect: [
                    Some(401),
                    Some(201),
                    Some(403),
                    Some(201),
                    Some(403),
                    Some(403),
                    Some(403),
                    Some(201),
                ],
            },
            Case {
                method: Method::GET,
                template: "/api/v1/patients/{id}/notes",
                own: p(&own, "/notes"),
                foreign: Some(p(&foreign, "/notes")),
                body: none,
                expect: pp,
            },
            Case {
                method: Method::POST,
                template: "/api/v1/conversations/{id}/messages",
                own: c(&conv_own, "/messages"),
                foreign: Some(c(&conv_foreign, "/messages")),
                body: |_| Some(json!({"text": "Any interactions to consider?"})),
                // No model is configured in the matrix: authorised callers get 503 no_model.
                expect: clin_only(503),
            },
            // After the reads: it closes the conversation.
            Case {
                method: Method::POST,
                template: "/api/v1/conversations/{id}/close",
                own: c(&conv_own, "/close"),
                foreign: Some(c(&conv_foreign, "/close")),
                body: none,
                expect: clin_only(200),
            },
            Case {
                method: Method::GET,
                template: "/api/v1/users",
                own: fixed("/api/v1/users"),
                foreign: None,
                body: none,
                expect: by_role(401, 403, 403, 200, 200, 403),
            },
            Case {
                method: Method::POST,
                template: "/api/v1/users",
                own: fixed("/api/v1/users"),
                foreign: None,
                body: |n| Some(json!({"username": format!("new-user-{n}"), "role": "nurse"})),
                expect: by_role(401, 403, 403, 201, 403, 403),
            },
            Case {
                method: Method::POST,
                template: "/api/v1/users/{id}/disable",
                own: format!("/api/v1/users/{}/disable", victim.id),
                foreign: None,
                body: none,
                expect: by_role(401, 403, 403, 204, 403, 403),
            },
            Case {
                method: Method::POST,
                template: "/api/v1/users/{id}/reset-mfa",
                own: format!("/api/v1/users/{}/reset-mfa", victim_mfa.id),
                foreign: None,
                body: none,
                expect: by_role(401, 403, 403, 200, 403, 403),
            },
            Case {
                method: Method::GET,
                template: "/api/v1/care-teams",
                own: fixed("/api/v1/care-teams"),
                foreign: None,
                body: none,
                expect: by_role(401, 403, 403, 200, 403, 403),
            },
            Case {
                method: Method::POST,
                template: "/api/v1/care-teams",
                own: fixed("/api/v1/care-teams"),
                foreign: None,
                body: |n| Some(json!({"name": format!("team-{n}")})),
                expect: by_role(401, 403, 403, 201, 403, 403),
            },
            Case {
                method: Method::PUT,
                template: "/api/v1/care-teams/{id}/members/{user_id}",
                own: format!("/api/v1/care-teams/{team}/members/{}", clin.id),
                foreign: None,
                body: none,
                expect: by_role(401, 403, 403, 204, 403, 403),
            },
            Case {
                method: Method::DELETE,
                template: "/api/v1/care-teams/{id}/members/{user_id}",
                own: format!(
                    "/api/v1/care-teams/{spare_team}/members/{}",
                    victim_member.id
                ),
                foreign: None,
                body: none,
                expect: by_role(401, 403, 403, 204, 403, 403),
            },
            Case {
                method: Method::GET,
                template: "/api/v1/tokens",
                own: fixed("/api/v1/tokens"),
                foreign: None,
                body: none,
                expect: by_role(401, 403, 403, 200, 403, 403),
            },
            Case {
                method: Method::POST,
                template: "/api/v1/tokens",
                own: fixed("/api/v1/tokens"),
                foreign: None,
                body: |_| None,
                expect: by_role(401, 403, 403, 201, 403, 403),
            },
            Case {
                method: Method::DELETE,
                template: "/api/v1/tokens/{id}",
                own: format!("/api/v1/tokens/{spare_token}"),
                foreign: None,
                body: none,
                expect: by_role(401, 403, 403, 204, 403, 403),
            },
            Case {
                method: Method::GET,
                template: "/api/v1/break-glass",
                own: fixed("/api/v1/break-glass"),
                foreign: None,
                body: none,
                expect: by_role(401, 403, 403, 403, 200, 403),
            },
            Case {
                method: Method::GET,
                template: "/api/v1/audit/events",
                own: fixed("/api/v1/audit/events"),
                foreign: None,
                body: none,
                expect: by_role(401, 403, 403, 403, 200, 403),
            },
            Case {
                method: Method::GET,
                template: "/api/v1/audit/status",
                own: fixed("/api/v1/audit/status"),
                foreign: None,
                body: none,
                expect: by_role(401, 403, 403, 403, 200, 403),
            },
            // Last: it ends the sessions.
            Case {
                method: Method::POST,
                template: "/api/v1/auth/logout",
                own: fixed("/api/v1/auth/logout"),
                foreign: None,
                body: none,
                expect: by_role(401, 204, 204, 204, 204, 400),
            },
        ];

        // Every documented route has a row, and every row is a documented route.
        let doc: Value = reqwest::get(app.url("/api/v1/openapi.json"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for m in item.as_object().unwrap().keys() {
                if ["get", "post", "put", "delete", "patch"].contains(&m.as_str()) {
                    documented.insert(format!("{} {path}", m.to_uppercase()));
                }
            }
        }
        let tested: BTreeSet<String> = cases
            .iter()
            .map(|c| format!("{} {}", c.method, c.template))
            .collect();
        assert_eq!(documented, tested, "authorisation matrix out of date");

        let anon = client();
        let svc_client = Client::builder()
            .default_headers({
                let mut h = reqwest::header::HeaderMap::new();
                h.insert(
                    reqwest::header::AUTHORIZATION,
                    format!("Bearer {svc_token}").parse().unwrap(),
                );
                h
            })
            .build()
            .unwrap();
        let clients: [&Client; 8] = [
            &anon,
            &clin.client,
            &clin.client,
            &nurse.client,
            &nurse.client,
            &admin.client,
            &compliance.client,
            &svc_client,
        ];
        let mut n = 0u32;
        let mut failures = Vec::new();
        for case in &cases {
            for (i, expected) in case.expect.iter().enumerate() {
                let Some(expected) = expected else { continue };
                let path = if ACTORS[i].ends_with("/foreign") {
                    case.foreign.clone().unwrap_or_else(|| case.own.clone())
                } else {
                    case.own.clone()
                };
                n += 1;
                let mut body = (case.body)(n);
                if case.template == "/api/v1/patients/{id}/care-teams" {
                    body = Some(json!({"care_team_ids": [team]}));
                }
                if case.template == "/api/v1/tokens" && case.method == Method::POST {
                    body = Some(json!({"user_id": svc.id, "name": format!("t{n}")}));
                }
                let mut req = clients[i].request(case.method.clone(), app.url(&path));
                if let Some(b) = body {
                    req = req.json(&b);
                }
                let got = req.status_of().await.as_u16();
                if got != *expected {
                    failures.push(format!(
                        "{} {} as {}: expected {expected}, got {got}",
                        case.method, case.template, ACTORS[i]
                    ));
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{kind:?}/{sessions:?}:\n{}",
            failures.join("\n")
        );
        // Each refusal was audited, exactly once.
        let refusals = cases
            .iter()
            .flat_map(|c| c.expect.iter())
            .filter(|e| **e == Some(StatusCode::FORBIDDEN.as_u16()))
            .count();
        assert_eq!(app.audit("access.denied").await.len(), refusals);
    }
}
