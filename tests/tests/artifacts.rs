//! Components kept in the lattice itself: `trellis push nats://NAME:VERSION` stores a component
//! in the lattice's JetStream object store, and hosts attached to other nodes of a 3-node
//! cluster scale it from there: no registry, no shared file system.

use std::process::Command;

use trellis_tests::{guests, init_tracing, trellis_bin, TestLattice};

#[tokio::test]
async fn a_component_pushed_to_the_lattice_runs_on_hosts_of_other_nodes() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::cluster(3).await?;
    let out = Command::new(trellis_bin()?)
        .args(["push", "nats://echo:1.0", guests::ECHO, "--replicas", "3", "--nats-url", &lattice.url_of(0), "--lattice", &lattice.name])
        .output()?;
    assert!(out.status.success(), "push: {}", String::from_utf8_lossy(&out.stderr));
    let cache = tempfile::tempdir()?;
    let mut hosts = Vec::new();
    for node in [1, 2] {
        let mut config = lattice.host_config_on(node);
        config.wasm.file_load = trellis_host::wasm::sources::load::FileLoad::default(); // no files needed
        config.wasm.oci.cache_dir = Some(cache.path().join(format!("node{node}")));
        let host = lattice.start_host(config).await?;
        lattice.scale(host.id(), "echo", "nats://echo:1.0", 2).await?.map_err(anyhow::Error::msg)?;
        hosts.push(host);
    }
    let client = lattice.client().await?;
    let r = client.call("echo", "trellis:echo/echo.echo", vec![r#""from the lattice""#.into()]).await?;
    assert_eq!(r.results, Some(vec![r#""from the lattice""#.to_string()]));
    // Pinned versions only (unless --allow-latest), and a missing one is named.
    let err = lattice.scale(hosts[0].id(), "e2", "nats://echo", 1).await?.expect_err("latest");
    assert!(err.contains("--allow-latest"), "{err}");
    let err = lattice.scale(hosts[0].id(), "e3", "nats://echo:9.9", 1).await?.expect_err("missing");
    assert!(err.contains("nats://echo:9.9") && err.contains("not found"), "{err}");
    for h in hosts {
        h.shutdown(None).await?;
    }
    Ok(())
}

/// An artifact whose record says it is 10 bytes while its chunks hold 3 MiB (a record rewritten
/// by someone who may write the bucket): the host reads no more than its component size limit
/// (1 MiB here) and refuses it, instead of reading whatever the chunks hold.
#[tokio::test]
async fn an_artifact_larger_than_its_record_says_is_cut_off_at_the_size_limit() -> anyhow::Result<()> {
    use base64::Engine as _;
    init_tracing();
    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.wasm.max_component_size = 1 << 20;
    let host = lattice.start_host(config).await?;
    let js = async_nats::jetstream::new(lattice.nats().await?);
    let bucket = format!("TRELLIS_ARTIFACTS_{}", lattice.name);
    let store = js.create_object_store(async_nats::jetstream::object_store::Config { bucket: bucket.clone(), ..Default::default() }).await?;
    let big = vec![7u8; 3 << 20];
    store.put("big:1.0", &mut big.as_slice()).await?;
    // The record, rewritten to declare 10 bytes.
    let subject = format!("$O.{bucket}.M.{}", base64::engine::general_purpose::URL_SAFE.encode("big:1.0"));
    let stream = js.get_stream(format!("OBJ_{bucket}")).await?;
    let record = stream.get_last_raw_message_by_subject(&subject).await?;
    let mut info: serde_json::Value = serde_json::from_slice(&record.payload)?;
    info["size"] = serde_json::json!(10);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Rollup", "sub");
    js.publish_with_headers(subject, headers, serde_json::to_vec(&info)?.into()).await?.await?;
    assert_eq!(store.info("big:1.0").await?.size, 10, "the record now says 10 bytes");
    let mut chunks = store.get("big:1.0").await?;
    let mut all = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut chunks, &mut all).await?;
    assert_eq!(all.len(), 3 << 20, "while the chunks still hold 3 MiB");

    let err = lattice.scale(host.id(), "big", "nats://big:1.0", 1).await?.expect_err("cut off");
    assert!(err.contains("more than the host's component size limit of 1048576 bytes arrived"), "{err}");
    host.shutdown(None).await?;
    Ok(())
}
