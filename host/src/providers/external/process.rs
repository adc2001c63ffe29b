//! One provider process: spawned with a cleared environment in a process group of its own, its
//! start data written to stdin and stdin closed, its output logged line by line (bounded), its
//! exit reported, and signals sent to its whole group so children it started go too.

use std::collections::VecDeque;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tracing::{info, warn};

/// Longest output line logged; the rest of a longer line is logged as further lines.
pub const MAX_LINE: usize = 4096;
/// Output lines logged per second and provider; more are counted and reported as dropped.
pub const LINES_PER_SECOND: u32 = 200;
/// stderr lines kept for the report of an exit.
pub const STDERR_TAIL: usize = 20;

/// Variables passed from the host's environment (as wasmCloud does); everything else is
/// cleared.
fn passthrough() -> impl Iterator<Item = (String, String)> {
    std::env::vars().filter(|(k, _)| k == "RUST_LOG" || k.starts_with("OTEL_"))
}

/// A running provider process.
#[derive(Debug)]
pub struct Process {
    /// Its pid, which is also its process group.
    pub pid: u32,
    /// `None` while it runs; how it ended once it has.
    pub exit: watch::Receiver<Option<String>>,
    /// The last lines it wrote to stderr.
    pub stderr_tail: Arc<Mutex<VecDeque<String>>>,
    /// When it started.
    pub started: Instant,
}

impl Process {
    /// Starts `path` with `stdin_line` on its stdin, inside the tokio runtime `rt` (which then
    /// owns the child's I/O and reaping). `id` tags its log lines.
    ///
    /// # Errors
    /// The operating system's reason when it cannot be spawned.
    pub fn spawn(
        rt: &tokio::runtime::Handle,
        id: &str,
        path: &Path,
        guard: Option<&Path>,
        stdin_line: Vec<u8>,
    ) -> std::io::Result<Self> {
        let _in_runtime = rt.enter();
        let mut command = match guard {
            Some(trellis) => {
                let mut c = tokio::process::Command::new(trellis);
                c.arg("provider-guard").arg(path);
                c
            }
            None => tokio::process::Command::new(path),
        };
        let guarded = guard.is_some();
        let mut child = command
            .env_clear()
            .envs(passthrough())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().unwrap_or_default();
        let stderr_tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
        let budget = Arc::new(Mutex::new(LogBudget::new()));
        let mut pumps = Vec::new();
        if let Some(out) = child.stdout.take() {
            pumps.push(rt.spawn(pump(id.to_string(), "stdout", out, None, budget.clone())));
        }
        if let Some(err) = child.stderr.take() {
            pumps.push(rt.spawn(pump(id.to_string(), "stderr", err, Some(stderr_tail.clone()), budget)));
        }
        let stdin = child.stdin.take();
        let (exit_tx, exit) = watch::channel(None);
        let provider = id.to_string();
        rt.spawn(async move {
            // A guard keeps its stdin open while the host lives (its end is how it learns the
            // host died), so it is held here until the process exits.
            let mut held = None;
            if let Some(mut stdin) = stdin {
                // The line is far smaller than a pipe's buffer, so a provider that never reads
                // cannot hold this up; a provider that already exited gives a broken pipe.
                let written = async {
                    stdin.write_all(&stdin_line).await?;
                    if guarded {
                        stdin.flush().await
                    } else {
                        stdin.shutdown().await
                    }
                };
                if let Err(e) = written.await {
                    warn!(provider_id = %provider, error = %e, "could not write the provider's start data");
                }
                held = guarded.then_some(stdin);
            }
            let status = match child.wait().await {
                Ok(s) => s.to_string(),
                Err(e) => format!("could not wait for the process: {e}"),
            };
            // Whatever ended it (a guard killed with SIGKILL, a provider that crashed), nothing
            // of its process group may go on serving beside the replacement the supervisor
            // starts next: a provider orphaned by its guard answered the same subjects with
            // stale state. The group outlives its leader only while members remain, so its id
            // cannot have been reused.
            if let Some(group) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) {
                if rustix::process::kill_process_group(group, rustix::process::Signal::KILL).is_ok() {
                    warn!(provider_id = %provider, %status, "killed what the provider's process left running in its process group");
                }
            }
            // What it wrote last is read before its exit is reported (a process it left
            // behind may hold the pipes open, hence the bound).
            let _ = tokio::time::timeout(Duration::from_millis(500), futures::future::join_all(pumps)).await;
            drop(held);
            let _ = exit_tx.send(Some(status));
        });
        Ok(Self { pid, exit, stderr_tail, started: Instant::now() })
    }

    /// Sends `signal` to the process group. Errors (already gone) are ignored.
    pub fn signal(&self, signal: rustix::process::Signal) {
        if let Some(pid) = i32::try_from(self.pid).ok().and_then(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process_group(pid, signal);
        }
    }

    /// Waits until the process has exited or `timeout` passed; `true` when it has exited.
    pub async fn exited_within(&self, timeout: Duration) -> bool {
        let mut exit = self.exit.clone();
        tokio::time::timeout(timeout, exit.wait_for(Option::is_some)).await.is_ok_and(|r| r.is_ok())
    }

    /// The last stderr lines.
    pub fn tail(&self) -> Vec<String> {
        self.stderr_tail.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect()
    }
}

/// How many more lines may be logged this second.
#[derive(Debug)]
struct LogBudget {
    second: Instant,
    left: u32,
    dropped: u64,
}

impl LogBudget {
    fn new() -> Self {
        Self { second: Instant::now(), left: LINES_PER_SECOND, dropped: 0 }
    }

    /// Whether a line may be logged now; when a new second starts, the number dropped in the
    /// last one (if any) comes back to be reported.
    fn take(&mut self) -> (bool, u64) {
        let mut reported = 0;
        if self.second.elapsed() >= Duration::from_secs(1) {
            self.second = Instant::now();
            self.left = LINES_PER_SECOND;
            reported = std::mem::take(&mut self.dropped);
        }
        if self.left == 0 {
            self.dropped += 1;
            return (false, reported);
        }
        self.left -= 1;
        (true, reported)
    }
}

/// Logs what a provider writes, one log record per line, tagged with the provider id. Reads
/// with a fixed buffer, so a provider writing without newlines or very fast costs bounded
/// memory; past the rate budget lines are dropped (counted) but still read, so the provider
/// never blocks on a full pipe.
async fn pump(
    provider: String,
    stream: &'static str,
    mut from: impl AsyncRead + Unpin,
    tail: Option<Arc<Mutex<VecDeque<String>>>>,
    budget: Arc<Mutex<LogBudget>>,
) {
    let mut buf = vec![0u8; 8192];
    let mut line: Vec<u8> = Vec::with_capacity(256);
    let emit = |line: &mut Vec<u8>| {
        let text = String::from_utf8_lossy(line).trim_end_matches('\r').to_string();
        line.clear();
        if let Some(tail) = &tail {
            let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
            if tail.len() == STDERR_TAIL {
                tail.pop_front();
            }
            tail.push_back(text.clone());
        }
        let (log, dropped) = budget.lock().unwrap_or_else(PoisonError::into_inner).take();
        if dropped > 0 {
            warn!(provider_id = %provider, dropped, "provider output lines not logged (over {LINES_PER_SECOND} a second)");
        }
        if log {
            info!(provider_id = %provider, stream, "{text}");
        }
    };
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                emit(&mut line);
            } else {
                line.push(b);
                if line.len() >= MAX_LINE {
                    emit(&mut line);
                }
            }
        }
    }
    if !line.is_empty() {
        emit(&mut line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_budget_drops_past_the_rate_and_reports_it() {
        let mut b = LogBudget::new();
        for _ in 0..LINES_PER_SECOND {
            assert_eq!(b.take(), (true, 0));
        }
        assert_eq!(b.take(), (false, 0));
        assert_eq!(b.take(), (false, 0));
        b.second -= Duration::from_secs(1);
        assert_eq!(b.take(), (true, 2));
    }
}
