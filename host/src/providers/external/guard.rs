//! The guard: a small process between the host and a provider (`trellis provider-guard
//! <executable>`), so that a host killed with SIGKILL leaves no provider behind.
//!
//! The host starts the guard in the provider's process group and keeps the guard's stdin open
//! for as long as it lives. The guard reads the start data line from it, starts the provider
//! (same environment, same process group) with that line on the provider's stdin and closes
//! it, then waits: when the provider exits, the guard exits with its status (a signal `n` as
//! `128 + n`); when its stdin ends — the host is gone, however it died — the guard kills the
//! whole group. SIGTERM to the group reaches the provider, which decides; the guard ignores it
//! and follows the provider.

use std::io::Write as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

/// Runs the guard for `provider`; returns the exit code the guard should end with.
pub async fn run(provider: &Path) -> u8 {
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let mut line = Vec::new();
    match stdin.read_until(b'\n', &mut line).await {
        Ok(n) if n > 0 => {}
        _ => {
            let _ = writeln!(std::io::stderr(), "provider-guard: no start data on stdin");
            return 70;
        }
    }
    let mut child = match tokio::process::Command::new(provider).stdin(Stdio::piped()).spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "provider-guard: cannot start {}: {e}", provider.display());
            return 71;
        }
    };
    if let Some(mut to_provider) = child.stdin.take() {
        let _ = to_provider.write_all(&line).await;
        let _ = to_provider.shutdown().await;
    }
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
        return 72;
    };
    let host_gone = async move {
        let _ = tokio::io::copy(&mut stdin, &mut tokio::io::sink()).await;
    };
    tokio::pin!(host_gone);
    loop {
        tokio::select! {
            status = child.wait() => {
                return match status {
                    Ok(s) => s.code().map_or_else(|| 128u8.saturating_add(u8::try_from(s.signal().unwrap_or(0)).unwrap_or(0)), |c| u8::try_from(c).unwrap_or(1)),
                    Err(_) => 1,
                };
            }
            () = &mut host_gone => {
                // Nothing is printed: stderr went to the host, which is gone (writing would fail).
                let group = rustix::process::getpgrp();
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
                return 137;
            }
            _ = term.recv() => {}
        }
    }
}
