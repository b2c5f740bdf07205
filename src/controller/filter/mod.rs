//! TrafficMirrorFilter: one kind on the shared driver ([`super::driver`]). This folder holds only
//! what is the filter's own, laid out like every kind's:
//!
//! - [`observe`]: the ProviderConfig, the cloud filter with its rules (snapshot or GET), the create
//!   and rule intents, name searches, and (when deleting) the sessions still using it (cloud,
//!   caches);
//! - [`decide`]: one pure function picks the step; the rule calls come from the pure [`plan`]
//!   (no client required);
//! - [`plan`]: the pure planner: the desired filter and rules, the drift, the rule calls;
//! - [`batch`]: the new rules of one reconcile in one `BatchCreateTrafficMirrorFilterRules` call,
//!   with the per-account fallback to single creates where the endpoint lacks it;
//! - [`execute`]: the cloud calls, metered, and the intent/id metadata writes (cloud, API server);
//! - [`status`]: the filter's status fields (`filterId`, `ruleIds`, `atProvider`) and its wording
//!   of `Ready`; the conditions themselves and the single write are the driver's.
//!
//! The [`Kind`] implementation below ties them to the driver's pipeline; its one extra hook,
//! [`Kind::after_execute`], remembers a DELETE the cloud refuses (409: in use) in the ledger and
//! reports it as a wait.

pub mod batch;
pub mod decide;
pub mod execute;
pub mod observe;
pub mod plan;
pub mod status;

use std::future::Future;
use std::sync::Arc;

use chrono::Utc;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{Api, ResourceExt};

use super::conditions::Desired as ReadyCondition;
use super::context::Context;
use super::driver::{Kind, Progress, Report};
use super::error::Result;
use super::providers::registry::Provider;
use crate::api::{TrafficMirrorFilter, TrafficMirrorFilterStatus};
use crate::cloud::models::TrafficMirrorFilter as CloudFilter;
use decide::{Observed, Step};

/// Kind label used in metrics and logs.
pub const KIND: &str = "TrafficMirrorFilter";
/// The finalizer that keeps the object until its cloud filter is gone (or orphaned).
pub use super::driver::FINALIZER;
/// Annotation holding the cloud id once known (it lives in [`super::intent`]).
pub use super::intent::FILTER_ID_ANNOTATION;

impl Kind for TrafficMirrorFilter {
    const KIND: &'static str = KIND;
    const NOUN: &'static str = "cloud filter";
    type Desired = decide::Desired;
    type Observed = Observed;
    type Step = Step;
    type Cloud = CloudFilter;
    type Status = TrafficMirrorFilterStatus;

    fn provider_name(&self) -> &str {
        &self.spec.provider_config_ref.name
    }

    fn status(&self) -> Option<&TrafficMirrorFilterStatus> {
        self.status.as_ref()
    }

    fn desired(&self, ctx: &Context) -> decide::Desired {
        observe::desired(self, ctx)
    }

    fn observe<'a>(
        &'a self,
        desired: &'a decide::Desired,
        ctx: &'a Context,
    ) -> impl Future<Output = Result<(Observed, Option<Arc<Provider>>)>> + Send + 'a {
        observe::observe(self, desired, ctx)
    }

    fn decide(desired: &decide::Desired, observed: &Observed) -> Step {
        decide::decide(desired, observed)
    }

    fn execute<'a>(
        ctx: &'a Context,
        api: &'a Api<Self>,
        provider: Option<&'a Provider>,
        step: &'a Step,
        progress: &'a mut Progress<Self>,
    ) -> impl Future<Output = Result<()>> + Send + 'a {
        execute::execute(ctx, api, provider, step, progress)
    }

    fn after_execute(
        ctx: &Context,
        obj: &Self,
        observed: &Observed,
        step: Step,
        done: Result<()>,
    ) -> (Step, Result<()>) {
        note_refusal(ctx, obj, observed, step, done)
    }

    fn converged_ready(target: &plan::DesiredFilter, report: &Report<'_, Self>) -> ReadyCondition {
        status::converged_ready(target, report)
    }

    fn next_status(
        current: &TrafficMirrorFilterStatus,
        report: &Report<'_, Self>,
        generation: Option<i64>,
        conditions: Vec<Condition>,
    ) -> TrafficMirrorFilterStatus {
        status::next_status(current, report, generation, conditions)
    }

    fn same_fields(a: &TrafficMirrorFilterStatus, b: &TrafficMirrorFilterStatus) -> bool {
        status::same_fields(a, b)
    }
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
