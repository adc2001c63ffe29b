//! [`Elsewhere`]: which components, a moment ago, ran on no Trellis host but answered over wRPC
//! (on a wasmCloud 1.x host, which serves its components over wRPC only). A link call to one of
//! them goes straight to wRPC for [`ELSEWHERE_FOR`]; after that Trellis's request/reply is asked
//! first again, so a Trellis host that starts running it is preferred within seconds.
//! [`Elsewhere::reach`] is that order, the one place every kind of call (link calls, HTTP
//! requests, message deliveries) takes it from.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a component is remembered as served elsewhere.
pub const ELSEWHERE_FOR: Duration = Duration::from_secs(5);
/// Components remembered at most; past it the oldest is forgotten (link targets are named by
/// operators, but a bound is kept whoever names them).
pub const ELSEWHERE_MAX: usize = 1024;

/// Where [`Elsewhere::reach`] got its answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Reached<R, W, N> {
    /// Trellis's request/reply: a host answered, or the request failed other than with "no
    /// responders".
    Trellis(R),
    /// wRPC: a peer served it (its answer may still be an error).
    Wrpc(W),
    /// Neither: no Trellis host runs it and nobody serves it over wRPC; request/reply's
    /// "no responders".
    Nowhere(N),
}

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

    /// Calls `target`: over wRPC first when it is remembered (a remembered target that nobody
    /// serves there any more is forgotten), else Trellis's request/reply, then wRPC when no
    /// Trellis host answered (`Err` from `request_reply`). A target found so is remembered;
    /// a call made because it was remembered does not renew it, so Trellis hosts are asked
    /// first again once [`ELSEWHERE_FOR`] has passed. `over_wrpc` answers `None` when nobody
    /// serves `target` over wRPC.
    pub async fn reach<R, W, N, FR, FW>(&self, target: &str, request_reply: FR, over_wrpc: impl Fn() -> FW) -> Reached<R, W, N>
    where
        FR: Future<Output = Result<R, N>>,
        FW: Future<Output = Option<W>>,
    {
        if self.contains(target) {
            match over_wrpc().await {
                Some(answer) => return Reached::Wrpc(answer),
                None => self.forget(target),
            }
        }
        match request_reply.await {
            Ok(answer) => Reached::Trellis(answer),
            Err(no_responders) => match over_wrpc().await {
                Some(answer) => {
                    self.remember(target);
                    Reached::Wrpc(answer)
                }
                None => Reached::Nowhere(no_responders),
            },
        }
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

    /// A test call: which ways it went, in order.
    async fn call(memo: &Elsewhere, trellis_runs_it: bool, wrpc_serves_it: bool) -> (Reached<&'static str, &'static str, ()>, Vec<&'static str>) {
        let ways = Mutex::new(Vec::new());
        let reached = memo
            .reach(
                "echo",
                async {
                    ways.lock().unwrap().push("request/reply");
                    if trellis_runs_it { Ok("trellis") } else { Err(()) }
                },
                || async {
                    ways.lock().unwrap().push("wrpc");
                    wrpc_serves_it.then_some("wrpc")
                },
            )
            .await;
        (reached, ways.into_inner().unwrap())
    }

    #[tokio::test]
    async fn trellis_hosts_are_asked_first_and_wrpc_only_when_none_runs_it() {
        let memo = Elsewhere::default();
        assert_eq!(call(&memo, true, true).await, (Reached::Trellis("trellis"), vec!["request/reply"]));
        assert!(memo.is_empty(), "a component a Trellis host runs is not remembered");
        assert_eq!(call(&memo, false, false).await, (Reached::Nowhere(()), vec!["request/reply", "wrpc"]));
        assert!(memo.is_empty(), "nor one nobody runs");
    }

    #[tokio::test]
    async fn found_over_wrpc_it_is_called_there_directly_until_the_ttl_without_renewal() {
        // Margins of half a second either way, for a loaded machine.
        let memo = Elsewhere::new(Duration::from_secs(2), 8);
        assert_eq!(call(&memo, false, true).await, (Reached::Wrpc("wrpc"), vec!["request/reply", "wrpc"]), "learned");
        tokio::time::sleep(Duration::from_secs(1)).await;
        // Now a Trellis host runs it too; the memo still sends the call to wRPC.
        assert_eq!(call(&memo, true, true).await, (Reached::Wrpc("wrpc"), vec!["wrpc"]), "from the memo: one round trip");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // 2.5 s after it was learned: had the call from the memo renewed it, it would hold
        // until 3 s and the Trellis host would still not be asked.
        assert_eq!(call(&memo, true, true).await, (Reached::Trellis("trellis"), vec!["request/reply"]), "Trellis preferred again");
    }

    #[tokio::test]
    async fn a_remembered_target_gone_from_wrpc_is_forgotten_and_trellis_asked() {
        let memo = Elsewhere::default();
        call(&memo, false, true).await;
        assert!(memo.contains("echo"));
        assert_eq!(call(&memo, true, false).await, (Reached::Trellis("trellis"), vec!["wrpc", "request/reply"]));
        assert!(!memo.contains("echo"), "forgotten");
        call(&memo, false, true).await;
        assert_eq!(call(&memo, false, false).await, (Reached::Nowhere(()), vec!["wrpc", "request/reply", "wrpc"]), "gone everywhere");
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
