//! A secret's value as the host holds it: zeroed when dropped, never printed.

use std::collections::BTreeMap;
use std::sync::Arc;

use secrecy::{zeroize::Zeroize, ExposeSecret as _, SecretBox};

/// A secret's value: a string or bytes, as the backend gave it. Serialised as
/// `wasmcloud-core`'s `SecretValue` (`{"kind": "String", "value": …}`), the form a provider
/// receives it in.
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "value")]
pub enum SecretValue {
    /// A string secret.
    String(String),
    /// A binary secret.
    Bytes(Vec<u8>),
}

impl SecretValue {
    /// Its size in bytes.
    pub fn len(&self) -> usize {
        match self {
            Self::String(s) => s.len(),
            Self::Bytes(b) => b.len(),
        }
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Zeroize for SecretValue {
    fn zeroize(&mut self) {
        match self {
            Self::String(s) => s.zeroize(),
            Self::Bytes(b) => b.zeroize(),
        }
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[secret]")
    }
}

/// The secrets one component or provider was given, by the name it asks for them with.
#[derive(Clone, Default)]
pub struct Secrets(Arc<BTreeMap<String, SecretBox<SecretValue>>>);

impl Secrets {
    /// Secrets from fetched values.
    pub fn new(values: BTreeMap<String, SecretBox<SecretValue>>) -> Self {
        Self(Arc::new(values))
    }

    /// Whether a secret called `name` was given.
    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// The value of `name`, exposed: only for handing to the code it was fetched for.
    pub fn expose(&self, name: &str) -> Option<SecretValue> {
        self.0.get(name).map(|v| v.expose_secret().clone())
    }

    /// Every value, exposed: only for handing to the provider they were fetched for.
    pub fn expose_all(&self) -> BTreeMap<String, SecretValue> {
        self.0.iter().map(|(k, v)| (k.clone(), v.expose_secret().clone())).collect()
    }

    /// The names (not secret).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_never_printed() {
        let secrets = Secrets::new(BTreeMap::from([("db".to_string(), SecretBox::new(Box::new(SecretValue::String("hunter2".into()))))]));
        let shown = format!("{secrets:?} {:?}", secrets.expose("db"));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("db"));
        assert_eq!(secrets.expose("db"), Some(SecretValue::String("hunter2".into())));
        // The form wasmcloud-core's SecretValue reads, as a provider's SDK receives it.
        let handed = serde_json::to_value(secrets.expose_all()).expect("json");
        assert_eq!(handed, serde_json::json!({"db": {"kind": "String", "value": "hunter2"}}));
        let bytes = serde_json::to_value(SecretValue::Bytes(vec![1, 2])).expect("json");
        assert_eq!(bytes, serde_json::json!({"kind": "Bytes", "value": [1, 2]}));
    }
}
