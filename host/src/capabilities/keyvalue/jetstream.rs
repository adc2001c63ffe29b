//! `wasi:keyvalue` on a JetStream KV bucket of the lattice (the built-in key-value provider):
//! shared by every host and kept across restarts. A missing bucket is created with the host's
//! `--kv-replicas`; `list-keys` returns pages of [`KEYS_PAGE`] keys with a cursor; `increment`
//! is a compare-and-set on the key's revision, retried until it wins, so concurrent increments
//! from any number of hosts are never lost.

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use tracing::debug;

use super::bindings::wasi::keyvalue::store::KeyResponse;
use super::{other, KvError};
use crate::capabilities::context::ImportContext;

/// How many compare-and-set rounds an increment may take before it reports contention.
const CAS_ROUNDS: usize = 1000;

/// Keys `list-keys` returns per call; the cursor continues after them.
pub const KEYS_PAGE: usize = 1000;

pub async fn open(ctx: &ImportContext, bucket: &str) -> Result<kv::Store, KvError> {
    let js = jetstream::new(ctx.nats.clone());
    if let Ok(store) = js.get_key_value(bucket).await {
        return Ok(store);
    }
    let created = js
        .create_key_value(kv::Config { bucket: bucket.to_string(), history: 1, num_replicas: ctx.resolver.kv_replicas(), ..Default::default() })
        .await;
    match created {
        Ok(store) => Ok(store),
        Err(e) => js.get_key_value(bucket).await.map_err(|_| other(format!("cannot open or create bucket `{bucket}`: {e}"))),
    }
}

/// One page of keys after `cursor` (the number of keys already returned).
pub async fn list_keys(store: &kv::Store, cursor: Option<u64>) -> Result<KeyResponse, KvError> {
    let first = page_of_keys(store, cursor).await?;
    if !first.keys.is_empty() || cursor.is_some_and(|c| c > 0) {
        return Ok(first);
    }
    // NATS's key listing trusts the pending count reported when its consumer is created, and
    // under load that count can say 0 before the consumer sees the stream: an empty answer
    // from a bucket that holds values. Ask again a few times before believing it.
    for attempt in 1..=3u64 {
        let values = store.status().await.map_err(other)?.values();
        if values == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
        let again = page_of_keys(store, cursor).await?;
        if !again.keys.is_empty() {
            return Ok(again);
        }
    }
    Ok(first)
}

async fn page_of_keys(store: &kv::Store, cursor: Option<u64>) -> Result<KeyResponse, KvError> {
    use futures::StreamExt;
    let skip = usize::try_from(cursor.unwrap_or(0)).unwrap_or(usize::MAX);
    let mut keys = store.keys().await.map_err(other)?.skip(skip);
    let mut page = Vec::new();
    while let Some(key) = keys.next().await {
        if page.len() == KEYS_PAGE {
            // There is at least one more: hand out a cursor.
            return Ok(KeyResponse { keys: page, cursor: Some((skip + KEYS_PAGE) as u64) });
        }
        page.push(key.map_err(other)?);
    }
    Ok(KeyResponse { keys: page, cursor: None })
}

pub async fn increment(store: &kv::Store, key: &str, delta: u64) -> Result<u64, KvError> {
    for _ in 0..CAS_ROUNDS {
        let entry = store.entry(key).await.map_err(other)?;
        let (current, revision) = match &entry {
            Some(e) if e.operation == kv::Operation::Put => {
                let text = std::str::from_utf8(&e.value).map_err(|_| other(format!("value of `{key}` is not a number")))?;
                let n: u64 = text.trim().parse().map_err(|_| other(format!("value of `{key}` is not a number: `{text}`")))?;
                (n, Some(e.revision))
            }
            Some(e) => (0, Some(e.revision)),
            None => (0, None),
        };
        let next = current.checked_add(delta).ok_or_else(|| other(format!("`{key}` would overflow")))?;
        let value = Bytes::from(next.to_string());
        let won = match revision {
            Some(rev) => match store.update(key, value, rev).await {
                Ok(_) => true,
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => false,
                Err(e) => return Err(other(e)),
            },
            None => match store.create(key, value).await {
                Ok(_) => true,
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => false,
                Err(e) => return Err(other(e)),
            },
        };
        if won {
            return Ok(next);
        }
        debug!(key, "increment lost a compare-and-set race; retrying");
    }
    Err(other(format!("`{key}` is under too much contention")))
}

