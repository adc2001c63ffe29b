//! The one error type of the host library.

use std::path::PathBuf;

/// What can go wrong starting or running a host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A configuration value is not acceptable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The host seed does not decode to a server nkey.
    #[error("invalid host seed: {0}")]
    Seed(String),
    /// A file the configuration names cannot be read.
    #[error("cannot read {what} `{path}`: {source}")]
    File {
        /// What the file is for (e.g. `NATS credentials file`).
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The NATS server cannot be reached or refused us.
    #[error("cannot connect to NATS at {url}: {reason}")]
    NatsConnect {
        /// The URL tried (credentials removed).
        url: String,
        /// What the client reported.
        reason: String,
    },
    /// Subscribing to a control subject failed.
    #[error("cannot subscribe to `{subject}`: {reason}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// What the client reported.
        reason: String,
    },
    /// Publishing failed.
    #[error("cannot publish on `{subject}`: {reason}")]
    Publish {
        /// The subject.
        subject: String,
        /// What the client reported.
        reason: String,
    },
    /// A user tried to change a label the host owns, or gave an empty key.
    #[error("{0}")]
    Label(String),
    /// A local `nats-server` could not be started.
    #[error("cannot start a local nats-server: {0}")]
    LocalNats(String),
    /// A component reference cannot be loaded: bad scheme, missing file, not a component, too
    /// large.
    #[error("cannot load component `{reference}`: {reason}")]
    ComponentRef {
        /// The reference as given.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// A component loaded but cannot run here: it does not compile or its imports are missing.
    #[error("component `{reference}` cannot run on this host: {reason}")]
    Component {
        /// The reference as given.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// A control request about components cannot be carried out (unknown id, conflicting
    /// reference, …).
    #[error("{0}")]
    Workload(String),
    /// A link was refused (missing config, conflicting target).
    #[error("{0}")]
    Link(String),
    /// The lattice's KV buckets cannot be used.
    #[error("lattice data: {0}")]
    LatticeData(String),
    /// The wasm engine cannot be built.
    #[error("wasm runtime: {0}")]
    Wasm(String),
    /// The host's actors stopped before answering (the host is shutting down).
    #[error("the host is shutting down")]
    ShuttingDown,
    /// The host thread could not be spawned or ended abnormally.
    #[error("host runtime failed: {0}")]
    Runtime(String),
}

impl From<actix::MailboxError> for HostError {
    fn from(_: actix::MailboxError) -> Self {
        HostError::ShuttingDown
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = HostError> = std::result::Result<T, E>;
