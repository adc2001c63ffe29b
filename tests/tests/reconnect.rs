//! A host survives its NATS server going away and coming back.

use std::time::{Duration, Instant};

use trellis_tests::{eventually, TestLattice};

#[tokio::test]
async fn host_answers_again_after_nats_restart() -> anyhow::Result<()> {
    let mut lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
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
    Ok(())
}
