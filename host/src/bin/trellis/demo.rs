//! `trellis up --demo DIR`: the newcomer's application, set up through the control interface
//! like any client would: an HTTP server provider and a key-value provider, `http-hello` and
//! `kv-counter` pushed from DIR into the lattice's artifact store (`nats://…:demo`, so any host
//! of the lattice can run them) and scaled from there, configs and links. The count lives in JetStream, so it survives
//! restarts of the host (and of the NATS server `up` started, whose data is on disk).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use trellis_host::HostConfig;
use trellis_messages::component::ScaleComponentCommand;
use trellis_messages::link::Link;
use trellis_messages::provider::StartProviderCommand;
use trellis_messages::Client;

use crate::client::{report_scale, watch_scale};

/// What the demo runs, checked before the host starts.
#[derive(Debug)]
pub struct Demo {
    hello: PathBuf,
    counter: PathBuf,
    address: String,
    nats_url: String,
    lattice: String,
    ctl_prefix: String,
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
                bail!("the demo needs {} (build the actors with `scripts/build-actors`)", path.display());
            }
            std::fs::canonicalize(&path).with_context(|| path.display().to_string())
        };
        Ok(Self {
            hello: find("http_hello.wasm")?,
            counter: find("kv_counter.wasm")?,
            address,
            nats_url: config.nats.url.clone(),
            lattice: config.lattice.clone(),
            ctl_prefix: config.ctl_prefix.clone(),
            replicas: config.kv_replicas,
        })
    }

    /// Sets the demo up on host `host_id`.
    ///
    /// # Errors
    /// When a control request is refused or a component does not start.
    pub async fn run(self, host_id: &str) -> Result<()> {
        let nats = async_nats::connect(self.nats_url.split(',').next().unwrap_or_default()).await?;
        let client = Client::new(nats.clone(), &self.ctl_prefix, &self.lattice).with_timeout(Duration::from_secs(10));
        for (id, reference) in [("demo-http", "wasmcloud+builtin://http-server"), ("demo-kv", "trellis://keyvalue")] {
            let command = StartProviderCommand { provider_id: id.into(), provider_ref: reference.into(), host_id: host_id.into(), ..Default::default() };
            client.start_provider(host_id, &command).await?;
        }
        for (id, path) in [("http-hello", &self.hello), ("kv-counter", &self.counter)] {
            let reference = format!("nats://{id}:demo");
            let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
            trellis_host::wasm::artifacts::push(&nats, &self.lattice, self.replicas, &reference, &bytes)
                .await
                .map_err(anyhow::Error::msg)?;
            let outcome = watch_scale(&client, id, Duration::from_secs(60)).await?;
            let command = ScaleComponentCommand {
                component_ref: reference,
                component_id: id.into(),
                max_instances: 16,
                host_id: host_id.into(),
                allow_update: true,
                ..ScaleComponentCommand::default()
            };
            let ack = client.scale_component(host_id, &command).await?;
            if !ack.contains("scaled to") {
                report_scale(outcome, false).await?;
            }
        }
        let config = |path: &str| HashMap::from([("address".to_string(), self.address.clone()), ("path".to_string(), path.to_string())]);
        client.put_config("demo-hello-http", &config("/hello")).await?;
        client.put_config("demo-counter-http", &config("/count")).await?;
        client.put_config("demo-counter-kv", &HashMap::from([("bucket".to_string(), "trellis_demo_counters".to_string())])).await?;
        let http = |target: &str, config: &str| {
            Link::new("demo-http", target, target, "wasi", "http", &["incoming-handler"]).with_source_config(&[config])
        };
        // The counter's key-value link first: once a route serves it, it can count.
        let kv = Link::new("kv-counter", "demo-kv", "default", "wasi", "keyvalue", &["store", "atomics"]);
        client.put_link(&kv.with_target_config(&["demo-counter-kv"])).await?;
        client.put_link(&http("http-hello", "demo-hello-http")).await?;
        client.put_link(&http("kv-counter", "demo-counter-http")).await?;
        println!(
            "Demo running: `curl http://{a}/hello` (http-hello) and `curl http://{a}/count` (kv-counter: the count rises \
             with every request and survives restarts). Ctrl-C stops the host and the NATS server it started.",
            a = self.address
        );
        Ok(())
    }
}
