//! Scheduled invocations through the built-in `trellis://cron` provider, with real hosts,
//! real JetStream and the `ticker` guest (which counts, in key-value, every tick and every
//! attempt it runs): each tick once across three hosts, ticks going on when a host that runs
//! the provider is killed, failures retried then reported, missed ticks and lapsed claims, bad
//! schedules refused at `link.put`, and `trellis schedule list`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, kv};
use futures::{StreamExt, TryStreamExt};
use trellis_messages::link::Link;
use trellis_messages::schedule::{record_key, Lease, ScheduleTickFailed, TickRecord, TickState};
use trellis_messages::Client;
use trellis_tests::process::HostProcess;
use trellis_tests::{guests, eventually, init_tracing, start_provider, trellis_bin, TestLattice};

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

async fn put_config(client: &Client, name: &str, pairs: &[(&str, &str)]) -> anyhow::Result<()> {
    let values: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    client.put_config(name, &values).await?;
    Ok(())
}

/// The ticker's key-value link (bucket `bucket`) and, for each `(link name, config)`, a
/// schedule link from provider `cron` to it.
async fn link_ticker(client: &Client, component: &str, bucket: &str, schedules: &[(&str, &str)]) -> anyhow::Result<()> {
    put_config(client, &format!("{component}-kv"), &[("bucket", bucket)]).await?;
    let kv = Link::new(component, "kv", "default", "wasi", "keyvalue", &["store", "atomics"]).with_target_config(&[format!("{component}-kv").as_str()]);
    client.put_link(&kv).await?;
    for (name, config) in schedules {
        client.put_link(&Link::new("cron", component, name, "trellis", "schedule", &["handler"]).with_source_config(&[config])).await?;
    }
    Ok(())
}

/// Every key of `bucket` with its number.
async fn counters(kv: &kv::Store) -> anyhow::Result<BTreeMap<String, u64>> {
    let keys: Vec<String> = kv.keys().await?.try_collect().await?;
    let mut out = BTreeMap::new();
    for key in keys {
        if let Some(v) = kv.get(&key).await? {
            out.insert(key, String::from_utf8_lossy(&v).trim().parse()?);
        }
    }
    Ok(out)
}

/// Sequence numbers of the ticks link `name` ran, with how often each ran.
fn ticks_of(counts: &BTreeMap<String, u64>, name: &str) -> BTreeMap<u64, u64> {
    let prefix = format!("tick-{name}-");
    counts.iter().filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.parse().ok()?, *v))).collect()
}

/// `trellis host` processes, one on each node of `nodes`, with `args`; returned once every one
/// answers `host.ping`, with their ids.
async fn host_processes(lattice: &TestLattice, client: &Client, nodes: &[usize], args: &[&str]) -> anyhow::Result<(Vec<HostProcess>, Vec<String>)> {
    let hosts = nodes.iter().map(|node| HostProcess::start(lattice, *node, args)).collect::<anyhow::Result<Vec<_>>>()?;
    let ids: Vec<String> = hosts.iter().map(|h| h.id.clone()).collect();
    let joined = eventually(Duration::from_secs(30), || async {
        let seen: Vec<String> = client.ping_hosts().await.ok()?.into_iter().map(|h| h.id).collect();
        ids.iter().all(|id| seen.contains(id)).then_some(())
    })
    .await;
    anyhow::ensure!(joined.is_some(), "{} host processes did not all join within 30 s", ids.len());
    Ok((hosts, ids))
}

async fn bucket(lattice: &TestLattice, name: &str) -> anyhow::Result<kv::Store> {
    let js = jetstream::new(lattice.nats().await?);
    let found = eventually(Duration::from_secs(20), || async { js.get_key_value(name).await.ok() }).await;
    found.ok_or_else(|| anyhow::anyhow!("bucket `{name}` never appeared"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_tick_runs_once_across_three_hosts_and_survives_a_killed_host() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::cluster(3).await?;
    let ticker = lattice.push("ticker", guests::TICKER).await?;
    let client = lattice.client().await?.with_timeout(Duration::from_secs(5));
    let (mut hosts, ids) = host_processes(&lattice, &client, &[0, 1, 2], &["--kv-replicas", "3", "--no-apps"]).await?;

    // Key-value everywhere, the schedule provider on hosts 0 and 1, the component on all three.
    for id in &ids {
        start_provider(&client, id, "kv", "trellis://keyvalue").await?;
        lattice.scale(id, "ticker", &ticker, 4).await?.map_err(anyhow::Error::msg)?;
    }
    for id in &ids[..2] {
        start_provider(&client, id, "cron", "wasmcloud+builtin://cron").await?;
    }
    // A short timeout, so a tick a killed host had claimed is taken over within seconds.
    put_config(&client, "every-second", &[("every", "1s"), ("timeout", "2s")]).await?;
    link_ticker(&client, "ticker", "TICKS", &[("second", "every-second")]).await?;

    let ticks = bucket(&lattice, "TICKS").await?;
    let started = eventually(Duration::from_secs(20), || async { counters(&ticks).await.ok()?.get("ticks-second").copied() }).await;
    assert!(started.is_some(), "the first tick ran");
    let before = counters(&ticks).await?["ticks-second"];
    tokio::time::sleep(Duration::from_secs(10)).await;
    let counts = counters(&ticks).await?;
    let ran = counts["ticks-second"] - before;
    assert!((9..=11).contains(&ran), "10 ± 1 ticks in 10 s, not {ran}");
    let seen = ticks_of(&counts, "second");
    assert!(seen.values().all(|n| *n == 1), "every tick ran once: {seen:?}");

    // `trellis schedule list` shows it: schedule, last tick succeeded, next tick ahead.
    let list = |json: bool| {
        let mut cmd = std::process::Command::new(trellis_bin().expect("binary"));
        cmd.args(["schedule", "list", "--nats-url", &lattice.url(), "--lattice", &lattice.name]);
        if json {
            cmd.arg("--json");
        }
        cmd.output()
    };
    let out = list(true)?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)?;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0]["provider_id"].as_str(), rows[0]["link_name"].as_str(), rows[0]["component_id"].as_str()), (Some("cron"), Some("second"), Some("ticker")));
    assert_eq!(rows[0]["schedule"], "every 1s");
    let last: TickRecord = serde_json::from_value(rows[0]["last"].clone())?;
    assert!(ids[..2].contains(&last.host_id), "a host that runs the provider claimed it: {last:?}");
    assert!(rows[0]["next_at_ms"].as_u64().is_some_and(|n| n > last.scheduled_at_ms), "{rows:?}");
    let text = String::from_utf8(list(false)?.stdout)?;
    assert!(text.contains("cron -> ticker  (second)") && text.contains("schedule  every 1s") && text.contains("next "), "{text}");

    // Kill host 0 (it runs the provider): ticks go on from host 1, none lost, none twice.
    hosts[0].kill9();
    let killed_at = counters(&ticks).await?["ticks-second"];
    tokio::time::sleep(Duration::from_secs(6)).await;
    let counts = counters(&ticks).await?;
    let after = counts["ticks-second"] - killed_at;
    assert!((4..=7).contains(&after), "ticks went on after the kill: {after} in 6 s");
    let seen = ticks_of(&counts, "second");
    assert!(seen.values().all(|n| *n == 1), "every tick ran once: {seen:?}");
    let (first, last) = (*seen.keys().next().expect("ticks"), *seen.keys().last().expect("ticks"));
    let missing: Vec<u64> = (first..=last).filter(|s| !seen.contains_key(s)).collect();
    assert!(missing.is_empty(), "no tick lost, also across the kill: missing {missing:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tick_whose_host_is_killed_mid_call_is_taken_over_after_its_deadline() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let ticker = lattice.push("ticker", guests::TICKER).await?;
    let client = lattice.client().await?.with_timeout(Duration::from_secs(5));
    let (mut hosts, ids) = host_processes(&lattice, &client, &[0, 0], &["--no-apps"]).await?;
    for id in &ids {
        start_provider(&client, id, "kv", "trellis://keyvalue").await?;
        lattice.scale(id, "ticker", &ticker, 2).await?.map_err(anyhow::Error::msg)?;
        start_provider(&client, id, "cron", "trellis://cron").await?;
    }
    // Each tick's first attempt takes 3 s; a lease lasts the 4 s timeout plus 2 s. Ticks come
    // every 2 s, so later ticks are claimed while the killed host's tick waits for takeover.
    put_config(&client, "slow", &[("every", "2s"), ("payload", "slow"), ("timeout", "4s")]).await?;
    link_ticker(&client, "ticker", "SLOW", &[("slow", "slow")]).await?;

    let ticks = bucket(&lattice, "SLOW").await?;
    let started = eventually(Duration::from_secs(20), || async {
        let counts = counters(&ticks).await.ok()?;
        counts.keys().find_map(|k| k.strip_prefix("started-slow-")?.parse::<u64>().ok())
    })
    .await
    .expect("a tick started");
    let records = bucket(&lattice, &format!("TRELLIS_SCHEDULES_{}", lattice.name)).await?;
    let raw = records.get(record_key("cron", "slow", "ticker")).await?.expect("a record");
    let record: TickRecord = serde_json::from_slice(&raw)?;
    let holder = record.running.iter().find(|l| l.sequence == started).expect("the started tick's lease").host_id.clone();
    let victim = hosts.iter().position(|h| h.id == holder).expect("a host of ours holds it");
    hosts[victim].kill9();
    let survivor = ids.iter().find(|id| **id != holder).expect("the other host").clone();

    let done = eventually(Duration::from_secs(15), || async {
        let counts = counters(&ticks).await.ok()?;
        counts.get(&format!("tick-slow-{started}")).copied()
    })
    .await;
    assert_eq!(done, Some(1), "the killed host's tick ran, once");
    let counts = counters(&ticks).await?;
    assert_eq!(counts.get(&format!("attempt-slow-{started}")), Some(&2), "as its second attempt: {counts:?}");
    let taken = eventually(Duration::from_secs(5), || async {
        let raw = records.get(record_key("cron", "slow", "ticker")).await.ok()??;
        let record: TickRecord = serde_json::from_slice(&raw).ok()?;
        record.running.iter().all(|l| l.sequence != started).then_some(record)
    })
    .await;
    assert!(taken.is_some(), "its lease ended");
    // Ticks after the kill run on the survivor.
    let later = eventually(Duration::from_secs(10), || async {
        let raw = records.get(record_key("cron", "slow", "ticker")).await.ok()??;
        let record: TickRecord = serde_json::from_slice(&raw).ok()?;
        (record.sequence > started + 2 && record.host_id == survivor).then_some(())
    })
    .await;
    assert!(later.is_some(), "later ticks run on the surviving host");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_ticks_are_retried_with_backoff_then_reported() -> anyhow::Result<()> {
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let client = lattice.client().await?;
    let nats = lattice.nats().await?;
    let mut failures = nats.subscribe(format!("wasmbus.evt.{}.schedule_tick_failed", lattice.name)).await?;
    nats.flush().await?;
    start_provider(&client, host.id(), "kv", "trellis://keyvalue").await?;
    start_provider(&client, host.id(), "cron", "trellis://cron").await?;
    lattice.scale(host.id(), "ticker", guests::TICKER, 2).await?.map_err(anyhow::Error::msg)?;
    put_config(&client, "always-fails", &[("every", "1s"), ("payload", "fail"), ("retries", "2")]).await?;
    put_config(&client, "fails-once", &[("every", "1s"), ("payload", "fail-once")]).await?;
    put_config(&client, "traps", &[("every", "1s"), ("payload", "trap"), ("retries", "0")]).await?;
    put_config(&client, "too-slow", &[("every", "2s"), ("payload", "slow"), ("retries", "0"), ("timeout", "1s")]).await?;
    let links = [("failing", "always-fails"), ("flaky", "fails-once"), ("trapping", "traps"), ("timing-out", "too-slow")];
    link_ticker(&client, "ticker", "RETRIES", &links).await?;

    // The first report of each failing link.
    let mut first: BTreeMap<String, ScheduleTickFailed> = BTreeMap::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while first.len() < 3 {
            let msg = failures.next().await.expect("an event");
            let event: trellis_messages::event::CloudEvent = serde_json::from_slice(&msg.payload).expect("an event");
            let failed: ScheduleTickFailed = serde_json::from_value(trellis_messages::event::LatticeEvent::json(&event).clone()).expect("its data");
            first.entry(failed.link_name.clone()).or_insert(failed);
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("reports so far: {first:?}"))?;
    let trapped = &first["trapping"];
    assert_eq!(trapped.attempts, 1, "retries 0: one attempt");
    assert!(trapped.error.contains("told to trap") || trapped.error.contains("trap"), "{}", trapped.error);
    let slow = &first["timing-out"];
    assert!(slow.error.contains("did not return within 1s"), "{}", slow.error);
    let failed = first["failing"].clone();
    assert_eq!((failed.provider_id.as_str(), failed.link_name.as_str(), failed.component_id.as_str()), ("cron", "failing", "ticker"));
    assert_eq!(failed.attempts, 3, "the first attempt and 2 retries");
    assert!(failed.error.contains("told to fail (tick") && failed.error.contains("attempt 3"), "{}", failed.error);
    assert_eq!(failed.host_id, host.id());

    let ticks = bucket(&lattice, "RETRIES").await?;
    let counts = counters(&ticks).await?;
    assert_eq!(counts.get(&format!("attempt-failing-{}", failed.sequence)), Some(&3), "{counts:?}");
    assert!(ticks_of(&counts, "failing").is_empty(), "a failing tick never counts as run");
    // The flaky link's ticks fail once, then succeed on the retry, and are not reported.
    let flaky = eventually(Duration::from_secs(10), || async {
        let counts = counters(&ticks).await.ok()?;
        let (seq, _) = ticks_of(&counts, "flaky").into_iter().next()?;
        Some((counts.get(&format!("attempt-flaky-{seq}")).copied(), counts[&format!("tick-flaky-{seq}")]))
    })
    .await;
    assert_eq!(flaky, Some((Some(2), 1)), "failed once, ran once on the retry");
    // The record says how the failing schedule's latest tick ended.
    let records = bucket(&lattice, &format!("TRELLIS_SCHEDULES_{}", lattice.name)).await?;
    let ended = eventually(Duration::from_secs(10), || async {
        let raw = records.get(record_key("cron", "failing", "ticker")).await.ok()??;
        let record: TickRecord = serde_json::from_slice(&raw).ok()?;
        (record.state == TickState::Failed).then_some(record)
    })
    .await
    .expect("a failed record");
    assert_eq!(ended.attempt, 3);
    assert!(ended.error.unwrap_or_default().contains("told to fail"));
    let reported = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(msg) = failures.next().await {
            let event: trellis_messages::event::CloudEvent = serde_json::from_slice(&msg.payload).expect("an event");
            let failed: ScheduleTickFailed = serde_json::from_value(trellis_messages::event::LatticeEvent::json(&event).clone()).expect("its data");
            if failed.link_name == "flaky" {
                return true;
            }
        }
        false
    })
    .await;
    assert_ne!(reported, Ok(true), "a tick that succeeded on a retry is not reported");

    // A config changed into a bad schedule stops that schedule; `schedule list` says why.
    put_config(&client, "always-fails", &[("every", "whenever")]).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let attempts = |counts: &BTreeMap<String, u64>| counts.iter().filter(|(k, _)| k.starts_with("attempt-failing-")).map(|(_, v)| *v).sum::<u64>();
    let before = attempts(&counters(&ticks).await?);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(attempts(&counters(&ticks).await?), before, "no attempt after the schedule became invalid");
    let out = std::process::Command::new(trellis_bin()?)
        .args(["schedule", "list", "--json", "--nats-url", &lattice.url(), "--lattice", &lattice.name])
        .output()?;
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)?;
    let row = rows.iter().find(|r| r["link_name"] == "failing").expect("the failing link's row");
    assert!(row["schedule"].is_null() && row["invalid"].as_str().is_some_and(|e| e.contains("`every` = `whenever` is not a duration")), "{row}");
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missed_ticks_follow_the_policy_and_lapsed_claims_are_taken_over() -> anyhow::Result<()> {
    // Hourly schedules, so the only ticks that run here are the ones the start-up decides on.
    // Not within 20 s of the hour, when a regular tick could fall inside the test.
    let into_hour = now_ms() % 3_600_000;
    if into_hour > 3_600_000 - 20_000 {
        tokio::time::sleep(Duration::from_millis(3_600_000 - into_hour + 1000)).await;
    }
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let client = lattice.client().await?;
    start_provider(&client, host.id(), "kv", "trellis://keyvalue").await?;
    lattice.scale(host.id(), "ticker", guests::TICKER, 2).await?.map_err(anyhow::Error::msg)?;
    put_config(&client, "hourly-catch-up", &[("every", "1h"), ("missed", "run-once")]).await?;
    put_config(&client, "hourly", &[("every", "1h")]).await?;
    let links = [("catch-up", "hourly-catch-up"), ("skipped", "hourly"), ("lapsed", "hourly"), ("held", "hourly"), ("ahead", "hourly-catch-up"), ("forever", "hourly")];
    link_ticker(&client, "ticker", "MISSED", &links).await?;

    // Records as the lattice would have them: the previous hour's tick done (then every host
    // was down), this hour's tick claimed by a host that died, and one claimed by a live host.
    // (Only hosts that run a schedule provider open the bucket; none does yet.)
    let js = jetstream::new(lattice.nats().await?);
    let name = format!("TRELLIS_SCHEDULES_{}", lattice.name);
    assert!(js.get_key_value(&name).await.is_err(), "a host without a schedule provider does not create the bucket");
    let records = js.create_key_value(kv::Config { bucket: name, history: 1, ..Default::default() }).await?;
    let now = now_ms();
    let this_hour = now / 3_600_000;
    let record = |link: &str, sequence: u64, state: TickState, host: &str, deadline_ms: u64| TickRecord {
        running: if state == TickState::Running {
            vec![Lease { sequence, scheduled_at_ms: sequence * 3_600_000, host_id: host.into(), attempt: 1, deadline_ms }]
        } else {
            Vec::new()
        },
        provider_id: "cron".into(),
        link_name: link.into(),
        component_id: "ticker".into(),
        schedule: "every 1h".into(),
        sequence,
        scheduled_at_ms: sequence * 3_600_000,
        host_id: host.into(),
        attempt: 1,
        state,
        updated_at_ms: now,
        error: None,
        next_at_ms: None,
    };
    let plant = [
        record("catch-up", this_hour - 1, TickState::Succeeded, "NOLD", 0),
        record("skipped", this_hour - 1, TickState::Succeeded, "NOLD", 0),
        record("lapsed", this_hour, TickState::Running, "NGONE", now - 1000),
        record("held", this_hour, TickState::Running, "NALIVE", now + 60_000),
        // Forged: a latest tick a thousand hours ahead (which would make every tick until then
        // look claimed), and a lease that ends in ten years (which would hold this hour's tick).
        record("ahead", this_hour + 1000, TickState::Succeeded, "NFORGED", 0),
        record("forever", this_hour, TickState::Running, "NFORGED", now + 10 * 365 * 86_400_000),
    ];
    for r in &plant {
        records.put(record_key("cron", &r.link_name, "ticker"), serde_json::to_vec(r)?.into()).await?;
    }
    start_provider(&client, host.id(), "cron", "trellis://cron").await?;

    let ticks = bucket(&lattice, "MISSED").await?;
    let ran = eventually(Duration::from_secs(10), || async {
        let counts = counters(&ticks).await.ok()?;
        let (catch_up, lapsed) = (ticks_of(&counts, "catch-up"), ticks_of(&counts, "lapsed"));
        let forged = [ticks_of(&counts, "ahead"), ticks_of(&counts, "forever")];
        (!catch_up.is_empty() && !lapsed.is_empty() && forged.iter().all(|t| !t.is_empty())).then_some((catch_up, lapsed, forged))
    })
    .await;
    let (catch_up, lapsed, forged) = ran.expect("the missed tick (run-once), the lapsed claim and the ticks forged records held ran");
    assert_eq!(forged, [BTreeMap::from([(this_hour, 1)]), BTreeMap::from([(this_hour, 1)])], "forged records stop no tick");
    assert_eq!(catch_up, BTreeMap::from([(this_hour, 1)]), "run-once runs the latest missed tick, once");
    assert_eq!(lapsed, BTreeMap::from([(this_hour, 1)]), "the lapsed claim's tick ran here");
    let raw = records.get(record_key("cron", "lapsed", "ticker")).await?.expect("a record");
    let taken: TickRecord = serde_json::from_slice(&raw)?;
    assert_eq!((taken.state, taken.attempt, taken.host_id.as_str()), (TickState::Succeeded, 2, host.id()), "taken over as attempt 2");
    assert!(taken.running.is_empty(), "the ended tick's lease is gone: {taken:?}");
    // Skip leaves the missed tick; a live claim is followed, not run again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let counts = counters(&ticks).await?;
    assert!(ticks_of(&counts, "skipped").is_empty(), "missed: skip runs nothing: {counts:?}");
    assert!(ticks_of(&counts, "held").is_empty(), "a live claim is not run twice: {counts:?}");
    let raw = records.get(record_key("cron", "held", "ticker")).await?.expect("a record");
    let held: TickRecord = serde_json::from_slice(&raw)?;
    assert_eq!(held.running.first().map(|l| l.host_id.as_str()), Some("NALIVE"), "the live lease is left alone");
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_schedules_are_refused_at_link_put() -> anyhow::Result<()> {
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let client = lattice.client().await?;
    // wasmCloud's own client, as wash would send it.
    let ctl = lattice.ctl().await?;
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("cron", "61 * * * *")], "`cron` = `61 * * * *` is not a cron expression"),
        (&[("cron", "0 0 31 2 *")], "never falls due"),
        (&[("cron", "0 3 * * *"), ("timezone", "Europe/Atlantis")], "`timezone` = `Europe/Atlantis` is not an IANA timezone"),
        (&[("every", "1ms")], "`every` = `1ms` is out of bounds"),
        (&[("payload", "x")], "names no schedule"),
    ];
    for (i, (pairs, expected)) in cases.iter().enumerate() {
        let name = format!("bad-{i}");
        put_config(&client, &name, pairs).await?;
        let link = wasmcloud_control_interface::Link::builder()
            .source_id("cron")
            .target("ticker")
            .name(&format!("l{i}"))
            .wit_namespace("trellis")
            .wit_package("schedule")
            .interfaces(vec!["handler".to_string()])
            .source_config(vec![name.clone()])
            .build()
            .map_err(anyhow::Error::msg)?;
        let answer = ctl.put_link(link).await.map_err(anyhow::Error::msg)?;
        assert!(!answer.succeeded(), "{pairs:?} refused");
        let message = answer.message();
        assert!(message.contains(expected) && message.contains(&format!("schedule link `l{i}` from `cron` to `ticker`")), "{pairs:?}: {message}");
    }
    // A schedule link names the handler interface only.
    put_config(&client, "good", &[("cron", "*/5 * * * *"), ("timezone", "Europe/Oslo")]).await?;
    let wrong = Link::new("cron", "ticker", "iface", "trellis", "schedule", &["handler", "other"]).with_source_config(&["good"]);
    let err = client.put_link(&wrong).await.expect_err("refused");
    assert!(err.to_string().contains("names the interface `handler` only"), "{err}");
    // Refused links are not stored; a good one is.
    client.put_link(&Link::new("cron", "ticker", "ok", "trellis", "schedule", &["handler"]).with_source_config(&["good"])).await?;
    let stored: Vec<String> = client.links().await?.into_iter().map(|l| l.name).collect();
    assert_eq!(stored, ["ok"]);
    host.shutdown(None).await?;
    Ok(())
}
