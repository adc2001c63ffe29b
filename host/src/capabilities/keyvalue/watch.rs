//! `wasi:keyvalue/watcher` (0.2.0-draft) through the built-in key-value provider: a component
//! that exports `watcher` and is the target of the provider's `wasi:keyvalue/watcher` link has
//! `on-set(bucket, key, value)` or `on-delete(bucket, key)` called when a key the link names
//! changes. The link's config (source config, then target config over it), as wasmCloud's
//! key-value providers read it:
//!
//! | key | value |
//! |---|---|
//! | `watch` | `SET@key,DEL@key,…`: which keys, and which changes of each (at most [`KvWatch::MAX_KEYS`], exact keys) |
//! | `bucket` (or `BUCKET`) | the bucket watched; else the host's default bucket |
//!
//! Each link is one durable JetStream consumer on the bucket's stream, filtered to the watched
//! keys, shared by every host that runs the provider: a change is delivered once in the
//! lattice (acknowledged after the call returns, redelivered after a failure, at most
//! [`MAX_DELIVERIES`] times), in order per link, to the component wherever it runs — in-process
//! here, else forwarded to a host that runs it ([`WATCH_KIND`]), which checks the link again
//! before it calls. The `bucket` argument is a real handle on the watched bucket. Changes made
//! while no host runs the provider are not delivered (the consumer starts at new changes, and
//! lapses after [`CONSUMER_IDLE`] without a reader).

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use async_nats::jetstream::{self, consumer, kv, AckKind};
use futures::StreamExt as _;
use tracing::{debug, info, warn};
use trellis_messages::invocation::FaultKind;
use wasmtime::component::Resource;

use super::KvBucket;
use crate::permission::{Denied, KvWatch, WatchOp};
use crate::providers::follower::{FollowLinks, LinkFollower};
use crate::providers::CallError;
use crate::services::HostServices;
use crate::wasm::invoke::Fault;
use crate::wasm::transport::local::LocalTarget;
use crate::wasm::WasmRuntime;

/// The exports a watch calls.
pub(crate) const ON_SET: &str = "wasi:keyvalue/watcher@0.2.0-draft.on-set";
/// See [`ON_SET`].
pub(crate) const ON_DELETE: &str = "wasi:keyvalue/watcher@0.2.0-draft.on-delete";

use trellis_messages::invocation::WATCH_KIND;

/// Deliveries of one change a host refused (it may not have seen the link or the provider yet)
/// before it is given up.
pub const MAX_DELIVERIES: i64 = 5;
/// Deliveries of one change whose call failed for a passing reason (busy, past its deadline, a
/// host unreachable) before it is given up: retried after 1, 2, 4 … 30 s, about 7 minutes in
/// all, so a loaded or restarting host does not lose changes.
pub const MAX_RETRIES: i64 = 20;
/// The longest wait before a failed change is delivered again.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// How long a link's consumer outlives its last reader.
pub const CONSUMER_IDLE: Duration = Duration::from_secs(3600);
/// The header in which the KV API marks a delete (`DEL`) or purge (`PURGE`).
const KV_OPERATION: &str = "KV-Operation";
/// Changes of one link asked for at once (one is unacknowledged at a time).
const BATCH: usize = 4;

/// One change, as the component's export receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    /// The key.
    pub key: String,
    /// `Some(value)` for a set, `None` for a delete.
    pub value: Option<bytes::Bytes>,
}

/// One link's watch: (target component, link name, what it watches).
type Key = (String, String, KvWatch);

/// The built-in key-value provider's watches (run by a [`LinkFollower`]).
pub struct KeyValueWatches {
    id: String,
    services: HostServices,
    watches: HashMap<Key, tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for KeyValueWatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyValueWatches").field("id", &self.id).field("watches", &self.watches.keys()).finish()
    }
}

impl KeyValueWatches {
    /// Provider `id`'s watches; they follow its links once it starts.
    pub fn new(id: String, services: HostServices) -> Self {
        Self { id, services, watches: HashMap::new() }
    }

    fn desired(&self) -> Vec<Key> {
        let mut out = Vec::new();
        for link in self.services.resolver.watcher_links(&self.id) {
            match self.services.resolver.kv_watch(&link) {
                Ok(watch) if watch.keys.is_empty() => debug!(provider = %self.id, target = %link.target, "watcher link names no keys (`watch`)"),
                Ok(watch) => out.push((link.target.clone(), link.name.clone(), watch)),
                Err(e) => warn!(provider = %self.id, target = %link.target, "key-value watch refused: {e}"),
            }
        }
        out
    }

    fn sync(&mut self) {
        let desired = self.desired();
        self.watches.retain(|key, task| {
            let keep = desired.contains(key);
            if !keep {
                info!(target = %key.0, bucket = %key.2.bucket, "key-value watch removed");
                task.abort();
            }
            keep
        });
        for key in desired {
            if self.watches.contains_key(&key) {
                continue;
            }
            info!(provider = %self.id, target = %key.0, bucket = %key.2.bucket, keys = key.2.keys.len(), "key-value watch added");
            let task = self.services.runtime.guests().spawn(follow(self.services.clone(), self.id.clone(), key.clone()));
            self.watches.insert(key, task);
        }
    }
}

impl FollowLinks for KeyValueWatches {
    fn reconcile(&mut self, _: &mut Context<LinkFollower<Self>>) {
        self.sync();
    }

    fn stop(&mut self) {
        for (_, task) in self.watches.drain() {
            task.abort();
        }
    }
}

/// The durable consumer's name: the same on every host for the same link and watch, another
/// when the watch changes (the old one lapses).
fn consumer_name(lattice: &str, provider: &str, target: &str, link_name: &str, watch: &KvWatch) -> String {
    use sha2::{Digest as _, Sha256};
    let mut hash = Sha256::new();
    // The lattice too: lattices on one JetStream account share guest buckets.
    for part in [lattice, provider, target, link_name, &watch.bucket] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    for (key, ops) in &watch.keys {
        hash.update(key.as_bytes());
        hash.update(format!("{ops:?}").as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    format!("trellis-watch-{}", digest.iter().take(12).map(|b| format!("{b:02x}")).collect::<String>())
}

/// Reads link `key`'s consumer until aborted, retrying when the bucket or consumer is not
/// there yet.
async fn follow(services: HostServices, provider: String, (target, link_name, watch): Key) {
    let mut delay = Duration::from_millis(250);
    loop {
        match read(&services, &provider, &target, &link_name, &watch).await {
            Ok(()) => delay = Duration::from_millis(250),
            Err(e) => {
                warn!(provider = %provider, target = %target, bucket = %watch.bucket, retry_in = ?delay, "key-value watch interrupted: {e}");
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
        tokio::time::sleep(delay).await;
    }
}

/// Why a watch's consumer stopped reading.
#[derive(Debug, thiserror::Error)]
enum WatchError {
    #[error("cannot open the bucket: {0}")]
    Bucket(super::KvError),
    #[error("cannot make its consumer: {0}")]
    Consumer(String),
    #[error("cannot read its consumer: {0}")]
    Read(String),
}

async fn read(services: &HostServices, provider: &str, target: &str, link_name: &str, watch: &KvWatch) -> Result<(), WatchError> {
    let store = open_bucket(services, &watch.bucket).await.map_err(WatchError::Bucket)?;
    let js = jetstream::new(services.calls.clone());
    let stream = js.get_stream(format!("KV_{}", watch.bucket)).await.map_err(|e| WatchError::Consumer(e.to_string()))?;
    let name = consumer_name(services.subjects.lattice(), provider, target, link_name, watch);
    let ack_wait = services.runtime.config().max_execution_time + services.runtime.config().max_queue_wait + Duration::from_secs(5);
    let config = consumer::pull::Config {
        durable_name: Some(name.clone()),
        description: Some(format!("Trellis: provider `{provider}` watches for `{target}` (link `{link_name}`)")),
        // One key: only its changes reach the consumer; more: the bucket's, sorted here (a
        // consumer with several filters needs NATS 2.10's API, which this client is built
        // without).
        filter_subject: match watch.keys.keys().collect::<Vec<_>>()[..] {
            [key] => format!("$KV.{}.{key}", watch.bucket),
            _ => format!("$KV.{}.>", watch.bucket),
        },
        deliver_policy: consumer::DeliverPolicy::New,
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait,
        max_deliver: MAX_RETRIES,
        max_ack_pending: 1,
        inactive_threshold: CONSUMER_IDLE,
        ..Default::default()
    };
    let consumer: consumer::PullConsumer = stream.get_or_create_consumer(&name, config).await.map_err(|e| WatchError::Consumer(e.to_string()))?;
    // No byte limit on a pull: a value larger than one would never arrive (one unacknowledged
    // change at a time bounds what waits here).
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(BATCH)
        .heartbeat(Duration::from_secs(5))
        .messages()
        .await
        .map_err(|e| WatchError::Read(e.to_string()))?;
    let prefix = format!("$KV.{}.", watch.bucket);
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| WatchError::Read(e.to_string()))?;
        let Some(key) = message.subject.strip_prefix(prefix.as_str()).map(str::to_string) else {
            let _ = message.ack().await;
            continue;
        };
        let deleted = message
            .headers
            .as_ref()
            .and_then(|h| h.get(KV_OPERATION))
            .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"));
        let op = if deleted { WatchOp::Delete } else { WatchOp::Set };
        if !watch.keys.get(&key).is_some_and(|ops| ops.contains(&op)) {
            let _ = message.ack().await;
            continue;
        }
        let change = Change { key, value: (!deleted).then(|| message.payload.clone()) };
        let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
        let (outcome, forwarded) = deliver(services, provider, target, link_name, &watch.bucket, &store, change).await;
        let ack = match outcome {
            Ok(()) => AckKind::Ack,
            // What no retry changes: the component does not export the function or takes
            // other arguments (known here; a host a change was forwarded to may run other code).
            Err(CallError::Fault { kind: Some(FaultKind::NoSuchFunction | FaultKind::BadArguments), message: m })
                if !forwarded || delivered >= MAX_DELIVERIES =>
            {
                warn!(component_id = %target, "key-value change not delivered: {m}");
                AckKind::Term
            }
            // A refusal, here or on the host it was forwarded to: that host may not have seen
            // the link or the provider yet (a provider just started here is one), so it is
            // retried a few times before it is given up.
            Err(CallError::Fault { kind: Some(FaultKind::Denied), message: m }) if delivered >= MAX_DELIVERIES => {
                warn!(component_id = %target, deliveries = delivered, "key-value change refused: {m}");
                AckKind::Term
            }
            Err(e) if delivered >= MAX_RETRIES => {
                warn!(component_id = %target, deliveries = delivered, "key-value change given up: {e}");
                AckKind::Term
            }
            Err(e) => {
                let delay = retry_delay(delivered);
                debug!(component_id = %target, retry_in = ?delay, "key-value change not delivered yet: {e}");
                AckKind::Nak(Some(delay))
            }
        };
        if let Err(e) = message.ack_with(ack).await {
            debug!(error = %e, "cannot acknowledge a key-value change");
        }
    }
    Ok(())
}

/// How long before delivery `delivered + 1` of a change whose call failed: 1 s, doubling, at
/// most [`MAX_RETRY_DELAY`].
fn retry_delay(delivered: i64) -> Duration {
    let exponent = u32::try_from(delivered.saturating_sub(1).clamp(0, 5)).unwrap_or(5);
    Duration::from_secs(1u64 << exponent).min(MAX_RETRY_DELAY)
}

/// The watched bucket, opened as a component's `open` would (created when missing).
async fn open_bucket(services: &HostServices, bucket: &str) -> Result<kv::Store, super::KvError> {
    let js = jetstream::new(services.calls.clone());
    if let Ok(store) = js.get_key_value(bucket).await {
        return Ok(store);
    }
    js.create_key_value(kv::Config { bucket: bucket.to_string(), history: 1, num_replicas: services.resolver.kv_replicas(), ..Default::default() })
        .await
        .map_err(super::other)
}

/// Delivers `change` to `target`: in-process when it runs here, else to a host that does;
/// also answers whether it was forwarded.
async fn deliver(
    services: &HostServices,
    provider: &str,
    target: &str,
    link_name: &str,
    bucket: &str,
    store: &kv::Store,
    change: Change,
) -> (Result<(), CallError>, bool) {
    if let Some(local) = services.local.get(target) {
        let delivered = deliver_here(&services.runtime, &local, target, provider, store.clone(), change).await;
        return (delivered.map_err(|f| CallError::Fault { kind: Some(f.kind), message: f.message }), false);
    }
    use trellis_messages::invocation::{KIND_HEADER, LINK_NAME_HEADER, SOURCE_ID_HEADER, WATCH_BUCKET_HEADER, WATCH_KEY_HEADER, WATCH_OP_HEADER};
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(KIND_HEADER, WATCH_KIND);
    headers.insert(SOURCE_ID_HEADER, provider);
    headers.insert(LINK_NAME_HEADER, link_name);
    headers.insert(WATCH_BUCKET_HEADER, bucket);
    headers.insert(WATCH_KEY_HEADER, change.key.as_str());
    headers.insert(WATCH_OP_HEADER, if change.value.is_some() { "set" } else { "delete" });
    let forwarded = crate::providers::request_invocation(services, target, Some(headers), change.value.unwrap_or_default(), None).await;
    (forwarded.map(|_| ()), true)
}

/// Calls `on-set` or `on-delete` of component `id`, which runs here as `local`, with a handle
/// on `store`, through the same admission, slots and limits as any call (`caller`: the
/// provider, as spies see it).
///
/// # Errors
/// The call's [`Fault`].
pub(crate) async fn deliver_here(runtime: &WasmRuntime, local: &LocalTarget, id: &str, caller: &str, store: kv::Store, change: Change) -> Result<(), Fault> {
    deliver_with(runtime, local, id, caller, KvBucket::JetStream(Box::new(store)), change).await
}

/// As [`deliver_here`], handing the component `bucket` (a bucket of the built-in provider, or
/// one an external provider serves).
///
/// # Errors
/// The call's [`Fault`].
pub(crate) async fn deliver_with(runtime: &WasmRuntime, local: &LocalTarget, id: &str, caller: &str, bucket: KvBucket, change: Change) -> Result<(), Fault> {
    let component = local.component.clone();
    let function = if change.value.is_some() { ON_SET } else { ON_DELETE };
    let invoke = || async move {
        let bucket = |state: &mut crate::wasm::state::GuestState| {
            state.table().push(bucket).map_err(|e| Fault::new(FaultKind::Host, format!("cannot hand over the bucket: {e}")))
        };
        match change.value {
            Some(value) => {
                let make = move |state: &mut crate::wasm::state::GuestState| Ok((bucket(state)?, change.key, value.to_vec()));
                crate::wasm::invoke::invoke_typed_with::<(Resource<KvBucket>, String, Vec<u8>), ()>(runtime, id, &component, ON_SET, make).await
            }
            None => {
                let make = move |state: &mut crate::wasm::state::GuestState| Ok((bucket(state)?, change.key));
                crate::wasm::invoke::invoke_typed_with::<(Resource<KvBucket>, String), ()>(runtime, id, &component, ON_DELETE, make).await
            }
        }
    };
    local.call_with(runtime, id, function, caller, invoke).await
}

/// A change forwarded by the provider's host: the link is checked here again (it must be a
/// watcher link from `provider` to `id` named `link_name`, from a running built-in key-value
/// provider, that watches this key for this change) before the component is called.
///
/// # Errors
/// [`FaultKind::Denied`] when the link does not allow it; the call's own fault.
pub(crate) async fn deliver_forwarded(
    runtime: &WasmRuntime,
    local: &LocalTarget,
    id: &str,
    (provider, link_name, bucket): (&str, &str, &str),
    change: Change,
) -> Result<(), Fault> {
    let ctx = local
        .component
        .imports
        .as_ref()
        .and_then(|c| std::sync::Arc::clone(&c.data).downcast::<crate::capabilities::context::ImportContext>().ok())
        .ok_or_else(|| Fault::new(FaultKind::Denied, format!("component `{id}` runs without a lattice: no key-value watch reaches it")))?;
    let op = if change.value.is_some() { WatchOp::Set } else { WatchOp::Delete };
    let watch = ctx.resolver.kv_watch_of(provider, id, link_name).map_err(|e: Denied| Fault::new(FaultKind::Denied, e.to_string()))?;
    if !watch.keys.get(&change.key).is_some_and(|ops| ops.contains(&op)) {
        return Err(Fault::new(FaultKind::Denied, format!("link `{link_name}` from `{provider}` does not watch `{}` for that change", change.key)));
    }
    // The bucket is this host's reading of the link (its default, when the link names none):
    // a change from another bucket is refused, never delivered with a handle on this one.
    if watch.bucket != bucket {
        return Err(Fault::new(
            FaultKind::Denied,
            format!("the change is from bucket `{bucket}`, but link `{link_name}` from `{provider}` watches `{}` on this host (give the link a `bucket`, or every host the same --kv-default-bucket)", watch.bucket),
        ));
    }
    let js = jetstream::new(ctx.nats.clone());
    let store = js.get_key_value(&watch.bucket).await.map_err(|e| Fault::new(FaultKind::Host, format!("cannot open bucket `{}`: {e}", watch.bucket)))?;
    deliver_here(runtime, local, id, provider, store, change).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn failed_changes_are_retried_later_and_later_up_to_half_a_minute() {
        let delays: Vec<u64> = (1..=8).map(|d| super::retry_delay(d).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(super::retry_delay(0), Duration::from_secs(1));
        let total: u64 = (1..super::MAX_RETRIES).map(|d| super::retry_delay(d).as_secs()).sum();
        assert!((300..=600).contains(&total), "about 7 minutes in all: {total} s");
    }
}
