//! Attacks over wRPC (issue 26): forged lengths in a call's parameters, in an HTTP request's
//! head and in a provider's reply asked the host for gigabytes and aborted it. Each test sends
//! the bytes an attacker would and checks the call fails and the host serves on.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use trellis_tests::hostile::{client, probe};
use trellis_tests::{guests, init_tracing, TestLattice};
/// Five bytes announcing a `list<u32>` of 2³²−1 elements, sent as a wRPC call to a component's
/// export, asked the host for ~170 GB and aborted it (wrpc-runtime-wasmtime reserved what the
/// length said). Now the call fails and the next one works.
#[tokio::test]
async fn a_forged_list_length_over_wrpc_fails_the_call_not_the_host() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    lattice.scale(host.id(), "hostile", guests::HOSTILE, 2).await?.map_err(anyhow::Error::msg)?;
    let nats = lattice.nats().await?;
    let subject = format!("{}.hostile.wrpc.0.0.1.trellis:hostile/probe@0.1.0.count-items", lattice.name);
    for payload in [vec![0xff, 0xff, 0xff, 0xff, 0x0f], vec![0xff, 0xff, 0xff, 0x7f], vec![0x80, 0x80, 0x80, 0x80, 0x04, 1, 2, 3]] {
        let _ = tokio::time::timeout(Duration::from_secs(2), nats.request(subject.clone(), payload.into())).await;
    }
    let client = client(&lattice).await?;
    assert_eq!(probe(&client, "count-items", &["[1, 2, 3]"]).await?, Ok("3".into()));
    assert!(client.inventory(host.id()).await.is_ok(), "the host answers");
    host.shutdown(None).await?;
    Ok(())
}

/// A `wrpc:http/incoming-handler` request (11 bytes) whose header list announces 2³²−1
/// entries asked for ~200 GB in wrpc-transport's list decoder and aborted the host.
#[tokio::test]
async fn a_forged_header_count_over_wrpc_http_fails_the_request_not_the_host() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    lattice.scale(host.id(), "hello", guests::HTTP_HELLO, 2).await?.map_err(anyhow::Error::msg)?;
    let nats = lattice.nats().await?;
    let subject = format!("{}.hello.wrpc.0.0.1.wrpc:http/incoming-handler@0.1.0.handle", lattice.name);
    // body: a pending stream; trailers: a pending future; GET; no path, scheme or authority;
    // then the header list's length.
    let request = vec![0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x0f];
    for _ in 0..3 {
        let _ = tokio::time::timeout(Duration::from_secs(2), nats.request(subject.clone(), request.clone().into())).await;
    }
    let client = client(&lattice).await?;
    assert!(client.inventory(host.id()).await.is_ok(), "the host answers");
    host.shutdown(None).await?;
    Ok(())
}

/// LEB128, as wRPC writes lengths.
fn leb128(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A `wrpc:http` GET with `count` headers of `value_len` bytes each, body and trailers pending.
fn request_head(count: usize, value_len: usize) -> Vec<u8> {
    // body pending, trailers pending, GET, no path, scheme or authority; then the headers.
    let mut head = vec![0x00, 0x00, 0x00, 0x00, 0x00, 0x00];
    headers(count, value_len, &mut head);
    head
}

/// A `wrpc:http` `ok(response)` with status 200 and `count` headers of `value_len` bytes each,
/// body and trailers pending.
fn response_head(count: usize, value_len: usize) -> Vec<u8> {
    // ok, body pending, trailers pending, status 200 (LEB128); then the headers.
    let mut head = vec![0x00, 0x00, 0x00, 0xc8, 0x01];
    headers(count, value_len, &mut head);
    head
}

/// `wasi:http` fields: `count` headers `x-h{i}` of one `value_len`-byte value each.
fn headers(count: usize, value_len: usize, head: &mut Vec<u8>) {
    leb128(count, head);
    for i in 0..count {
        let name = format!("x-h{i}");
        leb128(name.len(), head);
        head.extend_from_slice(name.as_bytes());
        leb128(1, head);
        leb128(value_len, head);
        head.extend(std::iter::repeat_n(b'v', value_len));
    }
}

/// Sends `head` as a wRPC NATS caller does (the first part with the invocation, the rest to the
/// server's `.params` subject once it has answered) and answers whether results came back.
async fn send_head(nats: &async_nats::Client, subject: &str, inbox: &str, head: &[u8]) -> anyhow::Result<bool> {
    let mut handshake = nats.subscribe(inbox.to_string()).await?;
    let mut results = nats.subscribe(format!("{inbox}.results")).await?;
    nats.flush().await?;
    let (first, rest) = head.split_at(head.len().min(64 << 10));
    nats.publish_with_reply(subject.to_string(), inbox.to_string(), first.to_vec().into()).await?;
    let Ok(Some(shake)) = tokio::time::timeout(Duration::from_secs(5), handshake.next()).await else { anyhow::bail!("no handshake") };
    let params = format!("{}.params", shake.reply.ok_or_else(|| anyhow::anyhow!("a handshake without a reply subject"))?);
    for chunk in rest.chunks(512 << 10) {
        nats.publish(params.clone(), chunk.to_vec().into()).await?;
    }
    // The body ends empty and there are no trailers.
    nats.publish(format!("{params}.0.0"), vec![0x00].into()).await?;
    nats.publish(format!("{params}.0.1"), vec![0x00].into()).await?;
    nats.flush().await?;
    Ok(matches!(tokio::time::timeout(Duration::from_secs(3), results.next()).await, Ok(Some(m)) if !m.payload.is_empty()))
}

/// Everything a `wrpc:http` request sends before its body used to be read whatever its size
/// (each byte vector at most 64 MiB, but any number of them): now at most `MAX_HEAD_BYTES`,
/// past which the request fails before it runs, and the host serves on. A head of 100 KiB is
/// answered, so what cuts the larger one off is its size. Heads that stall hold up no other.
#[tokio::test]
async fn a_wrpc_http_request_head_past_its_bound_is_cut_off() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.wasm.max_queue_wait = Duration::from_secs(30);
    let host = lattice.start_host(config).await?;
    lattice.scale(host.id(), "hello", guests::HTTP_HELLO, 2).await?.map_err(anyhow::Error::msg)?;
    let nats = lattice.nats().await?;
    let subject = format!("{}.hello.wrpc.0.0.1.wrpc:http/incoming-handler@0.1.0.handle", lattice.name);
    assert!(send_head(&nats, &subject, "head.small", &request_head(2, 50 << 10)).await?, "a 100 KiB head is answered");
    let big = request_head(40, 50 << 10);
    assert!(big.len() > trellis_host::wasm::transport::wrpc_http::MAX_HEAD_BYTES);
    assert!(!send_head(&nats, &subject, "head.big", &big).await?, "a 2 MB head is not");
    assert!(send_head(&nats, &subject, "head.again", &request_head(1, 10)).await?, "the next request is answered");
    // Callers that send part of a head and stall do not hold up the others: heads used to be
    // decoded one after another, so each stalled one kept every later request waiting for
    // `--max-queue-wait` (here 30 s).
    for i in 0..3 {
        nats.publish_with_reply(subject.clone(), format!("head.stalled.{i}"), vec![0x00, 0x00, 0x00].into()).await?;
    }
    nats.flush().await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let began = Instant::now();
    assert!(send_head(&nats, &subject, "head.past", &request_head(1, 10)).await?, "a whole request beside stalled ones is answered");
    assert!(began.elapsed() < Duration::from_secs(2), "it waited {:?}", began.elapsed());
    let client = client(&lattice).await?;
    assert!(client.inventory(host.id()).await.is_ok(), "the host answers");
    host.shutdown(None).await?;
    Ok(())
}

/// A provider that answers a call with a result announcing 2³²−1 list elements: the call
/// fails, the process stays.
#[tokio::test]
async fn a_forged_list_length_in_a_providers_reply_fails_the_call_not_the_host() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let nats = lattice.nats().await?;
    // The type to decode: `list<u32>`, as the hostile component declares it.
    let engine = wasmtime::Engine::default();
    let component = wasmtime::component::Component::from_file(&engine, guests::HOSTILE)?;
    let list_u32 = component
        .component_type()
        .exports(&engine)
        .find_map(|(name, item)| match (name.starts_with("trellis:hostile/probe"), item) {
            (true, wasmtime::component::types::ComponentItem::ComponentInstance(i)) => i.exports(&engine).find_map(|(n, f)| match (n, f) {
                ("count-items", wasmtime::component::types::ComponentItem::ComponentFunc(f)) => f.params().next().map(|(_, t)| t),
                _ => None,
            }),
            _ => None,
        })
        .expect("count-items takes a list<u32>");
    let mut calls = nats.subscribe(format!("{}.forger.wrpc.0.0.1.acme:lists/lists@0.1.0.get", lattice.name)).await?;
    nats.flush().await?;
    let server = {
        let nats = nats.clone();
        tokio::spawn(async move {
            while let Some(call) = calls.next().await {
                let Some(reply) = call.reply else { continue };
                let _ = nats.publish_with_reply(reply.clone(), format!("{reply}.params-unused"), Vec::new().into()).await;
                let results = format!("{reply}.results");
                let _ = nats.publish(results.clone(), vec![0xff, 0xff, 0xff, 0xff, 0x0f].into()).await;
                let _ = nats.publish(results, Vec::new().into()).await;
            }
        })
    };
    let wrpc = trellis_host::wasm::transport::wrpc::Wrpc::new(nats, &lattice.name, engine, 4, Duration::from_secs(1), trellis_host::Limits::default().body_bounds());
    for _ in 0..3 {
        let failed = wrpc
            .call("caller", "default", "forger", "acme:lists/lists@0.1.0", "get", &[], &[], std::slice::from_ref(&list_u32), Duration::from_secs(5))
            .await
            .expect_err("the forged result is refused");
        assert!(matches!(failed, trellis_host::wasm::transport::wrpc::WrpcError::Decode { index: 0, .. }), "{failed}");
        assert!(failed.to_string().contains("cannot decode result 0"), "{failed}");
    }
    server.abort();
    Ok(())
}

/// How [`a_wrpc_peer_answering_a_huge_head_or_nothing_fails_the_request_not_the_host`]'s peer
/// answers.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Peer {
    /// A 100 KiB head, then an empty body.
    Small,
    /// A 1.2 MB head: as many headers as the small one, each larger.
    Huge,
    /// Takes the call, then says nothing.
    Silent,
}

/// The HTTP server's way to a component no Trellis host runs is a call over wRPC to whoever
/// serves the component's subjects (a wasmCloud 1.x host, or an attacker who may subscribe
/// there). A response head past `MAX_HEAD_BYTES` is a 502 as soon as the bound is crossed (a
/// head of 100 KiB passes, with as many headers, so what cuts the other off is its size); a peer that takes the call
/// and never answers is answered at the call's deadline; each time the next request is served.
#[tokio::test]
async fn a_wrpc_peer_answering_a_huge_head_or_nothing_fails_the_request_not_the_host() -> anyhow::Result<()> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    init_tracing();
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.wasm.max_execution_time = Duration::from_secs(1);
    config.wasm.max_queue_wait = Duration::from_secs(1);
    let host = lattice.start_host(config).await?;
    let ctl = lattice.client().await?;
    trellis_tests::providers::start_provider(&ctl, host.id(), "http", "wasmcloud+builtin://http-server").await?;

    let nats = lattice.nats().await?;
    let mode = Arc::new(Mutex::new(Peer::Small));
    let mut calls = nats.subscribe(format!("{}.faraway.wrpc.0.0.1.wrpc:http/incoming-handler@0.1.0.handle", lattice.name)).await?;
    nats.flush().await?;
    let peer = {
        let (nats, mode) = (nats.clone(), mode.clone());
        tokio::spawn(async move {
            while let Some(call) = calls.next().await {
                let Some(reply) = call.reply else { continue };
                let mode = *mode.lock().unwrap();
                let _ = nats.publish_with_reply(reply.clone(), format!("{reply}.server"), Vec::new().into()).await;
                let head = match mode {
                    Peer::Silent => continue,
                    Peer::Small => response_head(2, 50 << 10),
                    Peer::Huge => response_head(2, 600 << 10),
                };
                let results = format!("{reply}.results");
                for chunk in head.chunks(512 << 10) {
                    let _ = nats.publish(results.clone(), chunk.to_vec().into()).await;
                }
                let _ = nats.publish(results, Vec::new().into()).await;
                // The body ends empty; no trailers.
                let _ = nats.publish(format!("{reply}.results.0.0"), vec![0x00].into()).await;
                let _ = nats.publish(format!("{reply}.results.0.1"), vec![0x00].into()).await;
            }
        })
    };

    let port = trellis_tests::free_port();
    ctl.put_config("faraway-http", &HashMap::from([("address".to_string(), format!("127.0.0.1:{port}"))])).await?;
    let link = trellis_messages::link::Link::new("http", "faraway", "default", "wasi", "http", &["incoming-handler"]).with_source_config(&["faraway-http"]);
    ctl.put_link(&link).await?;
    let get = || trellis_tests::http_get(port, "/");
    let served = trellis_tests::eventually(Duration::from_secs(10), || async { get().await.ok().filter(|(s, _)| *s == 200) }).await;
    assert!(served.is_some(), "a 100 KiB head is answered: {:?}", get().await);

    *mode.lock().unwrap() = Peer::Huge;
    assert!(response_head(2, 600 << 10).len() > trellis_host::wasm::transport::wrpc_http::MAX_HEAD_BYTES);
    let began = Instant::now();
    let (status, body) = get().await?;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("over wRPC failed"), "{body}");
    assert!(began.elapsed() < Duration::from_secs(2), "cut off at the bound, not at the deadline: {:?}", began.elapsed());

    *mode.lock().unwrap() = Peer::Silent;
    let began = Instant::now();
    let (status, body) = get().await?;
    assert!(matches!(status, 502 | 504), "{status} {body}");
    // The deadline: execution 1 s + queue wait 1 s + 1 s.
    assert!(began.elapsed() >= Duration::from_secs(2) && began.elapsed() < Duration::from_secs(6), "{:?}", began.elapsed());

    *mode.lock().unwrap() = Peer::Small;
    assert_eq!(get().await?.0, 200, "the next request is served");
    let probe = client(&lattice).await?;
    assert!(probe.inventory(host.id()).await.is_ok(), "the host answers");
    peer.abort();
    host.shutdown(None).await?;
    Ok(())
}
