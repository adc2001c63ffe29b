//! The lattice's journal: the events every host publishes on `wasmbus.evt.{lattice}.…`, kept
//! by JetStream in the stream `wasmbus_events` (subjects `wasmbus.evt.*.>`, the stream wadm
//! keeps them in too, so the two share it instead of conflicting), read page by page with
//! cursors.
//!
//! A record's cursor is its stream sequence. A page of records after cursor `c` says whether
//! more follow and the cursor to continue from; a cursor whose successors have aged out of the
//! stream is refused with [`Error::CursorGone`] rather than silently skipping what was lost.

use std::time::{Duration, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer::pull::OrderedConfig, consumer::DeliverPolicy};
use futures::{Stream, StreamExt};
use serde::Serialize;

use crate::error::{Error, Result};

/// The stream's name.
pub const STREAM: &str = "wasmbus_events";
/// The subjects it keeps (every lattice's events).
pub const SUBJECTS: &str = "wasmbus.evt.*.>";
/// The event type of heartbeats, which [`Filter::heartbeats`] leaves out unless asked.
pub const HEARTBEAT: &str = "host_heartbeat";

/// Where a read starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Since {
    /// The oldest record kept.
    Start,
    /// The first record after this cursor.
    After(u64),
    /// The first record published at most this long ago.
    Ago(Duration),
}

/// A `since` that is neither a cursor nor a duration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{given}` is neither a cursor (a number) nor a duration such as `10m`: {reason}")]
pub struct SinceError {
    /// What was given.
    pub given: String,
    /// Why it is not a duration.
    pub reason: humantime::DurationError,
}

impl std::str::FromStr for Since {
    type Err = SinceError;
    /// A cursor (`1234`) or a duration (`10m`, `2h`).
    fn from_str(s: &str) -> std::result::Result<Self, SinceError> {
        let s = s.trim();
        if let Ok(cursor) = s.parse::<u64>() {
            return Ok(Self::After(cursor));
        }
        humantime::parse_duration(s)
            .map(Self::Ago)
            .map_err(|reason| SinceError { given: s.to_string(), reason })
    }
}

/// Which records a read returns.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only this event type (`component_scaled`, or `com.wasmcloud.lattice.component_scaled`).
    pub kind: Option<String>,
    /// Heartbeats too (left out by default: they are most of the records and say little).
    pub heartbeats: bool,
}

/// One event as the journal kept it.
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    /// Its position in the journal: pass it as [`Since::After`] to read what follows.
    pub cursor: u64,
    /// When the NATS server stored it (RFC 3339).
    pub time: String,
    /// The event type (`component_scaled`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The CloudEvent as published (a string when it was not JSON).
    pub event: serde_json::Value,
}

/// Records after a cursor.
#[derive(Clone, Debug, Serialize)]
pub struct Page {
    /// The records, oldest first.
    pub records: Vec<Record>,
    /// Whether more records follow the last one.
    pub has_more: bool,
    /// The cursor to continue from (the last record's, or where the read started).
    pub next: u64,
}

/// Reads lattice `lattice`'s journal.
#[derive(Clone, Debug)]
pub struct Journal {
    js: jetstream::Context,
    lattice: String,
}

/// How long a read waits for the server's next record before it fails.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

impl Journal {
    /// The journal of `lattice`, over `nats`.
    pub fn new(nats: async_nats::Client, lattice: &str) -> Self {
        Self { js: jetstream::new(nats), lattice: lattice.into() }
    }

    fn subject(&self, filter: &Filter) -> Result<String> {
        match &filter.kind {
            None => Ok(format!("wasmbus.evt.{}.>", self.lattice)),
            Some(kind) => {
                let kind = kind.strip_prefix("com.wasmcloud.lattice.").unwrap_or(kind);
                if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                    return Err(Error::Journal(format!("`{kind}` is not an event type (such as component_scaled)")));
                }
                Ok(format!("wasmbus.evt.{}.{kind}", self.lattice))
            }
        }
    }

    /// A consumer of the records `filter` selects from `since` on, after checking that a cursor
    /// has not aged out.
    async fn consumer(&self, since: Since, filter: &Filter) -> Result<jetstream::consumer::Consumer<OrderedConfig>> {
        let subject = self.subject(filter)?;
        let unavailable = |e: &dyn std::fmt::Display| {
            Error::Journal(format!("the journal (JetStream stream `{STREAM}`) is not available: {e}; hosts create it when they start"))
        };
        let mut stream = self.js.get_stream(STREAM).await.map_err(|e| unavailable(&e))?;
        let state = stream.info().await.map_err(|e| unavailable(&e))?.state.clone();
        let deliver_policy = match since {
            Since::Start => DeliverPolicy::All,
            Since::After(cursor) => {
                // Records after `cursor` were removed when the oldest kept one is past
                // `cursor + 1` (an empty stream keeps its sequence: first = last + 1).
                if state.messages > 0 && cursor.saturating_add(1) < state.first_sequence
                    || state.messages == 0 && cursor < state.last_sequence
                {
                    return Err(Error::CursorGone { cursor, first: state.first_sequence });
                }
                DeliverPolicy::ByStartSequence { start_sequence: cursor.saturating_add(1) }
            }
            Since::Ago(ago) => {
                let at = time::OffsetDateTime::now_utc() - ago;
                DeliverPolicy::ByStartTime { start_time: at }
            }
        };
        stream
            .create_consumer(OrderedConfig { filter_subject: subject, deliver_policy, ..Default::default() })
            .await
            .map_err(|e| Error::Journal(format!("cannot read the journal: {e}")))
    }

    /// Up to `limit` records after `since` (at least one is asked for).
    ///
    /// # Errors
    /// [`Error::CursorGone`] for a cursor whose successors aged out, [`Error::Journal`] when the
    /// stream is missing or the server does not answer.
    pub async fn page(&self, since: Since, limit: usize, filter: &Filter) -> Result<Page> {
        let start = match since {
            Since::After(cursor) => cursor,
            _ => 0,
        };
        let mut consumer = self.consumer(since, filter).await?;
        let pending = consumer.info().await.map_err(|e| Error::Journal(format!("cannot read the journal: {e}")))?.num_pending;
        let mut page = Page { records: Vec::new(), has_more: false, next: start };
        if pending == 0 {
            return Ok(page);
        }
        let mut messages = consumer.messages().await.map_err(|e| Error::Journal(format!("cannot read the journal: {e}")))?;
        while page.records.len() < limit.max(1) {
            let message = match tokio::time::timeout(READ_TIMEOUT, messages.next()).await {
                Ok(Some(Ok(m))) => m,
                Ok(Some(Err(e))) => return Err(Error::Journal(format!("reading the journal failed: {e}"))),
                Ok(None) => break,
                Err(_) => return Err(Error::Journal(format!("the journal sent nothing for {READ_TIMEOUT:?}"))),
            };
            let (record, more) = self.record(&message)?;
            page.next = record.cursor;
            page.has_more = more;
            if filter.heartbeats || filter.kind.is_some() || record.kind != HEARTBEAT {
                page.records.push(record);
            }
            if !more {
                break;
            }
        }
        Ok(page)
    }

    /// Every record after `since`, then each new one as it is published, without end.
    ///
    /// # Errors
    /// As [`Journal::page`], before the first record.
    pub async fn follow(&self, since: Since, filter: Filter) -> Result<impl Stream<Item = Result<Record>> + use<>> {
        let consumer = self.consumer(since, &filter).await?;
        let messages = consumer.messages().await.map_err(|e| Error::Journal(format!("cannot read the journal: {e}")))?;
        let this = self.clone();
        Ok(messages.filter_map(move |m| {
            let out = match m {
                Ok(message) => match this.record(&message) {
                    Ok((record, _)) if filter.heartbeats || filter.kind.is_some() || record.kind != HEARTBEAT => Some(Ok(record)),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                },
                Err(e) => Some(Err(Error::Journal(format!("reading the journal failed: {e}")))),
            };
            futures::future::ready(out)
        }))
    }

    /// The record of `message`, and whether more follow it.
    fn record(&self, message: &jetstream::Message) -> Result<(Record, bool)> {
        let info = message.info().map_err(|e| Error::Journal(format!("a journal message without metadata: {e}")))?;
        let nanos = u64::try_from(info.published.unix_timestamp_nanos()).unwrap_or(0);
        let time = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_nanos(nanos)).to_string();
        let prefix = format!("wasmbus.evt.{}.", self.lattice);
        let kind = message.subject.as_str().strip_prefix(&prefix).unwrap_or(message.subject.as_str()).to_string();
        let event = serde_json::from_slice(&message.payload)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&message.payload).into_owned()));
        Ok((Record { cursor: info.stream_sequence, time, kind, event }, info.pending > 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_parses_cursors_and_durations() {
        assert_eq!("42".parse::<Since>().unwrap(), Since::After(42));
        assert_eq!("10m".parse::<Since>().unwrap(), Since::Ago(Duration::from_secs(600)));
        assert!("yesterday-ish".parse::<Since>().unwrap_err().to_string().contains("neither a cursor"));
    }
}
