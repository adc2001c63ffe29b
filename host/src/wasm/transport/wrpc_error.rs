//! [`WrpcError`]: why a wRPC call or the serving of a component's exports failed.

use std::time::Duration;

/// Why a call to a provider over wRPC failed, in words for the guest's caller.
#[derive(Debug, thiserror::Error)]
pub enum WrpcError {
    /// Too many calls from this host to the provider stayed in flight.
    #[error("busy: {max_calls} wRPC calls from this host to `{target}` stayed in flight for {waited:?} (--max-provider-calls)")]
    Busy { target: String, max_calls: usize, waited: Duration },
    /// The client for the provider's subjects could not be made.
    #[error("cannot set up wRPC to `{target}`: {reason}")]
    Setup { target: String, reason: String },
    /// A parameter could not be written.
    #[error("cannot encode parameter {index}: {reason}")]
    Encode { index: usize, reason: String },
    /// The invocation could not be sent.
    #[error("no answer from `{target}`: {reason}")]
    NoAnswer { target: String, reason: String },
    /// Nobody serves it on the lattice (a provider still starting, or gone).
    #[error("`{target}` is not serving{what} (no responders on the lattice)")]
    NotServing { target: String, what: String },
    /// The parameters could not be sent.
    #[error("cannot send the call to `{target}`: {source}")]
    Send { target: String, source: std::io::Error },
    /// A result does not decode as its type, or passes the bounds.
    #[error("cannot decode result {index} from `{target}`: {source}")]
    Decode { target: String, index: usize, source: std::io::Error },
    /// The results stream ended in an error.
    #[error("the answer from `{target}` broke off: {source}")]
    BrokeOff { target: String, source: std::io::Error },
    /// Bytes after the last result.
    #[error("`{target}` answered {extra} bytes more than the results")]
    Extra { target: String, extra: usize },
    /// A typed call failed.
    #[error("`{target}` failed: {reason}")]
    Failed { target: String, reason: String },
    /// No answer by the deadline.
    #[error("`{target}` did not answer within {timeout:?}")]
    Timeout { target: String, timeout: Duration },
    /// A component's exports could not be served (a subscription failed).
    #[error("cannot serve `{id}` {what} over wRPC: {reason}")]
    Serve { id: String, what: String, reason: String },
}
