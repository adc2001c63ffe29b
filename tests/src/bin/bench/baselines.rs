//! The baselines Trellis is measured against, and the HTTP load generator both share: wasmtime
//! called directly, a raw NATS round trip, a raw JetStream KV watch, a plain hyper server.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use trellis_tests::{guests, TestLattice};

use crate::measure::{latencies, pct};

/// Direct wasmtime: instantiate echo from an `InstancePre` and call `echo`, per call (what
/// Trellis does per call). `trellis_engine`: on an engine built exactly as Trellis builds its
/// own (pooling allocator, epoch interruption, the same settings, from `config`) with
/// Trellis's linker — the best a bare embedding does; otherwise on wasmtime's default engine
/// (on-demand allocation).
pub(crate) async fn direct_wasmtime(n: usize, trellis_engine: Option<trellis_host::wasm::WasmConfig>) -> Result<(Duration, Duration)> {
    use trellis_host::wasm::state::GuestState;
    use wasmtime::component::{Component, Linker, Val};
    let (engine, pre, _runtime) = match trellis_engine {
        Some(config) => {
            let runtime = trellis_host::wasm::WasmRuntime::new(config)?;
            let engine = runtime.engine().clone();
            let component = Component::from_file(&engine, guests::ECHO)?;
            let pre = runtime.linker().instantiate_pre(&component)?;
            (engine, pre, Some(runtime))
        }
        None => {
            let mut config = wasmtime::Config::new();
            config.wasm_component_model(true);
            let engine = wasmtime::Engine::new(&config)?;
            let component = Component::from_file(&engine, guests::ECHO)?;
            let mut linker = Linker::<GuestState>::new(&engine);
            wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
            let pre = linker.instantiate_pre(&component)?;
            (engine, pre, None)
        }
    };
    let component = pre.component().clone();
    let iface = component.get_export_index(None, "trellis:echo/echo@0.1.0").context("echo interface")?;
    let func = component.get_export_index(Some(&iface), "echo").context("echo function")?;
    latencies(n, || {
        let (pre, engine) = (pre.clone(), engine.clone());
        async move {
            let mut store = wasmtime::Store::new(&engine, GuestState::new(usize::MAX, None, std::time::Instant::now() + std::time::Duration::from_secs(3600)));
            store.set_epoch_deadline(u64::MAX / 2);
            let instance = pre.instantiate_async(&mut store).await?;
            let f = instance.get_func(&mut store, func).context("func")?;
            let mut out = [Val::Bool(false)];
            f.call_async(&mut store, &[Val::String("x".into())], &mut out).await?;
            Ok(())
        }
    })
    .await
}

/// Raw request/reply: a responder connected to `responder` (another node of the cluster, like
/// the hosts in figures 2 and 3) answers `bench.echo`; returns once `nats` gets answers. Then
/// [`raw_request`] is one round trip.
pub(crate) async fn raw_responder(nats: &async_nats::Client, responder: async_nats::Client) -> Result<()> {
    let mut sub = responder.subscribe("bench.echo").await?;
    responder.flush().await?;
    trellis_host::nats::barrier(&responder).await.map_err(anyhow::Error::msg)?;
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Some(r) = m.reply {
                let _ = responder.publish(r, m.payload).await;
            }
        }
    });
    // Interest reaches the asking node through the cluster route: wait until it answers.
    for _ in 0..100 {
        if nats.request("bench.echo", "x".into()).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the raw responder never answered")
}

/// One raw round trip to the [`raw_responder`].
pub(crate) async fn raw_request(nats: async_nats::Client) -> Result<()> {
    nats.request("bench.echo", "x".into()).await?;
    Ok(())
}

/// The limit link propagation runs into: a JetStream KV put on node 0, acknowledged, until a
/// watcher connected to node 2 sees it (how a link reaches another host), `rounds` times.
pub(crate) async fn kv_watch_delay(lattice: &TestLattice, rounds: usize) -> Result<Duration> {
    use async_nats::jetstream;
    let writer = jetstream::new(lattice.nats().await?);
    let bucket = format!("BENCH_{}", lattice.name.replace(['-', '.'], "_"));
    let kv = writer.create_key_value(jetstream::kv::Config { bucket: bucket.clone(), history: 1, ..Default::default() }).await?;
    let reader = jetstream::new(async_nats::connect(lattice.url_of(2)).await?).get_key_value(&bucket).await?;
    let mut watch = reader.watch("link").await?;
    let mut delays = Vec::new();
    for i in 0..rounds {
        let began = Instant::now();
        kv.put("link", i.to_string().into()).await?;
        loop {
            let entry = tokio::time::timeout(Duration::from_secs(10), watch.next()).await?.context("watch ended")??;
            if entry.value.as_ref() == i.to_string().as_bytes() {
                break;
            }
        }
        delays.push(began.elapsed());
    }
    delays.sort_unstable();
    Ok(pct(&delays, 0.5))
}

pub(crate) async fn http_get(port: u16, path: &str) -> Result<()> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    anyhow::ensure!(raw.starts_with(b"HTTP/1.1 200"), "not 200: {}", String::from_utf8_lossy(&raw));
    Ok(())
}

/// Requests/s and p50/p99 of `total` GETs at `concurrency`, a new connection each.
pub(crate) async fn http_load(port: u16, path: &'static str, concurrency: usize, total: usize) -> Result<(f64, Duration, Duration)> {
    let began = Instant::now();
    let per = total.div_ceil(concurrency);
    let tasks = (0..concurrency).map(|_| {
        tokio::spawn(async move {
            let mut v = Vec::with_capacity(per);
            for _ in 0..per {
                let t = Instant::now();
                http_get(port, path).await?;
                v.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(v)
        })
    });
    let mut all = Vec::new();
    for t in futures::future::join_all(tasks).await {
        all.extend(t??);
    }
    let elapsed = began.elapsed();
    all.sort_unstable();
    Ok((all.len() as f64 / elapsed.as_secs_f64(), pct(&all, 0.5), pct(&all, 0.99)))
}

pub(crate) async fn hyper_hello() -> Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"Hello from hyper\n"))))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(port)
}
