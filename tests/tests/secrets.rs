//! Secrets for providers, wasmCloud 1.x's way, with wasmCloud's own backend (`secrets-nats-kv`)
//! and the SDK-built test provider in a signed archive: the secrets its config names in its
//! start data, a link's secrets for its side sealed to its xkey, and refusals that say why.
//! Components' secrets are tested with wasmCloud's password checker (`wasmcloud_examples.rs`).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use trellis_messages::link::Link;
use trellis_tests::providers::{records, settings, wait_record, Events};
use trellis_tests::{init_tracing, test_provider, SecretsBackend, TestLattice};

/// A secret reference's config record, as `wash secrets put` writes it (wasmCloud's own type).
fn reference(name: &str, key: &str) -> anyhow::Result<HashMap<String, String>> {
    let config = wasmcloud_secrets_types::SecretConfig::new(name.into(), "nats-kv".into(), key.into(), None, None, HashMap::new());
    config.try_into()
}

/// The test provider in an archive signed by a new account; returns its path and its subject.
async fn signed_archive(dir: &std::path::Path) -> anyhow::Result<(std::path::PathBuf, String)> {
    let mut par = provider_archive::ProviderArchive::new("tp", "trellis-tests", Some(1), Some("0.1.0".into()));
    let target = format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS);
    par.add_library(&target, &std::fs::read(test_provider()?)?).map_err(|e| anyhow::anyhow!("{e}"))?;
    let path = dir.join("tp.par");
    let service = nkeys::KeyPair::new_service();
    let subject = service.public_key();
    par.write(&path, &nkeys::KeyPair::new_account(), &service, false).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((path, subject))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_provider_receives_its_secrets_in_its_start_data_and_on_its_links() -> anyhow::Result<()> {
    init_tracing();
    let lattice = TestLattice::new().await?;
    let backend = SecretsBackend::start(&lattice.url_of(0)).await?;
    backend.put("api-token", "t0ken-value")?;
    backend.put("db-password", "hunter2-value")?;
    backend.put("components-only", "not-for-the-provider")?;
    let dir = tempfile::tempdir()?;
    let (archive, subject) = signed_archive(dir.path()).await?;
    backend.allow(&subject, "api-token")?;
    backend.allow(&subject, "db-password")?;

    let mut config = lattice.host_config();
    config.providers = settings();
    config.secrets_topic = Some("wasmcloud.secrets".into());
    let host = lattice.start_host(config).await?;
    let client = lattice.client().await?;
    let ctl = lattice.ctl().await?;
    let mut events = Events::on(&lattice).await?;
    let record = dir.path().join("record.jsonl");
    client.put_config("tp-settings", &[("record".to_string(), record.display().to_string())].into()).await?;
    client.put_config("SECRET_tp-token", &reference("token", "api-token")?).await?;
    client.put_config("SECRET_tp-db", &reference("db", "db-password")?).await?;
    client.put_config("SECRET_shop-own", &reference("own", "components-only")?).await?;
    // A link naming secrets on both sides, there before the provider starts: its target (the
    // provider) gets its side's secret; the source's secret is not fetched for the provider
    // (the backend would refuse it, and the link would not be sent at all).
    let link = Link::new("shop", "tp", "default", "wasi", "keyvalue", &["store"]).with_target_config(&["SECRET_tp-db"]).with_source_config(&["SECRET_shop-own"]);
    client.put_link(&link).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let reference_of = archive.display().to_string();
    ctl.start_provider(host.id(), &reference_of, "tp", None, vec!["tp-settings".into(), "SECRET_tp-token".into()]).await.map_err(anyhow::Error::msg)?;
    let started = events.expect("provider_started", Duration::from_secs(20), |d| d["provider_id"] == "tp").await;
    assert!(!started.to_string().contains("t0ken-value"), "{started}");
    let init = wait_record(&record, "init", |r| r["event"] == "init").await;
    assert_eq!(init["secrets"], json!({"token": {"kind": "String", "value": "t0ken-value"}}), "{init}");
    assert!(init["config"].get("token").is_none() && !init["config"].to_string().contains("api-token"), "a reference is not config: {init}");
    // The link with secrets is not in the start data; it is sent once the provider is ready.
    assert_eq!(init["links"], 0, "{init}");
    let put = wait_record(&record, "the link with its secret", |r| r["event"] == "link_put" && r["source_id"] == "shop").await;
    assert_eq!(put["role"], "target");
    assert_eq!(put["secrets"], json!({"db": {"kind": "String", "value": "hunter2-value"}}), "{put}");
    // A link put while it runs, naming a secret for its side as the source.
    client.put_link(&Link::new("tp", "worker", "default", "wasmcloud", "messaging", &["handler"]).with_source_config(&["SECRET_tp-token"])).await?;
    let put = wait_record(&record, "a link as source with its secret", |r| r["event"] == "link_put" && r["target"] == "worker").await;
    assert_eq!(put["secrets"], json!({"token": {"kind": "String", "value": "t0ken-value"}}), "{put}");
    // A link whose secret the backend refuses the provider is not sent.
    client.put_link(&Link::new("tp", "refused", "default", "wasmcloud", "messaging", &["consumer"]).with_source_config(&["SECRET_shop-own"])).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!records(&record).iter().any(|r| r["target"] == "refused"), "a link whose secrets were refused reached the provider");

    // A secret the backend does not allow it: the provider does not start, saying why.
    ctl.start_provider(host.id(), &reference_of, "tp-denied", None, vec!["SECRET_shop-own".into()]).await.map_err(anyhow::Error::msg)?;
    let failed = events.expect("provider_start_failed", Duration::from_secs(20), |d| d["provider_id"] == "tp-denied").await;
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("refused secret `own`") && error.contains("unauthorized"), "{failed}");
    // A bare executable carries no claims: no secret for it.
    let binary = test_provider()?.display().to_string();
    ctl.start_provider(host.id(), &binary, "tp-bare", None, vec!["SECRET_tp-token".into()]).await.map_err(anyhow::Error::msg)?;
    let failed = events.expect("provider_start_failed", Duration::from_secs(20), |d| d["provider_id"] == "tp-bare").await;
    assert!(failed["error"].as_str().unwrap_or_default().contains("only to signed code"), "{failed}");
    // A built-in provider takes no secrets: one named is refused, not silently unused.
    ctl.start_provider(host.id(), "wasmcloud+builtin://keyvalue-nats", "kv-secret", None, vec!["SECRET_tp-token".into()]).await.map_err(anyhow::Error::msg)?;
    let failed = events.expect("provider_start_failed", Duration::from_secs(20), |d| d["provider_id"] == "kv-secret").await;
    assert!(failed["error"].as_str().unwrap_or_default().contains("take no secrets"), "{failed}");

    // An answer that is not sealed is not taken, whatever it holds (a secret in the clear, or
    // from whoever else answers on the subject).
    let nats = lattice.nats().await?;
    let mut key_requests = nats.subscribe("wasmcloud.secrets.v1alpha1.forger.server_xkey").await?;
    let mut get_requests = nats.subscribe("wasmcloud.secrets.v1alpha1.forger.get").await?;
    let forger = nats.clone();
    let forging = tokio::spawn(async move {
        use futures::StreamExt as _;
        let key = nkeys::XKey::new().public_key();
        if let Some(m) = key_requests.next().await {
            let _ = forger.publish(m.reply.expect("a reply subject"), key.into()).await;
        }
        while let Some(m) = get_requests.next().await {
            let forged = json!({"secret": {"version": "1", "string_secret": "forged-value", "binary_secret": null}});
            let _ = forger.publish(m.reply.expect("a reply subject"), forged.to_string().into()).await;
        }
    });
    nats.flush().await?;
    let mut forged = reference("token", "api-token")?;
    forged.insert("backend".into(), "forger".into());
    client.put_config("SECRET_tp-forged", &forged).await?;
    ctl.start_provider(host.id(), &reference_of, "tp-forged", None, vec!["SECRET_tp-forged".into()]).await.map_err(anyhow::Error::msg)?;
    let failed = events.expect("provider_start_failed", Duration::from_secs(20), |d| d["provider_id"] == "tp-forged").await;
    assert!(failed["error"].as_str().unwrap_or_default().contains("without sealing"), "{failed}");
    forging.abort();

    // A restart asks again: with the reference now naming a secret the backend does not allow
    // it, the restarted process is not given the old value, and the provider says why it cannot
    // start again. (The reference is changed rather than the mapping removed: secrets-nats-kv
    // 0.2's `remove-mapping` removes nothing — it returns early unless the entity's set holds
    // the entity's own key.)
    client.put_config("SECRET_tp-token", &reference("token", "components-only")?).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = init["pid"].as_u64().ok_or_else(|| anyhow::anyhow!("no pid"))?;
    std::process::Command::new("kill").args(["-9", &pid.to_string()]).status()?;
    let exited = events
        .expect("provider_exited", Duration::from_secs(20), |d| d["provider_id"] == "tp" && d["status"].as_str().unwrap_or_default().contains("secret"))
        .await;
    assert!(exited.to_string().contains("refused secret `token`"), "{exited}");
    assert_eq!(records(&record).iter().filter(|r| r["event"] == "init").count(), 1, "no second process was given the revoked secret");
    host.shutdown(None).await?;
    Ok(())
}
