//! Calls between components and an external provider built with wasmCloud's provider SDK, over
//! wRPC, both ways and across hosts; and what a client that speaks wRPC badly gets.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use trellis_messages::link::Link;
use trellis_tests::providers::{records, settings, wait_record};
use trellis_tests::{eventually, init_tracing, test_provider, TestLattice};

fn echo_link(source: &str, target: &str) -> Link {
    Link::new(source, target, "default", "trellis", "echo", &["echo"])
}

/// Two hosts — one for the SDK test provider, one for components — with provider settings for
/// tests, and a client. `tweak` adjusts each host's config (`true`: the component host).
struct TwoHosts {
    lattice: TestLattice,
    provider_host: trellis_host::HostHandle,
    component_host: trellis_host::HostHandle,
    client: trellis_messages::Client,
    /// Where the provider records what it receives.
    record: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn two_hosts(tweak: impl Fn(bool, &mut trellis_host::HostConfig)) -> anyhow::Result<TwoHosts> {
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.providers = settings();
    let mut provider_config = config.clone();
    tweak(false, &mut provider_config);
    tweak(true, &mut config);
    let provider_host = lattice.start_host(provider_config).await?;
    let component_host = lattice.start_host(config).await?;
    let client = lattice.client().await?;
    let dir = tempfile::tempdir()?;
    let record = dir.path().join("record.jsonl");
    client.put_config("tp-settings", &[("record".to_string(), record.display().to_string())].into()).await?;
    Ok(TwoHosts { lattice, provider_host, component_host, client, record, _dir: dir })
}

impl TwoHosts {
    /// Starts the test provider as `tp` on the provider host and waits until it has started.
    async fn start_provider(&self) -> anyhow::Result<()> {
        let provider = test_provider()?;
        let ack = self
            .lattice
            .ctl()
            .await?
            .start_provider(self.provider_host.id(), &provider.display().to_string(), "tp", None, vec!["tp-settings".into()])
            .await
            .map_err(anyhow::Error::msg)?;
        anyhow::ensure!(ack.succeeded(), "{}", ack.message());
        wait_record(&self.record, "init", |r| r["event"] == "init").await;
        Ok(())
    }

    async fn scale(&self, on_provider_host: bool, id: &str, reference: &str, max: u32) -> anyhow::Result<()> {
        let host = if on_provider_host { &self.provider_host } else { &self.component_host };
        self.lattice.scale(host.id(), id, reference, max).await?.map_err(anyhow::Error::msg)?;
        Ok(())
    }

    async fn shutdown(self) -> anyhow::Result<()> {
        self.component_host.shutdown(None).await?;
        self.provider_host.shutdown(None).await?;
        Ok(())
    }
}

#[tokio::test]
async fn components_and_an_sdk_provider_call_each_other_over_wrpc_across_hosts() -> anyhow::Result<()> {
    init_tracing();
    // The provider runs on one host, the components on another: every call crosses NATS. The
    // components' host lets one call at a time go to a provider; the next waits 500 ms.
    let t = two_hosts(|components, c| {
        if components {
            c.providers.max_calls = 1;
            c.wasm.max_queue_wait = Duration::from_millis(500);
        }
    })
    .await?;
    let (lattice, client, record, component_host) = (&t.lattice, &t.client, &t.record, &t.component_host);
    t.scale(false, "pinger", trellis_tests::guests::PINGER, 4).await?;
    t.scale(false, "echo", trellis_tests::guests::ECHO, 4).await?;
    t.start_provider().await?;
    client.put_link(&echo_link("pinger", "tp")).await?;
    client.put_link(&echo_link("tp", "echo")).await?;

    // Component → provider: pinger's `echo` import is served by the provider.
    const PING: &str = "trellis:echo/pinger.ping";
    let first = eventually(Duration::from_secs(15), || {
        let client = client.clone();
        async move { client.call("pinger", PING, vec![r#""via the provider""#.into()]).await.ok().filter(|r| r.results.is_some()) }
    })
    .await
    .expect("pinger reached the provider");
    assert_eq!(first.results.unwrap(), vec![r#""via the provider""#.to_string()]);
    let call = wait_record(record, "the call", |r| r["event"] == "echo").await;
    assert_eq!(call["caller"], "pinger", "the provider sees who calls: {call}");

    // Provider → component: the provider passes the message on to `echo` over wRPC.
    let reply = client.call("pinger", PING, vec![r#""call:echo:round trip""#.into()]).await?;
    assert_eq!(reply.results, Some(vec![r#""round trip""#.to_string()]), "{reply:?}");
    wait_record(record, "the call to echo", |r| r["event"] == "called" && r["answer"] == "round trip").await;
    for i in 0..20 {
        let reply = client.call("pinger", PING, vec![format!(r#""call:echo:{i}""#)]).await?;
        assert_eq!(reply.results, Some(vec![format!(r#""{i}""#)]), "{reply:?}");
    }

    // A provider's call that fails in the component (a trap) fails at once for the provider,
    // not at its timeout: the results are closed empty.
    let asked = Instant::now();
    let reply = client.call("pinger", PING, vec![r#""recurse:echo:100000000""#.into()]).await?;
    let text = reply.results.clone().unwrap_or_default().join("");
    assert!(text.starts_with("\"err:"), "{reply:?}");
    assert!(asked.elapsed() < Duration::from_millis(1500), "failed at once: {:?}", asked.elapsed());
    let reply = client.call("pinger", PING, vec![r#""recurse:echo:3""#.into()]).await?;
    assert_eq!(reply.results, Some(vec![r#""ok: 3""#.to_string()]), "{reply:?}");

    // As a messaging provider does: the provider delivers a message to msg-echo's
    // `wasmcloud:messaging/handler` over wRPC; the component answers on the reply subject
    // through its consumer link to the built-in messaging provider.
    lattice.scale(component_host.id(), "msg-echo", trellis_tests::guests::MSG_ECHO, 2).await?.map_err(anyhow::Error::msg)?;
    let ack = lattice.ctl().await?.start_provider(component_host.id(), "trellis://messaging", "msg", None, vec![]).await.map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded(), "{}", ack.message());
    client.put_link(&Link::new("msg-echo", "msg", "default", "wasmcloud", "messaging", &["consumer"])).await?;
    client.put_link(&Link::new("tp", "msg-echo", "default", "wasmcloud", "messaging", &["handler"])).await?;
    let nats = lattice.nats().await?;
    let mut replies = nats.subscribe("replies.1").await?;
    nats.flush().await?;
    let handled = eventually(Duration::from_secs(10), || {
        let client = client.clone();
        async move {
            client.call("pinger", PING, vec![r#""msg:msg-echo:orders.new:replies.1:hello""#.into()]).await.ok().and_then(|r| r.results).filter(|r| r[0] == r#""ok""#)
        }
    })
    .await;
    assert!(handled.is_some(), "msg-echo handled the provider's message");
    let reply = tokio::time::timeout(Duration::from_secs(5), replies.next()).await?.expect("a reply");
    assert_eq!(&reply.payload[..], b"echo: hello");
    // The same to a component that exports only `wasmcloud:messaging` 0.3's incoming-handler:
    // the provider's 0.2 `handle-message` reaches it as a 0.3 `message`, and it replies
    // through `request-reply.reply`.
    lattice.scale(component_host.id(), "m3", trellis_tests::guests::MSG3_ECHO, 2).await?.map_err(anyhow::Error::msg)?;
    client.put_link(&Link::new("m3", "msg", "default", "wasmcloud", "messaging", &["producer", "request-reply"])).await?;
    client.put_link(&Link::new("tp", "m3", "m3", "wasmcloud", "messaging", &["handler"])).await?;
    let mut replies3 = nats.subscribe("replies.3").await?;
    nats.flush().await?;
    let handled = eventually(Duration::from_secs(10), || {
        let client = client.clone();
        async move { client.call("pinger", PING, vec![r#""msg:m3:orders.new:replies.3:hello""#.into()]).await.ok().and_then(|r| r.results).filter(|r| r[0] == r#""ok""#) }
    })
    .await;
    assert!(handled.is_some(), "the 0.3 component handled the provider's message");
    let reply = tokio::time::timeout(Duration::from_secs(5), replies3.next()).await?.expect("a reply");
    assert_eq!(&reply.payload[..], b"echo3: hello");

    // A provider that never answers: the call ends at the deadline (2 s here) with a fault.
    let asked = Instant::now();
    let reply = client.clone().with_timeout(Duration::from_secs(15)).call("pinger", "trellis:echo/pinger.ping-spin", vec![]).await?;
    let error = reply.error.clone().unwrap_or_default();
    assert!(error.contains("provider `tp`") || error.contains("deadline"), "{reply:?}");
    assert!(asked.elapsed() < Duration::from_secs(6), "bounded by the deadline: {:?}", asked.elapsed());

    // --max-provider-calls: while one call holds the only slot, the next waits, then is busy.
    let spinning = {
        let client = client.clone().with_timeout(Duration::from_secs(15));
        tokio::spawn(async move { client.call("pinger", "trellis:echo/pinger.ping-spin", vec![]).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let busy = client.call("pinger", PING, vec![r#""x""#.into()]).await?;
    assert!(busy.error.clone().unwrap_or_default().contains("--max-provider-calls"), "{busy:?}");
    spinning.await??;
    let reply = client.call("pinger", PING, vec![r#""free again""#.into()]).await?;
    assert_eq!(reply.results, Some(vec![r#""free again""#.to_string()]), "{reply:?}");

    // Without its link the provider is not reachable.
    client.delete_link("pinger", "default", "trellis", "echo").await?;
    let refused = eventually(Duration::from_secs(10), || {
        let client = client.clone();
        async move { client.call("pinger", PING, vec![r#""x""#.into()]).await.ok().filter(|r| r.error.is_some()) }
    })
    .await
    .expect("refused without the link");
    assert!(refused.error.unwrap().contains("no link"), "names the missing link");
    t.shutdown().await
}

/// The resources of an interface a component imports through a link are the target's: the
/// guest makes, uses, lends and gives up a provider's counters by their handles, which cross
/// the link as the provider's own bytes (as wRPC carries them between wasmCloud hosts and
/// providers). A handle past the host's bound fails the call, and a call with handles to a
/// component (which keeps nothing between calls) fails, saying why; the host serves on.
#[tokio::test]
async fn a_link_carries_the_handles_of_a_providers_resources() -> anyhow::Result<()> {
    init_tracing();
    let t = two_hosts(|_, _| {}).await?;
    let (client, record) = (&t.client, &t.record);
    t.scale(false, "tally", trellis_tests::guests::TALLY, 2).await?;
    t.scale(false, "echo", trellis_tests::guests::ECHO, 1).await?;
    t.start_provider().await?;
    client.put_link(&Link::new("tally", "tp", "default", "trellis", "echo", &["tally"])).await?;
    const RUN: &str = "trellis:echo/tally-user.run";
    let values = |reply: &trellis_messages::invocation::InvocationResponse| reply.results.clone().unwrap_or_default().join("").replace(' ', "");

    // Made at 5, 1 + 2 + 3 added, peeked (borrowed), finished (given up): the provider holds the
    // counter between those calls, by the handle it chose.
    let reply = eventually(Duration::from_secs(15), || {
        let client = client.clone();
        async move { client.call("tally", RUN, vec!["5".into(), "[1, 2, 3]".into()]).await.ok().filter(|r| r.results.is_some()) }
    })
    .await;
    let Some(reply) = reply else { anyhow::bail!("tally never reached the provider: {:?}", client.call("tally", RUN, vec!["5".into(), "[1, 2, 3]".into()]).await) };
    assert_eq!(values(&reply), "[6,8,11,11,11]", "{reply:?}");
    let calls: Vec<serde_json::Value> = records(record).into_iter().filter(|r| r["event"] == "tally").collect();
    let ops: Vec<&str> = calls.iter().filter_map(|r| r["op"].as_str()).collect();
    assert_eq!(ops, ["new", "add", "add", "add", "peek", "finish"], "{calls:?}");
    let handle = &calls[0]["handle"];
    assert!(calls.iter().all(|r| r["handle"] == *handle && r["caller"] == "tally"), "one handle, the provider's, used by the caller: {calls:?}");
    // A second call gets a counter of its own.
    let reply = client.call("tally", RUN, vec!["0".into(), "[7]".into()]).await?;
    assert_eq!(values(&reply), "[7,7,7]", "{reply:?}");
    let second = records(record).into_iter().filter(|r| r["event"] == "tally").nth(6).expect("recorded");
    assert_ne!(second["handle"], *handle, "{second}");

    // A handle goes back only to the provider that issued it: made through one link and passed
    // through another (to a second provider), the call fails before it leaves the host.
    let ack = t.lattice.ctl().await?.start_provider(t.provider_host.id(), &test_provider()?.display().to_string(), "tp2", None, vec!["tp-settings".into()]).await.map_err(anyhow::Error::msg)?;
    anyhow::ensure!(ack.succeeded(), "{}", ack.message());
    client.put_link(&Link::new("tally", "tp2", "other", "trellis", "echo", &["tally"])).await?;
    const PEEK_VIA: &str = "trellis:echo/tally-user.peek-via";
    let same = eventually(Duration::from_secs(15), || {
        let client = client.clone();
        async move { client.call("tally", PEEK_VIA, vec![r#""other""#.into(), r#""other""#.into(), "3".into()]).await.ok().filter(|r| r.results.is_some()) }
    })
    .await;
    assert_eq!(same.and_then(|r| r.results), Some(vec!["3".to_string()]), "made and peeked through the second provider");
    let before = records(record).iter().filter(|r| r["event"] == "tally" && r["op"] == "peek").count();
    let reply = client.call("tally", PEEK_VIA, vec![r#""default""#.into(), r#""other""#.into(), "3".into()]).await?;
    let error = reply.error.clone().unwrap_or_default();
    assert!(reply.results.is_none() && error.contains("passes a handle of `tp` to `tp2`"), "{reply:?}");
    let after = records(record).iter().filter(|r| r["event"] == "tally" && r["op"] == "peek").count();
    assert_eq!(before, after, "no provider was asked");

    // A handle longer than the host takes fails the call, naming the bound.
    let reply = client.call("tally", RUN, vec!["4294967295".into(), "[]".into()]).await?;
    let error = reply.error.clone().unwrap_or_default();
    assert!(reply.results.is_none() && error.contains("resource handle of 2048 bytes"), "{reply:?}");

    // Linked to a component, the call with handles fails, saying why.
    client.delete_link("tally", "default", "trellis", "echo").await?;
    client.put_link(&Link::new("tally", "echo", "default", "trellis", "echo", &["tally"])).await?;
    let refused = eventually(Duration::from_secs(10), || {
        let client = client.clone();
        async move { client.call("tally", RUN, vec!["1".into(), "[1]".into()]).await.ok().filter(|r| r.error.as_deref().is_some_and(|e| e.contains("keeps no resource between calls"))) }
    })
    .await;
    assert!(refused.is_some(), "{:?}", client.call("tally", RUN, vec!["1".into(), "[1]".into()]).await);

    // The host serves on.
    client.delete_link("tally", "default", "trellis", "echo").await?;
    client.put_link(&Link::new("tally", "tp", "default", "trellis", "echo", &["tally"])).await?;
    let again = eventually(Duration::from_secs(10), || {
        let client = client.clone();
        async move { client.call("tally", RUN, vec!["2".into(), "[2]".into()]).await.ok().filter(|r| r.results.is_some()) }
    })
    .await
    .expect("served again");
    assert_eq!(values(&again), "[4,4,4]", "{again:?}");
    t.shutdown().await
}

/// The provider's answer to `message` through pinger's `echo` import.
async fn ask(client: &trellis_messages::Client, message: &str) -> anyhow::Result<String> {
    let asked = Instant::now();
    let client = client.clone().with_timeout(Duration::from_secs(30));
    let reply = client.call("pinger", "trellis:echo/pinger.ping", vec![serde_json::to_string(message)?]).await?;
    let result = reply.results.clone().and_then(|r| r.into_iter().next()).ok_or_else(|| anyhow::anyhow!("{reply:?}"))?;
    tracing::debug!(%message, took = ?asked.elapsed(), "asked the provider");
    Ok(serde_json::from_str(&result)?)
}

#[tokio::test]
async fn an_http_server_provider_reaches_components_http_handlers_over_wrpc() -> anyhow::Result<()> {
    init_tracing();
    // The provider (and pinger, which asks it to send requests) on one host; the HTTP
    // components on another, with a 2 s deadline and a 1 MiB request body limit.
    let t = two_hosts(|components, c| {
        c.wasm.max_execution_time = Duration::from_secs(if components { 2 } else { 20 });
        if components {
            c.limits.max_http_body = 1 << 20;
        }
    })
    .await?;
    let client = &t.client;
    t.scale(true, "pinger", trellis_tests::guests::PINGER, 4).await?;
    t.scale(false, "hello", trellis_tests::guests::HTTP_HELLO, 4).await?;
    t.scale(false, "hostile", trellis_tests::guests::HOSTILE, 4).await?;
    t.start_provider().await?;
    client.put_link(&echo_link("pinger", "tp")).await?;
    // As wasmCloud's HTTP server provider is linked to the components it serves (one link
    // name per component).
    for target in ["hello", "hostile"] {
        client.put_link(&Link::new("tp", target, target, "wasi", "http", &["incoming-handler"])).await?;
    }

    // The request reaches the component on the other host; status, headers and body come back.
    let answer = eventually(Duration::from_secs(15), || {
        let client = client.clone();
        async move { ask(&client, "http:hello:GET:/:0").await.ok().filter(|a| !a.starts_with("error")) }
    })
    .await
    .expect("the provider reached hello");
    assert_eq!(answer, "200 text/plain;charset=utf-8 19 Hello from Trellis");

    // Bodies stream both ways: a 600 KB request body in 64 KiB chunks is read whole, and a
    // 3 MB response (three times the NATS max payload) comes back whole.
    assert_eq!(ask(client, "http:hostile:POST:/upload:600000").await?, "200 - 18 read 600000 bytes");
    let big = ask(client, "http:hostile:GET:/big/3000000:0").await?;
    assert!(big.starts_with("200 - 3000000 "), "{big}");

    // A request body past --max-http-body is cut off: the component reads at most the limit.
    let cut = ask(client, "http:hostile:POST:/upload:3000000").await?;
    let read: usize = cut.split(' ').nth(4).and_then(|n| n.parse().ok()).unwrap_or(usize::MAX);
    assert!(read <= 1 << 20, "read at most the limit: {cut}");

    // The component's deadline and traps end as HTTP statuses, as from the built-in server.
    let asked = Instant::now();
    let late = ask(client, "http:hostile:GET:/sleep/10000:0").await?;
    assert!(late.starts_with("504 "), "{late}");
    assert!(asked.elapsed() < Duration::from_secs(6), "{:?}", asked.elapsed());
    let trapped = ask(client, "http:hello:GET:/trap:0").await?;
    assert!(trapped.starts_with("500 "), "{trapped}");

    // Still serving after all that.
    assert_eq!(ask(client, "http:hello:GET:/again:0").await?, "200 text/plain;charset=utf-8 19 Hello from Trellis");
    t.shutdown().await
}

#[tokio::test]
async fn a_components_key_value_linked_to_an_external_provider_uses_the_providers_store() -> anyhow::Result<()> {
    init_tracing();
    let t = two_hosts(|_, c| c.wasm.max_execution_time = Duration::from_secs(20)).await?;
    let (lattice, client, record, provider_host) = (&t.lattice, &t.client, &t.record, &t.provider_host);
    t.scale(true, "pinger", trellis_tests::guests::PINGER, 2).await?;
    t.scale(false, "counter", trellis_tests::guests::KV_COUNTER, 2).await?;
    t.start_provider().await?;
    client.put_link(&echo_link("pinger", "tp")).await?;
    // As wasmCloud's key-value counter example is linked to a key-value provider.
    client.put_link(&Link::new("counter", "tp", "default", "wasi", "keyvalue", &["store", "atomics", "batch"])).await?;
    client.put_link(&Link::new("tp", "counter", "counter", "wasi", "http", &["incoming-handler"])).await?;

    // The counter on one host increments in the provider's store on the other, over wRPC.
    let first = eventually(Duration::from_secs(15), || {
        let client = client.clone();
        async move { ask(&client, "http:counter:GET:/apples:0").await.ok().filter(|a| a.starts_with("200 ")) }
    })
    .await
    .expect("the counter counted");
    assert!(first.ends_with("Count: 1"), "{first}");
    assert!(ask(client, "http:counter:GET:/apples:0").await?.ends_with("Count: 2"));
    assert!(ask(client, "http:counter:GET:/pears:0").await?.ends_with("Count: 1"));
    let call = wait_record(record, "the increment", |r| r["event"] == "kv" && r["key"] == "pears").await;
    assert_eq!((call["op"].as_str(), call["bucket"].as_str(), call["caller"].as_str()), (Some("increment"), Some("counters"), Some("counter")), "{call}");
    // wasi:keyvalue/batch goes to the provider's `wrpc:keyvalue/batch` (set 3, get them and one
    // more, delete them); a batch past the host's bound is refused before it leaves the host.
    let batch = ask(client, "http:counter:GET:/x/_batch/3:0").await?;
    assert!(batch.starts_with("200 ") && batch.trim_end_matches('.').ends_with("set 3, read 3 of 4, 0 left after delete"), "{batch}");
    let call = wait_record(record, "the batch", |r| r["event"] == "kv" && r["op"] == "set-many").await;
    assert_eq!((call["bucket"].as_str(), call["key"].as_str(), call["caller"].as_str()), (Some("counters"), Some("3"), Some("counter")), "{call}");
    let over = ask(client, "http:counter:GET:/x/_batch/1001:0").await?;
    assert!(over.starts_with("500 ") && over.contains("a batch of 1001 keys; at most 1000 per call"), "{over}");
    assert!(!records(record).iter().any(|r| r["op"] == "set-many" && r["key"] == "1001"), "refused before the provider");
    // Nothing went to the lattice's JetStream.
    let js = async_nats::jetstream::new(lattice.nats().await?);
    assert!(js.get_key_value("counters").await.is_err(), "no JetStream bucket was made");

    // The data lives in the provider: a new provider process starts counting again.
    lattice.ctl().await?.stop_provider(provider_host.id(), "tp").await.map_err(anyhow::Error::msg)?;
    let gone = eventually(Duration::from_secs(10), || {
        let client = client.clone();
        let host = provider_host.id().to_string();
        async move { client.inventory(&host).await.ok().filter(|i| i.providers.is_empty()) }
    })
    .await;
    assert!(gone.is_some(), "the provider stopped");
    std::fs::remove_file(record)?;
    t.start_provider().await?;
    let again = eventually(Duration::from_secs(15), || {
        let client = client.clone();
        async move { ask(&client, "http:counter:GET:/apples:0").await.ok().filter(|a| a.starts_with("200 ")) }
    })
    .await
    .expect("the counter counted again");
    assert!(again.ends_with("Count: 1"), "{again}");
    t.shutdown().await
}

#[tokio::test]
async fn a_components_messaging_linked_to_an_external_provider_goes_through_it_but_never_to_the_lattice() -> anyhow::Result<()> {
    init_tracing();
    let t = two_hosts(|_, _| {}).await?;
    let (lattice, client, record, component_host) = (&t.lattice, &t.client, &t.record, &t.component_host);
    t.scale(false, "hostile", trellis_tests::guests::HOSTILE, 2).await?;
    t.start_provider().await?;
    // No `subjects` list: an external provider's link may leave it out.
    client.put_link(&Link::new("hostile", "tp", "default", "wasmcloud", "messaging", &["consumer"])).await?;
    let nats = lattice.nats().await?;
    let mut spy = nats.subscribe("orders.>").await?;
    nats.flush().await?;
    let probe = |function: &'static str, args: Vec<String>| {
        let client = client.clone();
        async move {
            let reply = client.call("hostile", &format!("trellis:hostile/probe.{function}"), args).await?;
            anyhow::Ok(reply.results.map(|r| r.join("")).ok_or_else(|| reply.error.unwrap_or_default()))
        }
    };

    // Publish and request go to the provider, which carries them out on its own connection.
    let published = eventually(Duration::from_secs(10), || async {
        probe("publish", vec![r#""orders.new""#.into(), r#""one apple""#.into()]).await.ok().filter(|r| r.as_deref() == Ok("ok"))
    })
    .await;
    assert!(published.is_some(), "published through the provider");
    let seen = wait_record(record, "the publish", |r| r["event"] == "published").await;
    assert_eq!((seen["subject"].as_str(), seen["body"].as_str(), seen["caller"].as_str()), (Some("orders.new"), Some("one apple"), Some("hostile")), "{seen}");
    let answer = probe("request", vec![r#""prices.apples""#.into(), r#""how much""#.into(), "1000".into()]).await?;
    assert_eq!(answer, Ok(r#"ok("reply to how much")"#.to_string()));
    let asked = wait_record(record, "the request", |r| r["event"] == "requested").await;
    assert!(asked["timeout_ms"].as_u64().is_some_and(|t| t <= 1000), "{asked}");
    assert!(tokio::time::timeout(Duration::from_millis(300), spy.next()).await.is_err(), "nothing went out on the lattice's own connection");

    // The lattice's subjects stay out of reach through any messaging provider.
    let control = format!("wasmbus.ctl.v1.{}.host.{}.stop", lattice.name, component_host.id());
    let refused = probe("publish", vec![format!("{control:?}"), r#""{}""#.into()]).await?;
    assert!(refused.as_deref().unwrap_or_default().contains("subject of the lattice itself"), "{refused:?}");
    let refused = probe("request", vec![format!("\"{}.echo.wrpc.0.0.1.x.y\"", lattice.name), r#""x""#.into(), "100".into()]).await?;
    assert!(refused.as_deref().unwrap_or_default().contains("subject of the lattice itself"), "{refused:?}");
    assert!(!records(record).iter().any(|r| r["subject"].as_str().is_some_and(|s| s.starts_with("wasmbus.") || s.contains(".wrpc."))), "the provider was never asked");
    assert!(client.inventory(component_host.id()).await.is_ok(), "the host is still there");
    t.shutdown().await
}

#[tokio::test]
async fn a_client_that_speaks_wrpc_badly_gets_nothing_and_the_component_keeps_serving() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    lattice.scale(host.id(), "echo", trellis_tests::guests::ECHO, 4).await?.map_err(anyhow::Error::msg)?;
    lattice.scale(host.id(), "hello", trellis_tests::guests::HTTP_HELLO, 4).await?.map_err(anyhow::Error::msg)?;
    let nats = lattice.nats().await?;
    // Garbage, empty, huge (close to the NATS max payload), with and without a reply subject,
    // to a plain function and to an HTTP handler, and to a function the component does not export.
    let huge = vec![0xffu8; 900 * 1024];
    for subject in [
        format!("{}.echo.wrpc.0.0.1.trellis:echo/echo@0.1.0.echo", lattice.name),
        format!("{}.hello.wrpc.0.0.1.wrpc:http/incoming-handler@0.1.0.handle", lattice.name),
    ] {
        for payload in [b"\x00\x01garbage".to_vec(), Vec::new(), huge.clone()] {
            nats.publish(subject.clone(), payload.clone().into()).await?;
            let _ = tokio::time::timeout(Duration::from_millis(500), nats.request(subject.clone(), payload.into())).await;
        }
    }
    let _ = tokio::time::timeout(
        Duration::from_millis(500),
        nats.request(format!("{}.echo.wrpc.0.0.1.trellis:echo/echo@0.1.0.no-such-function", lattice.name), "x".into()),
    )
    .await;
    // The component and the host carry on.
    let client = lattice.client().await?;
    let reply = client.call("echo", "trellis:echo/echo.echo", vec![r#""still here""#.into()]).await?;
    assert_eq!(reply.results, Some(vec![r#""still here""#.to_string()]), "{reply:?}");
    let inventory = client.inventory(host.id()).await.map_err(anyhow::Error::msg)?;
    assert_eq!(inventory.components.len(), 2, "{inventory:?}");
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn a_provider_call_nobody_takes_fails_at_once_not_at_its_deadline() -> anyhow::Result<()> {
    init_tracing();
    // As in the moment between a provider's start and its subscriptions, or after it died:
    // nothing listens on the provider's wRPC subjects.
    let lattice = TestLattice::new().await?;
    let wrpc = trellis_host::wasm::transport::wrpc::Wrpc::new(
        lattice.nats().await?,
        &lattice.name,
        wasmtime::Engine::default(),
        4,
        Duration::from_secs(1),
        trellis_host::Limits::default().body_bounds(),
    );
    let asked = Instant::now();
    let failed = wrpc
        .call("pinger", "default", "ghost", "trellis:echo/echo@0.1.0", "spin", &[], &[], &[], Duration::from_secs(10))
        .await
        .expect_err("nobody serves `ghost`");
    assert!(matches!(failed, trellis_host::wasm::transport::wrpc::WrpcError::NotServing { .. }), "{failed}");
    assert!(failed.to_string().contains("no responders"), "{failed}");
    assert!(asked.elapsed() < Duration::from_secs(2), "failed at once: {:?}", asked.elapsed());
    Ok(())
}

#[tokio::test]
async fn a_provider_answering_malformed_results_fails_the_call_not_the_host() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.providers = settings();
    config.wasm.max_execution_time = Duration::from_secs(5);
    let host = lattice.start_host(config).await?;
    let client = lattice.client().await?;
    let dir = tempfile::tempdir()?;
    // A provider process that never speaks NATS; the test speaks wRPC's NATS protocol for it
    // (accept the invocation, write results to `{reply}.results`), with malformed results.
    let fake = trellis_tests::providers::script(dir.path(), "fake", "exec sleep 1000");
    let nats = lattice.nats().await?;
    let mut health = nats.subscribe(format!("wasmbus.rpc.{}.fake.health", lattice.name)).await?;
    let mut calls = nats.subscribe(format!("{}.fake.wrpc.0.0.1.trellis:echo/echo@0.1.0.echo", lattice.name)).await?;
    nats.flush().await?;
    let answers: Vec<Vec<u8>> = vec![
        vec![0x02, 0xff, 0xfe],                   // a string that is not UTF-8
        vec![0x0a, b'a', b'b'],                   // 10 bytes announced, 2 sent
        vec![0x80, 0x80, 0x80, 0x80, 0x04],       // 1 GiB announced, nothing sent
        vec![0x02, b'o', b'k', 0x01, 0x02, 0x03], // a result, then bytes that are none
        vec![0x02, b'o', b'k'],                   // a proper answer
    ];
    let expected = answers.len();
    let server = {
        let nats = nats.clone();
        tokio::spawn(async move {
            let mut answers = answers.into_iter();
            loop {
                tokio::select! {
                    Some(check) = health.next() => {
                        if let Some(reply) = check.reply {
                            let _ = nats.publish(reply, r#"{"healthy":true}"#.into()).await;
                        }
                    }
                    Some(call) = calls.next() => {
                        let (Some(reply), Some(answer)) = (call.reply, answers.next()) else { continue };
                        let _ = nats.publish_with_reply(reply.clone(), format!("{reply}.params-unused"), Vec::new().into()).await;
                        let results = format!("{reply}.results");
                        let _ = nats.publish(results.clone(), answer.into()).await;
                        let _ = nats.publish(results, Vec::new().into()).await;
                    }
                    else => break,
                }
            }
        })
    };
    lattice.scale(host.id(), "pinger", trellis_tests::guests::PINGER, 2).await?.map_err(anyhow::Error::msg)?;
    let ack = lattice.ctl().await?.start_provider(host.id(), &fake.display().to_string(), "fake", None, vec![]).await.map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded(), "{}", ack.message());
    client.put_link(&echo_link("pinger", "fake")).await?;
    let mut errors = Vec::new();
    for i in 0..expected {
        let asked = Instant::now();
        let reply = eventually(Duration::from_secs(10), || {
            let client = client.clone();
            // Until the link and the provider are known, the call is refused before it is sent.
            async move { client.call("pinger", "trellis:echo/pinger.ping", vec![r#""x""#.into()]).await.ok().filter(|r| !r.error.as_deref().unwrap_or("").contains("no link") && !r.error.as_deref().unwrap_or("").contains("not running")) }
        })
        .await
        .expect("an answer");
        if i + 1 < expected {
            let error = reply.error.clone().unwrap_or_default();
            assert!(error.contains("`fake`"), "answer {i}: {reply:?}");
            assert!(asked.elapsed() < Duration::from_secs(3), "answer {i} failed at once: {:?}", asked.elapsed());
            errors.push(error);
        } else {
            assert_eq!(reply.results, Some(vec![r#""ok""#.to_string()]), "{reply:?}");
        }
    }
    assert!(errors[0].contains("cannot decode result 0"), "{errors:?}");
    assert!(errors[3].contains("more than the results"), "{errors:?}");
    server.abort();
    assert!(client.inventory(host.id()).await.is_ok());
    host.shutdown(None).await?;
    Ok(())
}
