//! Which capability providers run in the lattice, and of which kind. The resolver grants a
//! provider link only while its target runs on some host.
//!
//! This host's own providers are set by the providers actor the moment they start or stop (so
//! `provider.stop` revokes at once for calls that start afterwards); other hosts' come from
//! their `provider_started` / `provider_stopped` / `host_heartbeat` / `host_stopped` events
//! ([`super::directory_feed`]), only from sources that are host keys. Another host not heard from for
//! [`FORGET_AFTER`] is forgotten (a host that died without `host_stopped`, or a source that
//! made itself up), and at most [`MAX_HOSTS`] hosts with [`MAX_PROVIDERS_PER_HOST`] providers
//! each are kept.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::permission::kind::BuiltinImages;
use crate::permission::ProviderKind;

/// Host id → provider id → provider reference.
type Table = BTreeMap<String, BTreeMap<String, String>>;

/// Another host not heard from for this long is forgotten (ten of wasmCloud's 30 s heartbeats).
pub const FORGET_AFTER: Duration = Duration::from_secs(300);
/// Other hosts kept at most.
pub const MAX_HOSTS: usize = 10_000;
/// Providers kept per host at most.
pub const MAX_PROVIDERS_PER_HOST: usize = 1_000;

#[derive(Debug, Default)]
struct State {
    table: Table,
    /// Other hosts, by when they were last heard from (this host is never in it).
    heard: BTreeMap<String, Instant>,
    /// Provider images this host takes for built-ins (the same table on every host).
    images: BuiltinImages,
}

/// A cheap-to-clone handle on the lattice's running providers as this host knows them.
#[derive(Clone, Debug, Default)]
pub struct ProviderDirectory(Arc<RwLock<State>>);

impl ProviderDirectory {
    /// An empty directory that takes the images of `images` for the built-ins they map to.
    pub fn new(images: BuiltinImages) -> Self {
        Self(Arc::new(RwLock::new(State { images, ..State::default() })))
    }

    /// What `reference` runs as here: a built-in (`Some`), or an external provider (`None`).
    ///
    /// # Errors
    /// A built-in reference naming no built-in.
    pub fn builtin(&self, reference: &str) -> Result<Option<ProviderKind>, super::kind::KindError> {
        self.read().images.kind(reference)
    }

    fn write<R>(&self, f: impl FnOnce(&mut Table) -> R) -> R {
        f(&mut self.0.write().unwrap_or_else(PoisonError::into_inner).table)
    }

    /// Another host `host` was heard from: `false` (ignore what it says) when [`MAX_HOSTS`]
    /// others are known already. Forgets the hosts not heard from for [`FORGET_AFTER`].
    pub fn heard(&self, host: &str) -> bool {
        let mut state = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let State { table, heard, .. } = &mut *state;
        let stale: Vec<String> = heard.iter().filter(|(_, at)| at.elapsed() >= FORGET_AFTER).map(|(h, _)| h.clone()).collect();
        for h in stale {
            heard.remove(&h);
            table.remove(&h);
        }
        if !heard.contains_key(host) && heard.len() >= MAX_HOSTS {
            return false;
        }
        heard.insert(host.to_string(), Instant::now());
        true
    }

    /// Provider `id` runs `reference` on `host`.
    pub fn add(&self, host: &str, id: &str, reference: &str) {
        self.write(|t| {
            let providers = t.entry(host.to_string()).or_default();
            if providers.len() < MAX_PROVIDERS_PER_HOST || providers.contains_key(id) {
                providers.insert(id.to_string(), reference.to_string());
            }
        });
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
        let providers: BTreeMap<String, String> = providers.into_iter().take(MAX_PROVIDERS_PER_HOST).collect();
        self.write(|t| t.insert(host.to_string(), providers));
    }

    /// `host` is gone.
    pub fn remove_host(&self, host: &str) {
        let mut state = self.0.write().unwrap_or_else(PoisonError::into_inner);
        state.table.remove(host);
        state.heard.remove(host);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The kind of provider `id` when a built-in provider of that id runs on some host.
    pub fn kind_of(&self, id: &str) -> Option<ProviderKind> {
        let state = self.read();
        state.table.values().filter_map(|p| p.get(id)).find_map(|reference| state.images.kind(reference).ok().flatten())
    }

    /// Whether `id` runs on some host, whatever its kind.
    pub fn runs(&self, id: &str) -> bool {
        self.read().table.values().any(|p| p.contains_key(id))
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

    #[test]
    fn mapped_images_are_builtins_wherever_they_run() {
        let d = ProviderDirectory::new(BuiltinImages::parse(&["wasmcloud"]).unwrap());
        d.add("h1", "httpserver", "ghcr.io/wasmcloud/http-server:0.27.0");
        d.add("h1", "redis", "ghcr.io/wasmcloud/keyvalue-redis:0.30.0");
        assert_eq!(d.kind_of("httpserver"), Some(ProviderKind::HttpServer));
        assert!(!d.runs_external("httpserver"));
        assert!(d.runs_external("redis"), "an image not mapped stays external");
        assert_eq!(d.builtin("ghcr.io/wasmcloud/blobstore-nats:1"), Ok(Some(ProviderKind::Blobstore)));
        assert_eq!(ProviderDirectory::default().kind_of("httpserver"), None);
    }

    #[test]
    fn tables_are_bounded() {
        let d = ProviderDirectory::default();
        d.set_host("h", (0..MAX_PROVIDERS_PER_HOST + 10).map(|i| (format!("p{i}"), "trellis://keyvalue".to_string())));
        d.add("h", "one-more", "trellis://keyvalue");
        assert_eq!(d.read().table["h"].len(), MAX_PROVIDERS_PER_HOST);
        assert!(!d.runs("one-more"));
        for i in 0..MAX_HOSTS {
            assert!(d.heard(&format!("host-{i}")));
        }
        assert!(!d.heard("one-host-more"), "past MAX_HOSTS");
        assert!(d.heard("host-0"), "a known host is still heard");
    }
}
