//! `--metrics-addr`: Prometheus metrics scraped from a running host during real calls; the
//! counters match the calls made, and callers cannot grow the label values without bound.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use trellis_messages::link::Link;
use trellis_messages::provider::StartProviderCommand;
use trellis_tests::{guests, eventually, free_port, init_tracing, sample, scrape, TestLattice};

/// One HTTP/1.1 GET over a fresh connection: (status, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

#[tokio::test]
async fn metrics_count_calls_faults_http_and_instances_and_bound_label_values() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.metrics_addr = Some(format!("127.0.0.1:{}", free_port()).parse()?);
    let host = lattice.start_host(config).await?;
    let addr = host.info().metrics_addr.expect("the bound metrics address");
    let client = lattice.client().await?;
    lattice.scale(host.id(), "echo", guests::ECHO, 4).await?.map_err(anyhow::Error::msg)?;

    const ECHO: &str = "trellis:echo/echo.echo";
    for i in 0..5 {
        let r = client.call("echo", ECHO, vec![format!(r#""m{i}""#)]).await?;
        assert!(r.results.is_some(), "{:?}", r.error);
    }
    let r = client.call("echo", "trellis:echo/echo.trap", vec![r#""boom""#.into()]).await?;
    assert!(r.error.is_some());
    let r = client.call("echo", ECHO, vec!["42".into()]).await?;
    assert!(r.error.is_some(), "bad arguments");
    // A caller making up function names: each is refused, and none becomes a label value.
    for i in 0..50 {
        let r = client.call("echo", &format!("made:up/name-{i}.f"), vec![]).await?;
        assert!(r.error.is_some());
    }

    // HTTP through the built-in server provider.
    let start = StartProviderCommand { provider_id: "http".into(), provider_ref: "wasmcloud+builtin://http-server".into(), host_id: host.id().into(), ..Default::default() };
    client.start_provider(host.id(), &start).await?;
    lattice.scale(host.id(), "hello", guests::HTTP_HELLO, 2).await?.map_err(anyhow::Error::msg)?;
    let port = free_port();
    client.put_config("hello-http", &HashMap::from([("address".to_string(), format!("127.0.0.1:{port}"))])).await?;
    client.put_link(&Link::new("http", "hello", "hello", "wasi", "http", &["incoming-handler"]).with_source_config(&["hello-http"])).await?;
    let web: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
    eventually(Duration::from_secs(10), || async move { get(web, "/").await.ok().filter(|(s, _)| *s == 200) }).await.expect("hello is served");
    assert_eq!(get(web, "/again").await?.0, 200);
    assert_eq!(get(web, "/trap").await?.0, 500);

    let (status, text) = get(addr, "/metrics").await?;
    assert_eq!(status, 200, "{text}");
    if std::env::var_os("SHOW_METRICS").is_some() {
        eprintln!("{text}");
    }
    let at = [("lattice", lattice.name.as_str()), ("host", host.id())];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> { at.iter().copied().chain(extra.iter().copied()).collect() };

    // 5 good calls and 1 with bad arguments, all of an exported function.
    let echo = with(&[("component", "echo"), ("operation", ECHO)]);
    assert_eq!(sample(&text, "trellis_component_invocations_total", &echo), Some(6.0), "{text}");
    assert_eq!(sample(&text, "trellis_component_invocation_duration_seconds_count", &echo), Some(6.0), "{text}");
    let bad = with(&[("component", "echo"), ("operation", ECHO), ("kind", "bad-arguments")]);
    assert_eq!(sample(&text, "trellis_component_invocation_errors_total", &bad), Some(1.0), "{text}");
    let trap = with(&[("component", "echo"), ("operation", "trellis:echo/echo.trap"), ("kind", "trap")]);
    assert_eq!(sample(&text, "trellis_component_invocation_errors_total", &trap), Some(1.0), "{text}");
    // The 50 made-up names count under one `unknown` operation.
    let unknown = with(&[("component", "echo"), ("operation", "unknown"), ("kind", "no-such-function")]);
    assert_eq!(sample(&text, "trellis_component_invocation_errors_total", &unknown), Some(50.0), "{text}");
    assert!(!text.contains("made:up"), "a caller's made-up name became a label value");

    // HTTP: by status; the trap is a fault of the handler.
    let ok = with(&[("component", "hello"), ("status", "200")]);
    assert!(sample(&text, "trellis_http_requests_total", &ok).is_some_and(|n| n >= 2.0), "{text}");
    let failed = with(&[("component", "hello"), ("status", "500")]);
    assert_eq!(sample(&text, "trellis_http_requests_total", &failed), Some(1.0), "{text}");
    let handler_trap = with(&[("component", "hello"), ("operation", "wasi:http/incoming-handler.handle"), ("kind", "trap")]);
    assert_eq!(sample(&text, "trellis_component_invocation_errors_total", &handler_trap), Some(1.0), "{text}");

    // Instances: the limit as scaled, none busy between calls.
    assert_eq!(sample(&text, "trellis_component_max_instances", &with(&[("component", "echo")])), Some(4.0), "{text}");
    assert_eq!(sample(&text, "trellis_component_active_instances", &with(&[("component", "echo")])), Some(0.0), "{text}");
    assert!(sample(&text, "trellis_process_resident_memory_bytes", &at).is_some_and(|b| b > 1e6), "{text}");
    assert!(sample(&text, "trellis_process_cpu_milliseconds_total", &at).is_some_and(|ms| ms > 0.0), "{text}");
    assert_eq!(sample(&text, "trellis_nats_reconnects_total", &at), Some(0.0), "{text}");

    // Stopped: its gauges go; its counters stay.
    lattice.scale(host.id(), "echo", guests::ECHO, 0).await?.map_err(anyhow::Error::msg)?;
    let text = eventually(Duration::from_secs(5), || async move {
        get(addr, "/metrics").await.ok().map(|(_, t)| t).filter(|t| sample(t, "trellis_component_max_instances", &[("component", "echo")]).is_none())
    })
    .await
    .expect("the stopped component's gauges are removed");
    assert_eq!(sample(&text, "trellis_component_invocations_total", &echo), Some(6.0));

    // Only GET /metrics is served.
    assert_eq!(get(addr, "/").await?.0, 404);

    // At most 16 scrape connections: a 17th is closed unanswered while 16 sit idle, and
    // scraping works again once they go.
    let mut idle = Vec::new();
    for _ in 0..16 {
        idle.push(tokio::net::TcpStream::connect(addr).await?);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(get(addr, "/metrics").await.map(|(s, _)| s).unwrap_or(0), 0, "the 17th connection is not served");
    drop(idle);
    let again = eventually(Duration::from_secs(5), || async move { get(addr, "/metrics").await.ok().filter(|(s, _)| *s == 200) }).await;
    assert!(again.is_some(), "scraping works again once the idle connections are gone");
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn a_metrics_address_in_use_fails_the_start_clearly() -> anyhow::Result<()> {
    let lattice = TestLattice::new().await?;
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let mut config = lattice.host_config();
    config.metrics_addr = Some(taken.local_addr()?);
    let err = lattice.start_host(config).await.expect_err("the port is taken");
    assert!(format!("{err:#}").contains("cannot serve metrics on"), "{err:#}");
    Ok(())
}

/// A link put on any host reaches this host's watch: the lag from the KV store to the host
/// applying it is measured; what the watch replays from before the host started is not lag.
#[tokio::test]
async fn the_lattice_watch_lag_is_measured() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let first = lattice.start_host(lattice.host_config()).await?;
    let client = lattice.client().await?;
    client.put_link(&Link::new("old", "b", "default", "trellis", "echo", &["echo"])).await?;
    let mut config = lattice.host_config();
    config.metrics_addr = Some("127.0.0.1:0".parse()?);
    let host = lattice.start_host(config).await?;
    let addr = host.info().metrics_addr.expect("the bound metrics address");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sample(&scrape(addr).await, "trellis_lattice_watch_lag_seconds_count", &[]), Some(0.0), "history is not lag");
    client.put_link(&Link::new("a", "b", "default", "trellis", "echo", &["echo"])).await?;
    client.put_config("c", &HashMap::from([("k".to_string(), "v".to_string())])).await?;
    let counted = eventually(Duration::from_secs(5), || async move {
        sample(&scrape(addr).await, "trellis_lattice_watch_lag_seconds_count", &[]).filter(|n| *n >= 2.0)
    })
    .await;
    assert!(counted.is_some(), "the link and the config were counted");
    let sum = sample(&scrape(addr).await, "trellis_lattice_watch_lag_seconds_sum", &[]).expect("a sum");
    assert!(sum < 5.0, "{sum}");
    host.shutdown(None).await?;
    first.shutdown(None).await?;
    Ok(())
}

/// `--http-admin`: `/livez` answers while the process runs; `/readyz` answers 200 once the
/// host has joined and replayed the lattice's links (an empty bucket) and config (one that
/// holds a config put before the host started); `/metrics` is served there too.
#[tokio::test]
async fn the_admin_address_answers_liveness_and_readiness() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    // A config stored before any host runs, as wasmCloud lays it out.
    let js = async_nats::jetstream::new(lattice.nats().await?);
    let configs = js
        .create_key_value(async_nats::jetstream::kv::Config { bucket: format!("CONFIGDATA_{}", lattice.name), ..Default::default() })
        .await?;
    configs.put("before", br#"{"k":"v"}"#.to_vec().into()).await?;
    let mut config = lattice.host_config();
    config.http_admin = Some("127.0.0.1:0".parse()?);
    let host = lattice.start_host(config).await?;
    let addr = host.info().http_admin.expect("the bound admin address");
    assert_eq!(get(addr, "/livez").await?, (200, r#"{"status":"ok"}"#.to_string()));
    let ready = eventually(Duration::from_secs(10), || async move { get(addr, "/readyz").await.ok().filter(|(s, _)| *s == 200) }).await;
    assert_eq!(ready.map(|(_, body)| body).as_deref(), Some(r#"{"status":"ok"}"#));
    let (status, body) = get(addr, "/metrics").await?;
    assert_eq!(status, 200);
    assert!(body.contains("trellis_"), "{body}");
    assert_eq!(get(addr, "/nothing").await?.0, 404);
    host.shutdown(None).await?;
    Ok(())
}
