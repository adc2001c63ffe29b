//! A connection's writes on a clock: a client that leaves the server unable to write for
//! `--http-body-timeout` (it reads nothing of its response, or so little that the socket never
//! has room) is disconnected. Its response is dropped, so a guest still writing it gets an
//! error and gives its instance back, rather than holding it until `--max-execution-time`.
//!
//! Only time spent waiting to write counts: an idle keep-alive connection, or one whose
//! response the guest is still computing, is not on this clock.

use std::future::Future as _;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `inner` whose writes may wait at most `limit` at a time.
#[derive(Debug)]
pub struct WriteClock<S> {
    inner: S,
    limit: Duration,
    /// Armed while a write waits.
    waiting: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteClock<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, limit: Duration) -> Self {
        Self { inner, limit, waiting: None }
    }

    /// What a write (or flush) that returned `poll` means on the clock.
    fn clocked<T>(&mut self, cx: &mut Context<'_>, poll: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        if poll.is_ready() {
            self.waiting = None;
            return poll;
        }
        let limit = self.limit;
        let waiting = self.waiting.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + limit)));
        match waiting.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client left the server unable to write its response for {limit:?} (--http-body-timeout)"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteClock<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteClock<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.clocked(cx, poll)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.clocked(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.clocked(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test(start_paused = true)]
    async fn a_write_that_waits_past_the_limit_fails_and_one_that_is_read_does_not() {
        let (ours, mut theirs) = tokio::io::duplex(16);
        let mut clocked = WriteClock::new(ours, Duration::from_secs(2));
        // Read in time: the writes that waited for it go through.
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; 64];
            tokio::time::sleep(Duration::from_secs(1)).await;
            theirs.read_exact(&mut got).await.map(|_| theirs)
        });
        clocked.write_all(&[1; 64]).await.expect("read within the limit");
        let _theirs = reader.await.expect("reader").expect("read");
        // Not read at all: the write fails at the limit.
        let began = Instant::now();
        let err = clocked.write_all(&[1; 64]).await.expect_err("nobody reads");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
        assert_eq!(began.elapsed(), Duration::from_secs(2));
    }
}
