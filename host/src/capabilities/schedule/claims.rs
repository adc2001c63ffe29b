//! Claiming ticks: one record per schedule in the lattice's schedule bucket
//! ([`trellis_messages::schedule`]), changed only at the revision last read (a
//! compare-and-set). A tick is claimed only while the record's latest tick is older, so exactly
//! one host wins each tick; a claimed tick holds a lease until it ends, and a lapsed lease is
//! taken over by exactly one other host.

use async_nats::jetstream::kv;
use bytes::Bytes;
use tracing::warn;
use trellis_messages::schedule::{Lease, TickRecord, TickState};

use super::spec::Tick;

/// Rounds of read-modify-write before giving up when other hosts keep writing the record.
const ROUNDS: usize = 20;
/// Leases kept at most: past this, the oldest is dropped (its tick is abandoned), so a
/// schedule whose ticks all hang cannot grow its record without bound.
pub const MAX_LEASES: usize = 64;

/// How far past the lease a claim would take now a lease in the record may end (the longest
/// retry backoff, 30 s, and as much again for clocks that disagree); past it, and for a latest
/// tick due further than this ahead of the clock, the record is not believed (a forged or
/// corrupt record must not stop a schedule or hold a tick forever).
pub const SLACK_MS: u64 = 60_000;

/// The outcome of trying to claim a tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This host runs the tick from `attempt`.
    Won { attempt: u32 },
    /// Another host holds a live lease on it: follow it, take it over if it lapses.
    Held(Lease),
    /// The tick has ended, or a later tick has been claimed and this one never was.
    Gone,
}

/// What a host knows about the tick it holds, to write into the record.
#[derive(Debug, Clone)]
pub struct Progress {
    /// The attempt running now or last run.
    pub attempt: u32,
    /// `Running` (with the lease's new deadline) or how the tick ended.
    pub state: TickState,
    /// The lease's new deadline while running.
    pub deadline_ms: u64,
    /// The last attempt's error.
    pub error: Option<String>,
}

/// `record` with what cannot be true left out: a latest tick due more than [`SLACK_MS`] ahead
/// of `now_ms` (the record then starts afresh: no later tick can have been claimed) and leases
/// ending more than [`SLACK_MS`] past `deadline_ms` (the deadline a claim made now gets), each
/// with a log line.
pub(crate) fn believable(key: &str, mut record: TickRecord, now_ms: u64, deadline_ms: u64) -> TickRecord {
    if record.scheduled_at_ms > now_ms.saturating_add(SLACK_MS) {
        warn!(key, sequence = record.sequence, scheduled_at_ms = record.scheduled_at_ms, now_ms, "schedule record ignored: its latest tick is due far ahead of the clock");
        record.sequence = 0;
        record.scheduled_at_ms = 0;
        record.running.retain(|l| l.scheduled_at_ms <= now_ms.saturating_add(SLACK_MS));
    }
    let limit = deadline_ms.saturating_add(SLACK_MS);
    for lease in record.running.iter_mut().filter(|l| l.deadline_ms > limit) {
        warn!(key, sequence = lease.sequence, host_id = %lease.host_id, deadline_ms = lease.deadline_ms, "schedule lease ends beyond any timeout; treated as lapsed");
        lease.deadline_ms = 0;
    }
    record
}

/// The schedule bucket.
#[derive(Debug, Clone)]
pub struct Claims {
    kv: kv::Store,
}

/// Why the schedule bucket could not be read or written; each variant names the record's key.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// A record could not be read.
    #[error("reading a record in the schedule bucket: {source}")]
    Read {
        /// The record's key.
        key: String,
        /// What the KV client reported.
        #[source]
        source: kv::EntryError,
    },
    /// A record could not be encoded as JSON.
    #[error("encoding a record in the schedule bucket: {source}")]
    Encode {
        /// The record's key.
        key: String,
        /// What serde reported.
        #[source]
        source: serde_json::Error,
    },
    /// A new record could not be created (for another reason than one already being there).
    #[error("creating a record in the schedule bucket: {source}")]
    Create {
        /// The record's key.
        key: String,
        /// What the KV client reported.
        #[source]
        source: kv::CreateError,
    },
    /// A record could not be updated (for another reason than a newer revision).
    #[error("updating a record in the schedule bucket: {source}")]
    Update {
        /// The record's key.
        key: String,
        /// What the KV client reported.
        #[source]
        source: kv::UpdateError,
    },
    /// Other hosts wrote the record between every read and write, round after round.
    #[error("writing a record in the schedule bucket: other hosts kept changing it")]
    Contended {
        /// The record's key.
        key: String,
    },
    /// The bucket's keys could not be listed.
    #[error("listing records in the schedule bucket: {source}")]
    List {
        /// What the KV client reported.
        #[source]
        source: kv::HistoryError,
    },
    /// Listing the bucket's keys failed part way.
    #[error("listing records in the schedule bucket: {source}")]
    ListStream {
        /// What the KV client reported.
        #[source]
        source: kv::WatcherError,
    },
}

impl Claims {
    /// Over an open bucket.
    pub fn new(kv: kv::Store) -> Self {
        Self { kv }
    }

    /// The record under `key`, if there is a readable one.
    ///
    /// # Errors
    /// KV failed.
    pub async fn read(&self, key: &str) -> Result<Option<TickRecord>, ClaimError> {
        Ok(self.entry(key).await?.0)
    }

    /// The record (`None` when absent or unreadable: an unreadable one is replaced) and the
    /// revision to write at (`None`: create).
    async fn entry(&self, key: &str) -> Result<(Option<TickRecord>, Option<u64>), ClaimError> {
        match self.kv.entry(key).await.map_err(|source| ClaimError::Read { key: key.to_string(), source })? {
            Some(entry) if entry.operation == kv::Operation::Put => Ok((serde_json::from_slice(&entry.value).ok(), Some(entry.revision))),
            Some(entry) => Ok((None, Some(entry.revision))),
            None => Ok((None, None)),
        }
    }

    /// Read-modify-write of the record under `key`: `change` gets the current record and
    /// answers the record to write (`None`: leave it) and the outcome; repeated while another
    /// host writes in between.
    ///
    /// # Errors
    /// KV failed, or the record kept changing.
    async fn modify<T>(&self, key: &str, mut change: impl FnMut(Option<TickRecord>) -> (Option<TickRecord>, T)) -> Result<T, ClaimError> {
        for _ in 0..ROUNDS {
            let (current, revision) = self.entry(key).await?;
            let (next, outcome) = change(current);
            let Some(next) = next else { return Ok(outcome) };
            let value = Bytes::from(serde_json::to_vec(&next).map_err(|source| ClaimError::Encode { key: key.to_string(), source })?);
            let written = match revision {
                None => match self.kv.create(key, value).await {
                    Ok(_) => true,
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => false,
                    Err(source) => return Err(ClaimError::Create { key: key.to_string(), source }),
                },
                Some(rev) => match self.kv.update(key, value, rev).await {
                    Ok(_) => true,
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => false,
                    Err(source) => return Err(ClaimError::Update { key: key.to_string(), source }),
                },
            };
            if written {
                return Ok(outcome);
            }
        }
        Err(ClaimError::Contended { key: key.to_string() })
    }

    /// Claims `tick` for `fresh.host_id` at `now_ms` with a lease until `deadline_ms`: won when
    /// the record's latest tick is older (or there is none), or when `tick`'s lease has lapsed
    /// (a takeover, from the next attempt). `fresh` is the record to write for a new tick.
    ///
    /// # Errors
    /// KV failed.
    pub async fn claim(&self, key: &str, tick: Tick, fresh: &TickRecord, now_ms: u64, deadline_ms: u64) -> Result<Claim, ClaimError> {
        let host = fresh.host_id.clone();
        self.modify(key, |current| {
            let lease = |attempt| Lease { sequence: tick.sequence, scheduled_at_ms: tick.at_ms, host_id: host.clone(), attempt, deadline_ms };
            let current = current.map(|record| believable(key, record, now_ms, deadline_ms));
            match current {
                Some(record) if record.sequence >= tick.sequence => {
                    let Some(i) = record.running.iter().position(|l| l.sequence == tick.sequence) else { return (None, Claim::Gone) };
                    let held = &record.running[i];
                    if held.deadline_ms >= now_ms {
                        return (None, Claim::Held(held.clone()));
                    }
                    let attempt = held.attempt + 1;
                    let mut next = record.clone();
                    next.running[i] = lease(attempt);
                    if next.sequence == tick.sequence {
                        next.host_id = host.clone();
                        next.attempt = attempt;
                        next.updated_at_ms = now_ms;
                    }
                    (Some(next), Claim::Won { attempt })
                }
                previous => {
                    let mut next = fresh.clone();
                    next.running = previous.map(|p| p.running).unwrap_or_default();
                    next.running.push(lease(1));
                    if next.running.len() > MAX_LEASES {
                        let dropped = next.running.remove(0);
                        warn!(sequence = dropped.sequence, host_id = %dropped.host_id, "{MAX_LEASES} ticks of this schedule are unfinished; the oldest is abandoned");
                    }
                    (Some(next), Claim::Won { attempt: 1 })
                }
            }
        })
        .await
    }

    /// Records the progress of `tick`, which `host_id` holds: its lease gets the new attempt
    /// and deadline, or is removed when the tick has ended; the record's latest-tick fields
    /// follow when `tick` is still the latest. `false` when `host_id` no longer holds the tick
    /// (another host took it over, or its lease was dropped): the caller stops.
    ///
    /// # Errors
    /// KV failed.
    pub async fn progress(&self, key: &str, tick: Tick, host_id: &str, progress: &Progress, now_ms: u64) -> Result<bool, ClaimError> {
        self.modify(key, |current| {
            let Some(mut record) = current else { return (None, false) };
            let Some(i) = record.running.iter().position(|l| l.sequence == tick.sequence && l.host_id == host_id) else { return (None, false) };
            if progress.state == TickState::Running {
                record.running[i].attempt = progress.attempt;
                record.running[i].deadline_ms = progress.deadline_ms;
            } else {
                record.running.remove(i);
            }
            if record.sequence == tick.sequence {
                record.attempt = progress.attempt;
                record.state = progress.state;
                record.error = progress.error.clone();
                record.updated_at_ms = now_ms;
            }
            (Some(record), true)
        })
        .await
    }

    /// Every record in the bucket.
    ///
    /// # Errors
    /// KV failed.
    pub async fn all(kv: &kv::Store) -> Result<Vec<TickRecord>, ClaimError> {
        use futures::TryStreamExt;
        let keys: Vec<String> = kv
            .keys()
            .await
            .map_err(|source| ClaimError::List { source })?
            .try_collect()
            .await
            .map_err(|source| ClaimError::ListStream { source })?;
        let mut out = Vec::new();
        for key in keys {
            if let Some(bytes) = kv.get(&key).await.map_err(|source| ClaimError::Read { key: key.clone(), source })? {
                if let Ok(record) = serde_json::from_slice(&bytes) {
                    out.push(record);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sequence: u64, scheduled_at_ms: u64, running: Vec<Lease>) -> TickRecord {
        TickRecord {
            provider_id: "p".into(),
            link_name: "l".into(),
            component_id: "c".into(),
            schedule: "every 1s".into(),
            sequence,
            scheduled_at_ms,
            host_id: "h".into(),
            attempt: 1,
            state: TickState::Running,
            updated_at_ms: 0,
            error: None,
            next_at_ms: None,
            running,
        }
    }

    fn lease(sequence: u64, scheduled_at_ms: u64, deadline_ms: u64) -> Lease {
        Lease { sequence, scheduled_at_ms, host_id: "h".into(), attempt: 1, deadline_ms }
    }

    #[test]
    fn forged_sequences_and_leases_are_not_believed() {
        let now = 1_000_000_000;
        let deadline = now + 12_000;
        // A sane record is left as it is.
        let sane = record(5, now - 1000, vec![lease(5, now - 1000, now + 5000)]);
        assert_eq!(believable("k", sane.clone(), now, deadline), sane);
        // A latest tick a year ahead: forgotten, so the schedule's next tick can be claimed.
        let ahead = believable("k", record(u64::MAX, now + 365 * 86_400_000, vec![lease(u64::MAX, now + 365 * 86_400_000, u64::MAX)]), now, deadline);
        assert_eq!((ahead.sequence, ahead.running.len()), (0, 0));
        // A lease to the end of time: lapsed, so another host takes the tick over.
        let held = believable("k", record(5, now, vec![lease(5, now, u64::MAX)]), now, deadline);
        assert_eq!(held.running[0].deadline_ms, 0);
    }
}
