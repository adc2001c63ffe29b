//! The capability resolver: the one place that decides what a guest may reach.
//!
//! A component holds no ambient authority. Each host function that reaches beyond the guest's
//! own instance names the [`Capability`] it uses and asks the [`Resolver`], which answers from
//! the component's links: "component C uses capability K under link name N: which provider
//! serves it, with which config" — or a [`Denied`] naming the missing link or the rule that
//! refused. Nothing else in the host grants a guest anything.
//!
//! | capability | granted when | then limited to |
//! |---|---|---|
//! | a component interface (`ns:pkg/iface`) | C has link N for it | that link's target component |
//! | [`Capability::KeyValue`] | C has link N for `wasi:keyvalue/store` whose target is a running key-value provider | the bucket its target config names (`bucket`/`BUCKET`, else the host's default bucket), never a system bucket |
//! | [`Capability::Messaging`] | C has link N for `wasmcloud:messaging/consumer` whose target is a running messaging provider | subjects matching the target config's `subjects` allow-list (none when absent), plus the reply subject of the message being handled; never a lattice system subject ([`subjects::is_system`]) |
//! | delivery of messages (`wasmcloud:messaging/handler`) | a handler link from a messaging provider | its `subscriptions`, none of which may match a lattice subject ([`Resolver::may_subscribe`]) |
//! | delivery of ticks (`trellis:schedule/handler`) | a handler link from a schedule provider | its schedule; the records of ticks live in `TRELLIS_SCHEDULES_*`, a lattice bucket no guest opens ([`check_bucket`]) |
//! | [`Capability::Blobstore`] | C has link N for `wasi:blobstore/blobstore` whose target is a running blobstore provider | containers that are valid bucket names, never a lattice bucket ([`check_bucket`]), and only those the target config's `containers` lists when it lists any ([`Resolver::blob_container`]) |
//! | [`Capability::HttpClient`] | C has link N for `wasi:http/outgoing-handler` whose target is a running HTTP client provider | the hosts, addresses and ports the link's target config allows; never loopback, link-local or metadata addresses unless it names them ([`outbound`]) |
//!
//! Grants are evaluated when the call is made, so a link deleted or a provider stopped anywhere
//! revokes the capability for every call that starts afterwards. WASI itself grants nothing
//! (the guest store in `wasm::state`): no files, environment, sockets or clocks beyond the defaults.

pub mod directory;
pub mod directory_feed;
pub mod kind;
pub mod outbound;
pub mod subjects;
mod denied;
mod watch;

use std::collections::BTreeMap;
use std::sync::Arc;

use trellis_messages::link::Link;
use wasmtime::component::Val;

use crate::lattice::LatticeView;
pub use denied::Denied;
pub use kind::ProviderKind;
pub use watch::{KvWatch, WatchOp};

pub use directory::ProviderDirectory;

/// A capability served by a built-in provider, used through host functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    /// `wasi:keyvalue/store` (and `atomics` on a bucket it opened).
    KeyValue,
    /// `wasmcloud:messaging/consumer`.
    Messaging,
    /// `wasi:http/outgoing-handler`.
    HttpClient,
    /// `wasi:blobstore/blobstore` (and the containers it opens).
    Blobstore,
}

impl Capability {
    /// The interface a link for this capability names: `(namespace, package, interface)`.
    pub fn interface(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::KeyValue => ("wasi", "keyvalue", "store"),
            Self::Messaging => ("wasmcloud", "messaging", "consumer"),
            Self::HttpClient => ("wasi", "http", "outgoing-handler"),
            Self::Blobstore => ("wasi", "blobstore", "blobstore"),
        }
    }

    /// `ns:pkg/iface`, the key a guest's chosen link name is kept under.
    pub fn key(self) -> &'static str {
        match self {
            Self::KeyValue => "wasi:keyvalue/store",
            Self::Messaging => "wasmcloud:messaging/consumer",
            Self::HttpClient => "wasi:http/outgoing-handler",
            Self::Blobstore => "wasi:blobstore/blobstore",
        }
    }

    /// The kind of provider that serves it.
    pub fn provider_kind(self) -> ProviderKind {
        match self {
            Self::KeyValue => ProviderKind::KeyValue,
            Self::Messaging => ProviderKind::Messaging,
            Self::HttpClient => ProviderKind::HttpClient,
            Self::Blobstore => ProviderKind::Blobstore,
        }
    }
}

/// The target of a link call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callee {
    /// A component, called with Trellis's own request/reply (in-process when local).
    Component(String),
    /// An external provider, called over wRPC.
    ExternalProvider(String),
}

/// Where a component's `wasi:keyvalue` goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValueTarget {
    /// A JetStream bucket of the lattice, served by the built-in key-value provider; chosen by
    /// the link, never by the guest.
    Bucket(String),
    /// An external provider (e.g. wasmCloud's Redis provider), called over wRPC
    /// (`wrpc:keyvalue`) with the guest's bucket identifier, as wasmCloud hosts do: the
    /// provider's own store, not the lattice's.
    ExternalProvider(String),
}

/// Where a component's blobstore link goes.
#[derive(Debug, Clone)]
pub enum BlobstoreTarget {
    /// A built-in blobstore provider (the lattice's object store), with the link's grant.
    Builtin(ProviderGrant),
    /// An external provider (e.g. wasmCloud's `blobstore-fs`), called over wRPC
    /// (`wrpc:blobstore`) with the guest's container names, as wasmCloud hosts do.
    ExternalProvider(String),
}

/// A granted provider capability: which provider, through which link, with which config.
#[derive(Debug, Clone)]
pub struct ProviderGrant {
    /// The capability.
    pub capability: Capability,
    /// The link that grants it.
    pub link: Link,
    /// The link's target config, merged.
    pub config: BTreeMap<String, String>,
    /// The link targets an external provider (called over wRPC), not a built-in one.
    pub external: bool,
}

/// Host settings the resolver applies to every guest.
#[derive(Debug, Clone)]
pub struct GuestPolicy {
    /// The control-interface prefix (its subjects are never reachable).
    pub ctl_prefix: String,
    /// The lattice (its wRPC subjects are never reachable).
    pub lattice: String,
    /// Replicas of key-value buckets created for guests.
    pub kv_replicas: usize,
    /// The bucket of a key-value link whose config names none; `None` refuses such links.
    pub kv_default_bucket: Option<String>,
}

impl Default for GuestPolicy {
    fn default() -> Self {
        Self {
            ctl_prefix: trellis_messages::DEFAULT_CTL_PREFIX.into(),
            lattice: trellis_messages::DEFAULT_LATTICE.into(),
            kv_replicas: 1,
            kv_default_bucket: None,
        }
    }
}

/// Answers every capability question of this host's guests. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Resolver {
    view: LatticeView,
    providers: ProviderDirectory,
    policy: Arc<GuestPolicy>,
}

impl Resolver {
    /// A resolver reading links and configs from `view` and running providers from
    /// `providers`.
    pub fn new(view: LatticeView, providers: ProviderDirectory, policy: GuestPolicy) -> Self {
        Self { view, providers, policy: Arc::new(policy) }
    }

    /// The links through which provider `provider` delivers `ns:pkg/iface` to components (its
    /// links as source that name the interface), each with its source config merged: what a
    /// link-following provider serves. The one place providers learn their links from.
    pub fn deliveries(&self, provider: &str, (ns, pkg, iface): (&str, &str, &str)) -> Vec<(Link, BTreeMap<String, String>)> {
        self.view
            .links_from(provider)
            .into_iter()
            .filter(|l| l.wit_namespace == ns && l.wit_package == pkg && l.interfaces.iter().any(|i| i == iface))
            .map(|l| {
                let config = self.view.config(&l.source_config);
                (l, config)
            })
            .collect()
    }

    /// Provider `provider`'s `wasi:keyvalue/watcher` links (it is their source).
    pub fn watcher_links(&self, provider: &str) -> Vec<Link> {
        self.view
            .links_from(provider)
            .into_iter()
            .filter(|l| l.wit_namespace == "wasi" && l.wit_package == "keyvalue" && l.interfaces.iter().any(|i| i == "watcher"))
            .collect()
    }

    /// Whether external provider `provider` may call `component`'s `wasi:keyvalue/watcher`
    /// (it has a watcher link to it), and the link name of the component's own
    /// `wasi:keyvalue/store` link to that provider, through which the bucket it is handed goes.
    ///
    /// # Errors
    /// [`Denied::NoExternalWatch`] without both links; [`Denied`] as [`Self::key_value`] when the
    /// store link does not lead to that provider running as an external one.
    pub fn external_watch(&self, provider: &str, component: &str) -> Result<String, Denied> {
        let refused = || Denied::NoExternalWatch { provider: provider.to_string(), component: component.to_string() };
        if !self.watcher_links(provider).iter().any(|l| l.target == component) {
            return Err(refused());
        }
        let store = self
            .view
            .links_from(component)
            .into_iter()
            .find(|l| l.target == provider && l.wit_namespace == "wasi" && l.wit_package == "keyvalue" && l.interfaces.iter().any(|i| i == "store"))
            .ok_or_else(refused)?;
        match self.key_value(component, &store.name)? {
            KeyValueTarget::ExternalProvider(p) if p == provider => Ok(store.name),
            _ => Err(refused()),
        }
    }

    /// What watcher link `link` watches: the bucket of its configs (source config, then target
    /// config over it: `bucket` or `BUCKET`, else the host's default) and the keys of `watch`
    /// (`SET@key,DEL@key`, see [`KvWatch::parse_keys`]).
    ///
    /// # Errors
    /// [`Denied`] when no bucket is named and there is no default, the bucket is not one a
    /// guest may have, or `watch` cannot be read.
    pub fn kv_watch(&self, link: &Link) -> Result<KvWatch, Denied> {
        let mut config = self.view.config(&link.source_config);
        config.extend(self.view.config(&link.target_config));
        let grant = ProviderGrant { capability: Capability::KeyValue, link: link.clone(), config, external: false };
        let bucket = self.kv_bucket(&grant)?;
        let watch = grant.config.iter().find(|(k, _)| k.eq_ignore_ascii_case("watch")).map(|(_, v)| v.as_str()).unwrap_or_default();
        let keys = KvWatch::parse_keys(watch).map_err(|reason| Denied::Watch {
            link: link.name.clone(),
            source_id: link.source_id.clone(),
            target: link.target.clone(),
            reason,
        })?;
        Ok(KvWatch { bucket, keys })
    }

    /// What the watcher link `link_name` from the built-in key-value provider `provider` to
    /// `target` watches: asked by the host that runs `target` before it calls it with a change
    /// another host forwarded.
    ///
    /// # Errors
    /// [`Denied`] when there is no such link, `provider` is not a running built-in key-value
    /// provider, or the link's watch is refused.
    pub fn kv_watch_of(&self, provider: &str, target: &str, link_name: &str) -> Result<KvWatch, Denied> {
        let link = self
            .watcher_links(provider)
            .into_iter()
            .find(|l| l.target == target && l.name == link_name)
            .ok_or_else(|| Denied::NoWatch { link: link_name.to_string(), source_id: provider.to_string(), target: target.to_string() })?;
        if self.providers.kind_of(provider) != Some(ProviderKind::KeyValue) {
            return Err(Denied::NotRunning {
                link: link_name.to_string(),
                source_id: provider.to_string(),
                interface: "wasi:keyvalue/watcher".into(),
                target: provider.to_string(),
                wanted: ProviderKind::KeyValue,
            });
        }
        self.kv_watch(&link)
    }

    /// The component that `source`'s link `link_name` for `ns:pkg/iface` targets.
    ///
    /// # Errors
    /// [`Denied`] naming the missing link.
    pub fn component(&self, source: &str, link_name: &str, ns: &str, pkg: &str, iface: &str) -> Result<String, Denied> {
        self.view.resolve(source, link_name, ns, pkg, iface).map_err(Denied::from)
    }

    /// What `source`'s link `link_name` for `ns:pkg/iface` calls: a component (Trellis's own
    /// calls), or an external provider running somewhere in the lattice (wRPC). A link to a
    /// built-in provider is not callable this way (built-ins serve their interfaces in-process).
    ///
    /// # Errors
    /// [`Denied`] naming the missing link.
    pub fn callee(&self, source: &str, link_name: &str, ns: &str, pkg: &str, iface: &str) -> Result<Callee, Denied> {
        let target = self.component(source, link_name, ns, pkg, iface)?;
        if self.providers.runs_external(&target) {
            Ok(Callee::ExternalProvider(target))
        } else {
            Ok(Callee::Component(target))
        }
    }

    /// The grant for `source` to use `capability` through link `link_name`.
    ///
    /// # Errors
    /// [`Denied`] when there is no such link, or its target is not a running provider of the
    /// capability's kind.
    pub fn provider(&self, source: &str, link_name: &str, capability: Capability) -> Result<ProviderGrant, Denied> {
        let (ns, pkg, iface) = capability.interface();
        let link = self.view.resolve_link(source, link_name, ns, pkg, iface).map_err(Denied::from)?;
        self.built_in(source, link_name, capability, link)
    }

    /// The grant of `link` (resolved for `capability`), when its target is a running built-in
    /// provider of the capability's kind.
    fn built_in(&self, source: &str, link_name: &str, capability: Capability, link: Link) -> Result<ProviderGrant, Denied> {
        let (ns, pkg, iface) = capability.interface();
        let wanted = capability.provider_kind();
        match self.providers.kind_of(&link.target) {
            Some(kind) if kind == wanted => {}
            Some(kind) => {
                return Err(Denied::OtherKind {
                    link: link_name.to_string(),
                    source_id: source.to_string(),
                    interface: format!("{ns}:{pkg}/{iface}"),
                    target: link.target,
                    actual: kind,
                    wanted,
                })
            }
            None => {
                return Err(Denied::NotRunning {
                    link: link_name.to_string(),
                    source_id: source.to_string(),
                    interface: format!("{ns}:{pkg}/{iface}"),
                    target: link.target,
                    wanted,
                })
            }
        }
        let config = self.view.config(&link.target_config);
        Ok(ProviderGrant { capability, link, config, external: false })
    }

    /// The grant for `source` to use `wasmcloud:messaging/consumer` through link `link_name`:
    /// a built-in messaging provider ([`Self::provider`]), or a running external provider
    /// (`external`; its calls go over wRPC and it publishes on its own connection).
    ///
    /// # Errors
    /// [`Denied`] as for [`Self::provider`].
    pub fn messaging(&self, source: &str, link_name: &str) -> Result<ProviderGrant, Denied> {
        let (ns, pkg, iface) = Capability::Messaging.interface();
        // 0.3 components' links may name the interfaces they import (`producer`,
        // `request-reply`) rather than the `consumer` the providers serve.
        let link = self
            .view
            .resolve_link(source, link_name, ns, pkg, iface)
            .or_else(|e| self.view.resolve_link(source, link_name, ns, pkg, "producer").map_err(|_| e))
            .or_else(|e| self.view.resolve_link(source, link_name, ns, pkg, "request-reply").map_err(|_| e))
            .map_err(Denied::from)?;
        if self.providers.runs_external(&link.target) {
            let config = self.view.config(&link.target_config);
            return Ok(ProviderGrant { capability: Capability::Messaging, link, config, external: true });
        }
        self.built_in(source, link_name, Capability::Messaging, link)
    }

    /// Where `source`'s `wasi:keyvalue` through link `link_name` goes: a running external
    /// provider the link targets, else the bucket of a built-in key-value provider's grant
    /// ([`Self::provider`], [`Self::kv_bucket`]).
    ///
    /// # Errors
    /// [`Denied`] as for those.
    pub fn key_value(&self, source: &str, link_name: &str) -> Result<KeyValueTarget, Denied> {
        let (ns, pkg, iface) = Capability::KeyValue.interface();
        let target = self.view.resolve(source, link_name, ns, pkg, iface).map_err(Denied::from)?;
        if self.providers.runs_external(&target) {
            return Ok(KeyValueTarget::ExternalProvider(target));
        }
        let grant = self.provider(source, link_name, Capability::KeyValue)?;
        self.kv_bucket(&grant).map(KeyValueTarget::Bucket)
    }

    /// The merged configs `names` (what `wasi:config/store` shows a component).
    pub fn config(&self, names: &[String]) -> BTreeMap<String, String> {
        self.view.config(names)
    }

    /// The bucket a key-value grant opens: the link's `bucket` (or `BUCKET`, wasmCloud's name),
    /// else the host's default. The guest's own identifier never chooses it.
    ///
    /// # Errors
    /// [`Denied`] when the link names none and the host has no default, or the name is not a
    /// valid bucket name or is one of the lattice's own buckets.
    pub fn kv_bucket(&self, grant: &ProviderGrant) -> Result<String, Denied> {
        let named = grant.config.get("bucket").or_else(|| grant.config.get("BUCKET"));
        let bucket = named.or(self.policy.kv_default_bucket.as_ref()).ok_or_else(|| Denied::NoBucket {
            link: grant.link.name.clone(),
            source_id: grant.link.source_id.clone(),
            target: grant.link.target.clone(),
        })?;
        check_bucket(bucket)?;
        Ok(bucket.clone())
    }

    /// Where `source`'s `wasi:blobstore` through link `link_name` goes: the external provider
    /// the link targets, else a built-in blobstore provider's grant ([`Self::provider`]).
    ///
    /// # Errors
    /// [`Denied`] as for [`Self::provider`].
    pub fn blobstore(&self, source: &str, link_name: &str) -> Result<BlobstoreTarget, Denied> {
        let (ns, pkg, iface) = Capability::Blobstore.interface();
        let target = self.view.resolve(source, link_name, ns, pkg, iface).map_err(Denied::from)?;
        if self.providers.runs_external(&target) {
            return Ok(BlobstoreTarget::ExternalProvider(target));
        }
        self.provider(source, link_name, Capability::Blobstore).map(BlobstoreTarget::Builtin)
    }

    /// Whether a blobstore grant reaches container `name` (an object-store bucket of the
    /// lattice): a valid bucket name, never one of the lattice's own, and one the link's target
    /// config lists in `containers` (comma-separated; `*` or no `containers` key: any; a list
    /// that names nothing, such as `""`: none).
    ///
    /// # Errors
    /// [`Denied`] naming the rule.
    pub fn blob_container(&self, grant: &ProviderGrant, name: &str) -> Result<(), Denied> {
        check_bucket(name)?;
        let allowed = grant.config.get("containers").map(|list| list.split(',').map(str::trim).filter(|c| !c.is_empty()).collect::<Vec<_>>());
        match allowed {
            Some(list) if !list.iter().any(|c| *c == "*" || *c == name) => Err(Denied::Container {
                container: name.to_string(),
                link: grant.link.name.clone(),
                source_id: grant.link.source_id.clone(),
                allowed: if list.is_empty() { "none".to_string() } else { list.join(", ") },
            }),
            _ => Ok(()),
        }
    }

    /// Replicas of a bucket created for a guest.
    pub fn kv_replicas(&self) -> usize {
        self.policy.kv_replicas
    }

    /// Whether a messaging provider may subscribe to `pattern` on a component's behalf (a
    /// handler link's `subscriptions`): never where the lattice's own subjects could arrive.
    ///
    /// # Errors
    /// [`Denied`] naming the rule.
    pub fn may_subscribe(&self, pattern: &str) -> Result<(), Denied> {
        if subjects::could_match_system(pattern, &self.policy.ctl_prefix, &self.policy.lattice) {
            return Err(Denied::Subscription(pattern.to_string()));
        }
        Ok(())
    }

    /// Whether a messaging grant may publish (or send a request) to `subject`; `reply_to` is the
    /// reply subject of the message the guest is handling, if any.
    ///
    /// # Errors
    /// [`Denied`] naming the rule.
    pub fn may_publish(&self, grant: &ProviderGrant, subject: &str, reply_to: Option<&str>) -> Result<(), Denied> {
        subjects::check_concrete(subject)?;
        let system = subjects::is_system(subject, &self.policy.ctl_prefix, &self.policy.lattice);
        if reply_to == Some(subject) && (!system || subject.starts_with("_INBOX.")) {
            return Ok(());
        }
        if system {
            return Err(Denied::SystemSubject(subject.to_string()));
        }
        // An external provider publishes on its own connection, bounded by its own
        // credentials: without a `subjects` list its link allows every subject but the
        // lattice's (the provider may well be connected to the lattice's servers).
        let listed = grant.config.get("subjects").map(String::as_str);
        if grant.external && listed.is_none() {
            return Ok(());
        }
        let allowed = subjects::allow_list(listed);
        if allowed.iter().any(|p| subjects::matches(p, subject)) {
            return Ok(());
        }
        Err(Denied::Publish {
            link: grant.link.name.clone(),
            source_id: grant.link.source_id.clone(),
            subject: subject.to_string(),
            allowed: if allowed.is_empty() { "no subject".to_string() } else { format!("`{}`", allowed.join("`, `")) },
        })
    }
}

/// The export messaging deliveries call.
pub const MESSAGE_HANDLER: &str = "wasmcloud:messaging/handler@0.2.0.handle-message";

/// The reply subject an invocation may publish to: the `reply-to` of the message a
/// `handle-message` call delivers.
pub fn reply_grant(function: &str, params: &[Val]) -> Option<String> {
    if !(function.starts_with("wasmcloud:messaging/handler") && function.ends_with(".handle-message")) {
        return None;
    }
    let Some(Val::Record(fields)) = params.first() else { return None };
    fields.iter().find(|(n, _)| n == "reply-to").and_then(|(_, v)| match v {
        Val::Option(Some(s)) => match s.as_ref() {
            Val::String(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    })
}

/// `Ok` when `bucket` is a valid JetStream KV bucket name a guest may use: not one of the
/// lattice's own buckets (`LATTICEDATA_*`, `CONFIGDATA_*`, wadm's, `TRELLIS_*`).
///
/// # Errors
/// [`Denied`] saying why.
pub fn check_bucket(bucket: &str) -> Result<(), Denied> {
    if bucket.is_empty() || bucket.len() > 64 || !bucket.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(Denied::BucketName(bucket.to_string()));
    }
    let lower = bucket.to_ascii_lowercase();
    const SYSTEM: &[&str] = &["latticedata_", "configdata_", "wadm", "wasmcloud", "trellis_system", "trellis_artifacts", "trellis_live_", "trellis_schedules"];
    if SYSTEM.iter().any(|p| lower.starts_with(p)) {
        return Err(Denied::SystemBucket(bucket.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
