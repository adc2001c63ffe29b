//! `trellis host` as a process of its own, for tests and benchmarks that kill hosts with
//! SIGKILL or measure one host's memory.

use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

use crate::{trellis_bin, TestLattice};

/// A `trellis host` process on node `node` of a test lattice; killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct HostProcess {
    child: Child,
    /// Its host id.
    pub id: String,
    _data: tempfile::TempDir,
}

impl HostProcess {
    /// Starts one with a new host key and `args` after the lattice's.
    ///
    /// # Errors
    /// When the binary is missing or stale, or cannot start.
    pub fn start(lattice: &TestLattice, node: usize, args: &[&str]) -> Result<Self> {
        Self::start_as(lattice, node, args, nkeys::KeyPair::new_server())
    }

    /// Starts one with host key `key` (a host that comes back under the same id).
    ///
    /// # Errors
    /// As [`Self::start`].
    pub fn start_as(lattice: &TestLattice, node: usize, args: &[&str], key: nkeys::KeyPair) -> Result<Self> {
        let data = tempfile::tempdir()?;
        let child = Command::new(trellis_bin()?)
            .args(["host", "--nats-url", &lattice.url_of(node), "--lattice", &lattice.name, "--host-seed", &key.seed()?])
            .args(args)
            .env("TRELLIS_DATA_DIR", data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start a trellis host process")?;
        Ok(Self { child, id: key.public_key(), _data: data })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its resident memory now, from `/proc/{pid}/status` (`VmRSS`), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        rss_of(&self.pid().to_string())
    }

    /// Kills it with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The resident memory of process `pid` (`self` for this one) now, from `/proc/{pid}/status`
/// (`VmRSS`), in bytes; 0 when it cannot be read.
pub fn rss_of(pid: &str) -> u64 {
    status_bytes(pid, "VmRSS:")
}

/// The most resident memory process `pid` has had (`VmHWM`), in bytes; 0 when unreadable.
pub fn peak_rss_of(pid: &str) -> u64 {
    status_bytes(pid, "VmHWM:")
}

fn status_bytes(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix(field).and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())))
        .map_or(0, |kb| kb * 1024)
}
