//! The `trellis` binary exporting over OTLP (HTTP/protobuf) to a stand-in collector: the spans
//! of a call, the metrics with the counts of the calls made, and the same over TLS to a
//! collector the host trusts (and nothing to one it does not).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point;
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use trellis_tests::{eventually, trellis_bin, TestLattice};

/// One request the collector received: its head (request line and headers) and body.
type Received = (String, Vec<u8>);

/// A stand-in OTLP/HTTP collector on a free port, plain or with TLS (certificate, key).
async fn collector(tls: Option<(Vec<u8>, Vec<u8>)>) -> anyhow::Result<(u16, mpsc::UnboundedReceiver<Received>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let acceptor = match tls {
        Some((cert, key)) => {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(vec![cert.into()], rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()))?;
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
        }
        None => None,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (tx, acceptor) = (tx.clone(), acceptor.clone());
            tokio::spawn(async move {
                match acceptor {
                    Some(a) => {
                        if let Ok(s) = a.accept(stream).await {
                            answer(s, tx).await;
                        }
                    }
                    None => answer(stream, tx).await,
                }
            });
        }
    });
    Ok((port, rx))
}

/// Reads requests (head, then content-length bytes of body) and answers each with 200.
async fn answer(mut stream: impl AsyncRead + AsyncWrite + Unpin, tx: mpsc::UnboundedSender<Received>) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let (head, body_start) = loop {
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break (String::from_utf8_lossy(&raw[..i]).to_string(), i + 4);
            }
            let n = stream.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            raw.extend_from_slice(&buf[..n]);
        };
        let length: usize = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
            .unwrap_or(0);
        while raw.len() < body_start + length {
            let n = stream.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            raw.extend_from_slice(&buf[..n]);
        }
        let body = raw[body_start..body_start + length].to_vec();
        raw.drain(..body_start + length);
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n").await;
        let _ = tx.send((head, body));
    }
}

fn wait_exit(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status.success();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    false
}

/// `trellis host` on `lattice` with `env`; returns the process and the host's id once it answers.
async fn host(lattice: &TestLattice, env: &[(&str, &str)]) -> anyhow::Result<(Child, String)> {
    let key = nkeys::KeyPair::new_server();
    let child = Command::new(trellis_bin()?)
        .args(["host", "--allow-file-load"])
        .env("TRELLIS_NATS_URL", lattice.url())
        .env("TRELLIS_LATTICE", &lattice.name)
        .env("TRELLIS_HOST_SEED", key.seed()?)
        .env("TRELLIS_NO_COMPILE_CACHE", "true")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let id = key.public_key();
    let client = lattice.client().await?;
    eventually(Duration::from_secs(15), || {
        let client = client.clone().with_gather(Duration::from_millis(300));
        let id = id.clone();
        async move { client.ping_hosts().await.ok()?.into_iter().find(|h| h.id == id) }
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("the host did not answer"))?;
    Ok((child, id))
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        Value::StringValue(s) => Some(s.as_str()),
        _ => None,
    })
}

/// What one metrics export says: (metric name, attributes `component`/`operation`/`kind`) → value.
fn points(request: &ExportMetricsServiceRequest) -> Vec<(String, Vec<KeyValue>, f64)> {
    let mut out = Vec::new();
    for resource in &request.resource_metrics {
        for scope in &resource.scope_metrics {
            for metric in &scope.metrics {
                let numbers = match &metric.data {
                    Some(Data::Sum(s)) => s.data_points.clone(),
                    Some(Data::Gauge(g)) => g.data_points.clone(),
                    Some(Data::Histogram(h)) => {
                        out.extend(h.data_points.iter().map(|p| (metric.name.clone(), p.attributes.clone(), p.count as f64)));
                        continue;
                    }
                    _ => continue,
                };
                for p in numbers {
                    let value = match p.value {
                        Some(number_data_point::Value::AsInt(i)) => i as f64,
                        Some(number_data_point::Value::AsDouble(d)) => d,
                        None => continue,
                    };
                    out.push((metric.name.clone(), p.attributes, value));
                }
            }
        }
    }
    out
}

/// A host run with `OTEL_EXPORTER_OTLP_ENDPOINT` exports over OTLP/HTTP: `POST /v1/metrics`
/// with the invocation count of exactly the calls made (and their errors, duration count, the
/// component's `max_instances`, the process's memory), every series labelled with lattice and
/// host; and `POST /v1/traces` with the spans of a call.
#[tokio::test]
async fn a_host_exports_traces_and_metrics_over_otlp_when_a_collector_is_named() -> anyhow::Result<()> {
    let (port, mut got) = collector(None).await?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let lattice = TestLattice::new().await?;
    let (mut child, id) = host(&lattice, &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint), ("OTEL_METRIC_EXPORT_INTERVAL", "300")]).await?;
    lattice.scale(&id, "echo", trellis_tests::guests::ECHO, 2).await?.map_err(anyhow::Error::msg)?;
    let client = lattice.client().await?;
    for i in 0..3 {
        let reply = client.call("echo", "trellis:echo/echo.echo", vec![format!("\"traced {i}\"")]).await?;
        assert!(reply.results.is_some(), "{reply:?}");
    }
    let trapped = client.call("echo", "trellis:echo/echo.trap", vec![r#""boom""#.into()]).await?;
    assert!(trapped.results.is_none(), "{trapped:?}");

    // Cumulative metrics, exported every 300 ms: a later export has every call.
    let mut traces = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let seen = loop {
        let Ok(Some((head, body))) = tokio::time::timeout_at(deadline.into(), got.recv()).await else {
            panic!("no metrics export with the calls made before the deadline");
        };
        assert!(head.to_ascii_lowercase().contains("content-type: application/x-protobuf"), "{head}");
        if head.starts_with("POST /v1/traces ") {
            traces.extend(body);
            continue;
        }
        assert!(head.starts_with("POST /v1/metrics "), "{head}");
        let request = ExportMetricsServiceRequest::decode(body.as_slice())?;
        let points = points(&request);
        let count = |name: &str, operation: &str| {
            points
                .iter()
                .filter(|(n, a, _)| n == name && attribute(a, "component") == Some("echo") && attribute(a, "operation") == Some(operation))
                .map(|(_, _, v)| *v)
                .sum::<f64>()
        };
        if count("trellis.component.invocations", "trellis:echo/echo.echo") == 3.0 && count("trellis.component.invocations", "trellis:echo/echo.trap") == 1.0 {
            break (request, points);
        }
    };
    let (request, points) = seen;
    let service = request.resource_metrics[0].resource.as_ref().map(|r| attribute(&r.attributes, "service.name").map(str::to_string));
    assert_eq!(service, Some(Some("trellis-host".to_string())));
    for (name, attributes, _) in &points {
        assert_eq!(attribute(attributes, "lattice"), Some(lattice.name.as_str()), "{name}");
        assert_eq!(attribute(attributes, "host"), Some(id.as_str()), "{name}");
    }
    let find = |name: &str, key: &str, value: &str| {
        points.iter().find(|(n, a, _)| n == name && attribute(a, key) == Some(value)).map(|(_, _, v)| *v)
    };
    assert_eq!(find("trellis.component.invocation_errors", "kind", "trap"), Some(1.0), "{points:?}");
    assert_eq!(find("trellis.component.invocation_duration", "operation", "trellis:echo/echo.echo"), Some(3.0), "{points:?}");
    assert_eq!(find("trellis.component.max_instances", "component", "echo"), Some(2.0), "{points:?}");
    assert!(points.iter().any(|(n, _, v)| n == "trellis.process.resident_memory" && *v > 1e6), "{points:?}");

    // The spans go out on the batch's schedule or, at the latest, when the host stops.
    lattice.ctl().await?.stop_host(&id, Some(3_000)).await.map_err(anyhow::Error::msg)?;
    assert!(wait_exit(&mut child, Duration::from_secs(15)), "the host exits 0");
    while let Ok(Some((head, body))) = tokio::time::timeout(Duration::from_secs(5), got.recv()).await {
        if head.starts_with("POST /v1/traces ") {
            traces.extend(body);
        }
        if traces.windows(10).any(|w| w == b"invocation") {
            break;
        }
    }
    assert!(traces.windows(10).any(|w| w == b"invocation"), "the call's spans were exported");
    assert!(traces.windows(8).any(|w| w == b"trellis:"), "with the function named");
    Ok(())
}

/// An `https://` collector: the host exports to it when its certificate is trusted (here
/// through `SSL_CERT_FILE`), and sends nothing to one whose certificate it cannot verify.
#[tokio::test]
async fn a_host_exports_over_tls_only_to_a_collector_it_trusts() -> anyhow::Result<()> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let dir = tempfile::tempdir()?;
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "Trellis test collector CA");
    let ca = ca_params.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["localhost".to_string()])?.signed_by(&key, &ca, &ca_key)?;
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem())?;
    let ca_file = ca_file.to_str().expect("utf-8 path");

    let lattice = TestLattice::new().await?;
    for trusted in [true, false] {
        let (port, mut got) = collector(Some((cert.der().to_vec(), key.serialize_der()))).await?;
        let endpoint = format!("https://localhost:{port}");
        let mut env = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_METRIC_EXPORT_INTERVAL", "300")];
        if trusted {
            env.push(("SSL_CERT_FILE", ca_file));
        }
        let (mut child, id) = host(&lattice, &env).await?;
        let received = tokio::time::timeout(Duration::from_secs(5), got.recv()).await;
        match trusted {
            true => {
                let (head, _) = received.expect("an export within 5 s").expect("the collector runs");
                assert!(head.starts_with("POST /v1/metrics ") || head.starts_with("POST /v1/traces "), "{head}");
            }
            false => assert!(received.is_err(), "nothing reaches a collector the host cannot verify: {received:?}"),
        }
        lattice.ctl().await?.stop_host(&id, Some(3_000)).await.map_err(anyhow::Error::msg)?;
        assert!(wait_exit(&mut child, Duration::from_secs(15)), "the host exits 0 (trusted: {trusted})");
    }
    Ok(())
}
