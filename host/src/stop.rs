//! Why and how a host is asked to stop: shared by the runtime that stops it and the actors
//! that ask.

use std::time::Duration;

/// Why a host stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// `host.stop` on the control interface.
    ControlInterface,
    /// The owner of the [`HostHandle`](crate::HostHandle) asked (e.g. on SIGINT/SIGTERM).
    Requested,
    /// The control subscriptions ended on their own (the NATS client closed).
    ControlLost,
}

/// A request to stop the host, draining for at most `timeout`.
#[derive(Clone, Copy, Debug)]
pub struct StopRequest {
    /// How long draining may take; the configured default when `None`.
    pub timeout: Option<Duration>,
    /// Who asked.
    pub reason: StopReason,
}
