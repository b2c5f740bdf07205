//! TrafficMirrorFilter end to end: a real kube-apiserver + etcd, the emulator, and the operator
//! binary as a child process. Each test has its own namespace, emulator, ProviderConfig and operator;
//! every wait polls with a deadline.

mod support;

use support::Env;
use support::env::FILTERS;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use traffic_mirror_operator::api::{TrafficMirrorFilter, TrafficMirrorSession};
use traffic_mirror_operator::cloud::models::{
    ListFiltersQuery, TrafficMirrorFilter as CloudFilter, UpdateRuleRequest,
};

const WAIT: Duration = Duration::from_secs(60);
const RESYNC: &str = "2s";

/// Creates a filter object with `rules` and extra spec fields.
async fn apply_filter(env: &Env, name: &str, rules: Value, extra: Value) {
    let mut spec = json!({"rules": rules, "providerConfigRef": {"name": env.account.pc}});
    merge(&mut spec, extra);
    env.create::<TrafficMirrorFilter>(json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1", "kind": "TrafficMirrorFilter",
        "metadata": {"name": name}, "spec": spec,
    }))
    .await;
}

async fn patch_filter(env: &Env, name: &str, spec: Value) {
    env.filters()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": spec})),
        )
        .await
        .expect("patch filter");
}

/// A session object that references the filter `filter` by name.
async fn apply_session(env: &Env, name: &str, filter: &str) {
    env.create::<TrafficMirrorSession>(json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1", "kind": "TrafficMirrorSession",
        "metadata": {"name": name},
        "spec": {
            "trafficMirrorFilterRef": {"name": filter},
            "trafficMirrorSources": ["eni-a"],
            "trafficMirrorTargetId": "eni-target",
            "trafficMirrorTargetType": "eni",
            "priority": 10,
            "providerConfigRef": {"name": env.account.pc},
        },
    }))
    .await;
}

async fn cloud_filters(env: &Env) -> Vec<CloudFilter> {
    env.cloud
        .list_all_filters(ListFiltersQuery::default())
        .await
        .expect("list filters")
}

async fn cloud_filter(env: &Env, id: &str) -> CloudFilter {
    env.cloud.show_filter(id).await.expect("show filter")
}

/// After a crash and restart: the object `name` is Ready, the account holds exactly one cloud
/// filter besides the setup's, it is the object's, and it has `want`'s name, description and exactly one rule per key.
async fn assert_one_filter_as_desired(
    env: &Env,
    failpoint: &str,
    name: &str,
    (cloud_name, description, keys): (&str, &str, &[&str]),
    op: &support::operator::Operator,
) {
    let f = env
        .wait_condition::<TrafficMirrorFilter>(name, "Ready", "True", Some("Available"))
        .await;
    let mut filters = cloud_filters(env).await;
    filters.retain(|f| f.id != env.account.filter_id); // the account's own, made by the setup
    assert_eq!(
        filters.len(),
        1,
        "{failpoint}: one filter: {filters:?}; log:\n{}",
        op.logs()
    );
    let id = f.status.and_then(|s| s.filter_id).expect("id");
    let cloud = cloud_filter(env, &id).await;
    assert_eq!(filters[0].id, id, "{failpoint}: the object's filter");
    assert_eq!(
        (cloud.name.as_str(), cloud.description.as_str()),
        (cloud_name, description),
        "{failpoint}: name and description"
    );
    let found = rules_by_key(&cloud);
    assert_eq!(
        found.keys().map(String::as_str).collect::<Vec<_>>(),
        keys,
        "{failpoint}: rule keys; log:\n{}",
        op.logs()
    );
    assert!(
        found.values().all(|ids| ids.len() == 1),
        "{failpoint}: duplicates {found:?}"
    );
}

fn merge(target: &mut Value, extra: Value) {
    if let (Some(t), Value::Object(e)) = (target.as_object_mut(), extra) {
        t.extend(e);
    }
}

fn rule(direction: &str, priority: i64, extra: Value) -> Value {
    let mut r = json!({"direction": direction, "priority": priority, "protocol": "TCP",
                       "ethertype": "IPv4", "action": "accept"});
    merge(&mut r, extra);
    r
}

fn three_rules() -> Value {
    json!([
        rule(
            "ingress",
            10,
            json!({"sourceCidrBlock": "10.0.0.0/8", "destinationPortRange": "80-443"})
        ),
        rule("ingress", 20, json!({"protocol": "UDP"})),
        rule(
            "egress",
            10,
            json!({"destinationCidrBlock": "192.168.0.0/16"})
        ),
    ])
}

/// Rules of a cloud filter by key `direction/priority`.
fn rules_by_key(f: &CloudFilter) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in f.ingress_rules.iter().chain(&f.egress_rules) {
        out.entry(format!("{}/{}", r.direction, r.priority))
            .or_default()
            .push(r.id.clone());
    }
    out
}

fn methods(calls: &[Value]) -> Vec<String> {
    calls
        .iter()
        .map(|c| {
            let path = c["path"].as_str().unwrap_or("");
            let what = if path.contains("filter-rules") {
                "rule"
            } else if path.contains("filters") {
                "filter"
            } else {
                "session"
            };
            format!("{} {what}", c["method"].as_str().unwrap_or(""))
        })
        .collect()
}

#[tokio::test]
async fn a_filter_with_rules_becomes_ready_with_ids() {
    let env = Env::builder("flt-create").resync(RESYNC).build().await;
    let _op = env.operator();
    apply_filter(
        &env,
        "web",
        three_rules(),
        json!({"description": "web tier"}),
    )
    .await;
    let f = env
        .wait_condition::<TrafficMirrorFilter>("web", "Ready", "True", Some("Available"))
        .await;
    let st = f.status.expect("status");
    let id = st.filter_id.expect("status.filterId");
    assert_eq!(
        st.rule_ids.keys().cloned().collect::<Vec<_>>(),
        vec!["egress/10", "ingress/10", "ingress/20"]
    );
    let cloud = cloud_filter(&env, &id).await;
    assert_eq!(
        (cloud.name.as_str(), cloud.description.as_str()),
        ("web", "web tier")
    );
    assert_eq!(cloud.ingress_rules.len() + cloud.egress_rules.len(), 3);
    assert_eq!(st.at_provider.expect("atProvider").id, id);
    // One POST for the filter, one batch POST for its rules, and nothing else written.
    let writes = env.writes().await;
    assert_eq!(methods(&writes), vec!["POST filter", "POST rule"]);
    assert!(
        writes[1]["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("/traffic-mirror-filter-rules/batch-create")),
        "{writes:?}"
    );
}

/// `n` rules, half inbound and half outbound, each at its own priority.
fn many_rules(n: i64) -> Value {
    let rules: Vec<Value> = (1..=n)
        .map(|i| {
            let direction = if i % 2 == 0 { "egress" } else { "ingress" };
            rule(
                direction,
                i,
                json!({"destinationPortRange": format!("{i}")}),
            )
        })
        .collect();
    json!(rules)
}

/// Issue 21's target: a new 100-rule filter costs at most 3 cloud calls (the emulator's call log:
/// a name LIST at most, the filter POST, one batch POST for the 100 rules).
#[tokio::test]
async fn a_new_hundred_rule_filter_costs_at_most_three_cloud_calls() {
    let env = Env::builder("flt-batch").resync("5m").build().await;
    let _op = env.operator();
    apply_filter(&env, "big", many_rules(100), json!({})).await;
    let f = env
        .wait_condition::<TrafficMirrorFilter>("big", "Ready", "True", Some("Available"))
        .await;
    assert_eq!(f.status.expect("status").rule_ids.len(), 100);
    // The filter's calls; the account's own start-up reads (the ProviderConfig check and the
    // sessions snapshot, both `traffic-mirror-sessions`) are not the filter's.
    let calls: Vec<Value> = env
        .calls()
        .await
        .into_iter()
        .filter(|c| {
            c["path"]
                .as_str()
                .is_some_and(|p| p.contains("/traffic-mirror-filter"))
        })
        .collect();
    let seen: Vec<String> = calls
        .iter()
        .map(|c| format!("{} {}?{}", c["method"], c["path"], c["query"]))
        .collect();
    assert!(calls.len() <= 3, "{} calls: {seen:#?}", calls.len());
    assert_eq!(methods(&env.writes().await), ["POST filter", "POST rule"]);
    let rules = env.emu().state().await["rules"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(rules, 100);
}

/// Where the endpoint lacks the batch API (404 `APIGW.0101`), the rules are created one by one in
/// the same reconcile, and the account remembers it: the next filter never tries the batch.
#[tokio::test]
async fn without_the_batch_api_rules_are_created_one_by_one_and_that_is_remembered() {
    let env = Env::builder("flt-nobatch").resync(RESYNC).build().await;
    env.emu().set_batch_rule_create(false).await;
    let _op = env.operator();
    apply_filter(&env, "web", three_rules(), json!({})).await;
    env.wait_condition::<TrafficMirrorFilter>("web", "Ready", "True", Some("Available"))
        .await;
    let writes = env.writes().await;
    let statuses: Vec<u64> = writes.iter().filter_map(|c| c["status"].as_u64()).collect();
    assert_eq!(
        methods(&writes),
        [
            "POST filter",
            "POST rule",
            "POST rule",
            "POST rule",
            "POST rule"
        ]
    );
    assert_eq!(statuses, [201, 404, 201, 201, 201], "{writes:?}");
    env.emu().clear_calls().await;
    apply_filter(&env, "db", three_rules(), json!({})).await;
    env.wait_condition::<TrafficMirrorFilter>("db", "Ready", "True", Some("Available"))
        .await;
    let writes = env.writes().await;
    assert_eq!(
        methods(&writes),
        ["POST filter", "POST rule", "POST rule", "POST rule"],
        "no second try of the batch: {writes:?}"
    );
    assert!(writes.iter().all(|c| c["status"] == 201), "{writes:?}");
}

/// A batch refused for one bad rule creates none (all or nothing): the filter shows
/// `Ready=False` with the cloud's code as the reason and its message, no rule ids, and the cloud
/// holds the filter without rules. (Admission refuses every rule the emulator would, so the
/// refusal is injected with the answer the emulator gives for a bad item.)
#[tokio::test]
async fn a_batch_refused_for_one_bad_rule_creates_none_and_the_filter_says_why() {
    let env = Env::builder("flt-badbatch").resync(RESYNC).build().await;
    let msg = "traffic_mirror_filter_rules[1]: traffic_mirror_filter_rules.protocol must be one of TCP, UDP, ICMP, ICMPV6, ALL";
    env.emu()
        .fault(json!({"path_contains": "batch-create", "status": 400,
                      "error_code": "VPC.0002", "error_msg": msg, "times": 1000}))
        .await;
    let _op = env.operator();
    apply_filter(&env, "web", three_rules(), json!({})).await;
    let f = env
        .wait_condition::<TrafficMirrorFilter>("web", "Ready", "False", Some("VPC_0002"))
        .await;
    let st = f.status.expect("status");
    let ready = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    assert!(
        ready.message.contains("traffic_mirror_filter_rules[1]"),
        "{ready:?}"
    );
    assert!(st.rule_ids.is_empty(), "{st:?}");
    let id = st.filter_id.expect("the filter itself was created");
    let cloud = cloud_filter(&env, &id).await;
    assert_eq!(cloud.ingress_rules.len() + cloud.egress_rules.len(), 0);
}

#[tokio::test]
async fn each_kind_of_rule_change_costs_exactly_the_needed_calls() {
    let env = Env::builder("flt-changes").resync(RESYNC).build().await;
    let _op = env.operator();
    apply_filter(&env, "web", three_rules(), json!({})).await;
    env.wait_condition::<TrafficMirrorFilter>("web", "Ready", "True", Some("Available"))
        .await;
    let steps: Vec<(&str, Value, Vec<&str>, Vec<&str>)> = vec![
        // (what, new rules, expected writes, expected PUT body keys)
        (
            "change one field",
            json!([
                rule(
                    "ingress",
                    10,
                    json!({"sourceCidrBlock": "10.0.0.0/8", "destinationPortRange": "80-8080"})
                ),
                rule("ingress", 20, json!({"protocol": "UDP"})),
                rule(
                    "egress",
                    10,
                    json!({"destinationCidrBlock": "192.168.0.0/16"})
                ),
            ]),
            vec!["PUT rule"],
            vec!["destination_port_range"],
        ),
        (
            "clear a field",
            json!([
                rule("ingress", 10, json!({"sourceCidrBlock": "10.0.0.0/8"})),
                rule("ingress", 20, json!({"protocol": "UDP"})),
                rule(
                    "egress",
                    10,
                    json!({"destinationCidrBlock": "192.168.0.0/16"})
                ),
            ]),
            vec!["PUT rule"],
            vec!["destination_port_range"],
        ),
        (
            "add a rule",
            json!([
                rule("ingress", 10, json!({"sourceCidrBlock": "10.0.0.0/8"})),
                rule("ingress", 20, json!({"protocol": "UDP"})),
                rule(
                    "egress",
                    10,
                    json!({"destinationCidrBlock": "192.168.0.0/16"})
                ),
                rule("egress", 30, json!({})),
            ]),
            vec!["POST rule"],
            vec![],
        ),
        (
            "remove a rule",
            json!([
                rule("ingress", 10, json!({"sourceCidrBlock": "10.0.0.0/8"})),
                rule(
                    "egress",
                    10,
                    json!({"destinationCidrBlock": "192.168.0.0/16"})
                ),
                rule("egress", 30, json!({})),
            ]),
            vec!["DELETE rule"],
            vec![],
        ),
        (
            "move a rule to another priority: add before remove",
            json!([
                rule("ingress", 10, json!({"sourceCidrBlock": "10.0.0.0/8"})),
                rule(
                    "egress",
                    10,
                    json!({"destinationCidrBlock": "192.168.0.0/16"})
                ),
                rule("egress", 40, json!({})),
            ]),
            vec!["POST rule", "DELETE rule"],
            vec![],
        ),
    ];
    for (what, rules, want, put_keys) in steps {
        env.emu().clear_calls().await;
        patch_filter(&env, "web", json!({"rules": rules})).await;
        let f = env
            .wait_condition::<TrafficMirrorFilter>("web", "Ready", "True", Some("Available"))
            .await;
        let writes = env.writes().await;
        assert_eq!(methods(&writes), want, "{what}");
        if let Some(put) = writes.iter().find(|c| c["method"] == "PUT") {
            let keys: Vec<String> = put["body"]["traffic_mirror_filter_rule"]
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            assert_eq!(
                keys, put_keys,
                "{what}: the PUT carries exactly the changed field"
            );
        }
        let id = f.status.and_then(|s| s.filter_id).expect("filter id");
        let keys = rules_by_key(&cloud_filter(&env, &id).await);
        assert!(
            keys.values().all(|ids| ids.len() == 1),
            "{what}: one rule per key: {keys:?}"
        );
    }
    // The cleared field is really gone in the cloud.
    let id = env
        .filters()
        .get("web")
        .await
        .expect("get")
        .status
        .and_then(|s| s.filter_id)
        .expect("id");
    let f = cloud_filter(&env, &id).await;
    let r = f
        .ingress_rules
        .iter()
        .find(|r| r.priority == 10)
        .expect("ingress/10");
    assert_eq!(r.destination_port_range, None, "cleared in the cloud");
}

/// The notes of the events about `name` with `reason`, oldest first.
async fn notes(env: &Env, name: &str, reason: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(env.client.clone(), &env.ns);
    let Ok(list) = events.list(&ListParams::default()).await else {
        return vec![];
    };
    let mut items: Vec<Event> = list
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .collect();
    items.sort_by_key(|e| e.metadata.creation_timestamp.clone());
    items.into_iter().filter_map(|e| e.note).collect()
}

/// A filter with many rules: while its calls run (each slowed down by the emulator) the status
/// already says `Ready=False`, reason `Creating`, and shows the cloud id before the rules are in;
/// the rule calls are told by one event per reconcile (`created 20 rules`, then `added 1 rule,
/// updated 1 rule`), not one per rule.
#[tokio::test]
async fn a_many_rule_filter_shows_creating_with_its_id_and_summarises_its_rules() {
    let env = Env::builder("flt-events").resync(RESYNC).build().await;
    let _op = env.operator();
    env.emu().set_latency(60, 0).await;
    let mut rules: Vec<Value> = (1..=20)
        .map(|p| {
            rule(
                "ingress",
                p,
                json!({"destinationPortRange": format!("{p}")}),
            )
        })
        .collect();
    apply_filter(&env, "web", json!(rules), json!({})).await;
    let api = env.filters();
    let creating = support::wait_for(WAIT, || async {
        let o = api.get_opt("web").await.ok().flatten()?;
        let st = o.status?;
        let ready = st.conditions.iter().find(|c| c.type_ == "Ready")?.clone();
        assert_ne!(
            ready.status, "True",
            "Ready before Creating with the id was seen"
        );
        (ready.reason == "Creating" && st.filter_id.is_some()).then_some(st)
    })
    .await;
    assert!(
        creating.rule_ids.len() < 20,
        "the id before the rules: {creating:?}"
    );
    env.wait_condition::<TrafficMirrorFilter>("web", "Ready", "True", Some("Available"))
        .await;
    env.emu().set_latency(0, 0).await;
    let created = support::wait_for(WAIT, || async {
        let n = notes(&env, "web", "RulesChanged").await;
        (!n.is_empty()).then_some(n)
    })
    .await;
    assert_eq!(created, ["created 20 rules"]);
    rules[1]["protocol"] = json!("UDP"); // one PUT
    rules.push(rule("egress", 5, json!({}))); // one POST
    patch_filter(&env, "web", json!({"rules": rules})).await;
    env.wait_condition::<TrafficMirrorFilter>("web", "Ready", "True", Some("Available"))
        .await;
    let both = support::wait_for(WAIT, || async {
        let n = notes(&env, "web", "RulesChanged").await;
        (n.len() >= 2).then_some(n)
    })
    .await;
    assert_eq!(both, ["created 20 rules", "added 1 rule, updated 1 rule"]);
}

/// A write that meets a newer copy (409: here the test relabels the object while the operator
/// works on it) is a stale copy, not a failure: no Warning event, and the object converges.
#[tokio::test]
async fn a_write_conflict_is_a_silent_second_look_not_a_warning() {
    let env = Env::builder("flt-conflict").resync(RESYNC).build().await;
    let _op = env.operator();
    env.emu().set_latency(30, 0).await;
    apply_filter(&env, "web", three_rules(), json!({})).await;
    // Relabel until the operator has finished (or 200 times): its reads keep going stale.
    for i in 0..200 {
        let patch = json!({"metadata": {"labels": {"touched": format!("{i}")}}});
        let o = env
            .filters()
            .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("relabel");
        let ready = o
            .status
            .iter()
            .flat_map(|s| &s.conditions)
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if ready {
            break;
        }
    }
    env.wait_condition::<TrafficMirrorFilter>("web", "Ready", "True", Some("Available"))
        .await;
    let events: Api<Event> = Api::namespaced(env.client.clone(), &env.ns);
    let warnings: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
}

#[tokio::test]
async fn a_session_waits_for_its_filter_then_converges_and_follows_a_new_id() {
    let env = Env::builder("flt-ref").resync(RESYNC).build().await;
    let _op = env.operator();
    apply_session(&env, "s", "web").await;
    env.wait_condition::<TrafficMirrorSession>("s", "Ready", "False", Some("FilterNotReady"))
        .await;
    assert!(
        env.emu().calls().await.iter().all(|c| c["method"] == "GET"),
        "no cloud write while the filter is missing"
    );
    apply_filter(&env, "web", three_rules(), json!({})).await;
    let f = env
        .wait_condition::<TrafficMirrorFilter>("web", "Ready", "True", None)
        .await;
    let first = f.status.and_then(|s| s.filter_id).expect("id");
    let s = env
        .wait_condition::<TrafficMirrorSession>("s", "Ready", "True", Some("Available"))
        .await;
    let at = s.status.and_then(|s| s.at_provider).expect("atProvider");
    assert_eq!(at.traffic_mirror_filter_id, first);
    // The filter is replaced by another (Orphan releases the old object at once): the session
    // follows the new id with one PUT.
    patch_filter(&env, "web", json!({"deletionPolicy": "Orphan"})).await;
    env.filters()
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete");
    env.wait_gone::<TrafficMirrorFilter>("web").await;
    env.emu().clear_calls().await;
    apply_filter(
        &env,
        "web",
        json!([rule("ingress", 5, json!({}))]),
        json!({"name": "web-v2"}),
    )
    .await;
    let f = env
        .wait_condition::<TrafficMirrorFilter>("web", "Ready", "True", None)
        .await;
    let second = f.status.and_then(|s| s.filter_id).expect("id");
    assert_ne!(first, second);
    let api = env.sessions();
    support::wait_for(WAIT, || {
        let api = api.clone();
        let second = second.clone();
        async move {
            let s = api.get("s").await.ok()?;
            let at = s.status?.at_provider?;
            (at.traffic_mirror_filter_id == second).then_some(())
        }
    })
    .await;
    let session_puts: Vec<Value> = env
        .writes()
        .await
        .into_iter()
        .filter(|c| {
            c["path"]
                .as_str()
                .is_some_and(|p| p.contains("traffic-mirror-sessions"))
        })
        .collect();
    assert_eq!(
        session_puts.len(),
        1,
        "one PUT moves the session: {session_puts:?}"
    );
    assert_eq!(session_puts[0]["method"], "PUT");
}

#[tokio::test]
async fn deleting_a_filter_in_use_waits_for_its_sessions() {
    let env = Env::builder("flt-inuse").resync(RESYNC).build().await;
    let _op = env.operator();
    apply_filter(&env, "web", three_rules(), json!({})).await;
    apply_session(&env, "s", "web").await;
    env.wait_condition::<TrafficMirrorSession>("s", "Ready", "True", None)
        .await;
    env.emu().clear_calls().await;
    env.filters()
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete");
    let f = env
        .wait_condition::<TrafficMirrorFilter>("web", "Ready", "False", Some("InUse"))
        .await;
    let msg = f
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(msg.contains(&format!("{}/s", env.ns)), "{msg}");
    assert!(
        msg.contains("waiting for 1 session(s)"),
        "counted once: {msg}"
    );
    assert!(
        env.writes().await.is_empty(),
        "no delete is tried while sessions use the filter"
    );
    // The filter still exists and keeps serving: its session stays Ready, says why the filter waits,
    // and an edit is still applied (one PUT) while the filter waits.
    let s = env
        .wait_condition::<TrafficMirrorSession>("s", "Ready", "True", None)
        .await;
    let ready = s
        .status
        .as_ref()
        .and_then(|st| st.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(ready.contains("\"web\" is being deleted"), "{ready}");
    env.sessions()
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"priority": 11}})),
        )
        .await
        .expect("patch priority");
    env.wait_condition::<TrafficMirrorSession>("s", "Ready", "True", None)
        .await;
    let puts: Vec<Value> = env
        .writes()
        .await
        .into_iter()
        .filter(|c| c["method"] == "PUT")
        .collect();
    assert_eq!(puts.len(), 1, "the edit is applied: {puts:?}");
    assert_eq!(
        env.wait_condition::<TrafficMirrorFilter>("web", "Ready", "False", Some("InUse"))
            .await
            .status
            .map(|s| s.filter_id.is_some()),
        Some(true),
        "the filter still waits"
    );
    env.sessions()
        .delete("s", &DeleteParams::default())
        .await
        .expect("delete session");
    env.wait_gone::<TrafficMirrorFilter>("web").await;
    assert!(
        cloud_filters(&env).await.iter().all(|f| f.name != "web"),
        "the cloud filter is gone"
    );
    let deletes = env
        .writes()
        .await
        .iter()
        .filter(|c| c["method"] == "DELETE")
        .count();
    assert_eq!(deletes, 2, "one session delete, one filter delete");
}

#[tokio::test]
async fn out_of_band_rule_drift_is_corrected_and_protocol_case_is_not_drift() {
    let env = Env::builder("flt-drift").resync(RESYNC).build().await;
    let _op = env.operator();
    apply_filter(&env, "web", three_rules(), json!({})).await;
    let f = env
        .wait_condition::<TrafficMirrorFilter>("web", "Ready", "True", None)
        .await;
    let st = f.status.expect("status");
    let id = st.filter_id.expect("id");
    // Out of band: the protocol's case changes (not drift), a field changes, a rule goes, one appears.
    let r10 = st.rule_ids["ingress/10"].clone();
    let r20 = st.rule_ids["ingress/20"].clone();
    let lower = UpdateRuleRequest {
        protocol: Some("udp".into()),
        ..Default::default()
    };
    env.cloud
        .update_rule(&r20, &lower)
        .await
        .expect("lower-case protocol");
    let changed = UpdateRuleRequest {
        source_cidr_block: Some("172.16.0.0/12".into()),
        ..Default::default()
    };
    env.cloud.update_rule(&r10, &changed).await.expect("change");
    let egress = st.rule_ids["egress/10"].clone();
    env.cloud.delete_rule(&egress).await.expect("delete");
    env.emu().clear_calls().await;
    support::wait_for(WAIT, || async {
        let f = cloud_filter(&env, &id).await;
        let keys = rules_by_key(&f);
        let r = f.ingress_rules.iter().find(|r| r.priority == 10)?;
        (keys.len() == 3 && r.source_cidr_block.as_deref() == Some("10.0.0.0/8")).then_some(())
    })
    .await;
    let f = cloud_filter(&env, &id).await;
    let r = f
        .ingress_rules
        .iter()
        .find(|r| r.priority == 20)
        .expect("ingress/20");
    assert_eq!(
        r.protocol, "udp",
        "a case-only difference is never rewritten"
    );
    let writes = methods(&env.writes().await);
    assert_eq!(
        writes.iter().filter(|w| *w == "PUT rule").count(),
        1,
        "{writes:?}"
    );
    assert_eq!(
        writes.iter().filter(|w| *w == "POST rule").count(),
        1,
        "{writes:?}"
    );
}

#[tokio::test]
async fn observe_only_reports_drift_and_never_writes() {
    let env = Env::builder("flt-observe").resync(RESYNC).build().await;
    let existing = env
        .cloud
        .create_filter(
            &traffic_mirror_operator::cloud::models::CreateFilterRequest {
                name: "legacy".into(),
                description: Some("made elsewhere".into()),
            },
        )
        .await
        .expect("create");
    let _op = env.operator();
    env.emu().clear_calls().await;
    apply_filter(
        &env,
        "legacy",
        three_rules(),
        json!({"managementPolicy": "ObserveOnly", "filterId": existing.id, "description": "made elsewhere"}),
    )
    .await;
    let f = env
        .wait_condition::<TrafficMirrorFilter>("legacy", "Ready", "False", Some("Drifted"))
        .await;
    let msg = f
        .status
        .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.message)
        .unwrap_or_default();
    assert!(msg.contains("ingress/10"), "{msg}");
    assert!(env.writes().await.is_empty(), "ObserveOnly never writes");
}

/// Kills the operator at `failpoint` while it creates a filter with rules, restarts it, and checks
/// that exactly one filter and one rule per key exist.
async fn crash_during_filter_create(failpoint: &str) {
    let env = Env::builder("flt-crash").resync(RESYNC).build().await;
    let mut op = env.operator_with(Some(failpoint));
    apply_filter(&env, "web", three_rules(), json!({})).await;
    support::wait_for(WAIT, || {
        let exited = op.exited();
        async move { exited.then_some(()) }
    })
    .await;
    assert!(
        op.logs().contains("failpoint"),
        "{failpoint}: {}",
        op.logs()
    );
    drop(op);
    let op = env.operator();
    let want = (
        "web",
        "",
        ["egress/10", "ingress/10", "ingress/20"].as_slice(),
    );
    assert_one_filter_as_desired(&env, failpoint, "web", want, &op).await;
}

#[tokio::test]
async fn crash_before_the_filter_create() {
    crash_during_filter_create("filter-create-before").await;
}

#[tokio::test]
async fn crash_after_the_filter_create_before_recording() {
    crash_during_filter_create("filter-create-after").await;
}

#[tokio::test]
async fn crash_after_recording_the_filter_id() {
    crash_during_filter_create("filter-record-after").await;
}

#[tokio::test]
async fn crash_after_a_rule_create() {
    crash_during_filter_create("rule-create-after").await;
}

#[tokio::test]
async fn crash_after_the_rule_intent_of_a_new_filter() {
    crash_during_filter_create("rule-intent-after").await;
}

#[tokio::test]
async fn steady_state_is_one_list_per_interval_and_no_writes() {
    let env = Env::builder("flt-steady").resync(RESYNC).build().await;
    let _op = env.operator();
    apply_filter(&env, "web", three_rules(), json!({})).await;
    apply_filter(&env, "db", json!([rule("egress", 1, json!({}))]), json!({})).await;
    let web = env
        .wait_condition::<TrafficMirrorFilter>("web", "Ready", "True", Some("Available"))
        .await;
    let db = env
        .wait_condition::<TrafficMirrorFilter>("db", "Ready", "True", Some("Available"))
        .await;
    env.emu().clear_calls().await;
    // Three resync LISTs of filters: proof that three intervals passed, without sleeping.
    env.wait_resyncs_since(&[FILTERS], 0, 3).await;
    let calls = env.emu().calls().await;
    let per_filter_reads = calls
        .iter()
        .filter(|c| {
            c["path"]
                .as_str()
                .is_some_and(|p| p.contains("/traffic-mirror-filters/"))
        })
        .count();
    assert_eq!(
        per_filter_reads, 0,
        "no per-filter GET at steady state: {calls:?}"
    );
    assert!(env.writes().await.is_empty(), "no writes at steady state");
    // Nor API-server writes: the status recorded from the calls' answers equals what the LIST shows.
    for before in [web, db] {
        let name = before.metadata.name.clone().expect("name");
        let now = env.filters().get(&name).await.expect("get");
        assert_eq!(
            now.metadata.resource_version, before.metadata.resource_version,
            "{name}: status rewritten at steady state: {:?}",
            now.status
        );
    }
}

/// Kills the operator at `failpoint` while it changes rules, restarts it, and checks one filter with
/// one rule per key of `want`, in the desired state.
async fn crash_during_rule_change(failpoint: &str, rules: Value, want: &[&str]) {
    let env = Env::builder("flt-crash-rules").resync(RESYNC).build().await;
    let op = env.operator();
    apply_filter(&env, "web", three_rules(), json!({})).await;
    env.wait_condition::<TrafficMirrorFilter>("web", "Ready", "True", Some("Available"))
        .await;
    drop(op);
    let mut op = env.operator_with(Some(failpoint));
    patch_filter(&env, "web", json!({"rules": rules})).await;
    support::wait_for(WAIT, || {
        let exited = op.exited();
        async move { exited.then_some(()) }
    })
    .await;
    assert!(
        op.logs().contains("failpoint"),
        "{failpoint}: {}",
        op.logs()
    );
    drop(op);
    let op = env.operator();
    assert_one_filter_as_desired(&env, failpoint, "web", ("web", "", want), &op).await;
}

#[tokio::test]
async fn crash_after_a_rule_update() {
    let rules = json!([
        rule(
            "ingress",
            10,
            json!({"sourceCidrBlock": "10.0.0.0/8", "destinationPortRange": "22"})
        ),
        rule(
            "ingress",
            20,
            json!({"protocol": "UDP", "description": "dns"})
        ),
        rule(
            "egress",
            10,
            json!({"destinationCidrBlock": "192.168.0.0/16"})
        ),
    ]);
    let want = ["egress/10", "ingress/10", "ingress/20"];
    crash_during_rule_change("rule-update-after", rules, &want).await;
}

#[tokio::test]
async fn crash_after_a_rule_delete() {
    let rules = json!([rule(
        "ingress",
        10,
        json!({"sourceCidrBlock": "10.0.0.0/8"})
    )]);
    crash_during_rule_change("rule-delete-after", rules, &["ingress/10"]).await;
}

#[tokio::test]
async fn crash_after_the_rule_intent_of_a_rule_change() {
    let mut rules = three_rules();
    if let Some(list) = rules.as_array_mut() {
        list.push(rule("egress", 20, json!({"protocol": "UDP"})));
    }
    let want = ["egress/10", "egress/20", "ingress/10", "ingress/20"];
    crash_during_rule_change("rule-intent-after", rules, &want).await;
}

/// Kills the operator right after the filter's own PUT (name and description) succeeded, before its
/// rule calls, restarts it, and checks that the one cloud filter reaches the whole new spec.
#[tokio::test]
async fn crash_after_the_filter_update() {
    let failpoint = "filter-update-after";
    let env = Env::builder("flt-crash-update")
        .resync(RESYNC)
        .build()
        .await;
    let op = env.operator();
    apply_filter(
        &env,
        "web",
        three_rules(),
        json!({"description": "web tier"}),
    )
    .await;
    env.wait_condition::<TrafficMirrorFilter>("web", "Ready", "True", Some("Available"))
        .await;
    drop(op);
    let mut op = env.operator_with(Some(failpoint));
    let rules = json!([
        rule("ingress", 10, json!({"sourceCidrBlock": "10.1.0.0/16"})),
        rule("ingress", 30, json!({})),
        rule(
            "egress",
            10,
            json!({"destinationCidrBlock": "192.168.0.0/16"})
        ),
    ]);
    patch_filter(
        &env,
        "web",
        json!({"name": "web-v2", "description": "web tier, v2", "rules": rules}),
    )
    .await;
    support::wait_for(WAIT, || {
        let exited = op.exited();
        async move { exited.then_some(()) }
    })
    .await;
    assert!(op.logs().contains("failpoint"), "{}", op.logs());
    drop(op);
    let op = env.operator();
    let want = (
        "web-v2",
        "web tier, v2",
        ["egress/10", "ingress/10", "ingress/30"].as_slice(),
    );
    assert_one_filter_as_desired(&env, failpoint, "web", want, &op).await;
    let f = env
        .wait_condition::<TrafficMirrorFilter>("web", "Ready", "True", Some("Available"))
        .await;
    let id = f.status.and_then(|s| s.filter_id).expect("id");
    let f = cloud_filter(&env, &id).await;
    let r10 = f.ingress_rules.iter().find(|r| r.priority == 10);
    assert_eq!(
        r10.and_then(|r| r.source_cidr_block.as_deref()),
        Some("10.1.0.0/16"),
        "the rule change after the PUT was made: {f:?}"
    );
}

/// The Ready condition's reason and message.
fn ready_of(f: &TrafficMirrorFilter) -> (String, String) {
    f.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| (c.reason.clone(), c.message.clone()))
        .unwrap_or_default()
}

/// A cloud filter made outside Kubernetes, for objects to adopt.
async fn legacy_filter(env: &Env) -> String {
    let req = traffic_mirror_operator::cloud::models::CreateFilterRequest {
        name: "legacy".into(),
        description: None,
    };
    env.cloud.create_filter(&req).await.expect("create").id
}

/// Two Full objects adopt the cloud filter `id`: `first` (older, with `first_extra`) is Ready,
/// `second` (different rules) reports AlreadyManaged naming `first`; no write reaches the cloud
/// after `first` converged, over three resync intervals.
async fn two_managers_of(env: &Env, id: &str, first_extra: Value) {
    let mut extra = json!({"filterId": id});
    merge(&mut extra, first_extra);
    apply_filter(env, "first", three_rules(), extra).await;
    env.wait_condition::<TrafficMirrorFilter>("first", "Ready", "True", Some("Available"))
        .await;
    env.emu().clear_calls().await;
    let other_rules = json!([rule("egress", 1, json!({}))]);
    apply_filter(env, "second", other_rules, json!({"filterId": id})).await;
    let second = env
        .wait_condition::<TrafficMirrorFilter>("second", "Ready", "False", Some("AlreadyManaged"))
        .await;
    let (_, msg) = ready_of(&second);
    for part in [
        format!("cloud filter {id}"),
        format!("{}/first", env.ns),
        "ObserveOnly".into(),
        "spec.filterId".into(),
    ] {
        assert!(msg.contains(&part), "{part}: {msg}");
    }
    let stalled = second.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "Stalled" && c.status == "True")
    });
    assert!(stalled.is_some(), "Stalled: {:?}", second.status);
    env.wait_resyncs_since(&[FILTERS], 0, 3).await;
    let first = env.filters().get("first").await.expect("get first");
    assert_eq!(ready_of(&first).0, "Available", "{:?}", first.status);
    let writes = methods(&env.writes().await);
    assert!(writes.is_empty(), "no flapping writes: {writes:?}");
    let keys = rules_by_key(&cloud_filter(env, id).await);
    assert_eq!(
        keys.keys().map(String::as_str).collect::<Vec<_>>(),
        ["egress/10", "ingress/10", "ingress/20"],
        "the cloud filter has the older object's rules"
    );
}

#[tokio::test]
async fn a_second_object_adopting_a_managed_filter_stalls_and_never_writes() {
    let env = Env::builder("flt-claim").resync(RESYNC).build().await;
    let _op = env.operator();
    let id = legacy_filter(&env).await;
    two_managers_of(&env, &id, json!({})).await;
    // Deleting the younger leaves the cloud filter (the older one's) alone.
    env.filters()
        .delete("second", &DeleteParams::default())
        .await
        .expect("delete second");
    env.wait_gone::<TrafficMirrorFilter>("second").await;
    let still = cloud_filter(&env, &id).await;
    assert_eq!(rules_by_key(&still).len(), 3, "{still:?}");
    let writes = methods(&env.writes().await);
    assert!(
        writes.is_empty(),
        "no delete of the managed filter: {writes:?}"
    );
    env.wait_condition::<TrafficMirrorFilter>("first", "Ready", "True", Some("Available"))
        .await;
}

#[tokio::test]
async fn when_the_older_manager_goes_the_younger_takes_over_at_the_next_resync() {
    let env = Env::builder("flt-claim-over").resync(RESYNC).build().await;
    let _op = env.operator();
    let id = legacy_filter(&env).await;
    two_managers_of(&env, &id, json!({"deletionPolicy": "Orphan"})).await;
    env.filters()
        .delete("first", &DeleteParams::default())
        .await
        .expect("delete first");
    env.wait_gone::<TrafficMirrorFilter>("first").await;
    env.wait_condition::<TrafficMirrorFilter>("second", "Ready", "True", Some("Available"))
        .await;
    let keys = rules_by_key(&cloud_filter(&env, &id).await);
    assert_eq!(
        keys.keys().map(String::as_str).collect::<Vec<_>>(),
        ["egress/1"],
        "the younger object's rules now"
    );
}

/// A filter object that recorded its cloud filter keeps it: a later, different `spec.filterId` is
/// refused at admission (the recorded id is in status), and deleting the object deletes the filter
/// it created, never the unknown id.
#[tokio::test]
async fn a_late_filter_id_is_refused_and_deletion_deletes_the_created_filter() {
    let env = Env::builder("flt-late-id").resync(RESYNC).build().await;
    let _op = env.operator();
    apply_filter(&env, "web", three_rules(), json!({})).await;
    let f = env
        .wait_condition::<TrafficMirrorFilter>("web", "Ready", "True", Some("Available"))
        .await;
    let created = f.status.and_then(|s| s.filter_id).expect("status.filterId");
    let late = json!({"spec": {"filterId": "33333333-0000-4000-8000-000000000000"}});
    let err = env
        .filters()
        .patch("web", &PatchParams::default(), &Patch::Merge(&late))
        .await
        .expect_err("a late filterId naming another filter is refused");
    assert!(
        err.to_string()
            .contains("spec.filterId must equal status.filterId"),
        "{err}"
    );
    env.filters()
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete");
    env.wait_gone::<TrafficMirrorFilter>("web").await;
    let err = env.cloud.show_filter(&created).await.expect_err("deleted");
    assert!(
        err.is_not_found(),
        "the created filter is not leaked: {err}"
    );
    let deletes: Vec<Value> = env
        .writes()
        .await
        .into_iter()
        .filter(|c| c["method"] == "DELETE")
        .collect();
    assert!(
        deletes
            .iter()
            .all(|c| !c["path"].as_str().unwrap_or("").contains("33333333")),
        "{deletes:?}"
    );
}

/// Filters: a `NameConflict` clears as soon as the object holding the name is gone (woken by the
/// claim index), well before the next resync (the operator here resyncs every 300 s).
#[tokio::test]
async fn a_filter_name_conflict_clears_as_soon_as_the_holder_is_gone() {
    let env = Env::builder("flt-name-freed").resync(RESYNC).build().await;
    let log = env.dir.path().join("operator-long-resync.log");
    let _op = support::operator::Operator::start(&env.ns, "300s", &[], None, log);
    apply_filter(&env, "a", three_rules(), json!({"name": "shared"})).await;
    env.wait_condition::<TrafficMirrorFilter>("a", "Ready", "True", Some("Available"))
        .await;
    apply_filter(&env, "b", three_rules(), json!({"name": "shared"})).await;
    let b = env
        .wait_condition::<TrafficMirrorFilter>("b", "Ready", "False", Some("NameConflict"))
        .await;
    let (_, msg) = ready_of(&b);
    assert!(msg.contains("metadata.name"), "{msg}");
    env.filters()
        .delete("a", &DeleteParams::default())
        .await
        .expect("delete a");
    env.wait_gone::<TrafficMirrorFilter>("a").await;
    support::wait_for(Duration::from_secs(30), || async {
        let b = env.filters().get("b").await.ok()?;
        (ready_of(&b).0 == "Available").then_some(())
    })
    .await;
}
