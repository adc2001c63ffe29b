//! Which code may run: the signed claims wasmCloud embeds in components (a `wascap` JWT in the
//! custom section `wasmcloud_jwt`, or the legacy `jwt`) and puts in provider archives, checked
//! against this host's [`TrustPolicy`]. What a running guest may reach is decided elsewhere
//! (`capability`); whether its code may start at all is decided here, and only here.
//!
//! Reading and verifying is wasmCloud's own `wascap` crate, as wasmCloud's host does it
//! (`extract_claims`, then `validate_token`): the Ed25519 signature by the issuer's nkey, the
//! hash of the component without the claims section, expiry and not-before. A component whose
//! embedded claims fail any check is refused whatever the policy says; the policy adds whether
//! unsigned code is refused and which issuers are trusted.

mod error;
pub mod policy;
pub mod sign;
pub mod stored;

pub use error::{SignError, TrustError};

use std::collections::HashMap;

use wascap::jwt::{self, CapabilityProvider, Component};

/// A component's claims.
pub type ComponentClaims = jwt::Claims<Component>;
/// A component's claims with the JWT they were read from.
pub type ComponentToken = jwt::Token<Component>;
/// A provider archive's claims with the JWT they were read from.
pub type ProviderToken = jwt::Token<CapabilityProvider>;
/// A provider archive's claims.
pub type ProviderClaims = jwt::Claims<CapabilityProvider>;

/// What this host lets start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustPolicy {
    /// Refuse components and external providers that carry no valid claims.
    pub require_signed: bool,
    /// Account public keys (`A…`) whose signatures are trusted; empty: any valid signature.
    pub trusted_issuers: Vec<String>,
}

impl TrustPolicy {
    /// `Ok` when `issuer` may sign code that runs here.
    ///
    /// # Errors
    /// The issuer is not in a non-empty trusted list.
    pub fn check_issuer(&self, issuer: &str) -> Result<(), TrustError> {
        if self.trusted_issuers.is_empty() || self.trusted_issuers.iter().any(|t| t == issuer) {
            return Ok(());
        }
        Err(TrustError::UntrustedIssuer(issuer.to_string()))
    }

    /// Checks the settings themselves: every trusted issuer must be an account public key.
    ///
    /// # Errors
    /// Names the first key that is not one.
    pub fn validate(&self) -> Result<(), TrustError> {
        for key in &self.trusted_issuers {
            let valid = key.starts_with('A') && nkeys::KeyPair::from_public_key(key).is_ok();
            if !valid {
                return Err(TrustError::NotAccountKey(key.clone()));
            }
        }
        Ok(())
    }

    /// The claims of the component `bytes` after every check, `None` when it has none and that
    /// is allowed.
    ///
    /// # Errors
    /// Why the component may not start, in words for `component_scale_failed`.
    pub fn component(&self, bytes: &[u8]) -> Result<Option<ComponentClaims>, TrustError> {
        self.component_token(bytes).map(|t| t.map(|t| t.claims))
    }

    /// As [`Self::component`], with the claims' JWT as signed (what a secrets backend is shown).
    ///
    /// # Errors
    /// As [`Self::component`].
    pub fn component_token(&self, bytes: &[u8]) -> Result<Option<ComponentToken>, TrustError> {
        let token = match wascap::wasm::extract_claims(bytes) {
            Ok(token) => token,
            // wascap does not export its error kinds; this is its text for a hash mismatch.
            Err(e) if e.to_string() == "Invalid module hash" => return Err(TrustError::Tampered),
            // Not readable as WebAssembly at all: no claims can be found, and the compiler
            // says what is wrong with the file (an unsigned file, for these settings).
            Err(e) if e.to_string().starts_with("I/O error") => {
                if self.require_signed {
                    return Err(TrustError::UnreadableUnsigned);
                }
                return Ok(None);
            }
            Err(e) => return Err(TrustError::Unreadable(e.to_string())),
        };
        let Some(token) = token else {
            if self.require_signed {
                return Err(TrustError::Unsigned);
            }
            return Ok(None);
        };
        let check = jwt::validate_token::<Component>(&token.jwt).map_err(|e| TrustError::Unchecked(e.to_string()))?;
        if !check.signature_valid {
            return Err(TrustError::BadSignature);
        }
        if check.expired {
            return Err(TrustError::Expired(check.expires_human));
        }
        if check.cannot_use_yet {
            return Err(TrustError::NotYetValid(check.not_before_human));
        }
        self.check_issuer(&token.claims.issuer).map_err(|e| TrustError::Component(Box::new(e)))?;
        Ok(Some(token))
    }
}

/// One component's claims in the shape wasmCloud's `claims.get` answers with (the short and
/// long names both, as wasmCloud 1.x sends them).
pub fn component_map(claims: &ComponentClaims) -> HashMap<String, String> {
    let meta = claims.metadata.clone().unwrap_or_default();
    let mut map = common_map(&claims.issuer, &claims.subject, meta.name, meta.rev, meta.ver);
    map.insert("call_alias".into(), meta.call_alias.unwrap_or_default());
    map.insert("tags".into(), meta.tags.unwrap_or_default().join(","));
    map
}

/// A provider archive's claims as wasmCloud 1.9 puts them in `provider_started`.
pub fn provider_event_claims(claims: &ProviderClaims) -> serde_json::Value {
    let not_before = claims.not_before.map_or_else(|| "never".to_string(), |n| n.to_string());
    let expires = claims.expires.map_or_else(|| "never".to_string(), |n| n.to_string());
    let meta = claims.metadata.as_ref();
    serde_json::json!({
        "issuer": claims.issuer,
        // 1.9 sends it, always empty.
        "tags": serde_json::Value::Null,
        // Empty where an archive names none (1.9 sends null, which wadm 0.21's types refuse).
        "name": meta.and_then(|m| m.name.clone()).unwrap_or_default(),
        "version": meta.and_then(|m| m.ver.clone()).unwrap_or_default(),
        "not_before_human": not_before,
        "expires_human": expires,
    })
}

/// One provider's claims in `claims.get`'s shape.
pub fn provider_map(claims: &ProviderClaims) -> HashMap<String, String> {
    let meta = claims.metadata.clone().unwrap_or_default();
    let mut map = common_map(&claims.issuer, &claims.subject, meta.name, meta.rev, meta.ver);
    map.insert("config_schema".into(), meta.config_schema.map(|s| s.to_string()).unwrap_or_default());
    map
}

/// The fields components and providers share in `claims.get` (wasmCloud 1.x sends the short
/// and the long names).
fn common_map(issuer: &str, subject: &str, name: Option<String>, rev: Option<i32>, ver: Option<String>) -> HashMap<String, String> {
    let revision = rev.unwrap_or_default().to_string();
    HashMap::from([
        ("iss".into(), issuer.to_string()),
        ("issuer".into(), issuer.to_string()),
        ("name".into(), name.unwrap_or_default()),
        ("rev".into(), revision.clone()),
        ("revision".into(), revision),
        ("sub".into(), subject.to_string()),
        ("subject".into(), subject.to_string()),
        ("version".into(), ver.unwrap_or_default()),
    ])
}

/// The `claims` of a `component_scaled` event, as wasmCloud's host writes them.
pub fn event_claims(claims: &ComponentClaims) -> serde_json::Value {
    let not_before = claims.not_before.map_or_else(|| "never".to_string(), |n| n.to_string());
    let expires = claims.expires.map_or_else(|| "never".to_string(), |n| n.to_string());
    match &claims.metadata {
        Some(c) => serde_json::json!({
            "call_alias": c.call_alias,
            "issuer": claims.issuer,
            "tags": c.tags,
            "name": c.name,
            "version": c.ver,
            "revision": c.rev,
            "not_before_human": not_before,
            "expires_human": expires,
        }),
        None => serde_json::json!({ "issuer": claims.issuer, "not_before_human": not_before, "expires_human": expires }),
    }
}
