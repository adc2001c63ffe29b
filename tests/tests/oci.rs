//! Components from a real OCI registry (Debian's `docker-registry`, the CNCF distribution
//! registry): `trellis push` in wash's layout, scale by reference on several hosts, the cache
//! (one download for hosts that share it; tampered content fetched again), `:latest`, missing
//! artifacts and registry credentials.

use std::process::Command;
use std::time::Duration;

use trellis_host::wasm::oci::OciConfig;
use trellis_host::HostConfig;
use trellis_tests::{actors, init_tracing, trellis_bin, Registry, TestLattice};

fn push(reference: &str, file: &str, credentials: Option<(&str, &str)>) -> anyhow::Result<std::process::Output> {
    let mut cmd = Command::new(trellis_bin()?);
    cmd.args(["push", "--insecure", reference, file]);
    if let Some((user, password)) = credentials {
        cmd.args(["--user", user, "--password", password]);
    }
    Ok(cmd.output()?)
}

fn oci_host(lattice: &TestLattice, registry: &Registry, cache: &std::path::Path, credentials: Option<(&str, &str)>) -> HostConfig {
    let mut config = lattice.host_config();
    config.wasm.oci = OciConfig {
        insecure: vec![registry.address()],
        cache_dir: Some(cache.to_path_buf()),
        credentials: credentials.map(|(u, p)| (u.to_string(), p.to_string())),
        timeout: Duration::from_secs(20),
        ..OciConfig::default()
    };
    config
}

#[tokio::test]
async fn components_come_from_a_registry_once_per_cache() -> anyhow::Result<()> {
    init_tracing();
    let registry = Registry::start(&[]).await?;
    let reference = format!("{}/trellis/echo:1.0", registry.address());
    let out = push(&reference, actors::ECHO, None)?;
    assert!(out.status.success(), "push: {}", String::from_utf8_lossy(&out.stderr));

    let lattice = TestLattice::new().await?;
    let cache = tempfile::tempdir()?;
    let a = lattice.start_host(oci_host(&lattice, &registry, cache.path(), None)).await?;
    let b = lattice.start_host(oci_host(&lattice, &registry, cache.path(), None)).await?;
    // wasmCloud's two forms: with and without `oci://`.
    lattice.scale(a.id(), "echo", &format!("oci://{reference}"), 2).await?.map_err(anyhow::Error::msg)?;
    lattice.scale(b.id(), "echo", &reference, 2).await?.map_err(anyhow::Error::msg)?;
    let client = lattice.client().await?;
    let r = client.call("echo", "trellis:echo/echo.echo", vec![r#""from a registry""#.into()]).await?;
    assert_eq!(r.results, Some(vec![r#""from a registry""#.to_string()]));
    assert_eq!(registry.blob_downloads(), 1, "the second host found it in the shared cache");

    // Tampered cache content is never compiled: fetched again.
    for entry in std::fs::read_dir(cache.path().join("oci"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wasm") {
            std::fs::write(&path, b"\0asm\x0d\0\x01\0tampered")?;
        }
    }
    let c = lattice.start_host(oci_host(&lattice, &registry, cache.path(), None)).await?;
    lattice.scale(c.id(), "echo", &reference, 1).await?.map_err(anyhow::Error::msg)?;
    assert_eq!(registry.blob_downloads(), 2);

    // `:latest` is refused unless allowed; a missing artifact names the registry and reference.
    let latest = format!("{}/trellis/echo:latest", registry.address());
    let err = lattice.scale(a.id(), "latest", &latest, 1).await?.expect_err(":latest");
    assert!(err.contains("--allow-latest"), "{err}");
    let missing = format!("{}/trellis/nope:1.0", registry.address());
    let err = lattice.scale(a.id(), "nope", &missing, 1).await?.expect_err("missing");
    assert!(err.contains(&registry.address()) && err.contains("nope"), "{err}");
    // Over the host's component size limit: refused before downloading.
    let mut small = oci_host(&lattice, &registry, tempfile::tempdir()?.path(), None);
    small.wasm.max_component_size = 1024;
    let d = lattice.start_host(small).await?;
    let err = lattice.scale(d.id(), "big", &reference, 1).await?.expect_err("too large");
    assert!(err.contains("too large") && err.contains(&registry.address()), "{err}");
    d.shutdown(None).await?;
    // Content that does not match its digest (corrupted in the registry's storage) is never
    // compiled.
    for blob in registry.blob_files()? {
        let data = std::fs::read(&blob)?;
        if data.starts_with(b"\0asm") {
            let mut bad = data.clone();
            let last = bad.len() - 1;
            bad[last] ^= 0xff;
            std::fs::write(&blob, bad)?;
        }
    }
    let e = lattice.start_host(oci_host(&lattice, &registry, tempfile::tempdir()?.path(), None)).await?;
    let err = lattice.scale(e.id(), "corrupt", &reference, 1).await?.expect_err("digest mismatch");
    assert!(err.to_lowercase().contains("digest"), "{err}");
    e.shutdown(None).await?;
    // A file that is not a component cannot be pushed.
    let out = push(&format!("{}/trellis/bad:1.0", registry.address()), "/etc/hostname", None)?;
    assert!(!out.status.success());
    for h in [a, b, c] {
        h.shutdown(None).await?;
    }
    Ok(())
}

#[tokio::test]
async fn registry_credentials_are_used_and_a_wrong_password_fails_clearly() -> anyhow::Result<()> {
    init_tracing();
    let registry = Registry::start(&[("ci", "s3cret")]).await?;
    let reference = format!("{}/private/echo:2.0", registry.address());
    assert!(!push(&reference, actors::ECHO, None)?.status.success(), "anonymous push refused");
    let out = push(&reference, actors::ECHO, Some(("ci", "s3cret")))?;
    assert!(out.status.success(), "push: {}", String::from_utf8_lossy(&out.stderr));

    let lattice = TestLattice::new().await?;
    let good = lattice.start_host(oci_host(&lattice, &registry, tempfile::tempdir()?.path(), Some(("ci", "s3cret")))).await?;
    lattice.scale(good.id(), "echo", &reference, 1).await?.map_err(anyhow::Error::msg)?;
    let bad = lattice.start_host(oci_host(&lattice, &registry, tempfile::tempdir()?.path(), Some(("ci", "wrong")))).await?;
    let err = lattice.scale(bad.id(), "echo2", &reference, 1).await?.expect_err("wrong password");
    assert!(err.contains(&registry.address()) && err.to_lowercase().contains("auth"), "{err}");
    assert!(!err.contains("wrong"), "the password is not printed: {err}");
    // `registry.put` from wasmCloud's own client gives the host the right credentials for that
    // registry; they take precedence over the host's.
    let creds = wasmcloud_control_interface::RegistryCredential::from_username_password("ci", "s3cret", "oci");
    let ctl = lattice.ctl().await?;
    ctl.put_registries(std::collections::HashMap::from([(registry.address(), creds)])).await.map_err(anyhow::Error::msg)?;
    let pulled = trellis_tests::eventually(Duration::from_secs(10), || async {
        lattice.scale(bad.id(), "echo3", &reference, 1).await.ok()?.ok()
    })
    .await;
    assert!(pulled.is_some(), "registry.put credentials were used");
    good.shutdown(None).await?;
    bad.shutdown(None).await?;
    Ok(())
}
