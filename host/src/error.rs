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
    /// A control request about components or providers cannot be carried out.
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    /// A link was refused.
    #[error(transparent)]
    Link(#[from] LinkError),
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

/// Why a request to start, scale, update or stop a component or provider is refused.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// The id is not one NATS subject token.
    #[error("{0}")]
    BadId(String),
    /// A scale or update of the component is still being carried out.
    #[error("a scale or update of component `{0}` is already in progress on this host; try again when it has finished")]
    InProgress(String),
    /// Its signature or claims do not let it run here.
    #[error("`{reference}` may not run here: {reason}")]
    NotTrusted { reference: String, reason: String },
    /// The policy service did not permit it.
    #[error(transparent)]
    Policy(#[from] crate::trust::policy::PolicyError),
    /// A scale without a reference.
    #[error("scaling component `{0}` needs a `component_ref`")]
    NoReference(String),
    /// An update without a reference.
    #[error("updating component `{0}` needs a `new_component_ref`")]
    NoNewReference(String),
    /// A scale with another reference than the one running.
    #[error("component `{id}` already runs `{running}` on this host; scale it with that reference, set `allow_update`, or use component.update")]
    OtherReference { id: String, running: String },
    /// A provider id already runs another reference here.
    #[error("provider `{id}` already runs `{running}` on this host")]
    OtherProvider { id: String, running: String },
    /// The component does not run here.
    #[error("component `{id}` is not running on host {host}")]
    NoComponent { id: String, host: String },
    /// The provider does not run here.
    #[error("provider `{id}` is not running on host {host}")]
    NoProvider { id: String, host: String },
}

/// Why a link is refused.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// It names a config that does not exist.
    #[error("link from `{from}` to `{to}` names config `{config}`, which does not exist; put it with config.put first")]
    MissingConfig { from: String, to: String, config: String },
    /// It conflicts with a link the source already has.
    #[error("{0}")]
    Conflict(String),
    /// A schedule link whose interfaces or schedule are not valid.
    #[error("{0}")]
    Schedule(String),
}
