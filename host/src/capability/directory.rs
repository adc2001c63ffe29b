//! Which capability providers run in the lattice, and of which kind. The resolver grants a
//! provider link only while its target runs on some host.
//!
//! This host's own providers are set by the providers actor the moment they start or stop (so
//! `provider.stop` revokes at once for calls that start afterwards); other hosts' come from
//! their `provider_started` / `provider_stopped` / `host_heartbeat` / `host_stopped` events
//! ([`super::follow`]).

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use crate::capability::ProviderKind;

/// Host id → provider id → provider reference.
type Table = BTreeMap<String, BTreeMap<String, String>>;

/// A cheap-to-clone handle on the lattice's running providers as this host knows them.
#[derive(Clone, Debug, Default)]
pub struct ProviderDirectory(Arc<RwLock<Table>>);

impl ProviderDirectory {
    fn write<R>(&self, f: impl FnOnce(&mut Table) -> R) -> R {
        f(&mut self.0.write().unwrap_or_else(PoisonError::into_inner))
    }

    /// Provider `id` runs `reference` on `host`.
    pub fn add(&self, host: &str, id: &str, reference: &str) {
        self.write(|t| t.entry(host.to_string()).or_default().insert(id.to_string(), reference.to_string()));
    }

    /// Provider `id` no longer runs on `host`.
    pub fn remove(&self, host: &str, id: &str) {
        self.write(|t| {
            if let Some(p) = t.get_mut(host) {
                p.remove(id);
            }
        });
    }

    /// Everything `host` runs, replacing what was known (a heartbeat).
    pub fn set_host(&self, host: &str, providers: impl IntoIterator<Item = (String, String)>) {
        let providers: BTreeMap<String, String> = providers.into_iter().collect();
        self.write(|t| t.insert(host.to_string(), providers));
    }

    /// `host` is gone.
    pub fn remove_host(&self, host: &str) {
        self.write(|t| t.remove(host));
    }

    /// The kind of provider `id` when a built-in provider of that id runs on some host.
    pub fn kind_of(&self, id: &str) -> Option<ProviderKind> {
        let table = self.0.read().unwrap_or_else(PoisonError::into_inner);
        table.values().filter_map(|p| p.get(id)).find_map(|reference| ProviderKind::parse(reference).ok())
    }

    /// Whether `id` runs on some host, whatever its kind.
    pub fn runs(&self, id: &str) -> bool {
        self.0.read().unwrap_or_else(PoisonError::into_inner).values().any(|p| p.contains_key(id))
    }

    /// Whether `id` is an external provider running on some host (called over wRPC), not a
    /// built-in one and not a component.
    pub fn runs_external(&self, id: &str) -> bool {
        self.runs(id) && self.kind_of(id).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_starts_stops_and_heartbeats() {
        let d = ProviderDirectory::default();
        assert_eq!(d.kind_of("kv"), None);
        d.add("h1", "kv", "trellis://keyvalue");
        d.add("h2", "kv", "wasmcloud+builtin://keyvalue-nats");
        assert_eq!(d.kind_of("kv"), Some(ProviderKind::KeyValue));
        d.remove("h1", "kv");
        assert_eq!(d.kind_of("kv"), Some(ProviderKind::KeyValue), "still on h2");
        d.set_host("h2", [("http".to_string(), "trellis://http-client".to_string())]);
        assert_eq!(d.kind_of("kv"), None);
        assert_eq!(d.kind_of("http"), Some(ProviderKind::HttpClient));
        d.add("h3", "ext", "ghcr.io/acme/redis:1");
        assert!(d.runs("ext"));
        assert_eq!(d.kind_of("ext"), None, "not a built-in");
        d.remove_host("h2");
        assert_eq!(d.kind_of("http"), None);
    }
}
