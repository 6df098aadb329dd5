//! The signed-in pages over HTTP, as a browser without script uses them: login with TOTP and the
//! return to the page the user was on, CSRF refusal on every kind of form, navigation and
//! refusal by role, break-glass, the no-script chat path, feedback, the compliance and admin
//! views, and HTML error pages outside the JSON API. (Chromium drives the same pages in the
//! browser tests.)

use crate::common::*;
use medai_core::identity::TotpSecret;
use medai_core::Role;
use medai_store::DatabaseKind;
use reqwest::redirect::Policy;
use reqwest::{Client, Response, StatusCode};
use serde_json::json;

const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A browser-like client that does not follow redirects (so each one is checked).
fn browser() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .unwrap()
}

fn location(r: &Response) -> String {
    r.headers()["location"].to_str().unwrap().to_owned()
}

/// The value of the first hidden `csrf` field in a page.
fn csrf(html: &str) -> String {
    let i = html
        .find("name=\"csrf\" value=\"")
        .expect("page has a CSRF field")
        + 19;
    html[i..i + 64].to_owned()
}

/// Asserts what every page must be: HTML with the page CSP, no inline script or style.
async fn page(r: Response, status: StatusCode) -> String {
    let got = r.status();
    let headers = r.headers().clone();
    let html = r.text().await.unwrap();
    assert_eq!(got, status, "{html}");
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(headers["content-security-policy"], PAGE_CSP);
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(!html.contains("<script>"), "no inline script");
    assert!(!html.contains("style="), "no inline style");
    assert!(!html.contains("<style"), "no inline style");
    html
}

async fn get(c: &Client, app: &TestApp, path: &str) -> Response {
    c.get(app.url(path)).send().await.unwrap()
}

async fn post(c: &Client, app: &TestApp, path: &str, form: &[(&str, &str)]) -> Response {
    c.post(app.url(path)).form(form).send().await.unwrap()
}

/// Signs in through the pages; `next` is sent along. Returns the client and where the final
/// redirect pointed.
async fn web_login(
    app: &TestApp,
    username: &str,
    secret: &TotpSecret,
    next: Option<&str>,
) -> (Client, String) {
    let c = browser();
    let html = page(get(&c, app, "/login").await, StatusCode::OK).await;
    let token = csrf(&html);
    let mut form = vec![
        ("csrf", token.as_str()),
        ("username", username),
        ("password", PASSWORD),
    ];
    if let Some(n) = next {
        form.push(("next", n));
    }
    let r = post(&c, app, "/login", &form).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = location(&r);
    assert!(to.starts_with("/login/totp"), "{to}");
    let html = page(get(&c, app, &to).await, StatusCode::OK).await;
    let token = csrf(&html);
    let code = app.code(secret);
    let mut form = vec![("csrf", token.as_str()), ("code", code.as_str())];
    let next_field = html
        .find("name=\"next\" value=\"")
        .map(|i| html[i + 19..].split('"').next().unwrap().to_owned());
    if let Some(n) = &next_field {
        form.push(("next", n.as_str()));
    }
    let r = post(&c, app, "/login/totp", &form).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    app.next_totp_step();
    let to = location(&r);
    (c, to)
}

/// A team, a clinician and a nurse on it, a clinician of another team, a compliance officer,
/// and a patient on each team.
struct World {
    admin: Actor,
    doc: Actor,
    nurse: Actor,
    officer: Actor,
    mine: String,
    theirs: String,
}

async fn world(app: &TestApp) -> World {
    let admin = app.admin().await;
    let cardio = app.care_team(&admin, "cardiology").await;
    let onco = app.care_team(&admin, "oncology").await;
    let doc = app.user(&admin, "doc", Role::Clinician, &[&cardio]).await;
    let nurse = app.user(&admin, "nurse", Role::Nurse, &[&cardio]).await;
    let other = app.user(&admin, "onc-doc", Role::Clinician, &[&onco]).await;
    let officer = app
        .user(&admin, "officer", Role::ComplianceOfficer, &[])
        .await;
    let mine = app.patient(&doc, "MRN-100", "Whitfield", None).await;
    let theirs = app.patient(&other, "MRN-200", "Okafor", None).await;
    World {
        admin,
        doc,
        nurse,
        officer,
        mine,
        theirs,
    }
}

#[tokio::test]
async fn login_returns_to_the_page_the_user_was_on_and_never_elsewhere() {
    let app = TestApp::start(DatabaseKind::Sqlite, Sessions::Memory).await;
    let w = world(&app).await;

    // Not signed in: a page sends the browser to the login page with a local return address.
    let c = browser();
    let r = get(&c, &app, &format!("/patients/{}", w.mine)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), format!("/login?next=/patients/{}", w.mine));
    assert_eq!(location(&get(&c, &app, "/").await), "/login");

    // The login form: labels, CSRF, the next field.
    let html = page(
        get(&c, &app, &format!("/login?next=/patients/{}", w.mine)).await,
        StatusCode::OK,
    )
    .await;
    assert!(html.contains("<label for=\"username\">"));
    assert!(html.contains("<label for=\"password\">"));
    assert!(html.contains(&format!("value=\"/patients/{}\"", w.mine)));
    let token = csrf(&html);

    // Without the token, nothing is checked and no session starts.
    let r = post(
        &c,
        &app,
        "/login",
        &[("username", "doc"), ("password", PASSWORD)],
    )
    .await;
    let html = page(r, StatusCode::FORBIDDEN).await;
    assert!(html.contains("reload the page"));
    let failures = app.audit("auth.password").await.len();
    // A wrong password: the form again with the reason, the typed username kept.
    let r = post(
        &c,
        &app,
        "/login",
        &[
            ("csrf", &token),
            ("username", "doc"),
            ("password", "wrong password!!"),
        ],
    )
    .await;
    let html = page(r, StatusCode::UNAUTHORIZED).await;
    assert!(html.contains("Invalid username or password."));
    assert!(html.contains("value=\"doc\""));
    assert_eq!(app.audit("auth.password").await.len(), failures);

    // Password, then a wrong code, then the right one; back to the patient page.
    let (c, to) = web_login(
        &app,
        "doc",
        &w.doc.secret,
        Some(&format!("/patients/{}", w.mine)),
    )
    .await;
    assert_eq!(to, format!("/patients/{}", w.mine));
    let html = page(get(&c, &app, &to).await, StatusCode::OK).await;
    assert!(html.contains("Whitfield"));
    assert!(html.contains("MRN-100"));

    // An outside or odd return address is ignored: the user lands on their start page.
    for evil in [
        "//evil.example/x",
        "https://evil.example/",
        "/\\evil.example",
        "/api/v1/users",
    ] {
        let (_, to) = web_login(&app, "doc", &w.doc.secret, Some(evil)).await;
        assert_eq!(to, "/", "{evil}");
    }
    let r = get(&c, &app, "/").await;
    assert_eq!(location(&r), "/patients");

    // A wrong TOTP code re-shows the code form with the reason.
    let c2 = browser();
    let html = page(get(&c2, &app, "/login").await, StatusCode::OK).await;
    let token = csrf(&html);
    let r = post(
        &c2,
        &app,
        "/login",
        &[
            ("csrf", &token),
            ("username", "nurse"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let html = page(get(&c2, &app, "/login/totp").await, StatusCode::OK).await;
    let token = csrf(&html);
    assert!(html.contains("autocomplete=\"one-time-code\""));
    let r = post(
        &c2,
        &app,
        "/login/totp",
        &[("csrf", &token), ("code", "000000")],
    )
    .await;
    let html = page(r, StatusCode::UNAUTHORIZED).await;
    assert!(html.contains("The code is not valid."));

    // Idle past the timeout: the next page goes to the login page, marked expired, with the
    // way back; the logoff is audited.
    let idle = app.state.config.auth.session_idle_timeout.as_secs() as i64;
    app.clock.set(app.state.now() + idle + 1);
    let r = get(&c, &app, &format!("/patients/{}?x=1", w.mine)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&r),
        format!("/login?next=/patients/{}%3Fx%3D1&expired=1", w.mine)
    );
    let ended = app.audit("session.end").await;
    assert!(ended.iter().any(|e| e
        .event
        .detail
        .as_deref()
        .unwrap_or("")
        .contains("idle_timeout")));
    let html = page(
        get(
            &c,
            &app,
            &format!("/login?next=/patients/{}&expired=1", w.mine),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert!(html.contains("Your session ended"));
}

#[tokio::test]
async fn recovery_codes_sign_in_through_the_page() {
    let app = TestApp::start(DatabaseKind::Sqlite, Sessions::Memory).await;
    let token = app.setup_token.clone().unwrap();
    let (_, codes) = app.enrol(&token, Some("root-admin"), PASSWORD).await;
    let c = browser();
    let html = page(get(&c, &app, "/login").await, StatusCode::OK).await;
    let t = csrf(&html);
    let r = post(
        &c,
        &app,
        "/login",
        &[
            ("csrf", &t),
            ("username", "root-admin"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let html = page(get(&c, &app, "/login/recovery").await, StatusCode::OK).await;
    assert!(html.contains("Use a recovery code"));
    let t = csrf(&html);
    let r = post(
        &c,
        &app,
        "/login/recovery",
        &[("csrf", &t), ("code", "not-a-code")],
    )
    .await;
    page(r, StatusCode::UNAUTHORIZED).await;
    let r = post(
        &c,
        &app,
        "/login/recovery",
        &[("csrf", &t), ("code", &codes[0])],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&get(&c, &app, "/").await), "/admin/users");
}

#[tokio::test]
async fn every_form_needs_the_sessions_csrf_token() {
    let app = TestApp::start(DatabaseKind::Sqlite, Sessions::Memory).await;
    let w = world(&app).await;
    let (doc, _) = web_login(&app, "doc", &w.doc.secret, None).await;
    let (nurse, _) = web_login(&app, "nurse", &w.nurse.secret, None).await;
    let html = page(get(&doc, &app, "/patients").await, StatusCode::OK).await;
    let mine = csrf(&html);
    let html = page(get(&nurse, &app, "/patients").await, StatusCode::OK).await;
    let other = csrf(&html);
    assert_ne!(mine, other, "tokens are per session");

    let before = app.audit("conversation.create").await.len();
    let forms: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("/logout".into(), vec![]),
        (
            format!("/patients/{}/conversations", w.mine),
            vec![("title", "Chest pain")],
        ),
        (
            format!("/patients/{}/break-glass", w.theirs),
            vec![("reason", "Emergency admission, unconscious")],
        ),
        (
            "/admin/users".into(),
            vec![("username", "x-user"), ("role", "nurse")],
        ),
    ];
    for (path, fields) in &forms {
        for bad in [None, Some(other.as_str()), Some("")] {
            let mut f = fields.clone();
            if let Some(t) = bad {
                f.push(("csrf", t));
            }
            let r = post(&doc, &app, path, &f).await;
            let html = page(r, StatusCode::FORBIDDEN).await;
            assert!(html.contains("did not come from medai"), "{path}");
        }
    }
    assert_eq!(app.audit("conversation.create").await.len(), before);
    assert!(app.audit("patient.break_glass").await.is_empty());
    // The session is still alive (the refused logout did nothing) ...
    page(get(&doc, &app, "/patients").await, StatusCode::OK).await;
    // ... and the right token logs out.
    let r = post(&doc, &app, "/logout", &[("csrf", &mine)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/login?signed_out=1");
    let r = get(&doc, &app, "/api/v1/auth/session").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let html = page(get(&doc, &app, "/login?signed_out=1").await, StatusCode::OK).await;
    assert!(html.contains("You are signed out."));
}

#[tokio::test]
async fn navigation_shows_what_the_role_allows_and_the_server_refuses_the_rest() {
    let app = TestApp::start(DatabaseKind::Sqlite, Sessions::Memory).await;
    let w = world(&app).await;
    let (doc, _) = web_login(&app, "doc", &w.doc.secret, None).await;
    let (officer, to) = web_login(&app, "officer", &w.officer.secret, None).await;
    assert_eq!(to, "/");
    let (admin, _) = web_login(&app, "root-admin", &w.admin.secret, None).await;

    let html = page(get(&doc, &app, "/patients").await, StatusCode::OK).await;
    assert!(html.contains("href=\"/patients\" aria-current=\"page\""));
    assert!(!html.contains("/admin/users") && !html.contains("/compliance/audit"));
    assert!(html.contains("<nav aria-label=\"Main\">") && html.contains("<main id=\"main\""));
    assert!(html.contains("class=\"skip\" href=\"#main\""));
    assert!(html.contains("src=\"/static/app.js\""));
    assert!(html.contains("data-idle-seconds=\"900\""));
    assert!(html.contains("Stay signed in"));

    let html = page(
        get(&officer, &app, "/compliance/audit").await,
        StatusCode::OK,
    )
    .await;
    assert!(html.contains("/compliance/break-glass") && html.contains("/compliance/overrides"));
    assert!(!html.contains("href=\"/patients\"") && !html.contains("/admin/users"));
    assert!(html.contains("Integrity of the log"));

    let html = page(get(&admin, &app, "/admin/users").await, StatusCode::OK).await;
    assert!(html.contains("/admin/tokens"));
    assert!(!html.contains("href=\"/patients\"") && !html.contains("/compliance/audit"));

    // Typed addresses outside the role: a 403 page with a request id, audited.
    let denied = app.audit("access.denied").await.len();
    for (c, path) in [
        (&doc, "/admin/users"),
        (&doc, "/admin/tokens"),
        (&doc, "/compliance/audit"),
        (&officer, "/patients"),
        (&admin, "/patients"),
        (&admin, "/compliance/overrides"),
    ] {
        let r = get(c, &app, path).await;
        let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        let html = page(r, StatusCode::FORBIDDEN).await;
        assert!(html.contains(&rid), "{path}: request id shown");
        assert!(html.contains("Not allowed"));
    }
    assert_eq!(app.audit("access.denied").await.len(), denied + 6);
    // A change posted with a valid token by the wrong role is refused too.
    let html = page(get(&doc, &app, "/patients").await, StatusCode::OK).await;
    let t = csrf(&html);
    let r = post(
        &doc,
        &app,
        "/admin/users",
        &[("csrf", &t), ("username", "sneaky"), ("role", "admin")],
    )
    .await;
    page(r, StatusCode::FORBIDDEN).await;
    // A bearer token gets no pages.
    let r = doc
        .get(app.url("/patients"))
        .header("authorization", "Bearer medai_x")
        .send()
        .await
        .unwrap();
    page(r, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn error_pages_are_html_outside_the_api_and_json_inside() {
    let app = TestApp::start(DatabaseKind::Sqlite, Sessions::Memory).await;
    let c = browser();
    let r = get(&c, &app, "/no/such/page").await;
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let html = page(r, StatusCode::NOT_FOUND).await;
    assert!(html.contains("Not found") && html.contains(&rid));
    let r = c.delete(app.url("/login")).send().await.unwrap();
    page(r, StatusCode::METHOD_NOT_ALLOWED).await;
    let (s, code) = error_code(get(&c, &app, "/api/v1/no-such").await).await;
    assert_eq!((s, code.as_str()), (StatusCode::NOT_FOUND, "no_route"));

    // The static files are served by the binary.
    let r = get(&c, &app, "/static/app.css").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    assert!(r.text().await.unwrap().contains("contrast"));
    let r = get(&c, &app, "/static/app.js").await;
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert!(r.text().await.unwrap().contains("stay-signed-in"));

    // Throttled sign-in: a 429 page with Retry-After.
    let html = page(get(&c, &app, "/login").await, StatusCode::OK).await;
    let t = csrf(&html);
    let mut last = StatusCode::OK;
    for _ in 0..30 {
        let r = post(
            &c,
            &app,
            "/login",
            &[
                ("csrf", &t),
                ("username", "nobody"),
                ("password", "wrong password!!"),
            ],
        )
        .await;
        last = r.status();
        if last == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers().contains_key("retry-after"));
            let html = page(r, StatusCode::TOO_MANY_REQUESTS).await;
            assert!(html.contains("Too many attempts"));
            break;
        }
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn clinician_break_glass_conversation_and_feedback_through_the_pages() {
    let app = TestApp::start(DatabaseKind::Sqlite, Sessions::Memory).await;
    let w = world(&app).await;
    let (doc, _) = web_login(&app, "doc", &w.doc.secret, None).await;
    let (nurse, _) = web_login(&app, "nurse", &w.nurse.secret, None).await;

    // My patients, and the search by name or MRN.
    let html = page(get(&doc, &app, "/patients").await, StatusCode::OK).await;
    assert!(html.contains("Whitfield") && !html.contains("Okafor"));
    let html = page(
        get(&doc, &app, "/patients?name=whit&mrn=").await,
        StatusCode::OK,
    )
    .await;
    assert!(html.contains("Whitfield"));
    let html = page(
        get(&doc, &app, "/patients?mrn=MRN-999").await,
        StatusCode::OK,
    )
    .await;
    assert!(html.contains("No patient on your care teams matches"));
    let t = csrf(&html);

    // Another team's patient: the break-glass form, saying the access is recorded.
    let html = page(
        get(&doc, &app, &format!("/patients/{}", w.theirs)).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(html.contains("recorded") && html.contains("<label for=\"reason\">"));
    assert!(!html.contains("Okafor"), "no patient data before the grant");
    let r = post(
        &doc,
        &app,
        &format!("/patients/{}/break-glass", w.theirs),
        &[("csrf", &t), ("reason", "short")],
    )
    .await;
    let html = page(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(html.contains("Give a reason of 10 to 1000 characters."));
    let r = post(
        &doc,
        &app,
        &format!("/patients/{}/break-glass", w.theirs),
        &[
            ("csrf", &t),
            ("reason", "Unconscious in the emergency department"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = location(&r);
    assert_eq!(to, format!("/patients/{}?granted=1", w.theirs));
    let html = page(get(&doc, &app, &to).await, StatusCode::OK).await;
    assert!(html.contains("Okafor") && html.contains("Emergency access granted"));
    assert!(html.contains("Time left: <strong id=\"grant-left\">60 minutes"));
    // A nurse cannot break the glass: a plain 403 page.
    let html = page(
        get(&nurse, &app, &format!("/patients/{}", w.theirs)).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(!html.contains("break-glass\" method") && !html.contains("name=\"reason\""));

    // A conversation started from the patient page.
    let r = post(
        &doc,
        &app,
        &format!("/patients/{}/conversations", w.mine),
        &[("csrf", &t), ("title", "Chest pain")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let conv = location(&r);
    let cid = conv.strip_prefix("/conversations/").unwrap().to_owned();
    let html = page(get(&doc, &app, &conv).await, StatusCode::OK).await;
    assert!(html.contains(&format!(
        "data-stream-url=\"/api/v1/conversations/{cid}/messages\""
    )));
    assert!(html.contains("<label for=\"question\">"));
    // No model configured: the no-script post gets a 503 page, not JSON.
    let r = post(
        &doc,
        &app,
        &format!("{conv}/ask"),
        &[("csrf", &t), ("text", "Next steps?")],
    )
    .await;
    let html = page(r, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(html.contains("No model is configured"));

    // An answer: model and version under it, feedback buttons with labels.
    let mid = app
        .stored_answer(&cid, "Consider a troponin.", "tiny", "2026-01")
        .await;
    let html = page(get(&doc, &app, &conv).await, StatusCode::OK).await;
    assert!(html.contains("Model tiny, version 2026-01."));
    for id in ["h-", "v-", "c-"] {
        assert!(
            html.contains(&format!("<label class=\"choice\" for=\"{id}{mid}"))
                || html.contains(&format!("<label for=\"{id}{mid}"))
        );
    }
    let r = post(
        &doc,
        &app,
        &format!("/messages/{mid}/feedback"),
        &[
            ("csrf", &t),
            ("helpful", "not_helpful"),
            ("verdict", "unsafe"),
            ("comment", "Dose is wrong"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&r),
        format!("/conversations/{cid}?feedback=saved#m-{mid}")
    );
    let html = page(
        get(&doc, &app, &format!("{conv}?feedback=saved")).await,
        StatusCode::OK,
    )
    .await;
    assert!(html.contains("your feedback was saved"));
    assert!(html.contains("value=\"unsafe\" checked"));
    assert!(html.contains("Dose is wrong"));
    assert_eq!(app.audit("safety.override").await.len(), 1);
    // Feedback with nothing chosen is explained.
    let r = post(
        &doc,
        &app,
        &format!("/messages/{mid}/feedback"),
        &[("csrf", &t), ("comment", "")],
    )
    .await;
    let html = page(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(html.contains("Give helpful, verdict or both."));
    // The nurse reads the conversation but gets no feedback or question form.
    let html = page(get(&nurse, &app, &conv).await, StatusCode::OK).await;
    assert!(
        html.contains("Consider a troponin.")
            && !html.contains("/feedback\"")
            && !html.contains("ask-form")
    );

    // The compliance officer sees the grant, the override and the events.
    let (officer, _) = web_login(&app, "officer", &w.officer.secret, None).await;
    let html = page(
        get(&officer, &app, "/compliance/break-glass").await,
        StatusCode::OK,
    )
    .await;
    assert!(html.contains("Unconscious in the emergency department") && html.contains("doc"));
    let html = page(
        get(&officer, &app, "/compliance/overrides").await,
        StatusCode::OK,
    )
    .await;
    assert!(html.contains(&mid) && html.contains("2026-01"));
    let html = page(
        get(&officer, &app, &format!("/compliance/audit?user=doc&action=patient.break_glass&outcome=success&since=2000-01-01T00:00&patient={}", w.theirs)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(html.matches("<td>patient.break_glass</td>").count(), 1);
    let html = page(
        get(&officer, &app, "/compliance/audit?outcome=denied").await,
        StatusCode::OK,
    )
    .await;
    assert!(html.contains("access.denied") && !html.contains("<td>patient.break_glass</td>"));
    let r = get(&officer, &app, "/compliance/audit?since=yesterday").await;
    page(r, StatusCode::BAD_REQUEST).await;
}

/// An OpenAI-compatible upstream that streams a fixed answer.
async fn upstream() -> String {
    async fn completions() -> axum::response::Response {
        use axum::response::IntoResponse;
        let mut out = String::new();
        for piece in ["Obtain an ECG now. ", "Then a troponin."] {
            let c = json!({"id": "c1", "object": "chat.completion.chunk", "model": "tiny-upstream",
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]});
            out.push_str(&format!("data: {c}\n\n"));
        }
        let end = json!({"id": "c1", "object": "chat.completion.chunk", "model": "tiny-upstream",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
        out.push_str(&format!("data: {end}\n\ndata: [DONE]\n\n"));
        (
            [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
            out,
        )
            .into_response()
    }
    let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(completions));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn without_script_a_question_posts_and_the_page_shows_the_whole_answer() {
    let endpoint = upstream().await;
    let mut config = test_config();
    config.llm = Some(json!({
        "default_model": "tiny",
        "models": [{"id": "tiny", "provider": "openai", "endpoint": endpoint, "model": "tiny-upstream",
            "context_window": 4096, "params": {"temperature": 0.1}, "retry": {"max_retries": 0},
            "breaker": {"failure_threshold": 50, "cool_down": "1s"}}]
    }));
    let app = TestApp::start_with(DatabaseKind::Sqlite, Sessions::Memory, config).await;
    let w = world(&app).await;
    let (doc, _) = web_login(&app, "doc", &w.doc.secret, None).await;
    let cid = app.conversation(&w.doc, &w.mine, "Chest pain").await;
    let conv = format!("/conversations/{cid}");
    let html = page(get(&doc, &app, &conv).await, StatusCode::OK).await;
    let t = csrf(&html);
    let r = post(
        &doc,
        &app,
        &format!("{conv}/ask"),
        &[
            ("csrf", &t),
            (
                "text",
                "Crushing chest pain with diaphoresis right now. Next steps?",
            ),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), format!("{conv}#latest"));
    let html = page(get(&doc, &app, &conv).await, StatusCode::OK).await;
    assert!(
        html.contains("Obtain an ECG now. Then a troponin."),
        "{html}"
    );
    assert!(html.contains("Model tiny, version tiny-upstream."));
    // Triage fired: a prominent alert at the top and the notice on the question.
    assert!(
        html.contains("<section class=\"alert\" role=\"alert\""),
        "{html}"
    );
    assert!(html.contains("Escalation: "));
    // Closing the conversation removes the question form.
    let r = post(&doc, &app, &format!("{conv}/close"), &[("csrf", &t)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let html = page(get(&doc, &app, &conv).await, StatusCode::OK).await;
    assert!(!html.contains("ask-form") && html.contains("This conversation is closed"));
}

#[tokio::test]
async fn administrators_manage_users_teams_and_tokens_through_the_pages() {
    let app = TestApp::start(DatabaseKind::Sqlite, Sessions::Memory).await;
    let w = world(&app).await;
    let (admin, _) = web_login(&app, "root-admin", &w.admin.secret, None).await;
    let (doc, _) = web_login(&app, "doc", &w.doc.secret, None).await;
    let html = page(get(&admin, &app, "/admin/users").await, StatusCode::OK).await;
    let t = csrf(&html);
    assert!(
        html.contains("<label for=\"new-username\">") && html.contains("<label for=\"new-role\">")
    );
    let team = value_before(&html, "<option value=\"", "\">cardiology<");

    // Create a nurse on a team: the enrolment link is shown once.
    let r = post(
        &admin,
        &app,
        "/admin/users",
        &[
            ("csrf", &t),
            ("username", "new-nurse"),
            ("role", "nurse"),
            ("team", &team),
        ],
    )
    .await;
    let html = page(r, StatusCode::CREATED).await;
    assert!(html.contains("/setup?token="));
    let html = page(get(&admin, &app, "/admin/users").await, StatusCode::OK).await;
    assert!(html.contains("new-nurse") && html.contains("awaiting enrolment"));
    // A bad username is explained.
    let r = post(
        &admin,
        &app,
        "/admin/users",
        &[("csrf", &t), ("username", "A B"), ("role", "nurse")],
    )
    .await;
    page(r, StatusCode::UNPROCESSABLE_ENTITY).await;

    // A new team, a member added and removed.
    let r = post(
        &admin,
        &app,
        "/admin/care-teams",
        &[("csrf", &t), ("name", "neurology")],
    )
    .await;
    assert_eq!(location(&r), "/admin/users?done=team");
    let html = page(
        get(&admin, &app, "/admin/users?done=team").await,
        StatusCode::OK,
    )
    .await;
    assert!(html.contains("The care team was created.") && html.contains("neurology"));
    let neuro = value_before(&html, "<option value=\"", "\">neurology<");
    let r = post(
        &admin,
        &app,
        &format!("/admin/care-teams/{neuro}/members"),
        &[("csrf", &t), ("user_id", &w.doc.id)],
    )
    .await;
    assert_eq!(location(&r), "/admin/users?done=added");
    let r = post(
        &admin,
        &app,
        &format!("/admin/care-teams/{neuro}/members/{}/remove", w.doc.id),
        &[("csrf", &t)],
    )
    .await;
    assert_eq!(location(&r), "/admin/users?done=removed");

    // Reset MFA shows a new link.
    let r = post(
        &admin,
        &app,
        &format!("/admin/users/{}/reset-mfa", w.nurse.id),
        &[("csrf", &t)],
    )
    .await;
    assert!(page(r, StatusCode::OK).await.contains("/setup?token="));

    // Disable the clinician: their next page goes to the login page.
    page(get(&doc, &app, "/patients").await, StatusCode::OK).await;
    let r = post(
        &admin,
        &app,
        &format!("/admin/users/{}/disable", w.doc.id),
        &[("csrf", &t)],
    )
    .await;
    assert_eq!(location(&r), "/admin/users?done=disabled");
    let r = get(&doc, &app, "/patients").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(location(&r).starts_with("/login?next=/patients"));

    // Tokens: created and shown once, listed without the secret, revoked.
    let svc = app.user(&w.admin, "ehr-feed", Role::Service, &[]).await;
    let html = page(get(&admin, &app, "/admin/tokens").await, StatusCode::OK).await;
    assert!(html.contains(&format!("<option value=\"{}\">ehr-feed", svc.id)));
    let r = post(
        &admin,
        &app,
        "/admin/tokens",
        &[
            ("csrf", &t),
            ("user_id", &svc.id),
            ("name", "ADT feed"),
            ("days", "30"),
        ],
    )
    .await;
    let html = page(r, StatusCode::CREATED).await;
    let token = after(&html, "<p class=\"secret\" id=\"new-token\">", "</p>");
    assert!(token.starts_with("medai_"), "{token}");
    let r = client()
        .get(app.url("/api/v1/audit/status"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "the token authenticates");
    let html = page(get(&admin, &app, "/admin/tokens").await, StatusCode::OK).await;
    assert!(!html.contains(&token), "shown once");
    let tid = after(&html, "action=\"/admin/tokens/", "/revoke\"");
    let r = post(
        &admin,
        &app,
        &format!("/admin/tokens/{tid}/revoke"),
        &[("csrf", &t)],
    )
    .await;
    assert_eq!(location(&r), "/admin/tokens?done=revoked");
    let r = client()
        .get(app.url("/api/v1/audit/status"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// The text between the last `start` before the first `end` and that `end` (an option's value
/// from its label).
fn value_before(s: &str, start: &str, end: &str) -> String {
    let j = s.find(end).unwrap_or_else(|| panic!("{end} not in page"));
    let i = s[..j].rfind(start).unwrap() + start.len();
    s[i..j].to_owned()
}

/// The text between the first `start` and the next `end`.
fn after(s: &str, start: &str, end: &str) -> String {
    let i = s
        .find(start)
        .unwrap_or_else(|| panic!("{start} not in page"))
        + start.len();
    let j = s[i..].find(end).unwrap() + i;
    s[i..j].to_owned()
}
