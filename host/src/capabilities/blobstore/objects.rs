//! Containers on the lattice's NATS object store: a container is the object-store bucket of
//! its name (stream `OBJ_<name>`), created with the host's `--kv-replicas`. Which names a
//! component may use was decided by the capability resolver before anything here runs.

use std::error::Error as _;

use async_nats::jetstream::context::{GetStreamError, GetStreamErrorKind, ObjectStoreError};
use async_nats::jetstream::{self, object_store, ErrorCode};

use super::container::Container;
use super::values::PanicSafe;
use super::bindings::wasi::blobstore::types::ObjectId;
use super::BlobError;
use crate::capabilities::context::ImportContext;

/// Whether `e` says the bucket's stream does not exist (rather than that JetStream failed).
fn missing(e: &ObjectStoreError) -> bool {
    e.source()
        .and_then(|s| s.downcast_ref::<GetStreamError>())
        .is_some_and(|g| matches!(g.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND))
}

/// Opens container `name`.
pub async fn open(ctx: &ImportContext, name: &str) -> Result<Container, BlobError> {
    let js = jetstream::new(ctx.nats.clone());
    match js.get_object_store(name).await {
        Ok(store) => Ok(Container::new(name, store, js)),
        Err(e) if missing(&e) => Err(BlobError::NoSuchContainer(name.to_string())),
        Err(e) => Err(BlobError::backend(format!("opening container `{name}`"), e)),
    }
}

/// Creates container `name`, or opens it when it exists (many instances of a component may
/// create the same container at once; all of them get it).
pub async fn create(ctx: &ImportContext, name: &str) -> Result<Container, BlobError> {
    match open(ctx, name).await {
        Err(BlobError::NoSuchContainer(_)) => {}
        other => return other,
    }
    let js = jetstream::new(ctx.nats.clone());
    let config = object_store::Config { bucket: name.to_string(), num_replicas: ctx.resolver.kv_replicas(), ..Default::default() };
    match js.create_object_store(config).await {
        Ok(store) => Ok(Container::new(name, store, js)),
        // Lost a race with another creator: open what it made.
        Err(e) => open(ctx, name).await.map_err(|_| BlobError::backend(format!("creating container `{name}`"), e)),
    }
}

/// Deletes container `name` and everything in it.
pub async fn delete(ctx: &ImportContext, name: &str) -> Result<(), BlobError> {
    open(ctx, name).await?;
    let js = jetstream::new(ctx.nats.clone());
    js.delete_object_store(name).await.map_err(|e| BlobError::backend(format!("deleting container `{name}`"), e))
}

/// Whether container `name` exists.
pub async fn exists(ctx: &ImportContext, name: &str) -> Result<bool, BlobError> {
    match open(ctx, name).await {
        Ok(_) => Ok(true),
        Err(BlobError::NoSuchContainer(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Copies object `src` to `dest`, streaming (the object never sits whole in memory).
pub async fn copy(ctx: &ImportContext, src: &ObjectId, dest: &ObjectId) -> Result<(), BlobError> {
    let from = open(ctx, &src.container).await?;
    let to = if src.container == dest.container { from.clone() } else { open(ctx, &dest.container).await? };
    let (_, reader) = from.object(&src.object).await?;
    let mut object = PanicSafe::new(reader, None);
    to.put(&dest.object, &mut object).await
}
