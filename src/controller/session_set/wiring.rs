//! The set controller's watches: the sets, their children (`owns`: a child's status change
//! recounts its set), and the Nodes, mapped to the sets whose selector matches the Node's labels now
//! or whose last selection held it. Only a change that matters to a set (labels, address,
//! providerID, being removed, or the Node going) wakes anything: a Node's heartbeats do not.
//!
//! A short debounce batches a burst of Node events (a scale-up) into one reconcile, so one
//! `add-sources` per child touched, not one per Node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::controller::Config as ControllerConfig;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, ResourceExt};

use super::nodes::{self, fingerprint};
use super::{SetContext, reconcile, set_key};
use crate::api::{TrafficMirrorSession, TrafficMirrorSessionSet};
use crate::controller::context::Context;

/// How long the controller waits for more events before reconciling a set.
pub const DEBOUNCE: Duration = Duration::from_millis(500);

type Fingerprint = (
    std::collections::BTreeMap<String, String>,
    nodes::NodeFacts,
    bool,
);

/// The set controller, until shutdown.
pub fn run_controller(ctx: Arc<Context>) -> impl std::future::Future<Output = ()> + Send {
    let wc = watcher::Config::default().any_semantic();
    let sets: Api<TrafficMirrorSessionSet> = watched(&ctx);
    let sessions: Api<TrafficMirrorSession> = watched(&ctx);
    let (node_store, node_writer) = reflector::store();
    let node_events = node_changes(node_writer, Api::all(ctx.client.clone()), wc.clone());
    let sc = Arc::new(SetContext {
        ctx: ctx.clone(),
        nodes: node_store,
        resolved: Default::default(),
        tagged: Default::default(),
        selected: Default::default(),
    });
    let controller = Controller::new(sets, wc.clone()).with_config(
        ControllerConfig::default()
            .concurrency(ctx.config.concurrency)
            .debounce(DEBOUNCE),
    );
    let set_store = controller.store();
    crate::controller::object_counts::count_from_store(
        &ctx.metrics,
        super::KIND,
        set_store.clone(),
        |o| o.status.as_ref().map(|s| s.conditions.as_slice()),
    );
    let mapper_sc = sc.clone();
    controller
        .owns(sessions, wc)
        .watches_stream(node_events, move |node| {
            sets_of_node(&set_store, &mapper_sc, &node)
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, sc)
        .for_each(|_| async {})
}

/// The objects of kind `K` the operator watches: in `--namespace`, else everywhere.
fn watched<K>(ctx: &Context) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match &ctx.config.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    }
}

/// The Node watch, cached in `writer`, yielding a Node only when what the sets read of it changed
/// (or it was deleted).
fn node_changes(
    writer: reflector::store::Writer<Node>,
    api: Api<Node>,
    wc: watcher::Config,
) -> impl futures::Stream<Item = Result<Node, watcher::Error>> + Send + 'static {
    let seen: Arc<Mutex<HashMap<String, Fingerprint>>> = Default::default();
    let stream = watcher(api, wc)
        .default_backoff()
        .modify(crate::controller::slim::<Node>);
    reflector::reflector(writer, stream).flat_map(move |event| {
        let items: Vec<Result<Node, watcher::Error>> = match event {
            Ok(e) => changed_nodes(&seen, e)
                .unwrap_or_default()
                .into_iter()
                .map(Ok)
                .collect(),
            Err(e) => vec![Err(e)],
        };
        futures::stream::iter(items)
    })
}

/// The Nodes of `event` whose fingerprint changed (all deleted ones), updating `seen`.
fn changed_nodes(
    seen: &Mutex<HashMap<String, Fingerprint>>,
    event: watcher::Event<Node>,
) -> Option<Vec<Node>> {
    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    match event {
        watcher::Event::Apply(n) | watcher::Event::InitApply(n) => {
            let fp = fingerprint(&n);
            let changed = seen.get(&n.name_any()) != Some(&fp);
            seen.insert(n.name_any(), fp);
            changed.then(|| vec![n])
        }
        watcher::Event::Delete(n) => {
            seen.remove(&n.name_any());
            Some(vec![n])
        }
        watcher::Event::Init | watcher::Event::InitDone => None,
    }
}

/// The sets a Node change concerns: those whose selector matches the Node now, and those whose last
/// selection held it.
fn sets_of_node(
    store: &Store<TrafficMirrorSessionSet>,
    sc: &SetContext,
    node: &Node,
) -> Vec<ObjectRef<TrafficMirrorSessionSet>> {
    let selected = sc.selected.lock().unwrap_or_else(|p| p.into_inner());
    store
        .state()
        .iter()
        .filter(|set| {
            let Some(sel) = &set.spec.sources.node_selector else {
                return false;
            };
            let matches = nodes::selector(sel).is_ok_and(|s| nodes::matches(&s, node));
            matches
                || selected
                    .get(&set_key(set))
                    .is_some_and(|names| names.contains(&node.name_any()))
        })
        .map(|set| ObjectRef::from_obj(&**set))
        .collect()
}

/// `reconcile` reports its failures itself and returns `Ok`; this only runs if that changes.
fn error_policy(
    _set: Arc<TrafficMirrorSessionSet>,
    _err: &super::SetError,
    _sc: Arc<SetContext>,
) -> kube::runtime::controller::Action {
    kube::runtime::controller::Action::requeue(super::RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(labels: serde_json::Value, heartbeat: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "n1", "uid": "u1", "labels": labels},
            "status": {
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": heartbeat}]
            }
        }))
        .unwrap()
    }

    #[test]
    fn only_changes_the_sets_read_wake_them() {
        let seen = Mutex::new(HashMap::new());
        let first = node(json!({"mirror": "on"}), "2026-01-01T00:00:00Z");
        let woke = |e| changed_nodes(&seen, e).map(|v| v.len());
        assert_eq!(woke(watcher::Event::InitApply(first.clone())), Some(1));
        let heartbeat = node(json!({"mirror": "on"}), "2026-01-01T00:00:10Z");
        assert_eq!(woke(watcher::Event::Apply(heartbeat)), None, "a heartbeat");
        let relabelled = node(json!({"mirror": "off"}), "2026-01-01T00:00:20Z");
        assert_eq!(woke(watcher::Event::Apply(relabelled.clone())), Some(1));
        let mut tainted = relabelled.clone();
        tainted.spec = serde_json::from_value(
            json!({"taints": [{"key": nodes::AUTOSCALER_TAINT, "effect": "NoSchedule"}]}),
        )
        .ok();
        assert_eq!(woke(watcher::Event::Apply(tainted.clone())), Some(1));
        assert_eq!(woke(watcher::Event::Delete(tainted)), Some(1));
        assert_eq!(woke(watcher::Event::InitDone), None);
    }
}
