//! Figure 17: a WASI 0.3 HTTP component (`http-hello-p3`) on reused, concurrent instances,
//! through Trellis's HTTP server provider, against the same component under `wasmtime serve`'s
//! own worker (wasmtime-wasi-http's `ProxyHandler` on hyper, with `wasmtime serve -S p3`'s
//! defaults: 16 requests at once and 128 in all per instance, 1 s idle), and plain hyper as the
//! ceiling. Keep-alive connections, per-request percentiles; each baseline measured right after.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::json;
use trellis_messages::provider::StartProviderCommand;
use trellis_tests::serve::Serve;
use trellis_tests::{free_port, guests, TestLattice};
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_http::handler::{HandlerState, Proxy, ProxyHandler, ProxyPre, StoreBundle};
use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode;

use crate::http::keepalive_load;
use crate::{baselines, link, scaled, Figure, Size};

/// Figure 17 at 1 and 64 connections, on host `host`.
pub(crate) async fn figure(lattice: &TestLattice, client: &trellis_messages::Client, host: &str, size: Size) -> Result<Vec<Figure>> {
    let start = StartProviderCommand { provider_id: "http3".into(), provider_ref: "wasmcloud+builtin://http-server".into(), ..Default::default() };
    client.start_provider(host, &start).await?;
    scaled(lattice, host, "hello3", guests::HTTP_HELLO_P3, 8).await?;
    let port = free_port();
    client.put_config("bench-http3", &HashMap::from([("address".to_string(), format!("127.0.0.1:{port}"))])).await?;
    client.put_link(&link("http3", "hello3", "hello3", "wasi", "http", &["incoming-handler"], &["bench-http3"])).await?;
    let mut ready = false;
    for _ in 0..100 {
        if baselines::http_get(port, "/").await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::ensure!(ready, "http-hello-p3 not served");
    let serve_port = wasmtime_serve_p3(guests::HTTP_HELLO_P3).await?;
    let hyper_port = baselines::hyper_hello().await?;
    let mut figures = Vec::new();
    for concurrency in [1, 64] {
        let t = keepalive_load(port, "/", concurrency, size.http * 5).await?;
        let w = keepalive_load(serve_port, "/", concurrency, size.http * 5).await?;
        let h = keepalive_load(hyper_port, "/", concurrency, size.http * 5).await?;
        figures.push(Figure {
            name: format!("17. HTTP keep-alive, {concurrency} connection(s): WASI 0.3 http-hello-p3 on reused instances vs the same component under `wasmtime serve`'s worker"),
            trellis: format!("{} ({:.2}× hyper alone)", t.summary(), t.rps / h.rps.max(0.001)),
            baseline: format!("{} (hyper alone: {:.0} req/s, p99 {:.0} µs)", w.summary(), h.rps, h.us(0.99)),
            ratio: t.rps / w.rps.max(0.001),
            json: json!({"concurrency": concurrency, "trellis": t.json(), "wasmtime_serve": w.json(), "hyper": h.json(),
                         "rps_ratio_to_wasmtime_serve": t.rps / w.rps.max(0.001), "rps_ratio_to_hyper": t.rps / h.rps.max(0.001)}),
        });
    }
    Ok(figures)
}

/// `wasmtime serve -S p3`'s defaults.
const REUSE: usize = 128;
const CONCURRENCY: usize = 16;

struct ServeState {
    engine: wasmtime::Engine,
}

impl HandlerState for ServeState {
    type StoreData = Serve;

    fn new_store(&self, _req_id: Option<u64>) -> wasmtime::Result<StoreBundle<Serve>> {
        Ok(StoreBundle { store: wasmtime::Store::new(&self.engine, Serve::default()), write_profile: Box::new(|_| {}) })
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_secs(600)
    }

    fn idle_instance_timeout(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn max_instance_reuse_count(&self) -> usize {
        REUSE
    }

    fn max_instance_concurrent_reuse_count(&self) -> usize {
        CONCURRENCY
    }

    fn handle_worker_error(&self, error: wasmtime::Error) {
        eprintln!("wasmtime serve baseline: {error:#}");
    }
}

type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, wasmtime_wasi_http::p3::bindings::http::types::ErrorCode>;

/// Serves the WASI 0.3 component at `path` as `wasmtime serve -S p3 -O pooling-allocator`
/// does, on a free port of 127.0.0.1; returns the port.
async fn wasmtime_serve_p3(path: &str) -> Result<u16> {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true).wasm_component_model_async(true);
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(wasmtime::PoolingAllocationConfig::default()));
    let engine = wasmtime::Engine::new(&config)?;
    let component = Component::from_file(&engine, path)?;
    let mut linker = Linker::<Serve>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi::p3::add_to_linker(&mut linker)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
    let pre = wasmtime_wasi_http::p3::bindings::ServicePre::new(linker.instantiate_pre(&component)?)?;
    let handler = ProxyHandler::new(ServeState { engine }, ProxyPre::P3(pre));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let handler = handler.clone();
                    async move { handle(handler, req).await }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(port)
}

/// As `wasmtime serve` hands a request to its worker: the task answers, then waits until the
/// body has been sent.
async fn handle(handler: ProxyHandler<ServeState>, req: hyper::Request<hyper::body::Incoming>) -> Result<hyper::Response<Body>> {
    use wasmtime_wasi_http::p3::Request;
    let (tx, rx) = tokio::sync::oneshot::channel::<hyper::Response<Body>>();
    handler.spawn(
        None,
        Box::new(move |store, proxy| {
            Box::pin(async move {
                let Proxy::P3(proxy) = proxy else { return };
                let (parts, body) = req.into_parts();
                let req = hyper::Request::from_parts(parts, body.map_err(ErrorCode::from_hyper_request_error));
                let (request, io) = Request::from_http(req);
                let Ok(Ok(response)) = proxy.handle(store, request).await else { return };
                let Ok(response) = store.with(|mut s| response.into_http(&mut s, io)) else { return };
                let (sent_tx, sent_rx) = tokio::sync::oneshot::channel::<()>();
                let response = response.map(|b| Sent { body: b, _sent: sent_tx }.boxed_unsync());
                if tx.send(response).is_ok() {
                    let _ = sent_rx.await;
                }
            })
        }),
    );
    rx.await.context("the worker dropped the request")
}

/// A body that says, by being dropped, that it has been sent.
struct Sent {
    body: Body,
    _sent: tokio::sync::oneshot::Sender<()>,
}

impl hyper::body::Body for Sent {
    type Data = Bytes;
    type Error = ErrorCode;

    fn poll_frame(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, ErrorCode>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }
}

