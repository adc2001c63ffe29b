//! The lattice journal's stream: every host makes sure it exists when it starts
//! ([`ensure`]); `trellis_messages::journal` reads it.
//!
//! The stream is `wasmbus_events` with subjects `wasmbus.evt.*.>`, exactly what wadm creates
//! and then uses as it finds it (wadm checks only the subjects), so a wadm on the lattice and
//! Trellis hosts share one stream instead of failing on overlapping subjects. Hosts only ever
//! raise its limits (age, bytes) to their own settings, so hosts with different settings do
//! not undo each other, and a stream wadm made with its 70-second age is raised to keep a
//! journal.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use tracing::{info, warn};
use trellis_messages::journal::{STREAM, SUBJECTS};

/// How long and how much the journal keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalConfig {
    /// Records older than this are removed.
    pub max_age: Duration,
    /// The oldest records are removed past this many bytes.
    pub max_bytes: u64,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self { max_age: Duration::from_secs(7 * 24 * 3600), max_bytes: 256 << 20 }
    }
}

/// Why the journal's stream cannot be kept.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// JetStream refused to create or find the stream.
    #[error("cannot create stream `{STREAM}`: {0}")]
    Create(#[from] jetstream::context::CreateStreamError),
    /// Its info cannot be read.
    #[error("cannot read stream `{STREAM}`: {0}")]
    Info(#[from] jetstream::context::RequestError),
    /// A stream of that name exists for other subjects.
    #[error("stream `{STREAM}` exists with subjects {0:?}, not `{SUBJECTS}`; left as it is")]
    Subjects(Vec<String>),
    /// Its limits cannot be raised.
    #[error("cannot raise the limits of stream `{STREAM}`: {0}")]
    Update(jetstream::context::UpdateStreamError),
}

/// Creates the journal's stream with `replicas` replicas, or raises an existing one's limits
/// to `config`'s. Returns what is wrong when the journal cannot be kept (the host runs on
/// without it).
pub async fn ensure(nats: &async_nats::Client, config: &JournalConfig, replicas: usize) -> Result<(), JournalError> {
    let js = jetstream::new(nats.clone());
    let max_bytes = i64::try_from(config.max_bytes).unwrap_or(i64::MAX);
    let wanted = stream::Config {
        name: STREAM.into(),
        description: Some("Lattice events (wasmbus.evt.*.>): the Trellis journal, and wadm's event stream".into()),
        subjects: vec![SUBJECTS.into()],
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        max_age: config.max_age,
        max_bytes,
        num_replicas: replicas.max(1),
        storage: stream::StorageType::File,
        ..Default::default()
    };
    let mut existing = js.get_or_create_stream(wanted).await?;
    let info = existing.info().await?;
    let mut current = info.config.clone();
    if current.subjects != [SUBJECTS] {
        return Err(JournalError::Subjects(current.subjects));
    }
    // Raise only: zero age and -1 bytes mean unlimited already.
    let raise_age = !current.max_age.is_zero() && config.max_age > current.max_age;
    let raise_bytes = current.max_bytes >= 0 && max_bytes > current.max_bytes;
    if raise_age || raise_bytes {
        if raise_age {
            current.max_age = config.max_age;
        }
        if raise_bytes {
            current.max_bytes = max_bytes;
        }
        info!(max_age = ?current.max_age, max_bytes = current.max_bytes, "raising the journal stream's limits to this host's");
        js.update_stream(current).await.map_err(JournalError::Update)?;
    }
    Ok(())
}

/// [`ensure`], logging instead of failing: the journal is a record of the lattice, not
/// something a host needs to run.
pub async fn ensure_logged(nats: &async_nats::Client, config: &JournalConfig, replicas: usize) {
    if let Err(e) = ensure(nats, config, replicas).await {
        warn!(error = %e, "the lattice journal is not kept by this host");
    }
}
