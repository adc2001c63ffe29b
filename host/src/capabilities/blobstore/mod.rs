//! `wasi:blobstore` 0.2.0-draft (the interfaces wasmCloud 1.x components import) on the
//! lattice's NATS object store: the built-in `blobstore-nats` provider, in-process.
//!
//! Bound with `bindgen!` ([`bindings`]): the host traits are implemented on
//! [`View`](super::view::View), the call's store, and every guest-visible error is a [`BlobError`] mapped to the
//! interface's `error` string through `trappable_error_type` (a bad resource handle traps; a
//! refusal or a backend failure is the guest's `error`).
//!
//! Every call asks the capability resolver ([`crate::permission::Resolver::blobstore`]) where
//! the component's link to `wasi:blobstore/blobstore` (under the link name the guest chose, else
//! `default`) goes:
//! - the built-in `blobstore-nats`: a container is an object-store bucket of the lattice with
//!   the container's name, as wasmCloud's `provider-blobstore-nats` keeps them, never one of the
//!   lattice's own buckets, and one the link reaches
//!   ([`crate::permission::Resolver::blob_container`]);
//! - an external provider (wasmCloud's `blobstore-fs`, `blobstore-s3`, …): its own containers,
//!   over wRPC ([`provider`]), as wasmCloud hosts reach them.
//!
//! Object bodies stream through bounded buffers both ways ([`values`]): a write holds at most
//! [`values::WRITE_CHUNKS`] chunks of [`values::CHUNK`] bytes between the guest and the object
//! store, and a read pulls the object's chunks a few at a time as the guest takes them
//! ([`chunks`]), or a window of [`provider::READ_WINDOW`] bytes at a time from a provider, so an
//! object of any size moves through the host in bounded memory. `consume-sync` (the whole object as one list) stops at [`values::MAX_SYNC_BYTES`].

mod chunks;
mod container;
mod objects;
mod provider;
mod values;

use std::sync::Arc;

use tracing::debug;
use wasmtime::component::{Linker, ResourceTableError};

use super::view::{view, HasView, View};
use crate::permission::{BlobstoreTarget, Capability, Denied, ProviderGrant};
use crate::capabilities::context::ImportContext;
use crate::wasm::state::GuestState;
pub use container::{Container, ObjectNames};
pub use provider::{NAMES_PAGE, READ_WINDOW};
pub use values::{IncomingValue, OutgoingValue};

/// The host side of `wasi:blobstore`, generated from its WIT (`wit/blobstore/`); `wasi:io` is
/// wasmtime-wasi's, so streams handed out here are the guest's ordinary WASI streams.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/blobstore",
        world: "wasi:blobstore/imports",
        imports: { default: async | trappable },
        trappable_error_type: { "wasi:blobstore/types.error" => super::BlobError },
        with: {
            "wasi:io/streams": wasmtime_wasi::p2::bindings::io::streams,
            "wasi:io/poll": wasmtime_wasi::p2::bindings::io::poll,
            "wasi:io/error": wasmtime_wasi::p2::bindings::io::error,
            "wasi:blobstore/types.outgoing-value": super::OutgoingValue,
            "wasi:blobstore/types.incoming-value": super::IncomingValue,
            "wasi:blobstore/container.container": super::Container,
            "wasi:blobstore/container.stream-object-names": super::ObjectNames,
        },
    });
}

use bindings::wasi::blobstore::{blobstore, container as container_iface, types};

/// Longest object name a guest may use, in bytes.
pub const MAX_OBJECT_NAME_BYTES: usize = 1024;

/// Why a blobstore call failed: what the guest sees as the interface's `error` (its message),
/// except [`BlobError::Trap`], which stops the call.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The capability resolver refused (no link, wrong provider, a container the link does not
    /// reach).
    #[error("access denied: {0}")]
    Denied(#[from] Denied),
    /// The component was prepared without a lattice (no links, no object store).
    #[error("wasi:blobstore is not available here: the component runs without a lattice")]
    NoLattice,
    /// The container does not exist.
    #[error("container `{0}` does not exist")]
    NoSuchContainer(String),
    /// The object does not exist.
    #[error("object `{object}` does not exist in container `{container}`")]
    NoSuchObject {
        /// The container.
        container: String,
        /// The object.
        object: String,
    },
    /// An object name that is empty or too long.
    #[error("object names are 1 to {MAX_OBJECT_NAME_BYTES} bytes; this one is {0} bytes")]
    BadObjectName(usize),
    /// A container name for a provider that is empty or too long.
    #[error("container names are 1 to {MAX_OBJECT_NAME_BYTES} bytes; this one is {0} bytes")]
    BadContainerName(usize),
    /// `get-data` with `end` before `start`.
    #[error("`end` ({end}) is before `start` ({start})")]
    BadRange {
        /// Where the read was to start.
        start: u64,
        /// Where it was to end.
        end: u64,
    },
    /// `consume-sync` of a value larger than it returns.
    #[error("the value is {size} bytes, more than the {limit} bytes `incoming-value-consume-sync` returns; use `incoming-value-consume-async`")]
    TooLarge {
        /// The value's size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The call already holds as many values of a kind as it may.
    #[error("a call holds at most {max} {what} at once; finish or drop one first")]
    Busy {
        /// What is counted.
        what: &'static str,
        /// The bound.
        max: usize,
    },
    /// A function used out of order (e.g. `write-data` twice with one value).
    #[error("{0}")]
    Usage(&'static str),
    /// The object store failed.
    #[error("{op}: {reason}")]
    Backend {
        /// What was being done.
        op: String,
        /// What the object store said.
        reason: String,
    },
    /// Not a guest-visible error: the call stops (a bad handle, a host fault).
    #[error(transparent)]
    Trap(wasmtime::Error),
}

impl From<ResourceTableError> for BlobError {
    fn from(e: ResourceTableError) -> Self {
        Self::Trap(e.into())
    }
}

impl BlobError {
    /// A backend failure of `op`.
    fn backend(op: impl Into<String>, e: impl std::fmt::Display) -> Self {
        Self::Backend { op: op.into(), reason: e.to_string() }
    }
}

/// Links `wasi:blobstore/blobstore`, `container` or `types` (`import`, version 0.2.0-draft).
///
/// # Errors
/// When the linker refuses a definition.
pub fn link(linker: &mut Linker<GuestState>, import: &str) -> wasmtime::Result<()> {
    let interface = import.split('@').next().unwrap_or(import);
    match interface {
        "wasi:blobstore/blobstore" => blobstore::add_to_linker::<GuestState, HasView>(linker, view),
        "wasi:blobstore/container" => container_iface::add_to_linker::<GuestState, HasView>(linker, view),
        _ => types::add_to_linker::<GuestState, HasView>(linker, view),
    }
}

/// What a call may use: the component's context and where its blobstore link goes.
struct Granted {
    ctx: Arc<ImportContext>,
    backing: Backing,
}

/// The store behind a component's blobstore link.
enum Backing {
    /// The built-in provider on the lattice's object store, with the link's grant.
    Builtin(ProviderGrant),
    /// An external provider, over wRPC.
    Provider(provider::ProviderStore),
}

impl Granted {
    /// Whether the grant reaches container `name`: on the object store, as the resolver says;
    /// on a provider, any name of a bounded length (the provider says which it serves).
    fn container(&self, name: &str) -> Result<(), BlobError> {
        match &self.backing {
            Backing::Builtin(grant) => self.ctx.resolver.blob_container(grant, name).map_err(|e| {
                debug!(component_id = %self.ctx.source_id, container = name, "blobstore container refused: {e}");
                BlobError::Denied(e)
            }),
            Backing::Provider(_) if name.is_empty() || name.len() > MAX_OBJECT_NAME_BYTES => Err(BlobError::BadContainerName(name.len())),
            Backing::Provider(_) => Ok(()),
        }
    }
}

/// The component's blobstore grant, asked when the call starts.
fn granted(view: &View<'_>) -> Result<Granted, BlobError> {
    let ctx = view.context().ok_or(BlobError::NoLattice)?;
    let link = view.link_name(Capability::Blobstore);
    let target = ctx.resolver.blobstore(&ctx.source_id, link).map_err(|e| {
        debug!(component_id = %ctx.source_id, "blobstore refused: {e}");
        BlobError::Denied(e)
    })?;
    let backing = match target {
        BlobstoreTarget::Builtin(grant) => Backing::Builtin(grant),
        BlobstoreTarget::ExternalProvider(provider) => Backing::Provider(provider::ProviderStore { provider, link_name: link.to_string() }),
    };
    Ok(Granted { ctx, backing })
}

/// Refuses an empty or over-long object name.
fn check_object_name(name: &str) -> Result<(), BlobError> {
    if name.is_empty() || name.len() > MAX_OBJECT_NAME_BYTES {
        return Err(BlobError::BadObjectName(name.len()));
    }
    Ok(())
}

impl types::Host for View<'_> {
    fn convert_error(&mut self, err: BlobError) -> wasmtime::Result<types::Error> {
        match err {
            BlobError::Trap(e) => Err(e),
            other => Ok(other.to_string()),
        }
    }
}

impl blobstore::Host for View<'_> {
    async fn create_container(&mut self, name: String) -> Result<wasmtime::component::Resource<Container>, BlobError> {
        let g = granted(self)?;
        g.container(&name)?;
        let container = objects::create(&g, &name).await?;
        Ok(self.table().push(container)?)
    }

    async fn get_container(&mut self, name: String) -> Result<wasmtime::component::Resource<Container>, BlobError> {
        let g = granted(self)?;
        g.container(&name)?;
        let container = objects::open(&g, &name).await?;
        Ok(self.table().push(container)?)
    }

    async fn delete_container(&mut self, name: String) -> Result<(), BlobError> {
        let g = granted(self)?;
        g.container(&name)?;
        objects::delete(&g, &name).await
    }

    async fn container_exists(&mut self, name: String) -> Result<bool, BlobError> {
        let g = granted(self)?;
        g.container(&name)?;
        objects::exists(&g, &name).await
    }

    async fn copy_object(&mut self, src: types::ObjectId, dest: types::ObjectId) -> Result<(), BlobError> {
        let g = granted(self)?;
        g.container(&src.container)?;
        g.container(&dest.container)?;
        check_object_name(&src.object)?;
        check_object_name(&dest.object)?;
        objects::copy(&g, &src, &dest, false).await
    }

    async fn move_object(&mut self, src: types::ObjectId, dest: types::ObjectId) -> Result<(), BlobError> {
        let g = granted(self)?;
        g.container(&src.container)?;
        g.container(&dest.container)?;
        check_object_name(&src.object)?;
        check_object_name(&dest.object)?;
        objects::copy(&g, &src, &dest, true).await
    }
}
