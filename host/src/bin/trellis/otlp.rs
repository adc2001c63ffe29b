//! Traces and metrics exported over OTLP (HTTP, protobuf) when the standard variables name a
//! collector: `OTEL_EXPORTER_OTLP_ENDPOINT` for both, or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` /
//! `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` for one. Spans are those of `trellis_host::telemetry`,
//! sent in batches from a thread of their own; metrics are the host's Prometheus families as
//! OpenTelemetry instruments (`trellis_host::metrics`), sent every
//! `OTEL_METRIC_EXPORT_INTERVAL` (60 s unless set). opentelemetry-otlp reads the standard
//! variables (endpoint, headers, timeout), so a collector is configured as for any other
//! service; `https://` endpoints are trusted through the system's roots (or `SSL_CERT_FILE`).

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

/// What the process exports; shut it down to send what is left.
#[derive(Debug, Default)]
pub struct Export {
    traces: Option<SdkTracerProvider>,
    metrics: Option<SdkMeterProvider>,
}

fn set(vars: &[&str]) -> bool {
    vars.iter().any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

impl Export {
    /// The exporters the environment asks for (none when it names no collector).
    ///
    /// # Errors
    /// When an exporter cannot be built (such as an endpoint that is not a URL).
    pub fn start() -> anyhow::Result<Self> {
        let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "trellis-host".into());
        let resource = || Resource::builder().with_service_name(service.clone()).build();
        let mut export = Self::default();
        if set(&["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]) {
            let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().build()?;
            export.traces = Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource()).build());
        }
        if set(&["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"]) {
            let exporter = opentelemetry_otlp::MetricExporter::builder().with_http().build()?;
            export.metrics = Some(SdkMeterProvider::builder().with_periodic_exporter(exporter).with_resource(resource()).build());
        }
        Ok(export)
    }

    /// The tracer spans go to, when traces are exported.
    pub fn tracer(&self) -> Option<SdkTracer> {
        self.traces.as_ref().map(|p| p.tracer("trellis"))
    }

    /// The meter the host records into, when metrics are exported.
    pub fn meter(&self) -> Option<opentelemetry::metrics::Meter> {
        self.metrics.as_ref().map(|p| p.meter("trellis"))
    }

    /// Sends the spans still batched and the metrics' last values.
    pub fn shutdown(self) {
        if let Some(traces) = self.traces {
            if let Err(e) = traces.shutdown() {
                eprintln!("trellis: the last traces were not exported: {e}");
            }
        }
        if let Some(metrics) = self.metrics {
            if let Err(e) = metrics.shutdown() {
                eprintln!("trellis: the last metrics were not exported: {e}");
            }
        }
    }
}
