//! `wasi:blobstore/types`: the values that carry object bodies, streamed through bounded
//! buffers.
//!
//! Writing: `new-outgoing-value` makes a channel of at most [`WRITE_CHUNKS`] chunks;
//! `outgoing-value-write-body` hands the guest an ordinary `wasi:io` output stream into it
//! (each write at most [`CHUNK`] bytes, as `check-write` says); `write-data` starts the upload
//! that drains it into the object store; `finish` ends the body (even while the guest still
//! holds the stream, as wasmCloud's examples do) and waits for the upload's answer; `finish`
//! without `write-data` stores nothing and says so. A guest that writes more than the channel
//! holds before `write-data` gets an error from `check-write` rather than waiting for an upload
//! that has not started.
//!
//! Reading: `incoming-value-consume-async` hands the guest an input stream that reads the
//! object one chunk ahead; `incoming-value-consume-sync` returns the whole value only up to
//! [`MAX_SYNC_BYTES`]. Every read of the object store goes through [`PanicSafe`].
//!
//! Host memory outside the guest's limit is bounded per call: at most [`MAX_OUTGOING_VALUES`]
//! unfinished outgoing values (each holding up to [`WRITE_CHUNKS`] × [`CHUNK`] bytes) and
//! [`MAX_READERS`] readers (incoming values, their streams, object-name streams: each holds a
//! NATS consumer) at once ([`Live`]).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::io::StreamReader;
use tokio_util::task::AbortOnDropHandle;
use wasmtime::component::Resource;
use wasmtime_wasi::p2::pipe::AsyncReadStream;
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, OutputStream, Pollable, StreamError, StreamResult};

use super::bindings::wasi::blobstore::types::{HostIncomingValue, HostOutgoingValue};
use super::BlobError;
use crate::capabilities::view::View;

/// Largest write the output stream accepts at once (what `check-write` says).
pub const CHUNK: usize = 64 * 1024;

/// Chunks a body may hold between the guest and the object store.
pub const WRITE_CHUNKS: usize = 16;

/// Largest value `incoming-value-consume-sync` returns whole.
pub const MAX_SYNC_BYTES: u64 = 16 * 1024 * 1024;

/// Unfinished outgoing values one call may hold at once.
pub const MAX_OUTGOING_VALUES: usize = 8;

/// Readers (incoming values, their input streams, object-name streams) one call may hold at once.
pub const MAX_READERS: usize = 32;

/// A call's live blobstore values, counted (kept in the call's store beside its resources).
#[derive(Clone, Default, Debug)]
pub(super) struct Live {
    outgoing: Arc<AtomicUsize>,
    readers: Arc<AtomicUsize>,
}

impl Live {
    /// A place for one more outgoing value.
    pub(super) fn outgoing(&self) -> Result<Slot, BlobError> {
        Slot::take(&self.outgoing, MAX_OUTGOING_VALUES, "unfinished outgoing values")
    }

    /// A place for one more reader.
    pub(super) fn reader(&self) -> Result<Slot, BlobError> {
        Slot::take(&self.readers, MAX_READERS, "incoming values and object-name streams")
    }
}

/// One counted value's place; given back when the value (or the stream it became) is dropped.
#[derive(Debug)]
pub(super) struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(count: &Arc<AtomicUsize>, max: usize, what: &'static str) -> Result<Self, BlobError> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .map_err(|_| BlobError::Busy { what, max })?;
        Ok(Self(count.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A reader of the object store that turns a panic inside it into a read error, and holds its
/// [`Slot`] while it lives. (async-nats' object reader unwraps the creation of its consumer,
/// which fails when the bucket is deleted under it or JetStream refuses a consumer.)
pub(super) struct PanicSafe {
    inner: Option<Box<dyn AsyncRead + Send + Unpin>>,
    _slot: Option<Slot>,
}

impl PanicSafe {
    /// `inner`, guarded, holding `slot`.
    pub(super) fn new(inner: impl AsyncRead + Send + Unpin + 'static, slot: Option<Slot>) -> Self {
        Self { inner: Some(Box::new(inner)), _slot: slot }
    }
}

impl AsyncRead for PanicSafe {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(Err(std::io::Error::other("the object store's reader failed earlier")));
        };
        match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll_read(cx, buf))) {
            Ok(poll) => poll,
            Err(_) => {
                self.inner = None;
                Poll::Ready(Err(std::io::Error::other("the object store's reader failed (its consumer could not be created)")))
            }
        }
    }
}

/// What an upload reads: the chunks the guest writes, as one reader.
pub(super) type BodyReader = StreamReader<futures::stream::BoxStream<'static, std::io::Result<Bytes>>, Bytes>;

/// The body's channel, shared by the value and its output stream: `finish` closes it.
#[derive(Default)]
struct Body {
    sender: Option<mpsc::Sender<Bytes>>,
    /// Room reserved by `check-write` (or a poll), spent by the next write.
    permit: Option<mpsc::OwnedPermit<Bytes>>,
    /// Whether `write-data` started the upload that drains the channel.
    uploading: bool,
}

/// An object body the guest writes (`outgoing-value`).
pub struct OutgoingValue {
    body: Arc<Mutex<Body>>,
    /// Taken by `write-data`.
    receiver: Option<mpsc::Receiver<Bytes>>,
    stream_given: bool,
    /// The upload `write-data` started (aborted if the value is dropped unfinished).
    upload: Option<AbortOnDropHandle<Result<(), BlobError>>>,
    /// Its place among the call's outgoing values.
    _slot: Slot,
}

impl std::fmt::Debug for OutgoingValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingValue").field("uploading", &self.upload.is_some()).finish_non_exhaustive()
    }
}

impl OutgoingValue {
    fn new(slot: Slot) -> Self {
        let (sender, receiver) = mpsc::channel(WRITE_CHUNKS);
        let body = Body { sender: Some(sender), permit: None, uploading: false };
        Self { body: Arc::new(Mutex::new(body)), receiver: Some(receiver), stream_given: false, upload: None, _slot: slot }
    }

    /// Starts `upload` on the body (`write-data`): it reads what the guest writes until
    /// `finish`.
    pub(super) fn start_upload<F, Fut>(&mut self, upload: F) -> Result<(), BlobError>
    where
        F: FnOnce(BodyReader) -> Fut,
        Fut: Future<Output = Result<(), BlobError>> + Send + 'static,
    {
        let receiver = self.receiver.take().ok_or(BlobError::Usage("`write-data` was already called with this outgoing-value"))?;
        let chunks = ReceiverStream::new(receiver).map(Ok).boxed();
        self.upload = Some(AbortOnDropHandle::new(tokio::spawn(upload(StreamReader::new(chunks)))));
        lock(&self.body).uploading = true;
        Ok(())
    }

    /// Ends the body and waits for the upload; without `write-data`, nothing was stored.
    async fn finish(mut self) -> Result<(), BlobError> {
        *lock(&self.body) = Body::default();
        match self.upload.take() {
            None => Err(BlobError::Usage("`finish` without `write-data`: nothing was stored; call `write-data` with this outgoing-value first")),
            Some(upload) => match upload.await {
                Ok(result) => result,
                Err(e) => Err(BlobError::backend("the upload", e)),
            },
        }
    }
}

fn lock(body: &Mutex<Body>) -> std::sync::MutexGuard<'_, Body> {
    body.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The output stream of an [`OutgoingValue`].
struct BodyWriter {
    body: Arc<Mutex<Body>>,
}

impl OutputStream for BodyWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if bytes.len() > CHUNK {
            return Err(StreamError::Trap(wasmtime::Error::msg(format!("write of {} bytes, more than `check-write` allowed ({CHUNK})", bytes.len()))));
        }
        let mut body = lock(&self.body);
        if body.sender.is_none() {
            return Err(StreamError::Closed);
        }
        match body.permit.take() {
            Some(permit) => {
                drop(permit.send(bytes));
                Ok(())
            }
            None => Err(StreamError::Trap(wasmtime::Error::msg("write without room: call `check-write` (or wait on `subscribe`) first"))),
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        let mut body = lock(&self.body);
        if body.permit.is_some() {
            return Ok(CHUNK);
        }
        let Some(sender) = body.sender.clone() else { return Err(StreamError::Closed) };
        match sender.try_reserve_owned() {
            Ok(permit) => {
                body.permit = Some(permit);
                Ok(CHUNK)
            }
            Err(mpsc::error::TrySendError::Full(_)) if !body.uploading => Err(StreamError::LastOperationFailed(wasmtime::Error::msg(format!(
                "the body holds {} bytes and nothing is storing it yet: call `write-data` before writing more",
                WRITE_CHUNKS * CHUNK
            )))),
            Err(mpsc::error::TrySendError::Full(_)) => Ok(0),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(StreamError::LastOperationFailed(wasmtime::Error::msg("the upload stopped"))),
        }
    }
}

#[async_trait::async_trait]
impl Pollable for BodyWriter {
    async fn ready(&mut self) {
        let sender = {
            let body = lock(&self.body);
            if body.permit.is_some() {
                return;
            }
            match body.sender.clone() {
                // Full with no upload to drain it: ready now, and `check-write` says why.
                Some(sender) if !body.uploading && sender.capacity() == 0 => return,
                Some(sender) => sender,
                None => return,
            }
        };
        if let Ok(permit) = sender.reserve_owned().await {
            let mut body = lock(&self.body);
            if body.sender.is_some() && body.permit.is_none() {
                body.permit = Some(permit);
            }
        }
    }
}

/// An object body the guest reads (`incoming-value`).
pub struct IncomingValue {
    reader: PanicSafe,
    size: u64,
}

impl std::fmt::Debug for IncomingValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingValue").field("size", &self.size).finish_non_exhaustive()
    }
}

impl IncomingValue {
    pub(super) fn new(reader: PanicSafe, size: u64) -> Self {
        Self { reader, size }
    }
}

impl HostOutgoingValue for View<'_> {
    async fn new_outgoing_value(&mut self) -> wasmtime::Result<Resource<OutgoingValue>> {
        // The interface gives this function no error: past the bound the call stops, saying why.
        let slot = self.call_state::<Live>().outgoing().map_err(wasmtime::Error::new)?;
        Ok(self.table().push(OutgoingValue::new(slot))?)
    }

    async fn outgoing_value_write_body(&mut self, this: Resource<OutgoingValue>) -> wasmtime::Result<Result<Resource<DynOutputStream>, ()>> {
        let value = self.table().get_mut(&this)?;
        if value.stream_given {
            return Ok(Err(()));
        }
        value.stream_given = true;
        let stream: DynOutputStream = Box::new(BodyWriter { body: value.body.clone() });
        Ok(Ok(self.table().push(stream)?))
    }

    async fn finish(&mut self, this: Resource<OutgoingValue>) -> Result<(), BlobError> {
        self.table().delete(this)?.finish().await
    }

    async fn drop(&mut self, this: Resource<OutgoingValue>) -> wasmtime::Result<()> {
        self.table().delete(this)?;
        Ok(())
    }
}

impl HostIncomingValue for View<'_> {
    async fn incoming_value_consume_sync(&mut self, this: Resource<IncomingValue>) -> Result<Vec<u8>, BlobError> {
        let value = self.table().delete(this)?;
        if value.size > MAX_SYNC_BYTES {
            return Err(BlobError::TooLarge { size: value.size, limit: MAX_SYNC_BYTES });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(value.size).unwrap_or(0));
        value.reader.take(MAX_SYNC_BYTES).read_to_end(&mut bytes).await.map_err(|e| BlobError::backend("reading the value", e))?;
        Ok(bytes)
    }

    async fn incoming_value_consume_async(&mut self, this: Resource<IncomingValue>) -> Result<Resource<DynInputStream>, BlobError> {
        let value = self.table().delete(this)?;
        let stream: DynInputStream = Box::new(AsyncReadStream::new(value.reader));
        Ok(self.table().push(stream)?)
    }

    async fn size(&mut self, this: Resource<IncomingValue>) -> wasmtime::Result<u64> {
        Ok(self.table().get(&this)?.size)
    }

    async fn drop(&mut self, this: Resource<IncomingValue>) -> wasmtime::Result<()> {
        self.table().delete(this)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> (OutgoingValue, BodyWriter) {
        let value = OutgoingValue::new(Live::default().outgoing().expect("a place"));
        let writer = BodyWriter { body: value.body.clone() };
        (value, writer)
    }

    #[tokio::test]
    async fn a_write_needs_room_and_at_most_one_chunk() {
        let (_value, mut w) = writer();
        assert!(matches!(w.write(Bytes::from_static(b"x")), Err(StreamError::Trap(_))), "no check-write yet");
        assert_eq!(w.check_write().ok(), Some(CHUNK));
        assert!(matches!(w.write(Bytes::from(vec![0; CHUNK + 1])), Err(StreamError::Trap(_))), "more than allowed");
        assert!(w.write(Bytes::from_static(b"x")).is_ok());
    }

    #[tokio::test]
    async fn a_full_body_waits_and_finish_ends_it_while_the_guest_holds_the_stream() {
        let (mut value, mut w) = writer();
        let (tx, rx) = tokio::sync::oneshot::channel();
        value
            .start_upload(|mut body| async move {
                let mut all = Vec::new();
                body.read_to_end(&mut all).await.map_err(|e| BlobError::backend("test", e))?;
                let _ = tx.send(all.len());
                Ok(())
            })
            .expect("first write-data");
        assert!(matches!(value.start_upload(|_| async { Ok(()) }), Err(BlobError::Usage(_))), "write-data twice");
        let mut written = 0;
        for _ in 0..WRITE_CHUNKS + 8 {
            while w.check_write().ok() == Some(0) {
                tokio::time::timeout(std::time::Duration::from_secs(5), w.ready()).await.expect("room comes back as the upload reads");
            }
            w.write(Bytes::from(vec![7; CHUNK])).expect("write");
            written += CHUNK;
        }
        // The guest still holds `w`; finish ends the body anyway and the upload sees all of it.
        value.finish().await.expect("finish");
        assert_eq!(rx.await.ok(), Some(written));
        assert!(matches!(w.check_write(), Err(StreamError::Closed)), "the stream is closed after finish");
    }

    #[tokio::test]
    async fn writing_past_the_buffer_before_write_data_fails_at_once_and_finish_alone_stores_nothing() {
        let (value, mut w) = writer();
        for _ in 0..WRITE_CHUNKS {
            assert_eq!(w.check_write().ok(), Some(CHUNK));
            w.write(Bytes::from(vec![1; CHUNK])).expect("write");
        }
        tokio::time::timeout(std::time::Duration::from_secs(1), w.ready()).await.expect("ready at once: nothing will drain it");
        let Err(StreamError::LastOperationFailed(e)) = w.check_write() else { panic!("check-write must fail") };
        assert!(e.to_string().contains("call `write-data` before writing more"), "{e}");
        assert!(matches!(value.finish().await, Err(BlobError::Usage(m)) if m.contains("nothing was stored")));
    }

    #[test]
    fn a_call_holds_a_bounded_number_of_values() {
        let live = Live::default();
        let held: Vec<Slot> = (0..MAX_OUTGOING_VALUES).map(|_| live.outgoing().expect("within the bound")).collect();
        assert!(matches!(live.outgoing(), Err(BlobError::Busy { max: MAX_OUTGOING_VALUES, .. })));
        let readers: Vec<Slot> = (0..MAX_READERS).map(|_| live.reader().expect("readers are counted apart")).collect();
        assert!(matches!(live.reader(), Err(BlobError::Busy { max: MAX_READERS, .. })));
        drop(held);
        assert!(live.outgoing().is_ok(), "a dropped value gives its place back");
        drop(readers);
        assert!(live.reader().is_ok());
    }

    /// A reader that panics, as async-nats' object reader does when it cannot create its consumer.
    struct Panics;

    impl AsyncRead for Panics {
        #[allow(clippy::panic)]
        fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
            panic!("consumer could not be created")
        }
    }

    #[tokio::test]
    async fn a_panicking_reader_is_a_read_error() {
        let mut reader = PanicSafe::new(Panics, None);
        let mut out = Vec::new();
        let err = reader.read_to_end(&mut out).await.expect_err("an error, not a panic");
        assert!(err.to_string().contains("reader failed"), "{err}");
        assert!(reader.read_to_end(&mut out).await.is_err(), "and stays failed");
    }
}
