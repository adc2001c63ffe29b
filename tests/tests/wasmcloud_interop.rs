//! Trellis beside wasmCloud's own host on one lattice: the host library of wasmCloud 1.9.2
//! (`wasmcloud-host` 0.27.1, `interop/wasmcloud-host`), driven by wasmCloud's published
//! control-interface client.
//!
//! Building wasmCloud's host takes about ten minutes, so these tests are off the default path:
//! `scripts/interop` builds it and runs them with `TRELLIS_WASMCLOUD_HOST` naming the binary.
//! Without that variable each test prints that it was skipped and passes.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;
use std::time::Duration;

use trellis_tests::wasmcloud_host::WasmcloudHost;

#[path = "wasmcloud_interop/migration.rs"]
mod migration;
#[path = "wasmcloud_interop/wash.rs"]
mod wash;
use trellis_tests::{guests, eventually, init_tracing, trellis_bin, Registry, TestLattice};

fn link(source: &str, target: &str, name: &str) -> wasmcloud_control_interface::Link {
    wasmcloud_control_interface::Link::builder()
        .source_id(source)
        .target(target)
        .name(name)
        .wit_namespace("trellis")
        .wit_package("echo")
        .interfaces(vec!["echo".into()])
        .build()
        .expect("link")
}

/// The names of the links `link.get` returns, asked `rounds` times (the queue group picks
/// whichever host answers).
async fn link_names(ctl: &wasmcloud_control_interface::Client) -> anyhow::Result<BTreeSet<String>> {
    let links = ctl.get_links().await.map_err(anyhow::Error::msg)?;
    anyhow::ensure!(links.succeeded(), "{}", links.message());
    Ok(links.into_data().unwrap_or_default().iter().map(|l| l.name().to_string()).collect())
}

#[tokio::test]
async fn links_and_config_written_by_either_runtime_are_read_by_the_other() -> anyhow::Result<()> {
    let Some(bin) = WasmcloudHost::binary() else { return Ok(()) };
    init_tracing();
    let lattice = TestLattice::new().await?;
    let trellis = lattice.start_host(lattice.host_config()).await?;
    let wasmcloud = WasmcloudHost::start(&bin, &lattice, 0, &[trellis.id()], "").await?;
    let ctl = lattice.ctl().await?;
    let hosts = ctl.get_hosts().await.map_err(anyhow::Error::msg)?;
    assert_eq!(hosts.len(), 2, "both runtimes answer host.ping");

    // link.put and config.put are answered by one host of a queue group both runtimes join:
    // twenty of each land on both, each writing the KV layout the other reads.
    let names: BTreeSet<String> = (0..20).map(|i| format!("l{i}")).collect();
    for name in &names {
        let r = ctl.put_link(link("pinger", "echo", name)).await.map_err(anyhow::Error::msg)?;
        assert!(r.succeeded(), "{}", r.message());
        let r = ctl
            .put_config(&format!("cfg-{name}"), HashMap::from([("who".to_string(), name.clone())]))
            .await
            .map_err(anyhow::Error::msg)?;
        assert!(r.succeeded(), "{}", r.message());
    }
    // Every answer (from whichever host) has all of them, once both have caught up.
    let all = eventually(Duration::from_secs(10), || async {
        for _ in 0..6 {
            if link_names(&ctl).await.ok()? != names {
                return None;
            }
        }
        Some(())
    })
    .await;
    assert!(all.is_some(), "link.get from either runtime returns every link");

    // Only wasmCloud left: it answers with every link and config, Trellis's writes included.
    trellis.shutdown(None).await?;
    assert_eq!(link_names(&ctl).await?, names, "wasmCloud reads the links Trellis wrote");
    for name in &names {
        let config = ctl.get_config(&format!("cfg-{name}")).await.map_err(anyhow::Error::msg)?;
        assert_eq!(config.into_data().unwrap_or_default().get("who"), Some(name), "config {name} through wasmCloud");
    }
    // Only a new Trellis host left: the same, wasmCloud's writes included.
    let trellis = lattice.start_host(lattice.host_config()).await?;
    wasmcloud.stop();
    assert_eq!(link_names(&ctl).await?, names, "Trellis reads the links wasmCloud wrote");
    for name in &names {
        let config = ctl.get_config(&format!("cfg-{name}")).await.map_err(anyhow::Error::msg)?;
        assert_eq!(config.into_data().unwrap_or_default().get("who"), Some(name), "config {name} through Trellis");
    }
    trellis.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn wasmcloud_runs_what_trellis_pushes_and_both_keep_one_component_spec() -> anyhow::Result<()> {
    let Some(bin) = WasmcloudHost::binary() else { return Ok(()) };
    init_tracing();
    let registry = Registry::start(&[]).await?;
    let reference = format!("{}/interop/echo:1.0", registry.address());
    let out = Command::new(trellis_bin()?).args(["push", "--insecure", &reference, guests::ECHO]).output()?;
    assert!(out.status.success(), "push: {}", String::from_utf8_lossy(&out.stderr));

    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.wasm.oci.insecure = vec![registry.address()];
    let trellis = lattice.start_host(config).await?;
    let wasmcloud = WasmcloudHost::start(&bin, &lattice, 0, &[trellis.id()], &registry.address()).await?;

    // wasmCloud's host pulls and runs Trellis's push; its events parse as Trellis's types.
    let scaled = lattice.scale(&wasmcloud.id, "echo", &reference, 2).await?.map_err(anyhow::Error::msg)?;
    assert_eq!((scaled.host_id.as_str(), scaled.image_ref.as_str()), (wasmcloud.id.as_str(), reference.as_str()));
    // Trellis runs the same reference under the same id.
    lattice.scale(trellis.id(), "echo", &reference, 2).await?.map_err(anyhow::Error::msg)?;
    let ctl = lattice.ctl().await?;
    for host in [wasmcloud.id.as_str(), trellis.id()] {
        let inventory = ctl.get_host_inventory(host).await.map_err(anyhow::Error::msg)?.into_data().expect("inventory");
        let ids: Vec<_> = inventory.components().iter().map(|c| c.id().to_string()).collect();
        assert_eq!(ids, ["echo"], "inventory of {host}");
    }
    // One ComponentSpecification in KV, written by both, with the reference as its url.
    let nats = lattice.nats().await?;
    let kv = async_nats::jetstream::new(nats).get_key_value(format!("LATTICEDATA_{}", lattice.name)).await?;
    let spec = kv.get("COMPONENT_echo").await?.expect("the spec");
    let spec: serde_json::Value = serde_json::from_slice(&spec)?;
    assert_eq!(spec["url"], reference, "{spec}");
    // A link put now (by either) reaches the spec both follow.
    let r = ctl.put_link(link("echo", "other", "default")).await.map_err(anyhow::Error::msg)?;
    assert!(r.succeeded(), "{}", r.message());
    let spec: serde_json::Value = serde_json::from_slice(&kv.get("COMPONENT_echo").await?.expect("the spec"))?;
    assert_eq!((spec["url"].as_str(), spec["links"].as_array().map(Vec::len)), (Some(reference.as_str()), Some(1)), "{spec}");

    // A component signed by `trellis sign` is accepted by wasmCloud's host, which reports its
    // claims; a Trellis host that trusts only that issuer runs it too.
    let account = nkeys::KeyPair::new_account();
    let dir = tempfile::tempdir()?;
    let signed_file = dir.path().join("signed.wasm");
    let out = Command::new(trellis_bin()?)
        .args(["sign", guests::ECHO, signed_file.to_str().expect("path"), "--issuer-seed", &account.seed()?, "--name", "signed-echo"])
        .output()?;
    assert!(out.status.success(), "sign: {}", String::from_utf8_lossy(&out.stderr));
    let signed = format!("{}/interop/signed:1.0", registry.address());
    let out = Command::new(trellis_bin()?).args(["push", "--insecure", &signed, signed_file.to_str().expect("path")]).output()?;
    assert!(out.status.success(), "push: {}", String::from_utf8_lossy(&out.stderr));
    let scaled = lattice.scale(&wasmcloud.id, "signed", &signed, 1).await?.map_err(anyhow::Error::msg)?;
    let claims = scaled.claims.expect("wasmCloud reports the claims");
    assert_eq!((claims["issuer"].as_str(), claims["name"].as_str()), (Some(account.public_key().as_str()), Some("signed-echo")), "{claims}");
    let mut strict = lattice.host_config();
    strict.wasm.oci.insecure = vec![registry.address()];
    strict.trust = trellis_host::trust::TrustPolicy { require_signed: true, trusted_issuers: vec![account.public_key()] };
    let strict = lattice.start_host(strict).await?;
    lattice.scale(strict.id(), "signed", &signed, 1).await?.map_err(anyhow::Error::msg)?;
    let err = lattice.scale(strict.id(), "unsigned", &reference, 1).await?.expect_err("unsigned refused");
    assert!(err.contains("not signed"), "{err}");
    strict.shutdown(None).await?;

    // A scale wasmCloud refuses ends in its component_scale_failed, which Trellis's tools read.
    let missing = format!("{}/interop/nope:1.0", registry.address());
    let err = lattice.scale(&wasmcloud.id, "nope", &missing, 1).await?.expect_err("missing");
    assert!(!err.is_empty());
    wasmcloud.stop();
    trellis.shutdown(None).await?;
    Ok(())
}

/// Pushes `file` to `registry` as `interop/{name}:1.0`; the reference.
fn push(registry: &Registry, name: &str, file: &str) -> anyhow::Result<String> {
    registry.push(name, file)
}

/// `pinger.ping(message)` on the Trellis component `id`.
async fn ping(client: &trellis_messages::Client, id: &str, message: &str) -> anyhow::Result<String> {
    let reply = client.call(id, "trellis:echo/pinger.ping", vec![serde_json::to_string(message)?]).await?;
    let result = reply.results.clone().and_then(|r| r.into_iter().next()).ok_or_else(|| anyhow::anyhow!("{reply:?}"))?;
    Ok(serde_json::from_str(&result)?)
}

#[tokio::test]
async fn calls_cross_host_kinds_both_ways() -> anyhow::Result<()> {
    use trellis_messages::link::Link;
    use trellis_tests::providers::{records, settings, start_provider, wait_record};
    let Some(bin) = WasmcloudHost::binary() else { return Ok(()) };
    init_tracing();
    let registry = Registry::start(&[]).await?;
    let echo = push(&registry, "echo", guests::ECHO)?;
    let pinger = push(&registry, "pinger", guests::PINGER)?;
    let hello = push(&registry, "hello", guests::HTTP_HELLO)?;
    let msg_echo = push(&registry, "msg-echo", guests::MSG_ECHO)?;

    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.wasm.oci.insecure = vec![registry.address()];
    config.providers = settings();
    let trellis = lattice.start_host(config).await?;
    let wasmcloud = WasmcloudHost::start(&bin, &lattice, 0, &[trellis.id()], &registry.address()).await?;
    let client = lattice.client().await?.with_timeout(Duration::from_secs(30));
    let scale = |host: String, id: &'static str, reference: String| {
        let lattice = &lattice;
        async move { lattice.scale(&host, id, &reference, 4).await?.map_err(anyhow::Error::msg).map(|_| ()) }
    };

    // Trellis → wasmCloud: a component on Trellis calls, through its link, a component only
    // wasmCloud's host runs (no Trellis host answers Trellis's request/reply, so over wRPC).
    scale(wasmcloud.id.clone(), "w-echo", echo.clone()).await?;
    scale(trellis.id().to_string(), "t-pinger", pinger.clone()).await?;
    client.put_link(&Link::new("t-pinger", "w-echo", "default", "trellis", "echo", &["echo"])).await?;
    let answer = eventually(Duration::from_secs(20), || {
        let client = client.clone();
        async move { ping(&client, "t-pinger", "to wasmCloud").await.ok() }
    })
    .await;
    assert_eq!(answer.as_deref(), Some("to wasmCloud"), "Trellis reached wasmCloud's component");
    for i in 0..20 {
        assert_eq!(ping(&client, "t-pinger", &format!("again {i}")).await?, format!("again {i}"));
    }
    // Gone from wasmCloud too: the call fails saying so, at once.
    lattice.scale(&wasmcloud.id, "w-echo", &echo, 0).await?.map_err(anyhow::Error::msg)?;
    let gone = eventually(Duration::from_secs(15), || {
        let client = client.clone();
        async move {
            let reply = client.call("t-pinger", "trellis:echo/pinger.ping", vec!["\"x\"".into()]).await.ok()?;
            reply.error.filter(|e| e.contains("not running on any host"))
        }
    })
    .await;
    assert!(gone.is_some(), "a call to a component no host runs fails naming it");

    // wasmCloud → Trellis: a component on wasmCloud's host calls one only Trellis runs.
    scale(wasmcloud.id.clone(), "w-pinger", pinger.clone()).await?;
    scale(trellis.id().to_string(), "t-echo", echo.clone()).await?;
    client.put_link(&Link::new("w-pinger", "t-echo", "default", "trellis", "echo", &["echo"])).await?;
    let wrpc = trellis_host::wasm::transport::wrpc::Wrpc::new(
        lattice.nats().await?,
        &lattice.name,
        wasmtime::Engine::default(),
        4,
        Duration::from_secs(5),
        trellis_host::Limits::default().body_bounds(),
    );
    let string = wasmtime::component::Type::String;
    let answer = eventually(Duration::from_secs(20), || {
        let (wrpc, string) = (wrpc.clone(), string.clone());
        async move {
            let params = [wasmtime::component::Val::String("to Trellis".into())];
            let out = wrpc
                .call("test", "default", "w-pinger", "trellis:echo/pinger@0.1.0", "ping", &params, &[string.clone()], &[string], Duration::from_secs(10))
                .await;
            match out {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::debug!(error = %e, "w-pinger not answering yet");
                    None
                }
            }
        }
    })
    .await;
    assert_eq!(answer, Some(vec![wasmtime::component::Val::String("to Trellis".into())]), "wasmCloud reached Trellis's component");

    // Trellis's HTTP server routes a request to a component only wasmCloud's host runs
    // (wrpc:http/incoming-handler, as wasmCloud's HTTP server provider calls it).
    start_provider(&client, trellis.id(), "http", "wasmcloud+builtin://http-server").await?;
    scale(wasmcloud.id.clone(), "w-hello", hello.clone()).await?;
    let port = trellis_tests::free_port();
    client.put_config("w-hello-http", &HashMap::from([("address".to_string(), format!("127.0.0.1:{port}"))])).await?;
    client.put_link(&Link::new("http", "w-hello", "default", "wasi", "http", &["incoming-handler"]).with_source_config(&["w-hello-http"])).await?;
    let served = eventually(Duration::from_secs(20), || async move {
        let answer = trellis_tests::http_get(port, "/hi").await;
        tracing::debug!(?answer, "GET /hi");
        answer.ok().filter(|(s, _)| *s == 200)
    })
    .await;
    let last = trellis_tests::http_get(port, "/hi").await;
    let (_, response) = served.unwrap_or_else(|| panic!("the request reached wasmCloud's component: {last:?}"));
    assert_eq!(response, "Hello from Trellis\n");

    // Trellis's messaging provider delivers to a component only wasmCloud's host runs; it
    // answers through its consumer link to an SDK provider (on the Trellis host), which records it.
    let dir = tempfile::tempdir()?;
    let record = dir.path().join("record.jsonl");
    client.put_config("tp-settings", &HashMap::from([("record".to_string(), record.display().to_string())])).await?;
    let ctl = lattice.ctl().await?;
    let provider = trellis_tests::test_provider()?;
    let ack = ctl.start_provider(trellis.id(), &provider.display().to_string(), "tp", None, vec!["tp-settings".into()]).await.map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded(), "{}", ack.message());
    wait_record(&record, "init", |r| r["event"] == "init").await;
    start_provider(&client, trellis.id(), "msg", "wasmcloud+builtin://messaging-nats").await?;
    scale(wasmcloud.id.clone(), "w-msg", msg_echo.clone()).await?;
    client.put_config("w-msg-subs", &HashMap::from([("subscriptions".to_string(), "xkind.in".to_string())])).await?;
    client.put_link(&Link::new("msg", "w-msg", "default", "wasmcloud", "messaging", &["handler"]).with_source_config(&["w-msg-subs"])).await?;
    client.put_link(&Link::new("w-msg", "tp", "default", "wasmcloud", "messaging", &["consumer"])).await?;
    let nats = lattice.nats().await?;
    let published = eventually(Duration::from_secs(20), || {
        let (nats, record) = (nats.clone(), record.clone());
        async move {
            nats.publish_with_reply("xkind.in", "xkind.reply", "hi".into()).await.ok()?;
            nats.flush().await.ok()?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            records(&record).into_iter().find(|r| r["event"] == "published")
        }
    })
    .await;
    let published = published.expect("the message reached wasmCloud's component, which answered through the provider");
    assert_eq!((published["subject"].as_str(), published["body"].as_str()), (Some("xkind.reply"), Some("echo: hi")), "{published}");
    assert_eq!(published["caller"], "w-msg", "{published}");

    wasmcloud.stop();
    trellis.shutdown(None).await?;
    Ok(())
}

/// wadm's example app, spread over both kinds of host: its component on each (labels
/// `runtime`), its HTTP server on the Trellis host (the image a wasmCloud host would pull from
/// ghcr.io runs there as Trellis's built-in).
fn mixed_manifest(image: &str, port: u16) -> String {
    format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: mixed-hello
  annotations:
    description: wasmCloud's http-hello-world on a mixed lattice
spec:
  components:
    - name: http-component
      type: component
      properties:
        image: {image}
      traits:
        - type: spreadscaler
          properties:
            instances: 4
            spread:
              - name: on-wasmcloud
                weight: 50
                requirements:
                  runtime: wasmcloud
              - name: on-trellis
                weight: 50
                requirements:
                  runtime: trellis
    - name: httpserver
      type: capability
      properties:
        image: ghcr.io/wasmcloud/http-server:0.27.0
      traits:
        - type: spreadscaler
          properties:
            instances: 1
            spread:
              - name: on-trellis
                requirements:
                  runtime: trellis
        - type: link
          properties:
            target:
              name: http-component
            namespace: wasi
            package: http
            interfaces: [incoming-handler]
            source:
              config:
                - name: default-http
                  properties:
                    address: 127.0.0.1:{port}
"#
    )
}

/// A real wadm 0.21 runs one app on a mixed lattice: a wasmCloud 1.9.2 host and a Trellis host
/// (`--no-apps`) each run part of the component's instances as the manifest's spread says, the
/// HTTP server (on Trellis) answers, a component stopped behind wadm's back on the wasmCloud
/// host is brought back there, and the undeploy leaves nothing running on either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_wadm_runs_an_app_across_both_host_kinds() -> anyhow::Result<()> {
    use trellis_host::permission::kind::BuiltinImages;
    use trellis_tests::apps::{nats039, wadm, wait_status};
    use wadm_types::api::StatusType;
    let Some(bin) = WasmcloudHost::binary() else { return Ok(()) };
    init_tracing();
    let registry = Registry::start(&[]).await?;
    let hello = trellis_tests::wasmcloud_host::push_example(&registry, "http-hello-world")?;
    let lattice = TestLattice::new().await?;
    // wadm first: it learns the hosts (and their labels) from their `host_started`.
    let _wadm = trellis_tests::WadmProcess::start(&lattice.url())?;
    let mut config = lattice.host_config();
    config.apps = false;
    config.wasm.oci.insecure = vec![registry.address()];
    config.providers.builtin_images = BuiltinImages::parse(&["wasmcloud"])?;
    config.labels.insert("runtime".into(), "trellis".into());
    let trellis = lattice.start_host(config).await?;
    let wasmcloud = WasmcloudHost::start(&bin, &lattice, 0, &[trellis.id()], &registry.address()).await?;

    let port = trellis_tests::free_port();
    let manifest = mixed_manifest(&hello, port);
    let client = wadm(&lattice, nats039(&lattice).await?);
    let put = eventually(Duration::from_secs(30), || async { client.put_and_deploy_manifest(manifest.as_bytes()).await.ok() }).await;
    anyhow::ensure!(put.is_some(), "wadm never took the manifest: {:?}", client.put_and_deploy_manifest(manifest.as_bytes()).await);
    wait_status(&client, "mixed-hello", StatusType::Deployed, Duration::from_secs(90)).await?;

    let ctl = lattice.ctl().await?;
    // Instances of the app's component each host runs.
    let instances = |host: String| {
        let (ctl, hello) = (ctl.clone(), hello.clone());
        async move {
            let inventory = ctl.get_host_inventory(&host).await.ok()?.into_data()?;
            Some(inventory.components().iter().filter(|c| c.image_ref() == hello).map(|c| c.max_instances()).sum::<u32>())
        }
    };
    let both = eventually(Duration::from_secs(30), || async {
        let (w, t) = (instances(wasmcloud.id.clone()).await?, instances(trellis.id().to_string()).await?);
        (w == 2 && t == 2).then_some(())
    })
    .await;
    anyhow::ensure!(
        both.is_some(),
        "the spread is not 2 + 2: wasmCloud {:?}, Trellis {:?}",
        instances(wasmcloud.id.clone()).await,
        instances(trellis.id().to_string()).await
    );
    let answered = eventually(Duration::from_secs(30), || async { trellis_tests::http_get(port, "/").await.ok().filter(|(s, _)| *s == 200) }).await;
    let Some((_, body)) = answered else { anyhow::bail!("the app never answered: {:?}", trellis_tests::http_get(port, "/").await) };
    assert!(body.contains("Hello"), "{body}");

    // Healing on the wasmCloud host: its share stopped behind wadm's back comes back there,
    // as its own events say (scaled to 0, then up again).
    let nats = lattice.nats().await?;
    let mut scaled = nats.subscribe(format!("wasmbus.evt.{}.component_scaled", lattice.name)).await?;
    nats.flush().await?;
    let inventory = ctl.get_host_inventory(&wasmcloud.id).await.map_err(anyhow::Error::msg)?.into_data().ok_or_else(|| anyhow::anyhow!("no inventory"))?;
    let component = inventory.components().iter().find(|c| c.image_ref() == hello).map(|c| c.id().to_string()).ok_or_else(|| anyhow::anyhow!("not on wasmCloud"))?;
    let ack = ctl.scale_component(&wasmcloud.id, &hello, &component, 0, None, vec![], false).await.map_err(anyhow::Error::msg)?;
    anyhow::ensure!(ack.succeeded(), "{}", ack.message());
    let mut seen = Vec::new();
    let healed = tokio::time::timeout(Duration::from_secs(60), async {
        use futures::StreamExt as _;
        while let Some(m) = scaled.next().await {
            let event: serde_json::Value = serde_json::from_slice(&m.payload).unwrap_or_default();
            if event["data"]["host_id"] != wasmcloud.id.as_str() {
                continue;
            }
            seen.push(event["data"]["max_instances"].as_u64().unwrap_or(u64::MAX));
            if seen.first() == Some(&0) && seen.last().is_some_and(|n| *n > 0) {
                return Some(());
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    anyhow::ensure!(healed.is_some(), "wadm did not bring the wasmCloud host's share back (its scale events: {seen:?}): {:?}", client.get_manifest_status("mixed-hello").await);
    anyhow::ensure!(eventually(Duration::from_secs(20), || async { (instances(wasmcloud.id.clone()).await? == 2).then_some(()) }).await.is_some(), "back to 2 instances");

    // Undeploy: nothing of the app is left on either host.
    client.undeploy_manifest("mixed-hello").await?;
    let gone = eventually(Duration::from_secs(60), || async {
        let mut left = 0;
        for host in [wasmcloud.id.clone(), trellis.id().to_string()] {
            let inventory = ctl.get_host_inventory(&host).await.ok()?.into_data()?;
            left += inventory.components().len() + inventory.providers().len();
        }
        (left == 0).then_some(())
    })
    .await;
    anyhow::ensure!(gone.is_some(), "wadm's undeploy left workloads running");
    wasmcloud.stop();
    trellis.shutdown(None).await?;
    Ok(())
}

/// The benchmark's cross-kind figure (16) runs end to end beside two wasmCloud hosts: three
/// rows, each against wasmCloud → wasmCloud measured in the same run. Asserts nothing about
/// the numbers (a benchmark, not a timed test).
#[test]
fn the_benchmarks_cross_kind_figure_runs() -> anyhow::Result<()> {
    if WasmcloudHost::binary().is_none() {
        return Ok(());
    }
    let json = tempfile::NamedTempFile::new()?;
    let out = Command::new(env!("CARGO_BIN_EXE_bench")).args(["--quick", "--only", "16", "--json"]).arg(json.path()).output()?;
    anyhow::ensure!(out.status.success(), "bench failed: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(json.path())?)?;
    let figures = report["figures"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = figures.iter().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    for (figure, path) in figures.iter().zip(["Trellis(A)→wasmCloud", "wasmCloud→Trellis(B)", "Trellis(A)→Trellis(B)"]) {
        let name = figure["name"].as_str().unwrap_or_default();
        assert!(name.starts_with("16. ") && name.contains(path) && name.contains("vs wasmCloud→wasmCloud"), "{name}");
        assert!(figure["ratio"].as_f64().is_some_and(|r| r.is_finite() && r > 0.0), "{figure}");
    }
    Ok(())
}
