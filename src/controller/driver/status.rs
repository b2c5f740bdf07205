//! The driver's status step, for every kind: the conditions after a step (`Ready`, `Synced`, and
//! kstatus' `Reconciling`/`Stalled`, with their reasons and messages) computed purely in one place,
//! and the single status write per reconcile: server-side apply of the whole status under the
//! operator's field manager, guarded by the resourceVersion the reconcile acted on, and skipped when
//! nothing changed (the steady state writes nothing).

use chrono::{DateTime, Utc};
use kube::Api;

use super::super::conditions::{self, Desired as Condition, READY, SYNCED, reason};
use super::super::context::Context;
use super::super::error::{Error, Result};
use super::super::object;
use super::{Kind, KindStep, Outcome};
use crate::api::common::ManagedStatus;

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
        current.conditions(),
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
    if let Some(written) = write(api, obj, &next).await? {
        // The copy written from is replaced: a reconcile of it (the watch event of a create's
        // intent write, whose id only this status records) would be a stale one.
        ctx.ledger.replaced(obj.meta(), written.meta());
        let (before, after) = (current.conditions(), next.conditions());
        let failed = report.error.is_some();
        object::status_written(ctx, obj, before, after, failed).await;
    }
    Ok(())
}

/// Writes `next` when it differs from the object's status ([`object::apply_status`]); returns the
/// object as written, or `None` when nothing changed.
pub async fn write<K: Kind>(api: &Api<K>, obj: &K, next: &K::Status) -> Result<Option<K>> {
    let current = obj.status().cloned().unwrap_or_default();
    if unchanged::<K>(&current, next) {
        return Ok(None);
    }
    let written = object::apply_status(api, obj, next)
        .await
        .map_err(Error::WriteStatus)?;
    Ok(Some(written))
}

/// Whether writing `next` would change nothing (condition timestamps aside).
pub fn unchanged<K: Kind>(current: &K::Status, next: &K::Status) -> bool {
    K::same_fields(current, next) && conditions::same(current.conditions(), next.conditions())
}

/// The status while a create is in progress: `Ready=False`, reason `Creating` (and kstatus'
/// `Reconciling`), with the cloud id once the create has answered (`id`). Written before the first
/// create call and (filters) again when the id is known, so the object is never blank while the
/// calls run; only a create writes it, never the steady state.
pub fn creating<K: Kind>(
    current: &K::Status,
    generation: Option<i64>,
    id: Option<&str>,
    now: DateTime<Utc>,
) -> K::Status {
    let noun = K::NOUN;
    let message = match id {
        None => format!("the {noun} is being created"),
        Some(id) => format!("the {noun} {id} is created; the rest of the spec is being applied"),
    };
    let desired =
        conditions::with_progress(vec![Condition::no(READY, reason::CREATING, message)], false);
    let merged = conditions::merge(current.conditions(), &desired, generation, now);
    let mut next = current.clone();
    if let Some(id) = id {
        next.set_cloud_id(id.to_string());
    }
    next.set_observed_generation(generation);
    next.set_conditions(merged);
    next
}

/// Writes [`creating`]; returns the object as the API server now has it (the copy written from is
/// replaced: see [`crate::controller::ledger::Ledger::replaced`]).
pub async fn write_creating<K: Kind>(
    ctx: &Context,
    api: &Api<K>,
    obj: &K,
    id: Option<&str>,
) -> Result<std::sync::Arc<K>> {
    let current = obj.status().cloned().unwrap_or_default();
    let next = creating::<K>(&current, obj.meta().generation, id, Utc::now());
    let written = object::apply_status(api, obj, &next)
        .await
        .map_err(Error::WriteStatus)?;
    ctx.ledger.replaced(obj.meta(), written.meta());
    Ok(std::sync::Arc::new(written))
}

/// The conditions' table tests, run by each kind with its own steps (the conditions are computed here
/// once, so the checks are written here once).
#[cfg(test)]
pub mod checks {
    use super::super::super::conditions::{RECONCILING, STALLED};
    use super::*;
    use crate::cloud::CloudError;
    use crate::controller::wait::{Retry, Wait};

    fn cloud(status: u16) -> Error {
        Error::Cloud {
            operation: "create",
            source: CloudError::Api {
                status,
                error_code: format!("VPC.{status}"),
                error_msg: "no".into(),
                request_id: None,
                retry_after: None,
            },
        }
    }

    /// A report and the progress condition it should add (type, reason).
    type Row<'a, K> = (Report<'a, K>, Option<(&'a str, &'a str)>);

    /// A wait for `reason`, as a kind's step.
    pub fn wait(reason: &'static str) -> Wait {
        Wait {
            reason,
            message: "m".into(),
            retry: Retry::Dependency,
        }
    }

    /// The kstatus condition each outcome adds (type, reason), beside Ready/Synced.
    fn progress<K: Kind>(report: &Report<'_, K>) -> Vec<(&'static str, String)> {
        desired_conditions(report)
            .into_iter()
            .filter(|c| c.type_ == RECONCILING || c.type_ == STALLED)
            .map(|c| (c.type_, c.reason))
            .collect()
    }

    /// Each outcome adds `Reconciling` or `Stalled` (with the reason) beside Ready/Synced; `wait`
    /// makes the kind's wait step, `conflict` its conflict, `terminal` a reason that never clears.
    pub fn reconciling_or_stalled_per_outcome<K: Kind>(
        wait_step: fn(Wait) -> K::Step,
        conflict: K::Step,
        terminal: &'static str,
    ) {
        let (waiting, terminal_wait) = (
            wait_step(wait(reason::PROVIDER_CONFIG_NOT_READY)),
            wait_step(wait(terminal)),
        );
        let (throttled, refused) = (cloud(429), cloud(400));
        let table: Vec<Row<'_, K>> = vec![
            (Report::default(), None),
            (
                Report {
                    step: Some(&waiting),
                    ..Default::default()
                },
                Some((RECONCILING, "ProviderConfigNotReady")),
            ),
            (
                Report {
                    step: Some(&terminal_wait),
                    ..Default::default()
                },
                Some((STALLED, terminal)),
            ),
            (
                Report {
                    step: Some(&conflict),
                    ..Default::default()
                },
                Some((STALLED, "NameConflict")),
            ),
            (
                Report {
                    error: Some(&throttled),
                    ..Default::default()
                },
                Some((RECONCILING, "VPC_429")),
            ),
            (
                Report {
                    error: Some(&refused),
                    ..Default::default()
                },
                Some((STALLED, "VPC_400")),
            ),
        ];
        for (report, want) in table {
            let want: Vec<_> = want.map(|(t, r)| (t, r.to_string())).into_iter().collect();
            assert_eq!(progress(&report), want, "{report:?}");
        }
    }

    /// A failed `delete` step names `deletionPolicy: Orphan` as the way out; other failures do not.
    /// A create in progress says `Creating` (with `Reconciling`) and shows the id once known;
    pub fn a_create_in_progress_says_creating<K: Kind>() {
        let now = Utc::now();
        let before = creating::<K>(&Default::default(), Some(1), None, now);
        let after = creating::<K>(&before, Some(1), Some("x-1"), now);
        for (st, id) in [(&before, None), (&after, Some("x-1"))] {
            let ready = conditions::find(st.conditions(), READY).expect("Ready");
            assert_eq!(
                (ready.status.as_str(), ready.reason.as_str()),
                ("False", "Creating")
            );
            assert!(ready.message.contains(K::NOUN), "{}", ready.message);
            let r = conditions::find(st.conditions(), RECONCILING).expect("Reconciling");
            assert_eq!(r.status, "True");
            assert_eq!(st.cloud_id(), id);
            assert_eq!(st.observed_generation(), Some(1));
        }
    }

    pub fn a_failed_delete_names_the_orphan_way_out<K: Kind>(delete: K::Step) {
        let refused = cloud(400);
        // (the step that failed, Ready's reason, whether the message names deletionPolicy: Orphan)
        let table = [
            (Some(&delete), reason::DELETING, true),
            (None, "VPC_400", false),
        ];
        for (step, want_reason, orphan) in table {
            let report = Report::<K> {
                step,
                error: Some(&refused),
                ..Default::default()
            };
            let conditions = desired_conditions(&report);
            for c in conditions
                .iter()
                .filter(|c| c.type_ == READY || c.type_ == SYNCED)
            {
                assert_eq!(
                    c.message.contains("deletionPolicy: Orphan"),
                    orphan,
                    "{c:?}"
                );
            }
            let ready = conditions.iter().find(|c| c.type_ == READY).expect("Ready");
            assert_eq!(ready.reason, want_reason);
        }
    }
}
