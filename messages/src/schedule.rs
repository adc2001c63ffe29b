//! Scheduled invocations: the record each schedule keeps in the lattice's schedule bucket, and
//! the data of `schedule_tick_failed`.
//!
//! Every host that runs the built-in schedule provider computes the same ticks for a link
//! (the same scheduled time and sequence number). One record per schedule, under
//! [`record_key`] in the bucket [`bucket`], says which tick was claimed last, by which host and
//! how it ended, and holds a [`Lease`] for every claimed tick that has not ended yet (a host
//! holds it until its deadline). Hosts change the record only at the revision they read (a
//! compare-and-set): a tick is claimed only while the record's latest tick is older, so exactly
//! one host runs each tick, and a lapsed lease is taken over by exactly one other host.

use serde::{Deserialize, Serialize};

/// The JetStream KV bucket of lattice `lattice`'s schedule records.
pub fn bucket(lattice: &str) -> String {
    format!("TRELLIS_SCHEDULES_{lattice}")
}

/// The key of the schedule that provider `provider_id`'s link `link_name` drives on component
/// `component_id`: `S_` and 16 hex digits of a hash of the three (ids may hold characters a KV
/// key may not).
pub fn record_key(provider_id: &str, link_name: &str, component_id: &str) -> String {
    // FNV-1a, 64 bits: stable across versions and platforms (std's hasher is not).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in [provider_id, link_name, component_id].join("\0").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("S_{hash:016x}")
}

/// Where the tick a record describes stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TickState {
    /// Claimed and not ended: its [`Lease`] says by whom and until when.
    Running,
    /// The handler returned `ok`.
    Succeeded,
    /// Every attempt failed (`error` says how the last one did).
    Failed,
}

/// The record of one schedule: its latest claimed tick.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickRecord {
    /// The schedule provider.
    pub provider_id: String,
    /// The link's name.
    pub link_name: String,
    /// The component it runs.
    pub component_id: String,
    /// The schedule as configured (`every 1s`, `cron 0 * * * * (Europe/Oslo)`).
    pub schedule: String,
    /// The tick's sequence number.
    pub sequence: u64,
    /// When the tick was due (ms since the Unix epoch).
    pub scheduled_at_ms: u64,
    /// The host that claimed it.
    pub host_id: String,
    /// The attempt running or last run (1 = first).
    pub attempt: u32,
    /// Where it stands.
    pub state: TickState,
    /// When the record was written.
    pub updated_at_ms: u64,
    /// The last attempt's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The schedule's next tick after this one, when the record was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_at_ms: Option<u64>,
    /// The claimed ticks that have not ended (this one while it runs, and earlier ones still
    /// running or waiting to be taken over).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub running: Vec<Lease>,
}

/// A claimed tick that has not ended: the host running it, until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The tick's sequence number.
    pub sequence: u64,
    /// When it was due (ms since the Unix epoch).
    pub scheduled_at_ms: u64,
    /// The host running it.
    pub host_id: String,
    /// Its attempt.
    pub attempt: u32,
    /// After this (ms since the Unix epoch) the lease has lapsed: the host is presumed dead and
    /// another may take the tick over as its next attempt.
    pub deadline_ms: u64,
}

/// Data of `schedule_tick_failed`: a tick whose every attempt failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleTickFailed {
    /// The schedule provider.
    pub provider_id: String,
    /// The link's name.
    pub link_name: String,
    /// The component.
    pub component_id: String,
    /// The tick's sequence number.
    pub sequence: u64,
    /// When it was due (ms since the Unix epoch).
    pub scheduled_at_ms: u64,
    /// Attempts made.
    pub attempts: u32,
    /// How the last attempt failed.
    pub error: String,
    /// The host that ran the last attempt.
    pub host_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_valid_kv_keys() {
        let key = record_key("cron", "nightly", "reports");
        assert_eq!(key, record_key("cron", "nightly", "reports"));
        assert_ne!(key, record_key("cron", "nightly", "report"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(record_key("ab", "c", "x"), record_key("a", "bc", "x"));
        assert!(key.len() == 18 && key.starts_with("S_") && key[2..].chars().all(|c| c.is_ascii_hexdigit()));
    }
}
