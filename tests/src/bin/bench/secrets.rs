//! Figure 15: secrets. wasmCloud's own password checker (built from its 1.9.2 sources, signed
//! here), given one secret by wasmCloud's reference backend (`secrets-nats-kv`):
//! - (a) a request that checks the stored secret (`store.get` + `reveal` in the guest) vs the
//!   same request with the password in its body, through the built-in HTTP server: what reading
//!   a secret costs a request;
//! - (b) scaling the component with its secret (the host asks the backend, sealed with xkeys)
//!   vs scaling it with none: what fetching a secret costs a start.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::json;
use trellis_messages::component::ScaleComponentCommand;
use trellis_messages::provider::StartProviderCommand;
use trellis_tests::raw_http::{exchange, request};
use trellis_tests::{free_port, wasmcloud_example, SecretsBackend, TestLattice};

use super::measure::{pct, us};
use super::{link, Figure};

const STORED: &str = "Tr3llis-bench-secret!";

/// Per-request times of `POST /api/v1/check` with `body` on `port`.
async fn checks(port: u16, body: &[u8], rounds: usize) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(rounds);
    for i in 0..rounds + 5 {
        let began = Instant::now();
        let (status, answer) = exchange(port, &request("POST", "/api/v1/check", Some(body))).await?;
        anyhow::ensure!(status == 200, "the checker answered {status}: {}", String::from_utf8_lossy(&answer));
        if i >= 5 {
            times.push(began.elapsed());
        }
    }
    times.sort_unstable();
    Ok(times)
}

/// Scales `id` from `reference` with `config` on `host` and times it to `component_scaled`.
async fn scale_once(lattice: &TestLattice, host: &str, id: &str, reference: &str, config: Vec<String>) -> Result<Duration> {
    let client = lattice.client().await?;
    let events = lattice.watch_scale_events(id).await?;
    let command = ScaleComponentCommand { component_ref: reference.into(), component_id: id.into(), max_instances: 1, host_id: host.into(), config, ..Default::default() };
    let began = Instant::now();
    client.scale_component(host, &command).await?;
    events.await??.map_err(anyhow::Error::msg)?;
    Ok(began.elapsed())
}

/// Figure 15 (a) and (b).
pub async fn secret_read(lattice: &TestLattice, rounds: usize) -> Result<Vec<Figure>> {
    let backend = SecretsBackend::start(&lattice.url_of(0)).await?;
    backend.put("bench-password", STORED)?;
    let issuer = nkeys::KeyPair::new_account();
    let subject = nkeys::KeyPair::new_module();
    let options = trellis_host::trust::sign::SignOptions {
        name: "http-password-checker".into(),
        subject: Some(nkeys::KeyPair::from_seed(&subject.seed()?)?),
        ..Default::default()
    };
    let unsigned = std::fs::read(wasmcloud_example("http-password-checker").join("http-password-checker.wasm"))?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("checker.wasm");
    std::fs::write(&path, trellis_host::trust::sign::sign(&unsigned, &issuer, options)?)?;
    let reference = lattice.push("bench-checker", path.to_str().unwrap_or_default()).await?;
    backend.allow(&subject.public_key(), "bench-password")?;

    let mut config = lattice.host_config();
    config.secrets_topic = Some("wasmcloud.secrets".into());
    let host = lattice.start_host(config).await?;
    let client = lattice.client().await?;
    let record = wasmcloud_secrets_types::SecretConfig::new("password".into(), "nats-kv".into(), "bench-password".into(), None, None, Default::default());
    let record: std::collections::HashMap<String, String> = record.try_into()?;
    client.put_config("SECRET_bench-password", &record).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // (b) starts with and without the secret, alternating.
    let n = (rounds / 10).max(3);
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for i in 0..n {
        with.push(scale_once(lattice, host.id(), &format!("sec-with-{i}"), &reference, vec!["SECRET_bench-password".into()]).await?);
        without.push(scale_once(lattice, host.id(), &format!("sec-without-{i}"), &reference, Vec::new()).await?);
    }
    with.sort_unstable();
    without.sort_unstable();

    // (a) requests to the first one that has its secret.
    client.start_provider(host.id(), &StartProviderCommand { provider_id: "sec-http".into(), provider_ref: "wasmcloud+builtin://http-server".into(), ..Default::default() }).await?;
    let port = free_port();
    client.put_config("bench-sec-http", &std::collections::HashMap::from([("address".to_string(), format!("127.0.0.1:{port}"))])).await?;
    client.put_link(&link("sec-http", "sec-with-0", "default", "wasi", "http", &["incoming-handler"], &["bench-sec-http"])).await?;
    let inline = format!(r#"{{"value": "{STORED}"}}"#);
    let mut ready = false;
    for _ in 0..100 {
        if matches!(exchange(port, &request("POST", "/api/v1/check", Some(inline.as_bytes()))).await, Ok((200, _))) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::ensure!(ready, "the password checker is not served");
    let stored = checks(port, br#"{"secret": {"key": "password"}}"#, rounds).await?;
    let plain = checks(port, inline.as_bytes(), rounds).await?;
    host.shutdown(None).await?;

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok(vec![
        Figure {
            name: "15a. secret read: wasmCloud's password checker checking its stored secret (store.get + reveal) vs the same password in the request, over HTTP".into(),
            trellis: format!("p50 {:.3} ms  p90 {:.3} ms ({} requests)", ms(pct(&stored, 0.5)), ms(pct(&stored, 0.9)), stored.len()),
            baseline: format!("p50 {:.3} ms  p90 {:.3} ms", ms(pct(&plain, 0.5)), ms(pct(&plain, 0.9))),
            ratio: us(pct(&stored, 0.5)) / us(pct(&plain, 0.5)).max(0.001),
            json: json!({"rounds": stored.len(), "secret_p50_ms": ms(pct(&stored, 0.5)), "secret_p90_ms": ms(pct(&stored, 0.9)),
                         "inline_p50_ms": ms(pct(&plain, 0.5)), "inline_p90_ms": ms(pct(&plain, 0.9))}),
        },
        Figure {
            name: "15b. secret fetch: scaling the checker with one secret from secrets-nats-kv (xkey-sealed request) vs with none, to component_scaled".into(),
            trellis: format!("p50 {:.2} ms  max {:.2} ms ({} starts)", ms(pct(&with, 0.5)), ms(*with.last().unwrap_or(&Duration::ZERO)), with.len()),
            baseline: format!("p50 {:.2} ms  max {:.2} ms", ms(pct(&without, 0.5)), ms(*without.last().unwrap_or(&Duration::ZERO))),
            ratio: us(pct(&with, 0.5)) / us(pct(&without, 0.5)).max(0.001),
            json: json!({"starts": with.len(), "with_secret_p50_ms": ms(pct(&with, 0.5)), "without_p50_ms": ms(pct(&without, 0.5))}),
        },
    ])
}
