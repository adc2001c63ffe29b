//! The lattice's `COMPONENT_{id}` values as wasmCloud 1.x writes and reads them
//! (`ComponentSpecification`: `{"url", "links"}`): a spec written byte for byte as a wasmCloud
//! host writes it routes Trellis's calls, what Trellis writes parses as wasmCloud's type, the old
//! Trellis layout is rewritten once, and a new `url` moves running components on every host.

use std::time::Duration;

use serde::Deserialize;
use trellis_messages::link::Link;
use trellis_tests::{guests, eventually, init_tracing, TestLattice};

const PING: &str = "trellis:echo/pinger.ping";

/// wasmCloud's `ComponentSpecification`, with the published control interface's `Link`; unknown
/// fields refused, so Trellis writes nothing wasmCloud would not.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WasmCloudSpec {
    url: String,
    #[serde(default)]
    links: Vec<wasmcloud_control_interface::Link>,
}

/// The bytes a wasmCloud 1.x host stores for `url` and `links`: `serde_json::to_vec` of its
/// `ComponentSpecification { url, links }` (fields in that order).
fn wasmcloud_bytes(url: &str, links: &[wasmcloud_control_interface::Link]) -> anyhow::Result<Vec<u8>> {
    Ok(format!("{{\"url\":{},\"links\":{}}}", serde_json::to_string(url)?, serde_json::to_string(links)?).into_bytes())
}

fn ci_echo_link(name: &str) -> anyhow::Result<wasmcloud_control_interface::Link> {
    wasmcloud_control_interface::Link::builder()
        .source_id("pinger")
        .target("echo")
        .name(name)
        .wit_namespace("trellis")
        .wit_package("echo")
        .interfaces(vec!["echo".into()])
        .build()
        .map_err(anyhow::Error::msg)
}

async fn ping(client: &trellis_messages::Client) -> Option<Vec<String>> {
    eventually(Duration::from_secs(10), || async {
        client.call("pinger", PING, vec![r#""hi""#.into()]).await.ok().and_then(|r| r.results)
    })
    .await
}

#[tokio::test]
async fn a_spec_written_by_wasmcloud_routes_calls_and_trellis_writes_parse_as_wasmclouds() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let js = async_nats::jetstream::new(lattice.nats().await?);
    let data = js.get_key_value(format!("LATTICEDATA_{}", lattice.name)).await?;
    // As a wasmCloud host would have stored it (a link put before any scale: empty url).
    data.put("COMPONENT_pinger", wasmcloud_bytes("", &[ci_echo_link("default")?])?.into()).await?;
    lattice.scale(host.id(), "echo", guests::ECHO, 2).await?.map_err(anyhow::Error::msg)?;
    lattice.scale(host.id(), "pinger", guests::PINGER, 2).await?.map_err(anyhow::Error::msg)?;
    let client = lattice.client().await?;
    assert_eq!(ping(&client).await, Some(vec![r#""hi""#.to_string()]), "the wasmCloud spec's link routes the call");

    // Trellis's writes: the scale recorded the url, a link put kept it; wasmCloud's type reads it.
    client.put_link(&Link::new("pinger", "echo", "backup", "trellis", "echo", &["echo"])).await?;
    let spec = eventually(Duration::from_secs(5), || async {
        let raw = data.get("COMPONENT_pinger").await.ok()??;
        let spec: WasmCloudSpec = serde_json::from_slice(&raw).expect("parses as wasmCloud's ComponentSpecification");
        (spec.links.len() == 2 && !spec.url.is_empty()).then_some(spec)
    })
    .await
    .expect("url and both links stored");
    assert_eq!(spec.url, guests::PINGER);
    assert!(spec.links.contains(&ci_echo_link("default")?) && spec.links.contains(&ci_echo_link("backup")?));
    // Deleting a link keeps the url too.
    client.delete_link("pinger", "backup", "trellis", "echo").await?;
    let raw = data.get("COMPONENT_pinger").await?.expect("spec");
    let spec: WasmCloudSpec = serde_json::from_slice(&raw)?;
    assert_eq!((spec.url.as_str(), spec.links.len()), (guests::PINGER, 1));
    // Trellis writes exactly the bytes wasmCloud would for the same spec.
    assert_eq!(raw.to_vec(), wasmcloud_bytes(guests::PINGER, &[ci_echo_link("default")?])?);
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn the_old_trellis_layout_is_read_and_rewritten_once() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let js = async_nats::jetstream::new(lattice.nats().await?);
    let data = js
        .create_key_value(async_nats::jetstream::kv::Config { bucket: format!("LATTICEDATA_{}", lattice.name), history: 1, ..Default::default() })
        .await?;
    let old = serde_json::to_vec(&vec![Link::new("pinger", "echo", "default", "trellis", "echo", &["echo"])])?;
    data.put("COMPONENT_pinger", old.into()).await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let raw = data.get("COMPONENT_pinger").await?.expect("kept");
    let spec: WasmCloudSpec = serde_json::from_slice(&raw)?;
    assert_eq!((spec.url.as_str(), spec.links.len()), ("", 1), "rewritten as a spec, its link kept");
    lattice.scale(host.id(), "echo", guests::ECHO, 2).await?.map_err(anyhow::Error::msg)?;
    lattice.scale(host.id(), "pinger", guests::PINGER, 2).await?.map_err(anyhow::Error::msg)?;
    assert_eq!(ping(&lattice.client().await?).await, Some(vec![r#""hi""#.to_string()]));
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn a_new_url_in_the_spec_moves_the_component_on_every_host() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let a = lattice.start_host(lattice.host_config()).await?;
    let b = lattice.start_host(lattice.host_config()).await?;
    for h in [&a, &b] {
        lattice.scale(h.id(), "echo", guests::ECHO, 2).await?.map_err(anyhow::Error::msg)?;
    }
    // The same component at another path: the new reference every host should run.
    let dir = tempfile::tempdir()?;
    let moved = dir.path().join("echo-v2.wasm");
    std::fs::copy(guests::ECHO, &moved)?;
    let moved = moved.display().to_string();
    let js = async_nats::jetstream::new(lattice.nats().await?);
    let data = js.get_key_value(format!("LATTICEDATA_{}", lattice.name)).await?;
    data.put("COMPONENT_echo", wasmcloud_bytes(&moved, &[])?.into()).await?;
    let client = lattice.client().await?;
    for h in [&a, &b] {
        let followed = eventually(Duration::from_secs(10), || async {
            let inventory = client.inventory(h.id()).await.ok()?;
            inventory.components.iter().any(|c| c.id == "echo" && c.image_ref == moved).then_some(())
        })
        .await;
        assert!(followed.is_some(), "host {} runs echo from the spec's new url", h.id());
    }
    let r = client.call("echo", "trellis:echo/echo.echo", vec![r#""still""#.into()]).await?;
    assert_eq!(r.results, Some(vec![r#""still""#.to_string()]));
    a.shutdown(None).await?;
    b.shutdown(None).await?;
    Ok(())
}
