//! The components running on this host, as guests' link calls see them: a call whose target
//! runs here goes straight to it (no NATS hop), with the same permits and limits as a call that
//! arrives over NATS.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use tokio::sync::OwnedSemaphorePermit;
use tracing::info;
use trellis_messages::invocation::FaultKind;
use wasmtime::component::Val;

use crate::wasm::invoke::{invoke_vals, Fault};
pub use crate::wasm::transport::slots::Slots;
use crate::wasm::transport::http_pool::HttpPool;
use crate::wasm::{PreparedComponent, WasmRuntime};

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
    /// The reused instances its HTTP requests go to, when its HTTP export is served that way
    /// ([`crate::wasm::reuse`]); `None`: a fresh instance per request, in `slots`.
    pub http_pool: Option<Arc<HttpPool>>,
}

impl LocalTarget {
    /// The pool of reused instances for `component`'s HTTP export, when its exports and its
    /// scale's annotations ask for one ([`crate::wasm::reuse::Reuse::plan`]).
    /// `previous`: the pool of the component's earlier code (an update), whose instances count
    /// against the same `max_instances`.
    pub fn http_pool_for(
        id: &str,
        runtime: &Arc<WasmRuntime>,
        component: &Arc<PreparedComponent>,
        max_instances: u32,
        previous: Option<&HttpPool>,
    ) -> Option<Arc<HttpPool>> {
        if !component.serves_http() {
            return None;
        }
        let plan = component.limits.reuse.plan(component.http_0_3)?;
        match HttpPool::new(id, runtime.clone(), component.clone(), plan, max_instances, previous) {
            Ok(pool) => Some(pool),
            Err(e) => {
                tracing::warn!(component_id = id, error = %e, "its HTTP export cannot be served by reused instances; a fresh instance per request");
                None
            }
        }
    }

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
        self.slots.acquire(runtime.config().max_queue_wait, id, "instances", &self.metrics).await
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
