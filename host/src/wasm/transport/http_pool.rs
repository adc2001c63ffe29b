//! Serving HTTP with reused instances: a WASI 0.3 `wasi:http/handler` component (many requests
//! at once per instance), or a WASI 0.2 `wasi:http/incoming-handler` component declared
//! reusable (one at a time per instance). The instances are run by wasmtime-wasi-http's
//! `ProxyHandler`, the worker `wasmtime serve` uses (reuse counts, idle time, concurrent tasks
//! on one store, a deadline per request and an instance dropped when one passes it); this
//! module adds the bounds a lattice host needs around it:
//!
//! * at most `max_instances` instances (a store beyond them is refused, and the request that
//!   asked for it goes back to wait for one that frees);
//! * at most `max_instances × concurrency` requests admitted, at most `--max-queued-calls` more
//!   waiting, none waiting past `--max-queue-wait`: busy is a 503, never an unbounded queue;
//! * an instance takes new requests for at most its maximum age: the pool then starts a new
//!   generation, and the old instances finish what they hold and end;
//! * a guest that traps ends its instance, and the requests in flight on it fail (500); the
//!   next requests get a fresh instance.
//!
//! What a reused instance keeps between requests is its own memory and what it holds in its
//! resource table (bounded per store, as for any call); see the README's security model.

use std::pin::Pin;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::{oneshot, Notify};
use tracing::{debug, warn};
use trellis_messages::invocation::FaultKind;
use wasmtime::component::Accessor;
use wasmtime_wasi_http::handler::{HandlerState, Proxy, ProxyHandler, ProxyPre, StoreBundle, TaskFn};

use crate::wasm::invoke::{classify_state, new_reused_store, Fault};
use crate::wasm::reuse::ReusePlan;
use crate::wasm::state::GuestState;
use crate::wasm::transport::http_response::{fault_response, text, ResponseBody};
use crate::wasm::transport::http_body::BodyError;
use crate::wasm::transport::slots::Slots;
use crate::wasm::{PreparedComponent, WasmRuntime};

/// The export a request calls, as metrics and faults name it.
const HANDLE: &str = "wasi:http/handler.handle";

/// One component's reused instances.
pub struct HttpPool {
    id: Arc<str>,
    runtime: Arc<WasmRuntime>,
    component: Arc<PreparedComponent>,
    plan: ReusePlan,
    /// Requests admitted (running, or waiting for an instance): `max_instances × concurrency`.
    admitted: Arc<Slots>,
    /// The component's count of instances, shared by every generation and by the pools of its
    /// earlier code (an update), so `max_instances` holds across both.
    shared: Arc<Shared>,
    /// The component's HTTP export, pre-instantiated: each generation's handler starts from it.
    pre: Pre,
    /// The instances taking new requests, and when they started to.
    generation: Mutex<Generation>,
}

/// The HTTP export a pool calls.
#[derive(Clone)]
enum Pre {
    V0_2(wasmtime_wasi_http::handler::p2::bindings::ProxyPre<GuestState>),
    V0_3(wasmtime_wasi_http::p3::bindings::ServicePre<GuestState>),
}

impl std::fmt::Debug for HttpPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpPool").field("id", &self.id).field("plan", &self.plan).finish_non_exhaustive()
    }
}

struct Generation {
    /// `None` until the first request.
    handler: Option<ProxyHandler<PoolState>>,
    born: Instant,
}

/// What the pool's `ProxyHandler` asks of it: stores, limits, and what to do with a failed
/// instance.
struct PoolState {
    id: Arc<str>,
    runtime: Arc<WasmRuntime>,
    component: Arc<PreparedComponent>,
    plan: ReusePlan,
    shared: Arc<Shared>,
}

/// What every pool of one component shares.
#[derive(Debug)]
struct Shared {
    /// `max_instances`, as rescaled.
    limit: AtomicU32,
    /// Instances alive now.
    live: AtomicUsize,
    /// Notified whenever an instance ends: a request refused an instance tries again.
    freed: Notify,
    /// Attempts refused an instance (and only those retry), until their request looks.
    refused: Mutex<HashSet<u64>>,
    /// Numbers attempts.
    attempts: AtomicU64,
    /// How the last instance that failed to start or ended with an error failed.
    last_error: Mutex<Option<String>>,
}

/// A store refused because `max_instances` instances are alive.
#[derive(Debug, thiserror::Error)]
#[error("all instances are in use")]
struct AllInUse;

/// Held by a store for its life: its instance counts against `max_instances` until dropped.
struct Lease(Arc<Shared>);

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
        self.0.freed.notify_waiters();
    }
}

impl HandlerState for PoolState {
    type StoreData = GuestState;

    fn new_store(&self, attempt: Option<u64>) -> wasmtime::Result<StoreBundle<GuestState>> {
        let shared = &self.shared;
        let limit = shared.limit.load(Ordering::SeqCst) as usize;
        if shared.live.fetch_add(1, Ordering::SeqCst) >= limit {
            shared.live.fetch_sub(1, Ordering::SeqCst);
            if let Some(attempt) = attempt {
                shared.refused.lock().unwrap_or_else(PoisonError::into_inner).insert(attempt);
            }
            return Err(wasmtime::Error::new(AllInUse));
        }
        let lease = Lease(shared.clone());
        let mut store = new_reused_store(&self.runtime, &self.component);
        store.data_mut().lease = Some(Box::new(lease));
        Ok(StoreBundle { store, write_profile: Box::new(|_| {}) })
    }

    fn request_timeout(&self) -> Duration {
        self.runtime.config().max_execution_time
    }

    fn idle_instance_timeout(&self) -> Duration {
        // Never idle longer than an instance may take requests: an old generation's instances
        // end within it.
        self.plan.idle.min(self.plan.max_age)
    }

    fn max_instance_reuse_count(&self) -> usize {
        self.plan.requests as usize
    }

    fn max_instance_concurrent_reuse_count(&self) -> usize {
        self.plan.concurrency as usize
    }

    fn handle_worker_error(&self, error: wasmtime::Error) {
        if error.downcast_ref::<AllInUse>().is_some() {
            debug!(component_id = %self.id, "no instance free; the request waits for one");
            return;
        }
        let first = format!("{error:#}").lines().next().unwrap_or_default().to_string();
        warn!(component_id = %self.id, error = %first, "a reused instance failed to start or ended with an error; its requests in flight failed");
        *self.shared.last_error.lock().unwrap_or_else(PoisonError::into_inner) = Some(first);
    }
}

/// What a request's task sends back.
enum Outcome {
    Response(hyper::Response<ResponseBody>),
    Fault(Fault),
}

/// A request waiting for an instance, taken by the task that serves it. Left in place when the
/// task is dropped before it ran (no instance free), so the request can be handed to another.
type Parked<B> = Arc<Mutex<Option<hyper::Request<B>>>>;

impl HttpPool {
    /// A pool for `component` (whose reuse `plan` its scale and exports decided), with
    /// `max_instances` instances and `max_queued` requests waiting beyond the admitted.
    ///
    /// # Errors
    /// When the component does not export the handler its plan is for.
    /// `previous`: the pool of the component's earlier code, whose instances still count.
    pub fn new(
        id: &str,
        runtime: Arc<WasmRuntime>,
        component: Arc<PreparedComponent>,
        plan: ReusePlan,
        max_instances: u32,
        previous: Option<&HttpPool>,
    ) -> wasmtime::Result<Arc<Self>> {
        let pre = if component.http_0_3 {
            Pre::V0_3(wasmtime_wasi_http::p3::bindings::ServicePre::new(component.pre.clone())?)
        } else {
            Pre::V0_2(wasmtime_wasi_http::handler::p2::bindings::ProxyPre::new(component.pre.clone())?)
        };
        let max_queued = runtime.config().max_queued_calls;
        let pool = Self {
            admitted: Slots::new(max_instances.saturating_mul(plan.concurrency), max_queued),
            id: id.into(),
            runtime,
            component,
            plan,
            shared: previous.map_or_else(
                || {
                    Arc::new(Shared {
                        limit: AtomicU32::new(max_instances),
                        live: AtomicUsize::new(0),
                        freed: Notify::new(),
                        refused: Mutex::new(HashSet::new()),
                        attempts: AtomicU64::new(0),
                        last_error: Mutex::new(None),
                    })
                },
                |p| p.shared.clone(),
            ),
            generation: Mutex::new(Generation { handler: None, born: Instant::now() }),
            pre,
        };
        Ok(Arc::new(pool))
    }

    /// Changes `max_instances`: new instances beyond it are refused, and fewer requests are
    /// admitted, as the running ones finish.
    pub fn resize(&self, max_instances: u32) {
        self.shared.limit.store(max_instances, Ordering::SeqCst);
        self.admitted.resize(max_instances.saturating_mul(self.plan.concurrency));
    }

    /// Closes the pool (its component stopped, or was updated): no new request is admitted,
    /// waiting ones fail, and its instances end once idle.
    pub fn close(&self) {
        self.admitted.close();
        self.generation.lock().unwrap_or_else(PoisonError::into_inner).handler = None;
    }

    /// The instances taking new requests: a new generation once the current one is older than
    /// the plan's maximum age.
    fn current(&self) -> ProxyHandler<PoolState> {
        let mut generation = self.generation.lock().unwrap_or_else(PoisonError::into_inner);
        match &generation.handler {
            Some(handler) if generation.born.elapsed() < self.plan.max_age => handler.clone(),
            _ => {
                let handler = self.handler();
                *generation = Generation { handler: Some(handler.clone()), born: Instant::now() };
                handler
            }
        }
    }

    /// A handler for a new generation of instances.
    fn handler(&self) -> ProxyHandler<PoolState> {
        let pre = match self.pre.clone() {
            Pre::V0_2(pre) => ProxyPre::P2(pre),
            Pre::V0_3(pre) => ProxyPre::P3(pre),
        };
        let state = PoolState {
            id: self.id.clone(),
            runtime: self.runtime.clone(),
            component: self.component.clone(),
            plan: self.plan,
            shared: self.shared.clone(),
        };
        ProxyHandler::new(state, pre)
    }

    /// Serves `request`; the response, and the fault when it failed.
    pub async fn serve<B>(&self, request: hyper::Request<B>, metrics: &crate::metrics::ComponentMetrics) -> (hyper::Response<ResponseBody>, Option<FaultKind>)
    where
        B: Body<Data = Bytes, Error = BodyError> + Send + Sync + 'static,
    {
        let shared = &self.shared;
        let what = format!("request places ({} instances × {} at once)", shared.limit.load(Ordering::Relaxed), self.plan.concurrency);
        let wait = self.runtime.config().max_queue_wait;
        // Held here, not by the task: a task stranded in a queue holds no place.
        let _permit = match self.admitted.acquire(wait, &self.id, &what, metrics).await {
            Ok(p) => p,
            Err(fault) => return (fault_response(&fault), Some(fault.kind)),
        };
        let _active = metrics.active();
        let limit = self.runtime.config().max_execution_time;
        let parked: Parked<B> = Arc::new(Mutex::new(Some(request)));
        let until = Instant::now() + wait;
        // A request refused an instance tries again when one ends, or when a busy one may take
        // more (its event loop idles within a moment): backing off from 1 ms to 32 ms. Only
        // admitted requests retry, so at most `max_instances × concurrency` do.
        let mut backoff = Duration::from_millis(1);
        loop {
            let freed = shared.freed.notified();
            let (done, outcome) = oneshot::channel();
            let started = Arc::new(AtomicBool::new(false));
            let attempt = shared.attempts.fetch_add(1, Ordering::Relaxed);
            let task = task(self.id.clone(), parked.clone(), done, started.clone(), limit);
            {
                // Workers run on the guest threads, where every call runs.
                let _guests = self.runtime.guests().enter();
                self.current().spawn(Some(attempt), task);
            }
            let began = Instant::now();
            // A task is taken by an instance once the requests ahead of it end, and ends by its
            // deadline; a guest that never yields is dropped with its instance within three
            // deadlines (`ProxyHandler`'s bound). Past all that, busy.
            let outcome = tokio::time::timeout_at((until + 3 * limit + Duration::from_secs(1)).into(), outcome).await;
            let refused = shared.refused.lock().unwrap_or_else(PoisonError::into_inner).remove(&attempt);
            let Ok(outcome) = outcome else {
                let fault = Fault::new(FaultKind::Busy, format!("no instance of component `{}` on this host took the request in time", self.id));
                return (fault_response(&fault), Some(fault.kind));
            };
            match outcome {
                Ok(Outcome::Response(response)) => return (response, None),
                Ok(Outcome::Fault(fault)) => return (fault_response(&fault), Some(fault.kind)),
                Err(_) if !started.load(Ordering::SeqCst) && !refused => {
                    let why = shared.last_error.lock().unwrap_or_else(PoisonError::into_inner).clone().unwrap_or_else(|| "unknown".into());
                    let fault = Fault::new(FaultKind::Host, format!("no instance of component `{}` could take the request: {why}", self.id));
                    return (fault_response(&fault), Some(fault.kind));
                }
                Err(_) if !started.load(Ordering::SeqCst) => {
                    // No instance could be had for it: wait for one to free, within the queue wait.
                    let retry_at = (Instant::now() + backoff).min(until);
                    backoff = (backoff * 2).min(Duration::from_millis(32));
                    let _ = tokio::time::timeout_at(retry_at.into(), freed).await;
                    if Instant::now() >= until {
                        let fault = Fault::new(
                            FaultKind::Busy,
                            format!("all {} instances of component `{}` on this host stayed busy for {wait:?}", shared.limit.load(Ordering::Relaxed), self.id),
                        );
                        return (fault_response(&fault), Some(fault.kind));
                    }
                }
                Err(_) if began.elapsed() >= limit => {
                    let fault = Fault::new(
                        FaultKind::Deadline,
                        format!("`{HANDLE}` of component `{}` ran past the host's deadline of {limit:?} and was stopped", self.id),
                    );
                    return (fault_response(&fault), Some(fault.kind));
                }
                Err(_) => {
                    let fault = Fault::new(FaultKind::Trap, format!("the instance of component `{}` serving this request ended without answering it (a trap, here or in another request on it)", self.id));
                    return (fault_response(&fault), Some(fault.kind));
                }
            }
        }
    }
}

/// The task that serves one request on a reused instance.
fn task<B>(id: Arc<str>, parked: Parked<B>, done: oneshot::Sender<Outcome>, started: Arc<AtomicBool>, limit: Duration) -> TaskFn<GuestState>
where
    B: Body<Data = Bytes, Error = BodyError> + Send + Sync + 'static,
{
    Box::new(move |accessor, proxy| {
        Box::pin(async move {
            let Some(request) = parked.lock().unwrap_or_else(PoisonError::into_inner).take() else { return };
            started.store(true, Ordering::SeqCst);
            if done.is_closed() {
                return; // the client went away while it waited
            }
            accessor.with(|mut store| store.data_mut().deadline = Instant::now() + limit);
            let mut done = Some(done);
            let result = match proxy {
                Proxy::P2(proxy) => serve_0_2(accessor, proxy, request, &mut done).await,
                Proxy::P3(proxy) => serve_0_3(accessor, proxy, request, &mut done).await,
            };
            if let (Err(e), Some(done)) = (result, done.take()) {
                let fault = accessor.with(|mut store| classify_state(store.data_mut(), &id, HANDLE, &e));
                let _ = done.send(Outcome::Fault(fault));
            }
        })
    })
}

/// `wasi:http/incoming-handler@0.2`: the response goes back as soon as the guest sets it, while
/// the guest may still write its body.
async fn serve_0_2<B>(
    accessor: &Accessor<GuestState>,
    proxy: &wasmtime_wasi_http::handler::p2::bindings::Proxy,
    request: hyper::Request<B>,
    done: &mut Option<oneshot::Sender<Outcome>>,
) -> wasmtime::Result<()>
where
    B: Body<Data = Bytes, Error = BodyError> + Send + Sync + 'static,
{
    use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
    use wasmtime_wasi_http::p2::WasiHttpView;
    let (out_tx, mut out_rx) = oneshot::channel();
    let request = request.map(|b| b.map_err(|e| ErrorCode::InternalError(Some(e.to_string()))));
    let (req, out) = accessor.with(move |mut store| {
        let mut http = WasiHttpView::http(store.data_mut());
        let req = http.new_incoming_request(Scheme::Http, request)?;
        let out = http.new_response_outparam(out_tx)?;
        wasmtime::Result::<_>::Ok((req, out))
    })?;
    let call = proxy.wasi_http_incoming_handler().call_handle(accessor, req, out);
    let mut call = std::pin::pin!(call);
    let forward = |response: Result<hyper::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody>, ErrorCode>, done: &mut Option<oneshot::Sender<Outcome>>| {
        let outcome = match response {
            Ok(r) => Outcome::Response(r.map(|body| body.map_err(|e| Box::new(e) as BodyError).boxed_unsync())),
            Err(code) => Outcome::Response(text(500, format!("the component failed the request: {code:?}"))),
        };
        if let Some(done) = done.take() {
            let _ = done.send(outcome);
        }
    };
    tokio::select! {
        response = &mut out_rx => {
            if let Ok(response) = response {
                forward(response, done);
            }
            call.await
        }
        result = &mut call => {
            if let Ok(response) = out_rx.try_recv() {
                forward(response, done);
            } else if result.is_ok() {
                if let Some(done) = done.take() {
                    let _ = done.send(Outcome::Response(text(500, "the component returned without setting a response")));
                }
            }
            result
        }
    }
}

/// `wasi:http/handler@0.3`: the task lives until the response body has been sent, since the
/// guest produces it on the instance.
async fn serve_0_3<B>(
    accessor: &Accessor<GuestState>,
    proxy: &wasmtime_wasi_http::p3::bindings::Service,
    request: hyper::Request<B>,
    done: &mut Option<oneshot::Sender<Outcome>>,
) -> wasmtime::Result<()>
where
    B: Body<Data = Bytes, Error = BodyError> + Send + Sync + 'static,
{
    use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode;
    use wasmtime_wasi_http::p3::Request;
    let request = request.map(|b| b.map_err(|e| ErrorCode::InternalError(Some(e.to_string()))));
    let (request, request_io) = Request::from_http(request);
    let response = match proxy.handle(accessor, request).await? {
        Ok(response) => response,
        Err(code) => {
            if let Some(done) = done.take() {
                let _ = done.send(Outcome::Response(text(500, format!("the component failed the request: {code:?}"))));
            }
            return Ok(());
        }
    };
    let response = accessor.with(|mut store| response.into_http(&mut store, request_io))?;
    let (sent_tx, sent_rx) = oneshot::channel::<()>();
    let response = response.map(|body| Tracked { body: body.map_err(|e| Box::new(e) as BodyError).boxed_unsync(), _sent: sent_tx }.boxed_unsync());
    if let Some(done) = done.take() {
        if done.send(Outcome::Response(response)).is_ok() {
            let _ = sent_rx.await;
        }
    }
    Ok(())
}

/// A response body that tells its task, by being dropped, that it has been sent (or abandoned).
struct Tracked {
    body: ResponseBody,
    _sent: oneshot::Sender<()>,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
