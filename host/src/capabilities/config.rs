//! `wasi:config/store`, and `wasi:config/runtime` (its earlier name, which components built for
//! wasmCloud 1.x import), 0.2.0-draft: the component's named configs, as the capability
//! resolver merges them. Bound with `bindgen!` from `wit/echo/deps/config` ([`bindings`]); this
//! host never returns the interfaces' error.
//!
//! A component that declares these functions with a signature of its own fails to scale, naming
//! the import (the types are checked when the component is linked, not when it calls).

use wasmtime::component::Linker;

use crate::capabilities::view::{view, HasView, View};
use crate::wasm::state::GuestState;

/// The host side of `wasi:config/store` and `wasi:config/runtime`, generated from their WIT.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/echo/deps/config",
        inline: "package trellis:host-config; world imports { import wasi:config/store@0.2.0-draft; import wasi:config/runtime@0.2.0-draft; }",
        imports: { default: trappable },
    });
}

use bindings::wasi::config::{runtime, store};

/// Links `import` (`wasi:config/store` or `wasi:config/runtime`, 0.2.0-draft).
///
/// # Errors
/// When the linker refuses a definition.
pub(crate) fn link(linker: &mut Linker<GuestState>, import: &str) -> wasmtime::Result<()> {
    if import.starts_with("wasi:config/runtime@") {
        runtime::add_to_linker::<GuestState, HasView>(linker, view)
    } else {
        store::add_to_linker::<GuestState, HasView>(linker, view)
    }
}

impl View<'_> {
    /// The component's merged configs (none without a lattice).
    fn configs(&self) -> std::collections::BTreeMap<String, String> {
        self.context().map(|c| c.resolver.config(&c.config_names)).unwrap_or_default()
    }
}

impl store::Host for View<'_> {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, store::Error>> {
        Ok(Ok(self.configs().remove(&key)))
    }

    fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, store::Error>> {
        Ok(Ok(self.configs().into_iter().collect()))
    }
}

impl runtime::Host for View<'_> {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, runtime::ConfigError>> {
        Ok(Ok(self.configs().remove(&key)))
    }

    fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, runtime::ConfigError>> {
        Ok(Ok(self.configs().into_iter().collect()))
    }
}
