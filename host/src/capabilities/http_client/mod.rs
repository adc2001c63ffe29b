//! `wasi:http/outgoing-handler`: a component's outgoing HTTP requests, through its link to an
//! HTTP client provider (`wasmcloud+builtin://http-client` or an external one). Asked when a
//! call starts: the capability resolver grants the link ([`Capability::HttpClient`]) and its
//! target config is the [`OutboundPolicy`] every request is checked against before anything is
//! sent. `wasi:http` itself is linked for every component with WASI; this module only decides
//! where its requests may go ([`HttpClient`], the component's [`OutgoingHttp`], handed to the
//! engine with the component).

use std::sync::Arc;

use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::{HostFutureIncomingResponse, OutgoingRequestConfig};
use wasmtime_wasi_http::p2::{HttpResult, WasiHttpHooks};

use crate::lattice::state::DEFAULT_LINK_NAME;
use crate::permission::outbound::OutboundPolicy;
use crate::permission::Capability;
use crate::permission::Resolver;
use crate::wasm::state::OutgoingHttp;

/// Outgoing HTTP of one component through its HTTP client link, under the link's rules.
#[derive(Debug, Clone)]
pub struct HttpClient {
    resolver: Resolver,
    component_id: String,
}

impl HttpClient {
    /// Outgoing HTTP of component `component_id`, as `resolver` grants it.
    pub fn new(resolver: Resolver, component_id: &str) -> Self {
        Self { resolver, component_id: component_id.to_string() }
    }
}

impl OutgoingHttp for HttpClient {
    fn hooks(&self) -> Box<dyn WasiHttpHooks + Send> {
        let component_id = self.component_id.as_str();
        let outbound = self
            .resolver
            .provider(component_id, DEFAULT_LINK_NAME, Capability::HttpClient)
            .ok()
            .and_then(|grant| match OutboundPolicy::from_config(&grant.config) {
                Ok(policy) => Some(Arc::new(policy)),
                Err(why) => {
                    tracing::warn!(component_id, "outgoing HTTP refused: the HTTP client link's config is not valid: {why}");
                    None
                }
            });
        Box::new(Checked { outbound })
    }
}

/// Outgoing HTTP is refused unless the capability resolver granted it when the call started
/// (a link to a running HTTP client provider), and then goes only where the link's rules allow:
/// the name is resolved and every address checked before anything is sent; plain HTTP then
/// connects to the address checked (a name that resolves elsewhere a moment later is not
/// followed), HTTPS by name, where the certificate must match it.
#[derive(Debug)]
struct Checked {
    outbound: Option<Arc<OutboundPolicy>>,
}

impl WasiHttpHooks for Checked {
    fn send_request(
        &mut self,
        request: hyper::Request<HyperOutgoingBody>,
        config: OutgoingRequestConfig,
    ) -> HttpResult<HostFutureIncomingResponse> {
        let Some(policy) = self.outbound.clone() else {
            tracing::info!(uri = %request.uri(), "outgoing HTTP refused: the component has no link to an HTTP client provider");
            return Err(ErrorCode::HttpRequestDenied.into());
        };
        let handle = wasmtime_wasi::runtime::spawn(async move { Ok(send_checked(&policy, request, config).await) });
        Ok(HostFutureIncomingResponse::pending(handle))
    }
}

/// Resolves the request's host, checks it against `policy`, and sends it.
async fn send_checked(
    policy: &OutboundPolicy,
    mut request: hyper::Request<HyperOutgoingBody>,
    config: OutgoingRequestConfig,
) -> Result<wasmtime_wasi_http::p2::types::IncomingResponse, ErrorCode> {
    let uri = request.uri().clone();
    let Some(authority) = uri.authority().cloned() else { return Err(ErrorCode::HttpRequestUriInvalid) };
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
    let port = authority.port_u16().unwrap_or(if config.use_tls { 443 } else { 80 });
    let addrs: Vec<std::net::SocketAddr> = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![std::net::SocketAddr::new(ip, port)],
        Err(_) => match tokio::time::timeout(config.connect_timeout, tokio::net::lookup_host((host.as_str(), port))).await {
            Ok(Ok(addrs)) => addrs.collect(),
            Ok(Err(_)) => return Err(ErrorCode::DnsError(wasmtime_wasi_http::p2::bindings::http::types::DnsErrorPayload { rcode: Some("address not available".into()), info_code: Some(0) })),
            Err(_) => return Err(ErrorCode::ConnectionTimeout),
        },
    };
    let Some(&first) = addrs.first() else {
        return Err(ErrorCode::DnsError(wasmtime_wasi_http::p2::bindings::http::types::DnsErrorPayload { rcode: Some("no addresses".into()), info_code: Some(0) }));
    };
    let ips: Vec<std::net::IpAddr> = addrs.iter().map(std::net::SocketAddr::ip).collect();
    if let Err(why) = policy.check(&host, port, &ips) {
        tracing::info!(%uri, "outgoing HTTP refused: {why}");
        return Err(ErrorCode::HttpRequestDenied);
    }
    if !config.use_tls {
        // Connect to the address just checked; the request keeps its `host` header.
        if !request.headers().contains_key(hyper::header::HOST) {
            if let Ok(value) = hyper::header::HeaderValue::from_str(authority.as_str()) {
                request.headers_mut().insert(hyper::header::HOST, value);
            }
        }
        let pinned = first.to_string();
        let mut parts = uri.into_parts();
        parts.authority = pinned.parse().ok();
        *request.uri_mut() = hyper::Uri::from_parts(parts).map_err(|_| ErrorCode::HttpRequestUriInvalid)?;
    }
    wasmtime_wasi_http::p2::default_send_request_handler(request, config).await
}

