//! wasmCloud's http-keyvalue-watcher example: `wasi:keyvalue/watcher` called on the changes its
//! link watches, from the built-in key-value provider (one host and across hosts) and from an
//! external provider.

use std::collections::HashMap;
use std::time::Duration;

use trellis_messages::link::Link;
use trellis_messages::provider::StartProviderCommand;
use trellis_tests::apps::{nats039, wadm, wait_status};
use trellis_tests::{eventually, init_tracing, TestLattice};
use wadm_types::api::StatusType;

use super::{manifest, mapping_images, push_example};

/// A server on `127.0.0.1:3001` (where the watcher example sends its alerts) that records each
/// request's target (`/alert?key=value`).
/// The tests that listen there take turns (the guard).
async fn alert_server() -> anyhow::Result<(Alerts, tokio::task::JoinHandle<()>, tokio::sync::MutexGuard<'static, ()>)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    static PORT_3001: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let guard = PORT_3001.lock().await;
    // The previous test's listener lives in its task until that test's runtime is gone, a
    // moment after it released the guard: wait for the port a few seconds.
    let mut tries = 0;
    let listener = loop {
        match tokio::net::TcpListener::bind("127.0.0.1:3001").await {
            Ok(listener) => break listener,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 50 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => anyhow::bail!("the watcher example alerts localhost:3001, which this test must listen on: {e}"),
        }
    };
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 << 10 {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_string();
                let target = line.split(' ').nth(1).unwrap_or_default().to_string();
                record.lock().expect("alerts").push(target);
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
            });
        }
    });
    Ok((seen, task, guard))
}

/// What the alert server received, in order.
type Alerts = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// How many times `target` was requested.
fn count(alerts: &Alerts, target: &str) -> usize {
    alerts.lock().expect("alerts").iter().filter(|t| *t == target).count()
}

/// http-keyvalue-watcher: the key-value provider (wasmCloud's Redis provider in the manifest,
/// mapped to the built-in) calls the component's `wasi:keyvalue/watcher` exports when a key
/// its link watches changes, as its README configures it (`watch: SET@…,DEL@…` in the link's
/// config), and the component alerts `localhost:3001` through its HTTP client link (whose
/// config here allows loopback, which Trellis's HTTP client refuses by default). Each change
/// reaches it once; a key not watched, none.
#[tokio::test]
async fn http_keyvalue_watcher_is_called_on_watched_changes_from_its_own_manifest() -> anyhow::Result<()> {
    init_tracing();
    let (alerts, server, _turn) = alert_server().await?;
    let lattice = TestLattice::new().await?;
    let mut config = mapping_images(&lattice, &["ghcr.io/wasmcloud/keyvalue-redis=keyvalue"])?;
    config.kv_default_bucket = Some("watched".into());
    let host = lattice.start_host(config).await?;
    let watcher = push_example(&lattice, "http-keyvalue-watcher").await?;
    let yaml = manifest(
        "http-keyvalue-watcher",
        &[
            ("file://./build/http_keyvalue_watch_s.wasm", &watcher),
            ("url: redis://127.0.0.1:6379", "url: redis://127.0.0.1:6379\n                  watch: SET@temperature,DEL@temperature"),
            (
                "interfaces: [outgoing-handler]",
                "interfaces: [outgoing-handler]\n            target_config:\n              - name: alerts-on-loopback\n                properties:\n                  allow: 127.0.0.1,::1",
            ),
        ],
    )?;
    let client = wadm(&lattice, nats039(&lattice).await?);
    client.put_and_deploy_manifest(yaml.as_bytes()).await?;
    wait_status(&client, "rust-keyvalue-watcher", StatusType::Deployed, Duration::from_secs(30)).await?;
    let kv = async_nats::jetstream::new(lattice.nats().await?).get_key_value("watched").await;
    let kv = match kv {
        Ok(kv) => kv,
        Err(_) => {
            // The watch opens (creates) the bucket; wait for it.
            let js = async_nats::jetstream::new(lattice.nats().await?);
            let opened = eventually(Duration::from_secs(20), || {
                let js = js.clone();
                async move { js.get_key_value("watched").await.ok() }
            })
            .await;
            opened.ok_or_else(|| anyhow::anyhow!("the watched bucket was never opened"))?
        }
    };
    let count = |target: &str| count(&alerts, target);
    // The watch starts at new changes; put until the first alert arrives (the consumer may
    // be made just after a put).
    let first = eventually(Duration::from_secs(20), || {
        let kv = kv.clone();
        async move {
            kv.put("temperature", "21".into()).await.ok()?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            (count("/alert?temperature=21") > 0).then_some(())
        }
    })
    .await;
    anyhow::ensure!(first.is_some(), "no alert for a watched set: {:?}", alerts.lock().expect("alerts"));
    kv.put("humidity", "80".into()).await?;
    kv.put("temperature", "35".into()).await?;
    let set = eventually(Duration::from_secs(10), || async { (count("/alert?temperature=35") > 0).then_some(()) }).await;
    anyhow::ensure!(set.is_some(), "no alert for the second set: {:?}", alerts.lock().expect("alerts"));
    kv.delete("temperature").await?;
    let deleted = eventually(Duration::from_secs(10), || async { (count("/alert?temperature=nil") > 0).then_some(()) }).await;
    anyhow::ensure!(deleted.is_some(), "no alert for a watched delete: {:?}", alerts.lock().expect("alerts"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(count("/alert?temperature=35"), 1, "each change once: {:?}", alerts.lock().expect("alerts"));
    assert_eq!(count("/alert?temperature=nil"), 1, "{:?}", alerts.lock().expect("alerts"));
    assert!(!alerts.lock().expect("alerts").iter().any(|t| t.contains("humidity")), "a key not watched: no call");

    // A change forwarded on the component's call subject is checked against the link before
    // the component sees it: forged ones are refused, naming why.
    use trellis_messages::invocation::{
        FaultKind, InvocationResponse, KIND_HEADER, LINK_NAME_HEADER, SOURCE_ID_HEADER, WATCH_BUCKET_HEADER, WATCH_KEY_HEADER, WATCH_KIND, WATCH_OP_HEADER,
    };
    let nats = lattice.nats().await?;
    let forward_from = |bucket: &str, provider: &str, key: &str, op: &str, value: &'static str| {
        let (nats, to) = (nats.clone(), format!("trellis.rpc.{}.rust_keyvalue_watcher-kvwatcher", lattice.name));
        let mut headers = async_nats::HeaderMap::new();
        let fields =
            [(KIND_HEADER, WATCH_KIND), (SOURCE_ID_HEADER, provider), (LINK_NAME_HEADER, "default"), (WATCH_BUCKET_HEADER, bucket), (WATCH_KEY_HEADER, key), (WATCH_OP_HEADER, op)];
        for (name, value) in fields {
            if !value.is_empty() {
                headers.insert(name, value);
            }
        }
        async move {
            let reply = nats.send_request(to, async_nats::Request::new().headers(headers).payload(value.into())).await?;
            anyhow::Ok(serde_json::from_slice::<InvocationResponse>(&reply.payload)?)
        }
    };
    let forward = |provider: &str, key: &str, op: &str, value: &'static str| forward_from("watched", provider, key, op, value);
    let provider = "rust_keyvalue_watcher-kvredis";
    let intruder = forward("intruder", "temperature", "set", "forged").await?;
    assert_eq!(intruder.fault, Some(FaultKind::Denied), "no such link: {intruder:?}");
    let unwatched = forward(provider, "humidity", "set", "forged").await?;
    assert_eq!(unwatched.fault, Some(FaultKind::Denied), "a key the link does not watch: {unwatched:?}");
    let no_key = forward(provider, "", "set", "forged").await?;
    assert_eq!(no_key.fault, Some(FaultKind::BadArguments), "{no_key:?}");
    let odd = forward(provider, "temperature", "rename", "forged").await?;
    assert_eq!(odd.fault, Some(FaultKind::BadArguments), "{odd:?}");
    let elsewhere = forward_from("other", provider, "temperature", "set", "forged").await?;
    assert_eq!(elsewhere.fault, Some(FaultKind::Denied), "a bucket the link does not watch here: {elsewhere:?}");
    let no_bucket = forward_from("", provider, "temperature", "set", "forged").await?;
    assert_eq!(no_bucket.fault, Some(FaultKind::BadArguments), "{no_bucket:?}");
    assert!(!alerts.lock().expect("alerts").iter().any(|t| t.contains("forged")), "refused before the component ran");
    // As the provider's host forwards one: delivered.
    let genuine = forward(provider, "temperature", "set", "forwarded").await?;
    assert_eq!(genuine.fault, None, "{genuine:?}");
    assert_eq!(count("/alert?temperature=forwarded"), 1);
    host.shutdown(None).await?;
    server.abort();
    Ok(())
}

/// The key-value provider on one host, the watching component on another: each change is
/// forwarded to the component's host, once, and a change made while the component runs
/// nowhere waits for it (redelivered, up to five times); with the provider on both hosts,
/// still once.
#[tokio::test]
async fn key_value_changes_reach_a_watcher_on_another_host_once() -> anyhow::Result<()> {
    init_tracing();
    let (alerts, server, _turn) = alert_server().await?;
    let lattice = TestLattice::new().await?;
    let providers = lattice.start_host(lattice.machine_config()).await?;
    let components = lattice.start_host(lattice.machine_config()).await?;
    let ctl = lattice.client().await?.with_timeout(Duration::from_secs(10));
    let watcher = push_example(&lattice, "http-keyvalue-watcher").await?;
    lattice.scale(components.id(), "watcher", &watcher, 1).await?.map_err(anyhow::Error::msg)?;
    for (id, reference) in [("kv", "trellis://keyvalue"), ("http-client", "trellis://http-client")] {
        let cmd = StartProviderCommand { provider_id: id.into(), provider_ref: reference.into(), ..Default::default() };
        ctl.start_provider(providers.id(), &cmd).await?;
    }
    ctl.put_config("loopback", &HashMap::from([("allow".to_string(), "127.0.0.1,::1".to_string())])).await?;
    ctl.put_link(&Link::new("watcher", "http-client", "default", "wasi", "http", &["outgoing-handler"]).with_target_config(&["loopback"])).await?;
    ctl.put_config("watch-door", &HashMap::from([("bucket".to_string(), "doors".to_string()), ("watch".to_string(), "SET@door".to_string())])).await?;
    ctl.put_link(&Link::new("kv", "watcher", "default", "wasi", "keyvalue", &["watcher"]).with_source_config(&["watch-door"])).await?;
    let js = async_nats::jetstream::new(lattice.nats().await?);
    let kv = eventually(Duration::from_secs(20), || {
        let js = js.clone();
        async move { js.get_key_value("doors").await.ok() }
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("the watched bucket was never opened"))?;
    let first = eventually(Duration::from_secs(20), || {
        let kv = kv.clone();
        let alerts = alerts.clone();
        async move {
            kv.put("door", "open".into()).await.ok()?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            (count(&alerts, "/alert?door=open") > 0).then_some(())
        }
    })
    .await;
    anyhow::ensure!(first.is_some(), "no alert from the other host: {:?}", alerts.lock().expect("alerts"));
    kv.put("door", "closed".into()).await?;
    let closed = eventually(Duration::from_secs(10), || async { (count(&alerts, "/alert?door=closed") > 0).then_some(()) }).await;
    anyhow::ensure!(closed.is_some(), "{:?}", alerts.lock().expect("alerts"));
    // Not running anywhere: the change waits, and arrives once the component is back.
    ctl.scale_component(components.id(), &trellis_messages::component::ScaleComponentCommand {
        component_ref: watcher.clone(),
        component_id: "watcher".into(),
        max_instances: 0,
        host_id: components.id().into(),
        ..Default::default()
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    kv.put("door", "ajar".into()).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(&alerts, "/alert?door=ajar"), 0, "no component runs");
    lattice.scale(components.id(), "watcher", &watcher, 1).await?.map_err(anyhow::Error::msg)?;
    let ajar = eventually(Duration::from_secs(15), || async { (count(&alerts, "/alert?door=ajar") > 0).then_some(()) }).await;
    anyhow::ensure!(ajar.is_some(), "the waiting change was not delivered: {:?}", alerts.lock().expect("alerts"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(count(&alerts, "/alert?door=closed"), 1, "once: {:?}", alerts.lock().expect("alerts"));
    assert_eq!(count(&alerts, "/alert?door=ajar"), 1, "once: {:?}", alerts.lock().expect("alerts"));
    // The provider on both hosts: they share the link's consumer, and each change still
    // arrives once.
    let cmd = StartProviderCommand { provider_id: "kv".into(), provider_ref: "trellis://keyvalue".into(), ..Default::default() };
    ctl.start_provider(components.id(), &cmd).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..6 {
        kv.put("door", format!("state{i}").into()).await?;
    }
    // The bucket keeps one value per key (history 1, as key-value buckets are made): a value
    // superseded before it was delivered is gone from the bucket and never delivered; the
    // latest always is, and none twice. A call that fails for a passing reason (a loaded
    // machine) is retried after 1, 2, 4 … s.
    let last = eventually(Duration::from_secs(60), || async { (count(&alerts, "/alert?door=state5") > 0).then_some(()) }).await;
    anyhow::ensure!(last.is_some(), "the latest value was not delivered: {:?}", alerts.lock().expect("alerts"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 0..6 {
        assert!(count(&alerts, &format!("/alert?door=state{i}")) <= 1, "at most once with two providers: {:?}", alerts.lock().expect("alerts"));
    }
    components.shutdown(None).await?;
    providers.shutdown(None).await?;
    server.abort();
    Ok(())
}

/// The watcher example called by an external key-value provider (the SDK-built test provider,
/// as wasmCloud's `keyvalue-redis` calls it on a watched change): `wrpc:keyvalue/watcher`'s
/// `on-set` / `on-delete` reach the component's `wasi:keyvalue/watcher` with a bucket of that
/// provider; without the provider's watcher link the call is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_keyvalue_watcher_is_called_by_an_external_key_value_provider() -> anyhow::Result<()> {
    init_tracing();
    let (alerts, server, _turn) = alert_server().await?;
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let client = lattice.client().await?;
    let watcher = push_example(&lattice, "http-keyvalue-watcher").await?;
    lattice.scale(host.id(), "watcher", &watcher, 2).await?.map_err(anyhow::Error::msg)?;
    lattice.scale(host.id(), "pinger", trellis_tests::guests::PINGER, 2).await?.map_err(anyhow::Error::msg)?;
    let provider = trellis_tests::test_provider()?;
    let ack = lattice.ctl().await?.start_provider(host.id(), &provider.display().to_string(), "tp", None, vec![]).await.map_err(anyhow::Error::msg)?;
    anyhow::ensure!(ack.succeeded(), "{}", ack.message());
    let start = |id: &str, reference: &str| StartProviderCommand { provider_id: id.into(), provider_ref: reference.into(), host_id: host.id().into(), ..Default::default() };
    client.start_provider(host.id(), &start("httpc", "wasmcloud+builtin://http-client")).await?;
    client.put_config("alerts-on-loopback", &HashMap::from([("allow".to_string(), "127.0.0.1,::1".to_string())])).await?;
    client.put_link(&Link::new("watcher", "tp", "default", "wasi", "keyvalue", &["store"])).await?;
    client.put_link(&Link::new("tp", "watcher", "default", "wasi", "keyvalue", &["watcher"])).await?;
    client.put_link(&Link::new("watcher", "httpc", "default", "wasi", "http", &["outgoing-handler"]).with_target_config(&["alerts-on-loopback"])).await?;
    client.put_link(&Link::new("pinger", "tp", "default", "trellis", "echo", &["echo"])).await?;
    // The test provider calls the watcher when the pinger asks it to (`kvwatch:…`).
    let ask = |message: &'static str| {
        let client = client.clone();
        async move {
            let reply = client.call("pinger", "trellis:echo/pinger.ping", vec![format!("{message:?}")]).await?;
            anyhow::Ok(reply.results.unwrap_or_default().join(""))
        }
    };
    let set = eventually(Duration::from_secs(20), || async { ask("kvwatch:watcher:sensors:temperature:30").await.ok().filter(|r| r == "\"ok\"") }).await;
    anyhow::ensure!(set.is_some(), "the provider's on-set did not reach the component: {:?}", ask("kvwatch:watcher:sensors:temperature:30").await);
    let alerted = eventually(Duration::from_secs(10), || async { (count(&alerts, "/alert?temperature=30") > 0).then_some(()) }).await;
    anyhow::ensure!(alerted.is_some(), "no alert for the provider's set: {:?}", alerts.lock().expect("alerts"));
    assert_eq!(ask("kvwatch:watcher:sensors:temperature:-").await?, "\"ok\"");
    let deleted = eventually(Duration::from_secs(10), || async { (count(&alerts, "/alert?temperature=nil") > 0).then_some(()) }).await;
    anyhow::ensure!(deleted.is_some(), "no alert for the provider's delete: {:?}", alerts.lock().expect("alerts"));
    // Without the provider's watcher link, its calls are refused and nothing is alerted (the
    // functions return nothing, so wRPC cannot tell the provider: it sees the call end).
    client.delete_link("tp", "default", "wasi", "keyvalue").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), ask("kvwatch:watcher:sensors:temperature:99")).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(count(&alerts, "/alert?temperature=99"), 0, "{:?}", alerts.lock().expect("alerts"));
    server.abort();
    host.shutdown(None).await?;
    Ok(())
}
