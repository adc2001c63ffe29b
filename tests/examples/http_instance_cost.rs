//! What one HTTP request costs a fresh instance, with no network: `http-hello` served from an
//! `InstancePre` the way `wasmtime serve -O pooling-allocator` serves it, 20,000 times in a
//! loop on one thread, each phase timed (the README's performance notes cite it).
//!
//! `cargo run --release -p trellis-tests --example http_instance_cost`

use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use trellis_tests::serve::Serve;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::WasiHttpView;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(wasmtime::PoolingAllocationConfig::default()));
    let engine = wasmtime::Engine::new(&config)?;
    let component = Component::from_file(&engine, trellis_tests::guests::HTTP_HELLO)?;
    let mut linker = Linker::<Serve>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    let pre = ProxyPre::new(linker.instantiate_pre(&component)?)?;
    let n = 20_000u32;
    let mut phases = [Duration::ZERO; 4];
    for _ in 0..n {
        let t0 = Instant::now();
        let mut store = wasmtime::Store::new(&engine, Serve::default());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let body = Empty::<Bytes>::new().map_err(|never: std::convert::Infallible| -> ErrorCode { match never {} });
        let request = store.data_mut().http().new_incoming_request(Scheme::Http, hyper::Request::get("http://localhost/").body(body)?)?;
        let out = store.data_mut().http().new_response_outparam(tx)?;
        let t1 = Instant::now();
        let proxy = pre.instantiate_async(&mut store).await?;
        let t2 = Instant::now();
        proxy.wasi_http_incoming_handler().call_handle(&mut store, request, out).await?;
        let t3 = Instant::now();
        let response = rx.await??;
        anyhow::ensure!(!response.into_body().collect().await?.to_bytes().is_empty(), "empty body");
        drop(store);
        let t4 = Instant::now();
        for (phase, took) in phases.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2, t4 - t3]) {
            *phase += took;
        }
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(n);
    println!(
        "per request, mean of {n}: store and request {:.1} µs, instantiate {:.1} µs, handle {:.1} µs, body and drop {:.1} µs, total {:.1} µs",
        us(phases[0]),
        us(phases[1]),
        us(phases[2]),
        us(phases[3]),
        us(phases.iter().sum())
    );
    Ok(())
}
