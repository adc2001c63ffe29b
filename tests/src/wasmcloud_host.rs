//! wasmCloud 1.9.2's host (`wasmcloud-host` 0.27.1 with the small main in
//! `interop/wasmcloud-host`, built by `scripts/build-wasmcloud-host`) as a child process, for
//! the interoperability tests and the benchmark's cross-kind figure.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{eventually, wasmcloud_example, Registry, TestLattice};

/// Pushes wasmCloud's example component `name` ([`wasmcloud_example`]) to `registry`, where a
/// wasmCloud host can pull it; its reference.
///
/// # Errors
/// When `trellis push` fails.
pub fn push_example(registry: &Registry, name: &str) -> anyhow::Result<String> {
    registry.push(name, &wasmcloud_example(name).join(format!("{name}.wasm")).display().to_string())
}

/// wasmCloud's host as a child process on `lattice`, killed when dropped.
pub struct WasmcloudHost {
    child: Child,
    /// Its host id.
    pub id: String,
}

impl Drop for WasmcloudHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl WasmcloudHost {
    /// The binary, or `None` (the test is skipped) when `TRELLIS_WASMCLOUD_HOST` is not set.
    pub fn binary() -> Option<String> {
        let bin = std::env::var("TRELLIS_WASMCLOUD_HOST").ok().filter(|b| !b.is_empty());
        if bin.is_none() {
            eprintln!("skipped: TRELLIS_WASMCLOUD_HOST is not set (scripts/interop builds wasmCloud's host and sets it)");
        }
        bin
    }

    /// Starts it on the lattice's NATS node `node`, pulling from registries `insecure` over
    /// plain HTTP, and waits until it answers `host.ping` beside the hosts in `known`.
    ///
    /// # Errors
    /// When it cannot start or does not answer within 30 s.
    pub async fn start(bin: &str, lattice: &TestLattice, node: usize, known: &[&str], insecure: &str) -> anyhow::Result<Self> {
        let child = Command::new(bin)
            .env("WASMCLOUD_NATS_URL", lattice.url_of(node))
            .env("WASMCLOUD_LATTICE", &lattice.name)
            .env("WASMCLOUD_OCI_ALLOWED_INSECURE", insecure)
            .env("WASMCLOUD_LABEL_RUNTIME", "wasmcloud")
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::null())
            .spawn()?;
        let mut host = Self { child, id: String::new() };
        let ctl = lattice.ctl().await?;
        let id = eventually(Duration::from_secs(30), || async {
            let hosts = ctl.get_hosts().await.ok()?;
            hosts.into_iter().filter_map(|h| h.into_data()).map(|h| h.id().to_string()).find(|id| !known.contains(&id.as_str()))
        })
        .await;
        host.id = id.ok_or_else(|| anyhow::anyhow!("wasmCloud's host did not answer host.ping within 30 s"))?;
        Ok(host)
    }

    /// Stops it with SIGTERM (its shutdown path: `host_stopped`, subscriptions drained).
    pub fn stop(mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
        let _ = self.child.kill();
    }
}

