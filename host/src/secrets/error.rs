//! Why a secret could not be fetched. No variant carries a secret's value; a secret's name and
//! backend are not secret (they are in the lattice's config bucket for every host to read).

/// Why fetching secrets failed.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The host was started without `--secrets-topic`.
    #[error("secret `{0}` is asked for, but this host has no secrets backend (start it with --secrets-topic)")]
    NoTopic(String),
    /// The code asking carries no signed claims, which the backend needs to know who asks.
    #[error("secrets are given only to signed code (the backend authorizes by the claims' subject), and this has no embedded claims; sign it (`trellis sign`, `wash build`)")]
    Unsigned,
    /// No secret reference of that name in the lattice's config bucket.
    #[error("secret reference `{0}` is not in the lattice's config bucket; put it (wadm does for a manifest's `secrets`)")]
    NoReference(String),
    /// The config of that name is not a secret reference.
    #[error("config `{name}` is named as a secret but is not a secret reference: {reason}")]
    NotAReference { name: String, reason: String },
    /// The backend did not answer (not running, or too slow).
    #[error("secrets backend `{backend}` did not answer on `{subject}`: {reason}")]
    Unreachable { backend: String, subject: String, reason: String },
    /// The backend's answer could not be read.
    #[error("secrets backend `{backend}` sent an answer this host cannot read: {reason}")]
    BadAnswer { backend: String, reason: String },
    /// The backend refused (unauthorized, not found, bad claims).
    #[error("secrets backend `{backend}` refused secret `{name}`: {reason}")]
    Refused { backend: String, name: String, reason: String },
    /// A secret with neither a string nor a binary value.
    #[error("secret `{0}` has no value")]
    Empty(String),
    /// Sealing with xkeys failed.
    #[error("cannot seal a secrets request: {0}")]
    Seal(String),
    /// The values together are larger than a workload may be given.
    #[error("the secrets asked for are larger than {max} bytes together")]
    TooLarge { max: usize },
    /// Fetching took too long in all.
    #[error("the secrets were not all fetched within {0:?}")]
    TooSlow(std::time::Duration),
    /// More secret references than a workload may have.
    #[error("{count} secrets asked for; at most {max} per component or provider")]
    TooMany { count: usize, max: usize },
}
