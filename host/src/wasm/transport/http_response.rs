//! The responses the host makes itself: plain text, and the status of a failed call.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use trellis_messages::invocation::FaultKind;

use crate::wasm::invoke::Fault;
use crate::wasm::transport::http_body::BodyError;

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

