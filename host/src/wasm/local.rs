//! The components running on this host, as guests' link calls see them: a call whose target
//! runs here goes straight to it (no NATS hop), with the same permits and limits as a call that
//! arrives over NATS.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info};
use trellis_messages::invocation::FaultKind;
use wasmtime::component::Val;

use crate::wasm::invoke::{invoke_vals, Fault};
use crate::wasm::{PreparedComponent, WasmRuntime};

/// One running component: its current code and its instance slots.
#[derive(Clone, Debug)]
pub struct LocalTarget {
    /// The code calls run now.
    pub component: Arc<PreparedComponent>,
    /// `max_instances` permits.
    pub permits: Arc<Semaphore>,
    /// The configured `max_instances`.
    pub max_instances: u32,
}

impl LocalTarget {
    /// Calls `function` with `params` once an instance slot is free (waiting at most the host's
    /// queue wait).
    ///
    /// # Errors
    /// A [`Fault`] from the call, or [`FaultKind::Busy`] when no slot freed up in time.
    pub async fn call(&self, runtime: &WasmRuntime, id: &str, function: &str, params: Vec<Val>) -> Result<Vec<Val>, Fault> {
        let permit = self.acquire(runtime, id).await?;
        let result = invoke_vals(runtime, id, &self.component, function, params).await;
        drop(permit);
        result
    }

    /// An instance slot, waiting at most the host's queue wait.
    ///
    /// # Errors
    /// [`FaultKind::Busy`] when no slot freed up in time, [`FaultKind::Host`] when stopping.
    pub async fn acquire(&self, runtime: &WasmRuntime, id: &str) -> Result<OwnedSemaphorePermit, Fault> {
        let wait = runtime.config().max_queue_wait;
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let began = Instant::now();
                match tokio::time::timeout(wait, self.permits.clone().acquire_owned()).await {
                    Ok(Ok(p)) => {
                        let waited = began.elapsed();
                        if waited.as_millis() >= 100 {
                            info!(component_id = id, ?waited, max_instances = self.max_instances, "call waited for a free instance slot");
                        } else {
                            debug!(component_id = id, ?waited, "call waited for a free instance slot");
                        }
                        p
                    }
                    Ok(Err(_)) => return Err(Fault::new(FaultKind::Host, format!("component `{id}` is stopping"))),
                    Err(_) => {
                        return Err(Fault::new(
                            FaultKind::Busy,
                            format!("all {} instances of component `{id}` on this host stayed busy for {wait:?}", self.max_instances),
                        ))
                    }
                }
            }
        };
        Ok(permit)
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
