//! Containers: the lattice's object store (a container is the object-store bucket of its name,
//! stream `OBJ_<name>`, created with the host's `--kv-replicas`), or an external provider's.
//! Which names a component may use was decided by the capability resolver before anything here
//! runs.

use std::error::Error as _;

use async_nats::jetstream::context::{GetStreamError, GetStreamErrorKind, ObjectStoreError};
use async_nats::jetstream::{self, object_store, ErrorCode};

use super::bindings::wasi::blobstore::types::ObjectId;
use super::container::Container;
use super::values::PanicSafe;
use super::{Backing, BlobError, Granted};
use crate::capabilities::context::ImportContext;

/// Whether `e` says the bucket's stream does not exist (rather than that JetStream failed).
fn missing(e: &ObjectStoreError) -> bool {
    e.source()
        .and_then(|s| s.downcast_ref::<GetStreamError>())
        .is_some_and(|g| matches!(g.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND))
}

/// Opens bucket `name` of the lattice's object store.
async fn open_bucket(ctx: &ImportContext, name: &str) -> Result<Container, BlobError> {
    let js = jetstream::new(ctx.nats.clone());
    match js.get_object_store(name).await {
        Ok(store) => Ok(Container::nats(name, store, js)),
        Err(e) if missing(&e) => Err(BlobError::NoSuchContainer(name.to_string())),
        Err(e) => Err(BlobError::backend(format!("opening container `{name}`"), e)),
    }
}

/// Opens container `name`.
pub async fn open(g: &Granted, name: &str) -> Result<Container, BlobError> {
    match &g.backing {
        Backing::Builtin(_) => open_bucket(&g.ctx, name).await,
        Backing::Provider(p) if p.container_exists(&g.ctx, name).await? => Ok(Container::provider(name, p.clone(), g.ctx.clone())),
        Backing::Provider(_) => Err(BlobError::NoSuchContainer(name.to_string())),
    }
}

/// Creates container `name`, or opens it when it exists (many instances of a component may
/// create the same container at once; all of them get it).
pub async fn create(g: &Granted, name: &str) -> Result<Container, BlobError> {
    if let Backing::Provider(p) = &g.backing {
        p.create_container(&g.ctx, name).await?;
        return Ok(Container::provider(name, p.clone(), g.ctx.clone()));
    }
    match open_bucket(&g.ctx, name).await {
        Err(BlobError::NoSuchContainer(_)) => {}
        other => return other,
    }
    let js = jetstream::new(g.ctx.nats.clone());
    let config = object_store::Config { bucket: name.to_string(), num_replicas: g.ctx.resolver.kv_replicas(), ..Default::default() };
    match js.create_object_store(config).await {
        Ok(store) => Ok(Container::nats(name, store, js)),
        // Lost a race with another creator: open what it made.
        Err(e) => open_bucket(&g.ctx, name).await.map_err(|_| BlobError::backend(format!("creating container `{name}`"), e)),
    }
}

/// Deletes container `name` and everything in it.
pub async fn delete(g: &Granted, name: &str) -> Result<(), BlobError> {
    if let Backing::Provider(p) = &g.backing {
        return p.delete_container(&g.ctx, name).await;
    }
    open_bucket(&g.ctx, name).await?;
    let js = jetstream::new(g.ctx.nats.clone());
    js.delete_object_store(name).await.map_err(|e| BlobError::backend(format!("deleting container `{name}`"), e))
}

/// Whether container `name` exists.
pub async fn exists(g: &Granted, name: &str) -> Result<bool, BlobError> {
    if let Backing::Provider(p) = &g.backing {
        return p.container_exists(&g.ctx, name).await;
    }
    match open_bucket(&g.ctx, name).await {
        Ok(_) => Ok(true),
        Err(BlobError::NoSuchContainer(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Copies object `src` to `dest` (then deletes `src` when `remove`: a move), streaming on the
/// object store (the object never sits whole in memory), by the provider's own copy or move on
/// a provider.
pub async fn copy(g: &Granted, src: &ObjectId, dest: &ObjectId, remove: bool) -> Result<(), BlobError> {
    if let Backing::Provider(p) = &g.backing {
        return p.copy(&g.ctx, (&src.container, &src.object), (&dest.container, &dest.object), remove).await;
    }
    let from = open_bucket(&g.ctx, &src.container).await?;
    let to = if src.container == dest.container { from.clone() } else { open_bucket(&g.ctx, &dest.container).await? };
    let (Some(from), Some(to)) = (from.as_nats(), to.as_nats()) else {
        return Err(BlobError::Usage("both containers are on the lattice's object store"));
    };
    let (_, reader) = from.object(&src.object).await?;
    let mut object = PanicSafe::new(reader, None);
    to.put(&dest.object, &mut object).await?;
    if remove && (&src.container, &src.object) != (&dest.container, &dest.object) {
        from.delete_object(&src.object).await?;
    }
    Ok(())
}
