//! What every page shares: the signed-in user extractor (which sends an expired session to the
//! login page and back), CSRF tokens tied to the session, the navigation a role may see, page
//! rendering with the page security headers, and the HTML error pages.

use crate::error::{current_request_id, ApiError};
pub use crate::extract::cookie;
use crate::extract::{session_cookie, AuthKind, Principal};
use crate::state::AppState;
use askama::Template;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use medai_core::identity::{random_token, sha256_hex};
use medai_core::{Action, Role};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use subtle::ConstantTimeEq as _;

/// The Content-Security-Policy of every page: our own script and style files only, no inline
/// code, no framing, forms post only to this origin.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
base-uri 'none'";

/// The cookie that binds the login form's CSRF token before any session exists.
pub const LOGIN_CSRF_COOKIE: &str = "medai_login_csrf";

/// A CSRF token for forms of the session (or pre-login value) `binding`: SHA-256 over a
/// domain-separation prefix and the cookie's secret value. The cookie is `HttpOnly` and
/// 256-bit random, so another site can neither read nor compute the token, and the token never
/// reveals the cookie (nor equals the session's store key, the plain hash).
pub fn csrf_for(binding: &str) -> String {
    sha256_hex(format!("medai-csrf-v1\0{binding}").as_bytes())
}

/// Whether `given` is the CSRF token of `binding`, compared in constant time.
pub fn csrf_ok(binding: Option<&str>, given: &str) -> bool {
    match binding {
        Some(b) => {
            let want = csrf_for(b);
            want.len() == given.len() && bool::from(want.as_bytes().ct_eq(given.as_bytes()))
        }
        None => false,
    }
}

/// The login-form cookie, and the `Set-Cookie` that creates it when the request had none.
pub fn login_binding(st: &AppState, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    if let Some(v) = cookie(headers, LOGIN_CSRF_COOKIE) {
        return (v, None);
    }
    let v = random_token(32);
    let secure = if st.config.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    let set = HeaderValue::from_str(&format!(
        "{LOGIN_CSRF_COOKIE}={v}; Path=/login; HttpOnly; SameSite=Strict{secure}"
    ))
    .ok();
    (v, set)
}

/// Whether `next` is a safe place to return to after login: a path on this site (not `//host`,
/// not a scheme, not the JSON API), printable ASCII, at most 512 bytes.
pub fn safe_next(next: Option<&str>) -> Option<String> {
    let n = next?.trim();
    let ok = n.starts_with('/')
        && !n.starts_with("//")
        && !n.starts_with("/\\")
        && !n.starts_with("/api/")
        && !n.starts_with("/login")
        && n.len() <= 512
        && n.bytes().all(|b| b.is_ascii_graphic())
        && !n.contains('\\');
    ok.then(|| n.to_owned())
}

/// Percent-encodes `v`, keeping letters, digits, `-._~` and the bytes in `keep`.
fn escape(v: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a value for a query string (a local path keeps its slashes).
pub fn query_escape(v: &str) -> String {
    escape(v, b"/")
}

/// Percent-encodes a path segment for a `Location` header.
pub fn seg(v: &str) -> String {
    escape(v, b"")
}

/// The query of a page, or its defaults when it cannot be read (a page's query only fills
/// forms and notices; anything that matters is validated by the handler it reaches).
pub struct Lenient<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequestParts<S> for Lenient<T> {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, st: &S) -> Result<Self, Self::Rejection> {
        Ok(Lenient(
            axum::extract::Query::<T>::from_request_parts(parts, st)
                .await
                .map(|q| q.0)
                .unwrap_or_default(),
        ))
    }
}

/// Where a user lands after login (and at `/`).
pub fn home_of(role: Role) -> &'static str {
    match role {
        Role::Clinician | Role::Nurse => "/patients",
        Role::ComplianceOfficer => "/compliance/audit",
        Role::Admin => "/admin/users",
        Role::Service => "/login",
    }
}

/// The header of every signed-in page: who is signed in, the links their role allows, the
/// logout form's CSRF token and the idle timeout (for the warning script).
pub struct Nav {
    /// Username.
    pub username: String,
    /// Role, as shown.
    pub role: &'static str,
    /// CSRF token of this session's forms.
    pub csrf: String,
    /// Show "My patients".
    pub patients: bool,
    /// Show the compliance pages.
    pub compliance: bool,
    /// Show the administration pages.
    pub admin: bool,
    /// Seconds of inactivity before automatic logoff.
    pub idle_secs: u64,
    /// Which link is the current page (`patients`, `audit`, `grants`, `overrides`, `users`,
    /// `tokens`).
    pub current: &'static str,
}

impl Nav {
    /// The idle timeout in words: "15 minutes", "1 minute", "90 seconds".
    pub fn idle_phrase(&self) -> String {
        duration_phrase(self.idle_secs)
    }
}

/// Seconds in words, in whole minutes where they divide evenly.
pub fn duration_phrase(secs: u64) -> String {
    match secs {
        60 => "1 minute".to_string(),
        s if s % 60 == 0 => format!("{} minutes", s / 60),
        1 => "1 second".to_string(),
        s => format!("{s} seconds"),
    }
}

/// The signed-in user of a page request: a full session (never a bearer token). Without one, a
/// GET is sent to the login page with a `next` back to it; other methods get the login page.
pub struct WebUser {
    /// The principal, as the API handlers take it.
    pub p: Principal,
    /// The session cookie's value (the CSRF binding).
    pub cookie: String,
}

impl WebUser {
    /// The navigation for this user, with `current` marked.
    pub fn nav(&self, st: &AppState, current: &'static str) -> Nav {
        let role = self.p.user.role;
        Nav {
            username: self.p.user.username.clone(),
            role: role_label(role),
            csrf: csrf_for(&self.cookie),
            patients: role.permits(Action::PatientList),
            compliance: role.permits(Action::AuditRead),
            admin: role.permits(Action::UserManage),
            idle_secs: st.config.auth.session_idle_timeout.as_secs(),
            current,
        }
    }

    /// Whether the role may perform `action` (for showing a control; the server checks again).
    pub fn can(&self, action: Action) -> bool {
        self.p.user.role.permits(action)
    }
}

/// A role as people read it.
pub fn role_label(role: Role) -> &'static str {
    match role {
        Role::Clinician => "Clinician",
        Role::Nurse => "Nurse",
        Role::Admin => "Administrator",
        Role::ComplianceOfficer => "Compliance officer",
        Role::Service => "Service account",
    }
}

fn to_login(parts: &Parts, expired: bool) -> Response {
    let mut url = String::from("/login");
    let mut sep = '?';
    if parts.method == Method::GET {
        let here = parts
            .uri
            .path_and_query()
            .map_or("/", axum::http::uri::PathAndQuery::as_str);
        if let Some(next) = safe_next(Some(here)).filter(|n| n != "/") {
            url.push_str(&format!("?next={}", query_escape(&next)));
            sep = '&';
        }
    }
    if expired {
        url.push(sep);
        url.push_str("expired=1");
    }
    Redirect::to(&url).into_response()
}

impl FromRequestParts<AppState> for WebUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Response> {
        if parts.headers.contains_key(header::AUTHORIZATION) {
            return Err(error_page(&ApiError::forbidden(
                "forbidden",
                "pages are for signed-in people; integrations use the JSON API",
            )));
        }
        let Some(cookie) = session_cookie(&parts.headers) else {
            return Err(to_login(parts, false));
        };
        match Principal::from_request_parts(parts, st).await {
            Ok(p) if matches!(p.auth, AuthKind::Session { .. }) => Ok(WebUser { p, cookie }),
            Ok(_) => Err(to_login(parts, false)),
            Err(ApiError::Unauthorized { code, .. }) => {
                Err(to_login(parts, code == "session_expired"))
            }
            Err(e) => Err(error_page(&e)),
        }
    }
}

/// A form with a CSRF token tied to the session. The token is checked before the handler runs;
/// a missing or wrong one is refused with a 403 page and nothing happens.
pub struct CsrfForm<T>(pub T);

#[derive(Deserialize)]
struct WithCsrf<T> {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    inner: T,
}

/// A form with no fields but the CSRF token.
#[derive(Deserialize)]
pub struct NoFields {}

/// The refusal of a form without a valid CSRF token.
pub fn csrf_refused() -> Response {
    error_page(&ApiError::forbidden(
        "csrf",
        "this form has expired or did not come from medai; reload the page and try again",
    ))
}

impl<T: DeserializeOwned> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, st: &AppState) -> Result<Self, Response> {
        let binding = session_cookie(req.headers());
        let form = axum::Form::<WithCsrf<T>>::from_request(req, st).await;
        match form {
            Ok(axum::Form(f)) if csrf_ok(binding.as_deref(), &f.csrf) => Ok(CsrfForm(f.inner)),
            Ok(_) => Err(csrf_refused()),
            Err(rej) if rej.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(error_page(&ApiError::PayloadTooLarge))
            }
            Err(_) => Err(error_page(&ApiError::bad_request(
                "bad_form",
                "the form was incomplete or malformed; reload the page and try again",
            ))),
        }
    }
}

/// Adds the page security headers to a response.
pub fn page_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
    );
}

/// Renders a page with its status and the page security headers.
pub fn render(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => {
            let mut resp = (status, Html(html)).into_response();
            page_headers(&mut resp);
            resp
        }
        Err(e) => {
            tracing::error!(detail = %e, "template failed");
            error_page(&ApiError::Internal(format!("template: {e}")))
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    status: u16,
    title: &'static str,
    message: String,
    request_id: Option<String>,
}

/// The HTML error page of an error: the status, a message without internal detail, and the
/// request id to quote. 5xx detail goes to the log only.
pub fn error_page(e: &ApiError) -> Response {
    let status = e.status();
    if status.is_server_error() {
        tracing::error!(code = e.code(), detail = %e_detail(e), "page failed");
    }
    let title = match status.as_u16() {
        400 => "The request was not understood",
        401 => "Sign in first",
        403 => "Not allowed",
        404 => "Not found",
        405 => "Not allowed here",
        409 => "Conflict",
        413 => "Too large",
        422 => "Please check the form",
        429 => "Too many attempts",
        503 => "Temporarily unavailable",
        s if s >= 500 => "Something went wrong",
        _ => "The request failed",
    };
    let message = if status.is_server_error() && !matches!(e, ApiError::Model { .. }) {
        "The server could not complete the request. Nothing about it was shown here; quote the request id to support.".to_owned()
    } else {
        sentence(&e.public_message())
    };
    let page = ErrorPage {
        status: status.as_u16(),
        title,
        message,
        request_id: current_request_id(),
    };
    let mut resp = match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (status, "error").into_response(),
    };
    page_headers(&mut resp);
    let retry = match e {
        ApiError::TooManyRequests { retry_after, .. } => Some(*retry_after),
        ApiError::Model { retry_after, .. } => *retry_after,
        _ => None,
    };
    if let Some(s) = retry.and_then(|s| HeaderValue::from_str(&s.max(1).to_string()).ok()) {
        resp.headers_mut().insert(header::RETRY_AFTER, s);
    }
    resp
}

fn e_detail(e: &ApiError) -> String {
    match e {
        ApiError::Internal(d) | ApiError::Unavailable(d) => d.clone(),
        ApiError::Encrypt { detail, .. } => detail.clone(),
        other => other.to_string(),
    }
}

/// The API's lower-case messages as sentences.
pub fn sentence(s: &str) -> String {
    let mut c = s.chars();
    let mut out: String = match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    };
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

/// A page handler's result: a response, or an error shown as a page (a lost session goes to the
/// login page).
pub type PageResult = Result<Response, PageError>;

/// An error inside a page handler.
pub struct PageError(pub ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError(e)
    }
}

impl From<medai_store::StoreError> for PageError {
    fn from(e: medai_store::StoreError) -> Self {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self.0 {
            ApiError::Unauthorized { .. } => Redirect::to("/login?expired=1").into_response(),
            e => error_page(&e),
        }
    }
}

/// A 303 to `to` (after a form post).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// The HTML 404 of an unknown page.
pub fn not_found_page() -> Response {
    error_page(&ApiError::NotFound("page"))
}

/// Formats Unix seconds as `YYYY-MM-DD HH:MM UTC`.
pub fn when(ts: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .ok()
        })
        .unwrap_or_default()
}

/// Shortens an RFC 3339 time from the API to `YYYY-MM-DD HH:MM:SS UTC`.
pub fn short_time(rfc3339: &str) -> String {
    match time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339) {
        Ok(t) => t
            .format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            ))
            .unwrap_or_else(|_| rfc3339.to_owned()),
        Err(_) => rfc3339.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_accepts_local_paths_only() {
        assert_eq!(
            safe_next(Some("/patients?name=x")).as_deref(),
            Some("/patients?name=x")
        );
        for bad in [
            "//evil.example/",
            "/\\evil.example",
            "https://evil.example/",
            "javascript:alert(1)",
            "patients",
            "/api/v1/users",
            "/login?next=/x",
            "/a b",
            "/a\nb",
        ] {
            assert_eq!(safe_next(Some(bad)), None, "{bad}");
        }
        assert_eq!(safe_next(Some(&format!("/{}", "a".repeat(600)))), None);
        assert_eq!(safe_next(None), None);
    }

    #[test]
    fn csrf_tokens_are_bound_to_their_cookie() {
        let t = csrf_for("cookie-a");
        assert!(csrf_ok(Some("cookie-a"), &t));
        assert!(!csrf_ok(Some("cookie-b"), &t));
        assert!(!csrf_ok(None, &t));
        assert!(!csrf_ok(Some("cookie-a"), ""));
        assert!(!csrf_ok(Some("cookie-a"), &t[..10]));
        assert_ne!(t, sha256_hex(b"cookie-a"), "not the session's store key");
    }

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(query_escape("/p?a=1&b=2"), "/p%3Fa%3D1%26b%3D2");
    }

    #[tokio::test]
    async fn server_error_pages_hide_the_detail_and_show_the_request_id() {
        let resp = crate::error::REQUEST_ID
            .scope("req-77".to_owned(), async {
                error_page(&ApiError::Internal("table users: secret detail".into()))
            })
            .await;
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(resp.headers()[header::CONTENT_SECURITY_POLICY], PAGE_CSP);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let html = String::from_utf8(body.to_vec()).unwrap();
        assert!(html.contains("req-77"), "{html}");
        assert!(html.contains("Something went wrong"));
        assert!(!html.contains("secret"), "{html}");

        let resp = error_page(&ApiError::TooManyRequests {
            retry_after: 9,
            code: "throttled",
        });
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "9");
    }

    #[test]
    fn messages_become_sentences() {
        assert_eq!(sentence("patient not found"), "Patient not found.");
        assert_eq!(sentence("Done."), "Done.");
    }

    #[test]
    fn durations_read_as_words() {
        assert_eq!(super::duration_phrase(900), "15 minutes");
        assert_eq!(super::duration_phrase(60), "1 minute");
        assert_eq!(super::duration_phrase(61), "61 seconds");
        assert_eq!(super::duration_phrase(1), "1 second");
    }
}
