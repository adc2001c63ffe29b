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

use crate::wasm::invoke::{classify, new_store, within_deadline};
use crate::wasm::transport::elsewhere::{Elsewhere, Reached};
use crate::wasm::transport::local::LocalTarget;
use crate::wasm::WasmRuntime;

pub use crate::wasm::transport::http_body::{limit_body, BodyError};
use crate::wasm::transport::http_body::{prefetch, status_of, PREFETCH_BYTES};

pub use crate::wasm::transport::http_response::{fault_response, text, ResponseBody};

/// Serves `request` with component `id` running here.
pub async fn serve_local<B>(runtime: Arc<WasmRuntime>, id: &str, target: LocalTarget, request: hyper::Request<B>) -> hyper::Response<ResponseBody>
where
    B: hyper::body::Body<Data = Bytes, Error = BodyError> + Send + Sync + 'static,
{
    let began = std::time::Instant::now();
    let metrics = target.metrics.clone();
    let spy = target.spy.clone();
    let bytes = request.body().size_hint().exact().and_then(|n| usize::try_from(n).ok());
    let (response, fault) = serve_local_inner(runtime.clone(), id, target, request).await;
    runtime.metrics().http_response(id, response.status().as_u16());
    metrics.call_ended(HANDLE, began.elapsed(), fault.map(FaultKind::as_str));
    if spy.armed() {
        let outcome = fault.map_or_else(|| response.status().as_u16().to_string(), |f| f.as_str().to_string());
        spy.record(trellis_messages::spy::Direction::In, HANDLE, "http", bytes, began.elapsed(), &outcome);
    }
    response
}

/// The export an HTTP request calls.
const HANDLE: &str = "wasi:http/incoming-handler.handle";

/// [`serve_local`]'s response, and the fault when the call failed.
async fn serve_local_inner<B>(
    runtime: Arc<WasmRuntime>,
    id: &str,
    target: LocalTarget,
    request: hyper::Request<B>,
) -> (hyper::Response<ResponseBody>, Option<FaultKind>)
where
    B: hyper::body::Body<Data = Bytes, Error = BodyError> + Send + Sync + 'static,
{
    if !target.component.serves_http() {
        return (text(500, format!("component `{id}` does not export wasi:http/incoming-handler")), Some(FaultKind::NoSuchFunction));
    }
    if let Err(fault) = target.admit(id, crate::trust::policy::HTTP_HANDLE).await {
        return (text(403, fault.message), Some(fault.kind));
    }
    // A body that fits the prefetch is read before the request takes a slot: a client sending
    // it slowly keeps no instance from other requests.
    let (parts, body) = request.into_parts();
    let request = match prefetch(body, PREFETCH_BYTES).await {
        Ok(body) => hyper::Request::from_parts(parts, body),
        Err(e) => return (text(status_of(&e), format!("cannot read the request body: {e}")), Some(FaultKind::BadArguments)),
    };
    // Reused instances (a WASI 0.3 handler, or a 0.2 one declared reusable): the pool admits.
    if let Some(pool) = &target.http_pool {
        return pool.serve(request, &target.metrics).await;
    }
    let Some(proxy) = target.component.proxy.clone() else {
        return (text(500, format!("component `{id}` does not export wasi:http/incoming-handler")), Some(FaultKind::NoSuchFunction));
    };
    let permit = match target.acquire(&runtime, id).await {
        Ok(p) => p,
        Err(fault) => return (fault_response(&fault), Some(fault.kind)),
    };
    let mut store = new_store(&runtime, &target.component);
    let (tx, rx) = oneshot::channel();
    let request = request.map(|b| b.map_err(|e| wasmtime_wasi_http::p2::bindings::http::types::ErrorCode::InternalError(Some(e.to_string()))));
    let (req, out) = {
        let mut http = store.data_mut().http();
        match http.new_incoming_request(Scheme::Http, request) {
            Ok(req) => match http.new_response_outparam(tx) {
                Ok(out) => (req, out),
                Err(e) => return (text(500, format!("cannot prepare the response: {e}")), Some(FaultKind::Host)),
            },
            Err(e) => return (text(400, format!("bad request: {e}")), Some(FaultKind::BadArguments)),
        }
    };
    let component_id = id.to_string();
    let (deadline, limit) = (store.data().deadline, runtime.config().max_execution_time);
    let active = target.metrics.active();
    let task = runtime.guests().spawn(async move {
        let _permit = permit;
        let _active = active;
        let call = async {
            let result = async {
                let proxy = proxy.instantiate_async(&mut store).await?;
                proxy.wasi_http_incoming_handler().call_handle(&mut store, req, out).await
            }
            .await;
            result.map_err(|e| classify(&store, &component_id, HANDLE, &e))
        };
        within_deadline(deadline, limit, &component_id, HANDLE, call).await
    });
    match rx.await {
        Ok(Ok(response)) => (response.map(|body| body.map_err(|e| Box::new(e) as BodyError).boxed_unsync()), None),
        Ok(Err(code)) => (text(500, format!("component `{id}` failed the request: {code:?}")), None),
        Err(_) => match task.await {
            Ok(Err(fault)) => (fault_response(&fault), Some(fault.kind)),
            Ok(Ok(())) => (text(500, format!("component `{id}` returned without setting a response")), None),
            Err(e) => (text(500, format!("component `{id}` task failed: {e}")), Some(FaultKind::Host)),
        },
    }
}

/// Headers that belong to the NATS envelope, not to the HTTP message.
fn envelope_header(name: &str) -> bool {
    name.starts_with("Trellis-") || name.eq_ignore_ascii_case("content-length")
}

/// Serves an HTTP request that arrived over NATS (method, URI and headers as NATS headers, the
/// body as payload) and returns the reply's headers and body (a response body over `max_body`,
/// the NATS max payload, becomes a 500).
pub async fn serve_forwarded(
    runtime: Arc<WasmRuntime>,
    id: &str,
    target: LocalTarget,
    headers: Option<async_nats::HeaderMap>,
    body: Bytes,
    max_body: usize,
) -> (async_nats::HeaderMap, Bytes) {
    use trellis_messages::invocation::{HTTP_METHOD_HEADER, HTTP_URI_HEADER};
    let headers = headers.unwrap_or_default();
    let method = headers.get(HTTP_METHOD_HEADER).map_or("GET", |v| v.as_str()).to_string();
    let uri = headers.get(HTTP_URI_HEADER).map_or("/", |v| v.as_str()).to_string();
    let mut builder = hyper::Request::builder().method(method.as_str()).uri(uri.as_str());
    for (name, values) in headers.iter() {
        let name: &str = name.as_ref();
        if envelope_header(name) {
            continue;
        }
        for v in values {
            builder = builder.header(name, v.as_str());
        }
    }
    let response = match builder.body(Full::new(body).map_err(|never| match never {})) {
        Ok(request) => serve_local(runtime, id, target, request).await,
        Err(e) => text(400, format!("bad forwarded request: {e}")),
    };
    encode_response(response, max_body).await
}

async fn encode_response(response: hyper::Response<ResponseBody>, max: usize) -> (async_nats::HeaderMap, Bytes) {
    use trellis_messages::invocation::HTTP_STATUS_HEADER;
    let (parts, body) = response.into_parts();
    let (status, body) = match collect_at_most(body, max).await {
        Ok(bytes) => (parts.status.as_u16(), bytes),
        Err(e) => (500, Bytes::from(format!("the component's response body failed: {e}\n"))),
    };
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(HTTP_STATUS_HEADER, status.to_string().as_str());
    for (name, value) in &parts.headers {
        if let Ok(v) = value.to_str() {
            headers.append(name.as_str(), v);
        }
    }
    (headers, body)
}

/// The whole of `body`, or an error once it passes `max` bytes.
async fn collect_at_most(mut body: ResponseBody, max: usize) -> Result<Bytes, BodyError> {
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if out.len() + data.len() > max {
                return Err(format!("the response body is larger than {max} bytes (the NATS max payload)").into());
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

/// Where a forwarded request goes when no Trellis host runs the component (a wasmCloud 1.x
/// host may, serving it over wRPC only): the caller's choice, so this module names no other
/// transport.
pub trait Fallback: Sync {
    /// Components found a moment ago served there: asked first ([`Elsewhere::reach`]).
    fn memo(&self) -> &Elsewhere;

    /// Sends the request there; `None` when nobody serves it there either.
    fn call<'a>(
        &'a self,
        parts: &'a hyper::http::request::Parts,
        body: Bytes,
    ) -> impl std::future::Future<Output = Option<hyper::Response<ResponseBody>>> + Send + 'a;
}

/// Forwards `request` to component `id` on whichever host runs it, over NATS: Trellis's own
/// request/reply, else (no Trellis host runs it) through `fallback`.
pub async fn forward<B>(
    nats: &async_nats::Client,
    subject: String,
    id: &str,
    timeout: std::time::Duration,
    request: hyper::Request<B>,
    fallback: &impl Fallback,
) -> hyper::Response<ResponseBody>
where
    B: hyper::body::Body<Data = Bytes, Error = BodyError>,
{
    use trellis_messages::invocation::{HTTP_KIND, KIND_HEADER, HTTP_METHOD_HEADER, HTTP_STATUS_HEADER, HTTP_URI_HEADER};
    let (parts, body) = request.into_parts();
    let max = nats.server_info().max_payload;
    let declared = parts.headers.get(hyper::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return text(413, format!("a request forwarded to another host carries at most {max} bytes (the NATS max payload)"));
    }
    let body = match limit_body(body, max as u64 + 1).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if status_of(&e) == 413 => {
            return text(413, format!("a request forwarded to another host carries at most {max} bytes (the NATS max payload, or --max-http-body if smaller): {e}"))
        }
        Err(e) => return text(status_of(&e), format!("cannot read the request body: {e}")),
    };
    if body.len() > max {
        return text(413, format!("a request forwarded to another host carries at most {max} bytes (the NATS max payload)"));
    }
    let request_reply = async {
        let mut headers = async_nats::HeaderMap::new();
        crate::telemetry::inject_nats(&tracing::Span::current(), &mut headers);
        headers.insert(KIND_HEADER, HTTP_KIND);
        headers.insert(HTTP_METHOD_HEADER, parts.method.as_str());
        headers.insert(HTTP_URI_HEADER, parts.uri.path_and_query().map_or("/", |p| p.as_str()));
        for (name, value) in &parts.headers {
            if let Ok(v) = value.to_str() {
                headers.append(name.as_str(), v);
            }
        }
        match tokio::time::timeout(timeout, nats.send_request(subject, async_nats::Request::new().headers(headers).payload(body.clone()).timeout(Some(timeout)))).await {
            Err(_) => Ok(Err(text(504, format!("component `{id}` did not answer within {timeout:?}")))),
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => Err(()),
            Ok(Err(e)) => Ok(Err(text(502, format!("forwarding to component `{id}` failed: {e}")))),
            Ok(Ok(msg)) => Ok(Ok(msg)),
        }
    };
    let reply = match fallback.memo().reach(id, request_reply, || fallback.call(&parts, body.clone())).await {
        Reached::Trellis(Ok(reply)) => reply,
        Reached::Trellis(Err(response)) | Reached::Wrpc(response) => return response,
        Reached::Nowhere(()) => return text(503, format!("component `{id}` is not running on any host")),
    };
    let reply_headers = reply.headers.unwrap_or_default();
    let status = reply_headers.get(HTTP_STATUS_HEADER).and_then(|s| s.as_str().parse().ok()).unwrap_or(502);
    let mut response = hyper::Response::new(Full::new(reply.payload).map_err(|never| match never {}).boxed_unsync());
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    for (name, values) in reply_headers.iter() {
        let name: &str = name.as_ref();
        if envelope_header(name) {
            continue;
        }
        for v in values {
            if let (Ok(n), Ok(v)) = (hyper::header::HeaderName::from_bytes(name.as_bytes()), hyper::header::HeaderValue::from_str(v.as_str())) {
                response.headers_mut().append(n, v);
            }
        }
    }
    response
}
