//! Per-object reconcile bookkeeping ([`Ledger`]): backoff after failures, the generation this
//! process last converged, the copies it replaced, and the cloud's refusals to delete a filter ([`Refusal`]). In a
//! file of its own: the driver's gate and next look read it, and its table tests live beside it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::backoff::RetryPolicy;
use super::error::Error;

/// Per-object reconcile bookkeeping: when the next attempt may run after a failure, which
/// generation this process last converged (so its own follow-up reconciles trust the snapshot), and
/// the cloud's last refusal to delete a filter (so the DELETE waits for news, not for a backoff).
#[derive(Debug, Default)]
pub struct Ledger {
    map: Mutex<HashMap<String, Failure>>,
    converged: Mutex<HashMap<String, Option<i64>>>,
    superseded: Mutex<HashMap<String, std::collections::VecDeque<String>>>,
    refusals: Mutex<HashMap<String, (Instant, Refusal)>>,
}

/// How many replaced versions of one object [`Ledger::supersede`] keeps: a create makes about five
/// writes, and the watch delivers their events within a second.
const SUPERSEDED_KEPT: usize = 8;

#[derive(Debug, Clone)]
struct Failure {
    generation: Option<i64>,
    attempts: u32,
    not_before: Instant,
}

impl Ledger {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failure>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long the object must still wait, if it failed at this generation and its wait is not over.
    /// A new generation (a spec change) clears the wait.
    pub fn backoff_left(&self, uid: &str, generation: Option<i64>) -> Option<Duration> {
        let mut map = self.lock();
        let f = map.get(uid)?;
        if f.generation != generation {
            map.remove(uid);
            return None;
        }
        f.not_before.checked_duration_since(Instant::now())
    }

    /// Records a retryable failure; returns the backoff delay.
    pub fn retryable(
        &self,
        uid: &str,
        generation: Option<i64>,
        policy: &RetryPolicy,
        retry_after: Option<Duration>,
    ) -> Duration {
        let mut map = self.lock();
        let attempts = match map.get(uid) {
            Some(f) if f.generation == generation => f.attempts + 1,
            _ => 1,
        };
        let delay = policy.delay(attempts, retry_after, rand::random::<f64>());
        map.insert(
            uid.to_string(),
            Failure {
                generation,
                attempts,
                not_before: Instant::now() + delay,
            },
        );
        delay
    }

    /// Records a throttled call (429): the account's budget has already slowed every call down, so
    /// the object retries after one base delay (or the cloud's `Retry-After`) without growing its
    /// backoff; otherwise a backfill that meets the gateway would leave its objects waiting minutes
    /// after the account is back under the limit.
    pub fn throttled(
        &self,
        uid: &str,
        generation: Option<i64>,
        policy: &RetryPolicy,
        retry_after: Option<Duration>,
    ) -> Duration {
        let mut map = self.lock();
        let attempts = match map.get(uid) {
            Some(f) if f.generation == generation => f.attempts,
            _ => 0,
        };
        let delay = policy.delay(1, retry_after, rand::random::<f64>());
        map.insert(
            uid.to_string(),
            Failure {
                generation,
                attempts,
                not_before: Instant::now() + delay,
            },
        );
        delay
    }

    /// Records a failed step by its class (throttled, retryable or terminal); returns the delay.
    pub fn record_failure(
        &self,
        uid: &str,
        generation: Option<i64>,
        policy: &RetryPolicy,
        err: &Error,
    ) -> Duration {
        if err.is_throttled() {
            self.throttled(uid, generation, policy, err.retry_after())
        } else if err.is_retryable() {
            self.retryable(uid, generation, policy, err.retry_after())
        } else {
            self.terminal(uid, generation, policy)
        }
    }

    /// Records a terminal failure: no new attempt at this generation before `policy.terminal`.
    pub fn terminal(&self, uid: &str, generation: Option<i64>, policy: &RetryPolicy) -> Duration {
        self.lock().insert(
            uid.to_string(),
            Failure {
                generation,
                attempts: 0,
                not_before: Instant::now() + policy.terminal,
            },
        );
        policy.terminal
    }

    /// Clears the object's failure state and records the generation it converged at.
    pub fn succeeded(&self, uid: &str, generation: Option<i64>) {
        self.lock().remove(uid);
        self.converged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uid.to_string(), generation);
    }

    /// Whether this process converged the object at `generation` and has not failed since.
    pub fn converged_at(&self, uid: &str, generation: Option<i64>) -> bool {
        !self.lock().contains_key(uid)
            && self
                .converged
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(uid)
                .is_some_and(|g| *g == generation)
    }

    /// Records that this process replaced version `resource_version` of object `uid` with a newer
    /// write of its own (a finalizer, the create intent, the cloud id, a status). A reconcile
    /// triggered by the watch event of that older version would act on a stale copy: its writes
    /// conflict (409) and, for an intent without its id, a cloud search is paid for nothing; the
    /// newer version's event follows. The last few replaced versions are kept per object.
    pub fn supersede(&self, uid: &str, resource_version: &str) {
        let mut map = self.superseded.lock().unwrap_or_else(|p| p.into_inner());
        let versions = map.entry(uid.to_string()).or_default();
        if !versions.iter().any(|v| v == resource_version) {
            versions.push_back(resource_version.to_string());
        }
        while versions.len() > SUPERSEDED_KEPT {
            versions.pop_front();
        }
    }

    /// Whether `resource_version` of `uid` is a copy this process has already replaced.
    pub fn is_superseded(&self, uid: &str, resource_version: Option<&str>) -> bool {
        resource_version.is_some_and(|rv| {
            self.superseded
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(uid)
                .is_some_and(|old| old.iter().any(|v| v == rv))
        })
    }

    /// Records that `old` was replaced by `new` (a write of this process), when they differ.
    pub fn replaced(&self, old: &kube::api::ObjectMeta, new: &kube::api::ObjectMeta) {
        let (Some(uid), Some(before)) = (old.uid.as_deref(), old.resource_version.as_deref())
        else {
            return;
        };
        if new.resource_version.as_deref() != Some(before) {
            self.supersede(uid, before);
        }
    }

    /// The gate every reconcile passes first (no client required): how long to wait before working
    /// on this copy of the object, if at all. A copy this process already replaced waits for the
    /// newer one's event (re-checked after 2 s); an object backing off at this generation waits
    /// out its backoff.
    pub fn gate(&self, meta: &kube::api::ObjectMeta) -> Option<Duration> {
        let uid = meta.uid.as_deref().unwrap_or_default();
        if self.is_superseded(uid, meta.resource_version.as_deref()) {
            return Some(Duration::from_secs(2));
        }
        self.backoff_left(uid, meta.generation)
    }

    fn refusals(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Refusal)>> {
        self.refusals.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the cloud's refusal to delete `uid`'s cloud object, replacing an older one (the users
    /// seen since that one are no longer news). Kept until the object is forgotten.
    pub fn refuse(&self, uid: &str, refusal: Refusal) {
        self.refusals()
            .insert(uid.to_string(), (Instant::now(), refusal));
    }

    /// The last refusal to delete `uid`'s cloud object and when it arrived (this process's clock,
    /// to compare with the snapshot's last LIST).
    pub fn refusal(&self, uid: &str) -> Option<(Instant, Refusal)> {
        self.refusals().get(uid).cloned()
    }

    /// Adds `users` to those seen since `uid`'s refusal, if it has one: one of them going away
    /// lets the next DELETE go out without waiting for a LIST.
    pub fn saw_users(&self, uid: &str, users: &[String]) {
        if let Some((_, r)) = self.refusals().get_mut(uid) {
            for u in users {
                if !r.users_seen.contains(u) {
                    r.users_seen.push(u.clone());
                }
            }
        }
    }

    /// Forgets a deleted object.
    pub fn forget(&self, uid: &str) {
        self.lock().remove(uid);
        self.refusals().remove(uid);
        self.superseded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uid);
        self.converged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uid);
    }
}

/// The cloud refused to delete the filter (HTTP 409: a session uses it) although the operator knew
/// of no user: the session was made after the last account snapshot, or outside what the operator
/// sees. Remembered per object in the [`Ledger`], so the DELETE waits for news (see
/// `filter::decide::delete_refused`) instead of being retried with backoff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The cloud's error code (`VPC.1103` from the emulator), kept for display.
    pub code: String,
    /// The cloud's message (the emulator's names the session in the way).
    pub message: String,
    /// When the cloud refused.
    pub at: DateTime<Utc>,
    /// The users the operator has seen since the refusal: one of them going away is news.
    pub users_seen: Vec<String>,
    /// Whether the account's session snapshot was listed again after the refusal: observed at each
    /// reconcile, never remembered (the ledger stores `false`).
    pub relisted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retryable_failure_gates_the_same_generation_only() {
        let l = Ledger::default();
        let p = RetryPolicy::default();
        assert!(l.backoff_left("u", Some(1)).is_none());
        let d = l.retryable("u", Some(1), &p, None);
        assert!(d > Duration::ZERO);
        assert!(l.backoff_left("u", Some(1)).is_some(), "backing off");
        // A spec change clears the wait.
        assert!(l.backoff_left("u", Some(2)).is_none());
        assert!(l.backoff_left("u", Some(2)).is_none());
    }

    #[test]
    fn attempts_grow_and_retry_after_is_honoured() {
        let l = Ledger::default();
        let p = RetryPolicy::default();
        let first = l.retryable("u", Some(1), &p, Some(Duration::from_secs(7)));
        assert!(first >= Duration::from_secs(7));
        let mut last = Duration::ZERO;
        for _ in 0..12 {
            last = l.retryable("u", Some(1), &p, None);
        }
        assert!(last >= p.cap / 2 && last <= p.cap, "{last:?}");
    }

    #[test]
    fn a_throttled_call_retries_soon_without_growing_the_backoff() {
        let l = Ledger::default();
        let p = RetryPolicy::default();
        for _ in 0..12 {
            let d = l.throttled("u", Some(1), &p, None);
            assert!(d <= p.base, "{d:?}");
        }
        // A 5xx after many 429s starts its backoff from the first step.
        assert!(l.retryable("u", Some(1), &p, None) <= p.base);
        // The cloud's Retry-After still holds.
        let d = l.throttled("u", Some(1), &p, Some(Duration::from_secs(3)));
        assert!(d >= Duration::from_secs(3));
        assert!(l.backoff_left("u", Some(1)).is_some(), "waiting");
    }

    #[test]
    fn only_the_superseded_version_is_stale() {
        let l = Ledger::default();
        assert!(!l.is_superseded("u", Some("5")));
        l.supersede("u", "5");
        assert!(l.is_superseded("u", Some("5")));
        assert!(
            !l.is_superseded("u", Some("6")),
            "the newer copy is not stale"
        );
        l.supersede("u", "6");
        assert!(
            l.is_superseded("u", Some("5")),
            "every replaced copy is stale"
        );
        let meta = |rv: &str| kube::api::ObjectMeta {
            uid: Some("u".into()),
            resource_version: Some(rv.into()),
            ..Default::default()
        };
        l.replaced(&meta("7"), &meta("7"));
        assert!(!l.is_superseded("u", Some("7")), "not replaced: no write");
        l.replaced(&meta("7"), &meta("8"));
        assert!(l.is_superseded("u", Some("7")));
        assert!(!l.is_superseded("u", None));
        assert!(!l.is_superseded("v", Some("5")));
        l.forget("u");
        assert!(!l.is_superseded("u", Some("5")));
    }

    #[test]
    fn the_gate_stops_a_stale_copy_and_a_backoff_only() {
        let l = Ledger::default();
        let meta = |rv: &str| kube::api::ObjectMeta {
            uid: Some("u".into()),
            resource_version: Some(rv.into()),
            generation: Some(1),
            ..Default::default()
        };
        assert_eq!(l.gate(&meta("5")), None);
        l.supersede("u", "5");
        assert_eq!(l.gate(&meta("5")), Some(Duration::from_secs(2)));
        assert_eq!(l.gate(&meta("6")), None, "the newer copy goes ahead");
        l.retryable("u", Some(1), &RetryPolicy::default(), None);
        assert!(l.gate(&meta("6")).is_some(), "backing off");
    }

    #[test]
    fn a_refusal_collects_the_users_seen_until_forgotten() {
        let l = Ledger::default();
        l.saw_users("u", &["ns/a".into()]);
        assert!(l.refusal("u").is_none(), "no refusal, nothing to collect");
        let r = Refusal {
            code: "VPC.1103".into(),
            message: "in use".into(),
            at: chrono::Utc::now(),
            users_seen: vec![],
            relisted: false,
        };
        l.refuse("u", r.clone());
        l.saw_users("u", &["ns/a".into(), "ns/b".into()]);
        l.saw_users("u", &["ns/a".into()]);
        let (_, seen) = l.refusal("u").expect("refused");
        assert_eq!(
            seen.users_seen,
            vec!["ns/a".to_string(), "ns/b".to_string()]
        );
        l.refuse("u", r);
        let (_, fresh) = l.refusal("u").expect("refused again");
        assert!(fresh.users_seen.is_empty(), "a new refusal starts afresh");
        l.forget("u");
        assert!(l.refusal("u").is_none());
    }

    #[test]
    fn terminal_failures_wait_the_long_interval() {
        let l = Ledger::default();
        let p = RetryPolicy::default();
        assert_eq!(l.terminal("u", Some(3), &p), p.terminal);
        let wait = l.backoff_left("u", Some(3)).expect("gated");
        assert!(wait > p.terminal - Duration::from_secs(5));
    }

    #[test]
    fn converged_generation_is_remembered_until_a_failure_or_deletion() {
        let l = Ledger::default();
        assert!(!l.converged_at("u", Some(1)));
        l.succeeded("u", Some(1));
        assert!(l.converged_at("u", Some(1)));
        assert!(!l.converged_at("u", Some(2)));
        l.retryable("u", Some(1), &RetryPolicy::default(), None);
        assert!(!l.converged_at("u", Some(1)), "a failure means: read fresh");
        l.succeeded("u", Some(1));
        l.forget("u");
        assert!(!l.converged_at("u", Some(1)));
    }
}
