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

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::info;
use wasmtime::component::Linker;

use crate::capabilities::view::{view, HasView, View};
use crate::permission::{Capability, Denied, ProviderGrant};
use crate::wasm::transport::wrpc::WrpcError;
use crate::capabilities::context::ImportContext;
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

/// wRPC's side of the same interface: calls to an external messaging provider.
mod wrpc_bindings {
    wit_bindgen_wrpc::generate!({
        inline: "package trellis:msg; world msg { import wasmcloud:messaging/consumer@0.2.0; }",
        path: "../wit/messaging/deps/messaging",
        world: "trellis:msg/msg",
        generate_all,
    });
}

use wrpc_bindings::wasmcloud::messaging::{consumer as wrpc_consumer, types as wire};

impl From<wire::BrokerMessage> for BrokerMessage {
    fn from(m: wire::BrokerMessage) -> Self {
        Self { subject: m.subject, body: m.body.to_vec(), reply_to: m.reply_to }
    }
}

/// Why a `publish` or `request` failed; the guest receives its text (the interface's errors are
/// strings).
#[derive(Debug, thiserror::Error)]
enum MessagingError {
    /// The component runs outside a lattice.
    #[error("wasmcloud:messaging is not available: the component runs without a lattice")]
    NoLattice,
    /// The resolver refused the link or the subject.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The external provider could not be reached.
    #[error("messaging provider {0}")]
    Provider(#[from] WrpcError),
    /// The external provider answered with an error.
    #[error("{0}")]
    Refused(String),
    /// NATS did not take the message.
    #[error("publish failed: {0}")]
    Publish(#[from] async_nats::PublishError),
    /// No reply by the deadline.
    #[error("no reply on `{subject}` within {timeout:?}")]
    Timeout { subject: String, timeout: Duration },
    /// The request failed.
    #[error("request on `{subject}` failed: {source}")]
    Request { subject: String, source: async_nats::RequestError },
}

/// What one consumer call may do, decided before it does anything.
struct Permit {
    ctx: Arc<ImportContext>,
    grant: ProviderGrant,
    reply_to: Option<String>,
    deadline: Instant,
}

impl Permit {
    fn new(view: &View<'_>) -> Result<Self, MessagingError> {
        let ctx = view.context().ok_or(MessagingError::NoLattice)?;
        let grant = ctx.resolver.messaging(&ctx.source_id, view.link_name(Capability::Messaging))?;
        Ok(Self { ctx, grant, reply_to: view.reply_to().map(str::to_string), deadline: view.deadline() })
    }

    fn check(&self, subject: &str) -> Result<(), MessagingError> {
        self.ctx.resolver.may_publish(&self.grant, subject, self.reply_to.as_deref()).map_err(|d| {
            info!(component_id = %self.ctx.source_id, subject, "messaging refused: {d}");
            d.into()
        })
    }

    /// Runs `call` on the external provider the grant names, within the call's deadline.
    async fn via_provider<T, F, Fut>(&self, call: F) -> Result<T, MessagingError>
    where
        F: FnOnce(Arc<wrpc_transport_nats::Client>, Option<async_nats::HeaderMap>) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Result<T, String>>>,
    {
        let provider = &self.grant.link.target;
        let left = self.deadline.saturating_duration_since(Instant::now());
        self.ctx
            .wrpc
            .invoke(&self.ctx.source_id, &self.grant.link.name, provider, left, call)
            .await?
            .map_err(MessagingError::Refused)
    }

    async fn publish(self, msg: BrokerMessage) -> Result<(), MessagingError> {
        self.check(&msg.subject)?;
        if self.grant.external {
            if let Some(reply) = &msg.reply_to {
                self.check(reply)?;
            }
            let wire = wire::BrokerMessage { subject: msg.subject, body: Bytes::from(msg.body), reply_to: msg.reply_to };
            return self.via_provider(|c, cx| async move { wrpc_consumer::publish(&*c, cx, &wire).await }).await;
        }
        let body = Bytes::from(msg.body);
        match msg.reply_to {
            Some(reply) => {
                // A reply subject is where the receiver will publish: it must be a subject
                // this component could publish to itself.
                self.check(&reply)?;
                self.ctx.nats.publish_with_reply(msg.subject, reply, body).await
            }
            None => self.ctx.nats.publish(msg.subject, body).await,
        }
        .map_err(MessagingError::from)
    }

    async fn request(self, subject: String, body: Vec<u8>, timeout_ms: u32) -> Result<BrokerMessage, MessagingError> {
        self.check(&subject)?;
        let asked = Duration::from_millis(u64::from(timeout_ms.max(1)));
        let timeout = asked.min(self.deadline.saturating_duration_since(Instant::now()));
        if self.grant.external {
            let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
            let body = Bytes::from(body);
            let answer = self.via_provider(|c, cx| async move { wrpc_consumer::request(&*c, cx, &subject, &body, timeout_ms).await }).await?;
            return Ok(answer.into());
        }
        match tokio::time::timeout(timeout, self.ctx.nats.send_request(subject.clone(), async_nats::Request::new().payload(body.into()).timeout(Some(timeout)))).await {
            Err(_) => Err(MessagingError::Timeout { subject, timeout }),
            Ok(Err(source)) => Err(MessagingError::Request { subject, source }),
            Ok(Ok(msg)) => Ok(BrokerMessage {
                subject: msg.subject.to_string(),
                body: msg.payload.to_vec(),
                reply_to: msg.reply.map(|r| r.to_string()),
            }),
        }
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
        Ok(match Permit::new(self) {
            Ok(p) => p.publish(msg).await,
            Err(e) => Err(e),
        }
        .map_err(|e| e.to_string()))
    }

    async fn request(&mut self, subject: String, body: Vec<u8>, timeout_ms: u32) -> wasmtime::Result<Result<BrokerMessage, String>> {
        Ok(match Permit::new(self) {
            Ok(p) => p.request(subject, body, timeout_ms).await,
            Err(e) => Err(e),
        }
        .map_err(|e| e.to_string()))
    }
}
