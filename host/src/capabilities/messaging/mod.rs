//! `wasmcloud:messaging` on the lattice's NATS: [`consumer`] (0.2) and [`v0_3`] (0.3's
//! `producer`, `request-reply` and their resources), the host functions a linked component
//! publishes and requests with, both through one [`permit`]; [`handler`], the built-in messaging
//! provider that delivers each handler link's subscriptions to its component (0.2's
//! `handle-message`, or 0.3's `incoming-handler.handle`), over wRPC ([`wrpc_deliver`]) to a
//! component only a wasmCloud host runs.

pub mod consumer;
pub mod handler;
pub mod permit;
pub mod v0_3;
pub mod wrpc_deliver;
pub mod wrpc_handler;
