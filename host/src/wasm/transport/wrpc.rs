//! wRPC, the data plane of wasmCloud providers: a component's call to an external provider goes
//! out on `{lattice}.{provider}.wrpc.0.0.1.{instance}.{func}` with wRPC's NATS transport, and a
//! provider's call to a component arrives on the component's own wRPC subjects
//! ([`Wrpc::serve_component`]). Values cross with `wrpc-runtime-wasmtime`'s codec (component values ↔
//! wRPC's encoding). A call to a provider carries the handles of the provider's resources as
//! their bytes ([`super::handles`]); a component's exports are served only where they have no
//! resources (a fresh instance per call keeps none between calls).
//!
//! The codec works on a store; values never touch the guest's, so encoding and decoding use a
//! small store of their own ([`Codec`]), where a handle's bytes become a remote resource for
//! the encoder.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt as _;
use tokio::io::AsyncWriteExt as _;
use tokio_util::codec::Encoder as _;
use tracing::{debug, warn};
use wasmtime::component::{ResourceTable, Type, Val};
use wasmtime::{AsContextMut as _, Engine, Store};
use wrpc_runtime_wasmtime::{SharedResourceTable, ValEncoder, WrpcCtx, WrpcCtxView, WrpcView};

use super::wrpc_value::{read_plain, ValuePool, MAX_CALL_VALUE_BYTES};
use wrpc_transport::Invoke as _;
use wrpc_transport_nats::Client;

/// The store the codec runs on.
struct Codec {
    table: ResourceTable,
    ctx: CodecCtx,
}

struct CodecCtx {
    client: Arc<Client>,
    shared: SharedResourceTable,
}

impl WrpcCtx<Client> for CodecCtx {
    fn context(&self) -> Option<async_nats::HeaderMap> {
        None
    }

    fn client(&self) -> &Client {
        &self.client
    }

    fn shared_resources(&mut self) -> &mut SharedResourceTable {
        &mut self.shared
    }
}

impl WrpcView for Codec {
    type Invoke = Client;

    fn wrpc(&mut self) -> WrpcCtxView<'_, Client> {
        WrpcCtxView { ctx: &mut self.ctx, table: &mut self.table }
    }
}

fn codec_store(engine: &Engine, client: Arc<Client>) -> Store<Codec> {
    Store::new(engine, Codec { table: ResourceTable::new(), ctx: CodecCtx { client, shared: SharedResourceTable::default() } })
}

pub use super::wrpc_error::WrpcError;

/// Targets (providers, components on other hosts) whose client and call slots are kept; past
/// it, the ones with no call in flight are let go (each client holds a NATS subscription).
pub const MAX_TARGETS: usize = 1024;

/// Lets go of the entries of `map` that `idle` says no call uses, once it holds `max` or more.
fn evict_idle<V>(map: &mut HashMap<String, Arc<V>>, max: usize, idle: impl Fn(&Arc<V>) -> bool) {
    if map.len() >= max {
        map.retain(|_, v| !idle(v));
    }
}

/// wRPC clients of this host, one per target (each keeps a reply subscription), on the call
/// connection; at most [`MAX_TARGETS`] while idle.
#[derive(Clone)]
pub struct Wrpc {
    nats: Arc<async_nats::Client>,
    lattice: String,
    engine: Engine,
    clients: Arc<Mutex<HashMap<String, Arc<Client>>>>,
    /// Calls this host has in flight to each provider, at most `max_calls`.
    in_flight: Arc<Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>>,
    max_calls: usize,
    queue_wait: Duration,
    /// The bound on a request body a provider streams to a component's HTTP handler.
    http_body: crate::wasm::transport::http_body::BodyBounds,
    /// Host memory for decoded parameters and results ([`super::wrpc_value`]).
    values: ValuePool,
    /// Components no Trellis host ran when last called, served over wRPC by another kind of
    /// host (wasmCloud 1.x) ([`Self::elsewhere`]).
    elsewhere: super::elsewhere::Elsewhere,
}


impl std::fmt::Debug for Wrpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wrpc").field("lattice", &self.lattice).finish_non_exhaustive()
    }
}

impl Wrpc {
    /// Clients on `nats` for `lattice`, with values checked against `engine`'s types; at most
    /// `max_calls` calls in flight to one provider, callers past it waiting up to `queue_wait`;
    /// request bodies to components' HTTP handlers held to `http_body`.
    pub fn new(nats: async_nats::Client, lattice: &str, engine: Engine, max_calls: usize, queue_wait: Duration, http_body: crate::wasm::transport::http_body::BodyBounds) -> Self {
        Self {
            nats: Arc::new(nats),
            lattice: lattice.to_string(),
            engine,
            clients: Arc::default(),
            in_flight: Arc::default(),
            max_calls: max_calls.max(1),
            queue_wait,
            http_body,
            values: ValuePool::default(),
            elsewhere: super::elsewhere::Elsewhere::default(),
        }
    }

    /// Components found a moment ago ([`super::elsewhere::ELSEWHERE_FOR`]) served over wRPC
    /// with no Trellis host running them: their calls go over wRPC without asking Trellis
    /// hosts first (one round trip instead of two). [`super::elsewhere::Elsewhere::reach`]
    /// is the order every cross-kind call takes.
    pub fn elsewhere(&self) -> &super::elsewhere::Elsewhere {
        &self.elsewhere
    }

    /// A slot for one call to `target`.
    async fn slot(&self, target: &str) -> Result<tokio::sync::OwnedSemaphorePermit, WrpcError> {
        let slots = {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
            if !in_flight.contains_key(target) {
                // A permit or a waiter holds the semaphore too.
                evict_idle(&mut in_flight, MAX_TARGETS, |s| Arc::strong_count(s) == 1 && s.available_permits() == self.max_calls);
            }
            in_flight.entry(target.to_string()).or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.max_calls))).clone()
        };
        match tokio::time::timeout(self.queue_wait, slots.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(WrpcError::Busy { target: target.into(), max_calls: self.max_calls, waited: self.queue_wait }),
        }
    }

    /// The client whose calls go to `target` (`{lattice}.{target}` subjects).
    async fn client(&self, target: &str) -> Result<Arc<Client>, WrpcError> {
        if let Some(c) = self.clients.lock().unwrap_or_else(PoisonError::into_inner).get(target) {
            return Ok(c.clone());
        }
        let client = Client::new(self.nats.clone(), trellis_messages::subjects::wrpc_prefix(&self.lattice, target), None)
            .await
            .map_err(|e| WrpcError::Setup { target: target.into(), reason: format!("{e:#}") })?;
        let client = Arc::new(client);
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        // A call in flight holds its client too (its codec store).
        evict_idle(&mut clients, MAX_TARGETS, |c| Arc::strong_count(c) == 1);
        Ok(clients.entry(target.to_string()).or_insert(client).clone())
    }

    /// Calls `instance`.`func` (e.g. `trellis:echo/echo@0.1.0`, `echo`) on `target` with
    /// `params`, as `source` through link `link_name`; the results decoded as `results_ty`.
    /// Ends with an error at `timeout` whatever the provider does.
    ///
    /// # Errors
    /// What failed, in words for the guest's caller.
    #[allow(clippy::too_many_arguments)]
    pub async fn call(
        &self,
        source: &str,
        link_name: &str,
        target: &str,
        instance: &str,
        func: &str,
        params: &[Val],
        params_ty: &[Type],
        results_ty: &[Type],
        timeout: Duration,
    ) -> Result<Vec<Val>, WrpcError> {
        self.call_with_handles(source, link_name, target, instance, func, params, params_ty, results_ty, &[], timeout).await
    }

    /// As [`Self::call`], with `params` holding stand-ins for `handles`
    /// ([`super::handles::Outgoing`]).
    ///
    /// # Errors
    /// As [`Self::call`].
    #[allow(clippy::too_many_arguments)]
    pub async fn call_with_handles(
        &self,
        source: &str,
        link_name: &str,
        target: &str,
        instance: &str,
        func: &str,
        params: &[Val],
        params_ty: &[Type],
        results_ty: &[Type],
        handles: &[bytes::Bytes],
        timeout: Duration,
    ) -> Result<Vec<Val>, WrpcError> {
        let call = async {
            let _slot = self.slot(target).await?;
            let client = self.client(target).await?;
            let mut store = codec_store(&self.engine, client.clone());
            let mut buf = BytesMut::new();
            for (i, (v, ty)) in params.iter().zip(params_ty).enumerate() {
                let encode_error = |reason: String| WrpcError::Encode { index: i, reason };
                // A resource handle (standing in as its index among `handles`) becomes a remote
                // resource of the codec's store, which the encoder writes as its bytes. (Owned
                // there either way: the encoder writes a borrowed handle's bytes as an owned
                // one's, and the store ends with the call.) Values without handles are encoded
                // as they are.
                let with_handles;
                let v = if super::handles::has_handles(ty) {
                    let mut v = v.clone();
                    super::handles::each_handle(&mut v, ty, &mut |stand_in, _owned| {
                        let bytes = super::handles::outgoing_bytes(&stand_in, handles).ok_or_else(|| encode_error("a resource that is not a handle of the link's target".into()))?;
                        let resource = store.data_mut().table.push(super::handles::RemoteResource(bytes.clone())).map_err(|e| encode_error(e.to_string()))?;
                        resource.try_into_resource_any(store.as_context_mut()).map(Val::Resource).map_err(|e| encode_error(format!("{e:#}")))
                    })?;
                    with_handles = v;
                    &with_handles
                } else {
                    v
                };
                let mut enc = ValEncoder::<_, wrpc_transport_nats::ParamWriter>::new(store.as_context_mut(), ty, &[], &[]);
                enc.encode(v, &mut buf).map_err(|e| encode_error(format!("{e:#}")))?;
            }
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(trellis_messages::invocation::SOURCE_ID_HEADER, source);
            headers.insert(trellis_messages::invocation::LINK_NAME_HEADER, link_name);
            let paths: &[&[Option<usize>]] = &[];
            let (outgoing, incoming) = client
                .invoke(Some(headers), instance, super::handles::wire_name(func), buf.freeze(), paths)
                .await
                .map_err(|e| WrpcError::NoAnswer { target: target.into(), reason: format!("{e:#}") })?;
            // Closing the parameters waits for the provider to take the call: with nobody
            // listening (a provider still starting, or gone), NATS answers "no responders" and
            // the call fails now rather than at its deadline.
            let mut outgoing = std::pin::pin!(outgoing);
            if let Err(e) = outgoing.shutdown().await {
                return Err(if e.kind() == std::io::ErrorKind::NotConnected {
                    WrpcError::NotServing { target: target.into(), what: format!(" {instance}.{func}") }
                } else {
                    WrpcError::Send { target: target.into(), source: e }
                });
            }
            let mut incoming = std::pin::pin!(incoming);
            // The results' memory is given back when the call returns (the guest holds them then).
            let mut budget = self.values.budget(MAX_CALL_VALUE_BYTES);
            let mut results = Vec::with_capacity(results_ty.len());
            for (i, ty) in results_ty.iter().enumerate() {
                let value = read_plain(&mut incoming, ty, &mut budget)
                    .await
                    .map_err(|source| WrpcError::Decode { target: target.into(), index: i, source })?;
                results.push(value);
            }
            // The call is over when the provider closes its results (for a function without
            // results, that is the only sign it finished); anything more is a protocol error.
            let mut rest = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut incoming, &mut rest)
                .await
                .map_err(|source| WrpcError::BrokeOff { target: target.into(), source })?;
            if !rest.is_empty() {
                return Err(WrpcError::Extra { target: target.into(), extra: rest.len() });
            }
            Ok(results)
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(WrpcError::Timeout { target: target.into(), timeout }),
        }
    }

    /// Runs `call` — a typed wRPC client call (generated bindings) — against provider `target`
    /// on behalf of `source` through link `link_name`, with the same bound per provider and the
    /// same headers as [`Self::call`]; ends with an error at `timeout`.
    ///
    /// # Errors
    /// What failed, in words for the guest's caller.
    pub async fn invoke<T, F, Fut>(&self, source: &str, link_name: &str, target: &str, timeout: Duration, call: F) -> Result<T, WrpcError>
    where
        F: FnOnce(Arc<Client>, Option<async_nats::HeaderMap>) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<T>>,
    {
        let invoked = async {
            let _slot = self.slot(target).await?;
            let client = self.client(target).await?;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(trellis_messages::invocation::SOURCE_ID_HEADER, source);
            headers.insert(trellis_messages::invocation::LINK_NAME_HEADER, link_name);
            call(client, Some(headers)).await.map_err(|e| {
                let no_responders = e.chain().any(|c| {
                    c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::NotConnected)
                });
                if no_responders {
                    WrpcError::NotServing { target: target.into(), what: String::new() }
                } else {
                    WrpcError::Failed { target: target.into(), reason: format!("{e:#}") }
                }
            })
        };
        match tokio::time::timeout(timeout, invoked).await {
            Ok(r) => r,
            Err(_) => Err(WrpcError::Timeout { target: target.into(), timeout }),
        }
    }

    /// Serves `functions` of `instance` of component `id` on its wRPC subjects (queue group
    /// `{lattice}.{id}`, as wasmCloud hosts do): each invocation's parameters are decoded as
    /// the function's types, `handle` runs the call, and the results go back; when it fails the
    /// results are closed empty (wRPC has no error frame), which the caller reads as a failure.
    ///
    /// # Errors
    /// When a subscription cannot be made.
    async fn serve_exports<H, F>(
        &self,
        client: &Arc<Client>,
        id: &str,
        instance: &str,
        functions: Vec<(String, Vec<Type>, Vec<Type>)>,
        handle: H,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>, WrpcError>
    where
        H: Fn(String, Option<String>, Vec<Val>) -> F + Clone + Send + Sync + 'static,
        F: std::future::Future<Output = Result<Vec<Val>, crate::wasm::invoke::Fault>> + Send + 'static,
    {
        // Every function's subscription at once: each one waits for the server's answer to a
        // flush, and made in turn they were one round trip per function on every scale.
        let served = futures::future::try_join_all(functions.iter().map(|(func, _, _)| async move {
            let paths: Arc<[Box<[Option<usize>]>]> = Arc::new([]);
            wrpc_transport::Serve::serve(&**client, instance, func, paths)
                .await
                .map_err(|e| WrpcError::Serve { id: id.to_string(), what: format!("{instance}.{func}"), reason: format!("{e:#}") })
        }))
        .await?;
        let mut tasks = Vec::new();
        for ((func, params_ty, results_ty), invocations) in functions.iter().zip(served) {
            let (params_ty, results_ty) = (params_ty.clone(), results_ty.clone());
            let (engine, client, handle, name) = (self.engine.clone(), client.clone(), handle.clone(), format!("{instance}.{func}"));
            let values = self.values.clone();
            let queue_wait = self.queue_wait;
            let (params_ty, results_ty) = (Arc::new(params_ty), Arc::new(results_ty));
            tasks.push(tokio::spawn(async move {
                let mut invocations = std::pin::pin!(invocations);
                while let Some(invocation) = invocations.next().await {
                    let (cx, outgoing, incoming) = match invocation {
                        Ok(i) => i,
                        Err(e) => {
                            debug!(function = %name, error = %e, "bad wRPC invocation");
                            continue;
                        }
                    };
                    let (engine, client, handle, name) = (engine.clone(), client.clone(), handle.clone(), name.clone());
                    let (params_ty, results_ty) = (params_ty.clone(), results_ty.clone());
                    // Held until the call is over: the parameters live that long.
                    let mut budget = values.budget(MAX_CALL_VALUE_BYTES);
                    tokio::spawn(async move {
                        let source = cx
                            .headers
                            .as_ref()
                            .and_then(|h| h.get(trellis_messages::invocation::SOURCE_ID_HEADER))
                            .map(|v| v.as_str().to_string());
                        let mut store = codec_store(&engine, client);
                        let mut incoming = std::pin::pin!(incoming);
                        let mut outgoing = std::pin::pin!(outgoing);
                        // wRPC has no error frame: a failed call closes the results empty, so
                        // the caller fails at once on the missing results instead of waiting
                        // for its own timeout. Not for a function without results, where an
                        // empty close would read as success: that caller waits for its timeout.
                        let fail_fast = !results_ty.is_empty();
                        let mut params = Vec::with_capacity(params_ty.len());
                        for (i, ty) in params_ty.iter().enumerate() {
                            // A caller that stops sending part way holds its budget only this
                            // long (as long as a call may wait for an instance).
                            let read = tokio::time::timeout(queue_wait, read_plain(&mut incoming, ty, &mut budget)).await;
                            let read = read.unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("the parameters did not arrive within {queue_wait:?}"))));
                            match read {
                                Ok(v) => params.push(v),
                                Err(e) => {
                                    warn!(function = %name, parameter = i, error = %e, "cannot decode a wRPC parameter");
                                    if fail_fast {
                                        let _ = outgoing.shutdown().await;
                                    }
                                    return;
                                }
                            }
                        }
                        let results = match handle(name.clone(), source, params).await {
                            Ok(r) => r,
                            Err(e) => {
                                warn!(function = %name, error = %e, "wRPC call to a component failed");
                                if fail_fast {
                                    let _ = outgoing.shutdown().await;
                                }
                                return;
                            }
                        };
                        let mut buf = BytesMut::new();
                        for (v, ty) in results.iter().zip(results_ty.iter()) {
                            let mut enc =
                                ValEncoder::<_, wrpc_transport_nats::SubjectWriter>::new(store.as_context_mut(), ty, &[], &[]);
                            if let Err(e) = enc.encode(v, &mut buf) {
                                warn!(function = %name, error = %e, "cannot encode a wRPC result");
                                if fail_fast {
                                    let _ = outgoing.shutdown().await;
                                }
                                return;
                            }
                        }
                        if let Err(e) = outgoing.write_all(&buf).await {
                            debug!(function = %name, error = %e, "cannot send wRPC results");
                        }
                        let _ = outgoing.shutdown().await;
                    });
                }
            }));
        }
        Ok(tasks)
    }

    /// Serves every export of component `id` that wRPC can carry, calling it through
    /// `local` (the same instance slots and limits as any call): its resource-free functions,
    /// and `wasi:http/incoming-handler` as `wrpc:http/incoming-handler` ([`super::wrpc_http`]).
    /// The tasks end when aborted.
    ///
    /// # Errors
    /// When a subscription cannot be made.
    pub async fn serve_component(
        &self,
        id: &str,
        component: &crate::wasm::PreparedComponent,
        local: crate::wasm::transport::local::LocalComponents,
        runtime: Arc<crate::wasm::WasmRuntime>,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>, WrpcError> {
        let exports = component.wrpc_exports();
        if !component.serves_http() && exports.is_empty() {
            return Ok(Vec::new());
        }
        // One wRPC client (one inbox subscription) per component, for all it serves.
        let prefix = trellis_messages::subjects::wrpc_prefix(&self.lattice, id);
        let client = Client::new(self.nats.clone(), prefix.clone(), Some(prefix.into()))
            .await
            .map_err(|e| WrpcError::Serve { id: id.to_string(), what: "its exports".into(), reason: format!("{e:#}") })?;
        let client = Arc::new(client);
        let http = async {
            match component.serves_http() {
                true => super::wrpc_http::serve(client.clone(), id, local.clone(), runtime.clone(), self.http_body).await.map(|t| vec![t]),
                false => Ok(Vec::new()),
            }
        };
        let instances = futures::future::try_join_all(exports.into_iter().map(|(instance, functions)| {
            let (id_owned, local, runtime, client) = (id.to_string(), local.clone(), runtime.clone(), client.clone());
            let handle = move |function: String, source: Option<String>, params: Vec<Val>| {
                let (id, local, runtime) = (id_owned.clone(), local.clone(), runtime.clone());
                async move {
                    debug!(component_id = %id, %function, source = source.as_deref().unwrap_or(""), "wRPC call to a component");
                    let target = local.get(&id).ok_or_else(|| {
                        crate::wasm::invoke::Fault::new(trellis_messages::invocation::FaultKind::Host, format!("component `{id}` no longer runs here"))
                    })?;
                    target.call(&runtime, &id, &function, params, source.as_deref().unwrap_or("wrpc")).await
                }
            };
            async move { self.serve_exports(&client, id, &instance, functions, handle).await }
        }));
        let (http, instances) = futures::future::try_join(http, instances).await?;
        Ok(http.into_iter().chain(instances.into_iter().flatten()).collect())
    }
}

#[cfg(test)]
mod target_bound_tests {
    use super::*;

    #[test]
    fn idle_targets_are_let_go_past_the_bound_busy_ones_kept() {
        let mut map: HashMap<String, Arc<tokio::sync::Semaphore>> = HashMap::new();
        let busy = Arc::new(tokio::sync::Semaphore::new(4));
        let permit = busy.clone().try_acquire_owned().expect("a permit");
        map.insert("busy".into(), busy);
        for i in 0..7 {
            map.insert(format!("idle{i}"), Arc::new(tokio::sync::Semaphore::new(4)));
        }
        let idle = |s: &Arc<tokio::sync::Semaphore>| Arc::strong_count(s) == 1 && s.available_permits() == 4;
        evict_idle(&mut map, 16, idle);
        assert_eq!(map.len(), 8, "under the bound nothing goes");
        evict_idle(&mut map, 8, idle);
        assert_eq!(map.keys().collect::<Vec<_>>(), vec!["busy"], "at the bound the idle go, the one in use stays");
        drop(permit);
        evict_idle(&mut map, 1, idle);
        assert!(map.is_empty());
    }
}
