//! End-to-end benchmark of TrafficMirrorSessionSet: a cluster of plain Node objects scaling
//! 0 → N → N/2 → N (env `BENCH_NODES`, default 300) under one set, with the operator binary against
//! a real kube-apiserver + etcd and the emulator throttling like the gateway (10 calls/s, burst 10,
//! 50 ± 20 ms per call) and the ProviderConfig's default budget (8 qps, burst 8).
//!
//! It measures:
//! - time from a Node's creation (the API server's answer) to its port being a source of a cloud
//!   session (first seen in the emulator's state, polled every 50 ms), p50/p99/max;
//! - time from a Node's deletion to its port leaving every cloud session;
//! - the cloud calls by kind, and calls per Node event;
//! - the floor: one `add-sources` (or a create carrying its sources) per 10 Nodes, and that many
//!   calls' time at the budget (8/s).
//!
//! Run: `cargo bench --bench session_sets`. Writes `benches/results/session-sets.md`. Without
//! `--bench` it does nothing (the integration tests in tests/session_sets.rs cover correctness).

#[path = "common/mod.rs"]
mod common;
#[path = "common/e2e.rs"]
mod e2e;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};
use traffic_mirror_operator::api::TrafficMirrorSessionSet;

use e2e::{by_kind, ms};

/// Default number of Nodes (`BENCH_NODES`).
const DEFAULT_NODES: usize = 300;
/// Nodes created or deleted in parallel (a node pool scaling, several at a time).
const PARALLEL: usize = 10;
/// Poll interval of the emulator's state.
const POLL: Duration = Duration::from_millis(50);
/// Deadline of one phase.
const PHASE_TIMEOUT: Duration = Duration::from_secs(600);
/// The ProviderConfig's default budget.
const BUDGET: (f64, u32) = (8.0, 8);
/// Sources per session (the set's default).
const PER_SESSION: usize = 10;

/// One phase's figures.
struct Phase {
    name: String,
    nodes: usize,
    latencies: Vec<Duration>,
    took: Duration,
    calls: Vec<Value>,
}

#[tokio::main]
async fn main() {
    if !common::is_bench_run() {
        return;
    }
    let n: usize = std::env::var("BENCH_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_NODES);
    let info =
        common::RunInfo::capture(format!("BENCH_NODES={n} cargo bench --bench session_sets"));
    let cp = support::control_plane();
    let cluster = e2e::Cluster::new(cp, "bench-tmset").await;
    cluster.set_budget_to(BUDGET).await;
    let mut op = e2e::Operator::start("session-sets", &cluster.ns, "30s", &[]);
    cluster.wait_provider_ready().await;
    cluster.throttle_like_gateway().await;
    let ports = seed_ports(&cluster, 0, n + n / 2).await;
    apply_set(&cluster).await;
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    cluster.emu().clear_calls().await;
    let mut phases = Vec::new();
    let first: Vec<usize> = (0..n).collect();
    phases.push(scale_up(&cluster, &nodes, &ports, &first, "0 → N").await);
    let gone: Vec<usize> = (0..n / 2).collect();
    phases.push(scale_down(&cluster, &nodes, &ports, &gone, "N → N/2").await);
    let again: Vec<usize> = (n..n + n / 2).collect();
    phases.push(scale_up(&cluster, &nodes, &ports, &again, "N/2 → N").await);
    op.assert_running();
    let report = render(&info, n, &phases);
    println!("{report}");
    let path = common::write_results("session-sets", &report).expect("write the results");
    eprintln!("wrote {}", path.display());
    for i in (n / 2..n).chain(n..n + n / 2) {
        let _ = nodes
            .delete(&node_name(&cluster, i), &DeleteParams::default())
            .await;
    }
}

fn node_name(cluster: &e2e::Cluster, i: usize) -> String {
    format!("{}-n{i:04}", cluster.ns)
}

fn ip(i: usize) -> String {
    format!("10.{}.{}.{}", 100 + i / 65536, (i / 256) % 256, i % 256)
}

/// Seeds the ports of Nodes `from..from + count` (admin calls: not throttled, not logged as API
/// calls); returns their ids by Node index.
async fn seed_ports(cluster: &e2e::Cluster, from: usize, count: usize) -> HashMap<usize, String> {
    let http = reqwest::Client::new();
    let url = format!("{}/_emulator/ports", cluster.emu().url);
    let mut out = HashMap::new();
    for i in from..from + count {
        let id = format!("port-{i:05}");
        let body = json!({"id": id, "vpc_id": "vpc-bench", "device_id": format!("srv-{i}"),
            "device_owner": "compute:az1", "private_ips": [{"subnet_cidr_id": "s", "ip_address": ip(i)}]});
        let status = http
            .post(&url)
            .json(&body)
            .send()
            .await
            .expect("seed")
            .status();
        assert!(status.is_success(), "seed port {i}: {status}");
        out.insert(i, id);
    }
    out
}

async fn apply_set(cluster: &e2e::Cluster) {
    let set: TrafficMirrorSessionSet = serde_json::from_value(json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1", "kind": "TrafficMirrorSessionSet",
        "metadata": {"name": "bench"},
        "spec": {
            "sources": {"nodeSelector": {"matchLabels": {"bench": cluster.ns}}, "vpcId": "vpc-bench"},
            "sessionTemplate": {"trafficMirrorFilterId": cluster.account.filter_id,
                "trafficMirrorTargetId": "eni-target", "trafficMirrorTargetType": "eni",
                "priority": 10, "providerConfigRef": {"name": cluster.account.pc}},
        },
    }))
    .expect("set");
    cluster
        .api::<TrafficMirrorSessionSet>()
        .create(&PostParams::default(), &set)
        .await
        .expect("create the set");
}

/// The ports that are a source of some cloud session now.
async fn mirrored(cluster: &e2e::Cluster) -> BTreeSet<String> {
    let state = cluster.emu().state().await;
    state["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| {
            s["traffic_mirror_sources"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// Creates the Nodes `which` (`PARALLEL` at a time) and waits until every one's port is mirrored.
async fn scale_up(
    cluster: &e2e::Cluster,
    nodes: &Api<Node>,
    ports: &HashMap<usize, String>,
    which: &[usize],
    name: &str,
) -> Phase {
    let before = cluster.emu().calls().await.len();
    let started = Instant::now();
    let mut created: HashMap<String, Instant> = HashMap::new();
    for chunk in which.chunks(PARALLEL) {
        let made =
            futures::future::join_all(chunk.iter().map(|i| create_node(cluster, nodes, *i))).await;
        for i in chunk {
            created.insert(ports[i].clone(), Instant::now());
        }
        drop(made);
    }
    let want: BTreeSet<String> = which.iter().map(|i| ports[i].clone()).collect();
    let seen = watch_until(
        cluster,
        |m| want.is_subset(m),
        |m, at, first| {
            for p in want.intersection(m) {
                first.entry(p.clone()).or_insert(at);
            }
        },
    )
    .await;
    let latencies = want
        .iter()
        .map(|p| seen[p].saturating_duration_since(created[p]))
        .collect();
    finish(cluster, name, which.len(), latencies, started, before).await
}

/// Deletes the Nodes `which` and waits until none of their ports is mirrored.
async fn scale_down(
    cluster: &e2e::Cluster,
    nodes: &Api<Node>,
    ports: &HashMap<usize, String>,
    which: &[usize],
    name: &str,
) -> Phase {
    let before = cluster.emu().calls().await.len();
    let started = Instant::now();
    let mut deleted: HashMap<String, Instant> = HashMap::new();
    for chunk in which.chunks(PARALLEL) {
        futures::future::join_all(chunk.iter().map(|i| async move {
            nodes
                .delete(&node_name(cluster, *i), &DeleteParams::default())
                .await
                .expect("delete node")
        }))
        .await;
        for i in chunk {
            deleted.insert(ports[i].clone(), Instant::now());
        }
    }
    let gone: BTreeSet<String> = which.iter().map(|i| ports[i].clone()).collect();
    let seen = watch_until(
        cluster,
        |m| m.is_disjoint(&gone),
        |m, at, first| {
            for p in gone.difference(m) {
                first.entry(p.clone()).or_insert(at);
            }
        },
    )
    .await;
    let latencies = gone
        .iter()
        .map(|p| seen[p].saturating_duration_since(deleted[p]))
        .collect();
    finish(cluster, name, which.len(), latencies, started, before).await
}

/// Polls the mirrored ports until `done`, recording with `record` when each was first seen.
async fn watch_until(
    cluster: &e2e::Cluster,
    done: impl Fn(&BTreeSet<String>) -> bool,
    record: impl Fn(&BTreeSet<String>, Instant, &mut BTreeMap<String, Instant>),
) -> BTreeMap<String, Instant> {
    let deadline = Instant::now() + PHASE_TIMEOUT;
    let mut first = BTreeMap::new();
    loop {
        let m = mirrored(cluster).await;
        let at = Instant::now();
        record(&m, at, &mut first);
        if done(&m) {
            return first;
        }
        assert!(
            Instant::now() < deadline,
            "phase not done within {PHASE_TIMEOUT:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

async fn create_node(cluster: &e2e::Cluster, nodes: &Api<Node>, i: usize) {
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": node_name(cluster, i), "labels": {"bench": cluster.ns}},
        "spec": {"providerID": format!("huaweicloud://srv-{i}")},
        "status": {"addresses": [{"type": "InternalIP", "address": ip(i)}]},
    }))
    .expect("node");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("create node");
}

async fn finish(
    cluster: &e2e::Cluster,
    name: &str,
    nodes: usize,
    mut latencies: Vec<Duration>,
    started: Instant,
    before: usize,
) -> Phase {
    latencies.sort();
    let calls = cluster.emu().calls().await.split_off(before);
    Phase {
        name: name.to_string(),
        nodes,
        latencies,
        took: started.elapsed(),
        calls,
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn render(info: &common::RunInfo, n: usize, phases: &[Phase]) -> String {
    let mut out = format!(
        "# Session sets: {n} Nodes, 0 → {n} → {} → {n}\n\n{}\n- Emulator: throttles like the gateway, 10 calls/s burst 10 (429 beyond), 50 ± 20 ms per call\n- Budget: the ProviderConfig default, 8 qps burst 8; {PER_SESSION} sources per session; Nodes created/deleted {PARALLEL} at a time\n\n",
        n / 2,
        info.markdown()
    );
    out.push_str("| phase | Nodes | Node → port (un)mirrored p50 | p99 | max | phase took | cloud calls | per Node | 429s | floor calls (1 per 10 Nodes) | floor time at 8/s |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    for p in phases {
        let throttled = p.calls.iter().filter(|c| c["status"] == 429).count();
        let floor = p.nodes.div_ceil(PER_SESSION);
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.3} | {} | {} | {} |\n",
            p.name,
            p.nodes,
            ms(pct(&p.latencies, 0.5)),
            ms(pct(&p.latencies, 0.99)),
            ms(pct(&p.latencies, 1.0)),
            ms(p.took),
            p.calls.len(),
            p.calls.len() as f64 / p.nodes as f64,
            throttled,
            floor,
            ms(Duration::from_secs_f64(floor as f64 / BUDGET.0)),
        ));
    }
    out.push_str("\nCalls by kind, per phase:\n\n");
    for p in phases {
        let kinds: Vec<String> = by_kind(&p.calls)
            .into_iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        out.push_str(&format!("- {}: {}\n", p.name, kinds.join(", ")));
    }
    out
}
