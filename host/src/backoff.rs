//! The one waiting rule between attempts of something that keeps failing (a workload the
//! reconciler cannot place, a schedule tick that fails): doubling from a first wait, up to a
//! bound.

use std::time::Duration;

/// The wait before attempt `attempt` (1-based): `first`, doubled for every attempt after the
/// first, at most `max`.
#[must_use]
pub fn doubling(first: Duration, attempt: u32, max: Duration) -> Duration {
    first.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(max)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn doubles_up_to_its_bound() {
        let wait = |n| super::doubling(Duration::from_millis(250), n, Duration::from_secs(30));
        assert_eq!(wait(0), Duration::from_millis(250));
        assert_eq!(wait(1), Duration::from_millis(250));
        assert_eq!(wait(2), Duration::from_millis(500));
        assert_eq!(wait(8), Duration::from_secs(30));
        assert_eq!(wait(u32::MAX), Duration::from_secs(30));
    }
}
