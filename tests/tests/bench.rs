//! The benchmark in `--quick` mode as a smoke test: it runs end to end and produces every
//! figure. It asserts nothing about the numbers (a benchmark, not a timed test).

/// The benchmark processes take turns: each starts a 3-node NATS cluster and hosts, and two at
/// once on two cores made a cluster start late (CI saw "nats-server did not come up" and
/// JetStream "temporarily unavailable").
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn quick_benchmark_produces_every_figure() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let json = tempfile::NamedTempFile::new().expect("temp file");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--quick", "--json"])
        .arg(json.path())
        .output()
        .expect("run the benchmark");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(json.path()).expect("JSON written")).expect("valid JSON");
    let names: Vec<&str> = report["figures"].as_array().expect("figures").iter().filter_map(|f| f["name"].as_str()).collect();
    for prefix in ["1. ", "2. ", "3. ", "4. ", "5. ", "6. ", "7. ", "8. ", "9. ", "10. ", "11. ", "12. "] {
        assert!(names.iter().any(|n| n.starts_with(prefix)), "figure {prefix} missing from {names:?}");
    }
    assert_eq!(names.iter().filter(|n| n.starts_with("4. ")).count(), 3, "HTTP at concurrency 1, 8, 64");
    assert_eq!(names.iter().filter(|n| n.starts_with("8. ")).count(), 4, "registry and artifact store, cold and warm");
    assert_eq!(names.iter().filter(|n| n.starts_with("13. ")).count(), 2, "without guard pages: the local call and HTTP");
    assert_eq!(names.iter().filter(|n| n.starts_with("14. ")).count(), 3, "blobstore round trips of 1 KiB and 16 MiB, and one large object streamed");
    for f in report["figures"].as_array().expect("figures") {
        let ratio = f["ratio"].as_f64().expect("ratio");
        assert!(ratio.is_finite() && ratio > 0.0, "{f}");
    }
    // Figures over NATS carry what a call cost (CPU and context switches), and figure 7 its
    // KV baseline and the put's own acknowledgement.
    for f in report["figures"].as_array().expect("figures") {
        let name = f["name"].as_str().unwrap_or_default();
        let data = &f["data"];
        if name.starts_with("2. ") || name.starts_with("3. ") {
            for side in ["trellis_per_call", "baseline_per_call"] {
                assert!(data[side]["context_switches"]["process"].as_f64().is_some(), "{side} of {f}");
                assert!(data[side]["cpu_us"]["nats_servers"].as_f64().is_some(), "{side} of {f}");
            }
        }
        if name.starts_with("7. ") {
            assert!(data["baseline_kv_watch_p50_ms"].as_f64().is_some_and(|v| v > 0.0), "{f}");
            assert!(data["put_ack_p50_ms"].as_f64().is_some_and(|v| v > 0.0), "{f}");
        }
    }
    assert!(stdout.contains("| ratio"), "the table is printed: {stdout}");
    // Keep-alive HTTP carries per-request percentiles with their sample counts, for Trellis,
    // the `wasmtime serve` path and hyper alike.
    for f in report["figures"].as_array().expect("figures").iter().filter(|f| f["name"].as_str().is_some_and(|n| n.starts_with("11. "))) {
        for side in ["trellis", "wasmtime_serve", "hyper"] {
            assert!(f["data"][side]["p999_us"].as_f64().is_some_and(|v| v > 0.0), "{side} of {f}");
            assert!(f["data"][side]["samples"].as_u64().is_some_and(|n| n > 0), "{side} of {f}");
        }
    }
    // A quick run is not kept as a results file; every run records where it ran.
    assert!(report["machine"]["commit"].is_string() && report["machine"]["cpus"].as_u64().is_some_and(|n| n > 0), "{}", report["machine"]);
}

#[test]
fn the_readme_table_is_generated_from_the_newest_results_file() {
    use trellis_tests::bench_report;
    let root = bench_report::repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let shown = bench_report::readme_table(&readme).expect("markers");
    let generated = bench_report::latest_table(&root).expect("a results file");
    assert_eq!(shown, generated.trim_matches('\n'), "README's table differs from {}: run scripts/bench-table", bench_report::latest(&root).unwrap().display());
}

#[test]
fn only_runs_the_figures_named_and_refuses_a_bad_list() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let json = tempfile::NamedTempFile::new().expect("temp file");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--quick", "--only", "3", "--json"])
        .arg(json.path())
        .output()
        .expect("run the benchmark");
    assert!(out.status.success(), "bench failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(json.path()).expect("JSON written")).expect("valid JSON");
    let names: Vec<&str> = report["figures"].as_array().expect("figures").iter().filter_map(|f| f["name"].as_str()).collect();
    assert!(names.len() == 1 && names[0].starts_with("3. "), "{names:?}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bench")).args(["--quick", "--only", "2,18"]).output().expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("figure numbers 1 to 17") && stderr.contains("2,18"), "{stderr}");
}
