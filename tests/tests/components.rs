//! Components on the lattice: scale, call, update, scale to zero, through the published
//! wasmCloud client and Trellis's own; calls shared by several hosts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use trellis_messages::invocation::InvocationResponse;
use trellis_tests::{guests, event_data, eventually, init_tracing, TestLattice};

const ECHO_FN: &str = "trellis:echo/echo.echo";

fn ok_results(reply: &InvocationResponse) -> Vec<String> {
    match &reply.results {
        Some(r) => r.clone(),
        None => panic!("call failed: {:?} {:?}", reply.fault, reply.error),
    }
}

#[tokio::test]
async fn scale_call_and_scale_to_zero_with_the_published_client() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let ctl = lattice.ctl().await?;
    let mut events = ctl
        .events_receiver(vec!["component_scaled".into(), "host_heartbeat".into()])
        .await
        .map_err(anyhow::Error::msg)?;
    let reference = format!("file://{}", guests::ECHO);
    let annotations = BTreeMap::from([("app".to_string(), "demo".to_string())]);

    let ack = ctl
        .scale_component(host.id(), &reference, "echo", 3, Some(annotations.clone()), vec![], false)
        .await
        .map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded(), "{}", ack.message());

    // component_scaled, then a heartbeat that lists the component.
    let mut scaled = None;
    let mut listed = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    while (scaled.is_none() || !listed) && Instant::now() < deadline {
        let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(5), events.recv()).await else { continue };
        let data = event_data(&ev);
        match cloudevents::AttributesReader::ty(&ev) {
            t if t.ends_with("component_scaled") => scaled = Some(data),
            t if t.ends_with("host_heartbeat") && scaled.is_some() => {
                listed = data["components"].as_array().is_some_and(|c| c.iter().any(|c| c["id"] == "echo"));
            }
            _ => {}
        }
    }
    let scaled = scaled.expect("component_scaled");
    // A host that runs the component does not bid for it again.
    let bids = ctl.perform_component_auction(&reference, "echo", BTreeMap::new()).await.map_err(anyhow::Error::msg)?;
    assert!(bids.is_empty(), "no bid from the host already running echo");
    let bids = ctl.perform_component_auction(&reference, "other", BTreeMap::new()).await.map_err(anyhow::Error::msg)?;
    assert_eq!(bids.len(), 1);
    assert_eq!(scaled["component_id"], "echo");
    assert_eq!(scaled["image_ref"], reference);
    assert_eq!(scaled["max_instances"], 3);
    assert_eq!(scaled["host_id"], host.id());
    assert_eq!(scaled["annotations"]["app"], "demo");
    assert!(listed, "a heartbeat after the scale lists the component");

    let inventory = ctl.get_host_inventory(host.id()).await.map_err(anyhow::Error::msg)?;
    let inventory = inventory.data().expect("inventory");
    let components = inventory.components();
    assert_eq!(components.len(), 1);
    assert_eq!(components[0].id(), "echo");
    assert_eq!(components[0].image_ref(), reference);
    assert_eq!(components[0].max_instances(), 3);

    let client = lattice.client().await?;
    let reply = client.call("echo", ECHO_FN, vec![r#""hello lattice""#.into()]).await?;
    assert_eq!(ok_results(&reply), vec![r#""hello lattice""#]);
    assert_eq!(reply.host_id, host.id());
    // The package version may be given or left out.
    let reply = client.call("echo", "trellis:echo/echo@0.1.0.try-echo", vec![r#""no""#.into(), "true".into()]).await?;
    assert_eq!(ok_results(&reply), vec![r#"err("no")"#]);

    let ack = ctl
        .scale_component(host.id(), &reference, "echo", 0, None, vec![], false)
        .await
        .map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded(), "{}", ack.message());
    let gone = eventually(Duration::from_secs(10), || {
        let client = client.clone();
        async move {
            match client.call("echo", ECHO_FN, vec![r#""x""#.into()]).await {
                Err(trellis_messages::Error::NotRunning { .. }) => Some(()),
                _ => None,
            }
        }
    })
    .await;
    assert!(gone.is_some(), "after scale to 0 nothing serves echo");
    let inventory = client.inventory(host.id()).await?;
    assert!(inventory.components.is_empty(), "{:?}", inventory.components);
    host.shutdown(None).await?;
    Ok(())
}

/// Every call gets a fresh instance: nothing one call leaves in linear memory (a static, the
/// heap) is visible to the next, even though pooled memory is reset in place and reused.
#[tokio::test]
async fn calls_share_no_memory() -> anyhow::Result<()> {
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    lattice.scale(host.id(), "echo", guests::ECHO, 4).await?.map_err(anyhow::Error::msg)?;
    let client = lattice.client().await?;
    let empty = vec![r#""""#.to_string()];
    let remember = |i: usize| {
        let client = client.clone();
        async move { client.call("echo", "trellis:echo/echo.remember", vec![format!(r#""secret-{i}""#)]).await }
    };
    for i in 0..20 {
        assert_eq!(ok_results(&remember(i).await?), empty, "call {i} saw an earlier call's memory");
    }
    for reply in futures::future::join_all((20..60).map(remember)).await {
        assert_eq!(ok_results(&reply?), empty, "a concurrent call saw another call's memory");
    }
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn rescale_changes_max_instances_and_a_plain_path_works() -> anyhow::Result<()> {
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let scaled = lattice.scale(host.id(), "echo", guests::ECHO, 1).await?.map_err(anyhow::Error::msg)?;
    assert_eq!(scaled.image_ref, guests::ECHO, "a plain path is accepted as the reference");
    let scaled = lattice.scale(host.id(), "echo", guests::ECHO, 5).await?.map_err(anyhow::Error::msg)?;
    assert_eq!(scaled.max_instances, 5);
    let client = lattice.client().await?;
    assert_eq!(client.inventory(host.id()).await?.components[0].max_instances, 5);

    // A different reference without `allow_update`: as a wasmCloud 1.9 host answers, the code
    // running is scaled, its reference kept, and the reply says so.
    let copy = tempfile::NamedTempFile::new()?;
    std::fs::copy(guests::ECHO, copy.path())?;
    let other = copy.path().display().to_string();
    let reply = client
        .scale_component(
            host.id(),
            &trellis_messages::component::ScaleComponentCommand {
                component_ref: other.clone(),
                component_id: "echo".into(),
                max_instances: 3,
                ..Default::default()
            },
        )
        .await?;
    assert!(reply.starts_with("Requested to scale existing component to a different image reference:") && reply.contains("will not be updated"), "{reply}");
    let inventory = client.inventory(host.id()).await?;
    assert_eq!((inventory.components[0].image_ref.as_str(), inventory.components[0].max_instances), (guests::ECHO, 3));
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn update_during_a_stream_of_calls_fails_none() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    lattice.scale(host.id(), "echo", guests::ECHO, 8).await?.map_err(anyhow::Error::msg)?;
    let copy = tempfile::Builder::new().suffix(".wasm").tempfile()?;
    std::fs::copy(guests::ECHO, copy.path())?;
    let new_ref = format!("file://{}", copy.path().display());

    let client = lattice.client().await?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let (client, stop, calls) = (client.clone(), stop.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let arg = format!(r#""w{worker}-{i}""#);
                match client.call("echo", ECHO_FN, vec![arg.clone()]).await {
                    Ok(r) if r.results.as_deref() == Some(std::slice::from_ref(&arg)) => {}
                    other => failures.push(format!("{other:?}")),
                }
                calls.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            failures
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = lattice.watch_scale_events("echo").await?;
    let ack = lattice
        .ctl()
        .await?
        .update_component(host.id(), "echo", &new_ref, None)
        .await
        .map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded(), "{}", ack.message());
    let updated = events.await??.map_err(anyhow::Error::msg)?;
    assert_eq!(updated.image_ref, new_ref);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await?);
    }
    assert!(failures.is_empty(), "{} of {} calls failed: {:?}", failures.len(), calls.load(Ordering::Relaxed), &failures[..failures.len().min(3)]);
    assert!(calls.load(Ordering::Relaxed) > 20, "the stream kept calling through the update");
    assert_eq!(client.inventory(host.id()).await?.components[0].image_ref, new_ref);

    // Updating a component this host does not run is refused.
    let err = lattice.ctl().await?.update_component(host.id(), "nope", &new_ref, None).await.map_err(anyhow::Error::msg)?;
    assert!(!err.succeeded());
    assert!(err.message().contains("component `nope` is not running"), "{}", err.message());
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn two_hosts_share_calls_and_a_stopping_host_drops_out() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let echo = lattice.push("echo", guests::ECHO).await?;
    let a = lattice.start_host(lattice.machine_config()).await?;
    let b = lattice.start_host(lattice.machine_config()).await?;
    lattice.scale(a.id(), "echo", &echo, 4).await?.map_err(anyhow::Error::msg)?;
    lattice.scale(b.id(), "echo", &echo, 4).await?.map_err(anyhow::Error::msg)?;

    let client = lattice.client().await?;
    let mut served: BTreeMap<String, usize> = BTreeMap::new();
    let replies = futures::future::join_all((0..200).map(|i| {
        let client = client.clone();
        async move { client.call("echo", ECHO_FN, vec![format!(r#""{i}""#)]).await }
    }))
    .await;
    for (i, reply) in replies.into_iter().enumerate() {
        let reply = reply?;
        assert_eq!(ok_results(&reply), vec![format!(r#""{i}""#)]);
        *served.entry(reply.host_id).or_default() += 1;
    }
    assert_eq!(served.values().sum::<usize>(), 200);
    assert!(served.get(a.id()).copied().unwrap_or(0) > 0 && served.get(b.id()).copied().unwrap_or(0) > 0, "{served:?}");

    // Stop host A while calls keep coming; callers that retry never fail, and every call made
    // after A has stopped is served by B.
    let a_stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let caller = {
        let client = client.clone().with_timeout(Duration::from_secs(2));
        let a_stopped = a_stopped.clone();
        tokio::spawn(async move {
            let mut hosts_after_stop = Vec::new();
            let mut i = 0;
            while hosts_after_stop.len() < 50 {
                let after_stop = a_stopped.load(Ordering::SeqCst);
                let arg = format!(r#""r{i}""#);
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    match client.call("echo", ECHO_FN, vec![arg.clone()]).await {
                        Ok(r) if r.results.as_deref() == Some(std::slice::from_ref(&arg)) => {
                            if after_stop {
                                hosts_after_stop.push(r.host_id);
                            }
                            break;
                        }
                        other => assert!(attempt < 5, "call {i} failed {attempt} times: {other:?}"),
                    }
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (i, hosts_after_stop)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.shutdown(Some(Duration::from_secs(5))).await?;
    a_stopped.store(true, Ordering::SeqCst);
    let (total, hosts_after_stop) = caller.await?;
    assert!(total > 50, "calls were made while A stopped");
    assert!(hosts_after_stop.iter().all(|h| h == b.id()), "after A stopped only B serves: {hosts_after_stop:?}");
    b.shutdown(None).await?;
    Ok(())
}

/// An import no capability of the host serves and no link can carry (an interface exporting an
/// instance, or lending another interface's resource), and a bare function import, fail the scale naming the import, instead of becoming
/// link calls that fail later. (An interface with resources is linked: the resources are the
/// target's, `provider_calls::a_link_carries_the_handles_of_a_providers_resources`.)
#[tokio::test]
async fn a_component_importing_what_nothing_serves_fails_to_scale_naming_it() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let dir = tempfile::tempdir()?;
    let cases = [
        (
            "files",
            r#"(component (import "acme:files/handles@0.2.0-draft" (instance (export "inner" (instance)))))"#,
            "imports `acme:files/handles@0.2.0-draft`, which this host does not serve",
        ),
        ("bare", r#"(component (import "do-it" (func)))"#, "imports `do-it`, which is not an interface"),
        // A function lending another interface's resource: a link's target could not hold it.
        (
            "foreign",
            r#"(component
                (import "acme:io/streams@0.1.0" (instance $io (export "stream" (type (sub resource)))))
                (alias export $io "stream" (type $stream))
                (type $reader (instance
                    (alias outer 1 $stream (type $s))
                    (export "read" (func (param "s" (borrow $s))))))
                (import "acme:files/reader@0.1.0" (instance (type $reader))))"#,
            "imports `acme:files/reader@0.1.0`, which this host does not serve",
        ),
    ];
    for (id, text, expected) in cases {
        let path = dir.path().join(format!("{id}.wasm"));
        std::fs::write(&path, wat::parse_str(text)?)?;
        let err = lattice.scale(host.id(), id, &path.display().to_string(), 1).await?.expect_err("refused");
        assert!(err.contains(expected), "{id}: {err}");
    }
    // A component whose imports are served still scales.
    lattice.scale(host.id(), "echo", guests::ECHO, 1).await?.map_err(anyhow::Error::msg)?;
    host.shutdown(None).await?;
    Ok(())
}

/// A component of wasmCloud 1.x's toolchains may import `wasi:logging/logging` with no version:
/// it is the host's log, as any versioned `wasi:logging` is, not a link call (which, with no
/// link, would fail the call).
#[tokio::test]
async fn an_unversioned_logging_import_is_the_hosts_log() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("logs.wasm");
    std::fs::write(&path, wat::parse_str(UNVERSIONED_LOGGER)?)?;
    lattice.scale(host.id(), "logs", &path.display().to_string(), 1).await?.map_err(anyhow::Error::msg)?;
    let reply = lattice.client().await?.call("logs", "run", vec![]).await?;
    assert!(reply.error.is_none(), "the log call is served by the host: {:?}", reply.error);
    host.shutdown(None).await?;
    Ok(())
}

/// Exports `run`, which logs `hello` (context `ctx`) at `info` through an unversioned
/// `wasi:logging/logging`.
const UNVERSIONED_LOGGER: &str = r#"
(component
  (import "wasi:logging/logging" (instance $logging
    (type $lv (enum "trace" "debug" "info" "warn" "error" "critical"))
    (export "level" (type $l (eq $lv)))
    (export "log" (func (param "level" $l) (param "context" string) (param "message" string)))
  ))
  (core module $mem (memory (export "memory") 1))
  (core instance $mem_i (instantiate $mem))
  (alias core export $mem_i "memory" (core memory $memory))
  (core func $log (canon lower (func $logging "log") (memory $memory)))
  (core module $m
    (import "host" "log" (func $log (param i32 i32 i32 i32 i32)))
    (import "host" "memory" (memory 1))
    (data (i32.const 0) "ctxhello")
    (func (export "run") (call $log (i32.const 2) (i32.const 0) (i32.const 3) (i32.const 3) (i32.const 5))))
  (core instance $i (instantiate $m (with "host" (instance (export "log" (func $log)) (export "memory" (memory $memory))))))
  (func (export "run") (canon lift (core func $i "run")))
)
"#;

/// `component.update` changes the code on the host asked, as on wasmCloud 1.9, not on every
/// host: the spec's reference is written once, when the spec is made, and neither an update
/// nor a start with another reference on another host rewrites it (writing it is how every
/// Trellis host is moved).
#[tokio::test]
async fn an_update_changes_one_host_and_leaves_the_specs_reference() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let a = lattice.start_host(lattice.host_config()).await?;
    let b = lattice.start_host(lattice.host_config()).await?;
    let client = lattice.client().await?;
    lattice.scale(a.id(), "echo", guests::ECHO, 1).await?.map_err(anyhow::Error::msg)?;
    lattice.scale(b.id(), "echo", guests::ECHO, 1).await?.map_err(anyhow::Error::msg)?;
    let copy = tempfile::NamedTempFile::new()?;
    std::fs::copy(guests::ECHO, copy.path())?;
    let new_ref = copy.path().display().to_string();
    let events = lattice.watch_scale_events("echo").await?;
    let ack = lattice.ctl().await?.update_component(a.id(), "echo", &new_ref, None).await.map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded(), "{}", ack.message());
    assert_eq!(events.await??.map_err(anyhow::Error::msg)?.image_ref, new_ref);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(client.inventory(a.id()).await?.components[0].image_ref, new_ref);
    assert_eq!(client.inventory(b.id()).await?.components[0].image_ref, guests::ECHO, "the other host keeps its code");
    let js = async_nats::jetstream::new(lattice.nats().await?);
    let spec = js.get_key_value(format!("LATTICEDATA_{}", lattice.name)).await?.get("COMPONENT_echo").await?.unwrap_or_default();
    let spec: serde_json::Value = serde_json::from_slice(&spec)?;
    assert_eq!(spec["url"], guests::ECHO, "the spec keeps the first reference: {spec}");
    // A start with another reference on a third host leaves it too, and moves nobody.
    let c = lattice.start_host(lattice.host_config()).await?;
    lattice.scale(c.id(), "echo", &new_ref, 1).await?.map_err(anyhow::Error::msg)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let spec = js.get_key_value(format!("LATTICEDATA_{}", lattice.name)).await?.get("COMPONENT_echo").await?.unwrap_or_default();
    let spec: serde_json::Value = serde_json::from_slice(&spec)?;
    assert_eq!(spec["url"], guests::ECHO, "a start elsewhere keeps the spec's reference: {spec}");
    assert_eq!(client.inventory(b.id()).await?.components[0].image_ref, guests::ECHO, "and does not move the other hosts");
    a.shutdown(None).await?;
    b.shutdown(None).await?;
    c.shutdown(None).await?;
    Ok(())
}
