//! Figure 16: link calls across host kinds, per call, in one run. pinger → echo from a Trellis
//! host to a wasmCloud 1.9.2 host and back, and Trellis → Trellis, each beside wasmCloud →
//! wasmCloud (the baseline: what a 1.x lattice pays today), all timed inside the pinger as
//! figure 2 is, the four paths taking turns round by round. Needs wasmCloud's host
//! (`TRELLIS_WASMCLOUD_HOST`, built by `scripts/build-wasmcloud-host`); without it the figure
//! is left out and the run says so.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;
use trellis_host::wasm::transport::wrpc::Wrpc;
use trellis_tests::wasmcloud_host::WasmcloudHost;
use trellis_tests::{guests, Registry, TestLattice};
use wasmtime::component::{Type, Val};

use crate::link_path::link_round;
use crate::measure::{pct, us};
use crate::{latency_figure, link, scaled, Figure};

/// The pinger's interface as wRPC names it.
const PINGER: &str = "trellis:echo/pinger@0.1.0";

/// A pinger and where it runs.
enum Pinger {
    /// On a Trellis host: called through the control interface.
    Trellis(&'static str),
    /// On a wasmCloud host: called over wRPC, as that host serves it.
    Wasmcloud(&'static str),
}

/// The three figures, or none without wasmCloud's host. `a` and `b` are Trellis hosts on NATS
/// nodes 0 and 1; the wasmCloud hosts join on the same nodes.
pub async fn cross_kind(lattice: &TestLattice, client: &trellis_messages::Client, (a, b): (&str, &str), n: u32, rounds: usize) -> Result<Vec<Figure>> {
    let Some(bin) = WasmcloudHost::binary() else {
        eprintln!("figure 16 left out: it needs wasmCloud's host (TRELLIS_WASMCLOUD_HOST; scripts/build-wasmcloud-host builds it)");
        return Ok(Vec::new());
    };
    let registry = Registry::start(&[]).await?;
    let pinger_ref = registry.push("pinger", guests::PINGER)?;
    let echo_ref = registry.push("echo", guests::ECHO)?;
    let ctl = lattice.ctl().await?;
    let mut known: Vec<String> = ctl.get_hosts().await.map_err(anyhow::Error::msg)?.into_iter().filter_map(|h| h.into_data()).map(|h| h.id().to_string()).collect();
    let mut hosts = Vec::new();
    for node in [0, 1] {
        let others: Vec<&str> = known.iter().map(String::as_str).collect();
        let host = WasmcloudHost::start(&bin, lattice, node, &others, &registry.address()).await?;
        known.push(host.id.clone());
        hosts.push(host);
    }
    let (w1, w2) = (&hosts[0], &hosts[1]);

    scaled(lattice, a, "xk-tt-pinger", guests::PINGER, 64).await?;
    scaled(lattice, a, "xk-tw-pinger", guests::PINGER, 64).await?;
    scaled(lattice, b, "xk-t-echo", guests::ECHO, 64).await?;
    scaled(lattice, &w1.id, "xk-wt-pinger", &pinger_ref, 64).await?;
    scaled(lattice, &w1.id, "xk-ww-pinger", &pinger_ref, 64).await?;
    scaled(lattice, &w2.id, "xk-w-echo", &echo_ref, 64).await?;
    for (pinger, echo) in [("xk-tt-pinger", "xk-t-echo"), ("xk-tw-pinger", "xk-w-echo"), ("xk-wt-pinger", "xk-t-echo"), ("xk-ww-pinger", "xk-w-echo")] {
        client.put_link(&link(pinger, echo, "default", "trellis", "echo", &["echo"], &[])).await?;
    }

    let engine = wasmtime::Engine::default();
    let wrpc = Wrpc::new(lattice.nats().await?, &lattice.name, engine.clone(), 4, Duration::from_secs(5), trellis_host::Limits::default().body_bounds());
    let timed = ping_timed_types(&engine)?;
    let paths = [
        ("Trellis(A)→Trellis(B)", Pinger::Trellis("xk-tt-pinger")),
        ("Trellis(A)→wasmCloud", Pinger::Trellis("xk-tw-pinger")),
        ("wasmCloud→Trellis(B)", Pinger::Wasmcloud("xk-wt-pinger")),
        ("wasmCloud→wasmCloud", Pinger::Wasmcloud("xk-ww-pinger")),
    ];
    // Each path answers once before anything is timed (the wasmCloud hosts pull and start
    // their components on their own time).
    for (name, pinger) in &paths {
        let ready = trellis_tests::eventually(Duration::from_secs(60), || async { round(client, &wrpc, &timed, pinger, 1).await.ok() }).await;
        if ready.is_none() {
            let why = round(client, &wrpc, &timed, pinger, 1).await.err();
            anyhow::bail!("figure 16: the {name} path never answered: {why:?}");
        }
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); paths.len()];
    for r in 0..=rounds {
        for (i, (_, pinger)) in paths.iter().enumerate() {
            let times = round(client, &wrpc, &timed, pinger, n).await?;
            // The first round warms each path and is not kept.
            if r > 0 {
                samples[i].extend(times);
            }
        }
    }
    for s in &mut samples {
        s.sort_unstable();
    }
    let p = |i: usize| (pct(&samples[i], 0.5), pct(&samples[i], 0.99));
    let baseline = p(3);
    let calls = samples[3].len();
    let mut figures = Vec::new();
    for (i, what) in [(1, "Trellis(A)→wasmCloud"), (2, "wasmCloud→Trellis(B)"), (0, "Trellis(A)→Trellis(B)")] {
        let mut f = latency_figure(
            &format!("16. link call {what} vs wasmCloud→wasmCloud (two wasmCloud 1.9.2 hosts); per-call percentiles of {calls} calls each, taking turns"),
            p(i),
            baseline,
        );
        f.json["calls"] = json!(calls);
        f.json["shape_us"] = json!(paths.iter().zip(&samples).map(|((name, _), s)| (name.to_string(), [0.5, 0.9, 0.99, 0.999].map(|q| us(pct(s, q))))).collect::<std::collections::BTreeMap<_, _>>());
        figures.push(f);
    }
    for (host, id, reference) in [(a, "xk-tt-pinger", guests::PINGER), (a, "xk-tw-pinger", guests::PINGER), (b, "xk-t-echo", guests::ECHO)] {
        scaled(lattice, host, id, reference, 0).await.ok();
    }
    for host in hosts {
        host.stop();
    }
    Ok(figures)
}

/// `ping-timed`'s parameter and result types, from the pinger component.
fn ping_timed_types(engine: &wasmtime::Engine) -> Result<(Vec<Type>, Vec<Type>)> {
    use wasmtime::component::types::ComponentItem;
    let component = wasmtime::component::Component::from_file(engine, guests::PINGER)?;
    component
        .component_type()
        .exports(engine)
        .find_map(|(name, item)| match (name.starts_with("trellis:echo/pinger"), item) {
            (true, ComponentItem::ComponentInstance(i)) => i.exports(engine).find_map(|(n, f)| match (n, f) {
                ("ping-timed", ComponentItem::ComponentFunc(f)) => Some((f.params().map(|(_, t)| t).collect(), f.results().collect())),
                _ => None,
            }),
            _ => None,
        })
        .context("the pinger exports trellis:echo/pinger.ping-timed")
}

/// One `ping-timed(n)` of `pinger`: the time of each of its `n` link calls.
async fn round(client: &trellis_messages::Client, wrpc: &Wrpc, (params, results): &(Vec<Type>, Vec<Type>), pinger: &Pinger, n: u32) -> Result<Vec<Duration>> {
    match pinger {
        Pinger::Trellis(id) => link_round(client, id, n).await,
        Pinger::Wasmcloud(id) => {
            let args = [Val::U32(n), Val::String("x".into())];
            let out = wrpc.call("bench", "default", id, PINGER, "ping-timed", &args, params, results, Duration::from_secs(60)).await?;
            let Some(Val::List(times)) = out.into_iter().next() else { anyhow::bail!("ping-timed of {id} returned no list") };
            let times: Vec<Duration> = times.into_iter().filter_map(|t| if let Val::U64(ns) = t { Some(Duration::from_nanos(ns)) } else { None }).collect();
            anyhow::ensure!(times.len() == n as usize, "ping-timed of {id} returned {} times for {n} calls", times.len());
            Ok(times)
        }
    }
}
