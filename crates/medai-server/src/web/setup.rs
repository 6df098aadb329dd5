//! The setup-link pages: choose a password (and, for the first administrator, a username), add
//! the TOTP secret from a server-rendered QR code, confirm a code, see the recovery codes once.

use super::page::render;
use crate::api::enrolment::{self, EnrolChallenge, EnrolFinish, EnrolStart};
use crate::error::{current_request_id, ApiError};
use crate::extract::ClientInfo;
use crate::state::AppState;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use serde::Deserialize;

#[derive(Template)]
#[template(path = "setup_password.html")]
struct PasswordPage {
    token: String,
    first_admin: bool,
    username: String,
    min_length: usize,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "setup_totp.html")]
struct TotpPage {
    token: String,
    username: String,
    secret: String,
    qr_svg: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "setup_done.html")]
struct DonePage {
    username: String,
    codes: Vec<String>,
}

#[derive(Template)]
#[template(path = "setup_error.html")]
struct ErrorPage {
    message: String,
    request_id: Option<String>,
}

fn error_page(e: &ApiError) -> Response {
    if e.status().is_server_error() {
        // The detail goes to the log; the page shows only the generic message.
        tracing::error!(code = e.code(), detail = %e, "setup page failed");
    }
    render(
        e.status(),
        &ErrorPage {
            message: e.public_message(),
            request_id: current_request_id(),
        },
    )
}

/// An SVG QR code of `data`, inline in the page (no external request, no script).
fn qr_svg(data: &str) -> String {
    match qrcode::QrCode::new(data.as_bytes()) {
        Ok(code) => {
            let svg = code
                .render::<qrcode::render::svg::Color>()
                .min_dimensions(220, 220)
                .build();
            // Drop the XML declaration; the element is embedded in HTML.
            match svg.find("<svg") {
                Some(i) => svg[i..].replacen(
                    "<svg",
                    "<svg role=\"img\" aria-label=\"QR code of the authenticator key\"",
                    1,
                ),
                None => String::new(),
            }
        }
        Err(_) => String::new(),
    }
}

fn totp_page(token: String, ch: EnrolChallenge, error: Option<String>) -> Response {
    render(
        if error.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
        &TotpPage {
            qr_svg: qr_svg(&ch.otpauth_uri),
            token,
            username: ch.username,
            secret: ch.totp_secret,
            error,
        },
    )
}

/// The link's query.
#[derive(Deserialize)]
pub struct LinkQuery {
    token: Option<String>,
}

/// `GET /setup?token=…`: the password form.
pub async fn show(State(st): State<AppState>, Query(q): Query<LinkQuery>) -> Response {
    let token = q.token.unwrap_or_default();
    match enrolment::inspect(&st, &token).await {
        Ok((first_admin, username)) => render(
            StatusCode::OK,
            &PasswordPage {
                token,
                first_admin,
                username: username.unwrap_or_default(),
                min_length: st.config.auth.password_min_length,
                error: None,
            },
        ),
        Err(e) => error_page(&e),
    }
}

/// The password form.
#[derive(Deserialize)]
pub struct PasswordForm {
    token: String,
    username: Option<String>,
    password: String,
    confirm: String,
}

/// `POST /setup`: step one, then the QR code page.
pub async fn password(
    State(st): State<AppState>,
    form: Result<Form<PasswordForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return error_page(&ApiError::bad_request(
            "bad_form",
            "the form was incomplete; open the link again",
        ));
    };
    let (first_admin, known) = match enrolment::inspect(&st, &f.token).await {
        Ok(x) => x,
        Err(e) => return error_page(&e),
    };
    // The form again with the reason; the username shown is the one typed (setup) or the
    // account's own (enrolment).
    let retry = |msg: String| {
        let username = if first_admin {
            f.username.clone()
        } else {
            known.clone()
        };
        render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &PasswordPage {
                token: f.token.clone(),
                first_admin,
                username: username.unwrap_or_default(),
                min_length: st.config.auth.password_min_length,
                error: Some(msg),
            },
        )
    };
    if f.password != f.confirm {
        return retry("The two passwords differ.".into());
    }
    let req = EnrolStart {
        token: f.token.clone(),
        username: f.username.clone(),
        password: f.password.clone(),
    };
    match enrolment::begin(&st, req).await {
        Ok(ch) => totp_page(f.token.clone(), ch, None),
        Err(e) if e.status().is_client_error() && e.code() != "invalid_link" => {
            retry(e.public_message())
        }
        Err(e) => error_page(&e),
    }
}

/// The code form.
#[derive(Deserialize)]
pub struct ConfirmForm {
    token: String,
    code: String,
}

/// `POST /setup/confirm`: step two, then the recovery codes.
pub async fn confirm(
    State(st): State<AppState>,
    client: ClientInfo,
    form: Result<Form<ConfirmForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return error_page(&ApiError::bad_request(
            "bad_form",
            "the form was incomplete; open the link again",
        ));
    };
    let req = EnrolFinish {
        token: f.token.clone(),
        code: f.code.clone(),
    };
    match enrolment::complete(&st, &client, req).await {
        Ok(done) => render(
            StatusCode::OK,
            &DonePage {
                username: done.username,
                codes: done.recovery_codes,
            },
        ),
        Err(e) if e.code() == "invalid_code" => match enrolment::pending_challenge(&st, &f.token).await {
            Ok(ch) => totp_page(f.token, ch, Some("That code is not valid. Check the time on your device and try the current code.".into())),
            Err(e) => error_page(&e),
        },
        Err(e) => error_page(&e),
    }
}
