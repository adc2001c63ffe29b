//! `trellis spy`: a spy sees the calls to and from one component on every host that runs it;
//! nothing is recorded while nobody spies; malformed and made-up watches change nothing.

use std::process::Stdio;
use std::time::Duration;

use futures::StreamExt;
use trellis_messages::link::Link;
use trellis_messages::spy::{CallRecord, Direction};
use trellis_tests::{guests, eventually, init_tracing, trellis_bin, TestLattice};

const PING: &str = "trellis:echo/pinger.ping";
const ECHO: &str = "trellis:echo/echo.echo";
/// How pinger's link call names the function: as its import names it, with the version.
const ECHO_IMPORT: &str = "trellis:echo/echo@0.1.0.echo";

/// The next record within a few seconds.
async fn next(calls: &mut (impl futures::Stream<Item = CallRecord> + Unpin)) -> CallRecord {
    tokio::time::timeout(Duration::from_secs(5), calls.next()).await.expect("a record within 5 s").expect("the stream goes on")
}

#[tokio::test]
async fn a_spy_sees_calls_to_and_from_a_component_across_hosts_and_nothing_is_recorded_unwatched() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let a = lattice.start_host(lattice.host_config()).await?;
    let b = lattice.start_host(lattice.host_config()).await?;
    lattice.scale(a.id(), "pinger", guests::PINGER, 4).await?.map_err(anyhow::Error::msg)?;
    lattice.scale(b.id(), "echo", guests::ECHO, 4).await?.map_err(anyhow::Error::msg)?;
    let client = lattice.client().await?.with_timeout(Duration::from_secs(10));
    client.put_link(&Link::new("pinger", "echo", "default", "trellis", "echo", &["echo"])).await?;
    eventually(Duration::from_secs(10), || {
        let client = client.clone();
        async move { client.call("pinger", PING, vec![r#""warm""#.into()]).await.ok().filter(|r| r.results.is_some()) }
    })
    .await
    .expect("pinger reaches echo");

    // Nobody spies: no host publishes a record.
    let nats = lattice.nats().await?;
    let mut raw = nats.subscribe(format!("trellis.spy.{}.calls.>", lattice.name)).await?;
    nats.flush().await?;
    for _ in 0..5 {
        client.call("pinger", PING, vec![r#""unwatched""#.into()]).await?;
    }
    assert!(tokio::time::timeout(Duration::from_millis(500), raw.next()).await.is_err(), "a record was published with nobody spying");

    // Hostile watches first: garbage, oversized, wildcard and made-up ids. They change nothing.
    let watch = format!("trellis.spy.{}.watch", lattice.name);
    nats.publish(watch.clone(), "{not json".into()).await?;
    nats.publish(watch.clone(), vec![b'x'; 100_000].into()).await?;
    nats.publish(watch.clone(), r#"{"component_id":">","for_ms":60000}"#.into()).await?;
    nats.publish(watch.clone(), r#"{"component_id":"a.b","for_ms":60000}"#.into()).await?;
    for i in 0..200 {
        nats.publish(watch.clone(), format!(r#"{{"component_id":"made-up-{i}","for_ms":60000}}"#).into()).await?;
    }
    nats.flush().await?;

    // Spy on both ends.
    let mut pinger_calls = Box::pin(client.spy("pinger").await?);
    let mut echo_calls = Box::pin(client.spy("echo").await?);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reply = client.call("pinger", PING, vec![r#""watched""#.into()]).await?;
    assert!(reply.results.is_some(), "{reply:?}");

    // pinger's host (A): the link call out to echo, then the call in from the client.
    let mut seen = [next(&mut pinger_calls).await, next(&mut pinger_calls).await];
    seen.sort_by_key(|r| r.direction == Direction::In);
    let (out, inn) = (&seen[0], &seen[1]);
    assert_eq!((out.direction, out.function.as_str(), out.peer.as_str(), out.outcome.as_str()), (Direction::Out, ECHO_IMPORT, "echo", "ok"), "{out:?}");
    assert_eq!((inn.direction, inn.function.as_str(), inn.peer.as_str(), inn.outcome.as_str()), (Direction::In, PING, "client", "ok"), "{inn:?}");
    assert_eq!(inn.host_id, a.id());
    assert!(inn.duration_us >= out.duration_us, "the call in contains the call out: {inn:?} {out:?}");
    assert!(inn.bytes.is_some_and(|b| b > 0) || inn.bytes.is_none());
    // echo's host (B): the call in from pinger.
    let r = next(&mut echo_calls).await;
    assert_eq!((r.direction, r.function.as_str(), r.peer.as_str(), r.host_id.as_str()), (Direction::In, ECHO_IMPORT, "pinger", b.id()), "{r:?}");

    // A failed call shows its fault.
    client.call("echo", "trellis:echo/echo.trap", vec![r#""boom""#.into()]).await?;
    let r = next(&mut echo_calls).await;
    assert_eq!((r.function.as_str(), r.outcome.as_str(), r.peer.as_str()), ("trellis:echo/echo.trap", "trap", "client"), "{r:?}");

    // HTTP: the server provider on A serves `hello` on A; the spy names the caller `http` and
    // the outcome is the response's status, or the fault.
    let http = trellis_messages::provider::StartProviderCommand {
        provider_id: "http".into(),
        provider_ref: "wasmcloud+builtin://http-server".into(),
        ..Default::default()
    };
    client.start_provider(a.id(), &http).await?;
    lattice.scale(a.id(), "hello", guests::HTTP_HELLO, 2).await?.map_err(anyhow::Error::msg)?;
    let port = trellis_tests::free_port();
    let address = std::collections::HashMap::from([("address".to_string(), format!("127.0.0.1:{port}"))]);
    client.put_config("hello-http", &address).await?;
    client.put_link(&Link::new("http", "hello", "default", "wasi", "http", &["incoming-handler"]).with_source_config(&["hello-http"])).await?;
    let get = |path: &'static str| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.ok()?;
        String::from_utf8_lossy(&raw).split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok())
    };
    eventually(Duration::from_secs(10), || get("/")).await.expect("hello is served");
    let mut hello_calls = Box::pin(client.spy("hello").await?);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get("/watched").await, Some(200));
    let r = next(&mut hello_calls).await;
    let handle = "wasi:http/incoming-handler.handle";
    assert_eq!((r.direction, r.function.as_str(), r.peer.as_str(), r.outcome.as_str()), (Direction::In, handle, "http", "200"), "{r:?}");
    assert_eq!(get("/trap").await, Some(500));
    let r = next(&mut hello_calls).await;
    assert_eq!((r.peer.as_str(), r.outcome.as_str()), ("http", "trap"), "{r:?}");

    // Past a watch's 6 s lapse: the spy's renewals keep the hosts recording.
    tokio::time::sleep(Duration::from_secs(8)).await;
    client.call("echo", ECHO, vec![r#""still watched""#.into()]).await?;
    let r = loop {
        let r = next(&mut echo_calls).await;
        if r.function == ECHO {
            break r;
        }
    };
    assert_eq!((r.peer.as_str(), r.outcome.as_str()), ("client", "ok"), "{r:?}");

    // The CLI: one record, as JSON.
    let mut cli = tokio::process::Command::new(trellis_bin()?)
        .args(["spy", "echo", "--count", "1", "--json", "--nats-url", &lattice.url_of(0), "--lattice", &lattice.name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let out = tokio::time::timeout(Duration::from_secs(15), async {
        // Calls until the CLI, once subscribed, has seen one.
        loop {
            client.call("echo", ECHO, vec![r#""cli""#.into()]).await?;
            if let Ok(status) = tokio::time::timeout(Duration::from_millis(200), cli.wait()).await {
                return anyhow::Ok(status?);
            }
        }
    })
    .await??;
    assert!(out.success());
    let mut stdout = String::new();
    tokio::io::AsyncReadExt::read_to_string(cli.stdout.as_mut().expect("stdout"), &mut stdout).await?;
    let record: CallRecord = serde_json::from_str(stdout.trim())?;
    assert_eq!((record.component_id.as_str(), record.function.as_str()), ("echo", ECHO), "{stdout}");

    assert_eq!(client.ping_hosts().await?.len(), 2, "both hosts still answer");
    a.shutdown(None).await?;
    b.shutdown(None).await?;
    Ok(())
}
