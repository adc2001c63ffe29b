//! The lattice tests, one module per subject, in one test binary (see `Cargo.toml`: one link
//! of the host instead of thirty). Run one subject with `cargo test --test lattice links::`.

mod apps;
mod artifacts;
mod attacks;
mod bad_input;
mod cluster;
mod components;
mod containment;
mod control_interface;
mod events;
mod external_blobstore;
mod external_providers;
mod faults;
mod http_reuse;
mod journal;
mod limits;
mod links;
mod messaging03;
mod metrics;
mod nats_security;
mod oci;
mod otlp;
mod policy;
mod process;
mod provider_archives;
mod provider_calls;
mod providers;
mod reconnect;
mod schedule;
mod secrets;
mod spec_layout;
mod spy;
mod trust;
mod wadm_peer;
mod wasmcloud_examples;
mod wrpc_attacks;
