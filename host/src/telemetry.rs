//! Traces: one span per call, with the W3C trace context carried across hosts.
//!
//! Spans have the target [`TARGET`] at `debug` level, so they cost nothing unless a
//! subscriber layer asks for them (the `trellis` binary's OTLP exporter, a test's in-memory
//! exporter): `call` (a component's export runs; fields `component`, `function`, `caller`),
//! `invocation` (a call arrived over NATS; its parent is the `traceparent` header), `link`
//! (a link call leaves over NATS; fields `source`, `callee`, `function`; its context goes out
//! as `traceparent`), `http` (a request
//! reached the HTTP server provider; parent from the request's `traceparent`) and `keyvalue`
//! (a key-value operation; field `op`). Calls inside a component's call (local link calls,
//! key-value) are children of its span because the guest's host calls are polled inside it.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The target of every call span; a subscriber enables traces with it (`trellis::calls=debug`).
pub const TARGET: &str = "trellis::calls";

/// Writes `span`'s context as `traceparent` (and `tracestate`) into NATS headers; nothing
/// when the span is not recorded.
pub fn inject_nats(span: &tracing::Span, headers: &mut async_nats::HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let cx = span.context();
    TraceContextPropagator::new().inject_context(&cx, &mut NatsHeaders(headers));
}

/// Makes `span`'s parent the context in NATS `headers`, when they carry one.
pub fn parent_from_nats(span: &tracing::Span, headers: Option<&async_nats::HeaderMap>) {
    let Some(headers) = headers else { return };
    if headers.get("traceparent").is_none() {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&NatsHeadersRead(headers));
    let _ = span.set_parent(cx);
}

/// Makes `span`'s parent the context in HTTP `headers`, when they carry one.
pub fn parent_from_http(span: &tracing::Span, headers: &hyper::HeaderMap) {
    if !headers.contains_key("traceparent") {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&HttpHeadersRead(headers));
    let _ = span.set_parent(cx);
}

struct NatsHeaders<'a>(&'a mut async_nats::HeaderMap);

impl Injector for NatsHeaders<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct NatsHeadersRead<'a>(&'a async_nats::HeaderMap);

impl Extractor for NatsHeadersRead<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(async_nats::HeaderValue::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

struct HttpHeadersRead<'a>(&'a hyper::HeaderMap);

impl Extractor for HttpHeadersRead<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(hyper::header::HeaderName::as_str).collect()
    }
}
