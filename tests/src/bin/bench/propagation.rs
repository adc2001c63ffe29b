//! Figure 7: link propagation. A `link.put` acknowledged, then how soon pinger on host A uses
//! the new target (echo2 on host C), against a raw key-value put seen by a watch on another
//! NATS node.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::json;
use trellis_tests::{guests, TestLattice};

use crate::baselines::kv_watch_delay;
use crate::measure::{pct, us};
use crate::{link, scaled, Figure};

/// `rounds` propagations; echo2 is scaled on host `c`.
pub(crate) async fn figure(lattice: &TestLattice, client: &trellis_messages::Client, c: &str, rounds: usize) -> Result<Figure> {
    scaled(lattice, c, "echo2", guests::ECHO, 8).await?;
    client.put_link(&link("pinger", "nobody", "alt", "trellis", "echo", &["echo"], &[])).await?;
    let (mut props, mut acks, mut attempts) = (Vec::new(), Vec::new(), 0);
    for _ in 0..rounds {
        client.delete_link("pinger", "alt", "trellis", "echo").await?;
        client.put_link(&link("pinger", "nobody", "alt", "trellis", "echo", &["echo"], &[])).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        client.delete_link("pinger", "alt", "trellis", "echo").await?;
        let began = Instant::now();
        client.put_link(&link("pinger", "echo2", "alt", "trellis", "echo", &["echo"], &[])).await?;
        acks.push(began.elapsed());
        loop {
            attempts += 1;
            let r = client.call("pinger", "trellis:echo/pinger.ping-via", vec![r#""alt""#.into(), r#""x""#.into()]).await?;
            if r.results.is_some() {
                break;
            }
            anyhow::ensure!(began.elapsed() < Duration::from_secs(10), "link never propagated");
        }
        props.push(began.elapsed());
    }
    props.sort_unstable();
    acks.sort_unstable();
    let kv = kv_watch_delay(lattice, rounds).await?;
    Ok(Figure {
        name: "7. link propagation (link.put → caller on another host uses it) vs raw KV put → watch on another node".into(),
        trellis: format!(
            "p50 {:.2} ms  p90 {:.2} ms (put acked at {:.2} ms, {:.1} calls, {} rounds)",
            pct(&props, 0.5).as_secs_f64() * 1e3,
            pct(&props, 0.9).as_secs_f64() * 1e3,
            pct(&acks, 0.5).as_secs_f64() * 1e3,
            attempts as f64 / props.len().max(1) as f64,
            props.len()
        ),
        baseline: format!("p50 {:.2} ms", kv.as_secs_f64() * 1e3),
        ratio: us(pct(&props, 0.5)) / us(kv).max(0.001),
        json: json!({"p50_ms": pct(&props, 0.5).as_secs_f64() * 1e3, "p90_ms": pct(&props, 0.9).as_secs_f64() * 1e3, "rounds": props.len(), "max_ms": props.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
                     "baseline_kv_watch_p50_ms": kv.as_secs_f64() * 1e3, "put_ack_p50_ms": pct(&acks, 0.5).as_secs_f64() * 1e3,
                     "calls_per_round": attempts as f64 / props.len().max(1) as f64}),
    })
}
