//! Calling a component's exports over NATS.
//!
//! A component serves every export on one subject, `trellis.rpc.{lattice}.{component_id}`
//! ([`crate::Subjects::invocation`]), in a queue group named after the component id, so every
//! host running the component shares the calls and a host that stops drops out of the group.
//! A request is an [`InvocationRequest`]; the reply is an [`InvocationResponse`].
//! Values travel as WAVE text (the WebAssembly Value Encoding: `"hi"`, `42`, `ok("x")`,
//! `[1, 2]`, `{a: 1}`), typed by the export's signature on the serving host.
//!
//! Unlike the wRPC NATS transport, a failed call is answered: the reply names the fault
//! (a trap, the deadline, the memory limit, an unknown function, bad arguments), so the caller
//! never waits for a timeout to learn that the guest failed.

use serde::{Deserialize, Serialize};

/// Header naming the calling component (absent for calls from outside the lattice's components).
pub const SOURCE_ID_HEADER: &str = "source-id";
/// Header naming the link a call went through.
pub const LINK_NAME_HEADER: &str = "link-name";

/// Header marking an invocation message as something other than an [`InvocationRequest`]:
/// [`HTTP_KIND`] or [`MESSAGE_KIND`].
pub const KIND_HEADER: &str = "Trellis-Kind";
/// [`KIND_HEADER`] of an HTTP request for the component's `wasi:http/incoming-handler` (an HTTP
/// server provider on another host forwards it): the body is the HTTP body, the other HTTP
/// headers travel as NATS headers.
pub const HTTP_KIND: &str = "http";
/// [`KIND_HEADER`] of a message for the component's `wasmcloud:messaging/handler` (a messaging
/// provider on another host forwards it): the body is the message's body, as it arrived; its
/// subject and reply subject travel in [`MESSAGE_SUBJECT_HEADER`] and
/// [`MESSAGE_REPLY_TO_HEADER`]. The reply is an [`InvocationResponse`] whose one result is the
/// handler's, in WAVE (`ok`, `err("…")`).
pub const MESSAGE_KIND: &str = "message";
/// [`KIND_HEADER`] of a key-value change for the component's `wasi:keyvalue/watcher`, forwarded
/// by the host of the built-in key-value provider that watches for it: the value (of a set) as
/// the payload, the key in [`WATCH_KEY_HEADER`], `set` or `delete` in [`WATCH_OP_HEADER`], the
/// provider in `Trellis-Source-Id` and the link in `Trellis-Link-Name` (the receiving host
/// checks that link before it calls). The reply is an [`InvocationResponse`] with no result.
pub const WATCH_KIND: &str = "kv-watch";
/// Bucket of a forwarded key-value change (the receiving host requires its own reading of the
/// link to name the same).
pub const WATCH_BUCKET_HEADER: &str = "Trellis-Watch-Bucket";
/// Key of a forwarded key-value change.
pub const WATCH_KEY_HEADER: &str = "Trellis-Watch-Key";
/// `set` or `delete`: what a forwarded key-value change did.
pub const WATCH_OP_HEADER: &str = "Trellis-Watch-Op";
/// Subject of a forwarded message.
pub const MESSAGE_SUBJECT_HEADER: &str = "Trellis-Subject";
/// Reply subject of a forwarded message (absent when it has none).
pub const MESSAGE_REPLY_TO_HEADER: &str = "Trellis-Reply-To";
/// Method of a forwarded HTTP request.
pub const HTTP_METHOD_HEADER: &str = "Trellis-Method";
/// Path and query of a forwarded HTTP request.
pub const HTTP_URI_HEADER: &str = "Trellis-Uri";
/// Status of the reply to a forwarded HTTP request (its body is the response body).
pub const HTTP_STATUS_HEADER: &str = "Trellis-Status";

/// A call of one export function.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationRequest {
    /// The function: `ns:pkg/interface.func` (the package version may be given as
    /// `ns:pkg/interface@1.0.0.func` or left out), or `func` for a function the component
    /// exports at the top level.
    pub function: String,
    /// The arguments, one WAVE value per parameter.
    #[serde(default)]
    pub args: Vec<String>,
}

/// What went wrong in a failed call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// The component has no such export.
    NoSuchFunction,
    /// The arguments do not match the function's parameters.
    BadArguments,
    /// The guest trapped (a panic, an `unreachable`, a stack overflow, …).
    Trap,
    /// The call ran past the host's per-invocation deadline.
    Deadline,
    /// The guest needed more memory than the per-component limit.
    MemoryLimit,
    /// The call waited too long for a free instance slot (`max_instances`).
    Busy,
    /// The host could not run the call (it is stopping, or instantiation failed).
    Host,
    /// The lattice's policy service did not permit the call.
    Denied,
}

impl FaultKind {
    /// The kind as it appears in JSON (`no-such-function`, `trap`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoSuchFunction => "no-such-function",
            Self::BadArguments => "bad-arguments",
            Self::Trap => "trap",
            Self::Deadline => "deadline",
            Self::MemoryLimit => "memory-limit",
            Self::Busy => "busy",
            Self::Host => "host",
            Self::Denied => "denied",
        }
    }
}

/// The reply to an [`InvocationRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationResponse {
    /// The results, one WAVE value per result, when the call succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<Vec<String>>,
    /// Why the call failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The kind of failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<FaultKind>,
    /// The host that served the call.
    #[serde(default)]
    pub host_id: String,
}

impl InvocationResponse {
    /// A successful reply.
    pub fn ok(host_id: &str, results: Vec<String>) -> Self {
        Self { results: Some(results), error: None, fault: None, host_id: host_id.into() }
    }

    /// A failed reply.
    pub fn fault(host_id: &str, fault: FaultKind, error: impl Into<String>) -> Self {
        Self { results: None, error: Some(error.into()), fault: Some(fault), host_id: host_id.into() }
    }
}

/// Why an id cannot be a component's or provider's: it must be one NATS subject token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Empty.
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    /// Over 256 bytes (`start` is its first 32 characters).
    #[error("{what} `{start}…` is longer than 256 bytes")]
    TooLong { what: &'static str, start: String },
    /// A `.`, `*`, `>`, whitespace or control character.
    #[error("{what} `{id}` must not contain {c:?} (it is a NATS subject token)")]
    NotAToken { what: &'static str, id: String, c: char },
}

/// A component id is one NATS subject token: non-empty, no `.`, `*`, `>` or whitespace.
///
/// # Errors
/// [`IdError`] naming what is wrong.
pub fn check_component_id(id: &str) -> Result<(), IdError> {
    check_id("component id", id)
}

/// A provider id: one NATS subject token, as a component id.
///
/// # Errors
/// [`IdError`] naming what is wrong.
pub fn check_provider_id(id: &str) -> Result<(), IdError> {
    check_id("provider id", id)
}

fn check_id(what: &'static str, id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty { what });
    }
    if id.len() > 256 {
        return Err(IdError::TooLong { what, start: id.chars().take(32).collect() });
    }
    if let Some(c) = id.chars().find(|c| matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control()) {
        return Err(IdError::NotAToken { what, id: id.to_string(), c });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_ids() {
        assert!(check_component_id("echo").is_ok());
        assert!(check_component_id("default-http_hello").is_ok());
        assert!(check_component_id("").unwrap_err().to_string().contains("empty"));
        assert!(check_component_id("a.b").unwrap_err().to_string().contains("'.'"));
        assert!(check_component_id("a b").unwrap_err().to_string().contains("' '"));
        assert!(check_component_id("a>").is_err());
    }

    #[test]
    fn response_json_shape() {
        let ok = serde_json::to_value(InvocationResponse::ok("N1", vec!["\"hi\"".into()])).unwrap();
        assert_eq!(ok, serde_json::json!({"results": ["\"hi\""], "host_id": "N1"}));
        let err = serde_json::to_value(InvocationResponse::fault("N1", FaultKind::Deadline, "too slow")).unwrap();
        assert_eq!(err, serde_json::json!({"error": "too slow", "fault": "deadline", "host_id": "N1"}));
    }
}
