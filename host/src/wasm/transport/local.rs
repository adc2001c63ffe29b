//! The components running on this host, as guests' link calls see them: a call whose target
//! runs here goes straight to it (no NATS hop), with the same permits and limits as a call that
//! arrives over NATS.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info};
use trellis_messages::invocation::FaultKind;
use wasmtime::component::Val;

use crate::wasm::invoke::{invoke_vals, Fault};
use crate::wasm::{PreparedComponent, WasmRuntime};

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

/// One running component: its current code and its instance slots.
#[derive(Clone, Debug)]
pub struct LocalTarget {
    /// The code calls run now.
    pub component: Arc<PreparedComponent>,
    /// `max_instances` slots and the queue before them.
    pub slots: Arc<Slots>,
    /// Where its calls are counted.
    pub metrics: crate::metrics::ComponentMetrics,
    /// Where its calls are recorded while `trellis spy` watches it.
    pub spy: crate::spy::SpyTap,
    /// Asked before any call runs, whichever way it came (`None`: no policy service).
    pub admission: Option<Arc<crate::trust::policy::Admission>>,
}

/// Decrements the waiting count when a waiting call stops waiting, however it stops.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl LocalTarget {
    /// Calls `function` with `params` once an instance slot is free (waiting at most the host's
    /// queue wait).
    ///
    /// # Errors
    /// A [`Fault`] from the call, or [`FaultKind::Busy`] when no slot freed up in time.
    /// `caller` (a component or provider id, or `client`) is what `trellis spy` shows.
    pub async fn call(&self, runtime: &WasmRuntime, id: &str, function: &str, params: Vec<Val>, caller: &str) -> Result<Vec<Val>, Fault> {
        self.call_with(runtime, id, function, caller, || invoke_vals(runtime, id, &self.component, function, params)).await
    }

    /// As [`Self::call`], running `invoke` once the call is admitted and has an instance slot:
    /// for calls whose arguments are built only then (parsed from WAVE, or lowered typed), so
    /// a call that waits holds its bytes, not their parsed form.
    ///
    /// # Errors
    /// As [`Self::call`], and `invoke`'s own.
    pub async fn call_with<T, F, Fut>(&self, runtime: &WasmRuntime, id: &str, function: &str, caller: &str, invoke: F) -> Result<T, Fault>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, Fault>>,
    {
        let began = Instant::now();
        let span = tracing::debug_span!(target: crate::telemetry::TARGET, "call", component = id, function, caller);
        let result = tracing::Instrument::instrument(self.call_counted(runtime, id, function, invoke), span).await;
        if self.spy.armed() {
            let outcome = result.as_ref().err().map_or("ok", |f| f.kind.as_str());
            self.spy.record(trellis_messages::spy::Direction::In, function, caller, None, began.elapsed(), outcome);
        }
        result
    }

    /// Whether `function` may run here: the one place every call to a component passes,
    /// from a guest on this host, a provider in this process, another host or a client. The
    /// policy service, when there is one, is asked only about functions the component exports
    /// (and its HTTP handler), so names made up by a caller never reach it or its cache.
    ///
    /// # Errors
    /// [`FaultKind::Denied`] with the service's message.
    pub async fn admit(&self, id: &str, function: &str) -> Result<(), Fault> {
        let Some(admission) = &self.admission else { return Ok(()) };
        // Asked about the export's full name however the caller spelled it, so the same call
        // makes the same request (and decision) from everywhere.
        let name = match function {
            crate::trust::policy::HTTP_HANDLE => function,
            _ => match self.component.export(function) {
                Some((name, _)) => name,
                None => return Ok(()),
            },
        };
        admission.invocation(name).await.map_err(|refusal| {
            info!(component_id = id, function, "{refusal}");
            Fault::new(FaultKind::Denied, refusal.to_string())
        })
    }

    async fn call_counted<T, F, Fut>(&self, runtime: &WasmRuntime, id: &str, function: &str, invoke: F) -> Result<T, Fault>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, Fault>>,
    {
        // Only exported names become label values (see `metrics`); looked up only when recorded.
        let operation = match self.metrics.enabled() && self.component.function(function).is_none() {
            true => crate::metrics::UNKNOWN_OPERATION,
            false => function,
        };
        let began = Instant::now();
        if let Err(fault) = self.admit(id, function).await {
            self.metrics.call_ended(operation, began.elapsed(), Some(fault.kind.as_str()));
            return Err(fault);
        }
        let permit = match self.acquire(runtime, id).await {
            Ok(p) => p,
            Err(fault) => {
                self.metrics.call_ended(operation, began.elapsed(), Some(fault.kind.as_str()));
                return Err(fault);
            }
        };
        let began = Instant::now();
        let active = self.metrics.active();
        let result = invoke().await;
        drop(active);
        drop(permit);
        let fault = result.as_ref().err().map(|f| f.kind.as_str());
        self.metrics.call_ended(operation, began.elapsed(), fault);
        result
    }

    /// An instance slot, waiting at most the host's queue wait, and only when fewer than
    /// `--max-queued-calls` calls wait already.
    ///
    /// # Errors
    /// [`FaultKind::Busy`] when the queue is full or no slot freed up in time,
    /// [`FaultKind::Host`] when stopping.
    pub async fn acquire(&self, runtime: &WasmRuntime, id: &str) -> Result<OwnedSemaphorePermit, Fault> {
        let slots = &self.slots;
        match slots.permits.clone().try_acquire_owned() {
            Ok(p) => return Ok(p),
            Err(tokio::sync::TryAcquireError::Closed) => {
                return Err(Fault::new(FaultKind::Host, format!("component `{id}` is stopping")))
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => {}
        }
        if slots.waiting.fetch_add(1, Ordering::SeqCst) >= slots.max_queued {
            slots.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(Fault::new(
                FaultKind::Busy,
                format!(
                    "all {} instances of component `{id}` on this host are busy and {} calls already wait (--max-queued-calls)",
                    slots.limit(),
                    slots.max_queued
                ),
            ));
        }
        let _waiting = Waiting(&slots.waiting);
        let _counted = self.metrics.waiting();
        let wait = runtime.config().max_queue_wait;
        let began = Instant::now();
        match tokio::time::timeout(wait, slots.permits.clone().acquire_owned()).await {
            Ok(Ok(p)) => {
                let waited = began.elapsed();
                if waited.as_millis() >= 100 {
                    info!(component_id = id, ?waited, max_instances = slots.limit(), "call waited for a free instance slot");
                } else {
                    debug!(component_id = id, ?waited, "call waited for a free instance slot");
                }
                Ok(p)
            }
            Ok(Err(_)) => Err(Fault::new(FaultKind::Host, format!("component `{id}` is stopping"))),
            Err(_) => Err(Fault::new(
                FaultKind::Busy,
                format!("all {} instances of component `{id}` on this host stayed busy for {wait:?}", slots.limit()),
            )),
        }
    }
}

/// Component id → its [`LocalTarget`]. Cheap to clone; component actors keep it current.
#[derive(Clone, Debug, Default)]
pub struct LocalComponents(Arc<RwLock<HashMap<String, LocalTarget>>>);

impl LocalComponents {
    /// The component `id`, when it runs here.
    pub fn get(&self, id: &str) -> Option<LocalTarget> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(id).cloned()
    }

    /// Registers or replaces component `id`.
    pub fn set(&self, id: &str, target: LocalTarget) {
        self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id.to_string(), target);
    }

    /// Forgets component `id`.
    pub fn remove(&self, id: &str) {
        self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(id);
    }
}
