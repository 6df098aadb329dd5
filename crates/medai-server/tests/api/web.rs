//! The setup link works in a browser: plain HTML forms, no script, strict CSP.

use crate::common::*;
use medai_store::DatabaseKind;
use reqwest::StatusCode;
use serde_json::json;

fn between<'a>(s: &'a str, start: &str, end: &str) -> &'a str {
    let i = s.find(start).unwrap() + start.len();
    let j = s[i..].find(end).unwrap();
    &s[i..i + j]
}

#[tokio::test]
async fn setup_link_pages_create_the_first_administrator() {
    let app = TestApp::start(DatabaseKind::Sqlite, Sessions::Memory).await;
    let token = app.setup_token.clone().unwrap();
    let c = client();
    let r = c
        .get(app.url(&format!("/setup?token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let html = r.text().await.unwrap();
    assert!(html.contains("Create the first administrator"));
    assert!(html.contains("<label for=\"password\">"));
    assert!(!html.contains("<script"), "no script needed");
    assert!(!html.contains("style="), "no inline style (CSP)");

    // Mismatched passwords: the form again, with the reason, and nothing stored.
    let form = [
        ("token", token.as_str()),
        ("username", "chief"),
        ("password", PASSWORD),
        ("confirm", "something else entirely"),
    ];
    let r = c.post(app.url("/setup")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("The two passwords differ."));
    // A weak password is explained.
    let form = [
        ("token", token.as_str()),
        ("username", "chief"),
        ("password", "short"),
        ("confirm", "short"),
    ];
    let r = c.post(app.url("/setup")).form(&form).send().await.unwrap();
    assert!(r.text().await.unwrap().contains("at least 12 characters"));

    let form = [
        ("token", token.as_str()),
        ("username", "chief"),
        ("password", PASSWORD),
        ("confirm", PASSWORD),
    ];
    let r = c.post(app.url("/setup")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("<svg"), "QR code rendered on the server");
    let secret = secret_from_base32(between(&html, "Key for manual entry: <code>", "</code>"));

    let r = c
        .post(app.url("/setup/confirm"))
        .form(&[("token", token.as_str()), ("code", "12345x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("That code is not valid"));
    let code = app.code(&secret);
    let r = c
        .post(app.url("/setup/confirm"))
        .form(&[("token", token.as_str()), ("code", code.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert_eq!(html.matches("<li><code>").count(), 10, "ten recovery codes");

    // The link is spent.
    let r = c
        .get(app.url(&format!("/setup?token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("invalid, expired or already used"));
    assert_eq!(
        c.get(app.url("/setup")).status_of().await,
        StatusCode::BAD_REQUEST
    );

    // The administrator signs in with password and TOTP.
    app.next_totp_step();
    let admin = app.login("chief", PASSWORD, &secret).await;
    let users: serde_json::Value = admin
        .get(app.url("/api/v1/users"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(users[0]["username"], "chief");
    assert_eq!(users[0]["role"], "admin");
    let _ = json!({});
}

#[tokio::test]
async fn a_setup_link_dies_once_an_administrator_exists_by_another_route() {
    let app = TestApp::start(DatabaseKind::Sqlite, Sessions::Memory).await;
    let token = app.setup_token.clone().unwrap();
    // An operator creates an administrator with the CLI's code path instead.
    let mut tx = app.state.store.begin().await.unwrap();
    let base =
        medai_core::audit::AuditEvent::new(0, "user.create", medai_core::audit::Outcome::Success);
    medai_server::accounts::create_user(
        &mut tx,
        &app.state.config,
        &base,
        "ops-admin",
        medai_core::Role::Admin,
        0,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let r = client()
        .post(app.url("/api/v1/enrolment/start"))
        .json(&json!({"token": token, "username": "second-admin", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::BAD_REQUEST, "invalid_link".to_owned())
    );
}
