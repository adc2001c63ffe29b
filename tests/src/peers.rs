//! The real peers the tests run beside Trellis, built from crates.io by the project's scripts
//! once and cached: wasmCloud's provider SDK in the test provider, its `blobstore-fs` provider,
//! and its reference secrets backend.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::eventually;

/// What `$env` names when set, else what `scripts/{script}` prints last (it builds the peer,
/// cached under `target/`), run once per process (`built` keeps the answer). The script runs
/// with its own target directory, so it does not wait for the lock a running `cargo test`
/// holds.
fn built_by(env: &str, script: &str, built: &Mutex<Option<PathBuf>>) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Ok(PathBuf::from(path));
    }
    let mut built = built.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(path) = &*built {
        return Ok(path.clone());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new(root.join("scripts").join(script))
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running scripts/{script}"))?;
    if !out.status.success() {
        bail!("scripts/{script} failed ({})", out.status);
    }
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().lines().last().unwrap_or_default());
    *built = Some(path.clone());
    Ok(path)
}

/// The test capability provider (`providers/test-provider`, built with the published
/// `wasmcloud-provider-sdk`): `TRELLIS_TEST_PROVIDER` when set (scripts/test builds it up
/// front), else built once with `scripts/build-test-provider`.
pub fn test_provider() -> Result<PathBuf> {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    built_by("TRELLIS_TEST_PROVIDER", "build-test-provider", &BUILT)
}

/// wasmCloud's file-system blobstore provider (`wasmcloud-provider-blobstore-fs` 0.11 from
/// crates.io, unchanged): the `blobstore-fs` executable built beside the test provider
/// (`providers/test-provider/src/bin/blobstore-fs.rs`, by `scripts/build-test-provider`).
pub fn blobstore_fs_provider() -> Result<PathBuf> {
    let test_provider = test_provider()?;
    let path = test_provider.with_file_name("blobstore-fs");
    if !path.is_file() {
        bail!("{} is missing: run scripts/build-test-provider", path.display());
    }
    Ok(path)
}

/// wasmCloud's reference secrets backend (`secrets-nats-kv` 0.2 from crates.io):
/// `TRELLIS_SECRETS_BACKEND` when set, else built once by `scripts/build-secrets-backend`
/// (cached under `target/peers`).
pub fn secrets_backend_binary() -> Result<PathBuf> {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    built_by("TRELLIS_SECRETS_BACKEND", "build-secrets-backend", &BUILT)
}

/// A running `secrets-nats-kv` backend on a lattice's NATS (`wasmcloud.secrets`, backend
/// `nats-kv`), driven through its own CLI. Killed when dropped.
pub struct SecretsBackend {
    binary: PathBuf,
    address: String,
    transit_seed: String,
    child: Option<std::process::Child>,
}

impl SecretsBackend {
    /// Starts the backend on the NATS at `url` and waits until it answers for its xkey.
    pub async fn start(url: &str) -> Result<Self> {
        let binary = secrets_backend_binary()?;
        let address = url.trim_start_matches("nats://").to_string();
        let transit_seed = nkeys::XKey::new().seed().map_err(|e| anyhow::anyhow!("{e}"))?;
        let encryption_seed = nkeys::XKey::new().seed().map_err(|e| anyhow::anyhow!("{e}"))?;
        let child = std::process::Command::new(&binary)
            .args(["run", "--nats-address", &address])
            .env("TRANSIT_XKEY_SEED", &transit_seed)
            .env("ENCRYPTION_XKEY_SEED", &encryption_seed)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting secrets-nats-kv")?;
        let backend = Self { binary, address, transit_seed, child: Some(child) };
        let nats = async_nats::connect(url).await?;
        let up = eventually(Duration::from_secs(20), || {
            let nats = nats.clone();
            async move { nats.request("wasmcloud.secrets.v1alpha1.nats-kv.server_xkey", "".into()).await.ok() }
        })
        .await;
        anyhow::ensure!(up.is_some(), "secrets-nats-kv did not answer for its xkey");
        Ok(backend)
    }

    fn cli(&self, args: &[&str]) -> Result<()> {
        let out = std::process::Command::new(&self.binary)
            .args(args)
            .args(["--nats-address", &self.address])
            .env("TRANSIT_XKEY_SEED", &self.transit_seed)
            .output()
            .context("running secrets-nats-kv")?;
        anyhow::ensure!(out.status.success(), "secrets-nats-kv {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    }

    /// `secrets-nats-kv put NAME --string VALUE`.
    pub fn put(&self, name: &str, value: &str) -> Result<()> {
        self.cli(&["put", name, "--string", value])
    }

    /// `secrets-nats-kv add-mapping SUBJECT --secret NAME`: `subject` may have `name`.
    pub fn allow(&self, subject: &str, name: &str) -> Result<()> {
        self.cli(&["add-mapping", subject, "--secret", name])
    }

    /// Stops it (a backend that is down).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for SecretsBackend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// wadm 0.21 (the `wadm` crate from crates.io, run by the small main in `peers/wadm`):
/// `TRELLIS_WADM` when set, else built once by `scripts/build-wadm` (cached under
/// `target/peers/wadm`).
pub fn wadm_binary() -> Result<PathBuf> {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    built_by("TRELLIS_WADM", "build-wadm", &BUILT)
}

/// wasmCloud 1.x's CLI, `wash` (`wash-cli` 0.39.0 from crates.io): `TRELLIS_WASH` when set
/// (scripts/interop builds it up front), else built once with `scripts/build-wash`.
pub fn wash_binary() -> Result<PathBuf> {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    built_by("TRELLIS_WASH", "build-wash", &BUILT)
}

/// `wadm-events`, built beside [`wadm_binary`]: parses lattice events (JSON lines on stdin)
/// with wadm's own event types and prints `ok TYPE` or `err TYPE: why` for each.
pub fn wadm_events_binary() -> Result<PathBuf> {
    let path = wadm_binary()?.with_file_name("wadm-events");
    if !path.is_file() {
        bail!("{} is missing: run scripts/build-wadm", path.display());
    }
    Ok(path)
}

/// A running wadm 0.21 process on a lattice's NATS server. Killed when dropped.
pub struct WadmProcess {
    child: std::process::Child,
}

impl WadmProcess {
    /// Starts wadm on the NATS at `url` (its streams and buckets in that server's JetStream).
    pub fn start(url: &str) -> Result<Self> {
        let child = std::process::Command::new(wadm_binary()?)
            .args(["--nats-server", url.trim_start_matches("nats://")])
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .context("starting wadm")?;
        Ok(Self { child })
    }
}

impl Drop for WadmProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
