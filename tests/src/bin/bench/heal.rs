//! Figure 9: healing. Three `trellis host` processes (label `bench=heal`) run a declared app
//! (`heal-echo`, six instances, two per host); one is killed with `kill -9`; measured: the time
//! until a surviving host scales the first replacement (the liveness deadline at work) and
//! until the app runs at full scale again. Medians over the rounds; each round replaces the
//! killed host first.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use trellis_tests::process::HostProcess;
use trellis_tests::{guests, TestLattice};


const APP: &str = r#"apiVersion: core.oam.dev/v1beta1
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
        image: "IMAGE"
      traits:
        - type: spreadscaler
          properties:
            instances: 6
            spread:
              - name: bench
                requirements: {bench: heal}
"#;

/// max_instances of `heal-echo` per host.
async fn shares(client: &trellis_messages::Client, ids: &[String]) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for id in ids {
        if let Ok(inv) = client.inventory(id).await {
            if let Some(c) = inv.components.iter().find(|c| c.id == "heal-echo") {
                out.insert(id.clone(), c.max_instances);
            }
        }
    }
    out
}

async fn until<F, Fut>(within: Duration, mut f: F) -> Result<Instant>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f().await {
            return Ok(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("not reached within {within:?}")
}

/// (median seconds to the first replacement scaled, median seconds to full scale, rounds).
pub async fn heal(lattice: &TestLattice, rounds: usize) -> Result<(f64, f64, usize)> {
    let client = lattice.client().await?;
    let nats = lattice.nats().await?;
    let image = lattice.push("heal", guests::ECHO).await?;
    let mut hosts: Vec<HostProcess> = (0..3).map(|i| HostProcess::start(lattice, i, &["--label", "bench=heal"])).collect::<Result<_>>()?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Content-Type", "application/yaml");
    let api = |op: &str| format!("wadm.api.{}.model.{op}", lattice.name);
    nats.request_with_headers(api("put"), headers, APP.replace("IMAGE", &image).into_bytes().into()).await?;
    let (mut first, mut full) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        if round == 0 {
            // Deployed once the hosts have joined (their liveness records are seen).
            until(Duration::from_secs(30), || async {
                let seen: Vec<String> = client.ping_hosts().await.unwrap_or_default().into_iter().map(|h| h.id).collect();
                hosts.iter().all(|h| seen.contains(&h.id))
            })
            .await?;
            nats.request(api("deploy.heal"), "".into()).await?;
        }
        let ids: Vec<String> = hosts.iter().map(|h| h.id.clone()).collect();
        until(Duration::from_secs(30), || async { shares(&client, &ids).await.values().filter(|n| **n == 2).count() == 3 }).await
            .context("the app did not reach two instances on each of three hosts")?;
        let mut scaled = nats.subscribe(format!("wasmbus.evt.{}.component_scaled", lattice.name)).await?;
        nats.flush().await?;
        let victim = hosts.remove(round % hosts.len());
        let survivors: Vec<String> = hosts.iter().map(|h| h.id.clone()).collect();
        let killed = Instant::now();
        drop(victim); // kill -9
        let replacement = {
            let survivors = survivors.clone();
            tokio::spawn(async move {
                while let Some(msg) = scaled.next().await {
                    let Ok(event) = serde_json::from_slice::<serde_json::Value>(&msg.payload) else { continue };
                    let data = &event["data"];
                    if data["component_id"] == "heal-echo" && survivors.iter().any(|s| data["host_id"] == s.as_str()) && data["max_instances"].as_u64() == Some(3) {
                        return Some(Instant::now());
                    }
                }
                None
            })
        };
        let restored = until(Duration::from_secs(30), || async { shares(&client, &survivors).await.values().sum::<u32>() == 6 }).await?;
        let replaced = tokio::time::timeout(Duration::from_secs(5), replacement).await.ok().and_then(Result::ok).flatten().unwrap_or(restored);
        first.push((replaced - killed).as_secs_f64());
        full.push((restored - killed).as_secs_f64());
        hosts.push(HostProcess::start(lattice, round % 3, &["--label", "bench=heal"])?);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or_default()
    };
    Ok((median(&mut first), median(&mut full), rounds))
}
