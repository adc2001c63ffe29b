//! What the provider tests share: starting a provider, host settings for quick supervision, the
//! test provider's record file, lattice events, process checks and shell-script providers.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::Value;
use trellis_host::config::ProviderSettings;

use crate::{eventually, TestLattice};

/// Sends `provider.start` for provider `id` from `reference` to host `host` (acknowledged; the
/// outcome comes as an event).
///
/// # Errors
/// The host refused or did not answer.
pub async fn start_provider(client: &trellis_messages::Client, host: &str, id: &str, reference: &str) -> anyhow::Result<()> {
    let command = trellis_messages::provider::StartProviderCommand {
        provider_id: id.into(),
        provider_ref: reference.into(),
        host_id: host.into(),
        ..Default::default()
    };
    client.start_provider(host, &command).await?;
    Ok(())
}

/// Host settings for the tests: a 2 s shutdown grace, health every 500 ms, restarts capped at 2 s.
pub fn settings() -> ProviderSettings {
    ProviderSettings {
        shutdown_grace: Duration::from_secs(2),
        health_interval: Duration::from_millis(500),
        restart_max: Duration::from_secs(2),
        ..ProviderSettings::default()
    }
}

/// A lattice with one host supervising providers with [`settings`], and a client.
pub async fn lattice_with_host() -> anyhow::Result<(TestLattice, trellis_host::HostHandle, trellis_messages::Client)> {
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.providers = settings();
    // Served, so tests can read the providers' restart and health metrics.
    config.metrics_addr = Some("127.0.0.1:0".parse()?);
    let host = lattice.start_host(config).await?;
    let client = lattice.client().await?;
    Ok((lattice, host, client))
}

/// What the test provider recorded.
pub fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

pub async fn wait_record(path: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(15), || {
        let found = records(path).into_iter().find(|r| pred(r));
        async move { found }
    })
    .await
    .unwrap_or_else(|| panic!("the provider never recorded {what}; it recorded: {:#?}", records(path)))
}

/// Lattice events as (type, data).
pub struct Events(async_nats::Subscriber);

impl Events {
    pub async fn on(lattice: &TestLattice) -> anyhow::Result<Self> {
        let nats = lattice.nats().await?;
        Ok(Self(nats.subscribe(format!("wasmbus.evt.{}.>", lattice.name)).await?))
    }

    /// The next event of type `ty` for which `pred` holds (others are skipped).
    pub async fn expect(&mut self, ty: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(Some(msg)) = tokio::time::timeout(left, self.0.next()).await else {
                panic!("no `{ty}` event within {timeout:?}");
            };
            let Ok(ev) = serde_json::from_slice::<Value>(&msg.payload) else { continue };
            let t = ev["type"].as_str().unwrap_or_default().rsplit('.').next().unwrap_or_default().to_string();
            if t == ty && pred(&ev["data"]) {
                return ev["data"].clone();
            }
        }
    }
}

pub fn alive(pid: u64) -> bool {
    // A zombie is not running: read its state.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.split(") ").nth(1).unwrap_or_default().starts_with('Z'))
}

pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

