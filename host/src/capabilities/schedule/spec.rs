//! A schedule link's source config, parsed once: when its ticks fall, what they carry, and how
//! failures and missed ticks are handled. The same parse refuses a bad link at `link.put`.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

/// The shortest `every` period: shorter ones would turn a typo into a flood of invocations.
pub const MIN_PERIOD: Duration = Duration::from_millis(100);
/// The longest `every` period (a year); longer ones are better said with `cron`.
pub const MAX_PERIOD: Duration = Duration::from_secs(366 * 24 * 3600);
/// The largest `payload`.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// The most `retries`.
pub const MAX_RETRIES: u32 = 10;
/// The default `retries`.
pub const DEFAULT_RETRIES: u32 = 3;
/// The default `timeout` of one attempt.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The bounds of `timeout`.
pub const TIMEOUTS: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(3600));
/// How far back a `run-once` catch-up looks for a cron schedule's missed tick.
const CATCH_UP_WINDOW_MS: u64 = 366 * 24 * 3600 * 1000;
/// Cron occurrences walked at most when catching up (a per-second cron over a day is 86,400).
const CATCH_UP_STEPS: usize = 100_000;

/// When ticks fall.
#[derive(Debug, Clone)]
pub enum Timing {
    /// Every period, aligned to the Unix epoch (so every host computes the same ticks).
    Every(Duration),
    /// A cron expression (5 fields, or 6 with seconds first) in a timezone.
    Cron(Box<croner::Cron>, chrono_tz::Tz),
}

/// What to do about ticks that fell while no host ran the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    /// Leave them (the default).
    Skip,
    /// Run the latest one once, as soon as a host runs the schedule again.
    RunOnce,
}

/// One tick: when it was due and its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// Due time, ms since the Unix epoch.
    pub at_ms: u64,
    /// `at_ms / period` for `every`, `at_ms / 1000` for `cron`.
    pub sequence: u64,
}

/// Why a schedule link's source config is not a schedule; each message names the key.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Both `cron` and `every` are set.
    #[error("a schedule names either `cron` or `every`, not both")]
    Both,
    /// Neither `cron` nor `every` is set.
    #[error("a schedule link's source config names no schedule: set `cron` (e.g. `*/5 * * * *`) or `every` (e.g. `30s`)")]
    NoSchedule,
    /// `cron` does not parse.
    #[error("`cron` = `{expr}` is not a cron expression (5 fields, or 6 with seconds first): {source}")]
    Cron {
        /// The expression as written (trimmed).
        expr: String,
        /// What croner reported.
        #[source]
        source: croner::errors::CronError,
    },
    /// `cron` parses but matches no time from now on (e.g. 31 February).
    #[error("`cron` = `{expr}` never falls due: {source}")]
    NeverDue {
        /// The expression as written (trimmed).
        expr: String,
        /// What croner reported.
        #[source]
        source: croner::errors::CronError,
    },
    /// `timezone` is not an IANA timezone name.
    #[error("`timezone` = `{name}` is not an IANA timezone (e.g. `Europe/Oslo`, `UTC`)")]
    Timezone {
        /// The name as written (trimmed).
        name: String,
    },
    /// `timezone` is set on an `every` schedule.
    #[error("`timezone` applies to `cron` schedules only")]
    TimezoneWithoutCron,
    /// `every` is not a duration.
    #[error("`every` = `{every}` is not a duration (e.g. `500ms`, `30s`, `1h`): {source}")]
    Every {
        /// The value as written (trimmed).
        every: String,
        /// What humantime reported.
        #[source]
        source: humantime::DurationError,
    },
    /// `every` is shorter than [`MIN_PERIOD`] or longer than [`MAX_PERIOD`].
    #[error("`every` = `{every}` is out of bounds ({} to {})", humantime::format_duration(MIN_PERIOD), humantime::format_duration(MAX_PERIOD))]
    EveryOutOfBounds {
        /// The value as written (trimmed).
        every: String,
        /// The period it parses to.
        period: Duration,
    },
    /// `every` has a fraction of a millisecond.
    #[error("`every` = `{every}` is not a whole number of milliseconds")]
    EveryNotWholeMs {
        /// The value as written (trimmed).
        every: String,
        /// The period it parses to.
        period: Duration,
    },
    /// `payload` is longer than [`MAX_PAYLOAD`].
    #[error("`payload` is {len} bytes; at most {MAX_PAYLOAD}")]
    Payload {
        /// Its length in bytes.
        len: usize,
    },
    /// `missed` is neither `skip` nor `run-once`.
    #[error("`missed` = `{value}`: use `skip` or `run-once`")]
    Missed {
        /// The value as written (trimmed).
        value: String,
    },
    /// `retries` is not a number from 0 to [`MAX_RETRIES`].
    #[error("`retries` = `{value}`: a number from 0 to {MAX_RETRIES}")]
    Retries {
        /// The value as written (trimmed).
        value: String,
    },
    /// `timeout` is not a duration within [`TIMEOUTS`].
    #[error("`timeout` = `{value}`: a duration from 100ms to 1h")]
    Timeout {
        /// The value as written (trimmed).
        value: String,
    },
}

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// When ticks fall.
    pub timing: Timing,
    /// Handed to every tick.
    pub payload: String,
    /// The missed-tick policy.
    pub missed: Missed,
    /// Attempts after the first when a tick fails.
    pub retries: u32,
    /// How long one attempt may take; a claim lapses this long (plus backoff) after it is made.
    pub timeout: Duration,
    /// The schedule as written, for records and listings.
    pub text: String,
}

impl Schedule {
    /// Parses the merged source config of a schedule link: `cron` (with optional `timezone`)
    /// or `every`; optional `payload`, `missed` (`skip`, `run-once`), `retries`, `timeout`.
    /// Other keys are left alone.
    ///
    /// # Errors
    /// [`SpecError`]: which key is wrong, and why.
    pub fn from_config(config: &BTreeMap<String, String>) -> Result<Self, SpecError> {
        let get = |k: &str| config.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let (timing, text) = match (get("cron"), get("every")) {
            (Some(_), Some(_)) => return Err(SpecError::Both),
            (None, None) => return Err(SpecError::NoSchedule),
            (Some(expr), None) => {
                let cron = croner::Cron::new(expr)
                    .with_seconds_optional()
                    .parse()
                    .map_err(|source| SpecError::Cron { expr: expr.to_string(), source })?;
                let tz = match get("timezone") {
                    None => chrono_tz::UTC,
                    Some(name) => name.parse::<chrono_tz::Tz>().map_err(|_| SpecError::Timezone { name: name.to_string() })?,
                };
                // A pattern that never matches (31 February) is refused here, not at run time.
                cron.find_next_occurrence(&Utc::now().with_timezone(&tz), false)
                    .map_err(|source| SpecError::NeverDue { expr: expr.to_string(), source })?;
                let text = format!("cron {expr} ({tz})");
                (Timing::Cron(Box::new(cron), tz), text)
            }
            (None, Some(every)) => {
                if get("timezone").is_some() {
                    return Err(SpecError::TimezoneWithoutCron);
                }
                let period = humantime::parse_duration(every).map_err(|source| SpecError::Every { every: every.to_string(), source })?;
                if !(MIN_PERIOD..=MAX_PERIOD).contains(&period) {
                    return Err(SpecError::EveryOutOfBounds { every: every.to_string(), period });
                }
                if period.subsec_nanos() % 1_000_000 != 0 {
                    return Err(SpecError::EveryNotWholeMs { every: every.to_string(), period });
                }
                (Timing::Every(period), format!("every {}", humantime::format_duration(period)))
            }
        };
        let payload = config.get("payload").cloned().unwrap_or_default();
        if payload.len() > MAX_PAYLOAD {
            return Err(SpecError::Payload { len: payload.len() });
        }
        let missed = match get("missed") {
            None | Some("skip") => Missed::Skip,
            Some("run-once") => Missed::RunOnce,
            Some(other) => return Err(SpecError::Missed { value: other.to_string() }),
        };
        let retries = match get("retries") {
            None => DEFAULT_RETRIES,
            Some(r) => r
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= MAX_RETRIES)
                .ok_or_else(|| SpecError::Retries { value: r.to_string() })?,
        };
        let timeout = match get("timeout") {
            None => DEFAULT_TIMEOUT,
            Some(t) => humantime::parse_duration(t)
                .ok()
                .filter(|d| (TIMEOUTS.0..=TIMEOUTS.1).contains(d))
                .ok_or_else(|| SpecError::Timeout { value: t.to_string() })?,
        };
        Ok(Self { timing, payload, missed, retries, timeout, text })
    }

    /// The first tick strictly after `after_ms`.
    pub fn next_after(&self, after_ms: u64) -> Option<Tick> {
        match &self.timing {
            Timing::Every(period) => {
                let p = period.as_millis() as u64;
                let sequence = after_ms / p + 1;
                Some(Tick { at_ms: sequence.checked_mul(p)?, sequence })
            }
            Timing::Cron(cron, tz) => {
                let from = tz.timestamp_millis_opt(i64::try_from(after_ms).ok()?).single()?;
                let next = cron.find_next_occurrence(&from, false).ok()?;
                Some(cron_tick(&next))
            }
        }
    }

    /// The latest tick in `(after_ms, until_ms]`, if any: the one a `run-once` catch-up runs.
    pub fn latest_between(&self, after_ms: u64, until_ms: u64) -> Option<Tick> {
        match &self.timing {
            Timing::Every(period) => {
                let p = period.as_millis() as u64;
                let sequence = until_ms / p;
                let at_ms = sequence.checked_mul(p)?;
                (at_ms > after_ms).then_some(Tick { at_ms, sequence })
            }
            Timing::Cron(..) => {
                let mut at = after_ms.max(until_ms.saturating_sub(CATCH_UP_WINDOW_MS));
                let mut latest = None;
                for _ in 0..CATCH_UP_STEPS {
                    match self.next_after(at) {
                        Some(t) if t.at_ms <= until_ms => {
                            latest = Some(t);
                            at = t.at_ms;
                        }
                        _ => break,
                    }
                }
                latest
            }
        }
    }
}

fn cron_tick<Tz: TimeZone>(at: &DateTime<Tz>) -> Tick {
    let at_ms = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    Tick { at_ms, sequence: at_ms / 1000 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<Schedule, SpecError> {
        Schedule::from_config(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn every_aligns_ticks_to_the_epoch() {
        let s = parse(&[("every", "1s")]).unwrap();
        assert_eq!(s.text, "every 1s");
        assert_eq!(s.next_after(10_500), Some(Tick { at_ms: 11_000, sequence: 11 }));
        assert_eq!(s.next_after(11_000), Some(Tick { at_ms: 12_000, sequence: 12 }));
        assert_eq!(s.latest_between(8_000, 10_500), Some(Tick { at_ms: 10_000, sequence: 10 }));
        assert_eq!(s.latest_between(10_000, 10_500), None, "the tick at 10 000 is not after 10 000");
        assert_eq!((s.missed, s.retries, s.timeout), (Missed::Skip, DEFAULT_RETRIES, DEFAULT_TIMEOUT));
    }

    #[test]
    fn cron_with_and_without_seconds_in_a_timezone() {
        let s = parse(&[("cron", "*/5 * * * * *")]).unwrap();
        assert_eq!(s.next_after(10_000), Some(Tick { at_ms: 15_000, sequence: 15 }));
        let s = parse(&[("cron", "0 3 * * *"), ("timezone", "Europe/Oslo")]).unwrap();
        // 1970-01-01 03:00 in Oslo (UTC+1) is 02:00 UTC.
        assert_eq!(s.next_after(0).unwrap().at_ms, 2 * 3600 * 1000);
        assert_eq!(s.text, "cron 0 3 * * * (Europe/Oslo)");
        let latest = s.latest_between(0, 5 * 24 * 3600 * 1000).unwrap();
        assert_eq!(latest.at_ms, (4 * 24 + 2) * 3600 * 1000);
    }

    #[test]
    fn bad_schedules_are_refused_with_the_key_and_the_reason() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "names no schedule"),
            (&[("cron", "* * * * *"), ("every", "1s")], "not both"),
            (&[("cron", "61 * * * *")], "`cron` = `61 * * * *` is not a cron expression"),
            (&[("cron", "* * *")], "is not a cron expression"),
            (&[("cron", "0 0 31 2 *")], "never falls due"),
            (&[("cron", "* * * * *"), ("timezone", "Mars/Olympus")], "`timezone` = `Mars/Olympus` is not an IANA timezone"),
            (&[("every", "soon")], "`every` = `soon` is not a duration"),
            (&[("every", "1ms")], "out of bounds"),
            (&[("every", "1s"), ("timezone", "UTC")], "cron` schedules only"),
            (&[("every", "1s"), ("missed", "all")], "`missed` = `all`"),
            (&[("every", "1s"), ("retries", "11")], "`retries` = `11`"),
            (&[("every", "1s"), ("retries", "-1")], "`retries` = `-1`"),
            (&[("every", "1s"), ("timeout", "2h")], "`timeout` = `2h`"),
        ];
        for (config, expected) in cases {
            let err = parse(config).unwrap_err().to_string();
            assert!(err.contains(expected), "{config:?}: {err}");
        }
        let big = "x".repeat(MAX_PAYLOAD + 1);
        assert!(parse(&[("every", "1s"), ("payload", &big)]).unwrap_err().to_string().contains("`payload` is"));
        let s = parse(&[("every", "2s"), ("missed", "run-once"), ("retries", "0"), ("timeout", "5s"), ("payload", "p"), ("other", "x")]).unwrap();
        assert_eq!((s.missed, s.retries, s.timeout, s.payload.as_str()), (Missed::RunOnce, 0, Duration::from_secs(5), "p"));
    }
}
