//! # Trellis host
//!
//! A Trellis host joins a NATS lattice and answers the wasmCloud 1.x control interface
//! (`trellis_messages` has the wire types). It is built from actix actors, each owning one
//! piece of state and reached only through its address; there is no global registry.
//!
//! ## Threads
//!
//! [`start`] spawns one `trellis-host` thread running an actix `System`; every actor lives on
//! it, and so does the **control connection** to NATS (control interface, events, KV
//! watches). Guests do **not** run there: the host's [`wasm::WasmRuntime`] owns a
//! multi-threaded tokio runtime (`trellis-guest` threads, one per CPU by default), so guests use
//! every core and a busy guest never delays the actors. The **call connection** (a second NATS
//! connection: component subscriptions and replies, link calls to other hosts, HTTP forwarding,
//! messaging, key-value) has its I/O task on the guest runtime too, and so do the component
//! subscriptions' forwarders, so a call goes from the socket to its guest and back without a
//! thread switch (each switch costs tens of µs on a loaded machine; the benchmark counts them),
//! and call traffic never queues behind control answers or heartbeats. Guests yield at every epoch tick (10 ms, one
//! `trellis-epoch` ticker thread per engine), so a long call cannot monopolise a guest thread
//! either. Compilation runs on the guest runtime's blocking pool. The caller of [`start`] gets
//! a [`HostHandle`], which is `Send` and works from any tokio runtime (the `trellis` binary,
//! tests).
//!
//! ## Actors and message flow
//!
//! ```text
//!                     NATS (control subjects)                  NATS (wasmbus.evt.{lattice}.*)
//!                            │ subscriptions (made before start)            ▲
//!                            ▼                                              │
//!   ┌──────────────── ControlActor ─────────────────┐                      │
//!   │ StreamHandler<Incoming>: size and in-flight   │                      │
//!   │ bounds, then CtlCommand::parse                │                      │
//!   │ (bad input → success:false reply)             │                      │
//!   │ Dispatcher::answer(cmd) ──────────────────────┼──► HostActor ────────┤ EventPublisher
//!   │   Describe / GetInventory / GetLabels /       │    owns labels,      │ (host_heartbeat,
//!   │   PutLabel / DeleteLabel                      │    uptime, heartbeat,│  labels_changed)
//!   │                                               │    component list    │
//!   │   PutLink / DeleteLink / GetLinks /           │                      │
//!   │   PutConfig / GetConfig / DeleteConfig ───────┼──► LatticeActor ─────┤ (linkdef_*, config_*)
//!   │                                               │    KV read-modify-   │
//!   │                                               │    write; watches    │
//!   │                                               │    both buckets ──► LatticeView (mirror)
//!   │   StartProvider / StopProvider ───────────────┼──► ProvidersActor ───┤ (provider_started,
//!   │                                               │    records it in the │  …_start_failed,
//!   │                                               │    ProviderDirectory │  …_stopped)
//!   │                                               │    (other hosts' via │
//!   │                                               │    permission::      │
//!   │                                               │    directory_feed on │
//!   │                                               │    their events);    │
//!   │                                               │    SetProviders ───► HostActor (inventory,
//!   │                                               │    heartbeat); HTTP client and key-value
//!   │                                               │    run nothing (host functions serve
//!   │                                               │    their links); starts one LinkFollower
//!   │                                               │    actor per HTTP server, messaging or
//!   │                                               │    schedule provider (providers::follower:
//!   │                                               │    LatticeView.changes() → desired(), the
//!   │                                               │    links Resolver::deliveries names):
//!   │                                               │      HTTP server: listeners; a request to
//!   │                                               │      a component here runs in-process
//!   │                                               │      (wasm::transport::http::serve_local), one on
//!   │                                               │      another host is forwarded over NATS
//!   │                                               │      (wasm::transport::http::forward → that host's
//!   │                                               │      ComponentActor → serve_forwarded);
//!   │                                               │      messaging: a subscription per
//!   │                                               │      handler link;
//!   │                                               │      schedules: a task per schedule link;
//!   │                                               │      each tick claimed by CAS in
//!   │                                               │      TRELLIS_SCHEDULES_{lattice}, the
//!   │                                               │      winner calls on-tick (local or NATS),
//!   │                                               │      retries, or publishes
//!   │                                               │      schedule_tick_failed
//!   │                                               │    starts one ExternalProvider per
//!   │                                               │    external provider: owns its process
//!   │                                               │    (behind `trellis provider-guard`),
//!   │                                               │    LatticeView.changes() → linkdefs.put/
//!   │                                               │    del, config.update; health checks;
//!   │                                               │    restarts; StatusChanged → inventory
//!   │   RegistryPut: answered in the dispatcher     │
//!   │   (per-registry credentials for pulls);       │
//!   │   ClaimsGet: the dispatcher asks WorkloadActor│
//!   │   and ProvidersActor, adds the lattice's      │
//!   │   stored claims (LatticeView, CLAIMS_* keys)  │
//!   │   Scale / UpdateComponent / IsRunning ────────┼──► WorkloadActor ────┤ (component_scaled,
//!   │ publish reply; host.stop → StopRequest ───┐   │    SetComponent ───► │  …_scale_failed)
//!   └───────────────────────────────────────────┼───┘    HostActor         │
//!                                               │        │ load, claims checked (trust), policy
//!                                               │        │ service asked (trust::policy), compile
//!                                               │        │ on the guest blocking pool
//!                                               │        │ start / Update / SetMaxInstances /
//!                                               │        ▼ StopComponent
//!                                               │   ComponentActor (one per component): owns
//!                                               │   what calls run (code, slots), the drain
//!            NATS {lattice}.{id}.wrpc.… ────────┼──► (from providers) decoded → same Call path;
//!            (wrpc:http/incoming-handler)       │    HTTP → wasm::transport::wrpc_http → serve_local
//!            NATS trellis.rpc.{lattice}.{id} ───┼──► queue group {id} (call connection):
//!            (InvocationRequest)                │    forwarder task on a guest thread
//!                                               │    → Call task on the guest runtime:
//!                                               │      LocalTarget::admit (signature policy,
//!                                               │      policy service; every path, in-process
//!                                               │      or not) → permit
//!                                               │      (max_instances) → Store → instance →
//!                                               │      export → reply InvocationResponse
//!                                               │    every guest host call that reaches
//!                                               │    beyond the instance asks the capability
//!                                               │    Resolver (links, ProviderDirectory):
//!                                               │      component import → target;
//!                                               │      LocalComponents has it? call in-process
//!                                               │      (same permits/limits) : NATS request
//!                                               │      (no Trellis host runs it: wRPC, for
//!                                               │      a wasmCloud 1.x host's component);
//!                                               │      external provider? wRPC request
//!                                               │      (wasm::transport::wrpc, bounded per provider);
//!                                               │      key-value → the link's bucket;
//!                                               │      messaging → allowed subjects;
//!                                               │      outgoing HTTP → granted or denied
//!                                               │    the whole call ends at the deadline
//!                                               ▼
//!   supervisor future (runtime.rs) ◄── StopRequest ◄── HostHandle::stop (SIGINT/SIGTERM)
//!     1. StopControl → ControlActor drains its subscriptions (answers what the server had
//!        already delivered), finishes in-flight answers, stops
//!     1b. apps: the reconciler stops, the host deletes its liveness record and waits (≤ 5 s)
//!        until the other hosts run its share of the declared applications
//!     2. StopProviders → ProvidersActor stops the HTTP servers (no new connections; open
//!        ones finish their request and close) and each ExternalProvider (shutdown request,
//!        grace, SIGTERM, SIGKILL), waits for them, stops
//!        DrainComponents → WorkloadActor stops every ComponentActor (and never starts one
//!        that finishes loading now): each has its forwarder drain the subscription, lets
//!        calls in flight finish, and answers those still running at the deadline with a fault
//!     3. StopLattice → LatticeActor drops its KV watches and stops
//!        Drain → HostActor stops its heartbeat and stops, returns the final labels
//!     4. publish host_stopped ───────────────────────────────────────────────┘
//!     5. flush both NATS connections, drop the wasm runtime (and with it the call
//!        connection's I/O), stop the System; HostHandle::wait returns
//! ```
//!
//! The control connection's events reach the `HostActor` as a stream: after a reconnect it
//! publishes a heartbeat at once (and counts the reconnect in [`metrics`]); the call
//! connection's events are logged. Every call records into the runtime's [`metrics::Metrics`]
//! handle where it runs (`LocalTarget::call`, the HTTP path); `--metrics-addr` serves them
//! from a task on the host thread, aborted at step 5. Before `host_started`, the host makes
//! sure the lattice journal's stream exists ([`journal`]); JetStream, not the host, then keeps
//! every event published on `wasmbus.evt`. [`spy`]: a task on the guest runtime (subscribed
//! before the host joins, on the call connection) arms a component's `SpyTap` when a watch
//! arrives on `trellis.spy.{lattice}.watch`; while armed, `LocalTarget::call`, the HTTP path
//! and the link-call import record each call into a bounded queue that task publishes from.
//! [`telemetry`]: every call runs in a `tracing` span; link calls and forwarded HTTP carry
//! the W3C trace context in their NATS headers and the receiving host continues it.
//! Both connections reconnect
//! without limit, and their subscriptions survive reconnects (async-nats resubscribes).
//! Control subjects of the host are subscribed plainly when targeted (`….{host_id}`) or
//! broadcast (`host.ping`, auctions), in queue groups for lattice data (links, claims, config),
//! and a queue-group catch-all under the prefix answers subjects that name no operation.
//!
//! Links and configs live in JetStream KV (`LATTICEDATA_{lattice}`, `CONFIGDATA_{lattice}`).
//! Every host's `LatticeActor` watches both buckets (history replay, then live) into a
//! `LatticeView` that guests' import calls read at call time, so a link put or deleted on any
//! host changes running components everywhere without a restart, and a restarted host reloads
//! everything by replaying the watch.
//!
//! Key-value (`wasi:keyvalue` on JetStream KV), messaging (`wasmcloud:messaging/consumer`) and
//! the HTTP client gate are host functions in [`capabilities`] (one module each, one list
//! of them all) and `wasm::state`; what each may reach is decided by [`permission`] at call time,
//! and nowhere else.
//!
//! Declared applications ([`apps`]) are tasks the supervisor owns beside the actors: the
//! liveness beat (asks `HostActor` for the inventory every second, puts it in
//! `TRELLIS_LIVE_{lattice}`) and follower (every host's records), wadm's API (queue group
//! `wadm_server`, manifests in `wadm_manifests`), and the reconciler, which computes the plan
//! from the deployed manifests and the live hosts and sends this host's part to its own actors:
//! `Scale` to the `WorkloadActor`, `StartProvider` / `StopProvider` to the `ProvidersActor`, and,
//! where it is an app's steward, `PutConfig` / `PutLink` to the `LatticeActor`.
//!
//! A component update swaps the `Arc<PreparedComponent>` the actor hands to new calls; calls in
//! flight finish on the old code, and the subscription never changes, so no call fails.

pub mod actors;
pub mod admin;
pub mod apps;
pub mod backoff;
pub mod capabilities;
pub mod permission;
pub mod config;
pub mod error;
pub mod events;
#[cfg(test)]
mod fuzz;
pub mod identity;
pub mod lattice;
pub mod providers;
pub mod local_nats;
pub mod journal;
pub mod metrics;
pub mod nats;
pub mod runtime;
pub mod services;
pub mod secrets;
pub mod spy;
pub mod stop;
pub mod telemetry;
pub mod trust;
pub mod wasm;

pub use config::{HostConfig, Limits, NatsConfig};
pub use error::{HostError, Result};
pub use runtime::{start, HostHandle, HostInfo, StopReason};
