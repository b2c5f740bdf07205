//! The filter decision table: every branch, cleanup included.

use chrono::TimeZone;

use super::*;
use crate::controller::driver::KindStep;
use crate::controller::wait::NextLook;

/// The driver's status checks ([`crate::controller::driver::status::checks`]) with this kind's steps:
/// the conditions after each outcome, a failed delete's way out, and the `Creating` status.
#[test]
fn the_driver_status_checks_hold_for_this_kind() {
    use crate::api::TrafficMirrorFilter;
    use crate::controller::conditions::reason;
    use crate::controller::driver::status::checks;
    checks::reconciling_or_stalled_per_outcome::<TrafficMirrorFilter>(
        Step::Wait,
        Step::Conflict("taken".into()),
        reason::FILTER_NOT_FOUND,
    );
    checks::a_failed_delete_names_the_orphan_way_out::<TrafficMirrorFilter>(Step::Delete(vec![
        "f-1".into(),
    ]));
    checks::a_create_in_progress_says_creating::<TrafficMirrorFilter>();
}

fn at(sec: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + sec, 0)
        .single()
        .expect("valid time")
}

fn desired(extra: serde_json::Value) -> Desired {
    let mut v = serde_json::json!({
        "rules": [{"direction": "ingress", "priority": 10, "protocol": "TCP", "ethertype": "IPv4",
                   "action": "accept", "sourceCidrBlock": "10.0.0.0/8"}],
        "providerConfigRef": {"name": "pc"},
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    Desired {
        object_name: "flt".into(),
        spec: serde_json::from_value(v).expect("spec"),
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
        cloud: CloudState::NotRead,
        intent: None,
        rule_intent: None,
        named: vec![],
        users: vec![],
        refusal: None,
        claimed_by: None,
        now: at(105),
    }
}

/// The cloud filter the spec describes (rules included), created at `created`.
fn cloud(id: &str, created: i64) -> CloudFilter {
    let d = desired(serde_json::json!({})).filter();
    let mut f = CloudFilter {
        id: id.into(),
        name: d.name.clone(),
        created_at: at(created).format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        ..Default::default()
    };
    let rules: Vec<_> = d
        .rules
        .iter()
        .map(|(k, r)| plan::created_rule(&r.create_request(id, *k), &format!("r-{k}")))
        .collect();
    f = plan::with_rules(&f, &rules);
    f
}

fn intent_at(sec: i64) -> Option<CreateIntent> {
    Some(CreateIntent {
        token: "t".into(),
        name: "flt".into(),
        at: at(sec),
        filter_id: None,
        target_id: None,
    })
}

fn kind(step: &Step) -> String {
    match step {
        Step::Wait(w) => format!("Wait({})", w.reason),
        Step::Create { .. } => "Create".into(),
        Step::Adopt { found, .. } => format!("Adopt({})", found.id),
        Step::Converge { calls, .. } => format!(
            "Converge(update={}, rules={})",
            calls.update.is_some(),
            calls.rules.calls().len()
        ),
        Step::ReportDrift { drift, .. } => format!("ReportDrift({drift})"),
        Step::Conflict(_) => "Conflict".into(),
        Step::Delete(ids) => format!("Delete({})", ids.join(",")),
        Step::Release { orphaned } => format!("Release({orphaned:?})"),
    }
}

fn present(f: CloudFilter) -> Observed {
    Observed {
        cloud: CloudState::Present(f),
        ..observed()
    }
}

fn named(found: Vec<CloudFilter>, intent: Option<CreateIntent>) -> Observed {
    Observed {
        named: found,
        intent,
        ..observed()
    }
}

fn check(rows: Vec<(&str, Desired, Observed, &str)>) {
    for (name, d, o, want) in rows {
        assert_eq!(kind(&decide(&d, &o)), want, "case {name:?}");
    }
}

#[test]
fn apply_branches() {
    let none = serde_json::json!({});
    let observe_only = serde_json::json!({"managementPolicy": "ObserveOnly", "filterId": "f1"});
    let no_rules = serde_json::json!({"rules": []});
    let not_ready = Observed {
        provider_unavailable: Some(Unavailable::Missing),
        ..observed()
    };
    let gone = Observed {
        cloud: CloudState::Gone,
        ..observed()
    };
    check(vec![
        (
            "provider not ready",
            desired(none.clone()),
            not_ready,
            "Wait(ProviderConfigNotReady)",
        ),
        (
            "in sync",
            with_id(desired(none.clone()), "f1"),
            present(cloud("f1", 1)),
            "Converge(update=false, rules=0)",
        ),
        (
            "a rule removed from the spec",
            with_id(desired(no_rules.clone()), "f1"),
            present(cloud("f1", 1)),
            "Converge(update=false, rules=1)",
        ),
        (
            "observe only, in sync",
            with_id(desired(observe_only.clone()), "f1"),
            present(cloud("f1", 1)),
            "ReportDrift()",
        ),
        (
            "observe only, drift",
            with_id(
                desired(
                    serde_json::json!({"managementPolicy": "ObserveOnly", "filterId": "f1", "rules": []}),
                ),
                "f1",
            ),
            present(cloud("f1", 1)),
            "ReportDrift(rule ingress/10: not in spec)",
        ),
        (
            "observe only, gone",
            with_id(desired(observe_only), "f1"),
            gone.clone(),
            "Wait(FilterNotFound)",
        ),
        (
            "observe only without a filter id: never a create",
            desired(serde_json::json!({"managementPolicy": "ObserveOnly"})),
            observed(),
            "Wait(FilterIdRequired)",
        ),
    ]);
}

#[test]
fn apply_create_branches() {
    let none = serde_json::json!({});
    let gone = Observed {
        cloud: CloudState::Gone,
        ..observed()
    };
    check(vec![
        (
            "own filter vanished",
            with_id(desired(none.clone()), "f1"),
            gone,
            "Create",
        ),
        ("new", desired(none.clone()), observed(), "Create"),
        (
            "name taken",
            desired(none.clone()),
            named(vec![cloud("x", -500)], None),
            "Conflict",
        ),
        (
            "intent, found",
            desired(none.clone()),
            named(vec![cloud("f9", 101)], intent_at(100)),
            "Adopt(f9)",
        ),
        (
            "intent, not yet",
            desired(none.clone()),
            named(vec![], intent_at(100)),
            "Wait(Creating)",
        ),
        (
            "intent, never made",
            desired(none),
            named(vec![], intent_at(0)),
            "Create",
        ),
    ]);
}

#[test]
fn rule_creates_in_flight_are_confirmed_before_creating_again() {
    let d = with_id(desired(serde_json::json!({})), "f1");
    let mut f = cloud("f1", 1);
    f = plan::with_rules(&f, &[]);
    let ri = |sec| {
        Some(RuleIntent {
            at: at(sec),
            keys: vec!["ingress/10".into()],
        })
    };
    let o = Observed {
        rule_intent: ri(100),
        ..present(f.clone())
    };
    assert_eq!(kind(&decide(&d, &o)), "Wait(Updating)");
    let o = Observed {
        rule_intent: ri(0),
        ..present(f.clone())
    };
    assert_eq!(kind(&decide(&d, &o)), "Converge(update=false, rules=1)");
    let o = Observed {
        rule_intent: ri(100),
        ..present(cloud("f1", 1))
    };
    assert_eq!(
        kind(&decide(&d, &o)),
        "Converge(update=false, rules=0)",
        "found: nothing to create"
    );
}

#[test]
fn cleanup_branches() {
    let none = serde_json::json!({});
    let not_ready = Observed {
        provider_unavailable: Some(Unavailable::Missing),
        ..observed()
    };
    let users = Observed {
        users: vec!["ns/s1".into()],
        ..observed()
    };
    check(vec![
        (
            "orphan",
            deleting(with_id(
                desired(serde_json::json!({"deletionPolicy": "Orphan"})),
                "f1",
            )),
            not_ready.clone(),
            "Release(Some(\"f1\"))",
        ),
        (
            "nothing in the cloud",
            deleting(desired(none.clone())),
            not_ready.clone(),
            "Release(None)",
        ),
        (
            "no provider",
            deleting(with_id(desired(none.clone()), "f1")),
            not_ready,
            "Wait(ProviderConfigNotReady)",
        ),
        (
            "in use",
            deleting(with_id(desired(none.clone()), "f1")),
            users,
            "Wait(InUse)",
        ),
    ]);
}

#[test]
fn cleanup_delete_branches() {
    let none = serde_json::json!({});
    check(vec![
        (
            "id",
            deleting(with_id(desired(none.clone()), "f1")),
            observed(),
            "Delete(f1)",
        ),
        (
            "intent, found",
            deleting(desired(none.clone())),
            named(vec![cloud("f9", 101)], intent_at(100)),
            "Delete(f9)",
        ),
        (
            "intent, not yet",
            deleting(desired(none.clone())),
            named(vec![], intent_at(100)),
            "Wait(Deleting)",
        ),
        (
            "intent, never made",
            deleting(desired(none.clone())),
            named(vec![], intent_at(0)),
            "Release(None)",
        ),
        (
            "intent, conflict",
            deleting(desired(none)),
            named(vec![cloud("x", -500)], intent_at(100)),
            "Wait(NameConflict)",
        ),
    ]);
}

#[test]
fn in_use_names_the_sessions_in_the_way() {
    let users: Vec<String> = (0..7).map(|i| format!("ns/s{i}")).collect();
    let w = in_use(&users);
    assert_eq!(w.reason, "InUse");
    assert!(
        w.message.contains("ns/s0") && w.message.contains("and 2 more"),
        "{}",
        w.message
    );
    assert!(w.message.contains("deletionPolicy: Orphan"));
}

#[test]
fn apply_branches_around_an_id_or_an_intent() {
    let none = serde_json::json!({});
    let adopted = serde_json::json!({"filterId": "f1"});
    check(vec![
        (
            "spec.filterId gone",
            with_id(desired(adopted), "f1"),
            Observed {
                cloud: CloudState::Gone,
                ..observed()
            },
            "Wait(FilterNotFound)",
        ),
        (
            "intent, older same name",
            desired(none.clone()),
            named(vec![cloud("x", -500)], intent_at(100)),
            "Conflict",
        ),
        (
            "intent, two made after it",
            desired(none.clone()),
            named(vec![cloud("f8", 101), cloud("f9", 102)], intent_at(100)),
            "Conflict",
        ),
        (
            "own filter vanished, the intent's filter found",
            with_id(desired(none.clone()), "f1"),
            Observed {
                cloud: CloudState::Gone,
                ..named(vec![cloud("f9", 101)], intent_at(100))
            },
            "Adopt(f9)",
        ),
        (
            "the cloud name drifted: one update",
            with_id(desired(serde_json::json!({"name": "other"})), "f1"),
            present(cloud("f1", 1)),
            "Converge(update=true, rules=0)",
        ),
    ]);
}

#[test]
fn cleanup_releases_or_waits_whatever_else_is_true() {
    let none = serde_json::json!({});
    let users = vec!["ns/s1".to_string()];
    let not_ready_in_use = Observed {
        provider_unavailable: Some(Unavailable::Missing),
        users: users.clone(),
        intent: intent_at(100),
        ..observed()
    };
    check(vec![
        (
            "observe only",
            deleting(with_id(
                desired(serde_json::json!({"managementPolicy": "ObserveOnly", "filterId": "f1"})),
                "f1",
            )),
            not_ready_in_use.clone(),
            "Release(Some(\"f1\"))",
        ),
        (
            "orphan, in use",
            deleting(with_id(
                desired(serde_json::json!({"deletionPolicy": "Orphan"})),
                "f1",
            )),
            not_ready_in_use.clone(),
            "Release(Some(\"f1\"))",
        ),
        (
            "nothing in the cloud, in use, no provider",
            deleting(desired(none.clone())),
            Observed {
                intent: None,
                ..not_ready_in_use.clone()
            },
            "Release(None)",
        ),
        (
            "intent, no provider",
            deleting(desired(none.clone())),
            Observed {
                users: vec![],
                ..not_ready_in_use.clone()
            },
            "Wait(ProviderConfigNotReady)",
        ),
        (
            "in use and no provider: the provider first",
            deleting(with_id(desired(none.clone()), "f1")),
            not_ready_in_use,
            "Wait(ProviderConfigNotReady)",
        ),
        (
            "intent, in use: nothing is resolved or deleted",
            deleting(desired(none)),
            Observed {
                users,
                ..named(vec![cloud("f9", 101)], intent_at(100))
            },
            "Wait(InUse)",
        ),
    ]);
}

#[test]
fn cleanup_with_an_id_and_an_intent() {
    let d = deleting(with_id(desired(serde_json::json!({})), "f1"));
    check(vec![
        (
            "the intent's other filter",
            d.clone(),
            named(vec![cloud("f9", 101)], intent_at(100)),
            "Delete(f1,f9)",
        ),
        (
            "the intent's filter is the known one",
            d.clone(),
            named(vec![cloud("f1", 101)], intent_at(100)),
            "Delete(f1)",
        ),
        (
            "the intent never made anything",
            d.clone(),
            named(vec![], intent_at(0)),
            "Delete(f1)",
        ),
        (
            "the intent's filter may still appear",
            d,
            named(vec![], intent_at(100)),
            "Wait(Deleting)",
        ),
    ]);
}

#[test]
fn cleanup_waits_say_how_to_get_out() {
    let d = deleting(with_id(desired(serde_json::json!({})), "f1"));
    let o = Observed {
        provider_unavailable: Some(Unavailable::Missing),
        ..observed()
    };
    let Step::Wait(w) = decide(&d, &o) else {
        panic!("expected a wait");
    };
    for part in [
        "restore the ProviderConfig",
        "deletionPolicy: Orphan",
        "cloud filter",
    ] {
        assert!(w.message.contains(part), "{part}: {}", w.message);
    }
    let d = deleting(desired(serde_json::json!({})));
    let o = named(vec![cloud("x", -500)], intent_at(100));
    let Step::Wait(w) = decide(&d, &o) else {
        panic!("expected a wait");
    };
    assert_eq!(w.retry, Retry::OnChange);
    assert!(
        w.message.contains("deletionPolicy: Orphan"),
        "{}",
        w.message
    );
}

#[test]
fn each_step_says_when_to_look_again() {
    let d = desired(serde_json::json!({})).filter();
    let f = cloud("f1", 1);
    let wait = |retry| {
        Step::Wait(Wait {
            reason: reason::CREATING,
            message: String::new(),
            retry,
        })
    };
    let rows = [
        (wait(Retry::Dependency), NextLook::Wait(Retry::Dependency)),
        (wait(Retry::Resync), NextLook::Wait(Retry::Resync)),
        (Step::Conflict("x".into()), NextLook::OnChange),
        (Step::Delete(vec!["f1".into()]), NextLook::Released),
        (
            Step::Release {
                orphaned: Some("f1".into()),
            },
            NextLook::Released,
        ),
        (Step::Create { desired: d.clone() }, NextLook::Settled),
        (
            Step::Adopt {
                desired: d.clone(),
                found: f.clone(),
                calls: FilterCalls::default(),
            },
            NextLook::Settled,
        ),
        (
            Step::Converge {
                desired: d.clone(),
                observed: f.clone(),
                calls: FilterCalls::default(),
            },
            NextLook::Settled,
        ),
        (
            Step::ReportDrift {
                drift: Drift::between(&d, &f, &plan::observed_rules(&f)),
                observed: f,
            },
            NextLook::Settled,
        ),
    ];
    for (step, want) in rows {
        assert_eq!(step.next_look(), want, "{}", kind(&step));
    }
}

fn refusal(relisted: bool, seen: &[&str]) -> Option<Refusal> {
    Some(Refusal {
        code: "VPC.1103".into(),
        message: "traffic mirror filter f1 is used by traffic mirror session s9".into(),
        at: at(100),
        users_seen: seen.iter().map(|s| s.to_string()).collect(),
        relisted,
    })
}

#[test]
fn after_a_refusal_the_delete_waits_for_a_relist_or_a_user_gone() {
    let users = |u: &[&str]| u.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let rows: Vec<(&str, Option<Refusal>, Vec<String>, bool)> = vec![
        ("never refused", None, users(&[]), false),
        ("refused, no news", refusal(false, &[]), users(&[]), true),
        ("refused, relisted", refusal(true, &[]), users(&[]), false),
        (
            "a user seen since has gone",
            refusal(false, &["ns/s1"]),
            users(&[]),
            false,
        ),
        (
            "the users seen are still there",
            refusal(false, &["ns/s1"]),
            users(&["ns/s1"]),
            true,
        ),
        (
            "one of two gone",
            refusal(false, &["ns/s1", "ns/s2"]),
            users(&["ns/s2"]),
            false,
        ),
    ];
    for (name, r, now, waits) in rows {
        let w = delete_refused(r.as_ref(), &now);
        assert_eq!(w.is_some(), waits, "case {name:?}");
        if let Some(w) = w {
            assert_eq!(
                (w.reason, w.retry),
                ("InUse", Retry::Resync),
                "case {name:?}"
            );
        }
    }
}

#[test]
#[allow(unused_variables)]
fn cleanup_after_a_refusal() {
    let refused = |r: Option<Refusal>, users: &[&str]| Observed {
        refusal: r,
        users: users.iter().map(|s| s.to_string()).collect(),
        ..observed()
    };
    let d = || deleting(with_id(desired(serde_json::json!({})), "f1"));
    check(vec![
        (
            "refused, no news",
            d(),
            refused(refusal(false, &[]), &[]),
            "Wait(InUse)",
        ),
        (
            "refused, relisted",
            d(),
            refused(refusal(true, &[]), &[]),
            "Delete(f1)",
        ),
        (
            "refused, user gone",
            d(),
            refused(refusal(false, &["ns/s1"]), &[]),
            "Delete(f1)",
        ),
        (
            "refused, relisted, in use",
            d(),
            refused(refusal(true, &[]), &["cloud session s9 (x)"]),
            "Wait(InUse)",
        ),
        (
            "refused, but Orphan",
            deleting(with_id(
                desired(serde_json::json!({"deletionPolicy": "Orphan"})),
                "f1",
            )),
            refused(refusal(false, &[]), &[]),
            "Release(Some(\"f1\"))",
        ),
    ]);
}

#[test]
fn only_a_409_on_the_filter_delete_is_a_refusal() {
    let api = |status: u16, code: &str| CloudError::Api {
        status,
        error_code: code.into(),
        error_msg: "in use by s9".into(),
        request_id: None,
        retry_after: None,
    };
    let cloud = |operation: &'static str, source: CloudError| Error::Cloud { operation, source };
    let rows = vec![
        (
            "409 on delete",
            cloud("delete_filter", api(409, "VPC.1103")),
            true,
        ),
        (
            "409 without a code",
            cloud("delete_filter", api(409, "")),
            true,
        ),
        (
            "500 on delete",
            cloud("delete_filter", api(500, "VPC.0500")),
            false,
        ),
        (
            "409 elsewhere",
            cloud("delete_rule", api(409, "VPC.1103")),
            false,
        ),
        (
            "timeout",
            cloud(
                "delete_filter",
                CloudError::Timeout {
                    message: "t".into(),
                },
            ),
            false,
        ),
    ];
    for (name, e, want) in rows {
        assert_eq!(refusal_of(&e, at(100)).is_some(), want, "case {name:?}");
    }
    let r = refusal_of(&cloud("delete_filter", api(409, "VPC.1103")), at(100)).expect("refusal");
    let w = refused(&r);
    assert_eq!(w.reason, "InUse");
    for part in [
        "VPC.1103",
        "in use by s9",
        "deletionPolicy: Orphan",
        "resync",
    ] {
        assert!(w.message.contains(part), "{part}: {}", w.message);
    }
    let bare = refused(&refusal_of(&cloud("delete_filter", api(409, "")), at(100)).expect("r"));
    assert!(bare.message.contains("HTTP 409:"), "{}", bare.message);
}

/// `observed()` where the older object `ns/old` already manages the cloud filter.
fn claimed(o: Observed) -> Observed {
    Observed {
        claimed_by: Some("ns/old".into()),
        ..o
    }
}

#[test]
fn a_filter_another_object_manages_is_never_written_nor_deleted() {
    let adopt = serde_json::json!({"filterId": "f1"});
    let not_ready = Observed {
        provider_unavailable: Some(Unavailable::Missing),
        ..observed()
    };
    let users = Observed {
        users: vec!["ns/s1".into()],
        ..observed()
    };
    check(vec![
        (
            "adopted, in sync",
            with_id(desired(adopt.clone()), "f1"),
            claimed(present(cloud("f1", 1))),
            "Wait(AlreadyManaged)",
        ),
        (
            "adopted, drifted (would PUT)",
            with_id(
                desired(serde_json::json!({"filterId": "f1", "rules": []})),
                "f1",
            ),
            claimed(present(cloud("f1", 1))),
            "Wait(AlreadyManaged)",
        ),
        (
            "not read (observe reads nothing)",
            with_id(desired(adopt.clone()), "f1"),
            claimed(observed()),
            "Wait(AlreadyManaged)",
        ),
        (
            "provider not ready as well",
            with_id(desired(adopt.clone()), "f1"),
            claimed(not_ready.clone()),
            "Wait(AlreadyManaged)",
        ),
        (
            "deleting: released, the cloud filter stays",
            deleting(with_id(desired(adopt.clone()), "f1")),
            claimed(observed()),
            "Release(Some(\"f1\"))",
        ),
        (
            "deleting without a provider: released all the same",
            deleting(with_id(desired(adopt.clone()), "f1")),
            claimed(not_ready),
            "Release(Some(\"f1\"))",
        ),
        (
            "deleting while sessions use it: released, nothing to wait for",
            deleting(with_id(desired(adopt.clone()), "f1")),
            claimed(users),
            "Release(Some(\"f1\"))",
        ),
        (
            "not claimed: converges as before",
            with_id(desired(adopt), "f1"),
            present(cloud("f1", 1)),
            "Converge(update=false, rules=0)",
        ),
    ]);
}

#[test]
fn already_managed_names_the_other_object_and_the_ways_out() {
    let d = with_id(desired(serde_json::json!({"filterId": "f1"})), "f1");
    let Step::Wait(w) = decide(&d, &claimed(present(cloud("f1", 1)))) else {
        panic!("expected a wait");
    };
    assert_eq!(w.retry, Retry::Resync);
    for part in [
        "cloud filter f1",
        "ns/old",
        "Delete this object",
        "ObserveOnly",
        "spec.filterId",
    ] {
        assert!(w.message.contains(part), "{part}: {}", w.message);
    }
}

/// A filter object that created (or adopted) `f1` and records it, whose spec now names `f3`.
fn mismatched(extra: serde_json::Value) -> Desired {
    let mut d = with_id(desired(extra), "f1");
    d.spec.filter_id = Some("f3".into());
    d
}

#[test]
fn a_spec_id_other_than_the_recorded_one_is_refused_and_never_deleted() {
    let mut drifted = cloud("f1", 1);
    drifted.description = "changed".into();
    check(vec![
        (
            "recorded f1, spec f3: nothing written",
            mismatched(serde_json::json!({})),
            present(drifted.clone()),
            "Wait(IdMismatch)",
        ),
        (
            "not read (observe reads nothing)",
            mismatched(serde_json::json!({})),
            observed(),
            "Wait(IdMismatch)",
        ),
        (
            "deleting: the recorded filter is deleted, never the spec's",
            deleting(mismatched(serde_json::json!({}))),
            observed(),
            "Delete(f1)",
        ),
        (
            "deleting with Orphan: the recorded filter stays",
            deleting(mismatched(serde_json::json!({"deletionPolicy": "Orphan"}))),
            observed(),
            "Release(Some(\"f1\"))",
        ),
    ]);
    let Step::Wait(w) = decide(&mismatched(serde_json::json!({})), &observed()) else {
        panic!("expected a wait");
    };
    assert_eq!(w.retry, Retry::OnChange);
    for part in ["spec.filterId f3", "f1", "Delete this object", "Orphan"] {
        assert!(w.message.contains(part), "{part}: {}", w.message);
    }
}

#[test]
fn a_rename_is_checked_like_a_create() {
    let mut old = cloud("f1", 1);
    old.name = "old-name".into();
    let renamed_onto = |found: Vec<CloudFilter>| Observed {
        named: found,
        ..present(old.clone())
    };
    let d = || with_id(desired(serde_json::json!({})), "f1");
    check(vec![
        (
            "the new name is free: one PUT",
            d(),
            renamed_onto(vec![]),
            "Converge(update=true, rules=0)",
        ),
        (
            "the new name is taken: refused, no PUT",
            d(),
            renamed_onto(vec![cloud("f9", 2)]),
            "Conflict",
        ),
        (
            "only itself under the name",
            d(),
            renamed_onto(vec![cloud("f1", 1)]),
            "Converge(update=true, rules=0)",
        ),
    ]);
}
