//! The policy service (wasmCloud's): what starts and which calls run are its to decide, asked
//! in one place every call passes, whether the caller runs on this host or another; with a
//! policy key, only its signed replies count.

use std::path::Path;
use std::time::Duration;

use trellis_host::trust::policy::PolicyConfig;
use trellis_messages::link::Link;
use trellis_tests::{guests, eventually, init_tracing, start_provider, TestLattice};

/// The example policy service (`host/examples/policy_service.rs`), built by `cargo test` beside
/// the test binaries; started on `topic`, denying references with one of `deny`, and returned
/// once it listens.
/// With `seed`, it signs its replies.
fn policy_service(lattice: &TestLattice, topic: &str, deny: &str, seed: Option<&str>) -> anyhow::Result<Service> {
    use std::io::BufRead as _;
    let exe = std::env::current_exe()?;
    let path = exe.parent().and_then(Path::parent).map(|d| d.join("examples/policy_service")).expect("the profile directory");
    anyhow::ensure!(path.exists(), "{} is missing: `cargo test` builds it (or `cargo build -p trellis-host --example policy_service`)", path.display());
    let mut command = std::process::Command::new(path);
    if let Some(seed) = seed {
        command.env("POLICY_SEED", seed);
    }
    let child = command
        .args([lattice.url().as_str(), topic, deny])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let mut service = Service(child);
    let mut first = String::new();
    std::io::BufReader::new(service.0.stdout.as_mut().expect("stdout")).read_line(&mut first)?;
    anyhow::ensure!(first.starts_with("answering policy requests"), "{first}");
    Ok(service)
}

/// The policy service's process, ended when dropped (also when a test fails).
struct Service(std::process::Child);

impl Service {
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The next policy request of `kind` the test's own subscription saw.
async fn next_request(seen: &mut async_nats::Subscriber, kind: &str) -> anyhow::Result<serde_json::Value> {
    use futures::StreamExt as _;
    tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(msg) = seen.next().await {
            let request: serde_json::Value = serde_json::from_slice(&msg.payload)?;
            if request["kind"] == kind {
                return Ok(request);
            }
        }
        anyhow::bail!("the subscription ended")
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_policy_service_decides_what_starts_and_its_silence_denies() -> anyhow::Result<()> {
    use futures::StreamExt as _;
    init_tracing();
    let lattice = TestLattice::new().await?;
    let (topic, changes) = (format!("policy.{}", lattice.name), format!("policy.changes.{}", lattice.name));
    // The test reads every request too (a plain subscriber, which never answers).
    let nats = lattice.nats().await?;
    let mut seen = nats.subscribe(topic.clone()).await?;
    nats.flush().await?;
    let mut service = policy_service(&lattice, &topic, "kv_counter,messaging,echo@0.1.0.try-echo", None)?;
    let mut config = lattice.host_config();
    config.policy = Some(PolicyConfig { topic: topic.clone(), changes_topic: Some(changes.clone()), timeout: Duration::from_millis(1000), key: None });
    let host = lattice.start_host(config).await?;
    let client = lattice.client().await?;

    // Allowed, with wasmCloud's request on the wire.
    lattice.scale(host.id(), "echo", guests::ECHO, 1).await?.map_err(anyhow::Error::msg)?;
    let msg = tokio::time::timeout(Duration::from_secs(2), seen.next()).await?.expect("a request");
    let request: serde_json::Value = serde_json::from_slice(&msg.payload)?;
    assert_eq!((request["kind"].as_str(), request["version"].as_str()), (Some("startComponent"), Some("v1")), "{request}");
    assert_eq!((request["request"]["componentId"].as_str(), request["request"]["maxInstances"].as_u64()), (Some("echo"), Some(1)));
    assert_eq!((request["host"]["publicKey"].as_str(), request["host"]["lattice"].as_str()), (Some(host.id()), Some(lattice.name.as_str())));
    let echo_request = request["requestId"].as_str().expect("an id").to_string();

    // Calls that arrive over NATS are put to it too (interface and function), and obeyed.
    let reply = client.call("echo", "trellis:echo/echo.echo", vec![r#""asked""#.into()]).await?;
    assert_eq!(reply.results, Some(vec![r#""asked""#.to_string()]), "{reply:?}");
    let asked = next_request(&mut seen, "performInvocation").await?;
    assert_eq!((asked["request"]["interface"].as_str(), asked["request"]["function"].as_str()), (Some("trellis:echo/echo@0.1.0"), Some("echo")), "{asked}");
    assert_eq!(asked["request"]["target"]["componentId"], "echo");
    let reply = client.call("echo", "trellis:echo/echo.try-echo", vec![r#""no""#.into()]).await?;
    assert_eq!(reply.fault, Some(trellis_messages::invocation::FaultKind::Denied), "{reply:?}");
    assert!(reply.error.unwrap_or_default().contains("which this policy denies"));
    let asked = next_request(&mut seen, "performInvocation").await?;
    assert_eq!(asked["request"]["function"], "try-echo");
    // A function it does not export is refused as such, without asking.
    let reply = client.call("echo", "trellis:echo/echo.made-up", vec![]).await?;
    assert_eq!(reply.fault, Some(trellis_messages::invocation::FaultKind::NoSuchFunction), "{reply:?}");
    let asked = next_request(&mut seen, "performInvocation").await;
    assert!(asked.is_err(), "not asked about a made-up function: {asked:?}");

    // Denied, with the service's message: a component, and a provider.
    let err = lattice.scale(host.id(), "counter", guests::KV_COUNTER, 1).await?.expect_err("denied");
    assert!(err.contains("denied by the policy service") && err.contains("which this policy denies"), "{err}");
    let mut failed = nats.subscribe(format!("wasmbus.evt.{}.provider_start_failed", lattice.name)).await?;
    nats.flush().await?;
    start_provider(&client, host.id(), "msg", "trellis://messaging").await?;
    let msg = tokio::time::timeout(Duration::from_secs(5), failed.next()).await?.expect("an event");
    let event: serde_json::Value = serde_json::from_slice(&msg.payload)?;
    assert!(event["data"]["error"].as_str().is_some_and(|e| e.contains("startProvider") && e.contains("which this policy denies")), "{event}");

    // Decisions are cached: with the service gone, echo starts again.
    service.stop();
    lattice.scale(host.id(), "echo", guests::ECHO, 0).await?.map_err(anyhow::Error::msg)?;
    lattice.scale(host.id(), "echo", guests::ECHO, 1).await?.map_err(anyhow::Error::msg)?;
    // A change names the request whose decision it replaces.
    let revoked = serde_json::json!({"requestId": echo_request, "permitted": false, "message": "revoked by the operator"});
    nats.publish(changes, serde_json::to_vec(&revoked)?.into()).await?;
    nats.flush().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    lattice.scale(host.id(), "echo", guests::ECHO, 0).await?.map_err(anyhow::Error::msg)?;
    let err = lattice.scale(host.id(), "echo", guests::ECHO, 1).await?.expect_err("revoked");
    assert!(err.contains("revoked by the operator"), "{err}");

    // A service that does not answer denies (fail closed), naming the timeout; so does none.
    let err = lattice.scale(host.id(), "echo-2", guests::ECHO, 1).await?.expect_err("no answer");
    assert!(err.contains("did not answer within 1000 ms; denied (fail closed)"), "{err}");
    drop(seen);
    nats.flush().await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let err = lattice.scale(host.id(), "echo-3", guests::ECHO, 1).await?.expect_err("nobody");
    assert!(err.contains("no policy service listens on") && err.contains("denied (fail closed)"), "{err}");
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_denied_call_is_denied_in_process_and_across_hosts() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let topic = format!("policy.{}", lattice.name);
    let _service = policy_service(&lattice, &topic, "echo/echo@0.1.0.echo", None)?;
    let policy = PolicyConfig { topic, changes_topic: None, timeout: Duration::from_millis(1000), key: None };
    let (mut a, mut b) = (lattice.host_config(), lattice.host_config());
    (a.policy, b.policy) = (Some(policy.clone()), Some(policy));
    let (host_a, host_b) = (lattice.start_host(a).await?, lattice.start_host(b).await?);
    let client = lattice.client().await?;
    // `near` calls echo in the same process; `far` from another host, over NATS.
    lattice.scale(host_a.id(), "echo", guests::ECHO, 1).await?.map_err(anyhow::Error::msg)?;
    lattice.scale(host_a.id(), "near", guests::PINGER, 1).await?.map_err(anyhow::Error::msg)?;
    lattice.scale(host_b.id(), "far", guests::PINGER, 1).await?.map_err(anyhow::Error::msg)?;
    for source in ["near", "far"] {
        client.put_link(&Link::new(source, "echo", "default", "trellis", "echo", &["echo"])).await?;
    }
    for source in ["near", "far"] {
        let denied = eventually(Duration::from_secs(10), || {
            let client = client.clone();
            async move {
                let reply = client.call(source, "trellis:echo/pinger.ping", vec![r#""hi""#.into()]).await.ok()?;
                reply.error.filter(|e| !e.contains("no link") && !e.contains("not running"))
            }
        })
        .await
        .unwrap_or_else(|| panic!("`{source}`'s call was answered"));
        assert!(denied.contains("denied by the policy service") && denied.contains("which this policy denies"), "{source}: {denied}");
    }
    // What the policy allows still runs, in process.
    let reply = client.call("near", "trellis:echo/pinger.ping-many", vec!["0".into(), r#""x""#.into()]).await?;
    assert_eq!(reply.results, Some(vec!["0".to_string()]), "{reply:?}");
    host_b.shutdown(None).await?;
    host_a.shutdown(None).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_policy_key_only_signed_replies_and_changes_count() -> anyhow::Result<()> {
    use futures::StreamExt as _;
    init_tracing();
    let lattice = TestLattice::new().await?;
    let (topic, changes) = (format!("policy.{}", lattice.name), format!("policy.changes.{}", lattice.name));
    let key = nkeys::KeyPair::new_account();
    let seed = key.seed()?;
    let nats = lattice.nats().await?;
    let mut seen = nats.subscribe(topic.clone()).await?;
    nats.flush().await?;
    let mut service = policy_service(&lattice, &topic, "kv_counter", Some(&seed))?;
    let mut config = lattice.host_config();
    config.policy = Some(PolicyConfig { topic: topic.clone(), changes_topic: Some(changes.clone()), timeout: Duration::from_millis(1000), key: Some(key.public_key()) });
    let host = lattice.start_host(config).await?;

    // Signed decisions are obeyed, both ways.
    lattice.scale(host.id(), "echo", guests::ECHO, 1).await?.map_err(anyhow::Error::msg)?;
    let asked = next_request(&mut seen, "startComponent").await?;
    let echo_request = asked["requestId"].as_str().expect("an id").to_string();
    let err = lattice.scale(host.id(), "counter", guests::KV_COUNTER, 1).await?.expect_err("denied");
    assert!(err.contains("which this policy denies"), "{err}");

    // An unsigned change is ignored; a signed one replaces the decision.
    let revoke = |message: &str| serde_json::to_vec(&serde_json::json!({"requestId": echo_request, "permitted": false, "message": message}));
    nats.publish(changes.clone(), revoke("forged")?.into()).await?;
    nats.flush().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    lattice.scale(host.id(), "echo", guests::ECHO, 0).await?.map_err(anyhow::Error::msg)?;
    lattice.scale(host.id(), "echo", guests::ECHO, 1).await?.map_err(anyhow::Error::msg)?;
    let payload = revoke("revoked by the operator")?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(trellis_host::trust::policy::SIGNATURE_HEADER, trellis_host::trust::policy::sign(&seed, &payload).map_err(anyhow::Error::msg)?.as_str());
    nats.publish_with_headers(changes, headers, payload.into()).await?;
    nats.flush().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    lattice.scale(host.id(), "echo", guests::ECHO, 0).await?.map_err(anyhow::Error::msg)?;
    let err = lattice.scale(host.id(), "echo", guests::ECHO, 1).await?.expect_err("revoked");
    assert!(err.contains("revoked by the operator"), "{err}");

    // With the service gone, an impostor on the topic answers everything "permitted", unsigned,
    // and with a signature of its own key: both are refused, and deny.
    service.stop();
    drop(seen);
    let impostor = nats.subscribe(topic.clone()).await?;
    nats.flush().await?;
    let other = nkeys::KeyPair::new_account().seed()?;
    let answering = tokio::spawn({
        let nats = nats.clone();
        async move {
            let mut impostor = impostor;
            let mut signed = false;
            while let Some(msg) = impostor.next().await {
                let request: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap_or_default();
                let payload = serde_json::to_vec(&serde_json::json!({"requestId": request["requestId"], "permitted": true})).unwrap_or_default();
                let mut headers = async_nats::HeaderMap::new();
                if signed {
                    headers.insert(trellis_host::trust::policy::SIGNATURE_HEADER, trellis_host::trust::policy::sign(&other, &payload).unwrap_or_default().as_str());
                }
                signed = !signed;
                if let Some(reply) = msg.reply {
                    let _ = nats.publish_with_headers(reply, headers, payload.into()).await;
                }
            }
        }
    });
    let err = lattice.scale(host.id(), "echo-2", guests::ECHO, 1).await?.expect_err("unsigned");
    assert!(err.contains("not signed by the policy key") && err.contains("no Trellis-Policy-Signature header"), "{err}");
    let err = lattice.scale(host.id(), "echo-3", guests::ECHO, 1).await?.expect_err("signed by another key");
    assert!(err.contains("not signed by the policy key") && err.contains("signature is not"), "{err}");
    answering.abort();
    host.shutdown(None).await?;
    Ok(())
}
