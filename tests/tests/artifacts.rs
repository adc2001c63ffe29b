//! Components kept in the lattice itself: `trellis push nats://NAME:VERSION` stores a component
//! in the lattice's JetStream object store, and hosts attached to other nodes of a 3-node
//! cluster scale it from there: no registry, no shared file system.

use std::process::Command;

use trellis_tests::{actors, init_tracing, trellis_bin, TestLattice};

#[tokio::test]
async fn a_component_pushed_to_the_lattice_runs_on_hosts_of_other_nodes() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::cluster(3).await?;
    let out = Command::new(trellis_bin()?)
        .args(["push", "nats://echo:1.0", actors::ECHO, "--replicas", "3", "--nats-url", &lattice.url_of(0), "--lattice", &lattice.name])
        .output()?;
    assert!(out.status.success(), "push: {}", String::from_utf8_lossy(&out.stderr));
    let cache = tempfile::tempdir()?;
    let mut hosts = Vec::new();
    for node in [1, 2] {
        let mut config = lattice.host_config_on(node);
        config.wasm.file_load = trellis_host::wasm::load::FileLoad::default(); // no files needed
        config.wasm.oci.cache_dir = Some(cache.path().join(format!("node{node}")));
        let host = lattice.start_host(config).await?;
        lattice.scale(host.id(), "echo", "nats://echo:1.0", 2).await?.map_err(anyhow::Error::msg)?;
        hosts.push(host);
    }
    let client = lattice.client().await?;
    let r = client.call("echo", "trellis:echo/echo.echo", vec![r#""from the lattice""#.into()]).await?;
    assert_eq!(r.results, Some(vec![r#""from the lattice""#.to_string()]));
    // Pinned versions only (unless --allow-latest), and a missing one is named.
    let err = lattice.scale(hosts[0].id(), "e2", "nats://echo", 1).await?.expect_err("latest");
    assert!(err.contains("--allow-latest"), "{err}");
    let err = lattice.scale(hosts[0].id(), "e3", "nats://echo:9.9", 1).await?.expect_err("missing");
    assert!(err.contains("nats://echo:9.9") && err.contains("not found"), "{err}");
    for h in hosts {
        h.shutdown(None).await?;
    }
    Ok(())
}
