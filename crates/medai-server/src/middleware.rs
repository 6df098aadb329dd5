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

/// The request headers, for the W3C trace-context propagator.
struct Headers<'a>(&'a axum::http::HeaderMap);

impl opentelemetry::propagation::Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(axum::http::HeaderName::as_str).collect()
    }
}

/// The request's span, continuing the caller's trace when a valid W3C `traceparent` header
/// came with it, and the trace id every log line inside the request carries. With OpenTelemetry
/// export on, the span is exported and the id is its trace id; with it off, the id is the
/// caller's trace id or a fresh random one, so logs still correlate.
fn request_span(req: &Request, request_id: &str, route: &str, method: &str) -> tracing::Span {
    use opentelemetry::propagation::TextMapPropagator as _;
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let parent = opentelemetry_sdk::propagation::TraceContextPropagator::new()
        .extract(&Headers(req.headers()));
    let remote = parent.span().span_context().trace_id();
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        request_id = %request_id,
        route = %route,
        method = %method,
        http.response.status_code = tracing::field::Empty,
    );
    span.set_parent(parent);
    let exported = span.context().span().span_context().trace_id();
    let trace_id = if exported != opentelemetry::trace::TraceId::INVALID {
        exported
    } else if remote != opentelemetry::trace::TraceId::INVALID {
        remote
    } else {
        opentelemetry::trace::TraceId::from_bytes(rand::random::<[u8; 16]>())
    };
    span.record(
        "trace_id",
        tracing::field::display(format!("{trace_id:032x}")),
    );
    span
}

/// Runs the request inside its request-id scope and its trace span, then logs and counts it.
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
    let span = request_span(&req, &request_id, &route, &method);
    let resp = REQUEST_ID
        .scope(request_id.clone(), next.run(req))
        .instrument(span.clone())
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
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    span.in_scope(|| {
        tracing::info!(
            target: "medai::access",
            request_id = %request_id,
            route = %route,
            method = %method,
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        );
    });
    resp
}

/// The 404 for unknown routes: JSON under the API, an HTML page elsewhere.
pub async fn no_route(uri: axum::http::Uri) -> Response {
    if crate::web::is_api_path(uri.path()) {
        ApiError::NoRoute.into_response()
    } else {
        crate::web::page::error_page(&ApiError::NotFound("page"))
    }
}

/// The 405 for known routes with the wrong method: JSON under the API, an HTML page elsewhere.
pub async fn method_not_allowed(uri: axum::http::Uri) -> Response {
    if crate::web::is_api_path(uri.path()) {
        ApiError::MethodNotAllowed.into_response()
    } else {
        crate::web::page::error_page(&ApiError::MethodNotAllowed)
    }
}
