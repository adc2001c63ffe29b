//! HTTP on reused instances: a WASI 0.3 `wasi:http/handler` component serves many requests
//! at once per instance, within `max_instances` and the queue bound; a WASI 0.2 component is
//! reused only when its scale declares it reusable; a trap ends its instance (the next request
//! gets a fresh one); a request past the deadline ends without stalling the others. The guests
//! say in `x-served-by-instance` how many requests their instance has served.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use trellis_messages::component::ScaleComponentCommand;
use trellis_messages::link::Link;
use trellis_messages::provider::StartProviderCommand;
use trellis_messages::Client;
use trellis_tests::{eventually, free_port, guests, init_tracing, TestLattice};

/// A response: status, the `x-served-by-instance` header (0 when absent), body.
#[derive(Debug)]
struct Answer {
    status: u16,
    served: u64,
    body: String,
}

/// One GET over a fresh connection.
async fn get(port: u16, path: &str) -> anyhow::Result<Answer> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let served = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("x-served-by-instance")).map(|(_, v)| v.trim().to_string()))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let body = trellis_tests::http::dechunk(body);
    Ok(Answer { status, served, body })
}

async fn start_http(client: &Client, host: &str) -> anyhow::Result<()> {
    let command = StartProviderCommand { provider_id: "http".into(), provider_ref: "wasmcloud+builtin://http-server".into(), host_id: host.into(), ..Default::default() };
    client.start_provider(host, &command).await?;
    Ok(())
}

/// Serves `component` on `port` through provider `http`, and waits until it answers 200.
async fn serve(client: &Client, component: &str, port: u16) -> anyhow::Result<()> {
    let name = format!("{component}-http");
    client.put_config(&name, &HashMap::from([("address".to_string(), format!("127.0.0.1:{port}"))])).await?;
    client.put_link(&Link::new("http", component, component, "wasi", "http", &["incoming-handler"]).with_source_config(&[&name])).await?;
    let ok = eventually(Duration::from_secs(10), || async move { get(port, "/").await.ok().filter(|a| a.status == 200) }).await;
    anyhow::ensure!(ok.is_some(), "{component} is not served on {port}");
    Ok(())
}

/// Scales `id` with `annotations`; the outcome event.
async fn scale(lattice: &TestLattice, host: &str, id: &str, reference: &str, max: u32, annotations: &[(&str, &str)]) -> anyhow::Result<Result<(), String>> {
    let events = lattice.watch_scale_events(id).await?;
    let command = ScaleComponentCommand {
        component_ref: reference.into(),
        component_id: id.into(),
        max_instances: max,
        host_id: host.into(),
        annotations: Some(annotations.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect::<BTreeMap<_, _>>()),
        ..ScaleComponentCommand::default()
    };
    let ack = lattice.client().await?.scale_component(host, &command).await;
    if let Err(e) = ack {
        return Ok(Err(e.to_string()));
    }
    Ok(events.await??.map(|_| ()))
}

#[tokio::test]
async fn a_wasi_0_3_component_serves_many_requests_per_instance_and_a_trap_ends_only_its_instance() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let client = lattice.client().await?;
    start_http(&client, host.id()).await?;
    scale(&lattice, host.id(), "hello3", guests::HTTP_HELLO_P3, 1, &[]).await?.map_err(anyhow::Error::msg)?;
    let port = free_port();
    serve(&client, "hello3", port).await?;

    // One instance serves request after request: its count goes up.
    let mut last = 0;
    for _ in 0..5 {
        let a = get(port, "/").await?;
        assert_eq!((a.status, a.body.as_str()), (200, "Hello from Trellis\n"));
        assert!(a.served > last, "the same instance serves the next request: {} after {last}", a.served);
        last = a.served;
    }

    // Many at once on one instance (`max_instances` 1): a request waiting on the clock does not
    // hold the others back.
    let began = Instant::now();
    let sleeper = tokio::spawn(async move { get(port, "/sleep").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    for a in futures::future::join_all((0..20).map(|_| get(port, "/"))).await {
        assert_eq!(a?.status, 200);
    }
    assert!(!sleeper.is_finished(), "the others were answered while one slept: {:?}", began.elapsed());
    let slept = sleeper.await??;
    assert_eq!(slept.status, 200, "{slept:?}");
    assert!(began.elapsed() >= Duration::from_secs(1));

    // No sockets: WASI 0.3's `listen` (which binds an unbound socket itself) is refused.
    let listen = get(port, "/listen").await?;
    assert_eq!(listen.status, 200);
    assert!(listen.body.contains("failed") && listen.body.contains("AccessDenied"), "{listen:?}");

    // A trap fails its request, and the next request gets a fresh instance.
    let trapped = get(port, "/trap").await?;
    assert_eq!(trapped.status, 500, "{trapped:?}");
    let after = get(port, "/").await?;
    assert_eq!((after.status, after.served), (200, 1), "a fresh instance after the trap: {after:?}");
    assert!(client.inventory(host.id()).await.is_ok(), "the host is unharmed");
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn reuse_follows_its_limits_and_a_0_2_component_only_when_declared_reusable() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let client = lattice.client().await?;
    start_http(&client, host.id()).await?;

    // WASI 0.3, at most 3 requests per instance: the count starts again after 3.
    scale(&lattice, host.id(), "hello3", guests::HTTP_HELLO_P3, 1, &[("trellis.dev/reuse-max-requests", "3")]).await?.map_err(anyhow::Error::msg)?;
    let port3 = free_port();
    serve(&client, "hello3", port3).await?;
    let mut counts = Vec::new();
    for _ in 0..7 {
        counts.push(get(port3, "/").await?.served);
    }
    assert!(counts.iter().all(|c| (1..=3).contains(c)), "no instance serves more than 3: {counts:?}");
    assert!(counts.windows(2).any(|w| w[1] < w[0]), "a fresh instance took over: {counts:?}");
    // An instance idle for its idle time (1 s by default) is dropped.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(get(port3, "/").await?.served, 1, "an idle instance is not kept past its idle time");

    // At most 1 s of new requests per instance, however busy it is.
    let aged = [("trellis.dev/reuse-max-seconds", "1"), ("trellis.dev/reuse-idle-seconds", "10"), ("trellis.dev/reuse-max-requests", "100000")];
    scale(&lattice, host.id(), "aged3", guests::HTTP_HELLO_P3, 1, &aged).await?.map_err(anyhow::Error::msg)?;
    let port_a = free_port();
    serve(&client, "aged3", port_a).await?;
    let began = Instant::now();
    let mut counts = Vec::new();
    while began.elapsed() < Duration::from_millis(2500) {
        counts.push(get(port_a, "/").await?.served);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(counts.windows(2).any(|w| w[1] < w[0]), "a fresh instance took over after 1 s: {counts:?}");
    assert!(counts.iter().all(|c| *c < 60), "no instance took requests for much more than 1 s: {counts:?}");

    // WASI 0.2 by default: a fresh instance per request, nothing kept.
    scale(&lattice, host.id(), "hello2", guests::HTTP_HELLO, 2, &[]).await?.map_err(anyhow::Error::msg)?;
    let port2 = free_port();
    serve(&client, "hello2", port2).await?;
    for _ in 0..5 {
        let a = get(port2, "/").await?;
        assert_eq!((a.status, a.served), (200, 1), "a 0.2 component not declared reusable always gets a fresh instance");
    }

    // Declared reusable: its instance keeps its state between requests.
    scale(&lattice, host.id(), "reused2", guests::HTTP_HELLO, 1, &[("trellis.dev/reuse", "true")]).await?.map_err(anyhow::Error::msg)?;
    let port_r = free_port();
    serve(&client, "reused2", port_r).await?;
    let mut counts = Vec::new();
    for _ in 0..5 {
        let a = get(port_r, "/").await?;
        assert_eq!(a.body, "Hello from Trellis\n");
        counts.push(a.served);
    }
    assert!(counts.windows(2).all(|w| w[1] > w[0]), "the reused instance kept its count: {counts:?}");

    // Annotations out of bounds refuse the scale, naming the bound.
    let refused = scale(&lattice, host.id(), "bad", guests::HTTP_HELLO_P3, 1, &[("trellis.dev/max-concurrency", "0")]).await?;
    let e = refused.expect_err("refused");
    assert!(e.contains("trellis.dev/max-concurrency") && e.contains("1 to 1000"), "{e}");
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn a_flood_is_answered_or_refused_busy_and_a_request_past_the_deadline_stalls_no_other() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.wasm.max_execution_time = Duration::from_millis(1500);
    config.wasm.max_queue_wait = Duration::from_secs(2);
    config.wasm.max_queued_calls = 100;
    let host = lattice.start_host(config).await?;
    let client = lattice.client().await?;
    start_http(&client, host.id()).await?;
    scale(&lattice, host.id(), "hello3", guests::HTTP_HELLO_P3, 2, &[("trellis.dev/max-concurrency", "100")]).await?.map_err(anyhow::Error::msg)?;
    let port = free_port();
    serve(&client, "hello3", port).await?;

    // 1,000 at once, each sleeping 1 s on its instance: 2 instances × 100 at once are served,
    // 100 more may wait (and be served next), and the rest are refused busy at once. Nothing
    // else, nothing lost.
    let answers = futures::future::join_all((0..1000).map(|_| get(port, "/sleep"))).await;
    let mut by_status = BTreeMap::new();
    for a in answers {
        *by_status.entry(a?.status).or_insert(0) += 1;
    }
    let (ok, busy) = (by_status.get(&200).copied().unwrap_or(0), by_status.get(&503).copied().unwrap_or(0));
    assert_eq!(ok + busy, 1000, "only 200 or 503: {by_status:?}");
    assert!(ok >= 200, "two instances of 100 at once were used: {by_status:?}");
    // At most 200 run and 100 wait at any moment; requests still connecting when the first
    // second's are done may be admitted after them, so a few more than 300 can be served.
    assert!(busy >= 500, "the queue is bounded: most of a burst five times its size is refused: {by_status:?}");

    // A guest that never yields runs past the 1.5 s deadline: it gets 504 (its instance is
    // dropped), and requests meanwhile are served by the other instance.
    let began = Instant::now();
    let spinner = tokio::spawn(async move { get(port, "/spin").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..5 {
        let a = get(port, "/").await?;
        assert_eq!(a.status, 200, "{a:?}");
    }
    assert!(!spinner.is_finished(), "served while the other instance spun: {:?}", began.elapsed());
    let spun = spinner.await??;
    assert_eq!(spun.status, 504, "{spun:?}");
    assert_eq!(get(port, "/").await?.status, 200, "served after the deadline");
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn a_wasi_0_3_component_counts_in_key_value_through_its_link() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let client = lattice.client().await?;
    start_http(&client, host.id()).await?;
    let kv = StartProviderCommand { provider_id: "kv".into(), provider_ref: "trellis://keyvalue".into(), host_id: host.id().into(), ..Default::default() };
    client.start_provider(host.id(), &kv).await?;
    scale(&lattice, host.id(), "counter3", guests::KV_COUNTER_P3, 2, &[]).await?.map_err(anyhow::Error::msg)?;
    client.put_config("kv3", &HashMap::from([("bucket".to_string(), format!("c3_{}", lattice.name.replace('-', "_")))])).await?;
    client.put_link(&Link::new("counter3", "kv", "default", "wasi", "keyvalue", &["store", "atomics"]).with_target_config(&["kv3"])).await?;
    let port = free_port();
    serve(&client, "counter3", port).await?;
    // `serve` counted `default` once; a key of its own counts from 1.
    let first = eventually(Duration::from_secs(10), || async move { get(port, "/visits").await.ok().filter(|a| a.status == 200) }).await.expect("counted");
    assert_eq!(first.body, "Count: 1\n");
    assert_eq!(get(port, "/visits").await?.body, "Count: 2\n");
    let answers = futures::future::join_all((0..20).map(|_| get(port, "/visits"))).await;
    assert!(answers.iter().all(|a| a.as_ref().is_ok_and(|a| a.status == 200)), "{answers:?}");
    assert_eq!(get(port, "/visits").await?.body, "Count: 23\n", "every concurrent increment landed");
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn a_guest_still_busy_after_it_answered_is_stopped_and_its_instance_replaced() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.wasm.max_execution_time = Duration::from_secs(1);
    config.wasm.max_queue_wait = Duration::from_secs(5);
    let host = lattice.start_host(config).await?;
    let client = lattice.client().await?;
    start_http(&client, host.id()).await?;
    // Idle instances kept 30 s: only the deadline can end this one sooner.
    scale(&lattice, host.id(), "after3", guests::HTTP_HELLO_P3, 1, &[("trellis.dev/reuse-idle-seconds", "30")]).await?.map_err(anyhow::Error::msg)?;
    let port = free_port();
    serve(&client, "after3", port).await?;
    // The guest answers, then (0.3 s later, its request long over) spins in a task of its own
    // on its only instance. No request runs past a deadline, but the instance's wasm does: it
    // is stopped one deadline after the latest request's, and the next request, waiting for an
    // instance meanwhile, gets a fresh one.
    let began = Instant::now();
    let a = get(port, "/spin-after").await?;
    assert_eq!(a.status, 200, "{a:?}");
    tokio::time::sleep(Duration::from_millis(600)).await; // it spins from 0.3 s after answering
    let next = get(port, "/").await?;
    assert_eq!((next.status, next.served), (200, 1), "a fresh instance after the busy one was stopped: {next:?}");
    assert!(began.elapsed() < Duration::from_secs(5), "within the queue wait: {:?}", began.elapsed());
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn reuse_settings_follow_a_rescale_and_an_update_and_both_check_them() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let client = lattice.client().await?;
    start_http(&client, host.id()).await?;
    // A second reference to the same 0.2 component, to update to.
    let dir = tempfile::tempdir()?;
    let copy = dir.path().join("http-hello-copy.wasm");
    std::fs::copy(guests::HTTP_HELLO, &copy)?;
    let copy = copy.display().to_string();

    // Not declared reusable: a fresh instance per request.
    scale(&lattice, host.id(), "turns", guests::HTTP_HELLO, 1, &[]).await?.map_err(anyhow::Error::msg)?;
    let port = free_port();
    serve(&client, "turns", port).await?;
    for _ in 0..3 {
        assert_eq!(get(port, "/").await?.served, 1, "fresh per request before the rescale");
    }

    // A rescale that declares it reusable prepares it again: its instance then keeps its count.
    scale(&lattice, host.id(), "turns", guests::HTTP_HELLO, 1, &[("trellis.dev/reuse", "true")]).await?.map_err(anyhow::Error::msg)?;
    let reused = eventually(Duration::from_secs(10), || async move { get(port, "/").await.ok().filter(|a| a.served >= 2) }).await;
    assert!(reused.is_some(), "the rescale's reuse annotation took effect");

    // An update whose annotations are out of bounds is refused, naming the bound; the
    // component keeps running as it was.
    let update = |annotations: &[(&str, &str)]| trellis_messages::component::UpdateComponentCommand {
        component_id: "turns".into(),
        annotations: Some(annotations.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()),
        host_id: host.id().into(),
        new_component_ref: copy.clone(),
    };
    let refused = client.update_component(host.id(), &update(&[("trellis.dev/reuse", "true"), ("trellis.dev/reuse-max-requests", "0")])).await;
    let e = refused.expect_err("an update out of bounds is refused").to_string();
    assert!(e.contains("trellis.dev/reuse-max-requests") && e.contains("1 to 1000000"), "{e}");
    assert_eq!(get(port, "/").await?.status, 200, "still serving after the refused update");

    // An update with other reuse settings runs the new code with them: at most 2 requests
    // per instance.
    client.update_component(host.id(), &update(&[("trellis.dev/reuse", "true"), ("trellis.dev/reuse-max-requests", "2")])).await?;
    let updated = eventually(Duration::from_secs(10), || async {
        let inventory = client.inventory(host.id()).await.ok()?;
        inventory.components.iter().any(|c| c.id == "turns" && c.image_ref == copy).then_some(())
    })
    .await;
    assert!(updated.is_some(), "the update ran");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut counts = Vec::new();
    for _ in 0..6 {
        counts.push(get(port, "/").await?.served);
    }
    assert!(counts.iter().all(|c| (1..=2).contains(c)), "no instance serves more than 2 after the update: {counts:?}");
    assert!(counts.contains(&2), "instances are still reused after the update: {counts:?}");
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn a_component_that_cannot_be_instantiated_is_answered_500_with_the_reason_at_once() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let client = lattice.client().await?;
    start_http(&client, host.id()).await?;
    // One page of memory: less than the guest starts with, so no instance can be made.
    let events = lattice.watch_scale_events("small3").await?;
    let command = ScaleComponentCommand {
        component_ref: guests::HTTP_HELLO_P3.into(),
        component_id: "small3".into(),
        max_instances: 2,
        host_id: host.id().into(),
        component_limits: Some(HashMap::from([(trellis_host::wasm::limits::MAX_MEMORY_LIMIT.to_string(), "65536".to_string())])),
        ..ScaleComponentCommand::default()
    };
    client.scale_component(host.id(), &command).await?;
    events.await??.map_err(anyhow::Error::msg)?;
    let name = "small3-http";
    let port = free_port();
    client.put_config(name, &HashMap::from([("address".to_string(), format!("127.0.0.1:{port}"))])).await?;
    client.put_link(&Link::new("http", "small3", "small3", "wasi", "http", &["incoming-handler"]).with_source_config(&[name])).await?;
    let first = eventually(Duration::from_secs(10), || async move { get(port, "/").await.ok().filter(|a| a.status != 0 && a.status != 404) }).await.expect("answered");
    assert_eq!(first.status, 500, "{first:?}");
    assert!(first.body.contains("memory") || first.body.contains("instantiate"), "the reason is given: {first:?}");
    // Each request is answered at once, not after retries or the queue wait.
    let began = Instant::now();
    for a in futures::future::join_all((0..20).map(|_| get(port, "/"))).await {
        assert_eq!(a?.status, 500);
    }
    assert!(began.elapsed() < Duration::from_secs(2), "answered at once: {:?}", began.elapsed());
    assert!(client.inventory(host.id()).await.is_ok(), "the host is unharmed");
    host.shutdown(None).await?;
    Ok(())
}
