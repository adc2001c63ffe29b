//! External capability providers: executables started and supervised by the host, speaking
//! wasmCloud 1.x's provider protocol, so providers built with `wasmcloud-provider-sdk` run
//! unchanged.
//!
//! - [`reference`]: which executable a `provider.start` reference names, and whether this host
//!   may run it (the file-load policy);
//! - [`start_data`]: the start data (wasmCloud's `HostData`) on stdin and the links as providers receive them;
//! - [`process`]: one process (cleared environment, own process group, bounded logging of its
//!   output, signals to the group);
//! - [`supervisor`]: the actor that owns the process: links, config, health, restarts, stop;
//!   its link and config messages go out in order through `outbox` (secrets sealed first);
//! - [`guard`]: the process between host and provider that ends the provider when the host
//!   dies (`trellis provider-guard`).
//!
//! - [`archive`]: provider archives (`.par`), verified and unpacked.
//!
//! Provider images come from registries through `wasm::sources::oci` (`ProvidersActor`).
//! A signed provider (an archive or image) is given the secrets its config names in its start
//! data, and those its links name on the link puts, sealed to its own xkey.

mod error;
pub mod guard;
mod outbox;
pub mod start_data;
pub mod archive;
pub mod process;
pub mod reference;
pub mod supervisor;

pub use error::{ArchiveError, StartError};

use std::time::Duration;

use crate::config::{NatsConfig, ProviderSettings};
use crate::wasm::sources::load::FileLoad;

/// What starting a provider needs from the host's configuration, fixed at host start.
#[derive(Clone, Debug)]
pub struct Launch {
    /// Supervision timings.
    pub settings: ProviderSettings,
    /// Which files may be run.
    pub files: FileLoad,
    /// The NATS URL providers connect to (the host's).
    pub nats_url: String,
    /// A user JWT and seed from the host's `.creds`, or empty.
    pub jwt: String,
    /// See `jwt`.
    pub seed: String,
    /// The host's xkey: its public half goes to providers in their start data; links' secrets
    /// are sealed with it to each provider instance's own xkey.
    pub host_xkey: std::sync::Arc<nkeys::XKey>,
    /// The level providers log at.
    pub log_level: String,
    /// Providers' default call timeout.
    pub rpc_timeout: Duration,
    /// The `trellis` executable, run as `trellis provider-guard <provider>` between the host and
    /// each provider; `None` starts providers directly (they outlive a host killed with SIGKILL).
    pub guard: Option<std::path::PathBuf>,
    /// Where binaries from provider archives are unpacked (mode 0700, removed with the host).
    pub unpacked: std::sync::Arc<tempfile::TempDir>,
}

impl Launch {
    /// From the host's settings.
    ///
    /// # Errors
    /// When the host's NATS credentials cannot be handed to a provider (an nkey seed without a
    /// JWT: the SDK connects only with a JWT and its seed, or with credentials in the URL), or
    /// the `.creds` file cannot be read.
    pub fn new(settings: ProviderSettings, files: FileLoad, nats: &NatsConfig, rpc_timeout: Duration) -> Result<Self, StartError> {
        let (jwt, seed) = match (&nats.creds_file, &nats.nkey_seed) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path).map_err(|source| StartError::CredsFile { path: path.clone(), source })?;
                start_data::read_creds(&text)?
            }
            _ => (String::new(), String::new()),
        };
        let log_level = std::env::var("RUST_LOG")
            .ok()
            .map(|l| l.to_lowercase())
            .filter(|l| ["error", "warn", "info", "debug", "trace"].contains(&l.as_str()))
            .unwrap_or_else(|| "info".to_string());
        // Only the host's user may enter it: the binaries in it are what the host runs.
        let unpacked = tempfile::Builder::new()
            .prefix("trellis-providers-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()
            .map_err(StartError::BinaryDir)?;
        Ok(Self {
            unpacked: std::sync::Arc::new(unpacked),
            guard: settings.guard.clone(),
            settings,
            files,
            nats_url: nats.url.clone(),
            jwt,
            seed,
            host_xkey: std::sync::Arc::new(nkeys::XKey::new()),
            log_level,
            rpc_timeout,
        })
    }

    /// Why providers cannot run with these credentials, if they cannot.
    pub fn refusal(nats: &NatsConfig) -> Option<StartError> {
        if nats.creds_file.is_some() {
            return None;
        }
        if nats.nkey_seed.is_some() {
            return Some(StartError::Credentials(
                "this host authenticates to NATS with an nkey seed, which wasmCloud's provider SDK cannot use; \
                 run hosts with a .creds file (JWT) to start external providers",
            ));
        }
        // The SDK passes the URL to async-nats, which does not read credentials in it.
        crate::nats::url_has_credentials(nats).then_some(StartError::Credentials(
            "this host authenticates to NATS with credentials in its URL, which wasmCloud's provider SDK cannot use; \
             run hosts with a .creds file (JWT) to start external providers",
        ))
    }
}
