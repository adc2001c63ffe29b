//! Claims as wasmCloud 1.x hosts keep them for the lattice: each host that starts signed code
//! puts its claims, without the signature, under `CLAIMS_{subject}` in the lattice's data
//! bucket (`LATTICEDATA_{lattice}`), every host watches them, and `claims.get` answers them
//! all. Trellis writes and reads the same records ([`StoredClaims`], byte-compatible with
//! wasmCloud's), so `claims.get` on any host of a mixed lattice answers the same set.
//!
//! They are what some host said it ran, unsigned: nothing decides trust from them (that is
//! [`super::TrustPolicy`], on the signed bytes). A record whose key does not name its subject
//! is ignored, as wasmCloud ignores it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{ComponentClaims, ProviderClaims};

/// The key prefix of claims in the lattice's data bucket.
pub const KEY_PREFIX: &str = "CLAIMS_";

/// Records kept at most (a bucket with more is answered in part).
pub const MAX_RECORDS: usize = 10_000;

/// Bytes of one stored record read at most (wasmCloud's are a few hundred; a larger one is
/// ignored).
pub const MAX_RECORD_BYTES: usize = 16 << 10;

/// Bytes of stored records one `claims.get` answer carries at most, so it stays within NATS's
/// default max payload (1 MiB); past it the answer leaves the rest out.
pub const MAX_ANSWER_BYTES: usize = 768 << 10;

/// About how many bytes `map` takes in a JSON answer.
pub fn answer_bytes(map: &HashMap<String, String>) -> usize {
    map.iter().map(|(k, v)| k.len() + v.len() + 6).sum::<usize>() + 2
}

/// One stored record: wasmCloud's `StoredClaims` (untagged: a component's has `call_alias`
/// and `tags`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StoredClaims {
    /// A component's.
    Component(StoredComponentClaims),
    /// A provider's.
    Provider(StoredProviderClaims),
}

/// A component's stored claims.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredComponentClaims {
    call_alias: String,
    #[serde(alias = "iss")]
    issuer: String,
    name: String,
    #[serde(alias = "rev")]
    revision: String,
    #[serde(alias = "sub")]
    subject: String,
    #[serde(deserialize_with = "comma_or_list")]
    tags: Vec<String>,
    version: String,
}

/// A provider's stored claims.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredProviderClaims {
    #[serde(alias = "iss")]
    issuer: String,
    name: String,
    #[serde(alias = "rev")]
    revision: String,
    #[serde(alias = "sub")]
    subject: String,
    version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    config_schema: Option<String>,
}

/// Tags as earlier hosts wrote them (one comma-separated string) or as a list.
fn comma_or_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Tags {
        List(Vec<String>),
        Comma(String),
    }
    Ok(match Tags::deserialize(deserializer)? {
        Tags::List(list) => list,
        Tags::Comma(s) => s.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect(),
    })
}

impl StoredClaims {
    /// A component's claims as stored.
    pub fn component(claims: &ComponentClaims) -> Self {
        let meta = claims.metadata.clone().unwrap_or_default();
        Self::Component(StoredComponentClaims {
            call_alias: meta.call_alias.unwrap_or_default(),
            issuer: claims.issuer.clone(),
            name: meta.name.unwrap_or_default(),
            revision: meta.rev.unwrap_or_default().to_string(),
            subject: claims.subject.clone(),
            tags: meta.tags.unwrap_or_default(),
            version: meta.ver.unwrap_or_default(),
        })
    }

    /// A provider's claims as stored.
    pub fn provider(claims: &ProviderClaims) -> Self {
        let meta = claims.metadata.clone().unwrap_or_default();
        Self::Provider(StoredProviderClaims {
            issuer: claims.issuer.clone(),
            name: meta.name.unwrap_or_default(),
            revision: meta.rev.unwrap_or_default().to_string(),
            subject: claims.subject.clone(),
            version: meta.ver.unwrap_or_default(),
            config_schema: meta.config_schema.map(|s| s.to_string()),
        })
    }

    /// Whose claims these are (the key is `CLAIMS_{subject}`).
    pub fn subject(&self) -> &str {
        match self {
            Self::Component(c) => &c.subject,
            Self::Provider(p) => &p.subject,
        }
    }

    /// The record under `key`, when it is one, names the key's subject and is at most
    /// [`MAX_RECORD_BYTES`].
    pub fn read(key: &str, value: &[u8]) -> Option<Self> {
        if value.len() > MAX_RECORD_BYTES {
            return None;
        }
        let subject = key.strip_prefix(KEY_PREFIX)?;
        serde_json::from_slice::<Self>(value).ok().filter(|c| c.subject() == subject)
    }

    /// `claims.get`'s map of it, as wasmCloud 1.x answers it (the short and long names both).
    pub fn to_map(&self) -> HashMap<String, String> {
        let (issuer, name, revision, subject, version) = match self {
            Self::Component(c) => (&c.issuer, &c.name, &c.revision, &c.subject, &c.version),
            Self::Provider(p) => (&p.issuer, &p.name, &p.revision, &p.subject, &p.version),
        };
        let mut map = HashMap::from([
            ("iss".to_string(), issuer.clone()),
            ("issuer".to_string(), issuer.clone()),
            ("name".to_string(), name.clone()),
            ("rev".to_string(), revision.clone()),
            ("revision".to_string(), revision.clone()),
            ("sub".to_string(), subject.clone()),
            ("subject".to_string(), subject.clone()),
            ("version".to_string(), version.clone()),
        ]);
        match self {
            Self::Component(c) => {
                map.insert("call_alias".into(), c.call_alias.clone());
                map.insert("tags".into(), c.tags.join(","));
            }
            Self::Provider(p) => {
                map.insert("config_schema".into(), p.config_schema.clone().unwrap_or_default());
            }
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records as a wasmCloud 1.9 host writes them, read back; a record under another
    /// subject's key is not believed.
    #[test]
    fn wasmclouds_records_read_and_answer_as_wasmcloud_answers() {
        let component = br#"{"call_alias":"","issuer":"ACOJ","name":"echo","revision":"3","subject":"MBCF","tags":["a","b"],"version":"0.1.0"}"#;
        let stored = StoredClaims::read("CLAIMS_MBCF", component).expect("a component's");
        assert!(matches!(stored, StoredClaims::Component(_)));
        let map = stored.to_map();
        assert_eq!(map["tags"], "a,b");
        assert_eq!((map["sub"].as_str(), map["subject"].as_str(), map["rev"].as_str()), ("MBCF", "MBCF", "3"));
        let older = br#"{"call_alias":"","iss":"ACOJ","name":"echo","rev":"3","sub":"MBCF","tags":"a, b","version":"0.1.0"}"#;
        assert_eq!(StoredClaims::read("CLAIMS_MBCF", older), Some(stored.clone()), "short names and comma tags");
        let provider = br#"{"issuer":"ACOJ","name":"kv","revision":"0","subject":"VABC","version":"1"}"#;
        let p = StoredClaims::read("CLAIMS_VABC", provider).expect("a provider's");
        assert!(matches!(p, StoredClaims::Provider(_)) && p.to_map()["config_schema"].is_empty());
        assert!(StoredClaims::read("CLAIMS_MOTHER", component).is_none(), "the key names another subject");
        assert!(StoredClaims::read("COMPONENT_x", component).is_none());
        assert!(StoredClaims::read("CLAIMS_MBCF", b"{").is_none());
        let padded = format!(r#"{{"call_alias":"{}","issuer":"ACOJ","name":"echo","revision":"3","subject":"MBCF","tags":[],"version":""}}"#, "x".repeat(MAX_RECORD_BYTES));
        assert!(StoredClaims::read("CLAIMS_MBCF", padded.as_bytes()).is_none(), "too large");
        assert_eq!(serde_json::from_slice::<StoredClaims>(&serde_json::to_vec(&stored).unwrap()).unwrap(), stored);
    }
}
