//! `bench`: Trellis measured against baselines taken in the same run on the same machine.
//!
//! Starts its own NATS server and hosts (in this process), runs every figure, prints a table
//! and writes JSON. `--quick` runs few iterations (the test suite uses it as a smoke test);
//! `--json PATH` chooses where the JSON goes (default `target/bench.json`); `--only 2,3` runs only
//! those figures (what they need is still set up), for profiling one path at a time;
//! `--density N` runs figure 6 with N components only (default 100, 1,000 and 10,000).
//!
//! Figures: local call (in-process link) vs wasmtime called directly; cross-host call vs a raw
//! NATS round trip; control-plane call vs the raw round trip; HTTP at concurrency 1/8/64 vs a
//! plain hyper server; scale from zero (cold and warm compile cache); density (memory per
//! component, time to scale, heartbeat size); link propagation across hosts; scale from an OCI
//! registry and from the lattice's artifact store, cold and warm, vs from a file; healing of a
//! declared app after `kill -9` of a host process, vs the liveness deadline; a link call to an
//! external provider (wRPC, the SDK-built test provider) vs the same call to a component on
//! another host; a blobstore round trip through wasmCloud's blobby vs the object store used
//! directly.

mod baselines;
mod blobstore;
mod cross_kind;
mod density;
mod heal;
mod http;
mod link_path;
mod machine;
mod measure;
mod propagation;
mod scaling;
mod secrets;
mod wasi3;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;
use trellis_messages::link::Link;
use trellis_messages::provider::StartProviderCommand;
use trellis_tests::{guests, free_port, TestLattice};

use baselines::{direct_wasmtime, http_get, http_load, hyper_hello, raw_request, raw_responder};
use measure::{interleaved, latencies, pct, us, warmups, Cost, CostMeter};
use link_path::{alternating, link_path, pinger_host};
use scaling::scale_by_source;

#[derive(Clone, Copy)]
struct Size {
    calls: usize,
    inner: u32,
    http: usize,
    density: usize,
}

/// One line of the table.
struct Figure {
    name: String,
    trellis: String,
    baseline: String,
    ratio: f64,
    json: serde_json::Value,
}

fn latency_figure(name: &str, t: (Duration, Duration), b: (Duration, Duration)) -> Figure {
    Figure {
        name: name.into(),
        trellis: format!("p50 {:.1} µs  p99 {:.1} µs", us(t.0), us(t.1)),
        baseline: format!("p50 {:.1} µs  p99 {:.1} µs", us(b.0), us(b.1)),
        ratio: us(t.0) / us(b.0).max(0.001),
        json: json!({"trellis_p50_us": us(t.0), "trellis_p99_us": us(t.1), "baseline_p50_us": us(b.0), "baseline_p99_us": us(b.1)}),
    }
}

/// A latency figure over NATS, with what each call cost in this process (hosts, client,
/// responder) and in the NATS servers, for Trellis (`tc`) and the baseline (`bc`).
fn nats_latency_figure(name: &str, t: (Duration, Duration), tc: Cost, b: (Duration, Duration), bc: Cost) -> Figure {
    let mut f = latency_figure(name, t, b);
    let show = |c: Cost| format!("  cpu {:.0}+{:.0} µs  switches {:.1}+{:.1}", c.cpu.0, c.cpu.1, c.switches.0, c.switches.1);
    f.trellis.push_str(&show(tc));
    f.baseline.push_str(&show(bc));
    let data = |c: Cost| {
        json!({"cpu_us": {"process": c.cpu.0, "nats_servers": c.cpu.1},
               "context_switches": {"process": c.switches.0, "nats_servers": c.switches.1}})
    };
    f.json["trellis_per_call"] = data(tc);
    f.json["baseline_per_call"] = data(bc);
    f
}

fn link(source: &str, target: &str, name: &str, ns: &str, pkg: &str, ifaces: &[&str], sc: &[&str]) -> Link {
    Link::new(source, target, name, ns, pkg, ifaces).with_source_config(sc)
}

async fn scaled(lattice: &TestLattice, host: &str, id: &str, reference: &str, max: u32) -> Result<()> {
    lattice.scale(host, id, reference, max).await?.map_err(anyhow::Error::msg)?;
    Ok(())
}

/// `--only`'s argument: figure numbers, comma separated.
fn figure_list(list: &str) -> Result<Vec<u32>> {
    list.split(',')
        .map(|n| n.trim().parse::<u32>().ok().filter(|n| (1..=17).contains(n)))
        .collect::<Option<Vec<_>>>()
        .with_context(|| format!("--only takes figure numbers 1 to 17, comma separated (such as 2,3), not `{list}`"))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--readme") {
        // The README's table, made again from the newest results file.
        let root = trellis_tests::bench_report::repo_root();
        let readme = root.join("README.md");
        let table = trellis_tests::bench_report::latest_table(&root)?;
        let text = trellis_tests::bench_report::with_table(&std::fs::read_to_string(&readme)?, &table)?;
        std::fs::write(&readme, text)?;
        println!("README.md: table from {}", trellis_tests::bench_report::latest(&root)?.display());
        return Ok(());
    }
    let quick = args.iter().any(|a| a == "--quick");
    let json_path = args.iter().position(|a| a == "--json").and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| "target/bench.json".into());
    let only = match args.iter().position(|a| a == "--only") {
        None => None,
        Some(i) => Some(figure_list(args.get(i + 1).map(String::as_str).unwrap_or_default())?),
    };
    let want = |n: u32| only.as_ref().is_none_or(|o| o.contains(&n));
    let density = match args.iter().position(|a| a == "--density") {
        None => None,
        Some(i) => Some(
            args.get(i + 1)
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n > 0)
                .context("--density takes a number of components (such as 5000)")?,
        ),
    };
    let size = if quick {
        Size { calls: 30, inner: 20, http: 64, density: 10 }
    } else {
        Size { calls: 2000, inner: 1000, http: 2000, density: 100 }
    };
    let mut figures = Vec::new();
    let lattice = TestLattice::cluster(3).await?;
    let mut hosts = Vec::new();
    for i in 0..3 {
        let mut config = lattice.host_config_on(i);
        config.heartbeat_interval = Duration::from_secs(30);
        config.wasm.max_execution_time = Duration::from_secs(30);
        config.wasm.pool_instances = 256;
        config.kv_replicas = 1;
        hosts.push(lattice.start_host(config).await?);
    }
    let (a, b, c) = (hosts[0].id().to_string(), hosts[1].id().to_string(), hosts[2].id().to_string());
    let client = lattice.client().await?.with_timeout(Duration::from_secs(30));
    let nats = lattice.nats().await?;

    // 1. Local call: pinger → echo on one host (in-process link).
    scaled(&lattice, &a, "pinger", guests::PINGER, 64).await?;
    scaled(&lattice, &a, "echo", guests::ECHO, 64).await?;
    client.put_link(&link("pinger", "echo", "default", "trellis", "echo", &["echo"], &[])).await?;
    let rounds = if quick { 3 } else { 20 };
    tokio::time::sleep(Duration::from_millis(300)).await;
    if want(1) {
        let local = link_path(&client, size.inner, rounds).await?;
        let mut same = lattice.host_config().wasm;
        same.pool_instances = 256;
        let direct = direct_wasmtime(size.calls, Some(same)).await?;
        let on_demand = direct_wasmtime(size.calls, None).await?;
        let mut f = latency_figure(&format!("1. local call pinger→echo vs wasmtime direct (Trellis's engine: pooling, InstancePre); per-call percentiles of {} and {} calls", size.inner as usize * rounds, size.calls), local, direct);
        f.baseline.push_str(&format!("  (default engine: p50 {:.1} µs)", us(on_demand.0)));
        f.json["baseline_default_engine_p50_us"] = json!(us(on_demand.0));
        f.json["baseline_default_engine_p99_us"] = json!(us(on_demand.1));
        f.json["trellis_calls"] = json!(size.inner as usize * rounds);
        f.json["baseline_calls"] = json!(size.calls);
        figures.push(f);
    }

    // 12. What metrics cost a call: the same local link path on a host serving metrics
    // (`--metrics-addr`: every call recorded) and on host A (none), alternating in rounds; then
    // a host recording into an OpenTelemetry meter as well, against A again.
    if want(12) {
        let mut config = lattice.host_config_on(0);
        config.metrics_addr = Some("127.0.0.1:0".parse()?);
        let metered = pinger_host(&lattice, &client, config, "m").await?;
        let (on, off) = alternating(&client, "pinger-m", "pinger", size.inner, rounds).await?;
        let scraped = metered.info().metrics_addr.context("metrics address")?;
        let mut f = latency_figure(
            &format!("12. local call with metrics recorded (--metrics-addr) vs without; per-call percentiles of {} calls each, alternating", on.len()),
            (pct(&on, 0.5), pct(&on, 0.99)),
            (pct(&off, 0.5), pct(&off, 0.99)),
        );
        f.json["metrics_addr"] = json!(scraped.to_string());
        metered.shutdown(None).await?;
        // The same with every call also recorded into an OpenTelemetry meter (what a host
        // exporting metrics over OTLP does, with the same periodic reader; an in-memory exporter
        // stands in for OTLP, which only reads the aggregates every 60 s), against the host
        // without metrics again.
        use opentelemetry::metrics::MeterProvider as _;
        let meters = opentelemetry_sdk::metrics::SdkMeterProvider::builder().with_periodic_exporter(opentelemetry_sdk::metrics::InMemoryMetricExporter::default()).build();
        let mut config = lattice.host_config_on(0);
        config.metrics_addr = Some("127.0.0.1:0".parse()?);
        config.metrics_meter = Some(meters.meter("trellis"));
        let both = pinger_host(&lattice, &client, config, "o").await?;
        let (otlp, off) = alternating(&client, "pinger-o", "pinger", size.inner, rounds).await?;
        f.trellis.push_str(&format!(
            "; with an OpenTelemetry meter too: p50 {:.1} µs  p99 {:.1} µs (vs p50 {:.1} µs  p99 {:.1} µs without metrics, alternating)",
            us(pct(&otlp, 0.5)),
            us(pct(&otlp, 0.99)),
            us(pct(&off, 0.5)),
            us(pct(&off, 0.99))
        ));
        f.json["otel_meter"] = json!({"trellis_p50_us": us(pct(&otlp, 0.5)), "trellis_p99_us": us(pct(&otlp, 0.99)), "baseline_p50_us": us(pct(&off, 0.5)), "baseline_p99_us": us(pct(&off, 0.99))});
        figures.push(f);
        both.shutdown(None).await?;
        let _ = meters.shutdown();
    }

    // 13. The opt-in engine without guard pages (`--no-guard-pages`): a host of its own with
    // pinger, echo and http-hello; the local call here, the HTTP figure after figure 11.
    let unguarded = if want(13) {
        let mut config = lattice.host_config_on(2);
        config.wasm.guard_pages = false;
        let host = pinger_host(&lattice, &client, config, "u").await?;
        let (fast, default) = alternating(&client, "pinger-u", "pinger", size.inner, rounds).await?;
        figures.push(latency_figure(
            &format!("13. local call on a host with --no-guard-pages vs the default engine (guard pages); per-call percentiles of {} calls each, alternating", fast.len()),
            (pct(&fast, 0.5), pct(&fast, 0.99)),
            (pct(&default, 0.5), pct(&default, 0.99)),
        ));
        Some(host)
    } else {
        None
    };

    // 2. Cross-host: echo only on host B (a different NATS node).
    client.scale_component(&a, &trellis_messages::component::ScaleComponentCommand { component_id: "echo".into(), component_ref: guests::ECHO.into(), max_instances: 0, ..Default::default() }).await?;
    scaled(&lattice, &b, "echo", guests::ECHO, 64).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let responder = async_nats::connect(lattice.url_of(1)).await?;
    raw_responder(&nats, responder).await?;
    if want(2) {
        // The baseline right after, so drift between them is small (the Trellis side is a
        // per-inner-call average over rounds and cannot be interleaved call by call).
        let meter = CostMeter::start(&lattice);
        let cross = link_path(&client, size.inner, rounds).await?;
        let cpu = meter.per_op(size.inner as usize * (rounds + 1));
        let meter = CostMeter::start(&lattice);
        let rtt = latencies(size.calls, || raw_request(nats.clone())).await?;
        let rtt_cpu = meter.per_op(size.calls + warmups(size.calls));
        let mut f = nats_latency_figure(&format!("2. cross-host call pinger(A)→echo(B) vs raw NATS round trip (node 0→1); per-call percentiles of {} and {} calls", size.inner as usize * rounds, size.calls), cross, cpu, rtt, rtt_cpu);
        f.json["trellis_calls"] = json!(size.inner as usize * rounds);
        f.json["baseline_calls"] = json!(size.calls);
        figures.push(f);
    }

    // 3. Control-plane call from an external client, interleaved with the raw round trip in
    // rounds, per-call percentiles of each.
    if want(3) {
        let call = || {
            let client = client.clone();
            async move {
                let r = client.call("echo", "trellis:echo/echo.echo", vec![r#""x""#.into()]).await?;
                anyhow::ensure!(r.results.is_some(), "{:?}", r.error);
                Ok(())
            }
        };
        let (ctl, cpu, rtt, rtt_cpu) = interleaved(&lattice, rounds, size.calls / rounds, call, || raw_request(nats.clone())).await?;
        let mut f = nats_latency_figure("3. control-plane call (client → echo) vs raw NATS round trip (node 0→1), interleaved", ctl, cpu, rtt, rtt_cpu);
        f.baseline.push_str(&format!("  ({rounds} alternating rounds)"));
        figures.push(f);
    }

    // 4. HTTP: http-hello through the HTTP server provider vs plain hyper.
    let mut http_port = None;
    if want(4) || want(11) {
        let start = StartProviderCommand { provider_id: "http".into(), provider_ref: "wasmcloud+builtin://http-server".into(), ..Default::default() };
        client.start_provider(&c, &start).await?;
        scaled(&lattice, &c, "hello", guests::HTTP_HELLO, 128).await?;
        let port = free_port();
        client.put_config("bench-http", &HashMap::from([("address".to_string(), format!("127.0.0.1:{port}"))])).await?;
        client.put_link(&link("http", "hello", "hello", "wasi", "http", &["incoming-handler"], &["bench-http"])).await?;
        let mut ready = false;
        for _ in 0..100 {
            if http_get(port, "/").await.is_ok() {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::ensure!(ready, "http-hello not served");
        http_port = Some(port);
        let hyper_port = hyper_hello().await?;
        for concurrency in [1, 8, 64].into_iter().filter(|_| want(4)) {
            let meter = CostMeter::start(&lattice);
            let t = http_load(port, "/", concurrency, size.http).await?;
            let tc = meter.per_op(size.http);
            let meter = CostMeter::start(&lattice);
            let h = http_load(hyper_port, "/", concurrency, size.http).await?;
            let hc = meter.per_op(size.http);
            figures.push(Figure {
                name: format!("4. HTTP http-hello at concurrency {concurrency} vs hyper hello"),
                trellis: format!("{:.0} req/s  p50 {:.0} µs  p99 {:.0} µs  cpu {:.0} µs  switches {:.1}", t.0, us(t.1), us(t.2), tc.cpu.0, tc.switches.0),
                baseline: format!("{:.0} req/s  p50 {:.0} µs  p99 {:.0} µs  cpu {:.0} µs  switches {:.1}", h.0, us(h.1), us(h.2), hc.cpu.0, hc.switches.0),
                ratio: t.0 / h.0.max(0.001),
                json: json!({"concurrency": concurrency, "trellis_rps": t.0, "trellis_p50_us": us(t.1), "trellis_p99_us": us(t.2),
                             "baseline_rps": h.0, "baseline_p50_us": us(h.1), "baseline_p99_us": us(h.2),
                             "trellis_cpu_us_per_request": tc.cpu.0, "baseline_cpu_us_per_request": hc.cpu.0,
                             "trellis_switches_per_request": tc.switches.0, "baseline_switches_per_request": hc.switches.0}),
            });
        }
    }

    // 11. HTTP with keep-alive (what load balancers and clients do): Trellis's HTTP server
    // provider vs the same component as `wasmtime serve` serves it, with a plain hyper server
    // as the ceiling; per-request percentiles. Each run's baseline is measured right after it.
    if want(11) {
        let port = http_port.context("figure 11 needs figure 4's server")?;
        let serve_port = http::wasmtime_serve(guests::HTTP_HELLO, true).await?;
        let hyper_port = hyper_hello().await?;
        for concurrency in [1, 64] {
            let t = http::keepalive_load(port, "/", concurrency, size.http * 5).await?;
            let w = http::keepalive_load(serve_port, "/", concurrency, size.http * 5).await?;
            let h = http::keepalive_load(hyper_port, "/", concurrency, size.http * 5).await?;
            figures.push(Figure {
                name: format!("11. HTTP keep-alive, {concurrency} connection(s): http-hello vs the same component under `wasmtime serve`'s path"),
                trellis: t.summary(),
                baseline: format!("{} (hyper alone: {:.0} req/s, p99 {:.0} µs)", w.summary(), h.rps, h.us(0.99)),
                ratio: t.rps / w.rps.max(0.001),
                json: json!({"concurrency": concurrency, "trellis": t.json(), "wasmtime_serve": w.json(), "hyper": h.json(),
                             "p99_ratio_to_wasmtime_serve": t.us(0.99) / w.us(0.99).max(0.001), "rps_ratio_to_hyper": t.rps / h.rps.max(0.001)}),
            });
        }
    }

    // 17. WASI 0.3 HTTP on reused, concurrent instances (on host C, beside figure 4's).
    if want(17) {
        figures.extend(wasi3::figure(&lattice, &client, &c, size).await?);
    }

    // 13, continued: HTTP keep-alive at 64 connections on the host without guard pages vs the
    // default host of figure 11, and the `wasmtime serve` path with the same engine setting.
    if let Some(host) = unguarded {
        if let Some(port) = http_port {
            let start = StartProviderCommand { provider_id: "http-u".into(), provider_ref: "wasmcloud+builtin://http-server".into(), ..Default::default() };
            client.start_provider(host.id(), &start).await?;
            scaled(&lattice, host.id(), "hello-u", guests::HTTP_HELLO, 128).await?;
            let fast_port = free_port();
            client.put_config("bench-http-u", &HashMap::from([("address".to_string(), format!("127.0.0.1:{fast_port}"))])).await?;
            client.put_link(&link("http-u", "hello-u", "hello", "wasi", "http", &["incoming-handler"], &["bench-http-u"])).await?;
            let mut ready = false;
            for _ in 0..100 {
                if http_get(fast_port, "/").await.is_ok() {
                    ready = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            anyhow::ensure!(ready, "http-hello not served on the host without guard pages");
            let serve_port = http::wasmtime_serve(guests::HTTP_HELLO, false).await?;
            let f = http::keepalive_load(fast_port, "/", 64, size.http * 5).await?;
            let d = http::keepalive_load(port, "/", 64, size.http * 5).await?;
            let w = http::keepalive_load(serve_port, "/", 64, size.http * 5).await?;
            figures.push(Figure {
                name: "13. HTTP keep-alive, 64 connections: http-hello on a host with --no-guard-pages vs the default engine".into(),
                trellis: f.summary(),
                baseline: format!("{} (`wasmtime serve`'s path with the same setting: {:.0} req/s, p99 {:.0} µs)", d.summary(), w.rps, w.us(0.99)),
                ratio: f.rps / d.rps.max(0.001),
                json: json!({"concurrency": 64, "no_guard_pages": f.json(), "default": d.json(), "wasmtime_serve_no_guard_pages": w.json(),
                             "rps_ratio_to_wasmtime_serve_same_setting": f.rps / w.rps.max(0.001)}),
            });
        }
        host.shutdown(None).await?;
    }

    // 5. Scale from zero, cold and warm compile cache (a fresh host each time).
    if want(5) {
        figures.push(scaling::from_zero(&lattice, &client, if quick { 2 } else { 20 }).await?);
    }

    // 6. Density: N components on a `trellis host` process of their own.
    if want(6) {
        let counts = match density {
            Some(n) => vec![n],
            None if quick => vec![size.density],
            None => vec![size.density, size.density * 10, size.density * 100],
        };
        figures.extend(density::figures(&lattice, &client, &nats, &counts).await?);
    }

    // 7. Link propagation: link.put acknowledged → pinger on A uses the new target (echo2 on C).
    if want(7) {
        figures.push(propagation::figure(&lattice, &client, &c, rounds).await?);
    }

    // 14. Blobstore round trip: wasmCloud's blobby through the built-in blobstore-nats.
    if want(14) {
        figures.extend(blobstore::round_trips(&lattice, &client, &c, if quick { 2 } else { 20 }).await?);
        figures.push(blobstore::large_object(&lattice, if quick { 32 << 20 } else { 1 << 30 }).await?);
    }

    // 15. Secrets: a request reading one, and a start fetching one (wasmCloud's backend).
    if want(15) {
        figures.extend(secrets::secret_read(&lattice, if quick { 20 } else { 300 }).await?);
    }

    // 8. Scale from a registry and from the lattice's artifact store, next to a file.
    if want(8) {
        figures.extend(scale_by_source(&lattice, &client, if quick { 1 } else { 5 }).await?);
    }

    // 9. Healing: kill -9 of a host process → its share of a declared app runs elsewhere.
    if want(9) {
        let (first, full, rounds) = heal::heal(&lattice, if quick { 1 } else { 5 }).await?;
        let deadline = trellis_host::apps::liveness::DEAD_AFTER.as_secs_f64();
        figures.push(Figure {
            name: "9. healing: kill -9 of one of three hosts → declared app at full scale again vs liveness deadline".into(),
            trellis: format!("p50 {full:.2} s (first replacement scaled at {first:.2} s)"),
            baseline: format!("liveness deadline {deadline:.1} s (records every 1 s)"),
            ratio: full / deadline,
            json: json!({"restored_p50_s": full, "first_replacement_p50_s": first, "liveness_deadline_s": deadline, "rounds": rounds}),
        });
    }

    // 10. A link call to an external provider (wRPC) next to the same call to a component on
    // another host (Trellis's own request/reply): pinger on A, the provider on A, echo on B.
    if want(10) {
        let to_component = link_path(&client, size.inner, rounds).await?;
        let provider = trellis_tests::test_provider()?;
        let start = StartProviderCommand { provider_id: "bench-tp".into(), provider_ref: provider.display().to_string(), ..Default::default() };
        client.start_provider(&a, &start).await?;
        // Linked once it answers on the lattice (a call to a provider not yet subscribed waits
        // for the deadline: wRPC has no "nobody listens" answer).
        let answering = Instant::now();
        loop {
            let inventory = client.inventory(&a).await?;
            if inventory.providers.iter().any(|p| p.id == "bench-tp" && p.status.as_ref().is_some_and(|s| s.healthy == Some(true))) {
                break;
            }
            anyhow::ensure!(answering.elapsed() < Duration::from_secs(30), "the provider never became healthy");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        client.delete_link("pinger", "default", "trellis", "echo").await?;
        client.put_link(&link("pinger", "bench-tp", "default", "trellis", "echo", &["echo"], &[])).await?;
        let linked = Instant::now();
        loop {
            let r = client.call("pinger", "trellis:echo/pinger.ping", vec![r#""x""#.into()]).await?;
            if r.results.is_some() {
                break;
            }
            anyhow::ensure!(linked.elapsed() < Duration::from_secs(30), "the provider never answered: {:?}", r.error);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let meter = CostMeter::start(&lattice);
        let to_provider = link_path(&client, size.inner, rounds).await?;
        let cpu = meter.per_op(size.inner as usize * (rounds + 1));
        client.delete_link("pinger", "default", "trellis", "echo").await?;
        client.put_link(&link("pinger", "echo", "default", "trellis", "echo", &["echo"], &[])).await?;
        client.stop_provider(&a, "bench-tp").await?;
        let mut f = latency_figure(
            "10. link call to an external provider over wRPC (pinger(A)→SDK provider on A) vs to a component on another host (pinger(A)→echo(B))",
            to_provider,
            to_component,
        );
        f.trellis.push_str(&format!("  cpu {:.0}+{:.0} µs", cpu.cpu.0, cpu.cpu.1));
        f.json["provider_per_call"] = json!({"cpu_us": {"process": cpu.cpu.0, "nats_servers": cpu.cpu.1}});
        figures.push(f);
    }

    // 16. Link calls across host kinds, beside wasmCloud → wasmCloud (needs wasmCloud's host).
    if want(16) {
        figures.extend(cross_kind::cross_kind(&lattice, &client, (&a, &b), size.inner, rounds).await?);
    }

    println!("{:<80} | {:<44} | {:<44} | ratio", "figure", "Trellis", "baseline");
    for f in &figures {
        println!("{:<80} | {:<44} | {:<44} | {:.2}", f.name, f.trellis, f.baseline, f.ratio);
    }
    let out = json!({
        "quick": quick,
        "only": only,
        "machine": machine::facts(),
        "figures": figures.iter().map(|f| json!({"name": f.name, "trellis": f.trellis, "baseline": f.baseline, "ratio": f.ratio, "data": f.json})).collect::<Vec<_>>(),
    });
    // A full run is kept: the README's table is made from the newest kept file.
    if !quick && only.is_none() && density.is_none() {
        let dir = trellis_tests::bench_report::repo_root().join(trellis_tests::bench_report::RESULTS_DIR);
        std::fs::create_dir_all(&dir)?;
        let stamp = out["machine"]["date"].as_str().unwrap_or("undated").replace([' ', ':'], "-").replace("-UTC", "");
        let commit = out["machine"]["commit"].as_str().unwrap_or("unknown").split(' ').next().unwrap_or("unknown").to_string();
        let kept = dir.join(format!("{stamp}-{commit}.json"));
        std::fs::write(&kept, serde_json::to_vec_pretty(&out)?)?;
        println!("results kept in {} (scripts/bench-table puts them in the README)", kept.display());
    }
    if let Some(dir) = std::path::Path::new(&json_path).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&json_path, serde_json::to_vec_pretty(&out)?)?;
    println!("JSON written to {json_path}");
    // The same figures as a Markdown table, for the README (copied from here, not typed).
    let md_path = std::path::Path::new(&json_path).with_extension("md");
    let mut md = String::from("| Figure | Trellis | Baseline | Ratio |\n|---|---|---|---|\n");
    for f in &figures {
        md.push_str(&format!("| {} | {} | {} | {:.2} |\n", f.name, f.trellis.replace('|', "/"), f.baseline.replace('|', "/"), f.ratio));
    }
    std::fs::write(&md_path, md)?;
    println!("Markdown table written to {}", md_path.display());
    for h in hosts {
        h.shutdown(None).await?;
    }

    Ok(())
}
