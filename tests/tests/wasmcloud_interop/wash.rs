//! wasmCloud 1.x's CLI as it is (`wash-cli` 0.39.0 from crates.io, built by `scripts/build-wash`)
//! driving a lattice of Trellis hosts, and a mixed one with a wasmCloud 1.9.2 host and a real
//! wadm: every command an operator runs day to day, with `-o json` read as wash prints it.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use trellis_host::permission::kind::BuiltinImages;
use trellis_tests::wasmcloud_host::WasmcloudHost;
use trellis_tests::{eventually, guests, init_tracing, Registry, TestLattice};

/// `wash` aimed at one lattice, with a home of its own (wash keeps contexts in `~/.wash`).
struct Wash {
    bin: std::path::PathBuf,
    env: HashMap<&'static str, String>,
    _home: tempfile::TempDir,
}

impl Wash {
    fn on(lattice: &TestLattice) -> anyhow::Result<Self> {
        let home = tempfile::tempdir()?;
        let url = lattice.url();
        let (host, port) = url.trim_start_matches("nats://").rsplit_once(':').ok_or_else(|| anyhow::anyhow!("no port in {url}"))?;
        let (host, port) = (host.to_string(), port.to_string());
        let env = HashMap::from([
            ("HOME", home.path().display().to_string()),
            ("WASMCLOUD_CTL_HOST", host.clone()),
            ("WASMCLOUD_CTL_PORT", port.clone()),
            ("WASMCLOUD_RPC_HOST", host),
            ("WASMCLOUD_RPC_PORT", port),
            ("WASMCLOUD_LATTICE", lattice.name.clone()),
            ("WASMCLOUD_CTL_TIMEOUT_MS", "5000".into()),
            ("WASMCLOUD_RPC_TIMEOUT_MS", "5000".into()),
        ]);
        Ok(Self { bin: trellis_tests::wash_binary()?, env, _home: home })
    }

    /// Runs `wash {args} -o json`: the JSON it printed, or why it failed.
    fn run(&self, args: &[&str]) -> anyhow::Result<Value> {
        let out = Command::new(&self.bin).args(args).args(["-o", "json"]).envs(&self.env).output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        anyhow::ensure!(out.status.success(), "wash {}: {}\n{stdout}\n{}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr));
        serde_json::from_str(stdout.trim()).map_err(|e| anyhow::anyhow!("wash {}: not JSON ({e}): {stdout}", args.join(" ")))
    }

    /// [`Self::run`], and its `success` must be true.
    fn ok(&self, args: &[&str]) -> anyhow::Result<Value> {
        let out = self.run(args)?;
        anyhow::ensure!(out["success"] == true, "wash {}: {out}", args.join(" "));
        Ok(out)
    }
}

/// Host ids `wash get hosts` lists.
fn hosts(wash: &Wash) -> anyhow::Result<Vec<String>> {
    let out = wash.ok(&["get", "hosts"])?;
    Ok(out["hosts"].as_array().cloned().unwrap_or_default().iter().filter_map(|h| h["id"].as_str().map(str::to_string)).collect())
}

/// Component ids in `wash get inventory {host}`.
fn components(wash: &Wash, host: &str) -> anyhow::Result<Vec<String>> {
    let out = wash.ok(&["get", "inventory", host])?;
    let inventories = out["inventories"].as_array().cloned().unwrap_or_default();
    Ok(inventories.iter().flat_map(|i| i["components"].as_array().cloned().unwrap_or_default()).filter_map(|c| c["id"].as_str().map(str::to_string)).collect())
}

/// The day-to-day commands against `host` (a Trellis host): start, scale and stop a component,
/// start and stop a provider, put and get config, put and delete a link, label the host, call
/// the component; HTTP through the link in between.
async fn operate(wash: &Wash, host: &str, hello: &str) -> anyhow::Result<()> {
    wash.ok(&["start", "component", hello, "hello", "--host-id", host, "--max-instances", "2"])?;
    anyhow::ensure!(components(wash, host)?.contains(&"hello".to_string()), "wash start component: hello is not in the inventory");
    wash.ok(&["scale", "component", host, hello, "hello", "--max-instances", "4"])?;
    let out = wash.ok(&["get", "inventory", host])?;
    let max = out["inventories"][0]["components"].as_array().and_then(|c| c.iter().find(|c| c["id"] == "hello")).map(|c| c["max_instances"].clone());
    anyhow::ensure!(max == Some(Value::from(4)), "wash scale component: {out}");

    let port = trellis_tests::free_port();
    let address = format!("address=127.0.0.1:{port}");
    wash.ok(&["config", "put", "hello-http", &address])?;
    let config = wash.run(&["config", "get", "hello-http"])?;
    anyhow::ensure!(config.to_string().contains(&format!("127.0.0.1:{port}")), "wash config get: {config}");
    wash.ok(&["start", "provider", "ghcr.io/wasmcloud/http-server:0.27.0", "http", "--host-id", host])?;
    wash.ok(&["link", "put", "http", "hello", "wasi", "http", "--interface", "incoming-handler", "--source-config", "hello-http"])?;
    let links = wash.ok(&["get", "links"])?;
    anyhow::ensure!(links.to_string().contains("incoming-handler"), "wash get links: {links}");
    let served = eventually(Duration::from_secs(20), || async { trellis_tests::http_get(port, "/").await.ok().filter(|(s, _)| *s == 200) }).await;
    anyhow::ensure!(served.is_some(), "no HTTP through the link wash put: {:?}", trellis_tests::http_get(port, "/").await);

    // wash call: an HTTP request to the component over wRPC, as wash makes it.
    let called = wash.ok(&["call", "hello", "wasi:http/incoming-handler.handle"])?;
    anyhow::ensure!(called.to_string().contains("Hello"), "wash call: {called}");
    // wash spy (experimental in 0.39) watches the component's wRPC subjects: it sees the same
    // call (not calls between Trellis hosts, which are Trellis's own request/reply).
    let mut spy = Command::new(&wash.bin)
        .args(["spy", "--experimental", "hello"])
        .envs(&wash.env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    wash.ok(&["call", "hello", "wasi:http/incoming-handler.handle"])?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    spy.kill()?;
    let spied = String::from_utf8_lossy(&spy.wait_with_output()?.stdout).into_owned();
    anyhow::ensure!(spied.contains("Spying on component hello") && spied.contains("incoming-handler"), "wash spy saw no call: {spied}");

    wash.ok(&["label", host, "zone=north"])?;
    let listed = wash.ok(&["get", "hosts"])?;
    let labelled = listed["hosts"].as_array().and_then(|h| h.iter().find(|h| h["id"] == host)).map(|h| h["labels"]["zone"].clone());
    anyhow::ensure!(labelled == Some(Value::from("north")), "wash label: {listed}");
    wash.ok(&["label", host, "--delete", "zone=north"])?;

    wash.ok(&["link", "del", "http", "wasi", "http"])?;
    let links = wash.ok(&["get", "links"])?;
    anyhow::ensure!(!links.to_string().contains("incoming-handler"), "wash link del: {links}");
    wash.ok(&["stop", "provider", "http", "--host-id", host])?;
    wash.ok(&["stop", "component", "hello", "--host-id", host])?;
    anyhow::ensure!(!components(wash, host)?.contains(&"hello".to_string()), "wash stop component: hello still runs");
    Ok(())
}

/// App `name` of manifest `yaml` (serving on `port`) through `wash app`: deploy, list, status,
/// undeploy, delete.
async fn apps(wash: &Wash, name: &str, yaml: &str, port: u16) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let manifest = dir.path().join("wadm.yaml");
    std::fs::write(&manifest, yaml)?;
    let deployed = eventually(Duration::from_secs(30), || async { wash.ok(&["app", "deploy", manifest.to_str().unwrap_or_default()]).ok() }).await;
    anyhow::ensure!(deployed.is_some(), "wash app deploy: {:?}", wash.ok(&["app", "deploy", manifest.to_str().unwrap_or_default()]));
    let listed = wash.ok(&["app", "list"])?;
    anyhow::ensure!(listed.to_string().contains(name), "wash app list: {listed}");
    let status = eventually(Duration::from_secs(60), || async {
        let status = wash.ok(&["app", "status", name]).ok()?;
        status.to_string().to_lowercase().contains("\"deployed\"").then_some(status)
    })
    .await;
    anyhow::ensure!(status.is_some(), "wash app status never said deployed: {:?}", wash.run(&["app", "status", name]));
    let served = eventually(Duration::from_secs(30), || async { trellis_tests::http_get(port, "/").await.ok().filter(|(s, _)| *s == 200) }).await;
    anyhow::ensure!(served.is_some(), "the app wash deployed never answered");
    wash.ok(&["app", "undeploy", name])?;
    let gone = eventually(Duration::from_secs(30), || async { trellis_tests::http_get(port, "/").await.is_err().then_some(()) }).await;
    anyhow::ensure!(gone.is_some(), "wash app undeploy left the app serving");
    wash.ok(&["app", "delete", name])?;
    let listed = wash.ok(&["app", "list"])?;
    anyhow::ensure!(!listed.to_string().contains(name), "wash app delete: {listed}");
    Ok(())
}

fn trellis_config(lattice: &TestLattice, registry: &Registry, apps: bool) -> anyhow::Result<trellis_host::HostConfig> {
    let mut config = lattice.host_config();
    config.apps = apps;
    config.wasm.oci.insecure = vec![registry.address()];
    config.providers.builtin_images = BuiltinImages::parse(&["wasmcloud"])?;
    Ok(config)
}

/// Trellis hosts alone, their own app manager answering wadm's API: wash as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wash_drives_a_lattice_of_trellis_hosts() -> anyhow::Result<()> {
    // wash is built by scripts/interop, with wasmCloud's host.
    if WasmcloudHost::binary().is_none() {
        return Ok(());
    }
    init_tracing();
    let registry = Registry::start(&[]).await?;
    let hello = registry.push("http-hello", guests::HTTP_HELLO)?;
    let example = trellis_tests::wasmcloud_host::push_example(&registry, "http-hello-world")?;
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(trellis_config(&lattice, &registry, true)?).await?;
    let wash = Wash::on(&lattice)?;
    anyhow::ensure!(hosts(&wash)? == vec![host.id().to_string()], "wash get hosts");
    operate(&wash, host.id(), &hello).await?;
    let port = trellis_tests::free_port();
    let yaml = std::fs::read_to_string(trellis_tests::wasmcloud_example("http-hello-world").join("wadm.yaml"))?;
    let yaml = yaml.replace("file://./build/http_hello_world_s.wasm", &example).replace("0.0.0.0:8000", &format!("127.0.0.1:{port}"));
    apps(&wash, "rust-hello-world", &yaml, port).await?;
    host.shutdown(None).await?;
    Ok(())
}

/// A mixed lattice, a wasmCloud 1.9.2 host and a Trellis host (`--no-apps`) with a real wadm:
/// wash lists both, drives the Trellis host as above and the wasmCloud host's components, and
/// deploys an app through wadm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wash_drives_a_mixed_lattice() -> anyhow::Result<()> {
    let Some(bin) = WasmcloudHost::binary() else { return Ok(()) };
    init_tracing();
    let registry = Registry::start(&[]).await?;
    let hello = registry.push("http-hello", guests::HTTP_HELLO)?;
    let echo = registry.push("echo", guests::ECHO)?;
    let example = trellis_tests::wasmcloud_host::push_example(&registry, "http-hello-world")?;
    let lattice = TestLattice::new().await?;
    let _wadm = trellis_tests::WadmProcess::start(&lattice.url())?;
    let mut config = trellis_config(&lattice, &registry, false)?;
    config.labels.insert("runtime".into(), "trellis".into());
    let trellis = lattice.start_host(config).await?;
    let wasmcloud = WasmcloudHost::start(&bin, &lattice, 0, &[trellis.id()], &registry.address()).await?;
    let wash = Wash::on(&lattice)?;
    let mut listed = hosts(&wash)?;
    listed.sort();
    let mut both = vec![trellis.id().to_string(), wasmcloud.id.clone()];
    both.sort();
    anyhow::ensure!(listed == both, "wash get hosts: {listed:?}");
    operate(&wash, trellis.id(), &hello).await?;
    // The wasmCloud host, by the same commands.
    wash.ok(&["start", "component", &echo, "w-echo", "--host-id", &wasmcloud.id])?;
    anyhow::ensure!(components(&wash, &wasmcloud.id)?.contains(&"w-echo".to_string()), "wash start component on wasmCloud");
    wash.ok(&["stop", "component", "w-echo", "--host-id", &wasmcloud.id])?;
    // The example's app spread over both kinds, its HTTP server on the Trellis host.
    let port = trellis_tests::free_port();
    apps(&wash, "mixed-hello", &super::mixed_manifest(&example, port), port).await?;
    wasmcloud.stop();
    trellis.shutdown(None).await?;
    Ok(())
}
