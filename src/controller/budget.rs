//! The cloud API budget of one account (one per ProviderConfig, shared by every reconciler and the
//! resync loop): a token bucket (`spec.rateLimit.qps`, `burst`) in front of every cloud call, with
//! two lanes and an account-wide back-off on throttling.
//!
//! - **Lanes.** What a person waits for (a spec edit, a delete, an object created after start-up)
//!   runs in [`Lane::Interactive`]; the start-up backfill, resync LISTs and drift corrections run in
//!   [`Lane::Bulk`]. While an interactive call waits for a token, bulk calls do not take one, so an
//!   edit is served next even during a 1,000-object backfill (interactive calls are few, so bulk is
//!   delayed, never starved for long). The lane is a task-local set by the reconciler for the whole
//!   reconcile ([`in_lane`]), so no call site passes it around.
//! - **Back-off.** A 429 from the gateway means the whole account is over its limit (every tool
//!   using the same credentials shares it): the rate is halved and the bucket emptied, so every lane
//!   of this account pauses; each later success grows the rate back by a tenth of the configured
//!   rate, at most once per second (additive increase, multiplicative decrease, as the AWS SDKs'
//!   adaptive retry mode does).
//!
//! - **Slots.** kube-runtime runs reconciles in arrival order with a fixed concurrency, so bulk
//!   reconciles waiting here for tokens could hold every slot and queue an edit behind the whole
//!   backfill. While the bucket is short of tokens, only [`BULK_HOLDERS`] bulk reconciles may wait
//!   in it ([`Budget::bulk_slot`]); the others are requeued at once, leaving slots free for a person.
//!
//! Why by hand: `governor`/`leaky-bucket` give a fixed-rate bucket, but not priority lanes nor a rate
//! that adapts to throttling; the bucket here is a few lines of pure arithmetic, tested with time
//! passed in.

use std::future::Future;
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Who is waiting for a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// A person is waiting (spec edit, delete, new object): served first.
    Interactive,
    /// Bulk work (start-up backfill, resync, drift correction): gets what is left.
    Bulk,
}

impl Lane {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Lane::Interactive => "interactive",
            Lane::Bulk => "bulk",
        }
    }
}

tokio::task_local! {
    static LANE: Lane;
}

/// Runs `f` with every cloud call it makes in `lane`.
pub async fn in_lane<F: Future>(lane: Lane, f: F) -> F::Output {
    LANE.scope(lane, f).await
}

/// The lane of the current task (bulk outside [`in_lane`]).
pub fn current_lane() -> Lane {
    LANE.try_with(|l| *l).unwrap_or(Lane::Bulk)
}

/// Where a bulk reconcile stands in the budget, so the driver can make it **give way** when its
/// object gets a new generation (issue 21, "edits first"): kube-runtime runs one reconcile per
/// object at a time, so an edit of an object whose bulk reconcile waits here for a token would
/// otherwise wait behind the whole backfill. Giving way drops the waiting reconcile (no call is in
/// flight while it waits: the flag is up only between calls) and lets the edit's reconcile run at
/// once, in the interactive lane.
#[derive(Debug, Default)]
pub struct Place {
    waiting: std::sync::atomic::AtomicBool,
    held: std::sync::atomic::AtomicBool,
}

impl Place {
    /// Whether the reconcile waits for a bulk token now and may still give way.
    pub fn may_give_way(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.waiting.load(Relaxed) && !self.held.load(Relaxed)
    }
}

tokio::task_local! {
    static PLACE: Arc<Place>;
}

/// Runs `f` with its bulk token waits recorded in `place`.
pub async fn with_place<F: Future>(place: Arc<Place>, f: F) -> F::Output {
    PLACE.scope(place, f).await
}

/// From now on the current reconcile keeps its place: it has written something that giving way
/// would leave half done (a create intent before its `POST`).
pub fn hold_place() {
    let _ = PLACE.try_with(|p| p.held.store(true, std::sync::atomic::Ordering::Relaxed));
}

fn mark_waiting(waiting: bool) {
    let _ = PLACE.try_with(|p| {
        p.waiting
            .store(waiting, std::sync::atomic::Ordering::Relaxed)
    });
}

/// Whether a bulk reconcile of generation `reconciling` gives way: it waits for a token (and may
/// give way), and the object now has a newer generation, or is being deleted.
pub fn gives_way(
    may_give_way: bool,
    reconciling: Option<i64>,
    latest: Option<i64>,
    deleting: bool,
) -> bool {
    let newer = matches!((reconciling, latest), (Some(a), Some(b)) if b > a);
    may_give_way && (newer || deleting)
}

/// The default budget: below the gateway's ~10 requests/s per user, leaving room for other tools.
pub const DEFAULT_QPS: f64 = 8.0;
/// The default burst.
pub const DEFAULT_BURST: u32 = 8;

/// The bucket's state; every method takes the time, so the arithmetic is tested without sleeping.
#[derive(Clone, Debug, PartialEq)]
pub struct Bucket {
    /// Configured rate (tokens per second).
    pub max_rate: f64,
    /// Current rate (lower than `max_rate` after throttling).
    pub rate: f64,
    /// Bucket size.
    pub burst: f64,
    /// Tokens available.
    pub tokens: f64,
    /// Last refill.
    pub last: Instant,
    /// Interactive calls waiting for a token.
    pub interactive_waiting: usize,
    /// Last time the rate grew after a throttle.
    pub last_increase: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(qps: f64, burst: u32, now: Instant) -> Self {
        let qps = qps.max(0.01);
        let burst = f64::from(burst.max(1));
        Bucket {
            max_rate: qps,
            rate: qps,
            burst,
            tokens: burst,
            last: now,
            interactive_waiting: 0,
            last_increase: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes a token for `lane`, or says how long to wait before trying again.
    pub fn try_take(&mut self, lane: Lane, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        let yield_to_interactive = lane == Lane::Bulk && self.interactive_waiting > 0;
        if self.tokens >= 1.0 && !yield_to_interactive {
            self.tokens -= 1.0;
            return Ok(());
        }
        let missing = (1.0 - self.tokens).max(0.0);
        let wait = if yield_to_interactive {
            1.0 / self.rate
        } else {
            missing / self.rate
        };
        Err(Duration::from_secs_f64(wait.max(0.001)))
    }

    /// The gateway throttled: halve the rate and empty the bucket (everyone pauses).
    pub fn throttled(&mut self, now: Instant) {
        self.refill(now);
        self.rate = (self.rate / 2.0).max(self.max_rate / 16.0);
        self.tokens = self.tokens.min(0.0);
        self.last_increase = now;
    }

    /// A call succeeded: grow the rate back (at most once per second).
    pub fn succeeded(&mut self, now: Instant) {
        if self.rate < self.max_rate
            && now.saturating_duration_since(self.last_increase) >= Duration::from_secs(1)
        {
            self.refill(now);
            self.rate = (self.rate + self.max_rate / 10.0).min(self.max_rate);
            self.last_increase = now;
        }
    }

    /// Applies a new configuration, keeping the current back-off proportionally.
    pub fn reconfigure(&mut self, qps: f64, burst: u32, now: Instant) {
        self.refill(now);
        let factor = self.rate / self.max_rate;
        self.max_rate = qps.max(0.01);
        self.rate = self.max_rate * factor;
        self.burst = f64::from(burst.max(1));
        self.tokens = self.tokens.min(self.burst);
    }
}

/// How many bulk reconciles of one account may wait for tokens at once.
pub const BULK_HOLDERS: usize = 3;

/// One account's budget.
#[derive(Debug)]
pub struct Budget {
    bucket: Mutex<Bucket>,
    bulk: Arc<Semaphore>,
}

impl Budget {
    /// A budget of `qps` calls per second with bursts of `burst`.
    pub fn new(qps: f64, burst: u32) -> Self {
        Budget {
            bucket: Mutex::new(Bucket::new(qps, burst, Instant::now())),
            bulk: Arc::new(Semaphore::new(BULK_HOLDERS)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.bucket.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a token in the current task's lane; returns how long it waited.
    pub async fn acquire(&self) -> Duration {
        let lane = current_lane();
        let started = Instant::now();
        let mut registered = false;
        loop {
            let wait = {
                let mut b = self.lock();
                match b.try_take(lane, Instant::now()) {
                    Ok(()) => {
                        if registered {
                            b.interactive_waiting -= 1;
                        }
                        if lane == Lane::Bulk {
                            mark_waiting(false);
                        }
                        return started.elapsed();
                    }
                    Err(wait) => {
                        if lane == Lane::Interactive && !registered {
                            b.interactive_waiting += 1;
                            registered = true;
                        }
                        if lane == Lane::Bulk {
                            mark_waiting(true);
                        }
                        wait
                    }
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Admission of a bulk reconcile: none is needed while tokens are to spare; when the bucket is
    /// short, one of [`BULK_HOLDERS`] slots (held for the reconcile), or the delay after which to try
    /// again (about when the current holders will have been served).
    pub fn bulk_slot(&self) -> Result<Option<OwnedSemaphorePermit>, Duration> {
        let rate = {
            let mut b = self.lock();
            b.refill(Instant::now());
            if b.tokens >= 1.0 && b.interactive_waiting == 0 {
                return Ok(None);
            }
            b.rate
        };
        match self.bulk.clone().try_acquire_owned() {
            Ok(permit) => Ok(Some(permit)),
            Err(_) => {
                let spread = rand::random::<f64>();
                Err(Duration::from_secs_f64(
                    (BULK_HOLDERS as f64 + spread) / rate,
                ))
            }
        }
    }

    /// Records the outcome of a call: a 429 slows the whole account down, a success lets it recover.
    pub fn record(&self, throttled: bool) {
        let mut b = self.lock();
        if throttled {
            b.throttled(Instant::now());
        } else {
            b.succeeded(Instant::now());
        }
    }

    /// Applies a changed `spec.rateLimit`.
    pub fn reconfigure(&self, qps: f64, burst: u32) {
        let mut b = self.lock();
        if b.max_rate != qps.max(0.01) || b.burst != f64::from(burst.max(1)) {
            b.reconfigure(qps, burst, Instant::now());
        }
    }

    /// The current rate (tokens per second), for logs and tests.
    pub fn rate(&self) -> f64 {
        self.lock().rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, 3, t0);
        for _ in 0..3 {
            assert!(b.try_take(Lane::Bulk, t0).is_ok());
        }
        let wait = b.try_take(Lane::Bulk, t0).expect_err("empty");
        assert!(
            wait >= Duration::from_millis(99) && wait <= Duration::from_millis(101),
            "{wait:?}"
        );
        assert!(
            b.try_take(Lane::Bulk, at(t0, 100)).is_ok(),
            "one token per 100 ms"
        );
        assert!(b.try_take(Lane::Bulk, at(t0, 150)).is_err());
        // Never more than the burst, however long it was idle.
        let later = at(t0, 60_000);
        for _ in 0..3 {
            assert!(b.try_take(Lane::Bulk, later).is_ok());
        }
        assert!(b.try_take(Lane::Bulk, later).is_err());
    }

    #[test]
    fn bulk_yields_to_a_waiting_person() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, 1, t0);
        assert!(b.try_take(Lane::Bulk, t0).is_ok());
        assert!(b.try_take(Lane::Interactive, t0).is_err());
        b.interactive_waiting = 1;
        let t = at(t0, 100);
        assert!(
            b.try_take(Lane::Bulk, t).is_err(),
            "the token is the person's"
        );
        assert!(b.try_take(Lane::Interactive, t).is_ok());
    }

    #[test]
    fn throttling_halves_the_rate_and_recovery_is_gradual() {
        let t0 = Instant::now();
        let mut b = Bucket::new(8.0, 8, t0);
        b.throttled(t0);
        assert_eq!(b.rate, 4.0);
        assert!(
            b.try_take(Lane::Interactive, t0).is_err(),
            "everyone pauses"
        );
        b.throttled(t0);
        assert_eq!(b.rate, 2.0);
        b.succeeded(at(t0, 500));
        assert_eq!(b.rate, 2.0, "at most one increase per second");
        b.succeeded(at(t0, 1_000));
        assert!((b.rate - 2.8).abs() < 1e-9);
        for s in 2..20 {
            b.succeeded(at(t0, s * 1_000));
        }
        assert_eq!(b.rate, 8.0, "back to the configured rate, never above");
        for _ in 0..10 {
            b.throttled(t0);
        }
        assert_eq!(b.rate, 0.5, "floor: a sixteenth of the configured rate");
    }

    #[test]
    fn fractional_rates_and_reconfiguration() {
        let t0 = Instant::now();
        let mut b = Bucket::new(0.5, 1, t0);
        assert!(b.try_take(Lane::Bulk, t0).is_ok());
        let wait = b.try_take(Lane::Bulk, t0).expect_err("empty");
        assert!(wait >= Duration::from_millis(1_999), "{wait:?}");
        b.reconfigure(20.0, 5, at(t0, 100));
        assert_eq!((b.max_rate, b.rate, b.burst), (20.0, 20.0, 5.0));
    }

    #[tokio::test]
    async fn the_lane_is_a_task_local() {
        assert_eq!(current_lane(), Lane::Bulk);
        let inner = in_lane(Lane::Interactive, async { current_lane() }).await;
        assert_eq!(inner, Lane::Interactive);
    }

    #[test]
    fn a_bulk_reconcile_gives_way_only_while_waiting_for_a_newer_generation_or_a_delete() {
        for (may, reconciling, latest, deleting, want) in [
            (true, Some(1), Some(2), false, true),
            (true, Some(1), Some(1), true, true),
            (true, Some(1), Some(1), false, false),
            (true, Some(2), Some(1), false, false),
            (true, Some(1), None, false, false),
            (false, Some(1), Some(2), false, false),
            (false, Some(1), Some(1), true, false),
        ] {
            assert_eq!(
                gives_way(may, reconciling, latest, deleting),
                want,
                "{may} {reconciling:?} {latest:?} {deleting}"
            );
        }
    }

    #[tokio::test]
    async fn a_bulk_wait_marks_its_place_until_served_and_a_held_place_never_gives_way() {
        let budget = Arc::new(Budget::new(1.0, 1));
        budget.acquire().await; // the only token
        let place = Arc::new(Place::default());
        let waiter = {
            let (budget, place) = (budget.clone(), place.clone());
            tokio::spawn(with_place(place, async move { budget.acquire().await }))
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !place.may_give_way() {
            assert!(Instant::now() < deadline, "never marked as waiting");
            tokio::task::yield_now().await;
        }
        waiter.await.expect("served");
        assert!(!place.may_give_way(), "served: no longer waiting");
        let held = Arc::new(Place::default());
        with_place(held.clone(), async {
            hold_place();
            mark_waiting(true);
        })
        .await;
        assert!(!held.may_give_way(), "a held place never gives way");
    }
}
