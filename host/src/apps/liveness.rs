//! Which hosts are alive, known within a few seconds, not from the 30 s heartbeat.
//!
//! Every host puts a record (its inventory: labels, components, providers with their
//! annotations; and what failed to start) under its id in the KV bucket
//! `TRELLIS_LIVE_{lattice}` every [`PERIOD`], and deletes it when it stops. Every host watches the
//! bucket; a record not refreshed for [`DEAD_AFTER`] is gone from its view (a host killed with
//! `-9` says no goodbye). JetStream does not tell watchers when a value ages out, so the age is
//! measured here, from when each update arrived.
//!
//! A record is signed with the host's key (its id is the public key) and carries the time it
//! was made: a record whose signature is not its key's host's, that names another host, that is
//! older than [`MAX_RECORD_AGE`] or from further ahead than that, or not newer than the last
//! one taken from that host, is ignored with a log line. So no one can speak for a host whose
//! seed they do not hold, nor replay what it said. At most [`MAX_HOSTS`] hosts are tracked, and
//! one not heard from for ten times [`DEAD_AFTER`] is forgotten.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{self, Operation, Store};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tracing::warn;
use trellis_messages::host::HostInventory;

use crate::error::{HostError, Result};

/// How often a host refreshes its record.
pub const PERIOD: Duration = Duration::from_secs(1);
/// A record older than this is a dead host.
pub const DEAD_AFTER: Duration = Duration::from_millis(3000);
/// A record made longer ago than this (by its own clock), or further ahead, is not taken:
/// hosts' clocks must agree within it.
pub const MAX_RECORD_AGE: Duration = Duration::from_secs(10);
/// Hosts tracked at most; records of more are ignored.
pub const MAX_HOSTS: usize = 10_000;

/// A record as it is stored: `body` (JSON of [`Said`]) and the host's signature of its bytes.
#[derive(Debug, Serialize, Deserialize)]
struct Signed {
    body: String,
    /// base64url (no padding) Ed25519 signature of `body`.
    sig: String,
}

/// What a host says, and when.
#[derive(Debug, Serialize, Deserialize)]
struct Said {
    host: String,
    /// Milliseconds since the Unix epoch, by the host's clock.
    at: u64,
    record: LiveRecord,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The stored form of `record`, signed by `identity`.
fn seal(identity: &crate::identity::HostIdentity, record: &LiveRecord) -> serde_json::Result<Vec<u8>> {
    use base64::Engine as _;
    let body = serde_json::to_string(&Said { host: identity.id(), at: now_ms(), record: record.clone() })?;
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(identity.sign(body.as_bytes()));
    serde_json::to_vec(&Signed { body, sig })
}

/// Why a liveness record is not believed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SealError {
    /// Not the signed envelope.
    #[error("not a signed record: {0}")]
    NotSigned(serde_json::Error),
    /// The signature does not decode.
    #[error("its signature is not base64url: {0}")]
    Base64(#[from] base64::DecodeError),
    /// The key's host did not sign it.
    #[error(transparent)]
    Signature(#[from] crate::identity::SignatureError),
    /// The signed body does not parse.
    #[error("unreadable: {0}")]
    Unreadable(serde_json::Error),
    /// It speaks for another host than its key.
    #[error("it names host `{0}`")]
    OtherHost(String),
    /// Made too long ago, or in the future.
    #[error("it was made at {at} ms, more than {MAX_RECORD_AGE:?} from now ({now_ms} ms)")]
    OutOfWindow { at: u64, now_ms: u64 },
}

/// The record stored under `key`, when `key`'s host signed it, names itself, and made it within
/// [`MAX_RECORD_AGE`] of `now_ms`; with its time.
pub(crate) fn open_sealed(key: &str, value: &[u8], now_ms: u64) -> std::result::Result<(LiveRecord, u64), SealError> {
    use base64::Engine as _;
    let signed: Signed = serde_json::from_slice(value).map_err(SealError::NotSigned)?;
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&signed.sig)?;
    crate::identity::verify(key, signed.body.as_bytes(), &sig)?;
    let said: Said = serde_json::from_str(&signed.body).map_err(SealError::Unreadable)?;
    if said.host != key {
        return Err(SealError::OtherHost(said.host));
    }
    let window = u64::try_from(MAX_RECORD_AGE.as_millis()).unwrap_or(u64::MAX);
    if said.at.saturating_add(window) < now_ms || said.at > now_ms.saturating_add(window) {
        return Err(SealError::OutOfWindow { at: said.at, now_ms });
    }
    Ok((said.record, said.at))
}

/// What one host says about itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveRecord {
    /// Labels, components and providers (with annotations).
    pub inventory: HostInventory,
    /// Workload id → why it last failed to start here.
    #[serde(default)]
    pub failures: BTreeMap<String, String>,
}

/// The bucket's name for `lattice`.
pub fn bucket(lattice: &str) -> String {
    format!("TRELLIS_LIVE_{lattice}")
}

#[derive(Debug, Default)]
struct Seen {
    /// Host id → its record, the record's own time, and when it arrived here.
    records: BTreeMap<String, (LiveRecord, u64, Instant)>,
    /// When a refused record was last logged, and how many were refused since.
    refused: Option<(Instant, u64)>,
}

impl Seen {
    /// Logs a refused record, at most once a second (with the count of the others).
    fn refuse(&mut self, key: &str, why: &str) {
        let (last, count) = self.refused.get_or_insert((Instant::now() - Duration::from_secs(2), 0));
        *count += 1;
        if last.elapsed() >= Duration::from_secs(1) {
            warn!(host = %key, refused = *count, "liveness record ignored: {why}");
            *last = Instant::now();
            *count = 0;
        }
    }

    /// Takes `value` under `key`; `true` when what is known changed.
    fn put(&mut self, key: &str, value: &[u8]) -> bool {
        let (record, at) = match open_sealed(key, value, now_ms()) {
            Ok(r) => r,
            Err(why) => {
                self.refuse(key, &why.to_string());
                return false;
            }
        };
        let forget = DEAD_AFTER * 10;
        self.records.retain(|_, (_, _, arrived)| arrived.elapsed() < forget);
        match self.records.get(key) {
            Some((_, last, _)) if at <= *last => {
                self.refuse(key, &format!("it is not newer than the last record taken from this host ({at} <= {last} ms): a replay"));
                return false;
            }
            None if self.records.len() >= MAX_HOSTS => {
                self.refuse(key, &format!("{MAX_HOSTS} hosts are tracked already"));
                return false;
            }
            _ => {}
        }
        let before = self.records.insert(key.to_string(), (record.clone(), at, Instant::now()));
        before.map(|(r, _, _)| r) != Some(record)
    }
}

/// Every host's latest record, as this host has received them. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Liveness {
    kv: Store,
    identity: Arc<crate::identity::HostIdentity>,
    seen: Arc<RwLock<Seen>>,
    changed: Arc<tokio::sync::Notify>,
}

impl Liveness {
    /// Opens (or creates) the bucket: memory storage, values kept 10 s at most.
    ///
    /// # Errors
    /// [`HostError::LatticeData`] when JetStream refuses.
    pub async fn open(nats: &async_nats::Client, lattice: &str, replicas: usize, identity: Arc<crate::identity::HostIdentity>) -> Result<Self> {
        let js = async_nats::jetstream::new(nats.clone());
        let name = bucket(lattice);
        let kv = match js.get_key_value(&name).await {
            Ok(kv) => kv,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: name.clone(),
                    history: 1,
                    max_age: Duration::from_secs(10),
                    storage: async_nats::jetstream::stream::StorageType::Memory,
                    num_replicas: replicas,
                    ..Default::default()
                })
                .await
                .map_err(|e| HostError::LatticeData(format!("{name}: {e}")))?,
        };
        Ok(Self { kv, identity, seen: Arc::default(), changed: Arc::default() })
    }

    /// Follows the bucket until the returned task is aborted: records in, goodbyes out, and a
    /// notification on every change of who is alive or what they run.
    ///
    /// # Errors
    /// [`HostError::LatticeData`] when the watch cannot start.
    pub async fn follow(&self) -> Result<impl std::future::Future<Output = ()> + Send + 'static> {
        let mut watch = self.kv.watch_all().await.map_err(|e| HostError::LatticeData(format!("liveness watch: {e}")))?;
        let (seen, changed) = (self.seen.clone(), self.changed.clone());
        Ok(async move {
            while let Some(entry) = watch.next().await {
                let Ok(entry) = entry else { continue };
                let mut s = seen.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                match entry.operation {
                    Operation::Put => {
                        if s.put(&entry.key, &entry.value) {
                            changed.notify_waiters();
                        }
                    }
                    Operation::Delete | Operation::Purge => {
                        if s.records.remove(&entry.key).is_some() {
                            changed.notify_waiters();
                        }
                    }
                }
            }
        })
    }

    /// Publishes this host's record, signed.
    pub async fn beat(&self, record: &LiveRecord) {
        match seal(&self.identity, record) {
            Ok(data) => {
                if let Err(e) = self.kv.put(self.identity.id(), data.into()).await {
                    warn!(error = %e, "cannot publish this host's liveness record");
                }
            }
            Err(e) => warn!(error = %e, "cannot encode this host's liveness record"),
        }
    }

    /// Says goodbye: the others drop this host at once.
    pub async fn goodbye(&self) {
        if let Err(e) = self.kv.delete(self.identity.id()).await {
            warn!(error = %e, "cannot remove this host's liveness record");
        }
    }

    /// The records of the hosts alive now (refreshed within [`DEAD_AFTER`]), by host id.
    pub fn alive(&self) -> BTreeMap<String, LiveRecord> {
        let s = self.seen.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        s.records.iter().filter(|(_, (_, _, arrived))| arrived.elapsed() < DEAD_AFTER).map(|(id, (r, _, _))| (id.clone(), r.clone())).collect()
    }

    /// Resolves at the next change seen (a record that differs, a goodbye).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::HostIdentity;

    #[test]
    fn only_a_hosts_own_fresh_records_are_taken() {
        let host = HostIdentity::new(None, None).expect("a key");
        let other = HostIdentity::new(None, None).expect("a key");
        let record = LiveRecord::default();
        let mut seen = Seen::default();
        let good = seal(&host, &record).expect("sealed");
        assert!(seen.put(&host.id(), &good), "its own record");
        // The same bytes again: a replay.
        assert!(!seen.put(&host.id(), &good));
        // Another key's record under this host's id; unsigned JSON; a forged signature.
        assert!(!seen.put(&host.id(), &seal(&other, &record).expect("sealed")));
        assert!(!seen.put(&host.id(), &serde_json::to_vec(&record).expect("json")));
        let mut forged: Signed = serde_json::from_slice(&good).expect("signed");
        forged.body = forged.body.replace("\"at\":", "\"at\":1");
        assert!(!seen.put(&host.id(), &serde_json::to_vec(&forged).expect("json")));
        assert_eq!(seen.records.len(), 1);
        // Too old or too far ahead.
        let body = |at: u64| serde_json::to_string(&Said { host: host.id(), at, record: LiveRecord::default() }).expect("json");
        for at in [now_ms() - 60_000, now_ms() + 60_000] {
            let b = body(at);
            let sig = { use base64::Engine as _; base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(host.sign(b.as_bytes())) };
            assert!(open_sealed(&host.id(), &serde_json::to_vec(&Signed { body: b, sig }).expect("json"), now_ms()).is_err(), "at {at}");
        }
        // A record naming another host, signed by the key it is stored under.
        let b = serde_json::to_string(&Said { host: other.id(), at: now_ms(), record: LiveRecord::default() }).expect("json");
        let sig = { use base64::Engine as _; base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(host.sign(b.as_bytes())) };
        assert!(open_sealed(&host.id(), &serde_json::to_vec(&Signed { body: b, sig }).expect("json"), now_ms()).is_err());
    }
}
