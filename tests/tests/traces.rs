//! Traces across hosts: a call carrying a W3C `traceparent` into host A, a link call from A to
//! a component on host B, and a key-value access are one trace, each span the child of the
//! one that caused it. Spans are read back from an in-memory OpenTelemetry exporter installed
//! as this test process's subscriber (both hosts run in it).

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use trellis_messages::invocation::{InvocationRequest, InvocationResponse};
use trellis_messages::link::Link;
use trellis_messages::provider::StartProviderCommand;
use trellis_tests::{guests, eventually, TestLattice};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::Layer as _;

const PING: &str = "trellis:echo/pinger.ping";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
const HTTP_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const HTTP_PARENT: &str = "b7ad6b7169203331";

/// A GET with a `traceparent` header over a fresh connection; the status.
async fn traced_get(port: u16) -> anyhow::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!("GET / HTTP/1.1\r\nHost: localhost\r\ntraceparent: 00-{HTTP_TRACE}-{HTTP_PARENT}-01\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    Ok(String::from_utf8_lossy(&raw).split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0))
}

fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.as_str().into_owned())
}

/// The one finished span named `name` whose attribute `key` is `value`.
fn find<'a>(spans: &'a [SpanData], name: &str, key: &str, value: &str) -> &'a SpanData {
    let found: Vec<&SpanData> = spans.iter().filter(|s| s.name == name && attr(s, key).as_deref() == Some(value)).collect();
    assert_eq!(found.len(), 1, "one `{name}` span with {key}={value}, among {:?}", spans.iter().map(|s| (s.name.to_string(), s.attributes.iter().filter(|kv| !kv.key.as_str().starts_with("code.")).map(|kv| format!("{}={}", kv.key, kv.value)).collect::<Vec<_>>())).collect::<Vec<_>>());
    found[0]
}

/// A control-plane call with a `traceparent` header, as a traced client sends it.
async fn traced_call(nats: &async_nats::Client, lattice: &str, component: &str, function: &str, args: Vec<String>) -> anyhow::Result<InvocationResponse> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("traceparent", format!("00-{TRACE}-{PARENT}-01").as_str());
    let body = serde_json::to_vec(&InvocationRequest { function: function.into(), args })?;
    let reply = nats.request_with_headers(format!("trellis.rpc.{lattice}.{component}"), headers, body.into()).await?;
    Ok(serde_json::from_slice(&reply.payload)?)
}

#[tokio::test]
async fn one_trace_follows_a_call_across_two_hosts_and_into_key_value() -> anyhow::Result<()> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("trellis-test"))
        .with_filter(tracing_subscriber::filter::Targets::new().with_target(trellis_host::telemetry::TARGET, tracing::Level::DEBUG));
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))?;

    let lattice = TestLattice::new().await?;
    let a = lattice.start_host(lattice.host_config()).await?;
    let b = lattice.start_host(lattice.host_config()).await?;
    let client = lattice.client().await?.with_timeout(Duration::from_secs(10));
    lattice.scale(a.id(), "pinger", guests::PINGER, 4).await?.map_err(anyhow::Error::msg)?;
    lattice.scale(b.id(), "echo", guests::ECHO, 4).await?.map_err(anyhow::Error::msg)?;
    client.put_link(&Link::new("pinger", "echo", "default", "trellis", "echo", &["echo"])).await?;
    // Key-value for `hostile` on B, in a bucket of its own.
    let kv = StartProviderCommand { provider_id: "kv".into(), provider_ref: "trellis://keyvalue".into(), ..Default::default() };
    client.start_provider(b.id(), &kv).await?;
    lattice.scale(b.id(), "hostile", guests::HOSTILE, 4).await?.map_err(anyhow::Error::msg)?;
    client.put_config("traced-bucket", &HashMap::from([("bucket".to_string(), "traced".to_string())])).await?;
    client.put_link(&Link::new("hostile", "kv", "default", "wasi", "keyvalue", &["store"]).with_target_config(&["traced-bucket"])).await?;
    // HTTP: the server on A, the component on B (the request is forwarded over NATS).
    let http = StartProviderCommand { provider_id: "http".into(), provider_ref: "wasmcloud+builtin://http-server".into(), ..Default::default() };
    client.start_provider(a.id(), &http).await?;
    lattice.scale(b.id(), "hello", guests::HTTP_HELLO, 2).await?.map_err(anyhow::Error::msg)?;
    let port = trellis_tests::free_port();
    client.put_config("hello-http", &HashMap::from([("address".to_string(), format!("127.0.0.1:{port}"))])).await?;
    client.put_link(&Link::new("http", "hello", "hello", "wasi", "http", &["incoming-handler"]).with_source_config(&["hello-http"])).await?;
    eventually(Duration::from_secs(10), || async move { traced_get(port).await.ok().filter(|s| *s == 200) }).await.expect("hello is served");
    let nats = lattice.nats().await?;
    eventually(Duration::from_secs(10), || {
        let client = client.clone();
        async move { client.call("pinger", PING, vec![r#""warm""#.into()]).await.ok().filter(|r| r.results.is_some()) }
    })
    .await
    .expect("pinger reaches echo");
    eventually(Duration::from_secs(10), || {
        let client = client.clone();
        async move {
            client.call("hostile", "trellis:hostile/probe.kv-set", vec![r#""x""#.into(), r#""k""#.into(), r#""v""#.into()]).await.ok().filter(|r| r.results.as_ref().is_some_and(|v| v.first().is_some_and(|x| x.starts_with("ok"))))
        }
    })
    .await
    .expect("hostile writes its bucket");
    provider.force_flush()?;
    exporter.reset();

    let reply = traced_call(&nats, &lattice.name, "pinger", PING, vec![r#""traced""#.into()]).await?;
    assert!(reply.results.is_some(), "{reply:?}");
    let reply = traced_call(&nats, &lattice.name, "hostile", "trellis:hostile/probe.kv-set", vec![r#""x""#.into(), r#""k""#.into(), r#""w""#.into()]).await?;
    assert!(reply.results.is_some(), "{reply:?}");
    assert_eq!(traced_get(port).await?, 200);
    // Spans end when their futures do; the replies may come first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    provider.force_flush()?;
    let spans = exporter.get_finished_spans()?;
    let trace = TraceId::from_hex(TRACE)?;

    // Host A: the invocation continues the client's trace; the call is its child; the link
    // call is the call's child.
    let a_invocation = find(&spans, "invocation", "component", "pinger");
    assert_eq!((a_invocation.span_context.trace_id(), a_invocation.parent_span_id), (trace, SpanId::from_hex(PARENT)?));
    let a_call = find(&spans, "call", "component", "pinger");
    assert_eq!((a_call.span_context.trace_id(), a_call.parent_span_id), (trace, a_invocation.span_context.span_id()));
    let link = find(&spans, "link", "callee", "echo");
    assert_eq!((link.span_context.trace_id(), link.parent_span_id), (trace, a_call.span_context.span_id()));
    // Host B: its invocation's parent is A's link span, carried in the NATS headers.
    let b_invocation = find(&spans, "invocation", "component", "echo");
    assert_eq!((b_invocation.span_context.trace_id(), b_invocation.parent_span_id), (trace, link.span_context.span_id()));
    let b_call = find(&spans, "call", "component", "echo");
    assert_eq!((b_call.parent_span_id, attr(b_call, "caller").as_deref()), (b_invocation.span_context.span_id(), Some("pinger")));

    // Key-value: the operation is a child of the call that made it.
    let kv_call = find(&spans, "call", "component", "hostile");
    assert_eq!(kv_call.span_context.trace_id(), trace);
    let set = find(&spans, "keyvalue", "op", "set");
    assert_eq!((set.span_context.trace_id(), set.parent_span_id), (trace, kv_call.span_context.span_id()));

    // HTTP: A's `http` span continues the request's trace; B's invocation of `hello` is its
    // child, through the forwarded request's NATS headers.
    let http_trace = TraceId::from_hex(HTTP_TRACE)?;
    let served: Vec<&SpanData> = spans.iter().filter(|s| s.name == "http" && s.span_context.trace_id() == http_trace).collect();
    assert_eq!(served.len(), 1, "one http span in the request's trace");
    assert_eq!(served[0].parent_span_id, SpanId::from_hex(HTTP_PARENT)?);
    let forwarded = find(&spans, "invocation", "component", "hello");
    assert_eq!((forwarded.span_context.trace_id(), forwarded.parent_span_id), (http_trace, served[0].span_context.span_id()));

    // A malformed `traceparent` (not hex, a trace id two digits short, an all-zero trace id) is
    // not continued: the invocation starts a trace of its own, and the call still runs.
    for bad in ["00-zz-zz-01", "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"] {
        exporter.reset();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("traceparent", bad);
        let body = serde_json::to_vec(&InvocationRequest { function: "trellis:echo/echo.echo".into(), args: vec![r#""x""#.into()] })?;
        let reply = nats.request_with_headers(format!("trellis.rpc.{}.echo", lattice.name), headers, body.into()).await?;
        let reply: InvocationResponse = serde_json::from_slice(&reply.payload)?;
        assert_eq!(reply.results, Some(vec![r#""x""#.to_string()]), "{bad}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        provider.force_flush()?;
        let spans = exporter.get_finished_spans()?;
        let invocation = find(&spans, "invocation", "component", "echo");
        assert!(invocation.span_context.is_valid(), "{bad}");
        assert_eq!(invocation.parent_span_id, SpanId::INVALID, "{bad}: a new trace, no parent");
        assert!(![trace, TraceId::INVALID].contains(&invocation.span_context.trace_id()), "{bad}");
    }

    a.shutdown(None).await?;
    b.shutdown(None).await?;
    Ok(())
}
