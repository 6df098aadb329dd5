//! Sign-in pages: password, then the TOTP code (or a recovery code), logout, and `/`. Each step
//! calls the JSON API's handler, so throttling, lockout, auditing and session rules are the
//! API's own; the pages add CSRF tokens and a validated return address.

use super::page::{
    cookie, csrf_for, csrf_ok, csrf_refused, error_page, home_of, login_binding, query_escape,
    render, safe_next, see_other, sentence, CsrfForm, Lenient, NoFields, WebUser,
    LOGIN_CSRF_COOKIE,
};
use crate::api::auth::{self, LoginRequest, RecoveryRequest, TotpRequest};
use crate::error::ApiError;
use crate::extract::{session_cookie, ApiJson, ClientInfo, Principal};
use crate::state::AppState;
use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequestParts as _, Request, State};
use axum::http::header::{RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    next: Option<String>,
    username: String,
    expired: bool,
    signed_out: bool,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "login_code.html")]
struct CodePage {
    csrf: String,
    next: Option<String>,
    next_query: String,
    recovery: bool,
    error: Option<String>,
}

/// The login page's query.
#[derive(Deserialize, Default)]
pub struct LoginQuery {
    next: Option<String>,
    expired: Option<String>,
    signed_out: Option<String>,
}

fn next_query(next: Option<&str>) -> String {
    next.map(|n| format!("?next={}", query_escape(n)))
        .unwrap_or_default()
}

fn with_cookie(mut resp: Response, set: Option<HeaderValue>) -> Response {
    if let Some(v) = set {
        resp.headers_mut().append(SET_COOKIE, v);
    }
    resp
}

/// `GET /login`: the password form. A user already signed in goes on to where they were going.
pub async fn login_form(
    State(st): State<AppState>,
    Lenient(q): Lenient<LoginQuery>,
    req: Request,
) -> Response {
    let next = safe_next(q.next.as_deref());
    let (mut parts, _) = req.into_parts();
    if session_cookie(&parts.headers).is_some() {
        // A live session skips the form; an ended one is closed (and audited) by the extractor.
        if let Ok(p) = Principal::from_request_parts(&mut parts, &st).await {
            return see_other(next.as_deref().unwrap_or(home_of(p.user.role)));
        }
    }
    let (binding, set) = login_binding(&st, &parts.headers);
    let page = LoginPage {
        csrf: csrf_for(&binding),
        next,
        username: String::new(),
        expired: q.expired.is_some(),
        signed_out: q.signed_out.is_some(),
        error: None,
    };
    with_cookie(render(StatusCode::OK, &page), set)
}

/// The password form.
#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

fn bad_form() -> Response {
    error_page(&ApiError::bad_request(
        "bad_form",
        "the form was incomplete or malformed; reload the page and try again",
    ))
}

/// The message and headers of a refused sign-in step.
fn refusal(e: &ApiError) -> (StatusCode, String, Option<HeaderValue>) {
    match e {
        ApiError::TooManyRequests { retry_after, .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many attempts. Try again in {} seconds.",
                (*retry_after).max(1)
            ),
            HeaderValue::from_str(&retry_after.max(&1).to_string()).ok(),
        ),
        other => (other.status(), sentence(&other.public_message()), None),
    }
}

/// `POST /login`: checks the password; on success the MFA-pending session cookie is set and the
/// code page follows.
pub async fn login_submit(
    State(st): State<AppState>,
    client: ClientInfo,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return bad_form();
    };
    let binding = cookie(&headers, LOGIN_CSRF_COOKIE);
    if !csrf_ok(binding.as_deref(), &f.csrf) {
        return csrf_refused();
    }
    let next = safe_next(f.next.as_deref());
    let req = LoginRequest {
        username: f.username.clone(),
        password: f.password,
    };
    match auth::login(State(st.clone()), client, ApiJson(req)).await {
        Ok(resp) => {
            let set = resp.headers().get(SET_COOKIE).cloned();
            with_cookie(
                see_other(&format!("/login/totp{}", next_query(next.as_deref()))),
                set,
            )
        }
        Err(e @ (ApiError::Unauthorized { .. } | ApiError::TooManyRequests { .. })) => {
            let (status, msg, retry) = refusal(&e);
            let page = LoginPage {
                csrf: f.csrf,
                next,
                username: f.username.chars().take(64).collect(),
                expired: false,
                signed_out: false,
                error: Some(msg),
            };
            let mut resp = render(status, &page);
            if let Some(r) = retry {
                resp.headers_mut().insert(RETRY_AFTER, r);
            }
            resp
        }
        Err(e) => error_page(&e),
    }
}

/// The code pages' query.
#[derive(Deserialize, Default)]
pub struct NextQuery {
    next: Option<String>,
}

fn code_form(headers: &HeaderMap, next: Option<String>, recovery: bool) -> Response {
    let Some(binding) = session_cookie(headers) else {
        return see_other("/login");
    };
    render(
        StatusCode::OK,
        &CodePage {
            csrf: csrf_for(&binding),
            next_query: next_query(next.as_deref()),
            next,
            recovery,
            error: None,
        },
    )
}

/// `GET /login/totp`: the code form (after the password step).
pub async fn totp_form(headers: HeaderMap, Lenient(q): Lenient<NextQuery>) -> Response {
    code_form(&headers, safe_next(q.next.as_deref()), false)
}

/// `GET /login/recovery`: the recovery-code form.
pub async fn recovery_form(headers: HeaderMap, Lenient(q): Lenient<NextQuery>) -> Response {
    code_form(&headers, safe_next(q.next.as_deref()), true)
}

/// A second-factor form.
#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
    next: Option<String>,
}

async fn code_submit(
    st: AppState,
    client: ClientInfo,
    headers: HeaderMap,
    form: Result<Form<CodeForm>, FormRejection>,
    recovery: bool,
) -> Response {
    let Ok(Form(f)) = form else {
        return bad_form();
    };
    if !csrf_ok(session_cookie(&headers).as_deref(), &f.csrf) {
        return csrf_refused();
    }
    let next = safe_next(f.next.as_deref());
    let code = f.code.trim().to_owned();
    let result = if recovery {
        auth::recovery(
            State(st.clone()),
            client,
            headers,
            ApiJson(RecoveryRequest { code }),
        )
        .await
    } else {
        auth::totp(
            State(st.clone()),
            client,
            headers,
            ApiJson(TotpRequest { code }),
        )
        .await
    };
    match result {
        Ok(resp) => {
            let set = resp.headers().get(SET_COOKIE).cloned();
            with_cookie(see_other(next.as_deref().unwrap_or("/")), set)
        }
        Err(ApiError::Unauthorized {
            code: "no_pending_login",
            ..
        }) => see_other(&format!(
            "/login?expired=1{}",
            next.map(|n| format!("&next={}", query_escape(&n)))
                .unwrap_or_default()
        )),
        Err(e @ (ApiError::Unauthorized { .. } | ApiError::TooManyRequests { .. })) => {
            let (status, msg, retry) = refusal(&e);
            let page = CodePage {
                csrf: f.csrf,
                next_query: next_query(next.as_deref()),
                next,
                recovery,
                error: Some(msg),
            };
            let mut resp = render(status, &page);
            if let Some(r) = retry {
                resp.headers_mut().insert(RETRY_AFTER, r);
            }
            resp
        }
        Err(e) => error_page(&e),
    }
}

/// `POST /login/totp`: completes sign-in with the authenticator code.
pub async fn totp_submit(
    State(st): State<AppState>,
    client: ClientInfo,
    headers: HeaderMap,
    form: Result<Form<CodeForm>, FormRejection>,
) -> Response {
    code_submit(st, client, headers, form, false).await
}

/// `POST /login/recovery`: completes sign-in with a recovery code.
pub async fn recovery_submit(
    State(st): State<AppState>,
    client: ClientInfo,
    headers: HeaderMap,
    form: Result<Form<CodeForm>, FormRejection>,
) -> Response {
    code_submit(st, client, headers, form, true).await
}

/// `POST /logout`: ends the session (audited) and removes the cookie.
pub async fn logout(
    State(st): State<AppState>,
    u: WebUser,
    CsrfForm(_): CsrfForm<NoFields>,
) -> Response {
    match auth::logout(State(st), u.p).await {
        Ok(resp) => {
            let clear = resp.headers().get(SET_COOKIE).cloned();
            with_cookie(see_other("/login?signed_out=1"), clear)
        }
        Err(e) => error_page(&e),
    }
}

/// `GET /`: the signed-in user's start page (or the login page).
pub async fn home(u: WebUser) -> Response {
    see_other(home_of(u.p.user.role)).into_response()
}
