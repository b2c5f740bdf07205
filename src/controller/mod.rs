//! The reconcilers and what they share.
//!
//! - [`driver`]: the one reconcile pipeline every kind runs (leader check, lane admission, gate,
//!   finalizer, observe, pure decide, execute, one status write, the next look, failure reporting),
//!   generic over the [`driver::Kind`] trait; the conditions after a step are computed there once.
//! - [`session`], [`filter`]: the kinds, one folder each laid out the same way: `mod.rs` (the
//!   `Kind` implementation), `observe`, `decide`, `plan` (the pure planner), `execute`, `status`.
//! - [`session_set`]: TrafficMirrorSessionSet, its own small reconciler (it has no cloud object: it
//!   writes TrafficMirrorSession children), watching Nodes; `nodes`, `resolve`, `plan` are pure.
//! - [`intent`], [`conditions`], [`backoff`]: pure decisions, unit- and property-tested; [`intent`]
//!   also holds the cloud-id annotations, so no shared module imports a kind's folder.
//! - [`Context`] (`context.rs`) and [`Ledger`] (`ledger.rs`): the state the reconcilers share and the
//!   per-object bookkeeping (backoff, converged generation, replaced copies, delete refusals).
//! - [`inventory`]: the per-account cloud snapshot (one LIST per resync interval).
//! - [`metered`]: the one wrapper every cloud call goes through, counting it.
//! - [`providers`]: the ProviderConfig reconciler and the registry of ready cloud clients (which
//!   also refuses objects in namespaces a ProviderConfig's `spec.namespaceSelector` does not match).
//! - [`fence`]: the Namespace watch behind that refusal; a relabel or a selector change wakes the
//!   objects it concerns.
//! - [`object`], [`wait`], [`error`], [`events`], [`claims`]: what the kinds share (API-server
//!   writes, waits, step errors, events, who claims which cloud id).
//! - [`budget`], [`leader`]: the account's API budget and leader election.
//! - [`config`]: the settings ([`OperatorConfig`]) and the field manager name ([`MANAGER`]).
//!
//! Nothing in this file is imported back by the modules above: they import from each other's
//! files, and the re-exports here only keep the public paths. [`run`] wires them: four kube-runtime
//! controllers (sessions, filters, ProviderConfigs, session sets), the namespace fence and the
//! resync loop, on one runtime, stopping together on SIGTERM / Ctrl-C.

pub mod backoff;
pub mod budget;
pub mod claims;
pub mod conditions;
pub mod config;
mod context;
pub mod driver;
pub mod error;
pub mod events;
pub mod fence;
pub mod filter;
pub mod intent;
pub mod inventory;
pub mod leader;
mod ledger;
pub mod metered;
pub mod object;
pub mod object_counts;
pub mod providers;
pub mod session;
pub mod session_set;
pub mod wait;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc;
use kube::runtime::controller::Config as ControllerConfig;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

pub use config::{MANAGER, OperatorConfig, patch_params};
use context::uses_filter;
pub use context::{Admission, ClaimIndexes, Context, Stores};
pub use error::{Error, Result};
pub use ledger::Ledger;

use crate::api::{TrafficMirrorFilter, TrafficMirrorSession};
use crate::cloud::models::{
    TrafficMirrorFilter as CloudFilter, TrafficMirrorSession as CloudSession,
};
use crate::telemetry::Metrics;
use inventory::Listed;

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
    let (fence_tx, fence_rx) = mpsc::unbounded();
    let (wake, session_fenced, filter_fenced) = fence_wakers();
    let (session_run, filter_run) = object_controllers(
        &ctx,
        (session_rx, session_fenced),
        (filter_rx, filter_fenced),
    );
    let provider_controller = providers::run_controller(ctx.clone(), fence_tx);
    let fence = fence::run(ctx.clone(), fence_rx, wake);
    let set_run = session_set::run_controller(ctx.clone());
    let resync = resync_loop(ctx.clone(), vec![session_tx, filter_tx]);
    tokio::select! {
        _ = async { tokio::join!(session_run, filter_run, provider_controller, set_run) } => {}
        _ = resync => {}
        _ = fence => {}
    }
    info!("controllers stopped");
    if let Some((_task, release_tx, done_rx)) = election {
        ctx.set_leader(false);
        let _ = release_tx.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), done_rx).await;
    }
}

/// The channels through which the namespace fence ([`fence::run`]) wakes sessions and filters.
type Fenced<K> = mpsc::UnboundedReceiver<ObjectRef<K>>;

fn fence_wakers() -> (
    fence::Wake,
    Fenced<TrafficMirrorSession>,
    Fenced<TrafficMirrorFilter>,
) {
    let (sessions, session_rx) = mpsc::unbounded();
    let (filters, filter_rx) = mpsc::unbounded();
    (fence::Wake { sessions, filters }, session_rx, filter_rx)
}

/// The session and filter controllers, each also watching the other kind (a filter's change wakes
/// the sessions that reference it; a session's change wakes the filter it uses), each reconciling
/// everything when its resync channel fires, and the objects the namespace fence names.
fn object_controllers(
    ctx: &Arc<Context>,
    (session_rx, session_fenced): (mpsc::UnboundedReceiver<()>, Fenced<TrafficMirrorSession>),
    (filter_rx, filter_fenced): (mpsc::UnboundedReceiver<()>, Fenced<TrafficMirrorFilter>),
) -> (
    impl std::future::Future<Output = ()> + use<>,
    impl std::future::Future<Output = ()> + use<>,
) {
    let (sessions, filters) = (watched::<TrafficMirrorSession>(ctx), watched(ctx));
    let wc = watcher::Config::default().any_semantic();
    let (session_store, session_writer) = reflector::store();
    let (filter_store, filter_writer) = reflector::store();
    share_stores(ctx, &session_store, &filter_store);
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
    .reconcile_on(session_fenced)
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
    .reconcile_on(filter_fenced)
    .shutdown_on_signal()
    .run(
        driver::reconcile::<TrafficMirrorFilter>,
        driver::error_policy::<TrafficMirrorFilter>,
        ctx.clone(),
    )
    .for_each(|_| async {});
    (session_run, filter_run)
}

/// The objects of kind `K` the operator watches: in `--namespace`, else in every namespace.
fn watched<K>(ctx: &Context) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match &ctx.config.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    }
}

/// Hands the controllers' caches to the other readers (the filter reconciler, the resync loop), and
/// starts the task that reports them synced.
fn share_stores(
    ctx: &Context,
    sessions: &Store<TrafficMirrorSession>,
    filters: &Store<TrafficMirrorFilter>,
) {
    let _ = ctx.stores.sessions.set(sessions.clone());
    let _ = ctx.stores.filters.set(filters.clone());
    object_counts::count_from_store(&ctx.metrics, session::KIND, sessions.clone(), |o| {
        o.status.as_ref().map(|s| s.conditions.as_slice())
    });
    object_counts::count_from_store(&ctx.metrics, filter::KIND, filters.clone(), |o| {
        o.status.as_ref().map(|s| s.conditions.as_slice())
    });
    tokio::spawn(mark_synced(
        sessions.clone(),
        filters.clone(),
        ctx.metrics.clone(),
    ));
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
