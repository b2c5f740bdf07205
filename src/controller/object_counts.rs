//! `tmo_objects{kind, ready}`: the objects of each kind in the operator's caches, by the status of
//! their `Ready` condition, counted when `/metrics` is scraped (so the dashboard and the "not
//! Ready" alerts need nothing but the operator).

use std::collections::BTreeMap;

use kube::runtime::reflector::Store;

use crate::api::common::Condition;
use crate::telemetry::{Metrics, ObjectCounter};

use super::conditions;

/// The Ready state label of an object: its `Ready` condition's status (`True`, `False`), or
/// `Unknown` when it has none yet or its status is anything else.
pub fn ready_state(conditions: Option<&[Condition]>) -> &'static str {
    let ready = conditions.and_then(|c| conditions::find(c, conditions::READY));
    match ready.map(|c| c.status.as_str()) {
        Some("True") => "True",
        Some("False") => "False",
        _ => "Unknown",
    }
}

/// Counts `states` per Ready state.
pub fn tally<'a>(states: impl IntoIterator<Item = &'a str>) -> BTreeMap<&'static str, i64> {
    let mut counts = BTreeMap::new();
    for s in states {
        let key = match s {
            "True" => "True",
            "False" => "False",
            _ => "Unknown",
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// Registers `store` as the source of `tmo_objects` for `kind`; `conditions` reads an object's
/// status conditions (None before its first status).
pub fn count_from_store<K>(
    metrics: &Metrics,
    kind: &str,
    store: Store<K>,
    conditions: fn(&K) -> Option<&[Condition]>,
) where
    K: kube::Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let counter: ObjectCounter = Box::new(move || {
        let objects = store.state();
        tally(objects.iter().map(|o| ready_state(conditions(o))))
    });
    metrics.count_objects(kind, counter);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(type_: &str, status: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: "R".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
        }
    }

    #[test]
    fn ready_state_reads_the_ready_condition() {
        let cases: [(Option<Vec<Condition>>, &str); 5] = [
            (None, "Unknown"),
            (Some(vec![]), "Unknown"),
            (Some(vec![condition("Synced", "True")]), "Unknown"),
            (Some(vec![condition("Ready", "True")]), "True"),
            (Some(vec![condition("Ready", "False")]), "False"),
        ];
        for (conds, want) in cases {
            assert_eq!(ready_state(conds.as_deref()), want, "{conds:?}");
        }
    }

    #[test]
    fn tally_counts_per_state() {
        let counts = tally(["True", "True", "False", "Unknown", "odd"]);
        let want: BTreeMap<&str, i64> = [("True", 2), ("False", 1), ("Unknown", 2)].into();
        assert_eq!(counts, want);
    }
}
