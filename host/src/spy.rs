//! Live call records for `trellis spy` (wire types in `trellis_messages::spy`).
//!
//! A [`Spy`] per host hands out one [`SpyTap`] per component. A tap is armed by a watch on
//! `trellis.spy.{lattice}.watch` until the watch lapses; while it is armed, each call to or
//! from the component is recorded into a bounded queue that one task publishes from. A tap
//! nobody armed costs one atomic load per call. Bounds: a watch lasts at most
//! [`MAX_WATCH`]; at most [`MAX_TAPS`] components are tapped at once (ids of components not
//! running here count too, so a flood of made-up ids cannot grow the map); at most
//! [`QUEUE`] records wait to be published, and past that records are dropped and counted,
//! never queued without end or waited for by the call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::{debug, warn};
use trellis_messages::spy::{calls_subject, watch_subject, CallRecord, Direction, SpyWatch, MAX_WATCH};

/// Components tapped at once, at most.
pub const MAX_TAPS: usize = 4096;
/// Records waiting to be published, at most.
pub const QUEUE: usize = 4096;
/// Largest watch message read.
const MAX_WATCH_MESSAGE: usize = 1024;

/// One per host: the taps of its components and the queue their records go to.
#[derive(Clone, Debug)]
pub struct Spy(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    host_id: String,
    taps: Mutex<HashMap<String, Arc<AtomicU64>>>,
    records: mpsc::Sender<CallRecord>,
    dropped: AtomicU64,
}

/// The receiving end of a host's records; [`SpyOutlet::serve`] publishes them.
#[derive(Debug)]
pub struct SpyOutlet {
    spy: Spy,
    records: mpsc::Receiver<CallRecord>,
}

/// One component's tap: armed (until a time) or not.
#[derive(Clone, Debug)]
pub struct SpyTap {
    /// Milliseconds since the epoch until which calls are recorded; 0 when not armed.
    until: Arc<AtomicU64>,
    component: Arc<str>,
    spy: Spy,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Spy {
    /// A host's spy, and the outlet its records leave through.
    pub fn new(host_id: &str) -> (Self, SpyOutlet) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let spy = Self(Arc::new(Inner { host_id: host_id.into(), taps: Mutex::default(), records: tx, dropped: AtomicU64::new(0) }));
        (spy.clone(), SpyOutlet { spy, records: rx })
    }

    /// The tap of `component` (the same one for every caller).
    /// Taps of running components are always kept (they are bounded by what runs here).
    pub fn tap(&self, component: &str) -> SpyTap {
        let until = self.slot(component, false).unwrap_or_else(|| Arc::new(AtomicU64::new(0)));
        SpyTap { until, component: component.into(), spy: self.clone() }
    }

    /// The shared arming time of `component`; made, when `bounded`, only if there is room.
    fn slot(&self, component: &str, bounded: bool) -> Option<Arc<AtomicU64>> {
        let mut taps = self.0.taps.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(t) = taps.get(component) {
            return Some(t.clone());
        }
        if bounded && taps.len() >= MAX_TAPS {
            // Forget lapsed watches of ids nobody holds a tap of.
            let now = now_ms();
            taps.retain(|_, t| Arc::strong_count(t) > 1 || t.load(Ordering::Relaxed) > now);
            if taps.len() >= MAX_TAPS {
                return None;
            }
        }
        let t = Arc::new(AtomicU64::new(0));
        taps.insert(component.into(), t.clone());
        Some(t)
    }

    /// Arms `component`'s tap for `watch.for_ms` (at most [`MAX_WATCH`]); `false` when the id
    /// is not one or there is no room.
    pub fn arm(&self, watch: &SpyWatch) -> bool {
        let id = watch.component_id.as_str();
        if id.is_empty() || id.len() > 256 || id.contains(['.', '*', '>', ' ']) {
            return false;
        }
        let Some(slot) = self.slot(id, true) else { return false };
        let for_ms = watch.for_ms.min(u64::try_from(MAX_WATCH.as_millis()).unwrap_or(u64::MAX));
        slot.fetch_max(now_ms().saturating_add(for_ms), Ordering::Relaxed);
        true
    }

    /// Records dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }
}

impl SpyTap {
    /// Whether calls are recorded now: one atomic load when nobody watches.
    pub fn armed(&self) -> bool {
        let until = self.until.load(Ordering::Relaxed);
        if until == 0 {
            return false;
        }
        if now_ms() < until {
            return true;
        }
        // Lapsed: back to the one-load path (unless a new watch came in meanwhile).
        let _ = self.until.compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed);
        false
    }

    /// Records a call when armed; never waits.
    pub fn record(&self, direction: Direction, function: &str, peer: &str, bytes: Option<usize>, took: Duration, outcome: &str) {
        if !self.armed() {
            return;
        }
        let at = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
        let record = CallRecord {
            host_id: self.spy.0.host_id.clone(),
            component_id: self.component.to_string(),
            direction,
            function: function.into(),
            peer: peer.into(),
            bytes,
            duration_us: u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            outcome: outcome.into(),
            at,
        };
        if self.spy.0.records.try_send(record).is_err() {
            self.spy.0.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl SpyOutlet {
    /// Subscribes to watches on `nats` (before returning, so a watch sent after the host
    /// started is seen), then publishes records and arms taps until the connection closes.
    ///
    /// # Errors
    /// The subscription failed.
    pub async fn serve(self, nats: async_nats::Client, lattice: &str) -> Result<impl std::future::Future<Output = ()>, async_nats::SubscribeError> {
        let mut watches = nats.subscribe(watch_subject(lattice)).await?;
        let lattice = lattice.to_string();
        let Self { spy, mut records } = self;
        Ok(async move {
            let arm = {
                let spy = spy.clone();
                async move {
                    while let Some(msg) = watches.next().await {
                        if msg.payload.len() > MAX_WATCH_MESSAGE {
                            debug!(bytes = msg.payload.len(), "spy watch too large; ignored");
                            continue;
                        }
                        match serde_json::from_slice::<SpyWatch>(&msg.payload) {
                            Ok(watch) if spy.arm(&watch) => debug!(component = %watch.component_id, for_ms = watch.for_ms, "spy watch"),
                            Ok(watch) => debug!(component = %watch.component_id, "spy watch refused (bad id or too many taps)"),
                            Err(e) => debug!(error = %e, "malformed spy watch; ignored"),
                        }
                    }
                }
            };
            let publish = async move {
                let mut reported = 0;
                while let Some(record) = records.recv().await {
                    let subject = calls_subject(&lattice, &record.component_id);
                    if let Ok(payload) = serde_json::to_vec(&record) {
                        if let Err(e) = nats.publish(subject, payload.into()).await {
                            debug!(error = %e, "spy record not published");
                        }
                    }
                    let dropped = spy.dropped();
                    if dropped > reported {
                        warn!(dropped, "spy records dropped: calls came faster than they could be published");
                        reported = dropped;
                    }
                }
            };
            tokio::join!(arm, publish);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tap_records_only_while_armed_and_bad_watches_are_refused() {
        let (spy, mut outlet) = Spy::new("host");
        let tap = spy.tap("echo");
        tap.record(Direction::In, "f", "client", None, Duration::ZERO, "ok");
        assert!(outlet.records.try_recv().is_err(), "nothing recorded while nobody watches");
        assert!(spy.arm(&SpyWatch { component_id: "echo".into(), for_ms: 10_000 }));
        assert!(tap.armed());
        tap.record(Direction::In, "f", "client", Some(3), Duration::from_micros(7), "ok");
        let r = outlet.records.try_recv().expect("recorded");
        assert_eq!((r.component_id.as_str(), r.duration_us, r.bytes), ("echo", 7, Some(3)));
        for bad in ["", "a.b", "*", ">", "x y"] {
            assert!(!spy.arm(&SpyWatch { component_id: bad.into(), for_ms: 1000 }), "{bad:?}");
        }
        // A watch never lasts past MAX_WATCH, and a lapsed one goes back to the one-load path.
        assert!(spy.arm(&SpyWatch { component_id: "other".into(), for_ms: u64::MAX }));
        let other = spy.tap("other");
        assert!(other.until.load(Ordering::Relaxed) <= now_ms() + 60_000);
        other.until.store(now_ms() - 1, Ordering::Relaxed);
        assert!(!other.armed());
        assert_eq!(other.until.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn made_up_ids_cannot_grow_the_taps_without_bound_and_a_full_queue_drops() {
        let (spy, _outlet) = Spy::new("host");
        let held = spy.tap("held");
        let mut refused = 0;
        for i in 0..(MAX_TAPS + 100) {
            if !spy.arm(&SpyWatch { component_id: format!("made-up-{i}"), for_ms: 60_000 }) {
                refused += 1;
            }
        }
        assert!(refused >= 100, "{refused}");
        assert!(spy.0.taps.lock().unwrap().len() <= MAX_TAPS);
        assert!(spy.arm(&SpyWatch { component_id: "held".into(), for_ms: 60_000 }), "a held tap stays armable");
        for _ in 0..(QUEUE + 10) {
            held.record(Direction::Out, "f", "t", None, Duration::ZERO, "ok");
        }
        assert_eq!(spy.dropped(), 10);
    }
}
