//! OpenTelemetry traces for `medai serve`: spans exported as OTLP/HTTP protobuf to
//! `telemetry.otlp_endpoint` (or the standard `OTEL_EXPORTER_OTLP_ENDPOINT`) by the SDK's batch
//! processor, which posts from its own thread. Off when neither is set.

use anyhow::Context as _;
use medai_core::config::{Config, TelemetryConfig};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::time::Duration;

/// Longest wait for the collector to accept one batch.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The endpoint in force: `telemetry.otlp_endpoint`, else `OTEL_EXPORTER_OTLP_ENDPOINT`.
pub fn endpoint(cfg: &Config) -> Option<String> {
    cfg.telemetry.otlp_endpoint.clone().or_else(|| {
        std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    })
}

/// The tracer provider when an endpoint is configured. Built on a plain thread: the exporter's
/// blocking HTTP client must not be created or dropped on the async runtime.
pub fn tracer_provider(cfg: &Config) -> anyhow::Result<Option<SdkTracerProvider>> {
    let Some(endpoint) = endpoint(cfg) else {
        return Ok(None);
    };
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        anyhow::bail!(
            "OTEL_EXPORTER_OTLP_ENDPOINT must be an http:// or https:// URL (it is {endpoint:?})"
        );
    }
    let url = TelemetryConfig::traces_url(&endpoint);
    let service = cfg.telemetry.service_name.clone();
    let built = std::thread::spawn(move || {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(url.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .with_context(|| format!("cannot set up the OTLP exporter for {url}"))?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(service)
            .build();
        Ok::<_, anyhow::Error>(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build(),
        )
    })
    .join()
    .map_err(|_| anyhow::anyhow!("setting up the OTLP exporter panicked"))??;
    Ok(Some(built))
}

/// Exports the spans still queued and stops the exporter (off the async runtime).
pub async fn shutdown(provider: SdkTracerProvider) {
    let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    if let Ok(Err(e)) = done {
        tracing::warn!(error = %e, "flushing the last traces failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_added_to_a_base_url_only() {
        assert_eq!(
            TelemetryConfig::traces_url("http://c:4318"),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            TelemetryConfig::traces_url("http://c:4318/"),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            TelemetryConfig::traces_url("https://c/otlp/v1/traces"),
            "https://c/otlp/v1/traces"
        );
    }

    #[test]
    fn the_endpoint_is_validated() {
        for (e, ok) in [
            ("http://collector:4318", true),
            ("https://collector", true),
            ("collector:4318", false),
            ("http://", false),
            ("http://user:pw@collector", false),
            ("http://collector?x=1", false),
        ] {
            let mut cfg = Config::default();
            cfg.telemetry.otlp_endpoint = Some(e.to_owned());
            let r = cfg.validate();
            assert_eq!(r.is_ok(), ok, "{e}: {r:?}");
            if let Err(err) = r {
                assert_eq!(err.key, "telemetry.otlp_endpoint");
            }
        }
    }
}
