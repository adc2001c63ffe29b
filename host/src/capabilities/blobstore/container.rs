//! `wasi:blobstore/container`: one container's objects, and the stream of its object names.

use std::pin::Pin;

use async_nats::jetstream::object_store::{self, DeleteErrorKind, InfoErrorKind, ObjectStore};
use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt};
use wasmtime::component::Resource;

use super::bindings::wasi::blobstore::container::{Host, HostContainer, HostStreamObjectNames};
use super::bindings::wasi::blobstore::types::{ContainerMetadata, ObjectMetadata};
use super::values::{IncomingValue, Live, OutgoingValue, PanicSafe, Slot};
use super::{check_object_name, BlobError};
use crate::capabilities::view::View;

/// Names one `read-stream-object-names` or `skip-stream-object-names` call goes through at most.
pub const MAX_NAMES_PER_READ: u64 = 1000;

/// An open container, held in the guest's resource table.
#[derive(Clone)]
pub struct Container {
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
    pub(super) fn new(name: &str, store: ObjectStore, js: async_nats::jetstream::Context) -> Self {
        Self { name: name.to_string(), store, js }
    }

    /// Object `name`, to read. A link object (which the object store would follow into another
    /// bucket, one the grant may not reach) is refused: guests cannot make links, but other
    /// tools can.
    ///
    /// Answers its size and a reader that fetches its chunks one at a time as they are read
    /// ([`super::chunks`]), so a read holds one chunk of host memory however slow the guest.
    pub(super) async fn object(&self, name: &str) -> Result<(u64, impl AsyncRead + Send + Unpin + 'static), BlobError> {
        let info = self.info(name).await?.ok_or_else(|| self.no_such(name))?;
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

    pub(super) async fn info(&self, name: &str) -> Result<Option<object_store::ObjectInfo>, BlobError> {
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

    fn no_such(&self, object: &str) -> BlobError {
        BlobError::NoSuchObject { container: self.name.clone(), object: object.to_string() }
    }
}

/// The names of a container's objects, read a page at a time.
pub struct ObjectNames {
    names: Pin<Box<dyn Stream<Item = Result<object_store::ObjectInfo, object_store::ListerError>> + Send>>,
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
                Some(Ok(info)) if info.deleted => {}
                Some(Ok(info)) => names.push(info.name),
                Some(Err(e)) => return Err(BlobError::backend(format!("listing container `{}`", self.container), e)),
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
        Ok(ContainerMetadata { created_at: c.created_at().await, name: c.name })
    }

    async fn get_data(&mut self, this: Resource<Container>, name: String, start: u64, end: u64) -> Result<Resource<IncomingValue>, BlobError> {
        let c = self.table().get(&this)?.clone();
        check_object_name(&name)?;
        if end < start {
            return Err(BlobError::BadRange { start, end });
        }
        let slot = self.call_state::<Live>().reader()?;
        let (size, object) = c.object(&name).await?;
        let (start, end) = (start.min(size), end.min(size));
        let mut object = PanicSafe::new(object, Some(slot));
        if start > 0 {
            // The object store reads from the beginning: skip to `start` without keeping it.
            tokio::io::copy(&mut (&mut object).take(start), &mut tokio::io::sink())
                .await
                .map_err(|e| BlobError::backend(format!("reading `{name}` from container `{}`", c.name), e))?;
        }
        let value = IncomingValue::new(PanicSafe::new(object.take(end - start), None), end - start);
        Ok(self.table().push(value)?)
    }

    async fn write_data(&mut self, this: Resource<Container>, name: String, data: Resource<OutgoingValue>) -> Result<(), BlobError> {
        let c = self.table().get(&this)?.clone();
        check_object_name(&name)?;
        let value = self.table().get_mut(&data)?;
        value.start_upload(move |mut body| async move { c.put(&name, &mut body).await })
    }

    async fn list_objects(&mut self, this: Resource<Container>) -> Result<Resource<ObjectNames>, BlobError> {
        let c = self.table().get(&this)?.clone();
        let slot = self.call_state::<Live>().reader()?;
        let list = c.store.list().await.map_err(|e| BlobError::backend(format!("listing container `{}`", c.name), e))?;
        Ok(self.table().push(ObjectNames { names: Box::pin(list), container: c.name, done: false, _slot: Some(slot) })?)
    }

    async fn delete_object(&mut self, this: Resource<Container>, name: String) -> Result<(), BlobError> {
        let c = self.table().get(&this)?.clone();
        check_object_name(&name)?;
        c.delete_object(&name).await
    }

    async fn delete_objects(&mut self, this: Resource<Container>, names: Vec<String>) -> Result<(), BlobError> {
        let c = self.table().get(&this)?.clone();
        for name in &names {
            check_object_name(name)?;
        }
        for name in &names {
            c.delete_object(name).await?;
        }
        Ok(())
    }

    async fn has_object(&mut self, this: Resource<Container>, name: String) -> Result<bool, BlobError> {
        let c = self.table().get(&this)?.clone();
        check_object_name(&name)?;
        Ok(c.info(&name).await?.is_some())
    }

    async fn object_info(&mut self, this: Resource<Container>, name: String) -> Result<ObjectMetadata, BlobError> {
        let c = self.table().get(&this)?.clone();
        check_object_name(&name)?;
        let info = c.info(&name).await?.ok_or_else(|| c.no_such(&name))?;
        let created_at = info.modified.map(|t| u64::try_from(t.unix_timestamp()).unwrap_or(0)).unwrap_or(0);
        Ok(ObjectMetadata { name, container: c.name.clone(), created_at, size: info.size as u64 })
    }

    async fn clear(&mut self, this: Resource<Container>) -> Result<(), BlobError> {
        let c = self.table().get(&this)?.clone();
        let list = c.store.list().await.map_err(|e| BlobError::backend(format!("listing container `{}`", c.name), e))?;
        let mut names = ObjectNames { names: Box::pin(list), container: c.name.clone(), done: false, _slot: None };
        loop {
            let (page, done) = names.next(MAX_NAMES_PER_READ).await?;
            for name in &page {
                c.delete_object(name).await?;
            }
            if done {
                return Ok(());
            }
        }
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
