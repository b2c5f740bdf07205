//! Retry policy (no client required): how long to wait after a failed reconcile.
//!
//! Retryable failures back off exponentially with full jitter, honour the cloud's `Retry-After`, and are
//! capped; terminal ones wait for a spec change (or a long interval), so a bad request never turns
//! into a retry storm.

use std::time::Duration;

/// The knobs of the retry policy.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Delay before the first retry.
    pub base: Duration,
    /// Upper bound on any single delay (also on a `Retry-After`).
    pub cap: Duration,
    /// How long a terminal failure waits before one more attempt, absent a spec change.
    pub terminal: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(300),
            terminal: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `attempt` (1 = first retry). `jitter` in `[0, 1)` picks the point in
    /// the window (full jitter), so many objects failing together do not retry together.
    /// A `retry_after` from the cloud is a lower bound (still capped).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let window = self.base.saturating_mul(1u32 << exp).min(self.cap);
        let jitter = jitter.clamp(0.0, 1.0);
        // Never less than half the window: keeps the growth visible while spreading retries.
        let jittered = window.mul_f64(0.5 + 0.5 * jitter);
        match retry_after {
            Some(ra) => jittered.max(ra).min(self.cap),
            None => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_and_is_capped() {
        let p = RetryPolicy::default();
        let d: Vec<_> = (1..=12).map(|a| p.delay(a, None, 1.0)).collect();
        assert_eq!(d[0], Duration::from_millis(500));
        assert_eq!(d[1], Duration::from_secs(1));
        assert_eq!(d[2], Duration::from_secs(2));
        assert!(d.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(d[11], Duration::from_secs(300));
        assert_eq!(p.delay(1000, None, 1.0), Duration::from_secs(300));
    }

    #[test]
    fn jitter_stays_within_the_window() {
        let p = RetryPolicy::default();
        for a in 1..10 {
            let lo = p.delay(a, None, 0.0);
            let hi = p.delay(a, None, 0.999);
            assert!(lo <= hi && lo * 2 >= p.delay(a, None, 1.0));
        }
    }

    #[test]
    fn retry_after_is_honoured_but_capped() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(7)), 0.0),
            Duration::from_secs(7)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(9999)), 0.0),
            Duration::from_secs(300)
        );
    }
}
