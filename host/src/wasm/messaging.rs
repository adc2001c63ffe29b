//! `wasmcloud:messaging/consumer` (0.2.0) for components linked to a messaging provider:
//! `publish` and `request` on the lattice's NATS connection. Without a link the call returns an
//! error naming the missing link.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use wasmtime::component::{ComponentType, Lift, Linker, Lower};

use crate::lattice::state::DEFAULT_LINK_NAME;
use crate::wasm::imports::ImportContext;
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

fn check_link(ctx: &ImportContext, link_name: &str) -> Result<(), String> {
    ctx.view.resolve(&ctx.source_id, link_name, "wasmcloud", "messaging", "consumer").map(|_| ())
}

/// Links `wasmcloud:messaging/consumer` (`import`) into `linker`.
///
/// # Errors
/// When the linker refuses a definition.
pub fn link_consumer(linker: &mut Linker<GuestState>, import: &str, ctx: &Arc<ImportContext>) -> wasmtime::Result<()> {
    let mut inst = linker.instance(import)?;
    let c = ctx.clone();
    inst.func_wrap_async("publish", move |store, (msg,): (BrokerMessage,)| {
        let c = c.clone();
        let link = store.data().link_name("wasmcloud:messaging/consumer").unwrap_or(DEFAULT_LINK_NAME).to_string();
        Box::new(async move {
            let result = async {
                check_link(&c, &link)?;
                let body = Bytes::from(msg.body);
                match msg.reply_to {
                    Some(reply) => c.nats.publish_with_reply(msg.subject, reply, body).await,
                    None => c.nats.publish(msg.subject, body).await,
                }
                .map_err(|e| format!("publish failed: {e}"))
            }
            .await;
            Ok((result,))
        })
    })?;
    let c = ctx.clone();
    inst.func_wrap_async("request", move |store, (subject, body, timeout_ms): (String, Vec<u8>, u32)| {
        let c = c.clone();
        let link = store.data().link_name("wasmcloud:messaging/consumer").unwrap_or(DEFAULT_LINK_NAME).to_string();
        Box::new(async move {
            let result = async {
                check_link(&c, &link)?;
                let timeout = Duration::from_millis(u64::from(timeout_ms.max(1)));
                match tokio::time::timeout(timeout, c.nats.request(subject.clone(), body.into())).await {
                    Err(_) => Err(format!("no reply on `{subject}` within {timeout:?}")),
                    Ok(Err(e)) => Err(format!("request on `{subject}` failed: {e}")),
                    Ok(Ok(msg)) => Ok(BrokerMessage {
                        subject: msg.subject.to_string(),
                        body: msg.payload.to_vec(),
                        reply_to: msg.reply.map(|r| r.to_string()),
                    }),
                }
            }
            .await;
            Ok((result,))
        })
    })?;
    Ok(())
}
