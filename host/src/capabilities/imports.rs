//! What a component imports beyond WASI 0.2, resolved per component when it is prepared:
//!
//! * an interface no host capability provides (e.g. `trellis:echo/echo`): every function is
//!   linked to a host function that looks up the component's link for that interface **at call
//!   time** (so a link put or deleted anywhere changes running components at once), then calls
//!   the target in-process when it runs on this host, or over NATS otherwise;
//! * an interface the host serves itself (the list in [`crate::capabilities`]): linked as that entry says;
//! * anything else (an interface with streams or futures no capability serves, a bare
//!   function): the component fails to prepare, naming the import.
//!
//! The resources of a linked interface are the target's: the guest holds handles whose bytes
//! the target chose ([`crate::wasm::transport::handles`]), carried over wRPC as wasmCloud
//! carries them. So a call with handles goes only to a target that keeps its resources between
//! calls, an external provider; a component runs a fresh instance per call, and a handle to it
//! would outlive what it names, so such a call to a component fails, saying so.
//!
//! A call through an import with no link fails with a message naming the missing link; the
//! guest traps (a WIT signature has no error case to carry it) and the caller of the guest gets
//! that message.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tracing::trace;
use trellis_messages::invocation::{InvocationRequest, InvocationResponse, LINK_NAME_HEADER, SOURCE_ID_HEADER};
use wasmtime::component::types::{ComponentItem, ComponentFunc};
use wasmtime::component::{Component, Linker, Type, Val};

use crate::permission::{Callee, Denied};
use crate::lattice::state::DEFAULT_LINK_NAME;
pub use crate::capabilities::context::ImportContext;
use crate::wasm::state::GuestState;
use crate::wasm::transport::elsewhere::Reached;
use crate::wasm::transport::handles::{self, crossable, has_handles, Handle};

/// WASI 0.2 packages the host's base linker provides.
const WASI_PROVIDED: &[&str] =
    &["wasi:cli/", "wasi:io/", "wasi:clocks/", "wasi:random/", "wasi:filesystem/", "wasi:sockets/", "wasi:http/"];

/// `ns:pkg/iface@version` split up.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InterfaceName {
    ns: String,
    pkg: String,
    iface: String,
}

impl InterfaceName {
    /// `ns:pkg/iface`, the key a chosen link name is kept under.
    fn key(&self) -> String {
        format!("{}:{}/{}", self.ns, self.pkg, self.iface)
    }
}

fn parse_interface(name: &str) -> Option<InterfaceName> {
    let (ns, rest) = name.split_once(':')?;
    let (pkg, iface) = rest.split_once('/')?;
    let iface = iface.split_once('@').map_or(iface, |(i, _)| i);
    Some(InterfaceName { ns: ns.into(), pkg: pkg.into(), iface: iface.into() })
}

/// Defines, in `linker`, every import of `component` the base linker does not provide and the
/// host can provide. Imports left undefined make `instantiate_pre` fail with the import named.
///
/// # Errors
/// When the linker refuses a definition (a bug, not a guest fault).
pub fn link_imports(linker: &mut Linker<GuestState>, component: &Component, ctx: &Arc<ImportContext>) -> wasmtime::Result<()> {
    let engine = ctx.runtime.engine().clone();
    // One log rate for the component, however many `wasi:logging` versions it imports.
    let log_rate = Arc::new(crate::capabilities::logging::Rate::new());
    for (name, item) in component.component_type().imports(&engine) {
        if WASI_PROVIDED.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let ComponentItem::ComponentInstance(instance) = item else {
            return Err(crate::capabilities::ImportError::NotAnInterface(name.to_string()).into());
        };
        let funcs: Vec<(String, ComponentFunc)> = instance
            .exports(&engine)
            .filter_map(|(n, item)| match item {
                ComponentItem::ComponentFunc(f) => Some((n.to_string(), f)),
                _ => None,
            })
            .collect();
        if let Some(served) = crate::capabilities::find(name) {
            (served.link)(&mut crate::capabilities::Linking { linker, import: name, ctx, log_rate: &log_rate })?;
        } else if let Some(iface) = parse_interface(name).filter(|_| linkable(&instance, &engine)) {
            let resources: Vec<String> = instance
                .exports(&engine)
                .filter_map(|(n, item)| matches!(item, ComponentItem::Resource(_)).then(|| n.to_string()))
                .collect();
            // (An interface of types alone needs no definitions.)
            if !funcs.is_empty() || !resources.is_empty() {
                link_interface(linker, name, &iface, &funcs, &resources, ctx)?;
            }
        } else {
            return Err(crate::capabilities::ImportError::NotServed(name.to_string()).into());
        }
    }
    Ok(())
}

/// Whether every export of an imported interface can cross to another component or provider:
/// functions of values that can ([`crossable`]: plain values, and handles of the interface's
/// own resources, which are the target's), its resources and other types.
fn linkable(instance: &wasmtime::component::types::ComponentInstance, engine: &wasmtime::Engine) -> bool {
    let own: Vec<wasmtime::component::ResourceType> = instance
        .exports(engine)
        .filter_map(|(_, item)| match item {
            ComponentItem::Resource(r) => Some(r),
            _ => None,
        })
        .collect();
    instance.exports(engine).all(|(_, item)| match item {
        ComponentItem::ComponentFunc(f) => f.params().all(|(_, t)| crossable(&t, &own)) && f.results().all(|t| crossable(&t, &own)),
        ComponentItem::Type(_) | ComponentItem::Resource(_) => true,
        _ => false,
    })
}

/// Whether a call of `f` carries resource handles.
fn carries_handles(f: &ComponentFunc) -> bool {
    f.params().any(|(_, t)| has_handles(&t)) || f.results().any(|t| has_handles(&t))
}

fn link_interface(
    linker: &mut Linker<GuestState>,
    import: &str,
    iface: &InterfaceName,
    funcs: &[(String, ComponentFunc)],
    resources: &[String],
    ctx: &Arc<ImportContext>,
) -> wasmtime::Result<()> {
    let mut instance = linker.instance(import)?;
    // The target's resources: the guest holds their handles; dropping one forgets its bytes
    // (wRPC has no call to tell the target).
    for resource in resources {
        instance.resource(resource, wasmtime::component::ResourceType::host::<Handle>(), |mut store, rep| {
            store.data_mut().table().delete(wasmtime::component::Resource::<Handle>::new_own(rep))?;
            Ok(())
        })?;
    }
    for (fname, fty) in funcs {
        let ctx = ctx.clone();
        let iface = iface.clone();
        let function = Function { import: import.to_string(), name: fname.clone() };
        let with_handles = carries_handles(fty);
        instance.func_new_async(fname, move |mut store, ty, params, results| {
            let ctx = ctx.clone();
            let iface = iface.clone();
            let function = function.clone();
            let link_name = store.data().link_name(&iface.key()).unwrap_or(DEFAULT_LINK_NAME).to_string();
            Box::new(async move {
                // Resolved once: the spy names the target the call went to, and handles go only
                // back to the target that issued them.
                let callee = ctx.resolver.callee(&ctx.source_id, &link_name, &iface.ns, &iface.pkg, &iface.iface).map_err(LinkCallError::from);
                let mut params = params.to_vec();
                let mut outgoing = handles::Outgoing::default();
                if with_handles {
                    for (v, (_, t)) in params.iter_mut().zip(ty.params()) {
                        handles::each_handle(v, &t, &mut |resource, owned| handle_of(&mut store, resource, owned, &mut outgoing))?;
                    }
                    if let Ok(Callee::ExternalProvider(provider)) = &callee {
                        if let Some(other) = outgoing.issuers.iter().find(|i| *i != provider) {
                            return Err(wasmtime::Error::msg(format!(
                                "`{function}` through link `{link_name}` passes a handle of `{other}` to `{provider}`: a handle goes back only to the target that issued it"
                            )));
                        }
                    }
                }
                let issuer = match &callee {
                    Ok(Callee::ExternalProvider(provider)) => provider.clone(),
                    _ => String::new(),
                };
                let out = call_link(&ctx, callee, &link_name, &function, &ty, params, with_handles.then_some(&outgoing.bytes[..])).await.map_err(wasmtime::Error::msg)?;
                if out.len() != results.len() {
                    return Err(wasmtime::Error::msg(format!(
                        "`{function}` returned {} results where {} were expected",
                        out.len(),
                        results.len()
                    )));
                }
                results.clone_from_slice(&out);
                if with_handles {
                    for (v, t) in results.iter_mut().zip(ty.results()) {
                        handles::each_handle(v, &t, &mut |handle, _| resource_of(&mut store, &handle, &issuer))?;
                    }
                }
                Ok(())
            })
        })?;
    }
    Ok(())
}

/// The guest's handle `resource` added to the call's `outgoing` handles; the stand-in for it.
/// An owned one leaves the guest's table (it is given to the target).
fn handle_of(store: &mut wasmtime::StoreContextMut<'_, GuestState>, resource: Val, owned: bool, outgoing: &mut handles::Outgoing) -> wasmtime::Result<Val> {
    let Val::Resource(any) = resource else { return Err(wasmtime::Error::msg("a resource parameter that is not a resource")) };
    let resource: wasmtime::component::Resource<Handle> = any.try_into_resource(&mut *store)?;
    let stand_in = if owned { outgoing.add(&store.data_mut().table().delete(resource)?) } else { outgoing.add(store.data_mut().table().get(&resource)?) };
    Ok(stand_in?)
}

/// A new guest handle for `issuer`'s `handle` (its bytes, standing in); counted against the
/// guest's table bound.
fn resource_of(store: &mut wasmtime::StoreContextMut<'_, GuestState>, handle: &Val, issuer: &str) -> wasmtime::Result<Val> {
    let bytes = handles::handle_bytes(handle).ok_or_else(|| wasmtime::Error::msg("a resource result that is not a handle"))?;
    let resource = store.data_mut().table().push(Handle { issuer: issuer.to_string(), bytes })?;
    Ok(Val::Resource(resource.try_into_resource_any(&mut *store)?))
}

/// An imported function: the import (`ns:pkg/iface@version`) and the function's name.
#[derive(Debug, Clone)]
struct Function {
    import: String,
    name: String,
}

impl std::fmt::Display for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.import, self.name)
    }
}

/// Why a link call failed; the calling guest traps with its text.
#[derive(Debug, thiserror::Error)]
pub enum LinkCallError {
    /// No link, or the resolver refused it.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The external provider the link targets failed or did not answer.
    #[error("call from `{source_id}` to provider `{provider}` ({function}, link `{link}`) failed: {reason}")]
    Provider { source_id: String, provider: String, function: String, link: String, reason: Box<crate::wasm::transport::wrpc::WrpcError> },
    /// The component the link targets failed, did not answer, or answered what does not decode.
    #[error("call from `{source_id}` to `{target}` ({function}, link `{link}`) failed: {reason}")]
    Component { source_id: String, target: String, function: String, link: String, reason: String },
}

async fn call_link(
    ctx: &ImportContext,
    callee: Result<Callee, LinkCallError>,
    link_name: &str,
    function: &Function,
    ty: &ComponentFunc,
    params: Vec<Val>,
    handles: Option<&[Bytes]>,
) -> Result<Vec<Val>, LinkCallError> {
    if !ctx.spy.armed() {
        return call_callee(ctx, callee?, link_name, function, ty, params, handles).await;
    }
    let peer = match &callee {
        Ok(Callee::Component(target)) => target.clone(),
        Ok(Callee::ExternalProvider(provider)) => provider.clone(),
        Err(_) => "(no link)".to_string(),
    };
    let began = std::time::Instant::now();
    let result = match callee {
        Ok(callee) => call_callee(ctx, callee, link_name, function, ty, params, handles).await,
        Err(e) => Err(e),
    };
    let outcome = if result.is_ok() { "ok" } else { "error" };
    ctx.spy.record(trellis_messages::spy::Direction::Out, &function.to_string(), &peer, None, began.elapsed(), outcome);
    result
}

/// A link call to the target the link resolved to.
async fn call_callee(
    ctx: &ImportContext,
    callee: Callee,
    link_name: &str,
    function: &Function,
    ty: &ComponentFunc,
    params: Vec<Val>,
    handles: Option<&[Bytes]>,
) -> Result<Vec<Val>, LinkCallError> {
    let target = match callee {
        Callee::Component(target) => target,
        Callee::ExternalProvider(provider) => {
            trace!(source = %ctx.source_id, %provider, %function, "link call to an external provider over wRPC");
            return call_over_wrpc(ctx, &provider, link_name, function, ty, &params, handles.unwrap_or_default(), ctx.runtime.config().max_execution_time)
                .await
                .map_err(|reason| LinkCallError::Provider {
                    source_id: ctx.source_id.clone(),
                    provider: provider.clone(),
                    function: function.to_string(),
                    link: link_name.to_string(),
                    reason: Box::new(reason),
                });
        }
    };
    let name = function.to_string();
    let failed = |e: &dyn std::fmt::Display| LinkCallError::Component {
        source_id: ctx.source_id.clone(),
        target: target.clone(),
        function: name.clone(),
        link: link_name.to_string(),
        reason: e.to_string(),
    };
    if handles.is_some() {
        return Err(failed(&"the call carries resource handles, and a component keeps no resource between calls (each runs in a fresh instance): link this interface to a provider"));
    }
    if let Some(local) = ctx.local.get(&target) {
        trace!(source = %ctx.source_id, %target, function = %name, "local link call");
        return local.call(&ctx.runtime, &target, &name, params, &ctx.source_id).await.map_err(|f| failed(&f));
    }
    // The same deadline for wRPC as Trellis's request/reply: the callee's execution and queue
    // wait.
    let component_timeout = ctx.runtime.config().max_execution_time + ctx.runtime.config().max_queue_wait;
    let request_reply = async {
        trace!(source = %ctx.source_id, %target, function = %name, "link call over NATS");
        let encoded = params.iter().map(Val::to_wave).collect::<Result<Vec<_>, _>>().map_err(|e| failed(&e));
        let body = match encoded.and_then(|args| serde_json::to_vec(&InvocationRequest { function: name.clone(), args }).map_err(|e| failed(&e))) {
            Ok(body) => body,
            Err(e) => return Ok(Err(e)),
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(SOURCE_ID_HEADER, ctx.source_id.as_str());
        headers.insert(LINK_NAME_HEADER, link_name);
        let span = tracing::debug_span!(target: crate::telemetry::TARGET, "link", source = %ctx.source_id, callee = %target, function = %name);
        crate::telemetry::inject_nats(&span, &mut headers);
        let timeout = component_timeout + Duration::from_secs(1);
        // The request carries the call's own deadline: the connection's default (10 s) would
        // end a longer one early.
        let request = ctx.nats.send_request(
            ctx.subjects.invocation(&target),
            async_nats::Request::new().headers(headers).payload(Bytes::from(body)).timeout(Some(timeout)),
        );
        match tracing::Instrument::instrument(tokio::time::timeout(timeout, request), span).await {
            Err(_) => Ok(Err(failed(&format!("no reply within {timeout:?}")))),
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => Err(()),
            Ok(Err(e)) => Ok(Err(failed(&e))),
            Ok(Ok(msg)) => Ok(Ok(msg)),
        }
    };
    // No Trellis host runs it: a wasmCloud 1.x host serves its components over wRPC only
    // (README, "Calls across host kinds").
    let over_wrpc = || async {
        match call_over_wrpc(ctx, &target, link_name, function, ty, &params, &[], component_timeout).await {
            Err(crate::wasm::transport::wrpc::WrpcError::NotServing { .. }) => None,
            answered => Some(answered.map_err(|e| failed(&e))),
        }
    };
    let reply = match ctx.wrpc.elsewhere().reach(&target, request_reply, over_wrpc).await {
        Reached::Trellis(reply) => reply?,
        Reached::Wrpc(results) => return results,
        Reached::Nowhere(()) => return Err(failed(&format!("component `{target}` is not running on any host"))),
    };
    let response: InvocationResponse = serde_json::from_slice(&reply.payload).map_err(|e| failed(&e))?;
    match (response.results, response.error) {
        (Some(results), _) => {
            let types: Vec<Type> = ty.results().collect();
            if results.len() != types.len() {
                return Err(failed(&format!("{} results where {} were expected", results.len(), types.len())));
            }
            results.iter().zip(&types).map(|(r, t)| Val::from_wave(t, r).map_err(|e| failed(&e))).collect()
        }
        (None, Some(error)) => Err(failed(&error)),
        (None, None) => Err(failed(&"empty reply")),
    }
}

/// Calls `function` of `target` (an external provider, or a component on a host that speaks
/// only wRPC) over wRPC, as the caller's link `link_name`, ending at `timeout`.
#[allow(clippy::too_many_arguments)] // one call's parts, each used once
async fn call_over_wrpc(
    ctx: &ImportContext,
    target: &str,
    link_name: &str,
    function: &Function,
    ty: &ComponentFunc,
    params: &[Val],
    handles: &[Bytes],
    timeout: Duration,
) -> Result<Vec<Val>, crate::wasm::transport::wrpc::WrpcError> {
    let params_ty: Vec<Type> = ty.params().map(|(_, t)| t).collect();
    let results_ty: Vec<Type> = ty.results().collect();
    ctx.wrpc.call_with_handles(&ctx.source_id, link_name, target, &function.import, &function.name, params, &params_ty, &results_ty, handles, timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names() {
        assert_eq!(
            parse_interface("trellis:echo/echo@0.1.0"),
            Some(InterfaceName { ns: "trellis".into(), pkg: "echo".into(), iface: "echo".into() })
        );
        assert_eq!(parse_interface("wasi:keyvalue/store").map(|i| i.iface), Some("store".into()));
        assert_eq!(parse_interface("nonsense"), None);
    }
}
