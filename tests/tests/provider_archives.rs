//! Provider archives (`.par`, `.par.gz`) and provider images in an OCI registry: verified,
//! unpacked for this machine and run; tampered, foreign or wrong artifacts refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use trellis_tests::providers::{alive, Events};
use trellis_tests::{eventually, init_tracing, TestLattice};

/// A provider archive holding `binary` for `target`, signed by a new account key.
async fn archive(dir: &Path, name: &str, target: &str, binary: &[u8], gzip: bool) -> anyhow::Result<PathBuf> {
    archive_by(dir, name, target, binary, gzip, &nkeys::KeyPair::new_account()).await
}

/// A provider archive holding `binary` for `target`, signed by `issuer`.
async fn archive_by(dir: &Path, name: &str, target: &str, binary: &[u8], gzip: bool, issuer: &nkeys::KeyPair) -> anyhow::Result<PathBuf> {
    let mut par = provider_archive::ProviderArchive::new(name, "trellis-tests", Some(1), Some("0.1.0".into()));
    par.add_library(target, binary).map_err(|e| anyhow::anyhow!("{e}"))?;
    let path = dir.join(format!("{name}.par"));
    par.write(&path, issuer, &nkeys::KeyPair::new_service(), gzip).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(if gzip { dir.join(format!("{name}.par.gz")) } else { path })
}

#[tokio::test]
async fn hosts_that_name_trusted_issuers_run_only_archives_they_signed() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let trusted = nkeys::KeyPair::new_account();
    let mut config = lattice.host_config();
    config.trust = trellis_host::trust::TrustPolicy { require_signed: true, trusted_issuers: vec![trusted.public_key()] };
    let host = lattice.start_host(config).await?;
    let ctl = lattice.ctl().await?;
    let mut events = Events::on(&lattice).await?;
    let dir = tempfile::tempdir()?;
    let pid_file = dir.path().join("pid");
    let binary = format!("#!/bin/sh\necho $$ > {}\nexec sleep 1000\n", pid_file.display());
    let target = format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS);

    let foreign = archive(dir.path(), "foreign", &target, binary.as_bytes(), true).await?;
    ctl.start_provider(host.id(), &foreign.display().to_string(), "foreign", None, vec![]).await.map_err(anyhow::Error::msg)?;
    let failed = events.expect("provider_start_failed", Duration::from_secs(10), |d| d["provider_id"] == "foreign").await;
    assert!(failed["error"].as_str().unwrap_or_default().contains("not one of this host's trusted issuers"), "{failed}");

    let ours = archive_by(dir.path(), "ours", &target, binary.as_bytes(), true, &trusted).await?;
    let (pid, _) = start_and_wait(&ctl, &mut events, host.id(), &ours.display().to_string(), "ours", &pid_file).await?;
    // claims.get lists the running archive's claims.
    let claims = ctl.get_claims().await.map_err(anyhow::Error::msg)?.into_data().unwrap_or_default();
    assert_eq!(claims.len(), 1, "{claims:?}");
    assert_eq!((claims[0].get("issuer"), claims[0].get("name").map(String::as_str)), (Some(&trusted.public_key()), Some("ours")));
    host.shutdown(None).await?;
    assert!(!alive(pid));
    Ok(())
}

/// A gzipped archive of 1 GiB of zeros (about a megabyte), offered to a host that runs only
/// archives signed by an issuer it trusts: refused as a gzip bomb once it has inflated past 100
/// times its size, before anything in it is read, and the host's memory does not take the GiB.
#[tokio::test]
async fn a_gzip_bomb_is_refused_without_exhausting_the_host() -> anyhow::Result<()> {
    let _memory = trellis_tests::measuring_memory().await;
    use std::io::Write as _;
    init_tracing();
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.trust = trellis_host::trust::TrustPolicy { require_signed: true, trusted_issuers: vec![nkeys::KeyPair::new_account().public_key()] };
    let host = lattice.start_host(config).await?;
    let ctl = lattice.ctl().await?;
    let mut events = Events::on(&lattice).await?;
    let dir = tempfile::tempdir()?;
    let bomb = dir.path().join("bomb.par.gz");
    let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&bomb)?, flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        gz.write_all(&zeros)?;
    }
    gz.finish()?;
    let before = trellis_tests::process::rss_of("self");
    ctl.start_provider(host.id(), &bomb.display().to_string(), "bomb", None, vec![]).await.map_err(anyhow::Error::msg)?;
    let failed = events.expect("provider_start_failed", Duration::from_secs(30), |d| d["provider_id"] == "bomb").await;
    assert!(failed["error"].as_str().unwrap_or_default().contains("likely gzip bomb"), "{failed}");
    let grown = trellis_tests::process::rss_of("self").saturating_sub(before);
    assert!(grown < 400 << 20, "this process (the host's) grew by {} MiB", grown >> 20);
    assert!(lattice.client().await?.inventory(host.id()).await.is_ok(), "the host answers");
    host.shutdown(None).await?;
    Ok(())
}

/// `bytes` with the first occurrence of `from` replaced by `to` (same length).
fn replaced(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = bytes.windows(from.len()).position(|w| w == from).expect("found");
    let mut out = bytes.to_vec();
    out[at..at + to.len()].copy_from_slice(to);
    out
}

#[tokio::test]
async fn provider_archives_run_the_binary_for_this_machine_when_signed_and_intact() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let ctl = lattice.ctl().await?;
    let mut events = Events::on(&lattice).await?;
    let dir = tempfile::tempdir()?;
    let pid_file = dir.path().join("pid");
    let exe_file = dir.path().join("exe");
    let binary = format!("#!/bin/sh\necho \"$0\" > {}\necho $$ > {}\nexec sleep 1000\n", exe_file.display(), pid_file.display());
    let target = format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS);

    // Signed, gzipped, with this machine's binary: it runs.
    let good = archive(dir.path(), "good", &target, binary.as_bytes(), true).await?;
    let (pid, started) = start_and_wait(&ctl, &mut events, host.id(), &good.display().to_string(), "par", &pid_file).await?;
    // `provider_started` carries the archive's claims and the fields wasmCloud 1.9 adds with them.
    assert_eq!((&started["claims"]["name"], &started["claims"]["version"]), (&serde_json::json!("good"), &serde_json::json!("0.1.0")), "{started}");
    assert!(started["claims"]["issuer"].as_str().is_some_and(|i| i.starts_with('A')), "{started}");
    assert_eq!((&started["claims"]["not_before_human"], &started["claims"]["expires_human"]), (&serde_json::json!("never"), &serde_json::json!("never")), "{started}");
    assert_eq!((&started["instance_id"], &started["public_key"], &started["link_name"]), (&serde_json::json!("par"), &serde_json::json!("par"), &serde_json::json!("default")), "{started}");
    ctl.stop_provider(host.id(), "par").await.map_err(anyhow::Error::msg)?;
    let stopped = events.expect("provider_stopped", Duration::from_secs(10), |d| d["provider_id"] == "par").await;
    assert_eq!(stopped["reason"], "stop", "as wasmCloud 1.9 says it: {stopped}");
    assert!(!alive(pid), "the archive's process ended with the stop");
    // It ran from a directory only the host's user can enter, removed when the host stops.
    let unpacked = std::path::PathBuf::from(std::fs::read_to_string(&exe_file)?.trim());
    let unpacked_dir = unpacked.parent().expect("a directory").to_path_buf();
    assert!(!unpacked.starts_with(dir.path()), "run from the host's own directory: {}", unpacked.display());
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&unpacked_dir)?.permissions().mode() & 0o777, 0o700, "{}", unpacked_dir.display());

    // Refused: a changed binary, a changed signature, no binary for this machine, not an archive.
    let plain = std::fs::read(archive(dir.path(), "plain", &target, binary.as_bytes(), false).await?)?;
    let changed_binary = dir.path().join("changed-binary.par");
    std::fs::write(&changed_binary, replaced(&plain, b"exec sleep", b"exec sle3p"))?;
    let jwt_start = plain.windows(3).position(|w| w == b"eyJ").expect("a JWT in the archive");
    let mut changed_signature = plain.clone();
    let end = jwt_start + changed_signature[jwt_start..].iter().position(|b| *b == 0).unwrap_or(0);
    changed_signature[end - 2] = if changed_signature[end - 2] == b'A' { b'B' } else { b'A' };
    let changed_sig = dir.path().join("changed-signature.par");
    std::fs::write(&changed_sig, changed_signature)?;
    let elsewhere = archive(dir.path(), "elsewhere", "aarch64-macos", binary.as_bytes(), true).await?;
    let junk = dir.path().join("junk.par");
    std::fs::write(&junk, b"not a tar at all")?;
    for (path, reason) in [
        (&changed_binary, "hash"),
        (&changed_sig, "signature"),
        (&elsewhere, "no binary for this machine"),
        (&junk, "not a valid provider archive"),
    ] {
        let ack = ctl.start_provider(host.id(), &path.display().to_string(), "bad", None, vec![]).await.map_err(anyhow::Error::msg)?;
        assert!(ack.succeeded());
        let failed = events.expect("provider_start_failed", Duration::from_secs(10), |d| d["provider_id"] == "bad").await;
        let error = failed["error"].as_str().unwrap_or_default().to_string();
        assert!(error.to_lowercase().contains(reason), "{}: {error}", path.display());
    }
    assert!(lattice.client().await?.inventory(host.id()).await?.providers.is_empty());
    host.shutdown(None).await?;
    assert!(!unpacked_dir.exists(), "{} removed with the host", unpacked_dir.display());

    // The same archive as a provider image in a registry, on a host that runs provider images.
    let registry = trellis_tests::Registry::start(&[]).await?;
    let image = push_raw_layer(&registry, "trellis/par-provider:0.1.0", std::fs::read(&good)?, PAR_MEDIA_TYPE).await?;
    let mut config = lattice.host_config();
    config.providers.allow_images = true;
    config.wasm.oci.insecure = vec![registry.address()];
    config.wasm.oci.cache_dir = Some(dir.path().join("oci-cache"));
    let host = lattice.start_host(config).await?;
    std::fs::remove_file(&pid_file)?;
    let (pid, _) = start_and_wait(&ctl, &mut events, host.id(), &image, "from-registry", &pid_file).await?;
    // A component image is not a provider image.
    let component = push_raw_layer(&registry, "trellis/echo:0.1.0", std::fs::read(trellis_tests::guests::ECHO)?, "application/wasm").await?;
    ctl.start_provider(host.id(), &component, "wrong", None, vec![]).await.map_err(anyhow::Error::msg)?;
    let failed = events.expect("provider_start_failed", Duration::from_secs(20), |d| d["provider_id"] == "wrong").await;
    assert!(failed["error"].as_str().unwrap_or_default().contains("not a provider image"), "{failed}");
    host.shutdown(None).await?;
    assert!(!alive(pid), "stopped with its host");
    Ok(())
}

/// Starts provider `id` from `reference` and waits for its process to write its pid to
/// `pid_file`; returns the pid of the running process and its `provider_started` event.
async fn start_and_wait(
    ctl: &wasmcloud_control_interface::Client,
    events: &mut Events,
    host: &str,
    reference: &str,
    id: &str,
    pid_file: &Path,
) -> anyhow::Result<(u64, serde_json::Value)> {
    let ack = ctl.start_provider(host, reference, id, None, vec![]).await.map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded(), "{}", ack.message());
    let started = events.expect("provider_started", Duration::from_secs(20), |d| d["provider_id"] == id).await;
    let pid: u64 = eventually(Duration::from_secs(10), || {
        let pid = std::fs::read_to_string(pid_file).ok().and_then(|s| s.trim().parse().ok());
        async move { pid }
    })
    .await
    .unwrap_or_else(|| panic!("{reference} ran"));
    assert!(alive(pid));
    Ok((pid, started))
}

/// The layer media type of wasmCloud provider images.
const PAR_MEDIA_TYPE: &str = "application/vnd.wasmcloud.provider.archive.layer.v1+par";

/// Pushes one layer of `media` type as any OCI tool can (wasmCloud publishes a provider image
/// as one provider-archive layer).
async fn push_raw_layer(registry: &trellis_tests::Registry, repository: &str, data: Vec<u8>, media: &str) -> anyhow::Result<String> {
    use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
    let reference = format!("{}/{repository}", registry.address());
    let image: oci_client::Reference = reference.parse()?;
    let client = oci_client::Client::new(ClientConfig { protocol: ClientProtocol::HttpsExcept(vec![registry.address()]), ..ClientConfig::default() });
    let layers = vec![ImageLayer::new(data, media.to_string(), None)];
    let config = Config::new(b"{}".to_vec(), "application/vnd.wasmcloud.provider.archive.config".to_string(), None);
    client.push(&image, &layers, config, &oci_client::secrets::RegistryAuth::Anonymous, None).await?;
    Ok(reference)
}

