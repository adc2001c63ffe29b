//! `wasi:logging/logging`: a guest's log lines go to the host's tracing, with the component id,
//! each cut to [`MAX_LOG_MESSAGE`] bytes, and at most [`MAX_LOG_LINES_PER_SECOND`] lines and
//! [`MAX_LOG_BYTES_PER_SECOND`] bytes a second per component (all its instances together): a
//! guest logging in a loop cannot fill the host's disk or drown other components' lines. Lines
//! past the rate are dropped and counted, and the count is logged once the next second begins.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::{debug, error, info, trace, warn};
use wasmtime::component::{Linker, Val};

use crate::wasm::state::GuestState;

/// Longest guest log message kept, in bytes; the rest is cut.
pub const MAX_LOG_MESSAGE: usize = 16 << 10;

/// Longest `context` kept, in bytes.
const MAX_LOG_CONTEXT: usize = 256;

/// Log lines one component may write per second.
pub const MAX_LOG_LINES_PER_SECOND: u32 = 200;

/// Bytes of log messages one component may write per second.
pub const MAX_LOG_BYTES_PER_SECOND: usize = 256 << 10;

/// `s` cut to at most `max` bytes, on a character boundary.
pub fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// One component's log rate: a one-second window.
#[derive(Debug)]
struct Window {
    began: Instant,
    lines: u32,
    bytes: usize,
    dropped: u64,
}

/// One component's log rate, shared by every `wasi:logging` version it imports.
#[derive(Debug)]
pub struct Rate(Mutex<Window>);

impl Default for Rate {
    fn default() -> Self {
        Self::new()
    }
}

impl Rate {
    /// A fresh rate.
    pub fn new() -> Self {
        Self(Mutex::new(Window { began: Instant::now(), lines: 0, bytes: 0, dropped: 0 }))
    }

    /// Whether a line of `bytes` may be written now; when a new window begins, how many lines
    /// the last one dropped.
    fn admit(&self, bytes: usize) -> (bool, u64) {
        let mut w = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut dropped_before = 0;
        if w.began.elapsed() >= Duration::from_secs(1) {
            dropped_before = std::mem::take(&mut w.dropped);
            *w = Window { began: Instant::now(), lines: 0, bytes: 0, dropped: 0 };
        }
        if w.lines >= MAX_LOG_LINES_PER_SECOND || w.bytes.saturating_add(bytes) > MAX_LOG_BYTES_PER_SECOND {
            w.dropped += 1;
            return (false, dropped_before);
        }
        w.lines += 1;
        w.bytes += bytes;
        (true, dropped_before)
    }
}

/// Links `import` (`wasi:logging/logging@…`) for component `id`, its lines held to `rate`.
///
/// # Errors
/// When the linker refuses the definition (a bug, not a guest fault).
pub fn link(linker: &mut Linker<GuestState>, import: &str, id: &str, rate: &std::sync::Arc<Rate>) -> wasmtime::Result<()> {
    let mut instance = linker.instance(import)?;
    let id = id.to_string();
    let rate = rate.clone();
    instance.func_new("log", move |_, _, params, _| {
        let text = |i: usize| match params.get(i) {
            Some(Val::String(s)) => s.as_str(),
            _ => "",
        };
        let level = match params.first() {
            Some(Val::Enum(l)) => l.as_str(),
            _ => "info",
        };
        let (context, message) = (clip(text(1), MAX_LOG_CONTEXT), clip(text(2), MAX_LOG_MESSAGE));
        let (admitted, dropped) = rate.admit(context.len() + message.len());
        if dropped > 0 {
            warn!(component_id = %id, dropped, "guest log lines dropped in the last second (over {MAX_LOG_LINES_PER_SECOND} lines or {MAX_LOG_BYTES_PER_SECOND} bytes a second)");
        }
        if !admitted {
            return Ok(());
        }
        match level {
            "trace" => trace!(component_id = %id, context, "{message}"),
            "debug" => debug!(component_id = %id, context, "{message}"),
            "warn" => warn!(component_id = %id, context, "{message}"),
            "error" | "critical" => error!(component_id = %id, context, "{message}"),
            _ => info!(component_id = %id, context, "{message}"),
        }
        Ok(())
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_past_the_rate_are_dropped_and_counted() {
        let rate = Rate::new();
        let admitted = (0..1000).filter(|_| rate.admit(10).0).count();
        assert_eq!(admitted, MAX_LOG_LINES_PER_SECOND as usize);
        let big = Rate::new();
        assert!(big.admit(MAX_LOG_BYTES_PER_SECOND).0);
        assert!(!big.admit(1).0, "the bytes of a second are spent");
        // A new window reports what the last one dropped.
        rate.0.lock().unwrap().began -= Duration::from_secs(2);
        assert_eq!(rate.admit(10), (true, 800));
    }

    #[test]
    fn clip_cuts_on_a_character_boundary() {
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(clip("abc", 10), "abc");
    }
}
