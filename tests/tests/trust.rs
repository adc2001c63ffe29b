//! Signed components: `trellis sign` embeds wasmCloud's claims, `trellis claims` reads them,
//! and hosts with `--require-signed` / `--trusted-issuers` run only what those allow: an
//! unsigned, tampered, expired or foreign-signed component is refused with the reason, and
//! `claims.get` answers with the claims of what ran in the lattice, in wasmCloud's shape (read here by
//! wasmCloud's own control client).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use nkeys::KeyPair;
use trellis_host::trust::TrustPolicy;
use futures::StreamExt as _;
use trellis_tests::{eventually, guests, init_tracing, start_provider, trellis_bin, TestLattice};

fn trellis(args: &[&str]) -> anyhow::Result<Output> {
    Ok(std::process::Command::new(trellis_bin()?).args(args).output()?)
}

/// Signs the echo component as `name` into `dir`, with `extra` options.
fn sign(dir: &Path, name: &str, issuer: &KeyPair, extra: &[&str]) -> anyhow::Result<PathBuf> {
    let out = dir.join(format!("{name}.wasm"));
    let seed = issuer.seed()?;
    let mut args = vec!["sign", guests::ECHO, out.to_str().expect("utf-8 path"), "--issuer-seed", &seed, "--name", name];
    args.extend_from_slice(extra);
    let done = trellis(&args)?;
    anyhow::ensure!(done.status.success(), "trellis sign: {}", String::from_utf8_lossy(&done.stderr));
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_components_signed_by_a_trusted_issuer_run_where_signatures_are_required() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let (account, stranger) = (KeyPair::new_account(), KeyPair::new_account());
    let signed = sign(dir.path(), "echo-signed", &account, &["--tag", "blue", "--ver", "1.2.3", "--rev", "7"])?;

    // `trellis claims` reads them back as a host checks them.
    let out = trellis(&["claims", signed.to_str().expect("path"), "--json"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let claims: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(claims["iss"], account.public_key().as_str());
    assert!(claims["sub"].as_str().is_some_and(|s| s.starts_with('M')), "{claims}");
    assert_eq!(claims["wascap"]["name"], "echo-signed");
    let text = String::from_utf8(trellis(&["claims", signed.to_str().expect("path")])?.stdout)?;
    assert!(text.contains(&format!("issuer      {}", account.public_key())) && text.contains("tags        blue"), "{text}");
    // … also from an OCI registry, where `trellis push` put the signed component.
    let registry = trellis_tests::Registry::start(&[]).await?;
    let reference = format!("{}/trust/echo-signed:1.0", registry.address());
    let pushed = trellis(&["push", "--insecure", &reference, signed.to_str().expect("path")])?;
    assert!(pushed.status.success(), "{}", String::from_utf8_lossy(&pushed.stderr));
    let out = trellis(&["claims", &reference, "--insecure", "--json"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&out.stdout)?["iss"], account.public_key().as_str());
    let unsigned = trellis(&["claims", guests::ECHO])?;
    assert!(!unsigned.status.success() && String::from_utf8_lossy(&unsigned.stderr).contains("is not signed"));

    // One byte changed after signing (a letter in a custom section, so it is still valid wasm).
    let mut bytes = std::fs::read(&signed)?;
    let at = bytes.windows(13).position(|w| w == b"wit-component").expect("a producers section");
    bytes[at] = b'W';
    let tampered = dir.path().join("tampered.wasm");
    std::fs::write(&tampered, &bytes)?;
    let out = trellis(&["claims", tampered.to_str().expect("path")])?;
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("changed after it was signed"), "{out:?}");

    // Claims that are not a JWT at all, in wasmCloud's section: refused, never a crash.
    let mut garbage = std::fs::read(guests::ECHO)?;
    for (name, data) in [("wasmcloud_jwt", b"not.a.jwt".as_slice()), ("wasmcloud_jwt", b"eyJhbGciOiJFZDI1NTE5In0.e30.AAAA")] {
        let mut body = vec![name.len() as u8];
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(data);
        garbage.push(0); // a custom section
        garbage.push(body.len() as u8);
        garbage.extend_from_slice(&body);
    }
    let garbage_file = dir.path().join("garbage.wasm");
    std::fs::write(&garbage_file, &garbage)?;
    let out = trellis(&["claims", garbage_file.to_str().expect("path")])?;
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("claims"), "{out:?}");

    let expiring = sign(dir.path(), "echo-expiring", &account, &["--expires", "1s"])?;
    let foreign = sign(dir.path(), "echo-foreign", &stranger, &[])?;
    let later = sign(dir.path(), "echo-later", &account, &["--not-before", "1h"])?;
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let lattice = TestLattice::new().await?;
    let mut config = lattice.host_config();
    config.trust = TrustPolicy { require_signed: true, trusted_issuers: vec![account.public_key()] };
    let host = lattice.start_host(config).await?;
    let scale = |id: &'static str, path: PathBuf| {
        let lattice = &lattice;
        let host = host.id().to_string();
        async move { lattice.scale(&host, id, path.to_str().expect("path"), 1).await }
    };
    let ran = scale("echo", signed.clone()).await?.map_err(anyhow::Error::msg)?;
    let event_claims = ran.claims.expect("component_scaled carries the claims");
    assert_eq!((event_claims["issuer"].as_str(), event_claims["name"].as_str()), (Some(account.public_key().as_str()), Some("echo-signed")));
    assert!(ran.public_key.as_deref().is_some_and(|k| k.starts_with('M')), "and, as wasmCloud 1.9, the component's public key: {:?}", ran.public_key);
    let client = lattice.client().await?;
    let reply = client.call("echo", "trellis:echo/echo.echo", vec![r#""signed""#.into()]).await?;
    assert_eq!(reply.results, Some(vec![r#""signed""#.to_string()]));

    let refusals = [
        ("unsigned", PathBuf::from(guests::ECHO), "is not signed, and this host runs only signed components (--require-signed)"),
        ("tampered", tampered.clone(), "changed after it was signed: its hash does not match its claims"),
        ("expiring", expiring, "claims expired"),
        ("later", later, "claims are not valid yet"),
        ("foreign", foreign.clone(), "which is not one of this host's trusted issuers"),
        ("garbage", garbage_file.clone(), "claims"),
    ];
    for (id, path, expected) in refusals {
        let err = scale(id, path).await?.expect_err("refused");
        assert!(err.contains(expected), "{id}: {err}");
    }

    // Still serving after all of that.
    let reply = client.call("echo", "trellis:echo/echo.echo", vec![r#""still""#.into()]).await?;
    assert_eq!(reply.results, Some(vec![r#""still""#.to_string()]));

    // claims.get, through wasmCloud's published client: what runs here, in wasmCloud's shape.
    let ctl = lattice.ctl().await?;
    let answer = ctl.get_claims().await.map_err(anyhow::Error::msg)?;
    assert!(answer.succeeded(), "{}", answer.message());
    let all = answer.into_data().unwrap_or_default();
    assert_eq!(all.len(), 1, "{all:?}");
    let c = &all[0];
    assert_eq!(c.get("issuer"), Some(&account.public_key()));
    assert_eq!(c.get("iss"), c.get("issuer"));
    assert!(c.get("subject").is_some_and(|s| s.starts_with('M')) && c.get("sub") == c.get("subject"));
    assert_eq!((c["name"].as_str(), c["tags"].as_str(), c["version"].as_str(), c["revision"].as_str()), ("echo-signed", "blue", "1.2.3", "7"));

    // An executable provider has no claims: refused here.
    let events = lattice.nats().await?;
    let mut failed = events.subscribe(format!("wasmbus.evt.{}.provider_start_failed", lattice.name)).await?;
    events.flush().await?;
    start_provider(&client, host.id(), "tp", trellis_bin()?.to_str().expect("path")).await.ok();
    let msg = tokio::time::timeout(Duration::from_secs(10), futures::StreamExt::next(&mut failed)).await?.expect("an event");
    let event: serde_json::Value = serde_json::from_slice(&msg.payload)?;
    assert!(event["data"]["error"].as_str().is_some_and(|e| e.contains("runs only signed providers")), "{event}");
    host.shutdown(None).await?;

    // Without the settings, unsigned code runs, but claims that do not hold are still refused.
    let host = lattice.start_host(lattice.host_config()).await?;
    lattice.scale(host.id(), "plain", guests::ECHO, 1).await?.map_err(anyhow::Error::msg)?;
    lattice.scale(host.id(), "foreign", foreign.to_str().expect("path"), 1).await?.map_err(anyhow::Error::msg)?;
    let err = lattice.scale(host.id(), "tampered", tampered.to_str().expect("path"), 1).await?.expect_err("refused");
    assert!(err.contains("changed after it was signed"), "{err}");
    // A record under another subject's key, as a forger with write access to the bucket
    // would put it: not believed.
    let kv = async_nats::jetstream::new(lattice.nats().await?).get_key_value(format!("LATTICEDATA_{}", lattice.name)).await?;
    let forged = br#"{"call_alias":"","issuer":"AFORGED","name":"forged","revision":"0","subject":"MOTHER","tags":[],"version":""}"#;
    kv.put("CLAIMS_MFORGED", forged.to_vec().into()).await?;
    // claims.get answers the lattice's claims, as wasmCloud's hosts keep them (under
    // `CLAIMS_{subject}` in the lattice's data bucket): the signed component that ran on the
    // first host, stopped since, is still answered by this one; unsigned code has none.
    let issuers = eventually(Duration::from_secs(10), || async {
        let answer = lattice.ctl().await.ok()?.get_claims().await.ok()?;
        let mut issuers: Vec<String> = answer.into_data().unwrap_or_default().iter().filter_map(|c| c.get("issuer").cloned()).collect();
        issuers.sort();
        (issuers.len() == 2).then_some(issuers)
    })
    .await;
    let mut expected = vec![account.public_key(), stranger.public_key()];
    expected.sort();
    assert_eq!(issuers, Some(expected), "the lattice's signed code, and no forged record");
    let stored = kv.keys().await?.filter_map(|k| async move { k.ok() }).filter(|k| std::future::ready(k.starts_with("CLAIMS_M"))).count().await;
    assert_eq!(stored, 3, "two hosts' records as wasmCloud keeps them, and the forged one");
    // 3,000 records of about 450 bytes would pass NATS's max payload in one answer: the answer
    // carries part of them, and still comes.
    let puts = (0..3000).map(|i| {
        let kv = kv.clone();
        async move {
            let subject = format!("MFILL{i:05}");
            let record = format!(
                r#"{{"call_alias":"","issuer":"A{}","name":"filler-{i}","revision":"0","subject":"{subject}","tags":[],"version":"{}"}}"#,
                "X".repeat(55),
                "1".repeat(300)
            );
            kv.put(format!("CLAIMS_{subject}"), record.into_bytes().into()).await
        }
    });
    for put in futures::future::join_all(puts).await {
        put?;
    }
    let answered = eventually(Duration::from_secs(20), || async {
        let answer = lattice.ctl().await.ok()?.get_claims().await.ok()?;
        let n = answer.into_data().unwrap_or_default().len();
        (n > 1000).then_some(n)
    })
    .await;
    let n = answered.expect("claims.get answered with many records");
    assert!(n < 3002, "a part, within the max payload: {n}");
    host.shutdown(None).await?;
    Ok(())
}

#[test]
fn trusted_issuers_must_be_account_keys() {
    let bad = TrustPolicy { require_signed: false, trusted_issuers: vec![KeyPair::new_user().public_key()] };
    assert!(matches!(bad.validate(), Err(trellis_host::trust::TrustError::NotAccountKey(_))));
    assert!(bad.validate().unwrap_err().to_string().contains("is not an account public key"));
    let out = trellis(&["host", "--trusted-issuers", "not-a-key", "--nats-url", "nats://127.0.0.1:1"]).expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("trusted issuer `not-a-key` is not an account public key"), "{out:?}");
}
