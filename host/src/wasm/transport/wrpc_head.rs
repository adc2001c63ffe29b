//! A wRPC transport whose incoming parameters are held to a size and a clock, for the
//! generated `wrpc:http` server: everything a request sends before its body (method, path,
//! authority, headers) and its trailers must fit in [`HeadBounds::max_bytes`], and the part
//! before the body must arrive within [`HeadBounds::within`]. The body itself is on its own
//! clock and cap ([`crate::wasm::transport::http_body`]) once the request runs.
//!
//! wRPC multiplexes a call's parameters on one root stream and one stream per pending async
//! value (a `stream<u8>` body, a `future` of trailers), each addressed by a path of field
//! indices. Wrapping the transport's incoming stream is the one place that sees every byte
//! before the generated decoder keeps it, so the bound holds however the bytes are framed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt as _};
use tokio::io::{AsyncRead, ReadBuf};

/// What a request may send outside its body.
#[derive(Clone, Debug)]
pub struct HeadBounds {
    /// Bytes on each stream that is not the body: the root (everything before the body) and
    /// the trailers.
    pub max_bytes: usize,
    /// How long the root may take to arrive.
    pub within: Duration,
    /// The paths of the streams that carry bodies: not held to `max_bytes`.
    pub bodies: Vec<Vec<usize>>,
}

/// A transport (behind a pointer, as the host shares its clients) with each call's incoming
/// streams held to `bounds`.
pub struct HeadBounded<T> {
    transport: T,
    bounds: Arc<HeadBounds>,
}

impl<T> std::fmt::Debug for HeadBounded<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadBounded").field("bounds", &self.bounds).finish_non_exhaustive()
    }
}

impl<T> HeadBounded<T> {
    /// Wraps `transport`.
    pub fn new(transport: T, bounds: HeadBounds) -> Self {
        Self { transport, bounds: Arc::new(bounds) }
    }
}

impl<T> wrpc_transport::Serve for HeadBounded<T>
where
    T: std::ops::Deref + Sync,
    T::Target: wrpc_transport::Serve,
{
    type Context = <T::Target as wrpc_transport::Serve>::Context;
    type Outgoing = <T::Target as wrpc_transport::Serve>::Outgoing;
    type Incoming = Bounded<<T::Target as wrpc_transport::Serve>::Incoming>;

    async fn serve(
        &self,
        instance: &str,
        func: &str,
        paths: impl Into<Arc<[Box<[Option<usize>]>]>> + Send,
    ) -> anyhow::Result<impl Stream<Item = anyhow::Result<(Self::Context, Self::Outgoing, Self::Incoming)>> + Send + 'static> {
        let invocations = self.transport.serve(instance, func, paths).await?;
        let bounds = self.bounds.clone();
        Ok(invocations.map(move |invocation| invocation.map(|(cx, tx, rx)| (cx, tx, Bounded::root(rx, bounds.clone())))))
    }
}

/// The calling side: a call's incoming results held to the bounds, as a server's parameters
/// are (`within` then bounds the arrival of everything before the first body).
impl<T> wrpc_transport::Invoke for HeadBounded<T>
where
    T: std::ops::Deref + Send + Sync,
    T::Target: wrpc_transport::Invoke,
{
    type Context = <T::Target as wrpc_transport::Invoke>::Context;
    type Outgoing = <T::Target as wrpc_transport::Invoke>::Outgoing;
    type Incoming = Bounded<<T::Target as wrpc_transport::Invoke>::Incoming>;

    async fn invoke<P>(
        &self,
        cx: Self::Context,
        instance: &str,
        func: &str,
        params: bytes::Bytes,
        paths: impl AsRef<[P]> + Send,
    ) -> anyhow::Result<(Self::Outgoing, Self::Incoming)>
    where
        P: AsRef<[Option<usize>]> + Send + Sync,
    {
        let (outgoing, incoming) = self.transport.invoke(cx, instance, func, params, paths).await?;
        Ok((outgoing, Bounded::root(incoming, self.bounds.clone())))
    }
}

/// One incoming stream of a call, counting what it reads.
pub struct Bounded<R> {
    inner: R,
    path: Vec<usize>,
    bounds: Arc<HeadBounds>,
    /// Bytes it may still read; `None` for a body.
    left: Option<usize>,
    /// When the root must have been read; only the root has one.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<R> std::fmt::Debug for Bounded<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bounded").field("path", &self.path).field("left", &self.left).finish_non_exhaustive()
    }
}

impl<R> Bounded<R> {
    fn root(inner: R, bounds: Arc<HeadBounds>) -> Self {
        let deadline = Some(Box::pin(tokio::time::sleep(bounds.within)));
        Self { inner, path: Vec::new(), left: Some(bounds.max_bytes), bounds, deadline }
    }
}

impl<R: wrpc_transport::Index<R>> wrpc_transport::Index<Self> for Bounded<R> {
    fn index(&self, path: &[usize]) -> anyhow::Result<Self> {
        let inner = self.inner.index(path)?;
        let full = [self.path.as_slice(), path].concat();
        let left = (!self.bounds.bodies.contains(&full)).then_some(self.bounds.max_bytes);
        Ok(Self { inner, path: full, bounds: self.bounds.clone(), left, deadline: None })
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Bounded<R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(deadline) = this.deadline.as_mut() {
            if deadline.as_mut().poll(cx).is_ready() {
                let within = this.bounds.within;
                return Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("the call's head did not arrive within {within:?}"))));
            }
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let read = buf.filled().len() - before;
        if let Some(left) = this.left.as_mut() {
            if read > *left {
                // Nothing of what was read past the bound reaches the decoder.
                buf.set_filled(before);
                let (max, path) = (this.bounds.max_bytes, &this.path);
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("more than {max} bytes outside the body (stream {path:?})"),
                )));
            }
            *left -= read;
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt as _;

    /// An in-memory stream whose index streams are empty.
    struct Bytes(std::io::Cursor<Vec<u8>>);

    impl wrpc_transport::Index<Bytes> for Bytes {
        fn index(&self, _: &[usize]) -> anyhow::Result<Bytes> {
            Ok(Bytes(std::io::Cursor::new(vec![7; 100])))
        }
    }

    impl AsyncRead for Bytes {
        fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    fn bounds(max_bytes: usize) -> Arc<HeadBounds> {
        Arc::new(HeadBounds { max_bytes, within: Duration::from_secs(1), bodies: vec![vec![0, 0]] })
    }

    #[tokio::test]
    async fn the_root_and_the_trailers_are_held_to_the_bound_and_the_body_is_not() {
        use wrpc_transport::Index as _;
        let mut within = Bounded::root(Bytes(std::io::Cursor::new(vec![1; 50])), bounds(50));
        let mut read = Vec::new();
        within.read_to_end(&mut read).await.expect("50 bytes fit");
        let mut past = Bounded::root(Bytes(std::io::Cursor::new(vec![1; 51])), bounds(50));
        let err = past.read_to_end(&mut Vec::new()).await.expect_err("51 do not");
        assert!(err.to_string().contains("more than 50 bytes outside the body"), "{err}");
        let root = Bounded::root(Bytes(std::io::Cursor::new(Vec::new())), bounds(50));
        let mut body = root.index(&[0, 0]).expect("the body");
        assert_eq!(body.read_to_end(&mut Vec::new()).await.expect("the body is not held to it"), 100);
        let mut trailers = root.index(&[0]).and_then(|r| r.index(&[1])).expect("the trailers");
        assert!(trailers.read_to_end(&mut Vec::new()).await.is_err(), "the trailers are");
    }

    #[tokio::test(start_paused = true)]
    async fn a_root_that_stalls_fails_at_the_deadline() {
        let (_writer, reader) = tokio::io::duplex(64);
        struct Stalled(tokio::io::DuplexStream);
        impl wrpc_transport::Index<Stalled> for Stalled {
            fn index(&self, _: &[usize]) -> anyhow::Result<Stalled> {
                anyhow::bail!("no index streams")
            }
        }
        impl AsyncRead for Stalled {
            fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
                Pin::new(&mut self.0).poll_read(cx, buf)
            }
        }
        let mut root = Bounded::root(Stalled(reader), bounds(50));
        let err = root.read_u8().await.expect_err("nothing arrives");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    }
}
