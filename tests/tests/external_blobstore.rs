//! `wasi:blobstore` through an external provider: wasmCloud's own file-system provider
//! (`wasmcloud-provider-blobstore-fs` 0.11 from crates.io, run unchanged) serving wasmCloud's
//! blobby example, deployed from blobby's own `wadm.yaml` with only the component image, the
//! provider executable, the listen address and the root folder pointed at what this test has.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use trellis_host::permission::kind::BuiltinImages;
use trellis_tests::apps::{nats039, wadm, wait_status};
use trellis_tests::raw_http::{exchange, request};
use trellis_tests::{eventually, free_port, init_tracing, wasmcloud_example, TestLattice};
use wadm_types::api::StatusType;

/// `method path` with `body` on `port`: (status, body as text).
async fn http(port: u16, method: &str, path: &str, body: Option<&[u8]>) -> anyhow::Result<(u16, String)> {
    let (status, body) = exchange(port, &request(method, path, body)).await?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Bytes that are not all alike (so a body cut or shuffled anywhere shows).
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobby_stores_and_serves_files_through_wasmclouds_file_system_provider() -> anyhow::Result<()> {
    let _memory = trellis_tests::measuring_memory().await;
    init_tracing();
    let lattice = TestLattice::new().await?;
    // wasmCloud's HTTP server image runs as the built-in; the blobstore is the real provider.
    let mut config = lattice.host_config();
    config.providers.builtin_images = BuiltinImages::parse(&["wasmcloud"])?;
    // Time enough for a debug build to stream 48 MiB through the guest after a stall.
    config.wasm.max_execution_time = Duration::from_secs(300);
    let host = lattice.start_host(config).await?;
    let blobby = lattice.push("blobby", wasmcloud_example("blobby").join("blobby.wasm").to_str().unwrap_or_default()).await?;
    let provider = trellis_tests::blobstore_fs_provider()?;
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("root");
    std::fs::write(dir.path().join("secret.txt"), "outside the root")?;
    let port = free_port();
    let mut yaml = std::fs::read_to_string(wasmcloud_example("blobby").join("wadm.yaml"))?;
    for (from, to) in [
        ("ghcr.io/wasmcloud/components/blobby-rust:0.5.1".to_string(), blobby.clone()),
        ("0.0.0.0:8000".to_string(), format!("127.0.0.1:{port}")),
        ("ghcr.io/wasmcloud/blobstore-fs:0.11.1".to_string(), format!("file://{}", provider.display())),
        ("'/tmp/blobstore'".to_string(), format!("'{}'", root.display())),
    ] {
        anyhow::ensure!(yaml.contains(&from), "`{from}` is not in blobby's wadm.yaml");
        yaml = yaml.replace(&from, &to);
    }
    let client = wadm(&lattice, nats039(&lattice).await?);
    client.put_and_deploy_manifest(yaml.as_bytes()).await?;
    wait_status(&client, "blobby", StatusType::Deployed, Duration::from_secs(60)).await?;

    // The README's walk-through: upload (once the provider has its link), read back, update.
    let wrote = eventually(Duration::from_secs(30), || async move {
        http(port, "POST", "/myfile.txt", Some(b"Hello there!\n")).await.ok().filter(|(s, _)| *s == 201)
    })
    .await;
    anyhow::ensure!(wrote.is_some(), "blobby never stored a file: {:?}", http(port, "POST", "/myfile.txt", Some(b"x")).await);
    assert_eq!(http(port, "GET", "/myfile.txt", None).await?, (200, "Hello there!\n".to_string()));
    assert_eq!(http(port, "PUT", "/myfile.txt", Some(b"General Kenobi!\n")).await?.0, 201);
    assert_eq!(http(port, "GET", "/myfile.txt", None).await?, (200, "General Kenobi!\n".to_string()));
    // It is a file under the link's root, in the container's folder, as the provider keeps it.
    assert_eq!(std::fs::read_to_string(root.join("default/myfile.txt"))?, "General Kenobi!\n");

    // 16 MiB streams through the host both ways whole (read back a window at a time).
    let big = pattern(16 << 20);
    assert_eq!(http(port, "PUT", "/big.bin", Some(&big)).await?.0, 201);
    assert!(std::fs::read(root.join("default/big.bin"))? == big, "the provider stored the 16 MiB whole");
    let (status, back) = exchange(port, &request("GET", "/big.bin", None)).await?;
    assert_eq!(status, 200);
    assert!(back == big, "16 MiB came back as {} bytes, equal: false", back.len());

    // A reader that stalls holds up no other call to the provider and little host memory:
    // while one client takes 1 MiB of a 48 MiB file and stops reading, another request is
    // served at once, and the host holds about a window of the file, not the file.
    const HUGE: usize = 48 << 20;
    std::fs::write(root.join("default/huge.bin"), pattern(HUGE))?;
    let before = trellis_tests::process::rss_of("self");
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    slow.write_all(format!("GET /huge.bin HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n\r\n").as_bytes()).await?;
    let mut buf = vec![0u8; 64 << 10];
    let mut received = 0usize;
    while received < 1 << 20 {
        let n = slow.read(&mut buf).await?;
        anyhow::ensure!(n > 0, "the slow response ended after {received} bytes");
        received += n;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stalled = trellis_tests::process::rss_of("self").saturating_sub(before);
    let asked = Instant::now();
    assert_eq!(http(port, "GET", "/myfile.txt", None).await?, (200, "General Kenobi!\n".to_string()));
    assert!(asked.elapsed() < Duration::from_secs(5), "a small read waited {:?} behind a stalled one", asked.elapsed());
    loop {
        let n = slow.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        received += n;
    }
    assert!(received > HUGE, "the stalled reader still got the whole file ({received} bytes with the head)");
    eprintln!("host memory grew by {} KiB while the client stalled", stalled >> 10);
    assert!(stalled < 16 << 20, "the host's memory grew by {} MiB while the client stalled", stalled >> 20);

    // Another container, by query, as the README shows.
    assert_eq!(http(port, "POST", "/a.txt?container=other", Some(b"in other")).await?.0, 201);
    assert_eq!(http(port, "GET", "/a.txt", None).await?.0, 404);
    assert_eq!(http(port, "GET", "/a.txt?container=other", None).await?, (200, "in other".to_string()));

    // Delete, then it is gone, from the folder too.
    assert_eq!(http(port, "DELETE", "/myfile.txt", None).await?.0, 200);
    assert_eq!(http(port, "GET", "/myfile.txt", None).await?.0, 404);
    assert!(!root.join("default/myfile.txt").exists());

    // A container that climbs out of the root is the provider's to refuse, and it does: the
    // guest gets its error, never the file beside the root.
    let (status, body) = http(port, "GET", "/secret.txt?container=..", None).await?;
    assert_ne!(status, 200, "{body}");
    assert!(!body.contains("outside the root"), "{body}");
    assert!(body.contains("blobstore provider"), "the guest is told who refused: {body}");
    // A container name past 1 KiB never reaches the provider.
    let (status, body) = http(port, "GET", &format!("/x?container={}", "c".repeat(2000)), None).await?;
    assert_ne!(status, 200, "{body}");
    assert!(body.contains("container names are 1 to 1024 bytes"), "{body}");
    host.shutdown(None).await?;
    Ok(())
}

/// Every `wasi:blobstore` operation (the `blob-ops` guest: create, write, list two names at a
/// time, has, info, a ranged read, copy, move, delete-objects, clear, container info, delete,
/// exists) answers the same on the built-in `blobstore-nats` and through wasmCloud's
/// `blobstore-fs` provider; a 17 MiB value is refused by `consume-sync` and streamed whole by
/// `consume-async` on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_blobstore_operation_answers_the_same_on_the_built_in_and_through_a_provider() -> anyhow::Result<()> {
    use trellis_messages::link::Link;
    use trellis_messages::provider::StartProviderCommand;
    init_tracing();
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    // Time enough for a debug build to write and read 17 MiB in one request.
    config.wasm.max_execution_time = Duration::from_secs(120);
    let host = lattice.start_host(config).await?;
    let client = lattice.client().await?.with_timeout(Duration::from_secs(10));
    let dir = tempfile::tempdir()?;
    let provider = trellis_tests::blobstore_fs_provider()?;
    let ack = lattice.ctl().await?.start_provider(host.id(), &provider.display().to_string(), "fs", None, vec![]).await.map_err(anyhow::Error::msg)?;
    anyhow::ensure!(ack.succeeded(), "{}", ack.message());
    for (id, reference) in [("http-ops-nats", "trellis://http-server"), ("http-ops-fs", "trellis://http-server"), ("nats-blobs", "trellis://blobstore-nats")] {
        client.start_provider(host.id(), &StartProviderCommand { provider_id: id.into(), provider_ref: reference.into(), ..Default::default() }).await?;
    }
    client.put_config("fs-root", &std::collections::HashMap::from([("ROOT".to_string(), dir.path().display().to_string())])).await?;
    let expected = "names [\"a\", \"b\", \"c\"]\nhas a true z false\nc is 7 bytes\nc 1..4 \"har\"\nafter copy and move [\"a\", \"c\", \"d\", \"e\"]\n\
                    e is \"bravo\"\nafter delete [\"a\", \"e\"]\nafter clear []\ncontainer ops\nexists false\n";
    for (component, target, config) in [("ops-nats", "nats-blobs", None), ("ops-fs", "fs", Some("fs-root"))] {
        lattice.scale(host.id(), component, trellis_tests::guests::BLOB_OPS, 2).await?.map_err(anyhow::Error::msg)?;
        let port = free_port();
        let address = format!("{component}-http");
        client.put_config(&address, &std::collections::HashMap::from([("address".to_string(), format!("127.0.0.1:{port}"))])).await?;
        let server = format!("http-{component}");
        client.put_link(&Link::new(&server, component, "default", "wasi", "http", &["incoming-handler"]).with_source_config(&[address.as_str()])).await?;
        let link = Link::new(component, target, "default", "wasi", "blobstore", &["blobstore"]);
        client.put_link(&match config { Some(c) => link.with_target_config(&[c]), None => link }).await?;
        let answered = eventually(Duration::from_secs(20), || async move { http(port, "GET", "/ops/ops", None).await.ok().filter(|(s, _)| *s == 200) }).await;
        let Some((_, report)) = answered else {
            anyhow::bail!("{component} never ran its operations: {:?}", http(port, "GET", "/ops/ops", None).await);
        };
        assert_eq!(report, expected, "{component}");
        // 17 MiB: more than `consume-sync` returns (refused, saying why), streamed whole.
        let (status, report) = http(port, "GET", "/big/big", None).await?;
        assert_eq!(status, 200, "{component}: {report}");
        assert!(report.contains("consume-sync refused: the value is 17825792 bytes, more than the 16777216 bytes"), "{component}: {report}");
        assert!(report.contains("consume-async read 17825792 bytes, as written: true"), "{component}: {report}");
    }
    assert!(!dir.path().join("ops").exists(), "the provider's container folder is gone after delete-container");
    host.shutdown(None).await?;
    Ok(())
}
