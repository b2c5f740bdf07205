//! Step "status" of the filter reconciler: the new status computed purely from what was observed,
//! decided and done (no client required), written once when it changed ([`object::apply_status`]).

use chrono::{DateTime, Utc};
use kube::Api;

use super::super::conditions::{self, Desired as Condition, READY, reason};
use super::super::driver::{self, KindStep, Outcome};
use super::super::error::{Error, Result};
use super::super::object;
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

/// The status while a create is in progress: `Ready=False`, reason `Creating` (and kstatus'
/// `Reconciling`), with the cloud id once the create has answered (`id`). Written before the first
/// create call and (filters) again when the id is known, so the object is never blank while the
/// calls run; only a create writes it, never the steady state.
pub fn creating(
    current: &TrafficMirrorFilterStatus,
    generation: Option<i64>,
    id: Option<&str>,
    now: DateTime<Utc>,
) -> TrafficMirrorFilterStatus {
    let message = match id {
        None => "the cloud filter is being created".to_string(),
        Some(id) => {
            format!("the cloud filter {id} is created; the rest of the spec is being applied",)
        }
    };
    let desired =
        conditions::with_progress(vec![Condition::no(READY, reason::CREATING, message)], false);
    TrafficMirrorFilterStatus {
        filter_id: id.map(str::to_string).or_else(|| current.filter_id.clone()),
        observed_generation: generation,
        conditions: conditions::merge(&current.conditions, &desired, generation, now),
        ..current.clone()
    }
}

/// Writes [`creating`]; returns the object as the API server now has it (the copy written from is
/// replaced: see [`crate::controller::Ledger::replaced`]).
pub async fn write_creating(
    ctx: &crate::controller::Context,
    api: &Api<TrafficMirrorFilter>,
    obj: &TrafficMirrorFilter,
    id: Option<&str>,
) -> Result<std::sync::Arc<TrafficMirrorFilter>> {
    let current = obj.status.clone().unwrap_or_default();
    let next = creating(&current, obj.metadata.generation, id, Utc::now());
    let written = object::apply_status(api, obj, &next)
        .await
        .map_err(Error::WriteStatus)?;
    ctx.ledger.replaced(&obj.metadata, &written.metadata);
    Ok(std::sync::Arc::new(written))
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
            assert_eq!(st.filter_id.as_deref(), id);
            assert_eq!(st.observed_generation, Some(1));
        }
    }
    use crate::controller::driver::status::checks;

    #[test]
    fn reconciling_or_stalled_per_outcome() {
        checks::reconciling_or_stalled_per_outcome::<TrafficMirrorFilter>(
            Step::Wait,
            Step::Conflict("taken".into()),
            reason::FILTER_NOT_FOUND,
        );
    }

    #[test]
    fn a_failed_delete_names_the_orphan_way_out_and_other_failures_do_not() {
        checks::a_failed_delete_names_the_orphan_way_out::<TrafficMirrorFilter>(Step::Delete(
            vec!["f-1".into()],
        ));
    }
}
