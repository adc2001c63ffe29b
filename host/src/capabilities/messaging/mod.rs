//! `wasmcloud:messaging` on the lattice's NATS: [`consumer`], the host functions a linked
//! component publishes and requests with; [`handler`], the built-in messaging provider that
//! delivers each handler link's subscriptions to its component.

pub mod consumer;
pub mod handler;
