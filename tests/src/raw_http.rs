//! HTTP/1.1 by hand, for tests that need to see exactly what crosses the wire (cut-off bodies,
//! chunked answers, statuses on connections the server resets).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw HTTP/1.1 request `method path` with `body` (and its content-length), closing the
/// connection after.
pub fn request(method: &str, path: &str, body: Option<&[u8]>) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n").into_bytes();
    if let Some(b) = body {
        out.extend_from_slice(format!("content-length: {}\r\n\r\n", b.len()).as_bytes());
        out.extend_from_slice(b);
    } else {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Sends `raw` on a new connection and reads to the end: (status, body bytes).
pub async fn exchange(port: u16, raw: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(raw).await?;
    let mut out = Vec::new();
    // A cut-off body ends in a reset; what arrived before it counts.
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await? {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(out.len().saturating_sub(4));
    let head = String::from_utf8_lossy(&out[..split]).to_ascii_lowercase();
    let body = out.get(split + 4..).unwrap_or_default().to_vec();
    Ok((status, if head.contains("transfer-encoding: chunked") { dechunk(&body) } else { body }))
}

/// The payload of a chunked body (as much of it as arrived).
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let Ok(n) = usize::from_str_radix(String::from_utf8_lossy(&raw[..eol]).trim(), 16) else { break };
        let data = &raw[eol + 2..];
        if n == 0 {
            break;
        }
        out.extend_from_slice(&data[..n.min(data.len())]);
        if data.len() < n + 2 {
            break;
        }
        raw = &data[n + 2..];
    }
    out
}

