//! The caching provider of temporary credentials: refreshed ahead of expiry ([`decide`]) by one
//! caller at a time (single-flight: the others wait for its result instead of asking too), with a
//! cooldown after a failed refresh, and forced once by a 401 of a request signed with them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Base;
use super::assume::AssumeAgency;
use super::error::CredentialError;
use super::expiry::{Cached, Decision, decide};
use crate::cloud::signer::Credentials;

/// The default pause between failed refreshes.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(5);

/// Called after every refresh with its outcome (`Ok` or the error), for metrics.
pub type RefreshObserver = Arc<dyn Fn(Result<(), &CredentialError>) + Send + Sync>;

#[derive(Default)]
struct State {
    current: Option<(Arc<Credentials>, Cached)>,
    failure: Option<(DateTime<Utc>, CredentialError)>,
}

/// Temporary credentials of one ProviderConfig, shared by every request of its client.
pub struct Refreshing {
    base: Base,
    assume: Option<AssumeAgency>,
    cooldown: Duration,
    state: Mutex<State>,
    single_flight: tokio::sync::Mutex<()>,
    observer: Option<RefreshObserver>,
}

impl std::fmt::Debug for Refreshing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refreshing")
            .field("base", &self.base)
            .field("assume", &self.assume)
            .finish_non_exhaustive()
    }
}

impl Refreshing {
    /// A cache over `base`, optionally assuming an agency with the base's credentials.
    pub fn new(base: Base, assume: Option<AssumeAgency>, cooldown: Duration) -> Self {
        Self {
            base,
            assume,
            cooldown,
            state: Mutex::new(State::default()),
            single_flight: tokio::sync::Mutex::new(()),
            observer: None,
        }
    }

    /// The same cache, telling `observer` each refresh's outcome.
    pub fn observed(mut self, observer: RefreshObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What to do now, and the cached credential and last failure to do it with.
    fn look(&self) -> (Decision, Option<Arc<Credentials>>, Option<CredentialError>) {
        let state = self.state();
        let decision = decide(
            Utc::now(),
            state.current.as_ref().map(|(_, c)| *c),
            state.failure.as_ref().map(|(at, _)| *at),
            self.cooldown,
        );
        let current = state.current.as_ref().map(|(c, _)| c.clone());
        (
            decision,
            current,
            state.failure.as_ref().map(|(_, e)| e.clone()),
        )
    }

    /// The credential to sign with now: the cached one while fresh, else the result of one refresh
    /// (concurrent callers share it). During the cooldown after a failure: the cached one while it
    /// is valid, else that failure again.
    pub async fn current(&self) -> Result<Arc<Credentials>, CredentialError> {
        if let (Decision::Use, Some(c), _) = self.look() {
            return Ok(c);
        }
        let _flight = self.single_flight.lock().await;
        match self.look() {
            (Decision::Use | Decision::UseDuringCooldown, Some(c), _) => Ok(c),
            (Decision::FailDuringCooldown, _, Some(e)) => Err(e),
            _ => self.refresh().await,
        }
    }

    async fn refresh(&self) -> Result<Arc<Credentials>, CredentialError> {
        let obtained_at = Utc::now();
        let result = self.obtain().await;
        if let Some(observer) = &self.observer {
            observer(result.as_ref().map(|_| ()));
        }
        let mut state = self.state();
        match result {
            Ok(t) => {
                let creds = Arc::new(t.credentials);
                let cached = Cached {
                    obtained_at,
                    expires_at: t.expires_at,
                };
                state.current = Some((creds.clone(), cached));
                state.failure = None;
                Ok(creds)
            }
            Err(e) => {
                tracing::warn!(error = %e, reason = %e.reason(), "refreshing cloud credentials failed");
                state.failure = Some((Utc::now(), e.clone()));
                let still_valid = state
                    .current
                    .as_ref()
                    .filter(|(_, c)| Utc::now() < c.expires_at);
                match still_valid {
                    Some((c, _)) => Ok(c.clone()),
                    None => Err(e),
                }
            }
        }
    }

    async fn obtain(&self) -> Result<super::Temporary, CredentialError> {
        let base = self.base.fetch().await?;
        match &self.assume {
            Some(agency) => agency.fetch(&base.credentials).await,
            None => Ok(base),
        }
    }

    /// Drops the cached credential if it is still `used` (a request signed with it got a 401), so
    /// the next caller refreshes; a credential already replaced by another caller is kept. Clears
    /// the cooldown: the refused credential is no use while it lasts.
    pub fn invalidate(&self, used: &Credentials) {
        let mut state = self.state();
        if state.current.as_ref().is_some_and(|(c, _)| **c == *used) {
            state.current = None;
            state.failure = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A cache whose refresh really fails: assuming an agency at a port nobody listens on.
    fn unreachable(cooldown: Duration) -> (Arc<Refreshing>, Arc<AtomicUsize>) {
        let refreshes = Arc::new(AtomicUsize::new(0));
        let counted = refreshes.clone();
        let assume = AssumeAgency::new("http://127.0.0.1:9", "agency", "domain", 900).unwrap();
        let cache = Refreshing::new(
            Base::Static(Credentials::new("AK", "SK")),
            Some(assume),
            cooldown,
        )
        .observed(Arc::new(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
        }));
        (Arc::new(cache), refreshes)
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_refresh_and_the_cooldown_holds() {
        let (cache, refreshes) = unreachable(Duration::from_secs(60));
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.current().await })
            })
            .collect();
        for c in callers {
            let e = c.await.unwrap().unwrap_err();
            assert_eq!(e.reason(), "IAMUnreachable", "{e}");
        }
        assert_eq!(
            refreshes.load(Ordering::SeqCst),
            1,
            "one refresh for 8 callers"
        );
        // Within the cooldown the failure is answered again without asking.
        assert!(cache.current().await.is_err());
        assert_eq!(refreshes.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn after_the_cooldown_the_source_is_asked_again() {
        let (cache, refreshes) = unreachable(Duration::ZERO);
        assert!(cache.current().await.is_err());
        assert!(cache.current().await.is_err());
        assert_eq!(refreshes.load(Ordering::SeqCst), 2);
    }
}
