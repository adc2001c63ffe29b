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
    /// Where outgoing HTTP goes, if anywhere (built by the component's [`OutgoingHttp`]).
    hooks: Box<dyn WasiHttpHooks + Send>,
    /// Link names the guest chose per `ns:pkg` (`wasmcloud:bus/lattice.set-link-name`).
    link_names: std::collections::HashMap<String, String>,
    /// When this invocation's deadline passes (host calls wait no longer).
    pub deadline: std::time::Instant,
    /// The reply subject of the message this invocation handles, which it may publish to
    /// ([`crate::permission::reply_grant`]).
    pub reply_to: Option<String>,
    /// What the component's capabilities keep for its calls (its id, links, the lattice), for
    /// capabilities bound with `bindgen!`, whose host functions reach the store's data only;
    /// `None` for a component prepared without a lattice.
    pub imports: Option<CapabilityContext>,
    /// What capabilities keep for one call beside its resources, each under its own type (the
    /// blobstore's count of live values): gone with the call.
    pub extensions: hyper::http::Extensions,
    /// Held for the store's life, dropped with it: a reused instance's place in its pool's
    /// count of instances (`transport::http_pool`).
    pub lease: Option<Box<dyn Send>>,
    /// WASI 0.3's HTTP hooks: outgoing 0.3 requests are refused (not yet routed through the
    /// HTTP client capability, as 0.2's are).
    http3: RefuseOutgoing3,
}

impl GuestState {
    /// A state whose memory may grow to `max_memory` bytes, for a call ending at `deadline`;
    /// outgoing HTTP only through `http` (the hooks the component's
    /// [`OutgoingHttp`] built for this call; `None`: every request is refused).
    pub fn new(max_memory: usize, http: Option<Box<dyn WasiHttpHooks + Send>>, deadline: std::time::Instant) -> Self {
        let mut wasi = WasiCtxBuilder::new();
        wasi.allow_blocking_current_thread(false);
        // No sockets: the address check refuses every address already, but WASI 0.3's `listen`
        // binds an unbound socket itself without asking it.
        wasi.allow_tcp(false).allow_udp(false);
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        Self {
            wasi: wasi.build(),
            table,
            limiter: MemoryLimiter { max_memory, refused: false },
            http: WasiHttpCtx::new(),
            hooks: http.unwrap_or_else(|| Box::new(NoOutgoingHttp)),
            link_names: std::collections::HashMap::new(),
            deadline,
            reply_to: None,
            imports: None,
            extensions: hyper::http::Extensions::new(),
            lease: None,
            http3: RefuseOutgoing3,
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
    pub fn set_link_name(&mut self, ns_pkg: String, name: &str) -> Result<(), TooManyChoices> {
        if let Some(chosen) = self.link_names.get_mut(&ns_pkg) {
            name.clone_into(chosen);
            return Ok(());
        }
        if self.link_names.len() >= MAX_LINK_NAME_CHOICES {
            return Err(TooManyChoices);
        }
        self.link_names.insert(ns_pkg, name.to_string());
        Ok(())
    }

    /// The guest's resource table.
    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

/// More than [`MAX_LINK_NAME_CHOICES`] interfaces given link names in one invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("set-link-name: at most {MAX_LINK_NAME_CHOICES} interfaces per invocation")]
pub struct TooManyChoices;

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
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut *self.hooks }
    }
}

impl wasmtime_wasi_http::p3::WasiHttpView for GuestState {
    fn http(&mut self) -> wasmtime_wasi_http::p3::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::p3::WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.http3 }
    }
}

/// Refuses every outgoing WASI 0.3 HTTP request: no 0.3 request leaves the host until the
/// HTTP client capability decides them as it decides 0.2's.
struct RefuseOutgoing3;

/// Types of `wasi:http` 0.3's hooks.
mod http3 {
    pub use bytes::Bytes;
    pub use http_body_util::combinators::UnsyncBoxBody;
    pub use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode;
    pub type Body = UnsyncBoxBody<Bytes, ErrorCode>;
    pub type Done = Box<dyn std::future::Future<Output = Result<(), ErrorCode>> + Send>;
    pub type Sent = Box<dyn std::future::Future<Output = Result<(hyper::http::Response<Body>, Done), wasmtime_wasi::TrappableError<ErrorCode>>> + Send>;
}

impl wasmtime_wasi_http::p3::WasiHttpHooks for RefuseOutgoing3 {
    fn send_request(&mut self, _request: hyper::http::Request<http3::Body>, _options: Option<wasmtime_wasi_http::p3::RequestOptions>, _fut: http3::Done) -> http3::Sent {
        Box::new(async {
            Err(http3::ErrorCode::InternalError(Some("outgoing HTTP from WASI 0.3 components is not supported by this host yet".into())).into())
        })
    }
}

/// How a component's outgoing HTTP is served: asked once per call for the hooks
/// `wasi:http/outgoing-handler` sends through (`capabilities::http_client` decides what may go
/// where).
pub trait OutgoingHttp: Send + Sync {
    /// The hooks for one call.
    fn hooks(&self) -> Box<dyn WasiHttpHooks + Send>;
}

/// What a component's capabilities keep for its calls, handed to each call's store: their own
/// context, of a type `wasm` does not name (the capabilities' `ImportContext`), and how its
/// outgoing HTTP is served.
#[derive(Clone)]
pub struct CapabilityContext {
    /// The capabilities' context (they downcast it).
    pub data: Arc<dyn std::any::Any + Send + Sync>,
    /// Builds each call's outgoing-HTTP hooks.
    pub outgoing_http: Arc<dyn OutgoingHttp>,
}

impl std::fmt::Debug for CapabilityContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CapabilityContext").finish_non_exhaustive()
    }
}

/// The hooks of a call whose component has no outgoing HTTP: every request is refused.
#[derive(Debug)]
struct NoOutgoingHttp;

impl WasiHttpHooks for NoOutgoingHttp {
    fn send_request(
        &mut self,
        request: hyper::Request<HyperOutgoingBody>,
        _config: OutgoingRequestConfig,
    ) -> HttpResult<HostFutureIncomingResponse> {
        tracing::info!(uri = %request.uri(), "outgoing HTTP refused: the component is not served outgoing HTTP here");
        Err(ErrorCode::HttpRequestDenied.into())
    }
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
