//! `wasmcloud:bus/lattice` 1.x and 2.x: a guest chooses which link its next calls into an
//! interface use (2.x's `set-link-name` returns `result<_, string>`; 1.x's traps on a refusal).
//! Each choice is bounded ([`MAX_LINK_NAME_BYTES`]); what the guest's store keeps is bounded in
//! [`GuestState::set_link_name`].

use tracing::debug;
use wasmtime::component::{Linker, Resource, ResourceType};

use crate::wasm::state::{GuestState, MAX_LINK_NAME_BYTES};

/// A `wasmcloud:bus/lattice.call-target-interface` a guest made.
#[derive(Debug)]
pub struct CallTargetInterface {
    key: String,
}

/// Makes link `name` the one for `interfaces` for the rest of the invocation: `Err` with why
/// when the choice cannot be kept (the outer error is a bad handle).
fn choose(state: &mut GuestState, name: &str, interfaces: Vec<Resource<CallTargetInterface>>) -> wasmtime::Result<Result<(), String>> {
    if name.len() > MAX_LINK_NAME_BYTES {
        return Ok(Err(format!("set-link-name: a link name of {} bytes is longer than {MAX_LINK_NAME_BYTES}", name.len())));
    }
    for r in interfaces {
        let target = state.table().delete(r)?;
        debug!(link = %name, interface = %target.key, "guest chose a link name");
        if let Err(e) = state.set_link_name(target.key, name) {
            return Ok(Err(e.to_string()));
        }
    }
    Ok(Ok(()))
}

/// `wasmcloud:bus/lattice` (1.x and 2.x): `set-link-name` makes the rest of this invocation's calls into the
/// given interfaces go through link `name`.
pub(crate) fn link(linker: &mut Linker<GuestState>, import: &str) -> wasmtime::Result<()> {
    let mut instance = linker.instance(import)?;
    instance.resource("call-target-interface", ResourceType::host::<CallTargetInterface>(), |mut store, rep| {
        store.data_mut().table().delete(Resource::<CallTargetInterface>::new_own(rep))?;
        Ok(())
    })?;
    instance.func_wrap(
        "[constructor]call-target-interface",
        |mut store, (ns, pkg, iface): (String, String, String)| -> wasmtime::Result<(Resource<CallTargetInterface>,)> {
            let key = format!("{ns}:{pkg}/{iface}");
            if key.len() > MAX_LINK_NAME_BYTES {
                return Err(wasmtime::Error::msg(format!(
                    "call-target-interface: `{}…` is longer than {MAX_LINK_NAME_BYTES} bytes",
                    super::logging::clip(&key, 64)
                )));
            }
            Ok((store.data_mut().table().push(CallTargetInterface { key })?,))
        },
    )?;
    if import.starts_with("wasmcloud:bus/lattice@1.") {
        // 1.x: `set-link-name` returns nothing; a choice it cannot keep stops the call.
        instance.func_wrap("set-link-name", |mut store, (name, interfaces): (String, Vec<Resource<CallTargetInterface>>)| -> wasmtime::Result<()> {
            choose(store.data_mut(), &name, interfaces)?.map_err(wasmtime::Error::msg)
        })?;
    } else {
        // 2.x: `result<_, string>`: the guest hears why.
        instance.func_wrap(
            "set-link-name",
            |mut store, (name, interfaces): (String, Vec<Resource<CallTargetInterface>>)| -> wasmtime::Result<(Result<(), String>,)> {
                Ok((choose(store.data_mut(), &name, interfaces)?,))
            },
        )?;
    }
    Ok(())
}

