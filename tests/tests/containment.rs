//! Containment: a guest reaches exactly what its links grant. The `hostile` actor tries, through
//! the real host functions on a real lattice, to open the lattice's own buckets, publish on its
//! control subjects, send HTTP without a link, wait in host calls past the deadline, and flood a
//! component; each test asserts the specific refusal and that the host keeps serving.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use trellis_messages::link::Link;
use trellis_messages::Client;
use trellis_tests::hostile::{client, probe};
use trellis_tests::{guests, eventually, init_tracing, start_provider, TestLattice};

fn wave(s: &str) -> String {
    format!("{s:?}")
}

async fn host_answers(client: &Client, host: &str) -> bool {
    client.inventory(host).await.is_ok()
}

#[tokio::test]
async fn key_value_opens_only_the_bucket_its_link_names() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let client = client(&lattice).await?;
    let system = format!("LATTICEDATA_{}", lattice.name);
    start_provider(&client, host.id(), "kv", "trellis://keyvalue").await?;
    lattice.scale(host.id(), "echo", guests::ECHO, 1).await?.map_err(anyhow::Error::msg)?;
    lattice.scale(host.id(), "hostile", guests::HOSTILE, 4).await?.map_err(anyhow::Error::msg)?;
    // The lattice's own data exists (the link below is stored there).
    let kv_link = |config: &str| Link::new("hostile", "kv", "default", "wasi", "keyvalue", &["store"]).with_target_config(&[config]);

    // No link: refused.
    assert_eq!(probe(&client, "kv-list", &[&wave(&system)]).await?, Ok("err(\"access-denied\")".into()));

    // A link whose config names no bucket: refused (the identifier never chooses the bucket).
    client.put_config("empty", &HashMap::from([("x".to_string(), "y".to_string())])).await?;
    client.put_link(&kv_link("empty")).await?;
    let r = eventually(Duration::from_secs(5), || async {
        probe(&client, "kv-list", &[&wave(&system)]).await.ok().filter(|r| r.as_deref() == Ok("err(\"access-denied\")"))
    })
    .await;
    assert!(r.is_some(), "a link without a bucket grants nothing");

    // The link names a system bucket: refused.
    // (Also the liveness records hosts place applications by, and wadm's manifests: a guest
    // that could write them could forge hosts or deploy applications.)
    for bucket in [system.clone(), format!("CONFIGDATA_{}", lattice.name), format!("TRELLIS_LIVE_{}", lattice.name), "wadm_manifests".to_string()] {
        client.put_config("sys", &HashMap::from([("bucket".to_string(), bucket.clone())])).await?;
        client.put_link(&kv_link("sys")).await?;
        let denied = eventually(Duration::from_secs(5), || async {
            probe(&client, "kv-list", &[&wave("anything")]).await.ok().filter(|r| r.as_deref() == Ok("err(\"access-denied\")"))
        })
        .await;
        assert!(denied.is_some(), "{bucket} is never opened for a guest");
    }

    // The link names the app's bucket: whatever identifier the guest passes, it gets that one.
    let app = format!("app_{}", lattice.name.replace('-', "_"));
    client.put_config("app", &HashMap::from([("bucket".to_string(), app.clone())])).await?;
    client.put_link(&kv_link("app")).await?;
    let set = eventually(Duration::from_secs(5), || async {
        probe(&client, "kv-set", &[&wave(&system), &wave("mine"), &wave("v")]).await.ok().filter(Result::is_ok)
    })
    .await;
    assert!(set.is_some());
    assert_eq!(probe(&client, "kv-list", &[&wave(&system)]).await?, Ok("ok([\"mine\"])".into()));
    let js = async_nats::jetstream::new(lattice.nats().await?);
    let mine = js.get_key_value(&app).await?;
    assert_eq!(mine.get("mine").await?.as_deref(), Some(b"v".as_slice()));
    let lattice_data = js.get_key_value(&system).await?;
    assert!(lattice_data.get("mine").await?.is_none(), "nothing was written to the lattice's bucket");
    assert_eq!(mine.status().await?.info.config.num_replicas, 1, "created with the host's --kv-replicas");

    // list-keys pages: 1,000 keys at most per call.
    for i in 0..1100 {
        mine.put(format!("k{i:04}"), "x".into()).await?;
    }
    let page = probe(&client, "kv-list", &[&wave("x")]).await?.map_err(anyhow::Error::msg)?;
    assert_eq!(page.matches('"').count() / 2, 1000, "one page of keys, not all 1,101");
    assert_eq!(probe(&client, "kv-page", &[&wave("x"), "none"]).await?, Ok("ok((1000, some(1000)))".into()));
    assert_eq!(probe(&client, "kv-page", &[&wave("x"), "some(1000)"]).await?, Ok("ok((101, none))".into()), "the cursor continues");

    // A link to something that is not a running key-value provider grants nothing.
    client.delete_link("hostile", "default", "wasi", "keyvalue").await?;
    client.put_link(&Link::new("hostile", "echo", "default", "wasi", "keyvalue", &["store"]).with_target_config(&["app"])).await?;
    let r = eventually(Duration::from_secs(5), || async {
        probe(&client, "kv-list", &[&wave("x")]).await.ok().filter(|r| r.as_deref() == Ok("err(\"access-denied\")"))
    })
    .await;
    assert!(r.is_some(), "a key-value link to a component grants nothing");

    // Stopping the provider revokes the capability for the next call.
    client.delete_link("hostile", "default", "wasi", "keyvalue").await?;
    client.put_link(&kv_link("app")).await?;
    let _granted = eventually(Duration::from_secs(5), || async { probe(&client, "kv-list", &[&wave("x")]).await.ok().filter(Result::is_ok) })
        .await
        .expect("granted again");
    client.stop_provider(host.id(), "kv").await?;
    assert_eq!(probe(&client, "kv-list", &[&wave("x")]).await?, Ok("err(\"access-denied\")".into()));
    assert!(host_answers(&client, host.id()).await);
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn messaging_publishes_only_where_the_link_allows_never_to_the_lattice() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let client = client(&lattice).await?;
    let nats = lattice.nats().await?;
    start_provider(&client, host.id(), "msg", "trellis://messaging").await?;
    lattice.scale(host.id(), "hostile", guests::HOSTILE, 4).await?.map_err(anyhow::Error::msg)?;
    let stop_subject = format!("wasmbus.ctl.v1.{}.host.stop.{}", lattice.name, host.id());

    // No link: refused, naming the link.
    let r = probe(&client, "publish", &[&wave(&stop_subject), &wave("{}")]).await?;
    assert!(r.as_deref().is_ok_and(|r| r.contains("no link named `default` from `hostile` for `wasmcloud:messaging/consumer`")), "{r:?}");

    // A link with no allow-list: nothing.
    client.put_config("none", &HashMap::from([("x".to_string(), "y".to_string())])).await?;
    client.put_link(&Link::new("hostile", "msg", "default", "wasmcloud", "messaging", &["consumer"]).with_target_config(&["none"])).await?;
    let r = eventually(Duration::from_secs(5), || async {
        probe(&client, "publish", &[&wave("orders.new"), &wave("x")]).await.ok().filter(|r| r.as_deref().is_ok_and(|s| s.contains("no subject")))
    })
    .await;
    assert!(r.is_some(), "a link without `subjects` allows no subject");

    // An allow-list of `>`: every ordinary subject, never the lattice's own.
    client.put_config("none", &HashMap::from([("subjects".to_string(), "orders.*, >".to_string())])).await?;
    let mut orders = nats.subscribe("orders.new").await?;
    nats.flush().await?;
    let ok = eventually(Duration::from_secs(5), || async {
        probe(&client, "publish", &[&wave("orders.new"), &wave("o1")]).await.ok().filter(|r| r.as_deref() == Ok("ok"))
    })
    .await;
    assert!(ok.is_some());
    let got = tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut orders)).await?.expect("delivered");
    assert_eq!(&got.payload[..], b"o1");
    let mut watch = nats.subscribe(">").await?;
    nats.flush().await?;
    for subject in [
        stop_subject.clone(),
        format!("wasmbus.ctl.v1.{}.link.put", lattice.name),
        format!("wasmbus.evt.{}.host_stopped", lattice.name),
        format!("$JS.API.STREAM.DELETE.KV_LATTICEDATA_{}", lattice.name),
        format!("$KV.LATTICEDATA_{}.COMPONENT_x", lattice.name),
        format!("trellis.rpc.{}.hostile", lattice.name),
        // Arming `trellis spy` on another component, or forging its records.
        format!("trellis.spy.{}.watch", lattice.name),
        format!("trellis.spy.{}.calls.kv-counter", lattice.name),
        // wRPC: a call to a component without a link.
        format!("{}.hostile.wrpc.0.0.1.trellis:hostile/probe@0.1.0.publish", lattice.name),
        "wadm.api.default.model.del.app".to_string(),
        "_INBOX.someone.else".to_string(),
        "wasmbus.ctl.v1.other-lattice.host.stop.N".to_string(),
    ] {
        let r = probe(&client, "publish", &[&wave(&subject), &wave("{}")]).await?;
        assert!(r.as_deref().is_ok_and(|r| r.contains("subject of the lattice itself")), "{subject}: {r:?}");
        let r = probe(&client, "request", &[&wave(&subject), &wave("{}"), "1000"]).await?;
        assert!(r.as_deref().is_ok_and(|r| r.contains("subject of the lattice itself")), "{subject}: {r:?}");
    }
    // Nothing the guest tried reached the server.
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(50), futures::StreamExt::next(&mut watch)).await {
        let s = m.subject.as_str();
        assert!(
            !(s.contains("host.stop") || s.contains("link.put") || s.starts_with("$JS.API.STREAM.DELETE") || s.starts_with("wadm.") || s.starts_with("trellis.spy.")),
            "{s} was published"
        );
    }
    assert!(host_answers(&client, host.id()).await, "the host still runs");

    // A narrower allow-list names what is allowed.
    client.put_config("none", &HashMap::from([("subjects".to_string(), "orders.*".to_string())])).await?;
    let r = eventually(Duration::from_secs(5), || async {
        probe(&client, "publish", &[&wave("audit.x"), &wave("x")]).await.ok().filter(|r| r.as_deref().is_ok_and(|s| s.contains("only, not `audit.x`")))
    })
    .await;
    assert!(r.is_some());

    // A request waits at most until the call's deadline (2 s here), not the 49 days it asks for.
    let _silent = nats.subscribe("orders.slow").await?;
    nats.flush().await?;
    let began = Instant::now();
    let r = probe(&client, "request", &[&wave("orders.slow"), &wave("x"), &u32::MAX.to_string()]).await?;
    assert!(began.elapsed() < Duration::from_secs(4), "took {:?}: {r:?}", began.elapsed());
    assert!(r.is_err() || r.as_deref().is_ok_and(|s| s.starts_with("err(")), "{r:?}");
    host.shutdown(None).await?;
    Ok(())
}

/// A local HTTP server that answers 200 to anything, for `fetch`.
async fn http_target() -> anyhow::Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
            });
        }
    });
    Ok(port)
}

#[tokio::test]
async fn outgoing_http_needs_a_link_to_a_running_http_client_provider() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let client = client(&lattice).await?;
    let url = format!("http://127.0.0.1:{}/", http_target().await?);
    start_provider(&client, host.id(), "kv", "trellis://keyvalue").await?;
    start_provider(&client, host.id(), "httpc", "trellis://http-client").await?;
    lattice.scale(host.id(), "echo", guests::ECHO, 1).await?.map_err(anyhow::Error::msg)?;
    lattice.scale(host.id(), "hostile", guests::HOSTILE, 2).await?.map_err(anyhow::Error::msg)?;
    let denied = |r: &Result<String, String>| r.as_deref().is_ok_and(|s| s.contains("HttpRequestDenied"));
    let http_link = |target: &str| Link::new("hostile", target, "default", "wasi", "http", &["outgoing-handler"]);

    assert!(denied(&probe(&client, "fetch", &[&wave(&url)]).await?), "no link");
    // A link to a component, then to a provider of another kind: still denied.
    for target in ["echo", "kv"] {
        client.put_link(&http_link(target)).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = probe(&client, "fetch", &[&wave(&url)]).await?;
        assert!(denied(&r), "a link to `{target}` grants no HTTP: {r:?}");
        client.delete_link("hostile", "default", "wasi", "http").await?;
    }
    // Granted through the HTTP client provider, to the loopback target the link's config names.
    client.put_config("httpc-rules", &std::collections::HashMap::from([("allow".to_string(), "127.0.0.1".to_string())])).await?;
    client.put_link(&http_link("httpc").with_target_config(&["httpc-rules"])).await?;
    let ok = eventually(Duration::from_secs(5), || async {
        probe(&client, "fetch", &[&wave(&url)]).await.ok().filter(|r| r.as_deref() == Ok("ok(200)"))
    })
    .await;
    assert!(ok.is_some(), "granted through the HTTP client provider");
    client.stop_provider(host.id(), "httpc").await?;
    assert!(denied(&probe(&client, "fetch", &[&wave(&url)]).await?), "revoked when the provider stops");
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn wasi_grants_no_environment_files_or_sockets() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let client = client(&lattice).await?;
    lattice.scale(host.id(), "hostile", guests::HOSTILE, 1).await?.map_err(anyhow::Error::msg)?;
    // A listener the guest tries to reach: nothing may arrive.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let target = listener.local_addr()?.to_string();
    let response = client.call("hostile", "trellis:hostile/probe.ambient", vec![wave(&target)]).await?;
    let lines = response.results.unwrap_or_default().join("");
    for expected in ["\"env: 0\"", "\"args: 0\"", "\"preopens: 0\""] {
        assert!(lines.contains(expected), "{expected} in {lines}");
    }
    assert!(lines.contains("tcp: ") && lines.contains("access-denied") && !lines.contains("connected"), "{lines}");
    let accepted = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
    assert!(accepted.is_err(), "the guest reached a socket");
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn a_guest_waiting_in_a_host_call_is_stopped_at_the_deadline() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?; // 2 s deadline
    let client = client(&lattice).await?;
    lattice.scale(host.id(), "hostile", guests::HOSTILE, 1).await?.map_err(anyhow::Error::msg)?;
    let began = Instant::now();
    let response = client.call("hostile", "trellis:hostile/probe.sleep", vec!["60000".into()]).await?;
    let took = began.elapsed();
    assert_eq!(response.fault, Some(trellis_messages::invocation::FaultKind::Deadline), "{response:?}");
    assert!(took < Duration::from_secs(4), "stopped at the deadline, not after 60 s: {took:?}");
    // Its only instance slot is free again: the next call runs at once.
    let began = Instant::now();
    let response = client.call("hostile", "trellis:hostile/probe.sleep", vec!["10".into()]).await?;
    assert!(response.error.is_none(), "{response:?}");
    assert!(began.elapsed() < Duration::from_secs(1));
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn rescaling_changes_the_limit_in_place() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.wasm.max_execution_time = Duration::from_secs(10);
    let host = lattice.start_host(config).await?;
    let client = client(&lattice).await?;
    lattice.scale(host.id(), "hostile", guests::HOSTILE, 2).await?.map_err(anyhow::Error::msg)?;
    let sleep = |ms: u64| {
        let client = client.clone();
        tokio::spawn(async move {
            let began = Instant::now();
            let r = client.call("hostile", "trellis:hostile/probe.sleep", vec![ms.to_string()]).await;
            (began.elapsed(), r.map(|r| r.error))
        })
    };
    let long = [sleep(1500), sleep(1500)];
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Down to 1 while two run: a new call waits until both have finished.
    lattice.scale(host.id(), "hostile", guests::HOSTILE, 1).await?.map_err(anyhow::Error::msg)?;
    let (took, r) = sleep(10).await?;
    assert_eq!(r?, None);
    assert!(took >= Duration::from_millis(900), "a third call ran beside the two old ones ({took:?})");
    for l in long {
        assert_eq!(l.await?.1?, None);
    }
    // Up to 3: three calls run together.
    lattice.scale(host.id(), "hostile", guests::HOSTILE, 3).await?.map_err(anyhow::Error::msg)?;
    let began = Instant::now();
    let three = [sleep(800), sleep(800), sleep(800)];
    for t in three {
        assert_eq!(t.await?.1?, None);
    }
    assert!(began.elapsed() < Duration::from_millis(2000), "{:?}", began.elapsed());
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn a_flood_of_calls_is_refused_busy_beyond_the_queue_bound() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.wasm.max_queued_calls = 4;
    let host = lattice.start_host(config).await?;
    let client = client(&lattice).await?;
    lattice.scale(host.id(), "hostile", guests::HOSTILE, 1).await?.map_err(anyhow::Error::msg)?;
    lattice.scale(host.id(), "echo", guests::ECHO, 1).await?.map_err(anyhow::Error::msg)?;
    let calls: Vec<_> = (0..40)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.call("hostile", "trellis:hostile/probe.sleep", vec!["500".into()]).await })
        })
        .collect();
    let mut busy = 0;
    let mut served = 0;
    for c in calls {
        let r = c.await??;
        match r.fault {
            Some(trellis_messages::invocation::FaultKind::Busy) => {
                assert!(r.error.as_deref().is_some_and(|e| e.contains("--max-queued-calls")), "{r:?}");
                busy += 1;
            }
            None => served += 1,
            other => panic!("unexpected {other:?}: {r:?}"),
        }
    }
    assert!(served <= 5 + 1, "one running and four waiting at most at a time, served {served}");
    assert_eq!(busy + served, 40);
    // Other components are served meanwhile and after.
    let r = client.call("echo", "trellis:echo/echo.echo", vec!["\"still here\"".into()]).await?;
    assert_eq!(r.results, Some(vec!["\"still here\"".to_string()]));
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn component_files_load_only_where_the_operator_allows() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    // Off: every file reference is refused, existing or not, with the same words.
    let mut config = lattice.host_config();
    config.wasm.file_load = trellis_host::wasm::sources::load::FileLoad::default();
    let host = lattice.start_host(config).await?;
    let existing = lattice.scale(host.id(), "a", guests::ECHO, 1).await?.expect_err("refused");
    let missing = lattice.scale(host.id(), "b", "/etc/nonexistent.wasm", 1).await?.expect_err("refused");
    assert!(existing.contains("does not load components from files"), "{existing}");
    assert_eq!(
        existing.replace(guests::ECHO, "P").replace("`a`", ""),
        missing.replace("/etc/nonexistent.wasm", "P").replace("`b`", ""),
        "the refusal does not reveal whether the file exists"
    );
    host.shutdown(None).await?;

    // Limited to a directory: inside loads, outside (or escaping it) does not.
    let dir = tempfile::tempdir()?;
    let inside = dir.path().join("echo.wasm");
    std::fs::copy(guests::ECHO, &inside)?;
    let mut config = lattice.host_config();
    config.wasm.file_load = trellis_host::wasm::sources::load::FileLoad { allowed: true, dirs: vec![dir.path().to_path_buf()] };
    let host = lattice.start_host(config).await?;
    lattice.scale(host.id(), "inside", &format!("file://{}", inside.display()), 1).await?.map_err(anyhow::Error::msg)?;
    for outside in [guests::ECHO.to_string(), format!("{}/../../etc/passwd", dir.path().display()), "/etc/passwd".into()] {
        let err = lattice.scale(host.id(), "outside", &outside, 1).await?.expect_err("refused");
        assert!(err.contains("only files under"), "{outside}: {err}");
    }
    host.shutdown(None).await?;
    Ok(())
}
