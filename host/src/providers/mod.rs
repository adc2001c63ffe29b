//! Built-in capability providers.
//!
//! | reference | kind | how it works |
//! |---|---|---|
//! | `wasmcloud+builtin://http-server`, `trellis://http-server` | [`ProviderKind::HttpServer`] | an actor that follows its links (source = the provider) and serves each linked component's `wasi:http/incoming-handler` on the address in the link's source config |
//! | `wasmcloud+builtin://http-client`, `trellis://http-client` | [`ProviderKind::HttpClient`] | in-process: a component linked to it for `wasi:http/outgoing-handler` may send requests; others get `HTTP-request-denied` |
//! | `wasmcloud+builtin://keyvalue-nats`, `trellis://keyvalue` | [`ProviderKind::KeyValue`] | in-process: `wasi:keyvalue/store` + `atomics` on the JetStream KV bucket named by the link's target config (`bucket`) |
//!
//! | `wasmcloud+builtin://messaging-nats`, `trellis://messaging` | [`ProviderKind::Messaging`] | an actor that follows its links (`wasmcloud:messaging/handler`) and delivers the messages of each link's `subscriptions` to the component; components linked to it for `wasmcloud:messaging/consumer` publish and request |
//! | `wasmcloud+builtin://cron`, `trellis://cron` | [`ProviderKind::Schedule`] | an actor that follows its links (`trellis:schedule/handler`) and runs each linked component's `on-tick` on the link's schedule, each tick once across the lattice ([`crate::capabilities::schedule`]) |
//!
//! Any other reference names an external provider executable ([`external`]), started and
//! supervised as its own process.
//!
//! Providers that run in-process are still started, listed and stopped like any provider, so
//! tools see them; their work happens in the host functions guests call, without a NATS hop.

pub mod external;
pub mod follower;

use std::time::Duration;

use trellis_messages::invocation::{FaultKind, InvocationRequest, InvocationResponse};
use wasmtime::component::Val;

use crate::services::HostServices;
pub use crate::permission::kind::ProviderKind;

/// Why a provider's call of a component failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The call ran, here or on another host, and failed: the fault as that host gave it
    /// (`kind` is `None` from a host that names none).
    #[error("{message}")]
    Fault { kind: Option<FaultKind>, message: String },
    /// No host answered: none runs the component, it stopped mid-call, or the deadline passed.
    #[error("{source}")]
    Unanswered { source: async_nats::RequestError },
    /// The argument cannot be written as WAVE, or the request as JSON.
    #[error("cannot encode the call: {0}")]
    Encode(String),
    /// The reply is not an invocation response.
    #[error("the reply is not an invocation response: {0}")]
    BadReply(serde_json::Error),
}

/// Calls `function` of component `target` with `arg` for a provider (`caller`, as spies see
/// it): in-process when the component runs here, else over NATS to a host that runs it (with
/// `timeout`, else the host's longest call: execution time and queue wait, plus a second).
/// Answers the call's first result in WAVE (`ok`,
/// `err("…")`).
///
/// # Errors
/// The call could not be made, trapped, or no host runs the component.
pub(crate) async fn invoke_component(
    services: &HostServices,
    target: &str,
    function: &str,
    arg: Val,
    caller: &str,
    timeout: Option<Duration>,
) -> Result<String, CallError> {
    if let Some(local) = services.local.get(target) {
        let out = local.call(&services.runtime, target, function, vec![arg], caller).await.map_err(|f| CallError::Fault { kind: Some(f.kind), message: f.message })?;
        return Ok(out.first().map(|v| v.to_wave().unwrap_or_default()).unwrap_or_default());
    }
    let arg = arg.to_wave().map_err(|e| CallError::Encode(e.to_string()))?;
    invoke_wave(services, target, function, arg, timeout).await
}

/// Calls `function` of component `target` on whichever host runs it, over NATS, with `arg`
/// already in WAVE; answers as [`invoke_component`].
///
/// # Errors
/// As [`invoke_component`].
pub(crate) async fn invoke_wave(services: &HostServices, target: &str, function: &str, arg: String, timeout: Option<Duration>) -> Result<String, CallError> {
    let body = serde_json::to_vec(&InvocationRequest { function: function.into(), args: vec![arg] }).map_err(|e| CallError::Encode(e.to_string()))?;
    request_invocation(services, target, None, body.into(), timeout).await
}

/// Sends one invocation message (`headers` and `payload`, an [`InvocationRequest`] or a message
/// of another kind) to whichever host runs component `target`, and answers as
/// [`invoke_component`].
///
/// # Errors
/// As [`invoke_component`].
pub(crate) async fn request_invocation(
    services: &HostServices,
    target: &str,
    headers: Option<async_nats::HeaderMap>,
    payload: bytes::Bytes,
    timeout: Option<Duration>,
) -> Result<String, CallError> {
    // Never without a deadline: a host that died mid-call would hold the caller's slot forever.
    let config = services.runtime.config();
    let deadline = timeout.unwrap_or(config.max_execution_time + config.max_queue_wait + Duration::from_secs(1));
    let mut request = async_nats::Request::new().payload(payload).timeout(Some(deadline));
    if let Some(headers) = headers {
        request = request.headers(headers);
    }
    let reply = services.calls.send_request(services.subjects.invocation(target), request).await.map_err(|source| CallError::Unanswered { source })?;
    let response: InvocationResponse = serde_json::from_slice(&reply.payload).map_err(CallError::BadReply)?;
    match (response.results, response.error) {
        (Some(r), _) => Ok(r.into_iter().next().unwrap_or_default()),
        (None, e) => Err(CallError::Fault { kind: response.fault, message: e.unwrap_or_default() }),
    }
}
