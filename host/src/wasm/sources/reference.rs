//! Why a component reference is refused before anything is fetched: the checks of
//! [`super::oci::parse`] and [`super::artifacts::object_name`], typed, with the reference in
//! every variant.

/// A reference refused as written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    /// Not something an OCI registry can be asked for.
    #[error("`{reference}` is not an OCI reference: {reason}")]
    NotOci {
        /// The reference as given.
        reference: String,
        /// What the reference parser said.
        reason: String,
    },
    /// An OCI reference without a pinned tag or digest, on a host without `--allow-latest`.
    #[error(
        "`{reference}` names `:latest` (or no tag), which can change under a running lattice; pin a version or a digest, or start the host with --allow-latest"
    )]
    OciLatest {
        /// The reference as given.
        reference: String,
    },
    /// Not a `nats://` artifact reference.
    #[error("`{reference}` is not a `nats://` reference")]
    NotArtifact {
        /// The reference as given.
        reference: String,
    },
    /// A `nats://` reference whose name or version has characters the store does not allow.
    #[error("`{reference}` must be nats://NAME:VERSION (letters, digits, `-`, `_`, `.`)")]
    BadArtifactName {
        /// The reference as given.
        reference: String,
    },
    /// A `nats://` reference without a version, on a host without `--allow-latest`.
    #[error("`{reference}` names no version (or `latest`); pin one, or start the host with --allow-latest")]
    ArtifactLatest {
        /// The reference as given.
        reference: String,
    },
}
