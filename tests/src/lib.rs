//! Test fixtures: real `nats-server` processes on free ports with their own store dirs, a
//! lattice name per test, hosts started in-process or as `trellis` processes.
//!
//! Nothing here relies on a server someone else started; everything is cleaned up on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use trellis_host::wasm::WasmConfig;
use trellis_host::{HostConfig, HostHandle, NatsConfig};
use trellis_messages::component::ScaleComponentCommand;
use trellis_messages::event::ComponentScaled;

pub mod apps;
pub mod bench_report;
pub mod hostile;
pub mod http;
pub mod process;
pub mod peers;
pub mod providers;
pub mod raw_http;
pub mod serve;
pub mod wasmcloud_host;

pub use peers::{blobstore_fs_provider, secrets_backend_binary, test_provider, wadm_binary, wadm_events_binary, wash_binary, SecretsBackend, WadmProcess};
pub use providers::start_provider;
pub use http::http_get;
/// The example guests, built from `components/` by the `trellis-guests` crate.
pub use trellis_guests as guests;

/// The JSON data of a CloudEvent received through the published client.
pub fn event_data(event: &cloudevents::Event) -> serde_json::Value {
    use cloudevents::event::Data;
    match event.data() {
        Some(Data::Json(v)) => v.clone(),
        Some(Data::String(s)) => serde_json::from_str(s).unwrap_or(serde_json::Value::Null),
        Some(Data::Binary(b)) => serde_json::from_slice(b).unwrap_or(serde_json::Value::Null),
        None => serde_json::Value::Null,
    }
}

/// Guest limits for tests: short deadline, small memory cap and pool (many hosts per process).
pub fn test_wasm_config() -> WasmConfig {
    WasmConfig {
        max_execution_time: Duration::from_secs(2),
        max_component_memory: 64 << 20,
        max_queue_wait: Duration::from_secs(5),
        pool_instances: 32,
        cache_dir: None,
        file_load: trellis_host::wasm::sources::load::FileLoad::anywhere(),
        ..WasmConfig::default()
    }
}

/// Logs from the host under test, when `RUST_LOG` asks for them.
pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    });
}

/// Held by each test that measures this process's memory (its RSS before and after): the
/// lattice tests share one process, and two such tests at once would count each other's
/// allocations. Other tests still run beside them, as they did when each file was a process.
pub async fn measuring_memory() -> tokio::sync::MutexGuard<'static, ()> {
    static MEASURING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    MEASURING.lock().await
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// The `nats-server` binary (`$TRELLIS_NATS_SERVER` or the first on `PATH`), checked once to
/// be new enough.
pub fn nats_server_bin() -> Result<PathBuf> {
    static BIN: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    BIN.get_or_init(|| trellis_host::local_nats::server_binary().map_err(|e| e.to_string()))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// One `nats-server -js` process.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    args: Vec<String>,
    store: tempfile::TempDir,
    /// Holds the configuration file of a configured server.
    config_dir: Option<tempfile::TempDir>,
}

impl NatsServer {
    fn spawn(&mut self) -> Result<()> {
        let child = Command::new(nats_server_bin()?)
            .args(&self.args)
            .arg("-sd")
            .arg(self.store.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.store.path().join("nats-server.log"))?)
            .spawn()
            .context("cannot run nats-server")?;
        self.child = Some(child);
        Ok(())
    }

    fn start_with(args: Vec<String>, port: u16) -> Result<Self> {
        let mut server = Self { child: None, port, args, store: tempfile::tempdir()?, config_dir: None };
        server.spawn()?;
        Ok(server)
    }

    /// A standalone server with JetStream.
    pub async fn start() -> Result<Self> {
        let port = free_port();
        let mut server = Self::start_with(
            vec!["-js".into(), "-a".into(), "127.0.0.1".into(), "-p".into(), port.to_string()],
            port,
        )?;
        server.wait_ready().await?;
        Ok(server)
    }

    /// A standalone server with JetStream and `config` (nats-server configuration syntax:
    /// `tls { … }`, `authorization { … }`) added to its configuration file.
    pub async fn start_configured(config: &str) -> Result<Self> {
        let port = free_port();
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("nats.conf");
        std::fs::write(&file, format!("host: 127.0.0.1\nport: {port}\njetstream: enabled\n{config}\n"))?;
        let mut server = Self::start_with(vec!["-c".into(), file.display().to_string()], port)?;
        server.config_dir = Some(dir);
        server.wait_ready().await?;
        Ok(server)
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (SIGKILL): clients see the connection drop.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills and starts the server again on the same port with the same store.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()?;
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            // One that exited (a port another process took meanwhile) says why in its log.
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                let log = std::fs::read_to_string(self.store.path().join("nats-server.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                bail!("nats-server on port {} exited ({status}): {}", self.port, tail.into_iter().rev().collect::<Vec<_>>().join(" | "));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!("nats-server on port {} did not come up", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A CNCF distribution registry (Debian's `docker-registry`, installed by `scripts/install-deps`)
/// on a free port with its own storage, optionally with basic auth; killed on drop.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry; with `users` (name, password) it requires basic auth.
    pub async fn start(users: &[(&str, &str)]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if !users.is_empty() {
            let mut htpasswd = String::new();
            for (user, password) in users {
                htpasswd.push_str(&format!("{user}:{}\n", bcrypt::hash(password, 4)?));
            }
            std::fs::write(dir.path().join("htpasswd"), htpasswd)?;
            config.push_str(&format!("auth:\n  htpasswd:\n    realm: trellis\n    path: {}\n", dir.path().join("htpasswd").display()));
        }
        std::fs::write(dir.path().join("config.yml"), config)?;
        let log = std::fs::File::create(dir.path().join("log"))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot run docker-registry (scripts/install-deps installs it)")?;
        let registry = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("docker-registry did not come up on {port}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(registry)
    }

    /// `127.0.0.1:port`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes component `file` as `interop/{name}:1.0` with `trellis push`; its reference.
    pub fn push(&self, name: &str, file: &str) -> Result<String> {
        let reference = format!("{}/interop/{name}:1.0", self.address());
        let out = Command::new(trellis_bin()?).args(["push", "--insecure", &reference, file]).output()?;
        anyhow::ensure!(out.status.success(), "push {name}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(reference)
    }

    /// The files holding the registry's blobs (to corrupt one in a test).
    pub fn blob_files(&self) -> Result<Vec<PathBuf>> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
            for entry in std::fs::read_dir(dir)? {
                let path = entry?.path();
                if path.is_dir() {
                    walk(&path, out)?;
                } else if path.file_name().is_some_and(|n| n == "data") && path.to_string_lossy().contains("/blobs/") {
                    out.push(path);
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        walk(&self.dir.path().join("data"), &mut out)?;
        Ok(out)
    }

    /// How many times a blob was downloaded so far (from the registry's request log).
    pub fn blob_downloads(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/sha256:") && l.contains("\" 200 "))
            .count()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A lattice for one test: its own NATS server(s) and a unique lattice name.
#[derive(Debug)]
pub struct TestLattice {
    /// The lattice name (unique per test).
    pub name: String,
    servers: Vec<NatsServer>,
}

impl TestLattice {
    /// A lattice on an already started server (e.g. [`NatsServer::start_configured`]).
    pub fn on(server: NatsServer) -> Self {
        init_tracing();
        Self { name: unique_lattice(), servers: vec![server] }
    }

    /// One NATS server with JetStream.
    pub async fn new() -> Result<Self> {
        init_tracing();
        Ok(Self { name: unique_lattice(), servers: vec![NatsServer::start().await?] })
    }

    /// A NATS cluster of `n` nodes with JetStream, ready when JetStream answers on every node.
    pub async fn cluster(n: usize) -> Result<Self> {
        init_tracing();
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<String> = ports.iter().map(|(_, c)| format!("nats://127.0.0.1:{c}")).collect();
        // A cluster name of its own: a route that reaches another test's cluster (a port reused
        // meanwhile) is refused rather than merging the two.
        let name = unique_lattice();
        let mut servers = Vec::new();
        for (i, (port, cport)) in ports.iter().enumerate() {
            let args = vec![
                "-js".into(),
                "-a".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
                "-n".into(),
                format!("node{i}"),
                "--cluster_name".into(),
                format!("trellis-{name}"),
                "--cluster".into(),
                format!("nats://127.0.0.1:{cport}"),
                "--routes".into(),
                routes.join(","),
            ];
            servers.push(NatsServer::start_with(args, *port)?);
        }
        for s in &mut servers {
            s.wait_ready().await?;
        }
        let lattice = Self { name, servers };
        for i in 0..n {
            lattice.wait_jetstream(i).await?;
        }
        Ok(lattice)
    }

    async fn wait_jetstream(&self, node: usize) -> Result<()> {
        let client = async_nats::connect(self.url_of(node)).await?;
        let js = async_nats::jetstream::new(client);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match js.query_account().await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => bail!("JetStream on node {node} not ready: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// URL of the first node.
    pub fn url(&self) -> String {
        self.url_of(0)
    }

    /// URL of node `i`.
    pub fn url_of(&self, i: usize) -> String {
        self.servers[i].url()
    }

    /// Process ids of the running nodes (e.g. to read their CPU time).
    pub fn server_pids(&self) -> Vec<u32> {
        self.servers.iter().filter_map(NatsServer::pid).collect()
    }

    /// Node `i`, e.g. to restart it.
    pub fn server_mut(&mut self, i: usize) -> &mut NatsServer {
        &mut self.servers[i]
    }

    /// A NATS client (the version the host uses).
    pub async fn nats(&self) -> Result<async_nats::Client> {
        Ok(async_nats::connect(self.url()).await?)
    }

    /// The published wasmCloud control-interface client, on node 0.
    pub async fn ctl(&self) -> Result<wasmcloud_control_interface::Client> {
        self.ctl_on(0).await
    }

    /// The published wasmCloud control-interface client, on node `i`.
    pub async fn ctl_on(&self, i: usize) -> Result<wasmcloud_control_interface::Client> {
        let nc = async_nats_039::connect(self.url_of(i)).await?;
        Ok(wasmcloud_control_interface::ClientBuilder::new(nc)
            .lattice(self.name.clone())
            .timeout(Duration::from_secs(5))
            .auction_timeout(Duration::from_secs(1))
            .build())
    }

    /// Trellis's own typed client.
    pub async fn client(&self) -> Result<trellis_messages::Client> {
        Ok(trellis_messages::Client::new(self.nats().await?, trellis_messages::DEFAULT_CTL_PREFIX, &self.name)
            .with_gather(Duration::from_secs(1)))
    }

    /// A host configuration for this lattice on node 0, heartbeat every second.
    pub fn host_config(&self) -> HostConfig {
        self.host_config_on(0)
    }

    /// A host configuration for this lattice on node `i`.
    pub fn host_config_on(&self, i: usize) -> HostConfig {
        HostConfig {
            nats: NatsConfig { url: self.url_of(i), ..NatsConfig::default() },
            lattice: self.name.clone(),
            heartbeat_interval: Duration::from_secs(1),
            wasm: test_wasm_config(),
            ..HostConfig::default()
        }
    }

    /// A host configuration on node `i` that loads no local files, as a host on another
    /// machine: its components come from the lattice's artifact store ([`Self::push`]).
    pub fn machine_config_on(&self, i: usize) -> HostConfig {
        let mut config = self.host_config_on(i);
        config.wasm.file_load = trellis_host::wasm::sources::load::FileLoad::default();
        config
    }

    /// [`Self::machine_config_on`] node 0.
    pub fn machine_config(&self) -> HostConfig {
        self.machine_config_on(0)
    }

    /// Pushes the guest at `path` into the lattice's artifact store (one replica) and returns
    /// its reference, `nats://{name}:test`, which hosts of every node can scale.
    pub async fn push(&self, name: &str, path: &str) -> Result<String> {
        let reference = format!("nats://{name}:test");
        let bytes = std::fs::read(path)?;
        trellis_host::wasm::sources::artifacts::push(&self.nats().await?, &self.name, 1, &reference, &bytes)
            .await
            .map_err(anyhow::Error::msg)?;
        Ok(reference)
    }

    /// Scales `component_id` from `reference` on `host_id` and waits for the outcome event:
    /// `Ok` with `component_scaled` data, `Err` with the text of `component_scale_failed`.
    pub async fn scale(
        &self,
        host_id: &str,
        component_id: &str,
        reference: &str,
        max_instances: u32,
    ) -> Result<std::result::Result<ComponentScaled, String>> {
        let client = self.client().await?;
        let events = self.watch_scale_events(component_id).await?;
        let command = ScaleComponentCommand {
            component_ref: reference.into(),
            component_id: component_id.into(),
            max_instances,
            host_id: host_id.into(),
            ..ScaleComponentCommand::default()
        };
        let ack = client.scale_component(host_id, &command).await?;
        tracing::debug!(%ack, "scale acknowledged");
        events.await?
    }

    /// A task that resolves with the next scale event of `component_id` (60 s at most).
    pub async fn watch_scale_events(
        &self,
        component_id: &str,
    ) -> Result<tokio::task::JoinHandle<Result<std::result::Result<ComponentScaled, String>>>> {
        let nats = self.nats().await?;
        let mut sub = nats.subscribe(format!("wasmbus.evt.{}.>", self.name)).await?;
        nats.flush().await?;
        let id = component_id.to_string();
        Ok(tokio::spawn(async move {
            let _keep = nats;
            let found = tokio::time::timeout(Duration::from_secs(60), async {
                use futures::StreamExt;
                while let Some(msg) = sub.next().await {
                    let Ok(ev) = serde_json::from_slice::<trellis_messages::event::CloudEvent>(&msg.payload) else { continue };
                    use trellis_messages::event::LatticeEvent as _;
                    let name = ev.name().unwrap_or_default().to_string();
                    if name != "component_scaled" && name != "component_scale_failed" {
                        continue;
                    }
                    let data: ComponentScaled = serde_json::from_value(ev.json().clone())?;
                    if data.component_id != id {
                        continue;
                    }
                    return Ok(match data.error.clone() {
                        Some(e) => Err(e),
                        None => Ok(data),
                    });
                }
                bail!("event subscription ended")
            })
            .await;
            found.map_err(|_| anyhow::anyhow!("no scale event for `{id}` within 60s"))?
        }))
    }

    /// Starts an in-process host with `config`.
    pub async fn start_host(&self, config: HostConfig) -> Result<HostHandle> {
        Ok(trellis_host::start(config).await?)
    }
}

fn unique_lattice() -> String {
    format!("test-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// The `trellis` binary of this build (`target/<profile>/trellis`).
///
/// Cargo holds the build directory's lock while tests run, so tests cannot build it themselves;
/// `scripts/test` builds it first (`cargo build --workspace --bins`). A binary older than the
/// host's sources is refused rather than silently tested.
pub fn trellis_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> (tests) or target/<profile>/<bin> (the benchmark)
    // → target/<profile>/trellis
    let dir = exe.parent().context("test binary has no directory")?;
    let profile_dir = if dir.ends_with("deps") { dir.parent().context("test binary has no target dir")? } else { dir };
    let bin = profile_dir.join("trellis");
    let hint = "build it first: `cargo build --workspace --bins` (scripts/test does)";
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .with_context(|| format!("no trellis binary at {}; {hint}", bin.display()))?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in ["host/src", "messages/src"] {
        if let Some(newest) = newest_mtime(&root.join(dir)) {
            if newest > built {
                bail!("{} is older than the sources in {dir}; {hint}", bin.display());
            }
        }
    }
    Ok(bin)
}

fn newest_mtime(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let t = if path.is_dir() { newest_mtime(&path) } else { entry.metadata().and_then(|m| m.modified()).ok() };
        newest = newest.max(t);
    }
    newest
}

/// Waits until `f` returns `Some`, polling every 50 ms, for at most `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The text a host's `/metrics` serves (one GET over a fresh connection); empty on failure.
pub async fn scrape(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else { return String::new() };
    if stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.is_err() {
        return String::new();
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
}

/// The value of the sample `name` whose labels include every one of `labels`.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        (metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))).then(|| value.parse().ok())?
    })
}

/// The folder of wasmCloud 1.9.2's example `name` (`tests/fixtures/wasmcloud-examples/`): its
/// component (`{name}.wasm`), its own `wadm.yaml` and README.
pub fn wasmcloud_example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/wasmcloud-examples").join(name)
}
