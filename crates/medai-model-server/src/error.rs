//! Errors in OpenAI's wire format: `{"error": {"message", "type", "param", "code"}}`, so that
//! OpenAI clients show them as they would the real thing. 5xx bodies say nothing internal.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use medai_llm::LlmError;
use serde_json::json;

/// A refused or failed request.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// OpenAI error type (`invalid_request_error`, `authentication_error`, ...).
    pub kind: &'static str,
    /// What went wrong, for the client (never internal detail or request text).
    pub message: String,
    /// The request field at fault.
    pub param: Option<String>,
    /// A machine-readable code (`invalid_api_key`, `model_not_found`, ...).
    pub code: Option<&'static str>,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// 400 about one field.
    pub fn invalid(param: impl Into<Option<String>>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            message: message.into(),
            param: param.into(),
            code: None,
            retry_after: None,
        }
    }

    /// 401.
    pub fn unauthorized() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            kind: "authentication_error",
            message: "missing or invalid bearer token (Authorization: Bearer ...)".into(),
            param: None,
            code: Some("invalid_api_key"),
            retry_after: None,
        }
    }

    /// 404 for a model this server does not serve.
    pub fn model_not_found(asked: &str, served: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            message: format!(
                "the model {asked:?} does not exist here; this server serves {served:?}"
            ),
            param: Some("model".into()),
            code: Some("model_not_found"),
            retry_after: None,
        }
    }

    /// 404 for a path.
    pub fn no_route() -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            message: "no such endpoint; this server serves /v1/chat/completions and /v1/models"
                .into(),
            param: None,
            code: Some("unknown_url"),
            retry_after: None,
        }
    }

    /// 413.
    pub fn too_large(limit: usize) -> Self {
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            kind: "invalid_request_error",
            message: format!("the request body exceeds {limit} bytes"),
            param: None,
            code: Some("request_too_large"),
            retry_after: None,
        }
    }

    /// 503 while the model loads.
    pub fn not_ready() -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "server_error",
            message:
                "the model is still loading; retry shortly (GET /readyz says when it is ready)"
                    .into(),
            param: None,
            code: Some("model_loading"),
            retry_after: Some(5),
        }
    }

    /// 500 with nothing internal.
    pub fn internal() -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "server_error",
            message: "internal error".into(),
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// The OpenAI error object (also sent inside a stream that fails after it started).
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl From<&LlmError> for ApiError {
    fn from(e: &LlmError) -> Self {
        match e {
            // The engine's own words: context window exceeded, bad parameter.
            LlmError::InvalidRequest(m) => {
                let mut err = ApiError::invalid(None, m.clone());
                if m.contains("context") {
                    err.code = Some("context_length_exceeded");
                    err.param = Some("messages".into());
                }
                err
            }
            LlmError::QueueFull { .. } => Self {
                status: StatusCode::TOO_MANY_REQUESTS,
                kind: "rate_limit_error",
                message: "the model is busy (queue full); retry later".into(),
                param: None,
                code: Some("queue_full"),
                retry_after: e.retry_after_secs().or(Some(1)),
            },
            _ => Self::internal(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn statuses_and_bodies() {
        let cases = [
            (
                ApiError::invalid(Some("x".into()), "m"),
                400,
                "invalid_request_error",
            ),
            (ApiError::unauthorized(), 401, "authentication_error"),
            (
                ApiError::model_not_found("a", "b"),
                404,
                "invalid_request_error",
            ),
            (ApiError::no_route(), 404, "invalid_request_error"),
            (ApiError::too_large(10), 413, "invalid_request_error"),
            (ApiError::not_ready(), 503, "server_error"),
            (ApiError::internal(), 500, "server_error"),
        ];
        for (e, status, kind) in cases {
            assert_eq!(e.status.as_u16(), status);
            assert_eq!(e.body()["error"]["type"], kind);
            let r = e.clone().into_response();
            assert_eq!(r.status().as_u16(), status);
            assert_eq!(
                r.headers().contains_key(header::WWW_AUTHENTICATE),
                status == 401
            );
            assert_eq!(r.headers().contains_key(header::RETRY_AFTER), status == 503);
        }
        let full = ApiError::from(&LlmError::QueueFull {
            model: "m".into(),
            retry_after: Duration::from_millis(1500),
        });
        assert_eq!(full.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(full.retry_after, Some(2));
        let ctx = ApiError::from(&LlmError::InvalidRequest(
            "the prompt has 900 tokens; the context window is 512".into(),
        ));
        assert_eq!(ctx.code, Some("context_length_exceeded"));
        let hidden = ApiError::from(&LlmError::Protocol("worker panicked at x.rs:1".into()));
        assert_eq!(hidden.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!hidden.message.contains("x.rs"));
    }
}
