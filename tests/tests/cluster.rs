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
