//! The handles a host's actors share, built once at start and passed explicitly (no globals).

use std::sync::Arc;

use trellis_messages::Subjects;

use crate::permission::{ProviderDirectory, Resolver};
use crate::config::Limits;
use crate::events::EventPublisher;
use crate::lattice::{LatticeStore, LatticeView};
use crate::wasm::transport::local::LocalComponents;
use crate::wasm::WasmRuntime;

/// What the workload and component actors need from the host. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HostServices {
    /// This host's id.
    pub host_id: String,
    /// Subject builder of the lattice.
    pub subjects: Subjects,
    /// The control connection: control interface, events, KV watches. Its I/O runs on the
    /// host thread.
    pub nats: async_nats::Client,
    /// The call connection: component subscriptions and replies, link calls, HTTP forwarding,
    /// messaging, key-value. Its I/O runs on the guest threads, so a call moves between NATS and
    /// the guest serving or making it without a thread switch, and heavy call traffic never
    /// queues behind (or delays) control answers and heartbeats.
    pub calls: async_nats::Client,
    /// Event publisher.
    pub events: EventPublisher,
    /// Engine, limits, guest threads.
    pub runtime: Arc<WasmRuntime>,
    /// Links and configs, mirrored from KV.
    pub view: LatticeView,
    /// Components running here, for in-process calls.
    pub local: LocalComponents,
    /// Providers running in the lattice (this host's kept by the providers actor).
    pub providers: ProviderDirectory,
    /// Decides what guests may reach; handed to every component.
    pub resolver: Resolver,
    /// Bounds on network work (HTTP connections, bodies).
    pub limits: Limits,
    /// The lattice's KV buckets (a scale records the component's reference in its spec).
    pub store: LatticeStore,
    /// Registry credentials from `registry.put`.
    pub registries: crate::wasm::sources::oci::Registries,
    /// wRPC to and from external providers, on the call connection.
    pub wrpc: crate::wasm::transport::wrpc::Wrpc,
    /// Which code may start here (signed claims).
    pub trust: Arc<crate::trust::TrustPolicy>,
    /// The policy service asked before code starts, when the host names one.
    pub policy: Option<crate::trust::policy::PolicyService>,
    /// Asks secrets backends for the secrets code names, when the host has a secrets topic.
    pub secrets: Option<Arc<crate::secrets::SecretsClient>>,
}
