//! Links and config in JetStream KV: component-to-component calls across hosts and in-process,
//! live changes, validation, and reload after a host is killed.

use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use futures::StreamExt;
use trellis_messages::invocation::{FaultKind, InvocationResponse};
use trellis_messages::link::Link;
use trellis_tests::{guests, event_data, eventually, init_tracing, trellis_bin, TestLattice};

const PING: &str = "trellis:echo/pinger.ping";

fn echo_link(source: &str, target: &str, name: &str) -> Link {
    Link::new(source, target, name, "trellis", "echo", &["echo"])
}

fn published(link: &Link) -> wasmcloud_control_interface::Link {
    wasmcloud_control_interface::Link::builder()
        .source_id(&link.source_id)
        .target(&link.target)
        .name(&link.name)
        .wit_namespace(&link.wit_namespace)
        .wit_package(&link.wit_package)
        .interfaces(link.interfaces.clone())
        .source_config(link.source_config.clone())
        .target_config(link.target_config.clone())
        .build()
        .expect("link")
}

fn results(reply: &InvocationResponse) -> Vec<String> {
    reply.results.clone().unwrap_or_else(|| panic!("call failed: {reply:?}"))
}

#[tokio::test]
async fn pinger_calls_echo_across_a_three_node_cluster_and_follows_link_changes() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::cluster(3).await?;
    let (echo, pinger) = (lattice.push("echo", guests::ECHO).await?, lattice.push("pinger", guests::PINGER).await?);
    let mut hosts = Vec::new();
    for i in 0..3 {
        let mut config = lattice.machine_config_on(i);
        config.kv_replicas = 3;
        hosts.push(lattice.start_host(config).await?);
    }
    let (a, c) = (&hosts[0], &hosts[2]);
    lattice.scale(a.id(), "pinger", &pinger, 4).await?.map_err(anyhow::Error::msg)?;
    lattice.scale(c.id(), "echo", &echo, 4).await?.map_err(anyhow::Error::msg)?;

    // Put the link from a client on node 1: whichever host's queue member answers, every host
    // sees it through its KV watch.
    let ctl = lattice.ctl_on(1).await?;
    let ack = ctl.put_link(published(&echo_link("pinger", "echo", "default"))).await.map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded(), "{}", ack.message());

    let client = lattice.client().await?.with_timeout(Duration::from_secs(10));
    let reply = eventually(Duration::from_secs(10), || {
        let client = client.clone();
        async move { client.call("pinger", PING, vec![r#""over the lattice""#.into()]).await.ok().filter(|r| r.results.is_some()) }
    })
    .await
    .expect("pinger reaches echo once every host has the link");
    assert_eq!(results(&reply), vec![r#""over the lattice""#]);
    assert_eq!(reply.host_id, a.id(), "pinger runs on A");

    let ack = ctl.delete_link("pinger", "default", "trellis", "echo").await.map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded());
    let error = eventually(Duration::from_secs(10), || {
        let client = client.clone();
        async move { client.call("pinger", PING, vec![r#""x""#.into()]).await.ok().and_then(|r| r.error) }
    })
    .await
    .expect("the next call fails once the link is gone");
    assert!(
        error.contains("no link named `default` from `pinger` for `trellis:echo/echo`"),
        "the error names the missing link: {error}"
    );

    let ack = ctl.put_link(published(&echo_link("pinger", "echo", "default"))).await.map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded());
    let reply = eventually(Duration::from_secs(10), || {
        let client = client.clone();
        async move { client.call("pinger", PING, vec![r#""again""#.into()]).await.ok().filter(|r| r.results.is_some()) }
    })
    .await
    .expect("works again after the re-put");
    assert_eq!(results(&reply), vec![r#""again""#]);
    for h in hosts {
        h.shutdown(None).await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_chain_on_one_host_does_not_cross_nats() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    lattice.scale(host.id(), "pinger", guests::PINGER, 4).await?.map_err(anyhow::Error::msg)?;
    lattice.scale(host.id(), "echo", guests::ECHO, 4).await?.map_err(anyhow::Error::msg)?;
    let client = lattice.client().await?;
    client.put_link(&echo_link("pinger", "echo", "default")).await?;

    // A plain subscriber on echo's invocation subject sees every call that goes over NATS.
    let nats = lattice.nats().await?;
    let mut spy = nats.subscribe(format!("trellis.rpc.{}.echo", lattice.name)).await?;
    nats.flush().await?;
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while spy.next().await.is_some() {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let first = eventually(Duration::from_secs(10), || {
        let client = client.clone();
        async move { client.call("pinger", PING, vec![r#""0""#.into()]).await.ok().filter(|r| r.results.is_some()) }
    })
    .await;
    assert!(first.is_some(), "the link reached the host");
    for i in 1..20 {
        let reply = client.call("pinger", PING, vec![format!(r#""{i}""#)]).await?;
        assert_eq!(results(&reply), vec![format!(r#""{i}""#)]);
    }
    // The spy works: a direct call to echo is seen.
    client.call("echo", "trellis:echo/echo.echo", vec![r#""direct""#.into()]).await?;
    let saw_direct = eventually(Duration::from_secs(5), || {
        let seen = seen.clone();
        async move { (seen.load(Ordering::SeqCst) >= 1).then_some(()) }
    })
    .await;
    assert!(saw_direct.is_some());
    assert_eq!(seen.load(Ordering::SeqCst), 1, "only the direct call crossed NATS; 20 pinger → echo calls stayed in-process");
    counter.abort();

    // Same semantics in-process: a fault in the callee reaches the caller with its reason.
    let mut config = lattice.host_config();
    config.wasm.max_execution_time = Duration::from_millis(500);
    host.shutdown(None).await?;
    let host = lattice.start_host(config).await?;
    lattice.scale(host.id(), "pinger", guests::PINGER, 4).await?.map_err(anyhow::Error::msg)?;
    lattice.scale(host.id(), "echo", guests::ECHO, 4).await?.map_err(anyhow::Error::msg)?;
    let reply = client.with_timeout(Duration::from_secs(10)).call("pinger", "trellis:echo/pinger.ping-spin", vec![]).await?;
    let error = reply.error.clone().unwrap_or_default();
    assert!(error.contains("call from `pinger` to `echo`") && error.contains("deadline"), "{reply:?}");
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn named_links_pick_their_target() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let (echo, pinger) = (lattice.push("echo", guests::ECHO).await?, lattice.push("pinger", guests::PINGER).await?);
    let a = lattice.start_host(lattice.machine_config()).await?;
    let b = lattice.start_host(lattice.machine_config()).await?;
    lattice.scale(a.id(), "pinger", &pinger, 4).await?.map_err(anyhow::Error::msg)?;
    lattice.scale(a.id(), "echo", &echo, 4).await?.map_err(anyhow::Error::msg)?;
    lattice.scale(b.id(), "echo-b", &echo, 4).await?.map_err(anyhow::Error::msg)?;
    let client = lattice.client().await?;
    client.put_link(&echo_link("pinger", "echo", "default")).await?;
    client.put_link(&echo_link("pinger", "nobody", "broken")).await?;

    let via = |link: &str| {
        let (client, link) = (client.clone(), link.to_string());
        async move { client.call("pinger", "trellis:echo/pinger.ping-via", vec![format!("{link:?}"), r#""hi""#.into()]).await }
    };
    let ok = eventually(Duration::from_secs(10), || async { via("default").await.ok().filter(|r| r.results.is_some()) }).await;
    assert!(ok.is_some());
    let reply = via("broken").await?;
    assert!(reply.error.as_deref().unwrap_or_default().contains("component `nobody` is not running"), "{reply:?}");
    let reply = via("missing").await?;
    assert!(reply.error.as_deref().unwrap_or_default().contains("no link named `missing`"), "{reply:?}");

    // Re-point the named link: a different target, over NATS to host B.
    client.delete_link("pinger", "broken", "trellis", "echo").await?;
    client.put_link(&echo_link("pinger", "echo-b", "broken")).await?;
    let fixed = eventually(Duration::from_secs(10), || async { via("broken").await.ok().filter(|r| r.results.is_some()) }).await;
    assert_eq!(fixed.map(|r| results(&r)), Some(vec![r#""hi""#.to_string()]));
    a.shutdown(None).await?;
    b.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn link_validation_idempotent_delete_and_events() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let ctl = lattice.ctl().await?;
    let mut events = ctl
        .events_receiver(vec!["linkdef_set".into(), "linkdef_set_failed".into(), "linkdef_deleted".into()])
        .await
        .map_err(anyhow::Error::msg)?;

    let mut with_config = echo_link("pinger", "echo", "default");
    with_config.source_config = vec!["absent".into()];
    let reply = ctl.put_link(published(&with_config)).await.map_err(anyhow::Error::msg)?;
    assert!(!reply.succeeded());
    assert!(reply.message().contains("config `absent`, which does not exist"), "{}", reply.message());

    let reply = ctl.put_link(published(&echo_link("pinger", "echo", "default"))).await.map_err(anyhow::Error::msg)?;
    assert!(reply.succeeded(), "{}", reply.message());
    let reply = ctl.put_link(published(&echo_link("pinger", "other", "default"))).await.map_err(anyhow::Error::msg)?;
    assert!(!reply.succeeded());
    assert!(reply.message().contains("already points to `echo`"), "{}", reply.message());
    // Same source/target/package/name replaces.
    let reply = ctl.put_link(published(&echo_link("pinger", "echo", "default"))).await.map_err(anyhow::Error::msg)?;
    assert!(reply.succeeded());
    let links = ctl.get_links().await.map_err(anyhow::Error::msg)?;
    let links = links.data().cloned().unwrap_or_default();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].target(), "echo");

    // As a wasmCloud 1.9 host answers: a source with no spec succeeds with no event; a link
    // deleted is one event with its target and interfaces.
    let reply = ctl.delete_link("nobody", "default", "trellis", "echo").await.map_err(anyhow::Error::msg)?;
    assert!(reply.succeeded(), "deleting a missing link succeeds: {}", reply.message());
    assert_eq!(reply.message(), "successfully deleted link (spec doesn't exist)");
    let reply = ctl.delete_link("pinger", "default", "trellis", "echo").await.map_err(anyhow::Error::msg)?;
    assert!(reply.succeeded());
    assert_eq!(reply.message(), "successfully deleted link");
    assert!(lattice.client().await?.links().await?.is_empty());

    let mut seen = Vec::new();
    while seen.len() < 5 {
        let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(5), events.recv()).await else { break };
        let ty = cloudevents::AttributesReader::ty(&ev).rsplit('.').next().unwrap_or_default().to_string();
        seen.push((ty, event_data(&ev)));
    }
    let kinds: Vec<&str> = seen.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        kinds,
        ["linkdef_set_failed", "linkdef_set", "linkdef_set_failed", "linkdef_set", "linkdef_deleted"]
    );
    assert!(seen[0].1["error"].as_str().unwrap_or_default().contains("absent"));
    assert_eq!(seen[1].1["target"], "echo");
    assert_eq!((&seen[4].1["source_id"], &seen[4].1["target"], &seen[4].1["interfaces"]), (&json!("pinger"), &json!("echo"), &json!(["echo"])));
    let extra = tokio::time::timeout(Duration::from_millis(500), events.recv()).await;
    assert!(extra.is_err() || matches!(extra, Ok(None)), "no event for the source without a spec");
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn config_reaches_a_running_component_and_follows_changes() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let ctl = lattice.ctl().await?;
    let mut events = ctl.events_receiver(vec!["config_set".into(), "config_deleted".into()]).await.map_err(anyhow::Error::msg)?;
    let reply = ctl
        .put_config("pinger-cfg", HashMap::from([("greeting".to_string(), "hello".to_string())]))
        .await
        .map_err(anyhow::Error::msg)?;
    assert!(reply.succeeded());
    let got = ctl.get_config("pinger-cfg").await.map_err(anyhow::Error::msg)?;
    assert_eq!(got.data().and_then(|m| m.get("greeting")).map(String::as_str), Some("hello"));
    // A secret reference as wasmCloud 1.x writes one (a config named `SECRET_…`): its backend
    // and key are not config; a component that names it on a host with no secrets backend does
    // not start (as on a wasmCloud 1.9 host), saying why.
    let secret = HashMap::from([("backend".to_string(), "nats-kv".to_string()), ("key".to_string(), "db-password".to_string())]);
    assert!(ctl.put_config("SECRET_pinger-db", secret).await.map_err(anyhow::Error::msg)?.succeeded());
    let refused = lattice.watch_scale_events("pinger-secret").await?;
    let command = trellis_messages::component::ScaleComponentCommand {
        component_ref: guests::PINGER.into(),
        component_id: "pinger-secret".into(),
        max_instances: 1,
        config: vec!["pinger-cfg".into(), "SECRET_pinger-db".into()],
        ..Default::default()
    };
    lattice.client().await?.scale_component(host.id(), &command).await?;
    let why = refused.await??.expect_err("a secret with no backend");
    assert!(why.contains("no secrets backend"), "{why}");
    assert!(ctl.put_config("pinger-more", HashMap::from([("extra".to_string(), "more".to_string())])).await.map_err(anyhow::Error::msg)?.succeeded());

    let client = lattice.client().await?;
    let events_task = lattice.watch_scale_events("pinger").await?;
    client
        .scale_component(
            host.id(),
            &trellis_messages::component::ScaleComponentCommand {
                component_ref: guests::PINGER.into(),
                component_id: "pinger".into(),
                max_instances: 2,
                config: vec!["pinger-cfg".into()],
                ..Default::default()
            },
        )
        .await?;
    events_task.await??.map_err(anyhow::Error::msg)?;
    let config = |key: &str| {
        let (client, key) = (client.clone(), key.to_string());
        async move {
            let reply = client.call("pinger", "trellis:echo/pinger.config", vec![format!("{key:?}")]).await.ok()?;
            reply.results.map(|r| r[0].clone())
        }
    };
    let first = eventually(Duration::from_secs(10), || async { config("greeting").await.filter(|v| v == r#"some("hello")"#) }).await;
    assert!(first.is_some(), "the component reads its config");
    assert_eq!(config("missing").await.as_deref(), Some("none"));
    assert_eq!(config("extra").await.as_deref(), Some("none"));
    // Scaled again with another config list (as wadm does when a manifest's config changes):
    // the running component reads the new list, as a wasmCloud 1.9 host refetches it.
    let rescaled = lattice.watch_scale_events("pinger").await?;
    let command = trellis_messages::component::ScaleComponentCommand {
        component_ref: guests::PINGER.into(),
        component_id: "pinger".into(),
        max_instances: 2,
        config: vec!["pinger-cfg".into(), "pinger-more".into()],
        ..Default::default()
    };
    client.scale_component(host.id(), &command).await?;
    rescaled.await??.map_err(anyhow::Error::msg)?;
    let extra = eventually(Duration::from_secs(10), || async { config("extra").await.filter(|v| v == r#"some("more")"#) }).await;
    assert!(extra.is_some(), "the new config list is read: {:?}", config("extra").await);
    assert_eq!(config("greeting").await.as_deref(), Some(r#"some("hello")"#));
    // `wasi:config/runtime`, the interface's earlier name that wasmCloud 1.x components import,
    // reads the same config (without the capability it would be a link call with no link).
    let runtime = client.call("pinger", "trellis:echo/pinger.runtime-config", vec![r#""greeting""#.into()]).await?;
    assert_eq!(runtime.results.map(|r| r[0].clone()).as_deref(), Some(r#"some("hello")"#), "{:?}", runtime.error);

    ctl.put_config("pinger-cfg", HashMap::from([("greeting".to_string(), "bonjour".to_string())]))
        .await
        .map_err(anyhow::Error::msg)?;
    let changed = eventually(Duration::from_secs(10), || async { config("greeting").await.filter(|v| v == r#"some("bonjour")"#) }).await;
    assert!(changed.is_some(), "the running component sees the update");

    let reply = ctl.delete_config("pinger-cfg").await.map_err(anyhow::Error::msg)?;
    assert!(reply.succeeded());
    let gone = eventually(Duration::from_secs(10), || async { config("greeting").await.filter(|v| v == "none") }).await;
    assert!(gone.is_some());
    let got = lattice.client().await?.config("pinger-cfg").await?;
    assert!(got.is_empty());

    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(5), events.recv()).await else { break };
        if event_data(&ev)["config_name"] == "SECRET_pinger-db" || event_data(&ev)["config_name"] == "pinger-more" {
            continue;
        }
        assert_eq!(event_data(&ev)["config_name"], "pinger-cfg");
        kinds.push(cloudevents::AttributesReader::ty(&ev).rsplit('.').next().unwrap_or_default().to_string());
    }
    assert_eq!(kinds, ["config_set", "config_set", "config_deleted"]);
    let _ = BTreeMap::<String, String>::new();
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn a_host_killed_and_restarted_reloads_links_and_config_from_kv() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let key = nkeys::KeyPair::new_server();
    let start = || -> anyhow::Result<std::process::Child> {
        Ok(Command::new(trellis_bin()?)
            .arg("host")
            .env("TRELLIS_ALLOW_FILE_LOAD", "true")
            .env("TRELLIS_NATS_URL", lattice.url())
            .env("TRELLIS_LATTICE", &lattice.name)
            .env("TRELLIS_HOST_SEED", key.seed()?)
            .env("TRELLIS_NO_COMPILE_CACHE", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?)
    };
    let client = lattice.client().await?;

    for round in 0..2 {
        let mut child = start()?;
        let joined = eventually(Duration::from_secs(15), || {
            let client = client.clone().with_gather(Duration::from_millis(300));
            let id = key.public_key();
            async move { client.ping_hosts().await.ok()?.into_iter().find(|h| h.id == id) }
        })
        .await;
        assert!(joined.is_some(), "round {round}: host joined");
        if round == 0 {
            // Stored once; the restarted host must find them in KV.
            client.put_config("cfg", &HashMap::from([("k".to_string(), "v".to_string())])).await?;
            client.put_link(&echo_link("pinger", "echo", "default")).await?;
        }
        let scale = |id: &str, reference: &str, config: Vec<String>| trellis_messages::component::ScaleComponentCommand {
            component_ref: reference.into(),
            component_id: id.into(),
            max_instances: 2,
            config,
            ..Default::default()
        };
        let e = lattice.watch_scale_events("echo").await?;
        client.scale_component(&key.public_key(), &scale("echo", guests::ECHO, vec![])).await?;
        e.await??.map_err(anyhow::Error::msg)?;
        let p = lattice.watch_scale_events("pinger").await?;
        client.scale_component(&key.public_key(), &scale("pinger", guests::PINGER, vec!["cfg".into()])).await?;
        p.await??.map_err(anyhow::Error::msg)?;

        let reply = eventually(Duration::from_secs(10), || {
            let client = client.clone();
            async move { client.call("pinger", PING, vec![format!(r#""round {round}""#)]).await.ok().filter(|r| r.results.is_some()) }
        })
        .await
        .unwrap_or_else(|| panic!("round {round}: pinger reaches echo through the stored link"));
        assert_eq!(results(&reply), vec![format!(r#""round {round}""#)]);
        let cfg = client.call("pinger", "trellis:echo/pinger.config", vec![r#""k""#.into()]).await?;
        assert_eq!(results(&cfg), vec![r#"some("v")"#]);

        // kill -9: no drain, no host_stopped.
        child.kill()?;
        child.wait()?;
        let gone = eventually(Duration::from_secs(10), || {
            let client = client.clone();
            async move {
                matches!(client.call("echo", "trellis:echo/echo.echo", vec![r#""x""#.into()]).await, Err(trellis_messages::Error::NotRunning { .. }))
                    .then_some(())
            }
        })
        .await;
        assert!(gone.is_some(), "round {round}: the killed host's subscriptions are gone");
    }
    let _ = FaultKind::Trap;
    Ok(())
}
