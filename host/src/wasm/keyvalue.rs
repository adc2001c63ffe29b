//! `wasi:keyvalue/store` and `wasi:keyvalue/atomics` (0.2.0-draft), backed by JetStream KV so
//! the data is shared by every host and survives restarts.
//!
//! `open(identifier)` asks the capability resolver for the component's link for
//! `wasi:keyvalue/store` (under the link name the guest chose, else `default`): the link must
//! target a running key-value provider, and the bucket is the one its target config names (or
//! the host's default), never the guest's identifier and never one of the lattice's own buckets.
//! A refusal is `access-denied`, with a log line saying why. A missing bucket is created with the
//! host's `--kv-replicas`. `list-keys` returns pages of [`KEYS_PAGE`] keys with a cursor.
//! `increment` is a compare-and-set on the key's revision, retried until it wins, so concurrent
//! increments from any number of hosts are never lost.

use std::sync::Arc;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use tracing::{debug, info};
use wasmtime::component::{ComponentType, Lift, Linker, Lower, Resource, ResourceType};

use crate::capability::Capability;
use crate::lattice::state::DEFAULT_LINK_NAME;
use crate::wasm::context::ImportContext;
use crate::wasm::state::GuestState;

/// `wasi:keyvalue/store.error`.
#[derive(ComponentType, Lift, Lower, Clone, Debug, PartialEq, Eq)]
#[component(variant)]
pub enum KvError {
    /// The bucket does not exist.
    #[component(name = "no-such-store")]
    NoSuchStore,
    /// The component may not use it (no link).
    #[component(name = "access-denied")]
    AccessDenied,
    /// Anything else, with a message.
    #[component(name = "other")]
    Other(String),
}

/// `wasi:keyvalue/store.key-response`.
#[derive(ComponentType, Lift, Lower, Clone, Debug)]
#[component(record)]
pub struct KeyResponse {
    keys: Vec<String>,
    cursor: Option<u64>,
}

/// An opened bucket, held in the guest's resource table.
#[derive(Debug)]
pub struct KvBucket {
    store: kv::Store,
}

/// How many compare-and-set rounds an increment may take before it reports contention.
const CAS_ROUNDS: usize = 1000;

fn other(e: impl std::fmt::Display) -> KvError {
    KvError::Other(e.to_string())
}

/// Keys `list-keys` returns per call; the cursor continues after them.
pub const KEYS_PAGE: usize = 1000;

async fn open(ctx: &ImportContext, link_name: &str, identifier: &str) -> Result<kv::Store, KvError> {
    let denied = |e: crate::capability::Denied| {
        info!(component_id = %ctx.source_id, identifier, "key-value open refused: {e}");
        KvError::AccessDenied
    };
    let grant = ctx.resolver.provider(&ctx.source_id, link_name, Capability::KeyValue).map_err(denied)?;
    let bucket = ctx.resolver.kv_bucket(&grant).map_err(denied)?;
    let js = jetstream::new(ctx.nats.clone());
    if let Ok(store) = js.get_key_value(&bucket).await {
        return Ok(store);
    }
    let created = js
        .create_key_value(kv::Config { bucket: bucket.clone(), history: 1, num_replicas: ctx.resolver.kv_replicas(), ..Default::default() })
        .await;
    match created {
        Ok(store) => Ok(store),
        Err(e) => js.get_key_value(&bucket).await.map_err(|_| other(format!("cannot open or create bucket `{bucket}`: {e}"))),
    }
}

/// One page of keys after `cursor` (the number of keys already returned).
async fn list_keys(store: &kv::Store, cursor: Option<u64>) -> Result<KeyResponse, KvError> {
    use futures::StreamExt;
    let skip = usize::try_from(cursor.unwrap_or(0)).unwrap_or(usize::MAX);
    let mut keys = store.keys().await.map_err(other)?.skip(skip);
    let mut page = Vec::new();
    while let Some(key) = keys.next().await {
        if page.len() == KEYS_PAGE {
            // There is at least one more: hand out a cursor.
            return Ok(KeyResponse { keys: page, cursor: Some((skip + KEYS_PAGE) as u64) });
        }
        page.push(key.map_err(other)?);
    }
    Ok(KeyResponse { keys: page, cursor: None })
}

async fn increment(store: &kv::Store, key: &str, delta: u64) -> Result<u64, KvError> {
    for _ in 0..CAS_ROUNDS {
        let entry = store.entry(key).await.map_err(other)?;
        let (current, revision) = match &entry {
            Some(e) if e.operation == kv::Operation::Put => {
                let text = std::str::from_utf8(&e.value).map_err(|_| other(format!("value of `{key}` is not a number")))?;
                let n: u64 = text.trim().parse().map_err(|_| other(format!("value of `{key}` is not a number: `{text}`")))?;
                (n, Some(e.revision))
            }
            Some(e) => (0, Some(e.revision)),
            None => (0, None),
        };
        let next = current.checked_add(delta).ok_or_else(|| other(format!("`{key}` would overflow")))?;
        let value = Bytes::from(next.to_string());
        let won = match revision {
            Some(rev) => match store.update(key, value, rev).await {
                Ok(_) => true,
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => false,
                Err(e) => return Err(other(e)),
            },
            None => match store.create(key, value).await {
                Ok(_) => true,
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => false,
                Err(e) => return Err(other(e)),
            },
        };
        if won {
            return Ok(next);
        }
        debug!(key, "increment lost a compare-and-set race; retrying");
    }
    Err(other(format!("`{key}` is under too much contention")))
}

fn bucket_of(store: &mut wasmtime::StoreContextMut<'_, GuestState>, r: &Resource<KvBucket>) -> wasmtime::Result<kv::Store> {
    Ok(store.data_mut().table().get(r)?.store.clone())
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
                Ok(kv) => Ok((Ok::<_, KvError>(store.data_mut().table().push(KvBucket { store: kv })?),)),
                Err(e) => Ok((Err(e),)),
            }
        })
    })?;
    inst.func_wrap_async("[method]bucket.get", |mut store, (b, key): (Resource<KvBucket>, String)| {
        Box::new(async move {
            let kv = bucket_of(&mut store, &b)?;
            let r: Result<Option<Vec<u8>>, KvError> = kv.get(&key).await.map(|v| v.map(|b| b.to_vec())).map_err(other);
            Ok((r,))
        })
    })?;
    inst.func_wrap_async("[method]bucket.set", |mut store, (b, key, value): (Resource<KvBucket>, String, Vec<u8>)| {
        Box::new(async move {
            let kv = bucket_of(&mut store, &b)?;
            let r: Result<(), KvError> = kv.put(&key, value.into()).await.map(|_| ()).map_err(other);
            Ok((r,))
        })
    })?;
    inst.func_wrap_async("[method]bucket.delete", |mut store, (b, key): (Resource<KvBucket>, String)| {
        Box::new(async move {
            let kv = bucket_of(&mut store, &b)?;
            let r: Result<(), KvError> = kv.delete(&key).await.map_err(other);
            Ok((r,))
        })
    })?;
    inst.func_wrap_async("[method]bucket.exists", |mut store, (b, key): (Resource<KvBucket>, String)| {
        Box::new(async move {
            let kv = bucket_of(&mut store, &b)?;
            let r: Result<bool, KvError> = kv.get(&key).await.map(|v| v.is_some()).map_err(other);
            Ok((r,))
        })
    })?;
    inst.func_wrap_async("[method]bucket.list-keys", |mut store, (b, cursor): (Resource<KvBucket>, Option<u64>)| {
        Box::new(async move {
            let kv = bucket_of(&mut store, &b)?;
            Ok((list_keys(&kv, cursor).await,))
        })
    })?;
    Ok(())
}

/// Links `wasi:keyvalue/atomics` (`import`) into `linker`.
///
/// # Errors
/// When the linker refuses a definition.
pub fn link_atomics(linker: &mut Linker<GuestState>, import: &str) -> wasmtime::Result<()> {
    let mut inst = linker.instance(import)?;
    inst.func_wrap_async("increment", |mut store, (b, key, delta): (Resource<KvBucket>, String, u64)| {
        Box::new(async move {
            let kv = bucket_of(&mut store, &b)?;
            Ok((increment(&kv, &key, delta).await,))
        })
    })?;
    Ok(())
}
