//! The pinger → echo link path, timed per call inside the pinger (`ping-timed`): what the
//! local-call and cross-host figures (1, 2, 12, 13) measure.

use std::time::Duration;

use anyhow::{Context, Result};
use trellis_tests::{guests, TestLattice};

use crate::measure::{pct, us};
use crate::{link, scaled};

/// Per-call times of the pinger → echo link path: `rounds` calls of `ping-timed(n)`, each inner
/// call timed inside the pinger (its monotonic clock around the import call), so the tail is
/// per call and excludes the outer control-plane call. Returns (p50, p99) of the `n × rounds`
/// calls.
pub async fn link_path(client: &trellis_messages::Client, n: u32, rounds: usize) -> Result<(Duration, Duration)> {
    let mut per_call = Vec::with_capacity(n as usize * rounds);
    // One unmeasured round first: the first calls through a new link warm its path.
    link_round(client, "pinger", n).await?;
    for _ in 0..rounds {
        per_call.extend(link_round(client, "pinger", n).await?);
    }
    per_call.sort_unstable();
    let shape: Vec<String> = [0.5, 0.9, 0.95, 0.98, 0.99, 0.999].iter().map(|p| format!("p{}={:.1}", p * 100.0, us(pct(&per_call, *p)))).collect();
    tracing::info!("link path per call (µs): {}", shape.join(" "));
    Ok((pct(&per_call, 0.5), pct(&per_call, 0.99)))
}

/// A host of its own from `config` (quiet heartbeat, a 256-instance pool) running
/// `pinger-{suffix}` linked to `echo-{suffix}`, for figures that compare the local call on two
/// engines or hosts.
pub async fn pinger_host(lattice: &TestLattice, client: &trellis_messages::Client, mut config: trellis_host::HostConfig, suffix: &str) -> Result<trellis_host::HostHandle> {
    config.heartbeat_interval = Duration::from_secs(30);
    config.wasm.max_execution_time = Duration::from_secs(30);
    config.wasm.pool_instances = 256;
    let host = lattice.start_host(config).await?;
    let (pinger, echo) = (format!("pinger-{suffix}"), format!("echo-{suffix}"));
    scaled(lattice, host.id(), &pinger, guests::PINGER, 64).await?;
    scaled(lattice, host.id(), &echo, guests::ECHO, 64).await?;
    client.put_link(&link(&pinger, &echo, "default", "trellis", "echo", &["echo"], &[])).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(host)
}

/// Per-call samples of `first`'s and `second`'s link calls, alternating in `rounds` rounds of
/// `n` after one unmeasured round each; sorted.
pub async fn alternating(client: &trellis_messages::Client, first: &str, second: &str, n: u32, rounds: usize) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    link_round(client, first, n).await?;
    link_round(client, second, n).await?;
    for _ in 0..rounds {
        a.extend(link_round(client, first, n).await?);
        b.extend(link_round(client, second, n).await?);
    }
    a.sort_unstable();
    b.sort_unstable();
    Ok((a, b))
}

/// One `ping-timed(n)` of component `pinger`: the time of each of its `n` link calls.
pub(crate) async fn link_round(client: &trellis_messages::Client, pinger: &str, n: u32) -> Result<Vec<Duration>> {
    let r = client.call(pinger, "trellis:echo/pinger.ping-timed", vec![n.to_string(), r#""x""#.into()]).await?;
    let list = r.results.as_ref().and_then(|v| v.first()).with_context(|| format!("ping-timed failed: {:?}", r.error))?;
    let times = parse_u64_list(list).with_context(|| format!("ping-timed returned `{list}`"))?;
    anyhow::ensure!(times.len() == n as usize, "ping-timed returned {} times for {n} calls", times.len());
    Ok(times.into_iter().map(Duration::from_nanos).collect())
}

/// A WAVE `list<u64>` such as `[1, 2, 3]`.
fn parse_u64_list(text: &str) -> Option<Vec<u64>> {
    let inner = text.trim().strip_prefix('[')?.strip_suffix(']')?;
    inner.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| s.parse().ok()).collect()
}
