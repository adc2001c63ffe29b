//! `wasmcloud:messaging/consumer` (0.2.0) for components linked to a messaging provider:
//! `publish` and `request` to the subjects the capability resolver allows (the reply subject of
//! the message being handled, never the lattice's own subjects, and the link's `subjects`
//! allow-list — which an external provider's link may leave out). Through the built-in provider
//! they go out on the host's call connection; through an external provider (wasmCloud's NATS
//! or Kafka messaging provider, …) as `wasmcloud:messaging/consumer` calls over wRPC, which the
//! provider carries out on its own connection. A refusal is an error string naming the rule; a
//! request waits at most until the call's deadline.
//!
//! Bound with `bindgen!` from `wit/messaging/deps/messaging` ([`bindings`]); the interface's
//! errors are plain strings (`result<_, string>`): a [`MessagingError`] becomes its text there.

use wasmtime::component::Linker;

use super::permit::{Outgoing, Permit};
use crate::capabilities::view::{view, HasView, View};
use crate::permission::Capability;
use crate::wasm::state::GuestState;

/// The host side of `wasmcloud:messaging/consumer@0.2.0`, generated from its WIT.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/messaging/deps/messaging",
        inline: "package trellis:host-messaging; world imports { import wasmcloud:messaging/consumer@0.2.0; }",
        imports: { default: async | trappable },
    });
}

use bindings::wasmcloud::messaging::consumer;
pub use bindings::wasmcloud::messaging::types::BrokerMessage;

impl From<super::permit::Received> for BrokerMessage {
    fn from(m: super::permit::Received) -> Self {
        Self { subject: m.subject, body: m.body.to_vec(), reply_to: m.reply_to }
    }
}

/// Links `wasmcloud:messaging/consumer@0.2.0` into `linker`.
///
/// # Errors
/// When the linker refuses a definition.
pub fn link_consumer(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    consumer::add_to_linker::<GuestState, HasView>(linker, view)
}

impl bindings::wasmcloud::messaging::types::Host for View<'_> {}

impl consumer::Host for View<'_> {
    async fn publish(&mut self, msg: BrokerMessage) -> wasmtime::Result<Result<(), String>> {
        let link = self.link_name(Capability::Messaging).to_string();
        let outgoing = Outgoing { subject: msg.subject, body: msg.body.into(), reply_to: msg.reply_to, headers: Vec::new() };
        Ok(match Permit::new(self, &link) {
            Ok(p) => p.publish(outgoing).await,
            Err(e) => Err(e),
        }
        .map_err(|e| e.to_string()))
    }

    async fn request(&mut self, subject: String, body: Vec<u8>, timeout_ms: u32) -> wasmtime::Result<Result<BrokerMessage, String>> {
        let link = self.link_name(Capability::Messaging).to_string();
        let outgoing = Outgoing { subject, body: body.into(), reply_to: None, headers: Vec::new() };
        Ok(match Permit::new(self, &link) {
            Ok(p) => p.request(outgoing, Some(timeout_ms), 1).await.map(|mut answers| answers.remove(0).into()),
            Err(e) => Err(e),
        }
        .map_err(|e| e.to_string()))
    }
}
