//! Host identity: an nkey server key (`N…`), generated per run or loaded from a seed.

use nkeys::{KeyPair, KeyPairType};

use crate::error::{HostError, Result};

/// Who this host is on the lattice.
#[derive(Debug)]
pub struct HostIdentity {
    /// The host's key pair; the public key is the host id.
    key: KeyPair,
    /// A human-friendly name shown by tools.
    friendly_name: String,
}

impl HostIdentity {
    /// A new random identity, or one from `seed` (an `SN…` server seed).
    ///
    /// # Errors
    /// [`HostError::Seed`] when the seed does not decode or is not a server key.
    pub fn new(seed: Option<&str>, friendly_name: Option<String>) -> Result<Self> {
        let key = match seed {
            None => KeyPair::new_server(),
            Some(seed) => {
                let key = KeyPair::from_seed(seed.trim()).map_err(|e| HostError::Seed(e.to_string()))?;
                if key.key_pair_type() != KeyPairType::Server {
                    return Err(HostError::Seed(format!(
                        "expected a server seed (starting `SN`), got a {:?} key",
                        key.key_pair_type()
                    )));
                }
                key
            }
        };
        let friendly_name = friendly_name.unwrap_or_else(|| friendly_name_for(&key.public_key()));
        Ok(Self { key, friendly_name })
    }

    /// The host id (the public key).
    pub fn id(&self) -> String {
        self.key.public_key()
    }

    /// The friendly name.
    pub fn friendly_name(&self) -> &str {
        &self.friendly_name
    }

    /// `data` signed with the host key (Ed25519): what the host says about itself, which
    /// others check against its id ([`verify`]).
    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        // Signing with a seeded key pair cannot fail; an empty signature would fail to verify.
        self.key.sign(data).unwrap_or_default()
    }
}

/// What a host signs of a message it publishes (an event, a control reply): the subject it goes
/// to and its payload, so a signed message cannot be replayed on another subject (another
/// lattice's events, another request's reply).
/// Prefixed with what they are, so that no signature of a message is also one of anything else
/// the host key signs (liveness records).
fn message_bytes(subject: &str, payload: &[u8]) -> Vec<u8> {
    [b"trellis-message-v1\n".as_slice(), subject.as_bytes(), b"\n", payload].concat()
}

impl HostIdentity {
    /// The `Trellis-Signature` header of a message this host publishes on `subject`: its
    /// signature of the subject and `payload`, base64url without padding.
    pub fn sign_message(&self, subject: &str, payload: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.sign(&message_bytes(subject, payload)))
    }
}

/// Why a signature is not a host's.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// The id does not decode as a public nkey.
    #[error("`{id}` is not a host key: {source}")]
    NotAKey { id: String, source: nkeys::error::Error },
    /// The id is a public nkey, of another kind than a server's.
    #[error("`{0}` is not a host (server) key")]
    NotAHostKey(String),
    /// The header is not base64url.
    #[error("the signature is not base64url: {0}")]
    NotBase64(#[from] base64::DecodeError),
    /// Someone else signed, or something else.
    #[error("the signature is not `{0}`'s")]
    NotTheHosts(String),
}

/// Whether `signature` (a `Trellis-Signature` header) is host `id`'s signature of a message
/// with `subject` and `payload`.
///
/// # Errors
/// Why not.
pub fn verify_message(id: &str, subject: &str, payload: &[u8], signature: &str) -> std::result::Result<(), SignatureError> {
    use base64::Engine as _;
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature)?;
    verify(id, &message_bytes(subject, payload), &signature)
}

/// Whether `signature` is host `id`'s signature of `data`: `id` must be a server public key.
///
/// # Errors
/// Why not.
pub fn verify(id: &str, data: &[u8], signature: &[u8]) -> std::result::Result<(), SignatureError> {
    let key = KeyPair::from_public_key(id).map_err(|source| SignatureError::NotAKey { id: id.into(), source })?;
    if key.key_pair_type() != KeyPairType::Server {
        return Err(SignatureError::NotAHostKey(id.into()));
    }
    key.verify(data, signature).map_err(|_| SignatureError::NotTheHosts(id.into()))
}

/// A stable, readable name derived from the host id, e.g. `quiet-river-4821`.
fn friendly_name_for(id: &str) -> String {
    const ADJ: [&str; 16] = [
        "quiet", "bold", "misty", "green", "swift", "calm", "bright", "amber", "silver", "gentle", "brave", "lucky",
        "sunny", "frosty", "wild", "tidy",
    ];
    const NOUN: [&str; 16] = [
        "river", "vine", "meadow", "cedar", "harbor", "canyon", "willow", "summit", "garden", "orchard", "lagoon",
        "prairie", "grove", "ridge", "brook", "trellis",
    ];
    let h = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    // Truncations are intended: we only want a few bits of the hash for each part.
    let adj = ADJ[(h & 15) as usize];
    let noun = NOUN[((h >> 4) & 15) as usize];
    format!("{adj}-{noun}-{}", (h >> 8) % 10_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_signature_holds_for_its_subject_and_payload_only() {
        let host = HostIdentity::new(None, None).unwrap();
        let sig = host.sign_message("wasmbus.evt.a.host_heartbeat", b"{}");
        assert!(verify_message(&host.id(), "wasmbus.evt.a.host_heartbeat", b"{}", &sig).is_ok());
        assert!(verify_message(&host.id(), "wasmbus.evt.b.host_heartbeat", b"{}", &sig).is_err(), "another subject");
        assert!(verify_message(&host.id(), "wasmbus.evt.a.host_heartbeat", b"{ }", &sig).is_err(), "another payload");
        let other = HostIdentity::new(None, None).unwrap();
        assert!(verify_message(&other.id(), "wasmbus.evt.a.host_heartbeat", b"{}", &sig).is_err(), "another host");
        assert!(matches!(verify_message(&host.id(), "wasmbus.evt.a.host_heartbeat", b"{}", "not base64!"), Err(SignatureError::NotBase64(_))));
        assert!(matches!(verify_message(&other.id(), "s", b"{}", &sig), Err(SignatureError::NotTheHosts(_))));
        let user = KeyPair::new_user().public_key();
        assert!(matches!(verify_message(&user, "s", b"{}", &sig), Err(SignatureError::NotAHostKey(_))));
        assert!(matches!(verify_message("NOPE", "s", b"{}", &sig), Err(SignatureError::NotAKey { .. })));
    }

    #[test]
    fn generated_id_is_a_server_key() {
        let id = HostIdentity::new(None, None).unwrap();
        assert!(id.id().starts_with('N'));
        assert_eq!(id.id().len(), 56);
    }

    #[test]
    fn seed_round_trips() {
        let kp = KeyPair::new_server();
        let id = HostIdentity::new(Some(&kp.seed().unwrap()), Some("h1".into())).unwrap();
        assert_eq!(id.id(), kp.public_key());
        assert_eq!(id.friendly_name(), "h1");
    }

    #[test]
    fn rejects_non_server_seed() {
        let user = KeyPair::new_user();
        let err = HostIdentity::new(Some(&user.seed().unwrap()), None).unwrap_err();
        assert!(err.to_string().contains("expected a server seed"), "{err}");
        let err = HostIdentity::new(Some("SNnotaseed"), None).unwrap_err();
        assert!(err.to_string().starts_with("invalid host seed"), "{err}");
    }
}
