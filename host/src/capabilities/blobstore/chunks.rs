//! Reading an object's chunks a few at a time, so a read holds a bounded amount of host memory
//! however large the object and however slowly the guest reads.
//!
//! The object store keeps an object as messages on `$O.{bucket}.C.{nuid}` of the stream
//! `OBJ_{bucket}`, each a chunk (128 KiB by default). async-nats's reader takes them through an
//! ordered push consumer, which the server fills ahead of a slow reader up to its flow control
//! (tens of MiB per reader, outside any guest's memory limit). Here an object of one chunk is one
//! direct get; a larger one is read by a pull consumer of its own that asks for at most
//! [`BATCH`] chunks at a time and asks again only as the guest takes them, so at most about one
//! and a half batches wait in the host. A read whose chunks are gone or fewer than the object's
//! info says (it was replaced or deleted meanwhile, or another tool wrote a false info) ends at
//! once with an error rather than waiting for chunks that will not come. At the end the SHA-256 of what was read
//! is checked against the object's digest, as async-nats does; a short or changed object is a
//! read error, never a silent truncation.

use std::time::Duration;

use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy};
use async_nats::jetstream::object_store::ObjectInfo;
use async_nats::jetstream::stream::{DirectGetErrorKind, Stream as JsStream};
use base64::Engine as _;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt as _;
use sha2::{Digest as _, Sha256};

/// Chunks one pull asks for (no byte limit: a chunk larger than one would never arrive; a
/// chunk is at most the server's max payload).
pub const BATCH: usize = 4;
/// Times a reader asks its consumer again how many chunks are there when the first count is
/// short, [`PENDING_PAUSE`] apart.
const PENDING_ASKS: usize = 3;
const PENDING_PAUSE: Duration = Duration::from_millis(20);
/// How long a reader's consumer outlives a reader that stopped (the host deletes it sooner
/// when the read ends).
const CONSUMER_IDLE: Duration = Duration::from_secs(30);

/// The chunks of the object `info` describes, from bucket `bucket`'s `stream`, as byte chunks
/// fetched as they are read; an error ends the stream.
pub(super) fn chunks(stream: JsStream<()>, bucket: &str, info: &ObjectInfo) -> BoxStream<'static, std::io::Result<Bytes>> {
    // The nuid becomes one subject token: a wildcard would read other objects' chunks.
    if info.nuid.is_empty() || !info.nuid.chars().all(|c| c.is_ascii_alphanumeric()) {
        return futures::stream::once(async { Err(std::io::Error::other("the object's info is malformed (its nuid is not a token)")) }).boxed();
    }
    let subject = format!("$O.{bucket}.C.{}", info.nuid);
    let payloads = if info.chunks <= 1 { single(stream, subject, info.chunks) } else { pulled(stream, subject, info.chunks) };
    checked(payloads, info.size, info.digest.clone())
}

/// An object of at most one chunk: one direct get, or, on a stream made without direct gets
/// (other tools may make object stores so), a consumer as for a larger one.
fn single(stream: JsStream<()>, subject: String, chunks: usize) -> BoxStream<'static, std::io::Result<Bytes>> {
    if chunks == 0 {
        return futures::stream::empty().boxed();
    }
    futures::stream::once(async move {
        match stream.direct_get_next_for_subject(subject.clone(), None).await {
            Ok(message) => futures::stream::once(async move { Ok(message.payload) }).boxed(),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => futures::stream::empty().boxed(),
            // A stream without direct gets: read as a larger object is.
            Err(_) => pulled(stream, subject, 1),
        }
    })
    .flatten()
    .boxed()
}

/// An object of several chunks: a pull consumer of its own, `chunks` messages, then deleted.
fn pulled(stream: JsStream<()>, subject: String, chunks: usize) -> BoxStream<'static, std::io::Result<Bytes>> {
    let config = consumer::pull::Config {
        filter_subject: subject,
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::None,
        inactive_threshold: CONSUMER_IDLE,
        memory_storage: true,
        num_replicas: 1,
        ..Default::default()
    };
    let opened = async move {
        let mut consumer: consumer::PullConsumer =
            stream.create_consumer(config).await.map_err(|e| std::io::Error::other(format!("cannot read the object: {e}")))?;
        let name = consumer.cached_info().name.clone();
        // Deleted when the read ends, however it ends (the idle threshold is the fallback).
        let cleanup = DeleteOnDrop(Some((stream, name)));
        // The chunks there are now: fewer than the info says end the read there (the size
        // check then fails it) instead of waiting for chunks that will not come. The count in
        // the consumer's creation answer can be 0 on a cluster while it is still being counted
        // (a 16 MiB read of an object just written failed so about once in 27 benchmark runs),
        // so a short count is asked again from the consumer before it is believed.
        let mut pending = consumer.cached_info().num_pending;
        for _ in 0..PENDING_ASKS {
            if usize::try_from(pending).unwrap_or(usize::MAX) >= chunks {
                break;
            }
            tokio::time::sleep(PENDING_PAUSE).await;
            pending = consumer.info().await.map_err(|e| std::io::Error::other(format!("cannot read the object: {e}")))?.num_pending;
        }
        let there = usize::try_from(pending).unwrap_or(usize::MAX).min(chunks);
        let messages = consumer
            .stream()
            .max_messages_per_batch(BATCH)
            .messages()
            .await
            .map_err(|e| std::io::Error::other(format!("cannot read the object: {e}")))?;
        let payloads = messages.take(there).map(move |m| {
            let _held = &cleanup;
            m.map(|m| m.message.payload).map_err(|e| std::io::Error::other(format!("reading a chunk of the object: {e}")))
        });
        Ok::<_, std::io::Error>(payloads)
    };
    futures::stream::once(opened)
        .flat_map(|opened| match opened {
            Ok(payloads) => payloads.boxed(),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        })
        .boxed()
}

/// Deletes a reader's consumer when the read is dropped.
struct DeleteOnDrop(Option<(JsStream<()>, String)>);

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        if let (Some((stream, name)), Ok(handle)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            handle.spawn(async move {
                let _ = stream.delete_consumer(&name).await;
            });
        }
    }
}

/// `payloads`, checked as they pass: never more than `size` bytes, and at the end exactly `size`
/// bytes whose SHA-256 is `digest` (when the object has one).
fn checked(payloads: BoxStream<'static, std::io::Result<Bytes>>, size: usize, digest: Option<String>) -> BoxStream<'static, std::io::Result<Bytes>> {
    struct State {
        payloads: BoxStream<'static, std::io::Result<Bytes>>,
        read: usize,
        hash: Sha256,
        done: bool,
        verified: bool,
    }
    let state = State { payloads, read: 0, hash: Sha256::new(), done: false, verified: false };
    futures::stream::unfold(state, move |mut s| {
        let digest = digest.clone();
        async move {
            if s.done {
                return None;
            }
            match s.payloads.next().await {
                Some(Ok(chunk)) => {
                    s.read += chunk.len();
                    if s.read > size {
                        s.done = true;
                        return Some((Err(std::io::Error::other("the object has more bytes than its info says; it changed while it was read")), s));
                    }
                    s.hash.update(&chunk);
                    // Checked before the last bytes are handed over: a reader that stops at
                    // the object's size (as `get-data` does) never polls past them.
                    if s.read == size {
                        s.verified = true;
                        if let Err(e) = finish(digest.as_deref(), std::mem::take(&mut s.hash), s.read, size) {
                            s.done = true;
                            return Some((Err(e), s));
                        }
                    }
                    Some((Ok(chunk), s))
                }
                Some(Err(e)) => {
                    s.done = true;
                    Some((Err(e), s))
                }
                None => {
                    s.done = true;
                    if s.verified {
                        return None;
                    }
                    finish(digest.as_deref(), std::mem::take(&mut s.hash), s.read, size).err().map(|e| (Err(e), s))
                }
            }
        }
    })
    .boxed()
}

/// Whether what was read is the object: its size, and its digest when it has one
/// (`SHA-256=` and base64url, padded or not, as async-nats writes it).
fn finish(digest: Option<&str>, hash: Sha256, read: usize, size: usize) -> std::io::Result<()> {
    if read != size {
        return Err(std::io::Error::other(format!("the object ended after {read} of its {size} bytes; it changed while it was read")));
    }
    let Some(digest) = digest else { return Ok(()) };
    let expected = digest.strip_prefix("SHA-256=").unwrap_or(digest);
    let actual = hash.finalize();
    let matches = [base64::engine::general_purpose::URL_SAFE, base64::engine::general_purpose::URL_SAFE_NO_PAD]
        .iter()
        .any(|engine| engine.decode(expected).is_ok_and(|d| d == actual.as_slice()));
    if matches {
        Ok(())
    } else {
        Err(std::io::Error::other("the object's bytes do not match its digest"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(parts: &[&'static [u8]]) -> BoxStream<'static, std::io::Result<Bytes>> {
        futures::stream::iter(parts.iter().map(|p| Ok(Bytes::from_static(p))).collect::<Vec<_>>()).boxed()
    }

    fn digest(bytes: &[u8]) -> String {
        format!("SHA-256={}", base64::engine::general_purpose::URL_SAFE.encode(Sha256::digest(bytes)))
    }

    async fn read(s: BoxStream<'static, std::io::Result<Bytes>>) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut s = s;
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    /// Every byte is checked: the size both ways and the digest, with and without padding.
    #[tokio::test]
    async fn what_is_read_must_be_the_object() {
        let whole = b"hello world";
        assert_eq!(read(checked(of(&[b"hello ", b"world"]), 11, Some(digest(whole)))).await.unwrap(), whole);
        let unpadded = digest(whole).trim_end_matches('=').to_string();
        assert!(read(checked(of(&[b"hello world"]), 11, Some(unpadded))).await.is_ok());
        assert!(read(checked(of(&[b"hello world"]), 11, None)).await.is_ok(), "no digest: the size only");
        let changed = read(checked(of(&[b"hello there"]), 11, Some(digest(whole)))).await.unwrap_err();
        assert!(changed.to_string().contains("digest"), "{changed}");
        let short = read(checked(of(&[b"hello"]), 11, None)).await.unwrap_err();
        assert!(short.to_string().contains("after 5 of its 11 bytes"), "{short}");
        let long = read(checked(of(&[b"hello world", b"!"]), 11, None)).await.unwrap_err();
        assert!(long.to_string().contains("more bytes"), "{long}");
        // A reader that takes exactly the size and stops still gets the digest's verdict.
        let mut s = checked(of(&[b"hello ", b"there"]), 11, Some(digest(whole)));
        assert!(s.next().await.unwrap().is_ok());
        assert!(s.next().await.unwrap().is_err(), "the last chunk is refused");
    }
}
