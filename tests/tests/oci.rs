//! Components from a real OCI registry (Debian's `docker-registry`, the CNCF distribution
//! registry): `trellis push` in wash's layout, scale by reference on several hosts, the cache
//! (one download for hosts that share it; tampered content fetched again), `:latest`, missing
//! artifacts and registry credentials.

use std::process::Command;
use std::time::Duration;

use trellis_host::wasm::sources::oci::{OciConfig, OciCredentials};
use trellis_host::HostConfig;
use trellis_tests::{guests, init_tracing, trellis_bin, Registry, TestLattice};

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
        credentials: credentials.map(|(u, p)| OciCredentials { registry: registry.address(), user: u.to_string(), password: p.to_string() }),
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
    let out = push(&reference, guests::ECHO, None)?;
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
    assert!(!push(&reference, guests::ECHO, None)?.status.success(), "anonymous push refused");
    let out = push(&reference, guests::ECHO, Some(("ci", "s3cret")))?;
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

/// The host's `--oci-user`/`--oci-password` go only to `--oci-registry`. Before, they went to
/// every registry: a reference to an attacker's registry received them. Here the second
/// registry accepts the same user (as an attacker's would, to capture the password), so a pull
/// from it succeeds only if the host sends the credentials there.
#[tokio::test]
async fn registry_credentials_go_only_to_their_registry() -> anyhow::Result<()> {
    init_tracing();
    let own = Registry::start(&[("ci", "s3cret")]).await?;
    let other = Registry::start(&[("ci", "s3cret")]).await?;
    let ours = format!("{}/private/echo:2.0", own.address());
    let theirs = format!("{}/private/echo:2.0", other.address());
    for reference in [&ours, &theirs] {
        let out = push(reference, guests::ECHO, Some(("ci", "s3cret")))?;
        assert!(out.status.success(), "push: {}", String::from_utf8_lossy(&out.stderr));
    }
    let lattice = TestLattice::new().await?;
    let mut config = oci_host(&lattice, &own, tempfile::tempdir()?.path(), Some(("ci", "s3cret")));
    config.wasm.oci.insecure.push(other.address());
    let host = lattice.start_host(config).await?;
    lattice.scale(host.id(), "ours", &ours, 1).await?.map_err(anyhow::Error::msg)?;
    let err = lattice.scale(host.id(), "theirs", &theirs, 1).await?.expect_err("no credentials for the other registry");
    assert!(err.contains(&other.address()) && err.to_lowercase().contains("auth"), "{err}");
    host.shutdown(None).await?;
    Ok(())
}

/// Pushes an artifact with `layers` (bytes, media type) and a plain image config, as any OCI
/// tool can: what `trellis push` refuses to write.
async fn push_raw(registry: &Registry, repository: &str, layers: Vec<(Vec<u8>, &str)>) -> anyhow::Result<String> {
    use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
    let reference = format!("{}/{repository}", registry.address());
    let image: oci_client::Reference = reference.parse()?;
    let client = oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(vec![registry.address()]),
        ..ClientConfig::default()
    });
    let layers: Vec<_> = layers.into_iter().map(|(data, media)| ImageLayer::new(data, media.to_string(), None)).collect();
    let config = Config::new(b"{}".to_vec(), "application/vnd.oci.image.config.v1+json".to_string(), None);
    client.push(&image, &layers, config, &oci_client::secrets::RegistryAuth::Anonymous, None).await?;
    Ok(reference)
}

#[tokio::test]
async fn artifacts_that_are_not_one_component_are_refused_by_name() -> anyhow::Result<()> {
    init_tracing();
    let registry = Registry::start(&[]).await?;
    let image = push_raw(&registry, "trellis/image:1.0", vec![(b"not a tarball".to_vec(), "application/vnd.oci.image.layer.v1.tar+gzip")]).await?;
    let echo = std::fs::read(guests::ECHO)?;
    let pinger = std::fs::read(guests::PINGER)?;
    let two = push_raw(&registry, "trellis/two:1.0", vec![(echo, "application/wasm"), (pinger, "application/wasm")]).await?;

    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(oci_host(&lattice, &registry, tempfile::tempdir()?.path(), None)).await?;
    let err = lattice.scale(host.id(), "image", &image, 1).await?.expect_err("no wasm layer");
    assert!(err.contains("not wasm") && err.contains(&image) && err.contains("application/wasm"), "{err}");
    let err = lattice.scale(host.id(), "two", &two, 1).await?.expect_err("two wasm layers");
    assert!(err.contains("not one component") && err.contains(&two), "{err}");
    assert_eq!(registry.blob_downloads(), 0, "refused from the manifest alone");
    // The host carries on.
    let inventory = lattice.client().await?.inventory(host.id()).await?;
    assert!(inventory.components.is_empty(), "{inventory:?}");
    host.shutdown(None).await?;
    Ok(())
}

/// A stand-in registry on a free port that reads each request's head and either never answers
/// (`silent`) or answers `404 manifest unknown`; the heads are kept for the test to read.
async fn fake_registry(silent: bool) -> anyhow::Result<(String, std::sync::Arc<std::sync::Mutex<Vec<String>>>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                loop {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut byte).await {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    seen.lock().unwrap().push(String::from_utf8_lossy(&head).into_owned());
                    if silent {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        return;
                    }
                    let body = r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
                    let answer = format!(
                        "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok((address, heads))
}

#[tokio::test]
async fn a_registry_that_never_answers_times_out_and_does_not_hold_up_control_answers() -> anyhow::Result<()> {
    init_tracing();
    let (address, heads) = fake_registry(true).await?;
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.wasm.oci = OciConfig { insecure: vec![address.clone()], timeout: Duration::from_secs(6), ..OciConfig::default() };
    let host = lattice.start_host(config).await?;
    let client = lattice.client().await?;
    // Ten pulls hang on the registry at once.
    let mut outcomes = Vec::new();
    for i in 0..10 {
        outcomes.push(lattice.watch_scale_events(&format!("slow{i}")).await?);
        let command = trellis_messages::component::ScaleComponentCommand {
            component_ref: format!("{address}/slow/c{i}:1.0"),
            component_id: format!("slow{i}"),
            max_instances: 1,
            host_id: host.id().into(),
            ..Default::default()
        };
        tokio::time::timeout(Duration::from_secs(2), client.scale_component(host.id(), &command)).await??;
    }
    let hung = trellis_tests::eventually(Duration::from_secs(5), || async { (heads.lock().unwrap().len() >= 10).then_some(()) }).await;
    assert!(hung.is_some(), "every pull reached the registry");
    // Meanwhile the host answers its control subjects well inside the pulls' 6 s.
    let started = std::time::Instant::now();
    let inventory = tokio::time::timeout(Duration::from_secs(3), client.inventory(host.id())).await??;
    assert!(inventory.components.is_empty());
    assert!(tokio::time::timeout(Duration::from_secs(3), lattice.ctl().await?.get_hosts()).await?.is_ok());
    assert!(started.elapsed() < Duration::from_secs(5));
    for outcome in outcomes {
        let err = outcome.await??.expect_err("the pull timed out");
        assert!(err.contains(&address) && err.contains("no answer"), "{err}");
    }
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn a_registry_token_from_registry_put_is_sent_as_a_bearer_token() -> anyhow::Result<()> {
    init_tracing();
    let (address, heads) = fake_registry(false).await?;
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.wasm.oci = OciConfig { insecure: vec![address.clone()], timeout: Duration::from_secs(10), ..OciConfig::default() };
    let host = lattice.start_host(config).await?;
    let creds = wasmcloud_control_interface::RegistryCredential::from_token("t0ken-for-ci", "oci");
    let ctl = lattice.ctl().await?;
    ctl.put_registries(std::collections::HashMap::from([(address.clone(), creds)])).await.map_err(anyhow::Error::msg)?;
    let reference = format!("{address}/private/echo:1.0");
    let err = lattice.scale(host.id(), "echo", &reference, 1).await?.expect_err("the stand-in has nothing");
    assert!(err.contains(&address) && !err.contains("t0ken-for-ci"), "the token is not printed: {err}");
    let heads = heads.lock().unwrap().clone();
    let manifest = heads.iter().find(|h| h.contains("/v2/private/echo/manifests/1.0")).expect("the manifest was asked for");
    assert!(manifest.to_lowercase().contains("authorization: bearer t0ken-for-ci"), "{manifest}");
    host.shutdown(None).await?;
    Ok(())
}

/// A registry of an attacker's: its manifest declares a 10-byte layer, and the blob it sends is
/// 200 MiB. The host read whatever came (oci-client's `pull_blob`); now it stops at its
/// component size limit and its memory stays flat.
#[tokio::test]
async fn a_registry_that_sends_more_than_it_declared_is_cut_off() -> anyhow::Result<()> {
    let _memory = trellis_tests::measuring_memory().await;
    init_tracing();
    let manifest = wasm_manifest(&format!("sha256:{}", "0".repeat(64)), 10);
    let (address, _, sent) = scripted_registry(move |_, head| {
        let line = head.lines().next().unwrap_or_default();
        if line.contains("/blobs/") {
            Answer::Endless { head: "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n".into(), bytes: 200 << 20 }
        } else if line.contains("/manifests/") {
            whole("200 OK", "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n", &manifest)
        } else {
            whole("200 OK", "", "{}")
        }
    })
    .await?;
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.wasm.max_component_size = 8 << 20;
    config.wasm.oci = OciConfig { insecure: vec![address.clone()], timeout: Duration::from_secs(30), ..OciConfig::default() };
    let host = lattice.start_host(config).await?;
    let rss = || trellis_tests::process::rss_of("self");
    let before = rss();
    let err = lattice.scale(host.id(), "evil", &format!("{address}/evil/echo:1.0"), 1).await?.expect_err("refused");
    assert!(err.contains("too large") && err.contains(&address), "{err}");
    let grown = rss().saturating_sub(before);
    assert!(grown < 64 << 20, "the host grew by {} MiB", grown >> 20);
    assert!(sent.load(std::sync::atomic::Ordering::Relaxed) < 100 << 20, "the download was cut off early");
    host.shutdown(None).await?;
    Ok(())
}

/// What a scripted registry sends for one request.
enum Answer {
    /// A whole response, head and body.
    Whole(String),
    /// `head`, then filler until `bytes` are sent or the host hangs up (the body's length is not
    /// announced: the connection closes after it).
    Endless { head: String, bytes: u64 },
}

/// A registry on a free port whose answer to each request is `script`'s, given the request's head.
/// Returns its address, the heads it was sent and the body bytes it managed to send.
async fn scripted_registry(
    script: impl Fn(&str, &str) -> Answer + Send + Sync + 'static,
) -> anyhow::Result<(String, std::sync::Arc<std::sync::Mutex<Vec<String>>>, std::sync::Arc<std::sync::atomic::AtomicU64>)> {
    use std::sync::atomic::Ordering::Relaxed;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let script = std::sync::Arc::new(script);
    let (seen, counted, own) = (heads.clone(), sent.clone(), address.clone());
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (seen, counted, script, own) = (seen.clone(), counted.clone(), script.clone(), own.clone());
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&request).into_owned();
                seen.lock().unwrap().push(head.clone());
                match script(&own, &head) {
                    Answer::Whole(all) => {
                        let _ = conn.write_all(all.as_bytes()).await;
                    }
                    Answer::Endless { head, bytes } => {
                        if conn.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        let chunk = vec![b' '; 64 << 10];
                        while counted.load(Relaxed) < bytes {
                            if conn.write_all(&chunk).await.is_err() {
                                return;
                            }
                            counted.fetch_add(chunk.len() as u64, Relaxed);
                        }
                    }
                }
            });
        }
    });
    Ok((address, heads, sent))
}

fn whole(status: &str, headers: &str, body: &str) -> Answer {
    Answer::Whole(format!("HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()))
}

/// A manifest of one `application/wasm` layer of `digest` and `size`.
fn wasm_manifest(digest: &str, size: usize) -> String {
    let zeros = "0".repeat(64);
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.wasm.config.v0+json","digest":"sha256:{zeros}","size":2}},"layers":[{{"mediaType":"application/wasm","digest":"{digest}","size":{size}}}]}}"#
    )
}

/// Manifests and token answers were read whole by oci-client (`res.bytes()`): a registry sending
/// 200 MiB in either grew the host by as much. Now each is cut off at 4 MiB
/// (`vendor/oci-client`, `MAX_RESPONSE_BYTES`) and the host's memory stays flat.
#[tokio::test]
async fn a_registry_sending_an_endless_manifest_or_token_is_cut_off() -> anyhow::Result<()> {
    let _memory = trellis_tests::measuring_memory().await;
    init_tracing();
    const ENDLESS: u64 = 200 << 20;
    let endless = || Answer::Endless { head: "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n".into(), bytes: ENDLESS };
    // One registry answers the manifest without end; the other asks for a bearer token and its
    // token endpoint answers without end.
    let (manifests, _, manifest_sent) = scripted_registry(move |_, head| {
        if head.starts_with("GET /v2/ ") { whole("200 OK", "", "{}") } else { endless() }
    })
    .await?;
    let (tokens, _, token_sent) = scripted_registry(move |own, head| {
        if head.starts_with("GET /token") {
            endless()
        } else {
            whole("401 Unauthorized", &format!("WWW-Authenticate: Bearer realm=\"http://{own}/token\",service=\"evil\"\r\n"), "")
        }
    })
    .await?;
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.wasm.oci = OciConfig { insecure: vec![manifests.clone(), tokens.clone()], timeout: Duration::from_secs(30), ..OciConfig::default() };
    let host = lattice.start_host(config).await?;
    let before = trellis_tests::process::rss_of("self");
    // oci-client drops a failed token request and asks for the manifest without one, so that
    // pull fails as unauthorised.
    for (address, sent, reason) in [(&manifests, &manifest_sent, "larger than 4194304 bytes"), (&tokens, &token_sent, "Not authorized")] {
        let err = lattice.scale(host.id(), "evil", &format!("{address}/evil/echo:1.0"), 1).await?.expect_err("refused");
        assert!(err.contains(reason) && err.contains(address.as_str()), "{err}");
        let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
        assert!(sent < 64 << 20, "{address}: the response was cut off early ({} MiB sent)", sent >> 20);
    }
    let grown = trellis_tests::process::rss_of("self").saturating_sub(before);
    assert!(grown < 64 << 20, "the host grew by {} MiB", grown >> 20);
    lattice.scale(host.id(), "echo", guests::ECHO, 1).await?.map_err(anyhow::Error::msg)?;
    host.shutdown(None).await?;
    Ok(())
}

/// A registry the host has credentials for redirects the layer to another server (as registries
/// do to their storage): the credentials go with the manifest request and not to the other
/// server (reqwest drops `Authorization` on a redirect to another host or port).
#[tokio::test]
async fn registry_credentials_do_not_follow_a_redirect_to_another_server() -> anyhow::Result<()> {
    init_tracing();
    let (storage, storage_heads, _) = scripted_registry(|_, _| whole("404 Not Found", "", "")).await?;
    let layer = b"not really wasm";
    let digest = trellis_host::wasm::sources::oci::sha256(layer);
    let manifest = wasm_manifest(&digest, layer.len());
    let to = storage.clone();
    let (registry, registry_heads, _) = scripted_registry(move |_, head| {
        let line = head.lines().next().unwrap_or_default();
        if !head.to_lowercase().contains("authorization: basic") {
            whole("401 Unauthorized", "WWW-Authenticate: Basic realm=\"registry\"\r\n", "")
        } else if line.contains("/manifests/") {
            whole("200 OK", "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n", &manifest)
        } else if line.contains("/blobs/") {
            whole("307 Temporary Redirect", &format!("Location: http://{to}/storage/layer\r\n"), "")
        } else {
            whole("200 OK", "", "{}")
        }
    })
    .await?;
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.wasm.oci = OciConfig {
        insecure: vec![registry.clone(), storage.clone()],
        credentials: Some(OciCredentials { registry: registry.clone(), user: "ci".into(), password: "s3cret".into() }),
        timeout: Duration::from_secs(20),
        ..OciConfig::default()
    };
    let host = lattice.start_host(config).await?;
    let err = lattice.scale(host.id(), "moved", &format!("{registry}/private/echo:1.0"), 1).await?.expect_err("the storage has nothing");
    assert!(err.contains(&registry), "{err}");
    let asked = registry_heads.lock().unwrap().clone();
    assert!(
        asked.iter().any(|h| h.contains("/blobs/") && h.to_lowercase().contains("authorization: basic")),
        "the registry itself was sent the credentials: {asked:?}"
    );
    let redirected = storage_heads.lock().unwrap().clone();
    assert!(redirected.iter().any(|h| h.contains("/storage/layer")), "the redirect was followed: {redirected:?}");
    assert!(redirected.iter().all(|h| !h.to_lowercase().contains("authorization")), "no credentials went to the storage: {redirected:?}");
    host.shutdown(None).await?;
    Ok(())
}
