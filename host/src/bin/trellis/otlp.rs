//! Traces exported over OTLP (HTTP, protobuf) when `OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set: the spans of `trellis_host::telemetry`, in
//! batches from a thread of their own, to any OTLP backend. opentelemetry-otlp reads the
//! standard variables (endpoint, headers, timeout), so a collector is configured as for any
//! other service.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

/// Whether the environment asks for OTLP export.
pub fn wanted() -> bool {
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"].iter().any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// The exporting tracer provider (shut it down to send what is left) and its tracer.
///
/// # Errors
/// When the exporter cannot be built (such as an endpoint that is not a URL).
pub fn start() -> anyhow::Result<(SdkTracerProvider, SdkTracer)> {
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().build()?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "trellis-host".into());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service).build())
        .build();
    let tracer = provider.tracer("trellis");
    Ok((provider, tracer))
}
