//! Bounds on request bodies from the network: a size cap counted as bytes stream, a clock on
//! the time spent waiting for the client, and a prefetch that reads a small body whole before
//! the request takes an instance slot (so a client trickling its body holds no slot).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};

/// Error type of request and response bodies.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// Bytes of a request body read before it takes an instance slot: a body that ends within
/// them reaches the guest whole, without the guest waiting on the client.
pub const PREFETCH_BYTES: usize = 64 << 10;

/// How a request body failed its bounds; the status it answers.
#[derive(Debug, thiserror::Error)]
pub enum BodyFault {
    #[error("the body is larger than this server's limit (--max-http-body)")]
    TooLarge,
    #[error("the body arrived too slowly (more than {timeout:?} plus 1 s per {min_rate} bytes received)")]
    TooSlow { timeout: Duration, min_rate: u64 },
}

/// The HTTP status for a body that failed: 413 past the size, 408 too slow, 400 otherwise.
#[must_use]
pub fn status_of(error: &BodyError) -> u16 {
    match error.downcast_ref::<BodyFault>() {
        Some(BodyFault::TooLarge) => 413,
        Some(BodyFault::TooSlow { .. }) => 408,
        None => 400,
    }
}

/// What a request body from the network may be: its size and its pace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyBounds {
    /// Largest body, in bytes (`--max-http-body`).
    pub max: u64,
    /// Time a body may keep the server waiting (`--http-body-timeout`), plus 1 s for every
    /// `min_rate` bytes it delivers.
    pub timeout: Duration,
    /// Bytes a second a long body must sustain (`--http-body-min-rate`).
    pub min_rate: u64,
}

impl BodyBounds {
    /// `body` with these bounds applied.
    pub fn apply<B>(self, body: B) -> Clocked<impl Body<Data = Bytes, Error = BodyError> + Send + Sync + 'static>
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BodyError>,
    {
        Clocked::new(limit_body(body, self.max), self.timeout, self.min_rate)
    }
}

/// `body`, ending in [`BodyFault::TooLarge`] past `limit` bytes (counted as it streams).
pub fn limit_body<B>(body: B, limit: u64) -> impl Body<Data = B::Data, Error = BodyError>
where
    B: Body,
    B::Error: Into<BodyError>,
{
    http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX)).map_err(|e: BodyError| -> BodyError {
        if e.is::<http_body_util::LengthLimitError>() {
            Box::new(BodyFault::TooLarge)
        } else {
            e
        }
    })
}

/// A body on a clock that runs only while the reader waits for the sender: it fails with
/// [`BodyFault::TooSlow`] once the waiting passes `timeout` plus 1 s per `min_rate` bytes
/// received. A reader that is itself slow (a busy guest) costs the sender nothing.
pub struct Clocked<B> {
    inner: Pin<Box<B>>,
    timeout: Duration,
    min_rate: u64,
    received: u64,
    waited: Duration,
    waiting_since: Option<Instant>,
    alarm: Pin<Box<tokio::time::Sleep>>,
}

impl<B> std::fmt::Debug for Clocked<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clocked").field("received", &self.received).field("waited", &self.waited).finish_non_exhaustive()
    }
}

impl<B> Clocked<B> {
    fn new(inner: B, timeout: Duration, min_rate: u64) -> Self {
        Self {
            inner: Box::pin(inner),
            timeout,
            min_rate: min_rate.max(1),
            received: 0,
            waited: Duration::ZERO,
            waiting_since: None,
            alarm: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    /// Waiting the bytes received so far allow.
    fn allowance(&self) -> Duration {
        self.timeout.saturating_add(Duration::from_secs_f64(self.received as f64 / self.min_rate as f64))
    }
}

impl<B> Body for Clocked<B>
where
    B: Body<Data = Bytes, Error = BodyError>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let polled = this.inner.as_mut().poll_frame(cx);
        if polled.is_pending() {
            let now = Instant::now();
            let since = match this.waiting_since {
                Some(since) => since,
                None => {
                    let left = this.allowance().saturating_sub(this.waited);
                    this.alarm.as_mut().reset(now + left);
                    this.waiting_since = Some(now);
                    now
                }
            };
            if this.alarm.as_mut().poll(cx).is_ready() {
                this.waited += now - since;
                this.waiting_since = None;
                return Poll::Ready(Some(Err(Box::new(BodyFault::TooSlow { timeout: this.timeout, min_rate: this.min_rate }))));
            }
            return Poll::Pending;
        }
        if let Some(since) = this.waiting_since.take() {
            this.waited += since.elapsed();
        }
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.received += data.len() as u64;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body whose first frames were read ahead; the rest (if any) still streams.
pub struct Prefetched<B> {
    frames: VecDeque<Frame<Bytes>>,
    buffered: u64,
    rest: Option<Pin<Box<B>>>,
}

impl<B> std::fmt::Debug for Prefetched<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetched").field("buffered", &self.buffered).field("streaming", &self.rest.is_some()).finish()
    }
}

/// Reads `body` until it ends or `max` bytes have arrived, failing as the body fails.
///
/// # Errors
/// The body's own error (too large, too slow, the client went away).
pub async fn prefetch<B>(body: B, max: usize) -> Result<Prefetched<B>, BodyError>
where
    B: Body<Data = Bytes, Error = BodyError>,
{
    let mut body = Box::pin(body);
    let (mut frames, mut buffered) = (VecDeque::new(), 0u64);
    while buffered < max as u64 {
        match body.frame().await {
            None => return Ok(Prefetched { frames, buffered, rest: None }),
            Some(frame) => {
                let frame = frame?;
                if let Some(d) = frame.data_ref() {
                    buffered += d.len() as u64;
                }
                frames.push_back(frame);
            }
        }
    }
    Ok(Prefetched { frames, buffered, rest: Some(body) })
}

impl<B> Body for Prefetched<B>
where
    B: Body<Data = Bytes, Error = BodyError>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(frame) = this.frames.pop_front() {
            if let Some(d) = frame.data_ref() {
                this.buffered -= d.len() as u64;
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        match this.rest.as_mut() {
            Some(rest) => rest.as_mut().poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        match &self.rest {
            None => SizeHint::with_exact(self.buffered),
            Some(rest) => {
                let inner = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower().saturating_add(self.buffered));
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper.saturating_add(self.buffered));
                }
                hint
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    fn trickle(bytes: usize, every: Duration) -> impl Body<Data = Bytes, Error = BodyError> + Send + Sync + 'static {
        let stream = futures::stream::unfold(0, move |n| async move {
            if n == bytes {
                return None;
            }
            tokio::time::sleep(every).await;
            Some((Ok::<_, BodyError>(Frame::data(Bytes::from_static(b"x"))), n + 1))
        });
        StreamBody::new(stream)
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickling_body_fails_after_its_allowance() {
        let bounds = BodyBounds { max: 1 << 20, timeout: Duration::from_secs(5), min_rate: 1024 };
        let began = tokio::time::Instant::now();
        let err = bounds.apply(trickle(100, Duration::from_secs(1))).collect().await.expect_err("too slow");
        assert_eq!(status_of(&err), 408, "{err}");
        let took = began.elapsed();
        assert!(took >= Duration::from_secs(5) && took < Duration::from_secs(6), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_body_and_a_slow_reader_pass() {
        let bounds = BodyBounds { max: 1 << 20, timeout: Duration::from_millis(1000), min_rate: 1024 };
        // 20 frames 10 ms apart: 200 ms of waiting in all, within the allowance.
        let body = bounds.apply(trickle(20, Duration::from_millis(10)));
        assert_eq!(body.collect().await.expect("in time").to_bytes().len(), 20);
        // A reader that waits 10 s between frames: the sender is not to blame.
        let mut body = std::pin::pin!(bounds.apply(StreamBody::new(futures::stream::iter((0..3).map(|_| Ok::<_, BodyError>(Frame::data(Bytes::from_static(b"y"))))))));
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(10)).await;
            assert!(body.frame().await.expect("a frame").is_ok());
        }
    }

    #[tokio::test]
    async fn too_large_is_413_and_prefetch_keeps_every_frame() {
        let bounds = BodyBounds { max: 10, timeout: Duration::from_secs(5), min_rate: 1 };
        let big = http_body_util::Full::new(Bytes::from_static(&[0u8; 11])).map_err(|n| -> BodyError { match n {} });
        let err = bounds.apply(big).collect().await.expect_err("too large");
        assert_eq!(status_of(&err), 413);
        let frames = futures::stream::iter((0..5).map(|i| Ok::<_, BodyError>(Frame::data(Bytes::from(vec![i; 3])))));
        let body = prefetch(StreamBody::new(frames), 4).await.expect("read");
        assert_eq!(body.size_hint().lower(), 6);
        assert_eq!(body.collect().await.expect("whole").to_bytes().len(), 15);
    }
}
