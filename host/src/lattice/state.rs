//! The mirror of the lattice's links and configs, and the rules links follow.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use trellis_messages::link::Link;

pub use crate::error::LinkConflict;

/// Link name used when a guest has not chosen one.
pub const DEFAULT_LINK_NAME: &str = "default";

/// Links and references by source id, configs by name.
#[derive(Debug, Default)]
struct Mirror {
    links: BTreeMap<String, Vec<Link>>,
    urls: BTreeMap<String, String>,
    configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Subject → `claims.get`'s map of the claims hosts stored for it.
    claims: BTreeMap<String, std::collections::HashMap<String, String>>,
}

/// A cheap-to-clone handle on this host's mirror of the lattice data, kept current by the
/// lattice actor's KV watches and read by guests' link and config calls. Providers follow
/// changes through [`LatticeView::changes`]; the workload actor follows changed component
/// references through [`LatticeView::url_changes`].
#[derive(Clone, Debug)]
pub struct LatticeView(Arc<RwLock<Mirror>>, Arc<tokio::sync::watch::Sender<u64>>, tokio::sync::broadcast::Sender<String>);

/// Changed references a reader may fall behind by before it is told it lagged (and looks at
/// every component instead).
const URL_CHANGES: usize = 4096;

impl Default for LatticeView {
    fn default() -> Self {
        Self(Arc::default(), Arc::new(tokio::sync::watch::Sender::new(0)), tokio::sync::broadcast::channel(URL_CHANGES).0)
    }
}

impl LatticeView {
    /// A receiver that sees a new value after every change.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.1.subscribe()
    }

    /// The ids of components whose spec's reference changed, from now on; a receiver that falls
    /// more than 4,096 behind gets `Lagged` and must look at every id it cares about.
    pub fn url_changes(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.2.subscribe()
    }

    fn changed(&self) {
        self.1.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// The links whose source is `source`.
    pub fn links_from(&self, source: &str) -> Vec<Link> {
        self.read(|m| m.links.get(source).cloned().unwrap_or_default())
    }

    /// The link `source` uses for `ns:pkg/iface` under `name`.
    ///
    /// # Errors
    /// [`NoLink`], naming the missing link.
    pub fn resolve_link(&self, source: &str, name: &str, ns: &str, pkg: &str, iface: &str) -> Result<Link, NoLink> {
        self.read(|m| {
            m.links
                .get(source)
                .and_then(|links| {
                    links.iter().find(|l| {
                        l.name == name && l.wit_namespace == ns && l.wit_package == pkg && l.interfaces.iter().any(|i| i == iface)
                    })
                })
                .cloned()
                .ok_or_else(|| NoLink {
                    name: name.to_string(),
                    from: source.to_string(),
                    interface: format!("{ns}:{pkg}/{iface}"),
                })
        })
    }

    fn read<R>(&self, f: impl FnOnce(&Mirror) -> R) -> R {
        let guard = self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&guard)
    }

    fn write<R>(&self, f: impl FnOnce(&mut Mirror) -> R) -> R {
        let mut guard = self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    /// Sets (or with `None` forgets) the stored claims of `subject`; past `max` subjects a new
    /// one is not kept.
    pub fn set_claims(&self, subject: &str, claims: Option<std::collections::HashMap<String, String>>, max: usize) {
        self.write(|m| match claims {
            Some(c) if m.claims.len() < max || m.claims.contains_key(subject) => {
                m.claims.insert(subject.to_string(), c);
            }
            Some(_) => {}
            None => {
                m.claims.remove(subject);
            }
        });
    }

    /// Every stored claims record, as `claims.get` answers them.
    pub fn claims(&self) -> Vec<std::collections::HashMap<String, String>> {
        self.read(|m| m.claims.values().cloned().collect())
    }

    /// Replaces the links of `source` (an empty list removes them).
    pub fn set_links(&self, source: &str, links: Vec<Link>) {
        self.write(|m| {
            if links.is_empty() {
                m.links.remove(source);
            } else {
                m.links.insert(source.to_string(), links);
            }
        });
        self.changed();
    }

    /// Replaces the spec of `source`: its links and reference (a default spec removes both).
    pub fn set_spec(&self, source: &str, spec: crate::lattice::spec::ComponentSpec) {
        let url_changed = self.write(|m| {
            if spec.url.is_empty() {
                m.urls.remove(source).is_some()
            } else {
                m.urls.insert(source.to_string(), spec.url.clone()).is_none_or(|old| old != spec.url)
            }
        });
        if url_changed {
            // Nobody listening is not an error.
            let _ = self.2.send(source.to_string());
        }
        self.set_links(source, spec.links);
    }

    /// The reference the lattice's spec of component `id` names, if any.
    pub fn url_of(&self, id: &str) -> Option<String> {
        self.read(|m| m.urls.get(id).cloned())
    }

    /// Replaces (or with `None` removes) config `name`.
    pub fn set_config(&self, name: &str, values: Option<BTreeMap<String, String>>) {
        self.write(|m| match values {
            Some(v) => {
                m.configs.insert(name.to_string(), v);
            }
            None => {
                m.configs.remove(name);
            }
        });
        self.changed();
    }

    /// Forgets everything (before a full reload).
    pub fn clear(&self) {
        self.write(|m| *m = Mirror::default());
        self.changed();
    }

    /// Every link, by source.
    pub fn links(&self) -> Vec<Link> {
        self.read(|m| m.links.values().flatten().cloned().collect())
    }

    /// The target of `source`'s link `name` for `ns:pkg/iface`.
    ///
    /// # Errors
    /// [`NoLink`], naming the missing link.
    pub fn resolve(&self, source: &str, name: &str, ns: &str, pkg: &str, iface: &str) -> Result<String, NoLink> {
        self.resolve_link(source, name, ns, pkg, iface).map(|l| l.target)
    }

    /// The record stored under config `name` as it is, secret references included (a secret
    /// reference's record names a backend and key, never a value).
    pub fn config_record(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.read(|m| m.configs.get(name).cloned())
    }

    /// The merged values of configs `names` (later names win); missing names contribute nothing,
    /// and neither do secret references (names beginning [`trellis_messages::SECRET_PREFIX`]):
    /// their backend, key and policy are not config.
    pub fn config(&self, names: &[String]) -> BTreeMap<String, String> {
        self.read(|m| {
            let mut out = BTreeMap::new();
            for n in names.iter().filter(|n| !n.starts_with(trellis_messages::SECRET_PREFIX)) {
                if let Some(values) = m.configs.get(n) {
                    out.extend(values.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
            out
        })
    }
}

/// No link of that name, from that source, for that interface.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no link named `{name}` from `{from}` for `{interface}`; put one with link.put")]
pub struct NoLink {
    /// The link name asked for.
    pub name: String,
    /// The source that would call through it.
    pub from: String,
    /// `ns:pkg/iface`.
    pub interface: String,
}

/// The links of a source after putting `link`: replaces a link with the same target, package
/// and name; refuses one that gives an interface already linked under that name to another
/// target.
///
/// # Errors
/// [`LinkConflict`], naming the conflicting link.
pub fn with_link(existing: &[Link], link: &Link) -> Result<Vec<Link>, LinkConflict> {
    let same_slot = |l: &Link| l.name == link.name && l.wit_namespace == link.wit_namespace && l.wit_package == link.wit_package;
    if let Some(conflict) = existing.iter().find(|l| {
        same_slot(l) && l.target != link.target && l.interfaces.iter().any(|i| link.interfaces.contains(i))
    }) {
        let shared: Vec<&str> =
            conflict.interfaces.iter().filter(|i| link.interfaces.contains(i)).map(String::as_str).collect();
        return Err(LinkConflict {
            name: link.name.clone(),
            from: link.source_id.clone(),
            interface: format!("{}:{}/{{{}}}", link.wit_namespace, link.wit_package, shared.join(", ")),
            target: conflict.target.clone(),
        });
    }
    let mut out: Vec<Link> = existing.iter().filter(|l| !(same_slot(l) && l.target == link.target)).cloned().collect();
    out.push(link.clone());
    Ok(out)
}

/// The links of a source after deleting link `name` for `ns:pkg`.
pub fn without_link(existing: &[Link], name: &str, ns: &str, pkg: &str) -> Vec<Link> {
    existing.iter().filter(|l| !(l.name == name && l.wit_namespace == ns && l.wit_package == pkg)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_changes_name_the_component_whose_reference_changed_and_say_when_a_reader_lagged() {
        use crate::lattice::spec::ComponentSpec;
        use tokio::sync::broadcast::error::TryRecvError;
        let view = LatticeView::default();
        let mut rx = view.url_changes();
        let spec = |url: &str| ComponentSpec { url: url.into(), links: vec![] };
        view.set_spec("a", spec("file:///a1"));
        view.set_spec("a", spec("file:///a1")); // the same reference again: no change
        view.set_spec("b", spec(""));           // no reference before or after: no change
        view.set_spec("a", spec("file:///a2"));
        view.set_spec("a", spec(""));
        let seen: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(seen, ["a", "a", "a"]);
        for i in 0..URL_CHANGES + 1 {
            view.set_spec(&format!("c{i}"), spec("file:///c"));
        }
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Lagged(_))), "a reader that fell behind is told so");
    }

    fn link(target: &str, name: &str, ifaces: &[&str]) -> Link {
        Link {
            source_id: "pinger".into(),
            target: target.into(),
            name: name.into(),
            wit_namespace: "trellis".into(),
            wit_package: "echo".into(),
            interfaces: ifaces.iter().map(|s| s.to_string()).collect(),
            source_config: vec![],
            target_config: vec![],
        }
    }

    #[test]
    fn conflicts_and_replacement() {
        let a = link("echo", "default", &["echo"]);
        let links = with_link(&[], &a).unwrap();
        // Same source/target/package/name replaces.
        let a2 = link("echo", "default", &["echo", "other"]);
        let links = with_link(&links, &a2).unwrap();
        assert_eq!(links, vec![a2.clone()]);
        // Another target for an overlapping interface under the same name conflicts.
        let err = with_link(&links, &link("echo2", "default", &["echo"])).unwrap_err();
        assert!(err.to_string().contains("already points to `echo`"), "{err}");
        assert_eq!(err.target, "echo");
        // Another name is fine.
        let links = with_link(&links, &link("echo2", "backup", &["echo"])).unwrap();
        assert_eq!(links.len(), 2);
        // Deleting one name leaves the other.
        let left = without_link(&links, "default", "trellis", "echo");
        assert_eq!(left, vec![link("echo2", "backup", &["echo"])]);
    }

    #[test]
    fn resolution() {
        let view = LatticeView::default();
        view.set_links("pinger", vec![link("echo", "default", &["echo"]), link("echo2", "backup", &["echo"])]);
        assert_eq!(view.resolve("pinger", "default", "trellis", "echo", "echo").unwrap(), "echo");
        assert_eq!(view.resolve("pinger", "backup", "trellis", "echo", "echo").unwrap(), "echo2");
        let err = view.resolve("pinger", "default", "trellis", "echo", "nope").unwrap_err();
        assert!(err.to_string().contains("no link named `default` from `pinger` for `trellis:echo/nope`"), "{err}");
        assert_eq!(err.interface, "trellis:echo/nope");
        view.set_links("pinger", vec![]);
        assert!(view.resolve("pinger", "default", "trellis", "echo", "echo").is_err());
    }

    #[test]
    fn configs_merge_in_order() {
        let view = LatticeView::default();
        view.set_config("a", Some(BTreeMap::from([("k".into(), "1".into()), ("x".into(), "a".into())])));
        view.set_config("b", Some(BTreeMap::from([("k".into(), "2".into())])));
        let merged = view.config(&["a".into(), "b".into(), "missing".into()]);
        assert_eq!(merged["k"], "2");
        assert_eq!(merged["x"], "a");
        view.set_config("a", None);
        assert_eq!(view.config(&["a".into()]).len(), 0);
    }

    #[test]
    fn secret_references_are_not_config() {
        let view = LatticeView::default();
        view.set_config("app", Some(BTreeMap::from([("greeting".into(), "hi".into())])));
        let reference = BTreeMap::from([("backend".into(), "nats-kv".into()), ("key".into(), "db-password".into())]);
        view.set_config("SECRET_db", Some(reference));
        let merged = view.config(&["app".into(), "SECRET_db".into()]);
        assert_eq!(merged, BTreeMap::from([("greeting".into(), "hi".into())]));
        assert_eq!(view.config_record("SECRET_db").map(|r| r["key"].clone()).as_deref(), Some("db-password"));
    }
}
