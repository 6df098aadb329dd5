//! The one table from errors to HTTP responses. Every error body is
//! `{"error": {"code", "message", "request_id"}}`; 5xx bodies say only "internal error" and the
//! detail goes to the log (which never carries PHI: store errors name tables, not values).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use medai_store::StoreError;
use serde::Serialize;

tokio::task_local! {
    /// The id of the request being served, set by the request-id middleware.
    pub static REQUEST_ID: String;
}

/// The current request id, if inside a request.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// An error returned by an API handler.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed request (syntax, bad parameter).
    #[error("{message}")]
    BadRequest {
        /// Machine-readable code.
        code: &'static str,
        /// Human-readable message.
        message: String,
    },
    /// Well-formed but invalid content (unknown field, value out of range).
    #[error("{message}")]
    Unprocessable {
        /// Machine-readable code.
        code: &'static str,
        /// Human-readable message.
        message: String,
    },
    /// Not signed in, or the credentials are wrong or expired.
    #[error("{message}")]
    Unauthorized {
        /// Machine-readable code.
        code: &'static str,
        /// Human-readable message.
        message: String,
    },
    /// Signed in but not allowed.
    #[error("{message}")]
    Forbidden {
        /// Machine-readable code.
        code: &'static str,
        /// Human-readable message.
        message: String,
    },
    /// No such resource.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// No such route or method.
    #[error("no such route")]
    NoRoute,
    /// Method not allowed on this route.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Conflicts with existing state.
    #[error("{message}")]
    Conflict {
        /// Machine-readable code.
        code: &'static str,
        /// Human-readable message.
        message: String,
    },
    /// Body larger than the limit.
    #[error("request body too large")]
    PayloadTooLarge,
    /// Content type is not JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Throttled; retry after this many seconds.
    #[error("too many attempts; retry later")]
    TooManyRequests {
        /// Seconds.
        retry_after: u64,
        /// Machine-readable code.
        code: &'static str,
    },
    /// The model could not answer (busy, breaker open, timed out, upstream failure); the status
    /// is 429, 502, 503 or 504 and the message names no internal detail.
    #[error("{message}")]
    Model {
        /// 429, 502, 503 or 504.
        status: StatusCode,
        /// Machine-readable code (the model layer's error kind).
        code: &'static str,
        /// Human-readable message.
        message: String,
        /// Seconds the client should wait, when known.
        retry_after: Option<u64>,
    },
    /// A dependency (database, Redis) is not available.
    #[error("service unavailable")]
    Unavailable(String),
    /// A bug or an unexpected failure; the string is logged, never returned.
    #[error("internal error")]
    Internal(String),
    /// A PHI field could not be encrypted: a 500 like [`ApiError::Internal`], counted in
    /// `medai_phi_encrypt_failures_total` by the request middleware.
    #[error("internal error")]
    Encrypt {
        /// `no_data_key` or `cipher`.
        reason: &'static str,
        /// Logged, never returned (names the field, never the value).
        detail: String,
    },
}

/// Marks a response whose request failed to encrypt a PHI field (read by the middleware).
#[derive(Debug, Clone, Copy)]
pub struct EncryptFailure(pub &'static str);

impl ApiError {
    /// 400 with a code and message.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// 422 with a code and message.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Unprocessable {
            code,
            message: message.into(),
        }
    }

    /// 401 with a code and message.
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Unauthorized {
            code,
            message: message.into(),
        }
    }

    /// 403 with a code and message.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Forbidden {
            code,
            message: message.into(),
        }
    }

    /// 409 with a code and message.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Conflict {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Model { status, .. } => *status,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) | ApiError::Encrypt { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::Unprocessable { code, .. }
            | ApiError::Unauthorized { code, .. }
            | ApiError::Forbidden { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::TooManyRequests { code, .. }
            | ApiError::Model { code, .. } => code,
            ApiError::NotFound(_) => "not_found",
            ApiError::NoRoute => "no_route",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) | ApiError::Encrypt { .. } => "internal",
        }
    }

    /// The message shown to the client (generic for 5xx).
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Internal(_) | ApiError::Encrypt { .. } => "internal error".to_owned(),
            ApiError::Unavailable(_) => "service unavailable".to_owned(),
            other => other.to_string(),
        }
    }
}

/// The JSON error body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error object.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable code, e.g. `invalid_credentials`.
    pub code: String,
    /// Human-readable message with no internal detail.
    pub message: String,
    /// The request id, to quote to support; matches the `x-request-id` header and the logs.
    pub request_id: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Internal(detail)
            | ApiError::Unavailable(detail)
            | ApiError::Encrypt { detail, .. } => {
                tracing::error!(code = self.code(), detail = %detail, "request failed");
            }
            _ => {}
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.public_message(),
                request_id: current_request_id(),
            },
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if let ApiError::Encrypt { reason, .. } = &self {
            resp.extensions_mut().insert(EncryptFailure(reason));
        }
        let retry_after = match self {
            ApiError::TooManyRequests { retry_after, .. } => Some(retry_after),
            ApiError::Model { retry_after, .. } => retry_after,
            _ => None,
        };
        if let Some(secs) = retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::NotFound(what),
            StoreError::Encrypt {
                table,
                column,
                source,
            } => ApiError::Encrypt {
                reason: match source {
                    medai_crypto::envelope::FieldError::MissingKeyVersion(_) => "no_data_key",
                    _ => "cipher",
                },
                detail: format!("cannot encrypt {table}.{column}: {source}"),
            },
            StoreError::Conflict(what) => {
                ApiError::conflict("conflict", format!("{what} already exists"))
            }
            other if other.is_unavailable() => ApiError::Unavailable(other.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;
    use rstest::rstest;

    async fn body_of(e: ApiError) -> (StatusCode, serde_json::Value, Option<String>) {
        let resp = e.into_response();
        let status = resp.status();
        let retry = resp
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap(), retry)
    }

    #[rstest]
    #[case(ApiError::bad_request("bad_json", "x"), 400, "bad_json")]
    #[case(ApiError::invalid("invalid_field", "x"), 422, "invalid_field")]
    #[case(
        ApiError::unauthorized("invalid_credentials", "x"),
        401,
        "invalid_credentials"
    )]
    #[case(ApiError::forbidden("forbidden", "x"), 403, "forbidden")]
    #[case(ApiError::NotFound("patient"), 404, "not_found")]
    #[case(ApiError::NoRoute, 404, "no_route")]
    #[case(ApiError::MethodNotAllowed, 405, "method_not_allowed")]
    #[case(ApiError::conflict("conflict", "x"), 409, "conflict")]
    #[case(ApiError::PayloadTooLarge, 413, "payload_too_large")]
    #[case(ApiError::UnsupportedMediaType("x".into()), 415, "unsupported_media_type")]
    #[case(ApiError::TooManyRequests { retry_after: 7, code: "throttled" }, 429, "throttled")]
    #[case(ApiError::Unavailable("db down at 10.0.0.5".into()), 503, "unavailable")]
    #[case(ApiError::Model { status: StatusCode::GATEWAY_TIMEOUT, code: "timeout_first_token", message: "the model did not start answering in time".into(), retry_after: None }, 504, "timeout_first_token")]
    #[case(ApiError::Internal("secret detail".into()), 500, "internal")]
    #[tokio::test]
    async fn each_error_maps_to_its_status_and_code(
        #[case] e: ApiError,
        #[case] status: u16,
        #[case] code: &str,
    ) {
        let (s, body, _) = body_of(e).await;
        assert_eq!(s.as_u16(), status);
        assert_eq!(body["error"]["code"], code);
    }

    #[tokio::test]
    async fn server_errors_hide_detail_and_carry_the_request_id() {
        let (_, body, _) = REQUEST_ID
            .scope(
                "req-42".to_owned(),
                body_of(ApiError::Internal("table users: secret".into())),
            )
            .await;
        assert_eq!(body["error"]["message"], "internal error");
        assert_eq!(body["error"]["request_id"], "req-42");
        assert!(!body.to_string().contains("secret"));
        let (_, body, _) = body_of(ApiError::Unavailable("10.0.0.5".into())).await;
        assert!(!body.to_string().contains("10.0.0.5"));
    }

    #[tokio::test]
    async fn throttling_sets_retry_after() {
        let (_, _, retry) = body_of(ApiError::TooManyRequests {
            retry_after: 7,
            code: "throttled",
        })
        .await;
        assert_eq!(retry.as_deref(), Some("7"));
    }
}
