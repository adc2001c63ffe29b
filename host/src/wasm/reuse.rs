//! Whether and how a component's HTTP instances are reused between requests, from the
//! annotations of its scale (`component.scale`, or a manifest's component annotations):
//!
//! * a WASI 0.3 `wasi:http/handler` component is always served by reused instances, each taking
//!   up to [`MAX_CONCURRENCY`] requests at once;
//! * a WASI 0.2 `wasi:http/incoming-handler` component gets a fresh instance per request unless
//!   its scale says [`REUSABLE`]`: "true"` (its author declares it safe to reuse): then one
//!   request at a time per instance;
//! * either way an instance takes at most [`MAX_REQUESTS`] requests, lives at most
//!   [`MAX_AGE_SECONDS`], and is dropped after [`IDLE_SECONDS`] without a request.
//!
//! Values out of their bounds refuse the scale, with the bound named.

use std::collections::BTreeMap;
use std::time::Duration;

pub use crate::error::ReuseError;

/// `"true"`: a WASI 0.2 HTTP component may serve many requests, one at a time, per instance.
pub const REUSABLE: &str = "trellis.dev/reuse";
/// Requests one WASI 0.3 instance serves at once.
pub const MAX_CONCURRENCY: &str = "trellis.dev/max-concurrency";
/// Requests one instance serves before a fresh one replaces it.
pub const MAX_REQUESTS: &str = "trellis.dev/reuse-max-requests";
/// Seconds an instance takes new requests before a fresh one replaces it.
pub const MAX_AGE_SECONDS: &str = "trellis.dev/reuse-max-seconds";
/// Seconds an idle instance is kept for the next request.
pub const IDLE_SECONDS: &str = "trellis.dev/reuse-idle-seconds";

/// The most requests one instance may serve at once.
pub const CONCURRENCY_BOUND: u32 = 1_000;
/// The most requests one instance may serve in its life.
pub const REQUESTS_BOUND: u32 = 1_000_000;
/// The longest an instance may live or idle, in seconds.
pub const SECONDS_BOUND: u64 = 3_600;

/// `wasmtime serve`'s defaults for WASI 0.3 (16 at once, 128 in all), and its idle time (1 s).
const DEFAULT_CONCURRENCY: u32 = 16;
const DEFAULT_REQUESTS: u32 = 128;
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(60);
const DEFAULT_IDLE: Duration = Duration::from_secs(1);

/// What a scale asked of instance reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reuse {
    /// A WASI 0.2 component declared safe to reuse.
    pub reusable: bool,
    /// [`MAX_CONCURRENCY`], when given.
    pub max_concurrency: Option<u32>,
    /// [`MAX_REQUESTS`], when given.
    pub max_requests: Option<u32>,
    /// [`MAX_AGE_SECONDS`], when given.
    pub max_age: Option<Duration>,
    /// [`IDLE_SECONDS`], when given.
    pub idle: Option<Duration>,
}

/// How a reused component's instances are run: [`Reuse`] with its defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReusePlan {
    /// Requests at once per instance (1 for WASI 0.2).
    pub concurrency: u32,
    /// Requests per instance.
    pub requests: u32,
    /// How long an instance takes new requests.
    pub max_age: Duration,
    /// How long an idle instance is kept.
    pub idle: Duration,
}

impl Reuse {
    /// Reads the reuse annotations of a scale.
    ///
    /// # Errors
    /// A value that is not a number, or is out of its bounds; [`REUSABLE`] other than
    /// `true`/`false`.
    pub fn parse(annotations: Option<&BTreeMap<String, String>>) -> Result<Self, ReuseError> {
        let Some(a) = annotations else { return Ok(Self::default()) };
        let reusable = match a.get(REUSABLE).map(|v| v.trim()) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => return Err(ReuseError::NotBool { key: REUSABLE, value: other.to_string() }),
        };
        Ok(Self {
            reusable,
            max_concurrency: number(a, MAX_CONCURRENCY, u64::from(CONCURRENCY_BOUND))?.map(|n| n as u32),
            max_requests: number(a, MAX_REQUESTS, u64::from(REQUESTS_BOUND))?.map(|n| n as u32),
            max_age: number(a, MAX_AGE_SECONDS, SECONDS_BOUND)?.map(Duration::from_secs),
            idle: number(a, IDLE_SECONDS, SECONDS_BOUND)?.map(Duration::from_secs),
        })
    }

    /// How a component is served: `None` for a fresh instance per request (a WASI 0.2
    /// component not declared reusable); `wasi_0_3` when it exports 0.3's handler.
    pub fn plan(&self, wasi_0_3: bool) -> Option<ReusePlan> {
        if !wasi_0_3 && !self.reusable {
            return None;
        }
        Some(ReusePlan {
            concurrency: if wasi_0_3 { self.max_concurrency.unwrap_or(DEFAULT_CONCURRENCY) } else { 1 },
            requests: self.max_requests.unwrap_or(DEFAULT_REQUESTS),
            max_age: self.max_age.unwrap_or(DEFAULT_MAX_AGE),
            idle: self.idle.unwrap_or(DEFAULT_IDLE),
        })
    }
}

/// The value of `key`, a whole number from 1 to `bound`.
fn number(a: &BTreeMap<String, String>, key: &'static str, bound: u64) -> Result<Option<u64>, ReuseError> {
    let Some(text) = a.get(key) else { return Ok(None) };
    match text.trim().parse::<u64>() {
        Ok(n) if (1..=bound).contains(&n) => Ok(Some(n)),
        _ => Err(ReuseError::OutOfBounds { key, value: text.clone(), bound }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<Reuse, ReuseError> {
        Reuse::parse(Some(&pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()))
    }

    #[test]
    fn a_0_2_component_is_reused_only_when_declared_reusable() {
        assert_eq!(Reuse::parse(None).map(|r| r.plan(false)), Ok(None));
        assert_eq!(parse(&[(REUSABLE, "false")]).map(|r| r.plan(false)), Ok(None));
        let plan = parse(&[(REUSABLE, "true"), (MAX_CONCURRENCY, "50")]).expect("valid").plan(false).expect("reused");
        assert_eq!(plan.concurrency, 1, "a 0.2 instance takes one request at a time");
        assert_eq!(plan.requests, DEFAULT_REQUESTS);
    }

    #[test]
    fn a_0_3_component_is_always_reused_with_its_settings() {
        let plan = Reuse::default().plan(true).expect("reused");
        assert_eq!((plan.concurrency, plan.requests, plan.idle), (DEFAULT_CONCURRENCY, DEFAULT_REQUESTS, DEFAULT_IDLE));
        let plan = parse(&[(MAX_CONCURRENCY, "100"), (MAX_REQUESTS, "5"), (MAX_AGE_SECONDS, "2"), (IDLE_SECONDS, "3")])
            .expect("valid")
            .plan(true)
            .expect("reused");
        assert_eq!(plan, ReusePlan { concurrency: 100, requests: 5, max_age: Duration::from_secs(2), idle: Duration::from_secs(3) });
    }

    #[test]
    fn values_out_of_bounds_refuse_the_scale() {
        for (key, value) in [(MAX_CONCURRENCY, "0"), (MAX_CONCURRENCY, "1001"), (MAX_REQUESTS, "-1"), (MAX_AGE_SECONDS, "3601"), (IDLE_SECONDS, "1s")] {
            let e = parse(&[(key, value)]).expect_err(value);
            assert!(e.to_string().contains(key), "{e}");
        }
        assert!(matches!(parse(&[(REUSABLE, "yes")]), Err(ReuseError::NotBool { .. })));
    }
}
