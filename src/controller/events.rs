//! Event recording that aggregates only identical events.
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
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

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

#[cfg(test)]
mod tests {
    use super::*;

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
