//! Which object manages a cloud id (no client required): two objects of one kind that adopt the same
//! cloud object (`spec.filterId` / `spec.sessionId`) would undo each other's changes at every
//! resync. The older one keeps managing it; the younger reports `AlreadyManaged` and never writes.
//!
//! Read from the controller's own cache (reflector store) only: no API or cloud call.

use chrono::{DateTime, Utc};
use kube::ResourceExt;

use super::filter::FILTER_ID_ANNOTATION;
use super::intent::SESSION_ID_ANNOTATION;
use crate::api::{ManagementPolicy, TrafficMirrorFilter, TrafficMirrorSession};

/// What decides whether an object manages a cloud id, the same for both kinds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimant {
    /// `namespace/name`: names the object in messages, and breaks creation-time ties.
    pub key: String,
    /// `metadata.uid`: an object never conflicts with itself.
    pub uid: String,
    /// `metadata.creationTimestamp`: the older object keeps managing (missing counts as newest).
    pub created: Option<DateTime<Utc>>,
    /// The ProviderConfig (cloud account): ids only collide within one account.
    pub provider: String,
    /// The cloud id the object manages: spec, else status, else the id annotation.
    pub id: Option<String>,
    /// ObserveOnly never writes, so it never conflicts.
    pub observe_only: bool,
    /// An object being deleted hands its claim over.
    pub deleting: bool,
}

impl Claimant {
    /// The claim of a TrafficMirrorFilter.
    pub fn of_filter(f: &TrafficMirrorFilter) -> Self {
        let id = filter_id_of(f).map(str::to_string);
        let policy = f.spec.management_policy;
        Self::of(f, id, &f.spec.provider_config_ref.name, policy)
    }

    /// The claim of a TrafficMirrorSession.
    pub fn of_session(s: &TrafficMirrorSession) -> Self {
        let id = session_id_of(s).map(str::to_string);
        let policy = s.spec.management_policy;
        Self::of(s, id, &s.spec.provider_config_ref.name, policy)
    }

    fn of<K: kube::Resource>(
        obj: &K,
        id: Option<String>,
        provider: &str,
        policy: ManagementPolicy,
    ) -> Self {
        let meta = obj.meta();
        Claimant {
            key: format!(
                "{}/{}",
                meta.namespace.as_deref().unwrap_or_default(),
                meta.name.as_deref().unwrap_or_default()
            ),
            uid: meta.uid.clone().unwrap_or_default(),
            created: meta
                .creation_timestamp
                .as_ref()
                .and_then(|t| DateTime::<Utc>::from_timestamp(t.0.as_second(), 0)),
            provider: provider.to_string(),
            id,
            observe_only: policy == ManagementPolicy::ObserveOnly,
            deleting: meta.deletion_timestamp.is_some(),
        }
    }

    /// The cloud id this object writes to, if any (two such objects would fight): its id, unless
    /// it is ObserveOnly.
    pub fn manages(&self) -> Option<&str> {
        self.id.as_deref().filter(|_| !self.observe_only)
    }

    /// Order of precedence: older first, then `namespace/name`.
    fn precedes(&self, other: &Claimant) -> bool {
        let age = |c: &Claimant| (c.created.is_none(), c.created);
        (age(self), &self.key) < (age(other), &other.key)
    }
}

/// The cloud id the object knows: the spec's (adoption), else the status's, else the annotation's.
pub fn known_id(
    spec: Option<&str>,
    status: Option<&str>,
    annotation: Option<&str>,
) -> Option<String> {
    known_id_ref(spec, status, annotation).map(str::to_string)
}

/// [`known_id`], borrowed: cheap enough to test every object of a cache.
fn known_id_ref<'a>(
    spec: Option<&'a str>,
    status: Option<&'a str>,
    annotation: Option<&'a str>,
) -> Option<&'a str> {
    spec.or(status).or(annotation).filter(|s| !s.is_empty())
}

/// The cloud filter id a filter object knows (see [`known_id`]).
pub fn filter_id_of(f: &TrafficMirrorFilter) -> Option<&str> {
    known_id_ref(
        f.spec.filter_id.as_deref(),
        f.status.as_ref().and_then(|s| s.filter_id.as_deref()),
        f.annotations()
            .get(FILTER_ID_ANNOTATION)
            .map(String::as_str),
    )
}

/// The cloud session id a session object knows (see [`known_id`]).
pub fn session_id_of(s: &TrafficMirrorSession) -> Option<&str> {
    known_id_ref(
        s.spec.session_id.as_deref(),
        s.status.as_ref().and_then(|st| st.session_id.as_deref()),
        s.annotations()
            .get(SESSION_ID_ANNOTATION)
            .map(String::as_str),
    )
}

/// The other object (`namespace/name`) that already manages `ours`'s cloud id, if any: same
/// ProviderConfig, same id, not ObserveOnly, not being deleted, and older (ties broken by
/// `namespace/name`). `ours` being ObserveOnly or without an id is never claimed.
pub fn claimed_by<'a>(
    ours: &Claimant,
    others: impl IntoIterator<Item = &'a Claimant>,
) -> Option<String> {
    let id = ours.manages()?;
    others
        .into_iter()
        .filter(|o| o.uid != ours.uid && !o.deleting && o.provider == ours.provider)
        .filter(|o| o.manages() == Some(id) && o.precedes(ours))
        .min_by(|a, b| {
            if a.precedes(b) {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Greater
            }
        })
        .map(|o| o.key.clone())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn c(key: &str, created: Option<i64>, id: Option<&str>) -> Claimant {
        Claimant {
            key: key.into(),
            uid: format!("uid-{key}"),
            created: created.map(|s| Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()),
            provider: "pc".into(),
            id: id.map(str::to_string),
            observe_only: false,
            deleting: false,
        }
    }

    fn observe_only(mut x: Claimant) -> Claimant {
        x.observe_only = true;
        x
    }

    fn deleting(mut x: Claimant) -> Claimant {
        x.deleting = true;
        x
    }

    fn provider(mut x: Claimant, p: &str) -> Claimant {
        x.provider = p.into();
        x
    }

    #[test]
    fn the_older_manager_of_the_same_id_claims_it() {
        let ours = c("ns/young", Some(10), Some("X"));
        let old = || c("ns/old", Some(5), Some("X"));
        let rows: Vec<(&str, Claimant, Vec<Claimant>, Option<&str>)> = vec![
            ("alone", ours.clone(), vec![], None),
            ("itself", ours.clone(), vec![ours.clone()], None),
            ("older, same id", ours.clone(), vec![old()], Some("ns/old")),
            (
                "younger, same id",
                c("ns/old", Some(5), Some("X")),
                vec![ours.clone()],
                None,
            ),
            (
                "older, other id",
                ours.clone(),
                vec![c("ns/old", Some(5), Some("Y"))],
                None,
            ),
            (
                "older, no id",
                ours.clone(),
                vec![c("ns/old", Some(5), None)],
                None,
            ),
            (
                "older, other account",
                ours.clone(),
                vec![provider(old(), "pc2")],
                None,
            ),
            (
                "older, ObserveOnly",
                ours.clone(),
                vec![observe_only(old())],
                None,
            ),
            (
                "older, being deleted",
                ours.clone(),
                vec![deleting(old())],
                None,
            ),
            (
                "ours ObserveOnly",
                observe_only(ours.clone()),
                vec![old()],
                None,
            ),
            (
                "ours without id",
                c("ns/young", Some(10), None),
                vec![old()],
                None,
            ),
            (
                "same second, name first",
                ours.clone(),
                vec![c("ns/a", Some(10), Some("X"))],
                Some("ns/a"),
            ),
            (
                "same second, name after",
                ours.clone(),
                vec![c("ns/z", Some(10), Some("X"))],
                None,
            ),
            (
                "other without timestamp",
                ours.clone(),
                vec![c("ns/a", None, Some("X"))],
                None,
            ),
            (
                "ours without timestamp",
                c("ns/z", None, Some("X")),
                vec![old()],
                Some("ns/old"),
            ),
            (
                "the oldest of several",
                ours.clone(),
                vec![
                    c("ns/b", Some(7), Some("X")),
                    old(),
                    c("ns/c", Some(20), Some("X")),
                ],
                Some("ns/old"),
            ),
        ];
        for (row, ours, others, want) in rows {
            assert_eq!(claimed_by(&ours, &others).as_deref(), want, "{row}");
        }
    }

    #[test]
    fn the_id_is_the_spec_s_else_the_status_s_else_the_annotation_s() {
        assert_eq!(
            known_id(Some("a"), Some("b"), Some("c")).as_deref(),
            Some("a")
        );
        assert_eq!(known_id(None, Some("b"), Some("c")).as_deref(), Some("b"));
        assert_eq!(known_id(None, None, Some("c")).as_deref(), Some("c"));
        assert_eq!(known_id(Some(""), None, None), None);
        assert_eq!(known_id(None, None, None), None);
    }
}
