//! A component's slots: at most so many calls run at once, at most so many more wait, and
//! none waits longer than the host's queue wait. The instance slots of every component
//! (`max_instances`), and the request places of a pool of reused instances
//! (`http_pool`: instances × requests at once).

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info};
use trellis_messages::invocation::FaultKind;

use crate::wasm::invoke::Fault;

/// A component's instance slots: at most `limit` calls run at once, at most `max_queued` more
/// wait for a slot. One semaphore for the component's life: a rescale grows or shrinks it in
/// place, so calls admitted under the old limit and the new never together exceed the larger.
#[derive(Debug)]
pub struct Slots {
    permits: Arc<Semaphore>,
    limit: AtomicU32,
    waiting: AtomicUsize,
    max_queued: usize,
}

impl Slots {
    /// `limit` slots, and room for `max_queued` waiting calls.
    pub fn new(limit: u32, max_queued: usize) -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(limit as usize)),
            limit: AtomicU32::new(limit),
            waiting: AtomicUsize::new(0),
            max_queued,
        })
    }

    /// The current limit (`max_instances`).
    pub fn limit(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Changes the limit in place. Growing frees slots at once; shrinking takes free slots at
    /// once and the rest as running calls finish (a task on the current runtime waits for them).
    pub fn resize(&self, limit: u32) {
        let old = self.limit.swap(limit, Ordering::SeqCst);
        if limit > old {
            self.permits.add_permits((limit - old) as usize);
        } else if old > limit {
            let shrink = (old - limit) as usize;
            let taken = self.permits.forget_permits(shrink);
            if let Some(rest) = u32::try_from(shrink - taken).ok().filter(|r| *r > 0) {
                let permits = self.permits.clone();
                tokio::spawn(async move {
                    if let Ok(p) = permits.acquire_many_owned(rest).await {
                        p.forget();
                    }
                });
            }
        }
    }

    /// Closes the slots: waiting calls fail, no new call starts.
    pub fn close(&self) {
        self.permits.close();
    }
}

/// Decrements the waiting count when a waiting call stops waiting, however it stops.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Slots {
    /// A slot, waiting at most `wait`, and only when fewer than `max_queued` calls wait
    /// already. `what` names the slots in the busy fault (`instances`).
    ///
    /// # Errors
    /// [`FaultKind::Busy`] when the queue is full or no slot freed up in time,
    /// [`FaultKind::Host`] when stopping.
    pub async fn acquire(&self, wait: Duration, id: &str, what: &str, metrics: &crate::metrics::ComponentMetrics) -> Result<OwnedSemaphorePermit, Fault> {
        match self.permits.clone().try_acquire_owned() {
            Ok(p) => return Ok(p),
            Err(tokio::sync::TryAcquireError::Closed) => {
                return Err(Fault::new(FaultKind::Host, format!("component `{id}` is stopping")))
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => {}
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_queued {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(Fault::new(
                FaultKind::Busy,
                format!(
                    "all {} {what} of component `{id}` on this host are busy and {} calls already wait (--max-queued-calls)",
                    self.limit(),
                    self.max_queued
                ),
            ));
        }
        let _waiting = Waiting(&self.waiting);
        let _counted = metrics.waiting();
        let began = Instant::now();
        match tokio::time::timeout(wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(p)) => {
                let waited = began.elapsed();
                if waited.as_millis() >= 100 {
                    info!(component_id = id, ?waited, limit = self.limit(), "call waited for a free slot");
                } else {
                    debug!(component_id = id, ?waited, "call waited for a free slot");
                }
                Ok(p)
            }
            Ok(Err(_)) => Err(Fault::new(FaultKind::Host, format!("component `{id}` is stopping"))),
            Err(_) => Err(Fault::new(FaultKind::Busy, format!("all {} {what} of component `{id}` on this host stayed busy for {wait:?}", self.limit()))),
        }
    }
}
