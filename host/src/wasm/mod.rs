//! Running WebAssembly components: one [`WasmRuntime`] per host.
//!
//! * [`engine`]: the wasmtime `Engine` (pooling allocator when the machine allows it, the
//!   on-disk compile cache, epoch interruption with one ticker thread), the WASI linker, and the
//!   multi-threaded tokio runtime guests execute on.
//! * [`load`]: a component reference (an OCI reference, `file://…` or a path) to validated
//!   component bytes; [`oci`]: registry pulls with a digest-checked cache; [`artifacts`]:
//!   components kept in the lattice's own object store (`nats://NAME:VERSION`).
//! * [`prepared`]: a compiled component, pre-instantiated (`InstancePre`), with its export
//!   table.
//! * [`invoke`]: one call: a fresh `Store` and instance, WAVE arguments in, WAVE results out,
//!   every guest fault (trap, deadline, memory limit) turned into a [`Fault`].
//! * What a component imports beyond WASI is matched in `crate::capabilities::imports`, once,
//!   at scale time, against the host's list of capabilities.
//! * [`local`]: the components running on this host, for in-process link calls.
//! * [`state`]: what a guest's `Store` holds (WASI context, memory limiter, the hooks its
//!   outgoing HTTP goes through, which `crate::capabilities::http_client` builds).
//! * Transports: [`wrpc`] and [`wrpc_http`] serve and call components over wRPC on NATS,
//!   decoding values with [`wrpc_value`] (lengths never trusted); [`http`] serves a component's
//!   `wasi:http` export to the built-in HTTP server, with request bodies on a clock
//!   ([`http_body`]).
//! * [`compiled`]: the on-disk cache of compiled components.

pub mod artifacts;
pub mod compiled;
pub mod engine;
pub mod invoke;
pub mod limits;
pub mod http;
pub mod http_body;
pub mod load;
pub mod local;
pub mod oci;
pub mod prepared;
pub mod reference;
pub mod state;
pub mod wrpc;
pub mod wrpc_head;
pub mod wrpc_http;
pub mod wrpc_value;

pub use engine::{WasmConfig, WasmRuntime};
pub use invoke::Fault;
pub use prepared::PreparedComponent;
