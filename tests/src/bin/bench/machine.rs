//! Where a run was measured: machine, software versions and the commit, for its results file.

use std::process::Command;

use serde_json::{json, Value};

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The facts a reader needs to weigh the figures.
pub(crate) fn facts() -> Value {
    let root = trellis_tests::bench_report::repo_root();
    let root = root.display().to_string();
    let commit = run("git", &["-C", &root, "rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = run("git", &["-C", &root, "status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())));
    let lock = std::fs::read_to_string(format!("{root}/Cargo.lock")).unwrap_or_default();
    let wasmtime = lock.split("[[package]]").find(|p| p.contains("name = \"wasmtime\"\n")).and_then(|p| {
        p.lines().find_map(|l| l.strip_prefix("version = ").map(|v| v.trim_matches('"').to_string()))
    });
    let nats = trellis_tests::nats_server_bin().ok().and_then(|b| run(&b.display().to_string(), &["--version"]));
    json!({
        "commit": if dirty { format!("{commit} (uncommitted changes)") } else { commit },
        "date": run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu_model": cpu_model,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_string()),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "rustc": run("rustc", &["--version"]),
        "wasmtime": wasmtime,
        "nats_server": nats,
    })
}
