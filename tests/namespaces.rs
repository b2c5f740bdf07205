//! `ProviderConfig.spec.namespaceSelector` end to end: a real kube-apiserver + etcd, the emulator,
//! and the operator binary as a child process. Objects in a namespace the selector does not match
//! get `Ready=False`, reason `ProviderConfigNotAllowed`, one event naming the ProviderConfig, the
//! namespace and the selector, and make no cloud call; relabelling the namespace lets them converge
//! (and the reverse refuses them again) with the operator running, faster than any requeue would;
//! a deletion after the selector changed completes without a cloud call with `deletionPolicy:
//! Orphan`, and with `Delete` waits, saying how to get out, until the namespace is labelled to
//! match. Every wait polls with a deadline.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use traffic_mirror_operator::api::{ProviderConfig, TrafficMirrorFilter, TrafficMirrorSession};
use traffic_mirror_operator::cloud::models::ListSessionsQuery;

use support::Env;

/// The label the tests' selectors ask the namespace for (its value is the namespace's own name, so
/// no two tests on the shared control plane ever match each other's namespaces).
const LABEL: &str = "tmo-test/mirror";
/// How long a refused object may wait to look again on its own (`DEPENDENCY_POLL`): a relabel
/// must take effect well before, through the Namespace watch.
const REQUEUE: Duration = Duration::from_secs(30);

/// A filter with one rule, using the env's ProviderConfig.
async fn apply_filter(env: &Env, name: &str) {
    env.create::<TrafficMirrorFilter>(json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1", "kind": "TrafficMirrorFilter",
        "metadata": {"name": name},
        "spec": {
            "rules": [{"direction": "ingress", "priority": 10, "protocol": "TCP",
                       "ethertype": "IPv4", "action": "accept", "sourceCidrBlock": "10.0.0.0/8"}],
            "providerConfigRef": {"name": env.account.pc},
        },
    }))
    .await;
}

/// A session of the env's cloud filter, using the env's ProviderConfig, with `deletion_policy`.
async fn apply_session(env: &Env, name: &str, deletion_policy: &str) {
    env.create::<TrafficMirrorSession>(json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1", "kind": "TrafficMirrorSession",
        "metadata": {"name": name},
        "spec": {
            "trafficMirrorFilterId": env.account.filter_id,
            "trafficMirrorSources": ["eni-a"],
            "trafficMirrorTargetId": "eni-target",
            "trafficMirrorTargetType": "eni",
            "priority": 10,
            "deletionPolicy": deletion_policy,
            "providerConfigRef": {"name": env.account.pc},
        },
    }))
    .await;
}

/// Sets the env's ProviderConfig's `spec.namespaceSelector` (`null` removes it).
async fn set_selector(env: &Env, selector: Value) {
    let patch = json!({"spec": {"namespaceSelector": selector}});
    env.pcs()
        .patch(
            &env.account.pc,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("patch the ProviderConfig's namespaceSelector");
}

/// The selector matching only the env's namespace once it carries [`LABEL`].
fn only_this_namespace(env: &Env) -> Value {
    json!({"matchLabels": {LABEL: env.ns}})
}

/// Sets (`Some`) or removes (`None`) [`LABEL`] on the env's namespace.
async fn label_namespace(env: &Env, value: Option<&str>) {
    let patch = json!({"metadata": {"labels": {LABEL: value}}});
    Api::<Namespace>::all(env.client.clone())
        .patch(&env.ns, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("label the namespace");
}

/// Every call the emulator saw is an account-wide LIST (the ProviderConfig's credential check and
/// the resync): none is about an object (no write, no GET by id, no search by name).
fn only_account_lists(calls: &[Value]) -> bool {
    calls.iter().all(|c| {
        let path = c["path"].as_str().unwrap_or_default();
        c["method"] == "GET"
            && (path.ends_with("/traffic-mirror-sessions")
                || path.ends_with("/traffic-mirror-filters"))
            && !c["query"].as_str().unwrap_or_default().contains("name=")
    })
}

/// Waits until `name` of kind `K` is refused, for its current generation.
async fn wait_refused<K: support::env::Conditioned>(env: &Env, name: &str) -> K {
    env.wait_condition::<K>(name, "Ready", "False", Some("ProviderConfigNotAllowed"))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_outside_the_selector_is_refused_until_relabelled_without_a_restart() {
    let env = Env::builder("ns-fence")
        .resync("5m") // nothing but the watches brings a refused object back before REQUEUE
        .build()
        .await;
    set_selector(&env, only_this_namespace(&env)).await;
    let mut env = env;
    env.start_operator();
    apply_filter(&env, "f").await;
    apply_session(&env, "s", "Delete").await;

    // Refused: the condition and one event name the ProviderConfig, the namespace and the selector.
    let pc = env.account.pc.clone();
    let selector = format!("{LABEL}={}", env.ns);
    let parts = [pc.as_str(), env.ns.as_str(), selector.as_str()];
    env.wait_message::<TrafficMirrorFilter>("f", "ProviderConfigNotAllowed", &parts)
        .await;
    let s: TrafficMirrorSession = wait_refused(&env, "s").await;
    let stalled = s.status.as_ref().and_then(|st| {
        st.conditions
            .iter()
            .find(|c| c.type_ == "Stalled" && c.status == "True")
    });
    assert!(stalled.is_some(), "a person must act: Stalled {s:?}");
    let event = env
        .wait_event(&env.ns, "s", "ProviderConfigNotAllowed")
        .await;
    let note = event.note.clone().unwrap_or_default();
    for part in parts {
        assert!(note.contains(part), "event note lacks {part:?}: {note}");
    }
    assert_eq!(event.type_.as_deref(), Some("Warning"), "{event:?}");
    // One per occurrence: the filter's refusal is its own event, the session's is told once.
    let told = env.events_about(&env.ns, "s").await;
    let refusals = told
        .iter()
        .filter(|e| e.reason.as_deref() == Some("ProviderConfigNotAllowed"))
        .count();
    assert_eq!(refusals, 1, "{told:#?}");
    env.wait_event(&env.ns, "f", "ProviderConfigNotAllowed")
        .await;
    let calls = env.calls().await;
    assert!(
        only_account_lists(&calls),
        "a refused object called the cloud: {calls:#?}"
    );

    // Relabelled: both converge, through the Namespace watch (well before any requeue).
    let relabelled = Instant::now();
    label_namespace(&env, Some(&env.ns.clone())).await;
    env.wait_ready::<TrafficMirrorFilter>("f").await;
    env.wait_ready::<TrafficMirrorSession>("s").await;
    let took = relabelled.elapsed();
    assert!(
        took < REQUEUE / 2,
        "the relabel took {took:?} to take effect"
    );

    // The reverse: the label removed, the objects are refused again and new ones too, without a
    // cloud call.
    label_namespace(&env, None).await;
    wait_refused::<TrafficMirrorSession>(&env, "s").await;
    wait_refused::<TrafficMirrorFilter>(&env, "f").await;
    env.clear_calls().await;
    apply_session(&env, "late", "Delete").await;
    wait_refused::<TrafficMirrorSession>(&env, "late").await;
    let calls = env.calls().await;
    assert!(
        only_account_lists(&calls),
        "refused objects called the cloud: {calls:#?}"
    );
    assert!(
        env.op.as_mut().is_some_and(|op| !op.exited()),
        "the operator kept running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selector_change_refuses_at_once_and_deletion_keeps_its_ways_out() {
    let env = Env::builder("ns-fence-delete")
        .resync("5m")
        .with_operator()
        .build()
        .await;
    apply_session(&env, "keep", "Orphan").await;
    apply_session(&env, "remove", "Delete").await;
    let id_of = |s: &TrafficMirrorSession| s.status.as_ref().and_then(|st| st.session_id.clone());
    let keep = id_of(&env.wait_ready("keep").await).expect("keep has a cloud id");
    let remove = id_of(&env.wait_ready("remove").await).expect("remove has a cloud id");

    // The selector now shuts this namespace out: the running objects are refused at once.
    let changed = Instant::now();
    set_selector(&env, only_this_namespace(&env)).await;
    wait_refused::<TrafficMirrorSession>(&env, "keep").await;
    wait_refused::<TrafficMirrorSession>(&env, "remove").await;
    let took = changed.elapsed();
    assert!(
        took < REQUEUE / 2,
        "the selector change took {took:?} to take effect"
    );
    env.clear_calls().await;

    // Orphan: the deletion completes without a cloud call; the cloud session stays.
    env.delete::<TrafficMirrorSession>("keep").await;
    env.wait_gone::<TrafficMirrorSession>("keep").await;
    // Delete: the deletion waits, saying why and how to get out; nothing is deleted in the cloud.
    env.delete::<TrafficMirrorSession>("remove").await;
    let ways_out = [
        "label the namespace to match",
        "spec.deletionPolicy: Orphan",
    ];
    env.wait_message::<TrafficMirrorSession>("remove", "ProviderConfigNotAllowed", &ways_out)
        .await;
    let calls = env.calls().await;
    assert!(
        only_account_lists(&calls),
        "a refused deletion called the cloud: {calls:#?}"
    );
    let listed = |id: String| {
        let cloud = env.cloud.clone();
        async move {
            let all = cloud
                .list_all_sessions(ListSessionsQuery::default())
                .await
                .expect("list cloud sessions");
            all.iter().any(|s| s.id == id)
        }
    };
    assert!(
        listed(keep.clone()).await,
        "Orphan left {keep} in the cloud"
    );
    assert!(
        listed(remove.clone()).await,
        "the waiting deletion kept {remove}"
    );

    // The namespace labelled to match: the deletion goes through and deletes the cloud session.
    label_namespace(&env, Some(&env.ns.clone())).await;
    env.wait_gone::<TrafficMirrorSession>("remove").await;
    assert!(
        !listed(remove.clone()).await,
        "{remove} deleted in the cloud"
    );
    assert!(listed(keep.clone()).await, "{keep} still left alone");
    let pc: ProviderConfig = env.pcs().get(&env.account.pc).await.expect("get pc");
    assert!(pc.spec.namespace_selector.is_some());
}
