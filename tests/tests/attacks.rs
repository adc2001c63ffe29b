//! Attacks on a host (issue 26): what a guest, a peer on NATS or a client sends must not kill,
//! starve or misdirect it. Each test sends what an attacker would, asserts the refusal, and
//! checks that the host still serves; where memory is the point, it measures it.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use trellis_tests::hostile::{client, probe};
use trellis_tests::{guests, init_tracing, TestLattice};

/// This process's resident memory (the hosts of these tests run in it).
fn rss() -> u64 {
    trellis_tests::process::rss_of("self")
}

/// `wasmcloud:bus/lattice.set-link-name` kept every name for every interface in host memory,
/// outside the guest's memory limit: a 1 MiB name over 9,900 interfaces took a host past 3 GiB.
/// Now names and interface keys are bounded in length and a call holds at most 64 choices.
#[tokio::test]
async fn link_name_choices_are_bounded_in_host_memory() -> anyhow::Result<()> {
    let _memory = trellis_tests::measuring_memory().await;
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    lattice.scale(host.id(), "hostile", guests::HOSTILE, 2).await?.map_err(anyhow::Error::msg)?;
    let client = client(&lattice).await?;
    let before = rss();
    let huge_name = probe(&client, "choose-links", &["1048576", "9900", "4", "1"]).await?.expect_err("a 1 MiB link name is refused");
    assert!(huge_name.contains("longer than 256"), "{huge_name}");
    let huge_key = probe(&client, "choose-links", &["8", "1", "100000", "1"]).await?.expect_err("a 100 kB interface key is refused");
    assert!(huge_key.contains("longer than 256 bytes"), "{huge_key}");
    let many = probe(&client, "choose-links", &["8", "65", "4", "1"]).await?.expect_err("65 interfaces are refused");
    assert!(many.contains("at most 64 interfaces"), "{many}");
    // Within the bounds, calls that choose again and again keep nothing once they end.
    for _ in 0..20 {
        assert_eq!(probe(&client, "choose-links", &["256", "64", "200", "50"]).await?, Ok(String::new()));
    }
    let grown = rss().saturating_sub(before);
    assert!(grown < 256 << 20, "the host grew by {} MiB", grown >> 20);
    assert!(client.inventory(host.id()).await.is_ok(), "the host answers");
    host.shutdown(None).await?;
    Ok(())
}

/// A guest that logs in a loop is cut to the per-component rate; the call itself is not failed.
#[tokio::test]
async fn a_guest_logging_in_a_loop_is_held_to_the_log_rate() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    lattice.scale(host.id(), "hostile", guests::HOSTILE, 1).await?.map_err(anyhow::Error::msg)?;
    let client = client(&lattice).await?;
    let began = Instant::now();
    assert_eq!(probe(&client, "log-flood", &["20000", "1000"]).await?, Ok(String::new()));
    assert!(began.elapsed() < Duration::from_secs(5), "dropped lines cost little: {:?}", began.elapsed());
    host.shutdown(None).await?;
    Ok(())
}

/// A component may declare `wasi:config/store.get` with a signature of its own (here: no
/// result). The host function wrote its result into a slot that was not there and panicked;
/// then the call failed with the reason; now that the interface is bound with `bindgen!`, the
/// component is refused when it is scaled, naming the import, and never runs.
#[tokio::test]
async fn a_config_import_with_a_forged_signature_is_refused_naming_the_import() -> anyhow::Result<()> {
    const FORGED: &str = r#"(component
      (import "wasi:config/store@0.2.0-draft" (instance $store
        (export "get" (func (param "key" string)))))
      (core module $mem (memory (export "memory") 1))
      (core instance $mem_i (instantiate $mem))
      (alias export $store "get" (func $store_get))
      (alias core export $mem_i "memory" (core memory $memory))
      (core func $get (canon lower (func $store_get) (memory $memory)))
      (core module $m
        (import "host" "get" (func $get (param i32 i32)))
        (func (export "probe") (result i32) (call $get (i32.const 0) (i32.const 1)) (i32.const 7)))
      (core instance $i (instantiate $m (with "host" (instance (export "get" (func $get))))))
      (func (export "probe") (result u32) (canon lift (core func $i "probe"))))"#;
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let dir = tempfile::tempdir()?;
    // Both names of the interface (`wasi:config/runtime` is the earlier one) are served by one
    // host function each.
    let client = client(&lattice).await?;
    for (id, import) in [("forged", "wasi:config/store@0.2.0-draft"), ("forged-runtime", "wasi:config/runtime@0.2.0-draft")] {
        let path = dir.path().join(format!("{id}.wasm"));
        std::fs::write(&path, wat::parse_str(FORGED.replace("wasi:config/store@0.2.0-draft", import))?)?;
        let refused = lattice.scale(host.id(), id, &format!("file://{}", path.display()), 1).await?.expect_err("a forged signature is refused");
        assert!(refused.contains(&format!("`{import}`")) && refused.contains("wrong type"), "{refused}");
        let reply = client.call(id, "probe", vec![]).await;
        assert!(reply.as_ref().map_or(true, |r| r.error.is_some()), "it does not run: {reply:?}");
    }
    assert!(client.inventory(host.id()).await.is_ok(), "the host answers");
    host.shutdown(None).await?;
    Ok(())
}

/// `trellis call --timeout 60s` of a call that takes 15 s gave up after about 10 s (the NATS
/// client's default request timeout won over the flag) and still said "within 60s".
#[tokio::test]
async fn the_clis_timeout_is_the_one_applied() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.wasm.max_execution_time = Duration::from_secs(30);
    let host = lattice.start_host(config).await?;
    lattice.scale(host.id(), "hostile", guests::HOSTILE, 1).await?.map_err(anyhow::Error::msg)?;
    let (url, name) = (lattice.url(), lattice.name.clone());
    let began = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(trellis_tests::trellis_bin().expect("binary"))
            .args(["call", "--timeout", "60s", "hostile", "trellis:hostile/probe.sleep", "15000"])
            .env("TRELLIS_NATS_URL", url)
            .env("TRELLIS_LATTICE", name)
            .output()
    })
    .await??;
    let took = began.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(took >= Duration::from_secs(15), "the call took the guest's 15 s: {took:?}");
    host.shutdown(None).await?;
    Ok(())
}

/// A one-component application, as wadm takes it.
fn app(name: &str, version: &str, image: &str, instances: usize) -> String {
    format!(
        "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: {name}\n  annotations:\n    version: {version}\nspec:\n  components:\n    - name: echo\n      type: component\n      properties:\n        image: \"{image}\"\n      traits:\n        - type: spreadscaler\n          properties:\n            instances: {instances}\n"
    )
}

/// wadm's key `{lattice}-{name}` makes lattice `L-x`'s application `y` and lattice `L`'s `x-y`
/// the same key: from `L`, `x-y` must read as absent, its delete must leave `L-x`'s application
/// in place, and a put must be refused rather than overwrite it.
#[tokio::test]
async fn an_application_of_one_lattice_cannot_be_read_or_deleted_from_another() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let other_name = format!("{}-x", lattice.name);
    let host = lattice.start_host(lattice.host_config()).await?;
    let mut other_config = lattice.host_config();
    other_config.lattice = other_name.clone();
    let other_host = lattice.start_host(other_config).await?;
    let ours = wadm_client::Client::from_nats_client(&lattice.name, None, async_nats_039::connect(lattice.url()).await?);
    let theirs = wadm_client::Client::from_nats_client(&other_name, None, async_nats_039::connect(lattice.url()).await?);

    theirs.put_manifest(app("y", "v1", guests::ECHO, 1).as_bytes()).await?;
    assert!(matches!(ours.get_manifest("x-y", None).await, Err(wadm_client::error::ClientError::NotFound(_))), "not ours to read");
    let _ = ours.delete_manifest("x-y", None).await;
    assert_eq!(theirs.get_manifest("y", None).await?.metadata.name, "y", "not ours to delete");
    let refused = ours.put_manifest(app("x-y", "v1", guests::ECHO, 1).as_bytes()).await.expect_err("the key is taken");
    assert!(refused.to_string().contains("another lattice"), "{refused}");
    assert_eq!(theirs.get_manifest("y", None).await?.metadata.annotations["version"], "v1", "not overwritten");
    // wadm keeps lattice L's application `x` at `L-x`, the key of lattice L-x's list. Taken by
    // the list, our `x` is refused; taken by our `w`, lattice L-w lists nothing (it failed to
    // list before) and refuses a new application with the reason, leaving nothing behind.
    let refused = ours.put_manifest(app("x", "v1", guests::ECHO, 1).as_bytes()).await.expect_err("the list's key");
    assert!(refused.to_string().contains("another lattice"), "{refused}");
    assert_eq!(theirs.list_manifests().await?.len(), 1, "their list is intact");
    let third_name = format!("{}-w", lattice.name);
    let mut third_config = lattice.host_config();
    third_config.lattice = third_name.clone();
    let third_host = lattice.start_host(third_config).await?;
    let third = wadm_client::Client::from_nats_client(&third_name, None, async_nats_039::connect(lattice.url()).await?);
    ours.put_manifest(app("w", "v1", guests::ECHO, 1).as_bytes()).await?;
    assert!(third.list_manifests().await?.is_empty(), "nothing of ours is listed as theirs");
    let refused = third.put_manifest(app("z", "v1", guests::ECHO, 1).as_bytes()).await.expect_err("no list to add it to");
    assert!(refused.to_string().contains("holds another lattice's application"), "{refused}");
    assert!(matches!(third.get_manifest("z", None).await, Err(wadm_client::error::ClientError::NotFound(_))), "not left behind");
    assert_eq!(ours.get_manifest("w", None).await?.metadata.name, "w", "ours is intact");
    host.shutdown(None).await?;
    other_host.shutdown(None).await?;
    third_host.shutdown(None).await?;
    Ok(())
}

/// 256 messages of almost 1 MiB each (the NATS max payload), published at once to a component
/// with 4 instances: each delivery used to become one 40-byte `Val` per byte before it waited
/// for an instance (the host's peak grew by 1.7 GiB). Its peak must now grow by less than
/// 512 MiB. (Under such a flood the NATS server itself may cut the host's connection as a slow
/// consumer and drop messages, as NATS does; what is asserted is memory, and that it serves.)
#[tokio::test]
async fn a_flood_of_large_messages_stays_within_a_memory_bound() -> anyhow::Result<()> {
    use trellis_messages::link::Link;
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = trellis_tests::process::HostProcess::start(&lattice, 0, &["--allow-file-load", "--no-compile-cache"])?;
    let client = client(&lattice).await?;
    let up = trellis_tests::eventually(Duration::from_secs(20), || {
        let (client, id) = (client.clone(), host.id.clone());
        async move { client.inventory(&id).await.ok() }
    })
    .await;
    anyhow::ensure!(up.is_some(), "the host process answers");
    let start = trellis_messages::provider::StartProviderCommand { provider_id: "msg".into(), provider_ref: "trellis://messaging".into(), ..Default::default() };
    client.start_provider(&host.id, &start).await?;
    lattice.scale(&host.id, "msg-echo", guests::MSG_ECHO, 4).await?.map_err(anyhow::Error::msg)?;
    client.put_config("big-subs", &std::collections::HashMap::from([("subscriptions".to_string(), "big.in".to_string())])).await?;
    client.put_link(&Link::new("msg", "msg-echo", "default", "wasmcloud", "messaging", &["handler"]).with_source_config(&["big-subs"])).await?;
    client.put_link(&Link::new("msg-echo", "msg", "default", "wasmcloud", "messaging", &["consumer"])).await?;
    let nats = lattice.nats().await?;
    let mut replies = nats.subscribe("big.out").await?;
    nats.flush().await?;
    let began = Instant::now();
    loop {
        nats.publish_with_reply("big.in", "big.out", "ping".into()).await?;
        if tokio::time::timeout(Duration::from_millis(500), replies.next()).await.is_ok() {
            break;
        }
        anyhow::ensure!(began.elapsed() < Duration::from_secs(20), "the component never answered");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    while tokio::time::timeout(Duration::from_millis(200), replies.next()).await.is_ok() {}

    let before = trellis_tests::process::peak_rss_of(&host.pid().to_string());
    let body = bytes::Bytes::from(vec![b'x'; (1 << 20) - 1024]);
    for _ in 0..256 {
        nats.publish_with_reply("big.in", "big.out", body.clone()).await?;
    }
    nats.flush().await?;
    let (mut answered, mut refused) = (0, 0);
    while answered + refused < 256 {
        match tokio::time::timeout(Duration::from_secs(10), replies.next()).await {
            Ok(Some(reply)) if reply.status.is_some() => refused += 1,
            Ok(Some(reply)) => {
                assert_eq!(reply.payload.len(), body.len() + 6);
                answered += 1;
            }
            _ => break,
        }
    }
    let peak = trellis_tests::process::peak_rss_of(&host.pid().to_string());
    tracing::info!(answered, refused, before_mib = before >> 20, peak_mib = peak >> 20, "after 256 one-MiB messages");
    assert!(answered > 0, "messages were handled");
    assert!(peak.saturating_sub(before) < 512 << 20, "the host's peak memory grew by {} MiB", (peak - before) >> 20);
    // Still serving: a small message is answered.
    let began = Instant::now();
    loop {
        nats.publish_with_reply("big.in", "big.out", "again".into()).await?;
        match tokio::time::timeout(Duration::from_millis(500), replies.next()).await {
            Ok(Some(reply)) if reply.payload.as_ref() == b"echo: again" => break,
            _ => anyhow::ensure!(began.elapsed() < Duration::from_secs(30), "the component never answered after the flood"),
        }
    }
    assert!(client.inventory(&host.id).await.is_ok(), "the host answers");
    Ok(())
}

/// A liveness record is what a host says about itself: forged ones (unsigned under a made-up
/// host id, and one under a real host's id signed by another key) claimed hosts labelled
/// `zone: mars` and would have won placement. Both are ignored: an application spread to mars
/// has no eligible host, and the real host's labels are its own.
#[tokio::test]
async fn forged_liveness_records_do_not_become_hosts() -> anyhow::Result<()> {
    use trellis_tests::apps::{echo_app, nats039, wadm, wait_status};
    init_tracing();
    let lattice = TestLattice::new().await?;
    let echo = lattice.push("echo", guests::ECHO).await?;
    let host = lattice.start_host(lattice.machine_config()).await?;
    let js = async_nats::jetstream::new(lattice.nats().await?);
    let kv = js.get_key_value(format!("TRELLIS_LIVE_{}", lattice.name)).await?;
    let mars = |id: &str| serde_json::json!({"inventory": {"host_id": id, "labels": {"zone": "mars"}, "components": [], "providers": []}, "failures": {}});
    let fake = nkeys::KeyPair::new_server().public_key();
    let impostor = nkeys::KeyPair::new_server();
    let real = host.id().to_string();
    let forging = tokio::spawn(async move {
        use base64::Engine as _;
        loop {
            let _ = kv.put(&fake, serde_json::to_vec(&mars(&fake)).unwrap_or_default().into()).await;
            let body = serde_json::json!({"host": real, "at": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64), "record": mars(&real)}).to_string();
            let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(impostor.sign(body.as_bytes()).unwrap_or_default());
            let _ = kv.put(&real, serde_json::to_vec(&serde_json::json!({"body": body, "sig": sig})).unwrap_or_default().into()).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let client = wadm(&lattice, nats039(&lattice).await?);
    let nowhere = echo_app("mars", "v1", &echo, 1).replace(
        "            instances: 1\n",
        "            instances: 1\n            spread:\n              - name: mars\n                requirements: {zone: mars}\n",
    );
    client.put_and_deploy_manifest(nowhere.as_bytes()).await?;
    wait_status(&client, "mars", wadm_types::api::StatusType::Failed, Duration::from_secs(10)).await?;
    let status = client.get_manifest_status("mars").await?;
    assert!(status.info.message.contains("0/1 eligible hosts"), "{status:?}");
    // The real host still places what fits it.
    client.put_and_deploy_manifest(echo_app("earth", "v1", &echo, 1).as_bytes()).await?;
    wait_status(&client, "earth", wadm_types::api::StatusType::Deployed, Duration::from_secs(15)).await?;
    forging.abort();
    host.shutdown(None).await?;
    Ok(())
}

/// A forwarded message (`Trellis-Kind: message`) is an entry point on a component's call
/// subject: one without its subject header, or to a component that handles no messages, is
/// refused with the reason and takes no instance; one over the NATS payload limit never
/// arrives; the component serves on.
#[tokio::test]
async fn forwarded_messages_that_are_malformed_or_misdirected_are_refused() -> anyhow::Result<()> {
    use trellis_messages::invocation::{FaultKind, InvocationResponse, KIND_HEADER, MESSAGE_KIND, MESSAGE_SUBJECT_HEADER};
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    lattice.scale(host.id(), "msg-echo", guests::MSG_ECHO, 1).await?.map_err(anyhow::Error::msg)?;
    lattice.scale(host.id(), "hostile", guests::HOSTILE, 1).await?.map_err(anyhow::Error::msg)?;
    let nats = lattice.nats().await?;
    let ask = |target: &str, subject: Option<&str>, body: Vec<u8>| {
        let (nats, to) = (nats.clone(), format!("trellis.rpc.{}.{target}", lattice.name));
        let subject = subject.map(str::to_string);
        async move {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(KIND_HEADER, MESSAGE_KIND);
            if let Some(s) = subject {
                headers.insert(MESSAGE_SUBJECT_HEADER, s.as_str());
            }
            let reply = nats.send_request(to, async_nats::Request::new().headers(headers).payload(body.into())).await?;
            anyhow::Ok(serde_json::from_slice::<InvocationResponse>(&reply.payload)?)
        }
    };
    let no_subject = ask("msg-echo", None, b"x".to_vec()).await?;
    assert_eq!(no_subject.fault, Some(FaultKind::BadArguments), "{no_subject:?}");
    assert!(no_subject.error.as_deref().unwrap_or_default().contains("Trellis-Subject"), "{no_subject:?}");
    let no_handler = ask("hostile", Some("a.b"), b"x".to_vec()).await?;
    assert_eq!(no_handler.fault, Some(FaultKind::NoSuchFunction), "{no_handler:?}");
    // Past the NATS max payload the client refuses to send it: nothing reaches the host.
    assert!(ask("msg-echo", Some("a.b"), vec![0; 2 << 20]).await.is_err(), "over the payload limit");
    // A well-formed one is delivered (no reply subject: the handler answers `ok`).
    let fine = ask("msg-echo", Some("a.b"), b"hello".to_vec()).await?;
    assert_eq!(fine.results, Some(vec!["ok".to_string()]), "{fine:?}");
    assert!(client(&lattice).await?.inventory(host.id()).await.is_ok(), "the host answers");
    host.shutdown(None).await?;
    Ok(())
}

/// Events a host never sent: Trellis hosts sign theirs, so a forged `provider_stopped` and an
/// empty heartbeat under a real host's id change nothing in what another host believes, nor
/// does a replay of the host's own signed `provider_started` after it stopped the provider.
/// (Unsigned, the forged stop revoked the provider's link on the other host.)
#[tokio::test]
async fn forged_and_replayed_events_of_a_signing_host_are_ignored() -> anyhow::Result<()> {
    use trellis_messages::event::new_event;
    use trellis_messages::link::Link;
    init_tracing();
    let lattice = TestLattice::new().await?;
    let a = lattice.start_host(lattice.host_config()).await?;
    let b = lattice.start_host(lattice.host_config()).await?;
    let client = client(&lattice).await?;
    let nats = lattice.nats().await?;
    let mut started = nats.subscribe(format!("wasmbus.evt.{}.provider_started", lattice.name)).await?;
    nats.flush().await?;
    lattice.scale(a.id(), "hostile", guests::HOSTILE, 1).await?.map_err(anyhow::Error::msg)?;
    trellis_tests::start_provider(&client, b.id(), "kv", "trellis://keyvalue").await?;
    let original = tokio::time::timeout(Duration::from_secs(5), started.next()).await?.ok_or_else(|| anyhow::anyhow!("no provider_started"))?;
    let bucket = format!("b_{}", lattice.name.replace('-', "_"));
    client.put_config("kv-b", &std::collections::HashMap::from([("bucket".to_string(), bucket)])).await?;
    client.put_link(&Link::new("hostile", "kv", "default", "wasi", "keyvalue", &["store"]).with_target_config(&["kv-b"])).await?;
    let set = || async { probe(&client, "kv-set", &["\"s\"", "\"k\"", "\"v\""]).await.ok() };
    let works = trellis_tests::eventually(Duration::from_secs(10), || async { set().await.filter(|r| r.as_deref() == Ok("ok")) }).await;
    assert!(works.is_some(), "A's guest uses the provider on B");

    let forge = |name: &str, data: serde_json::Value| serde_json::to_vec(&new_event(b.id(), name, data));
    nats.publish(format!("wasmbus.evt.{}.provider_stopped", lattice.name), forge("provider_stopped", serde_json::json!({"provider_id": "kv"}))?.into()).await?;
    nats.publish(format!("wasmbus.evt.{}.host_heartbeat", lattice.name), forge("host_heartbeat", serde_json::json!({"providers": []}))?.into()).await?;
    nats.flush().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(set().await, Some(Ok("ok".into())), "forged events revoked nothing");

    client.stop_provider(b.id(), "kv").await?;
    let denied = |r: &Result<String, String>| r.as_deref().is_ok_and(|r| r.contains("access-denied"));
    let revoked = trellis_tests::eventually(Duration::from_secs(10), || async { set().await.filter(denied) }).await;
    assert!(revoked.is_some(), "the real stop revokes");
    nats.publish_with_headers(original.subject.clone(), original.headers.clone().unwrap_or_default(), original.payload.clone()).await?;
    nats.flush().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(set().await.is_some_and(|r| denied(&r)), "the replayed start brought nothing back");
    let signature = |m: &async_nats::Message| m.headers.as_ref().and_then(|h| h.get(trellis_messages::event::SIGNATURE_HEADER)).map(|v| v.as_str().to_string());
    let event_signature = signature(&original).expect("events are signed");
    trellis_host::identity::verify_message(b.id(), &original.subject, &original.payload, &event_signature)?;
    // Control replies are signed too, for the inbox they answer.
    let reply = nats.request(format!("wasmbus.ctl.v1.{}.host.get.{}", lattice.name, b.id()), "".into()).await?;
    let reply_signature = signature(&reply).expect("control replies are signed");
    trellis_host::identity::verify_message(b.id(), &reply.subject, &reply.payload, &reply_signature)?;
    a.shutdown(None).await?;
    b.shutdown(None).await?;
    Ok(())
}

/// wRPC callers that send part of a call's parameters and then nothing: each is ended once the
/// parameters have not arrived within `max_queue_wait` (the results are closed, so a wRPC
/// caller fails at once), none holds an instance while it waits, and a whole call goes
/// through meanwhile.
#[tokio::test]
async fn wrpc_parameters_that_stall_are_cut_off_and_hold_no_instance() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.wasm.max_queue_wait = Duration::from_secs(2);
    let host = lattice.start_host(config).await?;
    lattice.scale(host.id(), "hostile", guests::HOSTILE, 1).await?.map_err(anyhow::Error::msg)?;
    let nats = lattice.nats().await?;
    let subject = format!("{}.hostile.wrpc.0.0.1.trellis:hostile/probe@0.1.0.count-items", lattice.name);
    let mut replies = nats.subscribe("stall.>").await?;
    // Ten callers announce three elements and send one.
    for i in 0..10 {
        nats.publish_with_reply(subject.clone(), format!("stall.{i}"), vec![0x03, 0x01].into()).await?;
    }
    nats.flush().await?;
    // One instance, ten stalled callers: a whole call still goes through at once.
    let client = client(&lattice).await?;
    let started = Instant::now();
    assert_eq!(probe(&client, "count-items", &["[1, 2, 3]"]).await?, Ok("3".into()));
    assert!(started.elapsed() < Duration::from_secs(1), "the whole call waited {:?}", started.elapsed());
    // Each stalled call is answered twice: the handshake at once, and its results closed empty
    // once its parameters are overdue.
    let mut seen = std::collections::BTreeMap::<String, Vec<(Duration, usize)>>::new();
    let started = Instant::now();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(5), replies.next()).await {
        let call = m.subject.split('.').take(2).collect::<Vec<_>>().join(".");
        seen.entry(call).or_default().push((started.elapsed(), m.payload.len()));
        if seen.len() == 10 && seen.values().all(|v| v.len() >= 2) {
            break;
        }
    }
    assert_eq!(seen.len(), 10, "{seen:?}");
    for (call, messages) in &seen {
        let closed = messages.iter().find(|(at, len)| *len == 0 && *at >= Duration::from_millis(1500));
        assert!(closed.is_some(), "{call}: its results were closed after the wait: {messages:?}");
    }
    assert!(client.inventory(host.id()).await.is_ok(), "the host answers");
    host.shutdown(None).await?;
    Ok(())
}

/// A guest that reads a large object slowly (wasmCloud's blobby serving a 48 MiB file to an
/// HTTP client that takes 1 MiB and stalls) held in host memory whatever the NATS server pushed
/// ahead of it: async-nats's object reader is a push consumer, filled up to the server's flow
/// control. Chunks are now pulled a few at a time as the guest takes them: while the client
/// stalls the host's memory grows by less than 16 MiB, and the file still arrives whole.
#[tokio::test]
async fn a_slow_reader_of_a_large_object_holds_little_host_memory() -> anyhow::Result<()> {
    let _memory = trellis_tests::measuring_memory().await;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use trellis_messages::link::Link;
    use trellis_messages::provider::StartProviderCommand;
    const SIZE: u64 = 48 << 20;
    init_tracing();
    let lattice = TestLattice::new().await?;
    // Time enough for a debug build to stream 48 MiB through the guest after the stall.
    let mut config = lattice.machine_config();
    config.wasm.max_execution_time = Duration::from_secs(300);
    let host = lattice.start_host(config).await?;
    let ctl = lattice.client().await?.with_timeout(Duration::from_secs(10));
    let wasm = trellis_tests::wasmcloud_example("blobby").join("blobby.wasm");
    let blobby = lattice.push("blobby", wasm.to_str().unwrap_or_default()).await?;
    lattice.scale(host.id(), "blobby", &blobby, 1).await?.map_err(anyhow::Error::msg)?;
    for (id, reference) in [("http", "trellis://http-server"), ("blobs", "trellis://blobstore-nats")] {
        let cmd = StartProviderCommand { provider_id: id.into(), provider_ref: reference.into(), ..Default::default() };
        ctl.start_provider(host.id(), &cmd).await?;
    }
    let port = trellis_tests::free_port();
    ctl.put_config("blobby-http", &std::collections::HashMap::from([("address".to_string(), format!("127.0.0.1:{port}"))])).await?;
    ctl.put_link(&Link::new("http", "blobby", "default", "wasi", "http", &["incoming-handler"]).with_source_config(&["blobby-http"])).await?;
    ctl.put_link(&Link::new("blobby", "blobs", "default", "wasi", "blobstore", &["blobstore"])).await?;
    // The object, put straight into the container's object store (never whole in memory here).
    let js = async_nats::jetstream::new(lattice.nats().await?);
    let store = match js.get_object_store("default").await {
        Ok(store) => store,
        Err(_) => js.create_object_store(async_nats::jetstream::object_store::Config { bucket: "default".into(), ..Default::default() }).await?,
    };
    store.put("big.bin", &mut tokio::io::repeat(7).take(SIZE)).await?;
    let get = format!("GET /big.bin HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n\r\n");
    // Until the route answers (links land asynchronously): a small request.
    let ready = trellis_tests::eventually(Duration::from_secs(20), || async move {
        let (status, _) = trellis_tests::raw_http::exchange(port, &trellis_tests::raw_http::request("GET", "/missing.bin", None)).await.ok()?;
        (status == 404).then_some(())
    })
    .await;
    anyhow::ensure!(ready.is_some(), "blobby never answered");
    let before = rss();
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    conn.write_all(get.as_bytes()).await?;
    let mut buf = vec![0u8; 64 << 10];
    let mut received = 0usize;
    while received < 1 << 20 {
        let n = conn.read(&mut buf).await?;
        anyhow::ensure!(n > 0, "the response ended after {received} bytes");
        received += n;
    }
    // The client stalls; the guest, the HTTP server and the object store reader wait.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stalled = rss().saturating_sub(before);
    eprintln!("host memory grew by {} KiB while the client stalled", stalled >> 10);
    let began = std::time::Instant::now();
    loop {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        received += n;
    }
    tracing::info!(seconds = began.elapsed().as_secs_f64(), received, "the rest of the file");
    assert!(received as u64 > SIZE, "the whole file (and the head) arrived: {received} bytes");
    assert!(stalled < 16 << 20, "the host's memory grew by {} MiB while the client stalled", stalled >> 20);
    host.shutdown(None).await?;
    Ok(())
}
