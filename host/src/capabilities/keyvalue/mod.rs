//! `wasi:keyvalue/store` and `wasi:keyvalue/atomics` (0.2.0-draft).
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
//! A refusal is `access-denied`, with a log line saying why.

mod jetstream;
mod provider;
mod types;

use std::sync::Arc;

use async_nats::jetstream::kv;
use tracing::info;
use wasmtime::component::{Linker, Resource, ResourceType};

use crate::permission::{Capability, KeyValueTarget};
use crate::lattice::state::DEFAULT_LINK_NAME;
use crate::wasm::context::ImportContext;
use crate::wasm::state::GuestState;
pub use jetstream::KEYS_PAGE;
use provider::ProviderBucket;
use types::{other, KeyResponse, KvError};

/// An opened bucket, held in the guest's resource table.
#[derive(Debug)]
pub enum KvBucket {
    /// A JetStream bucket of the lattice (boxed: the store handle is large).
    JetStream(Box<kv::Store>),
    /// A bucket of an external provider.
    Provider(ProviderBucket),
}

async fn open(ctx: &ImportContext, link_name: &str, identifier: &str) -> Result<KvBucket, KvError> {
    let target = ctx.resolver.key_value(&ctx.source_id, link_name).map_err(|e| {
        info!(component_id = %ctx.source_id, identifier, "key-value open refused: {e}");
        KvError::AccessDenied
    })?;
    match target {
        KeyValueTarget::Bucket(bucket) => jetstream::open(ctx, &bucket).await.map(|kv| KvBucket::JetStream(Box::new(kv))),
        KeyValueTarget::ExternalProvider(provider) => {
            Ok(KvBucket::Provider(ProviderBucket { provider, link_name: link_name.to_string(), bucket: identifier.to_string() }))
        }
    }
}

/// What `r` is, cloned out of the guest's table (the call then runs without holding the store).
fn bucket_of(store: &mut wasmtime::StoreContextMut<'_, GuestState>, r: &Resource<KvBucket>) -> wasmtime::Result<KvBucket> {
    Ok(match store.data_mut().table().get(r)? {
        KvBucket::JetStream(kv) => KvBucket::JetStream(kv.clone()),
        KvBucket::Provider(p) => KvBucket::Provider(p.clone()),
    })
}

/// Links `wasi:keyvalue/store` (`import`) into `linker`.
///
/// # Errors
/// When the linker refuses a definition.
pub fn link_store(linker: &mut Linker<GuestState>, import: &str, ctx: &Arc<ImportContext>) -> wasmtime::Result<()> {
    let mut inst = linker.instance(import)?;
    inst.resource("bucket", ResourceType::host::<KvBucket>(), |mut store, rep| {
        store.data_mut().table().delete(Resource::<KvBucket>::new_own(rep))?;
        Ok(())
    })?;
    let c = ctx.clone();
    inst.func_wrap_async("open", move |mut store, (identifier,): (String,)| {
        let c = c.clone();
        let link = store.data().link_name(Capability::KeyValue.key()).unwrap_or(DEFAULT_LINK_NAME).to_string();
        Box::new(async move {
            match open(&c, &link, &identifier).await {
                Ok(bucket) => Ok((Ok::<_, KvError>(store.data_mut().table().push(bucket)?),)),
                Err(e) => Ok((Err(e),)),
            }
        })
    })?;
    let c = ctx.clone();
    inst.func_wrap_async("[method]bucket.get", move |mut store, (b, key): (Resource<KvBucket>, String)| {
        let c = c.clone();
        let span = kv_span("get", &c);
        Box::new(tracing::Instrument::instrument(async move {
            let r: Result<Option<Vec<u8>>, KvError> = match bucket_of(&mut store, &b)? {
                KvBucket::JetStream(kv) => kv.get(&key).await.map(|v| v.map(|b| b.to_vec())).map_err(other),
                KvBucket::Provider(p) => p.get(&c, key).await,
            };
            Ok((r,))
        }, span))
    })?;
    let c = ctx.clone();
    inst.func_wrap_async("[method]bucket.set", move |mut store, (b, key, value): (Resource<KvBucket>, String, Vec<u8>)| {
        let c = c.clone();
        let span = kv_span("set", &c);
        Box::new(tracing::Instrument::instrument(async move {
            let r: Result<(), KvError> = match bucket_of(&mut store, &b)? {
                KvBucket::JetStream(kv) => kv.put(&key, value.into()).await.map(|_| ()).map_err(other),
                KvBucket::Provider(p) => p.set(&c, key, value).await,
            };
            Ok((r,))
        }, span))
    })?;
    let c = ctx.clone();
    inst.func_wrap_async("[method]bucket.delete", move |mut store, (b, key): (Resource<KvBucket>, String)| {
        let c = c.clone();
        let span = kv_span("delete", &c);
        Box::new(tracing::Instrument::instrument(async move {
            let r: Result<(), KvError> = match bucket_of(&mut store, &b)? {
                KvBucket::JetStream(kv) => kv.delete(&key).await.map_err(other),
                KvBucket::Provider(p) => p.delete(&c, key).await,
            };
            Ok((r,))
        }, span))
    })?;
    let c = ctx.clone();
    inst.func_wrap_async("[method]bucket.exists", move |mut store, (b, key): (Resource<KvBucket>, String)| {
        let c = c.clone();
        let span = kv_span("exists", &c);
        Box::new(tracing::Instrument::instrument(async move {
            let r: Result<bool, KvError> = match bucket_of(&mut store, &b)? {
                KvBucket::JetStream(kv) => kv.get(&key).await.map(|v| v.is_some()).map_err(other),
                KvBucket::Provider(p) => p.exists(&c, key).await,
            };
            Ok((r,))
        }, span))
    })?;
    let c = ctx.clone();
    inst.func_wrap_async("[method]bucket.list-keys", move |mut store, (b, cursor): (Resource<KvBucket>, Option<u64>)| {
        let c = c.clone();
        Box::new(async move {
            let r: Result<KeyResponse, KvError> = match bucket_of(&mut store, &b)? {
                KvBucket::JetStream(kv) => jetstream::list_keys(&kv, cursor).await,
                KvBucket::Provider(p) => p.list_keys(&c, cursor).await,
            };
            Ok((r,))
        })
    })?;
    Ok(())
}

/// Links `wasi:keyvalue/atomics` (`import`) into `linker`.
///
/// # Errors
/// When the linker refuses a definition.
pub fn link_atomics(linker: &mut Linker<GuestState>, import: &str, ctx: &Arc<ImportContext>) -> wasmtime::Result<()> {
    let mut inst = linker.instance(import)?;
    let c = ctx.clone();
    inst.func_wrap_async("increment", move |mut store, (b, key, delta): (Resource<KvBucket>, String, u64)| {
        let c = c.clone();
        Box::new(async move {
            let r: Result<u64, KvError> = match bucket_of(&mut store, &b)? {
                KvBucket::JetStream(kv) => jetstream::increment(&kv, &key, delta).await,
                KvBucket::Provider(p) => p.increment(&c, key, delta).await,
            };
            Ok((r,))
        })
    })?;
    Ok(())
}

/// The span of one key-value operation (see `telemetry`).
fn kv_span(op: &'static str, ctx: &ImportContext) -> tracing::Span {
    tracing::debug_span!(target: crate::telemetry::TARGET, "keyvalue", op, component = %ctx.source_id)
}
