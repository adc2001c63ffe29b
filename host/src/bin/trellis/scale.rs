//! `trellis scale HOST --from FILE`: many components on one host at once, with progress on
//! stderr while their outcomes arrive and one line (or one JSON value) per component at the end.
//!
//! The file has a line per component: `ID REFERENCE [MAX]` (`MAX` defaults to 1, 0 stops it);
//! blank lines and `#` comments are skipped. Every line is checked before anything is sent.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use serde::Serialize;
use trellis_messages::component::ScaleComponentCommand;
use trellis_messages::event::{names, LatticeEvent as _};
use trellis_messages::Client;

/// Scale requests in flight at once: enough to keep a host's workload actor busy, few enough
/// not to flood the control queue.
const IN_FLIGHT: usize = 16;

/// Components one file may name.
const MAX_ENTRIES: usize = 10_000;

/// One line of the file.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub reference: String,
    pub max: u32,
}

/// The lines of a scale file.
///
/// # Errors
/// A malformed line (naming its number), a component named twice, or more than 10,000.
pub fn parse(text: &str) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (id, reference, max) = match fields.as_slice() {
            [id, reference] => (*id, *reference, 1),
            [id, reference, max] => {
                let max = max.parse().with_context(|| format!("line {}: `{max}` is not a number of instances", n + 1))?;
                (*id, *reference, max)
            }
            _ => bail!("line {}: expected `ID REFERENCE [MAX]`, found `{line}`", n + 1),
        };
        if let Err(e) = trellis_messages::invocation::check_component_id(id) {
            bail!("line {}: {e}", n + 1);
        }
        if !seen.insert(id.to_string()) {
            bail!("line {}: component `{id}` is named twice", n + 1);
        }
        entries.push(Entry { id: id.into(), reference: crate::reference::absolute(reference), max });
        if entries.len() > MAX_ENTRIES {
            bail!("more than {MAX_ENTRIES} components in one file");
        }
    }
    if entries.is_empty() {
        bail!("the file names no component");
    }
    Ok(entries)
}

/// How one component ended.
#[derive(Debug, Serialize)]
struct Outcome {
    component_id: String,
    /// `scaled`, `failed` or `timed-out`.
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Sends every entry's `component.scale` to `host_id` and waits up to `wait` for all outcomes.
///
/// # Errors
/// When any component failed or timed out (after printing every outcome).
pub async fn run(client: &Client, host_id: &str, entries: Vec<Entry>, allow_update: bool, wait: Duration, json: bool) -> Result<()> {
    // Subscribed before the first request goes out, so no outcome is missed.
    let nats = client.nats().clone();
    let mut events = nats.subscribe(client.subjects().events_wildcard()).await?;
    nats.flush().await?;
    let total = entries.len();
    let mut pending: BTreeMap<String, ()> = entries.iter().map(|e| (e.id.clone(), ())).collect();
    let mut done: Vec<Outcome> = Vec::with_capacity(total);
    let mut progress = Progress::new(total);

    let requests = futures::stream::iter(entries)
        .map(|entry| async move {
            let command = ScaleComponentCommand {
                component_ref: entry.reference,
                component_id: entry.id.clone(),
                max_instances: entry.max,
                host_id: host_id.to_string(),
                allow_update,
                ..ScaleComponentCommand::default()
            };
            (entry.id, client.scale_component(host_id, &command).await)
        })
        .buffer_unordered(IN_FLIGHT);
    tokio::pin!(requests);
    let mut sending = true;
    let deadline = tokio::time::Instant::now() + wait;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    while !pending.is_empty() {
        tokio::select! {
            acked = requests.next(), if sending => match acked {
                Some((id, Ok(ack))) if ack.contains("nothing to stop") => {
                    pending.remove(&id);
                    done.push(Outcome { component_id: id, outcome: "scaled", error: None });
                }
                Some((_, Ok(_))) => {}
                Some((id, Err(e))) => {
                    pending.remove(&id);
                    done.push(Outcome { component_id: id, outcome: "failed", error: Some(format!("{e:#}")) });
                }
                None => sending = false,
            },
            msg = events.next() => {
                let Some(msg) = msg else { bail!("the event subscription ended") };
                let Ok(event) = serde_json::from_slice::<trellis_messages::event::CloudEvent>(&msg.payload) else { continue };
                let Some(name) = event.name() else { continue };
                if name != names::COMPONENT_SCALED && name != names::COMPONENT_SCALE_FAILED {
                    continue;
                }
                if event.json().get("host_id").and_then(|v| v.as_str()) != Some(host_id) {
                    continue;
                }
                let Some(id) = event.json().get("component_id").and_then(|v| v.as_str()) else { continue };
                if pending.remove(id).is_some() {
                    let error = event.json().get("error").and_then(|v| v.as_str()).filter(|e| !e.is_empty()).map(str::to_string);
                    let outcome = if name == names::COMPONENT_SCALE_FAILED || error.is_some() { "failed" } else { "scaled" };
                    done.push(Outcome { component_id: id.to_string(), outcome, error });
                }
            }
            _ = tick.tick() => progress.show(&done, false),
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    for id in pending.into_keys() {
        done.push(Outcome { component_id: id, outcome: "timed-out", error: Some(format!("no outcome within {wait:?}")) });
    }
    progress.show(&done, true);
    done.sort_by(|a, b| a.component_id.cmp(&b.component_id));
    let failed = done.iter().filter(|o| o.outcome != "scaled").count();
    if json {
        println!("{}", serde_json::to_string_pretty(&done)?);
    } else {
        for o in done.iter().filter(|o| o.outcome != "scaled") {
            println!("{}  {}  {}", o.component_id, o.outcome, o.error.as_deref().unwrap_or_default());
        }
        println!("{} of {total} components scaled on host {host_id}", total - failed);
    }
    if failed > 0 {
        bail!("{failed} of {total} components were not scaled");
    }
    Ok(())
}

/// `scaled N/M, F failed` on stderr: rewritten in place on a terminal, a line per change
/// otherwise (a log keeps the history).
struct Progress {
    total: usize,
    shown: Option<(usize, usize)>,
    terminal: bool,
    started: Instant,
}

impl Progress {
    fn new(total: usize) -> Self {
        Self { total, shown: None, terminal: std::io::stderr().is_terminal(), started: Instant::now() }
    }

    fn show(&mut self, done: &[Outcome], last: bool) {
        let failed = done.iter().filter(|o| o.outcome != "scaled").count();
        let now = (done.len(), failed);
        if self.shown == Some(now) && !last {
            return;
        }
        self.shown = Some(now);
        let line = format!(
            "scaled {}/{}, {failed} failed ({:.1} s)",
            done.len() - failed,
            self.total,
            self.started.elapsed().as_secs_f64()
        );
        match (self.terminal, last) {
            (true, false) => eprint!("\r{line}"),
            (true, true) => eprintln!("\r{line}"),
            (false, _) => eprintln!("{line}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scale_file_is_checked_line_by_line() {
        let entries = parse("# web tier\necho file:///a.wasm\n\npinger file:///b.wasm 4 # four\n").expect("valid");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1], Entry { id: "pinger".into(), reference: "file:///b.wasm".into(), max: 4 });
        assert_eq!(entries[0].max, 1);
        for (text, wanted) in [
            ("echo", "line 1: expected `ID REFERENCE [MAX]`"),
            ("echo a b c", "line 1: expected"),
            ("echo file:///a.wasm many", "line 1: `many` is not a number"),
            ("a.b file:///a.wasm", "line 1: component id `a.b` must not contain"),
            ("echo a\necho b", "line 2: component `echo` is named twice"),
            ("# nothing\n", "names no component"),
        ] {
            let e = parse(text).expect_err(text).to_string();
            assert!(e.contains(wanted), "{text}: {e}");
        }
        let many: String = (0..=MAX_ENTRIES).map(|i| format!("c{i} file:///a.wasm\n")).collect();
        assert!(parse(&many).is_err());
    }
}
