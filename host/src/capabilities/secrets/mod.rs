//! `wasmcloud:secrets` 0.1.0-draft (`store`, `reveal`), which wasmCloud 1.x components import to
//! read secrets, bound with `bindgen!` from `wit/secrets/`.
//!
//! A component is given the secrets its config names refer to, fetched from the secrets backend
//! when it was prepared ([`crate::secrets`]); `get` hands out a handle to one of those by the
//! name the reference gives it, `reveal` its value. A name it was not given is `not-found`, as
//! on a wasmCloud host. A handle the table does not hold (forged, dropped) stops the call.

use tracing::debug;
use wasmtime::component::{Linker, Resource};

use crate::capabilities::view::{view, HasView, View};
use crate::wasm::state::GuestState;

/// The host side of `wasmcloud:secrets`, generated from its WIT.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/secrets",
        world: "wasmcloud:secrets/imports",
        imports: { default: trappable },
        with: { "wasmcloud:secrets/store.secret": super::Secret },
    });
}

use bindings::wasmcloud::secrets::{reveal, store};

/// A handle to one of the component's secrets: its name, never its value.
#[derive(Debug)]
pub struct Secret(String);

/// Links `import` (`wasmcloud:secrets/store` or `reveal`, 0.1.0-draft).
///
/// # Errors
/// When the linker refuses a definition.
pub(crate) fn link(linker: &mut Linker<GuestState>, import: &str) -> wasmtime::Result<()> {
    if import.starts_with("wasmcloud:secrets/reveal") {
        reveal::add_to_linker::<GuestState, HasView>(linker, view)
    } else {
        store::add_to_linker::<GuestState, HasView>(linker, view)
    }
}

impl store::Host for View<'_> {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Resource<Secret>, store::SecretsError>> {
        let given = self.context().is_some_and(|c| c.secrets.has(&key));
        if !given {
            // The key is the component's to choose and may be anything: not logged.
            debug!(key_bytes = key.len(), "secret asked for that the component was not given");
            return Ok(Err(store::SecretsError::NotFound));
        }
        Ok(Ok(self.table().push(Secret(key))?))
    }
}

impl store::HostSecret for View<'_> {
    fn drop(&mut self, secret: Resource<Secret>) -> wasmtime::Result<()> {
        self.table().delete(secret)?;
        Ok(())
    }
}

impl reveal::Host for View<'_> {
    fn reveal(&mut self, secret: Resource<Secret>) -> wasmtime::Result<store::SecretValue> {
        // Only a handle the table holds, which `get` put there for a secret the component has.
        let name = self.table().get(&secret)?.0.clone();
        let value = self.context().and_then(|c| c.secrets.expose(&name)).ok_or_else(|| wasmtime::Error::msg("the secret is no longer held"))?;
        Ok(match value {
            crate::secrets::SecretValue::String(s) => store::SecretValue::String(s),
            crate::secrets::SecretValue::Bytes(b) => store::SecretValue::Bytes(b),
        })
    }
}
