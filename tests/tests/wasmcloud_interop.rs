//! Trellis beside wasmCloud's own host on one lattice: the host library of wasmCloud 1.9.2
//! (`wasmcloud-host` 0.27.1, `interop/wasmcloud-host`), driven by wasmCloud's published
//! control-interface client.
//!
//! Building wasmCloud's host takes about ten minutes, so these tests are off the default path:
//! `scripts/interop` builds it and runs them with `TRELLIS_WASMCLOUD_HOST` naming the binary.
//! Without that variable each test prints that it was skipped and passes.

use std::collections::{BTreeSet, HashMap};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use trellis_tests::{guests, eventually, init_tracing, trellis_bin, Registry, TestLattice};

/// wasmCloud's host as a child process on `lattice`, killed when dropped.
struct WasmcloudHost {
    child: Child,
    id: String,
}

impl Drop for WasmcloudHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl WasmcloudHost {
    /// The binary, or `None` (the test is skipped) when `TRELLIS_WASMCLOUD_HOST` is not set.
    fn binary() -> Option<String> {
        let bin = std::env::var("TRELLIS_WASMCLOUD_HOST").ok().filter(|b| !b.is_empty());
        if bin.is_none() {
            eprintln!("skipped: TRELLIS_WASMCLOUD_HOST is not set (scripts/interop builds wasmCloud's host and sets it)");
        }
        bin
    }

    /// Starts it and waits until it answers `host.ping` beside the hosts in `known`.
    async fn start(bin: &str, lattice: &TestLattice, known: &[&str], insecure: &str) -> anyhow::Result<Self> {
        let child = Command::new(bin)
            .env("WASMCLOUD_NATS_URL", lattice.url())
            .env("WASMCLOUD_LATTICE", &lattice.name)
            .env("WASMCLOUD_OCI_ALLOWED_INSECURE", insecure)
            .env("WASMCLOUD_LABEL_RUNTIME", "wasmcloud")
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::null())
            .spawn()?;
        let mut host = Self { child, id: String::new() };
        let ctl = lattice.ctl().await?;
        let id = eventually(Duration::from_secs(30), || async {
            let hosts = ctl.get_hosts().await.ok()?;
            hosts.into_iter().filter_map(|h| h.into_data()).map(|h| h.id().to_string()).find(|id| !known.contains(&id.as_str()))
        })
        .await;
        host.id = id.ok_or_else(|| anyhow::anyhow!("wasmCloud's host did not answer host.ping within 30 s"))?;
        Ok(host)
    }

    fn stop(mut self) {
        // SIGTERM: its shutdown path (host_stopped, subscriptions drained).
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
        let _ = self.child.kill();
    }
}

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
    let wasmcloud = WasmcloudHost::start(&bin, &lattice, &[trellis.id()], "").await?;
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
    let wasmcloud = WasmcloudHost::start(&bin, &lattice, &[trellis.id()], &registry.address()).await?;

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
