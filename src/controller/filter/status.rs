//! Step "status" of the filter reconciler: the new status computed purely from what was observed,
//! decided and done (no client required), written once when it changed ([`object::apply_status`]).

use super::super::conditions::{Desired as Condition, READY, reason};
use super::super::driver::{self, KindStep, Outcome};
use super::decide::{CloudState, Step};
use super::plan::{self, DesiredFilter, Drift};
use crate::api::{TrafficMirrorFilter, TrafficMirrorFilterStatus};

/// What one reconcile learned and did, as far as it got ([`driver::Report`]).
pub type Report<'a> = driver::Report<'a, TrafficMirrorFilter>;

/// The status after this reconcile: the driver's `conditions`, this kind's cloud fields.
pub fn next_status(
    current: &TrafficMirrorFilterStatus,
    report: &Report<'_>,
    generation: Option<i64>,
    conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
) -> TrafficMirrorFilterStatus {
    let seen = report.cloud.or(match report.step {
        Some(Step::ReportDrift { observed, .. }) => Some(observed),
        _ => None,
    });
    let gone = report.observed.is_some_and(|o| o.cloud == CloudState::Gone);
    let (filter_id, rule_ids, at_provider) = match seen {
        Some(f) => (
            Some(f.id.clone()),
            plan::rule_ids(&plan::observed_rules(f)),
            Some(plan::filter_observation(f)),
        ),
        None if gone => (None, Default::default(), None),
        None => (
            current.filter_id.clone(),
            current.rule_ids.clone(),
            current.at_provider.clone(),
        ),
    };
    TrafficMirrorFilterStatus {
        filter_id,
        rule_ids,
        observed_generation: generation,
        conditions,
        at_provider,
    }
}

/// `Ready` after ObserveOnly looked: what differs, if anything.
pub fn drift_ready(drift: &Drift) -> Condition {
    if drift.is_empty() {
        return Condition::yes(
            READY,
            reason::AVAILABLE,
            "the cloud filter and its rules match the spec",
        );
    }
    Condition::no(
        READY,
        reason::DRIFTED,
        format!(
            "the cloud filter differs from the spec: {drift}; managementPolicy is ObserveOnly, so the \
             operator does not change it"
        ),
    )
}

/// `Ready` after a converging step: exactly when the cloud filter and its rules (as the calls left
/// them) match.
pub fn converged_ready(desired: &DesiredFilter, report: &Report<'_>) -> Condition {
    let Some(f) = report.cloud else {
        return Condition::no(READY, reason::CREATING, "the cloud filter is being created");
    };
    let drift = Drift::between(desired, f, &plan::observed_rules(f));
    if drift.is_empty() {
        Condition::yes(
            READY,
            reason::AVAILABLE,
            "the cloud filter and its rules match the spec",
        )
    } else {
        Condition::no(
            READY,
            reason::UPDATING,
            format!("the cloud still differs: {drift}"),
        )
    }
}

/// Whether the fields other than the conditions are the same.
pub fn same_fields(current: &TrafficMirrorFilterStatus, next: &TrafficMirrorFilterStatus) -> bool {
    current.filter_id == next.filter_id
        && current.rule_ids == next.rule_ids
        && current.observed_generation == next.observed_generation
        && current.at_provider == next.at_provider
}

/// What each step means to the driver: the conditions it leads to and when to look again.
impl KindStep for Step {
    type Target = DesiredFilter;

    fn writes_finalizer(&self) -> bool {
        matches!(self, Step::Create { .. })
    }

    fn outcome(&self) -> Outcome<'_, DesiredFilter> {
        match self {
            Step::Wait(w) => Outcome::Wait(w),
            Step::Conflict(m) => Outcome::Conflict(m),
            Step::ReportDrift { drift, .. } => Outcome::ReportDrift(drift_ready(drift)),
            Step::Create { desired }
            | Step::Adopt { desired, .. }
            | Step::Converge { desired, .. } => Outcome::Converge(desired),
            Step::Delete(_) => Outcome::Delete,
            Step::Release { .. } => Outcome::Release,
        }
    }
}
