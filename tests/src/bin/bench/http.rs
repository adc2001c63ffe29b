//! HTTP figures: a keep-alive load generator (the same hyper client for every server, one
//! connection per worker, per-request percentiles in an HDR histogram) and the anchor a user
//! would pick instead of Trellis for one component: the component served the way
//! `wasmtime serve -O pooling-allocator` serves it — wasmtime-wasi-http's proxy bindings on
//! hyper, a pooling allocator, a fresh instance per request from an `InstancePre`.

use std::time::Instant;

use anyhow::{Context, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use trellis_tests::serve::Serve;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::WasiHttpView;

/// What one load run measured.
pub(crate) struct HttpRun {
    pub(crate) rps: f64,
    pub(crate) hist: Histogram<u64>,
}

impl HttpRun {
    /// The `q` quantile in microseconds.
    pub(crate) fn us(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1e3
    }

    pub(crate) fn summary(&self) -> String {
        format!("{:.0} req/s  p50 {:.0} µs  p99 {:.0} µs  p99.9 {:.0} µs", self.rps, self.us(0.5), self.us(0.99), self.us(0.999))
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({"rps": self.rps, "p50_us": self.us(0.5), "p99_us": self.us(0.99), "p999_us": self.us(0.999),
                           "max_us": self.hist.max() as f64 / 1e3, "samples": self.hist.len(),
                           "over_30ms": self.hist.count_between(30_000_000, u64::MAX)})
    }
}

/// `total` GETs of `path` at `concurrency` workers, each on one keep-alive connection (TCP
/// no-delay, as load generators set it); per-request latencies in nanoseconds. A tenth more
/// requests go first, unmeasured.
pub(crate) async fn keepalive_load(port: u16, path: &'static str, concurrency: usize, total: usize) -> Result<HttpRun> {
    let per = total.div_ceil(concurrency);
    let warm = (per / 10).max(1);
    let mut senders = Vec::new();
    for _ in 0..concurrency {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        senders.push(sender);
    }
    let began = Instant::now();
    let tasks = senders.into_iter().map(|mut sender| {
        tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3)?;
            for i in 0..warm + per {
                let request = hyper::Request::get(path).header("host", "bench").body(Empty::<Bytes>::new())?;
                let t = Instant::now();
                let response = sender.send_request(request).await?;
                anyhow::ensure!(response.status() == 200, "status {}", response.status());
                response.into_body().collect().await?;
                if i >= warm {
                    hist.record(t.elapsed().as_nanos().try_into().unwrap_or(u64::MAX).max(1_000))?;
                }
            }
            Ok::<_, anyhow::Error>(hist)
        })
    });
    let mut hist = Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3)?;
    for t in futures::future::join_all(tasks).await {
        hist.add(t??)?;
    }
    let elapsed = began.elapsed();
    // Throughput over the whole run (warm-up included in both count and time).
    let rps = ((warm + per) * concurrency) as f64 / elapsed.as_secs_f64();
    Ok(HttpRun { rps, hist })
}

/// Serves the component at `path` as `wasmtime serve -O pooling-allocator` does, on a free
/// port of 127.0.0.1; returns the port.
/// With `guard_pages` false, the engine is set as `trellis host --no-guard-pages` sets its own
/// (`wasmtime serve -O signals-based-traps=n,memory-guard-size=0`).
pub(crate) async fn wasmtime_serve(path: &str, guard_pages: bool) -> Result<u16> {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    if !guard_pages {
        config.signals_based_traps(false).memory_guard_size(0);
    }
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(wasmtime::PoolingAllocationConfig::default()));
    let engine = wasmtime::Engine::new(&config)?;
    let component = Component::from_file(&engine, path)?;
    let mut linker = Linker::<Serve>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    let pre = ProxyPre::new(linker.instantiate_pre(&component)?)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let (pre, engine) = (pre.clone(), engine.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (pre, engine) = (pre.clone(), engine.clone());
                    async move { handle(pre, engine, req).await }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(port)
}

type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, wasmtime_wasi_http::p2::bindings::http::types::ErrorCode>;

async fn handle(pre: ProxyPre<Serve>, engine: wasmtime::Engine, req: hyper::Request<hyper::body::Incoming>) -> Result<hyper::Response<Body>> {
    use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
    let mut store = wasmtime::Store::new(&engine, Serve::default());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let req = store.data_mut().http().new_incoming_request(Scheme::Http, req)?;
    let out = store.data_mut().http().new_response_outparam(tx)?;
    let task = tokio::spawn(async move {
        let proxy = pre.instantiate_async(&mut store).await?;
        proxy.wasi_http_incoming_handler().call_handle(&mut store, req, out).await
    });
    match rx.await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(code)) => anyhow::bail!("the component failed: {code:?}"),
        Err(_) => {
            task.await.context("task")??;
            anyhow::bail!("no response")
        }
    }
}
