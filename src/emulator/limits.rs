//! Throttling and latency like Huawei Cloud's API gateway: a token bucket per project
//! (`--rate-limit RPS[:BURST]`) and a delay added to every API call (`--latency MS[:JITTER_MS]`),
//! both off by default and both replaceable at run time (`PUT /_emulator/limits`).
//!
//! **Bucket.** Each project id (the `{project_id}` segment of a `/v3/{project_id}/...` path) has
//! its own bucket holding at most `burst` tokens, refilled continuously at `rps` tokens a second
//! (`rps` may be fractional: `0.5` is one call every two seconds). A call takes one token; with
//! less than one token left it is throttled (the server answers 429 `APIGW.0308` without running
//! anything). A project seen for the first time starts with a full bucket. The current time is a
//! parameter of [`Limits::admit`], so the unit tests step time without sleeping.
//!
//! **Reconfiguration.** [`Limits::set`] replaces the whole configuration and forgets every
//! bucket, so each project starts again with a full bucket of the new size: a test that sets
//! `2:2` knows that exactly the next two calls pass. [`Limits::restore`] goes back to the
//! configuration the emulator was started with (used by `POST /_emulator/reset`).
//!
//! **Memory.** A full bucket behaves exactly like no bucket, so once the map holds
//! [`PRUNE_AT`] buckets, the full ones are dropped before a new one is added: calls naming many
//! made-up project ids cannot grow the map without bound.
//!
//! **Why not a crate.** `governor` (GCRA, keyed limiters) was weighed first. Its quota is fixed
//! when a limiter is built and cannot be changed afterwards (governor issues #39 and #273: the
//! advice is to build a new limiter), its keyed store brings `dashmap` and its own clock
//! abstraction for tests, and a fractional rate needs `Quota::with_period`. Replacing the
//! limiter on every `PUT` would amount to what this module does anyway, so the bucket is the
//! ~40 lines below, with plain `std::time::Instant` passed in by the caller.
//!
//! **Latency.** [`Latency::delay`] draws uniformly from `ms - jitter_ms ..= ms + jitter_ms`
//! milliseconds; draws below zero become zero. The server waits with `tokio::time::sleep`.
//!
//! Depends on no other emulator module.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Once this many buckets exist, full (idle) buckets are dropped before another is added.
pub const PRUNE_AT: usize = 1024;

/// Tolerance for float rounding when a refill lands exactly on a whole token.
const EPSILON: f64 = 1e-9;

const RATE_FORM: &str = "expected RPS[:BURST], e.g. 10, 0.5 or 10:20 (RPS: requests per second, \
                         a number > 0; BURST: a whole number >= 1, default RPS rounded up)";
const LATENCY_FORM: &str = "expected MS[:JITTER_MS], e.g. 50 or 50:20 (whole milliseconds >= 0)";

/// A token-bucket rate: `rps` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RateLimitFields")]
pub struct RateLimit {
    /// Refill rate in tokens (calls) per second; finite and > 0, may be fractional.
    pub rps: f64,
    /// Bucket size: calls that may be made at once after a pause; >= 1.
    pub burst: u32,
}

impl RateLimit {
    /// A rate of `rps` calls a second with the given burst, or the default burst
    /// (`max(1, ceil(rps))`) when `None`.
    pub fn new(rps: f64, burst: Option<u32>) -> Result<Self, String> {
        if !rps.is_finite() || rps <= 0.0 {
            return Err(format!("rps must be a number > 0, got {rps}"));
        }
        let burst = burst.unwrap_or_else(|| Self::default_burst(rps));
        if burst == 0 {
            return Err("burst must be at least 1".to_owned());
        }
        Ok(Self { rps, burst })
    }

    /// `max(1, ceil(rps))`, saturating at `u32::MAX`.
    pub fn default_burst(rps: f64) -> u32 {
        // `as` saturates for floats out of range.
        (rps.ceil() as u32).max(1)
    }
}

impl FromStr for RateLimit {
    type Err = String;

    /// `RPS` or `RPS:BURST`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (rps, burst) = match s.split_once(':') {
            Some((r, b)) => (r, Some(b)),
            None => (s, None),
        };
        let rps: f64 = rps
            .trim()
            .parse()
            .map_err(|_| format!("{RATE_FORM}; RPS {rps:?} is not a number"))?;
        let burst = burst
            .map(|b| {
                b.trim()
                    .parse::<u32>()
                    .map_err(|_| format!("{RATE_FORM}; BURST {b:?} is not a whole number"))
            })
            .transpose()?;
        Self::new(rps, burst).map_err(|e| format!("{RATE_FORM}; {e}"))
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.rps, self.burst)
    }
}

/// The JSON form of a [`RateLimit`]: `burst` may be left out.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitFields {
    rps: f64,
    #[serde(default)]
    burst: Option<u32>,
}

impl TryFrom<RateLimitFields> for RateLimit {
    type Error = String;

    fn try_from(f: RateLimitFields) -> Result<Self, String> {
        Self::new(f.rps, f.burst)
    }
}

/// A delay of `ms` ± `jitter_ms` milliseconds (uniform) added to every API call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    /// Mean delay in milliseconds.
    pub ms: u64,
    /// Half-width of the uniform jitter in milliseconds (default 0).
    #[serde(default)]
    pub jitter_ms: u64,
}

impl Latency {
    /// The delay for a draw `offset` in `0..=2 * jitter_ms`: `ms - jitter_ms + offset`
    /// milliseconds, never below zero.
    pub fn delay_at(&self, offset: u64) -> Duration {
        let ms = self
            .ms
            .saturating_add(offset.min(self.jitter_ms.saturating_mul(2)))
            .saturating_sub(self.jitter_ms);
        Duration::from_millis(ms)
    }

    /// A random delay, uniform over `ms - jitter_ms ..= ms + jitter_ms` (draws below zero give 0).
    pub fn delay(&self) -> Duration {
        let offset = if self.jitter_ms == 0 {
            0
        } else {
            rand::random_range(0..=self.jitter_ms.saturating_mul(2))
        };
        self.delay_at(offset)
    }
}

impl FromStr for Latency {
    type Err = String;

    /// `MS` or `MS:JITTER_MS`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (ms, jitter) = s.split_once(':').unwrap_or((s, "0"));
        let ms = ms
            .trim()
            .parse()
            .map_err(|_| format!("{LATENCY_FORM}; MS {ms:?} is not a whole number"))?;
        let jitter_ms = jitter
            .trim()
            .parse()
            .map_err(|_| format!("{LATENCY_FORM}; JITTER_MS {jitter:?} is not a whole number"))?;
        Ok(Self { ms, jitter_ms })
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ms, self.jitter_ms)
    }
}

/// Throttling and latency as configured (the body of `GET`/`PUT /_emulator/limits`); `None`
/// (JSON `null` or absent) turns that part off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Token bucket per project, or no throttling.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Delay of every API call, or none.
    #[serde(default)]
    pub latency: Option<Latency>,
}

/// One project's bucket: `tokens` as of `at`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: &RateLimit, now: Instant) -> Self {
        Self {
            tokens: f64::from(rate.burst),
            at: now,
        }
    }

    /// Add what `rate` refilled since `at` (a `now` before `at` adds nothing).
    fn refill(&mut self, rate: &RateLimit, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.rps).min(f64::from(rate.burst));
        self.at = self.at.max(now);
    }

    /// Take one token if there is one.
    fn take(&mut self, rate: &RateLimit, now: Instant) -> bool {
        self.refill(rate, now);
        if self.tokens + EPSILON >= 1.0 {
            self.tokens = (self.tokens - 1.0).max(0.0);
            true
        } else {
            false
        }
    }

    fn is_full(&self, rate: &RateLimit) -> bool {
        self.tokens + EPSILON >= f64::from(rate.burst)
    }
}

#[derive(Debug)]
struct Inner {
    config: LimitsConfig,
    buckets: HashMap<String, Bucket>,
}

/// The emulator's throttling and latency: the configuration in force and the buckets.
#[derive(Debug)]
pub struct Limits {
    initial: LimitsConfig,
    inner: Mutex<Inner>,
}

impl Default for Limits {
    fn default() -> Self {
        Self::new(LimitsConfig::default())
    }
}

impl Limits {
    /// Limits starting (and restored by [`Limits::restore`]) with `config`.
    pub fn new(config: LimitsConfig) -> Self {
        Self {
            initial: config,
            inner: Mutex::new(Inner {
                config,
                buckets: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The configuration in force.
    pub fn config(&self) -> LimitsConfig {
        self.lock().config
    }

    /// Replace the configuration; every project starts again with a full bucket.
    pub fn set(&self, config: LimitsConfig) {
        let mut inner = self.lock();
        inner.config = config;
        inner.buckets.clear();
    }

    /// Go back to the configuration given at start, with full buckets.
    pub fn restore(&self) {
        self.set(self.initial);
    }

    /// Whether a call for `project` arriving at `now` may go ahead (it then takes a token), or
    /// `Err` with the rate in force when it is throttled.
    pub fn admit(&self, project: &str, now: Instant) -> Result<(), RateLimit> {
        let mut inner = self.lock();
        let Some(rate) = inner.config.rate_limit else {
            return Ok(());
        };
        if !inner.buckets.contains_key(project) && inner.buckets.len() >= PRUNE_AT {
            inner.buckets.retain(|_, b| {
                b.refill(&rate, now);
                !b.is_full(&rate)
            });
        }
        let bucket = inner
            .buckets
            .entry(project.to_owned())
            .or_insert_with(|| Bucket::full(&rate, now));
        if bucket.take(&rate, now) {
            Ok(())
        } else {
            Err(rate)
        }
    }

    /// The delay to add to the next API call (zero when latency is off).
    pub fn delay(&self) -> Duration {
        self.lock()
            .config
            .latency
            .map_or(Duration::ZERO, |l| l.delay())
    }

    #[cfg(test)]
    fn bucket_count(&self) -> usize {
        self.lock().buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn limits(rate: &str) -> Limits {
        Limits::new(LimitsConfig {
            rate_limit: Some(rate.parse().unwrap()),
            latency: None,
        })
    }

    /// How many of `n` calls at `now` pass.
    fn passed(l: &Limits, project: &str, now: Instant, n: usize) -> usize {
        (0..n).filter(|_| l.admit(project, now).is_ok()).count()
    }

    #[test]
    fn burst_then_refill_at_the_rate() {
        let l = limits("2:2");
        let t0 = Instant::now();
        assert_eq!(
            passed(&l, "p", t0, 5),
            2,
            "a full bucket lets BURST calls through"
        );
        assert_eq!(
            l.admit("p", t0 + ms(499)),
            Err(l.config().rate_limit.unwrap())
        );
        assert!(l.admit("p", t0 + ms(500)).is_ok(), "one token after 1/rps");
        assert!(l.admit("p", t0 + ms(500)).is_err());
        // A long pause refills up to the burst, never beyond.
        assert_eq!(passed(&l, "p", t0 + Duration::from_secs(60), 5), 2);
    }

    #[test]
    fn fractional_rates_and_default_bursts() {
        let l = limits("0.5");
        assert_eq!(l.config().rate_limit.unwrap().burst, 1);
        let t0 = Instant::now();
        assert!(l.admit("p", t0).is_ok());
        assert!(l.admit("p", t0 + ms(1999)).is_err());
        assert!(l.admit("p", t0 + ms(2000)).is_ok());

        let l = limits("3");
        let t0 = Instant::now();
        assert_eq!(passed(&l, "p", t0, 4), 3);
        // 1/3 s, rounded to the nanosecond, is a whole token despite float rounding.
        assert!(l.admit("p", t0 + Duration::from_nanos(333_333_334)).is_ok());

        assert_eq!(RateLimit::default_burst(2.5), 3);
        assert_eq!(RateLimit::default_burst(0.01), 1);
        assert_eq!(RateLimit::default_burst(1e12), u32::MAX);
    }

    #[test]
    fn each_project_has_its_own_bucket() {
        let l = limits("1:1");
        let t0 = Instant::now();
        assert!(l.admit("a", t0).is_ok());
        assert!(l.admit("a", t0).is_err());
        assert!(l.admit("b", t0).is_ok(), "b is not throttled by a's calls");
        assert!(l.admit("b", t0).is_err());
    }

    #[test]
    fn reconfiguration_replaces_the_rate_and_refills() {
        let l = limits("1:1");
        let t0 = Instant::now();
        assert_eq!(passed(&l, "p", t0, 3), 1);
        l.set(LimitsConfig {
            rate_limit: Some("2:2".parse().unwrap()),
            latency: Some(Latency {
                ms: 5,
                jitter_ms: 0,
            }),
        });
        assert_eq!(
            passed(&l, "p", t0, 3),
            2,
            "a new rate starts with a full bucket"
        );
        assert_eq!(l.delay(), ms(5));
        l.set(LimitsConfig::default());
        assert_eq!(passed(&l, "p", t0, 100), 100, "off: nothing is throttled");
        assert_eq!(l.delay(), Duration::ZERO);
        l.restore();
        assert_eq!(l.config().rate_limit, Some("1:1".parse().unwrap()));
        assert_eq!(passed(&l, "p", t0, 3), 1);
    }

    #[test]
    fn full_buckets_are_pruned_when_many_projects_exist() {
        let l = limits("1:1");
        let t0 = Instant::now();
        for i in 0..PRUNE_AT {
            assert!(l.admit(&format!("p{i}"), t0).is_ok());
        }
        assert_eq!(l.bucket_count(), PRUNE_AT);
        // All still empty: nothing can be dropped without forgetting a throttled project.
        assert!(l.admit("new", t0).is_ok());
        assert_eq!(l.bucket_count(), PRUNE_AT + 1);
        assert!(l.admit("p0", t0).is_err());
        // A second later they are all full again, i.e. the same as absent.
        assert!(l.admit("newer", t0 + Duration::from_secs(1)).is_ok());
        assert_eq!(l.bucket_count(), 1);
    }

    #[test]
    fn rate_limit_flag_values() {
        let r: RateLimit = "10".parse().unwrap();
        assert_eq!((r.rps, r.burst), (10.0, 10));
        let r: RateLimit = "0.5:4".parse().unwrap();
        assert_eq!((r.rps, r.burst), (0.5, 4));
        assert_eq!(r.to_string(), "0.5:4");
        for (bad, says) in [
            ("10:x", "BURST \"x\""),
            ("x", "RPS \"x\""),
            ("", "RPS \"\""),
            ("0", "rps must be a number > 0"),
            ("-1:1", "rps must be a number > 0"),
            ("inf", "rps must be a number > 0"),
            ("NaN", "rps must be a number > 0"),
            ("10:0", "burst must be at least 1"),
            ("10:-1", "BURST \"-1\""),
            ("1:2:3", "BURST \"2:3\""),
        ] {
            let e = bad.parse::<RateLimit>().unwrap_err();
            assert!(e.starts_with("expected RPS[:BURST]"), "{bad}: {e}");
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn latency_flag_values_and_delays() {
        let l: Latency = "50:20".parse().unwrap();
        assert_eq!(
            l,
            Latency {
                ms: 50,
                jitter_ms: 20
            }
        );
        assert_eq!("50".parse::<Latency>().unwrap().jitter_ms, 0);
        assert_eq!(l.delay_at(0), ms(30));
        assert_eq!(l.delay_at(40), ms(70));
        assert_eq!(
            l.delay_at(1000),
            ms(70),
            "offsets past 2 * jitter are capped"
        );
        let wide = Latency {
            ms: 10,
            jitter_ms: 30,
        };
        assert_eq!(wide.delay_at(0), Duration::ZERO, "never negative");
        for _ in 0..100 {
            let d = l.delay();
            assert!(d >= ms(30) && d <= ms(70), "{d:?}");
        }
        for bad in ["x", "50:x", "-5", "5:-1", ""] {
            let e = bad.parse::<Latency>().unwrap_err();
            assert!(e.starts_with("expected MS[:JITTER_MS]"), "{bad}: {e}");
        }
    }

    #[test]
    fn admin_json_form() {
        let c: LimitsConfig = serde_json::from_value(
            json!({"rate_limit": {"rps": 0.5}, "latency": {"ms": 50, "jitter_ms": 20}}),
        )
        .unwrap();
        assert_eq!(c.rate_limit.unwrap().burst, 1);
        assert_eq!(
            serde_json::to_value(c).unwrap(),
            json!({"rate_limit": {"rps": 0.5, "burst": 1}, "latency": {"ms": 50, "jitter_ms": 20}})
        );
        let off: LimitsConfig =
            serde_json::from_value(json!({"rate_limit": null, "latency": null})).unwrap();
        assert_eq!(off, LimitsConfig::default());
        assert_eq!(
            serde_json::from_value::<LimitsConfig>(json!({})).unwrap(),
            LimitsConfig::default()
        );
        for bad in [
            json!({"rate_limit": {"rps": 0}}),
            json!({"rate_limit": {"rps": 1, "burst": 0}}),
            json!({"rate_limit": {"rps": 1, "bust": 2}}),
            json!({"rate_limit": {"burst": 2}}),
            json!({"latency": {"ms": -1}}),
            json!({"latency": {"ms": 1, "jitter": 2}}),
            json!({"rate": {"rps": 1}}),
        ] {
            assert!(
                serde_json::from_value::<LimitsConfig>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }
}
