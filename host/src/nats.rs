//! Connecting to NATS with the configured credentials and TLS, and reporting connection
//! changes to the host.

use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tracing::{info, warn};

use crate::config::NatsConfig;
use crate::error::{ConfigError, HostError, Result};

/// Connects with `config`; connection events (disconnect, reconnect, errors) are logged and
/// sent on `events` when given. The connection's I/O task runs on the tokio runtime this is
/// called on.
///
/// The client reconnects without limit; subscriptions survive reconnects.
///
/// # Errors
/// [`HostError::File`] when the credentials file cannot be read, [`HostError::NatsConnect`]
/// when no server answers within the connect timeout.
pub async fn connect(
    config: &NatsConfig,
    name: &str,
    events: Option<UnboundedSender<async_nats::Event>>,
) -> Result<async_nats::Client> {
    // More than one rustls crypto provider is compiled in (the OCI client's HTTP stack brings
    // aws-lc-rs beside async-nats's ring), so rustls cannot pick one by itself and a TLS
    // connection would panic: choose ring, once per process. An error means one is set already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let connection = name.to_string();
    let mut opts = match (&config.creds_file, &config.nkey_seed) {
        (Some(path), _) => async_nats::ConnectOptions::with_credentials_file(path.clone())
            .await
            .map_err(|source| HostError::File { what: "NATS credentials file", path: path.clone(), source })?,
        (None, Some(seed)) => {
            nkeys::KeyPair::from_seed(seed).map_err(ConfigError::NkeySeed)?;
            async_nats::ConnectOptions::with_nkey(seed.clone())
        }
        (None, None) => async_nats::ConnectOptions::new(),
    };
    if let Some(ca) = &config.tls_ca {
        check_readable("TLS CA certificate", ca)?;
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let Some((cert, key)) = &config.tls_client {
        check_readable("TLS client certificate", cert)?;
        check_readable("TLS client key", key)?;
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    let opts = opts
        .name(name)
        .connection_timeout(config.connect_timeout)
        .max_reconnects(None)
        // Retry quickly at first so a restarted server is found within a second or two.
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis(100u64.saturating_mul(1 << attempts.min(5))).min(Duration::from_secs(3))
        })
        .event_callback(move |event| {
            let (events, connection) = (events.clone(), connection.clone());
            async move {
                match &event {
                    async_nats::Event::Connected => info!(%connection, "NATS connected"),
                    async_nats::Event::Disconnected => warn!(%connection, "NATS connection lost; reconnecting"),
                    async_nats::Event::Closed => info!(%connection, "NATS connection closed"),
                    other => warn!(%connection, event = %other, "NATS connection event"),
                }
                // The host may have stopped listening; that is not an error here.
                if let Some(events) = &events {
                    let _ = events.send(event);
                }
            }
        });
    let urls: Vec<&str> = config.url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
    let addrs: Vec<async_nats::ServerAddr> = urls
        .iter()
        .map(|u| u.parse().map_err(|e| HostError::from(ConfigError::NatsUrl { url: redact(u), reason: format!("{e}") })))
        .collect::<Result<_>>()?;
    // async-nats does not read credentials embedded in the URL when given addresses: take
    // them from the first URL that has some (`user:password@`, or a token as `token@`).
    let embedded = addrs.iter().find_map(|a| a.username().map(|u| (u.to_string(), a.password().map(str::to_string))));
    let opts = match embedded {
        Some((user, Some(password))) => opts.user_and_password(percent_decode(&user), percent_decode(&password)),
        Some((token, None)) => opts.token(percent_decode(&token)),
        None => opts,
    };
    opts.connect(addrs)
        .await
        .map_err(|e| HostError::NatsConnect { url: redact(&config.url), reason: e.to_string() })
}

/// Whether one of `config`'s URLs carries credentials (`user:password@` or `token@`).
pub fn url_has_credentials(config: &NatsConfig) -> bool {
    config
        .url
        .split(',')
        .filter_map(|u| u.trim().parse::<async_nats::ServerAddr>().ok())
        .any(|a| a.username().is_some())
}

/// `%XX` escapes of a URL's user or password decoded (a password may contain `@` or `:`).
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn check_readable(what: &'static str, path: &std::path::Path) -> Result<()> {
    std::fs::metadata(path).map(|_| ()).map_err(|source| HostError::File { what, path: path.to_path_buf(), source })
}

/// `url` with any password replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    url.split(',')
        .map(|u| match (u.find("://"), u.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let creds = &u[scheme + 3..at];
                match creds.split_once(':') {
                    Some((user, _)) => format!("{}{user}:***{}", &u[..scheme + 3], &u[at..]),
                    None => u.to_string(),
                }
            }
            _ => u.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Waits until the server has processed everything this connection sent so far (subscriptions
/// included): `flush` only empties the client's write buffer, so a client on another connection
/// could still find no subscriber. A message to ourselves comes back only after the server has
/// handled every earlier command of this connection.
///
/// # Errors
/// When the connection cannot subscribe or publish, or the echo does not come back in 10 s.
pub async fn barrier(client: &async_nats::Client) -> Result<(), BarrierError> {
    use futures::StreamExt;
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await?;
    client.publish(inbox, bytes::Bytes::new()).await?;
    client.flush().await?;
    match tokio::time::timeout(std::time::Duration::from_secs(10), sub.next()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(BarrierError::Closed),
        Err(_) => Err(BarrierError::NoEcho),
    }
}

/// Why [`barrier`] could not confirm the server caught up.
#[derive(Debug, thiserror::Error)]
pub enum BarrierError {
    /// The echo subscription failed.
    #[error(transparent)]
    Subscribe(#[from] async_nats::SubscribeError),
    /// The echo could not be sent.
    #[error(transparent)]
    Publish(#[from] async_nats::PublishError),
    /// The connection could not flush.
    #[error(transparent)]
    Flush(#[from] async_nats::client::FlushError),
    /// The connection closed while waiting.
    #[error("the connection closed")]
    Closed,
    /// No echo within 10 s.
    #[error("the NATS server did not echo within 10s")]
    NoEcho,
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn decodes_url_credentials() {
        assert_eq!(super::percent_decode("p%40ss%3Aw"), "p@ss:w");
        assert_eq!(super::percent_decode("plain%"), "plain%");
        assert_eq!(super::percent_decode("100%2"), "100%2");
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("nats://u:secret@h:4222"), "nats://u:***@h:4222");
        assert_eq!(redact("nats://h:4222"), "nats://h:4222");
        assert_eq!(redact("nats://tok@h:4222,nats://a:b@c:1"), "nats://tok@h:4222,nats://a:***@c:1");
    }
}
