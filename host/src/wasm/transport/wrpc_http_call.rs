//! `wrpc:http/incoming-handler` as a caller: [`call`] hands a request the built-in HTTP server
//! took to a component that only a wasmCloud 1.x host runs (it serves its components over wRPC
//! only), as wasmCloud's HTTP server provider does; the bindings and header conversions are
//! [`super::wrpc_http`]'s.

use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use http_body_util::BodyExt as _;
use tokio::sync::oneshot;
use tracing::debug;

use super::http::{text, BodyError, ResponseBody};
use super::wrpc::{Wrpc, WrpcError};
use super::wrpc_head::{HeadBounded, HeadBounds};
use super::wrpc_http::bindings::wasi::http::types::{Method, Scheme};
use super::wrpc_http::bindings::wrpc::http::types::{Request, Response};
use super::wrpc_http::{bindings, to_fields, to_header_map, MAX_HEAD_BYTES};

/// Hands a request to component `id` over `wrpc:http/incoming-handler`, as `source` through link
/// `link_name`: its head from `parts`, its body already read (as for a forward to another
/// host, so at most the NATS max payload). The response's head (and trailers) is held to
/// [`MAX_HEAD_BYTES`], and the whole response, body included, must arrive within `timeout`;
/// past it the body ends in an error. Nothing of the call outlives that deadline.
///
/// # Errors
/// [`WrpcError::NotServing`] when nobody serves it;
/// otherwise why the call failed.
pub async fn call(
    wrpc: &Wrpc,
    source: &str,
    link_name: &str,
    id: &str,
    timeout: std::time::Duration,
    parts: &hyper::http::request::Parts,
    body: Bytes,
) -> Result<hyper::Response<ResponseBody>, WrpcError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let request = to_wrpc(parts, body);
    let owned_id = id.to_string();
    let answer = wrpc
        .invoke(source, link_name, id, timeout, |client, headers| async move {
            // The response's head within the bounds a served request's head is held to; its
            // body (path [0, 0]: the result's `response.body`) on the deadline below.
            let bounds = HeadBounds { max_bytes: MAX_HEAD_BYTES, within: timeout, bodies: vec![vec![0, 0]] };
            let transport = HeadBounded::new(client, bounds);
            // The call's I/O (the request body going out) borrows the transport: a task owns
            // both, runs the I/O on after the response head is back, and ends at the deadline
            // or as soon as nobody waits for the head.
            let (mut head_tx, head_rx) = oneshot::channel();
            tokio::spawn(async move {
                let called = tokio::select! {
                    () = head_tx.closed() => return,
                    called = tokio::time::timeout_at(deadline, bindings::wrpc::http::incoming_handler::handle(&transport, headers, request)) => called,
                };
                match called {
                    Ok(Ok((answer, io))) => {
                        let _ = head_tx.send(Ok(answer));
                        if let Some(io) = io {
                            match tokio::time::timeout_at(deadline, io).await {
                                Ok(Ok(())) => {}
                                Ok(Err(e)) => debug!(component_id = %owned_id, error = %format!("{e:#}"), "a request sent over wRPC broke off"),
                                Err(_) => debug!(component_id = %owned_id, "a request sent over wRPC was not taken by its deadline"),
                            }
                        }
                    }
                    Ok(Err(e)) => {
                        let _ = head_tx.send(Err(e));
                    }
                    Err(_) => {
                        let _ = head_tx.send(Err(anyhow::anyhow!("no answer within {timeout:?}")));
                    }
                }
            });
            head_rx.await.map_err(|_| anyhow::anyhow!("the call ended without an answer"))?
        })
        .await?;
    Ok(match answer {
        Ok(response) => to_hyper(response, deadline, timeout),
        Err(code) => {
            let mut code = format!("{code:?}");
            if code.len() > 256 {
                let mut end = 256;
                while !code.is_char_boundary(end) {
                    end -= 1;
                }
                code.truncate(end);
                code.push('…');
            }
            text(502, format!("component `{id}` answered with an error: {code}"))
        }
    })
}

/// An HTTP request's head and body as a wRPC request.
fn to_wrpc(parts: &hyper::http::request::Parts, body: Bytes) -> Request {
    let method = match parts.method.as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        other => Method::Other(other.to_string()),
    };
    let authority = parts.uri.authority().map(|a| a.to_string()).or_else(|| {
        parts.headers.get(hyper::header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string)
    });
    // A server's request names neither; the receiving side builds a URI from scheme and
    // authority, and a URI with an authority needs a scheme (wasmCloud's HTTP server provider
    // sends `http` too).
    let scheme = match parts.uri.scheme_str() {
        Some("http") => Some(Scheme::Http),
        Some("https") => Some(Scheme::Https),
        Some(other) => Some(Scheme::Other(other.to_string())),
        None => authority.as_ref().map(|_| Scheme::Http),
    };
    let body: Pin<Box<dyn Stream<Item = Bytes> + Send>> = Box::pin(futures::stream::iter((!body.is_empty()).then_some(body)));
    Request {
        body,
        trailers: Box::pin(async { None }),
        method,
        path_with_query: Some(parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string()),
        scheme,
        authority,
        headers: to_fields(&parts.headers),
    }
}

/// A wRPC response as an HTTP response whose body (then trailers) streams as it arrives, until
/// `deadline` (then it ends in an error). A header HTTP does not allow is left out; a status
/// outside 200–599 is a 502.
fn to_hyper(response: Response, deadline: tokio::time::Instant, timeout: std::time::Duration) -> hyper::Response<ResponseBody> {
    let Response { body, trailers, status, headers } = response;
    let late = move || -> BodyError { format!("the response did not end within {timeout:?}").into() };
    let data = futures::stream::unfold(Some(body), move |body| async move {
        let mut body = body?;
        match tokio::time::timeout_at(deadline, body.next()).await {
            Ok(Some(chunk)) => Some((Ok(hyper::body::Frame::data(chunk)), Some(body))),
            Ok(None) => None,
            Err(_) => Some((Err(late()), None)),
        }
    });
    let trailers = futures::stream::once(async move {
        match tokio::time::timeout_at(deadline, trailers).await {
            Ok(fields) => fields.and_then(|f| to_header_map(f).ok()).map(|map| Ok(hyper::body::Frame::trailers(map))),
            Err(_) => Some(Err(late())),
        }
    })
    .filter_map(|frame| async move { frame });
    // The trailers are waited for only once the body has ended well.
    let mut failed = false;
    let frames = data
        .chain(trailers)
        .take_while(move |frame| {
            let go = !failed;
            failed |= frame.is_err();
            async move { go }
        });
    let body = http_body_util::StreamBody::new(frames).boxed_unsync();
    let mut out = hyper::Response::new(body);
    *out.status_mut() = match hyper::StatusCode::from_u16(status) {
        Ok(s) if (200..600).contains(&status) => s,
        _ => hyper::StatusCode::BAD_GATEWAY,
    };
    for (name, values) in headers {
        let Ok(name) = hyper::header::HeaderName::from_bytes(name.as_bytes()) else { continue };
        for value in values {
            if let Ok(value) = hyper::header::HeaderValue::from_maybe_shared(value) {
                out.headers_mut().append(name.clone(), value);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: Pin<Box<dyn Stream<Item = Bytes> + Send>>) -> Response {
        Response { body, trailers: Box::pin(async { None }), status, headers: vec![("x-a".into(), vec![Bytes::from_static(b"1")])] }
    }

    #[tokio::test]
    async fn a_response_streams_back_with_its_status_and_headers() {
        let body: Pin<Box<dyn Stream<Item = Bytes> + Send>> = Box::pin(futures::stream::iter([Bytes::from_static(b"he"), Bytes::from_static(b"llo")]));
        let timeout = std::time::Duration::from_secs(5);
        let out = to_hyper(response(201, body), tokio::time::Instant::now() + timeout, timeout);
        assert_eq!(out.status(), 201);
        assert_eq!(out.headers()["x-a"], "1");
        assert_eq!(&out.into_body().collect().await.expect("body").to_bytes()[..], b"hello");
    }

    #[tokio::test]
    async fn a_status_http_does_not_allow_is_a_bad_gateway() {
        for status in [0, 99, 100, 101, 600, 999] {
            let out = to_hyper(response(status, Box::pin(futures::stream::empty())), tokio::time::Instant::now(), std::time::Duration::ZERO);
            assert_eq!(out.status(), 502, "{status}");
        }
    }

    #[tokio::test]
    async fn a_body_that_stalls_ends_in_an_error_at_the_deadline() {
        let body: Pin<Box<dyn Stream<Item = Bytes> + Send>> = Box::pin(futures::stream::iter([Bytes::from_static(b"part")]).chain(futures::stream::pending()));
        let timeout = std::time::Duration::from_millis(100);
        let began = std::time::Instant::now();
        let out = to_hyper(response(200, body), tokio::time::Instant::now() + timeout, timeout);
        let err = out.into_body().collect().await.expect_err("cut off");
        assert!(err.to_string().contains("did not end within"), "{err}");
        assert!(began.elapsed() < std::time::Duration::from_secs(2));
    }
}
