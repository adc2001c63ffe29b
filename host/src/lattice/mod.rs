//! Lattice data: links and named configs, stored in JetStream KV and mirrored on every host.
//!
//! * [`state`]: the in-memory mirror every host keeps ([`LatticeView`]), and the link rules
//!   (conflicts, replacement, resolution) as pure functions.
//! * [`spec`]: the value of `COMPONENT_{id}`, wasmCloud's `ComponentSpecification`
//!   (`{"url", "links"}`).
//! * [`store`]: the KV buckets `LATTICEDATA_{lattice}` (specs under `COMPONENT_{source}`) and
//!   `CONFIGDATA_{lattice}` (one key per config name), read-modify-write with revision checks so
//!   concurrent puts from several hosts never lose one another.

pub mod spec;
pub mod state;
pub mod store;

pub use state::LatticeView;
pub use store::LatticeStore;
