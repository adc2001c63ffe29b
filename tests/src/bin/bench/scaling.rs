//! Scaling figures: scale from zero, cold and warm compile cache (figure 5); many components
//! one after another (figure 6's helper); and one scale from a registry, the artifact store or a
//! file, cold and warm (figure 8).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;
use trellis_tests::{guests, TestLattice};

use crate::measure::pct;
use crate::Figure;

/// Scales `n` components (ids `d0`…) of `reference` on `host` one after another, each once the
/// previous one's `component_scaled` arrived, with one client (no connection per request).
/// (Sending them all at once was no faster — the host loads them in turn — and left the
/// process's resident memory high with loads in flight.)
pub(crate) async fn scale_many(lattice: &TestLattice, client: &trellis_messages::Client, host: &str, n: usize, reference: &str) -> Result<()> {
    use futures::StreamExt as _;
    let nats = lattice.nats().await?;
    let mut events = nats.subscribe(format!("wasmbus.evt.{}.component_scaled", lattice.name)).await?;
    nats.flush().await?;
    for i in 0..n {
        let id = format!("d{i}");
        client.scale_component(host, &one_instance(host, &id, reference)).await?;
        let quoted = format!("\"{id}\"");
        loop {
            let event = tokio::time::timeout(Duration::from_secs(60), events.next()).await?.context("event stream ended")?;
            if String::from_utf8_lossy(&event.payload).contains(&quoted) {
                break;
            }
        }
    }
    Ok(())
}

/// `component.scale` of one instance of `id` from `reference` on `host`.
fn one_instance(host: &str, id: &str, reference: &str) -> trellis_messages::component::ScaleComponentCommand {
    trellis_messages::component::ScaleComponentCommand {
        component_id: id.into(),
        component_ref: reference.into(),
        max_instances: 1,
        host_id: host.into(),
        ..Default::default()
    }
}

/// The lattice's scale events (`component_scaled`, `component_scale_failed`), subscribed once
/// before a timed scale, so no connection or subscription is set up inside the time measured.
pub(crate) struct ScaleEvents {
    _nats: async_nats::Client,
    events: futures::stream::Select<async_nats::Subscriber, async_nats::Subscriber>,
}

impl ScaleEvents {
    pub(crate) async fn subscribe(lattice: &TestLattice) -> Result<Self> {
        let nats = lattice.nats().await?;
        let scaled = nats.subscribe(format!("wasmbus.evt.{}.component_scaled", lattice.name)).await?;
        let failed = nats.subscribe(format!("wasmbus.evt.{}.component_scale_failed", lattice.name)).await?;
        nats.flush().await?;
        Ok(Self { _nats: nats, events: futures::stream::select(scaled, failed) })
    }

    /// Scales `id` from `reference` on `host` with `client`, waits for its scale event, then
    /// calls `echo` once: what a user waits from the scale request to the first answer.
    pub(crate) async fn scale_then_call(&mut self, client: &trellis_messages::Client, host: &str, id: &str, reference: &str) -> Result<Duration> {
        use futures::StreamExt as _;
        let command = one_instance(host, id, reference);
        let quoted = format!("\"{id}\"");
        let began = Instant::now();
        client.scale_component(host, &command).await?;
        loop {
            let event = tokio::time::timeout(Duration::from_secs(60), self.events.next()).await?.context("event stream ended")?;
            if String::from_utf8_lossy(&event.payload).contains(&quoted) {
                anyhow::ensure!(event.subject.ends_with(".component_scaled"), "scaling {id} failed: {}", String::from_utf8_lossy(&event.payload));
                break;
            }
        }
        let r = client.call(id, "trellis:echo/echo.echo", vec![r#""x""#.into()]).await?;
        anyhow::ensure!(r.results.is_some(), "{:?}", r.error);
        Ok(began.elapsed())
    }
}

/// Scale → first call of `echo` on a fresh host whose compile cache (and artifact cache) is
/// `caches`, from `reference`.
async fn scale_once(lattice: &TestLattice, client: &trellis_messages::Client, events: &mut ScaleEvents, caches: &std::path::Path, registry: &str, reference: &str) -> Result<Duration> {
    let mut config = lattice.host_config();
    config.wasm.cache_dir = Some(caches.join("compiled"));
    config.wasm.oci.cache_dir = Some(caches.join("artifacts"));
    config.wasm.oci.insecure = vec![registry.to_string()];
    config.labels.insert("bench".into(), "source".into());
    let host = lattice.start_host(config).await?;
    let id = format!("src-{}", uuid::Uuid::new_v4().simple());
    let took = events.scale_then_call(client, host.id(), &id, reference).await?;
    host.shutdown(None).await?;
    Ok(took)
}

/// Figure 8: the same component scaled from an OCI registry (a local `docker-registry`) and
/// from the lattice's artifact store, cold (download + compile) and warm (both caches), each
/// next to scaling it from a file with the compile cache in the same state. Medians of `rounds`.
pub(crate) async fn scale_by_source(lattice: &TestLattice, client: &trellis_messages::Client, rounds: usize) -> Result<Vec<Figure>> {
    let registry = trellis_tests::Registry::start(&[]).await?;
    let oci = format!("{}/bench/echo:1.0", registry.address());
    let echo = std::fs::read(guests::ECHO)?;
    trellis_host::wasm::sources::oci::push(&oci, echo, true, None).await.map_err(anyhow::Error::msg)?;
    let store = lattice.push("bench-echo", guests::ECHO).await?;
    let sources = [("file", guests::ECHO.to_string()), ("oci", oci), ("store", store)];
    let mut times: HashMap<(&str, &str), Vec<Duration>> = HashMap::new();
    let mut events = ScaleEvents::subscribe(lattice).await?;
    for _ in 0..rounds {
        for (source, reference) in &sources {
            let caches = tempfile::tempdir()?;
            for state in ["cold", "warm"] {
                let took = scale_once(lattice, client, &mut events, caches.path(), &registry.address(), reference).await?;
                times.entry((source, state)).or_default().push(took);
            }
        }
    }
    let median = |source: &str, state: &str| {
        let mut v = times.get(&(source, state)).cloned().unwrap_or_default();
        v.sort_unstable();
        pct(&v, 0.5).as_secs_f64() * 1e3
    };
    let row = |name: &str, source: &str, state: &str, what: &str| {
        let (t, b) = (median(source, state), median("file", state));
        Figure {
            name: name.into(),
            trellis: format!("{state} {t:.1} ms ({what})"),
            baseline: format!("file, {state} compile cache {b:.1} ms"),
            ratio: t / b.max(1e-6),
            json: json!({"source": source, "cache": state, "trellis_ms": t, "baseline_file_ms": b, "rounds": rounds}),
        }
    };
    Ok(vec![
        row("8. scale from an OCI registry → first call, cold vs from a file", "oci", "cold", "download + compile"),
        row("8. scale from an OCI registry → first call, warm vs from a file", "oci", "warm", "manifest check + caches"),
        row("8. scale from the lattice's artifact store → first call, cold vs from a file", "store", "cold", "download + compile"),
        row("8. scale from the lattice's artifact store → first call, warm vs from a file", "store", "warm", "digest check + caches"),
    ])
}

/// Figure 5: scale from zero to the first answered call, cold and warm compile cache (a fresh
/// host each time), `samples` rounds: each round an empty cache (cold), then the same cache
/// again (warm).
pub(crate) async fn from_zero(lattice: &TestLattice, client: &trellis_messages::Client, samples: usize) -> Result<Figure> {
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    let mut events = ScaleEvents::subscribe(lattice).await?;
    for round in 0..samples {
        let cache = tempfile::tempdir()?;
        for (state, times) in [("cold", &mut cold), ("warm", &mut warm)] {
            let mut config = lattice.host_config();
            config.wasm.cache_dir = Some(cache.path().to_path_buf());
            config.labels.insert("bench".into(), "scale".into());
            let host = lattice.start_host(config).await?;
            let id = format!("{state}-{round}");
            times.push(events.scale_then_call(client, host.id(), &id, guests::ECHO).await?);
            host.shutdown(None).await?;
        }
    }
    cold.sort_unstable();
    warm.sort_unstable();
    let ms = |v: &[Duration], p: f64| pct(v, p).as_secs_f64() * 1e3;
    Ok(Figure {
        name: "5. scale from zero → first call (warm cache vs cold)".into(),
        trellis: format!("warm p50 {:.1} ms  p90 {:.1} ms", ms(&warm, 0.5), ms(&warm, 0.9)),
        baseline: format!("cold p50 {:.1} ms  p90 {:.1} ms ({samples} rounds)", ms(&cold, 0.5), ms(&cold, 0.9)),
        ratio: ms(&warm, 0.5) / ms(&cold, 0.5).max(1e-9),
        json: json!({"cold_p50_ms": ms(&cold, 0.5), "cold_p90_ms": ms(&cold, 0.9), "warm_p50_ms": ms(&warm, 0.5), "warm_p90_ms": ms(&warm, 0.9), "samples": samples}),
    })
}
