//! Crash-safe create (no client required): the create-intent record and the pure decision of what to
//! do with the cloud sessions found under the intended name.
//!
//! The VPC API has no idempotency token, so before the create POST the reconciler records an intent
//! (annotation [`INTENT_ANNOTATION`]: a unique token, the cloud name and a timestamp) with an update
//! that carries the resourceVersion it read: a stale cached copy can never lead to a second create.
//! After a crash (or whenever an intent is outstanding without a recorded id) the reconciler lists the
//! cloud sessions with that name and [`resolve`] decides: adopt the one created after the intent,
//! report a conflict, wait for eventual consistency, or create again.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::session::plan::DesiredSession;
use crate::cloud::models::{TrafficMirrorFilter, TrafficMirrorSession};

/// Annotation holding the outstanding create intent (JSON of [`CreateIntent`]).
pub const INTENT_ANNOTATION: &str = "vpc.hwcloud.dev/create-intent";
/// Annotation holding the cloud id once known: survives a backup/restore that drops `status`.
pub const SESSION_ID_ANNOTATION: &str = "vpc.hwcloud.dev/session-id";
/// Annotation holding a filter's cloud id once known (survives a restore that drops status); here, in
/// a module every kind and the claims may use, so no kind imports another's folder for it.
pub const FILTER_ID_ANNOTATION: &str = "vpc.hwcloud.dev/filter-id";

/// A recorded intent to create a cloud session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateIntent {
    /// Unique per attempt, so logs and events can tell attempts apart.
    pub token: String,
    /// The cloud name the create uses (the key to find the session again).
    pub name: String,
    /// When the intent was recorded (before the POST was sent).
    pub at: DateTime<Utc>,
    /// The filter id the POST sends (sessions only): the spec may change before the intent is
    /// resolved, and the session the POST made carries what was sent, not the new spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_id: Option<String>,
    /// The target id the POST sends (sessions only), for the same reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
}

impl CreateIntent {
    /// A fresh intent for `name` at `now`.
    pub fn new(name: &str, now: DateTime<Utc>) -> Self {
        CreateIntent {
            token: uuid::Uuid::new_v4().to_string(),
            name: name.to_string(),
            // Second precision: the cloud's created_at has seconds only.
            at: DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now),
            filter_id: None,
            target_id: None,
        }
    }

    /// This intent, also recording the identity the POST sends (see [`CreateIntent::identity`]).
    pub fn with_identity(mut self, identity: &Identity) -> Self {
        self.filter_id = identity.filter_id.clone();
        self.target_id = Some(identity.target_id.clone());
        self
    }

    /// The identity recorded with the intent, if any (intents recorded before this field existed,
    /// and damaged ones, have none: then the current spec's identity is all there is).
    pub fn identity(&self) -> Option<Identity> {
        Some(Identity {
            filter_id: self.filter_id.clone(),
            target_id: self.target_id.clone()?,
        })
    }

    /// Parses a well-formed annotation value; see [`outstanding`] for what a damaged one means.
    pub fn parse(value: &str) -> Option<Self> {
        serde_json::from_str(value).ok()
    }

    /// The annotation value.
    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The outstanding create intent recorded on an object, if any: the ONE reading of the annotation that
/// create and cleanup share. A damaged value counts as an intent of unknown age for the current cloud
/// name, dated when the object was created (never as "no intent"): a session an interrupted create
/// made is then still found, so it can neither be duplicated by a create nor leaked by a delete.
pub fn outstanding(
    annotation: Option<&str>,
    cloud_name: &str,
    object_created: DateTime<Utc>,
) -> Option<CreateIntent> {
    let raw = annotation?;
    Some(CreateIntent::parse(raw).unwrap_or_else(|| CreateIntent {
        token: "unknown".into(),
        name: cloud_name.to_string(),
        at: object_created,
        filter_id: None,
        target_id: None,
    }))
}

/// What the status says was created: its recorded cloud id, and the id and `createdAt` of the
/// cloud object it last saw (`status.atProvider`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordedCreate<'a> {
    /// The status' cloud id (`status.sessionId` / `status.filterId`).
    pub id: Option<&'a str>,
    /// `status.atProvider.id`.
    pub observed_id: Option<&'a str>,
    /// `status.atProvider.createdAt`.
    pub observed_created_at: Option<&'a str>,
}

/// Whether the status already records the object `intent`'s create made, so the intent, kept as
/// the durable record of that create (see [`super::object::crash_safe_create`]), needs no
/// resolving: the status holds an id, `atProvider` is that object, and it was created no earlier
/// than the intent. Strict on purpose (no clock skew allowed): "not settled" only costs one search by
/// name and one metadata write (the intent is then resolved and cleared), while "settled" wrongly
/// (a re-create whose status still names the vanished object) could create a second one.
pub fn settled_by_status(intent: &CreateIntent, recorded: RecordedCreate<'_>) -> bool {
    let RecordedCreate {
        id,
        observed_id,
        observed_created_at,
    } = recorded;
    let Some(id) = id.filter(|i| !i.is_empty()) else {
        return false;
    };
    observed_id == Some(id)
        && observed_created_at
            .and_then(parse_cloud_time)
            .is_some_and(|created| created >= intent.at)
}

/// What makes a cloud session "the one we asked for": fields a create sets and nobody else would set
/// the same way by chance. The filter may be unknown (a deleting object whose filter is gone): then it
/// is not compared. Scalar drift (priority etc.) is fixed afterwards by the normal convergence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The filter id the create used, when it can still be resolved.
    pub filter_id: Option<String>,
    /// The target id the create used.
    pub target_id: String,
}

impl Identity {
    /// The identity of a desired session.
    pub fn of(desired: &DesiredSession) -> Self {
        Identity {
            filter_id: Some(desired.traffic_mirror_filter_id.clone()),
            target_id: desired.traffic_mirror_target_id.clone(),
        }
    }

    fn matches(&self, name: &str, s: &TrafficMirrorSession) -> bool {
        s.name == name
            && self
                .filter_id
                .as_ref()
                .is_none_or(|f| *f == s.traffic_mirror_filter_id)
            && s.traffic_mirror_target_id == self.target_id
    }
}

/// A cloud object an interrupted create may have made: sessions and filters (both named by us).
pub trait Created: Clone {
    /// How conflict messages name the kind (`cloud session`).
    const NOUN: &'static str;
    /// The spec field that adopts an existing object (`spec.sessionId`).
    const ADOPT_FIELD: &'static str;
    /// The cloud id.
    fn id(&self) -> &str;
    /// The cloud's creation time (`YYYY-MM-DDThh:mm:ssZ`).
    fn created_at(&self) -> &str;
}

impl Created for TrafficMirrorSession {
    const NOUN: &'static str = "cloud session";
    const ADOPT_FIELD: &'static str = "spec.sessionId";
    fn id(&self) -> &str {
        &self.id
    }
    fn created_at(&self) -> &str {
        &self.created_at
    }
}

impl Created for TrafficMirrorFilter {
    const NOUN: &'static str = "cloud filter";
    const ADOPT_FIELD: &'static str = "spec.filterId";
    fn id(&self) -> &str {
        &self.id
    }
    fn created_at(&self) -> &str {
        &self.created_at
    }
}

/// What to do about an outstanding intent, given the cloud objects that carry its name.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // short-lived, never stored in bulk
pub enum Resolution<T = TrafficMirrorSession> {
    /// Exactly one object was created after the intent and matches the spec: it is ours.
    Adopt(T),
    /// Nothing found yet, but the cloud may be eventually consistent: look again later.
    WaitForConsistency,
    /// Nothing found after the bounded wait: the create never happened; safe to create again.
    CreateAgain,
    /// Same-named objects exist that this object cannot prove it created: a person must decide.
    Conflict(String),
}

/// Decides what an outstanding session intent means. `found` are the cloud sessions named
/// `intent.name`; see [`resolve_created`].
pub fn resolve(
    intent: &CreateIntent,
    identity: &Identity,
    found: &[TrafficMirrorSession],
    now: DateTime<Utc>,
    window: Duration,
    skew: Duration,
) -> Resolution {
    let ours = |s: &TrafficMirrorSession| identity.matches(&intent.name, s);
    resolve_created(intent, found, ours, now, window, skew)
}

/// Decides what an outstanding intent means, for any kind. `found` are the cloud objects named
/// `intent.name`; `ours` says whether one has the identity the create asked for; `window` is how long
/// after the intent a missing object may still appear (eventual consistency); `skew` is how far the
/// cloud's clock may lag ours (an object stamped up to `skew` before the intent still counts as created
/// after it).
pub fn resolve_created<T: Created>(
    intent: &CreateIntent,
    found: &[T],
    ours: impl Fn(&T) -> bool,
    now: DateTime<Utc>,
    window: Duration,
    skew: Duration,
) -> Resolution<T> {
    let (after, before): (Vec<&T>, Vec<&T>) = found
        .iter()
        .partition(|s| parse_cloud_time(s.created_at()).is_some_and(|t| t >= intent.at - skew));
    let matching: Vec<&T> = after.iter().copied().filter(|s| ours(s)).collect();
    match (matching.len(), after.len(), before.len()) {
        (1, 1, 0) => Resolution::Adopt(matching[0].clone()),
        (0, 0, 0) if now - intent.at < window => Resolution::WaitForConsistency,
        (0, 0, 0) => Resolution::CreateAgain,
        _ => Resolution::Conflict(conflict_message(&intent.name, found)),
    }
}

/// Decides whether a create may go ahead when no intent is outstanding: any object already using the
/// name was not created by this object and must not be taken over silently.
pub fn precreate_check<T: Created>(name: &str, found: &[T]) -> Result<(), String> {
    if found.is_empty() {
        Ok(())
    } else {
        Err(conflict_message(name, found))
    }
}

fn conflict_message<T: Created>(name: &str, found: &[T]) -> String {
    let ids: Vec<&str> = found.iter().map(|s| s.id()).collect();
    format!(
        "{}(s) named {name:?} already exist ({}) and were not created by this object; \
         set {} to adopt one, or set spec.name to a different name. {DEFAULT_NAME_NOTE}",
        T::NOUN,
        ids.join(", "),
        T::ADOPT_FIELD,
    )
}

/// Why two objects can want one cloud name without anyone writing `spec.name`.
const DEFAULT_NAME_NOTE: &str = "The cloud name defaults to metadata.name, so the same manifest \
    applied in two namespaces needs its own spec.name in each";

/// A rename is checked like a create: the cloud object `id` may take the name `to` only when no
/// other cloud object (another object's, or one made outside Kubernetes) has it; `found` are the
/// cloud objects named `to`. Otherwise nothing is renamed and the message says what holds the name.
pub fn rename_check<T: Created>(id: &str, from: &str, to: &str, found: &[T]) -> Result<(), String> {
    let holders: Vec<&str> = found.iter().map(|s| s.id()).filter(|h| *h != id).collect();
    if holders.is_empty() {
        return Ok(());
    }
    Err(format!(
        "spec.name {to:?} is already the name of {} {} (another object's, or made outside \
         Kubernetes): {id} keeps the name {from:?} and is not renamed. Choose another spec.name, or \
         set it back. {DEFAULT_NAME_NOTE}",
        T::NOUN,
        holders.join(", "),
    ))
}

/// Parses the cloud's `YYYY-MM-DDThh:mm:ssZ` (and tolerates full RFC 3339).
pub fn parse_cloud_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%SZ")
                .ok()
                .map(|n| n.and_utc())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::session::plan::created_from;
    use chrono::TimeZone;

    fn at(sec: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + sec, 0).single().unwrap()
    }

    fn desired() -> DesiredSession {
        DesiredSession {
            name: "tap".into(),
            description: String::new(),
            traffic_mirror_filter_id: "f1".into(),
            traffic_mirror_sources: ["eni-1".to_string()].into(),
            traffic_mirror_target_id: "t1".into(),
            traffic_mirror_target_type: "eni".into(),
            virtual_network_id: 1,
            packet_length: 96,
            priority: 1,
            enabled: false,
            source_type: "eni".into(),
        }
    }

    fn session(id: &str, created: i64) -> TrafficMirrorSession {
        let mut s = created_from(&desired().create_request(), id);
        s.created_at = at(created).format("%Y-%m-%dT%H:%M:%SZ").to_string();
        s
    }

    fn intent() -> CreateIntent {
        CreateIntent::new("tap", at(100))
    }

    const WINDOW: i64 = 30;

    fn run(found: &[TrafficMirrorSession], now: i64) -> Resolution {
        resolve(
            &intent(),
            &Identity::of(&desired()),
            found,
            at(now),
            Duration::seconds(WINDOW),
            Duration::zero(),
        )
    }

    #[test]
    fn adopts_the_one_created_after_the_intent() {
        let s = session("s1", 101);
        assert_eq!(run(std::slice::from_ref(&s), 105), Resolution::Adopt(s));
        // Created in the same second as the intent counts as after.
        let s = session("s1", 100);
        assert_eq!(run(std::slice::from_ref(&s), 105), Resolution::Adopt(s));
    }

    #[test]
    fn waits_then_creates_again_when_nothing_appears() {
        assert_eq!(run(&[], 110), Resolution::WaitForConsistency);
        assert_eq!(run(&[], 100 + WINDOW), Resolution::CreateAgain);
    }

    #[test]
    fn older_same_named_session_is_a_conflict() {
        assert!(matches!(
            run(&[session("old", 50)], 105),
            Resolution::Conflict(_)
        ));
        assert!(matches!(
            run(&[session("old", 50), session("new", 101)], 105),
            Resolution::Conflict(_)
        ));
    }

    #[test]
    fn clock_skew_is_tolerated() {
        let s = session("s1", 95);
        let r = resolve(
            &intent(),
            &Identity::of(&desired()),
            std::slice::from_ref(&s),
            at(105),
            Duration::seconds(WINDOW),
            Duration::seconds(10),
        );
        assert_eq!(r, Resolution::Adopt(s));
    }

    #[test]
    fn two_candidates_are_a_conflict() {
        assert!(matches!(
            run(&[session("a", 101), session("b", 102)], 105),
            Resolution::Conflict(_)
        ));
    }

    #[test]
    fn a_newer_session_with_other_identity_is_a_conflict() {
        let mut s = session("x", 101);
        s.traffic_mirror_target_id = "someone-else".into();
        assert!(matches!(run(&[s], 105), Resolution::Conflict(_)));
    }

    #[test]
    fn scalar_drift_does_not_prevent_adoption() {
        let mut s = session("s1", 101);
        s.priority = 7;
        assert_eq!(run(std::slice::from_ref(&s), 105), Resolution::Adopt(s));
    }

    #[test]
    fn intent_round_trips_and_truncates_to_seconds() {
        let now = at(5) + Duration::milliseconds(700);
        let i = CreateIntent::new("tap", now);
        assert_eq!(i.at, at(5));
        assert_eq!(CreateIntent::parse(&i.to_annotation()), Some(i));
        assert_eq!(CreateIntent::parse("garbage"), None);
    }

    #[test]
    fn the_recorded_identity_wins_over_a_spec_edited_after_the_post() {
        // The POST sent f1/t1 (recorded with the intent); the spec now says f2/t2.
        let s = session("s1", 101);
        let recorded = Identity {
            filter_id: Some("f1".into()),
            target_id: "t1".into(),
        };
        let i = intent().with_identity(&recorded);
        let round_trip = CreateIntent::parse(&i.to_annotation()).expect("parses");
        assert_eq!(round_trip.identity(), Some(recorded.clone()));
        let edited = Identity {
            filter_id: Some("f2".into()),
            target_id: "t2".into(),
        };
        let resolve_with = |id: &Identity| {
            let found = std::slice::from_ref(&s);
            resolve(
                &i,
                id,
                found,
                at(105),
                Duration::seconds(WINDOW),
                Duration::zero(),
            )
        };
        assert!(matches!(resolve_with(&edited), Resolution::Conflict(_)));
        let chosen = i.identity().unwrap_or(edited);
        assert_eq!(resolve_with(&chosen), Resolution::Adopt(s.clone()));
        // An intent without one (older annotation) falls back to the caller's.
        assert_eq!(intent().identity(), None);
    }

    #[test]
    fn an_unknown_filter_is_not_compared() {
        let mut s = session("s1", 101);
        s.traffic_mirror_filter_id = "f-gone".into();
        let id = Identity {
            filter_id: None,
            target_id: "t1".into(),
        };
        let r = resolve(
            &intent(),
            &id,
            std::slice::from_ref(&s),
            at(105),
            Duration::seconds(WINDOW),
            Duration::zero(),
        );
        assert_eq!(r, Resolution::Adopt(s));
    }

    #[test]
    fn a_damaged_annotation_is_an_intent_of_unknown_age_not_none() {
        assert_eq!(outstanding(None, "tap", at(0)), None);
        let good = CreateIntent::new("old-name", at(50));
        assert_eq!(
            outstanding(Some(&good.to_annotation()), "tap", at(0)),
            Some(good)
        );
        let damaged = outstanding(Some("{not json"), "tap", at(7)).expect("an intent");
        assert_eq!((damaged.name.as_str(), damaged.at), ("tap", at(7)));
    }

    #[test]
    fn precreate_refuses_existing_names() {
        assert!(precreate_check::<TrafficMirrorSession>("tap", &[]).is_ok());
        let err = precreate_check("tap", &[session("old", 1)]).unwrap_err();
        assert!(err.contains("old") && err.contains("spec.sessionId"));
    }

    #[test]
    fn parses_cloud_times() {
        assert_eq!(
            parse_cloud_time("2023-03-23T10:53:12Z")
                .unwrap()
                .timestamp(),
            1679568792
        );
        assert!(parse_cloud_time("2023-03-23T10:53:12.5+00:00").is_some());
        assert!(parse_cloud_time("yesterday").is_none());
    }

    #[test]
    fn an_intent_is_settled_only_by_a_status_naming_an_object_created_after_it() {
        let at = Utc.with_ymd_and_hms(2026, 12, 7, 20, 0, 0).unwrap();
        let mut intent = CreateIntent::new("s", at);
        intent.at = at;
        let rec = |id, observed, created| RecordedCreate {
            id,
            observed_id: observed,
            observed_created_at: created,
        };
        let table = [
            // the create's own status: settled
            (
                rec(Some("a"), Some("a"), Some("2026-12-07T20:00:00Z")),
                true,
            ),
            (
                rec(Some("a"), Some("a"), Some("2026-12-07T20:00:05Z")),
                true,
            ),
            // a status that still names the vanished object of a re-create: not settled
            (
                rec(Some("a"), Some("a"), Some("2026-12-07T19:59:59Z")),
                false,
            ),
            // restored without status, or an id without its observation: not settled
            (rec(None, None, None), false),
            (rec(Some("a"), None, None), false),
            (rec(Some(""), Some(""), Some("2026-12-07T20:00:05Z")), false),
            (
                rec(Some("a"), Some("b"), Some("2026-12-07T20:00:05Z")),
                false,
            ),
            (rec(Some("a"), Some("a"), Some("garbage")), false),
        ];
        for (recorded, want) in table {
            assert_eq!(settled_by_status(&intent, recorded), want, "{recorded:?}");
        }
    }
}
