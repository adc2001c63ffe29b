//! The one error type of the host library.

use std::path::PathBuf;

/// What can go wrong starting or running a host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A configuration value is not acceptable.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
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
    #[error(transparent)]
    Label(#[from] trellis_messages::host::LabelError),
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
    #[error(transparent)]
    BadId(#[from] trellis_messages::invocation::IdError),
    /// A scale or update of the component is still being carried out.
    #[error("a scale or update of component `{0}` is already in progress on this host; try again when it has finished")]
    InProgress(String),
    /// Its signature or claims do not let it run here.
    #[error("`{reference}` may not run here: {reason}")]
    NotTrusted { reference: String, reason: crate::trust::TrustError },
    /// The policy service did not permit it.
    #[error(transparent)]
    Policy(#[from] crate::trust::policy::PolicyError),
    /// A scale without a reference.
    #[error("scaling component `{0}` needs a `component_ref`")]
    NoReference(String),
    /// An update without a reference.
    #[error("updating component `{0}` needs a `new_component_ref`")]
    NoNewReference(String),
    /// A provider id already runs (or is starting) here: wasmCloud 1.9's answer, word for word
    /// (`id` is for logs).
    #[error("provider with that ID is already running")]
    ProviderRunning { id: String },
    /// The component does not run here.
    #[error("component `{id}` is not running on host {host}")]
    NoComponent { id: String, host: String },
    /// The provider does not run here.
    #[error("provider `{id}` is not running on host {host}")]
    NoProvider { id: String, host: String },
    /// Its `component_limits` cannot be applied here.
    #[error(transparent)]
    Limits(#[from] LimitsError),
    /// Its reuse annotations cannot be applied here.
    #[error(transparent)]
    Reuse(#[from] ReuseError),
    /// The secrets it names could not be fetched.
    #[error("`{reference}` cannot start without its secrets: {reason}")]
    Secrets { reference: String, reason: crate::secrets::SecretsError },
}

/// Why a link is refused.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// It names a config that does not exist.
    #[error("link from `{from}` to `{to}` names config `{config}`, which does not exist; put it with config.put first")]
    MissingConfig { from: String, to: String, config: String },
    /// It conflicts with a link the source already has.
    #[error(transparent)]
    Conflict(#[from] LinkConflict),
    /// A link a capability refused at `link.put` (a schedule link whose interfaces or schedule
    /// are not valid): the capability's own error, held without naming its type, so this module
    /// depends on no capability.
    #[error(transparent)]
    Capability(Box<dyn std::error::Error + Send + Sync>),
}

/// A link that would give an interface already linked under its name to another target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("link `{name}` from `{from}` for {interface} already points to `{target}`; delete it first or use another link name")]
pub struct LinkConflict {
    /// The link name.
    pub name: String,
    /// The source.
    pub from: String,
    /// `ns:pkg/{iface, …}`: the interfaces both would carry.
    pub interface: String,
    /// Where the existing link points.
    pub target: String,
}

/// Reuse annotations (`wasm::reuse`) this host cannot apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReuseError {
    /// Not a whole number within its bounds.
    #[error("annotation `{key}` must be a whole number from 1 to {bound}, not `{value}`")]
    OutOfBounds {
        /// The annotation.
        key: &'static str,
        /// Its value.
        value: String,
        /// The largest value allowed.
        bound: u64,
    },
    /// Not `true` or `false`.
    #[error("annotation `{key}` must be `true` or `false`, not `{value}`")]
    NotBool {
        /// The annotation.
        key: &'static str,
        /// Its value.
        value: String,
    },
}

/// A `component_limits` this host cannot apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    /// Not a number of bytes.
    #[error("component_limits `max_memory_limit` must be a number of bytes, not `{0}`")]
    NotBytes(String),
    /// More than the host lets any component have.
    #[error("component_limits `max_memory_limit` of {asked} bytes is above this host's {host} bytes per component (--max-component-memory)")]
    AboveHost {
        /// What the scale asked for.
        asked: u64,
        /// The host's limit.
        host: u64,
    },
    /// Less than one page.
    #[error("component_limits `max_memory_limit` of {0} bytes is less than one WebAssembly page (65536 bytes)")]
    BelowPage(u64),
}

/// Which configuration value is not acceptable, and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value that becomes one NATS subject token is not one.
    #[error("{what} `{value}` must be non-empty and contain no `.`, `*`, `>` or whitespace")]
    Token { what: &'static str, value: String },
    /// The control prefix is not dot-separated tokens.
    #[error("control prefix `{0}` must be dot-separated NATS tokens")]
    Prefix(String),
    /// A `--label` is not `key=value`.
    #[error("label `{0}` must be written key=value")]
    LabelForm(String),
    /// A label's key or value is refused (reserved, too long, too many).
    #[error(transparent)]
    Label(#[from] trellis_messages::host::LabelError),
    /// `--heartbeat-interval 0`.
    #[error("heartbeat interval must be greater than zero")]
    Heartbeat,
    /// Both a `.creds` file and an nkey seed.
    #[error("give NATS credentials as a .creds file or an nkey seed, not both")]
    TwoCredentials,
    /// No NATS URL.
    #[error("NATS URL must not be empty")]
    NoNatsUrl,
    /// A NATS URL that does not parse (credentials removed).
    #[error("NATS URL `{url}`: {reason}")]
    NatsUrl { url: String, reason: String },
    /// The NATS nkey seed does not decode.
    #[error("NATS nkey seed: {0}")]
    NkeySeed(nkeys::error::Error),
    /// `--kv-replicas` outside 1 to 5.
    #[error("KV replicas must be 1 to 5, not {0}")]
    Replicas(usize),
    /// `--trusted-issuers` and the like.
    #[error(transparent)]
    Trust(#[from] crate::trust::TrustError),
    /// The policy topic is not a concrete subject.
    #[error("policy topic `{0}` must be a concrete NATS subject")]
    PolicyTopic(String),
    /// The secrets topic is not a concrete subject.
    #[error("secrets topic `{0}` must be a concrete NATS subject")]
    SecretsTopic(String),
    /// The secrets client cannot be made.
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),
    /// `--policy-timeout 0`.
    #[error("the policy timeout must be above zero")]
    PolicyTimeout,
    /// The policy service client cannot start.
    #[error(transparent)]
    Policy(#[from] crate::trust::policy::PolicySetupError),
    /// `--kv-default-bucket` names a bucket guests may not have.
    #[error("default key-value bucket: {0}")]
    DefaultBucket(Box<dyn std::error::Error + Send + Sync>),
    /// A control or HTTP limit of zero, or a control message limit under 1 KiB.
    #[error("control in-flight, HTTP connection and body limits must be above zero, the control message limit at least 1 KiB")]
    Limits,
    /// `--max-execution-time` under 10 ms.
    #[error("max execution time must be at least 10ms")]
    ExecutionTime,
    /// `--max-component-memory` under one wasm page.
    #[error("max component memory must be at least 64 KiB (one wasm page)")]
    ComponentMemory,
    /// `--max-component-memory` past this machine's address space.
    #[error("max component memory does not fit this machine's address space")]
    AddressSpace,
    /// `--max-component-size 0`.
    #[error("max component size must be greater than zero")]
    ComponentSize,
    /// Provider health and restart settings out of range.
    #[error("provider health interval must be at least 100ms, the longest restart delay at least the first, and max provider calls above zero")]
    Providers,
    /// The metrics address cannot be listened on.
    #[error("cannot serve metrics on {addr}: {reason}")]
    Metrics { addr: String, reason: String },
}
