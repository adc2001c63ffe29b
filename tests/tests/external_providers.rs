//! External capability providers: a provider built with wasmCloud's published provider SDK
//! (`providers/test-provider`) started, told its links and config, health-checked and stopped
//! by a Trellis host over wasmCloud's provider protocol; and supervision of providers that
//! crash, flood their output or ignore the shutdown request (small shell-script providers).

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::Value;
use trellis_host::config::ProviderSettings;
use trellis_messages::link::Link;
use trellis_tests::{eventually, init_tracing, test_provider, TestLattice};

fn settings() -> ProviderSettings {
    ProviderSettings {
        shutdown_grace: Duration::from_secs(2),
        health_interval: Duration::from_millis(500),
        restart_max: Duration::from_secs(2),
        ..ProviderSettings::default()
    }
}

/// A lattice with one host supervising providers with [`settings`], and a client.
async fn lattice_with_host() -> anyhow::Result<(TestLattice, trellis_host::HostHandle, trellis_messages::Client)> {
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.providers = settings();
    let host = lattice.start_host(config).await?;
    let client = lattice.client().await?;
    Ok((lattice, host, client))
}

/// What the test provider recorded.
fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

async fn wait_record(path: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(15), || {
        let found = records(path).into_iter().find(|r| pred(r));
        async move { found }
    })
    .await
    .unwrap_or_else(|| panic!("the provider never recorded {what}; it recorded: {:#?}", records(path)))
}

/// Lattice events as (type, data).
struct Events(async_nats::Subscriber);

impl Events {
    async fn on(lattice: &TestLattice) -> anyhow::Result<Self> {
        let nats = lattice.nats().await?;
        Ok(Self(nats.subscribe(format!("wasmbus.evt.{}.>", lattice.name)).await?))
    }

    /// The next event of type `ty` for which `pred` holds (others are skipped).
    async fn expect(&mut self, ty: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
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

fn alive(pid: u64) -> bool {
    // A zombie is not running: read its state.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.split(") ").nth(1).unwrap_or_default().starts_with('Z'))
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn an_sdk_provider_gets_its_start_data_links_config_health_and_shutdown() -> anyhow::Result<()> {
    init_tracing();
    let provider = test_provider()?;
    let (lattice, host, client) = lattice_with_host().await?;
    let ctl = lattice.ctl().await?;
    let mut events = Events::on(&lattice).await?;
    let dir = tempfile::tempdir()?;
    let record = dir.path().join("record.jsonl");

    let provider_config: HashMap<String, String> =
        [("record".to_string(), record.display().to_string()), ("say".into(), "hello-from-the-test-provider".into())].into();
    client.put_config("tp-settings", &provider_config).await?;
    client.put_config("kv-target", &[("bucket".to_string(), "orders".to_string())].into()).await?;
    // A link that exists before the provider starts arrives in its start data.
    client.put_link(&Link::new("shop", "tp", "default", "wasi", "keyvalue", &["store"]).with_target_config(&["kv-target"])).await?;

    let ack = ctl
        .start_provider(host.id(), &provider.display().to_string(), "tp", None, vec!["tp-settings".into()])
        .await
        .map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded(), "{}", ack.message());
    events.expect("provider_started", Duration::from_secs(5), |d| d["provider_id"] == "tp").await;

    let init = wait_record(&record, "init", |r| r["event"] == "init").await;
    assert_eq!(init["provider_id"], "tp");
    assert_eq!(init["host_id"], host.id());
    assert_eq!(init["lattice"], lattice.name.as_str());
    assert_eq!(init["link_name"], "default");
    assert_eq!(init["links"], 1, "{init}");
    assert_eq!(init["config"]["say"], "hello-from-the-test-provider");
    assert!(init["default_rpc_timeout_ms"].as_u64().is_some(), "{init}");
    let env: Vec<&str> = init["env"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(env.iter().all(|k| *k == "RUST_LOG" || k.starts_with("OTEL_")), "the environment is cleared: {env:?}");
    let pid = init["pid"].as_u64().unwrap();
    // The SDK hands start-data links to the provider as it starts.
    wait_record(&record, "the start-data link", |r| r["event"] == "link_put" && r["source_id"] == "shop" && r["config"]["bucket"] == "orders").await;

    // Health: answered, passed, and the inventory says so.
    events.expect("health_check_passed", Duration::from_secs(10), |d| d["provider_id"] == "tp").await;
    let inv = client.inventory(host.id()).await?;
    let desc = inv.providers.iter().find(|p| p.id == "tp").expect("in the inventory");
    let status = desc.status.clone().expect("an external provider has a status");
    assert_eq!((status.state.as_str(), status.healthy), ("running", Some(true)), "{status:?}");

    // Links made and removed while it runs reach it, as source and as target.
    client.put_link(&Link::new("tp", "worker", "default", "wasmcloud", "messaging", &["handler"])).await?;
    wait_record(&record, "a link as source", |r| r["event"] == "link_put" && r["role"] == "source" && r["target"] == "worker").await;
    client.delete_link("shop", "default", "wasi", "keyvalue").await?;
    wait_record(&record, "the link delete", |r| r["event"] == "link_del" && r["source_id"] == "shop").await;
    let puts = records(&record).iter().filter(|r| r["event"] == "link_put" && r["role"] == "source").count();
    assert_eq!(puts, 1, "each link reaches the instance once");

    // A config update reaches it; told to be unhealthy, the host reports it.
    let mut unhealthy = provider_config.clone();
    unhealthy.insert("healthy".into(), "false".into());
    client.put_config("tp-settings", &unhealthy).await?;
    wait_record(&record, "the config update", |r| r["event"] == "config_update" && r["values"]["healthy"] == "false").await;
    events.expect("health_check_failed", Duration::from_secs(10), |d| d["provider_id"] == "tp").await;
    let status = eventually(Duration::from_secs(5), || {
        let client = client.clone();
        let id = host.id().to_string();
        async move {
            let inv = client.inventory(&id).await.ok()?;
            inv.providers.into_iter().find(|p| p.id == "tp")?.status.filter(|s| s.healthy == Some(false))
        }
    })
    .await
    .expect("the inventory shows the provider unhealthy");
    assert_eq!(status.message.as_deref(), Some("told to be unhealthy"));

    // Killed, it is restarted with fresh start data (a new instance id), links included.
    let instance = init["instance_id"].as_str().unwrap().to_string();
    std::process::Command::new("kill").args(["-9", &pid.to_string()]).status()?;
    let exited = events.expect("provider_exited", Duration::from_secs(10), |d| d["provider_id"] == "tp").await;
    assert_eq!(exited["status"], "signal: 9 (SIGKILL)", "{exited}");
    let again = wait_record(&record, "a second init", |r| r["event"] == "init" && r["pid"] != pid).await;
    assert_ne!(again["instance_id"], instance.as_str());
    assert_eq!(again["links"], 1, "the link as source, still there: {again}");
    let pid = again["pid"].as_u64().unwrap();
    events.expect("health_check_status", Duration::from_secs(10), |d| d["provider_id"] == "tp").await;
    let status = client.inventory(host.id()).await?.providers.into_iter().find(|p| p.id == "tp").and_then(|p| p.status).unwrap();
    assert_eq!((status.state.as_str(), status.restarts), ("running", 1), "{status:?}");

    // Stop: the SDK runs the provider's shutdown and exits within the grace period.
    let asked = Instant::now();
    let ack = ctl.stop_provider(host.id(), "tp").await.map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded(), "{}", ack.message());
    events.expect("provider_stopped", Duration::from_secs(10), |d| d["provider_id"] == "tp").await;
    assert!(asked.elapsed() < Duration::from_secs(2), "stopped within the grace period: {:?}", asked.elapsed());
    wait_record(&record, "the shutdown", |r| r["event"] == "shutdown").await;
    assert!(!alive(pid), "the provider process is gone");
    assert!(client.inventory(host.id()).await?.providers.is_empty());
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn a_stopping_host_stops_its_providers_and_a_stubborn_one_is_killed() -> anyhow::Result<()> {
    init_tracing();
    let provider = test_provider()?;
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    // As `trellis host` runs them: each provider behind `trellis provider-guard`.
    config.providers = ProviderSettings { guard: Some(trellis_tests::trellis_bin()?), ..settings() };
    let host = lattice.start_host(config).await?;
    let client = lattice.client().await?;
    let ctl = lattice.ctl().await?;
    let dir = tempfile::tempdir()?;
    let (polite, stubborn) = (dir.path().join("polite.jsonl"), dir.path().join("stubborn.jsonl"));
    client.put_config("polite", &[("record".to_string(), polite.display().to_string())].into()).await?;
    client
        .put_config(
            "stubborn",
            &[("record".to_string(), stubborn.display().to_string()), ("ignore_shutdown".into(), "true".into())].into(),
        )
        .await?;
    for (id, conf) in [("polite", "polite"), ("stubborn", "stubborn")] {
        let ack = ctl.start_provider(host.id(), &provider.display().to_string(), id, None, vec![conf.into()]).await.map_err(anyhow::Error::msg)?;
        assert!(ack.succeeded(), "{}", ack.message());
    }
    let polite_pid = wait_record(&polite, "init", |r| r["event"] == "init").await["pid"].as_u64().unwrap();
    let stubborn_pid = wait_record(&stubborn, "init", |r| r["event"] == "init").await["pid"].as_u64().unwrap();

    let asked = Instant::now();
    host.shutdown(None).await?;
    let took = asked.elapsed();
    assert!(!alive(polite_pid), "the polite provider exited");
    assert!(!alive(stubborn_pid), "the stubborn provider was killed");
    wait_record(&stubborn, "SIGTERM ignored", |r| r["event"] == "sigterm_ignored").await;
    // grace (2 s) + SIGTERM's 2 s, and not much more.
    assert!(took >= Duration::from_secs(4) && took < Duration::from_secs(9), "host stop took {took:?}");
    Ok(())
}

#[tokio::test]
async fn a_crashing_provider_restarts_with_growing_delays_and_reports_why() -> anyhow::Result<()> {
    init_tracing();
    let (lattice, host, client) = lattice_with_host().await?;
    let mut events = Events::on(&lattice).await?;
    let dir = tempfile::tempdir()?;
    let crasher = script(dir.path(), "crasher", "echo \"cannot reach the database (pid $$)\" >&2\nexit 3");

    let ack = lattice.ctl().await?.start_provider(host.id(), &crasher.display().to_string(), "db", None, vec![]).await.map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded(), "{}", ack.message());
    let mut delays = Vec::new();
    for _ in 0..4 {
        let exited = events.expect("provider_exited", Duration::from_secs(10), |d| d["provider_id"] == "db").await;
        assert_eq!(exited["status"], "exit status: 3", "{exited}");
        let tail = exited["stderr_tail"].as_array().unwrap();
        assert!(tail.iter().any(|l| l.as_str().unwrap_or_default().contains("cannot reach the database")), "{exited}");
        delays.push(exited["restart_in_ms"].as_u64().unwrap());
    }
    assert_eq!(delays, [100, 200, 400, 800], "the restart delay doubles");
    let status = client.inventory(host.id()).await?.providers.into_iter().find(|p| p.id == "db").and_then(|p| p.status).unwrap();
    assert!(status.restarts >= 4, "{status:?}");
    assert_eq!(status.last_exit.as_deref(), Some("exit status: 3"));

    // The delay is capped (2 s here), and a stop ends the loop at once.
    let ack = lattice.ctl().await?.stop_provider(host.id(), "db").await.map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded());
    events.expect("provider_stopped", Duration::from_secs(5), |d| d["provider_id"] == "db").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(client.inventory(host.id()).await?.providers.is_empty(), "not restarted after the stop");
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn a_provider_flooding_its_output_or_leaving_children_is_contained() -> anyhow::Result<()> {
    init_tracing();
    let (lattice, host, client) = lattice_with_host().await?;
    let ctl = lattice.ctl().await?;
    let dir = tempfile::tempdir()?;
    let pids = dir.path().join("child.pid");
    // Floods stdout without newlines and stderr with lines; starts a child that ignores SIGTERM
    // and would outlive it; ignores the shutdown request and SIGTERM itself.
    let flood = script(
        dir.path(),
        "flood",
        &format!(
            "trap '' TERM\n(trap '' TERM; exec sleep 1000) & echo $! > {}\n\
             yes flood-line >&2 &\nhead -c 100000000 /dev/zero | tr '\\0' x\nwait",
            pids.display()
        ),
    );
    let ack = ctl.start_provider(host.id(), &flood.display().to_string(), "noisy", None, vec![]).await.map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded(), "{}", ack.message());
    let child: u64 = eventually(Duration::from_secs(5), || {
        let pid = std::fs::read_to_string(&pids).ok().and_then(|s| s.trim().parse().ok());
        async move { pid }
    })
    .await
    .expect("the script started its child");
    // The host answers while the provider floods.
    for _ in 0..5 {
        let asked = Instant::now();
        client.inventory(host.id()).await?;
        assert!(asked.elapsed() < Duration::from_secs(2), "inventory took {:?} during the flood", asked.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rss = std::fs::read_to_string("/proc/self/status")?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches(" kB").parse::<u64>().unwrap_or(0)))
        .unwrap_or(0);
    assert!(rss < 1 << 20, "the test process (host included) stays under 1 GiB while 100 MB arrive without a newline: {rss} kB");
    let ack = ctl.stop_provider(host.id(), "noisy").await.map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded());
    let gone = eventually(Duration::from_secs(8), || async move { (!alive(child)).then_some(()) }).await;
    assert!(gone.is_some(), "the provider's child went with its process group");
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn provider_references_a_host_may_not_run_are_refused() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.machine_config()).await?;
    let ctl = lattice.ctl().await?;
    let mut events = Events::on(&lattice).await?;
    let dir = tempfile::tempdir()?;
    let exe = script(dir.path(), "p", "sleep 100");
    for (reference, reason) in [
        (exe.display().to_string(), "does not start providers from files"),
        ("ghcr.io/wasmcloud/keyvalue-redis:0.28.2".to_string(), "--allow-provider-images"),
    ] {
        let ack = ctl.start_provider(host.id(), &reference, "p", None, vec![]).await.map_err(anyhow::Error::msg)?;
        assert!(ack.succeeded());
        let failed = events.expect("provider_start_failed", Duration::from_secs(5), |_| true).await;
        assert!(failed["error"].as_str().unwrap_or_default().contains(reason), "{reference}: {failed}");
    }
    assert!(lattice.client().await?.inventory(host.id()).await?.providers.is_empty());
    host.shutdown(None).await?;
    Ok(())
}

fn echo_link(source: &str, target: &str) -> Link {
    Link::new(source, target, "default", "trellis", "echo", &["echo"])
}

#[tokio::test]
async fn components_and_an_sdk_provider_call_each_other_over_wrpc_across_hosts() -> anyhow::Result<()> {
    init_tracing();
    let provider = test_provider()?;
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.providers = settings();
    // The provider runs on one host, the components on another: every call crosses NATS. The
    // components' host lets one call at a time go to a provider; the next waits 500 ms.
    let provider_host = lattice.start_host(config.clone()).await?;
    config.providers.max_calls = 1;
    config.wasm.max_queue_wait = Duration::from_millis(500);
    let component_host = lattice.start_host(config).await?;
    let client = lattice.client().await?;
    let dir = tempfile::tempdir()?;
    let record = dir.path().join("record.jsonl");
    client.put_config("tp-settings", &[("record".to_string(), record.display().to_string())].into()).await?;
    lattice.scale(component_host.id(), "pinger", trellis_tests::actors::PINGER, 4).await?.map_err(anyhow::Error::msg)?;
    lattice.scale(component_host.id(), "echo", trellis_tests::actors::ECHO, 4).await?.map_err(anyhow::Error::msg)?;
    let ack = lattice
        .ctl()
        .await?
        .start_provider(provider_host.id(), &provider.display().to_string(), "tp", None, vec!["tp-settings".into()])
        .await
        .map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded(), "{}", ack.message());
    wait_record(&record, "init", |r| r["event"] == "init").await;
    client.put_link(&echo_link("pinger", "tp")).await?;
    client.put_link(&echo_link("tp", "echo")).await?;

    // Component → provider: pinger's `echo` import is served by the provider.
    const PING: &str = "trellis:echo/pinger.ping";
    let first = eventually(Duration::from_secs(15), || {
        let client = client.clone();
        async move { client.call("pinger", PING, vec![r#""via the provider""#.into()]).await.ok().filter(|r| r.results.is_some()) }
    })
    .await
    .expect("pinger reached the provider");
    assert_eq!(first.results.unwrap(), vec![r#""via the provider""#.to_string()]);
    let call = wait_record(&record, "the call", |r| r["event"] == "echo").await;
    assert_eq!(call["caller"], "pinger", "the provider sees who calls: {call}");

    // Provider → component: the provider passes the message on to `echo` over wRPC.
    let reply = client.call("pinger", PING, vec![r#""call:echo:round trip""#.into()]).await?;
    assert_eq!(reply.results, Some(vec![r#""round trip""#.to_string()]), "{reply:?}");
    wait_record(&record, "the call to echo", |r| r["event"] == "called" && r["answer"] == "round trip").await;
    for i in 0..20 {
        let reply = client.call("pinger", PING, vec![format!(r#""call:echo:{i}""#)]).await?;
        assert_eq!(reply.results, Some(vec![format!(r#""{i}""#)]), "{reply:?}");
    }

    // A provider's call that fails in the component (a trap) fails at once for the provider,
    // not at its timeout: the results are closed empty.
    let asked = Instant::now();
    let reply = client.call("pinger", PING, vec![r#""recurse:echo:100000000""#.into()]).await?;
    let text = reply.results.clone().unwrap_or_default().join("");
    assert!(text.starts_with("\"err:"), "{reply:?}");
    assert!(asked.elapsed() < Duration::from_millis(1500), "failed at once: {:?}", asked.elapsed());
    let reply = client.call("pinger", PING, vec![r#""recurse:echo:3""#.into()]).await?;
    assert_eq!(reply.results, Some(vec![r#""ok: 3""#.to_string()]), "{reply:?}");

    // As a messaging provider does: the provider delivers a message to msg-echo's
    // `wasmcloud:messaging/handler` over wRPC; the component answers on the reply subject
    // through its consumer link to the built-in messaging provider.
    lattice.scale(component_host.id(), "msg-echo", trellis_tests::actors::MSG_ECHO, 2).await?.map_err(anyhow::Error::msg)?;
    let ack = lattice.ctl().await?.start_provider(component_host.id(), "trellis://messaging", "msg", None, vec![]).await.map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded(), "{}", ack.message());
    client.put_link(&Link::new("msg-echo", "msg", "default", "wasmcloud", "messaging", &["consumer"])).await?;
    client.put_link(&Link::new("tp", "msg-echo", "default", "wasmcloud", "messaging", &["handler"])).await?;
    let nats = lattice.nats().await?;
    let mut replies = nats.subscribe("replies.1").await?;
    nats.flush().await?;
    let handled = eventually(Duration::from_secs(10), || {
        let client = client.clone();
        async move {
            client.call("pinger", PING, vec![r#""msg:msg-echo:orders.new:replies.1:hello""#.into()]).await.ok().and_then(|r| r.results).filter(|r| r[0] == r#""ok""#)
        }
    })
    .await;
    assert!(handled.is_some(), "msg-echo handled the provider's message");
    let reply = tokio::time::timeout(Duration::from_secs(5), replies.next()).await?.expect("a reply");
    assert_eq!(&reply.payload[..], b"echo: hello");

    // A provider that never answers: the call ends at the deadline (2 s here) with a fault.
    let asked = Instant::now();
    let reply = client.clone().with_timeout(Duration::from_secs(15)).call("pinger", "trellis:echo/pinger.ping-spin", vec![]).await?;
    let error = reply.error.clone().unwrap_or_default();
    assert!(error.contains("provider `tp`") || error.contains("deadline"), "{reply:?}");
    assert!(asked.elapsed() < Duration::from_secs(6), "bounded by the deadline: {:?}", asked.elapsed());

    // --max-provider-calls: while one call holds the only slot, the next waits, then is busy.
    let spinning = {
        let client = client.clone().with_timeout(Duration::from_secs(15));
        tokio::spawn(async move { client.call("pinger", "trellis:echo/pinger.ping-spin", vec![]).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let busy = client.call("pinger", PING, vec![r#""x""#.into()]).await?;
    assert!(busy.error.clone().unwrap_or_default().contains("--max-provider-calls"), "{busy:?}");
    spinning.await??;
    let reply = client.call("pinger", PING, vec![r#""free again""#.into()]).await?;
    assert_eq!(reply.results, Some(vec![r#""free again""#.to_string()]), "{reply:?}");

    // Without its link the provider is not reachable.
    client.delete_link("pinger", "default", "trellis", "echo").await?;
    let refused = eventually(Duration::from_secs(10), || {
        let client = client.clone();
        async move { client.call("pinger", PING, vec![r#""x""#.into()]).await.ok().filter(|r| r.error.is_some()) }
    })
    .await
    .expect("refused without the link");
    assert!(refused.error.unwrap().contains("no link"), "names the missing link");
    component_host.shutdown(None).await?;
    provider_host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn a_host_killed_with_sigkill_leaves_no_provider_running() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let key = nkeys::KeyPair::new_server();
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("host.log");
    let mut host = std::process::Command::new(trellis_tests::trellis_bin()?)
        .args(["host", "--nats-url", &lattice.url(), "--lattice", &lattice.name, "--host-seed", &key.seed()?, "--allow-file-load"])
        .env("TRELLIS_DATA_DIR", tempfile::tempdir()?.keep())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let pids = dir.path().join("pids");
    // A provider that ignores SIGTERM and has a child that ignores it too; it says hello first.
    let stubborn = script(
        dir.path(),
        "stubborn",
        &format!("echo 'stubborn says hello'\ntrap '' TERM\n(trap '' TERM; exec sleep 1000) & echo \"$$ $!\" > {}\nwait", pids.display()),
    );
    assert!(stubborn.starts_with(dir.path()));
    // Started with the CLI, from a relative path (which it makes absolute for the host).
    let started = eventually(Duration::from_secs(15), || {
        let out = std::process::Command::new(trellis_tests::trellis_bin().unwrap())
            .args(["provider", "start", "--nats-url", &lattice.url(), "--lattice", &lattice.name, &key.public_key(), "stubborn", "./stubborn"])
            .current_dir(dir.path())
            .output();
        let ok = out.is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("started"));
        async move { ok.then_some(()) }
    })
    .await;
    assert!(started.is_some(), "trellis provider start succeeded");
    let found: Vec<u64> = eventually(Duration::from_secs(10), || {
        let found = std::fs::read_to_string(&pids).ok().map(|s| s.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<u64>>());
        async move { found.filter(|p| p.len() == 2) }
    })
    .await
    .expect("the provider started");
    assert!(found.iter().all(|p| alive(*p)));
    // Its output is in the host's log, tagged with its id.
    let logged = eventually(Duration::from_secs(5), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let line = text.lines().find(|l| l.contains("stubborn says hello")).map(str::to_string);
        async move { line }
    })
    .await
    .expect("the provider's line in the host's log");
    assert!(logged.contains("provider_id") && logged.contains("stubborn") && logged.contains("stdout"), "{logged}");
    host.kill()?;
    host.wait()?;
    let gone = eventually(Duration::from_secs(5), || {
        let all_gone = found.iter().all(|p| !alive(*p));
        async move { all_gone.then_some(()) }
    })
    .await;
    assert!(gone.is_some(), "the provider and its child ended with their host: {:?}", found.iter().map(|p| (p, alive(*p))).collect::<Vec<_>>());
    Ok(())
}

/// A provider archive holding `binary` for `target`, signed by a new account key.
async fn archive(dir: &Path, name: &str, target: &str, binary: &[u8], gzip: bool) -> anyhow::Result<PathBuf> {
    let mut par = provider_archive::ProviderArchive::new(name, "trellis-tests", Some(1), Some("0.1.0".into()));
    par.add_library(target, binary).map_err(|e| anyhow::anyhow!("{e}"))?;
    let path = dir.join(format!("{name}.par"));
    par.write(&path, &nkeys::KeyPair::new_account(), &nkeys::KeyPair::new_service(), gzip).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(if gzip { dir.join(format!("{name}.par.gz")) } else { path })
}

/// `bytes` with the first occurrence of `from` replaced by `to` (same length).
fn replaced(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = bytes.windows(from.len()).position(|w| w == from).expect("found");
    let mut out = bytes.to_vec();
    out[at..at + to.len()].copy_from_slice(to);
    out
}

#[tokio::test]
async fn provider_archives_run_the_binary_for_this_machine_when_signed_and_intact() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let ctl = lattice.ctl().await?;
    let mut events = Events::on(&lattice).await?;
    let dir = tempfile::tempdir()?;
    let pid_file = dir.path().join("pid");
    let binary = format!("#!/bin/sh\necho $$ > {}\nexec sleep 1000\n", pid_file.display());
    let target = format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS);

    // Signed, gzipped, with this machine's binary: it runs.
    let good = archive(dir.path(), "good", &target, binary.as_bytes(), true).await?;
    let pid = start_and_wait(&ctl, &mut events, host.id(), &good.display().to_string(), "par", &pid_file).await?;
    ctl.stop_provider(host.id(), "par").await.map_err(anyhow::Error::msg)?;
    events.expect("provider_stopped", Duration::from_secs(10), |d| d["provider_id"] == "par").await;
    assert!(!alive(pid), "the archive's process ended with the stop");

    // Refused: a changed binary, a changed signature, no binary for this machine, not an archive.
    let plain = std::fs::read(archive(dir.path(), "plain", &target, binary.as_bytes(), false).await?)?;
    let changed_binary = dir.path().join("changed-binary.par");
    std::fs::write(&changed_binary, replaced(&plain, b"exec sleep", b"exec sle3p"))?;
    let jwt_start = plain.windows(3).position(|w| w == b"eyJ").expect("a JWT in the archive");
    let mut changed_signature = plain.clone();
    let end = jwt_start + changed_signature[jwt_start..].iter().position(|b| *b == 0).unwrap_or(0);
    changed_signature[end - 2] = if changed_signature[end - 2] == b'A' { b'B' } else { b'A' };
    let changed_sig = dir.path().join("changed-signature.par");
    std::fs::write(&changed_sig, changed_signature)?;
    let elsewhere = archive(dir.path(), "elsewhere", "aarch64-macos", binary.as_bytes(), true).await?;
    let junk = dir.path().join("junk.par");
    std::fs::write(&junk, b"not a tar at all")?;
    for (path, reason) in [
        (&changed_binary, "hash"),
        (&changed_sig, "signature"),
        (&elsewhere, "no binary for this machine"),
        (&junk, "not a valid provider archive"),
    ] {
        let ack = ctl.start_provider(host.id(), &path.display().to_string(), "bad", None, vec![]).await.map_err(anyhow::Error::msg)?;
        assert!(ack.succeeded());
        let failed = events.expect("provider_start_failed", Duration::from_secs(10), |d| d["provider_id"] == "bad").await;
        let error = failed["error"].as_str().unwrap_or_default().to_string();
        assert!(error.to_lowercase().contains(reason), "{}: {error}", path.display());
    }
    assert!(lattice.client().await?.inventory(host.id()).await?.providers.is_empty());
    host.shutdown(None).await?;

    // The same archive as a provider image in a registry, on a host that runs provider images.
    let registry = trellis_tests::Registry::start(&[]).await?;
    let image = push_raw_layer(&registry, "trellis/par-provider:0.1.0", std::fs::read(&good)?, PAR_MEDIA_TYPE).await?;
    let mut config = lattice.host_config();
    config.providers.allow_images = true;
    config.wasm.oci.insecure = vec![registry.address()];
    config.wasm.oci.cache_dir = Some(dir.path().join("oci-cache"));
    let host = lattice.start_host(config).await?;
    std::fs::remove_file(&pid_file)?;
    let pid = start_and_wait(&ctl, &mut events, host.id(), &image, "from-registry", &pid_file).await?;
    // A component image is not a provider image.
    let component = push_raw_layer(&registry, "trellis/echo:0.1.0", std::fs::read(trellis_tests::actors::ECHO)?, "application/wasm").await?;
    ctl.start_provider(host.id(), &component, "wrong", None, vec![]).await.map_err(anyhow::Error::msg)?;
    let failed = events.expect("provider_start_failed", Duration::from_secs(20), |d| d["provider_id"] == "wrong").await;
    assert!(failed["error"].as_str().unwrap_or_default().contains("not a provider image"), "{failed}");
    host.shutdown(None).await?;
    assert!(!alive(pid), "stopped with its host");
    Ok(())
}

/// Starts provider `id` from `reference` and waits for its process to write its pid to
/// `pid_file`; returns the pid of the running process.
async fn start_and_wait(
    ctl: &wasmcloud_control_interface::Client,
    events: &mut Events,
    host: &str,
    reference: &str,
    id: &str,
    pid_file: &Path,
) -> anyhow::Result<u64> {
    let ack = ctl.start_provider(host, reference, id, None, vec![]).await.map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded(), "{}", ack.message());
    events.expect("provider_started", Duration::from_secs(20), |d| d["provider_id"] == id).await;
    let pid: u64 = eventually(Duration::from_secs(10), || {
        let pid = std::fs::read_to_string(pid_file).ok().and_then(|s| s.trim().parse().ok());
        async move { pid }
    })
    .await
    .unwrap_or_else(|| panic!("{reference} ran"));
    assert!(alive(pid));
    Ok(pid)
}

/// The layer media type of wasmCloud provider images.
const PAR_MEDIA_TYPE: &str = "application/vnd.wasmcloud.provider.archive.layer.v1+par";

/// Pushes one layer of `media` type as any OCI tool can (wasmCloud publishes a provider image
/// as one provider-archive layer).
async fn push_raw_layer(registry: &trellis_tests::Registry, repository: &str, data: Vec<u8>, media: &str) -> anyhow::Result<String> {
    use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
    let reference = format!("{}/{repository}", registry.address());
    let image: oci_client::Reference = reference.parse()?;
    let client = oci_client::Client::new(ClientConfig { protocol: ClientProtocol::HttpsExcept(vec![registry.address()]), ..ClientConfig::default() });
    let layers = vec![ImageLayer::new(data, media.to_string(), None)];
    let config = Config::new(b"{}".to_vec(), "application/vnd.wasmcloud.provider.archive.config".to_string(), None);
    client.push(&image, &layers, config, &oci_client::secrets::RegistryAuth::Anonymous, None).await?;
    Ok(reference)
}
