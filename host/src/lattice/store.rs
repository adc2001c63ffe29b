//! The lattice's JetStream KV buckets: component specs (links, reference) and configs.

use std::collections::BTreeMap;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use tracing::debug;
use trellis_messages::link::{DeleteInterfaceLinkDefinitionRequest, Link};

use crate::error::{HostError, LinkError, Result};
use crate::lattice::spec::ComponentSpec;
use crate::lattice::state::{with_link, without_link};


/// What [`LatticeStore::delete_link`] found.
#[derive(Debug)]
pub enum LinkDeletion {
    /// The source has no spec (nothing was ever linked from it, or it was deleted).
    NoSpec,
    /// The spec exists; the link that was deleted, if there was one.
    Deleted(Option<Box<Link>>),
}
/// Attempts of a read-modify-write before giving up on a key other writers keep changing.
const CAS_ATTEMPTS: usize = 10;

/// Key of the spec (reference and links) of component or provider `source`.
pub fn link_key(source: &str) -> String {
    format!("COMPONENT_{source}")
}

/// Handles on both buckets of one lattice.
#[derive(Clone, Debug)]
pub struct LatticeStore {
    /// `LATTICEDATA_{lattice}`.
    pub links: kv::Store,
    /// `CONFIGDATA_{lattice}`.
    pub configs: kv::Store,
    js: jetstream::Context,
    lattice: String,
    replicas: usize,
}

fn kv_error(what: &str, e: impl std::fmt::Display) -> HostError {
    HostError::LatticeData(format!("{what}: {e}"))
}

impl LatticeStore {
    /// Opens the lattice's buckets, creating missing ones with `replicas` replicas.
    ///
    /// # Errors
    /// [`HostError::LatticeData`] when JetStream is unavailable or refuses the bucket.
    pub async fn open(nats: &async_nats::Client, lattice: &str, replicas: usize) -> Result<Self> {
        let js = jetstream::new(nats.clone());
        // A cluster that has just started may not have elected its JetStream leader yet.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let opened = async {
                let links = bucket(&js, &format!("LATTICEDATA_{lattice}"), replicas).await?;
                let configs = bucket(&js, &format!("CONFIGDATA_{lattice}"), replicas).await?;
                Ok::<_, HostError>(Self { links, configs, js: js.clone(), lattice: lattice.to_string(), replicas })
            }
            .await;
            match opened {
                Ok(store) => return Ok(store),
                Err(e) if std::time::Instant::now() < deadline => {
                    debug!(error = %e, "lattice buckets not available yet; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
                Err(e) => {
                    return Err(HostError::LatticeData(format!(
                        "{e} (is JetStream enabled on the NATS server? `nats-server -js`)"
                    )))
                }
            }
        }
    }

    /// `TRELLIS_SCHEDULES_{lattice}` (one record per schedule: `trellis_messages::schedule`),
    /// created when missing. Opened only by hosts that run a schedule provider, so hosts
    /// without one need no permission for it.
    ///
    /// # Errors
    /// [`HostError::LatticeData`] when JetStream refuses it.
    pub async fn schedules(&self) -> Result<kv::Store> {
        bucket(&self.js, &trellis_messages::schedule::bucket(&self.lattice), self.replicas).await
    }

    /// The stored spec of `id`, with the revision to update it at (0: no key) and whether it is
    /// in the old layout.
    async fn spec_of(&self, id: &str) -> Result<(ComponentSpec, u64, bool)> {
        match self.links.entry(link_key(id)).await.map_err(|e| kv_error("reading a component spec", e))? {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let decoded = ComponentSpec::decode(&entry.value)
                    .map_err(|e| HostError::LatticeData(format!("stored spec of `{id}`: {e}")))?;
                Ok((decoded.spec, entry.revision, decoded.legacy))
            }
            Some(entry) => Ok((ComponentSpec::default(), entry.revision, false)),
            None => Ok((ComponentSpec::default(), 0, false)),
        }
    }

    /// Writes `spec` for `id` if the key is still at `revision`; `false` when someone else
    /// wrote it first.
    async fn write_spec(&self, id: &str, spec: &ComponentSpec, revision: u64) -> Result<bool> {
        let key = link_key(id);
        let value = Bytes::from(spec.encode().map_err(|e| kv_error("encoding a component spec", e))?);
        let result = if revision == 0 {
            self.links.create(&key, value).await.map(|_| ()).map_err(|e| {
                (e.kind() == kv::CreateErrorKind::AlreadyExists).then_some(()).ok_or_else(|| kv_error("writing a component spec", e))
            })
        } else {
            self.links.update(&key, value, revision).await.map(|_| ()).map_err(|e| {
                (e.kind() == kv::UpdateErrorKind::WrongLastRevision)
                    .then_some(())
                    .ok_or_else(|| kv_error("writing a component spec", e))
            })
        };
        match result {
            Ok(()) => Ok(true),
            Err(Ok(())) => Ok(false),
            Err(Err(e)) => Err(e),
        }
    }

    /// Read-modify-write of `id`'s spec: `change` returns the new spec, or `None` to leave it.
    async fn update_spec(
        &self,
        id: &str,
        mut change: impl FnMut(&ComponentSpec, bool) -> Result<Option<ComponentSpec>>,
    ) -> Result<()> {
        for _ in 0..CAS_ATTEMPTS {
            let (existing, revision, legacy) = self.spec_of(id).await?;
            let Some(spec) = change(&existing, legacy)? else { return Ok(()) };
            if self.write_spec(id, &spec, revision).await? {
                return Ok(());
            }
            debug!(component = %id, "component spec changed concurrently; retrying");
        }
        Err(HostError::LatticeData(format!("the spec of `{id}` keeps changing; try again")))
    }

    /// Records `url` as component `id`'s reference when its spec names none yet (a host
    /// started it from there), as wasmCloud 1.9's host writes it only into a new spec; its
    /// links are kept. A spec that names a reference keeps it: another start or an update on
    /// one host does not move the component on every other host.
    ///
    /// # Errors
    /// [`HostError::LatticeData`] when KV fails.
    pub async fn set_url_if_missing(&self, id: &str, url: &str) -> Result<()> {
        self.update_spec(id, |spec, legacy| {
            Ok((spec.url.is_empty() || legacy).then(|| ComponentSpec { url: if spec.url.is_empty() { url.to_string() } else { spec.url.clone() }, links: spec.links.clone() }))
        })
        .await
    }

    /// Records `url` as component `id`'s reference (a host scaled it from there); its links
    /// are kept.
    ///
    /// # Errors
    /// [`HostError::LatticeData`] when KV fails.
    pub async fn set_url(&self, id: &str, url: &str) -> Result<()> {
        self.update_spec(id, |spec, legacy| {
            Ok((spec.url != url || legacy).then(|| ComponentSpec { url: url.to_string(), links: spec.links.clone() }))
        })
        .await
    }

    /// Rewrites every spec still in Trellis's old layout (a bare array of links) as wasmCloud's
    /// `ComponentSpecification`, so wasmCloud hosts can read it. Returns how many.
    ///
    /// # Errors
    /// [`HostError::LatticeData`] when KV fails.
    pub async fn migrate(&self) -> Result<usize> {
        use futures::TryStreamExt;
        let keys: Vec<String> = match self.links.keys().await {
            Ok(keys) => keys.try_collect().await.map_err(|e| kv_error("listing component specs", e))?,
            Err(e) => return Err(kv_error("listing component specs", e)),
        };
        let mut rewritten = 0;
        for id in keys.iter().filter_map(|k| k.strip_prefix("COMPONENT_")) {
            let mut was_legacy = false;
            self.update_spec(id, |spec, legacy| {
                was_legacy = legacy;
                Ok(legacy.then(|| spec.clone()))
            })
            .await?;
            rewritten += usize::from(was_legacy);
        }
        Ok(rewritten)
    }

    /// Stores `link` after checking its configs exist and it conflicts with no other link.
    ///
    /// # Errors
    /// [`HostError::Link`] ([`crate::error::LinkError`]) when the link is refused, [`HostError::LatticeData`] when KV fails.
    pub async fn put_link(&self, link: &Link) -> Result<()> {
        for name in link.source_config.iter().chain(&link.target_config) {
            if self.config(name).await?.is_none() {
                return Err(LinkError::MissingConfig { from: link.source_id.clone(), to: link.target.clone(), config: name.clone() }.into());
            }
        }
        self.update_spec(&link.source_id, |spec, _| {
            let links = with_link(&spec.links, link).map_err(LinkError::Conflict)?;
            Ok(Some(ComponentSpec { url: spec.url.clone(), links }))
        })
        .await
    }

    /// Deletes a link; deleting one that does not exist succeeds. Answers what there was.
    ///
    /// # Errors
    /// [`HostError::LatticeData`] when KV fails.
    pub async fn delete_link(&self, req: &DeleteInterfaceLinkDefinitionRequest) -> Result<LinkDeletion> {
        let mut outcome = LinkDeletion::NoSpec;
        self.update_spec(&req.source_id, |spec, _| {
            if spec.url.is_empty() && spec.links.is_empty() {
                outcome = LinkDeletion::NoSpec;
                return Ok(None);
            }
            let found = spec.links.iter().find(|l| l.name == req.name && l.wit_namespace == req.wit_namespace && l.wit_package == req.wit_package);
            outcome = LinkDeletion::Deleted(found.cloned().map(Box::new));
            let links = without_link(&spec.links, &req.name, &req.wit_namespace, &req.wit_package);
            Ok((links.len() != spec.links.len()).then(|| ComponentSpec { url: spec.url.clone(), links }))
        })
        .await?;
        Ok(outcome)
    }

    /// Every stored link.
    ///
    /// # Errors
    /// [`HostError::LatticeData`] when KV fails.
    pub async fn all_links(&self) -> Result<Vec<Link>> {
        use futures::TryStreamExt;
        let keys: Vec<String> = match self.links.keys().await {
            Ok(keys) => keys.try_collect().await.map_err(|e| kv_error("listing links", e))?,
            Err(e) => return Err(kv_error("listing links", e)),
        };
        let mut out = Vec::new();
        for key in keys.iter().filter_map(|k| k.strip_prefix("COMPONENT_")) {
            out.extend(self.spec_of(key).await?.0.links);
        }
        Ok(out)
    }

    /// Stores the claims of code this host started under `CLAIMS_{subject}`, where wasmCloud
    /// hosts keep them ([`crate::trust::stored`]).
    ///
    /// # Errors
    /// [`HostError::LatticeData`] when KV fails.
    pub async fn put_claims(&self, claims: &crate::trust::stored::StoredClaims) -> Result<()> {
        let key = format!("{}{}", crate::trust::stored::KEY_PREFIX, claims.subject());
        let bytes = serde_json::to_vec(claims).map_err(|e| kv_error("encoding claims", e))?;
        self.links.put(key, bytes.into()).await.map_err(|e| kv_error("storing claims", e))?;
        Ok(())
    }

    /// Creates or replaces config `name`.
    ///
    /// # Errors
    /// [`HostError::LatticeData`] when the name is not a valid key or KV fails.
    pub async fn put_config(&self, name: &str, values: &BTreeMap<String, String>) -> Result<()> {
        let value = serde_json::to_vec(values).map_err(|e| kv_error("encoding config", e))?;
        self.configs.put(name, value.into()).await.map_err(|e| kv_error(&format!("writing config `{name}`"), e))?;
        Ok(())
    }

    /// Config `name`, if it exists.
    ///
    /// # Errors
    /// [`HostError::LatticeData`] when KV fails or the stored value is not a JSON object.
    pub async fn config(&self, name: &str) -> Result<Option<BTreeMap<String, String>>> {
        match self.configs.get(name).await.map_err(|e| kv_error(&format!("reading config `{name}`"), e))? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| HostError::LatticeData(format!("stored config `{name}` is not a JSON object of strings: {e}"))),
            None => Ok(None),
        }
    }

    /// Deletes config `name`; deleting one that does not exist succeeds.
    ///
    /// # Errors
    /// [`HostError::LatticeData`] when KV fails.
    pub async fn delete_config(&self, name: &str) -> Result<()> {
        self.configs.delete(name).await.map_err(|e| kv_error(&format!("deleting config `{name}`"), e))
    }
}

async fn bucket(js: &jetstream::Context, name: &str, replicas: usize) -> Result<kv::Store> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    let config = kv::Config { bucket: name.to_string(), history: 1, num_replicas: replicas, ..Default::default() };
    match js.create_key_value(config).await {
        Ok(store) => Ok(store),
        // Another host created it meanwhile.
        Err(create) => js
            .get_key_value(name)
            .await
            .map_err(|_| kv_error(&format!("cannot create KV bucket `{name}` with {replicas} replica(s)"), create)),
    }
}
