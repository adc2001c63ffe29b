//! Hosts joined to different nodes of a 3-node NATS cluster form one lattice.

use trellis_tests::TestLattice;

#[tokio::test]
async fn hosts_on_different_nodes_see_each_other() -> anyhow::Result<()> {
    let lattice = TestLattice::cluster(3).await?;
    let mut hosts = Vec::new();
    for node in 0..3 {
        let mut config = lattice.host_config_on(node);
        config.labels.insert("node".into(), node.to_string());
        hosts.push(lattice.start_host(config).await?);
    }
    // Ask through node 2; every host answers, wherever it is connected.
    let nats = async_nats::connect(lattice.url_of(2)).await?;
    let client = trellis_messages::Client::new(nats, "wasmbus.ctl", &lattice.name)
        .with_gather(std::time::Duration::from_secs(1));
    let mut seen: Vec<String> = client.ping_hosts().await?.into_iter().map(|h| h.labels["node"].clone()).collect();
    seen.sort();
    assert_eq!(seen, ["0", "1", "2"]);
    let inv = client.inventory(hosts[0].id()).await?;
    assert_eq!(inv.labels["node"], "0");
    Ok(())
}

/// The CLI takes the comma-separated server list hosts take (what `docker-compose.yml`'s demo
/// service passes): it connects through the list, and goes on when the first server is down.
#[tokio::test]
async fn the_cli_connects_through_a_server_list() -> anyhow::Result<()> {
    let mut lattice = TestLattice::cluster(3).await?;
    let host = lattice.start_host(lattice.host_config_on(1)).await?;
    let list = (0..3).map(|i| lattice.url_of(i)).collect::<Vec<_>>().join(",");
    let name = lattice.name.clone();
    let hosts = |list: &str| -> anyhow::Result<String> {
        let out = std::process::Command::new(trellis_tests::trellis_bin()?)
            .args(["hosts", "--ids", "--nats-url", list, "--lattice", &name])
            .output()?;
        anyhow::ensure!(out.status.success(), "trellis hosts failed: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8(out.stdout)?)
    };
    assert_eq!(hosts(&list)?.trim(), host.id());
    // With spaces after the commas, as people write lists.
    assert_eq!(hosts(&list.replace(',', ", "))?.trim(), host.id());
    lattice.server_mut(0).kill();
    assert_eq!(hosts(&list)?.trim(), host.id(), "the first server is down; the next one answers");
    Ok(())
}
