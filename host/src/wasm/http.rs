//! Serving an HTTP request with a component that exports `wasi:http/incoming-handler`, in
//! this process: a fresh store and instance per request, the component's `max_instances`
//! slots, deadline and memory limit, and every failure turned into a proper status.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::sync::oneshot;
use trellis_messages::invocation::FaultKind;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::WasiHttpView;

use crate::wasm::invoke::{classify, new_store, Fault};
use crate::wasm::local::LocalTarget;
use crate::wasm::WasmRuntime;

/// Error type of response bodies.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every response the HTTP server sends.
pub type ResponseBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BodyError>;

/// A plain-text response with `status`.
pub fn text(status: u16, message: impl Into<String>) -> hyper::Response<ResponseBody> {
    let mut body = message.into();
    body.push('\n');
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed_unsync());
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// The response for a failed request: 504 past the deadline, 503 when busy, 500 otherwise.
pub fn fault_response(fault: &Fault) -> hyper::Response<ResponseBody> {
    let status = match fault.kind {
        FaultKind::Deadline => 504,
        FaultKind::Busy => 503,
        _ => 500,
    };
    text(status, &fault.message)
}

/// Serves `request` with component `id` running here.
pub async fn serve_local<B>(runtime: Arc<WasmRuntime>, id: &str, target: LocalTarget, request: hyper::Request<B>) -> hyper::Response<ResponseBody>
where
    B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let Some(proxy) = target.component.proxy.clone() else {
        return text(500, format!("component `{id}` does not export wasi:http/incoming-handler"));
    };
    let permit = match target.acquire(&runtime, id).await {
        Ok(p) => p,
        Err(fault) => return fault_response(&fault),
    };
    let mut store = new_store(&runtime, id, &target.component);
    let (tx, rx) = oneshot::channel();
    let request = request.map(|b| b.map_err(|e| wasmtime_wasi_http::p2::bindings::http::types::ErrorCode::InternalError(Some(e.to_string()))));
    let (req, out) = {
        let mut http = store.data_mut().http();
        match http.new_incoming_request(Scheme::Http, request) {
            Ok(req) => match http.new_response_outparam(tx) {
                Ok(out) => (req, out),
                Err(e) => return text(500, format!("cannot prepare the response: {e}")),
            },
            Err(e) => return text(400, format!("bad request: {e}")),
        }
    };
    let component_id = id.to_string();
    let task = runtime.guests().spawn(async move {
        let _permit = permit;
        let result = async {
            let proxy = proxy.instantiate_async(&mut store).await?;
            proxy.wasi_http_incoming_handler().call_handle(&mut store, req, out).await
        }
        .await;
        result.map_err(|e| classify(&store, &component_id, "wasi:http/incoming-handler.handle", &e))
    });
    match rx.await {
        Ok(Ok(response)) => response.map(|body| body.map_err(|e| Box::new(e) as BodyError).boxed_unsync()),
        Ok(Err(code)) => text(500, format!("component `{id}` failed the request: {code:?}")),
        Err(_) => match task.await {
            Ok(Err(fault)) => fault_response(&fault),
            Ok(Ok(())) => text(500, format!("component `{id}` returned without setting a response")),
            Err(e) => text(500, format!("component `{id}` task failed: {e}")),
        },
    }
}
