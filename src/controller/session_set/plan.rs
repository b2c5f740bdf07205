//! The set's planner (no client required): from the children it has (name → sources) and the ports
//! that are selected now, the children's new source lists, the children to create and the children
//! to delete.
//!
//! The rules, each a property test below:
//! - a port that stays selected keeps its child (never removed, never moved), so mirroring of the
//!   ports that stay has no gap;
//! - no child holds more than the limit;
//! - new ports fill the existing children with room (oldest first) before a new child is made;
//! - a child left with no source is deleted;
//! - each selected port is in exactly one child.
//!
//! The one exception to "never moved": when the limit is lowered below what a child holds, the
//! ports over it (the highest ids) leave that child and are placed like new ports.

use std::collections::{BTreeMap, BTreeSet};

/// What the set must do to its children.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetPlan {
    /// Every child that stays, with its sources after the plan (changed or not), in child order.
    pub keep: BTreeMap<String, BTreeSet<String>>,
    /// New children, with their sources.
    pub create: BTreeMap<String, BTreeSet<String>>,
    /// Children to delete (left with no source).
    pub delete: Vec<String>,
}

impl SetPlan {
    /// Every child after the plan, with its sources: the kept ones and the new ones.
    pub fn children(&self) -> impl Iterator<Item = (&String, &BTreeSet<String>)> {
        self.keep.iter().chain(self.create.iter())
    }
}

/// The name of the set's `n`th child: `<set>-<n>`.
pub fn child_name(set: &str, n: usize) -> String {
    format!("{set}-{n}")
}

/// The index of a child named `<set>-<n>`, if it is named so.
pub fn child_index(set: &str, child: &str) -> Option<usize> {
    child.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

/// The children in the order they are filled: by index, then any other name.
fn fill_order<'a>(set: &str, children: &'a BTreeMap<String, BTreeSet<String>>) -> Vec<&'a String> {
    let mut names: Vec<&String> = children.keys().collect();
    names.sort_by_key(|n| (child_index(set, n).unwrap_or(usize::MAX), (*n).clone()));
    names
}

/// Plans the children of set `set` for the `desired` ports, at most `max` sources each. `reserved`
/// names (sessions in the namespace that are not this set's children) are never used for a new one.
pub fn plan(
    set: &str,
    children: &BTreeMap<String, BTreeSet<String>>,
    desired: &BTreeSet<String>,
    max: usize,
    reserved: &BTreeSet<String>,
) -> SetPlan {
    let max = max.max(1);
    let order = fill_order(set, children);
    let (mut keep, placed) = kept_sources(&order, children, desired, max);
    let mut unplaced = desired.difference(&placed).cloned();
    for name in &order {
        let sources = keep.entry((*name).clone()).or_default();
        while sources.len() < max {
            let Some(port) = unplaced.next() else { break };
            sources.insert(port);
        }
    }
    let mut create = BTreeMap::new();
    let mut next = 0;
    let mut rest: Vec<String> = unplaced.collect();
    while !rest.is_empty() {
        while children.contains_key(&child_name(set, next))
            || reserved.contains(&child_name(set, next))
        {
            next += 1;
        }
        let batch: BTreeSet<String> = rest.drain(..rest.len().min(max)).collect();
        create.insert(child_name(set, next), batch);
        next += 1;
    }
    let delete: Vec<String> = order
        .iter()
        .filter(|n| keep.get(**n).is_none_or(BTreeSet::is_empty))
        .map(|n| (*n).clone())
        .collect();
    keep.retain(|_, s| !s.is_empty());
    SetPlan {
        keep,
        create,
        delete,
    }
}

/// What each child keeps: its sources that are still desired, not already kept by an earlier child
/// (a duplicate left by a crash stays in the first), and at most `max` of them. Also every port
/// kept.
fn kept_sources(
    order: &[&String],
    children: &BTreeMap<String, BTreeSet<String>>,
    desired: &BTreeSet<String>,
    max: usize,
) -> (BTreeMap<String, BTreeSet<String>>, BTreeSet<String>) {
    let mut placed = BTreeSet::new();
    let mut keep = BTreeMap::new();
    for name in order {
        let kept: BTreeSet<String> = children[*name]
            .iter()
            .filter(|p| desired.contains(*p) && !placed.contains(*p))
            .take(max)
            .cloned()
            .collect();
        placed.extend(kept.iter().cloned());
        keep.insert((*name).clone(), kept);
    }
    (keep, placed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set_of(ports: &[&str]) -> BTreeSet<String> {
        ports.iter().map(|p| p.to_string()).collect()
    }

    fn children(list: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        list.iter()
            .map(|(n, p)| (n.to_string(), set_of(p)))
            .collect()
    }

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            have: Vec<(&'static str, &'static [&'static str])>,
            want: &'static [&'static str],
            max: usize,
            reserved: &'static [&'static str],
            keep: Vec<(&'static str, &'static [&'static str])>,
            create: Vec<(&'static str, &'static [&'static str])>,
            delete: &'static [&'static str],
        }
        let cases = vec![
            Case {
                name: "nothing selected, nothing there",
                have: vec![],
                want: &[],
                max: 10,
                reserved: &[],
                keep: vec![],
                create: vec![],
                delete: &[],
            },
            Case {
                name: "first ports make s-0 and s-1",
                have: vec![],
                want: &["a", "b", "c"],
                max: 2,
                reserved: &[],
                keep: vec![],
                create: vec![("s-0", &["a", "b"]), ("s-1", &["c"])],
                delete: &[],
            },
            Case {
                name: "new ports fill the child with room first",
                have: vec![("s-0", &["a", "b"]), ("s-1", &["c"])],
                want: &["a", "b", "c", "d", "e", "f"],
                max: 2,
                reserved: &[],
                keep: vec![("s-0", &["a", "b"]), ("s-1", &["c", "d"])],
                create: vec![("s-2", &["e", "f"])],
                delete: &[],
            },
            Case {
                name: "a freed slot is refilled, staying ports do not move",
                have: vec![("s-0", &["a", "b"]), ("s-1", &["c", "d"])],
                want: &["b", "c", "d", "z"],
                max: 2,
                reserved: &[],
                keep: vec![("s-0", &["b", "z"]), ("s-1", &["c", "d"])],
                create: vec![],
                delete: &[],
            },
            Case {
                name: "an emptied child is deleted",
                have: vec![("s-0", &["a"]), ("s-1", &["c", "d"])],
                want: &["c", "d"],
                max: 2,
                reserved: &[],
                keep: vec![("s-1", &["c", "d"])],
                create: vec![],
                delete: &["s-0"],
            },
            Case {
                name: "a gap in the names is reused",
                have: vec![("s-1", &["c", "d"])],
                want: &["c", "d", "e"],
                max: 2,
                reserved: &[],
                keep: vec![("s-1", &["c", "d"])],
                create: vec![("s-0", &["e"])],
                delete: &[],
            },
            Case {
                name: "a duplicate from a crash stays in the first child",
                have: vec![("s-0", &["a"]), ("s-1", &["a", "b"])],
                want: &["a", "b"],
                max: 2,
                reserved: &[],
                keep: vec![("s-0", &["a"]), ("s-1", &["b"])],
                create: vec![],
                delete: &[],
            },
            Case {
                name: "a lowered limit moves the overflow only",
                have: vec![("s-0", &["a", "b", "c"])],
                want: &["a", "b", "c"],
                max: 2,
                reserved: &[],
                keep: vec![("s-0", &["a", "b"])],
                create: vec![("s-1", &["c"])],
                delete: &[],
            },
            Case {
                name: "a name taken by another session is skipped",
                have: vec![],
                want: &["a"],
                max: 2,
                reserved: &["s-0"],
                keep: vec![],
                create: vec![("s-1", &["a"])],
                delete: &[],
            },
        ];
        for c in cases {
            let got = plan(
                "s",
                &children(&c.have),
                &set_of(c.want),
                c.max,
                &set_of(c.reserved),
            );
            let mut keep = children(&c.keep);
            keep.retain(|_, s| !s.is_empty());
            assert_eq!(got.keep, keep, "{}: keep", c.name);
            assert_eq!(got.create, children(&c.create), "{}: create", c.name);
            let delete: Vec<String> = c.delete.iter().map(|d| d.to_string()).collect();
            assert_eq!(got.delete, delete, "{}: delete", c.name);
        }
    }

    #[test]
    fn child_names_round_trip() {
        assert_eq!(child_index("web", &child_name("web", 12)), Some(12));
        assert_eq!(child_index("web", "web-x"), None);
        assert_eq!(child_index("web", "webby-1"), None);
    }

    fn world() -> impl Strategy<Value = (Vec<BTreeSet<String>>, BTreeSet<String>, usize)> {
        let port = (0u8..40).prop_map(|p| format!("p{p}"));
        let child = proptest::collection::btree_set(port.clone(), 1..8);
        (
            proptest::collection::vec(child, 0..6),
            proptest::collection::btree_set(port, 0..40),
            1usize..8,
        )
    }

    proptest! {
        #[test]
        fn plan_keeps_every_rule((have, want, max) in world()) {
            let have: BTreeMap<String, BTreeSet<String>> = have
                .into_iter()
                .enumerate()
                .map(|(i, s)| (child_name("s", i * 2), s))
                .collect();
            let p = plan("s", &have, &want, max, &BTreeSet::new());
            // each selected port in exactly one child; nothing else
            let mut seen = BTreeSet::new();
            for (_, sources) in p.children() {
                prop_assert!(!sources.is_empty() && sources.len() <= max);
                for s in sources {
                    prop_assert!(seen.insert(s.clone()), "{} twice", s);
                }
            }
            prop_assert_eq!(&seen, &want);
            // a port that stays selected keeps its child (unless that child was over the limit
            // or held a duplicate)
            for (name, before) in &have {
                let over = before.len() > max;
                for port in before.iter().filter(|p| want.contains(*p)) {
                    let owner = have.iter().find(|(_, s)| s.contains(port)).map(|(n, _)| n);
                    if !over && owner == Some(name) {
                        prop_assert!(p.keep.get(name).is_some_and(|s| s.contains(port)));
                    }
                }
            }
            // new children only when the existing ones are full
            if !p.create.is_empty() {
                prop_assert!(p.keep.values().all(|s| s.len() == max));
                prop_assert!(p.delete.is_empty());
            }
            // deleted children had no selected port left and are not kept
            for d in &p.delete {
                prop_assert!(!p.keep.contains_key(d) && !p.create.contains_key(d));
            }
            prop_assert_eq!(p.keep.len() + p.delete.len(), have.len());
        }
    }
}
