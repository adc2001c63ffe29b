//! Figure 14: a blobstore round trip. wasmCloud's own `blobby` example (built from its 1.9.2
//! sources) stores an object with a `PUT` and reads it back with a `GET`, over HTTP through the
//! built-in HTTP server and `wasi:blobstore` on the built-in `blobstore-nats`; the baseline is
//! the same put and get on the same object store from this process with async-nats. A third row
//! streams one large object (1 GiB) through both ways and records how much the process's
//! resident memory grew meanwhile (sampled every 20 ms): a streamed body must cost the host
//! buffers, not the object.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;
use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::BodyExt as _;
use tokio::io::AsyncReadExt;
use trellis_messages::provider::StartProviderCommand;
use trellis_messages::Client;
use trellis_tests::raw_http::{exchange, request};
use trellis_tests::{free_port, wasmcloud_example, TestLattice};

use super::measure::{pct, us};
use super::{link, scaled, Figure};

/// Per-round times of `PUT` + `GET` of `size` bytes through blobby on `port`.
async fn through_blobby(port: u16, size: usize, rounds: usize) -> Result<Vec<Duration>> {
    let body = vec![0x5a; size];
    let mut times = Vec::with_capacity(rounds);
    for i in 0..rounds + 1 {
        let path = format!("/bench-{size}-{i}");
        let began = Instant::now();
        let (put, _) = exchange(port, &request("PUT", &path, Some(&body))).await?;
        let (get, back) = exchange(port, &request("GET", &path, None)).await?;
        anyhow::ensure!(put == 201 && get == 200 && back.len() == size, "blobby answered {put} and {get} with {} bytes of {size} (round {i} of {path})", back.len());
        if i > 0 {
            times.push(began.elapsed());
        }
    }
    times.sort_unstable();
    Ok(times)
}

/// Per-round times of put + get of `size` bytes on `store` from this process.
async fn direct(store: &async_nats::jetstream::object_store::ObjectStore, size: usize, rounds: usize) -> Result<Vec<Duration>> {
    let body = vec![0x5a; size];
    let mut times = Vec::with_capacity(rounds);
    for i in 0..rounds + 1 {
        let name = format!("direct-{size}-{i}");
        let began = Instant::now();
        store.put(name.as_str(), &mut &body[..]).await?;
        let mut back = Vec::with_capacity(size);
        store.get(&name).await?.read_to_end(&mut back).await?;
        anyhow::ensure!(back.len() == size, "read {} bytes of {size}", back.len());
        if i > 0 {
            times.push(began.elapsed());
        }
    }
    times.sort_unstable();
    Ok(times)
}

/// Figure 14 at 1 KiB and 16 MiB, on `host`.
pub async fn round_trips(lattice: &TestLattice, client: &Client, host: &str, rounds: usize) -> Result<Vec<Figure>> {
    for (id, reference) in [("blob-http", "wasmcloud+builtin://http-server"), ("blobs", "wasmcloud+builtin://blobstore-nats")] {
        client.start_provider(host, &StartProviderCommand { provider_id: id.into(), provider_ref: reference.into(), ..Default::default() }).await?;
    }
    let blobby = wasmcloud_example("blobby").join("blobby.wasm");
    let reference = lattice.push("blobby", blobby.to_str().unwrap_or_default()).await?;
    scaled(lattice, host, "blobby", &reference, 16).await?;
    let port = free_port();
    client.put_config("bench-blob-http", &std::collections::HashMap::from([("address".to_string(), format!("127.0.0.1:{port}"))])).await?;
    client.put_link(&link("blob-http", "blobby", "default", "wasi", "http", &["incoming-handler"], &["bench-blob-http"])).await?;
    client.put_link(&link("blobby", "blobs", "default", "wasi", "blobstore", &["blobstore"], &[])).await?;
    let mut ready = false;
    for _ in 0..100 {
        if matches!(exchange(port, &request("GET", "/nothing-here", None)).await, Ok((404, _))) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::ensure!(ready, "blobby not served");
    let js = async_nats::jetstream::new(lattice.nats().await?);
    let store = js.get_object_store("default").await.context("blobby's container")?;
    let mut figures = Vec::new();
    for (size, label, n) in [(1usize << 10, "1 KiB", rounds), (16 << 20, "16 MiB", (rounds / 4).max(1))] {
        let t = through_blobby(port, size, n).await?;
        let b = direct(&store, size, n).await?;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        figures.push(Figure {
            name: format!("14. blobstore round trip ({label}): PUT + GET through wasmCloud's blobby over HTTP vs async-nats put + get on the same object store"),
            trellis: format!("p50 {:.2} ms  p90 {:.2} ms ({} rounds)", ms(pct(&t, 0.5)), ms(pct(&t, 0.9)), t.len()),
            baseline: format!("p50 {:.2} ms  p90 {:.2} ms", ms(pct(&b, 0.5)), ms(pct(&b, 0.9))),
            ratio: us(pct(&t, 0.5)) / us(pct(&b, 0.5)).max(0.001),
            json: json!({"bytes": size, "rounds": t.len(), "trellis_p50_ms": ms(pct(&t, 0.5)), "trellis_p90_ms": ms(pct(&t, 0.9)),
                         "baseline_p50_ms": ms(pct(&b, 0.5)), "baseline_p90_ms": ms(pct(&b, 0.9))}),
        });
    }
    Ok(figures)
}

/// The most this process's resident memory grows above where it was while `work` runs
/// (sampled every 20 ms), and `work`'s answer.
async fn growth_during<T>(work: impl std::future::Future<Output = Result<T>>) -> Result<(u64, T)> {
    let before = trellis_tests::process::rss_of("self");
    let (peak, done) = (Arc::new(AtomicU64::new(before)), Arc::new(AtomicBool::new(false)));
    let sampler = tokio::spawn({
        let (peak, done) = (peak.clone(), done.clone());
        async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(trellis_tests::process::rss_of("self"), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let answer = work.await;
    done.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    Ok((peak.load(Ordering::Relaxed).saturating_sub(before), answer?))
}

/// A body of `size` bytes made as it is sent (64 KiB frames), never whole in memory.
fn generated(size: u64) -> http_body_util::StreamBody<futures::stream::BoxStream<'static, Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
    const FRAME: u64 = 64 << 10;
    let chunk = Bytes::from(vec![0x5a; FRAME as usize]);
    let frames = futures::stream::unfold(0u64, move |sent| {
        let chunk = chunk.clone();
        async move { (sent < size).then(|| (Ok(hyper::body::Frame::data(chunk.slice(..(size - sent).min(FRAME) as usize))), sent + FRAME)) }
    });
    http_body_util::StreamBody::new(frames.boxed())
}

/// `PUT` then `GET` of `size` bytes through blobby on `port`, streamed both ways (the client
/// never holds the object); the bytes that came back.
async fn stream_through_blobby(port: u16, size: u64) -> Result<u64> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let put = hyper::Request::put("/bench-large").header("host", "bench").header("content-length", size).body(generated(size))?;
    let response = sender.send_request(put).await?;
    anyhow::ensure!(response.status() == 201, "PUT answered {}", response.status());
    response.into_body().collect().await?;
    let get = hyper::Request::get("/bench-large").header("host", "bench").body(generated(0))?;
    // The connection takes the next request only once its task has seen the last one end
    // (sending sooner fails "connection was not ready", as it did once in CI).
    sender.ready().await?;
    let response = sender.send_request(get).await?;
    anyhow::ensure!(response.status() == 200, "GET answered {}", response.status());
    let mut body = response.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            received += data.len() as u64;
        }
    }
    Ok(received)
}

/// Figure 14's large row: `size` bytes through blobby on a host of its own (whose deadline
/// allows a long transfer) and, as the baseline, put and get on the same object store from this
/// process, each with the process's memory growth.
pub async fn large_object(lattice: &TestLattice, size: u64) -> Result<Figure> {
    let mut config = lattice.host_config();
    config.heartbeat_interval = Duration::from_secs(30);
    config.wasm.max_execution_time = Duration::from_secs(600);
    config.kv_replicas = 1;
    // The object is the request's body and then the response's (`--max-http-body`, 64 MiB by
    // default, refused the 1 GiB one with a 413).
    config.limits.max_http_body = config.limits.max_http_body.max(size + (1 << 20));
    let host = lattice.start_host(config).await?;
    let client = lattice.client().await?.with_timeout(Duration::from_secs(30));
    for (id, reference) in [("large-http", "wasmcloud+builtin://http-server"), ("large-blobs", "wasmcloud+builtin://blobstore-nats")] {
        client.start_provider(host.id(), &StartProviderCommand { provider_id: id.into(), provider_ref: reference.into(), ..Default::default() }).await?;
    }
    let blobby = wasmcloud_example("blobby").join("blobby.wasm");
    let reference = lattice.push("blobby", blobby.to_str().unwrap_or_default()).await?;
    scaled(lattice, host.id(), "blobby-large", &reference, 2).await?;
    let port = free_port();
    client.put_config("bench-large-http", &std::collections::HashMap::from([("address".to_string(), format!("127.0.0.1:{port}"))])).await?;
    client.put_link(&link("large-http", "blobby-large", "default", "wasi", "http", &["incoming-handler"], &["bench-large-http"])).await?;
    client.put_link(&link("blobby-large", "large-blobs", "default", "wasi", "blobstore", &["blobstore"], &[])).await?;
    let mut ready = false;
    for _ in 0..100 {
        if matches!(exchange(port, &request("GET", "/nothing-here", None)).await, Ok((404, _))) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::ensure!(ready, "blobby not served");
    let began = Instant::now();
    let (grew, received) = growth_during(stream_through_blobby(port, size)).await?;
    let took = began.elapsed();
    anyhow::ensure!(received == size, "blobby sent back {received} bytes of {size}");
    let js = async_nats::jetstream::new(lattice.nats().await?);
    let store = js.get_object_store("default").await.context("blobby's container")?;
    store.delete("bench-large").await?;
    let began = Instant::now();
    let (base_grew, ()) = growth_during(async {
        store.put("direct-large", &mut tokio::io::repeat(0x5a).take(size)).await?;
        let copied = tokio::io::copy(&mut store.get("direct-large").await?, &mut tokio::io::sink()).await?;
        anyhow::ensure!(copied == size, "read {copied} bytes of {size}");
        Ok(())
    })
    .await?;
    let base_took = began.elapsed();
    store.delete("direct-large").await?;
    host.shutdown(None).await?;
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    let label = if size >= 1 << 30 { format!("{} GiB", size >> 30) } else { format!("{} MiB", size >> 20) };
    Ok(Figure {
        name: format!("14. blobstore, one {label} object streamed: PUT + GET through blobby over HTTP (the process's memory growth) vs async-nats put + get on the same object store"),
        trellis: format!("{:.1} s, memory +{:.1} MiB", took.as_secs_f64(), mib(grew)),
        baseline: format!("{:.1} s, memory +{:.1} MiB", base_took.as_secs_f64(), mib(base_grew)),
        ratio: took.as_secs_f64() / base_took.as_secs_f64().max(0.001),
        json: json!({"bytes": size, "trellis_s": took.as_secs_f64(), "trellis_rss_growth_mib": mib(grew),
                     "baseline_s": base_took.as_secs_f64(), "baseline_rss_growth_mib": mib(base_grew)}),
    })
}
