//! `wasi:blobstore` served by an external provider (wasmCloud's `blobstore-fs`, `blobstore-s3`,
//! …): each operation a `wrpc:blobstore/blobstore@0.2.0` call to the provider over wRPC, with the
//! guest's container and object names, as wasmCloud hosts make them — bounded per provider and by
//! the call's deadline like any provider call ([`crate::wasm::transport::wrpc::Wrpc::invoke`]).
//! Which containers a component may use is the provider's to say (its link config, e.g.
//! `blobstore-fs`'s `ROOT`), as on wasmCloud.
//!
//! wRPC over NATS has no back-pressure: a provider sends a stream as fast as it reads it, and
//! a reader that falls behind holds up every other call this host makes to that provider (they
//! share one inbox). So an object is read in windows of at most [`READ_WINDOW`] bytes
//! (`get-container-data` with a range), each taken whole as it arrives and the next asked only
//! when the guest has read the last: a slow guest costs one window of host memory and holds up
//! nobody. Names are listed the same way, [`NAMES_PAGE`] at a time (`limit` and `offset`).
//! Writes need no window: the host is the sender, and a slow provider slows the guest.

use std::future::Future;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};

use super::values::{BodyReader, CHUNK};
use super::BlobError;
use crate::capabilities::context::ImportContext;

mod bindings {
    wit_bindgen_wrpc::generate!({
        inline: "package trellis:blobs; world blobs { import wrpc:blobstore/blobstore@0.2.0; }",
        path: "../wit/wrpc-blobstore",
        world: "trellis:blobs/blobs",
        generate_all,
    });
}

use bindings::wrpc::blobstore::blobstore as remote;
use bindings::wrpc::blobstore::types::ObjectId;

/// Bytes of an object asked of the provider at once.
pub const READ_WINDOW: u64 = 1 << 20;

/// Object names asked of the provider at once.
pub const NAMES_PAGE: u64 = 1000;

/// Longest refusal of a provider's that reaches the guest, in bytes (the rest is cut).
pub const MAX_REASON_BYTES: usize = 1024;

/// `reason`, cut to at most [`MAX_REASON_BYTES`] at a character boundary.
fn bounded(mut reason: String) -> String {
    if reason.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push('…');
    }
    reason
}

/// The blobstore of the external provider a component's link targets.
#[derive(Debug, Clone)]
pub struct ProviderStore {
    /// The provider the link targets.
    pub provider: String,
    /// The link (sent as the `link-name` header).
    pub link_name: String,
}

fn id(container: &str, object: &str) -> ObjectId {
    ObjectId { container: container.to_string(), object: object.to_string() }
}

/// The transfer `io` of a wRPC call with streams, or nothing to do.
async fn drive(io: Option<impl Future<Output = anyhow::Result<()>>>) -> anyhow::Result<()> {
    match io {
        Some(io) => io.await,
        None => Ok(()),
    }
}

impl ProviderStore {
    /// Runs `call` against the provider; its `Err(string)` is the provider's own refusal.
    async fn run<T, F, Fut>(&self, ctx: &ImportContext, op: String, call: F) -> Result<T, BlobError>
    where
        F: FnOnce(Arc<wrpc_transport_nats::Client>, Option<async_nats::HeaderMap>) -> Fut,
        Fut: Future<Output = anyhow::Result<Result<T, String>>>,
    {
        let timeout = ctx.runtime.config().max_execution_time;
        match ctx.wrpc.invoke(&ctx.source_id, &self.link_name, &self.provider, timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(reason)) => Err(BlobError::Backend { op, reason: format!("blobstore provider `{}`: {}", self.provider, bounded(reason)) }),
            Err(e) => Err(BlobError::backend(op, e)),
        }
    }

    /// `create-container`.
    pub async fn create_container(&self, ctx: &ImportContext, name: &str) -> Result<(), BlobError> {
        let name = name.to_string();
        self.run(ctx, format!("creating container `{name}`"), |c, cx| async move { remote::create_container(&*c, cx, &name).await }).await
    }

    /// `container-exists`.
    pub async fn container_exists(&self, ctx: &ImportContext, name: &str) -> Result<bool, BlobError> {
        let name = name.to_string();
        self.run(ctx, format!("looking up container `{name}`"), |c, cx| async move { remote::container_exists(&*c, cx, &name).await }).await
    }

    /// `delete-container`.
    pub async fn delete_container(&self, ctx: &ImportContext, name: &str) -> Result<(), BlobError> {
        let name = name.to_string();
        self.run(ctx, format!("deleting container `{name}`"), |c, cx| async move { remote::delete_container(&*c, cx, &name).await }).await
    }

    /// `clear-container`.
    pub async fn clear(&self, ctx: &ImportContext, name: &str) -> Result<(), BlobError> {
        let name = name.to_string();
        self.run(ctx, format!("clearing container `{name}`"), |c, cx| async move { remote::clear_container(&*c, cx, &name).await }).await
    }

    /// When container `name` was created (`get-container-info`).
    pub async fn created_at(&self, ctx: &ImportContext, name: &str) -> Result<u64, BlobError> {
        let name = name.to_string();
        let info = self.run(ctx, format!("reading what container `{name}` is"), |c, cx| async move { remote::get_container_info(&*c, cx, &name).await }).await?;
        Ok(info.created_at)
    }

    /// `copy-object`, or `move-object` when `remove`.
    pub async fn copy(&self, ctx: &ImportContext, src: (&str, &str), dest: (&str, &str), remove: bool) -> Result<(), BlobError> {
        let (src, dest) = (id(src.0, src.1), id(dest.0, dest.1));
        let op = format!("{} `{}` in `{}` to `{}` in `{}`", if remove { "moving" } else { "copying" }, src.object, src.container, dest.object, dest.container);
        self.run(ctx, op, |c, cx| async move {
            if remove {
                remote::move_object(&*c, cx, &src, &dest).await
            } else {
                remote::copy_object(&*c, cx, &src, &dest).await
            }
        })
        .await
    }

    /// `delete-objects`.
    pub async fn delete_objects(&self, ctx: &ImportContext, container: &str, names: Vec<String>) -> Result<(), BlobError> {
        let container = container.to_string();
        self.run(ctx, format!("deleting from container `{container}`"), |c, cx| async move {
            remote::delete_objects(&*c, cx, &container, &names.iter().map(String::as_str).collect::<Vec<_>>()).await
        })
        .await
    }

    /// `has-object`.
    pub async fn has_object(&self, ctx: &ImportContext, container: &str, object: &str) -> Result<bool, BlobError> {
        let id = id(container, object);
        self.run(ctx, format!("looking up `{object}` in container `{container}`"), |c, cx| async move { remote::has_object(&*c, cx, &id).await }).await
    }

    /// `get-object-info`: when the object was created, and its size.
    pub async fn object_info(&self, ctx: &ImportContext, container: &str, object: &str) -> Result<(u64, u64), BlobError> {
        let id = id(container, object);
        let info = self.run(ctx, format!("reading what `{object}` in container `{container}` is"), |c, cx| async move { remote::get_object_info(&*c, cx, &id).await }).await?;
        Ok((info.created_at, info.size))
    }

    /// Bytes `start..end` of the object, whole: one `get-container-data` call, taken as it
    /// arrives (never more than asked).
    async fn window(&self, ctx: &ImportContext, container: &str, object: &str, start: u64, end: u64) -> Result<Bytes, BlobError> {
        let id = id(container, object);
        let want = usize::try_from(end - start).unwrap_or(usize::MAX);
        self.run(ctx, format!("reading `{object}` from container `{container}`"), |c, cx| async move {
            let (answer, io) = remote::get_container_data(&*c, cx, &id, start, end).await?;
            let (mut data, status) = match answer {
                Ok(stream) => stream,
                Err(refused) => return Ok(Err(refused)),
            };
            let take = async {
                let mut buf = BytesMut::new();
                while let Some(chunk) = data.next().await {
                    anyhow::ensure!(buf.len() + chunk.len() <= want, "the provider sent more than the {want} bytes asked");
                    buf.extend_from_slice(&chunk);
                }
                Ok(buf.freeze())
            };
            let (bytes, (), status) = tokio::try_join!(take, drive(io), async { Ok(status.await) })?;
            Ok(status.map(|()| bytes))
        })
        .await
    }

    /// Bytes `start..end` of the object as a stream read a window at a time, each window asked
    /// when the one before has been taken. A window shorter than asked (the object shrank or
    /// was replaced meanwhile) is a read error, never a quietly short value.
    pub fn read(self, ctx: Arc<ImportContext>, container: String, object: String, start: u64, end: u64) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        futures::stream::try_unfold(start, move |at| {
            let (store, ctx, container, object) = (self.clone(), ctx.clone(), container.clone(), object.clone());
            async move {
                if at >= end {
                    return Ok(None);
                }
                let to = end.min(at.saturating_add(READ_WINDOW));
                let bytes = store.window(&ctx, &container, &object, at, to).await.map_err(std::io::Error::other)?;
                if (bytes.len() as u64) < to - at {
                    return Err(std::io::Error::other(format!(
                        "`{object}` in container `{container}` changed while it was read: bytes {at} to {to} came back as {} bytes",
                        bytes.len()
                    )));
                }
                Ok(Some((bytes, to)))
            }
        })
    }

    /// `write-container-data` from `body` (what the guest writes, until `finish`), then checked:
    /// the object the provider reports must be as large as what was sent. A provider built on
    /// `wrpc-transport-nats` 0.29 (wasmcloud-provider-sdk 0.17, wasmCloud's own providers) can
    /// drop the start of a stream under load (a message routed before its subscription exists;
    /// fixed in 0.31), which would otherwise store a shorter object and report success.
    pub async fn write(&self, ctx: &ImportContext, container: &str, object: &str, body: BodyReader) -> Result<(), BlobError> {
        let id = id(container, object);
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = sent.clone();
        let data = tokio_util::io::ReaderStream::with_capacity(body, CHUNK).filter_map(move |chunk| {
            let chunk = chunk.ok();
            if let Some(c) = &chunk {
                counted.fetch_add(c.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
            futures::future::ready(chunk)
        });
        self.write_stream(ctx, container, object, id, data).await?;
        let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
        let (_, stored) = self.object_info(ctx, container, object).await?;
        if stored != sent {
            return Err(BlobError::Backend {
                op: format!("writing `{object}` to container `{container}`"),
                reason: format!("blobstore provider `{}` stored {stored} bytes of the {sent} sent; write it again", self.provider),
            });
        }
        Ok(())
    }

    async fn write_stream(&self, ctx: &ImportContext, container: &str, object: &str, id: ObjectId, data: impl Stream<Item = Bytes> + Send + 'static) -> Result<(), BlobError> {
        self.run(ctx, format!("writing `{object}` to container `{container}`"), |c, cx| async move {
            let (answer, io) = remote::write_container_data(&*c, cx, &id, Box::pin(data)).await?;
            let status = match answer {
                Ok(status) => status,
                Err(refused) => return Ok(Err(refused)),
            };
            let ((), status) = tokio::try_join!(drive(io), async { Ok(status.await) })?;
            Ok(status)
        })
        .await
    }

    /// Up to [`NAMES_PAGE`] names of container `name`'s objects from `offset`.
    async fn names_page(&self, ctx: &ImportContext, name: &str, offset: u64) -> Result<Vec<String>, BlobError> {
        let name = name.to_string();
        self.run(ctx, format!("listing container `{name}`"), |c, cx| async move {
            let (answer, io) = remote::list_container_objects(&*c, cx, &name, Some(NAMES_PAGE), Some(offset)).await?;
            let (mut names, status) = match answer {
                Ok(stream) => stream,
                Err(refused) => return Ok(Err(refused)),
            };
            let take = async {
                let mut all = Vec::new();
                while let Some(batch) = names.next().await {
                    anyhow::ensure!(all.len() + batch.len() <= NAMES_PAGE as usize, "the provider sent more than the {NAMES_PAGE} names asked");
                    all.extend(batch);
                }
                Ok(all)
            };
            let (all, (), status) = tokio::try_join!(take, drive(io), async { Ok(status.await) })?;
            Ok(status.map(|()| all))
        })
        .await
    }

    /// The names of container `name`'s objects, a page asked when the one before is taken,
    /// from where the names so far end, until a page comes back empty (a provider may send
    /// fewer than asked).
    pub fn names(self, ctx: Arc<ImportContext>, name: String) -> impl Stream<Item = Result<String, BlobError>> + Send + 'static {
        futures::stream::try_unfold(Some(0u64), move |offset| {
            let (store, ctx, name) = (self.clone(), ctx.clone(), name.clone());
            async move {
                let Some(offset) = offset else { return Ok::<_, BlobError>(None) };
                let page = store.names_page(&ctx, &name, offset).await?;
                let next = (!page.is_empty()).then(|| offset.saturating_add(page.len() as u64));
                Ok(Some((futures::stream::iter(page.into_iter().map(Ok)), next)))
            }
        })
        .try_flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_refusal_is_cut_at_a_character_boundary() {
        assert_eq!(bounded("short".into()), "short");
        let long = "é".repeat(MAX_REASON_BYTES);
        let cut = bounded(long);
        assert!(cut.len() <= MAX_REASON_BYTES + '…'.len_utf8() && cut.ends_with('…'), "{} bytes", cut.len());
    }
}
