//! [`Denied`]: why the capability resolver refused, one variant per rule.

use super::kind::ProviderKind;
use super::subjects;

/// A capability refused: each variant is one rule, and says which link or name broke it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No link from the source under that name carries the interface.
    #[error(transparent)]
    NoLink(#[from] crate::lattice::state::NoLink),
    /// The link targets a provider of another kind.
    #[error("link `{link}` from `{source_id}` for `{interface}` targets `{target}`, a {} provider, not a {} provider", .actual.name(), .wanted.name())]
    OtherKind { link: String, source_id: String, interface: String, target: String, actual: ProviderKind, wanted: ProviderKind },
    /// The link targets no running provider.
    #[error("link `{link}` from `{source_id}` for `{interface}` targets `{target}`, which is not a running {} provider", .wanted.name())]
    NotRunning { link: String, source_id: String, interface: String, target: String, wanted: ProviderKind },
    /// A key-value link names no bucket, and the host has no default.
    #[error("link `{link}` from `{source_id}` to `{target}` names no bucket (set `bucket` in its target config) and this host has no default bucket")]
    NoBucket { link: String, source_id: String, target: String },
    /// Not a JetStream bucket name.
    #[error("`{0}` is not a valid bucket name (1 to 64 of A-Z a-z 0-9 _ -)")]
    BucketName(String),
    /// One of the lattice's own buckets.
    #[error("`{0}` is one of the lattice's own buckets; guests never open it")]
    SystemBucket(String),
    /// A container outside the link's `containers`.
    #[error("container `{container}` is not among those link `{link}` from `{source_id}` allows (`containers`: {allowed})")]
    Container { container: String, link: String, source_id: String, allowed: String },
    /// A subscription that could receive the lattice's own subjects.
    #[error("subscription `{0}` could receive the lattice's own subjects; subscribe to a subject that starts with an ordinary token")]
    Subscription(String),
    /// Not a subject one can publish to.
    #[error(transparent)]
    Subject(#[from] subjects::SubjectError),
    /// One of the lattice's own subjects.
    #[error("`{0}` is a subject of the lattice itself; guests never publish there")]
    SystemSubject(String),
    /// A key-value watcher link whose `watch` cannot be read.
    #[error("link `{link}` from `{source_id}` to `{target}`: `watch` {reason}")]
    Watch { link: String, source_id: String, target: String, reason: String },
    /// An external provider's watcher call without the links that allow it.
    #[error("`{provider}` has no `wasi:keyvalue/watcher` link to `{component}`, or `{component}` no `wasi:keyvalue/store` link to it (a watcher call hands over a bucket of the provider)")]
    NoExternalWatch { provider: String, component: String },
    /// No watcher link from that provider to that component under that name.
    #[error("no `wasi:keyvalue/watcher` link named `{link}` from `{source_id}` to `{target}`")]
    NoWatch { link: String, source_id: String, target: String },
    /// A subject outside the link's `subjects`.
    #[error("link `{link}` from `{source_id}` allows publishing to {allowed} only, not `{subject}` (set `subjects` in its target config)")]
    Publish { link: String, source_id: String, subject: String, allowed: String },
}
