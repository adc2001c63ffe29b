//! wasmCloud's file-system blobstore provider (`wasmcloud-provider-blobstore-fs` 0.11 from
//! crates.io) as an executable: the main its provider image runs, nothing added.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    wasmcloud_provider_blobstore_fs::run().await
}
