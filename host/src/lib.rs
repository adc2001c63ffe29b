//! # Trellis host
//!
//! A Trellis host joins a NATS lattice and answers the wasmCloud 1.x control interface
//! (`trellis_messages` has the wire types). It is built from actix actors, each owning one
//! piece of state and reached only through its address; there is no global registry.
//!
//! ## Threads
//!
//! [`start`] spawns one `trellis-host` thread running an actix `System`. The async-nats client
//! lives on that thread's tokio runtime. The caller gets a [`HostHandle`], which is `Send` and
//! works from any tokio runtime (the `trellis` binary, tests).
//!
//! ## Actors and message flow
//!
//! ```text
//!                     NATS (control subjects)                  NATS (wasmbus.evt.{lattice}.*)
//!                            │ subscriptions (made before start)            ▲
//!                            ▼                                              │
//!   ┌──────────────── ControlActor ─────────────────┐                      │
//!   │ StreamHandler<Incoming>: CtlCommand::parse    │                      │
//!   │ (bad input → success:false reply)             │                      │
//!   │ Dispatcher::answer(cmd) ──────────────────────┼──► HostActor ────────┤ EventPublisher
//!   │   Describe / GetInventory / GetLabels /       │    owns labels,      │ (host_heartbeat,
//!   │   PutLabel / DeleteLabel                      │    uptime, heartbeat │  labels_changed)
//!   │ publish reply; host.stop → StopRequest ───┐   │                      │
//!   └───────────────────────────────────────────┼───┘                      │
//!                                               ▼                          │
//!   supervisor future (runtime.rs) ◄── StopRequest ◄── HostHandle::stop (SIGINT/SIGTERM)
//!     1. StopControl → ControlActor unsubscribes, finishes in-flight answers, stops
//!     2. Drain → HostActor stops its heartbeat and stops, returns the final labels
//!     3. publish host_stopped ───────────────────────────────────────────────┘
//!     4. flush NATS, stop the System; the thread ends and HostHandle::wait returns
//! ```
//!
//! The NATS client's connection events reach the `HostActor` as a stream: after a reconnect it
//! publishes a heartbeat at once. Subscriptions survive reconnects (async-nats resubscribes).
//! Control subjects of the host are subscribed plainly when targeted (`….{host_id}`) or
//! broadcast (`host.ping`, auctions), in queue groups for lattice data (links, claims, config),
//! and a queue-group catch-all under the prefix answers subjects that name no operation.

pub mod actors;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod events;
pub mod identity;
pub mod local_nats;
pub mod nats;
pub mod runtime;
pub mod wasm;

pub use config::{HostConfig, NatsConfig};
pub use error::{HostError, Result};
pub use runtime::{start, HostHandle, HostInfo, StopReason};
