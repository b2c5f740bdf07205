//! Which object manages a cloud id (no client required): two objects of one kind that adopt the same
//! cloud object (`spec.filterId` / `spec.sessionId`) would undo each other's changes at every
//! resync. The older one keeps managing it; the younger reports `AlreadyManaged` and never writes.
//! Ids only collide within one cloud account (endpoint + project), whichever ProviderConfig names it.
//!
//! Read from a [`ClaimIndex`] kept from the controller's own watch events: no API or cloud call, and
//! one map lookup per reconcile. The index also says whom to wake when an object stops claiming an id
//! or a cloud name (deleted, being deleted, renamed), so a younger claimant takes over, and an object
//! in `NameConflict` retries, as soon as the older one is gone.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use kube::runtime::watcher::Event;

use super::intent::FILTER_ID_ANNOTATION;
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
    /// The ProviderConfig's name: resolved to its cloud account when claims are compared.
    pub provider: String,
    /// The cloud id the object manages: the recorded one (status, else the id annotation), else
    /// the spec's (see [`known_id`]).
    pub id: Option<String>,
    /// The cloud name the object asks for: an object in `NameConflict` waits for its holder to go.
    pub cloud_name: String,
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
        let mut c = Self::of(f, id, &f.spec.provider_config_ref.name, policy);
        c.cloud_name = f.cloud_name();
        c
    }

    /// The claim of a TrafficMirrorSession.
    pub fn of_session(s: &TrafficMirrorSession) -> Self {
        let id = session_id_of(s).map(str::to_string);
        let policy = s.spec.management_policy;
        let mut c = Self::of(s, id, &s.spec.provider_config_ref.name, policy);
        c.cloud_name = s.cloud_name();
        c
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
            cloud_name: String::new(),
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

    /// Whether `next` (the same object later, or `None`: gone) no longer claims what `self` did:
    /// its id, its cloud name, or its claim at all (being deleted). The others waiting on them are
    /// woken.
    fn departs(&self, next: Option<&Claimant>) -> bool {
        next.is_none_or(|n| {
            n.manages() != self.manages()
                || n.deleting != self.deleting
                || n.cloud_name != self.cloud_name
        })
    }
}

/// The cloud id the object manages: the one it recorded (status, else the id annotation, which
/// survives a restore that drops status), else the spec's (adoption). The recorded id comes first: an
/// object keeps the cloud object it created or adopted, and a later, different `spec.*Id` is a
/// mismatch for `decide` to refuse, never a silent switch that would leak the recorded one.
pub fn known_id(
    spec: Option<&str>,
    status: Option<&str>,
    annotation: Option<&str>,
) -> Option<String> {
    known_id_ref(spec, status, annotation).map(str::to_string)
}

/// [`known_id`], borrowed: cheap enough to run on every watch event.
fn known_id_ref<'a>(
    spec: Option<&'a str>,
    status: Option<&'a str>,
    annotation: Option<&'a str>,
) -> Option<&'a str> {
    let some = |s: Option<&'a str>| s.filter(|s| !s.is_empty());
    some(status).or(some(annotation)).or(some(spec))
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

/// The other object (`namespace/name`) that already manages `ours`'s cloud id, if any: same cloud
/// account (`account` maps a ProviderConfig name to its account), same id, not ObserveOnly, not being
/// deleted, and older (ties broken by `namespace/name`). `ours` being ObserveOnly or without an id is
/// never claimed.
pub fn claimed_by<'a>(
    ours: &Claimant,
    others: impl IntoIterator<Item = &'a Claimant>,
    account: impl Fn(&str) -> String,
) -> Option<String> {
    let id = ours.manages()?;
    let our_account = account(&ours.provider);
    others
        .into_iter()
        .filter(|o| o.uid != ours.uid && !o.deleting)
        .filter(|o| o.manages() == Some(id) && o.precedes(ours))
        .filter(|o| o.provider == ours.provider || account(&o.provider) == our_account)
        .min_by(|a, b| {
            if a.precedes(b) {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Greater
            }
        })
        .map(|o| o.key.clone())
}

/// One kind's claims, kept from its watch events: every object's [`Claimant`] by uid, with the
/// uids per cloud id and per cloud name, so a reconcile finds the objects that share its id in one
/// lookup instead of a scan of the cache.
#[derive(Debug, Default)]
pub struct ClaimIndex {
    entries: HashMap<String, Claimant>,
    by_id: HashMap<String, BTreeSet<String>>,
    by_name: HashMap<String, BTreeSet<String>>,
    /// While the watch (re)lists: the listed objects so far (replace `entries` at `InitDone`).
    relisting: Option<HashMap<String, Claimant>>,
}

impl ClaimIndex {
    /// The objects that know the cloud id `id`.
    pub fn with_id(&self, id: &str) -> Vec<&Claimant> {
        self.by_id
            .get(id)
            .into_iter()
            .flatten()
            .filter_map(|uid| self.entries.get(uid))
            .collect()
    }

    /// Applies one watch event; returns the objects (`namespace/name`) to wake: those sharing the id
    /// or the cloud name of an object that stopped claiming it (see [`Claimant::departs`]).
    pub fn apply(&mut self, event: Event<Claimant>) -> BTreeSet<String> {
        match event {
            Event::Apply(c) => {
                let uid = c.uid.clone();
                let old = self.insert(c);
                self.wakes(old.as_ref(), &uid)
            }
            Event::Delete(c) => {
                let old = self.remove(&c.uid);
                self.wakes(old.as_ref(), &c.uid)
            }
            Event::Init => {
                self.relisting = Some(HashMap::new());
                BTreeSet::new()
            }
            Event::InitApply(c) => {
                let listed = self.relisting.get_or_insert_with(HashMap::new);
                listed.insert(c.uid.clone(), c);
                BTreeSet::new()
            }
            Event::InitDone => self.relisted(),
        }
    }

    /// The relist is complete: it replaces the entries; objects gone meanwhile wake their peers.
    fn relisted(&mut self) -> BTreeSet<String> {
        let listed = self.relisting.take().unwrap_or_default();
        let old: Vec<String> = self.entries.keys().cloned().collect();
        let mut departed = vec![];
        for uid in old {
            if !listed.contains_key(&uid) {
                departed.extend(self.remove(&uid));
            }
        }
        for c in listed.into_values() {
            let uid = c.uid.clone();
            if let Some(o) = self.insert(c).filter(|o| o.departs(self.entries.get(&uid))) {
                departed.push(o);
            }
        }
        let mut wake = BTreeSet::new();
        for o in &departed {
            wake.extend(self.peers(o));
        }
        wake
    }

    fn wakes(&self, old: Option<&Claimant>, uid: &str) -> BTreeSet<String> {
        match old {
            Some(o) if o.departs(self.entries.get(uid)) => self.peers(o),
            _ => BTreeSet::new(),
        }
    }

    /// The other objects that share `c`'s cloud id or cloud name.
    fn peers(&self, c: &Claimant) -> BTreeSet<String> {
        let by_id = c.id.as_ref().and_then(|id| self.by_id.get(id));
        let by_name = self.by_name.get(&c.cloud_name);
        by_id
            .into_iter()
            .chain(by_name)
            .flatten()
            .filter(|uid| **uid != c.uid)
            .filter_map(|uid| self.entries.get(uid))
            .map(|o| o.key.clone())
            .collect()
    }

    fn insert(&mut self, c: Claimant) -> Option<Claimant> {
        let old = self.remove(&c.uid);
        if let Some(id) = &c.id {
            self.by_id
                .entry(id.clone())
                .or_default()
                .insert(c.uid.clone());
        }
        let name = self.by_name.entry(c.cloud_name.clone()).or_default();
        name.insert(c.uid.clone());
        self.entries.insert(c.uid.clone(), c);
        old
    }

    fn remove(&mut self, uid: &str) -> Option<Claimant> {
        let old = self.entries.remove(uid)?;
        if let Some(id) = &old.id {
            unlink(&mut self.by_id, id, uid);
        }
        unlink(&mut self.by_name, &old.cloud_name, uid);
        Some(old)
    }
}

fn unlink(map: &mut HashMap<String, BTreeSet<String>>, key: &str, uid: &str) {
    if let Some(set) = map.get_mut(key) {
        set.remove(uid);
        if set.is_empty() {
            map.remove(key);
        }
    }
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
            cloud_name: key.rsplit('/').next().unwrap_or_default().into(),
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
                "older, other ProviderConfig of the same account",
                ours.clone(),
                vec![provider(old(), "pc-same-account")],
                Some("ns/old"),
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
        // `pc` and `pc-same-account` point at one account; `pc2` at another.
        let account = |pc: &str| pc.trim_end_matches("-same-account").to_string();
        for (row, ours, others, want) in rows {
            assert_eq!(
                claimed_by(&ours, &others, account).as_deref(),
                want,
                "{row}"
            );
        }
    }

    #[test]
    fn the_id_is_the_recorded_one_else_the_spec_s() {
        let rows = [
            ((Some("a"), Some("b"), Some("c")), Some("b")),
            ((Some("a"), None, Some("c")), Some("c")),
            ((Some("a"), None, None), Some("a")),
            ((None, Some("b"), Some("c")), Some("b")),
            ((None, None, Some("c")), Some("c")),
            ((Some("a"), Some(""), None), Some("a")),
            ((Some(""), None, None), None),
            ((None, None, None), None),
        ];
        for ((spec, status, annotation), want) in rows {
            let got = known_id(spec, status, annotation);
            assert_eq!(got.as_deref(), want, "{spec:?} {status:?} {annotation:?}");
        }
    }

    fn applied(index: &mut ClaimIndex, c: Claimant) -> Vec<String> {
        index.apply(Event::Apply(c)).into_iter().collect()
    }

    #[test]
    fn the_index_finds_the_objects_of_an_id_and_wakes_them_when_one_departs() {
        let mut index = ClaimIndex::default();
        let old = c("ns/old", Some(5), Some("X"));
        let young = c("ns/young", Some(10), Some("X"));
        assert!(applied(&mut index, old.clone()).is_empty());
        assert!(applied(&mut index, young.clone()).is_empty());
        assert!(applied(&mut index, c("ns/other", Some(1), Some("Y"))).is_empty());
        let keys = |v: Vec<&Claimant>| v.iter().map(|c| c.key.clone()).collect::<Vec<_>>();
        let mut with_x = keys(index.with_id("X"));
        with_x.sort();
        assert_eq!(with_x, ["ns/old", "ns/young"]);
        // A status-only change (same id, name, policy) wakes nobody.
        assert!(applied(&mut index, old.clone()).is_empty());
        // Being deleted hands the claim over: the younger is woken at once.
        assert_eq!(applied(&mut index, deleting(old.clone())), ["ns/young"]);
        let gone = index.apply(Event::Delete(deleting(old)));
        assert_eq!(gone.into_iter().collect::<Vec<_>>(), ["ns/young"]);
        assert_eq!(keys(index.with_id("X")), ["ns/young"]);
    }

    #[test]
    fn the_index_wakes_the_objects_of_a_name_that_is_freed() {
        let mut index = ClaimIndex::default();
        let holder = c("ns/web", Some(5), Some("X"));
        let mut waiting = c("b/web", Some(10), None);
        waiting.cloud_name = "web".into();
        applied(&mut index, holder.clone());
        applied(&mut index, waiting);
        let mut renamed = holder.clone();
        renamed.cloud_name = "web-2".into();
        assert_eq!(applied(&mut index, renamed), ["b/web"]);
    }

    #[test]
    fn a_relist_replaces_the_entries_and_wakes_for_objects_gone_meanwhile() {
        let mut index = ClaimIndex::default();
        applied(&mut index, c("ns/old", Some(5), Some("X")));
        applied(&mut index, c("ns/young", Some(10), Some("X")));
        index.apply(Event::Init);
        index.apply(Event::InitApply(c("ns/young", Some(10), Some("X"))));
        assert_eq!(
            index.with_id("X").len(),
            2,
            "unchanged until the list is complete"
        );
        let wake = index.apply(Event::InitDone);
        assert_eq!(wake.into_iter().collect::<Vec<_>>(), ["ns/young"]);
        assert_eq!(index.with_id("X").len(), 1);
    }
}
