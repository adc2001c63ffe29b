//! The wire vocabulary of a Trellis lattice: the wasmCloud 1.x control interface (`v1`),
//! lattice events, and a typed client.
//!
//! * [`subjects`] builds every subject in one place, for a configurable control prefix.
//! * [`CtlResponse`] is the reply envelope every control message gets.
//! * [`host`], [`component`], [`provider`], [`link`] hold the JSON bodies, one module per
//!   control-interface group; their field names follow the published
//!   `wasmcloud-control-interface` 3.x crate, which the integration tests use as a client.
//! * [`CtlCommand`] is a control message parsed once from its subject and body.
//! * [`event`] builds the CloudEvents hosts publish on `wasmbus.evt.{lattice}.{name}`.
//! * [`invocation`] is how components' exports are called over NATS.
//! * [`Client`] is a typed async client over NATS, used by the `trellis` CLI and tests.

pub mod client;
pub mod command;
pub mod component;
pub mod envelope;
pub mod error;
pub mod event;
pub mod host;
pub mod invocation;
pub mod journal;
pub mod link;
pub mod provider;
pub mod registry;
pub mod schedule;
pub mod spy;
pub mod subjects;

pub use client::Client;
pub use command::CtlCommand;
pub use envelope::CtlResponse;
pub use error::Error;
pub use subjects::Subjects;

/// The control-interface prefix wasmCloud tools use unless told otherwise.
pub const DEFAULT_CTL_PREFIX: &str = "wasmbus.ctl";
/// The lattice name used when none is given.
pub const DEFAULT_LATTICE: &str = "default";
/// The annotation wadm (and Trellis's app manager) puts on the workloads of an application:
/// its name.
pub const APP_SPEC_ANNOTATION: &str = "wasmcloud.dev/appspec";
/// Config names that begin with this are secret references, as wasmCloud 1.x writes them in
/// `CONFIGDATA_{lattice}` (`wasmcloud-secrets-types`' `SECRET_PREFIX`): a backend, key and
/// policy, never values a component or provider reads as config. wasmCloud's host sorts a
/// workload's config names on this prefix with no separator (`SECRET_app-db`, as wadm names
/// them, and any other name beginning `SECRET`), and so does Trellis.
pub const SECRET_PREFIX: &str = "SECRET";
