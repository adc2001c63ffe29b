//! A minimal `main` for wasmCloud's host library, configured from the environment the
//! way wasmCloud's own binary reads it (`WASMCLOUD_*`), for interoperability tests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use wasmcloud_host::wasmbus::{Features, Host};
use wasmcloud_host::{OciConfig, WasmbusHostConfig};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let nats = env("WASMCLOUD_NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let nats = url::Url::parse(&nats).context("WASMCLOUD_NATS_URL")?;
    let lattice = env("WASMCLOUD_LATTICE").unwrap_or_else(|| "default".into());
    let labels: HashMap<String, String> = std::env::vars()
        .filter_map(|(key, value)| {
            key.strip_prefix("WASMCLOUD_LABEL_")
                .map(|key| (key.to_ascii_lowercase(), value))
        })
        .collect();
    let oci_opts = OciConfig {
        allow_latest: env("WASMCLOUD_OCI_ALLOW_LATEST").is_some(),
        allowed_insecure: env("WASMCLOUD_OCI_ALLOWED_INSECURE")
            .map(|list| list.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
        ..OciConfig::default()
    };
    let (host, shutdown) = Box::pin(Host::new(WasmbusHostConfig {
        ctl_nats_url: nats.clone(),
        rpc_nats_url: nats,
        lattice: Arc::from(lattice),
        labels,
        oci_opts,
        allow_file_load: env("WASMCLOUD_ALLOW_FILE_LOAD").is_some(),
        heartbeat_interval: Some(Duration::from_secs(2)),
        experimental_features: Features::default(),
        ..WasmbusHostConfig::default()
    }))
    .await
    .context("failed to initialize host")?;
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let deadline = tokio::select! {
        _ = tokio::signal::ctrl_c() => None,
        _ = terminate.recv() => None,
        deadline = host.stopped() => deadline?,
    };
    drop(host);
    let shutdown_within = match deadline {
        Some(deadline) => deadline.saturating_duration_since(tokio::time::Instant::now()),
        None => Duration::from_secs(10),
    };
    tokio::time::timeout(shutdown_within, shutdown)
        .await
        .context("host shutdown timed out")?
        .context("failed to shutdown host")?;
    Ok(())
}
