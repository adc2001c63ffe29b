//! What `COMPONENT_{id}` in `LATTICEDATA_{lattice}` holds: wasmCloud 1.x's
//! `ComponentSpecification`, `{"url": "<reference>", "links": [Link…]}`, so wasmCloud hosts and
//! Trellis hosts on one lattice read each other's specs. `url` is the component's reference,
//! written when a host scales it and kept when only its links change (empty until then, as
//! wasmCloud leaves it for a link put before any scale).
//!
//! Trellis once stored a bare array of links there; [`ComponentSpec::decode`] still reads it,
//! and the lattice store rewrites such values in the current layout when a host starts.

use serde::{Deserialize, Serialize};
use trellis_messages::link::Link;

/// `ComponentSpecification`, field for field and in wasmCloud's order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentSpec {
    /// The component's reference (file, OCI, …); empty when no host has scaled it yet.
    #[serde(default)]
    pub url: String,
    /// Every link whose source is the component.
    #[serde(default)]
    pub links: Vec<Link>,
}

/// A stored value, and whether it was in the old layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The spec.
    pub spec: ComponentSpec,
    /// Whether the value was Trellis's old bare array of links (to be rewritten).
    pub legacy: bool,
}

/// A stored value that is neither a component spec nor the old bare array of links; holds
/// why it is not a spec.
#[derive(Debug, thiserror::Error)]
#[error("not a component specification ({{\"url\": …, \"links\": […]}}): {0}")]
pub struct NotASpec(serde_json::Error);

impl ComponentSpec {
    /// Reads a stored value: the spec, or the old bare array of links.
    ///
    /// # Errors
    /// Why the value is neither.
    pub fn decode(value: &[u8]) -> Result<Decoded, NotASpec> {
        match serde_json::from_slice::<ComponentSpec>(value) {
            Ok(spec) => Ok(Decoded { spec, legacy: false }),
            Err(spec_error) => match serde_json::from_slice::<Vec<Link>>(value) {
                Ok(links) => Ok(Decoded { spec: ComponentSpec { url: String::new(), links }, legacy: true }),
                Err(_) => Err(NotASpec(spec_error)),
            },
        }
    }

    /// The value to store.
    ///
    /// # Errors
    /// When serialization fails (it does not for these types).
    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_layouts_and_writes_wasmclouds() {
        let link = Link::new("a", "b", "default", "wasi", "keyvalue", &["store"]);
        let spec = ComponentSpec { url: "file:///a.wasm".into(), links: vec![link.clone()] };
        let bytes = spec.encode().unwrap();
        assert!(std::str::from_utf8(&bytes).unwrap().starts_with("{\"url\":\"file:///a.wasm\",\"links\":[{\"source_id\":\"a\""));
        assert_eq!(ComponentSpec::decode(&bytes).unwrap(), Decoded { spec: spec.clone(), legacy: false });
        let old = serde_json::to_vec(&vec![link.clone()]).unwrap();
        assert_eq!(ComponentSpec::decode(&old).unwrap(), Decoded { spec: ComponentSpec { url: String::new(), links: vec![link] }, legacy: true });
        // wasmCloud writes `url` only for a spec made by a link put: links default to empty.
        assert_eq!(ComponentSpec::decode(br#"{"url":""}"#).unwrap().spec, ComponentSpec::default());
        assert!(ComponentSpec::decode(b"42").unwrap_err().to_string().contains("not a component specification"));
    }
}
