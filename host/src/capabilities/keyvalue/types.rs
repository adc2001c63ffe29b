//! The values `wasi:keyvalue` hands a guest, whichever backend serves it.

use wasmtime::component::{ComponentType, Lift, Lower};

/// `wasi:keyvalue/store.error`.
#[derive(ComponentType, Lift, Lower, Clone, Debug, PartialEq, Eq)]
#[component(variant)]
pub enum KvError {
    /// The bucket does not exist.
    #[component(name = "no-such-store")]
    NoSuchStore,
    /// The component may not use it (no link).
    #[component(name = "access-denied")]
    AccessDenied,
    /// Anything else, with a message.
    #[component(name = "other")]
    Other(String),
}

/// `wasi:keyvalue/store.key-response`.
#[derive(ComponentType, Lift, Lower, Clone, Debug)]
#[component(record)]
pub struct KeyResponse {
    /// The keys of this page.
    pub keys: Vec<String>,
    /// Where the next page starts, if there is one.
    pub cursor: Option<u64>,
}

/// `KvError::Other` with `e`'s message.
pub fn other(e: impl std::fmt::Display) -> KvError {
    KvError::Other(e.to_string())
}
