//! The state every reconciler shares ([`Context`]): the client, the settings, the metrics, the ready
//! cloud accounts, the [`Ledger`], the controllers' caches ([`Stores`]) and claim indexes, leadership,
//! and the admission of bulk work ([`Admission`]). In a file of its own so the controller module reads
//! as the wiring it is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use kube::runtime::events::Reporter;
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use tokio::sync::Notify;

use super::backoff::RetryPolicy;
use super::config::{MANAGER, OperatorConfig};
use super::ledger::Ledger;
use super::providers::registry::Registry;
use super::{budget, claims, conditions, events};
use crate::api::{TrafficMirrorFilter, TrafficMirrorSession};
use crate::telemetry::Metrics;

/// State shared by the reconcilers.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Settings.
    pub config: OperatorConfig,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Long-lived event recorders, so repeats of one event aggregate (and only those).
    pub events: events::EventRecorders,
    /// Ready cloud accounts.
    pub providers: Registry,
    /// Backoff policy.
    pub retry: RetryPolicy,
    /// Per-object reconcile bookkeeping: backoff and terminal waits, last converged generation.
    pub ledger: Ledger,
    pub(super) refresh_now: Notify,
    /// When this process started: objects created later are a person's new objects (interactive),
    /// older ones without status are the start-up backfill (bulk).
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// The controllers' caches, set once at start: the filter reconciler asks which sessions use a
    /// filter, the resync loop which accounts have filters.
    pub stores: Stores,
    /// Who claims which cloud id, per kind, kept from the watch events (see [`claims::ClaimIndex`]).
    pub claims: ClaimIndexes,
    /// Whether this process leads: only the leader reconciles (calls the cloud, writes status and
    /// finalizers, records events). A standby's reconcilers return at once; its caches stay warm.
    leading: AtomicBool,
    /// Wakes the ProviderConfig controller to reconcile everything (this process became leader).
    became_leader: Notify,
    /// Bulk reconciles running per controller (sessions, filters): at most `concurrency - 1`, so one
    /// reconcile slot is always free for the object a person is waiting for.
    bulk_running: [Arc<tokio::sync::Semaphore>; 2],
}

/// What a reconcile holds while it runs: for bulk work, its share of the controller's reconcile
/// slots and, when the budget is short, one of the account's bulk slots. Dropped at the end.
#[derive(Debug, Default)]
pub struct Admission {
    _running: Option<tokio::sync::OwnedSemaphorePermit>,
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// How many bulk reconciles of one controller may run at once: all reconcile slots but one.
fn bulk_share(concurrency: u16) -> usize {
    usize::from(concurrency.saturating_sub(1).max(1))
}

/// The controllers' caches (reflector stores), readable by the other reconcilers.
#[derive(Default)]
pub struct Stores {
    /// Every watched TrafficMirrorSession.
    pub sessions: OnceLock<Store<TrafficMirrorSession>>,
    /// Every watched TrafficMirrorFilter.
    pub filters: OnceLock<Store<TrafficMirrorFilter>>,
}

/// The claim index of each kind, fed by its controller's watch (see [`claim_feed`]).
#[derive(Debug, Default)]
pub struct ClaimIndexes {
    /// TrafficMirrorSessions.
    pub sessions: Mutex<claims::ClaimIndex>,
    /// TrafficMirrorFilters.
    pub filters: Mutex<claims::ClaimIndex>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// Builds the shared state.
    pub fn new(client: Client, config: OperatorConfig, metrics: Metrics) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            events: events::EventRecorders::new(client.clone(), reporter),
            client,
            metrics,
            providers: Registry::default(),
            retry: RetryPolicy::default(),
            ledger: Ledger::default(),
            refresh_now: Notify::new(),
            stores: Stores::default(),
            claims: ClaimIndexes::default(),
            started_at: chrono::Utc::now(),
            leading: AtomicBool::new(config.leader_election.is_none()),
            became_leader: Notify::new(),
            bulk_running: std::array::from_fn(|_| {
                Arc::new(tokio::sync::Semaphore::new(bulk_share(config.concurrency)))
            }),
            config,
        }
    }

    /// Whether this process is the leader (always, without leader election).
    pub fn is_leader(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    /// Marks this process leader (or not). Becoming leader reconciles every ProviderConfig, which in
    /// turn (once ready) LISTs the cloud and reconciles every session and filter.
    pub fn set_leader(&self, leading: bool) {
        let was = self.leading.swap(leading, Ordering::AcqRel);
        if leading && !was {
            self.became_leader.notify_one();
        }
    }

    /// Resolves when this process becomes leader (see [`Context::set_leader`]).
    pub async fn leadership_gained(&self) {
        self.became_leader.notified().await
    }

    /// The sessions (`namespace/name`) that use the filter `name` in `namespace`: by
    /// `trafficMirrorFilterRef`, or by `trafficMirrorFilterId` equal to the filter's cloud id.
    pub fn sessions_using_filter(
        &self,
        namespace: &str,
        name: &str,
        id: Option<&str>,
    ) -> Vec<String> {
        let Some(store) = self.stores.sessions.get() else {
            return vec![];
        };
        let mut users: Vec<String> = store
            .state()
            .iter()
            .filter(|s| s.namespace().as_deref() == Some(namespace) || id.is_some())
            .filter(|s| uses_filter(s, namespace, name, id))
            .map(|s| format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any()))
            .collect();
        users.sort();
        users
    }

    /// The other filter object (`namespace/name`) that already manages `f`'s cloud filter, if any
    /// (see [`claims::claimed_by`]): one lookup in the claim index, no API call.
    pub fn filter_claimed_by(&self, f: &TrafficMirrorFilter) -> Option<String> {
        self.claimed_in(&self.claims.filters, claims::Claimant::of_filter(f))
    }

    /// The other session object (`namespace/name`) that already manages `s`'s cloud session, if any
    /// (see [`claims::claimed_by`]): one lookup in the claim index, no API call.
    pub fn session_claimed_by(&self, s: &TrafficMirrorSession) -> Option<String> {
        self.claimed_in(&self.claims.sessions, claims::Claimant::of_session(s))
    }

    /// [`claims::claimed_by`] among the objects of one kind's index that know the same id, with
    /// ProviderConfigs compared by their cloud account.
    fn claimed_in(
        &self,
        index: &Mutex<claims::ClaimIndex>,
        ours: claims::Claimant,
    ) -> Option<String> {
        let id = ours.manages()?;
        let index = index.lock().unwrap_or_else(|p| p.into_inner());
        claims::claimed_by(&ours, index.with_id(id), |pc| self.providers.account(pc))
    }

    /// The budget lane of a reconcile of `meta`'s object: interactive when a person waits for it (it
    /// is being deleted, its spec changed since it was last observed, or it was created after this
    /// process started), bulk otherwise (the start-up backfill, resyncs, drift corrections).
    pub fn lane_of(
        &self,
        meta: &kube::api::ObjectMeta,
        observed_generation: Option<i64>,
    ) -> budget::Lane {
        let created_after_start = meta
            .creation_timestamp
            .as_ref()
            .is_some_and(|t| t.0.as_second() > self.started_at.timestamp());
        let edited = observed_generation.is_some() && observed_generation != meta.generation;
        if meta.deletion_timestamp.is_some() || edited || created_after_start {
            budget::Lane::Interactive
        } else {
            budget::Lane::Bulk
        }
    }

    /// The watch cache's latest view of object `namespace/name` of kind `kind`: its generation and
    /// whether it is being deleted (what a waiting bulk reconcile gives way to, see
    /// [`budget::gives_way`]).
    pub fn latest(&self, kind: &str, namespace: &str, name: &str) -> (Option<i64>, bool) {
        fn of<K: kube::Resource<DynamicType = ()> + Clone>(
            store: Option<&Store<K>>,
            namespace: &str,
            name: &str,
        ) -> (Option<i64>, bool) {
            let key = kube::runtime::reflector::ObjectRef::new(name).within(namespace);
            store.and_then(|s| s.get(&key)).map_or((None, false), |o| {
                let meta = o.meta();
                (meta.generation, meta.deletion_timestamp.is_some())
            })
        }
        if kind == <TrafficMirrorFilter as kube::Resource>::kind(&()) {
            of(self.stores.filters.get(), namespace, name)
        } else {
            of(self.stores.sessions.get(), namespace, name)
        }
    }

    /// Admission of a reconcile in `lane` against ProviderConfig `provider`'s budget (see
    /// [`budget::Budget::bulk_slot`]): `Err(delay)` means "requeue after `delay`, nothing done".
    /// Bulk work also needs one of the controller's bulk reconcile slots (see `bulk_running`): without
    /// it, bulk reconciles waiting for tokens could fill every reconcile slot and hold an edit back
    /// until several creates had gone ahead of it.
    pub fn admit(
        &self,
        kind: &str,
        lane: budget::Lane,
        provider: &str,
    ) -> Result<Admission, Duration> {
        if lane == budget::Lane::Interactive {
            return Ok(Admission::default());
        }
        let running = self.bulk_running
            [usize::from(kind == <TrafficMirrorFilter as kube::Resource>::kind(&()))]
        .clone();
        let Ok(running) = running.try_acquire_owned() else {
            return Err(Duration::from_millis(100 + rand::random::<u64>() % 200));
        };
        let slot = match self.providers.get(provider) {
            Some(p) => p.budget.bulk_slot()?,
            None => None,
        };
        Ok(Admission {
            _running: Some(running),
            _slot: slot,
        })
    }

    /// Whether a reconcile must read its cloud object fresh (GET) instead of from the snapshot: after
    /// a spec change or a failure the snapshot may be stale for it. Unless this process already
    /// converged this generation (then the snapshot holds the answers of its own calls, and the status
    /// write that says so may just not be in the cache yet).
    pub fn needs_fresh_read(
        &self,
        meta: &kube::api::ObjectMeta,
        observed_generation: Option<i64>,
        conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    ) -> bool {
        let synced =
            conditions::find(conditions, conditions::SYNCED).is_some_and(|c| c.status == "True");
        let behind = meta.generation != observed_generation;
        let uid = meta.uid.as_deref().unwrap_or_default();
        (behind || !synced) && !self.ledger.converged_at(uid, meta.generation)
    }

    /// The cloud ids of the sessions that session objects manage.
    pub fn managed_session_ids(&self) -> std::collections::HashSet<String> {
        let Some(store) = self.stores.sessions.get() else {
            return Default::default();
        };
        store
            .state()
            .iter()
            .filter_map(|s| s.status.as_ref().and_then(|st| st.session_id.clone()))
            .collect()
    }

    /// Whether any watched TrafficMirrorFilter uses the ProviderConfig `name`.
    pub fn filters_use_provider(&self, name: &str) -> bool {
        self.stores.filters.get().is_some_and(|store| {
            store
                .state()
                .iter()
                .any(|f| f.spec.provider_config_ref.name == name)
        })
    }

    /// Asks the resync loop to LIST now (a provider just became ready).
    pub fn refresh_inventories_soon(&self) {
        self.refresh_now.notify_one();
    }
}

/// Whether session `s` uses the filter `name` in `namespace` (cloud id `id`).
pub(super) fn uses_filter(
    s: &TrafficMirrorSession,
    namespace: &str,
    name: &str,
    id: Option<&str>,
) -> bool {
    let by_ref = s.namespace().as_deref() == Some(namespace)
        && s.spec
            .traffic_mirror_filter_ref
            .as_ref()
            .is_some_and(|r| r.name == name);
    let by_id = id.is_some() && s.spec.traffic_mirror_filter_id.as_deref() == id;
    by_ref || by_id
}

#[cfg(test)]
mod tests {
    /// `admit` tells the filter kind by the CRD's kind: it must be the filter reconciler's label.
    #[test]
    fn the_crds_filter_kind_is_the_filter_reconcilers_label() {
        assert_eq!(
            <crate::api::TrafficMirrorFilter as kube::Resource>::kind(&()),
            super::super::filter::KIND
        );
    }
}
