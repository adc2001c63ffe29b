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
    if !headers.get("traceparent").is_some_and(|v| well_formed(v.as_str())) {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&NatsHeadersRead(headers));
    let _ = span.set_parent(cx);
}

/// Makes `span`'s parent the context in HTTP `headers`, when they carry one.
pub fn parent_from_http(span: &tracing::Span, headers: &hyper::HeaderMap) {
    if !headers.get("traceparent").and_then(|v| v.to_str().ok()).is_some_and(well_formed) {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&HttpHeadersRead(headers));
    let _ = span.set_parent(cx);
}

/// Whether `traceparent` has W3C Trace Context's form: `VV-TRACEID-PARENTID-FF`, lowercase
/// hex of 2, 32, 16 and 2 digits, neither id all zeros, version not `ff`, and for version `00`
/// nothing after. opentelemetry's propagator accepts ids of the wrong length (a 30-digit trace
/// id is read as if zero-padded), which the specification says to ignore; a caller's malformed
/// header then starts a trace of its own instead of joining one it did not name.
fn well_formed(traceparent: &str) -> bool {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    let mut parts = traceparent.trim().splitn(5, '-');
    let (Some(version), Some(trace), Some(parent), Some(flags)) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let rest = parts.next();
    hex(version, 2)
        && version != "ff"
        && !(version == "00" && rest.is_some())
        && hex(trace, 32)
        && nonzero(trace)
        && hex(parent, 16)
        && nonzero(parent)
        && hex(flags, 2)
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

#[cfg(test)]
mod tests {
    use super::well_formed;

    #[test]
    fn only_a_well_formed_traceparent_is_continued() {
        assert!(well_formed("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
        assert!(well_formed("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-future"), "later versions may add fields");
        for bad in [
            "",
            "00-zz-zz-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        ] {
            assert!(!well_formed(bad), "{bad}");
        }
    }
}
