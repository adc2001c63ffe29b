//! Calls between components and an external provider built with wasmCloud's provider SDK, over
//! wRPC, both ways and across hosts; and what a client that speaks wRPC badly gets.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use trellis_messages::link::Link;
use trellis_tests::providers::{settings, wait_record};
use trellis_tests::{eventually, init_tracing, test_provider, TestLattice};

fn echo_link(source: &str, target: &str) -> Link {
    Link::new(source, target, "default", "trellis", "echo", &["echo"])
}

#[tokio::test]
async fn components_and_an_sdk_provider_call_each_other_over_wrpc_across_hosts() -> anyhow::Result<()> {
    init_tracing();
    let provider = test_provider()?;
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.providers = settings();
    // The provider runs on one host, the components on another: every call crosses NATS. The
    // components' host lets one call at a time go to a provider; the next waits 500 ms.
    let provider_host = lattice.start_host(config.clone()).await?;
    config.providers.max_calls = 1;
    config.wasm.max_queue_wait = Duration::from_millis(500);
    let component_host = lattice.start_host(config).await?;
    let client = lattice.client().await?;
    let dir = tempfile::tempdir()?;
    let record = dir.path().join("record.jsonl");
    client.put_config("tp-settings", &[("record".to_string(), record.display().to_string())].into()).await?;
    lattice.scale(component_host.id(), "pinger", trellis_tests::actors::PINGER, 4).await?.map_err(anyhow::Error::msg)?;
    lattice.scale(component_host.id(), "echo", trellis_tests::actors::ECHO, 4).await?.map_err(anyhow::Error::msg)?;
    let ack = lattice
        .ctl()
        .await?
        .start_provider(provider_host.id(), &provider.display().to_string(), "tp", None, vec!["tp-settings".into()])
        .await
        .map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded(), "{}", ack.message());
    wait_record(&record, "init", |r| r["event"] == "init").await;
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
    let call = wait_record(&record, "the call", |r| r["event"] == "echo").await;
    assert_eq!(call["caller"], "pinger", "the provider sees who calls: {call}");

    // Provider → component: the provider passes the message on to `echo` over wRPC.
    let reply = client.call("pinger", PING, vec![r#""call:echo:round trip""#.into()]).await?;
    assert_eq!(reply.results, Some(vec![r#""round trip""#.to_string()]), "{reply:?}");
    wait_record(&record, "the call to echo", |r| r["event"] == "called" && r["answer"] == "round trip").await;
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
    lattice.scale(component_host.id(), "msg-echo", trellis_tests::actors::MSG_ECHO, 2).await?.map_err(anyhow::Error::msg)?;
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
    component_host.shutdown(None).await?;
    provider_host.shutdown(None).await?;
    Ok(())
}


#[tokio::test]
async fn a_client_that_speaks_wrpc_badly_gets_nothing_and_the_component_keeps_serving() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    lattice.scale(host.id(), "echo", trellis_tests::actors::ECHO, 4).await?.map_err(anyhow::Error::msg)?;
    let nats = lattice.nats().await?;
    let subject = format!("{}.echo.wrpc.0.0.1.trellis:echo/echo@0.1.0.echo", lattice.name);
    // Garbage, empty, huge (close to the NATS max payload), with and without a reply subject,
    // and to a function the component does not export.
    let huge = vec![0xffu8; 900 * 1024];
    for payload in [b"\x00\x01garbage".to_vec(), Vec::new(), huge] {
        nats.publish(subject.clone(), payload.clone().into()).await?;
        let _ = tokio::time::timeout(Duration::from_millis(500), nats.request(subject.clone(), payload.into())).await;
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
    assert!(client.inventory(host.id()).await.is_ok());
    host.shutdown(None).await?;
    Ok(())
}
