//! Why an external provider does not start: each reason reaches the `provider_start_failed`
//! event as its `error`.

use std::path::PathBuf;

use crate::trust::TrustError;
use crate::wasm::sources::load::LoadError;
use crate::wasm::sources::oci::PullError;

/// Why an external provider cannot start on this host.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The host's own NATS credentials cannot be handed to a provider.
    #[error("{0}")]
    Credentials(&'static str),
    /// External providers cannot start on this host at all (why, decided at host start).
    #[error(transparent)]
    Unavailable(std::sync::Arc<StartError>),
    /// The host's `.creds` file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    CredsFile { path: PathBuf, source: std::io::Error },
    /// The `.creds` file lacks a user JWT or seed.
    #[error("the .creds file has no user JWT and seed")]
    CredsContent,
    /// The directory for unpacked binaries cannot be made.
    #[error("cannot make a directory for provider binaries: {0}")]
    BinaryDir(std::io::Error),
    /// A registry reference, on a host started without `--allow-provider-images`.
    #[error("a provider image from a registry is native code this host would run; it runs none (start it with --allow-provider-images)")]
    ImagesOff,
    /// A URL scheme other than `file://`.
    #[error("`{0}://` provider references are not supported: name an executable or archive (a path or file://) or an OCI image")]
    Scheme(String),
    /// An empty reference.
    #[error("the provider reference is empty")]
    EmptyReference,
    /// A file, on a host started without `--allow-file-load`.
    #[error("this host does not start providers from files (start it with --allow-file-load)")]
    FilesOff,
    /// The file policy refuses the path.
    #[error(transparent)]
    FilePolicy(LoadError),
    /// The file cannot be read.
    #[error("cannot read {name}: {source}")]
    Read { name: String, source: std::io::Error },
    /// A directory or other non-file.
    #[error("{0} is not a file")]
    NotFile(String),
    /// A file without an execute bit.
    #[error("{0} is not executable")]
    NotExecutable(String),
    /// A bare executable, on a host that runs only signed providers.
    #[error("`{0}` is an executable without claims, and this host runs only signed providers (--require-signed); use a provider archive (.par) signed by a trusted issuer")]
    Unsigned(String),
    /// The provider image cannot be pulled.
    #[error(transparent)]
    Pull(#[from] PullError),
    /// The pulled archive cannot be kept on disk.
    #[error("cannot keep the provider archive: {0}")]
    Keep(std::io::Error),
    /// What is wrong with an archive.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The secrets its config names could not be fetched.
    #[error("the provider cannot start without its secrets: {0}")]
    Secrets(#[from] crate::secrets::SecretsError),
    /// A built-in provider named a secret.
    #[error("built-in providers use the host's own connection and take no secrets, but `{0}` names one")]
    BuiltInSecret(String),
    /// The unpacking task ended abnormally.
    #[error("unpacking failed: {0}")]
    Unpacking(String),
    /// The provider's xkey has no seed.
    #[error("no xkey seed: {0}")]
    Xkey(String),
    /// The start data do not serialise.
    #[error("start data: {0}")]
    StartData(#[from] serde_json::Error),
    /// A built-in reference naming no built-in.
    #[error(transparent)]
    Builtin(#[from] crate::permission::kind::KindError),
    /// The policy service refused the provider.
    #[error(transparent)]
    Policy(#[from] crate::trust::policy::PolicyError),
    /// The operating system did not start the process.
    #[error("cannot start {}: {source}", path.display())]
    Spawn { path: PathBuf, source: std::io::Error },
}

/// What is wrong with a provider archive (`.par`, `.par.gz`); `name` is its path.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The archive cannot be read.
    #[error("cannot read {name}: {reason}")]
    Read { name: String, reason: String },
    /// Over [`super::archive::MAX_ARCHIVE`].
    #[error("{name} is {size} bytes, over the {max}-byte limit for provider archives")]
    TooLarge { name: String, size: u64, max: u64 },
    /// A corrupt gzip stream or tar, or claims the reader refuses.
    #[error("{name} is not a valid provider archive: {reason}")]
    Invalid { name: String, reason: String },
    /// Claims the reader could not parse at all (it panicked).
    #[error("{0} is not a valid provider archive (its claims are malformed)")]
    Malformed(String),
    /// Gzip inside gzip.
    #[error("{0} is gzip inside gzip; refused (a provider archive is a tar, gzipped at most once)")]
    NestedGzip(String),
    /// Inflates past its bound.
    #[error("{name} inflates past {limit} bytes from {packed} (at most {max} bytes, and {ratio} times its size past {free}); refused as a likely gzip bomb")]
    Bomb { name: String, limit: u64, packed: u64, max: u64, ratio: u64, free: u64 },
    /// No `claims.jwt`.
    #[error("{0} has no claims")]
    NoClaims(String),
    /// The claims token does not decode.
    #[error("{name}: the claims cannot be checked: {reason}")]
    Unchecked { name: String, reason: String },
    /// The claims' signature does not verify.
    #[error("{0}: the claims' signature is not valid")]
    BadSignature(String),
    /// Past the claims' expiry.
    #[error("{name}: the claims expired ({when})")]
    Expired { name: String, when: String },
    /// Before the claims' not-before.
    #[error("{name}: the claims are not valid yet ({when})")]
    NotYetValid { name: String, when: String },
    /// Signed by an issuer this host does not trust.
    #[error("{name} is {source}")]
    Untrusted { name: String, source: TrustError },
    /// No binary for this machine.
    #[error("{name} has no binary for this machine ({target}); it has: {targets}")]
    NoTarget { name: String, target: String, targets: String },
    /// The binary cannot be written out.
    #[error("cannot {what}: {source}")]
    Write { what: &'static str, source: std::io::Error },
}
