//! Step "status": the new status computed purely from what was observed, decided and done (no client
//! required), and its single write per reconcile (client required): server-side apply of the whole
//! status under the operator's field manager, guarded by the resourceVersion the reconcile acted on,
//! and skipped when nothing changed (the steady state writes nothing).

use chrono::{DateTime, Utc};
use kube::Api;

use super::super::conditions::{self, Desired as Condition, READY, reason};
use super::super::driver::{self, KindStep, Outcome};
use super::super::error::{Error, Result};
use super::super::object;
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

/// The status while a create is in progress: `Ready=False`, reason `Creating` (and kstatus'
/// `Reconciling`), with the cloud id once the create has answered (`id`). Written before the first
/// create call and (filters) again when the id is known, so the object is never blank while the
/// calls run; only a create writes it, never the steady state.
pub fn creating(
    current: &TrafficMirrorSessionStatus,
    generation: Option<i64>,
    id: Option<&str>,
    now: DateTime<Utc>,
) -> TrafficMirrorSessionStatus {
    let message = match id {
        None => "the cloud session is being created".to_string(),
        Some(id) => {
            format!("the cloud session {id} is created; the rest of the spec is being applied",)
        }
    };
    let desired =
        conditions::with_progress(vec![Condition::no(READY, reason::CREATING, message)], false);
    TrafficMirrorSessionStatus {
        session_id: id
            .map(str::to_string)
            .or_else(|| current.session_id.clone()),
        observed_generation: generation,
        conditions: conditions::merge(&current.conditions, &desired, generation, now),
        ..current.clone()
    }
}

/// Writes [`creating`]; returns the object as the API server now has it (the copy written from is
/// replaced: see [`crate::controller::Ledger::replaced`]).
pub async fn write_creating(
    ctx: &crate::controller::Context,
    api: &Api<TrafficMirrorSession>,
    obj: &TrafficMirrorSession,
    id: Option<&str>,
) -> Result<std::sync::Arc<TrafficMirrorSession>> {
    let current = obj.status.clone().unwrap_or_default();
    let next = creating(&current, obj.metadata.generation, id, Utc::now());
    let written = object::apply_status(api, obj, &next)
        .await
        .map_err(Error::WriteStatus)?;
    ctx.ledger.replaced(&obj.metadata, &written.metadata);
    Ok(std::sync::Arc::new(written))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_create_in_progress_says_creating_and_shows_the_id_once_known() {
        let now = Utc::now();
        let before = creating(&Default::default(), Some(1), None, now);
        let after = creating(&before, Some(1), Some("x-1"), now);
        for (st, id) in [(&before, None), (&after, Some("x-1"))] {
            let ready = conditions::find(&st.conditions, READY).expect("Ready");
            assert_eq!(
                (ready.status.as_str(), ready.reason.as_str()),
                ("False", "Creating")
            );
            let r = conditions::find(&st.conditions, conditions::RECONCILING).expect("Reconciling");
            assert_eq!(r.status, "True");
            assert_eq!(st.session_id.as_deref(), id);
            assert_eq!(st.observed_generation, Some(1));
        }
    }
    use crate::controller::driver::status::checks;

    #[test]
    fn reconciling_or_stalled_per_outcome() {
        checks::reconciling_or_stalled_per_outcome::<TrafficMirrorSession>(
            Step::Wait,
            Step::Conflict("taken".into()),
            reason::SESSION_NOT_FOUND,
        );
    }

    #[test]
    fn a_failed_delete_names_the_orphan_way_out_and_other_failures_do_not() {
        checks::a_failed_delete_names_the_orphan_way_out::<TrafficMirrorSession>(Step::Delete(
            vec!["s-1".into()],
        ));
    }
}
