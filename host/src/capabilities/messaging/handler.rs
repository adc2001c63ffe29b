//! The messaging provider: an actor that follows the links whose source is this provider
//! (`wasmcloud:messaging/handler`) and delivers the messages of each link's `subscriptions`
//! (source config, comma-separated; `queue_group` optional) to the linked component's
//! `handle-message`: in-process when the component runs here, else over NATS.
//!
//! A message's body is lowered into the guest as bytes (typed, not one `Val` per byte), and
//! only once the call has an instance: a delivery that waits holds the message as it arrived.
//! To a component on another host the message goes as it arrived too, its body as the NATS
//! payload (`Trellis-Kind: message`, [`trellis_messages::invocation::MESSAGE_KIND`]), and that
//! host delivers it the same way (`deliver_here`). At most 256 deliveries and 64 MiB of bodies per subscription are in flight;
//! past either the subscription is not read until one ends, so further messages wait in the
//! NATS client's buffer (and past that are dropped, as NATS drops for any slow consumer).

use std::collections::HashMap;

use actix::prelude::*;
use futures::StreamExt;
use tracing::{debug, info, warn};
use wasmtime::component::{ComponentType, Lower};

use crate::providers::follower::{FollowLinks, LinkFollower};
use crate::providers::CallError;
use trellis_messages::invocation::FaultKind;
use crate::services::HostServices;
use crate::wasm::invoke::Fault;
use crate::wasm::transport::elsewhere::Reached;
use crate::wasm::transport::local::LocalTarget;
use crate::wasm::WasmRuntime;

/// The export messages are delivered to.
pub(crate) const HANDLE: &str = "wasmcloud:messaging/handler@0.2.0.handle-message";
/// The same in `wasmcloud:messaging` 0.3, for components that export only that.
pub(crate) const HANDLE_0_3: &str = "wasmcloud:messaging/incoming-handler@0.3.0.handle";

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

/// One subscription: (target component, subject, queue group, link name).
type Key = (String, String, Option<String>, String);

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
                    Ok(()) => out.push((link.target.clone(), subject.to_string(), queue.clone(), link.name.clone())),
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
            let task = self.services.runtime.guests().spawn(deliver(services, self.id.clone(), key.clone()));
            self.subscriptions.insert(key, task);
        }
    }
}

async fn deliver(services: HostServices, provider: String, (target, subject, queue, link_name): Key) {
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
        // Headers count too (a message may carry them and an empty body).
        let kib = u32::try_from(msg.length.max(msg.payload.len()).div_ceil(1024)).unwrap_or(u32::MAX).clamp(1, MAX_DELIVERY_KIB_IN_FLIGHT);
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        let Ok(bytes) = bytes_in_flight.clone().acquire_many_owned(kib).await else { return };
        let (services, target, from) = (services.clone(), target.clone(), Via { provider: provider.clone(), link_name: link_name.clone() });
        tokio::spawn(async move {
            let _permits = (permit, bytes);
            if let Err(e) = handle(&services, &from, &target, msg).await {
                warn!(component_id = %target, "message not handled: {e}");
            }
        });
    }
}

/// The provider and link a delivery comes through (wRPC callers name them in headers).
struct Via {
    provider: String,
    link_name: String,
}

async fn handle(services: &HostServices, from: &Via, target: &str, msg: async_nats::Message) -> Result<(), CallError> {
    let headers = msg
        .headers
        .iter()
        .flat_map(|h| h.iter().flat_map(|(k, vs)| vs.iter().map(move |v| (k.to_string(), v.to_string()))))
        .collect();
    let delivery = Delivery { subject: msg.subject.to_string(), body: msg.payload, reply_to: msg.reply.map(|r| r.to_string()), headers };
    let result = match services.local.get(target) {
        Some(local) => deliver_here(&services.runtime, &local, target, "messaging", delivery)
            .await
            .map_err(|f| CallError::Fault { kind: Some(f.kind), message: f.message })?
            .err(),
        None => forward(services, from, target, delivery).await?,
    };
    if let Some(err) = result {
        debug!(component_id = target, "handle-message returned {err}");
    }
    Ok(())
}

/// One message for a component's `handle-message`.
#[derive(Debug)]
pub(crate) struct Delivery {
    /// The subject it arrived on.
    pub subject: String,
    /// Its body, as it arrived.
    pub body: bytes::Bytes,
    /// Where an answer goes, if anywhere.
    pub reply_to: Option<String>,
    /// Its headers (0.3's metadata; 0.2's `broker-message` has none). Not forwarded to another
    /// host.
    pub headers: Vec<(String, String)>,
}

/// Delivers a message to component `id`, which runs here as `local`, with the same admission,
/// slots and limits as any call (`caller` as spies see it). Answers the handler's own result.
///
/// # Errors
/// The call's [`Fault`]: refused, busy, trapped, past its deadline.
pub(crate) async fn deliver_here(runtime: &WasmRuntime, local: &LocalTarget, id: &str, caller: &str, delivery: Delivery) -> Result<Result<(), String>, Fault> {
    let component = local.component.clone();
    // A component that exports only 0.3's handler gets the message as a `message` resource.
    let v0_3 = crate::wasm::invoke::lookup(id, &component, HANDLE).is_err() && crate::wasm::invoke::lookup(id, &component, HANDLE_0_3).is_ok();
    if v0_3 {
        use super::v0_3::{deliver, error_text, Error, Message};
        let invoke = || async move {
            let Delivery { subject, body, reply_to, headers } = delivery;
            let make = move |state: &mut crate::wasm::state::GuestState| {
                state.reply_to.clone_from(&reply_to);
                let message = Message::delivered(subject, body, reply_to, headers);
                let message = deliver(state, message).map_err(|e| Fault::new(FaultKind::Host, format!("cannot hand the message over: {e}")))?;
                Ok((message,))
            };
            crate::wasm::invoke::invoke_typed_with::<(wasmtime::component::Resource<Message>,), (Result<(), Error>,)>(runtime, id, &component, HANDLE_0_3, make)
                .await
        };
        let (result,) = local.call_with(runtime, id, HANDLE_0_3, caller, invoke).await?;
        return Ok(result.map_err(|e| error_text(&e)));
    }
    let invoke = || async move {
        let Delivery { subject, body, reply_to, .. } = delivery;
        // Copied into the guest's argument only now that the call has an instance.
        let message = BrokerMessage { subject, body: body.to_vec(), reply_to: reply_to.clone() };
        crate::wasm::invoke::invoke_typed::<(BrokerMessage,), (Result<(), String>,)>(runtime, id, &component, HANDLE, (message,), reply_to).await
    };
    let (result,) = local.call_with(runtime, id, HANDLE, caller, invoke).await?;
    Ok(result)
}

/// Hands a message to whichever host runs component `target`: its body as the NATS payload,
/// subject and reply subject as headers. Answers the handler's `err`, if it returned one.
async fn forward(services: &HostServices, from: &Via, target: &str, delivery: Delivery) -> Result<Option<String>, CallError> {
    use trellis_messages::invocation::{KIND_HEADER, MESSAGE_KIND, MESSAGE_REPLY_TO_HEADER, MESSAGE_SUBJECT_HEADER};
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(KIND_HEADER, MESSAGE_KIND);
    headers.insert(MESSAGE_SUBJECT_HEADER, delivery.subject.as_str());
    if let Some(reply_to) = &delivery.reply_to {
        headers.insert(MESSAGE_REPLY_TO_HEADER, reply_to.as_str());
    }
    crate::telemetry::inject_nats(&tracing::Span::current(), &mut headers);
    let config = services.runtime.config();
    let wrpc_timeout = config.max_execution_time + config.max_queue_wait;
    let request_reply = async {
        match crate::providers::request_invocation(services, target, Some(headers), delivery.body.clone(), None).await {
            // A host of an earlier Trellis (during a rolling upgrade) reads the message as a
            // JSON invocation and refuses it: it gets the message as WAVE, as it expects.
            Err(CallError::Fault { kind: Some(FaultKind::BadArguments), message }) if message.starts_with(crate::wasm::invoke::NOT_AN_INVOCATION) => {
                debug!(component_id = target, "the host running it takes no forwarded messages; sent as WAVE");
                let arg = wave_message(&delivery.subject, &delivery.body, delivery.reply_to.as_deref());
                Ok(crate::providers::invoke_wave(services, target, HANDLE, arg, None).await)
            }
            // No Trellis host runs it: a wasmCloud 1.x host may, serving it over wRPC only.
            Err(CallError::Unanswered { source }) if source.kind() == async_nats::RequestErrorKind::NoResponders => Err(CallError::Unanswered { source }),
            other => Ok(other),
        }
    };
    let over_wrpc = || async {
        let message = (delivery.subject.as_str(), &delivery.body, delivery.reply_to.as_deref());
        match super::wrpc_deliver::deliver(&services.wrpc, &from.provider, &from.link_name, target, message, wrpc_timeout).await {
            Err(crate::wasm::transport::wrpc::WrpcError::NotServing { .. }) => None,
            Ok(answer) => Some(Ok(answer.err())),
            Err(e) => Some(Err(CallError::Fault { kind: None, message: e.to_string() })),
        }
    };
    let result = match services.wrpc.elsewhere().reach(target, request_reply, over_wrpc).await {
        Reached::Trellis(result) => result?,
        Reached::Wrpc(answer) => return answer,
        Reached::Nowhere(no_responders) => return Err(no_responders),
    };
    Ok(result.starts_with("err(").then_some(result))
}

/// The `broker-message` in WAVE, written straight from the bytes, for a host of an earlier
/// Trellis that takes only WAVE invocations.
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

/// The handler's result in WAVE, as the reply to a forwarded message carries it.
pub(crate) fn result_wave(result: &Result<(), String>) -> String {
    match result {
        Ok(()) => "ok".into(),
        Err(e) => format!("err({})", wasmtime::component::Val::String(e.clone()).to_wave().unwrap_or_else(|_| "\"\"".into())),
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

    /// A forwarded message's reply carries the handler's result as wasmtime prints it.
    #[test]
    fn the_result_is_wasmtimes_wave() {
        for result in [Ok(()), Err("no \"such\" thing".to_string())] {
            let val = Val::Result(result.clone().map(|()| None).map_err(|e| Some(Box::new(Val::String(e)))));
            assert_eq!(super::result_wave(&result), val.to_wave().expect("printable"));
        }
    }
}
