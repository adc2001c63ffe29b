//! `wasmcloud:messaging` 0.3 for components (`producer`, `request-reply`, `incoming-handler`)
//! through the built-in messaging provider, with the `msg3-echo` guest: delivery as a `message`
//! resource (here and on another host), replies, sends with metadata, requests with options,
//! client names checked against the link, refused subjects, and the bound on held messages.

use std::collections::HashMap;
use std::time::Duration;

use trellis_messages::link::Link;
use trellis_tests::providers::start_provider;
use trellis_tests::{eventually, guests, init_tracing, TestLattice};

/// `nats request subject body` with `headers`, answered within 2 s.
async fn ask(nats: &async_nats::Client, subject: &str, body: &str, headers: &[(&str, &str)]) -> anyhow::Result<async_nats::Message> {
    let mut map = async_nats::HeaderMap::new();
    for (k, v) in headers {
        map.insert(*k, *v);
    }
    let request = async_nats::Request::new().payload(body.to_string().into()).headers(map).timeout(Some(Duration::from_secs(2)));
    Ok(nats.send_request(subject.to_string(), request).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messaging_0_3_components_handle_send_request_and_reply() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let m3 = lattice.push("msg3-echo", guests::MSG3_ECHO).await?;
    let a = lattice.start_host(lattice.machine_config()).await?;
    let b = lattice.start_host(lattice.machine_config()).await?;
    let client = lattice.client().await?;
    let nats = lattice.nats().await?;
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
    start_provider(&client, a.id(), "msg", "wasmcloud+builtin://messaging-nats").await?;
    // One copy here (A, with the provider), one on B (messages forwarded there).
    lattice.scale(a.id(), "m3", &m3, 4).await?.map_err(anyhow::Error::msg)?;
    lattice.scale(b.id(), "m3-far", &m3, 2).await?.map_err(anyhow::Error::msg)?;
    let subs = |s: &str| HashMap::from([("subscriptions".to_string(), s.to_string())]);
    client.put_config("m3-subs", &subs("demo3.echo,ask.svc.time,pub.>,client.>,hold.>,churn.>,many.>,badmeta.>")).await?;
    client.put_config("m3-far-subs", &subs("demo3.far")).await?;
    client.put_config("m3-pub", &HashMap::from([("subjects".to_string(), "svc.>,out.>".to_string())])).await?;
    client.put_link(&Link::new("msg", "m3", "default", "wasmcloud", "messaging", &["handler"]).with_source_config(&["m3-subs"])).await?;
    client.put_link(&Link::new("msg", "m3-far", "far", "wasmcloud", "messaging", &["handler"]).with_source_config(&["m3-far-subs"])).await?;
    // The components' links name the 0.3 interfaces they import.
    for id in ["m3", "m3-far"] {
        client.put_link(&Link::new(id, "msg", "default", "wasmcloud", "messaging", &["producer", "request-reply"]).with_target_config(&["m3-pub"])).await?;
    }

    // Delivered as a `message` (its topic, data and metadata), answered with `reply`.
    let reply = eventually(Duration::from_secs(10), || {
        let nats = nats.clone();
        async move { ask(&nats, "demo3.echo", "hi", &[("x-id", "7")]).await.ok() }
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("no answer through request-reply.reply"))?;
    assert_eq!(&reply.payload[..], b"echo3: hi");
    assert_eq!(reply.headers.as_ref().and_then(|h| h.get("x-id")).map(|v| v.as_str()), Some("7"), "the metadata came through and back");
    // On another host: the message is forwarded and answered the same way.
    let far = eventually(Duration::from_secs(10), || {
        let nats = nats.clone();
        async move { ask(&nats, "demo3.far", "there", &[]).await.ok() }
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("no answer from the other host"))?;
    assert_eq!(&far.payload[..], b"echo3: there");
    // `request` with options (a timeout), answered by a service.
    assert_eq!(&ask(&nats, "ask.svc.time", "", &[]).await?.payload[..], b"tick");
    // Expecting up to 3 replies within 1 s from two services: both are gathered.
    for _ in 0..2 {
        let mut many = nats.subscribe("svc.many").await?;
        let responder = nats.clone();
        tokio::spawn(async move {
            use futures::StreamExt;
            while let Some(m) = many.next().await {
                if let Some(r) = m.reply {
                    let _ = responder.publish(r, "here".into()).await;
                }
            }
        });
    }
    nats.flush().await?;
    assert_eq!(String::from_utf8_lossy(&ask(&nats, "many.svc.many", "", &[]).await?.payload), "got 2");
    // `producer.send` with metadata (the guest's and the incoming message's).
    let mut out = nats.subscribe("out.x").await?;
    nats.flush().await?;
    assert_eq!(&ask(&nats, "pub.out.x", "payload", &[("x-from", "test")]).await?.payload[..], b"sent");
    let sent = tokio::time::timeout(Duration::from_secs(2), futures::StreamExt::next(&mut out)).await?.ok_or_else(|| anyhow::anyhow!("nothing sent"))?;
    assert_eq!(&sent.payload[..], b"payload");
    let headers = sent.headers.clone().unwrap_or_default();
    assert_eq!((headers.get("x-trellis").map(|v| v.as_str()), headers.get("x-from").map(|v| v.as_str())), (Some("yes"), Some("test")), "{headers:?}");
    // A client named other than the link the guest chose is an error naming both, as on 1.9.
    let answer = ask(&nats, "client.other.out.y", "", &[]).await?;
    assert_eq!(String::from_utf8_lossy(&answer.payload), "other: mismatch between link name and client connection name, `other` != `default`");
    // The lattice's own subjects are refused (permission-denied), whatever the link allows.
    let answer = ask(&nats, "client.default.wasmbus.ctl.x", "", &[]).await?;
    assert!(String::from_utf8_lossy(&answer.payload).starts_with("permission denied:"), "{answer:?}");
    // A guest holding more than 64 MiB of messages in the host is stopped; the next message is served.
    assert!(ask(&nats, "hold.100", "", &[]).await.is_err(), "a call holding 100 MiB of messages was answered");
    // Dropped messages are counted out: making and dropping 200 MiB of them one by one is fine.
    assert_eq!(&ask(&nats, "churn.200", "", &[]).await?.payload[..], b"churned");
    // Metadata NATS cannot carry is an error for the guest, not a panic of the host.
    let answer = ask(&nats, "badmeta.out.z", "", &[]).await?;
    assert!(String::from_utf8_lossy(&answer.payload).contains("cannot be a NATS header"), "{answer:?}");
    assert_eq!(&ask(&nats, "hold.8", "", &[]).await?.payload[..], b"held 8");
    assert_eq!(&ask(&nats, "demo3.echo", "again", &[]).await?.payload[..], b"echo3: again");
    // Without its link the component cannot reply: no answer.
    client.delete_link("m3", "default", "wasmcloud", "messaging").await?;
    let silent = eventually(Duration::from_secs(10), || {
        let nats = nats.clone();
        async move { ask(&nats, "demo3.echo", "x", &[]).await.is_err().then_some(()) }
    })
    .await;
    assert!(silent.is_some(), "an unlinked component replied");
    a.shutdown(None).await?;
    b.shutdown(None).await?;
    Ok(())
}
