//! Why code may not start here: the errors of [`super`].

/// Why a component's claims, a provider archive's claims or the trust settings are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// A `--trusted-issuers` entry is not an account public key.
    #[error("trusted issuer `{0}` is not an account public key (56 characters starting with `A`)")]
    NotAccountKey(String),
    /// Signed by an issuer outside a non-empty trusted list.
    #[error("signed by `{0}`, which is not one of this host's trusted issuers (--trusted-issuers)")]
    UntrustedIssuer(String),
    /// The component was changed after it was signed.
    #[error("the component was changed after it was signed: its hash does not match its claims")]
    Tampered,
    /// Not readable as WebAssembly, on a host that runs only signed components.
    #[error("the component is not signed (its sections cannot be read), and this host runs only signed components (--require-signed)")]
    UnreadableUnsigned,
    /// No claims, on a host that runs only signed components.
    #[error("the component is not signed, and this host runs only signed components (--require-signed)")]
    Unsigned,
    /// The embedded claims section cannot be read.
    #[error("the component's embedded claims cannot be read: {0}")]
    Unreadable(String),
    /// The claims token cannot be decoded or checked.
    #[error("the component's claims cannot be checked: {0}")]
    Unchecked(String),
    /// The token's signature does not verify.
    #[error("the component's claims carry an invalid signature")]
    BadSignature,
    /// Past the token's expiry.
    #[error("the component's claims expired ({0})")]
    Expired(String),
    /// Before the token's not-before.
    #[error("the component's claims are not valid yet ({0})")]
    NotYetValid(String),
    /// The claims reader failed outright (it panicked on malformed input).
    #[error("its embedded claims could not be read")]
    ReaderFailed,
    /// Signed by an issuer this host does not trust.
    #[error("the component is {0}")]
    Component(Box<TrustError>),
}

/// Why `trellis sign` cannot sign a component.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The issuer seed is not an account's.
    #[error("the issuer must be an account key (its seed starts with `SA`)")]
    IssuerNotAccount,
    /// The subject key is not a module's.
    #[error("the subject must be a module key (its public key starts with `M`)")]
    SubjectNotModule,
    /// The input lacks the WebAssembly magic.
    #[error("not a WebAssembly file (no `\\0asm` header)")]
    NotWasm,
    /// wascap could not embed the claims.
    #[error("cannot embed the claims: {0}")]
    Embed(String),
}
