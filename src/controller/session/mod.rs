//! TrafficMirrorSession: one kind on the shared driver ([`super::driver`]). This folder holds only
//! what is the session's own, laid out like every kind's:
//!
//! - [`observe`]: what the object asks for, then the ProviderConfig, the filter id, the cloud session
//!   (snapshot or GET), the create intent and any name search, into one `Observed` (API server,
//!   cloud);
//! - [`decide`]: one pure function picks the [`decide::Step`] (no client required);
//! - [`plan`]: the pure planner: the desired cloud session and the calls that reach it;
//! - [`execute`]: the cloud calls, metered in one place, and the metadata writes of the crash-safe
//!   create (cloud, API server);
//! - [`status`]: the session's status fields (`sessionId`, `atProvider`) and its wording of `Ready`;
//!   the conditions themselves and the single write are the driver's.
//!
//! The [`Kind`] implementation below ties them to the driver's pipeline.

pub mod decide;
pub mod execute;
pub mod observe;
pub mod plan;
pub mod status;

use std::future::Future;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Api;

use super::conditions::Desired as ReadyCondition;
use super::context::Context;
use super::driver::{Kind, Progress, Report};
use super::error::Result;
use super::providers::registry::Provider;
use crate::api::{TrafficMirrorSession, TrafficMirrorSessionStatus};
use crate::cloud::models::TrafficMirrorSession as CloudSession;

/// Kind label used in metrics and logs.
pub const KIND: &str = "TrafficMirrorSession";
/// The finalizer that keeps the object until its cloud session is gone (or orphaned).
pub use super::driver::FINALIZER;

impl Kind for TrafficMirrorSession {
    const KIND: &'static str = KIND;
    const NOUN: &'static str = "cloud session";
    type Desired = decide::Desired;
    type Observed = decide::Observed;
    type Step = decide::Step;
    type Cloud = CloudSession;
    type Status = TrafficMirrorSessionStatus;

    fn provider_name(&self) -> &str {
        &self.spec.provider_config_ref.name
    }

    fn status(&self) -> Option<&TrafficMirrorSessionStatus> {
        self.status.as_ref()
    }

    fn desired(&self, ctx: &Context) -> decide::Desired {
        observe::desired(self, ctx)
    }

    fn observe<'a>(
        &'a self,
        desired: &'a decide::Desired,
        ctx: &'a Context,
    ) -> impl Future<Output = Result<(decide::Observed, Option<Arc<Provider>>)>> + Send + 'a {
        observe::observe(self, desired, ctx)
    }

    fn decide(desired: &decide::Desired, observed: &decide::Observed) -> decide::Step {
        decide::decide(desired, observed)
    }

    fn execute<'a>(
        ctx: &'a Context,
        api: &'a Api<Self>,
        provider: Option<&'a Provider>,
        step: &'a decide::Step,
        progress: &'a mut Progress<Self>,
    ) -> impl Future<Output = Result<()>> + Send + 'a {
        execute::execute(ctx, api, provider, step, progress)
    }

    fn converged_ready(target: &plan::DesiredSession, report: &Report<'_, Self>) -> ReadyCondition {
        status::converged_ready(target, report)
    }

    fn next_status(
        current: &TrafficMirrorSessionStatus,
        report: &Report<'_, Self>,
        generation: Option<i64>,
        conditions: Vec<Condition>,
    ) -> TrafficMirrorSessionStatus {
        status::next_status(current, report, generation, conditions)
    }

    fn same_fields(a: &TrafficMirrorSessionStatus, b: &TrafficMirrorSessionStatus) -> bool {
        status::same_fields(a, b)
    }
}
