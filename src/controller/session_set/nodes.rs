//! Which Nodes a set selects (no client required): the label selector, minus the Nodes on their way
//! out, and what of a Node the port resolution needs ([`NodeFacts`]).

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};

/// The cluster-autoscaler's taint on a Node it is about to delete.
pub const AUTOSCALER_TAINT: &str = "ToBeDeletedByClusterAutoscaler";
/// Karpenter's taint on a Node it is disrupting (with effect `NoSchedule`).
pub const KARPENTER_TAINT: &str = "karpenter.sh/disrupted";

/// What port resolution needs of a Node; also the key of the resolution cache (a Node's port does not
/// change while these do not).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeFacts {
    /// The Node's name (for status).
    pub name: String,
    /// The Node's uid: a Node re-created under the same name is another Node.
    pub uid: String,
    /// The Node's first `InternalIP` address.
    pub internal_ip: Option<String>,
    /// `spec.providerID`, as written.
    pub provider_id: Option<String>,
}

impl NodeFacts {
    /// The facts of `node`.
    pub fn of(node: &Node) -> NodeFacts {
        let internal_ip = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
            .map(|a| a.address.clone());
        NodeFacts {
            name: node.name_any(),
            uid: node.uid().unwrap_or_default(),
            internal_ip,
            provider_id: node.spec.as_ref().and_then(|s| s.provider_id.clone()),
        }
    }
}

/// Whether the Node is being removed: a deletion timestamp, the cluster-autoscaler's taint, or
/// Karpenter's disruption taint. Its port stops being a source at once, before the server goes.
pub fn is_leaving(node: &Node) -> bool {
    if node.metadata.deletion_timestamp.is_some() {
        return true;
    }
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref());
    taints.unwrap_or_default().iter().any(|t| {
        t.key == AUTOSCALER_TAINT || (t.key == KARPENTER_TAINT && t.effect == "NoSchedule")
    })
}

/// The selector as kube matches it; `None` when it cannot be parsed (an invalid operator or values).
pub fn selector(selector: &LabelSelector) -> Result<Selector, String> {
    Selector::try_from(selector.clone()).map_err(|e| e.to_string())
}

/// Whether `selector` selects `node` (labels only; leaving Nodes are filtered by [`selected`]).
pub fn matches(selector: &Selector, node: &Node) -> bool {
    selector.matches(node.labels())
}

/// The Nodes a set selects: matching the selector and not leaving, sorted by name.
pub fn selected<'a>(
    selector: &Selector,
    nodes: impl IntoIterator<Item = &'a Node>,
) -> Vec<NodeFacts> {
    let mut out: Vec<NodeFacts> = nodes
        .into_iter()
        .filter(|n| matches(selector, n) && !is_leaving(n))
        .map(NodeFacts::of)
        .collect();
    out.sort();
    out
}

/// What of a Node matters to the sets: a change of anything else (a heartbeat, a condition) wakes
/// no set.
pub fn fingerprint(node: &Node) -> (std::collections::BTreeMap<String, String>, NodeFacts, bool) {
    (node.labels().clone(), NodeFacts::of(node), is_leaving(node))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    fn basic(name: &str, labels: serde_json::Value) -> Node {
        node(json!({
            "metadata": {"name": name, "uid": format!("uid-{name}"), "labels": labels},
            "spec": {"providerID": "huaweicloud://srv-1"},
            "status": {"addresses": [
                {"type": "Hostname", "address": name},
                {"type": "InternalIP", "address": "10.0.0.5"}
            ]}
        }))
    }

    #[test]
    fn facts_take_the_internal_ip_and_provider_id() {
        let f = NodeFacts::of(&basic("n1", json!({})));
        assert_eq!(f.internal_ip.as_deref(), Some("10.0.0.5"));
        assert_eq!(f.provider_id.as_deref(), Some("huaweicloud://srv-1"));
        assert_eq!(f.uid, "uid-n1");
    }

    #[test]
    fn leaving_nodes() {
        let cases = [
            (json!({"metadata": {"name": "a"}}), false),
            (
                json!({"metadata": {"name": "a", "deletionTimestamp": "2026-01-01T00:00:00Z"}}),
                true,
            ),
            (
                json!({"metadata": {"name": "a"}, "spec": {"taints": [{"key": AUTOSCALER_TAINT, "effect": "NoSchedule"}]}}),
                true,
            ),
            (
                json!({"metadata": {"name": "a"}, "spec": {"taints": [{"key": KARPENTER_TAINT, "effect": "NoSchedule"}]}}),
                true,
            ),
            (
                json!({"metadata": {"name": "a"}, "spec": {"taints": [{"key": KARPENTER_TAINT, "effect": "NoExecute"}]}}),
                false,
            ),
            (
                json!({"metadata": {"name": "a"}, "spec": {"taints": [{"key": "other", "effect": "NoSchedule"}]}}),
                false,
            ),
        ];
        for (n, want) in cases {
            assert_eq!(is_leaving(&node(n.clone())), want, "{n}");
        }
    }

    #[test]
    fn selection_uses_labels_and_drops_leaving_nodes() {
        let sel: LabelSelector =
            serde_json::from_value(json!({"matchLabels": {"mirror": "on"}})).unwrap();
        let sel = selector(&sel).unwrap();
        let mut leaving = basic("c", json!({"mirror": "on"}));
        leaving.metadata.deletion_timestamp = basic("x", json!({})).metadata.creation_timestamp.or(
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            )),
        );
        let nodes = [
            basic("b", json!({"mirror": "on"})),
            basic("a", json!({"mirror": "on"})),
            basic("d", json!({"mirror": "off"})),
            leaving,
        ];
        let names: Vec<String> = selected(&sel, &nodes).into_iter().map(|f| f.name).collect();
        assert_eq!(names, ["a", "b"]);
        let everything = selector(&LabelSelector::default()).unwrap();
        assert_eq!(selected(&everything, &nodes).len(), 3);
    }

    #[test]
    fn invalid_selector_is_an_error() {
        let sel: LabelSelector = serde_json::from_value(
            json!({"matchExpressions": [{"key": "a", "operator": "Bogus", "values": ["x"]}]}),
        )
        .unwrap();
        assert!(selector(&sel).is_err());
    }
}
