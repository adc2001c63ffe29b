//! `wasmcloud:messaging/handler@0.2.0` over wRPC for components that export only 0.3's
//! `incoming-handler`: external messaging providers (wasmCloud's `messaging-nats`, built with the
//! SDK) deliver with 0.2's `handle-message`; the message reaches the component as a 0.3
//! `message` through [`deliver_here`], with the same slots and limits as any call. A wasmCloud
//! 1.9 host does the same translation.
//!
//! The call's parameters are held to [`MAX_MESSAGE_BYTES`] and must arrive within the queue
//! wait (a caller that stalls part way is cut off).

use std::sync::Arc;

use futures::StreamExt as _;
use tracing::{debug, warn};

use super::handler::{deliver_here, Delivery};
use crate::wasm::transport::local::LocalComponents;
use crate::wasm::transport::wrpc_error::WrpcError;
use crate::wasm::transport::wrpc_head::{HeadBounded, HeadBounds};
use crate::wasm::WasmRuntime;

mod bindings {
    wit_bindgen_wrpc::generate!({
        inline: "package trellis:msg-handler; world handler { export wasmcloud:messaging/handler@0.2.0; }",
        path: "../wit/messaging/deps/messaging",
        world: "trellis:msg-handler/handler",
        generate_all,
    });
}

use bindings::exports::wasmcloud::messaging::handler::Handler;
use bindings::wasmcloud::messaging::types::BrokerMessage;

/// The instance served.
pub const INSTANCE: &str = "wasmcloud:messaging/handler@0.2.0";

/// Bytes of one delivery's parameters (its body, subject and reply subject).
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;
/// Calls of this component being read or run at once; past it the next waits (its bytes stay
/// in the NATS client's bounded buffer), so at most `IN_FLIGHT` × [`MAX_MESSAGE_BYTES`] are held.
pub const IN_FLIGHT: usize = 32;

#[derive(Clone)]
struct Shim {
    id: Arc<str>,
    local: LocalComponents,
    runtime: Arc<WasmRuntime>,
}

impl<Ctx: Send> Handler<Ctx> for Shim {
    async fn handle_message(&self, _cx: Ctx, msg: BrokerMessage) -> anyhow::Result<Result<(), String>> {
        let Some(target) = self.local.get(&self.id) else {
            anyhow::bail!("component `{}` no longer runs here", self.id);
        };
        let delivery = Delivery { subject: msg.subject, body: msg.body, reply_to: msg.reply_to, headers: Vec::new() };
        deliver_here(&self.runtime, &target, &self.id, "wrpc", delivery).await.map_err(|f| anyhow::anyhow!("{}", f.message))
    }
}

/// Serves `wasmcloud:messaging/handler@0.2.0` for component `id` (which exports only 0.3's
/// handler) on its wRPC subjects; the task keeps the client and ends when aborted.
///
/// # Errors
/// When the subscription cannot be made.
pub async fn serve(nats: async_nats::Client, lattice: &str, id: &str, local: LocalComponents, runtime: Arc<WasmRuntime>) -> Result<tokio::task::JoinHandle<()>, WrpcError> {
    let serve_error = |e: anyhow::Error| WrpcError::Serve { id: id.to_string(), what: INSTANCE.to_string(), reason: format!("{e:#}") };
    let prefix = trellis_messages::subjects::wrpc_prefix(lattice, id);
    let client = Arc::new(wrpc_transport_nats::Client::new(nats, prefix.clone(), Some(prefix.into())).await.map_err(serve_error)?);
    let bounds = HeadBounds { max_bytes: MAX_MESSAGE_BYTES, within: runtime.config().max_queue_wait, bodies: Vec::new() };
    let transport = HeadBounded::new(client.clone(), bounds);
    let shim = Shim { id: id.into(), local, runtime };
    let [(_, _, invocations)] = bindings::exports::wasmcloud::messaging::handler::serve_interface(&transport, shim).await.map_err(serve_error)?;
    let id = id.to_string();
    Ok(tokio::spawn(async move {
        let _client = client;
        let mut invocations = std::pin::pin!(invocations);
        let in_flight = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
        while let Some(invocation) = invocations.next().await {
            let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
            match invocation {
                Ok(call) => {
                    let id = id.clone();
                    tokio::spawn(async move {
                        let _permit = permit;
                        if let Err(e) = call.await {
                            warn!(component_id = %id, error = %format!("{e:#}"), "a wRPC message delivery failed");
                        }
                    });
                }
                Err(e) => debug!(component_id = %id, error = %format!("{e:#}"), "bad wRPC message delivery"),
            }
        }
    }))
}
