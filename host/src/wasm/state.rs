//! The data of a guest's `Store`: a WASI context that grants nothing, and a memory limiter that
//! remembers when it refused to grow memory (so a trap can be reported as the memory limit).

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::{HostFutureIncomingResponse, OutgoingRequestConfig};
use wasmtime_wasi_http::p2::{HttpResult, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};
use wasmtime_wasi_http::WasiHttpCtx;

use crate::permission::outbound::OutboundPolicy;

/// Tables a guest may grow to (elements); generous for real code, bounded for hostile code.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// Host resources (streams, fields, buckets, link-name handles…) one invocation may hold at
/// once. Each lives in host memory, outside the guest's memory limit, so it is bounded here.
pub const MAX_RESOURCES: usize = 10_000;

/// Interfaces one invocation may choose a link name for (`wasmcloud:bus/lattice.set-link-name`).
pub const MAX_LINK_NAME_CHOICES: usize = 64;

/// Longest link name, and longest `ns:pkg/iface` key, a guest may hand the bus, in bytes.
pub const MAX_LINK_NAME_BYTES: usize = 256;

/// Per-invocation store data.
pub struct GuestState {
    /// WASI 0.2 context: no preopened directories, no environment, no arguments, no sockets;
    /// stdio goes nowhere.
    wasi: WasiCtx,
    /// Resources handed to the guest.
    table: ResourceTable,
    /// Caps linear memory.
    pub limiter: MemoryLimiter,
    /// `wasi:http` state.
    http: WasiHttpCtx,
    /// Outgoing HTTP policy.
    hooks: HttpHooks,
    /// Link names the guest chose per `ns:pkg` (`wasmcloud:bus/lattice.set-link-name`).
    link_names: std::collections::HashMap<String, String>,
    /// When this invocation's deadline passes (host calls wait no longer).
    pub deadline: std::time::Instant,
    /// The reply subject of the message this invocation handles, which it may publish to
    /// ([`crate::permission::reply_grant`]).
    pub reply_to: Option<String>,
    /// The component's import context (its id, links, the lattice), for capabilities bound
    /// with `bindgen!`, whose host functions reach the store's data only; `None` for a
    /// component prepared without a lattice.
    pub imports: Option<Arc<crate::wasm::context::ImportContext>>,
}

impl GuestState {
    /// A state whose memory may grow to `max_memory` bytes, for a call ending at `deadline`;
    /// outgoing HTTP only under `outbound` (the rules of the HTTP client link the capability
    /// resolver granted; `None`: none).
    pub fn new(max_memory: usize, outbound: Option<Arc<OutboundPolicy>>, deadline: std::time::Instant) -> Self {
        let mut wasi = WasiCtxBuilder::new();
        wasi.allow_blocking_current_thread(false);
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        Self {
            wasi: wasi.build(),
            table,
            limiter: MemoryLimiter { max_memory, refused: false },
            http: WasiHttpCtx::new(),
            hooks: HttpHooks { outbound },
            link_names: std::collections::HashMap::new(),
            deadline,
            reply_to: None,
            imports: None,
        }
    }

    /// The link name the guest chose for calls into `ns:pkg`, if any.
    pub fn link_name(&self, ns_pkg: &str) -> Option<&str> {
        self.link_names.get(ns_pkg).map(String::as_str)
    }

    /// Chooses link `name` for calls into `ns:pkg` for the rest of this invocation.
    ///
    /// # Errors
    /// Past [`MAX_LINK_NAME_CHOICES`] interfaces (the map lives in host memory, outside the
    /// guest's memory limit).
    pub fn set_link_name(&mut self, ns_pkg: String, name: &str) -> Result<(), String> {
        if let Some(chosen) = self.link_names.get_mut(&ns_pkg) {
            name.clone_into(chosen);
            return Ok(());
        }
        if self.link_names.len() >= MAX_LINK_NAME_CHOICES {
            return Err(format!("set-link-name: at most {MAX_LINK_NAME_CHOICES} interfaces per invocation"));
        }
        self.link_names.insert(ns_pkg, name.to_string());
        Ok(())
    }

    /// The guest's resource table.
    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

impl std::fmt::Debug for GuestState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestState").field("limiter", &self.limiter).finish_non_exhaustive()
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for GuestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

/// Outgoing HTTP is refused unless the capability resolver granted it when the call started
/// (a link to a running HTTP client provider), and then goes only where the link's rules allow:
/// the name is resolved and every address checked before anything is sent; plain HTTP then
/// connects to the address checked (a name that resolves elsewhere a moment later is not
/// followed), HTTPS by name, where the certificate must match it.
#[derive(Debug)]
pub struct HttpHooks {
    outbound: Option<Arc<OutboundPolicy>>,
}

impl WasiHttpHooks for HttpHooks {
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
        let pinned = addrs[0].to_string();
        let mut parts = uri.into_parts();
        parts.authority = pinned.parse().ok();
        *request.uri_mut() = hyper::Uri::from_parts(parts).map_err(|_| ErrorCode::HttpRequestUriInvalid)?;
    }
    wasmtime_wasi_http::p2::default_send_request_handler(request, config).await
}

/// A [`ResourceLimiter`] with a memory cap that records refusals.
#[derive(Debug)]
pub struct MemoryLimiter {
    /// The cap, in bytes, for each linear memory.
    pub max_memory: usize,
    /// Whether a growth was refused during this invocation.
    pub refused: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.refused = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
