//! Malformed and unknown control messages get `success:false` naming the fault; the host keeps
//! serving.

use std::time::Duration;

use trellis_tests::TestLattice;

async fn raw(nats: &async_nats::Client, subject: String, body: Vec<u8>) -> serde_json::Value {
    let reply = tokio::time::timeout(Duration::from_secs(5), nats.request(subject.clone(), body.into()))
        .await
        .unwrap_or_else(|_| panic!("no reply on {subject}"))
        .unwrap_or_else(|e| panic!("request on {subject} failed: {e}"));
    serde_json::from_slice(&reply.payload).expect("reply is JSON")
}

#[tokio::test]
async fn malformed_messages_get_clear_errors() -> anyhow::Result<()> {
    let lattice = TestLattice::new().await?;
    let host = lattice.start_host(lattice.host_config()).await?;
    let nats = lattice.nats().await?;
    let base = format!("wasmbus.ctl.v1.{}", lattice.name);
    let id = host.id();

    let cases: Vec<(String, Vec<u8>, &str)> = vec![
        (format!("{base}.label.put.{id}"), b"{not json".to_vec(), "`label.put` body is not valid"),
        (format!("{base}.label.put.{id}"), Vec::new(), "`label.put` needs a JSON body"),
        (format!("{base}.label.put.{id}"), br#"{"key":"a"}"#.to_vec(), "missing field `value`"),
        (format!("{base}.label.del.{id}"), b"[1,2,3]".to_vec(), "`label.del` body is not valid"),
        (format!("{base}.label.put.{id}"), br#"{"key":"","value":"x"}"#.to_vec(), "label key must not be empty"),
        (format!("{base}.host.stop.{id}"), br#"{"timeout":"soon"}"#.to_vec(), "`host.stop` body is not valid"),
        (format!("{base}.component.scale.{id}"), b"\xff\xfe".to_vec(), "`component.scale` body is not valid"),
        (format!("{base}.component.auction"), b"".to_vec(), "`component.auction` needs a JSON body"),
        (format!("{base}.host.dance.{id}"), Vec::new(), "unknown control operation `host.dance"),
        (format!("{base}.frobnicate"), Vec::new(), "unknown control operation `frobnicate`"),
        (format!("{base}.host.get.{id}.extra"), Vec::new(), "unknown control operation `host.get."),
        (format!("{base}.link.put"), br#"{"source_id":"a"}"#.to_vec(), "`link.put` body is not valid"),
        // 1,000,000 bytes of garbage: under NATS's 1 MiB max payload, so it reaches the host.
        (format!("{base}.label.put.{id}"), vec![b'x'; 1_000_000], "`label.put` body is not valid"),
    ];
    for (subject, body, expected) in cases {
        let reply = raw(&nats, subject.clone(), body).await;
        assert_eq!(reply["success"], false, "{subject}: {reply}");
        let message = reply["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{subject}: expected `{expected}` in `{message}`");
    }

    // `claims.get` with a body it does not need is answered all the same (no signed code runs).
    let reply = raw(&nats, format!("{base}.claims.get"), b"{\"junk\": [1, 2".to_vec()).await;
    assert_eq!(reply["success"], true, "{reply}");
    assert_eq!(reply["response"], serde_json::json!([]), "{reply}");

    // Still serving, with its state intact.
    let hosts = lattice.client().await?.ping_hosts().await?;
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].id, id);
    assert!(!hosts[0].labels.contains_key(""));
    Ok(())
}

#[tokio::test]
async fn unknown_subjects_get_exactly_one_answer() -> anyhow::Result<()> {
    let lattice = TestLattice::new().await?;
    let _a = lattice.start_host(lattice.host_config()).await?;
    let _b = lattice.start_host(lattice.host_config()).await?;
    let nats = lattice.nats().await?;
    let inbox = nats.new_inbox();
    let mut sub = nats.subscribe(inbox.clone()).await?;
    nats.publish_with_reply(format!("wasmbus.ctl.v1.{}.nope.nothing", lattice.name), inbox, "".into()).await?;
    nats.flush().await?;
    let mut replies = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(m) = futures::StreamExt::next(&mut sub).await {
            replies.push(m);
        }
    })
    .await;
    assert_eq!(replies.len(), 1, "one host of the queue group answers an unknown subject");
    Ok(())
}
