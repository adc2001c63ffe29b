//! Which hosts are alive, known within a few seconds, not from the 30 s heartbeat.
//!
//! Every host puts a record (its inventory: labels, components, providers with their
//! annotations; and what failed to start) under its id in the KV bucket
//! `TRELLIS_LIVE_{lattice}` every [`PERIOD`], and deletes it when it stops. Every host watches the
//! bucket; a record not refreshed for [`DEAD_AFTER`] is gone from its view (a host killed with
//! `-9` says no goodbye). JetStream does not tell watchers when a value ages out, so the age is
//! measured here, from when each update arrived.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{self, Operation, Store};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};
use trellis_messages::host::HostInventory;

use crate::error::{HostError, Result};

/// How often a host refreshes its record.
pub const PERIOD: Duration = Duration::from_secs(1);
/// A record older than this is a dead host.
pub const DEAD_AFTER: Duration = Duration::from_millis(3000);

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
    records: BTreeMap<String, (LiveRecord, Instant)>,
}

/// Every host's latest record, as this host has received them. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Liveness {
    kv: Store,
    seen: Arc<RwLock<Seen>>,
    changed: Arc<tokio::sync::Notify>,
}

impl Liveness {
    /// Opens (or creates) the bucket: memory storage, values kept 10 s at most.
    ///
    /// # Errors
    /// [`HostError::LatticeData`] when JetStream refuses.
    pub async fn open(nats: &async_nats::Client, lattice: &str, replicas: usize) -> Result<Self> {
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
        Ok(Self { kv, seen: Arc::default(), changed: Arc::default() })
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
                    Operation::Put => match serde_json::from_slice::<LiveRecord>(&entry.value) {
                        Ok(record) => {
                            let before = s.records.insert(entry.key.clone(), (record.clone(), Instant::now()));
                            if before.map(|(r, _)| r) != Some(record) {
                                changed.notify_waiters();
                            }
                        }
                        Err(e) => debug!(host = %entry.key, error = %e, "unreadable liveness record ignored"),
                    },
                    Operation::Delete | Operation::Purge => {
                        if s.records.remove(&entry.key).is_some() {
                            changed.notify_waiters();
                        }
                    }
                }
            }
        })
    }

    /// Publishes this host's record.
    pub async fn beat(&self, host_id: &str, record: &LiveRecord) {
        match serde_json::to_vec(record) {
            Ok(data) => {
                if let Err(e) = self.kv.put(host_id, data.into()).await {
                    warn!(error = %e, "cannot publish this host's liveness record");
                }
            }
            Err(e) => warn!(error = %e, "cannot encode this host's liveness record"),
        }
    }

    /// Says goodbye: the others drop this host at once.
    pub async fn goodbye(&self, host_id: &str) {
        if let Err(e) = self.kv.delete(host_id).await {
            warn!(error = %e, "cannot remove this host's liveness record");
        }
    }

    /// The records of the hosts alive now (refreshed within [`DEAD_AFTER`]), by host id.
    pub fn alive(&self) -> BTreeMap<String, LiveRecord> {
        let s = self.seen.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        s.records.iter().filter(|(_, (_, at))| at.elapsed() < DEAD_AFTER).map(|(id, (r, _))| (id.clone(), r.clone())).collect()
    }

    /// Resolves at the next change seen (a record that differs, a goodbye).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}
