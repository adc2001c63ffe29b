//! The view of a call's store that capabilities bound with `bindgen!` implement their host
//! traits on. `bindgen!`'s `add_to_linker` takes a plain function from the store's data to the
//! view, so what a host function needs beyond its arguments is reached through the store: the
//! resource table, the component's import context (its id, links, the lattice), the link name
//! the guest chose for a capability.

use std::sync::Arc;

use wasmtime::component::{HasData, ResourceTable};

use crate::lattice::state::DEFAULT_LINK_NAME;
use crate::permission::Capability;
use crate::capabilities::context::ImportContext;
use crate::wasm::state::GuestState;

/// One call's store, seen by a capability's host traits.
pub struct View<'a>(&'a mut GuestState);

impl std::fmt::Debug for View<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View").finish_non_exhaustive()
    }
}

/// The [`HasData`] whose data is a [`View`]: the `D` of every `add_to_linker::<GuestState, D>`.
#[derive(Debug)]
pub struct HasView;

impl HasData for HasView {
    type Data<'a> = View<'a>;
}

/// The getter handed to `add_to_linker`.
pub fn view(state: &mut GuestState) -> View<'_> {
    View(state)
}

impl View<'_> {
    /// The guest's resource table.
    pub fn table(&mut self) -> &mut ResourceTable {
        self.0.table()
    }

    /// What capability `T` keeps for this call (made on first use).
    pub fn call_state<T: Default + Clone + Send + Sync + 'static>(&mut self) -> &mut T {
        self.0.extensions.get_or_insert_default::<T>()
    }

    /// The component's import context; `None` for a component prepared without a lattice.
    pub fn context(&self) -> Option<Arc<ImportContext>> {
        self.0.imports.as_ref().and_then(|c| Arc::clone(&c.data).downcast::<ImportContext>().ok())
    }

    /// The link name the guest chose for `capability` (`wasmcloud:bus/lattice`), else `default`.
    pub fn link_name(&self, capability: Capability) -> &str {
        self.0.link_name(capability.key()).unwrap_or(DEFAULT_LINK_NAME)
    }

    /// The link name the guest chose for interface `key` (`ns:pkg/iface`), else `default`.
    pub fn chosen_link(&self, key: &str) -> &str {
        self.0.link_name(key).unwrap_or(DEFAULT_LINK_NAME)
    }

    /// The reply subject of the message this invocation handles, if any.
    pub fn reply_to(&self) -> Option<&str> {
        self.0.reply_to.as_deref()
    }

    /// When this invocation's deadline passes.
    pub fn deadline(&self) -> std::time::Instant {
        self.0.deadline
    }
}
