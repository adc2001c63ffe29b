//! Whether a wadm manages this lattice, so the hosts' own application manager steps aside
//! instead of fighting it over the same workloads (both answer wadm's API in one queue group,
//! read the same manifests and manage the same annotated workloads).
//!
//! A wadm that manages lattice `L` keeps a pull request waiting on its durable consumer
//! `wadm_event_consumer-{L}` of stream `wadm_event_consumer` (wadm 0.21's names): the consumer's
//! `num_waiting` is above zero while a wadm pulls, and falls to zero within its pull's expiry
//! once none does. That is the signal; it needs nothing from wadm but what it already does, and
//! a consumer left behind by a wadm that is gone does not count.
//!
//! [`manage`] checks every [`CHECK_EVERY`]: on the first sign of a wadm the host stops
//! answering wadm's API (leaving the queue group, so every request reaches the wadm) and stops
//! reconciling, and says so (`apps_left_to_wadm`); after [`ABSENT_CHECKS`] checks in a row with
//! none, it takes them up again (`apps_resumed`). What runs keeps running either way: wadm
//! adopts what carries its annotations, as Trellis's workloads do.

use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, info, warn};

use crate::events::EventPublisher;

/// How often the host looks for a wadm.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// How long the tasks have to end once told to stop, before they are aborted.
const STOP_WITHIN: Duration = Duration::from_secs(5);

/// Checks in a row without a wadm before the host manages applications again.
pub const ABSENT_CHECKS: u32 = 3;

/// A wadm that had events delivered this recently is taken to be there, pull waiting or not.
const ACTIVE_WITHIN: Duration = Duration::from_secs(10);

/// wadm's stream of lattice events, and its consumer's name for lattice `lattice`.
fn consumer_of(lattice: &str) -> (&'static str, String) {
    ("wadm_event_consumer", format!("wadm_event_consumer-{lattice}"))
}

/// Whether a wadm is pulling lattice `lattice`'s events now. Anything that cannot be read (no
/// stream, no consumer, no permission) is "no".
pub async fn present(js: &async_nats::jetstream::Context, lattice: &str) -> bool {
    let (stream, consumer) = consumer_of(lattice);
    let Ok(stream) = js.get_stream_no_info(stream).await else { return false };
    match stream.consumer_info(&consumer).await {
        // A wadm waits on the consumer while idle; while it works through a batch of events it
        // may have no pull waiting (seen under load: a host took the API back from a wadm that
        // was busy deploying), but it has deliveries unacknowledged or delivered a moment ago.
        Ok(info) => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let recent = info.delivered.last_active.is_some_and(|t| u64::try_from(t.unix_timestamp()).is_ok_and(|at| now.saturating_sub(at) < ACTIVE_WITHIN.as_secs()));
            info.num_waiting > 0 || info.num_ack_pending > 0 || recent
        }
        Err(e) => {
            debug!(error = %e, "no wadm consumer to read");
            false
        }
    }
}

/// Data of `apps_left_to_wadm` and `apps_resumed` (Trellis events).
#[derive(Debug, Serialize)]
pub struct AppManager {
    /// This host.
    pub host_id: String,
    /// Why.
    pub reason: &'static str,
}

/// Event: a wadm manages the lattice; this host stopped managing applications.
pub const LEFT_TO_WADM: &str = "apps_left_to_wadm";
/// Event: no wadm any more; this host manages applications again.
pub const RESUMED: &str = "apps_resumed";

/// Runs `start(stop)`'s tasks (the API and the reconciler) while no wadm manages the lattice,
/// and none while one does: it cancels `stop`, gives them [`STOP_WITHIN`] to end, aborts what
/// is left and then calls `on_step_aside()`. Ends only when aborted (its tasks with it).
pub async fn manage<F, Fut, S>(js: async_nats::jetstream::Context, lattice: String, host_id: String, events: EventPublisher, start: F, on_step_aside: S)
where
    F: Fn(CancellationToken) -> Fut,
    Fut: Future<Output = Vec<AbortOnDropHandle<()>>>,
    S: Fn(),
{
    let mut running: Option<(CancellationToken, Vec<AbortOnDropHandle<()>>)> = None;
    let mut stepped_aside = false;
    // At start, one check without a wadm is enough.
    let mut absent = ABSENT_CHECKS - 1;
    loop {
        if present(&js, &lattice).await {
            absent = 0;
            if !stepped_aside {
                // The API leaves its queue group (the UNSUB on the connection ahead of the
                // event below) and answers what it already received; the tasks are awaited,
                // so nothing of them runs once the host says it left.
                if let Some((stop, tasks)) = running.take() {
                    stop.cancel();
                    for mut task in tasks {
                        if tokio::time::timeout(STOP_WITHIN, &mut task).await.is_err() {
                            task.abort();
                            let _ = task.await;
                        }
                    }
                }
                on_step_aside();
                stepped_aside = true;
                warn!(%lattice, "a wadm manages this lattice: this host stops answering wadm's API and running declared applications, and leaves them to it");
                events.publish_logged(LEFT_TO_WADM, AppManager { host_id: host_id.clone(), reason: "a wadm pulls the lattice's events" }).await;
            }
        } else {
            absent = absent.saturating_add(1);
            if running.is_none() && absent >= ABSENT_CHECKS {
                let stop = CancellationToken::new();
                running = Some((stop.clone(), start(stop).await));
                if stepped_aside {
                    stepped_aside = false;
                    info!(%lattice, "no wadm manages this lattice any more: this host answers wadm's API and runs declared applications again");
                    events.publish_logged(RESUMED, AppManager { host_id: host_id.clone(), reason: "no wadm pulls the lattice's events" }).await;
                }
            }
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}
