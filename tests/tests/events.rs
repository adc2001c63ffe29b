//! Lattice events as the published client receives them.

use std::time::Duration;

use cloudevents::{AttributesReader, Data, Event};
use trellis_host::StopReason;
use trellis_tests::TestLattice;

fn data(event: &Event) -> serde_json::Value {
    match event.data() {
        Some(Data::Json(v)) => v.clone(),
        Some(Data::String(s)) => serde_json::from_str(s).expect("string data is JSON"),
        Some(Data::Binary(b)) => serde_json::from_slice(b).expect("binary data is JSON"),
        None => serde_json::Value::Null,
    }
}

async fn next_of(rx: &mut tokio::sync::mpsc::Receiver<Event>, ty: &str) -> Event {
    let wanted = format!("com.wasmcloud.lattice.{ty}");
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let ev = rx.recv().await.expect("event stream open");
            if ev.ty() == wanted {
                return ev;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {ty} event within 10 s"))
}

#[tokio::test]
async fn host_lifecycle_events() -> anyhow::Result<()> {
    let lattice = TestLattice::new().await?;
    let ctl = lattice.ctl().await?;
    let mut rx = ctl
        .events_receiver(
            ["host_started", "host_heartbeat", "labels_changed", "host_stopped"].map(String::from).to_vec(),
        )
        .await
        .map_err(anyhow::Error::msg)?;

    let mut config = lattice.host_config();
    config.labels.insert("role".into(), "edge".into());
    config.heartbeat_interval = Duration::from_millis(300);
    let mut host = lattice.start_host(config).await?;
    let id = host.id().to_string();

    let started = next_of(&mut rx, "host_started").await;
    assert_eq!(started.source().to_string(), id);
    let d = data(&started);
    assert_eq!(d["labels"]["role"], "edge");
    assert_eq!(d["labels"]["hostcore.os"], std::env::consts::OS);
    assert_eq!(d["uptime_seconds"], 0);
    assert_eq!(d["friendly_name"], host.info().friendly_name.as_str());
    assert!(d["version"].is_string());

    // Heartbeats keep coming at the configured interval and carry the inventory.
    let first = next_of(&mut rx, "host_heartbeat").await;
    let second = next_of(&mut rx, "host_heartbeat").await;
    assert_ne!(first.id(), second.id());
    let hb = data(&second);
    assert_eq!(hb["host_id"], id.as_str());
    assert_eq!(hb["labels"]["role"], "edge");
    assert!(hb["components"].is_array() && hb["providers"].is_array(), "{hb}");

    ctl.put_label(&id, "tier", "gold").await.map_err(anyhow::Error::msg)?;
    let changed = next_of(&mut rx, "labels_changed").await;
    let d = data(&changed);
    assert_eq!(d["host_id"], id.as_str());
    assert_eq!(d["labels"]["tier"], "gold");

    let ack = ctl.stop_host(&id, Some(2_000)).await.map_err(anyhow::Error::msg)?;
    assert!(ack.succeeded(), "{}", ack.message());
    let stopped = next_of(&mut rx, "host_stopped").await;
    assert_eq!(stopped.source().to_string(), id);
    assert_eq!(data(&stopped)["labels"]["tier"], "gold");
    assert_eq!(host.wait().await?, StopReason::ControlInterface);

    // A stopped host no longer answers.
    let hosts = ctl.get_hosts().await.map_err(anyhow::Error::msg)?;
    assert!(hosts.is_empty(), "{hosts:?}");
    Ok(())
}

#[tokio::test]
async fn stop_through_the_handle_publishes_host_stopped() -> anyhow::Result<()> {
    let lattice = TestLattice::new().await?;
    let ctl = lattice.ctl().await?;
    let mut rx = ctl.events_receiver(vec!["host_stopped".into()]).await.map_err(anyhow::Error::msg)?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let id = host.id().to_string();
    assert_eq!(host.shutdown(Some(Duration::from_secs(2))).await?, StopReason::Requested);
    let stopped = next_of(&mut rx, "host_stopped").await;
    assert_eq!(stopped.source().to_string(), id);
    Ok(())
}
