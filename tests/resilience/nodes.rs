//! The Node churn under a TrafficMirrorSessionSet: a pool of Nodes (plain objects, labelled with the
//! test namespace, each with its port seeded in the emulator) that join, leave and are relabelled
//! while the faults and kills go on; and the end checks of the set:
//!
//! - the set is `Ready=True` for its current generation;
//! - every port of a Node selected at the end (`mirror=on`, not being deleted) is a source of
//!   exactly one child, and no child holds anything else;
//! - no child holds more than `maxSourcesPerSession`.
//!
//! The children are sessions, so the session checks (`check.rs`) also hold for them: each Ready with
//! its cloud session in the desired state, and no cloud session left from a child that is gone.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use rand::RngExt;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use traffic_mirror_operator::api::{TrafficMirrorSession, TrafficMirrorSessionSet};

use super::check::Violation;

/// Nodes in the pool.
pub const POOL: usize = 12;
/// The set's name.
pub const SET: &str = "nodes";
/// Sources per child: small, so the churn fills, empties and makes children.
pub const MAX_SOURCES: usize = 3;
/// The label the Nodes carry: the test namespace.
const TEST_LABEL: &str = "tmo-test";

/// The Node churn.
pub struct NodeChurn {
    rng: StdRng,
    nodes: Api<Node>,
    ns: String,
    /// Operations done, by kind (`node/join`, `node/leave`, `node/relabel`), failed ones included.
    pub ops: BTreeMap<&'static str, u64>,
}

/// The port id of Node `i` of namespace `ns`.
pub fn port_id(ns: &str, i: usize) -> String {
    format!("port-{ns}-{i:02}")
}

fn ip(i: usize) -> String {
    format!("10.77.0.{}", 10 + i)
}

fn node_name(ns: &str, i: usize) -> String {
    format!("{ns}-node-{i:02}")
}

impl NodeChurn {
    /// Seeds the pool's ports in the emulator at `emu_url` and creates the set (no Node yet).
    pub async fn setup(
        rng: StdRng,
        client: &Client,
        ns: &str,
        pc: &str,
        filter_id: &str,
        emu_url: &str,
    ) -> NodeChurn {
        let http = reqwest::Client::new();
        for i in 0..POOL {
            let body = json!({"id": port_id(ns, i), "vpc_id": "vpc-r", "device_id": format!("srv-{i}"),
                "device_owner": "compute:az1", "private_ips": [{"subnet_cidr_id": "s", "ip_address": ip(i)}]});
            let status = http
                .post(format!("{emu_url}/_emulator/ports"))
                .json(&body)
                .send()
                .await
                .expect("seed a port")
                .status();
            assert!(status.is_success(), "seed port {i}: {status}");
        }
        let set: TrafficMirrorSessionSet = serde_json::from_value(json!({
            "apiVersion": "vpc.hwcloud.dev/v1alpha1", "kind": "TrafficMirrorSessionSet",
            "metadata": {"name": SET},
            "spec": {
                "sources": {"nodeSelector": {"matchLabels": {TEST_LABEL: ns, "mirror": "on"}}, "vpcId": "vpc-r"},
                "sessionTemplate": {"trafficMirrorFilterId": filter_id, "trafficMirrorTargetId": "eni-set-target",
                    "trafficMirrorTargetType": "eni", "priority": 500, "providerConfigRef": {"name": pc}},
                "maxSourcesPerSession": MAX_SOURCES,
            },
        }))
        .expect("set manifest");
        Api::<TrafficMirrorSessionSet>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &set)
            .await
            .expect("create the set");
        NodeChurn {
            rng,
            nodes: Api::all(client.clone()),
            ns: ns.to_string(),
            ops: BTreeMap::new(),
        }
    }

    /// One operation on a random Node of the pool: join it (labelled on or off at random) if it is
    /// absent, else let it leave or flip its label. Failures (the API server restarting) are
    /// counted and ignored: the end checks read what the API server holds.
    pub async fn step(&mut self) {
        let i = self.rng.random_range(0..POOL);
        let name = node_name(&self.ns, i);
        let present = matches!(self.nodes.get_opt(&name).await, Ok(Some(_)));
        let kind = if !present {
            let on = if self.rng.random_bool(0.7) {
                "on"
            } else {
                "off"
            };
            let node: Node = serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {TEST_LABEL: self.ns, "mirror": on}},
                "spec": {"providerID": format!("huaweicloud://srv-{i}")},
                "status": {"addresses": [{"type": "InternalIP", "address": ip(i)}]},
            }))
            .expect("node manifest");
            let _ = self.nodes.create(&PostParams::default(), &node).await;
            "node/join"
        } else if self.rng.random_bool(0.4) {
            let _ = self.nodes.delete(&name, &DeleteParams::default()).await;
            "node/leave"
        } else {
            let on = if self.rng.random_bool(0.5) {
                "on"
            } else {
                "off"
            };
            let patch = json!({"metadata": {"labels": {"mirror": on}}});
            let _ = self
                .nodes
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await;
            "node/relabel"
        };
        *self.ops.entry(kind).or_default() += 1;
    }

    /// How many operations were done.
    pub fn total(&self) -> u64 {
        self.ops.values().sum()
    }

    /// Deletes the pool's Nodes (best effort).
    pub async fn cleanup(&self) {
        for i in 0..POOL {
            let _ = self
                .nodes
                .delete(&node_name(&self.ns, i), &DeleteParams::default())
                .await;
        }
    }
}

/// The ports of the Nodes selected now (read from the API server).
async fn selected_ports(client: &Client, ns: &str) -> Result<BTreeSet<String>, String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let lp = ListParams::default().labels(&format!("{TEST_LABEL}={ns},mirror=on"));
    let list = nodes.list(&lp).await.map_err(|e| e.to_string())?;
    Ok(list
        .items
        .iter()
        .filter(|n| n.metadata.deletion_timestamp.is_none())
        .filter_map(|n| {
            n.metadata
                .name
                .as_deref()?
                .rsplit('-')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .map(|i| port_id(ns, i))
        .collect())
}

/// The set's violations: Ready, the selected ports each in exactly one child, no child over the
/// limit.
pub async fn violations(client: &Client, ns: &str) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut push = |problem: String, object: Value| {
        found.push(Violation {
            subject: format!("set {SET}"),
            problem,
            object,
            cloud: Value::Null,
            needles: vec![],
        })
    };
    let sets: Api<TrafficMirrorSessionSet> = Api::namespaced(client.clone(), ns);
    let sessions: Api<TrafficMirrorSession> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("vpc.hwcloud.dev/session-set={SET}"));
    let (set, children, want) = match (
        sets.get(SET).await,
        sessions.list(&lp).await,
        selected_ports(client, ns).await,
    ) {
        (Ok(s), Ok(c), Ok(w)) => (s, c.items, w),
        _ => {
            push("could not be read".into(), Value::Null);
            return found;
        }
    };
    let st = set.status.clone().unwrap_or_default();
    let ready = st.observed_generation == set.metadata.generation
        && st
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
    if !ready {
        push("not Ready for its generation".into(), json!(st));
    }
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in &children {
        let name = c.metadata.name.clone().unwrap_or_default();
        if c.spec.traffic_mirror_sources.len() > MAX_SOURCES {
            push(
                format!("child {name} holds more than {MAX_SOURCES} sources"),
                json!(c.spec),
            );
        }
        for p in &c.spec.traffic_mirror_sources {
            seen.entry(p.clone()).or_default().push(name.clone());
        }
    }
    for (port, holders) in &seen {
        if holders.len() != 1 {
            push(
                format!("port {port} is in {} children: {holders:?}", holders.len()),
                Value::Null,
            );
        }
        if !want.contains(port) {
            push(
                format!("port {port} is a source but its Node is not selected"),
                Value::Null,
            );
        }
    }
    for port in want.iter().filter(|p| !seen.contains_key(*p)) {
        push(
            format!("port {port} of a selected Node is in no child"),
            Value::Null,
        );
    }
    found
}
