//! One driver, many kinds: the reconcile pipeline every kind runs, written once.
//!
//! Each reconcile runs these steps, top to bottom ([`reconcile`]):
//!
//! 1. leader check and lane admission: a standby does nothing, bulk work waits its turn;
//! 2. gate ([`super::ledger::Ledger::gate`]): a copy this process already replaced waits for the newer one,
//!    and a failed object waits out its backoff (no client required);
//! 3. observe ([`Kind::observe`]): what the object asks for and what the cloud has (API server,
//!    cloud reads, caches);
//! 4. decide ([`Kind::decide`]): one pure function picks the kind's step (no client required);
//! 5. finalizer [`FINALIZER`] added before any cloud write (API server): by the driver, or, for a
//!    create, in the same metadata write as the create intent ([`KindStep::writes_finalizer`]);
//! 6. execute ([`Kind::execute`], then [`Kind::after_execute`]): the cloud calls and the metadata
//!    writes (cloud, API server);
//! 7. status ([`status`]): computed purely, the conditions in one place for every kind, written once
//!    and only if it changed (API server);
//! 8. the next look (requeue, backoff or wait for a change) and failure reporting (no client
//!    required).
//!
//! Why a trait per kind: Crossplane's `managed.Reconciler` drives every managed resource through an
//! `ExternalClient` (Observe/Create/Update/Delete) and the ACK runtime drives every kind through a
//! `resourceManager` (ReadOne/Create/Update/Delete plus a pure `Delta`). Ours keeps the decision pure
//! and separate from the calls, so a kind supplies `observe` (one value), `decide` (a pure step) and
//! `execute` (the calls of that step) rather than one method per cloud verb; the associated types
//! keep each kind's desired state, observation, step and status its own, checked at compile time,
//! with no boxing. The futures are `impl Future + Send` (not `async fn`) because kube's
//! `Controller::run` needs a `Send` reconcile future.

pub mod status;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde::Serialize;
use tracing::{Instrument, debug, warn};

use super::conditions::Desired as Condition;
use super::context::Context;
use super::error::{Error, Result};
use super::providers::registry::Provider;
use super::wait::{NextLook, Wait};
use super::{budget, object};
use crate::api::common::ManagedStatus;
pub use status::Report;

/// The finalizer that keeps an object until its cloud resource is gone (or orphaned).
pub const FINALIZER: &str = "vpc.hwcloud.dev/cleanup";

/// What a kind's step means to the driver: the conditions it leads to and when to look again. The
/// kinds' steps differ in their calls, not in these meanings, so the meanings live here once.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome<'a, T> {
    /// Nothing can be done now.
    Wait(&'a Wait),
    /// A same-named cloud resource this object did not create: a person decides.
    Conflict(&'a str),
    /// ObserveOnly: `Ready` as the kind words the drift it saw.
    ReportDrift(Condition),
    /// Create, adopt or converge toward this target.
    Converge(&'a T),
    /// Delete the cloud resource, then release the object.
    Delete,
    /// Release the object (nothing left, or left in place).
    Release,
}

impl<T> Outcome<'_, T> {
    /// When to look again after a step with this outcome succeeded.
    pub fn next_look(&self) -> NextLook {
        match self {
            Outcome::Wait(w) => NextLook::Wait(w.retry),
            Outcome::Conflict(_) => NextLook::OnChange,
            Outcome::Delete | Outcome::Release => NextLook::Released,
            Outcome::Converge(_) | Outcome::ReportDrift(_) => NextLook::Settled,
        }
    }
}

/// A kind's decided step, as far as the driver needs to know it.
pub trait KindStep {
    /// What a converging step aims at (the kind's planner's desired cloud resource).
    type Target;
    /// The step's meaning for conditions and the next look.
    fn outcome(&self) -> Outcome<'_, Self::Target>;
    /// When to look again after this step succeeded.
    fn next_look(&self) -> NextLook {
        self.outcome().next_look()
    }
    /// Whether the step's own first write adds the finalizer: a crash-safe create records its
    /// intent and the finalizer in one metadata write ([`object::record_intent`]), so the driver
    /// does not write the finalizer separately (issue 21: two API-server writes per create).
    fn writes_finalizer(&self) -> bool {
        false
    }
}

/// What has been done so far in this reconcile, recorded as it happens so the status reports it even
/// when a later call fails.
#[derive(Debug)]
pub struct Progress<K: Kind> {
    /// The object as the API server last answered (after this reconcile's metadata writes).
    pub obj: Arc<K>,
    /// The cloud resource as the last call answered.
    pub cloud: Option<K::Cloud>,
    /// The finalizer is removed: the object may be gone, no status is written.
    pub released: bool,
    /// This reconcile created the cloud resource (events say `created`, not `added`).
    pub created: bool,
    /// A failpoint to hit once the status write after a create has landed (the cloud id is
    /// recorded by that write: see [`object::crash_safe_create`]).
    pub recorded_failpoint: Option<&'static str>,
}

impl<K: Kind> Progress<K> {
    /// Nothing done yet.
    pub fn new(obj: Arc<K>) -> Self {
        Progress {
            obj,
            cloud: None,
            released: false,
            created: false,
            recorded_failpoint: None,
        }
    }
}

/// One kind of cloud resource: only what is its own. The driver does the rest.
pub trait Kind:
    object::Object + kube::Resource<Scope = kube::core::NamespaceResourceScope>
{
    /// Kind label used in metrics, logs and the admission budget.
    const KIND: &'static str;
    /// How messages name the cloud resource (`cloud session`).
    const NOUN: &'static str;
    /// What the object asks for (pure, from the object and the configuration).
    type Desired: Send + Sync;
    /// What was observed, in one value, for the pure decision.
    type Observed: std::fmt::Debug + Send + Sync;
    /// The decided step.
    type Step: KindStep + std::fmt::Debug + Send + Sync;
    /// The cloud resource as a call answers it.
    type Cloud: std::fmt::Debug + Send + Sync;
    /// The status subresource.
    type Status: crate::api::common::ManagedStatus + Clone + Default + Serialize + Send + Sync;

    /// The ProviderConfig the object names (the admission budget is per ProviderConfig).
    fn provider_name(&self) -> &str;
    /// The status as the API server last answered it.
    fn status(&self) -> Option<&Self::Status>;
    /// What the object asks for.
    fn desired(&self, ctx: &Context) -> Self::Desired;
    /// Observes the cloud (and caches) for `desired`; also the ProviderConfig's client, if any.
    fn observe<'a>(
        &'a self,
        desired: &'a Self::Desired,
        ctx: &'a Context,
    ) -> impl Future<Output = Result<(Self::Observed, Option<Arc<Provider>>)>> + Send + 'a;
    /// The pure decision.
    fn decide(desired: &Self::Desired, observed: &Self::Observed) -> Self::Step;
    /// Carries out `step`, recording what was done in `progress`.
    fn execute<'a>(
        ctx: &'a Context,
        api: &'a Api<Self>,
        provider: Option<&'a Provider>,
        step: &'a Self::Step,
        progress: &'a mut Progress<Self>,
    ) -> impl Future<Output = Result<()>> + Send + 'a;
    /// Bookkeeping after execute (no client required); may turn a failure into a wait. Default: none.
    fn after_execute(
        _ctx: &Context,
        _obj: &Self,
        _observed: &Self::Observed,
        step: Self::Step,
        done: Result<()>,
    ) -> (Self::Step, Result<()>) {
        (step, done)
    }
    /// `Ready` after a converging step, given the target and what the calls left.
    fn converged_ready(
        target: &<Self::Step as KindStep>::Target,
        report: &Report<'_, Self>,
    ) -> Condition;
    /// The kind's status after `report`, with the driver's `conditions` and `generation`.
    fn next_status(
        current: &Self::Status,
        report: &Report<'_, Self>,
        generation: Option<i64>,
        conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    ) -> Self::Status;
    /// Whether the fields other than the conditions are the same (nothing to write).
    fn same_fields(a: &Self::Status, b: &Self::Status) -> bool;
}

/// Reconciles one object of kind `K`.
pub async fn reconcile<K: Kind>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action> {
    if !ctx.is_leader() {
        // A standby: no cloud call, no status write. Becoming leader reconciles everything.
        return Ok(Action::await_change());
    }
    let started = Instant::now();
    let observed_generation = obj.status().and_then(ManagedStatus::observed_generation);
    let lane = ctx.lane_of(obj.meta(), observed_generation);
    let _slot = match ctx.admit(K::KIND, lane, obj.provider_name()) {
        Ok(slot) => slot,
        Err(delay) => return Ok(Action::requeue(delay)), // bulk work waits its turn, nothing done
    };
    let span = object::reconcile_span(K::KIND, obj.meta());
    let meta = obj.meta().clone();
    let work = budget::in_lane(lane, reconcile_steps(obj, &ctx)).instrument(span);
    let result = if lane == budget::Lane::Bulk {
        let place = Arc::new(budget::Place::default());
        tokio::select! {
            r = budget::with_place(place.clone(), work) => r,
            () = newer_while_waiting::<K>(&ctx, &meta, &place) => {
                debug!(name = %meta.name.as_deref().unwrap_or_default(), "a bulk reconcile gave way to an edit");
                Ok(Action::requeue(std::time::Duration::ZERO))
            }
        }
    } else {
        work.await
    };
    ctx.metrics.reconciled(K::KIND, started.elapsed());
    result
}

/// Resolves when the object of `meta` gets a new generation (or a deletion) while its bulk
/// reconcile waits for a token ([`budget::gives_way`]); never otherwise. Looks at the watch cache
/// every 50 ms: no API call.
async fn newer_while_waiting<K: Kind>(
    ctx: &Context,
    meta: &kube::api::ObjectMeta,
    place: &budget::Place,
) {
    let (ns, name) = (
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    );
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let (latest, deleting) = ctx.latest(K::KIND, ns, name);
        let deleting = deleting && meta.deletion_timestamp.is_none();
        if budget::gives_way(place.may_give_way(), meta.generation, latest, deleting) {
            return;
        }
    }
}

async fn reconcile_steps<K: Kind>(obj: Arc<K>, ctx: &Context) -> Result<Action> {
    let deleting = obj.meta().deletion_timestamp.is_some();
    if deleting && !object::has_finalizer(&*obj, FINALIZER) {
        return Ok(Action::await_change()); // nothing of ours left to clean up
    }
    // gate: a stale copy or a backoff (no client required)
    if let Some(wait) = ctx.ledger.gate(obj.meta()) {
        debug!(name = %obj.name_any(), ?wait, "holding");
        return Ok(Action::requeue(wait));
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    // observe, decide, the finalizer (API server; a create writes it with its intent), execute
    let mut progress = Progress::new(obj);
    let (observed, step, done) = match observe_decide_execute(ctx, &api, &mut progress).await {
        // As before any cloud write: nothing to report in the status.
        (_, _, Err(e @ Error::AddFinalizer(_))) => {
            return Ok(object::report_failure(ctx, K::KIND, &*progress.obj, e).await);
        }
        other => other,
    };
    // status, written once (API server)
    let report = Report {
        observed: observed.as_ref(),
        step: step.as_ref(),
        cloud: progress.cloud.as_ref(),
        error: done.as_ref().err(),
    };
    if !progress.released {
        match status::write_status(ctx, &api, &progress.obj, &report).await {
            Ok(()) => {
                if let Some(name) = progress.recorded_failpoint.take() {
                    crate::failpoint::hit(name);
                }
            }
            Err(e) if done.is_ok() => {
                return Ok(object::report_failure(ctx, K::KIND, &*progress.obj, e).await);
            }
            Err(_) => {}
        }
    }
    next_look(ctx, &*progress.obj, done, step).await
}

/// The next look (no client required): a failure is reported and backed off from, a success looks
/// again as its step says.
async fn next_look<K: Kind>(
    ctx: &Context,
    obj: &K,
    done: Result<()>,
    step: Option<K::Step>,
) -> Result<Action> {
    match (done, step) {
        (Err(e), _) => Ok(object::report_failure(ctx, K::KIND, obj, e).await),
        (Ok(()), Some(step)) => {
            let uid = obj.uid().unwrap_or_default();
            Ok(step.next_look().action(
                &ctx.ledger,
                ctx.config.resync_interval,
                &uid,
                obj.meta().generation,
            ))
        }
        (Ok(()), None) => Ok(Action::await_change()),
    }
}

/// Observe, decide, execute. On failure, whatever was observed and decided is still returned for the
/// status.
async fn observe_decide_execute<K: Kind>(
    ctx: &Context,
    api: &Api<K>,
    progress: &mut Progress<K>,
) -> (Option<K::Observed>, Option<K::Step>, Result<()>) {
    let obj = progress.obj.clone();
    let desired = obj.desired(ctx);
    let (observed, provider) = match obj.observe(&desired, ctx).await {
        Ok(o) => o,
        Err(e) => return (None, None, Err(e)),
    };
    let step = K::decide(&desired, &observed);
    let deleting = obj.meta().deletion_timestamp.is_some();
    if !deleting && !step.writes_finalizer() {
        match ensure_finalizer(api, obj.clone()).await {
            Ok(o) => {
                ctx.ledger.replaced(obj.meta(), o.meta());
                progress.obj = o;
            }
            Err(e) => return (Some(observed), Some(step), Err(e)),
        }
    }
    let done = K::execute(ctx, api, provider.as_deref(), &step, progress).await;
    let (step, done) = K::after_execute(ctx, &progress.obj, &observed, step, done);
    (Some(observed), Some(step), done)
}

/// Adds the finalizer before any cloud call; returns the object as the API server now has it.
pub async fn ensure_finalizer<K: Kind>(api: &Api<K>, obj: Arc<K>) -> Result<Arc<K>> {
    if object::has_finalizer(&*obj, FINALIZER) {
        return Ok(obj);
    }
    let updated = object::add_finalizer(api, &*obj, FINALIZER)
        .await
        .map_err(Error::AddFinalizer)?;
    Ok(Arc::new(updated))
}

/// Removes the finalizer (a 404 means the object is already gone); no status is written after.
pub async fn release<K: Kind>(api: &Api<K>, progress: &mut Progress<K>) -> Result<()> {
    object::remove_finalizer(api, &*progress.obj, FINALIZER)
        .await
        .map_err(Error::RemoveFinalizer)?;
    progress.released = true;
    Ok(())
}

/// Error policy for the controller: `reconcile` handles its failures itself and returns `Ok`, so this
/// only runs if that ever changes; it backs off like a retryable failure.
pub fn error_policy<K: Kind>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(K::KIND, &err.metric_label());
    let uid = obj.uid().unwrap_or_default();
    let delay = ctx
        .ledger
        .record_failure(&uid, obj.meta().generation, &ctx.retry, err);
    warn!(name = %obj.name_any(), step = err.step(), error = %err, ?delay, "reconcile failed");
    Action::requeue(delay)
}
