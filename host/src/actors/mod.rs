//! The host's actix actors. See the crate documentation for how messages flow between them.

pub mod control;
pub mod dispatch;
pub mod host;
pub mod component;
pub mod workload;
pub mod lattice;
pub mod providers;
