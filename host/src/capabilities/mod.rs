//! Every capability the host serves, one module each: what a component imports from the host
//! (`config`, `logging`, `bus`, `keyvalue`, `messaging::consumer`, `blobstore`, `http_client`, `secrets`), and the built-in providers
//! that deliver to components (`http_server`, `messaging::handler`, `schedule`, each a
//! `FollowLinks` run by `providers::follower`). What any of them may reach is decided in
//! [`crate::permission`], never here.
//!
//! The interfaces served to components are in one list ([`SERVED`]): a new capability the host
//! serves is one entry here and one module beside it. A component's imports
//! are matched against the list once, when it is prepared (at scale time); an import the list
//! does not serve becomes a link call ([`crate::capabilities::imports`]) when its functions can cross to
//! another component or provider, and otherwise fails the scale, naming the import.

pub mod blobstore;
pub mod bus;
pub mod config;
pub mod context;
pub mod http_client;
pub mod http_server;
pub mod imports;
pub mod keyvalue;
pub mod logging;
pub mod messaging;
pub mod schedule;
pub mod secrets;
pub mod view;

use std::sync::Arc;

use wasmtime::component::Linker;

use crate::capabilities::context::ImportContext;
use logging::Rate;
use crate::wasm::state::GuestState;

/// What linking one served import needs.
pub struct Linking<'a> {
    /// The component's linker.
    pub linker: &'a mut Linker<GuestState>,
    /// The import's full name (`ns:pkg/iface@version`).
    pub import: &'a str,
    /// The component's context (its id, links, the lattice).
    pub ctx: &'a Arc<ImportContext>,
    /// The component's one log rate, however many `wasi:logging` versions it imports.
    pub log_rate: &'a Arc<Rate>,
}

impl std::fmt::Debug for Linking<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Linking").field("import", &self.import).finish_non_exhaustive()
    }
}

/// One interface the host serves: the import names it matches and how it is linked.
pub struct Served {
    /// Matches imports whose name starts with it (`ns:pkg/iface@`, any version), and the
    /// interface's name with no version.
    pub prefix: &'static str,
    /// What it is, for errors and docs.
    pub what: &'static str,
    /// Defines the import's functions in the linker.
    pub link: fn(&mut Linking<'_>) -> wasmtime::Result<()>,
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Served").field("prefix", &self.prefix).field("what", &self.what).finish_non_exhaustive()
    }
}

/// Every interface the host serves itself (beyond the WASI 0.2 it links for every component).
pub const SERVED: &[Served] = &[
    Served { prefix: "wasi:config/store@", what: "the component's named configs", link: |l| config::link(l.linker, l.import) },
    Served {
        prefix: "wasi:config/runtime@",
        what: "the component's named configs (wasi:config/store's earlier name)",
        link: |l| config::link(l.linker, l.import),
    },
    Served {
        prefix: "wasi:logging/logging@",
        what: "the host's log, with the component id",
        link: |l| logging::link(l.linker, l.import, &l.ctx.source_id, l.log_rate),
    },
    Served { prefix: "wasmcloud:bus/lattice@", what: "choosing link names", link: |l| bus::link(l.linker, l.import) },
    Served {
        prefix: "wasmcloud:messaging/consumer@",
        what: "publish and request through a messaging link",
        link: |l| messaging::consumer::link_consumer(l.linker),
    },
    Served { prefix: "wasmcloud:messaging/types@0.3", what: "messages and clients of wasmcloud:messaging 0.3", link: |l| messaging::v0_3::link(l.linker, l.import) },
    Served { prefix: "wasmcloud:messaging/producer@0.3", what: "send through a messaging link (0.3)", link: |l| messaging::v0_3::link(l.linker, l.import) },
    Served {
        prefix: "wasmcloud:messaging/request-reply@0.3",
        what: "request and reply through a messaging link (0.3)",
        link: |l| messaging::v0_3::link(l.linker, l.import),
    },
    Served { prefix: "wasi:keyvalue/store@", what: "key-value through a key-value link", link: |l| keyvalue::link(l.linker, l.import) },
    Served { prefix: "wasi:keyvalue/atomics@", what: "key-value counters through a key-value link", link: |l| keyvalue::link(l.linker, l.import) },
    Served { prefix: "wasi:keyvalue/batch@", what: "many keys at once through a key-value link", link: |l| keyvalue::link(l.linker, l.import) },
    Served { prefix: "wasi:blobstore/blobstore@", what: "containers of a blobstore link", link: |l| blobstore::link(l.linker, l.import) },
    Served { prefix: "wasi:blobstore/container@", what: "objects of a blobstore container", link: |l| blobstore::link(l.linker, l.import) },
    Served { prefix: "wasi:blobstore/types@", what: "streamed object bodies of a blobstore", link: |l| blobstore::link(l.linker, l.import) },
    Served { prefix: "wasmcloud:secrets/store@", what: "the component's secrets, fetched from its secrets backend", link: |l| secrets::link(l.linker, l.import) },
    Served { prefix: "wasmcloud:secrets/reveal@", what: "a secret's value", link: |l| secrets::link(l.linker, l.import) },
];

/// The entry that serves `import`, if any: any version of its interface, or the interface with
/// no version at all (`wasi:logging/logging`, as some wasmCloud 1.x components import it).
pub fn find(import: &str) -> Option<&'static Served> {
    SERVED.iter().find(|s| import.starts_with(s.prefix) || s.prefix.strip_suffix('@') == Some(import))
}

/// Why a component cannot run here: an import nothing serves.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// An interface no capability serves, whose functions cannot be a link call.
    #[error(
        "the component imports `{0}`, which this host does not serve and which cannot be a link call to another component or provider (it uses resources, streams or futures)"
    )]
    NotServed(String),
    /// Something other than an interface instance (a bare function or type).
    #[error("the component imports `{0}`, which is not an interface; this host serves only interfaces")]
    NotAnInterface(String),
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_import_has_one_entry() {
        for s in super::SERVED {
            // Any version (`…@`), or one major line (`…@0.3`, beside another line's entry).
            assert!(s.prefix.ends_with('@') || s.prefix.rsplit_once('@').is_some_and(|(_, v)| !v.is_empty()), "{}", s.prefix);
            assert_eq!(super::SERVED.iter().filter(|o| o.prefix.starts_with(s.prefix) || s.prefix.starts_with(o.prefix)).count(), 1, "{}", s.prefix);
        }
        assert!(super::find("wasi:keyvalue/store@0.2.0-draft").is_some());
        assert!(super::find("wasi:blobstore/blobstore@0.2.0-draft").is_some());
        assert!(super::find("wasi:nothing/here@0.1.0").is_none());
        assert!(super::find("wasi:logging/logging").is_some(), "an unversioned import");
        assert!(super::find("wasi:logging/logging-extra").is_none());
        assert!(super::find("wasmcloud:messaging/producer@0.3.0").is_some());
        assert!(super::find("wasmcloud:messaging/types@0.2.0").is_none(), "0.2's types carry no resources");
    }
}
