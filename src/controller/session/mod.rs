//! TrafficMirrorSession reconciler, as a pipeline. Each reconcile runs these steps, top to bottom:
//!
//! 1. gate ([`super::Ledger::gate`]): a copy this process already replaced waits for the newer one,
//!    and a failed object waits out its backoff (no client required);
//! 2. finalizer `vpc.hwcloud.dev/cleanup` added before any cloud call (API server);
//! 3. [`observe`]: what the object asks for, then the ProviderConfig, the filter id, the cloud session
//!    (snapshot or GET), the create intent and any name search, into one `Observed` (API server, cloud);
//! 4. [`decide`]: one pure function picks the [`Step`] (no client required);
//! 5. [`execute`]: the cloud calls, metered in one place, and the metadata writes of the crash-safe
//!    create (cloud, API server);
//! 6. [`status`]: the new status computed purely from 3-5, written once, only if it changed (API
//!    server);
//! 7. the next look: requeue, backoff or wait for a change (no client required).

pub mod decide;
pub mod execute;
pub mod observe;
pub mod status;

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use tracing::{Instrument, debug, warn};

use super::Context;
use super::error::{Error, Result};
use super::{budget, object};
use decide::{Observed, Step, decide};
use execute::{Progress, execute};
use status::{Report, next_status};

use crate::api::TrafficMirrorSession;

/// Kind label used in metrics and logs.
pub const KIND: &str = "TrafficMirrorSession";
/// The finalizer that keeps the object until its cloud session is gone (or orphaned).
pub const FINALIZER: &str = "vpc.hwcloud.dev/cleanup";

/// Reconciles one TrafficMirrorSession.
pub async fn reconcile(obj: Arc<TrafficMirrorSession>, ctx: Arc<Context>) -> Result<Action> {
    if !ctx.is_leader() {
        // A standby: no cloud call, no status write. Becoming leader reconciles everything.
        return Ok(Action::await_change());
    }
    let started = Instant::now();
    let observed_generation = obj.status.as_ref().and_then(|s| s.observed_generation);
    let lane = ctx.lane_of(&obj.metadata, observed_generation);
    let _slot = match ctx.admit(KIND, lane, &obj.spec.provider_config_ref.name) {
        Ok(slot) => slot,
        Err(delay) => return Ok(Action::requeue(delay)), // bulk work waits its turn, nothing done
    };
    let span = object::reconcile_span(KIND, &obj.metadata);
    let result = budget::in_lane(lane, reconcile_steps(obj, &ctx))
        .instrument(span)
        .await;
    ctx.metrics.reconciled(KIND, started.elapsed());
    result
}

async fn reconcile_steps(obj: Arc<TrafficMirrorSession>, ctx: &Context) -> Result<Action> {
    let deleting = obj.metadata.deletion_timestamp.is_some();
    if deleting && !obj.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change()); // nothing of ours left to clean up
    }
    // 1. gate: a stale copy or a backoff (no client required)
    if let Some(wait) = ctx.ledger.gate(&obj.metadata) {
        debug!(name = %obj.name_any(), ?wait, "holding");
        return Ok(Action::requeue(wait));
    }
    let api: Api<TrafficMirrorSession> =
        Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    // 2. finalizer (API server)
    let obj = if deleting {
        obj
    } else {
        match execute::ensure_finalizer(&api, obj.clone()).await {
            Ok(o) => {
                ctx.ledger.replaced(&obj.metadata, &o.metadata);
                o
            }
            Err(e) => return Ok(report_failure(ctx, &obj, e).await),
        }
    };
    // 3. observe (API server, cloud), 4. decide (no client required), 5. execute (cloud, API server)
    let mut progress = Progress::new(obj.clone());
    let (observed, step, done) = observe_decide_execute(ctx, &api, &mut progress).await;
    // 6. status, written once (API server)
    let report = Report {
        observed: observed.as_ref(),
        step: step.as_ref(),
        session: progress.session.as_ref(),
        error: done.as_ref().err(),
    };
    if !progress.released
        && let Err(e) = write_status(ctx, &api, &progress, &report).await
        && done.is_ok()
    {
        return Ok(report_failure(ctx, &progress.obj, e).await);
    }
    // 7. the next look (no client required)
    match (done, step) {
        (Err(e), _) => Ok(report_failure(ctx, &progress.obj, e).await),
        (Ok(()), Some(step)) => {
            let (uid, generation) = (
                progress.obj.uid().unwrap_or_default(),
                progress.obj.metadata.generation,
            );
            Ok(step.next_look().action(ctx, &uid, generation))
        }
        (Ok(()), None) => Ok(Action::await_change()),
    }
}

/// Step 6: the status computed from `report`, written when it changed; a change of `Ready` into a
/// wait or a stall is told by one event ([`object::status_written`]).
async fn write_status(
    ctx: &Context,
    api: &Api<TrafficMirrorSession>,
    progress: &Progress,
    report: &Report<'_>,
) -> Result<()> {
    let current = progress.obj.status.clone().unwrap_or_default();
    let generation = progress.obj.metadata.generation;
    let next = next_status(&current, generation, report, Utc::now());
    if status::write(api, &progress.obj, &next).await? {
        let (before, after) = (&current.conditions, &next.conditions);
        let failed = report.error.is_some();
        object::status_written(ctx, &*progress.obj, before, after, failed).await;
    }
    Ok(())
}

/// Steps 3-5. On failure, whatever was observed and decided is still returned for the status.
async fn observe_decide_execute(
    ctx: &Context,
    api: &Api<TrafficMirrorSession>,
    progress: &mut Progress,
) -> (Option<Observed>, Option<Step>, Result<()>) {
    let obj = progress.obj.clone();
    let desired = observe::desired(&obj, ctx);
    let (observed, provider) = match observe::observe(&obj, &desired, ctx).await {
        Ok(o) => o,
        Err(e) => return (None, None, Err(e)),
    };
    let step = decide(&desired, &observed);
    let done = execute(ctx, api, provider.as_deref(), &step, progress).await;
    (Some(observed), Some(step), done)
}

/// A failed step ([`object::report_failure`]).
async fn report_failure(ctx: &Context, obj: &TrafficMirrorSession, err: Error) -> Action {
    object::report_failure(ctx, KIND, obj, err).await
}

/// Error policy for the controller: `reconcile` handles its failures itself and returns `Ok`, so this
/// only runs if that ever changes; it backs off like a retryable failure.
pub fn error_policy(obj: Arc<TrafficMirrorSession>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(KIND, &err.metric_label());
    let uid = obj.uid().unwrap_or_default();
    let delay = ctx
        .ledger
        .record_failure(&uid, obj.metadata.generation, &ctx.retry, err);
    warn!(name = %obj.name_any(), step = err.step(), error = %err, ?delay, "reconcile failed");
    Action::requeue(delay)
}
