//! Bad component references and hostile guests: each gets a clear answer, and the host and the
//! component keep working afterwards.

use std::time::{Duration, Instant};

use trellis_messages::invocation::{FaultKind, InvocationResponse};
use trellis_tests::{guests, init_tracing, TestLattice};

const ECHO_FN: &str = "trellis:echo/echo.echo";

async fn echo_works(client: &trellis_messages::Client, id: &str) {
    let reply = client.call(id, ECHO_FN, vec![r#""still here""#.into()]).await.expect("call");
    assert_eq!(reply.results.as_deref(), Some(&[r#""still here""#.to_string()][..]), "{reply:?}");
}

fn fault(reply: &InvocationResponse) -> (FaultKind, &str) {
    match (&reply.fault, &reply.error) {
        (Some(kind), Some(error)) => (*kind, error.as_str()),
        _ => panic!("expected a fault, got {reply:?}"),
    }
}

#[tokio::test]
async fn bad_references_fail_with_the_reason_and_the_host_carries_on() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.wasm.max_component_size = 100 << 10;
    let host = lattice.start_host(config).await?;
    let dir = tempfile::tempdir()?;
    let write = |name: &str, bytes: &[u8]| -> anyhow::Result<String> {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes)?;
        Ok(format!("file://{}", path.display()))
    };
    let big = vec![0u8; 200 << 10];
    let cases: Vec<(String, &str)> = vec![
        (format!("file://{}/missing.wasm", dir.path().display()), "No such file or directory"),
        (dir.path().display().to_string(), "is not a file"),
        (write("text.wasm", b"this is not wasm")?, "not a WebAssembly file"),
        (write("core.wasm", &wat::parse_str("(module (func (export \"f\")))")?)?, "a core WebAssembly module, not a component"),
        (write("broken.wasm", b"\0asm\x0d\0\x01\0garbage garbage")?, "invalid component"),
        (
            write(
                "imports.wasm",
                // An interface exporting an instance: only the host could provide it (interfaces
                // of functions, resources included, are linked to other components or providers
                // at call time instead).
                &wat::parse_str(r#"(component (import "acme:missing/thing@1.0.0" (instance (export "inner" (instance)))))"#)?,
            )?,
            "cannot link its imports: the component imports `acme:missing/thing@1.0.0`, which this host does not serve",
        ),
        (write("big.wasm", &big)?, "over the host's component size limit of 102400 bytes"),
        ("s3://acme/echo.wasm".to_string(), "`s3://` references are not supported yet"),
    ];
    for (i, (reference, expected)) in cases.iter().enumerate() {
        let outcome = lattice.scale(host.id(), &format!("bad{i}"), reference, 1).await?;
        let error = outcome.expect_err(reference);
        assert!(error.contains(expected), "{reference}: `{error}` should contain `{expected}`");
        assert!(error.contains(reference.trim_start_matches("file://")), "{error} names the reference");
    }
    // The unsatisfied import is named.
    let error = lattice.scale(host.id(), "imports", &cases[5].0, 1).await?.expect_err("imports");
    assert!(error.contains("acme:missing/thing"), "{error}");

    let client = lattice.client().await?;
    assert!(client.inventory(host.id()).await?.components.is_empty(), "no failed component is listed");
    lattice.scale(host.id(), "echo", guests::ECHO, 1).await?.map_err(anyhow::Error::msg)?;
    echo_works(&client, "echo").await;

    // Invalid ids and missing references are refused in the reply itself.
    let refused = |id: &str, reference: &str| trellis_messages::component::ScaleComponentCommand {
        component_ref: reference.into(),
        component_id: id.into(),
        max_instances: 1,
        ..Default::default()
    };
    let err = client.scale_component(host.id(), &refused("a.b", guests::ECHO)).await.unwrap_err().to_string();
    assert!(err.contains("component id `a.b` must not contain '.'"), "{err}");
    let err = client.scale_component(host.id(), &refused("x", "")).await.unwrap_err().to_string();
    assert!(err.contains("needs a `component_ref`"), "{err}");
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn hostile_guests_are_contained_and_the_next_call_works() -> anyhow::Result<()> {
    hostile_guests(true).await
}

/// The same containment on an engine without guard pages (`--no-guard-pages`), where bounds,
/// stack and memory limits are checked by the compiled code instead of by page faults.
#[tokio::test]
async fn hostile_guests_are_contained_without_guard_pages_too() -> anyhow::Result<()> {
    hostile_guests(false).await
}

async fn hostile_guests(guard_pages: bool) -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.wasm.max_execution_time = Duration::from_millis(1500);
    config.wasm.max_component_memory = 32 << 20;
    config.wasm.guard_pages = guard_pages;
    let host = lattice.start_host(config).await?;
    lattice.scale(host.id(), "echo", guests::ECHO, 4).await?.map_err(anyhow::Error::msg)?;
    let client = lattice.client().await?.with_timeout(Duration::from_secs(10));

    // A guest error is a result, not a fault.
    let reply = client.call("echo", "trellis:echo/echo.try-echo", vec![r#""nope""#.into(), "true".into()]).await?;
    assert_eq!(reply.results.as_deref(), Some(&[r#"err("nope")"#.to_string()][..]));

    let reply = client.call("echo", "trellis:echo/echo.trap", vec![r#""boom""#.into()]).await?;
    let (kind, error) = fault(&reply);
    assert_eq!(kind, FaultKind::Trap);
    assert!(error.contains("trellis:echo/echo.trap") && error.contains("aborted"), "{error}");
    echo_works(&client, "echo").await;

    // An endless loop is stopped at the deadline, and other calls are served meanwhile.
    let spinning = {
        let client = client.clone();
        tokio::spawn(async move {
            let began = Instant::now();
            (client.call("echo", "trellis:echo/echo.spin", vec![]).await, began.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let began = Instant::now();
    echo_works(&client, "echo").await;
    assert!(began.elapsed() < Duration::from_millis(1000), "a spinning guest does not block other calls");
    let (reply, took) = spinning.await?;
    let reply = reply?;
    let (kind, error) = fault(&reply);
    assert_eq!(kind, FaultKind::Deadline);
    assert!(error.contains("deadline of 1.5s"), "{error}");
    assert!(took >= Duration::from_millis(1400) && took < Duration::from_secs(5), "{took:?}");
    echo_works(&client, "echo").await;

    let reply = client.call("echo", "trellis:echo/echo.hog", vec![]).await?;
    let (kind, error) = fault(&reply);
    assert_eq!(kind, FaultKind::MemoryLimit);
    assert!(error.contains("memory limit of 32 MiB"), "{error}");
    echo_works(&client, "echo").await;

    let reply = client.call("echo", "trellis:echo/echo.recurse", vec!["100000000".into()]).await?;
    let (kind, error) = fault(&reply);
    assert_eq!(kind, FaultKind::Trap);
    assert!(error.contains("call stack"), "{error}");
    let reply = client.call("echo", "trellis:echo/echo.recurse", vec!["1000".into()]).await?;
    assert_eq!(reply.results.as_deref(), Some(&["1000".to_string()][..]), "moderate recursion is fine");

    // Calls that do not fit the component.
    let reply = client.call("echo", "trellis:echo/echo.nope", vec![]).await?;
    let (kind, error) = fault(&reply);
    assert_eq!(kind, FaultKind::NoSuchFunction);
    assert!(error.contains("trellis:echo/echo.echo"), "lists the exports: {error}");
    let reply = client.call("echo", ECHO_FN, vec!["42".into()]).await?;
    let (kind, error) = fault(&reply);
    assert_eq!(kind, FaultKind::BadArguments);
    assert!(error.contains("argument 1 (`message`: string)"), "{error}");
    let reply = client.call("echo", ECHO_FN, vec![]).await?;
    assert_eq!(fault(&reply).0, FaultKind::BadArguments);
    let raw = lattice.nats().await?.request(format!("trellis.rpc.{}.echo", lattice.name), "{not json".into()).await?;
    let reply: InvocationResponse = serde_json::from_slice(&raw.payload)?;
    assert_eq!(fault(&reply).0, FaultKind::BadArguments);

    echo_works(&client, "echo").await;
    assert_eq!(client.ping_hosts().await?.len(), 1, "the host still answers");
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn max_instances_bounds_concurrency_and_excess_calls_wait() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.wasm.max_execution_time = Duration::from_millis(800);
    config.wasm.max_queue_wait = Duration::from_secs(3);
    let host = lattice.start_host(config).await?;
    lattice.scale(host.id(), "echo", guests::ECHO, 1).await?.map_err(anyhow::Error::msg)?;
    let client = lattice.client().await?.with_timeout(Duration::from_secs(10));

    // The only slot is taken by a call that runs until the deadline; the next call waits for it.
    let spin = {
        let client = client.clone();
        tokio::spawn(async move { client.call("echo", "trellis:echo/echo.spin", vec![]).await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let began = Instant::now();
    echo_works(&client, "echo").await;
    let waited = began.elapsed();
    assert!(waited >= Duration::from_millis(400), "the second call waited for the slot ({waited:?})");
    assert_eq!(fault(&spin.await??).0, FaultKind::Deadline);

    // A wait longer than the host's queue limit fails as busy.
    host.shutdown(None).await?;
    let mut config = lattice.host_config();
    config.wasm.max_execution_time = Duration::from_secs(2);
    config.wasm.max_queue_wait = Duration::from_millis(200);
    let host = lattice.start_host(config).await?;
    lattice.scale(host.id(), "echo", guests::ECHO, 1).await?.map_err(anyhow::Error::msg)?;
    let spin = {
        let client = client.clone();
        tokio::spawn(async move { client.call("echo", "trellis:echo/echo.spin", vec![]).await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let reply = client.call("echo", ECHO_FN, vec![r#""x""#.into()]).await?;
    let (kind, error) = fault(&reply);
    assert_eq!(kind, FaultKind::Busy);
    assert!(error.contains("all 1 instances of component `echo`"), "{error}");
    let _ = spin.await?;
    echo_works(&client, "echo").await;
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn a_restarted_host_with_a_warm_compile_cache_scales_quickly() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let cache = tempfile::tempdir()?;
    let mut timings = Vec::new();
    for round in ["cold", "warm"] {
        let mut config = lattice.host_config();
        config.wasm.cache_dir = Some(cache.path().to_path_buf());
        let host = lattice.start_host(config).await?;
        let client = lattice.client().await?;
        let began = Instant::now();
        lattice.scale(host.id(), "echo", guests::ECHO, 1).await?.map_err(anyhow::Error::msg)?;
        echo_works(&client, "echo").await;
        timings.push((round, began.elapsed()));
        host.shutdown(None).await?;
        let cached = walk_files(cache.path());
        assert!(cached > 0, "the compile cache holds the compiled component after the {round} round");
    }
    for (round, took) in &timings {
        println!("scale-to-first-call with a {round} compile cache: {took:?}");
    }
    Ok(())
}

fn walk_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| if e.path().is_dir() { walk_files(&e.path()) } else { 1 })
                .sum()
        })
        .unwrap_or(0)
}

/// With every guest thread running a guest that never yields on its own, the host still
/// answers its control interface (its own connection, on the host thread) and still serves a
/// plain call (guests yield at each epoch tick, and the call connection's I/O shares their
/// threads) well before the spinning calls reach their deadline.
#[tokio::test]
async fn control_and_calls_are_answered_while_every_guest_thread_spins() -> anyhow::Result<()> {
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.wasm.guest_threads = 2;
    config.wasm.max_execution_time = Duration::from_secs(3);
    let host = lattice.start_host(config).await?;
    lattice.scale(host.id(), "echo", guests::ECHO, 16).await?.map_err(anyhow::Error::msg)?;
    let client = lattice.client().await?.with_timeout(Duration::from_secs(10));
    let spins: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.call("echo", "trellis:echo/echo.spin", vec![]).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let began = Instant::now();
    let inventory = client.inventory(host.id()).await?;
    assert_eq!(inventory.components.len(), 1);
    let control = began.elapsed();
    echo_works(&client, "echo").await;
    let call = began.elapsed();
    assert!(control < Duration::from_secs(1), "control answered after {control:?} while guests spun");
    assert!(call < Duration::from_secs(2), "a call was served after {call:?} while guests spun");

    for spin in spins {
        assert_eq!(fault(&spin.await??).0, FaultKind::Deadline);
    }
    host.shutdown(None).await?;
    Ok(())
}

/// A component in WAT: `grow` reads a word in a page it adds (what an earlier instance left
/// there), then writes a marker there; `peek` reads that word without growing; `far` reads near
/// the end of the 32-bit address space.
const MEMORY_PROBE: &str = r#"(component
  (core module $m
    (memory (export "memory") 1)
    (func (export "grow") (result i32)
      (local $before i32)
      (drop (memory.grow (i32.const 1)))
      (local.set $before (i32.load (i32.const 65544)))
      (i32.store (i32.const 65544) (i32.const 2125315823))
      (local.get $before))
    (func (export "peek") (result i32) (i32.load (i32.const 65544)))
    (func (export "far") (result i32) (i32.load (i32.const -16))))
  (core instance $i (instantiate $m))
  (func (export "grow") (result u32) (canon lift (core func $i "grow")))
  (func (export "peek") (result u32) (canon lift (core func $i "peek")))
  (func (export "far") (result u32) (canon lift (core func $i "far"))))"#;

/// With and without guard pages, a guest reaches only its own memory as it is now: an
/// instance never sees what an earlier instance in the same pool slot wrote, and memory an
/// earlier instance grew into is out of bounds again for the next one.
#[tokio::test]
async fn guest_memory_is_bounded_and_fresh_per_call_with_and_without_guard_pages() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("probe.wasm");
    std::fs::write(&path, wat::parse_str(MEMORY_PROBE)?)?;
    let reference = format!("file://{}", path.display());
    let client = lattice.client().await?.with_timeout(Duration::from_secs(10));
    for guard_pages in [true, false] {
        let mut config = lattice.host_config();
        config.wasm.guard_pages = guard_pages;
        let host = lattice.start_host(config).await?;
        // One instance at a time, so calls reuse the same pool slot.
        lattice.scale(host.id(), "probe", &reference, 1).await?.map_err(anyhow::Error::msg)?;
        for round in 0..3 {
            let reply = client.call("probe", "grow", vec![]).await?;
            assert_eq!(reply.results.as_deref(), Some(&["0".to_string()][..]), "guard pages {guard_pages}, round {round}: {reply:?}");
            let reply = client.call("probe", "peek", vec![]).await?;
            let (kind, error) = fault(&reply);
            assert_eq!(kind, FaultKind::Trap, "guard pages {guard_pages}: {error}");
            assert!(error.contains("out of bounds"), "guard pages {guard_pages}: {error}");
            let reply = client.call("probe", "far", vec![]).await?;
            let (kind, error) = fault(&reply);
            assert_eq!(kind, FaultKind::Trap, "guard pages {guard_pages}: {error}");
            assert!(error.contains("out of bounds"), "guard pages {guard_pages}: {error}");
        }
        host.shutdown(None).await?;
    }
    Ok(())
}

/// `component_limits` on a scale, as wasmCloud 1.9 reads them: `max_memory_limit` lowers one
/// component's memory below the host's limit; more than the host allows, or a limit that is not
/// a number of bytes, is refused in the scale's reply.
#[tokio::test]
async fn a_scale_may_lower_a_components_memory_limit_never_raise_it() -> anyhow::Result<()> {
    use std::collections::HashMap;
    use trellis_messages::component::ScaleComponentCommand;
    init_tracing();
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.wasm.max_component_memory = 32 << 20;
    let host = lattice.start_host(config).await?;
    let client = lattice.client().await?.with_timeout(Duration::from_secs(10));
    let scale = |id: &str, limit: &str| ScaleComponentCommand {
        component_ref: guests::ECHO.into(),
        component_id: id.into(),
        max_instances: 1,
        host_id: host.id().into(),
        component_limits: Some(HashMap::from([("max_memory_limit".to_string(), limit.to_string())])),
        ..ScaleComponentCommand::default()
    };
    for (limit, expected) in [("67108864", "above this host's 33554432 bytes"), ("8MiB", "must be a number of bytes")] {
        let refused = client.scale_component(host.id(), &scale("too-big", limit)).await.expect_err("refused");
        assert!(refused.to_string().contains(expected), "{limit}: {refused}");
    }
    let events = lattice.watch_scale_events("small").await?;
    client.scale_component(host.id(), &scale("small", &(8u64 << 20).to_string())).await?;
    events.await??.map_err(anyhow::Error::msg)?;
    lattice.scale(host.id(), "echo", guests::ECHO, 1).await?.map_err(anyhow::Error::msg)?;

    let reply = client.call("small", "trellis:echo/echo.hog", vec![]).await?;
    let (kind, error) = fault(&reply);
    assert_eq!(kind, FaultKind::MemoryLimit);
    assert!(error.contains("memory limit of 8 MiB"), "{error}");
    let reply = client.call("echo", "trellis:echo/echo.hog", vec![]).await?;
    assert!(fault(&reply).1.contains("memory limit of 32 MiB"), "the host's limit for a component that asked for none");
    echo_works(&client, "small").await;
    host.shutdown(None).await?;
    Ok(())
}
