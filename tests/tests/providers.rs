//! Built-in providers with real HTTP, real JetStream and real wasm: the HTTP server serving
//! components (path routing, faults, load), key-value counters shared by hosts and kept across
//! restarts, provider lifecycle and bad references.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use trellis_messages::link::Link;
use trellis_messages::provider::StartProviderCommand;
use trellis_messages::Client;
use trellis_tests::{guests, eventually, free_port, http_get as get, init_tracing, TestLattice};

fn link(source: &str, target: &str, name: &str, ns_pkg: (&str, &str), ifaces: &[&str], source_config: &[&str], target_config: &[&str]) -> Link {
    Link::new(source, target, name, ns_pkg.0, ns_pkg.1, ifaces).with_source_config(source_config).with_target_config(target_config)
}

async fn start_provider(client: &Client, host: &str, id: &str, reference: &str) -> anyhow::Result<()> {
    let command = StartProviderCommand { provider_id: id.into(), provider_ref: reference.into(), host_id: host.into(), ..Default::default() };
    if let Err(e) = client.start_provider(host, &command).await {
        let hosts = client.ping_hosts().await.map(|h| h.into_iter().map(|h| h.id).collect::<Vec<_>>());
        let again = client.start_provider(host, &command).await;
        anyhow::bail!("start_provider on {host} failed: {e}; hosts answering ping: {hosts:?}; retry: {again:?}");
    }
    Ok(())
}

/// Serves `component` (already scaled) on `port` at `path` through provider `http`.
async fn serve(client: &Client, component: &str, port: u16, path: Option<&str>) -> anyhow::Result<()> {
    let name = format!("{component}-http");
    let mut values = HashMap::from([("address".to_string(), format!("127.0.0.1:{port}"))]);
    if let Some(p) = path {
        values.insert("path".into(), p.into());
    }
    client.put_config(&name, &values).await?;
    client.put_link(&link("http", component, component, ("wasi", "http"), &["incoming-handler"], &[&name], &[])).await?;
    Ok(())
}

async fn wait_ok(port: u16, path: &str) -> Option<(u16, String)> {
    eventually(Duration::from_secs(10), || async move { get(port, path).await.ok().filter(|(s, _)| *s == 200) }).await
}

#[tokio::test]
async fn http_hello_path_routing_faults_and_load() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.wasm.max_execution_time = Duration::from_secs(1);
    let host = lattice.start_host(config).await?;
    let client = lattice.client().await?;
    start_provider(&client, host.id(), "http", "wasmcloud+builtin://http-server").await?;
    start_provider(&client, host.id(), "kv", "trellis://keyvalue").await?;
    lattice.scale(host.id(), "hello", guests::HTTP_HELLO, 32).await?.map_err(anyhow::Error::msg)?;
    lattice.scale(host.id(), "counter", guests::KV_COUNTER, 8).await?.map_err(anyhow::Error::msg)?;
    client.put_config("kv-cfg", &HashMap::from([("bucket".to_string(), format!("t_{}", lattice.name.replace('-', "_")))])).await?;
    client.put_link(&link("counter", "kv", "default", ("wasi", "keyvalue"), &["store", "atomics"], &[], &["kv-cfg"])).await?;
    let port = free_port();
    serve(&client, "hello", port, Some("/hello")).await?;
    serve(&client, "counter", port, Some("/count")).await?;

    let (status, body) = wait_ok(port, "/hello").await.expect("hello is served");
    assert_eq!((status, body.as_str()), (200, "Hello from Trellis\n"));
    let (status, body) = wait_ok(port, "/count/x").await.expect("counter is served on the same listener");
    assert_eq!((status, body.as_str()), (200, "Count: 1\n"));
    assert_eq!(get(port, "/count/x").await?, (200, "Count: 2\n".to_string()));
    // wasi:keyvalue/batch on the same link: set, get (with one key not there), delete; bounded.
    assert_eq!(get(port, "/count/_batch/3").await?, (200, "set 3, read 3 of 4, 0 left after delete\n".to_string()));
    let (status, body) = get(port, "/count/_batch/1001").await?;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("a batch of 1001 keys; at most 1000 per call"), "{body}");
    let (status, body) = get(port, "/elsewhere").await?;
    assert_eq!(status, 404, "{body}");

    // A trapping component gives 500; one that never answers gives 504 at the deadline; the
    // next request works.
    let (status, body) = get(port, "/hello/trap").await?;
    assert_eq!(status, 500);
    assert!(body.contains("trapped"), "{body}");
    let (status, body) = get(port, "/hello/slow").await?;
    assert_eq!(status, 504);
    assert!(body.contains("deadline"), "{body}");
    assert_eq!(get(port, "/hello").await?.0, 200);

    // A malformed request gets a 4xx and the listener stays up.
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    raw.write_all(b"NOT HTTP AT ALL\r\n\r\n").await?;
    let mut answer = Vec::new();
    let _ = raw.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 4"), "{answer}");
    assert_eq!(get(port, "/hello").await?.0, 200);

    // 1,000 requests at concurrency 32.
    let ok = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers = (0..32).map(|_| {
        let ok = ok.clone();
        tokio::spawn(async move {
            for _ in 0..(1000 / 32 + 1) {
                if let Ok((200, body)) = get(port, "/hello").await {
                    if body == "Hello from Trellis\n" {
                        ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        })
    });
    futures::future::join_all(workers).await;
    assert_eq!(ok.load(std::sync::atomic::Ordering::Relaxed), 32 * (1000 / 32 + 1), "every request succeeded");

    // Deleting the link stops serving that route.
    client.delete_link("http", "hello", "wasi", "http").await?;
    let gone = eventually(Duration::from_secs(10), || async { get(port, "/hello").await.ok().filter(|(s, _)| *s == 404) }).await;
    assert!(gone.is_some());
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn counter_from_two_hosts_is_exact_and_survives_restarts() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    // Hosts as on separate machines: no local files, the component from the artifact store.
    let counter = lattice.push("counter", guests::KV_COUNTER).await?;
    let client = lattice.client().await?;
    let bucket = format!("c_{}", lattice.name.replace('-', "_"));
    let ports = [free_port(), free_port()];
    let start = |i: usize| {
        let (lattice, counter) = (&lattice, &counter);
        let client = client.clone();
        async move {
            let host = lattice.start_host(lattice.machine_config()).await?;
            start_provider(&client, host.id(), "http", "wasmcloud+builtin://http-server").await?;
            // The key-value provider runs on A only: B learns of it from A's inventory when it
            // joins, and its components use it in-process.
            start_provider(&client, host.id(), "kv", "wasmcloud+builtin://keyvalue-nats").await?;
            lattice.scale(host.id(), "counter", counter, 16).await?.map_err(anyhow::Error::msg)?;
            Ok::<_, anyhow::Error>((host, i))
        }
    };
    let (a, _) = start(0).await?;
    // Links and config are lattice-wide; each host's HTTP provider needs its own address, so
    // the two providers get different ids.
    client.put_config("kv-cfg", &HashMap::from([("bucket".to_string(), bucket.clone())])).await?;
    client.put_link(&link("counter", "kv", "default", ("wasi", "keyvalue"), &["store", "atomics"], &[], &["kv-cfg"])).await?;
    let b = lattice.start_host(lattice.machine_config()).await?;
    start_provider(&client, b.id(), "http-b", "wasmcloud+builtin://http-server").await?;
    lattice.scale(b.id(), "counter", &counter, 16).await?.map_err(anyhow::Error::msg)?;
    client.put_config("a-http", &HashMap::from([("address".to_string(), format!("127.0.0.1:{}", ports[0]))])).await?;
    client.put_config("b-http", &HashMap::from([("address".to_string(), format!("127.0.0.1:{}", ports[1]))])).await?;
    client.put_link(&link("http", "counter", "counter", ("wasi", "http"), &["incoming-handler"], &["a-http"], &[])).await?;
    client.put_link(&link("http-b", "counter", "counter", ("wasi", "http"), &["incoming-handler"], &["b-http"], &[])).await?;
    assert_eq!(wait_ok(ports[0], "/warmup").await.map(|r| r.1), Some("Count: 1\n".into()));
    assert_eq!(wait_ok(ports[1], "/warmup").await.map(|r| r.1), Some("Count: 2\n".into()));

    let tasks = (0..200).map(|i| tokio::spawn(async move { get(ports[i % 2], "/hits").await }));
    let mut seen = Vec::new();
    for t in futures::future::join_all(tasks).await {
        let (status, body) = t??;
        assert_eq!(status, 200, "{body}");
        let n: u64 = body.trim().trim_start_matches("Count: ").parse()?;
        seen.push(n);
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=200).collect::<Vec<u64>>(), "200 concurrent increments from two hosts: each value exactly once");

    // Restart both hosts: the count is in JetStream.
    a.shutdown(None).await?;
    b.shutdown(None).await?;
    let (a, _) = start(0).await?;
    assert_eq!(wait_ok(ports[0], "/hits").await.map(|r| r.1), Some("Count: 201\n".into()));
    a.shutdown(None).await?;
    Ok(())
}

async fn next(events: &mut tokio::sync::mpsc::Receiver<cloudevents::Event>) -> (String, serde_json::Value) {
    let ev = tokio::time::timeout(Duration::from_secs(10), events.recv()).await.ok().flatten().expect("event");
    let ty = cloudevents::AttributesReader::ty(&ev).rsplit('.').next().unwrap_or_default().to_string();
    (ty, trellis_tests::event_data(&ev))
}

#[tokio::test]
async fn provider_lifecycle_bad_references_and_busy_addresses() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let ctl = lattice.ctl().await?;
    let mut events = ctl
        .events_receiver(vec!["provider_started".into(), "provider_start_failed".into(), "provider_stopped".into(), "linkdef_set_failed".into()])
        .await
        .map_err(anyhow::Error::msg)?;

    let ack = ctl.start_provider(host.id(), "wasmcloud+builtin://http-server", "http", None, vec![]).await.map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded(), "{}", ack.message());
    let (ty, data) = next(&mut events).await;
    assert_eq!(ty, "provider_started");
    assert_eq!(data["provider_id"], "http");
    let inventory = lattice.client().await?.inventory(host.id()).await?;
    assert_eq!(inventory.providers.len(), 1);
    assert_eq!(inventory.providers[0].id, "http");

    let ack = ctl.start_provider(host.id(), "ghcr.io/acme/provider:1", "ext", None, vec![]).await.map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded());
    let (ty, data) = next(&mut events).await;
    assert_eq!(ty, "provider_start_failed");
    assert!(data["error"].as_str().unwrap_or_default().contains("--allow-provider-images"), "{data}");

    // An address already in use is reported on the link.
    let busy = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = busy.local_addr()?.port();
    let client = lattice.client().await?;
    lattice.scale(host.id(), "hello", guests::HTTP_HELLO, 1).await?.map_err(anyhow::Error::msg)?;
    serve(&client, "hello", port, None).await?;
    let (ty, data) = next(&mut events).await;
    assert_eq!(ty, "linkdef_set_failed");
    assert!(data["error"].as_str().unwrap_or_default().contains(&format!("cannot listen on 127.0.0.1:{port}")), "{data}");

    let ack = ctl.stop_provider(host.id(), "http").await.map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded());
    let (ty, data) = next(&mut events).await;
    assert_eq!(ty, "provider_stopped");
    assert_eq!(data["provider_id"], "http");
    assert!(lattice.client().await?.inventory(host.id()).await?.providers.is_empty());
    let ack = ctl.stop_provider(host.id(), "http").await.map_err(anyhow::Error::msg)?;
    assert!(!ack.succeeded(), "stopping a provider that does not run is refused");
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn http_client_only_for_linked_components() -> anyhow::Result<()> {
    init_tracing();
    // A local server the component fetches from.
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = server.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = server.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\npong").await;
            });
        }
    });
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let client = lattice.client().await?;
    start_provider(&client, host.id(), "httpc", "wasmcloud+builtin://http-client").await?;
    lattice.scale(host.id(), "linked", guests::HTTP_FETCH, 2).await?.map_err(anyhow::Error::msg)?;
    lattice.scale(host.id(), "unlinked", guests::HTTP_FETCH, 2).await?.map_err(anyhow::Error::msg)?;
    client.put_config("fetch-rules", &std::collections::HashMap::from([("deny".to_string(), "example.invalid".to_string())])).await?;
    client.put_link(&link("linked", "httpc", "default", ("wasi", "http"), &["outgoing-handler"], &[], &["fetch-rules"])).await?;
    let call = |component: &'static str, url: String| {
        let client = client.clone();
        async move {
            let reply = client.call(component, "trellis:fetch/fetch.get", vec![format!("{url:?}")]).await.ok()?;
            reply.results.map(|r| r[0].clone())
        }
    };
    let url = format!("http://127.0.0.1:{port}/ping");

    // Loopback is out of reach until the link's config names it.
    let denied = eventually(Duration::from_secs(10), || async { call("linked", url.clone()).await.filter(|r| r.contains("HttpRequestDenied")) }).await;
    assert!(denied.is_some(), "a loopback address is denied by default");
    client.put_config("fetch-rules", &std::collections::HashMap::from([("allow".to_string(), "127.0.0.1".to_string())])).await?;
    let fetched = eventually(Duration::from_secs(10), || async { call("linked", url.clone()).await.filter(|r| r == r#"ok("200 pong")"#) }).await;
    assert!(fetched.is_some(), "the linked component fetches from the local server once allowed");
    // The cloud metadata address stays out (it is not allowed), checked before any connection.
    let began = std::time::Instant::now();
    let metadata = call("linked", "http://169.254.169.254/latest/meta-data/".into()).await.unwrap_or_default();
    assert!(metadata.contains("HttpRequestDenied") && began.elapsed() < Duration::from_secs(2), "{metadata}");
    // A port the config does not list.
    client.put_config("fetch-rules", &std::collections::HashMap::from([("allow".to_string(), "127.0.0.1".to_string()), ("ports".to_string(), "1".to_string())])).await?;
    let denied = eventually(Duration::from_secs(10), || async { call("linked", url.clone()).await.filter(|r| r.contains("HttpRequestDenied")) }).await;
    assert!(denied.is_some(), "a port not in `ports` is denied");

    let url = format!("{url:?}");
    let reply = client.call("unlinked", "trellis:fetch/fetch.get", vec![url]).await?;
    let result = reply.results.expect("a guest result")[0].clone();
    assert!(result.starts_with("err(") && result.contains("HttpRequestDenied"), "{result}");
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn http_server_on_one_host_reaches_a_component_on_another_over_nats() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let hello = lattice.push("hello", guests::HTTP_HELLO).await?;
    let a = lattice.start_host(lattice.machine_config()).await?;
    let b = lattice.start_host(lattice.machine_config()).await?;
    let client = lattice.client().await?;
    // The component only on A, the HTTP server only on B.
    lattice.scale(a.id(), "hello", &hello, 8).await?.map_err(anyhow::Error::msg)?;
    start_provider(&client, b.id(), "http", "wasmcloud+builtin://http-server").await?;
    let port = free_port();
    serve(&client, "hello", port, None).await?;
    let (status, body) = wait_ok(port, "/").await.expect("served through B");
    assert_eq!((status, body.as_str()), (200, "Hello from Trellis\n"));
    // Faults keep their status across the hop.
    assert_eq!(get(port, "/trap").await?.0, 500);
    for _ in 0..50 {
        assert_eq!(get(port, "/").await?, (200, "Hello from Trellis\n".to_string()));
    }
    // Nothing runs it any more: 503, and the listener stays up.
    a.shutdown(None).await?;
    let (status, body) = get(port, "/").await?;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not running on any host"), "{body}");
    b.shutdown(None).await?;
    Ok(())
}

/// During a rolling upgrade a component may run only on a host of an earlier Trellis, which
/// takes every invocation as JSON and refuses a forwarded message: the provider then sends the
/// message as WAVE, as such a host expects. (The earlier host is played by the test.)
#[tokio::test]
async fn a_message_for_a_host_of_an_earlier_trellis_goes_as_wave() -> anyhow::Result<()> {
    use futures::StreamExt as _;
    use trellis_messages::invocation::{FaultKind, InvocationRequest, InvocationResponse};
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let client = lattice.client().await?;
    let nats = lattice.nats().await?;
    let mut calls = nats.subscribe(format!("trellis.rpc.{}.old", lattice.name)).await?;
    nats.flush().await?;
    let (seen_tx, mut seen) = tokio::sync::mpsc::channel::<(bool, Option<InvocationRequest>)>(8);
    let responder = nats.clone();
    let earlier_host = tokio::spawn(async move {
        while let Some(m) = calls.next().await {
            let Some(reply) = m.reply else { continue };
            let request = serde_json::from_slice::<InvocationRequest>(&m.payload).ok();
            let answer = match &request {
                Some(_) => InvocationResponse::ok("earlier", vec!["ok".into()]),
                None => InvocationResponse::fault("earlier", FaultKind::BadArguments, "invocation request is not valid JSON ({\"function\": …, \"args\": […]}): expected value"),
            };
            let _ = seen_tx.send((m.headers.is_some(), request)).await;
            let _ = responder.publish(reply, serde_json::to_vec(&answer).unwrap_or_default().into()).await;
        }
    });
    start_provider(&client, host.id(), "msg", "trellis://messaging").await?;
    client.put_config("old-subs", &HashMap::from([("subscriptions".to_string(), "to.old".to_string())])).await?;
    client.put_link(&link("msg", "old", "default", ("wasmcloud", "messaging"), &["handler"], &["old-subs"], &[])).await?;
    let began = std::time::Instant::now();
    let first = loop {
        nats.publish("to.old", "hi".into()).await?;
        if let Ok(Some(first)) = tokio::time::timeout(Duration::from_millis(500), seen.recv()).await {
            break first;
        }
        anyhow::ensure!(began.elapsed() < Duration::from_secs(10), "the message never reached the earlier host");
    };
    assert!(first.0 && first.1.is_none(), "first as a forwarded message: {first:?}");
    let (_, again) = tokio::time::timeout(Duration::from_secs(5), seen.recv()).await?.expect("sent again");
    let again = again.expect("then as a JSON invocation");
    assert_eq!(again.function, "wasmcloud:messaging/handler@0.2.0.handle-message");
    assert_eq!(again.args, vec![r#"{subject: "to.old", body: [104, 105]}"#.to_string()]);
    earlier_host.abort();
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn messaging_delivers_subscriptions_and_components_publish_and_request() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let msg_echo = lattice.push("msg-echo", guests::MSG_ECHO).await?;
    let a = lattice.start_host(lattice.machine_config()).await?;
    let b = lattice.start_host(lattice.machine_config()).await?;
    let client = lattice.client().await?;
    let nats = lattice.nats().await?;
    // A service the component asks through `consumer.request`.
    let mut service = nats.subscribe("svc.time").await?;
    let responder = nats.clone();
    tokio::spawn(async move {
        use futures::StreamExt;
        while let Some(m) = service.next().await {
            if let Some(r) = m.reply {
                let _ = responder.publish(r, "tick".into()).await;
            }
        }
    });
    // The provider on A, the component on B: delivery crosses hosts.
    start_provider(&client, a.id(), "msg", "wasmcloud+builtin://messaging-nats").await?;
    lattice.scale(b.id(), "msg-echo", &msg_echo, 4).await?.map_err(anyhow::Error::msg)?;
    // Subscriptions that could see the lattice's own subjects (`>`, `wasmbus.…`) are refused;
    // the others work.
    let evt = format!("wasmbus.evt.{}.>", lattice.name);
    client.put_config("msg-subs", &HashMap::from([("subscriptions".to_string(), format!("demo.echo,ask.svc.time,>,{evt}"))])).await?;
    client.put_link(&link("msg", "msg-echo", "default", ("wasmcloud", "messaging"), &["handler"], &["msg-subs"], &[])).await?;
    // It may publish to the service's subjects (and to the reply subjects of what it handles).
    client.put_config("msg-pub", &HashMap::from([("subjects".to_string(), "svc.>".to_string())])).await?;
    client.put_link(&link("msg-echo", "msg", "default", ("wasmcloud", "messaging"), &["consumer"], &[], &["msg-pub"])).await?;

    let reply = eventually(Duration::from_secs(10), || {
        let nats = nats.clone();
        async move { tokio::time::timeout(Duration::from_millis(500), nats.request("demo.echo", "hi".into())).await.ok()?.ok() }
    })
    .await
    .expect("the component answers messages on its subscription");
    assert_eq!(&reply.payload[..], b"echo: hi");
    // A large body crosses hosts as bytes: as WAVE text (`[120, 120, …]`, about 5 bytes a byte)
    // a 768 KiB message passed the NATS payload limit and was never delivered.
    let big = bytes::Bytes::from(vec![b'x'; 768 << 10]);
    let reply = tokio::time::timeout(Duration::from_secs(10), nats.request("demo.echo", big.clone())).await??;
    assert_eq!(reply.payload.len(), big.len() + 6, "the whole body came back");
    assert!(reply.payload.starts_with(b"echo: xxx"));
    let reply = nats.request("ask.svc.time", "".into()).await?;
    assert_eq!(&reply.payload[..], b"tick", "the component's consumer.request reached the service");
    match tokio::time::timeout(Duration::from_millis(500), nats.request("anything.else", "x".into())).await {
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {}
        other => panic!("`>` was subscribed for the component: {other:?}"),
    }

    // Without the consumer link the component cannot publish: no reply comes.
    client.delete_link("msg-echo", "default", "wasmcloud", "messaging").await?;
    let silent = eventually(Duration::from_secs(10), || {
        let nats = nats.clone();
        async move {
            match tokio::time::timeout(Duration::from_millis(500), nats.request("demo.echo", "x".into())).await {
                Err(_) => Some(()),
                Ok(_) => None,
            }
        }
    })
    .await;
    assert!(silent.is_some(), "an unlinked component cannot publish");
    // Deleting the handler link ends delivery: no responders on the subject.
    client.delete_link("msg", "default", "wasmcloud", "messaging").await?;
    let gone = eventually(Duration::from_secs(10), || {
        let nats = nats.clone();
        async move {
            match tokio::time::timeout(Duration::from_millis(500), nats.request("demo.echo", "x".into())).await {
                Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => Some(()),
                _ => None,
            }
        }
    })
    .await;
    assert!(gone.is_some(), "the subscription went with the link");
    a.shutdown(None).await?;
    b.shutdown(None).await?;
    Ok(())
}
