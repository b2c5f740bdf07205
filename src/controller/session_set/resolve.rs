//! Node → port resolution (no client required): the rules, and the cache that makes a Node cost one
//! lookup in its life.
//!
//! A Node's port is the port whose private IP is the Node's `InternalIP`, in `spec.sources.vpcId` when
//! set. `spec.providerID` (`huaweicloud://<id>` or a bare id) may name the ECS server (on managed CCE
//! it is the CCE node id instead), so it is never the only source: it only narrows several candidates
//! to the one whose `device_id` it names. Anything but exactly one candidate is unresolved, with the
//! reason, and never guessed.

use std::collections::{BTreeMap, HashMap};

use super::nodes::NodeFacts;

/// Why a Node has no port.
pub mod reason {
    /// The Node has no `InternalIP` address (yet).
    pub const NO_INTERNAL_IP: &str = "NoInternalIP";
    /// No port has the Node's address (in the VPC, when set).
    pub const NO_PORT: &str = "NoPort";
    /// Several ports have the Node's address and the providerID does not tell them apart.
    pub const AMBIGUOUS: &str = "Ambiguous";
}

/// How many addresses one ports query filters on (`private_ips=ip_address=…` repeated): a resync of
/// 300 new Nodes is 6 queries, and the URL stays under 2 KB.
pub const ADDRESSES_PER_QUERY: usize = 50;

/// What resolution needs of a port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortFacts {
    /// The port id (the mirror source).
    pub id: String,
    /// The server (ECS) the port is attached to.
    pub device_id: String,
    /// The VPC of the port.
    pub vpc_id: String,
    /// The port's private IP addresses.
    pub addresses: Vec<String>,
}

/// A Node's port, or why there is none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The Node's port id.
    Port(String),
    /// Not resolved: the reason (see [`reason`]), a message, and the candidate ports.
    Unresolved {
        /// [`reason`].
        reason: &'static str,
        /// What was looked up and what to do.
        message: String,
        /// The ports that matched, for `Ambiguous`.
        candidates: Vec<String>,
    },
}

/// The server id `spec.providerID` may name: the last path segment of `huaweicloud://…`, or a bare id.
pub fn server_id(provider_id: &str) -> Option<&str> {
    let id = match provider_id.split_once("://") {
        Some((_, rest)) => rest.rsplit('/').next().unwrap_or_default(),
        None => provider_id,
    };
    (!id.is_empty() && !id.contains(['/', ':'])).then_some(id)
}

/// Resolves `node` against `ports` (the ports holding its address, in any VPC).
pub fn resolve(node: &NodeFacts, vpc_id: Option<&str>, ports: &[PortFacts]) -> Resolution {
    let Some(ip) = node.internal_ip.as_deref() else {
        return unresolved(
            reason::NO_INTERNAL_IP,
            "the Node has no InternalIP address yet",
            vec![],
        );
    };
    let candidates: Vec<&PortFacts> = ports
        .iter()
        .filter(|p| p.addresses.iter().any(|a| a == ip))
        .filter(|p| vpc_id.is_none_or(|v| p.vpc_id == v))
        .collect();
    let server = node.provider_id.as_deref().and_then(server_id);
    let on_server: Vec<&PortFacts> = candidates
        .iter()
        .copied()
        .filter(|p| server.is_some_and(|s| p.device_id == s))
        .collect();
    let narrowed = if on_server.is_empty() {
        candidates
    } else {
        on_server
    };
    let scope = vpc_id.map_or_else(|| "in any VPC".to_string(), |v| format!("in VPC {v}"));
    match narrowed.as_slice() {
        [one] => Resolution::Port(one.id.clone()),
        [] => unresolved(
            reason::NO_PORT,
            &format!("no port has the address {ip} {scope}"),
            vec![],
        ),
        many => ambiguous(ip, &scope, many),
    }
}

/// `Ambiguous`, naming the candidates sorted (the status must not change with the cloud's order).
fn ambiguous(ip: &str, scope: &str, many: &[&PortFacts]) -> Resolution {
    let mut candidates: Vec<String> = many.iter().map(|p| p.id.clone()).collect();
    candidates.sort();
    unresolved(
        reason::AMBIGUOUS,
        &format!(
            "{} ports have the address {ip} {scope} and the providerID names none of their servers; set spec.sources.vpcId",
            many.len()
        ),
        candidates,
    )
}

fn unresolved(reason: &'static str, message: &str, candidates: Vec<String>) -> Resolution {
    Resolution::Unresolved {
        reason,
        message: message.to_string(),
        candidates,
    }
}

/// The addresses to look up, in queries of at most [`ADDRESSES_PER_QUERY`], sorted and distinct.
pub fn address_batches<'a>(nodes: impl IntoIterator<Item = &'a NodeFacts>) -> Vec<Vec<String>> {
    let mut ips: Vec<String> = nodes
        .into_iter()
        .filter_map(|n| n.internal_ip.clone())
        .collect();
    ips.sort();
    ips.dedup();
    ips.chunks(ADDRESSES_PER_QUERY)
        .map(<[String]>::to_vec)
        .collect()
}

/// Resolved Nodes: a Node's port does not change, so a Node is looked up once while its uid,
/// address, providerID and the set's VPC stay the same. Unresolved Nodes are not kept: they are
/// looked up again at the next reconcile.
#[derive(Debug, Default)]
pub struct ResolutionCache {
    ports: HashMap<(NodeFacts, Option<String>), String>,
}

impl ResolutionCache {
    /// The cached port of `node` in `vpc_id`.
    pub fn get(&self, node: &NodeFacts, vpc_id: Option<&str>) -> Option<&String> {
        self.ports.get(&(node.clone(), vpc_id.map(str::to_string)))
    }

    /// Records the port of `node`.
    pub fn insert(&mut self, node: &NodeFacts, vpc_id: Option<&str>, port: String) {
        self.ports
            .insert((node.clone(), vpc_id.map(str::to_string)), port);
    }

    /// Keeps only the entries of Nodes in `live` (by uid), so the cache does not grow forever.
    pub fn retain_nodes(&mut self, live: &std::collections::HashSet<String>) {
        self.ports.retain(|(n, _), _| live.contains(&n.uid));
    }
}

/// Resolves every Node: from the cache, else against `ports` (recording the result). Returns the
/// resolutions by Node name.
pub fn resolve_all(
    cache: &mut ResolutionCache,
    nodes: &[NodeFacts],
    vpc_id: Option<&str>,
    ports: &[PortFacts],
) -> BTreeMap<String, Resolution> {
    let mut out = BTreeMap::new();
    for node in nodes {
        if let Some(port) = cache.get(node, vpc_id) {
            out.insert(node.name.clone(), Resolution::Port(port.clone()));
            continue;
        }
        let r = resolve(node, vpc_id, ports);
        if let Resolution::Port(p) = &r {
            cache.insert(node, vpc_id, p.clone());
        }
        out.insert(node.name.clone(), r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ip: Option<&str>, provider: Option<&str>) -> NodeFacts {
        NodeFacts {
            name: "n".into(),
            uid: "u".into(),
            internal_ip: ip.map(str::to_string),
            provider_id: provider.map(str::to_string),
        }
    }

    fn port(id: &str, device: &str, vpc: &str, ip: &str) -> PortFacts {
        PortFacts {
            id: id.into(),
            device_id: device.into(),
            vpc_id: vpc.into(),
            addresses: vec![ip.into()],
        }
    }

    fn port_of(r: &Resolution) -> Option<&str> {
        match r {
            Resolution::Port(p) => Some(p),
            Resolution::Unresolved { .. } => None,
        }
    }

    fn reason_of(r: &Resolution) -> &str {
        match r {
            Resolution::Port(_) => "Port",
            Resolution::Unresolved { reason, .. } => reason,
        }
    }

    #[test]
    fn server_ids() {
        for (given, want) in [
            ("huaweicloud://srv-1", Some("srv-1")),
            ("huaweicloud:///cn-north-4a/srv-1", Some("srv-1")),
            ("srv-1", Some("srv-1")),
            ("huaweicloud://", None),
            ("", None),
        ] {
            assert_eq!(server_id(given), want, "{given}");
        }
    }

    #[test]
    fn table() {
        let a1 = port("p-a1", "srv-a", "vpc-1", "10.0.0.5");
        let b2 = port("p-b2", "srv-b", "vpc-2", "10.0.0.5");
        let other = port("p-x", "srv-x", "vpc-1", "10.0.0.9");
        type Case<'a> = (
            &'a str,
            NodeFacts,
            Option<&'a str>,
            Vec<PortFacts>,
            &'a str,
            Option<&'a str>,
        );
        let cases: Vec<Case<'_>> = vec![
            (
                "no address",
                node(None, None),
                None,
                vec![a1.clone()],
                reason::NO_INTERNAL_IP,
                None,
            ),
            (
                "one port",
                node(Some("10.0.0.5"), None),
                None,
                vec![a1.clone(), other.clone()],
                "Port",
                Some("p-a1"),
            ),
            (
                "no port",
                node(Some("10.0.0.7"), None),
                None,
                vec![a1.clone()],
                reason::NO_PORT,
                None,
            ),
            (
                "two VPCs, no scope",
                node(Some("10.0.0.5"), None),
                None,
                vec![a1.clone(), b2.clone()],
                reason::AMBIGUOUS,
                None,
            ),
            (
                "two VPCs, scoped",
                node(Some("10.0.0.5"), None),
                Some("vpc-2"),
                vec![a1.clone(), b2.clone()],
                "Port",
                Some("p-b2"),
            ),
            (
                "scope excludes the only port",
                node(Some("10.0.0.5"), None),
                Some("vpc-9"),
                vec![a1.clone()],
                reason::NO_PORT,
                None,
            ),
            (
                "providerID picks the server",
                node(Some("10.0.0.5"), Some("huaweicloud://srv-b")),
                None,
                vec![a1.clone(), b2.clone()],
                "Port",
                Some("p-b2"),
            ),
            (
                "providerID of a CCE node id is ignored",
                node(Some("10.0.0.5"), Some("cce-node-7")),
                None,
                vec![a1.clone()],
                "Port",
                Some("p-a1"),
            ),
            (
                "providerID alone is not enough",
                node(Some("10.0.0.7"), Some("srv-a")),
                None,
                vec![a1.clone()],
                reason::NO_PORT,
                None,
            ),
        ];
        for (name, n, vpc, ports, want_reason, want_port) in cases {
            let r = resolve(&n, vpc, &ports);
            assert_eq!(reason_of(&r), want_reason, "{name}: {r:?}");
            assert_eq!(port_of(&r), want_port, "{name}");
        }
    }

    #[test]
    fn ambiguous_lists_the_candidates() {
        let ports = [
            port("p-2", "s2", "v2", "10.0.0.5"),
            port("p-1", "s1", "v1", "10.0.0.5"),
        ];
        let Resolution::Unresolved { candidates, .. } =
            resolve(&node(Some("10.0.0.5"), None), None, &ports)
        else {
            panic!("resolved")
        };
        assert_eq!(candidates, ["p-1", "p-2"]);
    }

    #[test]
    fn cache_answers_without_ports_and_forgets_gone_nodes() {
        let mut cache = ResolutionCache::default();
        let n = node(Some("10.0.0.5"), None);
        let ports = [port("p-1", "s", "v", "10.0.0.5")];
        let first = resolve_all(&mut cache, std::slice::from_ref(&n), None, &ports);
        assert_eq!(first["n"], Resolution::Port("p-1".into()));
        let again = resolve_all(&mut cache, std::slice::from_ref(&n), None, &[]);
        assert_eq!(again["n"], Resolution::Port("p-1".into()));
        let mut moved = n.clone();
        moved.internal_ip = Some("10.0.0.6".into());
        assert!(
            cache.get(&moved, None).is_none(),
            "a new address is looked up again"
        );
        cache.retain_nodes(&Default::default());
        assert!(cache.get(&n, None).is_none());
    }

    #[test]
    fn batches_are_distinct_sorted_and_bounded() {
        let nodes: Vec<NodeFacts> = (0..120)
            .map(|i| node(Some(&format!("10.0.{}.{}", i / 100, i % 100)), None))
            .chain([node(None, None), node(Some("10.0.0.1"), None)])
            .collect();
        let batches = address_batches(&nodes);
        assert_eq!(batches.len(), 3);
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 120);
        assert!(batches.iter().all(|b| b.len() <= ADDRESSES_PER_QUERY));
    }
}
