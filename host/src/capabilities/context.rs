//! What a component's host functions need at call time, built once per component when it is
//! prepared. Every capability decision goes through its [`Resolver`]. Below `capabilities/`
//! it travels type-erased ([`crate::wasm::state::CapabilityContext`]), so `wasm` names no
//! capability's types.

use std::sync::Arc;

use trellis_messages::Subjects;

use crate::permission::Resolver;
use crate::wasm::transport::local::LocalComponents;
use crate::wasm::WasmRuntime;

/// Everything a component's imports need at call time.
#[derive(Clone)]
pub struct ImportContext {
    /// The importing component (the link source).
    pub source_id: String,
    /// Names of the configs the component reads (`wasi:config/store`).
    pub config_names: Vec<String>,
    /// The secrets fetched for it when it was prepared (`wasmcloud:secrets`).
    pub secrets: crate::secrets::Secrets,
    /// Decides which links, providers, buckets and subjects the component may use.
    pub resolver: Resolver,
    /// Components running here.
    pub local: LocalComponents,
    /// This host's wasm runtime (for local calls).
    pub runtime: Arc<WasmRuntime>,
    /// The host's call connection: calls to components on other hosts, key-value, messaging.
    pub nats: async_nats::Client,
    /// Subject builder of the lattice.
    pub subjects: Subjects,
    /// Calls to external providers.
    pub wrpc: crate::wasm::transport::wrpc::Wrpc,
    /// The importing component's tap: its link calls are recorded while `trellis spy` watches.
    pub spy: crate::spy::SpyTap,
}

impl std::fmt::Debug for ImportContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportContext").field("source_id", &self.source_id).finish_non_exhaustive()
    }
}
