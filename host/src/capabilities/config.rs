//! `wasi:config/store`, and `wasi:config/runtime` (its earlier name, which components built for
//! wasmCloud 1.x import): the component's named configs, as the capability resolver merges
//! them. Both have the same two functions; only the name of their error type differs, and this
//! host never returns that error.

use std::sync::Arc;

use wasmtime::component::{Linker, Val};

use crate::wasm::context::ImportContext;
use crate::wasm::state::GuestState;

/// Links `get` and `get-all` of `import` (`wasi:config/store` or `wasi:config/runtime`, any
/// version).
pub(crate) fn link(linker: &mut Linker<GuestState>, import: &str, ctx: &Arc<ImportContext>) -> wasmtime::Result<()> {
    let mut instance = linker.instance(import)?;
    let c = ctx.clone();
    let name: Arc<str> = import.into();
    instance.func_new("get", move |_, _, params, results| {
        let key = match params.first() {
            Some(Val::String(k)) => k.clone(),
            _ => return Err(wasmtime::Error::msg(format!("{name}.get expects a string key"))),
        };
        let value = c.resolver.config(&c.config_names).get(&key).cloned();
        set_result(results, &name, "get", Val::Result(Ok(Some(Box::new(Val::Option(value.map(|v| Box::new(Val::String(v)))))))))
    })?;
    let c = ctx.clone();
    let name: Arc<str> = import.into();
    instance.func_new("get-all", move |_, _, _, results| {
        let pairs = c
            .resolver
            .config(&c.config_names)
            .into_iter()
            .map(|(k, v)| Val::Tuple(vec![Val::String(k), Val::String(v)]))
            .collect();
        set_result(results, &name, "get-all", Val::Result(Ok(Some(Box::new(Val::List(pairs))))))
    })?;
    Ok(())
}

/// Writes the one result of `{import}.{function}`. The slot count comes from the
/// signature the guest declared for its import, which may not be the real one: a guest that
/// declares no result gets an error, not a host panic (and wasmtime checks the value's type).
fn set_result(results: &mut [Val], import: &str, function: &str, value: Val) -> wasmtime::Result<()> {
    match results {
        [slot] => {
            *slot = value;
            Ok(())
        }
        _ => Err(wasmtime::Error::msg(format!(
            "{import}.{function} is imported with {} results; its signature has one",
            results.len()
        ))),
    }
}

