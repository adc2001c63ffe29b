//! Measuring: percentiles, latency runs, and what operations cost in CPU time and context
//! switches.

use std::time::{Duration, Instant};

use anyhow::Result;
use trellis_tests::TestLattice;


/// The `p` quantile (0 to 1) of `sorted`.
pub(crate) fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `d` in microseconds.
pub(crate) fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// p50/p99 of `n` runs of `f`.
pub(crate) async fn latencies<F, Fut>(n: usize, mut f: F) -> Result<(Duration, Duration)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    for _ in 0..warmups(n) {
        f().await?;
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f().await?;
        v.push(t.elapsed());
    }
    v.sort_unstable();
    Ok((pct(&v, 0.5), pct(&v, 0.99)))
}

/// Unmeasured runs before `latencies` measures `n`.
pub(crate) fn warmups(n: usize) -> usize {
    (n / 10).max(3)
}


/// CPU time (user + system, all threads) of process `pid` ("self" for this one), from
/// `/proc/{pid}/stat` in clock ticks of 10 ms: precise enough over thousands of calls.
pub(crate) fn cpu_time(pid: &str) -> Duration {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces) start at the last ')'.
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            Some(rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Context switches (voluntary and not) of every thread of process `pid` now running (a
/// NATS server: its threads live as long as it does).
pub(crate) fn context_switches(pid: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// What operations cost while they run, in this process and in the NATS servers: CPU time and
/// thread context switches (on a loopback lattice, most of the time per call goes to waking
/// threads, so switches explain latency better than instructions do).
pub(crate) struct CostMeter {
    servers: Vec<String>,
    start: Cost,
}

/// CPU µs and context switches, in this process and in the NATS servers: totals when read,
/// per operation from [`CostMeter::per_op`].
#[derive(Clone, Copy)]
pub(crate) struct Cost {
    pub(crate) cpu: (f64, f64),
    pub(crate) switches: (f64, f64),
}

impl CostMeter {
    pub(crate) fn start(lattice: &TestLattice) -> Self {
        let servers = lattice.server_pids().iter().map(u32::to_string).collect::<Vec<_>>();
        let start = Self::read(&servers);
        Self { servers, start }
    }

    fn read(servers: &[String]) -> Cost {
        // This process from getrusage (threads that exited count too); the NATS servers (not
        // our children while they run) from /proc.
        let (own_cpu, own_switches) = own_usage();
        Cost {
            cpu: (own_cpu, servers.iter().map(|p| us(cpu_time(p))).sum()),
            switches: (own_switches, servers.iter().map(|p| context_switches(p) as f64).sum()),
        }
    }

    /// Cost per operation of `n` operations since `start`.
    pub(crate) fn per_op(&self, n: usize) -> Cost {
        let (now, n) = (Self::read(&self.servers), n.max(1) as f64);
        let per = |a: (f64, f64), b: (f64, f64)| ((a.0 - b.0).max(0.0) / n, (a.1 - b.1).max(0.0) / n);
        Cost { cpu: per(now.cpu, self.start.cpu), switches: per(now.switches, self.start.switches) }
    }
}

/// CPU µs (user + system) and context switches (voluntary and not) of this process so far,
/// every thread included, from `getrusage(RUSAGE_SELF)`.
fn own_usage() -> (f64, f64) {
    use nix::sys::resource::{getrusage, UsageWho};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 * 1e6 + t.tv_usec() as f64;
            (tv(u.user_time()) + tv(u.system_time()), (u.voluntary_context_switches() + u.involuntary_context_switches()) as f64)
        }
        Err(_) => (0.0, 0.0),
    }
}


/// `a` and `b` run alternately, `rounds` rounds of `per` calls each (after warm-ups of both),
/// so drift on the machine hits both: per-call p50/p99 and cost per call of each.
pub(crate) async fn interleaved<FA, FB, FutA, FutB>(
    lattice: &TestLattice,
    rounds: usize,
    per: usize,
    mut a: FA,
    mut b: FB,
) -> Result<((Duration, Duration), Cost, (Duration, Duration), Cost)>
where
    FA: FnMut() -> FutA,
    FutA: std::future::Future<Output = Result<()>>,
    FB: FnMut() -> FutB,
    FutB: std::future::Future<Output = Result<()>>,
{
    for _ in 0..warmups(per * rounds) {
        a().await?;
        b().await?;
    }
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    let zero = Cost { cpu: (0.0, 0.0), switches: (0.0, 0.0) };
    let (mut ca, mut cb) = (zero, zero);
    let add = |sum: &mut Cost, c: Cost, n: usize| {
        let n = n as f64;
        sum.cpu = (sum.cpu.0 + c.cpu.0 * n, sum.cpu.1 + c.cpu.1 * n);
        sum.switches = (sum.switches.0 + c.switches.0 * n, sum.switches.1 + c.switches.1 * n);
    };
    for _ in 0..rounds {
        let meter = CostMeter::start(lattice);
        for _ in 0..per {
            let t = Instant::now();
            a().await?;
            ta.push(t.elapsed());
        }
        add(&mut ca, meter.per_op(per), per);
        let meter = CostMeter::start(lattice);
        for _ in 0..per {
            let t = Instant::now();
            b().await?;
            tb.push(t.elapsed());
        }
        add(&mut cb, meter.per_op(per), per);
    }
    let n = (per * rounds).max(1) as f64;
    let per_call = |c: Cost| Cost { cpu: (c.cpu.0 / n, c.cpu.1 / n), switches: (c.switches.0 / n, c.switches.1 / n) };
    ta.sort_unstable();
    tb.sort_unstable();
    Ok(((pct(&ta, 0.5), pct(&ta, 0.99)), per_call(ca), (pct(&tb, 0.5), pct(&tb, 0.99)), per_call(cb)))
}

