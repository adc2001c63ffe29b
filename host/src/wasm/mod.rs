//! Running WebAssembly components: one [`WasmRuntime`] per host. Three parts:
//!
//! * The engine, here: [`engine`] (the wasmtime `Engine`: pooling allocator when the machine
//!   allows it, the on-disk compile cache, epoch interruption with one ticker thread, the WASI
//!   linker, the multi-threaded tokio runtime guests execute on); [`compiled`] (the on-disk cache
//!   of compiled components); [`prepared`] (a compiled component, pre-instantiated, with its
//!   export table); [`state`] (what a guest's `Store` holds: WASI context, memory limiter, the
//!   hooks its outgoing HTTP goes through); [`invoke`] (one call: a fresh `Store` and instance,
//!   every guest fault turned into a [`Fault`]); [`limits`] (what a scale may ask of one
//!   component's resources); [`reuse`] (whether and how its HTTP instances are reused).
//! * [`sources`]: where component bytes come from (files, OCI registries, the lattice's
//!   artifact store).
//! * [`transport`]: how calls reach a component (in-process, wRPC, HTTP).
//!
//! What a component imports beyond WASI is matched in `crate::capabilities::imports`, once, at
//! scale time, against the host's list of capabilities; no module here names a capability.

pub mod compiled;
pub mod engine;
pub mod invoke;
pub mod limits;
pub mod prepared;
pub mod reuse;
pub mod sources;
pub mod state;
pub mod transport;

pub use engine::{WasmConfig, WasmRuntime};
pub use invoke::Fault;
pub use prepared::PreparedComponent;
