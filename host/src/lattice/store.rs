//! The lattice's JetStream KV buckets: links and configs.

use std::collections::BTreeMap;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use tracing::debug;
use trellis_messages::link::{DeleteInterfaceLinkDefinitionRequest, Link};

use crate::error::{HostError, Result};
use crate::lattice::state::{with_link, without_link};

/// Attempts of a read-modify-write before giving up on a key other writers keep changing.
const CAS_ATTEMPTS: usize = 10;

/// Key of the links of `source`.
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
                Ok::<_, HostError>(Self { links, configs })
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

    /// The stored links of `source`, with the revision to update them at (0: no key).
    async fn links_of(&self, source: &str) -> Result<(Vec<Link>, u64)> {
        match self.links.entry(link_key(source)).await.map_err(|e| kv_error("reading links", e))? {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let links = serde_json::from_slice(&entry.value).map_err(|e| {
                    HostError::LatticeData(format!("stored links of `{source}` are not valid JSON: {e}"))
                })?;
                Ok((links, entry.revision))
            }
            Some(entry) => Ok((Vec::new(), entry.revision)),
            None => Ok((Vec::new(), 0)),
        }
    }

    /// Writes `links` for `source` if the key is still at `revision`; `false` when someone else
    /// wrote it first.
    async fn write_links(&self, source: &str, links: &[Link], revision: u64) -> Result<bool> {
        let key = link_key(source);
        let value = Bytes::from(serde_json::to_vec(links).map_err(|e| kv_error("encoding links", e))?);
        let result = if revision == 0 {
            self.links.create(&key, value).await.map(|_| ()).map_err(|e| {
                (e.kind() == kv::CreateErrorKind::AlreadyExists).then_some(()).ok_or_else(|| kv_error("writing links", e))
            })
        } else {
            self.links.update(&key, value, revision).await.map(|_| ()).map_err(|e| {
                (e.kind() == kv::UpdateErrorKind::WrongLastRevision)
                    .then_some(())
                    .ok_or_else(|| kv_error("writing links", e))
            })
        };
        match result {
            Ok(()) => Ok(true),
            Err(Ok(())) => Ok(false),
            Err(Err(e)) => Err(e),
        }
    }

    /// Stores `link` after checking its configs exist and it conflicts with no other link.
    ///
    /// # Errors
    /// [`HostError::Link`] when the link is refused, [`HostError::LatticeData`] when KV fails.
    pub async fn put_link(&self, link: &Link) -> Result<()> {
        for name in link.source_config.iter().chain(&link.target_config) {
            if self.config(name).await?.is_none() {
                return Err(HostError::Link(format!(
                    "link from `{}` to `{}` names config `{name}`, which does not exist; put it with config.put first",
                    link.source_id, link.target
                )));
            }
        }
        for _ in 0..CAS_ATTEMPTS {
            let (existing, revision) = self.links_of(&link.source_id).await?;
            let links = with_link(&existing, link).map_err(HostError::Link)?;
            if self.write_links(&link.source_id, &links, revision).await? {
                return Ok(());
            }
            debug!(source = %link.source_id, "links changed concurrently; retrying");
        }
        Err(HostError::LatticeData(format!("links of `{}` keep changing; try again", link.source_id)))
    }

    /// Deletes a link; deleting one that does not exist succeeds.
    ///
    /// # Errors
    /// [`HostError::LatticeData`] when KV fails.
    pub async fn delete_link(&self, req: &DeleteInterfaceLinkDefinitionRequest) -> Result<()> {
        for _ in 0..CAS_ATTEMPTS {
            let (existing, revision) = self.links_of(&req.source_id).await?;
            let links = without_link(&existing, &req.name, &req.wit_namespace, &req.wit_package);
            if links.len() == existing.len() {
                return Ok(());
            }
            if self.write_links(&req.source_id, &links, revision).await? {
                return Ok(());
            }
        }
        Err(HostError::LatticeData(format!("links of `{}` keep changing; try again", req.source_id)))
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
            out.extend(self.links_of(key).await?.0);
        }
        Ok(out)
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
