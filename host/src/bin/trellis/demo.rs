//! `trellis up --demo DIR`: the newcomer's application, `examples/demo.yaml`, deployed through
//! wadm's API like any client would: `http-hello` and `kv-counter` pushed from DIR into the
//! lattice's artifact store (`nats://…:demo`, so any host of the lattice can run them), and the
//! hosts place them, the HTTP server and key-value providers, configs and links themselves. The
//! count lives in JetStream, so it survives restarts of the host (and of the NATS server `up`
//! started, whose data is on disk).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use trellis_host::HostConfig;

/// The demo application, as in `examples/demo.yaml`.
const MANIFEST: &str = include_str!("../../../../examples/demo.yaml");
/// The listen address in that file, replaced with `--demo-address`.
const DEFAULT_ADDRESS: &str = "127.0.0.1:8080";

/// What the demo runs, checked before the host starts.
#[derive(Debug)]
pub struct Demo {
    hello: PathBuf,
    counter: PathBuf,
    address: String,
    nats_url: String,
    lattice: String,
    replicas: usize,
}

impl Demo {
    /// Checks that `dir` has both components.
    ///
    /// # Errors
    /// A missing file, named, with how to build it.
    pub fn new(dir: &Path, address: String, config: &HostConfig) -> Result<Self> {
        let find = |name: &str| -> Result<PathBuf> {
            let path = dir.join(name);
            if !path.is_file() {
                bail!("the demo needs {} (build the actors with `scripts/build-components`)", path.display());
            }
            std::fs::canonicalize(&path).with_context(|| path.display().to_string())
        };
        Ok(Self {
            hello: find("http_hello.wasm")?,
            counter: find("kv_counter.wasm")?,
            address,
            nats_url: config.nats.url.clone(),
            lattice: config.lattice.clone(),
            replicas: config.kv_replicas,
        })
    }

    /// Deploys the demo: pushes the components into the lattice's artifact store, then puts and
    /// deploys `examples/demo.yaml` (with this demo's address) through wadm's API, and waits
    /// until the hosts report it deployed.
    ///
    /// # Errors
    /// When a request is refused or the application does not reach `deployed` within a minute.
    pub async fn run(self, _host_id: &str) -> Result<()> {
        let nats = async_nats::connect(self.nats_url.split(',').next().unwrap_or_default()).await?;
        for (id, path) in [("http-hello", &self.hello), ("kv-counter", &self.counter)] {
            let reference = format!("nats://{id}:demo");
            let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
            trellis_host::wasm::sources::artifacts::push(&nats, &self.lattice, self.replicas, &reference, &bytes)
                .await
                .map_err(anyhow::Error::msg)?;
        }
        let manifest = MANIFEST.replace(DEFAULT_ADDRESS, &self.address);
        // The version names the content: the same demo again is the same version.
        let version = format!("v1-{}", &trellis_host::wasm::sources::oci::sha256(manifest.as_bytes())["sha256:".len()..][..12]);
        let manifest = manifest.replace("version: v1", &format!("version: {version}"));
        let api = |op: &str| trellis_messages::subjects::wadm::model(&self.lattice, op);
        let ask = |op: String, body: Vec<u8>| {
            let nats = nats.clone();
            async move {
                let reply = tokio::time::timeout(Duration::from_secs(10), nats.request(op, body.into())).await??;
                Ok::<serde_json::Value, anyhow::Error>(serde_json::from_slice(&reply.payload)?)
            }
        };
        let put = ask(api("put"), manifest.into_bytes()).await?;
        let message = put["message"].as_str().unwrap_or_default();
        if put["result"] == "error" && !message.contains("already exists") {
            bail!("the demo's manifest was refused: {message}");
        }
        let deploy = ask(api("deploy.demo"), serde_json::json!({ "version": version }).to_string().into_bytes()).await?;
        if deploy["result"] != "acknowledged" {
            bail!("the demo was not deployed: {}", deploy["message"]);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let status = ask(api("status.demo"), Vec::new()).await?;
            let state = &status["status"]["status"];
            match state["type"].as_str() {
                Some("deployed") => break,
                Some("failed") if tokio::time::Instant::now() > deadline => bail!("the demo failed: {}", state["message"]),
                _ if tokio::time::Instant::now() > deadline => bail!("the demo was not deployed within a minute: {}", state["message"]),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        println!(
            "Demo running: `curl http://{a}/hello` (http-hello) and `curl http://{a}/count` (kv-counter: the count rises \
             with every request and survives restarts). It is the application in examples/demo.yaml, run by the host \
             itself: `trellis app status demo`. Ctrl-C stops the host and the NATS server it started.",
            a = self.address
        );
        Ok(())
    }
}
