//! External capability providers: a provider built with wasmCloud's published provider SDK
//! (`providers/test-provider`) started, told its links and config, health-checked and stopped
//! by a Trellis host over wasmCloud's provider protocol; and supervision of providers that
//! crash, flood their output, ignore the shutdown request or outlive their host (small
//! shell-script providers). Calls are in `provider_calls.rs`, archives and images in
//! `provider_archives.rs`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::Value;
use trellis_host::config::ProviderSettings;
use trellis_messages::link::Link;
use trellis_tests::providers::{alive, lattice_with_host, records, script, settings, wait_record, Events};
use trellis_tests::{eventually, init_tracing, sample, scrape, test_provider, TestLattice};

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
    // The host learns of links from its watch of the KV bucket, a moment after the put is
    // acknowledged (a start in that moment gets the link as a `link_put` right after start).
    tokio::time::sleep(Duration::from_millis(300)).await;

    let ack = ctl
        .start_provider(host.id(), &provider.display().to_string(), "tp", Some([("owner".to_string(), "the-test".to_string())].into()), vec!["tp-settings".into()])
        .await
        .map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded(), "{}", ack.message());
    let started = events.expect("provider_started", Duration::from_secs(5), |d| d["provider_id"] == "tp").await;
    assert_eq!((&started["host_id"], &started["annotations"]["owner"]), (&serde_json::json!(host.id()), &serde_json::json!("the-test")), "{started}");
    assert_eq!(started["image_ref"], provider.display().to_string(), "{started}");

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
    let metrics = host.info().metrics_addr.expect("metrics served");
    let healthy = |text: &str| sample(text, "trellis_provider_healthy", &[("provider", "tp")]);
    assert_eq!(healthy(&scrape(metrics).await), Some(0.0), "the health gauge follows the checks");

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
    let text = scrape(metrics).await;
    assert_eq!(sample(&text, "trellis_provider_restarts_total", &[("provider", "tp")]), Some(1.0), "{text}");

    // Stop: the SDK runs the provider's shutdown and exits within the grace period.
    let asked = Instant::now();
    let ack = ctl.stop_provider(host.id(), "tp").await.map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded(), "{}", ack.message());
    let stopped = events.expect("provider_stopped", Duration::from_secs(10), |d| d["provider_id"] == "tp").await;
    // wasmCloud 1.9's fields: wadm reads `annotations` to know whose provider stopped.
    assert_eq!(stopped["annotations"]["owner"], "the-test", "{stopped}");
    assert_eq!((&stopped["instance_id"], &stopped["public_key"], &stopped["link_name"]), (&serde_json::json!("tp"), &serde_json::json!("tp"), &serde_json::json!("default")), "{stopped}");
    assert_eq!(stopped["reason"], "stop", "as wasmCloud 1.9 says it: {stopped}");
    assert!(stopped.get("claims").is_none() && started.get("public_key").is_none(), "a bare executable has no claims: {started}");
    assert_eq!(healthy(&scrape(metrics).await), None, "a stopped provider has no health gauge");
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
async fn a_provider_that_ran_long_enough_restarts_after_the_first_delay_again() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.providers = settings();
    config.providers.reset_after = Duration::from_secs(1);
    let host = lattice.start_host(config).await?;
    let mut events = Events::on(&lattice).await?;
    let dir = tempfile::tempdir()?;
    let runs = dir.path().join("runs");
    // Runs 1 and 2 exit at once; run 3 runs 1.5 s (past the reset period); then at once again.
    let flaky = script(
        dir.path(),
        "flaky",
        &format!("n=$(( $(cat {runs} 2>/dev/null || echo 0) + 1 )); echo $n > {runs}
[ $n -eq 3 ] && sleep 1.5
exit 3", runs = runs.display()),
    );
    let ack = lattice.ctl().await?.start_provider(host.id(), &flaky.display().to_string(), "flaky", None, vec![]).await.map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded(), "{}", ack.message());
    let mut delays = Vec::new();
    for _ in 0..4 {
        let exited = events.expect("provider_exited", Duration::from_secs(10), |d| d["provider_id"] == "flaky").await;
        delays.push(exited["restart_in_ms"].as_u64().unwrap());
    }
    assert_eq!(delays, [100, 200, 100, 200], "the delay starts over after a run past the reset period");
    lattice.ctl().await?.stop_provider(host.id(), "flaky").await.map_err(anyhow::Error::msg)?;
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn link_changes_made_while_a_provider_starts_wait_until_it_answers() -> anyhow::Result<()> {
    init_tracing();
    let (lattice, host, client) = lattice_with_host().await?;
    let dir = tempfile::tempdir()?;
    // A process that never speaks NATS; the test plays the provider: silent at first.
    let late = script(dir.path(), "late", "exec sleep 1000");
    let nats = lattice.nats().await?;
    let mut checks = nats.subscribe(format!("wasmbus.rpc.{}.late.health", lattice.name)).await?;
    let mut puts = nats.subscribe(format!("wasmbus.rpc.{}.*.linkdefs.put", lattice.name)).await?;
    nats.flush().await?;
    let ack = lattice.ctl().await?.start_provider(host.id(), &late.display().to_string(), "late", None, vec![]).await.map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded(), "{}", ack.message());
    tokio::time::timeout(Duration::from_secs(5), checks.next()).await?.expect("the host probes the provider");
    client.put_link(&Link::new("late", "echo", "default", "trellis", "echo", &["echo"])).await?;
    assert!(tokio::time::timeout(Duration::from_secs(1), puts.next()).await.is_err(), "no link sent to a provider that has not answered");
    // The provider answers: the held link follows.
    let responder = {
        let nats = nats.clone();
        tokio::spawn(async move {
            while let Some(check) = checks.next().await {
                if let Some(reply) = check.reply {
                    let _ = nats.publish(reply, r#"{"healthy":true}"#.into()).await;
                }
            }
        })
    };
    let put = tokio::time::timeout(Duration::from_secs(5), puts.next()).await?.expect("the held link");
    let link: Value = serde_json::from_slice(&put.payload)?;
    assert_eq!((link["source_id"].as_str(), link["target"].as_str()), (Some("late"), Some("echo")), "{link}");
    responder.abort();
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn a_health_answer_that_is_not_json_counts_as_unhealthy() -> anyhow::Result<()> {
    init_tracing();
    let (lattice, host, client) = lattice_with_host().await?;
    let mut events = Events::on(&lattice).await?;
    let dir = tempfile::tempdir()?;
    // A process that never speaks NATS; the test answers its health checks for it.
    let silent = script(dir.path(), "silent", "exec sleep 1000");
    let nats = lattice.nats().await?;
    let mut checks = nats.subscribe(format!("wasmbus.rpc.{}.odd.health", lattice.name)).await?;
    nats.flush().await?;
    let answer = std::sync::Arc::new(std::sync::Mutex::new(bytes_of("{not json")));
    let responder = {
        let (nats, answer) = (nats.clone(), answer.clone());
        tokio::spawn(async move {
            while let Some(check) = checks.next().await {
                let body = answer.lock().unwrap().clone();
                if let Some(reply) = check.reply {
                    let _ = nats.publish(reply, body).await;
                }
            }
        })
    };
    let ack = lattice.ctl().await?.start_provider(host.id(), &silent.display().to_string(), "odd", None, vec![]).await.map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded(), "{}", ack.message());
    let status = events.expect("health_check_status", Duration::from_secs(10), |d| d["provider_id"] == "odd").await;
    assert_eq!(status["healthy"], false, "{status}");
    assert!(status["message"].as_str().unwrap_or_default().contains("not JSON"), "{status}");
    let inventory = client.inventory(host.id()).await?;
    let shown = inventory.providers.iter().find(|p| p.id == "odd").and_then(|p| p.status.clone()).expect("a status");
    assert_eq!(shown.healthy, Some(false), "{shown:?}");
    // A proper answer next: healthy again.
    *answer.lock().unwrap() = bytes_of(r#"{"healthy":true,"message":null}"#);
    events.expect("health_check_passed", Duration::from_secs(10), |d| d["provider_id"] == "odd").await;
    responder.abort();
    host.shutdown(None).await?;
    Ok(())
}

fn bytes_of(s: &str) -> bytes::Bytes {
    bytes::Bytes::from(s.to_string())
}

#[tokio::test]
async fn a_provider_flooding_its_output_or_leaving_children_is_contained() -> anyhow::Result<()> {
    let _memory = trellis_tests::measuring_memory().await;
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
    // A provider that ignores SIGTERM and has a child that ignores it too. It says hello first,
    // then a 10,000-byte line, then 300 lines at once (past 200 a second), then one more.
    let stubborn = script(
        dir.path(),
        "stubborn",
        &format!(
            "echo 'stubborn says hello'\nhead -c 10000 /dev/zero | tr '\\0' L; echo\n\
             i=0; while [ $i -lt 300 ]; do echo burst $i; i=$((i+1)); done\nsleep 1.1; echo after-burst\n\
             trap '' TERM\n(trap '' TERM; exec sleep 1000) & echo \"$$ $!\" > {}\nwait",
            pids.display()
        ),
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
    // Long lines are cut into records of 4 KiB; past 200 lines a second the rest are counted,
    // not logged, and the count is logged.
    let text = std::fs::read_to_string(&log)?;
    let longest = text.lines().map(|l| l.matches('L').count()).max().unwrap_or(0);
    assert_eq!(longest, 4096, "the 10,000-byte line logged in pieces of at most 4 KiB");
    let dropped = text.lines().find(|l| l.contains("provider output lines not logged")).expect("the drop is reported");
    assert!(dropped.contains("stubborn"), "{dropped}");
    assert!(text.contains("after-burst"), "logging resumes the next second");
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


/// `kill -9` of a provider's guard (not of the host): the guard's provider was re-parented to
/// init and kept serving beside the replacement the supervisor started, with stale state. Now
/// the host ends the guard's whole process group when the guard exits, before restarting.
#[tokio::test]
async fn a_killed_guard_leaves_no_provider_beside_its_replacement() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.providers = ProviderSettings { guard: Some(trellis_tests::trellis_bin()?), ..settings() };
    let host = lattice.start_host(config).await?;
    let dir = tempfile::tempdir()?;
    let pids = dir.path().join("pids");
    let sleeper = script(dir.path(), "sleeper", &format!("echo $$ >> {}\nexec sleep 1000", pids.display()));
    let started = |n: usize| {
        let pids = pids.clone();
        async move {
            let list: Vec<u32> = std::fs::read_to_string(&pids).ok()?.lines().filter_map(|l| l.trim().parse().ok()).collect();
            (list.len() >= n).then_some(list)
        }
    };
    let ack = lattice.ctl().await?.start_provider(host.id(), &sleeper.display().to_string(), "sleeper", None, vec![]).await.map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded(), "{}", ack.message());
    let first = eventually(Duration::from_secs(10), || started(1)).await.expect("the provider started")[0];
    let stat = std::fs::read_to_string(format!("/proc/{first}/stat"))?;
    let guard: u32 = stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().nth(1)).and_then(|p| p.parse().ok()).expect("a parent");
    let comm = std::fs::read_to_string(format!("/proc/{guard}/cmdline"))?;
    assert!(comm.contains("provider-guard"), "the provider's parent is its guard: {comm:?}");
    std::process::Command::new("kill").args(["-9", &guard.to_string()]).status()?;
    let both = eventually(Duration::from_secs(15), || started(2)).await.expect("a replacement started");
    assert_ne!(both[1], first);
    let gone = eventually(Duration::from_secs(5), || async { (!alive(u64::from(first))).then_some(()) }).await;
    assert!(gone.is_some(), "the orphaned provider {first} was ended");
    assert!(alive(u64::from(both[1])), "the replacement runs");
    host.shutdown(None).await?;
    Ok(())
}
