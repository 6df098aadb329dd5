//! Request middleware: the request-id scope, one access-log line and the HTTP metrics per
//! request, and security headers. Logs carry the route template, never the path's ids or the
//! query string.

use crate::error::{ApiError, EncryptFailure, REQUEST_ID};
use crate::metrics::HttpLabels;
use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Instant;
use tracing::Instrument as _;

/// Runs the request inside its request-id scope, then logs and counts it.
pub async fn observe(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let span =
        tracing::info_span!("request", request_id = %request_id, route = %route, method = %method);
    let resp = REQUEST_ID
        .scope(request_id.clone(), next.run(req))
        .instrument(span)
        .await;
    if let Some(EncryptFailure(reason)) = resp.extensions().get::<EncryptFailure>() {
        st.metrics.phi_encrypt_failure(reason);
    }
    let status = resp.status().as_u16();
    let elapsed = start.elapsed();
    let labels = HttpLabels {
        route: route.clone(),
        method: method.clone(),
        status,
    };
    st.metrics.http_requests.get_or_create(&labels).inc();
    st.metrics
        .http_duration
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());
    tracing::info!(
        target: "medai::access",
        request_id = %request_id,
        route = %route,
        method = %method,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    resp
}

/// The JSON 404 for unknown routes.
pub async fn no_route() -> Response {
    ApiError::NoRoute.into_response()
}

/// The JSON 405 for known routes with the wrong method.
pub async fn method_not_allowed() -> Response {
    ApiError::MethodNotAllowed.into_response()
}
