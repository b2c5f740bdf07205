//! The driver's status step, for every kind: the conditions after a step (`Ready`, `Synced`, and
//! kstatus' `Reconciling`/`Stalled`, with their reasons and messages) computed purely in one place,
//! and the single status write per reconcile: server-side apply of the whole status under the
//! operator's field manager, guarded by the resourceVersion the reconcile acted on, and skipped when
//! nothing changed (the steady state writes nothing).

use chrono::{DateTime, Utc};
use kube::Api;

use super::super::conditions::{self, Desired as Condition, READY, SYNCED, reason};
use super::super::error::{Error, Result};
use super::super::{Context, object};
use super::{Kind, KindStep, Outcome};

/// What one reconcile learned and did, as far as it got.
#[derive(Debug)]
pub struct Report<'a, K: Kind> {
    /// The observation, unless observing failed.
    pub observed: Option<&'a K::Observed>,
    /// The decided step, unless observing failed.
    pub step: Option<&'a K::Step>,
    /// The cloud resource as the last call answered.
    pub cloud: Option<&'a K::Cloud>,
    /// The failure, if a step failed.
    pub error: Option<&'a Error>,
}

impl<K: Kind> Default for Report<'_, K> {
    fn default() -> Self {
        Report {
            observed: None,
            step: None,
            cloud: None,
            error: None,
        }
    }
}

impl<K: Kind> Clone for Report<'_, K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K: Kind> Copy for Report<'_, K> {}

/// The status after this reconcile.
pub fn next_status<K: Kind>(
    current: &K::Status,
    generation: Option<i64>,
    report: &Report<'_, K>,
    now: DateTime<Utc>,
) -> K::Status {
    let conditions = conditions::merge(
        K::conditions(current),
        &desired_conditions(report),
        generation,
        now,
    );
    K::next_status(current, report, generation, conditions)
}

/// `Ready`, `Synced`, and kstatus' `Reconciling`/`Stalled` ([`conditions::with_progress`]): a
/// failure that retrying cannot fix stalls the object.
pub fn desired_conditions<K: Kind>(report: &Report<'_, K>) -> Vec<Condition> {
    let failed_for_good = report.error.is_some_and(|e| !e.is_retryable());
    conditions::with_progress(conditions_of(report), failed_for_good)
}

fn conditions_of<K: Kind>(report: &Report<'_, K>) -> Vec<Condition> {
    let outcome = report.step.map(KindStep::outcome);
    if let Some(e) = report.error {
        return e.conditions(matches!(outcome, Some(Outcome::Delete)));
    }
    match outcome {
        Some(Outcome::Wait(w)) => both_false(w.reason, &w.message),
        Some(Outcome::Conflict(m)) => both_false(reason::NAME_CONFLICT, m),
        Some(Outcome::ReportDrift(ready)) => vec![
            ready,
            Condition::yes(SYNCED, reason::RECONCILE_SUCCESS, "observed (ObserveOnly)"),
        ],
        Some(Outcome::Converge(target)) => vec![
            K::converged_ready(target, report),
            Condition::yes(
                SYNCED,
                reason::RECONCILE_SUCCESS,
                "the last reconcile succeeded",
            ),
        ],
        // Delete / Release end with the finalizer removed: no status is written.
        Some(Outcome::Delete | Outcome::Release) | None => vec![],
    }
}

/// `Ready` and `Synced` both false for the same reason.
fn both_false(reason: &str, message: &str) -> Vec<Condition> {
    vec![
        Condition::no(READY, reason, message),
        Condition::no(SYNCED, reason, message),
    ]
}

/// The status computed from `report`, written when it changed; a change of `Ready` into a wait or a
/// stall is told by one event ([`object::status_written`]).
pub async fn write_status<K: Kind>(
    ctx: &Context,
    api: &Api<K>,
    obj: &K,
    report: &Report<'_, K>,
) -> Result<()> {
    let current = obj.status().cloned().unwrap_or_default();
    let next = next_status(&current, obj.meta().generation, report, Utc::now());
    if write(api, obj, &next).await? {
        let (before, after) = (K::conditions(&current), K::conditions(&next));
        let failed = report.error.is_some();
        object::status_written(ctx, obj, before, after, failed).await;
    }
    Ok(())
}

/// Writes `next` when it differs from the object's status ([`object::apply_status`]).
pub async fn write<K: Kind>(api: &Api<K>, obj: &K, next: &K::Status) -> Result<bool> {
    let current = obj.status().cloned().unwrap_or_default();
    if unchanged::<K>(&current, next) {
        return Ok(false);
    }
    object::apply_status(api, obj, next)
        .await
        .map_err(Error::WriteStatus)?;
    Ok(true)
}

/// Whether writing `next` would change nothing (condition timestamps aside).
pub fn unchanged<K: Kind>(current: &K::Status, next: &K::Status) -> bool {
    K::same_fields(current, next) && conditions::same(K::conditions(current), K::conditions(next))
}
