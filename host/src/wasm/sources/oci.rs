//! Components from OCI registries, as wasmCloud references them (`oci://registry/repo:tag`,
//! `registry/repo:tag`, `…@sha256:…`), pulled with `oci-client` and kept in an on-disk cache
//! keyed by manifest digest. The one wasm layer's content is checked against its digest before
//! anything compiles it, on download and on every cache hit.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};
use tracing::{debug, info};

use crate::wasm::sources::reference::ReferenceError;

/// Layer media types that carry a component (wasmCloud accepts the same three).
pub const WASM_MEDIA_TYPES: &[&str] =
    &["application/wasm", "application/vnd.module.wasm.content.layer.v1+wasm", "application/vnd.oci.image.layer.v1.tar"];

/// How a host reaches registries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciConfig {
    /// Accept `:latest` (and untagged) references; refused by default, as wasmCloud does.
    pub allow_latest: bool,
    /// Registries (`host:port`) reached over plain HTTP.
    pub insecure: Vec<String>,
    /// Username and password for one registry (`--oci-registry`): never sent to another.
    pub credentials: Option<OciCredentials>,
    /// Where pulled components are cached; `None` downloads every time.
    pub cache_dir: Option<PathBuf>,
    /// How long one pull may take.
    pub timeout: Duration,
}

impl Default for OciConfig {
    fn default() -> Self {
        Self { allow_latest: false, insecure: Vec::new(), credentials: None, cache_dir: None, timeout: Duration::from_secs(60) }
    }
}

/// A username and password for one registry, as wasmCloud's `--oci-registry`, `--oci-user` and
/// `--oci-password` give them.
#[derive(Clone, PartialEq, Eq)]
pub struct OciCredentials {
    /// The registry (`host[:port]`, as in references) they are for.
    pub registry: String,
    /// Username.
    pub user: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for OciCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciCredentials").field("registry", &self.registry).field("user", &self.user).finish_non_exhaustive()
    }
}

/// Credentials per registry host, as `registry.put` delivered them (they take precedence over
/// the host's `--oci-user`). Cheap to clone; shared by the dispatcher that stores them and the
/// pulls that use them.
#[derive(Clone, Debug, Default)]
pub struct Registries(std::sync::Arc<std::sync::RwLock<trellis_messages::registry::RegistryCredentials>>);

impl Registries {
    /// Adds or replaces the credentials of each registry in `credentials`.
    pub fn put(&self, credentials: trellis_messages::registry::RegistryCredentials) {
        self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner).extend(credentials);
    }

    /// How to authenticate to `registry`.
    fn auth(&self, registry: &str, config: &OciConfig) -> RegistryAuth {
        let stored = self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(registry).cloned();
        match stored {
            Some(c) if c.token.is_some() => RegistryAuth::Bearer(c.token.unwrap_or_default()),
            Some(c) if c.username.is_some() => RegistryAuth::Basic(c.username.unwrap_or_default(), c.password.unwrap_or_default()),
            // The host's own credentials go only to the registry they were given for: a
            // reference to any other registry (an attacker's) is pulled anonymously.
            _ => match &config.credentials {
                Some(c) if same_registry(&c.registry, registry) => RegistryAuth::Basic(c.user.clone(), c.password.clone()),
                _ => RegistryAuth::Anonymous,
            },
        }
    }
}

/// Whether `a` and `b` name the same registry (`docker.io` and its index host alike; no scheme,
/// case-insensitive).
fn same_registry(a: &str, b: &str) -> bool {
    let norm = |r: &str| {
        let r = r.trim().trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/').to_ascii_lowercase();
        if r == "docker.io" || r == "registry-1.docker.io" || r == "index.docker.io" {
            "docker.io".to_string()
        } else {
            r
        }
    };
    norm(a) == norm(b)
}

/// Whether `reference` names an OCI artifact rather than a file: `oci://…`, or no scheme and a
/// first segment that is a registry host (`ghcr.io/…`, `localhost:5000/…`, `127.0.0.1:5000/…`).
pub fn is_oci(reference: &str) -> bool {
    if reference.starts_with("oci://") {
        return true;
    }
    if reference.contains("://") || reference.starts_with('/') || reference.starts_with('.') || reference.ends_with(".wasm") {
        return false;
    }
    reference
        .split_once('/')
        .is_some_and(|(host, _)| host.contains('.') || host.contains(':') || host == "localhost")
}

/// The parsed reference, refusing `:latest` unless allowed.
///
/// # Errors
/// Why the reference is refused.
pub fn parse(reference: &str, allow_latest: bool) -> Result<Reference, ReferenceError> {
    let text = reference.strip_prefix("oci://").unwrap_or(reference);
    let parsed =
        Reference::from_str(text).map_err(|e| ReferenceError::NotOci { reference: reference.to_string(), reason: e.to_string() })?;
    let explicit_tag = text.rsplit('/').next().is_some_and(|last| last.contains(':'));
    let latest = parsed.digest().is_none() && (!explicit_tag || parsed.tag() == Some("latest"));
    if latest && !allow_latest {
        return Err(ReferenceError::OciLatest { reference: reference.to_string() });
    }
    Ok(parsed)
}

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The reference is refused as written.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The registry did not give what the reference names, within the bounds.
    #[error("registry `{registry}`, `{reference}`: {problem}")]
    Registry { registry: String, reference: String, problem: PullProblem },
}

/// What went wrong with a registry (its own words cut to one short line).
#[derive(Debug, thiserror::Error)]
pub enum PullProblem {
    /// The manifest could not be read.
    #[error("cannot read the manifest: {0}")]
    Manifest(String),
    /// No layer of the wanted media types.
    #[error("{none}: no layer of media type {types}")]
    NoLayer { none: &'static str, types: String },
    /// More than one such layer.
    #[error("not one {what}: {count} such layers; Trellis runs artifacts with exactly one")]
    ManyLayers { what: &'static str, count: usize },
    /// The layer says it is larger than allowed.
    #[error("too large: {declared} bytes, over the host's limit of {max} bytes for a {what}")]
    Declared { declared: i64, max: u64, what: &'static str },
    /// The download failed.
    #[error("cannot download the {what}: {reason}")]
    Download { what: &'static str, reason: String },
    /// The registry sent more than allowed (whatever it declared).
    #[error("too large: the registry sent more than the host's limit of {max} bytes for a {what}")]
    Sent { max: u64, what: &'static str },
    /// The content is not what the manifest says.
    #[error("digest mismatch: the layer says {declared} but its content is {actual}")]
    Digest { declared: String, actual: String },
    /// The pull took too long.
    #[error("no answer: the pull took longer than {0:?}")]
    Timeout(std::time::Duration),
}

/// Pulls `reference` (at most `max_size` bytes), from the cache when its manifest digest is
/// there and the content still matches.
///
/// # Errors
/// [`PullError`], naming the registry, the reference and the cause.
pub async fn pull(reference: &str, config: &OciConfig, registries: &Registries, max_size: u64) -> Result<Vec<u8>, PullError> {
    pull_layer(reference, config, registries, max_size, &Wanted::COMPONENT).await
}

/// What a pull accepts: the one layer's media types, and words for errors.
#[derive(Debug, Clone, Copy)]
pub struct Wanted {
    /// Media types of the one layer wanted.
    pub media_types: &'static [&'static str],
    /// What the layer is (`component`, `provider archive`).
    pub what: &'static str,
    /// What an artifact without such a layer is not (`not wasm`).
    pub none: &'static str,
}

impl Wanted {
    /// A component: one wasm layer.
    pub const COMPONENT: Wanted = Wanted { media_types: WASM_MEDIA_TYPES, what: "component", none: "not wasm" };
    /// A wasmCloud provider image: one provider-archive layer.
    pub const PROVIDER: Wanted =
        Wanted { media_types: &[PROVIDER_ARCHIVE_MEDIA_TYPE], what: "provider archive", none: "not a provider image" };
}

/// The layer media type of wasmCloud provider images (a `.par`).
pub const PROVIDER_ARCHIVE_MEDIA_TYPE: &str = "application/vnd.wasmcloud.provider.archive.layer.v1+par";

/// Pulls the one layer of `reference` that `wanted` accepts, as [`pull`] does.
///
/// # Errors
/// As [`pull`].
pub async fn pull_layer(reference: &str, config: &OciConfig, registries: &Registries, max_size: u64, wanted: &Wanted) -> Result<Vec<u8>, PullError> {
    let image = parse(reference, config.allow_latest)?;
    let registry = image.resolve_registry().to_string();
    let failed = |problem: PullProblem| PullError::Registry { registry: registry.clone(), reference: reference.to_string(), problem };
    let what = wanted.what;
    let work = async {
        let client = Client::new(ClientConfig { protocol: ClientProtocol::HttpsExcept(config.insecure.clone()), ..ClientConfig::default() });
        let auth = registries.auth(&registry, config);
        let (manifest, digest) = client.pull_image_manifest(&image, &auth).await.map_err(|e| failed(PullProblem::Manifest(sanitized(&e))))?;
        let cache = config.cache_dir.as_deref().map(|d| Cache::new(d, &digest));
        if let Some(bytes) = cache.as_ref().and_then(Cache::read) {
            debug!(reference, %digest, "{} taken from the OCI cache", wanted.what);
            return Ok(bytes);
        }
        let found: Vec<_> = manifest.layers.iter().filter(|l| wanted.media_types.contains(&l.media_type.as_str())).collect();
        let layer = match found.as_slice() {
            [one] => *one,
            [] => return Err(failed(PullProblem::NoLayer { none: wanted.none, types: wanted.media_types.join(", ") })),
            more => return Err(failed(PullProblem::ManyLayers { what, count: more.len() })),
        };
        if u64::try_from(layer.size).unwrap_or(u64::MAX) > max_size {
            return Err(failed(PullProblem::Declared { declared: layer.size, max: max_size, what }));
        }
        // Streamed with a bound on what arrives, not on what the registry declared: a registry
        // that declares 10 bytes and sends gigabytes is cut off at `max_size`.
        let mut stream = client.pull_blob_stream(&image, layer).await.map_err(|e| failed(PullProblem::Download { what, reason: sanitized(&e) }))?;
        let mut bytes = Vec::with_capacity(usize::try_from(layer.size.max(0)).unwrap_or(0).min(usize::try_from(max_size).unwrap_or(usize::MAX)));
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            let chunk = chunk.map_err(|e| failed(PullProblem::Download { what, reason: sanitized(&e) }))?;
            if bytes.len() as u64 + chunk.len() as u64 > max_size {
                return Err(failed(PullProblem::Sent { max: max_size, what }));
            }
            bytes.extend_from_slice(&chunk);
        }
        let actual = sha256(&bytes);
        if actual != layer.digest {
            return Err(failed(PullProblem::Digest { declared: layer.digest.clone(), actual }));
        }
        info!(reference, %digest, bytes = bytes.len(), "{} pulled", wanted.what);
        if let Some(cache) = cache {
            cache.write(&layer.digest, &bytes);
        }
        Ok(bytes)
    };
    match tokio::time::timeout(config.timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(failed(PullProblem::Timeout(config.timeout))),
    }
}

/// Publishes `component` at `reference` as `wash push` lays it out (config
/// `application/vnd.wasm.config.v0+json`, one `application/wasm` layer), so wasmCloud hosts and
/// Trellis hosts pull each other's pushes. `insecure` reaches the registry over plain HTTP.
/// Returns the manifest's URL.
///
/// # Errors
/// [`PushError`]: why the reference, the component or the registry refused it.
pub async fn push(reference: &str, component: Vec<u8>, insecure: bool, credentials: Option<(String, String)>) -> Result<String, PushError> {
    let text = reference.strip_prefix("oci://").unwrap_or(reference);
    let image = Reference::from_str(text).map_err(|e| PushError::Reference { reference: reference.to_string(), reason: e.to_string() })?;
    let (config, layer) = oci_wasm::WasmConfig::from_raw_component(component, None).map_err(|e| PushError::NotAComponent(e.to_string()))?;
    let protocol = if insecure { ClientProtocol::HttpsExcept(vec![image.resolve_registry().to_string()]) } else { ClientProtocol::Https };
    let client = oci_wasm::WasmClient::new(Client::new(ClientConfig { protocol, ..ClientConfig::default() }));
    let auth = credentials.map_or(RegistryAuth::Anonymous, |(user, password)| RegistryAuth::Basic(user, password));
    let pushed = client
        .push(&image, &auth, layer, config, None)
        .await
        .map_err(|e| PushError::Registry { reference: reference.to_string(), reason: e.to_string() })?;
    Ok(pushed.manifest_url)
}

/// Why a push to a registry was refused.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The reference is not an OCI reference.
    #[error("`{reference}` is not an OCI reference: {reason}")]
    Reference {
        /// The reference given.
        reference: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The bytes are not a WebAssembly component.
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    /// The registry refused or could not be reached.
    #[error("pushing to `{reference}` failed: {reason}")]
    Registry {
        /// Where it was pushed.
        reference: String,
        /// What the registry (or the connection) said.
        reason: String,
    },
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The cache entry of one manifest digest: `{dir}/oci/{digest}.layer` names the layer digest,
/// `{dir}/oci/{layer digest}.wasm` holds the content.
pub(crate) struct Cache {
    dir: PathBuf,
    manifest: String,
}

fn file_name(digest: &str) -> String {
    digest.replace(':', "_")
}

impl Cache {
    pub(crate) fn new(dir: &Path, manifest_digest: &str) -> Self {
        Self { dir: dir.join("oci"), manifest: file_name(manifest_digest) }
    }

    /// The cached content, when it is there and still matches its digest.
    pub(crate) fn read(&self) -> Option<Vec<u8>> {
        let layer = std::fs::read_to_string(self.dir.join(format!("{}.layer", self.manifest))).ok()?;
        let layer = layer.trim();
        let path = self.dir.join(format!("{}.wasm", file_name(layer)));
        let bytes = std::fs::read(&path).ok()?;
        if sha256(&bytes) != layer {
            info!(path = %path.display(), "cached component no longer matches its digest; fetching it again");
            let _ = std::fs::remove_file(&path);
            return None;
        }
        Some(bytes)
    }

    /// Stores `bytes` (the layer `layer_digest`); failures only cost a later download.
    pub(crate) fn write(&self, layer_digest: &str, bytes: &[u8]) {
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let tmp = self.dir.join(format!(".{}.{}", file_name(layer_digest), std::process::id()));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, self.dir.join(format!("{}.wasm", file_name(layer_digest))))?;
            std::fs::write(self.dir.join(format!("{}.layer", self.manifest)), layer_digest)
        };
        if let Err(e) = write() {
            info!(dir = %self.dir.display(), error = %e, "cannot cache the pulled component");
        }
    }
}

/// Longest part of a registry's own error text kept in an error (which may reach public events).
const MAX_REGISTRY_ERROR: usize = 200;

/// `e` on one line of printable text, at most [`MAX_REGISTRY_ERROR`] characters: what a
/// registry answered (an error body may be long, or carry what its operator did not mean to
/// publish) is cut before it reaches logs and the lattice's events.
fn sanitized(e: &dyn std::fmt::Display) -> String {
    let text: String = e.to_string().chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    match text.char_indices().nth(MAX_REGISTRY_ERROR) {
        Some((cut, _)) => format!("{}… (cut)", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn registry_errors_are_cut_to_one_short_line() {
        let long = format!("401 Unauthorized\n{}\r\nsecret", "x".repeat(1000));
        let s = super::sanitized(&long);
        assert!(!s.contains('\n') && !s.contains('\r') && s.ends_with("… (cut)") && s.chars().count() <= super::MAX_REGISTRY_ERROR + 8, "{s}");
        assert_eq!(super::sanitized(&"short"), "short");
    }

    use super::*;

    #[test]
    fn which_references_are_oci() {
        for r in ["oci://ghcr.io/a/b:1", "ghcr.io/a/b:1", "localhost:5000/a:1", "127.0.0.1:5000/echo@sha256:ab", "localhost/a:1"] {
            assert!(is_oci(r), "{r}");
        }
        for r in ["/abs/echo.wasm", "./echo.wasm", "target/echo.wasm", "file:///a.wasm", "echo.wasm", "nats://x"] {
            assert!(!is_oci(r), "{r}");
        }
    }

    #[test]
    fn latest_is_refused_unless_allowed() {
        assert!(matches!(parse("ghcr.io/a/b:latest", false), Err(ReferenceError::OciLatest { .. })));
        assert!(parse("ghcr.io/a/b", false).unwrap_err().to_string().contains("--allow-latest"));
        assert!(parse("ghcr.io/a/b", true).is_ok());
        assert!(parse("oci://127.0.0.1:5000/a/b:1.0", false).is_ok());
        let pinned = format!("ghcr.io/a/b@sha256:{}", "0".repeat(64));
        assert!(parse(&pinned, false).is_ok());
    }

    #[test]
    fn cache_checks_content() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path(), "sha256:m1");
        assert!(cache.read().is_none());
        let bytes = b"\0asm\x0d\0\x01\0".to_vec();
        cache.write(&sha256(&bytes), &bytes);
        assert_eq!(cache.read(), Some(bytes.clone()));
        // Tampered content is not used (and is dropped).
        std::fs::write(dir.path().join("oci").join(format!("{}.wasm", file_name(&sha256(&bytes)))), b"evil").unwrap();
        assert!(cache.read().is_none());
    }

    #[test]
    fn a_pull_error_reads_as_before() {
        let e = PullError::Registry { registry: "r:5000".into(), reference: "r:5000/a:1".into(), problem: PullProblem::Sent { max: 10, what: "component" } };
        assert_eq!(e.to_string(), "registry `r:5000`, `r:5000/a:1`: too large: the registry sent more than the host's limit of 10 bytes for a component");
        assert!(matches!(e, PullError::Registry { problem: PullProblem::Sent { max: 10, .. }, .. }));
    }
}
