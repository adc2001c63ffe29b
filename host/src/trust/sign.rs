//! Signing components the way `wash` does: wasmCloud's claims, signed by an account (issuer)
//! nkey, embedded by `wascap` in the `wasmcloud_jwt` custom section together with the hash of
//! the component without it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nkeys::KeyPair;
use wascap::jwt::{Claims, Component};

/// What a signature says about a component.
#[derive(Debug, Default)]
pub struct SignOptions {
    /// The component's name.
    pub name: String,
    /// The component's own key (`M…`, the claims' subject); a new one when `None`.
    pub subject: Option<KeyPair>,
    /// Valid for this long from now; forever when `None`.
    pub expires_in: Option<Duration>,
    /// Not valid until this long from now.
    pub not_before_in: Option<Duration>,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// Revision.
    pub rev: Option<i32>,
    /// Version.
    pub ver: Option<String>,
    /// Call alias.
    pub call_alias: Option<String>,
}

fn from_now(d: Duration) -> u64 {
    (SystemTime::now() + d).duration_since(UNIX_EPOCH).map_or(0, |t| t.as_secs())
}

/// The component `bytes` signed by `issuer` (an account key, `SA…` seed) with `options`; any
/// earlier signature is replaced.
///
/// # Errors
/// The issuer is not an account key, or `bytes` is not WebAssembly.
pub fn sign(bytes: &[u8], issuer: &KeyPair, options: SignOptions) -> Result<Vec<u8>, super::SignError> {
    use super::SignError;
    if !issuer.public_key().starts_with('A') {
        return Err(SignError::IssuerNotAccount);
    }
    if !bytes.starts_with(b"\0asm") {
        return Err(SignError::NotWasm);
    }
    let subject = options.subject.unwrap_or_else(KeyPair::new_module);
    if !subject.public_key().starts_with('M') {
        return Err(SignError::SubjectNotModule);
    }
    let tags = (!options.tags.is_empty()).then_some(options.tags);
    let claims = Claims::<Component>::with_dates(
        options.name,
        issuer.public_key(),
        subject.public_key(),
        tags,
        options.not_before_in.map(from_now),
        options.expires_in.map(from_now),
        false,
        options.rev,
        options.ver,
        options.call_alias,
    );
    wascap::wasm::embed_claims(bytes, &claims, issuer).map_err(|e| SignError::Embed(e.to_string()))
}
