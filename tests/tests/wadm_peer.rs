//! A real wadm 0.21 (the published crate, run by `peers/wadm`) beside Trellis hosts: every event
//! a Trellis host publishes parses with wadm's own event types, and wadm deploys, heals and
//! undeploys an app on Trellis hosts that run with `--no-apps`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::time::Duration;

use futures::StreamExt as _;
use trellis_host::permission::kind::BuiltinImages;
use trellis_messages::link::Link;
use trellis_messages::provider::StartProviderCommand;
use trellis_tests::apps::{nats039, wadm, wait_status};
use trellis_tests::raw_http::{exchange, request};
use trellis_tests::{eventually, free_port, init_tracing, wasmcloud_example, TestLattice, WadmProcess};
use wadm_types::api::StatusType;

/// The event types wadm reads (its `Event` enum, less its own manifest events).
const WADM_READS: &[&str] = &[
    "component_scaled",
    "component_scale_failed",
    "provider_started",
    "provider_stopped",
    "provider_start_failed",
    "health_check_passed",
    "health_check_failed",
    "health_check_status",
    "host_started",
    "host_stopped",
    "host_heartbeat",
    "linkdef_set",
    "linkdef_deleted",
    "config_set",
    "config_deleted",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_a_trellis_host_publishes_parses_with_wadms_own_types() -> anyhow::Result<()> {
    init_tracing();
    let checker = trellis_tests::wadm_events_binary()?;
    let lattice = TestLattice::new().await?;
    let nats = lattice.nats().await?;
    let mut events = nats.subscribe(format!("wasmbus.evt.{}.>", lattice.name)).await?;
    let mut config = lattice.host_config();
    config.providers = trellis_tests::providers::settings();
    let host = lattice.start_host(config).await?;
    let client = lattice.client().await?.with_timeout(Duration::from_secs(10));
    let ctl = lattice.ctl().await?;
    // Health that passes, stays, then fails: a process that never speaks NATS, whose health
    // checks the test answers (healthy twice, then not).
    let dir = tempfile::tempdir()?;
    let silent = trellis_tests::providers::script(dir.path(), "silent", "exec sleep 1000");
    let mut checks = nats.subscribe(format!("wasmbus.rpc.{}.odd.health", lattice.name)).await?;
    nats.flush().await?;
    let responder = {
        let nats = nats.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while let Some(check) = checks.next().await {
                n += 1;
                let body = if n <= 2 { r#"{"healthy":true,"message":null}"# } else { r#"{"healthy":false,"message":"down"}"# };
                if let Some(reply) = check.reply {
                    let _ = nats.publish(reply, body.into()).await;
                }
            }
        })
    };
    let ack = ctl.start_provider(host.id(), &silent.display().to_string(), "odd", None, vec![]).await.map_err(anyhow::Error::msg)?;
    anyhow::ensure!(ack.succeeded(), "{}", ack.message());
    // Components: scaled up, failed, scaled to zero.
    lattice.scale(host.id(), "echo", trellis_tests::guests::ECHO, 2).await?.map_err(anyhow::Error::msg)?;
    let _ = lattice.scale(host.id(), "broken", "file:///does/not/exist.wasm", 1).await?;
    lattice.scale(host.id(), "echo", trellis_tests::guests::ECHO, 0).await?.map_err(anyhow::Error::msg)?;
    // Providers: the SDK test provider (started, health), one that cannot start, then stopped.
    let provider = trellis_tests::test_provider()?;
    let ack = ctl.start_provider(host.id(), &provider.display().to_string(), "tp", None, vec![]).await.map_err(anyhow::Error::msg)?;
    anyhow::ensure!(ack.succeeded(), "{}", ack.message());
    let _ = client.start_provider(host.id(), &StartProviderCommand { provider_id: "nope".into(), provider_ref: "trellis://no-such-builtin".into(), ..Default::default() }).await;
    // Links and config.
    client.put_config("cfg", &HashMap::from([("k".to_string(), "v".to_string())])).await?;
    client.put_link(&Link::new("echo", "tp", "default", "wasi", "keyvalue", &["store"]).with_target_config(&["cfg"])).await?;
    client.delete_link("echo", "default", "wasi", "keyvalue").await?;
    client.delete_config("cfg").await?;
    // Health: wait for the provider's first check, then stop it and the host.
    let mut seen: Vec<Vec<u8>> = Vec::new();
    let mut types: BTreeMap<String, usize> = BTreeMap::new();
    let take = |msg: async_nats::Message, seen: &mut Vec<Vec<u8>>, types: &mut BTreeMap<String, usize>| {
        let ty = serde_json::from_slice::<serde_json::Value>(&msg.payload).ok().and_then(|v| v["type"].as_str().map(str::to_string)).unwrap_or_default();
        *types.entry(ty.rsplit('.').next().unwrap_or_default().to_string()).or_default() += 1;
        seen.push(msg.payload.to_vec());
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let health = ["health_check_passed", "health_check_status", "health_check_failed"];
    while !health.iter().all(|t| types.contains_key(*t)) && tokio::time::Instant::now() < deadline {
        if let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(500), events.next()).await {
            take(msg, &mut seen, &mut types);
        }
    }
    responder.abort();
    for provider in ["tp", "odd"] {
        let ack = ctl.stop_provider(host.id(), provider).await.map_err(anyhow::Error::msg)?;
        anyhow::ensure!(ack.succeeded(), "{}", ack.message());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    host.shutdown(None).await?;
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(1), events.next()).await {
        take(msg, &mut seen, &mut types);
    }
    // Every event through wadm's own parser.
    let mut child = std::process::Command::new(&checker).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn()?;
    {
        let mut stdin = child.stdin.take().ok_or_else(|| anyhow::anyhow!("stdin"))?;
        for payload in &seen {
            stdin.write_all(payload)?;
            stdin.write_all(b"\n")?;
        }
    }
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "wadm-events failed: {}", String::from_utf8_lossy(&out.stderr));
    let answers = String::from_utf8_lossy(&out.stdout);
    assert_eq!(answers.lines().count(), seen.len(), "one answer per event:\n{answers}");
    assert!(!answers.lines().any(|l| l.starts_with("err ?")), "every event is a CloudEvent:\n{answers}");
    let failed: Vec<&str> = answers
        .lines()
        .filter(|l| l.starts_with("err ") && WADM_READS.iter().any(|t| l.contains(&format!("com.wasmcloud.lattice.{t}:"))))
        .collect();
    assert!(failed.is_empty(), "wadm cannot read these Trellis events:\n{}", failed.join("\n"));
    let parsed = answers.lines().filter(|l| l.starts_with("ok ")).count();
    for ty in WADM_READS {
        assert!(types.contains_key(*ty), "no `{ty}` event was published to check (saw {types:?})");
    }
    eprintln!("{parsed} events parsed by wadm; types seen: {types:?}");
    Ok(())
}

/// `method path` on `port`: (status, body as text).
async fn http(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let (status, body) = exchange(port, &request("GET", path, None)).await?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_wadm_deploys_heals_and_undeploys_an_app_on_trellis_hosts() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    // Hosts that leave applications to the wadm on the lattice, and run wasmCloud's HTTP server
    // image as the built-in.
    let mut hosts = Vec::new();
    for _ in 0..2 {
        let mut config = lattice.host_config();
        config.apps = false;
        config.providers.builtin_images = BuiltinImages::parse(&["wasmcloud"])?;
        hosts.push(lattice.start_host(config).await?);
    }
    let _wadm = WadmProcess::start(&lattice.url())?;
    let hello = lattice.push("http-hello-world", wasmcloud_example("http-hello-world").join("http-hello-world.wasm").to_str().unwrap_or_default()).await?;
    let port = free_port();
    let mut yaml = std::fs::read_to_string(wasmcloud_example("http-hello-world").join("wadm.yaml"))?;
    for (from, to) in [("file://./build/http_hello_world_s.wasm".to_string(), hello.clone()), ("0.0.0.0:8000".to_string(), format!("127.0.0.1:{port}"))] {
        anyhow::ensure!(yaml.contains(&from), "`{from}` is not in the example's wadm.yaml");
        yaml = yaml.replace(&from, &to);
    }
    let client = wadm(&lattice, nats039(&lattice).await?);
    // wadm answers its API once it is up.
    let put = eventually(Duration::from_secs(30), || async { client.put_and_deploy_manifest(yaml.as_bytes()).await.ok() }).await;
    anyhow::ensure!(put.is_some(), "wadm never took the manifest: {:?}", client.put_and_deploy_manifest(yaml.as_bytes()).await);
    wait_status(&client, "rust-hello-world", StatusType::Deployed, Duration::from_secs(60)).await?;
    let answered = eventually(Duration::from_secs(30), || async { http(port, "/").await.ok().filter(|(s, _)| *s == 200) }).await;
    let Some((_, body)) = answered else { anyhow::bail!("the app never answered: {:?}", http(port, "/").await) };
    assert!(body.contains("Hello"), "{body}");

    // Healing: the component stopped behind wadm's back comes back.
    let ctl = lattice.ctl().await?;
    let inventory = |id: String| {
        let ctl = ctl.clone();
        async move { ctl.get_host_inventory(&id).await.ok().and_then(|r| r.into_data()) }
    };
    let mut running_on = None;
    for host in &hosts {
        if let Some(inv) = inventory(host.id().to_string()).await {
            if let Some(c) = inv.components().iter().find(|c| c.image_ref() == hello) {
                running_on = Some((host.id().to_string(), c.id().to_string()));
            }
        }
    }
    let (host_id, component_id) = running_on.ok_or_else(|| anyhow::anyhow!("wadm's component runs on no host"))?;
    let ack = ctl.scale_component(&host_id, &hello, &component_id, 0, None, vec![], false).await.map_err(anyhow::Error::msg)?;
    anyhow::ensure!(ack.succeeded(), "{}", ack.message());
    let healed = eventually(Duration::from_secs(60), || async { http(port, "/").await.ok().filter(|(s, _)| *s == 200) }).await;
    anyhow::ensure!(healed.is_some(), "wadm did not bring the component back: {:?}", client.get_manifest_status("rust-hello-world").await);

    // Undeploy: the component and the HTTP server go.
    client.undeploy_manifest("rust-hello-world").await?;
    let gone = eventually(Duration::from_secs(60), || async {
        let mut left = 0;
        for host in &hosts {
            if let Some(inv) = inventory(host.id().to_string()).await {
                left += inv.components().len() + inv.providers().len();
            }
        }
        (left == 0).then_some(())
    })
    .await;
    anyhow::ensure!(gone.is_some(), "wadm's undeploy left workloads running");
    for host in hosts {
        host.shutdown(None).await?;
    }
    Ok(())
}

/// Trellis hosts that manage applications themselves step aside when a wadm starts managing
/// the lattice (they leave wadm's API and stop reconciling: never two managers on one
/// lattice), wadm adopts the app they ran, and when the wadm goes they take it up again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trellis_hosts_leave_the_apps_to_a_wadm_that_appears_and_take_them_back_when_it_goes() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let mut events = trellis_tests::providers::Events::on(&lattice).await?;
    let mut hosts = Vec::new();
    for _ in 0..2 {
        let mut config = lattice.host_config();
        config.providers.builtin_images = BuiltinImages::parse(&["wasmcloud"])?;
        hosts.push(lattice.start_host(config).await?);
    }
    let hello = lattice.push("http-hello-world", wasmcloud_example("http-hello-world").join("http-hello-world.wasm").to_str().unwrap_or_default()).await?;
    let port = free_port();
    let mut yaml = std::fs::read_to_string(wasmcloud_example("http-hello-world").join("wadm.yaml"))?;
    for (from, to) in [("file://./build/http_hello_world_s.wasm".to_string(), hello.clone()), ("0.0.0.0:8000".to_string(), format!("127.0.0.1:{port}"))] {
        yaml = yaml.replace(&from, &to);
    }
    let client = wadm(&lattice, nats039(&lattice).await?);
    client.put_and_deploy_manifest(yaml.as_bytes()).await?;
    wait_status(&client, "rust-hello-world", StatusType::Deployed, Duration::from_secs(30)).await?;
    let answers = || async { eventually(Duration::from_secs(30), || async { http(port, "/").await.ok().filter(|(s, _)| *s == 200) }).await.is_some() };
    anyhow::ensure!(answers().await, "the Trellis-managed app never answered");

    // A wadm appears: both hosts say they leave the applications to it.
    let wadm_process = WadmProcess::start(&lattice.url())?;
    let mut left = std::collections::BTreeSet::new();
    while left.len() < hosts.len() {
        let data = events.expect("apps_left_to_wadm", Duration::from_secs(40), |_| true).await;
        left.insert(data["host_id"].as_str().unwrap_or_default().to_string());
    }
    // wadm now answers the API alone (an operation neither knows gets wadm's answer every
    // time, never a Trellis host's) and has adopted the app; it still answers.
    let nats = lattice.nats().await?;
    let unknown = format!("wadm.api.{}.model.frobnicate", lattice.name);
    for _ in 0..10 {
        let reply = nats.request(unknown.clone(), "".into()).await?;
        let text = String::from_utf8_lossy(&reply.payload).to_string();
        assert!(text.contains("Unsupported subject"), "answered by a Trellis host while a wadm manages the lattice: {text}");
    }
    // wadm now answers the API alone and has adopted the app; it still answers.
    wait_status(&client, "rust-hello-world", StatusType::Deployed, Duration::from_secs(60)).await?;
    anyhow::ensure!(answers().await, "the app stopped answering under wadm");

    // The wadm goes: the hosts take the applications back.
    drop(wadm_process);
    let mut resumed = std::collections::BTreeSet::new();
    while resumed.len() < hosts.len() {
        let data = events.expect("apps_resumed", Duration::from_secs(90), |_| true).await;
        resumed.insert(data["host_id"].as_str().unwrap_or_default().to_string());
    }
    wait_status(&client, "rust-hello-world", StatusType::Deployed, Duration::from_secs(30)).await?;
    anyhow::ensure!(answers().await, "the app stopped answering when the hosts took it back");
    let reply = nats.request(unknown.clone(), "".into()).await?;
    let text = String::from_utf8_lossy(&reply.payload).to_string();
    assert!(text.contains("unknown application API operation"), "the hosts answer the API again: {text}");
    for host in hosts {
        host.shutdown(None).await?;
    }
    Ok(())
}

/// What a host that stepped aside does not do: heal the applications (a component stopped
/// behind its back stays stopped), take over the share of a host that stops, or answer wadm's
/// API. The sign of a wadm is made by hand here (a pull waiting on wadm's consumer, as wadm
/// keeps one), so no wadm heals either; when the pull goes, the hosts take the applications
/// back and heal them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_left_the_apps_to_a_wadm_neither_heals_them_nor_takes_over_a_share() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let mut events = trellis_tests::providers::Events::on(&lattice).await?;
    let a = lattice.start_host(lattice.host_config()).await?;
    let b = lattice.start_host(lattice.host_config()).await?;
    let echo = lattice.push("echo", trellis_tests::guests::ECHO).await?;
    let client = wadm(&lattice, nats039(&lattice).await?);
    client.put_and_deploy_manifest(trellis_tests::apps::echo_app("steady", "v1", &echo, 4).as_bytes()).await?;
    wait_status(&client, "steady", StatusType::Deployed, Duration::from_secs(30)).await?;
    let trellis = lattice.client().await?;
    let instances = |host: String| {
        let trellis = trellis.clone();
        async move { trellis.inventory(&host).await.ok().map_or(0, |inv| inv.components.iter().filter(|c| c.id == "steady-echo").map(|c| c.max_instances).sum::<u32>()) }
    };
    let total = || async { instances(a.id().to_string()).await + instances(b.id().to_string()).await };
    anyhow::ensure!(eventually(Duration::from_secs(20), || async { (total().await == 4).then_some(()) }).await.is_some(), "4 instances: {}", total().await);

    // A wadm's sign: a pull waiting on its consumer of its stream.
    let js = async_nats::jetstream::new(lattice.nats().await?);
    let stream = js
        .create_stream(async_nats::jetstream::stream::Config { name: "wadm_event_consumer".into(), subjects: vec![format!("fake-wadm.{}.>", lattice.name)], ..Default::default() })
        .await?;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config { durable_name: Some(format!("wadm_event_consumer-{}", lattice.name)), ..Default::default() })
        .await?;
    let mut pulls = consumer.stream().expires(Duration::from_secs(2)).messages().await?;
    let puller = tokio::spawn(async move { while pulls.next().await.is_some() {} });
    for _ in 0..2 {
        events.expect("apps_left_to_wadm", Duration::from_secs(20), |_| true).await;
    }
    // wadm's API: nobody in the queue group now.
    let nats = lattice.nats().await?;
    let asked = nats.request(format!("wadm.api.{}.model.list", lattice.name), "".into()).await;
    assert!(asked.is_err_and(|e| e.kind() == async_nats::RequestErrorKind::NoResponders), "a host that stepped aside answered wadm's API");

    // Stopped behind their backs on `a`: not healed. `b` stops: its share is not taken over.
    let on_a = instances(a.id().to_string()).await;
    lattice.scale(a.id(), "steady-echo", &echo, 0).await?.map_err(anyhow::Error::msg)?;
    let on_b = instances(b.id().to_string()).await;
    b.shutdown(None).await?;
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(instances(a.id().to_string()).await, 0, "a host that left the apps to a wadm healed one (it had {on_a}, b had {on_b})");

    // The sign goes: `a` takes the applications back and heals the app on itself.
    puller.abort();
    events.expect("apps_resumed", Duration::from_secs(40), |d| d["host_id"] == a.id()).await;
    let healed = eventually(Duration::from_secs(30), || async { (instances(a.id().to_string()).await == 4).then_some(()) }).await;
    anyhow::ensure!(healed.is_some(), "not healed once the host took the apps back: {}", instances(a.id().to_string()).await);
    a.shutdown(None).await?;
    Ok(())
}
