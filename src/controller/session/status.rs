//! Step "status": the new status computed purely from what was observed, decided and done (no client
//! required), and its single write per reconcile (client required): server-side apply of the whole
//! status under the operator's field manager, guarded by the resourceVersion the reconcile acted on,
//! and skipped when nothing changed (the steady state writes nothing).

use super::super::conditions::{Desired as Condition, READY, reason};
use super::super::driver::{self, KindStep, Outcome};
use super::decide::{CloudState, FilterState, Observed, Step};
use super::plan;
use crate::api::{SessionObservation, TrafficMirrorSession, TrafficMirrorSessionStatus};
use crate::cloud::models::TrafficMirrorSession as CloudSession;

/// What one reconcile learned and did, as far as it got ([`driver::Report`]).
pub type Report<'a> = driver::Report<'a, TrafficMirrorSession>;

/// The status after this reconcile: the driver's `conditions`, this kind's cloud fields.
pub fn next_status(
    current: &TrafficMirrorSessionStatus,
    report: &Report<'_>,
    generation: Option<i64>,
    conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
) -> TrafficMirrorSessionStatus {
    let (session_id, at_provider) = cloud_fields(current, report);
    TrafficMirrorSessionStatus {
        session_id,
        observed_generation: generation,
        conditions,
        at_provider,
    }
}

/// `sessionId` and `atProvider`: what the cloud last said, or nothing once it said "gone".
fn cloud_fields(
    current: &TrafficMirrorSessionStatus,
    report: &Report<'_>,
) -> (Option<String>, Option<SessionObservation>) {
    let seen = report.cloud.or(match report.step {
        Some(Step::ReportDrift { observed, .. }) => Some(observed),
        _ => None,
    });
    if let Some(s) = seen {
        return (Some(s.id.clone()), Some(observation(s)));
    }
    if report.observed.is_some_and(|o| o.cloud == CloudState::Gone) {
        return (None, None);
    }
    (current.session_id.clone(), current.at_provider.clone())
}

/// `Ready` after ObserveOnly looked: the differing fields, if any.
pub fn drift_ready(fields: &[&str]) -> Condition {
    if fields.is_empty() {
        return Condition::yes(
            READY,
            reason::AVAILABLE,
            "the cloud session matches the spec",
        );
    }
    Condition::no(
        READY,
        reason::DRIFTED,
        format!(
            "the cloud session differs from the spec in {}; managementPolicy is ObserveOnly, so the \
             operator does not change it",
            fields.join(", ")
        ),
    )
}

/// Ready exactly when the cloud (as the last call answered) matches.
pub fn converged_ready(desired: &plan::DesiredSession, report: &Report<'_>) -> Condition {
    with_filter_note(converged(desired, report.cloud), report.observed)
}

fn converged(desired: &plan::DesiredSession, session: Option<&CloudSession>) -> Condition {
    match session {
        Some(s) if plan::in_sync(desired, s) => Condition::yes(
            READY,
            reason::AVAILABLE,
            "the cloud session matches the spec",
        ),
        Some(s) => Condition::no(
            READY,
            reason::UPDATING,
            format!(
                "the cloud still differs in {}",
                plan::differing_fields(desired, s).join(", ")
            ),
        ),
        None => Condition::no(
            READY,
            reason::CREATING,
            "the cloud session is being created",
        ),
    }
}

/// Adds to `Ready`'s message that the referenced filter is being deleted and waits for this session
/// (its id keeps serving until then), so nobody wonders why the filter does not go.
fn with_filter_note(mut ready: Condition, observed: Option<&Observed>) -> Condition {
    if let Some(FilterState::Deleting { filter, .. }) = observed.map(|o| &o.filter) {
        ready.message.push_str(&format!(
            "; TrafficMirrorFilter {filter:?} is being deleted and waits for this session (and any \
             other that uses it) to go; it keeps serving this session until then"
        ));
    }
    ready
}

/// The cloud session as `status.atProvider`.
pub fn observation(s: &CloudSession) -> SessionObservation {
    SessionObservation {
        id: s.id.clone(),
        project_id: s.project_id.clone(),
        name: s.name.clone(),
        description: s.description.clone(),
        traffic_mirror_filter_id: s.traffic_mirror_filter_id.clone(),
        traffic_mirror_sources: s.traffic_mirror_sources.clone(),
        traffic_mirror_target_id: s.traffic_mirror_target_id.clone(),
        traffic_mirror_target_type: s.traffic_mirror_target_type.clone(),
        virtual_network_id: s.virtual_network_id,
        packet_length: s.packet_length,
        priority: s.priority,
        enabled: s.enabled,
        source_type: s.source_type.clone(),
        created_at: s.created_at.clone(),
        updated_at: s.updated_at.clone(),
    }
}

/// Whether the fields other than the conditions are the same.
pub fn same_fields(
    current: &TrafficMirrorSessionStatus,
    next: &TrafficMirrorSessionStatus,
) -> bool {
    current.session_id == next.session_id
        && current.observed_generation == next.observed_generation
        && current.at_provider == next.at_provider
}

/// What each step means to the driver: the conditions it leads to and when to look again.
impl KindStep for Step {
    type Target = plan::DesiredSession;

    fn writes_finalizer(&self) -> bool {
        matches!(self, Step::Create { .. })
    }

    fn outcome(&self) -> Outcome<'_, plan::DesiredSession> {
        match self {
            Step::Wait(w) => Outcome::Wait(w),
            Step::Conflict(m) => Outcome::Conflict(m),
            Step::ReportDrift { fields, .. } => Outcome::ReportDrift(drift_ready(fields)),
            Step::Create { desired, .. }
            | Step::Adopt { desired, .. }
            | Step::Converge { desired, .. } => Outcome::Converge(desired),
            Step::Delete(_) => Outcome::Delete,
            Step::Release { .. } => Outcome::Release,
        }
    }
}
