//! Delivery over wRPC to a component no Trellis host runs: a wasmCloud 1.x host serves its
//! components' `wasmcloud:messaging/handler@0.2.0` over wRPC only (it translates to 0.3's
//! handler for components that export that), so the built-in messaging provider calls
//! `handle-message` there as wasmCloud's own messaging provider does.

use std::time::Duration;

use crate::wasm::transport::wrpc::{Wrpc, WrpcError};

mod bindings {
    wit_bindgen_wrpc::generate!({
        inline: "package trellis:msg-deliver; world deliver { import wasmcloud:messaging/handler@0.2.0; }",
        path: "../wit/messaging/deps/messaging",
        world: "trellis:msg-deliver/deliver",
        generate_all,
    });
}

use bindings::wasmcloud::messaging::handler::handle_message;
use bindings::wasmcloud::messaging::types::BrokerMessage;

/// Calls `handle-message` of component `target` over wRPC with `message` (subject, body, reply
/// subject), as provider `provider` through link `link_name`; answers the handler's own result.
///
/// # Errors
/// [`WrpcError::NotServing`] when nobody serves it; otherwise why the call failed.
pub async fn deliver(
    wrpc: &Wrpc,
    provider: &str,
    link_name: &str,
    target: &str,
    (subject, body, reply_to): (&str, &bytes::Bytes, Option<&str>),
    timeout: Duration,
) -> Result<Result<(), String>, WrpcError> {
    let message = BrokerMessage { subject: subject.to_string(), body: body.clone(), reply_to: reply_to.map(str::to_string) };
    wrpc.invoke(provider, link_name, target, timeout, |client, headers| async move { handle_message(&*client, headers, &message).await }).await
}
