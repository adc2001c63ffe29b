//! `wasmcloud:messaging/consumer` (0.2.0) for components linked to a messaging provider:
//! `publish` and `request` to the subjects the capability resolver allows (the reply subject of
//! the message being handled, never the lattice's own subjects, and the link's `subjects`
//! allow-list — which an external provider's link may leave out). Through the built-in provider
//! they go out on the host's call connection; through an external provider (wasmCloud's NATS
//! or Kafka messaging provider, …) as `wasmcloud:messaging/consumer` calls over wRPC, which the
//! provider carries out on its own connection. A refusal is an error string naming the rule; a
//! request waits at most until the call's deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::info;
use wasmtime::component::{ComponentType, Lift, Linker, Lower};

use crate::permission::{Capability, ProviderGrant};
use crate::lattice::state::DEFAULT_LINK_NAME;
use crate::wasm::context::ImportContext;
use crate::wasm::state::GuestState;

/// `wasmcloud:messaging/types.broker-message`.
#[derive(ComponentType, Lift, Lower, Clone, Debug, PartialEq, Eq)]
#[component(record)]
pub struct BrokerMessage {
    /// Subject.
    pub subject: String,
    /// Payload.
    pub body: Vec<u8>,
    /// Where to reply.
    #[component(name = "reply-to")]
    pub reply_to: Option<String>,
}

mod bindings {
    wit_bindgen_wrpc::generate!({
        inline: "package trellis:msg; world msg { import wasmcloud:messaging/consumer@0.2.0; }",
        path: "../wit/messaging/deps/messaging",
        world: "trellis:msg/msg",
        generate_all,
    });
}

use bindings::wasmcloud::messaging::{consumer, types as wire};

impl From<wire::BrokerMessage> for BrokerMessage {
    fn from(m: wire::BrokerMessage) -> Self {
        Self { subject: m.subject, body: m.body.to_vec(), reply_to: m.reply_to }
    }
}

/// What one consumer call may do, decided before it does anything.
struct Permit {
    ctx: Arc<ImportContext>,
    grant: ProviderGrant,
    reply_to: Option<String>,
    deadline: Instant,
}

impl Permit {
    fn new(ctx: &Arc<ImportContext>, state: &GuestState) -> Result<Self, String> {
        let link = state.link_name(Capability::Messaging.key()).unwrap_or(DEFAULT_LINK_NAME);
        let grant = ctx.resolver.messaging(&ctx.source_id, link).map_err(|d| d.0)?;
        Ok(Self { ctx: ctx.clone(), grant, reply_to: state.reply_to.clone(), deadline: state.deadline })
    }

    fn check(&self, subject: &str) -> Result<(), String> {
        self.ctx.resolver.may_publish(&self.grant, subject, self.reply_to.as_deref()).map_err(|d| {
            info!(component_id = %self.ctx.source_id, subject, "messaging refused: {d}");
            d.0
        })
    }

    /// Runs `call` on the external provider the grant names, within the call's deadline.
    async fn via_provider<T, F, Fut>(&self, call: F) -> Result<T, String>
    where
        F: FnOnce(Arc<wrpc_transport_nats::Client>, Option<async_nats::HeaderMap>) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Result<T, String>>>,
    {
        let provider = &self.grant.link.target;
        let left = self.deadline.saturating_duration_since(Instant::now());
        self.ctx
            .wrpc
            .invoke(&self.ctx.source_id, &self.grant.link.name, provider, left, call)
            .await
            .map_err(|e| format!("messaging provider {e}"))?
    }

    async fn publish(self, msg: BrokerMessage) -> Result<(), String> {
        self.check(&msg.subject)?;
        if self.grant.external {
            if let Some(reply) = &msg.reply_to {
                self.check(reply)?;
            }
            let wire = wire::BrokerMessage { subject: msg.subject, body: Bytes::from(msg.body), reply_to: msg.reply_to };
            return self.via_provider(|c, cx| async move { consumer::publish(&*c, cx, &wire).await }).await;
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
        .map_err(|e| format!("publish failed: {e}"))
    }

    async fn request(self, subject: String, body: Vec<u8>, timeout_ms: u32) -> Result<BrokerMessage, String> {
        self.check(&subject)?;
        let asked = Duration::from_millis(u64::from(timeout_ms.max(1)));
        let timeout = asked.min(self.deadline.saturating_duration_since(Instant::now()));
        if self.grant.external {
            let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
            let body = Bytes::from(body);
            let answer = self.via_provider(|c, cx| async move { consumer::request(&*c, cx, &subject, &body, timeout_ms).await }).await?;
            return Ok(answer.into());
        }
        match tokio::time::timeout(timeout, self.ctx.nats.send_request(subject.clone(), async_nats::Request::new().payload(body.into()).timeout(Some(timeout)))).await {
            Err(_) => Err(format!("no reply on `{subject}` within {timeout:?}")),
            Ok(Err(e)) => Err(format!("request on `{subject}` failed: {e}")),
            Ok(Ok(msg)) => Ok(BrokerMessage {
                subject: msg.subject.to_string(),
                body: msg.payload.to_vec(),
                reply_to: msg.reply.map(|r| r.to_string()),
            }),
        }
    }
}

/// Links `wasmcloud:messaging/consumer` (`import`) into `linker`.
///
/// # Errors
/// When the linker refuses a definition.
pub fn link_consumer(linker: &mut Linker<GuestState>, import: &str, ctx: &Arc<ImportContext>) -> wasmtime::Result<()> {
    let mut inst = linker.instance(import)?;
    let c = ctx.clone();
    inst.func_wrap_async("publish", move |store, (msg,): (BrokerMessage,)| {
        let permit = Permit::new(&c, store.data());
        Box::new(async move {
            let result = match permit {
                Ok(p) => p.publish(msg).await,
                Err(e) => Err(e),
            };
            Ok((result,))
        })
    })?;
    let c = ctx.clone();
    inst.func_wrap_async("request", move |store, (subject, body, timeout_ms): (String, Vec<u8>, u32)| {
        let permit = Permit::new(&c, store.data());
        Box::new(async move {
            let result = match permit {
                Ok(p) => p.request(subject, body, timeout_ms).await,
                Err(e) => Err(e),
            };
            Ok((result,))
        })
    })?;
    Ok(())
}
