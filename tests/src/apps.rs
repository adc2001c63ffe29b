//! Declared applications in tests: wadm's published client on a test lattice, a one-component
//! manifest, and waiting for a status.

use std::time::Duration;

use wadm_types::api::StatusType;

use crate::{eventually, TestLattice};

/// wadm's client for `lattice`, on `nats` (the async-nats version wadm-client uses).
pub fn wadm(lattice: &TestLattice, nats: async_nats_039::Client) -> wadm_client::Client {
    wadm_client::Client::from_nats_client(&lattice.name, None, nats)
}

/// A connection to `lattice` with the async-nats version wadm-client uses.
///
/// # Errors
/// When it cannot connect.
pub async fn nats039(lattice: &TestLattice) -> anyhow::Result<async_nats_039::Client> {
    Ok(async_nats_039::connect(lattice.url()).await?)
}

/// A manifest `name` at `version` running `echo` with `instances` instances.
pub fn echo_app(name: &str, version: &str, echo: &str, instances: usize) -> String {
    format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: {name}
  annotations:
    version: {version}
    description: an echo
spec:
  components:
    - name: echo
      type: component
      properties:
        image: "{echo}"
      traits:
        - type: spreadscaler
          properties:
            instances: {instances}
"#
    )
}

/// Waits until application `name` has status `want`.
///
/// # Errors
/// When it does not within `within`, with the last status.
pub async fn wait_status(client: &wadm_client::Client, name: &str, want: StatusType, within: Duration) -> anyhow::Result<()> {
    let reached = eventually(within, || async {
        let status = client.get_manifest_status(name).await.ok()?;
        (status.info.status_type == want).then_some(())
    })
    .await;
    if reached.is_none() {
        let status = client.get_manifest_status(name).await;
        anyhow::bail!("`{name}` not {want:?} within {within:?}: {status:?}");
    }
    Ok(())
}

