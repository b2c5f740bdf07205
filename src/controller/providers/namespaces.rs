//! Which namespaces may use a ProviderConfig (no client required): its `spec.namespaceSelector`
//! against the labels of the object's Namespace, with Kubernetes' label selector semantics
//! (`matchLabels` and `matchExpressions` `In`/`NotIn`/`Exists`/`DoesNotExist`, all ANDed), as
//! implemented by [`kube::core::Selector`] so the rule is the API server's own, not a copy of it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};

/// Whether a namespace may use a ProviderConfig.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admits {
    /// It may: no selector, or the namespace's labels match it.
    Yes,
    /// It may not; `selector` is the selector as people write it (`team=a,env in (dev,prod)`).
    No {
        /// The selector, rendered for messages.
        selector: String,
    },
    /// The operator has not read the namespace's labels yet (just created, or the watch is still
    /// listing): neither allowed nor refused, so nothing is called and nothing is refused.
    Unknown,
}

/// Decides whether a namespace with `labels` (`None`: not read yet) may use a ProviderConfig
/// whose `spec.namespaceSelector` is `selector`. A selector the API server let through but that
/// cannot be parsed (an operator admission rejects, in an object stored before the rule) refuses
/// every namespace: a broken fence must not open the gate.
pub fn admits(
    selector: Option<&LabelSelector>,
    labels: Option<&BTreeMap<String, String>>,
) -> Admits {
    let Some(raw) = selector else {
        return Admits::Yes;
    };
    let parsed = match Selector::try_from(raw.clone()) {
        Ok(parsed) => parsed,
        Err(e) => {
            return Admits::No {
                selector: format!("an invalid selector ({e})"),
            };
        }
    };
    if parsed.selects_all() {
        return Admits::Yes;
    }
    match labels {
        None => Admits::Unknown,
        Some(labels) if parsed.matches(labels) => Admits::Yes,
        Some(_) => Admits::No {
            selector: parsed.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: Option<&[&str]>) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: values.map(|v| v.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn selector(
        match_labels: &[(&str, &str)],
        exprs: Vec<LabelSelectorRequirement>,
    ) -> LabelSelector {
        LabelSelector {
            match_labels: (!match_labels.is_empty()).then(|| labels(match_labels)),
            match_expressions: (!exprs.is_empty()).then_some(exprs),
        }
    }

    /// (case, selector, the namespace's labels, decision)
    type Row<'a> = (
        &'a str,
        Option<&'a LabelSelector>,
        &'a BTreeMap<String, String>,
        Admits,
    );

    fn no(selector: &str) -> Admits {
        Admits::No {
            selector: selector.into(),
        }
    }

    #[test]
    fn selector_semantics_follow_kubernetes() {
        let team_a = selector(&[("team", "a")], vec![]);
        let in_dev_prod = selector(&[], vec![expr("env", "In", Some(&["dev", "prod"]))]);
        let not_in_prod = selector(&[], vec![expr("env", "NotIn", Some(&["prod"]))]);
        let exists = selector(&[], vec![expr("mirror", "Exists", None)]);
        let absent = selector(&[], vec![expr("locked", "DoesNotExist", None)]);
        let both = selector(&[("team", "a")], vec![expr("env", "In", Some(&["dev"]))]);
        let empty = LabelSelector::default();
        let a = labels(&[("team", "a")]);
        let a_dev = labels(&[("team", "a"), ("env", "dev")]);
        let b_prod = labels(&[("team", "b"), ("env", "prod")]);
        let locked = labels(&[("locked", ""), ("mirror", "yes")]);
        let none = labels(&[]);
        #[rustfmt::skip]
        let table: Vec<Row<'_>> = vec![
            ("no selector: every namespace", None, &none, Admits::Yes),
            ("empty selector: every namespace", Some(&empty), &none, Admits::Yes),
            ("matchLabels matches", Some(&team_a), &a, Admits::Yes),
            ("matchLabels needs the label", Some(&team_a), &none, no("team=a")),
            ("matchLabels needs the value", Some(&team_a), &b_prod, no("team=a")),
            ("In matches one of the values", Some(&in_dev_prod), &b_prod, Admits::Yes),
            ("In needs the key", Some(&in_dev_prod), &a, no("env in (dev,prod)")),
            ("NotIn admits a missing key", Some(&not_in_prod), &a, Admits::Yes),
            ("NotIn refuses a listed value", Some(&not_in_prod), &b_prod, no("env notin (prod)")),
            ("Exists needs the key", Some(&exists), &a, no("mirror")),
            ("Exists with any value", Some(&exists), &locked, Admits::Yes),
            ("DoesNotExist admits a missing key", Some(&absent), &a, Admits::Yes),
            ("DoesNotExist refuses the key, even empty", Some(&absent), &locked, no("!locked")),
            ("all terms are ANDed", Some(&both), &a_dev, Admits::Yes),
            ("one term failing refuses", Some(&both), &a, no("team=a,env in (dev)")),
        ];
        for (case, sel, ns_labels, want) in table {
            assert_eq!(admits(sel, Some(ns_labels)), want, "{case}");
        }
    }

    #[test]
    fn unread_labels_are_neither_allowed_nor_refused_unless_nothing_is_asked() {
        let team_a = selector(&[("team", "a")], vec![]);
        assert_eq!(admits(Some(&team_a), None), Admits::Unknown);
        assert_eq!(admits(None, None), Admits::Yes);
        assert_eq!(admits(Some(&LabelSelector::default()), None), Admits::Yes);
    }

    #[test]
    fn an_unparsable_selector_refuses_every_namespace() {
        let bad = selector(&[], vec![expr("env", "Like", Some(&["dev"]))]);
        let in_without_values = selector(&[], vec![expr("env", "In", None)]);
        for sel in [bad, in_without_values] {
            let got = admits(Some(&sel), Some(&labels(&[("env", "dev")])));
            assert!(
                matches!(&got, Admits::No { selector } if selector.starts_with("an invalid selector")),
                "{got:?}"
            );
        }
    }
}
