//! Bounds on what the network can make a host do: HTTP connections, header time, body sizes,
//! control message size, labels; and stops that end every piece of work with an answer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use trellis_host::Limits;
use trellis_messages::link::Link;
use trellis_messages::provider::StartProviderCommand;
use trellis_messages::Client;
use trellis_tests::raw_http::{exchange, request};
use trellis_tests::{guests, eventually, free_port, init_tracing, TestLattice};

async fn client(lattice: &TestLattice) -> anyhow::Result<Client> {
    Ok(lattice.client().await?.with_timeout(Duration::from_secs(10)))
}

/// Starts an HTTP server provider `http` on `host` serving `hostile` on `port`.
async fn serve_hostile(lattice: &TestLattice, client: &Client, host: &str, port: u16) -> anyhow::Result<()> {
    serve_hostile_with(lattice, client, host, port, 8).await
}

/// As [`serve_hostile`], with at most `instances` instances of `hostile` at once.
async fn serve_hostile_with(lattice: &TestLattice, client: &Client, host: &str, port: u16, instances: u32) -> anyhow::Result<()> {
    let cmd = StartProviderCommand { provider_id: "http".into(), provider_ref: "trellis://http-server".into(), ..Default::default() };
    client.start_provider(host, &cmd).await?;
    lattice.scale(host, "hostile", guests::HOSTILE, instances).await?.map_err(anyhow::Error::msg)?;
    client.put_config("hostile-http", &HashMap::from([("address".to_string(), format!("127.0.0.1:{port}"))])).await?;
    client.put_link(&Link::new("http", "hostile", "default", "wasi", "http", &["incoming-handler"]).with_source_config(&["hostile-http"])).await?;
    let up = eventually(Duration::from_secs(10), || async move { exchange(port, &request("GET", "/", None)).await.ok().filter(|(s, _)| *s == 200) }).await;
    anyhow::ensure!(up.is_some(), "hostile is served on {port}");
    Ok(())
}

#[tokio::test]
async fn http_bodies_and_header_time_are_bounded() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.limits = Limits { max_http_body: 64 << 10, http_header_timeout: Duration::from_millis(500), ..Limits::default() };
    let host = lattice.start_host(config).await?;
    let client = client(&lattice).await?;
    let port = free_port();
    serve_hostile(&lattice, &client, host.id(), port).await?;

    // Under the limit: read whole.
    let (status, body) = exchange(port, &request("POST", "/", Some(&[b'a'; 1000]))).await?;
    assert_eq!((status, String::from_utf8_lossy(&body).trim()), (200, "read 1000 bytes"));
    // A declared length over the limit: 413 before anything is read.
    let mut raw = b"POST / HTTP/1.1\r\nhost: t\r\nconnection: close\r\ncontent-length: 1000000\r\n\r\n".to_vec();
    raw.extend_from_slice(&[b'a'; 100]);
    let (status, body) = exchange(port, &raw).await?;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    // A chunked body that grows past the limit: the guest never gets more than the limit.
    let mut raw = b"POST / HTTP/1.1\r\nhost: t\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..40 {
        raw.extend_from_slice(format!("{:x}\r\n", 4096).as_bytes());
        raw.extend_from_slice(&[b'b'; 4096]);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let (status, body) = exchange(port, &raw).await?;
    let text = String::from_utf8_lossy(&body).to_string();
    let read: usize = text.trim().trim_start_matches("read ").trim_end_matches(" bytes").parse().unwrap_or(0);
    assert!(status != 200 || read <= 64 << 10, "the guest read {read} bytes of a body over the limit ({status})");
    // A response past the limit is cut off; one under it arrives whole.
    let (status, body) = exchange(port, &request("GET", "/big/1000", None)).await?;
    assert_eq!((status, body.len()), (200, 1000));
    let (_, body) = exchange(port, &request("GET", "/big/1000000", None)).await?;
    assert!(body.len() < 200 << 10, "a response over the limit was sent whole ({} bytes)", body.len());

    // A handler waiting in a host call is stopped at the deadline (2 s): 504, not a hang.
    let began = Instant::now();
    let (status, _) = exchange(port, &request("GET", "/sleep/60000", None)).await?;
    assert_eq!(status, 504);
    assert!(began.elapsed() < Duration::from_secs(4), "{:?}", began.elapsed());

    // Headers that never finish: the connection is closed after the header timeout.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).await?;
    slow.write_all(b"GET / HTTP/1.1\r\nhost: t\r\n").await?;
    let began = Instant::now();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a client that never finishes its headers is dropped");
    assert!(began.elapsed() < Duration::from_secs(3));
    // Still serving.
    assert_eq!(exchange(port, &request("GET", "/", None)).await?.0, 200);
    host.shutdown(None).await?;
    Ok(())
}

/// Opens a connection, sends headers announcing a 100-byte body and one byte of it, then a
/// byte a second: the status it is finally answered with (0 if none within 30 s).
async fn trickle(port: u16) -> anyhow::Result<u16> {
    let (mut r, mut w) = TcpStream::connect(("127.0.0.1", port)).await?.into_split();
    w.write_all(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\nx").await?;
    let writer = async move {
        for _ in 0..99 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if w.write_all(b"x").await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await;
    };
    let reader = async move {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(30), r.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
    };
    tokio::select! {
        status = reader => Ok(status),
        () = writer => unreachable!(),
    }
}

#[tokio::test]
async fn slow_request_bodies_hold_no_instance_and_are_cut_off() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.wasm.max_execution_time = Duration::from_secs(60);
    config.limits = Limits { http_body_timeout: Duration::from_secs(3), ..Limits::default() };
    let host = lattice.start_host(config).await?;
    let client = client(&lattice).await?;
    let port = free_port();
    serve_hostile_with(&lattice, &client, host.id(), port, 4).await?;

    // 200 clients trickle their bodies at a byte a second to a component with 4 instances.
    let slow: Vec<_> = (0..200).map(|_| tokio::spawn(trickle(port))).collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Meanwhile a fast client's requests are served at once: no slow body holds an instance.
    for _ in 0..5 {
        let began = Instant::now();
        let (status, body) = exchange(port, &request("POST", "/", Some(b"hello"))).await?;
        assert_eq!((status, String::from_utf8_lossy(&body).trim()), (200, "read 5 bytes"));
        assert!(began.elapsed() < Duration::from_secs(2), "a fast request waited {:?}", began.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The slow ones are cut off once they have kept the server waiting past their allowance
    // (--http-body-timeout 3 s plus 1 s per KiB delivered): 408.
    let began = Instant::now();
    for task in slow {
        assert_eq!(task.await??, 408);
    }
    assert!(began.elapsed() < Duration::from_secs(10), "{:?}", began.elapsed());
    assert_eq!(exchange(port, &request("POST", "/", Some(b"again"))).await?.0, 200);
    host.shutdown(None).await?;
    Ok(())
}

/// Clients that ask for a large response and read none of it used to keep the guests writing
/// to them (and their instances) until `--max-execution-time`: with 4 instances, 8 such clients
/// left a fast client's request waiting for a slot until the queue wait refused it. Now each is
/// disconnected once the server has waited `--http-body-timeout` to write, the guest's write
/// fails, and its instance goes to the next request.
#[tokio::test]
async fn clients_that_do_not_read_their_responses_are_cut_off_and_free_their_instances() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.wasm.max_execution_time = Duration::from_secs(120);
    config.wasm.max_queue_wait = Duration::from_secs(60);
    config.limits = Limits { http_body_timeout: Duration::from_secs(2), max_http_body: 1 << 30, ..Limits::default() };
    let host = lattice.start_host(config).await?;
    let client = client(&lattice).await?;
    let port = free_port();
    serve_hostile_with(&lattice, &client, host.id(), port, 4).await?;

    let mut stalled = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(&request("GET", "/big/500000000", None)).await?;
        stalled.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Eight guests (two rounds of four) each wait 2 s on a client that does not read; then the
    // fast request has an instance.
    let began = Instant::now();
    let (status, body) = tokio::time::timeout(Duration::from_secs(20), exchange(port, &request("POST", "/", Some(b"hello")))).await??;
    assert_eq!((status, String::from_utf8_lossy(&body).trim()), (200, "read 5 bytes"));
    assert!(began.elapsed() < Duration::from_secs(12), "the fast request waited {:?}", began.elapsed());
    // The stalled clients were disconnected: after what the socket held, their streams end.
    let mut buf = vec![0u8; 1 << 20];
    for mut s in stalled {
        let ended = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "a stalled client's connection was closed");
    }
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn http_connections_are_bounded_and_close_when_the_provider_stops() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.limits = Limits { max_http_connections: 4, ..Limits::default() };
    let host = lattice.start_host(config).await?;
    let client = client(&lattice).await?;
    let port = free_port();
    serve_hostile(&lattice, &client, host.id(), port).await?;

    // Four idle connections take every slot: the fifth is answered 503 and closed. (First let
    // the readiness check's connection finish on the server: its client has seen the response
    // end, but the server may still hold its slot for a moment.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(("127.0.0.1", port)).await?);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _) = exchange(port, &request("GET", "/", None)).await?;
    assert_eq!(status, 503, "past --max-http-connections");
    drop(idle);
    let ok = eventually(Duration::from_secs(5), || async { exchange(port, &request("GET", "/", None)).await.ok().filter(|(s, _)| *s == 200) }).await;
    assert!(ok.is_some(), "slots come back when connections close");

    // A keep-alive connection does not outlive its provider.
    let mut conn = TcpStream::connect(("127.0.0.1", port)).await?;
    conn.write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n").await?;
    let mut buf = vec![0u8; 4096];
    let n = conn.read(&mut buf).await?;
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    client.stop_provider(host.id(), "http").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = conn.write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n").await;
    let after = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await?;
    assert!(matches!(after, Ok(0) | Err(_)), "the connection was closed, not served: {:?}", after.map(|n| String::from_utf8_lossy(&buf[..n]).to_string()));
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn oversized_control_messages_and_labels_are_refused() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.limits = Limits { max_control_message: 4096, ..Limits::default() };
    let host = lattice.start_host(config).await?;
    let client = client(&lattice).await?;
    let subject = format!("wasmbus.ctl.v1.{}.label.put.{}", lattice.name, host.id());
    let big = serde_json::to_vec(&serde_json::json!({"key": "k", "value": "v".repeat(10_000)}))?;
    let reply = client.request_raw(subject, big).await?;
    assert!(!reply.success);
    assert!(reply.message.contains("at most 4096 bytes (--max-control-message)"), "{}", reply.message);

    let err = client.put_label(host.id(), "k", &"v".repeat(4097)).await.expect_err("value too long");
    assert!(err.to_string().contains("at most 4096"), "{err}");
    let err = client.put_label(host.id(), &"k".repeat(300), "v").await.expect_err("key too long");
    assert!(err.to_string().contains("at most 256"), "{err}");
    let mut refused = None;
    for i in 0..120 {
        if let Err(e) = client.put_label(host.id(), &format!("l{i}"), "v").await {
            refused = Some((i, e.to_string()));
            break;
        }
    }
    let (at, why) = refused.expect("a label count limit");
    assert!(why.contains("at most 100 labels"), "{why}");
    assert!(at < 100, "refused at {at}");
    // The host still answers and heartbeats.
    assert!(client.inventory(host.id()).await.is_ok());
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn a_call_still_running_at_the_stop_deadline_is_answered() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.wasm.max_execution_time = Duration::from_secs(30);
    let host = lattice.start_host(config).await?;
    let client = client(&lattice).await?;
    lattice.scale(host.id(), "hostile", guests::HOSTILE, 1).await?.map_err(anyhow::Error::msg)?;
    let call = {
        let client = client.clone();
        tokio::spawn(async move { client.call("hostile", "trellis:hostile/probe.sleep", vec!["20000".into()]).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let began = Instant::now();
    host.shutdown(Some(Duration::from_secs(1))).await?;
    let response = call.await??;
    assert!(began.elapsed() < Duration::from_secs(5));
    assert_eq!(response.fault, Some(trellis_messages::invocation::FaultKind::Host), "{response:?}");
    assert!(response.error.as_deref().is_some_and(|e| e.contains("stop deadline")), "{response:?}");
    Ok(())
}

#[tokio::test]
async fn a_stopping_host_answers_every_control_request_it_received() -> anyhow::Result<()> {
    use futures::StreamExt;
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let nats = lattice.nats().await?;
    let inbox = nats.new_inbox();
    let mut replies = nats.subscribe(format!("{inbox}.>")).await?;
    nats.flush().await?;
    // 200 inventory requests, then the stop, all sent before any answer is read.
    let get = format!("wasmbus.ctl.v1.{}.host.get.{}", lattice.name, host.id());
    for i in 0..200 {
        nats.publish_with_reply(get.clone(), format!("{inbox}.get.{i}"), "".into()).await?;
    }
    nats.publish_with_reply(format!("wasmbus.ctl.v1.{}.host.stop.{}", lattice.name, host.id()), format!("{inbox}.stop"), "{}".into()).await?;
    nats.flush().await?;
    let mut answered = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while answered.len() < 201 && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(2), replies.next()).await {
            Ok(Some(m)) => {
                answered.insert(m.subject.to_string());
            }
            _ => break,
        }
    }
    assert_eq!(answered.len(), 201, "every request the host received was answered before it stopped");
    let mut host = host;
    host.wait().await?;
    Ok(())
}

#[tokio::test]
async fn a_scale_in_progress_when_the_host_stops_ends_with_an_event() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let client = client(&lattice).await?;
    let outcome = lattice.watch_scale_events("late").await?;
    let command = trellis_messages::component::ScaleComponentCommand {
        component_ref: guests::HOSTILE.into(),
        component_id: "late".into(),
        max_instances: 1,
        host_id: host.id().into(),
        ..Default::default()
    };
    client.scale_component(host.id(), &command).await?;
    host.shutdown(Some(Duration::from_secs(5))).await?;
    // Either it started before the drain (and was drained with the rest) or it is refused.
    match outcome.await?? {
        Ok(_) => {}
        Err(e) => assert!(e.contains("shutting down"), "{e}"),
    }
    // Nothing serves it afterwards.
    let r = client.call("late", "trellis:hostile/probe.sleep", vec!["1".into()]).await;
    assert!(r.is_err(), "{r:?}");
    Ok(())
}

#[tokio::test]
async fn a_burst_of_control_requests_past_the_in_flight_bound_is_answered_busy() -> anyhow::Result<()> {
    use futures::StreamExt;
    init_tracing();
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.limits = Limits { max_control_in_flight: 1, ..Limits::default() };
    let host = lattice.start_host(config).await?;
    let nats = lattice.nats().await?;
    let inbox = nats.new_inbox();
    let mut replies = nats.subscribe(format!("{inbox}.>")).await?;
    nats.flush().await?;
    let subject = format!("wasmbus.ctl.v1.{}.link.get", lattice.name);
    for i in 0..100 {
        nats.publish_with_reply(subject.clone(), format!("{inbox}.{i}"), "".into()).await?;
    }
    nats.flush().await?;
    let (mut ok, mut busy) = (0, 0);
    while ok + busy < 100 {
        let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(5), replies.next()).await else { break };
        let reply: serde_json::Value = serde_json::from_slice(&m.payload)?;
        if reply["success"] == true {
            ok += 1;
        } else {
            assert!(reply["message"].as_str().is_some_and(|m| m.contains("--max-control-in-flight")), "{reply}");
            busy += 1;
        }
    }
    assert_eq!(ok + busy, 100, "every request is answered");
    assert!(busy > 0 && ok > 0, "ok {ok}, busy {busy}");
    assert!(client(&lattice).await?.inventory(host.id()).await.is_ok(), "and the host serves on");
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn a_host_with_more_components_than_one_message_holds_lists_what_fits_and_counts_the_rest() -> anyhow::Result<()> {
    init_tracing();
    // A server taking messages of at most 8 KiB: about 25 components' descriptions.
    let server = trellis_tests::NatsServer::start_configured("max_payload: 8192").await?;
    let lattice = TestLattice::on(server);
    let mut config = lattice.host_config();
    config.heartbeat_interval = Duration::from_millis(500);
    let host = lattice.start_host(config).await?;
    for i in 0..40 {
        lattice.scale(host.id(), &format!("component-with-a-long-name-{i:03}"), guests::ECHO, 1).await?.map_err(anyhow::Error::msg)?;
    }
    // host.get answers (it would not reach the client past the server's limit) ...
    let inventory = client(&lattice).await?.inventory(host.id()).await?;
    assert!(inventory.components_omitted > 0, "{} listed, none omitted", inventory.components.len());
    assert_eq!(inventory.components.len() + inventory.components_omitted, 40);
    // ... and the heartbeat is still published, saying the same.
    let nats = lattice.nats().await?;
    let mut beats = nats.subscribe(format!("wasmbus.evt.{}.host_heartbeat", lattice.name)).await?;
    let beat = tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut beats)).await?.expect("a heartbeat");
    assert!(beat.payload.len() <= 8192);
    let event: serde_json::Value = serde_json::from_slice(&beat.payload)?;
    let omitted = event["data"]["components_omitted"].as_u64().unwrap_or(0);
    let listed = event["data"]["components"].as_array().map_or(0, Vec::len) as u64;
    assert!(omitted > 0 && listed + omitted == 40, "listed {listed}, omitted {omitted}");
    host.shutdown(None).await?;
    Ok(())
}
