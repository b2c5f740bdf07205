//! Event recording that aggregates only identical events, and the pure decisions of which events a
//! status change or a round of rule calls tells ([`status_notice`], [`rules_note`]).
//!
//! kube's [`Recorder`] folds every event with the same object, type, reason and action into one
//! series, **keeping the first note**: within its six-minute cache, `update_rule ingress/10` after
//! `create_rule ingress/20` only raised the count of an event still reading `create_rule
//! ingress/20`, so `kubectl get events` told a different story from the calls made. client-go's
//! recorder counts the note as part of an event's identity; this does the same for `Normal` events
//! (each tells an action taken) by giving every distinct (object, type, reason, action, note) its
//! own [`Recorder`] (and so its own series). A `Warning`'s reason and action already name the error
//! code and the failed step, and its note carries the failed call's request id, new on every retry:
//! repeats of one failure stay one series (the Synced condition carries the latest message).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::conditions::{self, reason};

/// One field an update changes: its spec path, the cloud's value before and the spec's value, as
/// JSON text (`3`, `"web"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldChange {
    /// `spec.priority`.
    pub path: &'static str,
    /// What the cloud had.
    pub was: String,
    /// What the spec asks for (what was sent).
    pub now: String,
}

/// How long an idle series is kept: kube's recorder forgets a series after six minutes too, so a
/// later repeat starts a new event either way.
const SERIES_TTL: Duration = Duration::from_secs(6 * 60);

/// What makes two events the same series: the object, the type, reason, action and the note.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SeriesKey {
    /// The object's uid (or `namespace/name` when it has none).
    pub object: String,
    /// `Normal` or `Warning`.
    pub warning: bool,
    /// The event's reason.
    pub reason: String,
    /// The event's action.
    pub action: String,
    /// The event's note (the text people read); empty for a `Warning` (see the module doc).
    pub note: String,
}

impl SeriesKey {
    /// The key of `event` about `reference`.
    pub fn of(event: &Event, reference: &ObjectReference) -> SeriesKey {
        let object = reference.uid.clone().unwrap_or_else(|| {
            format!(
                "{}/{}",
                reference.namespace.as_deref().unwrap_or_default(),
                reference.name.as_deref().unwrap_or_default()
            )
        });
        let warning = matches!(event.type_, EventType::Warning);
        let note = if warning {
            String::new()
        } else {
            event.note.clone().unwrap_or_default()
        };
        SeriesKey {
            object,
            warning,
            reason: event.reason.clone(),
            action: event.action.clone(),
            note,
        }
    }
}

/// One recorder per live series, so a repeat of the same event aggregates and a different note
/// is a new event.
pub struct EventRecorders {
    client: Client,
    reporter: Reporter,
    series: Mutex<HashMap<SeriesKey, (Recorder, Instant)>>,
}

impl EventRecorders {
    /// Recorders reporting as `reporter`.
    pub fn new(client: Client, reporter: Reporter) -> Self {
        EventRecorders {
            client,
            reporter,
            series: Mutex::new(HashMap::new()),
        }
    }

    /// The recorder of the series `key` (a new one for a new series); idle series are dropped.
    pub fn recorder_for(&self, key: SeriesKey, now: Instant) -> Recorder {
        let mut series = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        series.retain(|_, (_, used)| now.saturating_duration_since(*used) < SERIES_TTL);
        let entry = series.entry(key).or_insert_with(|| {
            (
                Recorder::new(self.client.clone(), self.reporter.clone()),
                now,
            )
        });
        entry.1 = now;
        entry.0.clone()
    }
}

/// An event to publish, decided by a pure function (no client required).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// `Warning` (someone must act) or `Normal`.
    pub warning: bool,
    /// The event's reason (the condition reason it tells of).
    pub reason: String,
    /// The event's action.
    pub action: &'static str,
    /// The text people read.
    pub note: String,
}

/// Ready reasons that tell of work in progress, told by the events of the calls themselves.
const IN_PROGRESS: [&str; 3] = [reason::CREATING, reason::UPDATING, reason::DELETING];

/// The event a status write tells, if any: when `Ready` turns to a wait or a stall (AlreadyManaged,
/// NameConflict, SessionNotFound, FilterNotReady, Drifted, …) that it was not in before, one event
/// says so, with the condition's message. Once per occurrence: the next resync writes the same
/// status (nothing, in fact), so no event either. A failed step (`failed`) is told by its own
/// Warning, and progress (Creating, Updating) and success by the calls' events.
pub fn status_notice(before: &[Condition], after: &[Condition], failed: bool) -> Option<Notice> {
    let ready = conditions::find(after, conditions::READY)?;
    let was = conditions::find(before, conditions::READY);
    let same = was.is_some_and(|w| w.status == ready.status && w.reason == ready.reason);
    if failed || same || ready.status == "True" || IN_PROGRESS.contains(&ready.reason.as_str()) {
        return None;
    }
    let stalled = conditions::find(after, conditions::STALLED).is_some_and(|c| c.status == "True");
    Some(Notice {
        warning: stalled || ready.reason == reason::DRIFTED,
        reason: ready.reason.clone(),
        action: if stalled { "Stall" } else { "Wait" },
        note: ready.message.clone(),
    })
}

/// `created 100 rules`, `added 2 rules, updated 1 rule, removed 1 rule`: one event per reconcile
/// for a filter's rule calls, not one per rule (a 100-rule filter made 101 events). `None` when no
/// rule call was made.
pub fn rules_note(
    created: usize,
    updated: usize,
    deleted: usize,
    new_filter: bool,
) -> Option<String> {
    let rules = |n: usize| {
        if n == 1 {
            "1 rule".to_string()
        } else {
            format!("{n} rules")
        }
    };
    let first = if new_filter { "created" } else { "added" };
    let parts: Vec<String> = [(first, created), ("updated", updated), ("removed", deleted)]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(verb, n)| format!("{verb} {}", rules(n)))
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The reason of an event telling that the operator set back what was changed outside the object.
pub const DRIFT_CORRECTED: &str = "DriftCorrected";

/// Whether the calls a reconcile makes correct drift rather than carry out a spec change: the
/// status already observed this `generation` and the object was Ready (so nothing was pending).
pub fn corrects_drift(
    observed_generation: Option<i64>,
    generation: Option<i64>,
    status_conditions: &[Condition],
) -> bool {
    observed_generation.is_some()
        && observed_generation == generation
        && conditions::find(status_conditions, conditions::READY)
            .is_some_and(|c| c.status == "True")
}

/// The reason and note of an update of the cloud `noun`: `Updated` / `updated spec.priority`, or,
/// when it corrects drift, `DriftCorrected` / `corrected drift: the cloud session's priority was 3
/// (changed outside this object), set back to spec.priority 1`.
pub fn update_note(
    noun: &str,
    changes: &[FieldChange],
    correcting: bool,
) -> (&'static str, String) {
    if !correcting {
        let paths: Vec<&str> = changes.iter().map(|c| c.path).collect();
        return ("Updated", format!("updated {}", paths.join(", ")));
    }
    let was: Vec<String> = changes
        .iter()
        .map(|c| format!("{} was {}", c.path.trim_start_matches("spec."), c.was))
        .collect();
    let now: Vec<String> = changes
        .iter()
        .map(|c| format!("{} {}", c.path, c.now))
        .collect();
    let note = format!(
        "corrected drift: the {noun}'s {} (changed outside this object), set back to {}",
        was.join(", "),
        now.join(", ")
    );
    (DRIFT_CORRECTED, note)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn cond(type_: &'static str, status: bool, reason: &str) -> Condition {
        let message = format!("{type_} {reason}");
        let d = if status {
            conditions::Desired::yes(type_, reason, message)
        } else {
            conditions::Desired::no(type_, reason, message)
        };
        conditions::merge(&[], &[d], None, Utc::now()).remove(0)
    }

    #[test]
    fn a_status_change_into_a_wait_or_a_stall_is_told_once() {
        let ready = |s, r| cond(conditions::READY, s, r);
        let stalled = |r| cond(conditions::STALLED, true, r);
        // (before, after, failed, expected (warning, reason, action))
        type Row = (
            Vec<Condition>,
            Vec<Condition>,
            bool,
            Option<(bool, &'static str, &'static str)>,
        );
        let table: Vec<Row> = vec![
            (
                vec![],
                vec![ready(false, "AlreadyManaged"), stalled("AlreadyManaged")],
                false,
                Some((true, "AlreadyManaged", "Stall")),
            ),
            (
                vec![ready(false, "AlreadyManaged")],
                vec![ready(false, "AlreadyManaged"), stalled("AlreadyManaged")],
                false,
                None,
            ),
            (
                vec![ready(true, "Available")],
                vec![ready(false, "SessionNotFound"), stalled("SessionNotFound")],
                false,
                Some((true, "SessionNotFound", "Stall")),
            ),
            (
                vec![],
                vec![ready(false, "FilterNotReady")],
                false,
                Some((false, "FilterNotReady", "Wait")),
            ),
            (
                vec![ready(true, "Available")],
                vec![ready(false, "Drifted")],
                false,
                Some((true, "Drifted", "Wait")),
            ),
            (vec![], vec![ready(false, "Creating")], false, None),
            (vec![], vec![ready(true, "Available")], false, None),
            (
                vec![],
                vec![ready(false, "VPC_0002"), stalled("VPC_0002")],
                true,
                None,
            ),
            (vec![ready(false, "Creating")], vec![], false, None),
        ];
        for (before, after, failed, want) in table {
            let got = status_notice(&before, &after, failed);
            let got = got
                .as_ref()
                .map(|n| (n.warning, n.reason.as_str(), n.action));
            assert_eq!(got, want, "{before:?} -> {after:?}");
        }
        let n = status_notice(&[], &[ready(false, "NameConflict")], false).expect("told");
        assert_eq!(n.note, "Ready NameConflict", "the condition's message");
    }

    #[test]
    fn an_update_names_spec_paths_and_a_correction_says_so() {
        let changes = [super::FieldChange {
            path: "spec.priority",
            was: "3".into(),
            now: "1".into(),
        }];
        assert_eq!(
            update_note("cloud session", &changes, false),
            ("Updated", "updated spec.priority".to_string())
        );
        assert_eq!(
            update_note("cloud session", &changes, true),
            (
                DRIFT_CORRECTED,
                "corrected drift: the cloud session's priority was 3 (changed outside this object), set back to spec.priority 1".to_string()
            )
        );
        let ready = |s| vec![cond(conditions::READY, s, "Available")];
        let table = [
            ((Some(2), Some(2), ready(true)), true),
            ((Some(1), Some(2), ready(true)), false), // a spec change
            ((Some(2), Some(2), ready(false)), false), // a retry of a failed change
            ((None, Some(2), vec![]), false),
        ];
        for ((observed, generation, conds), want) in table {
            assert_eq!(corrects_drift(observed, generation, &conds), want);
        }
    }

    #[test]
    fn rule_calls_are_summarised_in_one_note() {
        let table = [
            ((100, 0, 0, true), Some("created 100 rules")),
            ((2, 0, 1, false), Some("added 2 rules, removed 1 rule")),
            ((0, 1, 0, false), Some("updated 1 rule")),
            (
                (1, 2, 3, false),
                Some("added 1 rule, updated 2 rules, removed 3 rules"),
            ),
            ((0, 0, 0, true), None),
        ];
        for ((c, u, d, new), want) in table {
            assert_eq!(rules_note(c, u, d, new).as_deref(), want);
        }
    }

    fn event(note: &str, reason: &str, warning: bool) -> Event {
        Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note.into()),
            action: "UpdateRules".into(),
            secondary: None,
        }
    }

    fn reference(uid: Option<&str>) -> ObjectReference {
        ObjectReference {
            uid: uid.map(str::to_string),
            namespace: Some("ns".into()),
            name: Some("web".into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_note_is_part_of_a_series_identity() {
        let a = reference(Some("u1"));
        let base = SeriesKey::of(&event("create_rule ingress/10", "RulesChanged", false), &a);
        let cases = [
            (
                "same event again",
                event("create_rule ingress/10", "RulesChanged", false),
                reference(Some("u1")),
                true,
            ),
            (
                "another note",
                event("update_rule ingress/10", "RulesChanged", false),
                reference(Some("u1")),
                false,
            ),
            (
                "another reason",
                event("create_rule ingress/10", "Updated", false),
                reference(Some("u1")),
                false,
            ),
            (
                "another type",
                event("create_rule ingress/10", "RulesChanged", true),
                reference(Some("u1")),
                false,
            ),
            (
                "another object",
                event("create_rule ingress/10", "RulesChanged", false),
                reference(Some("u2")),
                false,
            ),
        ];
        for (what, ev, r, same) in cases {
            assert_eq!(SeriesKey::of(&ev, &r) == base, same, "{what}");
        }
        // A retried failure (a new request id in each note) stays one series.
        let failed = |rid: &str| {
            event(
                &format!("step create failed: HTTP 500, request id {rid}"),
                "VPC_0500",
                true,
            )
        };
        assert_eq!(
            SeriesKey::of(&failed("r1"), &a),
            SeriesKey::of(&failed("r2"), &a)
        );
        assert_eq!(
            SeriesKey::of(&event("n", "R", false), &reference(None)).object,
            "ns/web"
        );
    }
}
