//! `wrpc:http/incoming-handler`, the way a wasmCloud HTTP server provider hands a request to a
//! component: a component that exports `wasi:http/incoming-handler` is served on its wRPC
//! subjects (`{lattice}.{id}.wrpc.0.0.1.wrpc:http/incoming-handler@0.1.0.handle`), and each
//! request is run by [`serve_local`] — the same instance slots, deadline and limits as a request
//! to the built-in HTTP server. Bodies stream both ways; the request body is cut off past
//! `--max-http-body`.
//!
//! The other way is [`super::wrpc_http_call`].

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use http_body_util::BodyExt as _;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::wasm::transport::http::{serve_local, text, BodyError, ResponseBody};
use crate::wasm::transport::http_body::BodyBounds;
use crate::wasm::transport::wrpc_head::{HeadBounded, HeadBounds};
use crate::wasm::transport::local::LocalComponents;
use crate::wasm::WasmRuntime;

pub(super) mod bindings {
    wit_bindgen_wrpc::generate!({
        inline: "package trellis:ingress; world ingress { import wrpc:http/incoming-handler@0.1.0; export wrpc:http/incoming-handler@0.1.0; }",
        path: "../wit/wrpc-http",
        world: "trellis:ingress/ingress",
        generate_all,
    });
}

use bindings::exports::wrpc::http::incoming_handler::Handler;
use bindings::wasi::http::types::{ErrorCode, Method, Scheme};
use bindings::wrpc::http::types::{Fields, Request, Response};

/// The instance and function names wasmCloud's HTTP server provider calls.
pub const INSTANCE: &str = "wrpc:http/incoming-handler@0.1.0";

/// Bytes a request may send outside its body: method, path, authority and headers before it,
/// trailers after. hyper, in front of wasmCloud's HTTP server provider, reads at most about
/// 400 KiB of head.
pub const MAX_HEAD_BYTES: usize = 1 << 20;

/// Runs the requests for component `id` on this host.
#[derive(Clone)]
struct Ingress {
    id: Arc<str>,
    local: LocalComponents,
    runtime: Arc<WasmRuntime>,
    body: BodyBounds,
}

impl<Ctx: Send> Handler<Ctx> for Ingress {
    async fn handle(&self, _cx: Ctx, request: Request) -> anyhow::Result<Result<Response, ErrorCode>> {
        let request = match to_http(request, self.body) {
            Ok(r) => r,
            Err((code, reason)) => {
                debug!(component_id = %self.id, %reason, "a wRPC HTTP request that cannot be read");
                return Ok(Err(code));
            }
        };
        let response = match self.local.get(&self.id) {
            Some(target) => serve_local(self.runtime.clone(), &self.id, target, request).await,
            None => text(503, format!("component `{}` no longer runs here", self.id)),
        };
        Ok(Ok(from_http(response)))
    }
}

/// Serves `wrpc:http/incoming-handler` for component `id` on `client` (whose prefix is the
/// component's); the returned task keeps the client and ends when aborted.
///
/// # Errors
/// When the subscription cannot be made.
pub async fn serve(
    client: Arc<wrpc_transport_nats::Client>,
    id: &str,
    local: LocalComponents,
    runtime: Arc<WasmRuntime>,
    body: BodyBounds,
) -> Result<tokio::task::JoinHandle<()>, super::wrpc_error::WrpcError> {
    // The request's head (and trailers) held to MAX_HEAD_BYTES, and the head to arrive within
    // the queue wait; its body (`request.body`, path [0, 0]) is held by `body` once it runs.
    let head = HeadBounds { max_bytes: MAX_HEAD_BYTES, within: runtime.config().max_queue_wait, bodies: vec![vec![0, 0]] };
    let ingress = Ingress { id: id.into(), local, runtime, body };
    let transport = HeadBounded::new(client.clone(), head);
    let [(_, _, invocations)] = bindings::exports::wrpc::http::incoming_handler::serve_interface(&transport, ingress)
        .await
        .map_err(|e| super::wrpc_error::WrpcError::Serve { id: id.to_string(), what: INSTANCE.to_string(), reason: format!("{e:#}") })?;
    let id = id.to_string();
    Ok(tokio::spawn(async move {
        let _client = client;
        let mut invocations = std::pin::pin!(invocations);
        while let Some(invocation) = invocations.next().await {
            match invocation {
                Ok(call) => {
                    let id = id.clone();
                    tokio::spawn(async move {
                        if let Err(e) = call.await {
                            warn!(component_id = %id, error = %format!("{e:#}"), "a wRPC HTTP request failed");
                        }
                    });
                }
                Err(e) => debug!(component_id = %id, error = %format!("{e:#}"), "bad wRPC HTTP invocation"),
            }
        }
    }))
}

/// The wRPC request as an HTTP request; its body (then trailers) arrives through a channel as
/// the caller streams it, held to `bounds` (its size, and its pace while the guest waits).
fn to_http(
    request: Request,
    bounds: BodyBounds,
) -> Result<hyper::Request<impl hyper::body::Body<Data = Bytes, Error = BodyError> + Send + Sync + 'static>, (ErrorCode, String)> {
    let Request { body, trailers, method, path_with_query, scheme, authority, headers } = request;
    // wasi:http needs an authority; a request with neither one nor a `host` header (HTTP/1.0,
    // or a provider that sends none) gets `localhost`.
    let has_host = headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host"));
    let authority = authority.filter(|a| !a.is_empty()).or_else(|| (!has_host).then(|| "localhost".to_string()));
    let mut uri = hyper::Uri::builder().path_and_query(path_with_query.as_deref().unwrap_or("/"));
    if let Some(authority) = authority {
        let scheme = match scheme {
            Some(Scheme::Https) => "https".to_string(),
            Some(Scheme::Other(s)) => s,
            Some(Scheme::Http) | None => "http".to_string(),
        };
        uri = uri.authority(authority).scheme(scheme.as_str());
    }
    let method = method_name(&method).map_err(|e| (ErrorCode::HttpRequestMethodInvalid, e.to_string()))?;
    let uri = uri.build().map_err(|e| (ErrorCode::HttpRequestUriInvalid, format!("bad URI: {e}")))?;
    let headers = to_header_map(headers).map_err(|e| (ErrorCode::HttpProtocolError, e.to_string()))?;
    let mut builder = hyper::Request::builder().method(method).uri(uri);
    if let Some(map) = builder.headers_mut() {
        *map = headers;
    }
    let (tx, rx) = mpsc::channel::<Result<hyper::body::Frame<Bytes>, BodyError>>(4);
    tokio::spawn(async move {
        let mut body = body;
        while let Some(chunk) = body.next().await {
            if tx.send(Ok(hyper::body::Frame::data(chunk))).await.is_err() {
                return;
            }
        }
        if let Some(fields) = trailers.await {
            let frame = to_header_map(fields).map(hyper::body::Frame::trailers).map_err(BodyError::from);
            let _ = tx.send(frame).await;
        }
    });
    let body = http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    builder.body(bounds.apply(body)).map_err(|e| (ErrorCode::HttpProtocolError, format!("bad request: {e}")))
}

/// The HTTP response as a wRPC response whose body (then trailers) streams as the component
/// writes it. A body that fails part way ends there (wRPC cannot carry the error).
fn from_http(response: hyper::Response<ResponseBody>) -> Response {
    let (parts, mut body) = response.into_parts();
    let (chunks_tx, chunks_rx) = mpsc::channel::<Bytes>(4);
    let (trailers_tx, trailers_rx) = oneshot::channel::<Option<Fields>>();
    tokio::spawn(async move {
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => {
                        if chunks_tx.send(data).await.is_err() {
                            return;
                        }
                    }
                    Err(frame) => trailers = frame.into_trailers().ok().map(|t| to_fields(&t)),
                },
                Err(e) => {
                    debug!(error = %e, "a response body sent over wRPC broke off");
                    break;
                }
            }
        }
        drop(chunks_tx);
        let _ = trailers_tx.send(trailers);
    });
    let body: Pin<Box<dyn Stream<Item = Bytes> + Send>> = Box::pin(tokio_stream::wrappers::ReceiverStream::new(chunks_rx));
    Response {
        body,
        trailers: Box::pin(async move { trailers_rx.await.ok().flatten() }),
        status: parts.status.as_u16(),
        headers: to_fields(&parts.headers),
    }
}

/// A method or header of a wRPC request (or response) that HTTP does not allow.
#[derive(Debug, thiserror::Error)]
pub(super) enum HeadError {
    #[error("bad method `{method}`: {source}")]
    Method { method: String, source: hyper::http::method::InvalidMethod },
    #[error("bad header name `{name}`: {source}")]
    Name { name: String, source: hyper::header::InvalidHeaderName },
    #[error("bad value of header `{name}`: {source}")]
    Value { name: String, source: hyper::header::InvalidHeaderValue },
}

fn method_name(method: &Method) -> Result<hyper::Method, HeadError> {
    Ok(match method {
        Method::Get => hyper::Method::GET,
        Method::Head => hyper::Method::HEAD,
        Method::Post => hyper::Method::POST,
        Method::Put => hyper::Method::PUT,
        Method::Delete => hyper::Method::DELETE,
        Method::Connect => hyper::Method::CONNECT,
        Method::Options => hyper::Method::OPTIONS,
        Method::Trace => hyper::Method::TRACE,
        Method::Patch => hyper::Method::PATCH,
        Method::Other(m) => hyper::Method::from_bytes(m.as_bytes()).map_err(|source| HeadError::Method { method: m.clone(), source })?,
    })
}

pub(super) fn to_header_map(fields: Fields) -> Result<hyper::HeaderMap, HeadError> {
    let mut map = hyper::HeaderMap::new();
    for (name, values) in fields {
        let name = hyper::header::HeaderName::from_bytes(name.as_bytes()).map_err(|source| HeadError::Name { name: name.clone(), source })?;
        for value in values {
            let value = hyper::header::HeaderValue::from_maybe_shared(value)
                .map_err(|source| HeadError::Value { name: name.to_string(), source })?;
            map.append(name.clone(), value);
        }
    }
    Ok(map)
}

pub(super) fn to_fields(map: &hyper::HeaderMap) -> Fields {
    let mut fields: Fields = Vec::with_capacity(map.keys_len());
    for name in map.keys() {
        let values = map.get_all(name).iter().map(|v| Bytes::copy_from_slice(v.as_bytes())).collect();
        fields.push((name.as_str().to_string(), values));
    }
    fields
}

