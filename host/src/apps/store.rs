//! Manifests as wadm stores them: KV bucket `wadm_manifests`, key `{lattice}-{name}` holding
//! `{"manifests": {version: manifest, …}, "deployed_version": …}` (versions in the order they
//! were put), and key `{lattice}` holding the set of names. A wadm and a Trellis lattice read
//! each other's stored applications.

use std::collections::BTreeSet;

use async_nats::jetstream::kv::{self, Operation, Store};
use indexmap::IndexMap;
use tracing::warn;
use serde::{Deserialize, Serialize};
use wadm_types::{Manifest, LATEST_VERSION, VERSION_ANNOTATION_KEY};

use crate::error::{HostError, Result};

/// wadm's bucket.
pub const BUCKET: &str = "wadm_manifests";

/// Every version of one application and which one is deployed (wadm's `StoredManifest`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredManifest {
    manifests: IndexMap<String, Manifest>,
    deployed_version: Option<String>,
}

impl StoredManifest {
    /// The application's name.
    pub fn name(&self) -> &str {
        self.current().map_or("", |m| m.metadata.name.as_str())
    }

    /// The newest version put.
    pub fn current_version(&self) -> &str {
        self.manifests.last().map_or("", |(v, _)| v.as_str())
    }

    /// The newest manifest.
    pub fn current(&self) -> Option<&Manifest> {
        self.manifests.last().map(|(_, m)| m)
    }

    /// One version.
    pub fn get(&self, version: &str) -> Option<&Manifest> {
        self.manifests.get(version)
    }

    /// Every version, oldest first.
    pub fn versions(&self) -> impl Iterator<Item = &String> {
        self.manifests.keys()
    }

    /// How many versions there are.
    pub fn count(&self) -> usize {
        self.manifests.len()
    }

    /// The deployed version, if any.
    pub fn deployed_version(&self) -> Option<&str> {
        self.deployed_version.as_deref()
    }

    /// The deployed manifest, if any.
    pub fn deployed(&self) -> Option<&Manifest> {
        self.deployed_version.as_deref().and_then(|v| self.manifests.get(v))
    }

    /// Adds `manifest` as a new version (a ULID when it names none, as wadm does); `false` when
    /// that version exists already.
    pub fn add_version(&mut self, mut manifest: Manifest) -> bool {
        let version = match manifest.metadata.annotations.get(VERSION_ANNOTATION_KEY) {
            Some(v) => v.clone(),
            None => {
                let v = ulid::Ulid::new().to_string();
                manifest.metadata.annotations.insert(VERSION_ANNOTATION_KEY.to_string(), v.clone());
                v
            }
        };
        if self.manifests.contains_key(&version) {
            return false;
        }
        self.manifests.insert(version, manifest);
        true
    }

    /// Removes one version; `true` when it was there.
    pub fn delete_version(&mut self, version: &str) -> bool {
        self.manifests.shift_remove(version).is_some()
    }

    /// Marks `version` (the newest for `None` or `latest`) deployed; `false` when there is no
    /// such version.
    pub fn deploy(&mut self, version: Option<&str>) -> bool {
        match version {
            None | Some(LATEST_VERSION) => {
                self.deployed_version = Some(self.current_version().to_string());
                true
            }
            Some(v) if self.manifests.contains_key(v) => {
                self.deployed_version = Some(v.to_string());
                true
            }
            Some(_) => false,
        }
    }

    /// Marks it undeployed; `true` when it was deployed.
    pub fn undeploy(&mut self) -> bool {
        self.deployed_version.take().is_some()
    }
}

/// What `value` at the key of a lattice's list of applications (at `revision`) is: the list,
/// or (wadm's layout puts lattice `L`'s application `x` where lattice `L-x`'s list goes)
/// another lattice's application.
///
/// # Errors
/// Neither: why it is not a list.
fn read_names(value: &[u8], revision: u64) -> std::result::Result<Names, serde_json::Error> {
    match serde_json::from_slice(value) {
        Ok(names) => Ok(Names::At(names, revision)),
        Err(_) if serde_json::from_slice::<StoredManifest>(value).is_ok_and(|app| !app.name().is_empty()) => Ok(Names::Taken),
        Err(error) => Err(error),
    }
}

/// What the key of a lattice's list of applications holds.
enum Names {
    /// The names, at this revision (0: none yet).
    At(BTreeSet<String>, u64),
    /// Another lattice's application (wadm's layout puts `L`'s `x` where `L-x`'s list goes).
    Taken,
}

/// The manifests of one lattice.
#[derive(Clone)]
pub struct ManifestStore {
    kv: Store,
    lattice: String,
}

impl std::fmt::Debug for ManifestStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManifestStore").field("lattice", &self.lattice).finish_non_exhaustive()
    }
}

fn kv_error(e: impl std::fmt::Display) -> HostError {
    HostError::LatticeData(format!("{BUCKET}: {e}"))
}

impl ManifestStore {
    /// Opens wadm's bucket, creating it (one history entry, `replicas` replicas) when missing.
    ///
    /// # Errors
    /// [`HostError::LatticeData`] when JetStream refuses.
    pub async fn open(nats: &async_nats::Client, lattice: &str, replicas: usize) -> Result<Self> {
        let js = async_nats::jetstream::new(nats.clone());
        let kv = match js.get_key_value(BUCKET).await {
            Ok(kv) => kv,
            Err(_) => js
                .create_key_value(kv::Config { bucket: BUCKET.into(), history: 1, num_replicas: replicas, ..Default::default() })
                .await
                .map_err(kv_error)?,
        };
        Ok(Self { kv, lattice: lattice.to_string() })
    }

    fn key(&self, name: &str) -> String {
        format!("{}-{name}", self.lattice)
    }

    /// One application and the revision it was read at.
    ///
    /// # Errors
    /// [`HostError::LatticeData`] on a read failure or a stored value that does not parse.
    ///
    /// wadm's key `{lattice}-{name}` is ambiguous (`prod-x`'s `y` and `prod`'s `x-y` are both
    /// `prod-x-y`, and `prod`'s `x` is the key of lattice `prod-x`'s list of names): a value at
    /// the key that is not an application named `name` belongs to another lattice and reads as
    /// absent, so it is never shown, changed or deleted from this one.
    pub async fn get(&self, name: &str) -> Result<Option<(StoredManifest, u64)>> {
        match self.kv.entry(self.key(name)).await.map_err(kv_error)? {
            Some(e) if !matches!(e.operation, Operation::Delete | Operation::Purge) => match serde_json::from_slice::<StoredManifest>(&e.value) {
                Ok(stored) if stored.name() == name => Ok(Some((stored, e.revision))),
                Ok(stored) => {
                    warn!(lattice = %self.lattice, application = name, key = %self.key(name), holder = stored.name(), "the application's key holds another lattice's application; ignored");
                    Ok(None)
                }
                Err(error) => {
                    warn!(lattice = %self.lattice, application = name, key = %self.key(name), %error, "the application's key holds something else; ignored");
                    Ok(None)
                }
            },
            _ => Ok(None),
        }
    }

    /// Writes `stored` (compare-and-set against `revision`; 0 creates) and adds its name to the set.
    ///
    /// # Errors
    /// [`HostError::LatticeData`], including when someone else wrote it since `revision`.
    pub async fn set(&self, stored: &StoredManifest, revision: u64) -> Result<()> {
        let data = serde_json::to_vec(stored).map_err(kv_error)?;
        let key = self.key(stored.name());
        let created = if revision > 0 {
            self.kv.update(&key, data.into(), revision).await.map_err(kv_error)?;
            None
        } else {
            match self.kv.create(&key, data.into()).await {
                Ok(created) => Some(created),
                Err(e) => {
                    return Err(match self.kv.entry(&key).await {
                        Ok(Some(held)) if !matches!(held.operation, Operation::Delete | Operation::Purge) => kv_error(format!(
                            "key `{key}` already holds another lattice's data (wadm's key is `{{lattice}}-{{name}}`); choose another application name"
                        )),
                        _ => kv_error(e),
                    })
                }
            }
        };
        let listed = self.update_names(stored.name(), true).await;
        if let (Err(_), Some(created)) = (&listed, created) {
            // Not left behind where nothing lists it (unless someone has written it since).
            let _ = self.kv.purge_expect_revision(&key, Some(created)).await;
        }
        listed
    }

    /// Removes an application and its name.
    ///
    /// # Errors
    /// [`HostError::LatticeData`].
    pub async fn delete(&self, name: &str) -> Result<()> {
        self.update_names(name, false).await?;
        // Only this lattice's own application is purged ([`Self::get`]).
        if self.get(name).await?.is_none() {
            return Ok(());
        }
        self.kv.purge(self.key(name)).await.map_err(kv_error)
    }

    /// The names in the lattice's set.
    async fn names(&self) -> Result<Names> {
        match self.kv.entry(&self.lattice).await.map_err(kv_error)? {
            Some(e) if !matches!(e.operation, Operation::Delete | Operation::Purge) => {
                let names = read_names(&e.value, e.revision).map_err(|error| kv_error(format!("this lattice's list of applications (key `{}`) does not parse: {error}", self.lattice)))?;
                if matches!(names, Names::Taken) {
                    warn!(lattice = %self.lattice, key = %self.lattice, "the key of this lattice's list of applications holds another lattice's application; none listed");
                }
                Ok(names)
            }
            _ => Ok(Names::At(BTreeSet::new(), 0)),
        }
    }

    async fn update_names(&self, name: &str, add: bool) -> Result<()> {
        for _ in 0..5 {
            let (mut names, revision) = match self.names().await? {
                Names::At(names, revision) => (names, revision),
                Names::Taken => {
                    return Err(kv_error(format!(
                        "key `{}`, this lattice's list of applications, holds another lattice's application (wadm keeps lattice `L`'s application `x` at `L-x`); no application can be listed here until it is deleted",
                        self.lattice
                    )))
                }
            };
            let changed = if add { names.insert(name.to_string()) } else { names.remove(name) };
            if !changed {
                return Ok(());
            }
            let data: bytes::Bytes = serde_json::to_vec(&names).map_err(kv_error)?.into();
            let written = if revision == 0 {
                self.kv.create(&self.lattice, data).await.map(|_| ()).map_err(|e| e.to_string())
            } else {
                self.kv.update(&self.lattice, data, revision).await.map(|_| ()).map_err(|e| e.to_string())
            };
            if written.is_ok() {
                return Ok(());
            }
        }
        Err(kv_error("the list of applications kept changing; try again"))
    }

    /// Every application of the lattice.
    ///
    /// # Errors
    /// [`HostError::LatticeData`].
    pub async fn list(&self) -> Result<Vec<StoredManifest>> {
        let Names::At(names, _) = self.names().await? else { return Ok(Vec::new()) };
        let mut all = Vec::new();
        for name in names {
            if let Some((stored, _)) = self.get(&name).await? {
                all.push(stored);
            }
        }
        Ok(all)
    }

    /// A stream of changes to the bucket (any key), for reconciling on change.
    ///
    /// # Errors
    /// [`HostError::LatticeData`].
    pub async fn watch(&self) -> Result<kv::Watch> {
        self.kv.watch_all().await.map_err(kv_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_as_wadm_stores_it() {
        let manifest: Manifest = serde_yaml::from_str(
            "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: a\n  annotations:\n    version: v1\nspec:\n  components: []\n",
        )
        .expect("manifest");
        let mut s = StoredManifest::default();
        assert!(s.add_version(manifest.clone()));
        assert!(!s.add_version(manifest));
        assert!(s.deploy(None));
        let json = serde_json::to_value(&s).expect("json");
        assert_eq!(json["deployed_version"], "v1");
        assert_eq!(json["manifests"]["v1"]["metadata"]["name"], "a");
        assert!(!s.deploy(Some("v9")));
        assert!(s.undeploy());
        assert_eq!(serde_json::to_value(&s).expect("json")["deployed_version"], serde_json::Value::Null);
    }

    #[test]
    fn the_list_key_holds_a_list_another_lattices_application_or_an_error() {
        assert!(matches!(read_names(br#"["a", "b"]"#, 7), Ok(Names::At(names, 7)) if names.len() == 2));
        let manifest: Manifest = serde_yaml::from_str(
            "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: x\n  annotations:\n    version: v1\nspec:\n  components: []\n",
        )
        .expect("manifest");
        let mut app = StoredManifest::default();
        app.add_version(manifest);
        assert!(matches!(read_names(&serde_json::to_vec(&app).expect("json"), 3), Ok(Names::Taken)), "another lattice's application");
        assert!(read_names(b"{\"not\": \"either\"}", 3).is_err(), "neither: an error, not an empty list");
        assert!(read_names(b"{\"manifests\": {}}", 3).is_err(), "an application without a version is no application");
    }
}
