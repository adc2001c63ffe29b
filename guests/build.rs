//! Builds the example guest components in `components/` from source and exposes their paths to the
//! crate as `TRELLIS_ACTOR_<NAME>` (e.g. `TRELLIS_ACTOR_ECHO`).
//!
//! Route: `cargo build --target wasm32-wasip2` when rustup has that target (the output is already
//! a component); otherwise Debian's `rustc-web` builds `std` from source for
//! `wasm32-unknown-unknown` and `wit-component` turns the core module into a component
//! (see components/README.md). The actors have their own workspace and target directory, so this
//! nested cargo does not wait on the lock of the build that runs it.

use std::path::{Path, PathBuf};
use std::process::Command;

const ACTORS: &[&str] = &["echo", "http-hello", "pinger", "kv-counter", "http-fetch", "msg-echo", "msg3-echo", "hostile", "ticker", "blob-ops", "tally", "http-hello-p3", "kv-counter-p3"];

fn main() {
    if let Err(e) = run() {
        // A clear failure beats tests that cannot find their guests.
        eprintln!("building the guest components failed: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let root = manifest.parent().ok_or("guests/ has no parent")?.to_path_buf();
    let actors = root.join("components");
    let out = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| e.to_string())?).join("actors");
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    // Not components/ itself: its target/ changes with every build.
    println!("cargo:rerun-if-changed={}", actors.join("Cargo.toml").display());
    println!("cargo:rerun-if-changed={}", actors.join("Cargo.lock").display());
    for name in ACTORS {
        println!("cargo:rerun-if-changed={}", actors.join(name).join("Cargo.toml").display());
        println!("cargo:rerun-if-changed={}", actors.join(name).join("src").display());
    }
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rerun-if-changed=build.rs");

    let route = Route::detect();
    let mut cmd = Command::new("cargo");
    // Only what the nested build needs: the outer build's RUSTC, RUSTFLAGS, target dir and
    // profile variables must not leak into it.
    cmd.env_clear();
    for key in ["PATH", "HOME", "CARGO_HOME", "RUSTUP_HOME", "CARGO_MAKEFLAGS", "TMPDIR", "CARGO_NET_OFFLINE"] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    cmd.current_dir(&actors).args(["build", "--release", "--target", route.target()]);
    if let Route::BuildStd = route {
        cmd.env("RUSTC", "/usr/bin/rustc").env("RUSTC_BOOTSTRAP", "1").arg("-Zbuild-std=std,panic_abort");
    }
    let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!(
            "`cargo build --target {}` in components/ failed ({status}); {}",
            route.target(),
            route.hint()
        ));
    }
    println!("cargo:warning=guest components built with {}", route.describe());
    for name in ACTORS {
        let file = name.replace('-', "_");
        let built = actors.join("target").join(route.target()).join("release").join(format!("{file}.wasm"));
        let bytes = std::fs::read(&built).map_err(|e| format!("{}: {e}", built.display()))?;
        let component = match route {
            Route::Wasip2 => bytes,
            Route::BuildStd => componentize(&bytes).map_err(|e| format!("{name}: {e}"))?,
        };
        let dest = out.join(format!("{file}.wasm"));
        write_if_changed(&dest, &component)?;
        println!("cargo:rustc-env=TRELLIS_ACTOR_{}={}", file.to_uppercase(), dest.display());
    }
    Ok(())
}

enum Route {
    Wasip2,
    BuildStd,
}

impl Route {
    fn detect() -> Self {
        let installed = Command::new("rustup")
            .args(["target", "list", "--installed"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == "wasm32-wasip2"))
            .unwrap_or(false);
        if installed {
            Route::Wasip2
        } else {
            Route::BuildStd
        }
    }

    fn target(&self) -> &'static str {
        match self {
            Route::Wasip2 => "wasm32-wasip2",
            Route::BuildStd => "wasm32-unknown-unknown",
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Route::Wasip2 => "rustup's wasm32-wasip2 target",
            Route::BuildStd => "Debian's rustc-web building std for wasm32-unknown-unknown, componentized by wit-component",
        }
    }

    fn hint(&self) -> &'static str {
        match self {
            Route::Wasip2 => "is the wasm32-wasip2 target complete (`rustup target add wasm32-wasip2`)?",
            Route::BuildStd => {
                "without rustup's wasm32-wasip2 target this needs Debian's rustc-web, rust-web-src and lld-22 \
                 (`scripts/install-deps` installs them)"
            }
        }
    }
}

fn componentize(module: &[u8]) -> Result<Vec<u8>, String> {
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(module)
        .map_err(|e| format!("{e:#}"))?
        .encode()
        .map_err(|e| format!("{e:#}"))
}

fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if std::fs::read(path).ok().as_deref() == Some(bytes) {
        return Ok(());
    }
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}
