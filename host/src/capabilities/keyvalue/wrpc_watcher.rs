//! `wrpc:keyvalue/watcher@0.2.0-draft` over wRPC for components that export
//! `wasi:keyvalue/watcher`: an external key-value provider (one built with wasmCloud's SDK)
//! calls `on-set` / `on-delete` with the bucket's name, and the component is called with a
//! handle on that bucket as the provider serves it, as a wasmCloud 1.x host does.
//!
//! The call must come from a provider with a `wasi:keyvalue/watcher` link to the component (its
//! `source-id`), and the handle is the component's own: through its `wasi:keyvalue/store` link
//! to that provider, so a watcher call never hands a component a bucket it could not open
//! itself. Otherwise the call fails, naming what is missing. Parameters are held to
//! [`MAX_CHANGE_BYTES`] and must arrive within the queue wait.

use std::sync::Arc;

use futures::StreamExt as _;
use wrpc_transport_nats::NatsContext;
use tracing::{debug, info, warn};

use super::provider::ProviderBucket;
use super::watch::{deliver_with, Change};
use super::KvBucket;
use crate::wasm::transport::local::{LocalComponents, LocalTarget};
use crate::wasm::transport::wrpc_error::WrpcError;
use crate::wasm::transport::wrpc_head::{HeadBounded, HeadBounds};
use crate::wasm::WasmRuntime;

mod bindings {
    wit_bindgen_wrpc::generate!({
        inline: "package trellis:kv-watcher; world watcher { export wrpc:keyvalue/watcher@0.2.0-draft; }",
        path: "../wit/wrpc-keyvalue",
        world: "trellis:kv-watcher/watcher",
        generate_all,
    });
}

use bindings::exports::wrpc::keyvalue::watcher::Handler;

/// The instance served.
pub const INSTANCE: &str = "wrpc:keyvalue/watcher@0.2.0-draft";

/// Bytes of one change's parameters (bucket, key, value).
pub const MAX_CHANGE_BYTES: usize = 8 << 20;
/// Calls of this component being read or run at once; past it the next waits (its bytes stay
/// in the NATS client's bounded buffer), so at most `IN_FLIGHT` × [`MAX_CHANGE_BYTES`] are held.
pub const IN_FLIGHT: usize = 32;

#[derive(Clone)]
struct Shim {
    id: Arc<str>,
    local: LocalComponents,
    runtime: Arc<WasmRuntime>,
}

impl Shim {
    /// The component's handle on `bucket` of the provider calling, when the capability
    /// resolver allows ([`crate::permission::Resolver::external_watch`]).
    fn bucket(&self, target: &LocalTarget, provider: Option<&str>, bucket: &str) -> anyhow::Result<KvBucket> {
        let provider = provider.ok_or_else(|| anyhow::anyhow!("a watcher call without its caller (`source-id`) is refused"))?;
        let ctx = target
            .component
            .imports
            .as_ref()
            .and_then(|c| Arc::clone(&c.data).downcast::<crate::capabilities::context::ImportContext>().ok())
            .ok_or_else(|| anyhow::anyhow!("component `{}` runs without a lattice", self.id))?;
        let link_name = ctx.resolver.external_watch(provider, &self.id).map_err(|e| {
            info!(component_id = %self.id, provider, "watcher call refused: {e}");
            anyhow::anyhow!("{e}")
        })?;
        Ok(KvBucket::Provider(ProviderBucket { provider: provider.to_string(), link_name, bucket: bucket.to_string() }))
    }

    async fn deliver(&self, cx: NatsContext, bucket: String, change: Change) -> anyhow::Result<()> {
        let target = self.local.get(&self.id).ok_or_else(|| anyhow::anyhow!("component `{}` no longer runs here", self.id))?;
        let provider = cx.headers.as_ref().and_then(|h| h.get(trellis_messages::invocation::SOURCE_ID_HEADER)).map(|v| v.as_str().to_string());
        let handle = self.bucket(&target, provider.as_deref(), &bucket)?;
        let caller = provider.unwrap_or_default();
        deliver_with(&self.runtime, &target, &self.id, &caller, handle, change).await.map_err(|f| anyhow::anyhow!("{}", f.message))
    }
}

impl Handler<NatsContext> for Shim {
    async fn on_set(&self, cx: NatsContext, bucket: String, key: String, value: bytes::Bytes) -> anyhow::Result<()> {
        self.deliver(cx, bucket, Change { key, value: Some(value) }).await
    }

    async fn on_delete(&self, cx: NatsContext, bucket: String, key: String) -> anyhow::Result<()> {
        self.deliver(cx, bucket, Change { key, value: None }).await
    }
}

/// Serves `wrpc:keyvalue/watcher` for component `id` (which exports `wasi:keyvalue/watcher`) on
/// its wRPC subjects; the task keeps the client and ends when aborted.
///
/// # Errors
/// When the subscription cannot be made.
pub async fn serve(nats: async_nats::Client, lattice: &str, id: &str, local: LocalComponents, runtime: Arc<WasmRuntime>) -> Result<tokio::task::JoinHandle<()>, WrpcError> {
    let serve_error = |e: anyhow::Error| WrpcError::Serve { id: id.to_string(), what: INSTANCE.to_string(), reason: format!("{e:#}") };
    let prefix = trellis_messages::subjects::wrpc_prefix(lattice, id);
    let client = Arc::new(wrpc_transport_nats::Client::new(nats, prefix.clone(), Some(prefix.into())).await.map_err(serve_error)?);
    let bounds = HeadBounds { max_bytes: MAX_CHANGE_BYTES, within: runtime.config().max_queue_wait, bodies: Vec::new() };
    let transport = HeadBounded::new(client.clone(), bounds);
    let shim = Shim { id: id.into(), local, runtime };
    let [(_, _, on_set), (_, _, on_delete)] = bindings::exports::wrpc::keyvalue::watcher::serve_interface(&transport, shim).await.map_err(serve_error)?;
    let id = id.to_string();
    Ok(tokio::spawn(async move {
        let _client = client;
        let mut invocations = futures::stream::select(on_set, on_delete);
        let in_flight = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
        while let Some(invocation) = invocations.next().await {
            let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
            match invocation {
                Ok(call) => {
                    let id = id.clone();
                    tokio::spawn(async move {
                        let _permit = permit;
                        if let Err(e) = call.await {
                            warn!(component_id = %id, error = %format!("{e:#}"), "a wRPC key-value watcher call failed");
                        }
                    });
                }
                Err(e) => debug!(component_id = %id, error = %format!("{e:#}"), "bad wRPC key-value watcher call"),
            }
        }
    }))
}
