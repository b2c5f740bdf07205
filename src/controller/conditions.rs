//! Status conditions (no client required): typed builders and a pure merge.
//!
//! Every reconciler reports the same two condition types with the same meaning:
//! - `Ready`: the cloud object matches the spec right now.
//! - `Synced`: the last reconcile reached the cloud and did what it had to; `False` carries the cloud's
//!   `error_code` (or a short CamelCase reason) and a message saying what to do.
//!
//! - `Reconciling` / `Stalled`: kstatus' abnormal-true conditions (what Flux's `wait`/health checks
//!   read), present only while true: `Reconciling=True` while the operator still works toward the
//!   spec (creating, waiting on a dependency, retrying with backoff), `Stalled=True` when it cannot
//!   progress without a human (a terminal cloud error, a name conflict, drift under ObserveOnly, an
//!   unusable Secret). Neither while `Ready=True`.
//!
//! `lastTransitionTime` only changes when a condition's status flips, so `kubectl get` does not show
//! conditions that "change" on every resync.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition type: the cloud matches the spec.
pub const READY: &str = "Ready";
/// Condition type: the last reconcile succeeded.
pub const SYNCED: &str = "Synced";

/// Condition type (kstatus): the operator is still working toward the spec; absent otherwise.
pub const RECONCILING: &str = "Reconciling";
/// Condition type (kstatus): the operator cannot progress without a human; absent otherwise.
pub const STALLED: &str = "Stalled";
/// The kstatus condition types: removed when a reconcile does not set them (absent means false).
const ABNORMAL_TRUE: [&str; 2] = [RECONCILING, STALLED];

/// Reasons, CamelCase, shared by all reconcilers so users can grep for them.
pub mod reason {
    /// Cloud object matches the spec.
    pub const AVAILABLE: &str = "Available";
    /// The last reconcile succeeded.
    pub const RECONCILE_SUCCESS: &str = "ReconcileSuccess";
    /// A create is in flight or being confirmed.
    pub const CREATING: &str = "Creating";
    /// The cloud differs from the spec and the operator is changing it.
    pub const UPDATING: &str = "Updating";
    /// The cloud differs from the spec and the operator may not change it (ObserveOnly).
    pub const DRIFTED: &str = "Drifted";
    /// The object is being deleted.
    pub const DELETING: &str = "Deleting";
    /// The referenced ProviderConfig is missing or not ready.
    pub const PROVIDER_CONFIG_NOT_READY: &str = "ProviderConfigNotReady";
    /// The referenced ProviderConfig's `spec.namespaceSelector` does not match the object's
    /// namespace: it makes no cloud call until the namespace is labelled to match.
    pub const PROVIDER_CONFIG_NOT_ALLOWED: &str = "ProviderConfigNotAllowed";
    /// The referenced TrafficMirrorFilter is missing or has no cloud id yet.
    pub const FILTER_NOT_READY: &str = "FilterNotReady";
    /// A same-named cloud session exists that this object did not create.
    pub const NAME_CONFLICT: &str = "NameConflict";
    /// The session the object points at does not exist in the cloud.
    pub const SESSION_NOT_FOUND: &str = "SessionNotFound";
    /// The filter the object points at (`spec.filterId`) does not exist in the cloud.
    pub const FILTER_NOT_FOUND: &str = "FilterNotFound";
    /// ObserveOnly without a session id: nothing to observe.
    pub const SESSION_ID_REQUIRED: &str = "SessionIdRequired";
    /// ObserveOnly without a filter id: nothing to observe.
    pub const FILTER_ID_REQUIRED: &str = "FilterIdRequired";
    /// The credentials Secret is missing or incomplete.
    pub const SECRET_INVALID: &str = "SecretInvalid";
    /// The credentials Secret is outside the operator's credentials namespace, which is the only
    /// namespace whose Secrets it may read.
    pub const SECRET_OUT_OF_SCOPE: &str = "SecretOutOfScope";
    /// The cloud accepted the credentials.
    pub const CREDENTIALS_VALID: &str = "CredentialsValid";
    /// Talking to the API server failed.
    pub const KUBERNETES_ERROR: &str = "KubernetesError";
    /// The ProviderConfig is being deleted but objects still reference it; it stays (and keeps
    /// serving them) until they are gone.
    pub const IN_USE: &str = "InUse";
    /// An older object (same ProviderConfig, not ObserveOnly) already manages the cloud object this
    /// one adopts: two managers would undo each other's changes, so this one never writes.
    pub const ALREADY_MANAGED: &str = "AlreadyManaged";
    /// `spec.sessionId` / `spec.filterId` names another cloud object than the one this object
    /// created or adopted (its recorded id): switching would leak the recorded one, so nothing is
    /// written to either until a person decides.
    pub const ID_MISMATCH: &str = "IdMismatch";

    /// `Ready=False` reasons that only a human can clear (a spec, cloud or Secret change): they
    /// make the object `Stalled` rather than `Reconciling`.
    pub const TERMINAL: [&str; 11] = [
        NAME_CONFLICT,
        PROVIDER_CONFIG_NOT_ALLOWED,
        ALREADY_MANAGED,
        ID_MISMATCH,
        DRIFTED,
        SESSION_NOT_FOUND,
        FILTER_NOT_FOUND,
        SESSION_ID_REQUIRED,
        FILTER_ID_REQUIRED,
        SECRET_INVALID,
        SECRET_OUT_OF_SCOPE,
    ];
}

/// A condition to be set: type, status, reason, message. `observed_generation` is added at merge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    /// Condition type (`Ready` / `Synced`).
    pub type_: &'static str,
    /// True / False.
    pub status: bool,
    /// CamelCase reason (or a cloud error code).
    pub reason: String,
    /// Human message: what happened and what to do.
    pub message: String,
}

impl Desired {
    /// A `True` condition.
    pub fn yes(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Desired {
            type_,
            status: true,
            reason: reason.to_string(),
            message: message.into(),
        }
    }
    /// A `False` condition.
    pub fn no(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Desired {
            type_,
            status: false,
            reason: reason.to_string(),
            message: message.into(),
        }
    }
}

/// Adds kstatus' `Reconciling` or `Stalled` to a reconcile's `Ready`/`Synced`, so Flux (kstatus)
/// tells "still working" (InProgress) from "stuck" (Failed) the way the Argo CD health check does.
/// `Ready=True` adds neither. `Stalled` when `Ready`'s reason is [`reason::TERMINAL`] or when
/// `failed_for_good` (the reconcile failed and retrying without a change cannot help; the `Synced`
/// condition carries that failure), else `Reconciling`. It copies the reason and message of the
/// condition that says why.
pub fn with_progress(mut desired: Vec<Desired>, failed_for_good: bool) -> Vec<Desired> {
    let not_true = |t: &str| desired.iter().find(|d| d.type_ == t && !d.status).cloned();
    let Some(ready) = not_true(READY) else {
        return desired;
    };
    let added = match not_true(SYNCED) {
        Some(synced) if failed_for_good => Desired::yes(STALLED, &synced.reason, synced.message),
        _ if reason::TERMINAL.contains(&ready.reason.as_str()) => {
            Desired::yes(STALLED, &ready.reason, ready.message)
        }
        _ => Desired::yes(RECONCILING, &ready.reason, ready.message),
    };
    desired.push(added);
    desired
}

/// Merges the desired conditions into the existing list: other condition types are kept (but
/// `Reconciling`/`Stalled` only when nothing is desired: they are absent unless set),
/// `lastTransitionTime` is kept unless the status flips.
pub fn merge(
    existing: &[Condition],
    desired: &[Desired],
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = existing
        .iter()
        .filter(|c| !desired.iter().any(|d| d.type_ == c.type_))
        .filter(|c| desired.is_empty() || !ABNORMAL_TRUE.contains(&c.type_.as_str()))
        .cloned()
        .collect();
    for d in desired {
        let status = if d.status { "True" } else { "False" }.to_string();
        let previous = existing.iter().find(|c| c.type_ == d.type_);
        let last_transition_time = match previous {
            Some(p) if p.status == status => p.last_transition_time.clone(),
            _ => Time(to_timestamp(now)),
        };
        out.push(Condition {
            type_: d.type_.to_string(),
            status,
            reason: d.reason.clone(),
            message: truncate(&d.message, 32 * 1024),
            observed_generation: generation,
            last_transition_time,
        });
    }
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

/// Whether two condition lists say the same thing (ignoring timestamps): used to skip status writes
/// that would change nothing.
pub fn same(a: &[Condition], b: &[Condition]) -> bool {
    let key = |c: &Condition| {
        (
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
            c.observed_generation,
        )
    };
    let mut ka: Vec<_> = a.iter().map(key).collect();
    let mut kb: Vec<_> = b.iter().map(key).collect();
    ka.sort();
    kb.sort();
    ka == kb
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// chrono → the k8s-openapi (jiff) timestamp, at second precision (what metav1.Time carries).
fn to_timestamp(t: DateTime<Utc>) -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::from_second(t.timestamp())
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(sec: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + sec, 0).single().unwrap()
    }

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let first = merge(
            &[],
            &[Desired::yes(READY, "Available", "ok")],
            Some(1),
            t(0),
        );
        let second = merge(
            &first,
            &[Desired::yes(READY, "Available", "still ok")],
            Some(2),
            t(60),
        );
        assert_eq!(
            first[0].last_transition_time,
            second[0].last_transition_time
        );
        assert_eq!(second[0].message, "still ok");
        assert_eq!(second[0].observed_generation, Some(2));
        let third = merge(
            &second,
            &[Desired::no(READY, "Updating", "x")],
            Some(2),
            t(120),
        );
        assert_ne!(
            second[0].last_transition_time,
            third[0].last_transition_time
        );
    }

    #[test]
    fn other_types_are_kept_and_sorted() {
        let a = merge(
            &[],
            &[Desired::yes(SYNCED, "ReconcileSuccess", "")],
            None,
            t(0),
        );
        let b = merge(&a, &[Desired::no(READY, "Creating", "")], None, t(1));
        assert_eq!(
            b.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(),
            vec!["Ready", "Synced"]
        );
    }

    #[test]
    fn same_ignores_timestamps() {
        let a = merge(
            &[],
            &[Desired::yes(READY, "Available", "ok")],
            Some(1),
            t(0),
        );
        let b = merge(
            &[],
            &[Desired::yes(READY, "Available", "ok")],
            Some(1),
            t(5),
        );
        assert!(same(&a, &b));
        let c = merge(
            &[],
            &[Desired::yes(READY, "Available", "ok2")],
            Some(1),
            t(5),
        );
        assert!(!same(&a, &c));
    }

    fn progress(d: &[Desired]) -> Vec<(&'static str, String)> {
        d.iter()
            .filter(|c| ABNORMAL_TRUE.contains(&c.type_))
            .map(|c| (c.type_, c.reason.clone()))
            .collect()
    }

    #[test]
    fn progress_per_outcome() {
        let pair = |ready: Desired, synced: Desired| vec![ready, synced];
        let ok = Desired::yes(SYNCED, reason::RECONCILE_SUCCESS, "");
        // (Ready, Synced, failed for good, the kstatus condition added)
        type Row = (Desired, Desired, bool, Option<(&'static str, &'static str)>);
        let table: Vec<Row> = vec![
            (
                Desired::yes(READY, "Available", ""),
                ok.clone(),
                false,
                None,
            ),
            (
                Desired::no(READY, "Creating", ""),
                ok.clone(),
                false,
                Some((RECONCILING, "Creating")),
            ),
            (
                Desired::no(READY, "Drifted", ""),
                ok.clone(),
                false,
                Some((STALLED, "Drifted")),
            ),
            (
                Desired::no(READY, "NameConflict", ""),
                Desired::no(SYNCED, "NameConflict", ""),
                false,
                Some((STALLED, "NameConflict")),
            ),
            (
                Desired::no(READY, "FilterNotReady", ""),
                Desired::no(SYNCED, "FilterNotReady", ""),
                false,
                Some((RECONCILING, "FilterNotReady")),
            ),
            (
                Desired::no(READY, "VPC_0002", ""),
                Desired::no(SYNCED, "VPC_0002", ""),
                true,
                Some((STALLED, "VPC_0002")),
            ),
            (
                Desired::no(READY, "APIGW_0308", ""),
                Desired::no(SYNCED, "APIGW_0308", ""),
                false,
                Some((RECONCILING, "APIGW_0308")),
            ),
            (
                Desired::no(READY, "Deleting", ""),
                Desired::no(SYNCED, "VPC_0500", ""),
                false,
                Some((RECONCILING, "Deleting")),
            ),
            (
                Desired::no(READY, "InUse", ""),
                Desired::no(SYNCED, "APIGW_0301", ""),
                true,
                Some((STALLED, "APIGW_0301")),
            ),
        ];
        for (ready, synced, for_good, want) in table {
            let what = format!("{ready:?} {synced:?} {for_good}");
            let got = progress(&with_progress(pair(ready, synced), for_good));
            let want: Vec<_> = want.map(|(t, r)| (t, r.to_string())).into_iter().collect();
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn abnormal_true_conditions_go_when_not_set() {
        let working = merge(
            &[],
            &with_progress(vec![Desired::no(READY, "Creating", "")], false),
            Some(1),
            t(0),
        );
        assert!(find(&working, RECONCILING).is_some());
        let done = merge(
            &working,
            &with_progress(vec![Desired::yes(READY, "Available", "")], false),
            Some(1),
            t(1),
        );
        assert_eq!(
            done.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(),
            vec!["Ready"]
        );
        // A reconcile that sets nothing (e.g. a deletion that ends) keeps what is there.
        assert_eq!(merge(&working, &[], Some(1), t(2)), working);
    }
}
