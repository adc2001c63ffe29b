//! The kinds of built-in provider, and which a provider reference names: what the capability
//! resolver checks a link's target against.

/// The built-in providers Trellis knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// Serves components over HTTP/1.1.
    HttpServer,
    /// Lets linked components make outgoing HTTP requests.
    HttpClient,
    /// Key-value on JetStream.
    KeyValue,
    /// `wasmcloud:messaging` on the lattice's NATS.
    Messaging,
    /// Runs linked components on a schedule (`trellis:schedule/handler`).
    Schedule,
    /// `wasi:blobstore` on the lattice's NATS object store.
    Blobstore,
}

impl ProviderKind {
    /// Whether `reference` names a built-in provider (rather than an external one).
    pub fn is_builtin(reference: &str) -> bool {
        reference.starts_with("wasmcloud+builtin://") || reference.starts_with("trellis://")
    }

    /// The kind `reference` names.
    ///
    /// # Errors
    /// A message listing the references Trellis knows.
    pub fn parse(reference: &str) -> Result<Self, String> {
        let name = reference
            .strip_prefix("wasmcloud+builtin://")
            .or_else(|| reference.strip_prefix("trellis://"))
            .ok_or_else(|| {
                format!(
                    "provider reference `{reference}` is not a built-in provider (`wasmcloud+builtin://…` or \
                     `trellis://…`: http-server, http-client, keyvalue, messaging-nats, blobstore-nats, cron)"
                )
            })?;
        match name {
            "http-server" => Ok(Self::HttpServer),
            "http-client" => Ok(Self::HttpClient),
            "keyvalue" | "keyvalue-nats" => Ok(Self::KeyValue),
            "messaging-nats" | "messaging" => Ok(Self::Messaging),
            "cron" => Ok(Self::Schedule),
            "blobstore-nats" | "blobstore" => Ok(Self::Blobstore),
            other => Err(format!("unknown built-in provider `{other}`; known: http-server, http-client, keyvalue, messaging-nats, blobstore-nats, cron")),
        }
    }

    /// A short name for logs and the inventory.
    pub fn name(self) -> &'static str {
        match self {
            Self::HttpServer => "http-server",
            Self::HttpClient => "http-client",
            Self::KeyValue => "keyvalue",
            Self::Messaging => "messaging-nats",
            Self::Schedule => "cron",
            Self::Blobstore => "blobstore-nats",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(ProviderKind::parse("wasmcloud+builtin://http-server"), Ok(ProviderKind::HttpServer));
        assert_eq!(ProviderKind::parse("trellis://keyvalue"), Ok(ProviderKind::KeyValue));
        assert!(ProviderKind::parse("ghcr.io/wasmcloud/http-server:0.23").unwrap_err().contains("not a built-in provider"));
        assert!(ProviderKind::parse("trellis://nope").unwrap_err().contains("unknown built-in provider `nope`"));
        assert_eq!(ProviderKind::parse("wasmcloud+builtin://messaging-nats"), Ok(ProviderKind::Messaging));
        assert_eq!(ProviderKind::parse("trellis://cron"), Ok(ProviderKind::Schedule));
        assert_eq!(ProviderKind::parse("wasmcloud+builtin://cron"), Ok(ProviderKind::Schedule));
        assert_eq!(ProviderKind::parse("trellis://blobstore-nats"), Ok(ProviderKind::Blobstore));
    }
}
