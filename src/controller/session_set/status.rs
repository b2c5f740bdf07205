//! The set's status (no client required): the counts and the conditions, worded like the other
//! kinds' (`Ready`, `Synced`, and kstatus' `Reconciling` / `Stalled` through
//! [`conditions::with_progress`]).
//!
//! `Ready=True` means: every selected port is a source of a child, every child is Ready for its
//! current spec, and no selected Node is unresolved. A set selecting nothing is Ready (there is
//! nothing to mirror). An unresolved Node keeps the set `Ready=False` (`SourcesUnresolved`) while the
//! resolved ports are mirrored all the same.

use chrono::{DateTime, Utc};

use super::error::SetError;
use crate::api::{TrafficMirrorSessionSetStatus, UnresolvedSource};
use crate::controller::conditions::{self, Desired, READY, SYNCED, reason};

/// Ready=False: some selected Nodes have no port.
pub const SOURCES_UNRESOLVED: &str = "SourcesUnresolved";
/// Ready=False: some children are not (yet) Ready for their current spec.
pub const SESSIONS_NOT_READY: &str = "SessionsNotReady";

/// What one reconcile found and did, for the status.
#[derive(Debug, Default)]
pub struct Outcome<'a> {
    /// The selection, when it could be computed: ports selected, Nodes unresolved.
    pub selection: Option<(usize, Vec<UnresolvedSource>)>,
    /// The children after the reconcile: how many, how many Ready (unchanged and Ready).
    pub children: Option<(usize, usize)>,
    /// The failure, if any.
    pub error: Option<&'a SetError>,
}

/// The `Ready` condition of `outcome`.
pub fn ready(outcome: &Outcome<'_>) -> Desired {
    if let (Some(e), None) = (outcome.error, &outcome.children) {
        return Desired::no(READY, e.reason(), e.to_string());
    }
    let (selected, unresolved) = outcome.selection.clone().unwrap_or_default();
    let (sessions, ready) = outcome.children.unwrap_or_default();
    if !unresolved.is_empty() {
        let names: Vec<&str> = unresolved.iter().map(|u| u.node.as_str()).collect();
        let msg = format!(
            "{} selected Node(s) have no port ({}): see status.unresolved; the {selected} resolved port(s) are mirrored",
            unresolved.len(),
            names.join(", ")
        );
        return Desired::no(READY, SOURCES_UNRESOLVED, msg);
    }
    if ready < sessions {
        let msg = format!("{ready} of {sessions} child sessions are Ready");
        return Desired::no(READY, SESSIONS_NOT_READY, msg);
    }
    let msg = format!("{selected} port(s) mirrored by {sessions} session(s)");
    Desired::yes(READY, reason::AVAILABLE, msg)
}

/// The `Synced` condition of `outcome`.
pub fn synced(outcome: &Outcome<'_>) -> Desired {
    match outcome.error {
        Some(e) => Desired::no(SYNCED, e.reason(), e.to_string()),
        None => Desired::yes(
            SYNCED,
            reason::RECONCILE_SUCCESS,
            "the child sessions follow the selection",
        ),
    }
}

/// The status after `outcome`: counts not computed this time are kept from `current`.
pub fn next_status(
    current: &TrafficMirrorSessionSetStatus,
    outcome: &Outcome<'_>,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> TrafficMirrorSessionSetStatus {
    let failed_for_good = outcome.error.is_some_and(|e| !e.is_retryable());
    let desired = conditions::with_progress(vec![ready(outcome), synced(outcome)], failed_for_good);
    let mut next = current.clone();
    if let Some((selected, unresolved)) = &outcome.selection {
        next.selected_ports = *selected as i64;
        next.unresolved = unresolved.clone();
    }
    if let Some((sessions, ready)) = outcome.children {
        next.sessions = sessions as i64;
        next.ready_sessions = ready as i64;
    }
    next.observed_generation = generation;
    next.conditions = conditions::merge(&current.conditions, &desired, generation, now);
    next
}

/// Whether writing `next` over `current` would change anything (timestamps aside).
pub fn changed(
    current: &TrafficMirrorSessionSetStatus,
    next: &TrafficMirrorSessionSetStatus,
) -> bool {
    let mut a = current.clone();
    let mut b = next.clone();
    let same_conditions = conditions::same(&a.conditions, &b.conditions);
    a.conditions.clear();
    b.conditions.clear();
    a != b || !same_conditions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::conditions::{RECONCILING, STALLED};

    fn unresolved(node: &str) -> UnresolvedSource {
        UnresolvedSource {
            node: node.into(),
            reason: "NoPort".into(),
            ..Default::default()
        }
    }

    fn types(s: &TrafficMirrorSessionSetStatus) -> Vec<(String, String, String)> {
        s.conditions
            .iter()
            .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
            .collect()
    }

    #[test]
    fn table() {
        let invalid = SetError::InvalidSelector("bad".into());
        let provider = SetError::ProviderNotReady("p".into());
        let cases: Vec<(&str, Outcome<'_>, &str, bool, Option<&str>)> = vec![
            (
                "all ready",
                Outcome {
                    selection: Some((3, vec![])),
                    children: Some((1, 1)),
                    error: None,
                },
                "Available",
                true,
                None,
            ),
            (
                "nothing selected",
                Outcome {
                    selection: Some((0, vec![])),
                    children: Some((0, 0)),
                    error: None,
                },
                "Available",
                true,
                None,
            ),
            (
                "children pending",
                Outcome {
                    selection: Some((3, vec![])),
                    children: Some((2, 1)),
                    error: None,
                },
                SESSIONS_NOT_READY,
                false,
                Some(RECONCILING),
            ),
            (
                "unresolved node",
                Outcome {
                    selection: Some((3, vec![unresolved("n")])),
                    children: Some((1, 1)),
                    error: None,
                },
                SOURCES_UNRESOLVED,
                false,
                Some(RECONCILING),
            ),
            (
                "provider missing",
                Outcome {
                    selection: None,
                    children: None,
                    error: Some(&provider),
                },
                "ProviderConfigNotReady",
                false,
                Some(RECONCILING),
            ),
            (
                "invalid selector",
                Outcome {
                    selection: None,
                    children: None,
                    error: Some(&invalid),
                },
                "InvalidSelector",
                false,
                Some(STALLED),
            ),
        ];
        for (name, outcome, want_reason, want_ready, extra) in cases {
            let s = next_status(&Default::default(), &outcome, Some(2), Utc::now());
            let t = types(&s);
            let ready = t.iter().find(|c| c.0 == READY).unwrap();
            assert_eq!(ready.2, want_reason, "{name}");
            assert_eq!(ready.1 == "True", want_ready, "{name}");
            let synced = t.iter().find(|c| c.0 == SYNCED).unwrap();
            assert_eq!(synced.1 == "True", outcome.error.is_none(), "{name}");
            let abnormal: Vec<&str> = t
                .iter()
                .filter(|c| c.0 == RECONCILING || c.0 == STALLED)
                .map(|c| c.0.as_str())
                .collect();
            assert_eq!(abnormal, extra.into_iter().collect::<Vec<_>>(), "{name}");
            assert_eq!(s.observed_generation, Some(2));
        }
    }

    #[test]
    fn counts_are_kept_when_not_computed_and_unchanged_status_is_not_rewritten() {
        let first = next_status(
            &Default::default(),
            &Outcome {
                selection: Some((4, vec![])),
                children: Some((1, 1)),
                error: None,
            },
            Some(1),
            Utc::now(),
        );
        assert_eq!(
            (first.selected_ports, first.sessions, first.ready_sessions),
            (4, 1, 1)
        );
        let again = next_status(
            &first,
            &Outcome {
                selection: Some((4, vec![])),
                children: Some((1, 1)),
                error: None,
            },
            Some(1),
            Utc::now(),
        );
        assert!(!changed(&first, &again));
        let e = SetError::ProviderNotReady("p".into());
        let failed = next_status(
            &first,
            &Outcome {
                error: Some(&e),
                ..Default::default()
            },
            Some(1),
            Utc::now(),
        );
        assert_eq!(failed.selected_ports, 4, "the last counts stay");
        assert!(changed(&first, &failed));
    }
}
