//! `wasi:config/store`: the component's named configs, as the capability resolver merges them.

use std::sync::Arc;

use wasmtime::component::{Linker, Val};

use crate::wasm::context::ImportContext;
use crate::wasm::state::GuestState;

/// Links `wasi:config/store` (`get`, `get-all`) for `import` (any version).
pub(crate) fn link(linker: &mut Linker<GuestState>, import: &str, ctx: &Arc<ImportContext>) -> wasmtime::Result<()> {
    let mut instance = linker.instance(import)?;
    let c = ctx.clone();
    instance.func_new("get", move |_, _, params, results| {
        let key = match params.first() {
            Some(Val::String(k)) => k.clone(),
            _ => return Err(wasmtime::Error::msg("wasi:config/store.get expects a string key")),
        };
        let value = c.resolver.config(&c.config_names).get(&key).cloned();
        set_result(results, "get", Val::Result(Ok(Some(Box::new(Val::Option(value.map(|v| Box::new(Val::String(v)))))))))
    })?;
    let c = ctx.clone();
    instance.func_new("get-all", move |_, _, _, results| {
        let pairs = c
            .resolver
            .config(&c.config_names)
            .into_iter()
            .map(|(k, v)| Val::Tuple(vec![Val::String(k), Val::String(v)]))
            .collect();
        set_result(results, "get-all", Val::Result(Ok(Some(Box::new(Val::List(pairs))))))
    })?;
    Ok(())
}

/// Writes the one result of `wasi:config/store.{function}`. The slot count comes from the
/// signature the guest declared for its import, which may not be the real one: a guest that
/// declares no result gets an error, not a host panic (and wasmtime checks the value's type).
fn set_result(results: &mut [Val], function: &str, value: Val) -> wasmtime::Result<()> {
    match results {
        [slot] => {
            *slot = value;
            Ok(())
        }
        _ => Err(wasmtime::Error::msg(format!(
            "wasi:config/store.{function} is imported with {} results; its signature has one",
            results.len()
        ))),
    }
}

