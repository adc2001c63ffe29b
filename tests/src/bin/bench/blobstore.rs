//! Figure 14: a blobstore round trip. wasmCloud's own `blobby` example (built from its 1.9.2
//! sources) stores an object with a `PUT` and reads it back with a `GET`, over HTTP through the
//! built-in HTTP server and `wasi:blobstore` on the built-in `blobstore-nats`; the baseline is
//! the same put and get on the same object store from this process with async-nats.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;
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
        anyhow::ensure!(put == 201 && get == 200 && back.len() == size, "blobby answered {put} and {get} with {} bytes", back.len());
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
