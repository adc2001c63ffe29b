//! The kinds of built-in provider, and which a provider reference names: what the capability
//! resolver checks a link's target against. A host may also run a provider *image* as a
//! built-in ([`BuiltinImages`], `--builtin-image`): wasmCloud's manifests name
//! `ghcr.io/wasmcloud/http-server:…`, and an operator who maps it runs them unedited.

use std::collections::BTreeMap;
use std::sync::Arc;

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

/// A built-in provider reference that names no built-in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KindError {
    /// Neither `wasmcloud+builtin://` nor `trellis://`.
    #[error(
        "provider reference `{0}` is not a built-in provider (`wasmcloud+builtin://…` or `trellis://…`: http-server, http-client, keyvalue, messaging-nats, blobstore-nats, cron)"
    )]
    NotBuiltin(String),
    /// A built-in scheme with a name Trellis does not have.
    #[error("unknown built-in provider `{0}`; known: http-server, http-client, keyvalue, messaging-nats, blobstore-nats, cron")]
    Unknown(String),
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
    pub fn parse(reference: &str) -> Result<Self, KindError> {
        let name = reference
            .strip_prefix("wasmcloud+builtin://")
            .or_else(|| reference.strip_prefix("trellis://"))
            .ok_or_else(|| KindError::NotBuiltin(reference.to_string()))?;
        match name {
            "http-server" => Ok(Self::HttpServer),
            "http-client" => Ok(Self::HttpClient),
            "keyvalue" | "keyvalue-nats" => Ok(Self::KeyValue),
            "messaging-nats" | "messaging" => Ok(Self::Messaging),
            "cron" => Ok(Self::Schedule),
            "blobstore-nats" | "blobstore" => Ok(Self::Blobstore),
            other => Err(KindError::Unknown(other.to_string())),
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

/// wasmCloud's own provider images whose built-in stands in for them, mapped by
/// `--builtin-image wasmcloud` (what each does differently is in the README's providers table).
pub const WASMCLOUD_IMAGES: &[(&str, ProviderKind)] = &[
    ("ghcr.io/wasmcloud/http-server", ProviderKind::HttpServer),
    ("ghcr.io/wasmcloud/http-client", ProviderKind::HttpClient),
    ("ghcr.io/wasmcloud/keyvalue-nats", ProviderKind::KeyValue),
    ("ghcr.io/wasmcloud/messaging-nats", ProviderKind::Messaging),
    ("ghcr.io/wasmcloud/blobstore-nats", ProviderKind::Blobstore),
];

/// Most images one host maps.
pub const MAX_BUILTIN_IMAGES: usize = 256;

/// A `--builtin-image` entry that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageMapError {
    /// Not `IMAGE=BUILTIN` (nor `wasmcloud`).
    #[error("builtin image `{0}` must be IMAGE=BUILTIN (e.g. ghcr.io/wasmcloud/http-server=http-server) or `wasmcloud`")]
    Form(String),
    /// The image names a tag or digest: a mapping covers every version of a repository.
    #[error("builtin image `{0}` names a tag or digest; give the repository alone (every tag maps)")]
    Tagged(String),
    /// The built-in named is not one Trellis has.
    #[error("builtin image `{image}`: {reason}")]
    Builtin {
        /// The image mapped.
        image: String,
        /// Why the built-in is unknown.
        reason: KindError,
    },
    /// Over [`MAX_BUILTIN_IMAGES`] entries.
    #[error("at most {MAX_BUILTIN_IMAGES} builtin images")]
    TooMany,
}

/// Which provider images this host runs as built-ins instead of pulling them: image repository
/// (any tag or digest) → built-in. Every host of a lattice should be given the same table, since
/// each decides by it what a provider reference is, for its own starts and for links to
/// providers on other hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuiltinImages(Arc<BTreeMap<String, ProviderKind>>);

impl BuiltinImages {
    /// Reads `entries`: `IMAGE=BUILTIN`, or `wasmcloud` for [`WASMCLOUD_IMAGES`].
    ///
    /// # Errors
    /// The first entry that cannot be used.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, ImageMapError> {
        let mut map = BTreeMap::new();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if entry == "wasmcloud" {
                map.extend(WASMCLOUD_IMAGES.iter().map(|(image, kind)| ((*image).to_string(), *kind)));
                continue;
            }
            let (image, builtin) = entry.split_once('=').ok_or_else(|| ImageMapError::Form(entry.to_string()))?;
            let (image, builtin) = (image.trim(), builtin.trim());
            if image.is_empty() || image.contains(char::is_whitespace) {
                return Err(ImageMapError::Form(entry.to_string()));
            }
            if repository(image) != image {
                return Err(ImageMapError::Tagged(image.to_string()));
            }
            let kind = ProviderKind::parse(&format!("trellis://{builtin}"))
                .map_err(|reason| ImageMapError::Builtin { image: image.to_string(), reason })?;
            map.insert(image.to_string(), kind);
        }
        if map.len() > MAX_BUILTIN_IMAGES {
            return Err(ImageMapError::TooMany);
        }
        Ok(Self(Arc::new(map)))
    }

    /// What `reference` runs as: `Ok(Some(kind))` a built-in (named as one, or an image mapped
    /// to one), `Ok(None)` an external provider (a file or an image not mapped).
    ///
    /// # Errors
    /// A built-in reference (`trellis://…`, `wasmcloud+builtin://…`) naming no built-in.
    pub fn kind(&self, reference: &str) -> Result<Option<ProviderKind>, KindError> {
        if ProviderKind::is_builtin(reference) {
            return ProviderKind::parse(reference).map(Some);
        }
        Ok(self.0.get(repository(reference)).copied())
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The mapped images and their built-ins' names.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &'static str)> {
        self.0.iter().map(|(image, kind)| (image.as_str(), kind.name()))
    }
}

/// `reference` without its digest (`@sha256:…`) or tag (a last `:` after the last `/`).
fn repository(reference: &str) -> &str {
    let reference = reference.split_once('@').map_or(reference, |(name, _)| name);
    match reference.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => name,
        _ => reference,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(ProviderKind::parse("wasmcloud+builtin://http-server"), Ok(ProviderKind::HttpServer));
        assert_eq!(ProviderKind::parse("trellis://keyvalue"), Ok(ProviderKind::KeyValue));
        assert!(ProviderKind::parse("ghcr.io/wasmcloud/http-server:0.23").unwrap_err().to_string().contains("not a built-in provider"));
        assert!(ProviderKind::parse("trellis://nope").unwrap_err().to_string().contains("unknown built-in provider `nope`"));
        assert_eq!(ProviderKind::parse("wasmcloud+builtin://messaging-nats"), Ok(ProviderKind::Messaging));
        assert_eq!(ProviderKind::parse("trellis://cron"), Ok(ProviderKind::Schedule));
        assert_eq!(ProviderKind::parse("wasmcloud+builtin://cron"), Ok(ProviderKind::Schedule));
        assert_eq!(ProviderKind::parse("trellis://blobstore-nats"), Ok(ProviderKind::Blobstore));
    }

    #[test]
    fn images_map_to_builtins_by_repository() {
        let images = BuiltinImages::parse(&["wasmcloud", "localhost:5000/acme/kv = keyvalue"]).unwrap();
        assert_eq!(images.kind("ghcr.io/wasmcloud/http-server:0.27.0"), Ok(Some(ProviderKind::HttpServer)));
        assert_eq!(images.kind("ghcr.io/wasmcloud/messaging-nats@sha256:abcd"), Ok(Some(ProviderKind::Messaging)));
        assert_eq!(images.kind("ghcr.io/wasmcloud/blobstore-nats"), Ok(Some(ProviderKind::Blobstore)));
        assert_eq!(images.kind("localhost:5000/acme/kv:1.2"), Ok(Some(ProviderKind::KeyValue)), "a registry port is not a tag");
        assert_eq!(images.kind("ghcr.io/wasmcloud/keyvalue-redis:0.30.0"), Ok(None), "not mapped: an external provider");
        assert_eq!(images.kind("ghcr.io/wasmcloud/http-server-extra:1"), Ok(None));
        assert_eq!(images.kind("trellis://cron"), Ok(Some(ProviderKind::Schedule)));
        assert!(images.kind("trellis://nope").is_err());
        assert_eq!(BuiltinImages::default().kind("ghcr.io/wasmcloud/http-server:0.27.0"), Ok(None), "nothing mapped unless asked");

        assert!(matches!(BuiltinImages::parse(&["ghcr.io/x/y"]), Err(ImageMapError::Form(_))));
        assert!(matches!(BuiltinImages::parse(&["=keyvalue"]), Err(ImageMapError::Form(_))));
        assert!(matches!(BuiltinImages::parse(&["ghcr.io/x/y:1.0=keyvalue"]), Err(ImageMapError::Tagged(_))));
        assert!(matches!(BuiltinImages::parse(&["ghcr.io/x/y=redis"]), Err(ImageMapError::Builtin { .. })));
        let many: Vec<String> = (0..=MAX_BUILTIN_IMAGES).map(|i| format!("r/{i}=keyvalue")).collect();
        assert_eq!(BuiltinImages::parse(&many), Err(ImageMapError::TooMany));
    }
}
