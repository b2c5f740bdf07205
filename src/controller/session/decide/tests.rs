//! The decision table: every branch of `decide`, cleanup included.

use chrono::TimeZone;

use super::*;
use crate::controller::driver::KindStep;
use crate::controller::session::plan::created_from;
use crate::controller::wait::NextLook;

/// The driver's status checks ([`crate::controller::driver::status::checks`]) with this kind's steps:
/// the conditions after each outcome, a failed delete's way out, and the `Creating` status.
#[test]
fn the_driver_status_checks_hold_for_this_kind() {
    use crate::api::TrafficMirrorSession;
    use crate::controller::conditions::reason;
    use crate::controller::driver::status::checks;
    checks::reconciling_or_stalled_per_outcome::<TrafficMirrorSession>(
        Step::Wait,
        Step::Conflict("taken".into()),
        reason::SESSION_NOT_FOUND,
    );
    checks::a_failed_delete_names_the_orphan_way_out::<TrafficMirrorSession>(Step::Delete(vec![
        "s-1".into(),
    ]));
    checks::a_create_in_progress_says_creating::<TrafficMirrorSession>();
}

fn at(sec: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + sec, 0)
        .single()
        .expect("valid time")
}

fn spec(extra: serde_json::Value) -> TrafficMirrorSessionSpec {
    let mut v = serde_json::json!({
        "trafficMirrorFilterId": "f1",
        "trafficMirrorSources": ["eni-a"],
        "trafficMirrorTargetId": "t1",
        "trafficMirrorTargetType": "eni",
        "priority": 10,
        "providerConfigRef": {"name": "pc"},
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    serde_json::from_value(v).expect("spec")
}

fn desired(extra: serde_json::Value) -> Desired {
    Desired {
        object_name: "tap".into(),
        spec: spec(extra),
        deleting: false,
        known_id: None,
        confirm_window: Duration::seconds(30),
    }
}

fn with_id(mut d: Desired, id: &str) -> Desired {
    d.known_id = Some(id.into());
    d
}

fn deleting(mut d: Desired) -> Desired {
    d.deleting = true;
    d
}

fn observed() -> Observed {
    Observed {
        provider_unavailable: None,
        filter: FilterState::Id("f1".into()),
        cloud: CloudState::NotRead,
        intent: None,
        named: vec![],
        namesakes: vec![],
        claimed_by: None,
        now: at(105),
    }
}

/// The cloud session the spec describes, created at `created`.
fn session(id: &str, created: i64) -> CloudSession {
    let mut s = created_from(
        &desired(serde_json::json!({}))
            .session("f1".into())
            .create_request(),
        id,
    );
    s.created_at = at(created).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    s
}

fn intent_at(sec: i64) -> Option<CreateIntent> {
    Some(CreateIntent {
        token: "tok".into(),
        name: "tap".into(),
        at: at(sec),
        filter_id: None,
        target_id: None,
    })
}

/// A short name of the step (with the detail that matters) for the table.
fn kind(step: &Step) -> String {
    match step {
        Step::Wait(w) => format!("Wait({})", w.reason),
        Step::Create { replacing, .. } => format!("Create(replacing={replacing:?})"),
        Step::Adopt { found, .. } => format!("Adopt({})", found.id),
        Step::Converge { convergence, .. } => format!("Converge(empty={})", convergence.is_empty()),
        Step::ReportDrift { fields, .. } => format!("ReportDrift({})", fields.join(",")),
        Step::Conflict(_) => "Conflict".into(),
        Step::Delete(ids) => format!("Delete({})", ids.join(",")),
        Step::Release { orphaned } => format!("Release({orphaned:?})"),
    }
}

/// The objects and observations the table rows are made of.
struct Fixtures {
    none: serde_json::Value,
    observe_only: serde_json::Value,
    orphan: serde_json::Value,
    adopted: serde_json::Value,
    not_ready: Observed,
    gone: Observed,
    drifted: CloudSession,
}

fn fixtures() -> Fixtures {
    let mut drifted = session("s1", 1);
    drifted.priority = 7;
    Fixtures {
        none: serde_json::json!({}),
        observe_only: serde_json::json!({"managementPolicy": "ObserveOnly", "sessionId": "s1"}),
        orphan: serde_json::json!({"deletionPolicy": "Orphan"}),
        adopted: serde_json::json!({"sessionId": "s1"}),
        not_ready: Observed {
            provider_unavailable: Some(Unavailable::Missing),
            filter: FilterState::NotRead,
            ..observed()
        },
        gone: Observed {
            cloud: CloudState::Gone,
            ..observed()
        },
        drifted,
    }
}

fn present(s: CloudSession) -> Observed {
    Observed {
        cloud: CloudState::Present(s),
        ..observed()
    }
}

fn named(found: Vec<CloudSession>, intent: Option<CreateIntent>) -> Observed {
    Observed {
        named: found,
        intent,
        ..observed()
    }
}

type Row = (&'static str, Desired, Observed, &'static str);

fn check(rows: Vec<Row>) {
    for (name, d, o, want) in rows {
        assert_eq!(kind(&decide(&d, &o)), want, "case {name:?}");
    }
}

#[test]
fn apply_waits_for_what_it_needs() {
    let f = fixtures();
    check(vec![
        (
            "provider not ready",
            desired(f.none.clone()),
            f.not_ready.clone(),
            "Wait(ProviderConfigNotReady)",
        ),
        (
            "observe only without id",
            Desired {
                known_id: None,
                ..desired(f.observe_only.clone())
            },
            observed(),
            "Wait(SessionIdRequired)",
        ),
        (
            "observe only, gone",
            with_id(desired(f.observe_only.clone()), "s1"),
            f.gone.clone(),
            "Wait(SessionNotFound)",
        ),
        (
            "filter not ready",
            desired(f.none.clone()),
            Observed {
                filter: FilterState::NotReady("no id".into()),
                ..observed()
            },
            "Wait(FilterNotReady)",
        ),
        (
            "spec id gone",
            with_id(desired(f.adopted), "s1"),
            f.gone.clone(),
            "Wait(SessionNotFound)",
        ),
    ]);
}

#[test]
fn observe_only_reports() {
    let f = fixtures();
    check(vec![
        (
            "observe only, in sync",
            with_id(desired(f.observe_only.clone()), "s1"),
            present(session("s1", 1)),
            "ReportDrift()",
        ),
        (
            "observe only, drifted",
            with_id(desired(f.observe_only.clone()), "s1"),
            present(f.drifted.clone()),
            "ReportDrift(spec.priority)",
        ),
    ]);
}

#[test]
fn apply_converges_or_creates() {
    let f = fixtures();
    check(vec![
        (
            "in sync",
            with_id(desired(f.none.clone()), "s1"),
            present(session("s1", 1)),
            "Converge(empty=true)",
        ),
        (
            "drifted",
            with_id(desired(f.none.clone()), "s1"),
            present(f.drifted),
            "Converge(empty=false)",
        ),
        (
            "own id vanished",
            with_id(desired(f.none.clone()), "s1"),
            f.gone,
            "Create(replacing=Some(\"s1\"))",
        ),
        (
            "new object",
            desired(f.none.clone()),
            observed(),
            "Create(replacing=None)",
        ),
        (
            "name taken",
            desired(f.none.clone()),
            named(vec![session("x", -500)], None),
            "Conflict",
        ),
    ]);
}

#[test]
fn an_intent_is_resolved_before_creating() {
    let f = fixtures();
    check(vec![
        (
            "intent, found",
            desired(f.none.clone()),
            named(vec![session("s9", 101)], intent_at(100)),
            "Adopt(s9)",
        ),
        (
            "intent, not yet",
            desired(f.none.clone()),
            named(vec![], intent_at(100)),
            "Wait(Creating)",
        ),
        (
            "intent, never made",
            desired(f.none.clone()),
            named(vec![], intent_at(0)),
            "Create(replacing=None)",
        ),
        (
            "intent, older same name",
            desired(f.none.clone()),
            named(vec![session("x", -500)], intent_at(100)),
            "Conflict",
        ),
    ]);
}

#[test]
fn cleanup_releases_what_is_not_in_the_cloud() {
    let f = fixtures();
    check(vec![
        (
            "orphan",
            deleting(with_id(desired(f.orphan.clone()), "s1")),
            f.not_ready.clone(),
            "Release(Some(\"s1\"))",
        ),
        (
            "observe only",
            deleting(with_id(desired(f.observe_only), "s1")),
            f.not_ready.clone(),
            "Release(Some(\"s1\"))",
        ),
        (
            "nothing in the cloud, no provider",
            deleting(desired(f.none.clone())),
            f.not_ready.clone(),
            "Release(None)",
        ),
        (
            "intent, not yet",
            deleting(desired(f.none.clone())),
            named(vec![], intent_at(100)),
            "Wait(Deleting)",
        ),
    ]);
}

#[test]
fn cleanup_waits_or_deletes() {
    let f = fixtures();
    check(vec![
        (
            "id, no provider",
            deleting(with_id(desired(f.none.clone()), "s1")),
            f.not_ready.clone(),
            "Wait(ProviderConfigNotReady)",
        ),
        (
            "intent, no provider",
            deleting(desired(f.none.clone())),
            Observed {
                intent: intent_at(100),
                ..f.not_ready.clone()
            },
            "Wait(ProviderConfigNotReady)",
        ),
        (
            "id",
            deleting(with_id(desired(f.none.clone()), "s1")),
            observed(),
            "Delete(s1)",
        ),
        (
            "intent, found",
            deleting(desired(f.none.clone())),
            named(vec![session("s9", 101)], intent_at(100)),
            "Delete(s9)",
        ),
        (
            "id and an intent's other session",
            deleting(with_id(desired(f.none.clone()), "s1")),
            named(vec![session("s9", 101)], intent_at(100)),
            "Delete(s1,s9)",
        ),
        (
            "intent, never made",
            deleting(desired(f.none.clone())),
            named(vec![], intent_at(0)),
            "Release(None)",
        ),
        (
            "intent, conflict",
            deleting(desired(f.none.clone())),
            named(vec![session("x", -500)], intent_at(100)),
            "Wait(NameConflict)",
        ),
    ]);
}

#[test]
fn a_namesake_made_out_of_band_is_a_conflict_not_a_takeover() {
    let d = with_id(desired(serde_json::json!({})), "s1");
    let o = Observed {
        cloud: CloudState::Present(session("s1", 1)),
        namesakes: vec![session("theirs", 2)],
        ..observed()
    };
    let Step::Conflict(m) = decide(&d, &o) else {
        panic!("expected a conflict");
    };
    assert!(m.contains("s1") && m.contains("theirs"), "{m}");
}

#[test]
fn an_unknown_filter_does_not_stop_cleanup_from_finding_the_session() {
    let d = deleting(desired(serde_json::json!({})));
    let o = Observed {
        filter: FilterState::NotRead,
        named: vec![session("s9", 101)],
        intent: intent_at(100),
        ..observed()
    };
    assert_eq!(decide(&d, &o), Step::Delete(vec!["s9".into()]));
}

#[test]
fn waits_during_deletion_say_how_to_get_out() {
    let d = deleting(with_id(desired(serde_json::json!({})), "s1"));
    let o = Observed {
        provider_unavailable: Some(Unavailable::Missing),
        ..observed()
    };
    let Step::Wait(w) = decide(&d, &o) else {
        panic!("expected a wait");
    };
    assert!(
        w.message.contains("restore the ProviderConfig")
            && w.message.contains("deletionPolicy: Orphan"),
        "{}",
        w.message
    );
    let d = deleting(desired(serde_json::json!({})));
    let o = Observed {
        named: vec![session("x", -500)],
        intent: intent_at(100),
        ..observed()
    };
    let Step::Wait(w) = decide(&d, &o) else {
        panic!("expected a wait");
    };
    assert!(
        w.message.contains("deletionPolicy: Orphan"),
        "{}",
        w.message
    );
    assert_eq!(w.retry, Retry::OnChange);
}

#[test]
fn adoption_converges_to_the_current_spec() {
    let d = desired(serde_json::json!({"priority": 20}));
    let o = Observed {
        named: vec![session("s9", 101)],
        intent: intent_at(100),
        ..observed()
    };
    let Step::Adopt { convergence, .. } = decide(&d, &o) else {
        panic!("expected adoption");
    };
    assert_eq!(convergence.update.and_then(|u| u.priority), Some(20));
}

#[test]
fn a_filter_that_is_not_known_yet_is_waited_for() {
    let d = desired(serde_json::json!({}));
    let o = Observed {
        filter: FilterState::NotRead,
        ..observed()
    };
    let Step::Wait(w) = decide(&d, &o) else {
        panic!("expected a wait");
    };
    assert_eq!(
        (w.reason, w.retry),
        (reason::FILTER_NOT_READY, Retry::Dependency)
    );
    assert!(w.message.contains("not known yet"), "{}", w.message);
}

#[test]
fn observe_only_compares_the_filter_it_can_resolve() {
    let f = fixtures();
    let observe = with_id(desired(f.observe_only), "s1");
    check(vec![
        (
            "filter unresolved: the cloud's filter is not drift",
            observe.clone(),
            Observed {
                filter: FilterState::NotReady("gone".into()),
                ..present(session("s1", 1))
            },
            "ReportDrift()",
        ),
        (
            "filter resolved to another id: drift",
            observe,
            Observed {
                filter: FilterState::Id("f2".into()),
                ..present(session("s1", 1))
            },
            "ReportDrift(spec.trafficMirrorFilterId)",
        ),
    ]);
}

/// An intent that recorded what its POST sent (filter `f0`), while the spec now says `f1`.
fn intent_recording_f0() -> Option<CreateIntent> {
    intent_at(100).map(|i| CreateIntent {
        filter_id: Some("f0".into()),
        target_id: Some("t1".into()),
        ..i
    })
}

fn session_on(id: &str, filter: &str) -> CloudSession {
    CloudSession {
        traffic_mirror_filter_id: filter.into(),
        ..session(id, 101)
    }
}

#[test]
fn the_identity_the_post_sent_wins_over_the_spec() {
    let f = fixtures();
    check(vec![
        (
            "create: the recorded filter's session is ours",
            desired(f.none.clone()),
            named(vec![session_on("s9", "f0")], intent_recording_f0()),
            "Adopt(s9)",
        ),
        (
            "create: the spec's filter does not match what was sent",
            desired(f.none.clone()),
            named(vec![session_on("s9", "f1")], intent_recording_f0()),
            "Conflict",
        ),
        (
            "cleanup: the recorded filter's session is deleted",
            deleting(desired(f.none.clone())),
            named(vec![session_on("s9", "f0")], intent_recording_f0()),
            "Delete(s9)",
        ),
        (
            "own id vanished, an older intent never made it: replaced",
            with_id(desired(f.none), "s1"),
            Observed {
                intent: intent_at(0),
                ..f.gone
            },
            "Create(replacing=Some(\"s1\"))",
        ),
    ]);
}

#[test]
fn cleanup_with_an_id_and_an_intent() {
    let f = fixtures();
    let d = deleting(with_id(desired(f.none.clone()), "s1"));
    check(vec![
        (
            "the intent's session is the known one",
            d.clone(),
            named(vec![session("s1", 101)], intent_at(100)),
            "Delete(s1)",
        ),
        (
            "the intent never made anything",
            d.clone(),
            named(vec![], intent_at(0)),
            "Delete(s1)",
        ),
        (
            "the intent's session may still appear",
            d.clone(),
            named(vec![], intent_at(100)),
            "Wait(Deleting)",
        ),
        (
            "the intent is ambiguous",
            d,
            named(vec![session("x", -500)], intent_at(100)),
            "Wait(NameConflict)",
        ),
        (
            "observe only, intent and nothing ready",
            deleting(desired(f.observe_only)),
            Observed {
                intent: intent_at(100),
                ..f.not_ready
            },
            "Release(None)",
        ),
    ]);
}

#[test]
fn each_step_says_when_to_look_again() {
    let s = session("s1", 1);
    let d = desired(serde_json::json!({})).session("f1".into());
    let wait = |retry| {
        Step::Wait(Wait {
            reason: reason::CREATING,
            message: String::new(),
            retry,
        })
    };
    let rows = [
        (wait(Retry::Soon), NextLook::Wait(Retry::Soon)),
        (wait(Retry::OnChange), NextLook::Wait(Retry::OnChange)),
        (Step::Conflict("x".into()), NextLook::OnChange),
        (Step::Delete(vec!["s1".into()]), NextLook::Released),
        (Step::Release { orphaned: None }, NextLook::Released),
        (
            Step::Create {
                desired: d.clone(),
                replacing: None,
            },
            NextLook::Settled,
        ),
        (
            Step::Adopt {
                convergence: plan::convergence(&d, &s),
                desired: d.clone(),
                found: s.clone(),
            },
            NextLook::Settled,
        ),
        (
            Step::Converge {
                convergence: plan::convergence(&d, &s),
                desired: d,
                observed: s.clone(),
            },
            NextLook::Settled,
        ),
        (
            Step::ReportDrift {
                observed: s,
                fields: vec![],
            },
            NextLook::Settled,
        ),
    ];
    for (step, want) in rows {
        assert_eq!(step.next_look(), want, "{}", kind(&step));
    }
}

/// `o` where the older object `ns/old` already manages the cloud session.
fn claimed(o: Observed) -> Observed {
    Observed {
        claimed_by: Some("ns/old".into()),
        ..o
    }
}

#[test]
fn a_session_another_object_manages_is_never_written_nor_deleted() {
    let f = fixtures();
    let adopted = || with_id(desired(f.adopted.clone()), "s1");
    check(vec![
        (
            "adopted, in sync",
            adopted(),
            claimed(present(session("s1", 1))),
            "Wait(AlreadyManaged)",
        ),
        (
            "adopted, drifted (would PUT)",
            adopted(),
            claimed(present(f.drifted.clone())),
            "Wait(AlreadyManaged)",
        ),
        (
            "not read (observe reads nothing)",
            adopted(),
            claimed(observed()),
            "Wait(AlreadyManaged)",
        ),
        (
            "provider not ready as well",
            adopted(),
            claimed(f.not_ready.clone()),
            "Wait(AlreadyManaged)",
        ),
        (
            "deleting: released, the cloud session stays",
            deleting(adopted()),
            claimed(observed()),
            "Release(Some(\"s1\"))",
        ),
        (
            "deleting without a provider: released all the same",
            deleting(adopted()),
            claimed(f.not_ready.clone()),
            "Release(Some(\"s1\"))",
        ),
        (
            "not claimed: converges as before",
            adopted(),
            present(f.drifted.clone()),
            "Converge(empty=false)",
        ),
    ]);
}

#[test]
fn already_managed_names_the_other_session_and_the_ways_out() {
    let d = with_id(desired(fixtures().adopted), "s1");
    let Step::Wait(w) = decide(&d, &claimed(present(session("s1", 1)))) else {
        panic!("expected a wait");
    };
    assert_eq!(w.retry, Retry::Resync);
    for part in [
        "cloud session s1",
        "ns/old",
        "Delete this object",
        "ObserveOnly",
        "spec.sessionId",
    ] {
        assert!(w.message.contains(part), "{part}: {}", w.message);
    }
}

/// A session object that created (or adopted) `s1` and records it, whose spec now names `s3`.
fn mismatched(extra: serde_json::Value) -> Desired {
    let mut d = with_id(desired(extra), "s1");
    d.spec.session_id = Some("s3".into());
    d
}

#[test]
fn a_spec_id_other_than_the_recorded_one_is_refused_and_never_deleted() {
    let f = fixtures();
    check(vec![
        (
            "recorded s1, spec s3: nothing written",
            mismatched(f.none.clone()),
            present(f.drifted.clone()),
            "Wait(IdMismatch)",
        ),
        (
            "not read (observe reads nothing)",
            mismatched(f.none.clone()),
            observed(),
            "Wait(IdMismatch)",
        ),
        (
            "even when another object claims s1",
            mismatched(f.none.clone()),
            claimed(observed()),
            "Wait(IdMismatch)",
        ),
        (
            "spec equal to the recorded id: converges",
            with_id(desired(f.adopted.clone()), "s1"),
            present(f.drifted.clone()),
            "Converge(empty=false)",
        ),
        (
            "deleting: the recorded session is deleted, never the spec's",
            deleting(mismatched(f.none.clone())),
            observed(),
            "Delete(s1)",
        ),
        (
            "deleting with Orphan: the recorded session stays",
            deleting(mismatched(f.orphan.clone())),
            observed(),
            "Release(Some(\"s1\"))",
        ),
    ]);
    let Step::Wait(w) = decide(&mismatched(f.none), &observed()) else {
        panic!("expected a wait");
    };
    assert_eq!(w.retry, Retry::OnChange);
    for part in ["spec.sessionId s3", "s1", "Delete this object", "Orphan"] {
        assert!(w.message.contains(part), "{part}: {}", w.message);
    }
}

/// `s1` as observed under its old name, and what the search for the new name found.
fn renamed_onto(found: Vec<CloudSession>) -> Observed {
    let mut s = session("s1", 1);
    s.name = "old-name".into();
    Observed {
        named: found,
        ..present(s)
    }
}

fn holder(id: &str) -> CloudSession {
    session(id, 2) // named "tap", like the desired name
}

#[test]
fn a_rename_is_checked_like_a_create() {
    let d = || with_id(desired(serde_json::json!({})), "s1");
    check(vec![
        (
            "the new name is free: one PUT",
            d(),
            renamed_onto(vec![]),
            "Converge(empty=false)",
        ),
        (
            "the new name is taken: refused, no PUT",
            d(),
            renamed_onto(vec![holder("s9")]),
            "Conflict",
        ),
        (
            "only itself under the name (a retried PUT)",
            d(),
            renamed_onto(vec![holder("s1")]),
            "Converge(empty=false)",
        ),
    ]);
    let Step::Conflict(m) = decide(&d(), &renamed_onto(vec![holder("s9")])) else {
        panic!("expected a conflict");
    };
    for part in [
        "\"tap\"",
        "s9",
        "\"old-name\"",
        "metadata.name",
        "spec.name",
    ] {
        assert!(m.contains(part), "{part}: {m}");
    }
}

#[test]
fn a_filter_being_deleted_keeps_serving_its_sessions() {
    let f = fixtures();
    let deleting_filter = |o: Observed| Observed {
        filter: FilterState::Deleting {
            id: "f1".into(),
            filter: "web".into(),
        },
        ..o
    };
    check(vec![
        (
            "in sync",
            with_id(desired(f.none.clone()), "s1"),
            deleting_filter(present(session("s1", 1))),
            "Converge(empty=true)",
        ),
        (
            "an edit is applied",
            with_id(desired(f.none.clone()), "s1"),
            deleting_filter(present(f.drifted.clone())),
            "Converge(empty=false)",
        ),
    ]);
}
