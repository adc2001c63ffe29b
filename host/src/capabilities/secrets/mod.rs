//! `wasmcloud:secrets` 0.1.0-draft (`store`, `reveal`), which wasmCloud 1.x components import to
//! read secrets, bound with `bindgen!` from `wit/secrets/`.
//!
//! Not yet backed (issue 28): this host fetches no secret from a secrets backend, so no
//! component is given one, and every `get` answers `not-found`, as a wasmCloud 1.x host answers a
//! component with no secrets configured. A component that imports the interfaces runs; one that
//! reads a secret only on some paths serves the others (wasmCloud's `http-password-checker`).
//! Since no secret is ever handed out, `reveal` cannot be reached with a real handle; a forged
//! one stops the call.

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

/// A secret handed to a component. None is made yet: no backend is asked.
#[derive(Debug)]
pub struct Secret(());

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
        // The key is the component's to choose and may name a secret: not logged.
        debug!(key_bytes = key.len(), "secret asked for; none is given to components yet");
        Ok(Err(store::SecretsError::NotFound))
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
        // Only a handle the table holds could be revealed, and none is ever put there.
        self.table().get(&secret)?;
        Err(wasmtime::Error::msg("no secret is handed out by this host"))
    }
}
