//! One invocation: fresh store and instance, WAVE in and out, faults named.

use std::time::{Duration, Instant};

use trellis_messages::invocation::{FaultKind, InvocationRequest};
use wasmtime::component::Val;
use wasmtime::{Store, Trap, UpdateDeadline};

use crate::permission::reply_grant;
use crate::wasm::engine::WasmRuntime;
use crate::wasm::prepared::{ExportedFunc, PreparedComponent};
use crate::wasm::state::GuestState;

/// Why a call failed, in words a caller can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The kind of failure.
    pub kind: FaultKind,
    /// What happened.
    pub message: String,
}

impl Fault {
    /// A fault of `kind`.
    pub fn new(kind: FaultKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The error the epoch callback raises when an invocation runs past its deadline.
#[derive(Debug)]
struct DeadlineExceeded(Duration);

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ran past the deadline of {:?}", self.0)
    }
}

impl std::error::Error for DeadlineExceeded {}

/// The export `function` of `component`, or a fault listing what it exports.
///
/// # Errors
/// [`FaultKind::NoSuchFunction`].
pub fn lookup<'a>(component_id: &str, component: &'a PreparedComponent, function: &str) -> Result<&'a ExportedFunc, Fault> {
    component.function(function).ok_or_else(|| {
        Fault::new(
            FaultKind::NoSuchFunction,
            format!(
                "component `{component_id}` exports no function `{function}`; it exports: {}",
                component.function_names().join(", ")
            ),
        )
    })
}

/// How a host answers an invocation message that is not JSON. A messaging provider that
/// forwards a message to a host of an earlier Trellis, which reads every invocation as JSON,
/// recognises the refusal by it (and sends WAVE instead).
pub const NOT_AN_INVOCATION: &str = "invocation request is not valid JSON";

/// Parses the WAVE arguments of `request` against the signature of the function it names.
///
/// # Errors
/// [`FaultKind::NoSuchFunction`] or [`FaultKind::BadArguments`], naming what is wrong.
pub fn parse_args(component_id: &str, component: &PreparedComponent, request: &InvocationRequest) -> Result<Vec<Val>, Fault> {
    let function = request.function.as_str();
    let args = &request.args;
    let func = lookup(component_id, component, function)?;
    if args.len() != func.params.len() {
        let expected: Vec<String> = func.params.iter().map(|(n, t)| format!("{n}: {}", type_name(t))).collect();
        return Err(Fault::new(
            FaultKind::BadArguments,
            format!("`{function}` takes {} argument(s) ({}), got {}", func.params.len(), expected.join(", "), args.len()),
        ));
    }
    args.iter()
        .zip(&func.params)
        .enumerate()
        .map(|(i, (arg, (name, ty)))| {
            Val::from_wave(ty, arg).map_err(|e| {
                Fault::new(
                    FaultKind::BadArguments,
                    format!("argument {} (`{name}`: {}) of `{function}` is not valid WAVE for its type: {e}", i + 1, type_name(ty)),
                )
            })
        })
        .collect()
}

/// Calls `function` of `component` with typed `params` (no text round trip: local link calls
/// use this directly).
///
/// # Errors
/// A [`Fault`]: unknown function, wrong arity, trap, deadline, memory limit.
pub async fn invoke_vals(
    runtime: &WasmRuntime,
    component_id: &str,
    component: &PreparedComponent,
    function: &str,
    params: Vec<Val>,
) -> Result<Vec<Val>, Fault> {
    let func = lookup(component_id, component, function)?;
    if params.len() != func.params.len() {
        return Err(Fault::new(
            FaultKind::BadArguments,
            format!("`{function}` takes {} argument(s), got {}", func.params.len(), params.len()),
        ));
    }
    let mut store = new_store(runtime, component);
    store.data_mut().reply_to = reply_grant(function, &params);
    let deadline = store.data().deadline;
    let call = async {
        let instance = func_instance(&mut store, component).await.map_err(|e| classify(&store, component_id, function, &e))?;
        let Some(callee) = instance.get_func(&mut store, func.index) else {
            return Err(Fault::new(FaultKind::NoSuchFunction, format!("component `{component_id}` lost export `{function}`")));
        };
        let mut results = vec![Val::Bool(false); func.results.len()];
        callee
            .call_async(&mut store, &params, &mut results)
            .await
            .map_err(|e| classify(&store, component_id, function, &e))?;
        Ok(results)
    };
    within_deadline(deadline, runtime.config().max_execution_time, component_id, function, call).await
}

/// Calls `function` of `component` with typed `params`, lowered straight into guest memory: a
/// `list<u8>` passed as `Vec<u8>` costs its bytes, where as `Val`s it costs 48 bytes a byte.
/// `reply_to` is the reply subject the call may publish on (a messaging delivery's).
///
/// # Errors
/// As [`invoke_vals`]; [`FaultKind::BadArguments`] when the export's signature is not `P -> R`.
pub async fn invoke_typed<P, R>(
    runtime: &WasmRuntime,
    component_id: &str,
    component: &PreparedComponent,
    function: &str,
    params: P,
    reply_to: Option<String>,
) -> Result<R, Fault>
where
    P: wasmtime::component::ComponentNamedList + wasmtime::component::Lower + Send + Sync,
    R: wasmtime::component::ComponentNamedList + wasmtime::component::Lift + Send + Sync + 'static,
{
    let func = lookup(component_id, component, function)?;
    let mut store = new_store(runtime, component);
    store.data_mut().reply_to = reply_to;
    call_typed(runtime, component_id, component, function, func.index, store, |_| Ok(params)).await
}

/// As [`invoke_typed`], with parameters made in the call's own guest state by `make` (a
/// resource handed to the guest lives in its table).
///
/// # Errors
/// As [`invoke_typed`], and `make`'s fault.
pub async fn invoke_typed_with<P, R>(
    runtime: &WasmRuntime,
    component_id: &str,
    component: &PreparedComponent,
    function: &str,
    make: impl FnOnce(&mut GuestState) -> Result<P, Fault> + Send,
) -> Result<R, Fault>
where
    P: wasmtime::component::ComponentNamedList + wasmtime::component::Lower + Send + Sync,
    R: wasmtime::component::ComponentNamedList + wasmtime::component::Lift + Send + Sync + 'static,
{
    let func = lookup(component_id, component, function)?;
    let store = new_store(runtime, component);
    call_typed(runtime, component_id, component, function, func.index, store, make).await
}

async fn call_typed<P, R>(
    runtime: &WasmRuntime,
    component_id: &str,
    component: &PreparedComponent,
    function: &str,
    index: wasmtime::component::ComponentExportIndex,
    mut store: Store<GuestState>,
    make: impl FnOnce(&mut GuestState) -> Result<P, Fault> + Send,
) -> Result<R, Fault>
where
    P: wasmtime::component::ComponentNamedList + wasmtime::component::Lower + Send + Sync,
    R: wasmtime::component::ComponentNamedList + wasmtime::component::Lift + Send + Sync + 'static,
{
    let deadline = store.data().deadline;
    let call = async {
        let instance = func_instance(&mut store, component).await.map_err(|e| classify(&store, component_id, function, &e))?;
        let typed = instance.get_typed_func::<P, R>(&mut store, index).map_err(|e| {
            Fault::new(FaultKind::BadArguments, format!("`{function}` of component `{component_id}` does not have the signature expected: {e}"))
        })?;
        let params = make(store.data_mut())?;
        typed.call_async(&mut store, params).await.map_err(|e| classify(&store, component_id, function, &e))
    };
    within_deadline(deadline, runtime.config().max_execution_time, component_id, function, call).await
}

/// Runs `call` (a whole invocation: wasm and the host calls it makes) until `deadline`; past
/// it the call is dropped — its store, instance and pending host calls with it — and the
/// result is the `deadline` fault. The epoch callback stops wasm that runs; this stops a guest
/// that waits in a host call (a long `poll`, a slow request).
///
/// # Errors
/// The call's own fault, or [`FaultKind::Deadline`].
pub async fn within_deadline<T>(
    deadline: Instant,
    limit: Duration,
    component_id: &str,
    function: &str,
    call: impl std::future::Future<Output = Result<T, Fault>>,
) -> Result<T, Fault> {
    match tokio::time::timeout_at(deadline.into(), call).await {
        Ok(result) => result,
        Err(_) => Err(Fault::new(
            FaultKind::Deadline,
            format!("`{function}` of component `{component_id}` ran past the host's deadline of {limit:?} and was stopped"),
        )),
    }
}

/// A fresh store for one call of `component`: memory limit, deadline (the guest yields every
/// epoch tick and is stopped past the deadline), outgoing HTTP only when the resolver grants it.
pub fn new_store(runtime: &WasmRuntime, component: &PreparedComponent) -> Store<GuestState> {
    let limit = runtime.config().max_execution_time;
    let deadline = Instant::now() + limit;
    let mut store = store_for(runtime, component, deadline);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Err(wasmtime::Error::new(DeadlineExceeded(limit)))
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store
}

/// A store for an instance that serves many requests (`transport::http_pool`): as
/// [`new_store`], but each request's deadline is kept by the pool, which drops the whole
/// instance when one runs past it; each request moves `deadline` to its own.
///
/// Wasm that runs past the latest request's deadline by one more deadline (a guest still busy
/// after it answered, with no request of its own) is stopped: the instance ends.
pub fn new_reused_store(runtime: &WasmRuntime, component: &PreparedComponent) -> Store<GuestState> {
    let limit = runtime.config().max_execution_time;
    let mut store = store_for(runtime, component, Instant::now() + limit);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |store| {
        if Instant::now() >= store.data().deadline + limit {
            Err(wasmtime::Error::new(DeadlineExceeded(limit)))
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store
}

fn store_for(runtime: &WasmRuntime, component: &PreparedComponent, deadline: Instant) -> Store<GuestState> {
    let config = runtime.config();
    let max_memory = usize::try_from(component.limits.max_memory(config.max_component_memory)).unwrap_or(usize::MAX);
    let http = component.imports.as_ref().filter(|_| component.imports_outgoing_http).map(|ctx| ctx.outgoing_http.hooks());
    let mut store = Store::new(runtime.engine(), GuestState::new(max_memory, http, deadline));
    store.data_mut().imports = component.imports.clone();
    store.limiter(|state| &mut state.limiter);
    store
}

async fn func_instance(
    store: &mut Store<GuestState>,
    component: &PreparedComponent,
) -> wasmtime::Result<wasmtime::component::Instance> {
    component.pre.instantiate_async(store).await
}

/// Turns a failed call into a [`Fault`] naming what happened.
pub fn classify(store: &Store<GuestState>, component_id: &str, function: &str, error: &wasmtime::Error) -> Fault {
    classify_state(store.data(), component_id, function, error)
}

/// As [`classify`], from the store's data (what a concurrent task reaches).
pub fn classify_state(state: &GuestState, component_id: &str, function: &str, error: &wasmtime::Error) -> Fault {
    let at = format!("`{function}` of component `{component_id}`");
    if let Some(DeadlineExceeded(limit)) = error.downcast_ref::<DeadlineExceeded>() {
        return Fault::new(FaultKind::Deadline, format!("{at} ran past the host's deadline of {limit:?} and was stopped"));
    }
    let limiter = &state.limiter;
    if limiter.refused {
        return Fault::new(
            FaultKind::MemoryLimit,
            format!(
                "{at} needed more than the memory limit of {} MiB per component and was stopped ({})",
                limiter.max_memory >> 20,
                describe(error)
            ),
        );
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        let what = match trap {
            Trap::StackOverflow => "exhausted its call stack (too deep recursion)".to_string(),
            Trap::UnreachableCodeReached => "trapped: the guest aborted (a panic, or `unreachable`)".to_string(),
            Trap::MemoryOutOfBounds => {
                "trapped: out of bounds memory access (often the guest's own stack overflowing)".to_string()
            }
            other => format!("trapped: {other}"),
        };
        return Fault::new(FaultKind::Trap, format!("{at} {what}"));
    }
    Fault::new(FaultKind::Host, format!("{at} failed: {}", describe(error)))
}

/// The trap, or the first line of the error chain (the rest is a wasm backtrace).
fn describe(error: &wasmtime::Error) -> String {
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return trap.to_string();
    }
    // Skip the wasm backtrace wrapper: the message a host function failed with is underneath.
    error
        .chain()
        .map(ToString::to_string)
        .find(|m| !m.starts_with("error while executing at wasm backtrace"))
        .unwrap_or_else(|| format!("{error}"))
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn type_name(ty: &wasmtime::component::Type) -> String {
    use wasmtime::component::Type as T;
    match ty {
        T::Bool => "bool".into(),
        T::S8 => "s8".into(),
        T::U8 => "u8".into(),
        T::S16 => "s16".into(),
        T::U16 => "u16".into(),
        T::S32 => "s32".into(),
        T::U32 => "u32".into(),
        T::S64 => "s64".into(),
        T::U64 => "u64".into(),
        T::Float32 => "f32".into(),
        T::Float64 => "f64".into(),
        T::Char => "char".into(),
        T::String => "string".into(),
        T::List(l) => format!("list<{}>", type_name(&l.ty())),
        T::Option(o) => format!("option<{}>", type_name(&o.ty())),
        T::Result(_) => "result".into(),
        T::Record(_) => "record".into(),
        T::Tuple(_) => "tuple".into(),
        T::Variant(_) => "variant".into(),
        T::Enum(_) => "enum".into(),
        T::Flags(_) => "flags".into(),
        T::Own(_) | T::Borrow(_) => "resource".into(),
        _ => "value".into(),
    }
}

#[cfg(test)]
mod tests {
    /// What the README says a running NATS invocation's arguments cost: a `Val` per element of
    /// a `list<u8>`, 48 bytes each (40 before component-model async added its `future` and `stream` values), for at least two bytes of WAVE text (`0,`).
    #[test]
    fn a_val_is_40_bytes() {
        assert_eq!(std::mem::size_of::<wasmtime::component::Val>(), 48);
    }
}
