//! TrafficMirrorFilter reconciler, the same pipeline as the session's. Each reconcile runs, top to
//! bottom:
//!
//! 1. gate ([`super::Ledger::gate`]): a copy this process already replaced waits for the newer one,
//!    and a failed object waits out its backoff (no client required);
//! 2. finalizer `vpc.hwcloud.dev/cleanup` added before any cloud call (API server);
//! 3. [`observe`]: the ProviderConfig, the cloud filter with its rules (snapshot or GET), the create
//!    and rule intents, name searches, and (when deleting) the sessions still using it (cloud, caches);
//! 4. [`decide`]: one pure function picks the step; the rule calls come from the pure [`plan`]
//!    (no client required);
//! 5. [`execute`]: the cloud calls, metered, and the intent/id metadata writes (cloud, API server);
//!    a DELETE the cloud refuses (409: in use) is remembered in the ledger and reported as a wait;
//! 6. [`status`]: computed purely, written once, only if it changed (API server);
//! 7. the next look (no client required).

pub mod decide;
pub mod execute;
pub mod observe;
pub mod plan;
pub mod status;

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use tracing::Instrument;

use super::Context;
use super::error::{Error, Result};
use super::{budget, object};
use crate::api::TrafficMirrorFilter;
use decide::{Observed, Step, decide};
use execute::{Progress, execute};
use status::{Report, next_status};

/// Kind label used in metrics and logs.
pub const KIND: &str = "TrafficMirrorFilter";
/// The finalizer that keeps the object until its cloud filter is gone (or orphaned).
pub const FINALIZER: &str = "vpc.hwcloud.dev/cleanup";
/// Annotation holding the cloud id once known (survives a restore that drops status).
pub const FILTER_ID_ANNOTATION: &str = "vpc.hwcloud.dev/filter-id";

/// Reconciles one TrafficMirrorFilter.
pub async fn reconcile(obj: Arc<TrafficMirrorFilter>, ctx: Arc<Context>) -> Result<Action> {
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

async fn reconcile_steps(obj: Arc<TrafficMirrorFilter>, ctx: &Context) -> Result<Action> {
    let deleting = obj.metadata.deletion_timestamp.is_some();
    if deleting && !object::has_finalizer(&*obj, FINALIZER) {
        return Ok(Action::await_change());
    }
    // 1. gate: a stale copy or a backoff (no client required)
    if let Some(wait) = ctx.ledger.gate(&obj.metadata) {
        return Ok(Action::requeue(wait));
    }
    let api: Api<TrafficMirrorFilter> =
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
            Err(e) => return Ok(object::report_failure(ctx, KIND, &*obj, e).await),
        }
    };
    // 3. observe (cloud, caches), 4. decide (no client required), 5. execute (cloud, API server)
    let mut progress = Progress::new(obj);
    let (observed, step, done) = observe_decide_execute(ctx, &api, &mut progress).await;
    // 6. status, written once (API server)
    if !progress.released {
        let report = Report {
            observed: observed.as_ref(),
            step: step.as_ref(),
            filter: progress.filter.as_ref(),
            error: done.as_ref().err(),
        };
        if let Err(e) = write_status(ctx, &api, &progress, &report).await
            && done.is_ok()
        {
            return Ok(object::report_failure(ctx, KIND, &*progress.obj, e).await);
        }
    }
    // 7. the next look (no client required)
    match (done, step) {
        (Err(e), _) => Ok(object::report_failure(ctx, KIND, &*progress.obj, e).await),
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
    api: &Api<TrafficMirrorFilter>,
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
    api: &Api<TrafficMirrorFilter>,
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
    let (step, done) = note_refusal(ctx, &progress.obj, &observed, step, done);
    (Some(observed), Some(step), done)
}

/// Step 5's bookkeeping of the cloud's refusal to delete (no client required): the users seen while
/// refused are remembered, and a 409 on the filter's DELETE is remembered in the ledger and reported
/// as the wait [`decide::refused`], not as a failure to back off from (see [`decide::delete_refused`]).
fn note_refusal(
    ctx: &Context,
    obj: &TrafficMirrorFilter,
    observed: &Observed,
    step: Step,
    done: Result<()>,
) -> (Step, Result<()>) {
    let uid = obj.uid().unwrap_or_default();
    if observed.refusal.is_some() && !observed.users.is_empty() {
        ctx.ledger.saw_users(&uid, &observed.users);
    }
    let refusal = match &done {
        Err(e) => decide::refusal_of(e, Utc::now()),
        Ok(()) => None,
    };
    let Some(refusal) = refusal else {
        return (step, done);
    };
    tracing::info!(
        name = %obj.name_any(),
        code = %refusal.code,
        message = %refusal.message,
        "the cloud refused to delete the filter: a session uses it; waiting for the next account LIST"
    );
    let wait = decide::refused(&refusal);
    ctx.ledger.refuse(&uid, refusal);
    (Step::Wait(wait), Ok(()))
}

/// Error policy: `reconcile` handles its failures itself, so this only backs off.
pub fn error_policy(obj: Arc<TrafficMirrorFilter>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(KIND, &err.metric_label());
    let delay = ctx.ledger.record_failure(
        &obj.uid().unwrap_or_default(),
        obj.metadata.generation,
        &ctx.retry,
        err,
    );
    Action::requeue(delay)
}
