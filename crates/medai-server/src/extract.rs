//! Extractors: JSON, query and path with JSON errors, the client's address and request id, and
//! the authenticated principal. A handler that takes [`Principal`] cannot run unauthenticated.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use medai_core::audit::{AuditEvent, Outcome};
use medai_core::identity::{sha256_hex, API_TOKEN_PREFIX};
use medai_store::ephemeral::SessionRecord;
use medai_store::users::User;
use medai_store::{audit, tokens, users};
use serde::de::DeserializeOwned;
use std::net::{IpAddr, SocketAddr};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "medai_session";

/// A JSON body; rejections become JSON errors (415, 400, 413, 422).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rej) => Err(json_rejection(rej)),
        }
    }
}

fn json_rejection(rej: JsonRejection) -> ApiError {
    match rej {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::UnsupportedMediaType("expected Content-Type: application/json".into())
        }
        JsonRejection::JsonSyntaxError(e) => ApiError::bad_request(
            "malformed_json",
            format!("request body is not valid JSON: {}", inner(&e.body_text())),
        ),
        JsonRejection::JsonDataError(e) => ApiError::invalid("invalid_body", inner(&e.body_text())),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        other => ApiError::bad_request("unreadable_body", other.body_text()),
    }
}

/// axum prefixes serde's message with its own sentence; keep serde's part.
fn inner(text: &str) -> String {
    text.split_once(": ")
        .map_or(text, |(_, rest)| rest)
        .to_owned()
}

/// Query parameters; rejections become 400 JSON errors.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| {
                ApiError::bad_request("invalid_query", inner(&e.body_text()))
            })
    }
}

/// Path parameters; rejections become 400 JSON errors.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e: PathRejection| ApiError::bad_request("invalid_path", e.body_text()))
    }
}

/// Where a request came from.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    /// The client address (the peer, or the first untrusted `X-Forwarded-For` hop when the peer
    /// is a trusted proxy).
    pub ip: Option<IpAddr>,
    /// The request id.
    pub request_id: Option<String>,
}

impl ClientInfo {
    /// The address as text, for audit events.
    pub fn addr(&self) -> Option<String> {
        self.ip.map(|i| i.to_string())
    }

    /// Stamps an audit event with this origin.
    pub fn stamp(&self, e: AuditEvent) -> AuditEvent {
        e.origin(self.addr(), self.request_id.clone())
    }
}

fn client_info(parts: &Parts, st: &AppState) -> ClientInfo {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let forwarded: Vec<&str> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let ip = medai_core::net::resolve_client_ip(peer, &forwarded, &st.config.trusted_proxies);
    let request_id = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    ClientInfo { ip, request_id }
}

impl FromRequestParts<AppState> for ClientInfo {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        Ok(client_info(parts, st))
    }
}

/// The value of the session cookie, if any.
pub fn session_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    cookie(headers, SESSION_COOKIE)
}

/// The value of the cookie `name`, if any and not empty.
pub fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

/// How the principal authenticated.
#[derive(Debug, Clone)]
pub enum AuthKind {
    /// An interactive session.
    Session {
        /// SHA-256 of the session token (the store key).
        id_hash: String,
        /// The session.
        record: SessionRecord,
    },
    /// A service API token.
    Token {
        /// The token's id.
        token_id: String,
        /// Actions granted beyond the role.
        scopes: Vec<String>,
    },
}

/// An authenticated user (session after MFA, or service token).
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user.
    pub user: User,
    /// How they authenticated.
    pub auth: AuthKind,
    /// Where the request came from.
    pub client: ClientInfo,
}

impl Principal {
    /// An audit event acted by this principal, stamped with the request's origin.
    pub fn event(&self, at: i64, action: &str, outcome: Outcome) -> AuditEvent {
        self.client.stamp(
            AuditEvent::new(at, action, outcome).actor(&self.user.id, self.user.role.as_str()),
        )
    }
}

fn unauthenticated() -> ApiError {
    ApiError::unauthorized("unauthenticated", "sign in first")
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let client = client_info(parts, st);
        if let Some(authz) = parts.headers.get(header::AUTHORIZATION) {
            return bearer(st, authz.to_str().unwrap_or(""), client).await;
        }
        let token = session_cookie(&parts.headers).ok_or_else(unauthenticated)?;
        let id_hash = sha256_hex(token.as_bytes());
        let now = st.now();
        let Some(mut record) = st.ephemeral.get_session(&id_hash, now).await? else {
            return Err(ApiError::unauthorized(
                "session_expired",
                "your session has ended; sign in again",
            ));
        };
        if record.mfa_pending {
            return Err(ApiError::unauthorized(
                "mfa_required",
                "complete the second sign-in step first",
            ));
        }
        let auth = &st.config.auth;
        let idle = now - record.last_seen >= auth.session_idle_timeout.as_secs() as i64;
        let too_old = now - record.created_at >= auth.session_max_lifetime.as_secs() as i64;
        let mut conn = st
            .store
            .pool()
            .acquire()
            .await
            .map_err(medai_store::StoreError::from)?;
        let user = users::by_id(&mut conn, &record.user_id).await?;
        let revoked = match &user {
            Some(u) => u.disabled_at.is_some() || u.session_generation != record.generation,
            None => true,
        };
        if idle || too_old || revoked {
            st.ephemeral.delete_session(&id_hash).await?;
            let reason = if revoked {
                "revoked"
            } else if idle {
                "idle_timeout"
            } else {
                "max_lifetime"
            };
            let mut e = client.stamp(AuditEvent::new(now, "session.end", Outcome::Success));
            if let Some(u) = &user {
                e = e.actor(&u.id, u.role.as_str());
            }
            audit::append(
                &mut conn,
                &e.detail(&serde_json::json!({ "reason": reason })),
            )
            .await?;
            return Err(ApiError::unauthorized(
                "session_expired",
                "your session has ended; sign in again",
            ));
        }
        let user = user.ok_or_else(unauthenticated)?;
        record.last_seen = now;
        st.ephemeral
            .put_session(
                &id_hash,
                &record,
                crate::session::store_ttl(st, &record, now),
                now,
            )
            .await?;
        Ok(Principal {
            user,
            auth: AuthKind::Session { id_hash, record },
            client,
        })
    }
}

async fn bearer(
    st: &AppState,
    header_value: &str,
    client: ClientInfo,
) -> Result<Principal, ApiError> {
    let invalid = || {
        ApiError::unauthorized(
            "invalid_token",
            "the bearer token is invalid, expired or revoked",
        )
    };
    let token = header_value
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| t.starts_with(API_TOKEN_PREFIX) && t.len() < 200)
        .ok_or_else(invalid)?;
    let mut conn = st
        .store
        .pool()
        .acquire()
        .await
        .map_err(medai_store::StoreError::from)?;
    let t = tokens::by_hash(&mut conn, &sha256_hex(token.as_bytes()))
        .await?
        .ok_or_else(invalid)?;
    if t.revoked_at.is_some() || t.expires_at <= st.now() {
        return Err(invalid());
    }
    let user = users::by_id(&mut conn, &t.user_id)
        .await?
        .ok_or_else(invalid)?;
    if user.disabled_at.is_some() || user.role.is_interactive() {
        return Err(invalid());
    }
    Ok(Principal {
        user,
        auth: AuthKind::Token {
            scopes: t.scopes.split_whitespace().map(str::to_owned).collect(),
            token_id: t.id,
        },
        client,
    })
}
