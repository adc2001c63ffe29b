//! The messaging provider: an actor that follows the links whose source is this provider
//! (`wasmcloud:messaging/handler`) and delivers the messages of each link's `subscriptions`
//! (source config, comma-separated; `queue_group` optional) to the linked component's
//! `handle-message`: in-process when the component runs here, else over NATS.
//!
//! In-process, a message's body is lowered into the guest as bytes (typed, not one `Val` per
//! byte), and only once the call has an instance: a delivery that waits holds the message as
//! it arrived. At most 256 deliveries and 64 MiB of bodies per subscription are in flight;
//! past either the subscription is not read until one ends, so further messages wait in the
//! NATS client's buffer (and past that are dropped, as NATS drops for any slow consumer).

use std::collections::HashMap;

use actix::prelude::*;
use futures::StreamExt;
use tracing::{debug, info, warn};
use wasmtime::component::{ComponentType, Lower};

use crate::providers::follower::{FollowLinks, LinkFollower};
use crate::services::HostServices;

/// The export messages are delivered to.
const HANDLE: &str = "wasmcloud:messaging/handler@0.2.0.handle-message";

/// Messages of one subscription being delivered at once.
const MAX_DELIVERIES_IN_FLIGHT: usize = 256;
/// Bytes of message bodies of one subscription being delivered at once, in KiB.
const MAX_DELIVERY_KIB_IN_FLIGHT: u32 = 64 * 1024;

/// wasmCloud's `broker-message`, as the guest receives it.
#[derive(ComponentType, Lower)]
#[component(record)]
struct BrokerMessage {
    subject: String,
    body: Vec<u8>,
    #[component(name = "reply-to")]
    reply_to: Option<String>,
}

/// One subscription: (target component, subject, queue group).
type Key = (String, String, Option<String>);

/// One messaging provider (run by a [`LinkFollower`]).
pub struct Messaging {
    id: String,
    services: HostServices,
    subscriptions: HashMap<Key, tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Messaging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messaging").field("id", &self.id).field("subscriptions", &self.subscriptions.keys()).finish()
    }
}

impl Messaging {
    /// A provider `id`; subscriptions follow its links once it starts.
    pub fn new(id: String, services: HostServices) -> Self {
        Self { id, services, subscriptions: HashMap::new() }
    }

    fn desired(&self) -> Vec<Key> {
        let mut out = Vec::new();
        for (link, config) in self.services.resolver.deliveries(&self.id, ("wasmcloud", "messaging", "handler")) {
            let queue = config.get("queue_group").filter(|q| !q.is_empty()).cloned();
            for subject in config.get("subscriptions").map(String::as_str).unwrap_or_default().split(',') {
                let subject = subject.trim();
                if subject.is_empty() {
                    continue;
                }
                match self.services.resolver.may_subscribe(subject) {
                    Ok(()) => out.push((link.target.clone(), subject.to_string(), queue.clone())),
                    Err(e) => warn!(provider = %self.id, target = %link.target, "messaging subscription refused: {e}"),
                }
            }
        }
        out
    }

    fn sync(&mut self) {
        let desired = self.desired();
        debug!(provider = %self.id, ?desired, "messaging reconcile");
        self.subscriptions.retain(|key, task| {
            let keep = desired.contains(key);
            if !keep {
                info!(subject = %key.1, target = %key.0, "messaging subscription removed");
                task.abort();
            }
            keep
        });
        for key in desired {
            if self.subscriptions.contains_key(&key) {
                continue;
            }
            info!(provider = %self.id, subject = %key.1, target = %key.0, queue = ?key.2, "messaging subscription added");
            let services = self.services.clone();
            let task = self.services.runtime.guests().spawn(deliver(services, key.clone()));
            self.subscriptions.insert(key, task);
        }
    }
}

async fn deliver(services: HostServices, (target, subject, queue): Key) {
    let sub = match &queue {
        Some(q) => services.calls.queue_subscribe(subject.clone(), q.clone()).await,
        None => services.calls.subscribe(subject.clone()).await,
    };
    let mut sub = match sub {
        Ok(s) => s,
        Err(e) => {
            warn!(%subject, error = %e, "messaging provider cannot subscribe");
            return;
        }
    };
    let _ = crate::nats::barrier(&services.calls).await;
    // Deliveries in flight per subscription: past this the subscription is not read until one
    // finishes, so a flood waits in the client's bounded buffer (which drops past its size,
    // as NATS does for any slow consumer) instead of piling up tasks.
    let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_DELIVERIES_IN_FLIGHT));
    let bytes_in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_DELIVERY_KIB_IN_FLIGHT as usize));
    while let Some(msg) = sub.next().await {
        let kib = u32::try_from(msg.payload.len().div_ceil(1024)).unwrap_or(u32::MAX).clamp(1, MAX_DELIVERY_KIB_IN_FLIGHT);
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        let Ok(bytes) = bytes_in_flight.clone().acquire_many_owned(kib).await else { return };
        let (services, target) = (services.clone(), target.clone());
        tokio::spawn(async move {
            let _permits = (permit, bytes);
            if let Err(e) = handle(&services, &target, msg).await {
                warn!(component_id = %target, "message not handled: {e}");
            }
        });
    }
}

async fn handle(services: &HostServices, target: &str, msg: async_nats::Message) -> Result<(), String> {
    let reply_to = msg.reply.as_ref().map(ToString::to_string);
    let result = match services.local.get(target) {
        Some(local) => {
            let runtime = &services.runtime;
            let component = local.component.clone();
            let invoke = || async move {
                let message = BrokerMessage { subject: msg.subject.to_string(), body: msg.payload.to_vec(), reply_to: reply_to.clone() };
                crate::wasm::invoke::invoke_typed::<(BrokerMessage,), (Result<(), String>,)>(runtime, target, &component, HANDLE, (message,), reply_to)
                    .await
            };
            let (result,) = local.call_with(runtime, target, HANDLE, "messaging", invoke).await.map_err(|f| f.message)?;
            result.err().map(|e| format!("err({e:?})"))
        }
        None => {
            let arg = wave_message(&msg.subject, &msg.payload, reply_to.as_deref());
            let result = crate::providers::invoke_wave(services, target, HANDLE, arg, None).await?;
            result.starts_with("err(").then_some(result)
        }
    };
    if let Some(err) = result {
        debug!(component_id = target, "handle-message returned {err}");
    }
    Ok(())
}

/// The `broker-message` in WAVE, written straight from the bytes, for a component on another host.
fn wave_message(subject: &str, body: &[u8], reply_to: Option<&str>) -> String {
    use std::fmt::Write as _;
    use wasmtime::component::Val;
    let quoted = |s: &str| Val::String(s.into()).to_wave().unwrap_or_else(|_| "\"\"".into());
    let mut out = String::with_capacity(body.len() * 4 + subject.len() + 64);
    let _ = write!(out, "{{subject: {}, body: [", quoted(subject));
    for (i, b) in body.iter().enumerate() {
        let _ = write!(out, "{}{b}", if i == 0 { "" } else { ", " });
    }
    out.push(']');
    // As wasmtime prints a record: a field that is `none` is left out.
    if let Some(r) = reply_to {
        let _ = write!(out, ", reply-to: some({})", quoted(r));
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use wasmtime::component::Val;

    /// What the host sent before: the record as `Val`s, printed by wasmtime.
    fn as_vals(subject: &str, body: &[u8], reply_to: Option<&str>) -> String {
        Val::Record(vec![
            ("subject".into(), Val::String(subject.into())),
            ("body".into(), Val::List(body.iter().map(|b| Val::U8(*b)).collect())),
            ("reply-to".into(), Val::Option(reply_to.map(|r| Box::new(Val::String(r.into()))))),
        ])
        .to_wave()
        .expect("printable")
    }

    #[test]
    fn the_wave_message_is_the_records_wave() {
        for (subject, body, reply) in [("a.\"b\"", &[0u8, 7, 255][..], Some("_INBOX.x")), ("s", &[][..], None)] {
            assert_eq!(super::wave_message(subject, body, reply), as_vals(subject, body, reply));
        }
    }
}

impl FollowLinks for Messaging {
    fn reconcile(&mut self, _: &mut Context<LinkFollower<Self>>) {
        self.sync();
    }

    fn stop(&mut self) {
        for (_, task) in self.subscriptions.drain() {
            task.abort();
        }
    }
}

