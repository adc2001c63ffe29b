//! [`Elsewhere`]: which components, a moment ago, ran on no Trellis host but answered over wRPC
//! (on a wasmCloud 1.x host, which serves its components over wRPC only). A link call to one of
//! them goes straight to wRPC for [`ELSEWHERE_FOR`]; after that Trellis's request/reply is asked
//! first again, so a Trellis host that starts running it is preferred within seconds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a component is remembered as served elsewhere.
pub const ELSEWHERE_FOR: Duration = Duration::from_secs(5);
/// Components remembered at most; past it the oldest is forgotten (link targets are named by
/// operators, but a bound is kept whoever names them).
pub const ELSEWHERE_MAX: usize = 1024;

/// The memo; clones share it.
#[derive(Debug, Clone)]
pub struct Elsewhere {
    seen: Arc<Mutex<HashMap<String, Instant>>>,
    ttl: Duration,
    max: usize,
}

impl Default for Elsewhere {
    fn default() -> Self {
        Self::new(ELSEWHERE_FOR, ELSEWHERE_MAX)
    }
}

impl Elsewhere {
    /// A memo keeping each entry `ttl`, at most `max` of them.
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self { seen: Arc::default(), ttl, max: max.max(1) }
    }

    /// Whether `target` was remembered less than the ttl ago.
    pub fn contains(&self, target: &str) -> bool {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.get(target).is_some_and(|at| at.elapsed() < self.ttl)
    }

    /// Remembers `target` from now.
    pub fn remember(&self, target: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.retain(|_, at| at.elapsed() < self.ttl);
        if seen.len() >= self.max && !seen.contains_key(target) {
            if let Some(oldest) = seen.iter().min_by_key(|(_, at)| **at).map(|(k, _)| k.clone()) {
                seen.remove(&oldest);
            }
        }
        seen.insert(target.to_string(), Instant::now());
    }

    /// Forgets `target`.
    pub fn forget(&self, target: &str) {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).remove(target);
    }

    /// Entries held (expired ones included until the next [`Self::remember`]).
    pub fn len(&self) -> usize {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_until_the_ttl_then_asked_again() {
        let memo = Elsewhere::new(Duration::from_millis(50), 8);
        assert!(!memo.contains("echo"));
        memo.remember("echo");
        assert!(memo.contains("echo"));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!memo.contains("echo"), "expired");
        memo.remember("other");
        assert_eq!(memo.len(), 1, "expired entries are dropped on the next remember");
    }

    #[test]
    fn forgotten_when_it_stops_answering() {
        let memo = Elsewhere::default();
        memo.remember("echo");
        memo.forget("echo");
        assert!(!memo.contains("echo"));
        assert!(memo.is_empty());
    }

    #[test]
    fn bounded_whatever_the_number_of_targets() {
        let memo = Elsewhere::new(Duration::from_secs(60), 4);
        for i in 0..100 {
            memo.remember(&format!("c{i}"));
        }
        assert_eq!(memo.len(), 4);
        assert!(memo.contains("c99"), "the newest stays");
        assert!(!memo.contains("c0"), "the oldest went first");
    }
}
