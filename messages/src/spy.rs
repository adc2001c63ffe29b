//! `trellis spy`: live records of the calls to and from one component, for debugging.
//!
//! A spy publishes [`SpyWatch`] on `trellis.spy.{lattice}.watch` and renews it while it
//! listens; every host running the component then publishes a [`CallRecord`] per call on
//! `trellis.spy.{lattice}.calls.{component}` until the watch lapses. Hosts record nothing for a
//! component nobody watches (one atomic load per call).

use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::Client;

/// The longest a single watch lasts; a spy renews well before.
pub const MAX_WATCH: Duration = Duration::from_secs(60);

/// How long each watch a [`Client::spy`] publishes lasts, and how often it renews it.
const WATCH_FOR: Duration = Duration::from_secs(6);
const RENEW_EVERY: Duration = Duration::from_secs(2);

/// Where spies ask hosts to record a component's calls.
pub fn watch_subject(lattice: &str) -> String {
    format!("trellis.spy.{lattice}.watch")
}

/// Where hosts publish the records of `component`'s calls.
pub fn calls_subject(lattice: &str, component: &str) -> String {
    format!("trellis.spy.{lattice}.calls.{component}")
}

/// Record `component_id`'s calls for `for_ms` milliseconds (at most [`MAX_WATCH`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpyWatch {
    /// The component to watch.
    pub component_id: String,
    /// How long, in milliseconds, from when a host receives this.
    pub for_ms: u64,
}

/// Which way a recorded call went, seen from the watched component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// A call of one of its exports.
    In,
    /// A call it made through a link.
    Out,
}

/// One call to or from a watched component.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The host that ran (`in`) or made (`out`) the call.
    pub host_id: String,
    /// The watched component.
    pub component_id: String,
    /// Which way the call went.
    pub direction: Direction,
    /// The function called (`ns:pkg/iface.func`, `func`, or `wasi:http/incoming-handler.handle`).
    pub function: String,
    /// `in`: who called (a component or provider id, or `client` for a control-plane call
    /// without a source); `out`: the link's target.
    pub peer: String,
    /// Size of the arguments or request, in bytes, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<usize>,
    /// How long the call took, in microseconds.
    pub duration_us: u64,
    /// `ok`, or the fault kind (`trap`, `deadline`, `busy`, …), or `error` for a failed link call.
    pub outcome: String,
    /// When the call ended (RFC 3339).
    pub at: String,
}

impl Client {
    /// Records of the calls to and from `component_id`, live, until the stream is dropped.
    /// The watch is renewed every two seconds while the stream is polled or held.
    ///
    /// # Errors
    /// [`Error::Nats`] when the subscription or the first watch cannot be made.
    pub async fn spy(&self, component_id: &str) -> Result<impl futures::Stream<Item = CallRecord>> {
        let lattice = self.subjects().lattice().to_string();
        let nats = self.nats().clone();
        let subscriber = nats
            .subscribe(calls_subject(&lattice, component_id))
            .await
            .map_err(|e| Error::Nats { subject: calls_subject(&lattice, component_id), reason: e.to_string() })?;
        let watch = serde_json::to_vec(&SpyWatch { component_id: component_id.into(), for_ms: WATCH_FOR.as_millis() as u64 })
            .map_err(|source| Error::Encode { what: "spy watch", source })?;
        let subject = watch_subject(&lattice);
        nats.publish(subject.clone(), watch.clone().into()).await.map_err(|e| Error::Nats { subject: subject.clone(), reason: e.to_string() })?;
        nats.flush().await.map_err(|e| Error::Nats { subject: subject.clone(), reason: e.to_string() })?;
        // Renews the watch until the stream (and with it this task's handle) is dropped.
        let renew = tokio::spawn(async move {
            let mut every = tokio::time::interval(RENEW_EVERY);
            every.tick().await;
            loop {
                every.tick().await;
                if nats.publish(subject.clone(), watch.clone().into()).await.is_err() {
                    break;
                }
            }
        });
        let guard = AbortOnDrop(renew);
        Ok(subscriber.filter_map(move |msg| {
            let _keep = &guard;
            futures::future::ready(serde_json::from_slice::<CallRecord>(&msg.payload).ok())
        }))
    }
}

/// Stops the renewing task when the spy's stream goes away.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
