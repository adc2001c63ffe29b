//! A host survives its NATS server going away and coming back.

use std::time::{Duration, Instant};

use trellis_tests::{eventually, TestLattice};

#[tokio::test]
async fn host_answers_again_after_nats_restart() -> anyhow::Result<()> {
    let mut lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.metrics_addr = Some("127.0.0.1:0".parse()?);
    let host = lattice.start_host(config).await?;
    let metrics = host.info().metrics_addr.expect("metrics served");
    let id = host.id().to_string();
    assert_eq!(lattice.client().await?.ping_hosts().await?.len(), 1);

    lattice.server_mut(0).restart().await?;
    let restarted = Instant::now();

    let client = lattice.client().await?;
    let found = eventually(Duration::from_secs(10), || {
        let client = client.clone();
        let id = id.clone();
        async move {
            let hosts = client.clone().with_gather(Duration::from_millis(300)).ping_hosts().await.ok()?;
            hosts.iter().any(|h| h.id == id).then_some(())
        }
    })
    .await;
    assert!(found.is_some(), "host did not answer ping within 10 s of the NATS restart");
    println!("host answered ping {:?} after the NATS restart", restarted.elapsed());

    // Targeted commands work again too.
    let inv = lattice.client().await?.inventory(&id).await?;
    assert_eq!(inv.host_id, id);

    // The reconnect is counted (the first connection is not).
    let text = scrape(metrics).await?;
    let line = text.lines().find(|l| l.starts_with("trellis_nats_reconnects_total{")).unwrap_or_default().to_string();
    assert!(line.ends_with(" 1"), "{line}");
    Ok(())
}

/// The body of `GET /metrics`.
async fn scrape(addr: std::net::SocketAddr) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await?;
    Ok(raw)
}
