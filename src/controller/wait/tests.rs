//! The shared waits and the cleanup table: every branch of [`cleanup`], for any kind.

use chrono::{TimeZone, Utc};

use super::*;
use crate::cloud::models::TrafficMirrorSession as CloudSession;

fn intent() -> CreateIntent {
    CreateIntent {
        token: "tok".into(),
        name: "tap".into(),
        at: Utc
            .timestamp_opt(1_700_000_000, 0)
            .single()
            .expect("valid time"),
        filter_id: None,
        target_id: None,
    }
}

fn found(id: &str) -> CloudSession {
    CloudSession {
        id: id.into(),
        name: "tap".into(),
        ..Default::default()
    }
}

/// One row's facts; `blocked` stands for a kind's own reason to wait (a filter in use).
#[derive(Clone, Copy)]
struct Facts {
    keep: bool,
    id: Option<&'static str>,
    intent: bool,
    ready: bool,
    blocked: bool,
}

const NOTHING: Facts = Facts {
    keep: false,
    id: None,
    intent: false,
    ready: true,
    blocked: false,
};

fn in_use() -> Wait {
    Wait {
        reason: reason::IN_USE,
        message: "in use".into(),
        retry: Retry::Resync,
    }
}

/// Runs [`cleanup`] on `f`; `resolution` is what the intent resolves to, `None` when the row must
/// decide without resolving it (resolving would then fail the test).
fn run(f: Facts, resolution: Option<Resolution<CloudSession>>) -> Cleanup {
    let intent = intent();
    let blocked = in_use();
    let missing = Unavailable::Missing;
    let facts = CleanupFacts {
        keep: f.keep,
        known_id: f.id,
        intent: f.intent.then_some(&intent),
        provider: ("pc", (!f.ready).then_some(&missing)),
        noun: "cloud session",
        blocked: f.blocked.then_some(&blocked),
    };
    cleanup(facts, |_| {
        resolution.unwrap_or_else(|| panic!("the intent must not be resolved here"))
    })
}

/// A short name of the outcome for the table.
fn kind(c: &Cleanup) -> String {
    match c {
        Cleanup::Release { orphaned } => format!("Release({orphaned:?})"),
        Cleanup::Wait(w) => format!("Wait({}, {:?})", w.reason, w.retry),
        Cleanup::Delete(ids) => format!("Delete({})", ids.join(",")),
    }
}

type Row = (
    &'static str,
    Facts,
    Option<Resolution<CloudSession>>,
    &'static str,
);

fn check(rows: Vec<Row>) {
    for (name, facts, resolution, want) in rows {
        assert_eq!(kind(&run(facts, resolution)), want, "case {name:?}");
    }
}

#[test]
fn what_stays_in_the_cloud_or_was_never_there_is_released_at_once() {
    let stuck = Facts {
        ready: false,
        blocked: true,
        intent: true,
        ..NOTHING
    };
    check(vec![
        (
            "keep, with an id, nothing ready",
            Facts {
                keep: true,
                id: Some("s1"),
                ..stuck
            },
            None,
            "Release(Some(\"s1\"))",
        ),
        (
            "keep, no id",
            Facts {
                keep: true,
                ..stuck
            },
            None,
            "Release(None)",
        ),
        (
            "no id, no intent, nothing ready",
            Facts {
                intent: false,
                ..stuck
            },
            None,
            "Release(None)",
        ),
        ("no id, no intent", NOTHING, None, "Release(None)"),
    ]);
}

#[test]
fn something_in_the_cloud_waits_for_the_provider_then_for_the_kind() {
    let id = Facts {
        id: Some("s1"),
        ..NOTHING
    };
    check(vec![
        (
            "id, provider not ready",
            Facts { ready: false, ..id },
            None,
            "Wait(ProviderConfigNotReady, Dependency)",
        ),
        (
            "intent, provider not ready",
            Facts {
                intent: true,
                ready: false,
                ..NOTHING
            },
            None,
            "Wait(ProviderConfigNotReady, Dependency)",
        ),
        (
            "provider not ready comes before blocked",
            Facts {
                ready: false,
                blocked: true,
                ..id
            },
            None,
            "Wait(ProviderConfigNotReady, Dependency)",
        ),
        (
            "blocked",
            Facts {
                blocked: true,
                ..id
            },
            None,
            "Wait(InUse, Resync)",
        ),
        (
            "blocked, before the intent is resolved",
            Facts {
                blocked: true,
                intent: true,
                ..NOTHING
            },
            None,
            "Wait(InUse, Resync)",
        ),
    ]);
}

#[test]
fn the_intent_is_resolved_like_a_create() {
    let id_and_intent = Facts {
        id: Some("s1"),
        intent: true,
        ..NOTHING
    };
    let intent_only = Facts {
        intent: true,
        ..NOTHING
    };
    check(vec![
        (
            "id, no intent",
            Facts {
                id: Some("s1"),
                ..NOTHING
            },
            None,
            "Delete(s1)",
        ),
        (
            "id, the intent's other object",
            id_and_intent,
            Some(Resolution::Adopt(found("s9"))),
            "Delete(s1,s9)",
        ),
        (
            "id, the intent's object is the same",
            id_and_intent,
            Some(Resolution::Adopt(found("s1"))),
            "Delete(s1)",
        ),
        (
            "intent, found",
            intent_only,
            Some(Resolution::Adopt(found("s9"))),
            "Delete(s9)",
        ),
        (
            "id, the create never happened",
            id_and_intent,
            Some(Resolution::CreateAgain),
            "Delete(s1)",
        ),
        (
            "intent, the create never happened",
            intent_only,
            Some(Resolution::CreateAgain),
            "Release(None)",
        ),
        (
            "intent, not visible yet",
            intent_only,
            Some(Resolution::WaitForConsistency),
            "Wait(Deleting, Soon)",
        ),
        (
            "id, not visible yet: the id is not deleted before the intent settles",
            id_and_intent,
            Some(Resolution::WaitForConsistency),
            "Wait(Deleting, Soon)",
        ),
        (
            "intent, ambiguous",
            intent_only,
            Some(Resolution::Conflict("two".into())),
            "Wait(NameConflict, OnChange)",
        ),
    ]);
}

#[test]
fn a_provider_wait_names_both_ways_out_only_while_deleting() {
    let apply = provider_not_ready("pc", &Unavailable::Missing, "cloud filter", false);
    assert_eq!(apply.reason, reason::PROVIDER_CONFIG_NOT_READY);
    assert_eq!(apply.retry, Retry::Dependency);
    assert!(!apply.message.contains("Orphan"), "{}", apply.message);
    let delete = provider_not_ready("pc", &Unavailable::Missing, "cloud filter", true);
    for part in [
        "restore the ProviderConfig",
        "spec.deletionPolicy: Orphan",
        "cloud filter",
    ] {
        assert!(delete.message.contains(part), "{part}: {}", delete.message);
    }
}

#[test]
fn a_provider_wait_says_which_problem_and_how_to_look_closer() {
    let not_ready = |reason: Option<&str>, message: Option<&str>| Unavailable::NotReady {
        reason: reason.map(str::to_string),
        message: message.map(str::to_string),
    };
    // (why, what the message must say)
    let table = [
        (
            Unavailable::Missing,
            vec![
                "\"pc\" does not exist",
                "spec.providerConfigRef.name",
                "kubectl get tmpc",
            ],
        ),
        (
            not_ready(
                Some("SecretInvalid"),
                Some("the Secret has no key accessKey"),
            ),
            vec![
                "\"pc\" is not Ready (SecretInvalid: the Secret has no key accessKey)",
                "kubectl describe tmpc pc",
            ],
        ),
        (
            not_ready(None, None),
            vec!["is not Ready (its credentials have not been checked yet)"],
        ),
        (
            Unavailable::Deleting,
            vec![
                "is being deleted and takes no new users",
                "spec.providerConfigRef.name",
            ],
        ),
    ];
    for (why, parts) in table {
        let w = provider_not_ready("pc", &why, "cloud session", false);
        assert!(!w.message.contains("missing or not Ready"), "{}", w.message);
        for part in parts {
            assert!(w.message.contains(part), "{why:?}: {part}: {}", w.message);
        }
    }
}

#[test]
fn confirming_and_cleanup_conflicts_say_what_happens_next() {
    let w = confirming(&intent(), reason::CREATING);
    assert_eq!((w.reason, w.retry), (reason::CREATING, Retry::Soon));
    assert!(w.message.contains("2023-11-14T22:13:20"), "{}", w.message);
    // Why nothing is created for a while after a 5xx, and for how long.
    for part in ["retryable error", "every 2s", "--create-confirm-window"] {
        assert!(w.message.contains(part), "{part}: {}", w.message);
    }
    let w = cleanup_conflict("cloud sessions named \"tap\" already exist (a, b)".into());
    assert_eq!(
        (w.reason, w.retry),
        (reason::NAME_CONFLICT, Retry::OnChange)
    );
    assert!(
        w.message.contains("(a, b)") && w.message.contains("deletionPolicy: Orphan"),
        "{}",
        w.message
    );
}

#[test]
fn a_refused_namespace_has_its_own_reason_and_names_the_ways_out() {
    let why = Unavailable::NotAllowed {
        namespace: "team-b".into(),
        selector: "team=a".into(),
    };
    let apply = provider_not_ready("shared", &why, "cloud session", false);
    assert_eq!(apply.reason, reason::PROVIDER_CONFIG_NOT_ALLOWED);
    for part in [
        "\"shared\"",
        "\"team-b\"",
        "(team=a)",
        "kubectl label namespace team-b",
    ] {
        assert!(apply.message.contains(part), "{part}: {}", apply.message);
    }
    assert!(!apply.message.contains("Orphan"), "{}", apply.message);
    let delete = provider_not_ready("shared", &why, "cloud session", true);
    for part in [
        "label the namespace to match",
        "spec.deletionPolicy: Orphan",
    ] {
        assert!(delete.message.contains(part), "{part}: {}", delete.message);
    }
    assert!(
        !delete.message.contains("restore the ProviderConfig"),
        "{}",
        delete.message
    );
    // Labels not read yet: a short wait, not a refusal.
    let unread = Unavailable::NamespaceNotRead {
        namespace: "team-b".into(),
    };
    let w = provider_not_ready("shared", &unread, "cloud filter", false);
    assert_eq!(
        (w.reason, w.retry),
        (reason::PROVIDER_CONFIG_NOT_READY, Retry::Dependency)
    );
}

#[test]
fn a_refused_object_with_a_cloud_id_keeps_the_orphan_way_out() {
    let why = Unavailable::NotAllowed {
        namespace: "team-b".into(),
        selector: "team=a".into(),
    };
    let facts = |keep| CleanupFacts {
        keep,
        known_id: Some("s-1"),
        intent: None,
        provider: ("shared", Some(&why)),
        noun: "cloud session",
        blocked: None,
    };
    let never = |_: &CreateIntent| -> Resolution<CloudSession> { Resolution::CreateAgain };
    assert_eq!(
        cleanup(facts(true), never),
        Cleanup::Release {
            orphaned: Some("s-1".into())
        }
    );
    match cleanup(facts(false), never) {
        Cleanup::Wait(w) => assert_eq!(w.reason, reason::PROVIDER_CONFIG_NOT_ALLOWED),
        other => panic!("{other:?}"),
    }
}
