//! TrafficMirrorSessionSet against a real kube-apiserver + etcd + kube-controller-manager (its
//! garbage collector), the emulator with seeded ports, and the operator binary: Nodes are plain
//! objects here (created with `status.addresses` and a providerID, no kubelet). Nodes are
//! cluster-scoped and the tests share the control plane, so each test labels its Nodes with its own
//! namespace and selects on that label. Every wait polls with a deadline.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::Env;
use traffic_mirror_operator::api::{TrafficMirrorSession, TrafficMirrorSessionSet};
use traffic_mirror_operator::cloud::models::ListSessionsQuery;

/// The label every child carries.
const SET_LABEL: &str = "vpc.hwcloud.dev/session-set";
/// The label the tests' Nodes carry: the test namespace, so a test selects only its own Nodes.
const TEST_LABEL: &str = "tmo-test";
/// How long the garbage collector may take to see a CRD installed after it started (its discovery
/// resync is 30 s) and delete the children.
const GC_WAIT: Duration = Duration::from_secs(120);

/// The test's Nodes, deleted when it ends.
struct Nodes {
    api: Api<Node>,
    ns: String,
    made: std::sync::Mutex<Vec<String>>,
}

impl Nodes {
    fn new(env: &Env) -> Nodes {
        Nodes {
            api: Api::all(env.client.clone()),
            ns: env.ns.clone(),
            made: Default::default(),
        }
    }

    /// The Node `<ns>-<name>`, labelled `tmo-test=<ns>` plus `labels`, with `ip` as InternalIP and
    /// `huaweicloud://srv-<name>` as providerID.
    async fn add(&self, name: &str, ip: Option<&str>, labels: Value) -> String {
        let full = self.name(name);
        let mut all = json!({ TEST_LABEL: self.ns });
        if let (Some(a), Value::Object(l)) = (all.as_object_mut(), labels) {
            a.extend(l);
        }
        let addresses: Vec<Value> = ip
            .map(|ip| json!({"type": "InternalIP", "address": ip}))
            .into_iter()
            .chain([json!({"type": "Hostname", "address": full})])
            .collect();
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": full, "labels": all},
            "spec": {"providerID": format!("huaweicloud://srv-{name}")},
            "status": {"addresses": addresses},
        }))
        .expect("node manifest");
        self.api
            .create(&PostParams::default(), &node)
            .await
            .unwrap_or_else(|e| panic!("create node {full}: {e}"));
        self.made.lock().unwrap().push(full.clone());
        full
    }

    fn name(&self, name: &str) -> String {
        format!("{}-{name}", self.ns)
    }

    async fn patch(&self, name: &str, patch: Value) {
        self.api
            .patch(
                &self.name(name),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .unwrap_or_else(|e| panic!("patch node {name}: {e}"));
    }

    async fn delete(&self, name: &str) {
        self.api
            .delete(&self.name(name), &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("delete node {name}: {e}"));
    }

    /// Deletes every Node this test made (best effort).
    async fn cleanup(&self) {
        let names = self.made.lock().unwrap().clone();
        for n in names {
            let _ = self.api.delete(&n, &DeleteParams::default()).await;
        }
    }
}

/// Seeds a port in the emulator (`POST /_emulator/ports`); returns its id, `port-<vpc>-<ip>`, so
/// the ids sort as the addresses do and the tests know which child a port goes to (the planner
/// fills children in port id order).
async fn seed_port(env: &Env, ip: &str, vpc: &str, device: &str, tags: Value) -> String {
    let id = format!("port-{vpc}-{ip}");
    let body = json!({
        "id": id,
        "vpc_id": vpc,
        "device_id": device,
        "device_owner": "compute:az1",
        "private_ips": [{"subnet_cidr_id": "subnet-1", "ip_address": ip}],
        "tags": tags,
    });
    let url = format!("{}/_emulator/ports", env.emu().url);
    let status = reqwest::Client::new()
        .post(&url)
        .json(&body)
        .send()
        .await
        .expect("POST /_emulator/ports")
        .status();
    assert!(status.is_success(), "POST {url} {body}: {status}");
    id
}

/// Deletes a seeded port (`DELETE /_emulator/ports/{id}`).
async fn drop_port(env: &Env, id: &str) {
    let url = format!("{}/_emulator/ports/{id}", env.emu().url);
    let status = reqwest::Client::new()
        .delete(&url)
        .send()
        .await
        .expect("DELETE /_emulator/ports")
        .status();
    assert!(status.is_success(), "DELETE {url}: {status}");
}

/// Creates the set `name` selecting this test's Nodes with `mirror=on`, with `extra` spec fields.
async fn apply_set(env: &Env, name: &str, extra: Value) {
    let mut spec = json!({
        "sources": {"nodeSelector": {"matchLabels": {TEST_LABEL: env.ns, "mirror": "on"}}},
        "sessionTemplate": {
            "trafficMirrorFilterId": env.account.filter_id,
            "trafficMirrorTargetId": "eni-target",
            "trafficMirrorTargetType": "eni",
            "priority": 10,
            "enabled": true,
            "providerConfigRef": {"name": env.account.pc},
        },
    });
    merge(&mut spec, extra);
    env.create::<TrafficMirrorSessionSet>(json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1", "kind": "TrafficMirrorSessionSet",
        "metadata": {"name": name}, "spec": spec,
    }))
    .await;
}

/// Merges `extra` into `into` (objects recursively, anything else replaced).
fn merge(into: &mut Value, extra: Value) {
    match (into, extra) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

/// The set's children: name → sources.
async fn children(env: &Env, set: &str) -> BTreeMap<String, BTreeSet<String>> {
    let lp = ListParams::default().labels(&format!("{SET_LABEL}={set}"));
    env.sessions()
        .list(&lp)
        .await
        .expect("list children")
        .items
        .into_iter()
        .map(|c| {
            let name = c.metadata.name.clone().unwrap_or_default();
            (name, c.spec.traffic_mirror_sources.into_iter().collect())
        })
        .collect()
}

/// Waits until the children are exactly `want` (name → sources) and every child is Ready with its
/// cloud session holding exactly its sources, and the set is Ready; returns the children.
async fn wait_mirrored(env: &Env, set: &str, want: &BTreeMap<String, BTreeSet<String>>) {
    support::wait_for(env.deadline(), || async {
        let have = children(env, set).await;
        if &have != want {
            return None;
        }
        let cloud = cloud_sources(env).await;
        for (name, sources) in want {
            let child = env.sessions().get(name).await.ok()?;
            let id = child.status.as_ref()?.session_id.clone()?;
            if cloud.get(&id) != Some(sources) {
                return None;
            }
        }
        let s: TrafficMirrorSessionSet = env.api().get(set).await.ok()?;
        let st = s.status.as_ref()?;
        let ready = s
            .metadata
            .generation
            .is_some_and(|g| st.observed_generation == Some(g))
            && st
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
        (ready && st.sessions == want.len() as i64).then_some(())
    })
    .await;
}

/// The cloud sessions' sources, by session id.
async fn cloud_sources(env: &Env) -> BTreeMap<String, BTreeSet<String>> {
    env.cloud
        .list_all_sessions(ListSessionsQuery::default())
        .await
        .expect("list cloud sessions")
        .into_iter()
        .map(|s| (s.id, s.traffic_mirror_sources.into_iter().collect()))
        .collect()
}

fn map(entries: &[(&str, &[&String])]) -> BTreeMap<String, BTreeSet<String>> {
    entries
        .iter()
        .map(|(n, ports)| (n.to_string(), ports.iter().map(|p| (*p).clone()).collect()))
        .collect()
}

/// The port ids every `remove-sources` call in the log removed.
fn removed_ports(calls: &[Value]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| {
            c["method"] == "PUT"
                && c["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with("/remove-sources"))
        })
        .flat_map(|c| {
            let body: Value = match &c["body"] {
                Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
                v => v.clone(),
            };
            body["traffic_mirror_session"]["traffic_mirror_sources"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// How many `add-sources` calls the log holds.
fn add_source_calls(calls: &[Value]) -> usize {
    calls
        .iter()
        .filter(|c| {
            c["method"] == "PUT"
                && c["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with("/add-sources"))
        })
        .count()
}

#[tokio::test]
async fn sources_follow_nodes_joining_leaving_relabelled_and_being_removed() {
    // No resync within the test: every change must come from the Node watch (a relabelled-out or
    // deleted Node wakes the set that selected it) and the children's watch.
    let env = Env::builder("tmset-nodes")
        .resync("10m")
        .with_operator()
        .build()
        .await;
    let nodes = Nodes::new(&env);
    let on = json!({"mirror": "on"});
    let mut ports = Vec::new();
    for i in 0..3 {
        let ip = format!("10.1.0.{}", 10 + i);
        ports.push(seed_port(&env, &ip, "vpc-a", &format!("srv-n{i}"), json!([])).await);
        nodes.add(&format!("n{i}"), Some(&ip), on.clone()).await;
    }
    apply_set(&env, "web", json!({"maxSourcesPerSession": 2})).await;
    wait_mirrored(
        &env,
        "web",
        &map(&[("web-0", &[&ports[0], &ports[1]]), ("web-1", &[&ports[2]])]),
    )
    .await;

    // scale-up: new ports fill web-1 before web-2 is made
    for i in 3..6 {
        let ip = format!("10.1.0.{}", 10 + i);
        ports.push(seed_port(&env, &ip, "vpc-a", &format!("srv-n{i}"), json!([])).await);
        nodes.add(&format!("n{i}"), Some(&ip), on.clone()).await;
    }
    let p = &ports;
    wait_mirrored(
        &env,
        "web",
        &map(&[
            ("web-0", &[&p[0], &p[1]]),
            ("web-1", &[&p[2], &p[3]]),
            ("web-2", &[&p[4], &p[5]]),
        ]),
    )
    .await;

    // relabelled out, deleted, tainted by the autoscaler: their ports go, nobody else's moves
    nodes
        .patch("n0", json!({"metadata": {"labels": {"mirror": "off"}}}))
        .await;
    nodes.delete("n3").await;
    nodes
        .patch("n5", json!({"spec": {"taints": [{"key": "ToBeDeletedByClusterAutoscaler", "effect": "NoSchedule"}]}}))
        .await;
    wait_mirrored(
        &env,
        "web",
        &map(&[
            ("web-0", &[&p[1]]),
            ("web-1", &[&p[2]]),
            ("web-2", &[&p[4]]),
        ]),
    )
    .await;

    // the last node of a child leaves: the child is deleted
    nodes.patch("n4", json!({"spec": {"taints": [{"key": "karpenter.sh/disrupted", "effect": "NoSchedule"}]}})).await;
    wait_mirrored(
        &env,
        "web",
        &map(&[("web-0", &[&p[1]]), ("web-1", &[&p[2]])]),
    )
    .await;

    // the call log: no port that stayed selected was ever removed
    let removed: BTreeSet<String> = removed_ports(&env.calls().await).into_iter().collect();
    let stayed: BTreeSet<String> = [p[1].clone(), p[2].clone()].into();
    assert!(
        removed.is_disjoint(&stayed),
        "removed {removed:?}, stayed {stayed:?}"
    );
    assert!(
        removed.is_subset(&[p[0].clone(), p[3].clone(), p[5].clone()].into()),
        "{removed:?}"
    );
    nodes.cleanup().await;
}

#[tokio::test]
async fn a_scale_up_is_batched_into_one_add_sources_per_child() {
    let env = Env::builder("tmset-batch").with_operator().build().await;
    let nodes = Nodes::new(&env);
    apply_set(&env, "big", json!({})).await;
    env.wait_ready::<TrafficMirrorSessionSet>("big").await;
    let mut ports = BTreeSet::new();
    for i in 0..20 {
        let ip = format!("10.2.0.{}", 10 + i);
        ports.insert(seed_port(&env, &ip, "vpc-a", &format!("srv-b{i}"), json!([])).await);
    }
    env.clear_calls().await;
    // the 20 Nodes join at once, as a node pool scaling up does
    let joins = (0..20).map(|i| {
        let (nodes, ip) = (&nodes, format!("10.2.0.{}", 10 + i));
        async move {
            nodes
                .add(&format!("b{i}"), Some(&ip), json!({"mirror": "on"}))
                .await
        }
    });
    futures::future::join_all(joins).await;
    support::wait_for(env.deadline(), || async {
        let c = children(&env, "big").await;
        let all: BTreeSet<String> = c.values().flatten().cloned().collect();
        (all == ports && c.len() == 2 && c.values().all(|s| s.len() == 10)).then_some(())
    })
    .await;
    let want = children(&env, "big").await;
    wait_mirrored(&env, "big", &want).await;
    let calls = env.calls().await;
    let creates = calls
        .iter()
        .filter(|c| {
            c["method"] == "POST"
                && c["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with("/traffic-mirror-sessions"))
        })
        .count();
    let adds = add_source_calls(&calls);
    let lookups = calls
        .iter()
        .filter(|c| {
            c["method"] == "GET" && c["path"].as_str().is_some_and(|p| p.ends_with("/ports"))
        })
        .count();
    // 20 Nodes: two sessions created with their sources; few add-sources, few port lookups
    assert_eq!(creates, 2, "{calls:#?}");
    assert!(adds <= 4, "{adds} add-sources for 20 Nodes");
    assert!(lookups <= 8, "{lookups} port lookups for 20 Nodes");
    nodes.cleanup().await;
}

#[tokio::test]
async fn tagged_ports_are_sources_and_follow_their_tags() {
    let env = Env::builder("tmset-tags")
        .resync("2s")
        .with_operator()
        .build()
        .await;
    let web = json!([{"key": "app", "value": "web"}]);
    let a = seed_port(&env, "10.3.0.1", "vpc-a", "srv-x", web.clone()).await;
    let _other = seed_port(
        &env,
        "10.3.0.2",
        "vpc-a",
        "srv-y",
        json!([{"key": "app", "value": "db"}]),
    )
    .await;
    apply_set(
        &env,
        "tagged",
        json!({"sources": {"nodeSelector": null, "portTags": [{"key": "app", "values": ["web"]}]}}),
    )
    .await;
    wait_mirrored(&env, "tagged", &map(&[("tagged-0", &[&a])])).await;
    let b = seed_port(&env, "10.3.0.3", "vpc-a", "srv-z", web).await;
    wait_mirrored(&env, "tagged", &map(&[("tagged-0", &[&a, &b])])).await;
    drop_port(&env, &a).await;
    wait_mirrored(&env, "tagged", &map(&[("tagged-0", &[&b])])).await;
}

#[tokio::test]
async fn unresolved_nodes_are_listed_with_the_reason_and_never_guessed() {
    let env = Env::builder("tmset-unresolved")
        .with_operator()
        .build()
        .await;
    let nodes = Nodes::new(&env);
    let on = json!({"mirror": "on"});
    // the same address in two VPCs, on servers the providerID does not name
    let in_a = seed_port(&env, "10.4.0.1", "vpc-a", "srv-other-1", json!([])).await;
    let in_b = seed_port(&env, "10.4.0.1", "vpc-b", "srv-other-2", json!([])).await;
    nodes.add("twin", Some("10.4.0.1"), on.clone()).await;
    nodes.add("bare", None, on.clone()).await;
    nodes.add("lost", Some("10.4.0.99"), on.clone()).await;
    apply_set(&env, "u", json!({})).await;
    let set: TrafficMirrorSessionSet = env
        .wait_until("u", |s: &TrafficMirrorSessionSet| {
            s.status.as_ref().is_some_and(|st| st.unresolved.len() == 3)
        })
        .await;
    let st = set.status.expect("status");
    let reasons: BTreeMap<String, (String, Vec<String>)> = st
        .unresolved
        .iter()
        .map(|u| (u.node.clone(), (u.reason.clone(), u.candidates.clone())))
        .collect();
    let mut both = vec![in_a.clone(), in_b.clone()];
    both.sort();
    assert_eq!(
        reasons[&nodes.name("twin")],
        ("Ambiguous".to_string(), both)
    );
    assert_eq!(reasons[&nodes.name("bare")].0, "NoInternalIP");
    assert_eq!(reasons[&nodes.name("lost")].0, "NoPort");
    assert!(children(&env, "u").await.is_empty(), "nothing is guessed");
    env.wait_message::<TrafficMirrorSessionSet>("u", "SourcesUnresolved", &["3 selected Node(s)"])
        .await;
    // scoping by VPC resolves the twin
    env.api::<TrafficMirrorSessionSet>()
        .patch(
            "u",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"sources": {"vpcId": "vpc-b"}}})),
        )
        .await
        .expect("patch set");
    support::wait_for(env.deadline(), || async {
        let c = children(&env, "u").await;
        (c.get("u-0") == Some(&[in_b.clone()].into())).then_some(())
    })
    .await;
    nodes.cleanup().await;
}

#[tokio::test]
async fn a_template_edit_edits_every_child_and_deleting_the_set_deletes_them() {
    let env = Env::builder("tmset-template")
        .with_operator()
        .wait(GC_WAIT)
        .build()
        .await;
    let nodes = Nodes::new(&env);
    let mut ports = Vec::new();
    for i in 0..3 {
        let ip = format!("10.5.0.{}", 10 + i);
        ports.push(seed_port(&env, &ip, "vpc-a", &format!("srv-t{i}"), json!([])).await);
        nodes
            .add(&format!("t{i}"), Some(&ip), json!({"mirror": "on"}))
            .await;
    }
    apply_set(&env, "tpl", json!({"maxSourcesPerSession": 2})).await;
    let p = &ports;
    wait_mirrored(
        &env,
        "tpl",
        &map(&[("tpl-0", &[&p[0], &p[1]]), ("tpl-1", &[&p[2]])]),
    )
    .await;
    env.api::<TrafficMirrorSessionSet>()
        .patch(
            "tpl",
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"spec": {"sessionTemplate": {"priority": 77, "virtualNetworkId": 9}}}),
            ),
        )
        .await
        .expect("edit template");
    support::wait_for(env.deadline(), || async {
        let cloud = env
            .cloud
            .list_all_sessions(ListSessionsQuery::default())
            .await
            .ok()?;
        (cloud.len() == 2
            && cloud
                .iter()
                .all(|s| s.priority == 77 && s.virtual_network_id == 9))
        .then_some(())
    })
    .await;
    for child in ["tpl-0", "tpl-1"] {
        let c = env.sessions().get(child).await.expect("child");
        assert_eq!((c.spec.priority, c.spec.virtual_network_id), (77, 9));
    }
    env.delete::<TrafficMirrorSessionSet>("tpl").await;
    env.wait_gone::<TrafficMirrorSession>("tpl-0").await;
    env.wait_gone::<TrafficMirrorSession>("tpl-1").await;
    support::wait_for(env.deadline(), || async {
        let cloud = env
            .cloud
            .list_all_sessions(ListSessionsQuery::default())
            .await
            .ok()?;
        cloud.is_empty().then_some(())
    })
    .await;
    nodes.cleanup().await;
}

#[tokio::test]
async fn a_crash_right_after_a_child_is_created_makes_no_second_child() {
    let mut env = Env::builder("tmset-crash")
        .failpoints("sessionset-child-create-after")
        .build()
        .await;
    let nodes = Nodes::new(&env);
    let mut ports = Vec::new();
    for i in 0..3 {
        let ip = format!("10.6.0.{}", 10 + i);
        ports.push(seed_port(&env, &ip, "vpc-a", &format!("srv-c{i}"), json!([])).await);
        nodes
            .add(&format!("c{i}"), Some(&ip), json!({"mirror": "on"}))
            .await;
    }
    apply_set(&env, "crash", json!({"maxSourcesPerSession": 2})).await;
    let mut op = env.operator();
    env.wait_crash(&mut op).await;
    let after_crash = children(&env, "crash").await;
    assert_eq!(
        after_crash.len(),
        1,
        "the crash came right after the first create: {after_crash:?}"
    );
    let env_op = env.operator_with(None);
    env.op = Some(env_op);
    let p = &ports;
    wait_mirrored(
        &env,
        "crash",
        &map(&[("crash-0", &[&p[0], &p[1]]), ("crash-1", &[&p[2]])]),
    )
    .await;
    nodes.cleanup().await;
}

#[tokio::test]
async fn invalid_sets_are_rejected_at_admission() {
    let env = Env::builder("tmset-invalid").build().await;
    let api: Api<TrafficMirrorSessionSet> = env.api();
    let base = json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1", "kind": "TrafficMirrorSessionSet",
        "metadata": {"name": "bad"},
        "spec": {
            "sources": {"nodeSelector": {}},
            "sessionTemplate": {"trafficMirrorFilterId": "f", "trafficMirrorTargetId": "t",
                                "trafficMirrorTargetType": "eni", "priority": 1},
        },
    });
    let cases = [
        (
            json!({"spec": {"sources": {"nodeSelector": null}}}),
            "nodeSelector or portTags",
        ),
        (
            json!({"spec": {"maxSourcesPerSession": 101}}),
            "maxSourcesPerSession",
        ),
        (
            json!({"spec": {"sessionTemplate": {"trafficMirrorFilterRef": {"name": "x"}}}}),
            "exactly one of",
        ),
        (json!({"metadata": {"name": "a".repeat(57)}}), "at most 56"),
    ];
    for (patch, message) in cases {
        let mut manifest = base.clone();
        merge(&mut manifest, patch);
        strip_nulls(&mut manifest);
        let err = api
            .create(
                &PostParams::default(),
                &serde_json::from_value(manifest.clone()).expect("manifest"),
            )
            .await
            .expect_err("rejected");
        assert!(err.to_string().contains(message), "{manifest}: {err}");
    }
}

/// Removes `null` members (a way for the cases to drop a field).
fn strip_nulls(v: &mut Value) {
    if let Value::Object(m) = v {
        m.retain(|_, v| !v.is_null());
        m.values_mut().for_each(strip_nulls);
    }
}

/// A create POST for a traffic mirror session in the emulator's call log.
fn is_session_create(c: &Value) -> bool {
    c["method"] == "POST"
        && c["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("/traffic-mirror-sessions"))
}

#[tokio::test]
async fn a_raised_quota_lets_a_set_fill_children_above_ten_sources() {
    let env = Env::builder("tmset-quota")
        .emulator_args(&["--max-sources-per-session", "20"])
        .with_operator()
        .build()
        .await;
    let nodes = Nodes::new(&env);
    apply_set(&env, "wide", json!({"maxSourcesPerSession": 15})).await;
    env.wait_ready::<TrafficMirrorSessionSet>("wide").await;
    let mut ports = BTreeSet::new();
    for i in 0..20 {
        let ip = format!("10.3.0.{}", 10 + i);
        ports.insert(seed_port(&env, &ip, "vpc-a", &format!("srv-q{i}"), json!([])).await);
        nodes
            .add(&format!("q{i}"), Some(&ip), json!({"mirror": "on"}))
            .await;
    }
    // 20 Nodes under maxSourcesPerSession 15: two children, 15 + 5, holding every port once.
    support::wait_for(env.deadline(), || async {
        let c = children(&env, "wide").await;
        let all: BTreeSet<String> = c.values().flatten().cloned().collect();
        let mut sizes: Vec<usize> = c.values().map(BTreeSet::len).collect();
        sizes.sort_unstable();
        (all == ports && sizes == [5, 15]).then_some(())
    })
    .await;
    let want = children(&env, "wide").await;
    wait_mirrored(&env, "wide", &want).await;
    let refused = env
        .calls()
        .await
        .iter()
        .filter(|c| c["status"].as_u64().is_some_and(|s| s >= 400))
        .count();
    assert_eq!(refused, 0, "the raised quota admits 15 sources");
    nodes.cleanup().await;
}

#[tokio::test]
async fn a_session_above_the_default_quota_shows_the_cloud_refusal_without_retrying() {
    let env = Env::builder("tmsess-quota")
        .resync("2s")
        .with_operator()
        .build()
        .await;
    let sources: Vec<String> = (0..12).map(|i| format!("eni-q{i:02}")).collect();
    env.create::<TrafficMirrorSession>(json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1", "kind": "TrafficMirrorSession",
        "metadata": {"name": "twelve"},
        "spec": {
            "trafficMirrorFilterId": env.account.filter_id,
            "trafficMirrorSources": sources,
            "trafficMirrorTargetId": "eni-target",
            "trafficMirrorTargetType": "eni",
            "priority": 10,
            "providerConfigRef": {"name": env.account.pc},
        },
    }))
    .await;
    // Admission takes 12 sources; the default-quota cloud refuses, and the condition names its code.
    let o = env
        .wait_condition::<TrafficMirrorSession>("twelve", "Synced", "False", Some("VPC_1002"))
        .await;
    let synced = o
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Synced"))
        .cloned()
        .expect("a Synced condition");
    assert!(synced.message.contains("VPC.1002"), "{}", synced.message);
    assert!(
        synced.message.contains("at most 10 sources"),
        "{}",
        synced.message
    );
    // Two full resync cycles (2 s each) later, polled through the emulator's log: still one create.
    env.wait_resyncs(2).await;
    let creates = env
        .calls()
        .await
        .into_iter()
        .filter(is_session_create)
        .count();
    assert_eq!(creates, 1, "a refused create is not retried in a storm");
    assert!(
        cloud_sources(&env).await.is_empty(),
        "the refused create made nothing"
    );
}
