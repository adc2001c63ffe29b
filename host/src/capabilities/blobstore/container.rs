//! `wasi:blobstore/container`: one container's objects, and the stream of its object names, on
//! the lattice's object store or on an external provider ([`Backend`]).

use std::pin::Pin;
use std::sync::Arc;

use async_nats::jetstream::object_store::{self, DeleteErrorKind, InfoErrorKind, ObjectStore};
use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt};
use wasmtime::component::Resource;

use super::bindings::wasi::blobstore::container::{Host, HostContainer, HostStreamObjectNames};
use super::bindings::wasi::blobstore::types::{ContainerMetadata, ObjectMetadata};
use super::provider::ProviderStore;
use super::values::{BodyReader, IncomingValue, Live, OutgoingValue, PanicSafe, Slot};
use super::{check_object_name, BlobError};
use crate::capabilities::context::ImportContext;
use crate::capabilities::view::View;

/// Names one `read-stream-object-names` or `skip-stream-object-names` call goes through at most.
pub const MAX_NAMES_PER_READ: u64 = 1000;

/// An open container, held in the guest's resource table.
#[derive(Clone)]
pub struct Container {
    name: String,
    backend: Backend,
}

/// Where a container's objects are.
#[derive(Clone)]
enum Backend {
    /// An object-store bucket of the lattice (the built-in provider; boxed: its handles are
    /// large).
    Nats(Box<Nats>),
    /// An external provider's, over wRPC.
    Provider { store: ProviderStore, ctx: Arc<ImportContext> },
}

/// A container on the lattice's object store.
#[derive(Clone)]
pub(super) struct Nats {
    name: String,
    store: ObjectStore,
    /// The lattice's JetStream, asked when the guest wants the container's metadata.
    js: async_nats::jetstream::Context,
}

impl std::fmt::Debug for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Container {
    /// Bucket `name` of the lattice's object store.
    pub(super) fn nats(name: &str, store: ObjectStore, js: async_nats::jetstream::Context) -> Self {
        Self { name: name.to_string(), backend: Backend::Nats(Box::new(Nats { name: name.to_string(), store, js })) }
    }

    /// Container `name` of an external provider.
    pub(super) fn provider(name: &str, store: ProviderStore, ctx: Arc<ImportContext>) -> Self {
        Self { name: name.to_string(), backend: Backend::Provider { store, ctx } }
    }

    /// The object-store bucket, when the container is one.
    pub(super) fn as_nats(&self) -> Option<&Nats> {
        match &self.backend {
            Backend::Nats(n) => Some(n),
            Backend::Provider { .. } => None,
        }
    }

    fn no_such(&self, object: &str) -> BlobError {
        BlobError::NoSuchObject { container: self.name.clone(), object: object.to_string() }
    }

    /// When the container was created (seconds since the epoch; 0 when the store does not say).
    async fn created_at(&self) -> Result<u64, BlobError> {
        match &self.backend {
            Backend::Nats(n) => Ok(n.created_at().await),
            Backend::Provider { store, ctx } => store.created_at(ctx, &self.name).await,
        }
    }

    /// Bytes `start..end` of object `name` (clamped to its size), as a value holding `slot`.
    async fn read(&self, name: &str, start: u64, end: u64, slot: Slot) -> Result<IncomingValue, BlobError> {
        match &self.backend {
            Backend::Nats(n) => {
                let (size, object) = n.object(name).await?;
                let (start, end) = (start.min(size), end.min(size));
                let mut object = PanicSafe::new(object, Some(slot));
                if start > 0 {
                    // The object store reads from the beginning: skip to `start` without keeping it.
                    tokio::io::copy(&mut (&mut object).take(start), &mut tokio::io::sink())
                        .await
                        .map_err(|e| BlobError::backend(format!("reading `{name}` from container `{}`", self.name), e))?;
                }
                Ok(IncomingValue::new(PanicSafe::new(object.take(end - start), None), end - start))
            }
            Backend::Provider { store, ctx } => {
                let (_, size) = store.object_info(ctx, &self.name, name).await?;
                let (start, end) = (start.min(size), end.min(size));
                let stream = store.clone().read(ctx.clone(), self.name.clone(), name.to_string(), start, end);
                let reader = tokio_util::io::StreamReader::new(Box::pin(stream));
                Ok(IncomingValue::new(PanicSafe::new(reader, Some(slot)), end - start))
            }
        }
    }

    /// Stores object `name` from `body` (what the guest writes until `finish`).
    async fn put(&self, name: &str, mut body: BodyReader) -> Result<(), BlobError> {
        match &self.backend {
            Backend::Nats(n) => n.put(name, &mut body).await,
            Backend::Provider { store, ctx } => store.write(ctx, &self.name, name, body).await,
        }
    }

    /// The names of the container's objects, a page at a time.
    async fn names(&self, slot: Option<Slot>) -> Result<ObjectNames, BlobError> {
        let names: Pin<Box<dyn Stream<Item = Result<String, BlobError>> + Send>> = match &self.backend {
            Backend::Nats(n) => {
                let op = format!("listing container `{}`", self.name);
                let list = n.store.list().await.map_err(|e| BlobError::backend(op.clone(), e))?;
                Box::pin(list.filter_map(move |info| {
                    let named = match info {
                        Ok(info) if info.deleted => None,
                        Ok(info) => Some(Ok(info.name)),
                        Err(e) => Some(Err(BlobError::backend(op.clone(), e))),
                    };
                    futures::future::ready(named)
                }))
            }
            Backend::Provider { store, ctx } => Box::pin(store.clone().names(ctx.clone(), self.name.clone())),
        };
        Ok(ObjectNames { names, container: self.name.clone(), done: false, _slot: slot })
    }

    /// Deletes objects `names`; deleting what is not there succeeds.
    async fn delete_objects(&self, names: Vec<String>) -> Result<(), BlobError> {
        for name in &names {
            check_object_name(name)?;
        }
        match &self.backend {
            Backend::Nats(n) => {
                for name in &names {
                    n.delete_object(name).await?;
                }
                Ok(())
            }
            Backend::Provider { store, ctx } => store.delete_objects(ctx, &self.name, names).await,
        }
    }

    /// Whether object `name` exists.
    async fn has(&self, name: &str) -> Result<bool, BlobError> {
        match &self.backend {
            Backend::Nats(n) => Ok(n.info(name).await?.is_some()),
            Backend::Provider { store, ctx } => store.has_object(ctx, &self.name, name).await,
        }
    }

    /// Object `name`'s metadata.
    async fn object_info(&self, name: String) -> Result<ObjectMetadata, BlobError> {
        let (created_at, size) = match &self.backend {
            Backend::Nats(n) => {
                let info = n.info(&name).await?.ok_or_else(|| self.no_such(&name))?;
                (info.modified.map(|t| u64::try_from(t.unix_timestamp()).unwrap_or(0)).unwrap_or(0), info.size as u64)
            }
            Backend::Provider { store, ctx } => store.object_info(ctx, &self.name, &name).await?,
        };
        Ok(ObjectMetadata { name, container: self.name.clone(), created_at, size })
    }

    /// Deletes every object.
    async fn clear(&self) -> Result<(), BlobError> {
        match &self.backend {
            Backend::Nats(n) => {
                let mut names = self.names(None).await?;
                loop {
                    let (page, done) = names.next(MAX_NAMES_PER_READ).await?;
                    for name in &page {
                        n.delete_object(name).await?;
                    }
                    if done {
                        return Ok(());
                    }
                }
            }
            Backend::Provider { store, ctx } => store.clear(ctx, &self.name).await,
        }
    }
}

impl Nats {
    /// Object `name`, to read. A link object (which the object store would follow into another
    /// bucket, one the grant may not reach) is refused: guests cannot make links, but other
    /// tools can.
    ///
    /// Answers its size and a reader that fetches its chunks one at a time as they are read
    /// ([`super::chunks`]), so a read holds one chunk of host memory however slow the guest.
    pub(super) async fn object(&self, name: &str) -> Result<(u64, impl AsyncRead + Send + Unpin + 'static), BlobError> {
        let info = self.info(name).await?.ok_or_else(|| BlobError::NoSuchObject { container: self.name.clone(), object: name.to_string() })?;
        if info.options.as_ref().is_some_and(|o| o.link.is_some()) {
            return Err(BlobError::Usage("the object is a link to another bucket; links are not followed"));
        }
        let stream = self
            .js
            .get_stream_no_info(format!("OBJ_{}", self.name))
            .await
            .map_err(|e| BlobError::backend(format!("reading `{name}` from container `{}`", self.name), e))?;
        let size = u64::try_from(info.size).unwrap_or(u64::MAX);
        Ok((size, tokio_util::io::StreamReader::new(super::chunks::chunks(stream, &self.name, &info))))
    }

    /// Writes object `name` from `data`, replacing what was there once all of it is stored.
    pub(super) async fn put(&self, name: &str, data: &mut (impl AsyncRead + Unpin)) -> Result<(), BlobError> {
        self.store.put(name, data).await.map(|_| ()).map_err(|e| BlobError::backend(format!("writing `{name}` to container `{}`", self.name), e))
    }

    /// Deletes object `name`; deleting what is not there succeeds.
    pub(super) async fn delete_object(&self, name: &str) -> Result<(), BlobError> {
        match self.store.delete(name).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == DeleteErrorKind::NotFound => Ok(()),
            Err(e) => Err(BlobError::backend(format!("deleting `{name}` from container `{}`", self.name), e)),
        }
    }

    async fn info(&self, name: &str) -> Result<Option<object_store::ObjectInfo>, BlobError> {
        match self.store.info(name).await {
            Ok(info) if !info.deleted => Ok(Some(info)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == InfoErrorKind::NotFound => Ok(None),
            Err(e) => Err(BlobError::backend(format!("reading what `{name}` in container `{}` is", self.name), e)),
        }
    }

    /// When the container was created (seconds since the epoch; 0 when JetStream does not say).
    async fn created_at(&self) -> u64 {
        match self.js.get_stream(format!("OBJ_{}", self.name)).await {
            Ok(mut stream) => stream.info().await.map(|i| u64::try_from(i.created.unix_timestamp()).unwrap_or(0)).unwrap_or(0),
            Err(_) => 0,
        }
    }
}

/// The names of a container's objects, read a page at a time.
pub struct ObjectNames {
    names: Pin<Box<dyn Stream<Item = Result<String, BlobError>> + Send>>,
    container: String,
    done: bool,
    /// Its place among the call's readers (`None` inside `clear`).
    _slot: Option<Slot>,
}

impl std::fmt::Debug for ObjectNames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectNames").field("container", &self.container).field("done", &self.done).finish_non_exhaustive()
    }
}

impl ObjectNames {
    /// Up to `len` (at most [`MAX_NAMES_PER_READ`]) names, and whether the stream has ended.
    async fn next(&mut self, len: u64) -> Result<(Vec<String>, bool), BlobError> {
        let mut names = Vec::new();
        while !self.done && (names.len() as u64) < len.min(MAX_NAMES_PER_READ) {
            match self.names.next().await {
                Some(Ok(name)) => names.push(name),
                Some(Err(e)) => return Err(e),
                None => self.done = true,
            }
        }
        Ok((names, self.done))
    }
}

impl Host for View<'_> {}

impl HostContainer for View<'_> {
    async fn name(&mut self, this: Resource<Container>) -> Result<String, BlobError> {
        Ok(self.table().get(&this)?.name.clone())
    }

    async fn info(&mut self, this: Resource<Container>) -> Result<ContainerMetadata, BlobError> {
        let c = self.table().get(&this)?.clone();
        // Asked only here: opening a container (every request of a typical guest) costs no
        // stream lookup for it.
        Ok(ContainerMetadata { created_at: c.created_at().await?, name: c.name })
    }

    async fn get_data(&mut self, this: Resource<Container>, name: String, start: u64, end: u64) -> Result<Resource<IncomingValue>, BlobError> {
        let c = self.table().get(&this)?.clone();
        check_object_name(&name)?;
        if end < start {
            return Err(BlobError::BadRange { start, end });
        }
        let slot = self.call_state::<Live>().reader()?;
        let value = c.read(&name, start, end, slot).await?;
        Ok(self.table().push(value)?)
    }

    async fn write_data(&mut self, this: Resource<Container>, name: String, data: Resource<OutgoingValue>) -> Result<(), BlobError> {
        let c = self.table().get(&this)?.clone();
        check_object_name(&name)?;
        let value = self.table().get_mut(&data)?;
        value.start_upload(move |body| async move { c.put(&name, body).await })
    }

    async fn list_objects(&mut self, this: Resource<Container>) -> Result<Resource<ObjectNames>, BlobError> {
        let c = self.table().get(&this)?.clone();
        let slot = self.call_state::<Live>().reader()?;
        let names = c.names(Some(slot)).await?;
        Ok(self.table().push(names)?)
    }

    async fn delete_object(&mut self, this: Resource<Container>, name: String) -> Result<(), BlobError> {
        let c = self.table().get(&this)?.clone();
        c.delete_objects(vec![name]).await
    }

    async fn delete_objects(&mut self, this: Resource<Container>, names: Vec<String>) -> Result<(), BlobError> {
        let c = self.table().get(&this)?.clone();
        c.delete_objects(names).await
    }

    async fn has_object(&mut self, this: Resource<Container>, name: String) -> Result<bool, BlobError> {
        let c = self.table().get(&this)?.clone();
        check_object_name(&name)?;
        c.has(&name).await
    }

    async fn object_info(&mut self, this: Resource<Container>, name: String) -> Result<ObjectMetadata, BlobError> {
        let c = self.table().get(&this)?.clone();
        check_object_name(&name)?;
        c.object_info(name).await
    }

    async fn clear(&mut self, this: Resource<Container>) -> Result<(), BlobError> {
        let c = self.table().get(&this)?.clone();
        c.clear().await
    }

    async fn drop(&mut self, this: Resource<Container>) -> wasmtime::Result<()> {
        self.table().delete(this)?;
        Ok(())
    }
}

impl HostStreamObjectNames for View<'_> {
    async fn read_stream_object_names(&mut self, this: Resource<ObjectNames>, len: u64) -> Result<(Vec<String>, bool), BlobError> {
        self.table().get_mut(&this)?.next(len).await
    }

    async fn skip_stream_object_names(&mut self, this: Resource<ObjectNames>, num: u64) -> Result<(u64, bool), BlobError> {
        let (skipped, done) = self.table().get_mut(&this)?.next(num).await?;
        Ok((skipped.len() as u64, done))
    }

    async fn drop(&mut self, this: Resource<ObjectNames>) -> wasmtime::Result<()> {
        self.table().delete(this)?;
        Ok(())
    }
}
