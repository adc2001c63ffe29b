//! The NATS security options a host offers, proven against real servers: TLS with a CA made
//! here, mutual TLS, user/password, and an nkey user whose permissions cover one lattice only (a
//! host of lattice A cannot join or read lattice B).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use trellis_host::NatsConfig;
use trellis_tests::{NatsServer, TestLattice};

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in `dir`.
struct Pki {
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
}

fn make_pki(dir: &Path) -> anyhow::Result<Pki> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "Trellis test CA");
    let ca = ca_params.self_signed(&ca_key)?;
    let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose, stem: &str| -> anyhow::Result<(PathBuf, PathBuf)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names)?;
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &ca, &ca_key)?;
        let (c, k) = (dir.join(format!("{stem}.pem")), dir.join(format!("{stem}.key")));
        std::fs::write(&c, cert.pem())?;
        std::fs::write(&k, key.serialize_pem())?;
        Ok((c, k))
    };
    let server = leaf(vec!["127.0.0.1".into(), "localhost".into()], ExtendedKeyUsagePurpose::ServerAuth, "server")?;
    let client = leaf(vec!["trellis-host".into()], ExtendedKeyUsagePurpose::ClientAuth, "client")?;
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem())?;
    Ok(Pki { ca: ca_file, server, client })
}

async fn pings(lattice: &TestLattice, nats: async_nats::Client) -> anyhow::Result<usize> {
    let client = trellis_messages::Client::new(nats, trellis_messages::DEFAULT_CTL_PREFIX, &lattice.name).with_gather(Duration::from_millis(500));
    Ok(client.ping_hosts().await?.len())
}

#[tokio::test]
async fn tls_and_mutual_tls() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = make_pki(dir.path())?;
    let server = NatsServer::start_configured(&format!(
        "tls {{\n cert_file: {:?}\n key_file: {:?}\n ca_file: {:?}\n verify: true\n timeout: 2\n}}",
        pki.server.0, pki.server.1, pki.ca
    ))
    .await?;
    let lattice = TestLattice::on(server);
    let tls = |client: bool| NatsConfig {
        url: lattice.url(),
        tls_ca: Some(pki.ca.clone()),
        tls_client: client.then(|| pki.client.clone()),
        connect_timeout: Duration::from_secs(3),
        ..NatsConfig::default()
    };
    // CA and client certificate: the host joins, and a client with the same can see it.
    let mut config = lattice.host_config();
    config.nats = tls(true);
    let host = lattice.start_host(config).await?;
    let nats = async_nats::ConnectOptions::new()
        .add_root_certificates(pki.ca.clone())
        .add_client_certificate(pki.client.0.clone(), pki.client.1.clone())
        .require_tls(true)
        .connect(lattice.url())
        .await?;
    assert_eq!(pings(&lattice, nats).await?, 1);
    // Without the client certificate the server refuses the host; without TLS too.
    for (what, nats) in [("no client certificate", tls(false)), ("no TLS", NatsConfig { url: lattice.url(), connect_timeout: Duration::from_secs(3), ..NatsConfig::default() })] {
        let mut config = lattice.host_config();
        config.nats = nats;
        assert!(lattice.start_host(config).await.is_err(), "{what}: the host must not join");
    }
    // A CA that did not sign the server's certificate: refused too.
    let other = tempfile::tempdir()?;
    let mut config = lattice.host_config();
    config.nats = NatsConfig { tls_ca: Some(make_pki(other.path())?.ca), ..tls(true) };
    assert!(lattice.start_host(config).await.is_err(), "an untrusted server certificate");
    host.shutdown(None).await?;
    Ok(())
}

#[tokio::test]
async fn user_and_password() -> anyhow::Result<()> {
    let server = NatsServer::start_configured("authorization {\n users: [ { user: trellis, password: s3cret } ]\n}").await?;
    let lattice = TestLattice::on(server);
    let port = lattice.url().rsplit(':').next().unwrap_or_default().to_string();
    let with = |password: &str| {
        let mut config = lattice.host_config();
        config.nats = NatsConfig { url: format!("nats://trellis:{password}@127.0.0.1:{port}"), connect_timeout: Duration::from_secs(3), ..NatsConfig::default() };
        config
    };
    let host = lattice.start_host(with("s3cret")).await?;
    let nats = async_nats::ConnectOptions::with_user_and_password("trellis".into(), "s3cret".into()).connect(lattice.url()).await?;
    assert_eq!(pings(&lattice, nats.clone()).await?, 1);
    // wasmCloud's provider SDK cannot authenticate with credentials in a URL (its async-nats
    // ignores them; tried: the provider exits with "authorization violation"): external
    // providers are refused with the reason, at once.
    let mut failed = nats.subscribe(format!("wasmbus.evt.{}.provider_start_failed", lattice.name)).await?;
    nats.flush().await?;
    let client = trellis_messages::Client::new(nats.clone(), trellis_messages::DEFAULT_CTL_PREFIX, &lattice.name);
    let start = trellis_messages::provider::StartProviderCommand { provider_id: "tp".into(), provider_ref: "/bin/true".into(), ..Default::default() };
    client.start_provider(host.id(), &start).await?;
    let event = tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut failed)).await?.expect("provider_start_failed");
    let text = String::from_utf8_lossy(&event.payload);
    assert!(text.contains("credentials in its URL") && !text.contains("s3cret"), "{text}");
    let err = lattice.start_host(with("wrong")).await.expect_err("a wrong password is refused");
    assert!(!err.to_string().contains("s3cret") && !err.to_string().contains("wrong@"), "the password is not printed: {err}");
    host.shutdown(None).await?;
    Ok(())
}

/// nats-server permissions for a host of `lattice` only.
fn lattice_permissions(lattice: &str) -> String {
    permissions(lattice, true)
}

/// The permissions of one lattice, with or without what declared applications need.
fn permissions(lattice: &str, apps: bool) -> String {
    let kv = |b: &str| {
        format!(
            "\"$JS.API.STREAM.*.KV_{b}\", \"$JS.API.STREAM.MSG.GET.KV_{b}\", \"$JS.API.DIRECT.GET.KV_{b}.>\", \
             \"$JS.API.CONSUMER.*.KV_{b}\", \"$JS.API.CONSUMER.*.KV_{b}.>\", \"$JS.API.CONSUMER.*.*.KV_{b}.>\", \"$KV.{b}.>\", \"$JS.ACK.KV_{b}.>\", \"$JS.FC.KV_{b}.>\""
        )
    };
    // Declared applications add wadm's API and status subjects, the liveness bucket, and wadm's
    // manifest bucket (one for every lattice, as wadm has it). External providers add wasmCloud's
    // provider subjects (`wasmbus.rpc.{l}.>`) and wRPC (`{l}.*.wrpc.>`).
    format!(
        "permissions: {{ publish: {{ allow: [\"wasmbus.ctl.v1.{l}.>\", \"wasmbus.evt.{l}.>\", \"trellis.rpc.{l}.>\", \"trellis.spy.{l}.>\", \"wasmbus.rpc.{l}.>\", \"{l}.*.wrpc.>\", \"wadm.api.{l}.>\", \"wadm.status.{l}.>\", \"_INBOX.>\", \"$JS.API.INFO\", {a}, {b}, {c}, {d}] }}, \
         subscribe: {{ allow: [\"wasmbus.ctl.v1.{l}.>\", \"wasmbus.evt.{l}.>\", \"trellis.rpc.{l}.>\", \"trellis.spy.{l}.>\", \"{l}.*.wrpc.>\", \"wadm.api.{l}.>\", \"_INBOX.>\"] }} }}",
        l = lattice,
        a = kv(&format!("LATTICEDATA_{lattice}")),
        b = kv(&format!("CONFIGDATA_{lattice}")),
        c = if apps { kv(&format!("TRELLIS_LIVE_{lattice}")) } else { "\"none.c\"".into() },
        d = if apps { kv("wadm_manifests") } else { "\"none.d\"".into() },
    )
}

#[tokio::test]
async fn an_nkey_user_limited_to_its_lattice_cannot_join_or_read_another() -> anyhow::Result<()> {
    use futures::StreamExt;
    let user = nkeys::KeyPair::new_user();
    let seed = user.seed()?;
    let no_apps_user = nkeys::KeyPair::new_user();
    let server = NatsServer::start_configured(&format!(
        "authorization {{\n users: [\n  {{ nkey: {}, {} }},\n  {{ nkey: {}, {} }},\n  {{ user: admin, password: admin }}\n ]\n}}",
        user.public_key(),
        lattice_permissions("lattice-a"),
        no_apps_user.public_key(),
        permissions("lattice-a", false),
    ))
    .await?;
    let mut lattice = TestLattice::on(server);
    lattice.name = "lattice-a".into();
    let port = lattice.url().rsplit(':').next().unwrap_or_default().to_string();
    let admin_url = format!("nats://admin:admin@127.0.0.1:{port}");
    let nkey_nats = NatsConfig { url: lattice.url(), nkey_seed: Some(seed.clone()), connect_timeout: Duration::from_secs(3), ..NatsConfig::default() };
    let config_for = |name: &str, nats: NatsConfig| {
        let mut config = lattice.host_config();
        config.lattice = name.into();
        config.nats = nats;
        config
    };
    // Its own lattice: the host joins, and runs and serves a component.
    let host_a = lattice.start_host(config_for("lattice-a", nkey_nats.clone())).await?;
    let admin = async_nats::ConnectOptions::with_user_and_password("admin".into(), "admin".into()).connect(lattice.url()).await?;
    assert_eq!(pings(&lattice, admin.clone()).await?, 1);
    let a = trellis_messages::Client::new(admin.clone(), trellis_messages::DEFAULT_CTL_PREFIX, "lattice-a").with_timeout(Duration::from_secs(5));
    let scale = trellis_messages::component::ScaleComponentCommand {
        component_ref: trellis_tests::guests::ECHO.into(),
        component_id: "echo".into(),
        max_instances: 1,
        host_id: host_a.id().into(),
        ..Default::default()
    };
    a.scale_component(host_a.id(), &scale).await?;
    let answered = trellis_tests::eventually(Duration::from_secs(10), || {
        let a = a.clone();
        async move { a.call("echo", "trellis:echo/echo.echo", vec!["\"in a\"".into()]).await.ok().and_then(|r| r.results) }
    })
    .await;
    assert_eq!(answered, Some(vec!["\"in a\"".to_string()]));
    // An external provider cannot connect with a bare nkey seed (the SDK takes a JWT): refused,
    // saying why, before anything runs.
    let mut failed = admin.subscribe("wasmbus.evt.lattice-a.provider_start_failed").await?;
    admin.flush().await?;
    let start = trellis_messages::provider::StartProviderCommand { provider_id: "p".into(), provider_ref: "/bin/true".into(), ..Default::default() };
    a.start_provider(host_a.id(), &start).await?;
    let event = tokio::time::timeout(Duration::from_secs(5), failed.next()).await?.expect("provider_start_failed");
    assert!(String::from_utf8_lossy(&event.payload).contains("nkey seed"), "{:?}", event.payload);

    // A key without the application buckets: the host says what is missing and how to run
    // without applications, and runs with --no-apps.
    let no_apps_nats = NatsConfig { url: lattice.url(), nkey_seed: Some(no_apps_user.seed()?), connect_timeout: Duration::from_secs(3), ..NatsConfig::default() };
    let err = lattice.start_host(config_for("lattice-a", no_apps_nats.clone())).await.expect_err("no application buckets");
    assert!(err.to_string().contains("--no-apps"), "{err}");
    let mut without = config_for("lattice-a", no_apps_nats);
    without.apps = false;
    lattice.start_host(without).await?.shutdown(None).await?;

    // Another lattice with the same key: the host cannot join (its buckets and subjects are not
    // its to use).
    assert!(lattice.start_host(config_for("lattice-b", nkey_nats.clone())).await.is_err(), "joined lattice-b");

    // Lattice B runs under other credentials; A's key can neither read its events nor control it.
    let host_b = lattice.start_host(config_for("lattice-b", NatsConfig { url: admin_url.clone(), ..NatsConfig::default() })).await?;
    let spy = async_nats::ConnectOptions::with_nkey(seed).connect(lattice.url()).await?;
    let mut events = spy.subscribe("wasmbus.evt.lattice-b.>").await?;
    let heard = tokio::time::timeout(Duration::from_millis(2500), events.next()).await;
    assert!(!matches!(heard, Ok(Some(_))), "lattice-b's heartbeats reached lattice-a's key");
    let stop = spy.request(format!("wasmbus.ctl.v1.lattice-b.host.stop.{}", host_b.id()), "{}".into());
    assert!(!matches!(tokio::time::timeout(Duration::from_secs(2), stop).await, Ok(Ok(_))), "lattice-a's key reached lattice-b's control");
    let b = trellis_messages::Client::new(admin, trellis_messages::DEFAULT_CTL_PREFIX, "lattice-b").with_timeout(Duration::from_secs(5));
    assert!(b.inventory(host_b.id()).await.is_ok(), "host B still runs");
    host_a.shutdown(None).await?;
    host_b.shutdown(None).await?;
    Ok(())
}
