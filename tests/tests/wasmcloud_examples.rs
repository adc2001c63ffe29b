//! wasmCloud 1.9.2's own example applications (`tests/fixtures/wasmcloud-examples/`, built from
//! its sources unchanged), deployed from their own `wadm.yaml` with only the component images
//! and the HTTP listen address pointed at what this test has (the provider images stay: the
//! hosts map them to built-ins, `--builtin-image`), and driven as their READMEs do; then the
//! capabilities they use, misused.

use std::collections::HashMap;
use std::time::Duration;

use trellis_host::permission::kind::BuiltinImages;
use trellis_host::HostConfig;
use trellis_messages::link::Link;
use trellis_messages::provider::StartProviderCommand;
use trellis_tests::apps::{nats039, wadm, wait_status};
use trellis_tests::raw_http::{exchange, request};
use trellis_tests::{eventually, free_port, init_tracing, wasmcloud_example, TestLattice};
use wadm_types::api::StatusType;

/// http-keyvalue-watcher, with the built-in key-value provider and an external one.
mod watcher;

/// A host that runs wasmCloud's provider images with built-ins (`--builtin-image wasmcloud`),
/// and `extra` (`IMAGE=BUILTIN`) too.
fn mapping_images(lattice: &TestLattice, extra: &[&str]) -> anyhow::Result<HostConfig> {
    let mut config = lattice.machine_config();
    let entries: Vec<&str> = std::iter::once("wasmcloud").chain(extra.iter().copied()).collect();
    config.providers.builtin_images = BuiltinImages::parse(&entries)?;
    Ok(config)
}

/// Example `name`'s own manifest with each `(from, to)` replaced.
fn manifest(name: &str, replace: &[(&str, &str)]) -> anyhow::Result<String> {
    let mut yaml = std::fs::read_to_string(wasmcloud_example(name).join("wadm.yaml"))?;
    for (from, to) in replace {
        anyhow::ensure!(yaml.contains(from), "`{from}` is not in {name}'s wadm.yaml");
        yaml = yaml.replace(from, to);
    }
    Ok(yaml)
}

/// Pushes example `name`'s component into the lattice's artifact store.
async fn push_example(lattice: &TestLattice, name: &str) -> anyhow::Result<String> {
    let path = wasmcloud_example(name).join(format!("{name}.wasm"));
    lattice.push(name, path.to_str().unwrap_or_default()).await
}

/// `method path` with `body` on `port`: (status, body as text).
async fn http(port: u16, method: &str, path: &str, body: Option<&[u8]>) -> anyhow::Result<(u16, String)> {
    let (status, body) = exchange(port, &request(method, path, body)).await?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Waits until `GET path` on `port` answers `status`.
async fn wait_for(port: u16, path: &str, status: u16) -> anyhow::Result<()> {
    let seen = eventually(Duration::from_secs(20), || async move { http(port, "GET", path, None).await.ok().filter(|(s, _)| *s == status) }).await;
    anyhow::ensure!(seen.is_some(), "GET {path} did not answer {status}: {:?}", http(port, "GET", path, None).await);
    Ok(())
}

/// Bytes that are not all alike (so a body cut or shuffled anywhere shows).
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[tokio::test]
async fn blobby_stores_serves_and_deletes_files_from_its_own_manifest() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    // Its manifest names wasmCloud's file-system blobstore; this lattice's operator maps it to
    // the built-in on the NATS object store.
    let host = lattice.start_host(mapping_images(&lattice, &["ghcr.io/wasmcloud/blobstore-fs=blobstore-nats"])?).await?;
    let blobby = push_example(&lattice, "blobby").await?;
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let yaml = manifest(
        "blobby",
        &[
            ("ghcr.io/wasmcloud/components/blobby-rust:0.5.1", &blobby),
            ("0.0.0.0:8000", &address),
        ],
    )?;
    let client = wadm(&lattice, nats039(&lattice).await?);
    client.put_and_deploy_manifest(yaml.as_bytes()).await?;
    wait_status(&client, "blobby", StatusType::Deployed, Duration::from_secs(30)).await?;
    wait_for(port, "/myfile.txt", 404).await?;

    // The README's walk-through: upload, read back, update, delete.
    let (status, body) = http(port, "POST", "/myfile.txt", Some(b"Hello there!\n")).await?;
    assert_eq!((status, body.as_str()), (201, "Wrote myfile.txt to blobstore successfully"));
    assert_eq!(http(port, "GET", "/myfile.txt", None).await?, (200, "Hello there!\n".to_string()));
    assert_eq!(http(port, "PUT", "/myfile.txt", Some(b"General Kenobi!\n")).await?.0, 201);
    assert_eq!(http(port, "GET", "/myfile.txt", None).await?, (200, "General Kenobi!\n".to_string()));
    // It is in the lattice's object store, where every host finds it.
    let js = async_nats::jetstream::new(lattice.nats().await?);
    let mut object = js.get_object_store("default").await?.get("myfile.txt").await?;
    let mut stored = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut object, &mut stored).await?;
    assert_eq!(stored, "General Kenobi!\n");

    // 16 MiB streams through and back whole.
    let big = pattern(16 << 20);
    assert_eq!(http(port, "PUT", "/big.bin", Some(&big)).await?.0, 201);
    let (status, back) = exchange(port, &request("GET", "/big.bin", None)).await?;
    assert_eq!(status, 200);
    assert!(back == big, "16 MiB came back as {} bytes, equal: false", back.len());

    // Another container, by query, as the README shows.
    assert_eq!(http(port, "POST", "/a.txt?container=other", Some(b"in other")).await?.0, 201);
    assert_eq!(http(port, "GET", "/a.txt", None).await?.0, 404);
    assert_eq!(http(port, "GET", "/a.txt?container=other", None).await?, (200, "in other".to_string()));

    // A link object (made by other tools; guests cannot make one) that points into another
    // bucket is not followed: the lattice's artifact store stays out of reach.
    let artifacts = js.get_object_store(format!("TRELLIS_ARTIFACTS_{}", lattice.name)).await?;
    let secret = artifacts.put("private.wasm", &mut &b"not for guests"[..]).await?;
    js.get_object_store("default").await?.add_link("linked.txt", &secret).await?;
    let (status, body) = http(port, "GET", "/linked.txt", None).await?;
    assert_eq!(status, 404, "blobby answers a failed read 404: {body}");
    assert!(body.contains("links are not followed") && !body.contains("not for guests"), "{body}");

    // Delete, then it is gone.
    assert_eq!(http(port, "DELETE", "/myfile.txt", None).await?.0, 200);
    assert_eq!(http(port, "GET", "/myfile.txt", None).await?.0, 404);

    // A container the guest names can never be one of the lattice's own buckets, nor a bad name.
    let (status, body) = http(port, "GET", &format!("/x?container=TRELLIS_ARTIFACTS_{}", lattice.name), None).await?;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("access denied") && body.contains("lattice's own buckets"), "{body}");
    let (status, body) = http(port, "GET", "/x?container=a.b", None).await?;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("not a valid bucket name"), "{body}");
    assert!(js.get_object_store("a.b").await.is_err());
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn blobstore_access_follows_the_link_and_its_container_list() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.machine_config()).await?;
    let ctl = lattice.client().await?.with_timeout(Duration::from_secs(10));
    let blobby = push_example(&lattice, "blobby").await?;
    lattice.scale(host.id(), "blobby", &blobby, 4).await?.map_err(anyhow::Error::msg)?;
    for (id, reference) in [("http", "trellis://http-server"), ("blobs", "trellis://blobstore-nats"), ("kv", "trellis://keyvalue")] {
        let cmd = StartProviderCommand { provider_id: id.into(), provider_ref: reference.into(), ..Default::default() };
        ctl.start_provider(host.id(), &cmd).await?;
    }
    let port = free_port();
    ctl.put_config("blobby-http", &HashMap::from([("address".to_string(), format!("127.0.0.1:{port}"))])).await?;
    ctl.put_link(&Link::new("http", "blobby", "default", "wasi", "http", &["incoming-handler"]).with_source_config(&["blobby-http"])).await?;

    // No blobstore link: refused, saying so.
    wait_for(port, "/f", 500).await?;
    let (_, body) = http(port, "GET", "/f", None).await?;
    assert!(body.contains("access denied"), "{body}");

    // A link whose target is a provider of another kind: refused, naming it.
    ctl.put_link(&Link::new("blobby", "kv", "default", "wasi", "blobstore", &["blobstore"])).await?;
    let wrong = eventually(Duration::from_secs(10), || async move {
        http(port, "GET", "/f", None).await.ok().filter(|(_, b)| b.contains("not a blobstore-nats provider"))
    })
    .await;
    assert!(wrong.is_some(), "{:?}", http(port, "GET", "/f", None).await?);

    // The blobstore provider, limited to one container by the link's target config.
    ctl.delete_link("blobby", "default", "wasi", "blobstore").await?;
    ctl.put_config("photos-only", &HashMap::from([("containers".to_string(), "photos".to_string())])).await?;
    ctl.put_link(&Link::new("blobby", "blobs", "default", "wasi", "blobstore", &["blobstore"]).with_target_config(&["photos-only"])).await?;
    wait_for(port, "/f?container=photos", 404).await?;
    assert_eq!(http(port, "PUT", "/f?container=photos", Some(b"a photo")).await?.0, 201);
    assert_eq!(http(port, "GET", "/f?container=photos", None).await?, (200, "a photo".to_string()));
    let (status, body) = http(port, "GET", "/f", None).await?;
    assert_eq!(status, 500);
    assert!(body.contains("container `default` is not among those"), "{body}");

    // An object store another tool made without direct gets (async-nats and wasmCloud's
    // provider make theirs with them): its objects, of one chunk and of several, read whole.
    let js = async_nats::jetstream::new(lattice.nats().await?);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "OBJ_nodirect".into(),
        subjects: vec!["$O.nodirect.C.>".into(), "$O.nodirect.M.>".into()],
        allow_rollup: true,
        allow_direct: false,
        discard: async_nats::jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await?;
    let other = js.get_object_store("nodirect").await?;
    other.put("s.txt", &mut &b"small"[..]).await?;
    let large = pattern(300 << 10);
    other.put("l.bin", &mut &large[..]).await?;
    ctl.put_config("photos-only", &HashMap::from([("containers".to_string(), "photos,nodirect".to_string())])).await?;
    let small = eventually(Duration::from_secs(10), || async move {
        http(port, "GET", "/s.txt?container=nodirect", None).await.ok().filter(|(s, _)| *s == 200)
    })
    .await;
    assert_eq!(small, Some((200, "small".to_string())));
    let (status, back) = exchange(port, &request("GET", "/l.bin?container=nodirect", None)).await?;
    assert!(status == 200 && back == large, "{status}, {} bytes", back.len());
    // An info that promises more chunks than there are (as one replaced mid-read looks, or one
    // another tool wrote falsely): the read ends at once, short, instead of waiting for them.
    let mut info = other.info("l.bin").await?;
    info.chunks = 10;
    info.size = 10 * (128 << 10);
    let meta = format!("$O.nodirect.M.{}", { use base64::Engine as _; base64::engine::general_purpose::URL_SAFE.encode("l.bin") });
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Rollup", "sub");
    js.publish_with_headers(meta, headers, serde_json::to_vec(&info)?.into()).await?.await?;
    let began = std::time::Instant::now();
    let (_, back) = exchange(port, &request("GET", "/l.bin?container=nodirect", None)).await?;
    assert!(back.len() < 10 * (128 << 10) && began.elapsed() < Duration::from_secs(5), "{} bytes after {:?}", back.len(), began.elapsed());

    // The link deleted: the next call is refused.
    ctl.delete_link("blobby", "default", "wasi", "blobstore").await?;
    let revoked = eventually(Duration::from_secs(10), || async move {
        http(port, "GET", "/f?container=photos", None).await.ok().filter(|(s, b)| *s == 500 && b.contains("access denied"))
    })
    .await;
    assert!(revoked.is_some(), "{:?}", http(port, "GET", "/f?container=photos", None).await?);
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn http_hello_world_answers_from_its_own_manifest() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(mapping_images(&lattice, &[])?).await?;
    let hello = push_example(&lattice, "http-hello-world").await?;
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let yaml = manifest(
        "http-hello-world",
        &[
            ("file://./build/http_hello_world_s.wasm", &hello),
            ("0.0.0.0:8000", &address),
        ],
    )?;
    let client = wadm(&lattice, nats039(&lattice).await?);
    client.put_and_deploy_manifest(yaml.as_bytes()).await?;
    wait_status(&client, "rust-hello-world", StatusType::Deployed, Duration::from_secs(30)).await?;
    wait_for(port, "/", 200).await?;
    let (_, body) = http(port, "GET", "/", None).await?;
    assert!(body.contains("Hello"), "{body}");
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn http_keyvalue_counter_counts_per_path_from_its_own_manifest() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    // The manifest names wasmCloud's Redis provider, mapped here to the built-in key-value;
    // its link names no bucket (Redis needs none): the host's default.
    let mut config = mapping_images(&lattice, &["ghcr.io/wasmcloud/keyvalue-redis=keyvalue"])?;
    config.kv_default_bucket = Some("counters".into());
    let host = lattice.start_host(config).await?;
    let counter = push_example(&lattice, "http-keyvalue-counter").await?;
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let yaml = manifest(
        "http-keyvalue-counter",
        &[
            ("ghcr.io/wasmcloud/components/http-keyvalue-counter-rust:0.1.0", &counter),
            ("0.0.0.0:8000", &address),
        ],
    )?;
    let client = wadm(&lattice, nats039(&lattice).await?);
    client.put_and_deploy_manifest(yaml.as_bytes()).await?;
    wait_status(&client, "rust-http-kv", StatusType::Deployed, Duration::from_secs(30)).await?;
    wait_for(port, "/counter", 200).await?;
    let (_, second) = http(port, "GET", "/counter", None).await?;
    let (_, other) = http(port, "GET", "/other", None).await?;
    assert!(second.contains('2'), "the second request counts 2: {second}");
    assert!(other.contains('1'), "another path counts from 1: {other}");
    // The count is in the lattice's bucket.
    let kv = async_nats::jetstream::new(lattice.nats().await?).get_key_value("counters").await?;
    assert_eq!(kv.get("/counter").await?.as_deref(), Some(&b"2"[..]));
    // A link name the component chooses that has no link: an error answer, the host serves on.
    let (status, body) = http(port, "GET", "/counter?link_name=nowhere", None).await?;
    assert_eq!(status, 500, "{body}");
    assert_eq!(http(port, "GET", "/counter", None).await?.0, 200);
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn echo_messaging_echoes_from_its_own_manifest() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(mapping_images(&lattice, &[])?).await?;
    let echo = push_example(&lattice, "echo-messaging").await?;
    let yaml = manifest("echo-messaging", &[("ghcr.io/wasmcloud/components/echo-messaging-rust:0.2.0", &echo)])?;
    let client = wadm(&lattice, nats039(&lattice).await?);
    client.put_and_deploy_manifest(yaml.as_bytes()).await?;
    wait_status(&client, "rust-echo-messaging", StatusType::Deployed, Duration::from_secs(30)).await?;
    let nats = lattice.nats().await?;
    let reply = eventually(Duration::from_secs(20), || {
        let nats = nats.clone();
        async move { tokio::time::timeout(Duration::from_secs(2), nats.request("wasmcloud.echo", "HELLLLOOOOOO".into())).await.ok()?.ok() }
    })
    .await;
    let reply = reply.ok_or_else(|| anyhow::anyhow!("no echo"))?;
    assert_eq!(&reply.payload[..], b"HELLLLOOOOOO");
    host.shutdown(None).await?;
    Ok(())
}

/// The password checker's own manifest with a secret for its component (wasmCloud's secrets
/// policy and a component secret, as wasmCloud's docs add them), deployed as `app` on `port`.
fn checker_manifest(app: &str, image: &str, port: u16, secret: &str) -> anyhow::Result<String> {
    let policy = "spec:\n  policies:\n    - name: nats-kv\n      type: policy.secret.wasmcloud.dev/v1alpha1\n      properties:\n        backend: nats-kv\n";
    let secrets = format!(
        "        image: {image}\n        secrets:\n          - name: password\n            properties:\n              policy: nats-kv\n              key: {secret}\n"
    );
    manifest(
        "http-password-checker",
        &[
            ("        image: file://./build/http_password_checker_s.wasm\n", &secrets),
            ("spec:\n", policy),
            ("name: rust-http-password-checker", &format!("name: {app}")),
            ("0.0.0.0:8000", &format!("127.0.0.1:{port}")),
        ],
    )
}

/// The status message of a failed app.
async fn failure(client: &wadm_client::Client, app: &str) -> anyhow::Result<String> {
    wait_status(client, app, StatusType::Failed, Duration::from_secs(30)).await?;
    let status = client.get_manifest_status(app).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(format!("{status:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_password_checker_checks_passwords_and_its_secret_from_its_own_manifest() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let mut backend = trellis_tests::SecretsBackend::start(&lattice.url_of(0)).await?;
    let stored = "Tr3llis-0n-NATS-and-stored!";
    backend.put("checker-password", stored)?;
    backend.put("someone-elses", "not for the checker")?;
    // The example, signed (the backend knows code by its claims' subject) and allowed one secret.
    let issuer = nkeys::KeyPair::new_account();
    let subject = nkeys::KeyPair::new_module();
    let options = trellis_host::trust::sign::SignOptions {
        name: "http-password-checker".into(),
        subject: Some(nkeys::KeyPair::from_seed(&subject.seed()?)?),
        ..Default::default()
    };
    let unsigned = wasmcloud_example("http-password-checker").join("http-password-checker.wasm");
    let signed = trellis_host::trust::sign::sign(&std::fs::read(&unsigned)?, &issuer, options)?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("signed.wasm"), &signed)?;
    let checker = lattice.push("signed-checker", dir.path().join("signed.wasm").to_str().unwrap_or_default()).await?;
    backend.allow(&subject.public_key(), "checker-password")?;

    let mut config = mapping_images(&lattice, &[])?;
    config.secrets_topic = Some("wasmcloud.secrets".into());
    let host = lattice.start_host(config).await?;
    let client = wadm(&lattice, nats039(&lattice).await?);
    let port = free_port();
    client.put_and_deploy_manifest(checker_manifest("checker", &checker, port, "checker-password")?.as_bytes()).await?;
    wait_status(&client, "checker", StatusType::Deployed, Duration::from_secs(30)).await?;
    let check = |body: &'static [u8]| async move { http(port, "POST", "/api/v1/check", Some(body)).await };
    let seen = eventually(Duration::from_secs(20), || async move { check(br#"{"value": "test"}"#).await.ok().filter(|(s, _)| *s == 200) }).await;
    let (_, body) = seen.ok_or_else(|| anyhow::anyhow!("no answer to a check"))?;
    let answer: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(answer["strength"], "very-weak", "{body}");
    assert_eq!(answer["length"], 4, "{body}");
    // The stored secret, by the name the manifest gives it: checked, never echoed.
    let (status, body) = check(br#"{"secret": {"key": "password"}}"#).await?;
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(answer["length"], stored.len(), "{body}");
    assert_ne!(answer["strength"], "very-weak", "{body}");
    assert!(!body.contains(stored), "{body}");
    // A name it was not given is not found, as on a wasmCloud host; the next check is served.
    let (status, body) = check(br#"{"secret": {"key": "someone-elses"}}"#).await?;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("SecretsError::NotFound"), "{body}");
    assert_eq!(check(br#"{"value": "test"}"#).await?.0, 200);
    // The reference is in the config bucket as wadm writes it; the value is nowhere in config.
    let js = async_nats::jetstream::new(lattice.nats().await?);
    let configs = js.get_key_value(format!("CONFIGDATA_{}", lattice.name)).await?;
    let record = configs.get("SECRET_checker-password").await?.ok_or_else(|| anyhow::anyhow!("no reference"))?;
    let reference: HashMap<String, String> = serde_json::from_slice(&record)?;
    assert_eq!(
        (reference["backend"].as_str(), reference["key"].as_str(), reference["name"].as_str(), reference["type"].as_str()),
        ("nats-kv", "checker-password", "password", "secret.wasmcloud.dev/v1alpha1")
    );
    assert!(!String::from_utf8_lossy(&record).contains(stored));

    // A secret the backend does not allow this component: it does not start, and says why.
    let denied = checker_manifest("denied", &checker, free_port(), "someone-elses")?;
    client.put_and_deploy_manifest(denied.as_bytes()).await?;
    let why = failure(&client, "denied").await?;
    assert!(why.contains("refused secret `password`") && why.contains("unauthorized"), "{why}");
    assert!(!why.contains("not for the checker"), "{why}");
    // Unsigned code is given no secret.
    let plain = push_example(&lattice, "http-password-checker").await?;
    client.put_and_deploy_manifest(checker_manifest("unsigned", &plain, free_port(), "checker-password")?.as_bytes()).await?;
    let why = failure(&client, "unsigned").await?;
    assert!(why.contains("only to signed code"), "{why}");
    // The backend down: a new start fails naming the backend; the running app keeps its secret.
    backend.stop();
    client.put_and_deploy_manifest(checker_manifest("down", &checker, free_port(), "checker-password")?.as_bytes()).await?;
    let why = failure(&client, "down").await?;
    assert!(why.contains("secrets backend `nats-kv` did not answer"), "{why}");
    assert_eq!(check(br#"{"secret": {"key": "password"}}"#).await?.0, 200);
    host.shutdown(None).await?;
    Ok(())
}
