//! The one error type of this crate.

use std::time::Duration;

/// Everything that can go wrong parsing a control message or talking to a lattice.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The subject is not under `{prefix}.v1.{lattice}`.
    #[error("subject `{subject}` is not a control subject of this lattice (expected prefix `{expected}`)")]
    ForeignSubject {
        /// The subject that was received.
        subject: String,
        /// The prefix this lattice's subjects start with.
        expected: String,
    },
    /// The subject names no operation of the control interface.
    #[error("unknown control operation `{operation}` (subject `{subject}`)")]
    UnknownOperation {
        /// The tokens after the lattice prefix.
        operation: String,
        /// The whole subject.
        subject: String,
    },
    /// The operation needs a JSON body and got none.
    #[error("`{operation}` needs a JSON body and the message was empty")]
    EmptyBody {
        /// The operation, e.g. `label.put`.
        operation: &'static str,
    },
    /// The body is not the JSON the operation expects.
    #[error("`{operation}` body is not valid: {source}")]
    InvalidBody {
        /// The operation, e.g. `label.put`.
        operation: &'static str,
        /// What serde found wrong.
        #[source]
        source: serde_json::Error,
    },
    /// A field was present but its value is not acceptable.
    #[error("`{operation}`: {reason}")]
    InvalidField {
        /// The operation, e.g. `component.scale`.
        operation: &'static str,
        /// What is wrong with which field.
        reason: String,
    },
    /// A body could not be encoded (a bug in the caller's types, not a lattice fault).
    #[error("could not encode `{what}` as JSON: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// Publishing or requesting over NATS failed.
    #[error("NATS request on `{subject}` failed: {reason}")]
    Nats {
        /// The subject of the request.
        subject: String,
        /// What the NATS client reported.
        reason: String,
    },
    /// No host serves the component called.
    #[error("component `{component_id}` is not running on any host of lattice `{lattice}`")]
    NotRunning {
        /// The component called.
        component_id: String,
        /// The lattice.
        lattice: String,
    },
    /// No reply arrived in time.
    #[error("no reply on `{subject}` within {timeout:?} (is a host with that id running on this lattice?)")]
    Timeout {
        /// The subject of the request.
        subject: String,
        /// How long the client waited.
        timeout: Duration,
    },
    /// A reply arrived but is not the expected envelope.
    #[error("reply on `{subject}` does not parse: {source}")]
    BadReply {
        /// The subject of the request.
        subject: String,
        /// What serde found wrong.
        #[source]
        source: serde_json::Error,
    },
    /// The journal cannot be read.
    #[error("{0}")]
    Journal(String),
    /// The records after a cursor have aged out of the journal.
    #[error("cursor {cursor} is gone: the journal now starts at {first} (older events aged out, so records after {cursor} may be lost); read from the start, or from a recent duration such as `--since 10m`")]
    CursorGone {
        /// The cursor asked for.
        cursor: u64,
        /// The oldest record kept.
        first: u64,
    },
    /// The host answered `success: false`.
    #[error("host refused `{subject}`: {message}")]
    Refused {
        /// The subject of the request.
        subject: String,
        /// The host's message.
        message: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
