//! The lattice journal: every host's events kept in JetStream (`wasmbus_events`), read page by
//! page with cursors across a host restart and the loss of a NATS node, a cursor that aged out
//! refused clearly, `trellis events --follow` seeing a scale live, and the stream shared with
//! the one wadm makes.

use std::collections::HashMap;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

use trellis_messages::journal::{Filter, Journal, Page, Since};
use trellis_tests::{guests, eventually, trellis_bin, TestLattice};

/// Every record after `since` (heartbeats left out), `limit` per page, and the pages.
async fn read_all(journal: &Journal, since: Since, limit: usize) -> anyhow::Result<Vec<Page>> {
    let mut pages = Vec::new();
    let mut since = since;
    loop {
        let page = journal.page(since, limit, &Filter::default()).await?;
        since = Since::After(page.next);
        let more = page.has_more;
        pages.push(page);
        if !more {
            return Ok(pages);
        }
        anyhow::ensure!(pages.len() < 1000, "paging does not end");
    }
}

fn cursors(pages: &[Page]) -> Vec<u64> {
    pages.iter().flat_map(|p| p.records.iter().map(|r| r.cursor)).collect()
}

#[tokio::test]
async fn the_journal_pages_with_cursors_across_a_host_restart_and_a_node_loss() -> anyhow::Result<()> {
    let mut lattice = TestLattice::cluster(3).await?;
    let mut config = lattice.host_config_on(0);
    config.kv_replicas = 3;
    config.heartbeat_interval = Duration::from_secs(30);
    let a = lattice.start_host(config.clone()).await?;
    let client = lattice.client().await?;
    lattice.scale(a.id(), "echo", guests::ECHO, 1).await?.map_err(anyhow::Error::msg)?;
    for i in 0..3 {
        client.put_config(&format!("cfg-{i}"), &HashMap::from([("k".to_string(), i.to_string())])).await?;
    }
    lattice.scale(a.id(), "echo", guests::ECHO, 0).await?.map_err(anyhow::Error::msg)?;

    // Read through node 1: everything, then the same in pages of 3.
    let journal = Journal::new(async_nats::connect(lattice.url_of(1)).await?, &lattice.name);
    let whole = journal.page(Since::Start, 1000, &Filter::default()).await?;
    assert!(!whole.has_more);
    let kinds: Vec<&str> = whole.records.iter().map(|r| r.kind.as_str()).collect();
    for expected in ["host_started", "component_scaled", "config_set"] {
        assert!(kinds.contains(&expected), "{expected} in {kinds:?}");
    }
    assert_eq!(kinds.iter().filter(|k| **k == "config_set").count(), 3, "{kinds:?}");
    assert!(!kinds.contains(&"host_heartbeat"), "heartbeats are left out unless asked for");
    assert!(whole.records[0].event["data"]["friendly_name"].as_str().is_some(), "the CloudEvent as published: {}", whole.records[0].event);
    let paged = read_all(&journal, Since::Start, 3).await?;
    assert!(paged.len() >= 2, "several pages: {} records", whole.records.len());
    assert!(paged[..paged.len() - 1].iter().all(|p| p.has_more && p.records.len() == 3), "full pages say more follow");
    assert_eq!(cursors(&paged), cursors(std::slice::from_ref(&whole)), "pages add up to the whole, nothing twice, nothing skipped");
    let typed = journal.page(Since::Start, 100, &Filter { kind: Some("config_set".into()), heartbeats: false }).await?;
    assert_eq!(typed.records.len(), 3);
    let last = whole.next;

    // A host restart: the journal continues after the cursor with the stop and the new start.
    a.shutdown(None).await?;
    let b = lattice.start_host(lattice.host_config_on(1)).await?;
    let after = journal.page(Since::After(last), 100, &Filter::default()).await?;
    let kinds: Vec<&str> = after.records.iter().map(|r| r.kind.as_str()).collect();
    assert!(after.records.iter().all(|r| r.cursor > last), "only what follows the cursor");
    assert!(kinds.contains(&"host_stopped") && kinds.contains(&"host_started"), "{kinds:?}");
    let restarted = after.next;

    // Node 0 goes; the stream (3 replicas) answers through node 2 with the same records.
    lattice.server_mut(0).kill();
    let through_2 = Journal::new(async_nats::connect(lattice.url_of(2)).await?, &lattice.name);
    let survived = eventually(Duration::from_secs(20), || {
        let through_2 = through_2.clone();
        async move { through_2.page(Since::Start, 1000, &Filter::default()).await.ok() }
    })
    .await
    .expect("the journal answers after the node loss");
    let before_loss: Vec<u64> = cursors(std::slice::from_ref(&whole)).into_iter().chain(after.records.iter().map(|r| r.cursor)).collect();
    assert_eq!(cursors(std::slice::from_ref(&survived))[..before_loss.len()], before_loss[..], "nothing lost with the node");
    assert!(survived.next >= restarted);
    b.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn a_cursor_that_aged_out_is_refused_not_skipped() -> anyhow::Result<()> {
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.journal = Some(trellis_host::journal::JournalConfig { max_age: Duration::from_secs(1), max_bytes: 1 << 20 });
    let host = lattice.start_host(config).await?;
    lattice.scale(host.id(), "echo", guests::ECHO, 1).await?.map_err(anyhow::Error::msg)?;
    let journal = Journal::new(lattice.nats().await?, &lattice.name);
    let first = journal.page(Since::Start, 1, &Filter::default()).await?;
    let cursor = first.records.first().expect("a record").cursor;
    // Once it has aged out, reading after a cursor before it is refused, naming where the
    // journal starts now.
    let refused = eventually(Duration::from_secs(10), || {
        let journal = journal.clone();
        async move {
            match journal.page(Since::After(cursor.saturating_sub(1)), 10, &Filter::default()).await {
                Err(e @ trellis_messages::Error::CursorGone { .. }) => Some(e),
                _ => None,
            }
        }
    })
    .await
    .expect("the aged-out cursor is refused");
    assert!(refused.to_string().contains("is gone: the journal now starts at"), "{refused}");
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn trellis_events_pages_and_follows_a_scale_live() -> anyhow::Result<()> {
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let client = lattice.client().await?;
    for i in 0..3 {
        client.put_config(&format!("cfg-{i}"), &HashMap::from([("k".to_string(), "v".to_string())])).await?;
    }
    let events = |extra: &[&str]| {
        let mut cmd = Command::new(trellis_bin().expect("binary"));
        cmd.args(["events", "--nats-url", &lattice.url(), "--lattice", &lattice.name]).args(extra);
        cmd
    };
    // A page of 2 as JSON says more follow and where to continue.
    let out = events(&["--limit", "2", "--json"]).output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let page: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(page["records"].as_array().map(Vec::len), Some(2), "{page}");
    assert_eq!(page["has_more"], true);
    let next = page["next"].as_u64().expect("next cursor");
    assert_eq!(Some(next), page["records"][1]["cursor"].as_u64());
    // An unparsable --since is refused by name.
    let out = events(&["--since", "last tuesday"]).output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("neither a cursor"), "{}", String::from_utf8_lossy(&out.stderr));

    // --follow prints the scale as it happens.
    let mut child = events(&["--follow", "--since", &next.to_string()]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    lattice.scale(host.id(), "followed", guests::ECHO, 1).await?.map_err(anyhow::Error::msg)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut seen = Vec::new();
    let found = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if line.contains("component_scaled") && line.contains("component_id=followed") => break true,
            Ok(line) => seen.push(line),
            Err(_) if std::time::Instant::now() > deadline => break false,
            Err(_) => {}
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(found, "the scale was not followed; saw {seen:?}");
    assert!(seen.iter().any(|l| l.contains("config_set")), "what followed the cursor came first: {seen:?}");
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn the_journal_shares_wadms_stream_and_raises_its_limits() -> anyhow::Result<()> {
    use async_nats::jetstream::stream;
    let lattice = TestLattice::new().await?;
    let js = async_nats::jetstream::new(lattice.nats().await?);
    // The stream as wadm 0.x creates it (`ensure_limits_stream`): 70 s, unlimited bytes, R1.
    js.create_stream(stream::Config {
        name: "wasmbus_events".into(),
        description: Some("A stream that stores all events coming in on the wasmbus.evt subject in a cluster".into()),
        num_replicas: 1,
        retention: stream::RetentionPolicy::Limits,
        subjects: vec!["wasmbus.evt.*.>".into()],
        max_age: Duration::from_secs(70),
        max_bytes: -1,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let mut shared = js.get_stream("wasmbus_events").await?;
    let config = shared.info().await?.config.clone();
    assert_eq!(config.subjects, ["wasmbus.evt.*.>"], "wadm's subjects, so wadm keeps using it");
    assert_eq!(config.max_age, Duration::from_secs(7 * 24 * 3600), "raised to the host's journal age");
    assert_eq!(config.max_bytes, -1, "unlimited stays unlimited");
    let journal = Journal::new(lattice.nats().await?, &lattice.name);
    assert!(journal.page(Since::Start, 10, &Filter::default()).await?.records.iter().any(|r| r.kind == "host_started"));
    host.shutdown(None).await?;

    // A type is one subject token: wildcards are refused, not read as a filter.
    for bad in [">", "*", "a.b", ""] {
        let err = journal.page(Since::Start, 10, &Filter { kind: Some(bad.into()), heartbeats: false }).await.expect_err(bad);
        assert!(err.to_string().contains("is not an event type"), "{err}");
    }

    // A stream of that name with other subjects is left alone; the host still starts.
    let other = TestLattice::new().await?;
    let js = async_nats::jetstream::new(other.nats().await?);
    js.create_stream(stream::Config { name: "wasmbus_events".into(), subjects: vec!["elsewhere.>".into()], ..Default::default() }).await?;
    let host = other.start_host(other.host_config()).await?;
    assert_eq!(js.get_stream("wasmbus_events").await?.info().await?.config.subjects, ["elsewhere.>"]);
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn a_host_with_no_journal_leaves_the_stream_alone() -> anyhow::Result<()> {
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.journal = None;
    let host = lattice.start_host(config).await?;
    let js = async_nats::jetstream::new(lattice.nats().await?);
    assert!(js.get_stream("wasmbus_events").await.is_err(), "no stream made");
    let err = Journal::new(lattice.nats().await?, &lattice.name).page(Since::Start, 10, &Filter::default()).await.expect_err("no journal");
    assert!(err.to_string().contains("is not available"), "{err}");
    host.shutdown(None).await?;
    Ok(())
}
