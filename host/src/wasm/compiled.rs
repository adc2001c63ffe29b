//! Compiled components shared by content: identical bytes compile (or load from the disk
//! cache) once per host, however many component ids run them, and share one copy of the code
//! in memory. An entry lives as long as a prepared component uses it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use sha2::{Digest as _, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

/// A compiled component and the sha256 of its bytes.
pub struct Compiled {
    /// The code.
    pub component: Component,
    /// sha256 of the bytes it was compiled from.
    pub digest: [u8; 32],
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex: String = self.digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        f.debug_struct("Compiled").field("sha256", &format_args!("{hex}…")).finish_non_exhaustive()
    }
}

/// The compiled components in use on this host, by the sha256 of their bytes.
#[derive(Debug, Default)]
pub struct CompiledCache {
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    by_digest: HashMap<[u8; 32], Weak<Compiled>>,
    /// The number of entries after the last sweep of unused ones: the next sweep waits until
    /// the map has doubled, so sweeping costs O(1) per insert on average.
    swept_at: usize,
}

impl CompiledCache {
    /// The compiled form of `bytes`: the one already in use when the same bytes are, else
    /// compiled now with `engine` (the engine's disk cache still applies). The second value
    /// says whether it was shared.
    ///
    /// # Errors
    /// When the bytes do not compile.
    pub fn get_or_compile(&self, engine: &Engine, bytes: &[u8]) -> wasmtime::Result<(Arc<Compiled>, bool)> {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        if let Some(shared) = self.lock().by_digest.get(&digest).and_then(Weak::upgrade) {
            return Ok((shared, true));
        }
        // Compiled outside the lock: two loads of new bytes at once may both compile, and the
        // later one is what the next load shares.
        let compiled = Arc::new(Compiled { component: Component::new(engine, bytes)?, digest });
        let mut entries = self.lock();
        if entries.by_digest.len() >= (entries.swept_at * 2).max(64) {
            entries.by_digest.retain(|_, w| w.strong_count() > 0);
            entries.swept_at = entries.by_digest.len();
        }
        entries.by_digest.insert(digest, Arc::downgrade(&compiled));
        Ok((compiled, false))
    }

    /// Distinct compiled components in use.
    pub fn len(&self) -> usize {
        self.lock().by_digest.values().filter(|w| w.strong_count() > 0).count()
    }

    /// Whether none is in use.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_bytes_share_one_compilation_while_in_use() {
        let engine = Engine::default();
        let cache = CompiledCache::default();
        let wat = b"(component (core module (func (export \"f\"))))".to_vec();
        let (a, shared_a) = cache.get_or_compile(&engine, &wat).unwrap();
        let (b, shared_b) = cache.get_or_compile(&engine, &wat).unwrap();
        assert!(!shared_a && shared_b);
        assert!(Arc::ptr_eq(&a, &b));
        let other = b"(component (core module (func (export \"g\"))))".to_vec();
        let (c, shared_c) = cache.get_or_compile(&engine, &other).unwrap();
        assert!(!shared_c && !Arc::ptr_eq(&a, &c));
        assert_eq!(cache.len(), 2);
        drop((a, b));
        assert_eq!(cache.len(), 1, "unused code is not kept");
        let (_again, shared) = cache.get_or_compile(&engine, &wat).unwrap();
        assert!(!shared, "compiled again once nothing used it");
    }
}
