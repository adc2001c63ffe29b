//! Figure 6: density. N components under distinct ids on a fresh `trellis host` process each,
//! so its resident memory is the host's alone: memory per component, the time to scale them
//! all, and the size of the host's heartbeat as published.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;
use trellis_tests::{guests, TestLattice};

use crate::scaling::scale_many;
use crate::Figure;

/// One figure per count in `counts`.
pub(crate) async fn figures(lattice: &TestLattice, client: &trellis_messages::Client, nats: &async_nats::Client, counts: &[usize]) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for &n in counts {
        let process = trellis_tests::process::HostProcess::start(lattice, 0, &["--allow-file-load", "--heartbeat-interval", "1s"])?;
        let host = process.id.clone();
        let up = Instant::now();
        // Asked with a short timeout: a request made while the host is still starting can go
        // unanswered, and the client's own 30 s would outlast the 20 s this loop allows.
        let asking = client.clone().with_timeout(Duration::from_secs(2));
        while asking.inventory(&host).await.is_err() {
            anyhow::ensure!(up.elapsed() < Duration::from_secs(20), "the density host did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut heartbeats = nats.subscribe(format!("wasmbus.evt.{}.host_heartbeat", lattice.name)).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = process.rss_bytes();
        let began = Instant::now();
        scale_many(lattice, client, &host, n, guests::ECHO).await?;
        let took = began.elapsed();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = process.rss_bytes();
        // The next heartbeat of that host that counts every component (listed, or counted
        // in `components_omitted` past the NATS max payload), as published.
        let (heartbeat, omitted) = loop {
            let event = tokio::time::timeout(Duration::from_secs(10), futures::StreamExt::next(&mut heartbeats)).await?.context("heartbeats ended")?;
            if !String::from_utf8_lossy(&event.payload).contains(host.as_str()) {
                continue;
            }
            let value: serde_json::Value = serde_json::from_slice(&event.payload)?;
            let listed = value["data"]["components"].as_array().map_or(0, Vec::len);
            let omitted = value["data"]["components_omitted"].as_u64().unwrap_or(0) as usize;
            if listed + omitted == n {
                break (event.payload.len(), omitted);
            }
        };
        let per = after.saturating_sub(before) / n as u64;
        figures.push(Figure {
            name: format!("6. density: {n} components on one host"),
            trellis: format!("{:.1} KiB RSS/component (host process), {:.1} ms to scale all", per as f64 / 1024.0, took.as_secs_f64() * 1e3),
            baseline: match omitted {
                0 => format!("host_heartbeat event as published: {heartbeat} bytes (NATS max payload 1 MiB)"),
                _ => format!("host_heartbeat event as published: {heartbeat} bytes (NATS max payload 1 MiB), {} listed, {omitted} counted in components_omitted", n - omitted),
            },
            ratio: heartbeat as f64 / 1_048_576.0,
            json: json!({"components": n, "rss_per_component_bytes": per, "scale_all_ms": took.as_secs_f64() * 1e3, "heartbeat_bytes": heartbeat, "heartbeat_components_omitted": omitted}),
        });
        drop(process);
    }
    Ok(figures)
}
