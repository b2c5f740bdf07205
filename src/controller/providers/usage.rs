//! Who uses which ProviderConfig (no client required): an in-memory index fed by the watch events of
//! TrafficMirrorSessions and TrafficMirrorFilters, and the pure decisions built on it.
//!
//! A ProviderConfig that objects still reference must not disappear, or their deletion could no
//! longer clean up the cloud (the same idea as Crossplane's ProviderConfigUsage). The index is what
//! the reconciler counts; it changes only on watch events, and each change that can matter (an
//! object appears, disappears or names another ProviderConfig) wakes the ProviderConfig controller.

use std::collections::{BTreeSet, HashMap};

use kube::runtime::watcher::Event;

/// The finalizer on every managed ProviderConfig: while objects reference it, a deletion waits.
pub const FINALIZER: &str = "vpc.hwcloud.dev/in-use";

/// The kinds that reference a ProviderConfig in `spec.providerConfigRef.name`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UserKind {
    /// A TrafficMirrorSession.
    Session,
    /// A TrafficMirrorFilter.
    Filter,
}

impl UserKind {
    /// The kind's name, as users see it in messages.
    pub fn kind(&self) -> &'static str {
        match self {
            UserKind::Session => "TrafficMirrorSession",
            UserKind::Filter => "TrafficMirrorFilter",
        }
    }
}

/// The users of one ProviderConfig, as `namespace/name`, sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Users {
    /// TrafficMirrorSessions referencing it.
    pub sessions: Vec<String>,
    /// TrafficMirrorFilters referencing it.
    pub filters: Vec<String>,
}

impl Users {
    /// How many objects use the ProviderConfig.
    pub fn total(&self) -> usize {
        self.sessions.len() + self.filters.len()
    }
}

/// The references of one kind, as the watch reported them: `namespace/name` → ProviderConfig name.
#[derive(Debug, Default)]
struct KindIndex {
    refs: HashMap<String, String>,
    /// While the watch (re)lists: the listed objects so far (replaces `refs` at `InitDone`).
    relisting: Option<HashMap<String, String>>,
    /// Whether one complete list has been seen (until then the counts are unknown).
    synced: bool,
}

impl KindIndex {
    /// Applies one watch event (object → (`namespace/name`, ProviderConfig)); returns the
    /// ProviderConfigs whose users changed. The first complete list reports a change even when
    /// nothing references anything, so waiting decisions are taken again.
    fn apply(&mut self, event: Event<(String, String)>) -> BTreeSet<String> {
        let mut changed = BTreeSet::new();
        match event {
            Event::Apply((key, pc)) => {
                if let Some(old) = self.refs.insert(key, pc.clone()) {
                    if old != pc {
                        changed.insert(old);
                        changed.insert(pc);
                    }
                } else {
                    changed.insert(pc);
                }
            }
            Event::Delete((key, _)) => changed.extend(self.refs.remove(&key)),
            Event::Init => self.relisting = Some(HashMap::new()),
            Event::InitApply((key, pc)) => {
                self.relisting
                    .get_or_insert_with(HashMap::new)
                    .insert(key, pc);
            }
            Event::InitDone => {
                let listed = self.relisting.take().unwrap_or_default();
                changed = diff(&self.refs, &listed);
                self.refs = listed;
                if !self.synced {
                    self.synced = true;
                    changed.insert(String::new());
                }
            }
        }
        changed
    }

    fn users_of(&self, pc: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .refs
            .iter()
            .filter(|(_, p)| p.as_str() == pc)
            .map(|(k, _)| k.clone())
            .collect();
        v.sort();
        v
    }
}

/// The ProviderConfigs whose set of users differs between two snapshots.
fn diff(old: &HashMap<String, String>, new: &HashMap<String, String>) -> BTreeSet<String> {
    let mut changed = BTreeSet::new();
    for (k, pc) in old {
        if new.get(k) != Some(pc) {
            changed.insert(pc.clone());
        }
    }
    for (k, pc) in new {
        if old.get(k) != Some(pc) {
            changed.insert(pc.clone());
        }
    }
    changed
}

/// Sessions and filters by the ProviderConfig they reference.
#[derive(Debug, Default)]
pub struct UsageIndex {
    sessions: KindIndex,
    filters: KindIndex,
}

impl UsageIndex {
    /// Applies a watch event of `kind` (objects already reduced to `(namespace/name, pc)`); returns
    /// whether a ProviderConfig's users changed (or the index just became complete).
    pub fn apply(&mut self, kind: UserKind, event: Event<(String, String)>) -> bool {
        let index = match kind {
            UserKind::Session => &mut self.sessions,
            UserKind::Filter => &mut self.filters,
        };
        !index.apply(event).is_empty()
    }

    /// The users of `pc`, once both kinds have been listed completely; `None` before (nobody can
    /// tell yet whether a ProviderConfig is unused).
    pub fn users_of(&self, pc: &str) -> Option<Users> {
        (self.sessions.synced && self.filters.synced).then(|| Users {
            sessions: self.sessions.users_of(pc),
            filters: self.filters.users_of(pc),
        })
    }
}

/// What to do with the in-use finalizer (no client required).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalizerStep {
    /// Not being deleted and the finalizer is missing: add it.
    Add,
    /// Nothing to change.
    Keep,
    /// Being deleted while objects still use it (or before anyone can tell): keep the finalizer and
    /// keep serving the users, so their deletion can still clean up the cloud.
    Hold,
    /// Being deleted and unused: remove the finalizer and stop serving.
    Remove,
}

/// Decides the finalizer step from whether the object is being deleted, whether it carries the
/// finalizer, and how many objects use it (`None` = not known yet).
pub fn decide_finalizer(
    deleting: bool,
    has_finalizer: bool,
    users: Option<usize>,
) -> FinalizerStep {
    match (deleting, has_finalizer, users) {
        (false, false, _) => FinalizerStep::Add,
        (false, true, _) | (true, false, _) => FinalizerStep::Keep,
        (true, true, Some(0)) => FinalizerStep::Remove,
        (true, true, _) => FinalizerStep::Hold,
    }
}

/// How many users a message lists by name.
const LISTED: usize = 5;

/// The `Ready=False`, reason `InUse` message: how many objects of each kind still use the
/// ProviderConfig, the first few by name, and what to do.
pub fn in_use_message(users: &Users) -> String {
    let names: Vec<&String> = users.sessions.iter().chain(&users.filters).collect();
    let mut listed = names
        .iter()
        .take(LISTED)
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > LISTED {
        listed.push_str(&format!(", and {} more", names.len() - LISTED));
    }
    format!(
        "being deleted but still used by {} {}(s) and {} {}(s) ({listed}); delete them first, then the ProviderConfig goes away",
        users.sessions.len(),
        UserKind::Session.kind(),
        users.filters.len(),
        UserKind::Filter.kind(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(key: &str, pc: &str) -> (String, String) {
        (key.to_string(), pc.to_string())
    }

    fn synced() -> UsageIndex {
        let mut u = UsageIndex::default();
        for kind in [UserKind::Session, UserKind::Filter] {
            u.apply(kind, Event::Init);
            assert!(
                u.apply(kind, Event::InitDone),
                "the first list always counts"
            );
        }
        u
    }

    #[test]
    fn counts_are_unknown_until_both_kinds_are_listed() {
        let mut u = UsageIndex::default();
        u.apply(UserKind::Session, Event::Init);
        u.apply(UserKind::Session, Event::InitApply(ev("ns/a", "pc")));
        u.apply(UserKind::Session, Event::InitDone);
        assert_eq!(u.users_of("pc"), None);
        u.apply(UserKind::Filter, Event::Init);
        u.apply(UserKind::Filter, Event::InitDone);
        assert_eq!(u.users_of("pc").map(|x| x.total()), Some(1));
    }

    #[test]
    fn only_reference_changes_wake_the_controller() {
        let mut u = synced();
        assert!(u.apply(UserKind::Session, Event::Apply(ev("ns/a", "pc"))));
        assert!(
            !u.apply(UserKind::Session, Event::Apply(ev("ns/a", "pc"))),
            "a status write"
        );
        assert!(
            u.apply(UserKind::Session, Event::Apply(ev("ns/a", "other"))),
            "moved"
        );
        assert_eq!(u.users_of("pc").map(|x| x.total()), Some(0));
        assert!(u.apply(UserKind::Filter, Event::Apply(ev("ns/f", "pc"))));
        assert!(u.apply(UserKind::Session, Event::Delete(ev("ns/a", "other"))));
        assert!(
            !u.apply(UserKind::Session, Event::Delete(ev("ns/a", "other"))),
            "already gone"
        );
        let users = u.users_of("pc").expect("synced");
        assert_eq!(users.filters, vec!["ns/f".to_string()]);
        assert!(users.sessions.is_empty());
    }

    #[test]
    fn a_relist_drops_what_was_deleted_meanwhile() {
        let mut u = synced();
        u.apply(UserKind::Session, Event::Apply(ev("ns/a", "pc")));
        u.apply(UserKind::Session, Event::Apply(ev("ns/b", "pc")));
        u.apply(UserKind::Session, Event::Init);
        u.apply(UserKind::Session, Event::InitApply(ev("ns/b", "pc")));
        assert_eq!(
            u.users_of("pc").map(|x| x.total()),
            Some(2),
            "old view until done"
        );
        assert!(u.apply(UserKind::Session, Event::InitDone));
        assert_eq!(
            u.users_of("pc").map(|x| x.sessions),
            Some(vec!["ns/b".into()])
        );
        u.apply(UserKind::Session, Event::Init);
        u.apply(UserKind::Session, Event::InitApply(ev("ns/b", "pc")));
        assert!(
            !u.apply(UserKind::Session, Event::InitDone),
            "nothing changed"
        );
    }

    #[test]
    fn finalizer_decisions() {
        use FinalizerStep::*;
        let table = [
            // (deleting, has finalizer, users, step)
            (false, false, None, Add),
            (false, false, Some(3), Add),
            (false, true, Some(0), Keep),
            (false, true, None, Keep),
            (true, false, Some(2), Keep),
            (true, true, Some(2), Hold),
            (true, true, None, Hold),
            (true, true, Some(0), Remove),
        ];
        for (deleting, has, users, want) in table {
            assert_eq!(
                decide_finalizer(deleting, has, users),
                want,
                "{deleting} {has} {users:?}"
            );
        }
    }

    #[test]
    fn in_use_messages() {
        let names = |n: usize, p: &str| (0..n).map(|i| format!("ns/{p}{i}")).collect::<Vec<_>>();
        let table = [
            (
                Users {
                    sessions: names(2, "s"),
                    filters: names(1, "f"),
                },
                "still used by 2 TrafficMirrorSession(s) and 1 TrafficMirrorFilter(s) (ns/s0, ns/s1, ns/f0); delete them first",
            ),
            (
                Users {
                    sessions: names(1, "s"),
                    filters: vec![],
                },
                "still used by 1 TrafficMirrorSession(s) and 0 TrafficMirrorFilter(s) (ns/s0);",
            ),
            (
                Users {
                    sessions: names(7, "s"),
                    filters: names(2, "f"),
                },
                "(ns/s0, ns/s1, ns/s2, ns/s3, ns/s4, and 4 more); delete",
            ),
        ];
        for (users, want) in table {
            let m = in_use_message(&users);
            assert!(m.contains(want), "{m}\n  should contain {want}");
        }
    }
}
