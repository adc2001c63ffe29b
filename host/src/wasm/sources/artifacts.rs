//! Components kept in the lattice itself: `nats://NAME:VERSION` names an object in the
//! lattice's JetStream object store (bucket `TRELLIS_ARTIFACTS_{lattice}`, replicated like the
//! lattice's other buckets), so a lattice of several machines needs no registry and no shared
//! file system. The object store checks each object's SHA-256 as it is read; pulled components
//! share the OCI cache, keyed by that digest and checked again on every hit.

use async_nats::jetstream::{self, object_store};
use tokio::io::AsyncReadExt;

use crate::wasm::sources::reference::ReferenceError;
use tracing::{debug, info};

use crate::wasm::sources::oci::{sha256, Cache, OciConfig};

/// The scheme of lattice artifacts.
pub const SCHEME: &str = "nats://";

/// The object store bucket of `lattice`'s artifacts (guests never open it: see
/// `permission::check_bucket`).
pub fn bucket(lattice: &str) -> String {
    format!("TRELLIS_ARTIFACTS_{lattice}")
}

/// The object name `reference` (`nats://NAME:VERSION`) names, refusing a missing or `latest`
/// version unless `allow_latest`.
///
/// # Errors
/// Why the reference is refused.
pub fn object_name(reference: &str, allow_latest: bool) -> Result<String, ReferenceError> {
    let rest = reference.strip_prefix(SCHEME).ok_or_else(|| ReferenceError::NotArtifact { reference: reference.to_string() })?;
    let (name, version) = rest.split_once(':').unwrap_or((rest, "latest"));
    let valid = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !valid(name) || !valid(version) {
        return Err(ReferenceError::BadArtifactName { reference: reference.to_string() });
    }
    if version == "latest" && !allow_latest {
        return Err(ReferenceError::ArtifactLatest { reference: reference.to_string() });
    }
    Ok(format!("{name}:{version}"))
}

/// Why an artifact could not be pulled from the lattice's store.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The reference is refused as written.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The store did not give what the reference names, within the bounds.
    #[error("lattice artifact `{reference}`: {problem}")]
    Store { reference: String, problem: ArtifactProblem },
}

/// What went wrong with the lattice's artifact store.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactProblem {
    /// The lattice has no artifact store.
    #[error("no artifact store in this lattice (push one with `trellis push nats://…`): {0}")]
    NoStore(String),
    /// No such artifact.
    #[error("not found: {0}")]
    NotFound(String),
    /// Its record says it is larger than allowed.
    #[error("too large: {declared} bytes, over the host's component size limit of {max} bytes")]
    Declared { declared: usize, max: u64 },
    /// It could not be read.
    #[error("cannot read: {0}")]
    Read(String),
    /// Reading it failed (the store checks its digest at the end).
    #[error("cannot read (digest mismatch?): {0}")]
    ReadBody(String),
    /// More arrived than allowed (whatever its record says).
    #[error("too large: more than the host's component size limit of {max} bytes arrived")]
    Sent { max: u64 },
    /// The pull took too long.
    #[error("no answer: the pull took longer than {0:?}")]
    Timeout(std::time::Duration),
}

/// Pulls `reference` from `lattice`'s object store (at most `max_size` bytes).
///
/// # Errors
/// [`ArtifactError`], naming the reference and the cause.
pub async fn pull(reference: &str, nats: &async_nats::Client, lattice: &str, config: &OciConfig, max_size: u64) -> Result<Vec<u8>, ArtifactError> {
    let name = object_name(reference, config.allow_latest)?;
    let failed = |problem: ArtifactProblem| ArtifactError::Store { reference: reference.to_string(), problem };
    let work = async {
        let js = jetstream::new(nats.clone());
        let store = js.get_object_store(bucket(lattice)).await.map_err(|e| failed(ArtifactProblem::NoStore(e.to_string())))?;
        let info = store.info(&name).await.map_err(|e| failed(ArtifactProblem::NotFound(e.to_string())))?;
        if info.size as u64 > max_size {
            return Err(failed(ArtifactProblem::Declared { declared: info.size, max: max_size }));
        }
        let digest = info.digest.clone().unwrap_or_default();
        let cache = config.cache_dir.as_deref().filter(|_| !digest.is_empty()).map(|d| Cache::new(d, &digest));
        if let Some(bytes) = cache.as_ref().and_then(Cache::read) {
            debug!(reference, %digest, "component taken from the artifact cache");
            return Ok(bytes);
        }
        let mut object = store.get(&name).await.map_err(|e| failed(ArtifactProblem::Read(e.to_string())))?;
        let mut bytes = Vec::with_capacity(info.size);
        // The object store compares the content with its SHA-256 at the end of the read. The
        // read is bounded by what arrives, not by the size the object's record declares.
        (&mut object).take(max_size + 1).read_to_end(&mut bytes).await.map_err(|e| failed(ArtifactProblem::ReadBody(e.to_string())))?;
        if bytes.len() as u64 > max_size {
            return Err(failed(ArtifactProblem::Sent { max: max_size }));
        }
        info!(reference, bytes = bytes.len(), "component pulled from the lattice's artifact store");
        if let Some(cache) = cache {
            cache.write(&sha256(&bytes), &bytes);
        }
        Ok(bytes)
    };
    match tokio::time::timeout(config.timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(failed(ArtifactProblem::Timeout(config.timeout))),
    }
}

/// Stores `bytes` as `reference` in `lattice`'s object store (created with `replicas`).
///
/// # Errors
/// [`PushError`], naming the cause.
pub async fn push(nats: &async_nats::Client, lattice: &str, replicas: usize, reference: &str, bytes: &[u8]) -> Result<String, PushError> {
    let name = object_name(reference, true)?;
    let js = jetstream::new(nats.clone());
    let store = match js.get_object_store(bucket(lattice)).await {
        Ok(store) => store,
        Err(_) => js
            .create_object_store(object_store::Config { bucket: bucket(lattice), num_replicas: replicas, ..Default::default() })
            .await
            .map_err(|e| PushError::CreateStore { bucket: bucket(lattice), reason: e.to_string() })?,
    };
    let info = store
        .put(name.as_str(), &mut &bytes[..])
        .await
        .map_err(|e| PushError::Store { reference: reference.to_string(), reason: e.to_string() })?;
    Ok(info.digest.unwrap_or_default())
}

/// Why a push into the lattice's artifact store failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The reference is not a `nats://` artifact reference.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The artifact store did not exist and could not be made.
    #[error("cannot create the artifact store `{bucket}`: {reason}")]
    CreateStore {
        /// The store's bucket.
        bucket: String,
        /// What JetStream said.
        reason: String,
    },
    /// The object store refused the bytes.
    #[error("cannot store `{reference}`: {reason}")]
    Store {
        /// The reference pushed.
        reference: String,
        /// What JetStream said.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(object_name("nats://echo:1.0", false).unwrap(), "echo:1.0");
        assert!(matches!(object_name("nats://echo", false), Err(ReferenceError::ArtifactLatest { .. })));
        assert!(object_name("nats://echo", false).unwrap_err().to_string().contains("--allow-latest"));
        assert_eq!(object_name("nats://echo", true).unwrap(), "echo:latest");
        assert!(object_name("nats://a/b:1", false).is_err());
        assert!(object_name("oci://x", false).is_err());
    }

    #[test]
    fn an_artifact_error_reads_as_before() {
        let e = ArtifactError::Store { reference: "nats://echo:1".into(), problem: ArtifactProblem::Sent { max: 10 } };
        assert_eq!(e.to_string(), "lattice artifact `nats://echo:1`: too large: more than the host's component size limit of 10 bytes arrived");
    }
}
