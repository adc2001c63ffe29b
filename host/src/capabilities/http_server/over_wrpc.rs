//! The HTTP server's way to a component no Trellis host runs: over `wrpc:http/incoming-handler`
//! (a wasmCloud 1.x host serves its components over wRPC only), as the server provider through
//! the component's link, with the component remembered a moment once it answers there
//! (README, "Calls across host kinds").

use bytes::Bytes;

use crate::wasm::transport::elsewhere::Elsewhere;
use crate::wasm::transport::http::{text, Fallback, ResponseBody};
use crate::wasm::transport::wrpc::{Wrpc, WrpcError};

/// A forward's fallback to wRPC for component `id`.
pub struct OverWrpc<'a> {
    /// This host's wRPC clients.
    pub wrpc: &'a Wrpc,
    /// The caller, as the callee sees it: the HTTP server provider.
    pub source: &'a str,
    /// The link the request goes through.
    pub link_name: &'a str,
    /// The component.
    pub id: &'a str,
    /// The whole response's deadline.
    pub timeout: std::time::Duration,
}

impl Fallback for OverWrpc<'_> {
    fn memo(&self) -> &Elsewhere {
        self.wrpc.elsewhere()
    }

    async fn call(&self, parts: &hyper::http::request::Parts, body: Bytes) -> Option<hyper::Response<ResponseBody>> {
        let id = self.id;
        match crate::wasm::transport::wrpc_http_call::call(self.wrpc, self.source, self.link_name, id, self.timeout, parts, body).await {
            Err(WrpcError::NotServing { .. }) => None,
            answered => Some(answered.unwrap_or_else(|e| text(502, format!("forwarding to component `{id}` over wRPC failed: {e}")))),
        }
    }
}
