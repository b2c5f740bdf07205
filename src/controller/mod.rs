//! The reconcilers and what they share.
//!
//! - [`plan`], [`intent`], [`conditions`], [`backoff`]: pure decisions, unit- and property-tested.
//! - [`inventory`]: the per-account cloud snapshot (one LIST per resync interval).
//! - [`metered`]: the one wrapper every cloud call goes through, counting it.
//! - [`providers`]: the ProviderConfig reconciler and the registry of ready cloud clients.
//! - [`session`]: the TrafficMirrorSession reconciler, a pipeline observe → decide → execute → status.
//! - [`filter`]: the TrafficMirrorFilter reconciler, the same pipeline, with its rule [`filter::plan`].
//! - [`object`], [`wait`], [`error`]: what both pipelines share (API-server writes, waits, step errors).
//! - [`budget`], [`leader`]: the account's API budget and leader election.
//!
//! [`run`] wires them: three kube-runtime controllers (sessions, filters, ProviderConfigs) and the
//! resync loop, on one runtime, stopping together on SIGTERM / Ctrl-C.

pub mod backoff;
pub mod budget;
pub mod claims;
pub mod conditions;
pub mod driver;
pub mod error;
pub mod events;
pub mod filter;
pub mod intent;
pub mod inventory;
pub mod leader;
pub mod metered;
pub mod object;
pub mod providers;
pub mod session;
pub mod wait;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::channel::mpsc;
use kube::runtime::controller::Config as ControllerConfig;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::Notify;
use tracing::{info, warn};

pub use error::{Error, Result};

use crate::api::{TrafficMirrorFilter, TrafficMirrorSession};
use crate::cloud::models::{
    TrafficMirrorFilter as CloudFilter, TrafficMirrorSession as CloudSession,
};
use crate::telemetry::Metrics;
use backoff::RetryPolicy;
use inventory::Listed;
use providers::Registry;

/// Name under which the operator reports events and writes.
pub const MANAGER: &str = "traffic-mirror-operator";

/// The parameters of the operator's metadata patches (finalizers, annotations): they name
/// [`MANAGER`] as the field manager, so `metadata.managedFields` shows who wrote them instead of
/// `unknown`. The status write is a server-side apply under the same name.
pub fn patch_params() -> kube::api::PatchParams {
    kube::api::PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    }
}

/// Runtime settings of the operator (from the command line).
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    /// Watch sessions in this namespace only; `None` = all namespaces.
    pub namespace: Option<String>,
    /// Drift check period: one LIST per ProviderConfig, then every session is compared.
    pub resync_interval: Duration,
    /// Sessions reconciled in parallel.
    pub concurrency: u16,
    /// How long after an interrupted create a missing session may still appear in the cloud.
    pub create_confirm_window: Duration,
    /// Label selector restricting which ProviderConfigs this instance manages.
    pub provider_config_selector: Option<String>,
    /// Leader election: `None` = this process always leads (one replica only).
    pub leader_election: Option<leader::LeaseConfig>,
    /// The one namespace whose Secrets the operator reads and watches (credentials of every
    /// ProviderConfig), so its RBAC is a Role there rather than cluster-wide Secret access: a
    /// compromised operator can leak only the cloud credentials it is meant to hold.
    pub credentials_namespace: String,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        OperatorConfig {
            namespace: None,
            resync_interval: Duration::from_secs(300),
            concurrency: 8,
            create_confirm_window: Duration::from_secs(30),
            provider_config_selector: None,
            leader_election: None,
            credentials_namespace: "default".into(),
        }
    }
}

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
    refresh_now: Notify,
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
        let running = self.bulk_running[usize::from(kind == filter::KIND)].clone();
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

/// Per-object reconcile bookkeeping: when the next attempt may run after a failure, which
/// generation this process last converged (so its own follow-up reconciles trust the snapshot), and
/// the cloud's last refusal to delete a filter (so the DELETE waits for news, not for a backoff).
#[derive(Debug, Default)]
pub struct Ledger {
    map: Mutex<HashMap<String, Failure>>,
    converged: Mutex<HashMap<String, Option<i64>>>,
    superseded: Mutex<HashMap<String, std::collections::VecDeque<String>>>,
    refusals: Mutex<HashMap<String, (Instant, filter::decide::Refusal)>>,
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

    fn refusals(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, filter::decide::Refusal)>> {
        self.refusals.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the cloud's refusal to delete `uid`'s cloud object, replacing an older one (the users
    /// seen since that one are no longer news). Kept until the object is forgotten.
    pub fn refuse(&self, uid: &str, refusal: filter::decide::Refusal) {
        self.refusals()
            .insert(uid.to_string(), (Instant::now(), refusal));
    }

    /// The last refusal to delete `uid`'s cloud object and when it arrived (this process's clock,
    /// to compare with the snapshot's last LIST).
    pub fn refusal(&self, uid: &str) -> Option<(Instant, filter::decide::Refusal)> {
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

/// Whether session `s` uses the filter `name` in `namespace` (cloud id `id`).
fn uses_filter(s: &TrafficMirrorSession, namespace: &str, name: &str, id: Option<&str>) -> bool {
    let by_ref = s.namespace().as_deref() == Some(namespace)
        && s.spec
            .traffic_mirror_filter_ref
            .as_ref()
            .is_some_and(|r| r.name == name);
    let by_id = id.is_some() && s.spec.traffic_mirror_filter_id.as_deref() == id;
    by_ref || by_id
}

/// The resync loop: every interval (or when a provider becomes ready) one LIST of sessions per ready
/// provider (and one of filters where filters use it), then every session and filter is reconciled
/// against the fresh snapshots.
async fn resync_loop(ctx: Arc<Context>, triggers: Vec<mpsc::UnboundedSender<()>>) {
    let mut tick = tokio::time::interval(ctx.config.resync_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = ctx.refresh_now.notified() => {}
        }
        if !ctx.is_leader() {
            continue; // a standby calls no cloud API
        }
        let mut total = 0;
        for p in ctx.providers.all() {
            total += refresh(&ctx, &p).await;
        }
        ctx.metrics.managed_sessions.set(total as i64);
        if triggers.iter().any(|t| t.unbounded_send(()).is_err()) {
            return;
        }
    }
}

/// Refreshes one account's snapshots; returns how many sessions it holds.
async fn refresh(ctx: &Context, p: &providers::Provider) -> usize {
    let page_size = inventory::Inventory::<CloudSession>::PAGE_SIZE;
    let sessions = p.inventory.refresh(|marker| {
        let page = CloudSession::list_page(&p.client, page_size, marker);
        p.call(&ctx.metrics, CloudSession::LIST_OPERATION, page)
    });
    let n = match sessions.await {
        Ok(n) => n,
        Err(e) => {
            warn!(provider = %p.name, error = %e, "resync list of sessions failed");
            0
        }
    };
    if ctx.filters_use_provider(&p.name) {
        let filters = p.filters.refresh(|marker| {
            let page = CloudFilter::list_page(&p.client, page_size, marker);
            p.call(&ctx.metrics, CloudFilter::LIST_OPERATION, page)
        });
        if let Err(e) = filters.await {
            warn!(provider = %p.name, error = %e, "resync list of filters failed");
        }
    }
    n
}

/// The leader election task, when enabled: its handle, the channel that asks it to release the
/// Lease, and the one that says it did.
type Election = (
    tokio::task::JoinHandle<()>,
    tokio::sync::oneshot::Sender<()>,
    tokio::sync::oneshot::Receiver<()>,
);

fn start_election(
    client: &Client,
    config: &OperatorConfig,
    ctx: &Arc<Context>,
) -> Option<Election> {
    config.leader_election.clone().map(|lc| {
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(elect(
            leader::Elector::new(client.clone(), lc),
            ctx.clone(),
            release_rx,
            done_tx,
        ));
        (task, release_tx, done_rx)
    })
}

/// Runs the operator until SIGTERM / Ctrl-C.
///
/// With leader election the controllers (watches, caches) start at once on every replica, but
/// their reconcilers do nothing until this process holds the Lease. Losing the Lease ends the
/// process (exit code 1) at once: no cloud call or status write may follow, and the Deployment
/// restarts the pod as a fresh standby. On SIGTERM the controllers finish their in-flight
/// reconciles, then the Lease is released so a standby takes over on its next poll.
pub async fn run(client: Client, config: OperatorConfig, metrics: Metrics) {
    let ctx = Arc::new(Context::new(client.clone(), config.clone(), metrics));
    let election = start_election(&client, &config, &ctx);
    if election.is_none() {
        ctx.metrics.leader.set(1);
    }
    info!(?config, "starting controllers");
    let (session_tx, session_rx) = mpsc::unbounded();
    let (filter_tx, filter_rx) = mpsc::unbounded();
    let (session_run, filter_run) = object_controllers(&ctx, session_rx, filter_rx);
    let provider_controller = providers::run_controller(ctx.clone());
    let resync = resync_loop(ctx.clone(), vec![session_tx, filter_tx]);
    tokio::select! {
        _ = async { tokio::join!(session_run, filter_run, provider_controller) } => {}
        _ = resync => {}
    }
    info!("controllers stopped");
    if let Some((_task, release_tx, done_rx)) = election {
        ctx.set_leader(false);
        let _ = release_tx.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), done_rx).await;
    }
}

/// The session and filter controllers, each also watching the other kind (a filter's change wakes
/// the sessions that reference it; a session's change wakes the filter it uses), and each
/// reconciling everything when its resync channel fires.
fn object_controllers(
    ctx: &Arc<Context>,
    session_rx: mpsc::UnboundedReceiver<()>,
    filter_rx: mpsc::UnboundedReceiver<()>,
) -> (
    impl std::future::Future<Output = ()> + use<>,
    impl std::future::Future<Output = ()> + use<>,
) {
    let client = ctx.client.clone();
    let (sessions, filters) = match &ctx.config.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    let wc = watcher::Config::default().any_semantic();
    let (session_store, session_writer) = reflector::store();
    let (filter_store, filter_writer) = reflector::store();
    let _ = ctx.stores.sessions.set(session_store.clone());
    let _ = ctx.stores.filters.set(filter_store.clone());
    tokio::spawn(mark_synced(
        session_store.clone(),
        filter_store.clone(),
        ctx.metrics.clone(),
    ));
    let concurrency = ControllerConfig::default().concurrency(ctx.config.concurrency);
    let (session_wake, session_woken) = mpsc::unbounded();
    let (filter_wake, filter_woken) = mpsc::unbounded();
    let session_feed = claim_feed(ctx, |c| &c.claims.sessions, session_wake);
    let filter_feed = claim_feed(ctx, |c| &c.claims.filters, filter_wake);
    let session_run = Controller::for_stream(
        slim_reflector(session_writer, sessions.clone(), wc.clone(), session_feed),
        session_store.clone(),
    )
    .watches(filters.clone(), wc.clone(), move |f| {
        sessions_of_filter(&session_store, &f)
    })
    .with_config(concurrency.clone())
    .reconcile_all_on(session_rx)
    .reconcile_on(session_woken)
    .shutdown_on_signal()
    .run(
        driver::reconcile::<TrafficMirrorSession>,
        driver::error_policy::<TrafficMirrorSession>,
        ctx.clone(),
    )
    .for_each(|_| async {});
    let filter_run = Controller::for_stream(
        slim_reflector(filter_writer, filters, wc.clone(), filter_feed),
        filter_store.clone(),
    )
    .watches(sessions, wc, move |s| filters_of_session(&filter_store, &s))
    .with_config(concurrency)
    .reconcile_all_on(filter_rx)
    .reconcile_on(filter_woken)
    .shutdown_on_signal()
    .run(
        driver::reconcile::<TrafficMirrorFilter>,
        driver::error_policy::<TrafficMirrorFilter>,
        ctx.clone(),
    )
    .for_each(|_| async {});
    (session_run, filter_run)
}

/// A kind whose objects claim cloud ids (see [`claims`]).
pub trait Claiming: kube::Resource<DynamicType = ()> + Sized {
    /// The object's claim.
    fn claimant(&self) -> claims::Claimant;
}

impl Claiming for TrafficMirrorSession {
    fn claimant(&self) -> claims::Claimant {
        claims::Claimant::of_session(self)
    }
}

impl Claiming for TrafficMirrorFilter {
    fn claimant(&self) -> claims::Claimant {
        claims::Claimant::of_filter(self)
    }
}

/// Feeds one kind's watch events into its claim index (`index` picks it from the context), and
/// wakes the objects the index names (see [`claims::ClaimIndex::apply`]): a younger claimant takes
/// over, and a name conflict is looked at again, as soon as the older object is gone.
fn claim_feed<K: Claiming + 'static>(
    ctx: &Arc<Context>,
    index: fn(&Context) -> &Mutex<claims::ClaimIndex>,
    wake: mpsc::UnboundedSender<ObjectRef<K>>,
) -> impl FnMut(&watcher::Event<K>) + Send + 'static {
    let ctx = ctx.clone();
    move |event| {
        let event = match event {
            watcher::Event::Apply(o) => watcher::Event::Apply(o.claimant()),
            watcher::Event::Delete(o) => watcher::Event::Delete(o.claimant()),
            watcher::Event::Init => watcher::Event::Init,
            watcher::Event::InitApply(o) => watcher::Event::InitApply(o.claimant()),
            watcher::Event::InitDone => watcher::Event::InitDone,
        };
        let woken = index(&ctx)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .apply(event);
        for key in woken {
            if let Some((ns, name)) = key.split_once('/') {
                let _ = wake.unbounded_send(ObjectRef::new(name).within(ns));
            }
        }
    }
}

/// The objects a controller reconciles, cached without what the operator never reads: the
/// `managedFields` (often larger than the object itself) and kubectl's last-applied annotation. With
/// thousands of objects this is most of the cache's memory. Each watch event is shown to `on_event`
/// first (the claim index).
fn slim_reflector<K>(
    writer: reflector::store::Writer<K>,
    api: Api<K>,
    wc: watcher::Config,
    mut on_event: impl FnMut(&watcher::Event<K>) + Send + 'static,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    let stream = watcher(api, wc)
        .default_backoff()
        .modify(slim::<K>)
        .inspect(move |event| {
            if let Ok(event) = event {
                on_event(event);
            }
        });
    reflector::reflector(writer, stream).applied_objects()
}

/// Drops the fields [`slim_reflector`] does not keep.
pub fn slim<K: kube::Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// Sets `tmo_caches_synced` (and so `/readyz`) once both caches hold the API server's objects.
async fn mark_synced(
    sessions: Store<TrafficMirrorSession>,
    filters: Store<TrafficMirrorFilter>,
    metrics: Metrics,
) {
    synced(&sessions).await;
    synced(&filters).await;
    metrics.caches_synced.set(1);
    info!("caches synced: ready");
}

/// Waits until `store` has been filled once. kube-runtime's readiness signal wakes only the last of
/// several waiters (the controller's runner waits on the same store), so this looks again every
/// quarter second instead of relying on being woken.
async fn synced<K>(store: &Store<K>)
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        match tokio::time::timeout(Duration::from_millis(250), store.wait_until_ready()).await {
            Ok(Ok(())) => return,
            Ok(Err(_)) => std::future::pending::<()>().await, // the controller stopped
            Err(_) => continue,
        }
    }
}

/// The election task: wait for the Lease, lead, renew; on shutdown release it. Losing the Lease
/// exits the process.
async fn elect(
    mut elector: leader::Elector,
    ctx: Arc<Context>,
    mut release: tokio::sync::oneshot::Receiver<()>,
    done: tokio::sync::oneshot::Sender<()>,
) {
    let cfg = elector.config().clone();
    info!(lease = %cfg.name, namespace = %cfg.namespace, identity = %cfg.identity, duration = ?cfg.duration, "leader election: standing by until this process holds the lease");
    tokio::select! {
        _ = elector.campaign() => {}
        _ = &mut release => {
            let _ = done.send(());
            return;
        }
    }
    ctx.set_leader(true);
    ctx.metrics.leader.set(1);
    info!(identity = %cfg.identity, "this process is the leader: reconciling");
    tokio::select! {
        reason = elector.hold() => {
            ctx.set_leader(false);
            tracing::error!(lease = %cfg.name, identity = %cfg.identity, %reason, "lost the leader lease: exiting at once so no cloud call or status write overlaps the new leader's (the Deployment restarts this pod as a standby)");
            std::process::exit(1);
        }
        _ = &mut release => {
            // Controllers are stopped: no reconcile is in flight. Renewals ran until now.
            ctx.metrics.leader.set(0);
            elector.resign().await;
            let _ = done.send(());
        }
    }
}

/// A filter changed (became Ready, got a new id, is being deleted): every session that references it
/// by name is reconciled at once.
fn sessions_of_filter(
    store: &Store<TrafficMirrorSession>,
    f: &TrafficMirrorFilter,
) -> Vec<ObjectRef<TrafficMirrorSession>> {
    let ns = f.namespace().unwrap_or_default();
    let id = f.status.as_ref().and_then(|s| s.filter_id.as_deref());
    store
        .state()
        .iter()
        .filter(|s| uses_filter(s, &ns, &f.name_any(), id))
        .map(|s| ObjectRef::from_obj(&**s))
        .collect()
}

/// A session changed (created, deleted, re-pointed): the filters it uses are reconciled, so a filter
/// waiting for its users to go finishes its deletion as soon as they are gone.
fn filters_of_session(
    store: &Store<TrafficMirrorFilter>,
    s: &TrafficMirrorSession,
) -> Vec<ObjectRef<TrafficMirrorFilter>> {
    let ns = s.namespace().unwrap_or_default();
    store
        .state()
        .iter()
        .filter(|f| {
            let id = f.status.as_ref().and_then(|st| st.filter_id.as_deref());
            f.namespace().as_deref() == Some(ns.as_str()) && uses_filter(s, &ns, &f.name_any(), id)
                || id.is_some() && s.spec.traffic_mirror_filter_id.as_deref() == id
        })
        .map(|f| ObjectRef::from_obj(&**f))
        .collect()
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
        let r = filter::decide::Refusal {
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
