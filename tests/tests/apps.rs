//! Declared applications run by the hosts themselves: wadm's API through the published
//! `wadm-client`, manifests stored as wadm stores them, placement over labelled hosts by
//! weight, daemonscaler, link and config traits, a host joining later, and healing after
//! `kill -9` (of any host, including the app's steward) within seconds, under load.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use trellis_tests::process::HostProcess;
use trellis_tests::apps::{echo_app, nats039, wadm, wait_status};
use trellis_tests::{guests, eventually, init_tracing, trellis_bin, TestLattice};
use wadm_types::api::StatusType;

/// max_instances of `id` on each host, by host id.
async fn placement(lattice: &TestLattice, hosts: &[&str], id: &str) -> anyhow::Result<BTreeMap<String, u32>> {
    let client = lattice.client().await?;
    let mut out = BTreeMap::new();
    for h in hosts {
        let inv = client.inventory(h).await?;
        if let Some(c) = inv.components.iter().find(|c| c.id == id) {
            out.insert((*h).to_string(), c.max_instances);
        }
    }
    Ok(out)
}

#[tokio::test]
async fn the_wadm_api_round_trip_with_the_published_client() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let echo = lattice.push("echo", guests::ECHO).await?;
    let host = lattice.start_host(lattice.machine_config()).await?;
    let client = wadm(&lattice, nats039(&lattice).await?);

    // Put in YAML, then a second version in JSON.
    let v1 = echo_app("demo", "v1", &echo, 2);
    let (name, version) = client.put_manifest(v1.as_bytes()).await?;
    assert_eq!((name.as_str(), version.as_str()), ("demo", "v1"));
    let v2: wadm_types::Manifest = serde_yaml::from_str(&echo_app("demo", "v2", &echo, 3))?;
    let nats = lattice.nats().await?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Content-Type", "application/json");
    let reply = nats
        .request_with_headers(format!("wadm.api.{}.model.put", lattice.name), headers, serde_json::to_vec(&v2)?.into())
        .await?;
    let reply: serde_json::Value = serde_json::from_slice(&reply.payload)?;
    assert_eq!((reply["result"].as_str(), reply["total_versions"].as_u64(), reply["current_version"].as_str()), (Some("newversion"), Some(2), Some("v2")), "{reply}");
    // The same version again is refused; versions are listed in order.
    assert!(client.put_manifest(v1.as_bytes()).await.is_err(), "v1 exists");
    let versions: Vec<(String, bool)> = client.list_versions("demo").await?.into_iter().map(|v| (v.version, v.deployed)).collect();
    assert_eq!(versions, [("v1".to_string(), false), ("v2".to_string(), false)]);
    assert_eq!(client.get_manifest("demo", Some("v1")).await?.metadata.annotations["version"], "v1");

    // Deploy v1: the host runs it with wadm's annotations; status reaches deployed.
    client.deploy_manifest("demo", Some("v1")).await?;
    wait_status(&client, "demo", StatusType::Deployed, Duration::from_secs(15)).await?;
    let inventory = lattice.client().await?.inventory(host.id()).await?;
    let c = inventory.components.iter().find(|c| c.id == "demo-echo").expect("demo-echo runs");
    assert_eq!(c.max_instances, 2);
    let annotations = c.annotations.clone().unwrap_or_default();
    assert_eq!((annotations["wasmcloud.dev/managed-by"].as_str(), annotations["wasmcloud.dev/appspec"].as_str()), ("wadm", "demo"));
    assert_eq!((annotations["wasmcloud.dev/scaler"].as_str(), annotations["wasmcloud.dev/spread_name"].as_str()), ("spreadscaler", "default"));
    let r = lattice.client().await?.call("demo-echo", "trellis:echo/echo.echo", vec![r#""declared""#.into()]).await?;
    assert_eq!(r.results, Some(vec![r#""declared""#.to_string()]));
    let models = client.list_manifests().await?;
    assert_eq!(models.len(), 1);
    assert_eq!((models[0].deployed_version.as_deref(), models[0].detailed_status.info.status_type), (Some("v1"), StatusType::Deployed));

    // Stored as wadm stores it.
    let kv = async_nats::jetstream::new(nats.clone()).get_key_value("wadm_manifests").await?;
    let stored: serde_json::Value = serde_json::from_slice(&kv.get(format!("{}-demo", lattice.name)).await?.expect("stored"))?;
    assert_eq!(stored["deployed_version"], "v1");
    let keys: Vec<&String> = stored["manifests"].as_object().expect("versions").keys().collect();
    assert_eq!(keys, ["v1", "v2"]);
    let names: Vec<String> = serde_json::from_slice(&kv.get(&lattice.name).await?.expect("names"))?;
    assert_eq!(names, ["demo"]);

    // Deploy the newer version: rescaled in place to 3.
    client.deploy_manifest("demo", None).await?;
    let rescaled = eventually(Duration::from_secs(10), || async {
        (placement(&lattice, &[host.id()], "demo-echo").await.ok()?.get(host.id()) == Some(&3)).then_some(())
    })
    .await;
    assert!(rescaled.is_some());

    // Undeploy: gone from the host; delete: gone from the store.
    client.undeploy_manifest("demo").await?;
    let gone = eventually(Duration::from_secs(10), || async { placement(&lattice, &[host.id()], "demo-echo").await.ok()?.is_empty().then_some(()) }).await;
    assert!(gone.is_some(), "undeployed everywhere");
    wait_status(&client, "demo", StatusType::Undeployed, Duration::from_secs(5)).await?;
    assert!(client.delete_manifest("demo", None).await?);
    assert!(matches!(client.get_manifest("demo", None).await, Err(wadm_client::error::ClientError::NotFound(_))));
    assert!(client.list_manifests().await?.is_empty());
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn bad_manifests_and_requests_get_clear_errors_and_the_host_carries_on() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let nats = lattice.nats().await?;
    let ask = |suffix: &str, body: &[u8]| {
        let (nats, subject, body) = (nats.clone(), format!("wadm.api.{}.model.{suffix}", lattice.name), body.to_vec());
        async move {
            let reply = nats.request(subject, body.into()).await?;
            Ok::<serde_json::Value, anyhow::Error>(serde_json::from_slice(&reply.payload)?)
        }
    };
    let hostile = echo_app("bad", "v1", "nats://x:1", 1).replace(
        "        - type: spreadscaler",
        "        - type: link\n          properties:\n            namespace: 5\n            package: p\n            interfaces: [i]\n            target: {name: t}\n        - type: spreadscaler",
    );
    let custom_trait = echo_app("odd", "v1", "nats://x:1", 1).replace("type: spreadscaler", "type: frobscaler").replace("instances: 1", "speed: 11");
    let shared = echo_app("shared", "v1", "nats://x:1", 1).replace("        image: \"nats://x:1\"", "        application: {name: other, component: echo}");
    // A secret naming a policy the manifest does not define.
    let policy = echo_app("pol", "v1", "nats://x:1", 1)
        .replace("spec:\n", "spec:\n  policies:\n    - {name: vault, type: policy.secret.wasmcloud.dev/v1alpha1, properties: {backend: vault}}\n")
        .replace("        image: \"nats://x:1\"", "        image: \"nats://x:1\"\n        secrets: [{name: db, properties: {policy: elsewhere, key: db}}]");
    let bad_id = echo_app("badid", "v1", "nats://x:1", 1).replace("        image: \"nats://x:1\"", "        image: \"nats://x:1\"\n        id: \"a.>\"");
    for (body, expect) in [
        (bad_id.as_bytes(), "NATS subject token"),
        (custom_trait.as_bytes(), "frobscaler"),
        (policy.as_bytes(), "names policy `elsewhere`, which the manifest does not define"),
        (shared.as_bytes(), "shared application"),
        (&b"{not yaml: ["[..], "Unable to parse manifest"),
        (hostile.as_bytes(), "namespace"),
        (echo_app("bad name!", "v1", "nats://x:1", 1).as_bytes(), "invalid characters"),
        (&[b'a'; 1_000_000][..], "Unable to parse manifest"),
    ] {
        let reply = ask("put", body).await?;
        assert_eq!(reply["result"], "error", "{reply}");
        assert!(reply["message"].as_str().unwrap_or_default().contains(expect), "{expect}: {reply}");
    }
    for (suffix, result) in [("deploy.nope", "notfound"), ("status.nope", "notfound"), ("get.nope", "notfound"), ("del.nope", "noop"), ("frobnicate.x", "error")] {
        let reply = ask(suffix, b"").await?;
        assert_eq!(reply["result"], result, "{suffix}: {reply}");
    }
    // A record in the liveness bucket that is not one (a forged or broken writer) is ignored:
    // the host still places an application on itself.
    let live = async_nats::jetstream::new(nats.clone()).get_key_value(format!("TRELLIS_LIVE_{}", lattice.name)).await?;
    live.put("NFORGED", "not a record".into()).await?;
    let echo = lattice.push("echo", guests::ECHO).await?;
    let client = wadm(&lattice, nats039(&lattice).await?);
    client.put_and_deploy_manifest(echo_app("after", "v1", &echo, 1).as_bytes()).await?;
    wait_status(&client, "after", StatusType::Deployed, Duration::from_secs(15)).await?;
    assert!(lattice.client().await?.ping_hosts().await?.iter().any(|h| h.id == host.id()));
    host.shutdown(None).await?;
    Ok(())
}

const SPREAD_APP: &str = r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: shop
  annotations:
    version: v1
spec:
  components:
    - name: echo
      type: component
      properties:
        image: "ECHO"
      traits:
        - type: spreadscaler
          properties:
            instances: 10
            spread:
              - name: east
                requirements: {zone: east}
                weight: 80
              - name: west
                requirements: {zone: west}
                weight: 20
    - name: pinger
      type: component
      properties:
        image: "PINGER"
        config:
          - name: greet
            properties: {greeting: hello}
      traits:
        - type: daemonscaler
          properties:
            instances: 2
            spread:
              - name: east-only
                requirements: {zone: east}
        - type: link
          properties:
            namespace: trellis
            package: echo
            interfaces: [echo]
            target:
              name: echo
    - name: kv
      type: capability
      properties:
        image: "trellis://keyvalue"
      traits:
        - type: daemonscaler
          properties:
            instances: 1
"#;

#[tokio::test]
async fn spread_by_weight_daemons_links_configs_and_a_host_joining_later() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let echo = lattice.push("echo", guests::ECHO).await?;
    let pinger = lattice.push("pinger", guests::PINGER).await?;
    let zone = |z: &str| {
        let mut c = lattice.machine_config();
        c.labels.insert("zone".into(), z.into());
        c
    };
    let (a, b, c) = (lattice.start_host(zone("east")).await?, lattice.start_host(zone("east")).await?, lattice.start_host(zone("west")).await?);
    let client = wadm(&lattice, nats039(&lattice).await?);
    client.put_and_deploy_manifest(SPREAD_APP.replace("ECHO", &echo).replace("PINGER", &pinger).as_bytes()).await?;
    wait_status(&client, "shop", StatusType::Deployed, Duration::from_secs(20)).await?;

    let echo_at = placement(&lattice, &[a.id(), b.id(), c.id()], "shop-echo").await?;
    assert_eq!(echo_at.get(a.id()).copied().unwrap_or(0) + echo_at.get(b.id()).copied().unwrap_or(0), 8, "80% east: {echo_at:?}");
    assert_eq!(echo_at.get(c.id()), Some(&2), "20% west: {echo_at:?}");
    let pinger_at = placement(&lattice, &[a.id(), b.id(), c.id()], "shop-pinger").await?;
    assert_eq!(pinger_at, BTreeMap::from([(a.id().to_string(), 2), (b.id().to_string(), 2)]), "daemonscaler on every east host");
    for h in [&a, &b, &c] {
        let providers = lattice.client().await?.inventory(h.id()).await?.providers;
        assert!(providers.iter().any(|p| p.id == "shop-kv"), "a key-value provider on every host");
    }
    // The link trait and the app's config are in place: pinger reaches echo.
    let ctl = lattice.client().await?;
    let r = ctl.call("shop-pinger", "trellis:echo/pinger.ping", vec![r#""through the link""#.into()]).await?;
    assert_eq!(r.results, Some(vec![r#""through the link""#.to_string()]), "{r:?}");
    let wasmcloud = lattice.ctl().await?;
    let greet = wasmcloud.get_config("shop-greet").await.map_err(anyhow::Error::msg)?.into_data().unwrap_or_default();
    assert_eq!(greet.get("greeting").map(String::as_str), Some("hello"));

    // A west host joins: the west share (2) is spread over both west hosts.
    let d = lattice.start_host(zone("west")).await?;
    let spread = eventually(Duration::from_secs(10), || async {
        let at = placement(&lattice, &[c.id(), d.id()], "shop-echo").await.ok()?;
        (at.get(c.id()) == Some(&1) && at.get(d.id()) == Some(&1)).then_some(())
    })
    .await;
    assert!(spread.is_some(), "{:?}", placement(&lattice, &[c.id(), d.id()], "shop-echo").await?);

    // What an operator scaled by hand is left alone.
    lattice.scale(a.id(), "by-hand", &echo, 1).await?.map_err(anyhow::Error::msg)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(placement(&lattice, &[a.id()], "by-hand").await?.get(a.id()), Some(&1));

    // Undeploy: the app's workloads and its link go, the hand-scaled component stays.
    client.undeploy_manifest("shop").await?;
    let all = [a.id(), b.id(), c.id(), d.id()];
    let gone = eventually(Duration::from_secs(10), || async {
        let e = placement(&lattice, &all, "shop-echo").await.ok()?;
        let p = placement(&lattice, &all, "shop-pinger").await.ok()?;
        (e.is_empty() && p.is_empty()).then_some(())
    })
    .await;
    assert!(gone.is_some());
    for h in all {
        let providers = ctl.inventory(h).await?.providers;
        assert!(providers.iter().all(|p| p.id != "shop-kv"), "the app's providers are stopped");
    }
    let links = wasmcloud.get_links().await.map_err(anyhow::Error::msg)?.into_data().unwrap_or_default();
    assert!(links.iter().all(|l| l.source_id() != "shop-pinger"), "the app's link is deleted");
    assert_eq!(placement(&lattice, &[a.id()], "by-hand").await?.get(a.id()), Some(&1));
    for h in [a, b, c, d] {
        h.shutdown(None).await?;
    }
    Ok(())
}

/// `GET /` on `port`; `true` for a 200 from http-hello.
async fn http_ok(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.ok()?;
        let text = String::from_utf8_lossy(&raw);
        Some(text.starts_with("HTTP/1.1 200") && text.contains("Hello from Trellis"))
    };
    tokio::time::timeout(Duration::from_millis(1500), attempt).await.ok().flatten().unwrap_or(false)
}

/// A `trellis host` process on node `node` with labels `node` and `role`, KV replicas 3.
fn host_process(lattice: &TestLattice, node: usize, role: &str, key: nkeys::KeyPair) -> anyhow::Result<HostProcess> {
    let (node_label, role_label) = (format!("node={node}"), format!("role={role}"));
    HostProcess::start_as(lattice, node, &["--kv-replicas", "3", "--label", &node_label, "--label", &role_label], key)
}

/// Kills the host `victim` picks while calls stream in; returns (seconds until the app runs at
/// full scale again, calls failed in that time).
async fn kill_and_measure(lattice: &TestLattice, hosts: &mut Vec<HostProcess>, victim: usize, total: u32, port: u16) -> anyhow::Result<(f64, usize)> {
    let client = lattice.client().await?.with_timeout(Duration::from_millis(1500));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failed_at = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let caller = {
        let (client, stop, failed_at) = (client.clone(), stop.clone(), failed_at.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let called = client.call("heal-echo", "trellis:echo/echo.echo", vec![r#""x""#.into()]).await.map(|r| r.results.is_some()).unwrap_or(false);
                let served = http_ok(port).await;
                if !called || !served {
                    failed_at.lock().expect("lock").push(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut gone = hosts.remove(victim);
    let killed = Instant::now();
    gone.kill9();
    let ids: Vec<String> = hosts.iter().map(|h| h.id.clone()).collect();
    let restored = eventually(Duration::from_secs(20), || async {
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let at = placement(lattice, &refs, "heal-echo").await.ok()?;
        (at.values().sum::<u32>() == total).then(Instant::now)
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("the app was not back at full scale within 20 s"))?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    caller.await?;
    let failures = failed_at.lock().expect("lock").iter().filter(|t| **t >= killed).count();
    Ok(((restored - killed).as_secs_f64(), failures))
}

const HEAL_APP: &str = r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: heal
  annotations:
    version: v1
spec:
  components:
    - name: echo
      type: component
      properties:
        image: "ECHO"
      traits:
        - type: spreadscaler
          properties:
            instances: 6
            spread: [{name: workers, requirements: {role: worker}}]
    - name: hello
      type: component
      properties:
        image: "HELLO"
      traits:
        - type: spreadscaler
          properties:
            instances: 6
            spread: [{name: workers, requirements: {role: worker}}]
    - name: http
      type: capability
      properties:
        image: "wasmcloud+builtin://http-server"
      traits:
        - type: spreadscaler
          properties:
            instances: 1
            spread: [{name: ingress, requirements: {role: ingress}}]
        - type: link
          properties:
            namespace: wasi
            package: http
            interfaces: [incoming-handler]
            source:
              config:
                - name: listen
                  properties: {address: "127.0.0.1:PORT"}
            target:
              name: hello
"#;

#[tokio::test]
async fn killed_hosts_shares_come_back_within_seconds_under_load() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::cluster(3).await?;
    let echo = lattice.push("heal", guests::ECHO).await?;
    let hello = lattice.push("heal-hello", guests::HTTP_HELLO).await?;
    // Three workers, one on each node, and an ingress host that runs the HTTP server: every
    // request crosses NATS to a worker.
    let mut hosts = Vec::new();
    for node in 0..3 {
        hosts.push(host_process(&lattice, node, "worker", nkeys::KeyPair::new_server())?);
    }
    // The ingress host is never the app's steward (ids are drawn until it is not), so the
    // second kill below is the steward's.
    let view = |id: &str| trellis_host::apps::placement::HostView { id: id.to_string(), labels: BTreeMap::new() };
    let ingress_key = loop {
        let key = nkeys::KeyPair::new_server();
        let mut views: Vec<_> = hosts.iter().map(|h| view(&h.id)).collect();
        views.push(view(&key.public_key()));
        if trellis_host::apps::placement::steward("heal", &views).is_some_and(|s| s.id != key.public_key()) {
            break key;
        }
    };
    let ingress = host_process(&lattice, 0, "ingress", ingress_key)?;
    let ctl = lattice.client().await?;
    let mut ids: Vec<String> = hosts.iter().map(|h| h.id.clone()).collect();
    ids.push(ingress.id.clone());
    let joined = eventually(Duration::from_secs(20), || async {
        let seen: Vec<String> = ctl.ping_hosts().await.ok()?.into_iter().map(|h| h.id).collect();
        ids.iter().all(|id| seen.contains(id)).then_some(())
    })
    .await;
    assert!(joined.is_some(), "four host processes joined");
    let client = wadm(&lattice, nats039(&lattice).await?);
    let port = trellis_tests::free_port();
    let app = HEAL_APP.replace("ECHO", &echo).replace("HELLO", &hello).replace("PORT", &port.to_string());
    client.put_and_deploy_manifest(app.as_bytes()).await?;
    wait_status(&client, "heal", StatusType::Deployed, Duration::from_secs(30)).await?;
    let workers: Vec<&str> = ids[..3].iter().map(String::as_str).collect();
    let at = placement(&lattice, &workers, "heal-echo").await?;
    assert_eq!((at.len(), at.values().sum::<u32>()), (3, 6), "two instances on each worker: {at:?}");
    assert!(eventually(Duration::from_secs(10), || async { http_ok(port).await.then_some(()) }).await.is_some(), "served over HTTP");

    // Kill a worker that is not the app's steward, then the steward.
    let views: Vec<_> = ids.iter().map(|id| view(id)).collect();
    let steward = trellis_host::apps::placement::steward("heal", &views).map(|h| h.id.clone()).expect("a steward");
    assert_ne!(steward, ingress.id);
    let other = hosts.iter().position(|h| h.id != steward).expect("another worker");
    let (secs, failures) = kill_and_measure(&lattice, &mut hosts, other, 6, port).await?;
    eprintln!("worker killed: full scale again after {secs:.2} s, {failures} calls or requests failed");
    assert!(secs <= 5.0, "share restored in {secs:.2} s");
    assert!(failures <= 10, "{failures} calls or requests failed");
    wait_status(&client, "heal", StatusType::Deployed, Duration::from_secs(10)).await?;

    let next = hosts.iter().position(|h| h.id == steward).expect("the steward still runs");
    let (secs, failures) = kill_and_measure(&lattice, &mut hosts, next, 6, port).await?;
    eprintln!("steward killed: full scale again after {secs:.2} s, {failures} calls or requests failed");
    assert!(secs <= 5.0, "share restored in {secs:.2} s");
    assert!(failures <= 10, "{failures} calls or requests failed");
    wait_status(&client, "heal", StatusType::Deployed, Duration::from_secs(10)).await?;
    drop(ingress);
    Ok(())
}

#[tokio::test]
async fn failures_back_off_and_show_in_status_and_a_stopping_host_hands_its_share_over() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let echo = lattice.push("echo", guests::ECHO).await?;
    let a = lattice.start_host(lattice.machine_config()).await?;
    let b = lattice.start_host(lattice.machine_config()).await?;
    let nats = lattice.nats().await?;
    let client = wadm(&lattice, nats039(&lattice).await?);

    // A reference that cannot load: failed, with the reason, retried with backoff (not at
    // every pass).
    let mut failures = nats.subscribe(format!("wasmbus.evt.{}.component_scale_failed", lattice.name)).await?;
    nats.flush().await?;
    client.put_and_deploy_manifest(echo_app("broken", "v1", "nats://missing:1.0", 1).as_bytes()).await?;
    let mut status_updates = client.subscribe_to_status("broken").await?;
    wait_status(&client, "broken", StatusType::Failed, Duration::from_secs(15)).await?;
    let status = client.get_manifest_status("broken").await?;
    assert!(status.info.message.contains("nats://missing:1.0"), "{status:?}");
    let published = tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut status_updates)).await?.expect("a status message");
    let published: wadm_types::api::Status = serde_json::from_slice(&published.payload)?;
    assert_ne!(published.info.status_type, StatusType::Deployed, "published on wadm.status.{{lattice}}.broken");
    let window = Instant::now();
    let mut attempts = 0;
    while window.elapsed() < Duration::from_secs(4) {
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), futures::StreamExt::next(&mut failures)).await {
            attempts += 1;
        }
    }
    assert!(attempts <= 4, "{attempts} attempts in 4 s: backoff (1, 2, 4 s…), not one every pass");
    client.delete_manifest("broken", None).await?;
    // No host matches the spread: failed, saying so.
    let nowhere = echo_app("nowhere", "v1", &echo, 1).replace(
        "            instances: 1\n",
        "            instances: 1\n            spread:\n              - name: mars\n                requirements: {zone: mars}\n",
    );
    client.put_and_deploy_manifest(nowhere.as_bytes()).await?;
    wait_status(&client, "nowhere", StatusType::Failed, Duration::from_secs(10)).await?;
    let status = client.get_manifest_status("nowhere").await?;
    assert!(status.info.message.contains("0/2 eligible hosts"), "{status:?}");
    client.delete_manifest("nowhere", None).await?;

    // Two hosts share four instances; a host told to stop moves its share to the other first.
    client.put_and_deploy_manifest(echo_app("moving", "v1", &echo, 4).as_bytes()).await?;
    wait_status(&client, "moving", StatusType::Deployed, Duration::from_secs(15)).await?;
    assert_eq!(placement(&lattice, &[a.id(), b.id()], "moving-echo").await?.len(), 2, "both hosts serve");
    let b_id = b.id().to_string();
    a.shutdown(None).await?;
    assert_eq!(placement(&lattice, &[&b_id], "moving-echo").await?.get(&b_id), Some(&4), "B runs all four when A is gone");
    b.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn the_trellis_app_commands() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let echo = lattice.push("echo", guests::ECHO).await?;
    let host = lattice.start_host(lattice.machine_config()).await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("app.yaml");
    std::fs::write(&file, echo_app("cli", "v1", &echo, 1))?;
    let app = |args: &[&str]| {
        let out = std::process::Command::new(trellis_bin().expect("binary"))
            .arg("app")
            .args(args)
            .args(["--nats-url", &lattice.url(), "--lattice", &lattice.name])
            .output()
            .expect("run trellis");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, out, err) = app(&["deploy", file.to_str().expect("path")]);
    assert!(ok && out.contains("deployed application cli"), "{out}{err}");
    let deployed = eventually(Duration::from_secs(15), || async { app(&["status", "cli"]).1.starts_with("cli: deployed").then_some(()) }).await;
    assert!(deployed.is_some(), "{}", app(&["status", "cli"]).1);
    let (_, list, _) = app(&["list"]);
    assert!(list.lines().any(|l| l.starts_with("cli ") && l.contains("deployed")), "{list}");
    std::fs::write(&file, echo_app("cli", "v2", &echo, 2))?;
    assert!(app(&["put", file.to_str().expect("path")]).0);
    assert_eq!(app(&["versions", "cli"]).1, "v1 (deployed)\nv2\n");
    // --wait: progress on stderr until the application runs, the outcome on stdout.
    let (ok, out, err) = app(&["deploy", "cli", "--version", "v2", "--wait"]);
    assert!(ok && out.trim_end().ends_with("cli: deployed"), "{out}{err}");
    assert!(err.lines().any(|l| l.starts_with("cli: ")), "progress lines on stderr: {err}");
    // With --json, stdout is one JSON value: the final status.
    let (ok, out, err) = app(&["deploy", "cli", "--version", "v2", "--wait", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    assert!(ok && status["status"]["type"] == "deployed", "{status}");
    // An application no host can run fails, and --wait says why with a failing exit.
    let nowhere = dir.path().join("nowhere.yaml");
    std::fs::write(
        &nowhere,
        echo_app("nowhere", "v1", &echo, 1).replace(
            "            instances: 1\n",
            "            instances: 1\n            spread:\n              - name: mars\n                requirements: {zone: mars}\n",
        ),
    )?;
    let (ok, _, err) = app(&["deploy", nowhere.to_str().expect("path"), "--wait", "--wait-for", "20s"]);
    assert!(!ok && err.contains("application `nowhere` failed") && err.contains("eligible hosts"), "{err}");
    assert!(app(&["del", "nowhere"]).0);
    let (ok, manifest, _) = app(&["get", "cli", "--version", "v2"]);
    assert!(ok && manifest.contains("\"instances\": 2"), "{manifest}");
    assert!(app(&["undeploy", "cli"]).0);
    assert!(app(&["del", "cli"]).0);
    let (ok, _, err) = app(&["status", "cli"]);
    assert!(!ok && err.contains("no application named `cli`"), "{err}");
    let (ok, _, err) = app(&["deploy", "/nonexistent.yaml"]);
    assert!(!ok && err.contains("cannot read /nonexistent.yaml"), "{err}");
    host.shutdown(None).await?;
    Ok(())
}
