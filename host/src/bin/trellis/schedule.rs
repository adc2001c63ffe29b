//! `trellis schedule list`: every schedule link (`trellis:schedule/handler`), its schedule, the
//! latest tick claimed (when, by which host, how it ended) and the next tick.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Result;
use serde::Serialize;
use trellis_host::capabilities::schedule::{claims::Claims, is_schedule_link, spec::Schedule, tick::now_ms};
use trellis_messages::schedule::{bucket, TickRecord, TickState};
#[cfg(test)]
use trellis_messages::schedule::Lease;

use crate::args::ClientArgs;

/// One row; what `--json` prints a list of.
#[derive(Serialize)]
struct Row {
    provider_id: String,
    link_name: String,
    component_id: String,
    /// The schedule as configured (`every 1s`, `cron 0 3 * * * (Europe/Oslo)`).
    schedule: Option<String>,
    /// Why the link's config is not a valid schedule (it then never runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    invalid: Option<String>,
    /// The latest tick claimed; `None` before the first.
    last: Option<TickRecord>,
    /// When the next tick falls (ms since the Unix epoch).
    next_at_ms: Option<u64>,
}

pub async fn list(args: ClientArgs) -> Result<()> {
    let client = crate::client::connect(&args).await?;
    let mut links: Vec<_> = client.links().await?.into_iter().filter(is_schedule_link).collect();
    links.sort_by(|a, b| (&a.source_id, &a.target, &a.name).cmp(&(&b.source_id, &b.target, &b.name)));
    let js = async_nats::jetstream::new(client.nats().clone());
    let records = match js.get_key_value(bucket(&args.lattice.lattice)).await {
        Ok(kv) => Claims::all(&kv).await.map_err(anyhow::Error::msg)?,
        // No host has opened the bucket yet: nothing has run.
        Err(_) => Vec::new(),
    };
    let now = now_ms();
    let mut rows = Vec::new();
    for link in links {
        let mut config = BTreeMap::new();
        for name in &link.source_config {
            config.extend(client.config(name).await?);
        }
        let parsed = Schedule::from_config(&config);
        let last = records
            .iter()
            .find(|r| r.provider_id == link.source_id && r.link_name == link.name && r.component_id == link.target)
            .cloned();
        rows.push(Row {
            next_at_ms: parsed.as_ref().ok().and_then(|s| s.next_after(now)).map(|t| t.at_ms),
            invalid: parsed.as_ref().err().map(ToString::to_string),
            schedule: parsed.ok().map(|s| s.text),
            provider_id: link.source_id,
            link_name: link.name,
            component_id: link.target,
            last,
        });
    }
    if args.json {
        return crate::client::print_json(&rows);
    }
    print!("{}", render(&rows, now));
    Ok(())
}

fn time(ms: u64, now: u64) -> String {
    let at = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms));
    let relative = if ms <= now {
        format!("{} ago", humantime::format_duration(Duration::from_secs((now - ms) / 1000)))
    } else {
        format!("in {}", humantime::format_duration(Duration::from_secs((ms - now).div_ceil(1000))))
    };
    format!("{at} ({relative})")
}

fn render(rows: &[Row], now: u64) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if rows.is_empty() {
        let _ = writeln!(out, "no schedules (link a component to a `trellis://cron` provider for `trellis:schedule/handler`)");
        return out;
    }
    for r in rows {
        let _ = writeln!(out, "{} -> {}  ({})", r.provider_id, r.component_id, r.link_name);
        match (&r.schedule, &r.invalid) {
            (Some(text), _) => {
                let _ = writeln!(out, "  schedule  {text}");
            }
            (None, e) => {
                let _ = writeln!(out, "  schedule  not valid: {}", e.clone().unwrap_or_default());
            }
        }
        match &r.last {
            None => {
                let _ = writeln!(out, "  last      never");
            }
            Some(t) => {
                let outcome = match t.state {
                    TickState::Running => match t.running.iter().find(|l| l.sequence == t.sequence) {
                        Some(lease) => format!("running (attempt {}, lease until {})", lease.attempt, time(lease.deadline_ms, now)),
                        None => format!("running (attempt {})", t.attempt),
                    },
                    TickState::Succeeded => format!("succeeded (attempt {})", t.attempt),
                    TickState::Failed => format!("failed after {} attempt(s): {}", t.attempt, t.error.clone().unwrap_or_default()),
                };
                let _ = writeln!(out, "  last      tick {} due {} on {}: {outcome}", t.sequence, time(t.scheduled_at_ms, now), t.host_id);
            }
        }
        if let Some(last) = &r.last {
            let earlier: Vec<String> = last.running.iter().filter(|l| l.sequence != last.sequence).map(|l| format!("tick {} (attempt {} on {})", l.sequence, l.attempt, l.host_id)).collect();
            if !earlier.is_empty() {
                let _ = writeln!(out, "  unended  {}", earlier.join(", "));
            }
        }
        if let Some(next) = r.next_at_ms {
            let _ = writeln!(out, "  next      {}", time(next, now));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_render_the_last_outcome_and_the_next_tick() {
        let now = 1_700_000_000_000;
        let record = TickRecord {
            provider_id: "cron".into(),
            link_name: "nightly".into(),
            component_id: "reports".into(),
            schedule: "every 1s".into(),
            sequence: 1_699_999_999,
            scheduled_at_ms: now - 1000,
            host_id: "NHOST".into(),
            attempt: 4,
            state: TickState::Failed,
            updated_at_ms: now,
            error: Some("boom".into()),
            next_at_ms: None,
            running: vec![Lease { sequence: 1_699_999_990, scheduled_at_ms: now - 10_000, host_id: "NGONE".into(), attempt: 2, deadline_ms: now + 5000 }],
        };
        let rows = [
            Row { provider_id: "cron".into(), link_name: "nightly".into(), component_id: "reports".into(), schedule: Some("every 1s".into()), invalid: None, last: Some(record), next_at_ms: Some(now + 1000) },
            Row { provider_id: "cron".into(), link_name: "bad".into(), component_id: "x".into(), schedule: None, invalid: Some("`every` = `soon` is not a duration".into()), last: None, next_at_ms: None },
        ];
        let text = render(&rows, now);
        assert!(text.contains("cron -> reports  (nightly)"), "{text}");
        assert!(text.contains("tick 1699999999 due 2023-11-14T22:13:19Z (1s ago) on NHOST: failed after 4 attempt(s): boom"), "{text}");
        assert!(text.contains("next      2023-11-14T22:13:21Z (in 1s)"), "{text}");
        assert!(text.contains("schedule  not valid: `every` = `soon`"), "{text}");
        assert!(text.contains("last      never"), "{text}");
        assert!(text.contains("unended  tick 1699999990 (attempt 2 on NGONE)"), "{text}");
    }
}
