//! `wasi:keyvalue/store`, `atomics` and `batch` (0.2.0-draft), bound with `bindgen!` from
//! `wit/keyvalue/` ([`bindings`]); the guest-visible `error` is mapped from [`KvError`] through
//! `trappable_error_type`.
//!
//! `open(identifier)` asks the capability resolver where the component's link for
//! `wasi:keyvalue/store` (under the link name the guest chose, else `default`) goes
//! ([`crate::permission::Resolver::key_value`]):
//! - a built-in key-value provider: a JetStream bucket of the lattice ([`jetstream`]), the one
//!   the link's target config names (or the host's default), never the guest's identifier and
//!   never one of the lattice's own buckets;
//! - an external provider: its own store over wRPC ([`provider`]), with the guest's identifier
//!   as the bucket, as wasmCloud does.
//!
//! A refusal is `access-denied`, with a log line saying why. A batch names at most
//! [`MAX_BATCH_KEYS`] keys, and `get-many` returns at most [`MAX_BATCH_BYTES`] of values.

mod batch;
mod jetstream;
mod provider;
pub mod watch;
pub mod wrpc_watcher;

use async_nats::jetstream::kv;
use tracing::info;
use wasmtime::component::{Linker, Resource, ResourceTableError};

use super::view::{view, HasView, View};
use crate::permission::{Capability, Denied, KeyValueTarget};
use crate::capabilities::context::ImportContext;
use crate::wasm::state::GuestState;
pub use batch::{MAX_BATCH_BYTES, MAX_BATCH_KEYS};
pub use jetstream::KEYS_PAGE;
use provider::ProviderBucket;

/// The host side of `wasi:keyvalue`, generated from its WIT (`wit/keyvalue/`).
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/keyvalue",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        trappable_error_type: { "wasi:keyvalue/store.error" => super::KvError },
        with: { "wasi:keyvalue/store.bucket": super::KvBucket },
    });
}

use bindings::wasi::keyvalue::{atomics, store};
use store::KeyResponse;

/// Why a key-value call failed: the guest's `error` (`no-such-store`, `access-denied`, or
/// `other` with this message), except [`KvError::Trap`], which stops the call.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The store does not exist.
    #[error("no such store")]
    NoSuchStore,
    /// The capability resolver refused (the reason is logged, the guest sees `access-denied`).
    #[error("access denied: {0}")]
    Denied(Denied),
    /// The component may not use the store (an external provider said so).
    #[error("access denied")]
    AccessDenied,
    /// The store failed, or the request was refused for its size.
    #[error("{0}")]
    Other(String),
    /// Not a guest-visible error: the call stops (a bad handle, a host fault).
    #[error(transparent)]
    Trap(wasmtime::Error),
}

impl From<ResourceTableError> for KvError {
    fn from(e: ResourceTableError) -> Self {
        Self::Trap(e.into())
    }
}

/// `KvError::Other` with `e`'s message.
pub fn other(e: impl std::fmt::Display) -> KvError {
    KvError::Other(e.to_string())
}

/// An opened bucket, held in the guest's resource table.
#[derive(Debug, Clone)]
pub enum KvBucket {
    /// A JetStream bucket of the lattice (boxed: the store handle is large).
    JetStream(Box<kv::Store>),
    /// A bucket of an external provider.
    Provider(ProviderBucket),
}

/// Links `wasi:keyvalue/store`, `atomics` or `batch` (`import`, version 0.2.0-draft).
///
/// # Errors
/// When the linker refuses a definition.
pub fn link(linker: &mut Linker<GuestState>, import: &str) -> wasmtime::Result<()> {
    match import.split('@').next().unwrap_or(import) {
        "wasi:keyvalue/atomics" => atomics::add_to_linker::<GuestState, HasView>(linker, view),
        "wasi:keyvalue/batch" => bindings::wasi::keyvalue::batch::add_to_linker::<GuestState, HasView>(linker, view),
        _ => store::add_to_linker::<GuestState, HasView>(linker, view),
    }
}

async fn open(ctx: &ImportContext, link_name: &str, identifier: &str) -> Result<KvBucket, KvError> {
    let target = ctx.resolver.key_value(&ctx.source_id, link_name).map_err(|e| {
        info!(component_id = %ctx.source_id, identifier, "key-value open refused: {e}");
        KvError::Denied(e)
    })?;
    match target {
        KeyValueTarget::Bucket(bucket) => jetstream::open(ctx, &bucket).await.map(|kv| KvBucket::JetStream(Box::new(kv))),
        KeyValueTarget::ExternalProvider(provider) => {
            Ok(KvBucket::Provider(ProviderBucket { provider, link_name: link_name.to_string(), bucket: identifier.to_string() }))
        }
    }
}

/// The component's context, and the bucket `r` is, cloned out of the guest's table (the call
/// then runs without holding the store).
fn bucket_of(view: &mut View<'_>, r: &Resource<KvBucket>) -> Result<(std::sync::Arc<ImportContext>, KvBucket), KvError> {
    let ctx = view.context().ok_or_else(|| other("wasi:keyvalue is not available: the component runs without a lattice"))?;
    Ok((ctx, view.table().get(r)?.clone()))
}

/// The span of one key-value operation (see `telemetry`).
fn kv_span(op: &'static str, ctx: &ImportContext) -> tracing::Span {
    tracing::debug_span!(target: crate::telemetry::TARGET, "keyvalue", op, component = %ctx.source_id)
}

/// Runs `op` in its span.
async fn traced<T>(op: &'static str, ctx: &ImportContext, f: impl std::future::Future<Output = T>) -> T {
    tracing::Instrument::instrument(f, kv_span(op, ctx)).await
}

impl store::Host for View<'_> {
    fn convert_error(&mut self, err: KvError) -> wasmtime::Result<store::Error> {
        Ok(match err {
            KvError::NoSuchStore => store::Error::NoSuchStore,
            KvError::Denied(_) | KvError::AccessDenied => store::Error::AccessDenied,
            KvError::Other(m) => store::Error::Other(m),
            KvError::Trap(e) => return Err(e),
        })
    }

    async fn open(&mut self, identifier: String) -> Result<Resource<KvBucket>, KvError> {
        let ctx = self.context().ok_or_else(|| other("wasi:keyvalue is not available: the component runs without a lattice"))?;
        let link = self.link_name(Capability::KeyValue).to_string();
        let bucket = open(&ctx, &link, &identifier).await?;
        Ok(self.table().push(bucket)?)
    }
}

impl store::HostBucket for View<'_> {
    async fn get(&mut self, b: Resource<KvBucket>, key: String) -> Result<Option<Vec<u8>>, KvError> {
        let (c, bucket) = bucket_of(self, &b)?;
        traced("get", &c, async {
            match bucket {
                KvBucket::JetStream(kv) => kv.get(&key).await.map(|v| v.map(|b| b.to_vec())).map_err(other),
                KvBucket::Provider(p) => p.get(&c, key).await,
            }
        })
        .await
    }

    async fn set(&mut self, b: Resource<KvBucket>, key: String, value: Vec<u8>) -> Result<(), KvError> {
        let (c, bucket) = bucket_of(self, &b)?;
        traced("set", &c, async {
            match bucket {
                KvBucket::JetStream(kv) => kv.put(&key, value.into()).await.map(|_| ()).map_err(other),
                KvBucket::Provider(p) => p.set(&c, key, value).await,
            }
        })
        .await
    }

    async fn delete(&mut self, b: Resource<KvBucket>, key: String) -> Result<(), KvError> {
        let (c, bucket) = bucket_of(self, &b)?;
        traced("delete", &c, async {
            match bucket {
                KvBucket::JetStream(kv) => kv.delete(&key).await.map_err(other),
                KvBucket::Provider(p) => p.delete(&c, key).await,
            }
        })
        .await
    }

    async fn exists(&mut self, b: Resource<KvBucket>, key: String) -> Result<bool, KvError> {
        let (c, bucket) = bucket_of(self, &b)?;
        traced("exists", &c, async {
            match bucket {
                KvBucket::JetStream(kv) => kv.get(&key).await.map(|v| v.is_some()).map_err(other),
                KvBucket::Provider(p) => p.exists(&c, key).await,
            }
        })
        .await
    }

    async fn list_keys(&mut self, b: Resource<KvBucket>, cursor: Option<u64>) -> Result<KeyResponse, KvError> {
        let (c, bucket) = bucket_of(self, &b)?;
        match bucket {
            KvBucket::JetStream(kv) => jetstream::list_keys(&kv, cursor).await,
            KvBucket::Provider(p) => p.list_keys(&c, cursor).await,
        }
    }

    async fn drop(&mut self, b: Resource<KvBucket>) -> wasmtime::Result<()> {
        self.table().delete(b)?;
        Ok(())
    }
}

impl atomics::Host for View<'_> {
    async fn increment(&mut self, b: Resource<KvBucket>, key: String, delta: u64) -> Result<u64, KvError> {
        let (c, bucket) = bucket_of(self, &b)?;
        match bucket {
            KvBucket::JetStream(kv) => jetstream::increment(&kv, &key, delta).await,
            KvBucket::Provider(p) => p.increment(&c, key, delta).await,
        }
    }
}
