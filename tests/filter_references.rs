//! TrafficMirrorFilter deletion against sessions the operator cannot see yet: a real kube-apiserver
//! and etcd, the emulator, and the operator binary as a child process. Every wait polls with a
//! deadline; intervals are proven by counting the resync LISTs in the emulator's call log.

mod support;

use support::{Conditioned, Env};

use std::time::Duration;

use kube::api::DeleteParams;
use serde_json::{Value, json};
use traffic_mirror_operator::api::TrafficMirrorFilter;
use traffic_mirror_operator::cloud::models::{CreateSessionRequest, TrafficMirrorSession};

const WAIT: Duration = Duration::from_secs(60);
/// Short enough for the test to span a few intervals, long enough that a status written right
/// after the refusal is seen before the next LIST replaces it.
const RESYNC: &str = "3s";

async fn apply_filter(env: &Env, name: &str) {
    env.create::<TrafficMirrorFilter>(json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1", "kind": "TrafficMirrorFilter",
        "metadata": {"name": name},
        "spec": {
            "rules": [{"direction": "ingress", "priority": 10, "protocol": "TCP",
                       "ethertype": "IPv4", "action": "accept"}],
            "providerConfigRef": {"name": env.account.pc},
        },
    }))
    .await;
}

/// The filter's Ready condition once `accept(reason, message)` holds for it.
async fn wait_ready_condition<'a>(
    env: &'a Env,
    name: &'a str,
    accept: impl Fn(&str, &str) -> bool + 'a,
) -> (String, String) {
    let f: TrafficMirrorFilter = env
        .wait_until(name, move |o: &TrafficMirrorFilter| {
            o.condition("Ready")
                .is_some_and(|c| accept(&c.reason, &c.message))
        })
        .await;
    let c = f.condition("Ready").expect("Ready");
    (c.reason.clone(), c.message.clone())
}

/// The resync LISTs of sessions so far (page size 500; the credential check asks for 1).
async fn session_lists(env: &Env) -> usize {
    env.calls()
        .await
        .iter()
        .filter(|c| {
            c["method"] == "GET"
                && path(c).ends_with("/traffic-mirror-sessions")
                && c["query"].as_str().is_some_and(|q| q.contains("limit=500"))
        })
        .count()
}

/// Waits until the emulator has seen `n` more resync LISTs of sessions than `from`.
async fn wait_session_lists(env: &Env, from: usize, n: usize) -> usize {
    support::wait_for(WAIT, || async {
        let now = session_lists(env).await;
        (now >= from + n).then_some(now)
    })
    .await
}

async fn filter_deletes(env: &Env, id: &str) -> usize {
    let suffix = format!("/traffic-mirror-filters/{id}");
    env.calls()
        .await
        .iter()
        .filter(|c| c["method"] == "DELETE" && path(c).ends_with(&suffix))
        .count()
}

/// A cloud session made directly in the emulator (no object), using filter `filter_id`.
async fn cloud_session(env: &Env, filter_id: &str) -> TrafficMirrorSession {
    let req = CreateSessionRequest {
        name: "made-elsewhere".into(),
        description: None,
        traffic_mirror_filter_id: filter_id.into(),
        traffic_mirror_sources: vec!["eni-a".into()],
        traffic_mirror_target_id: "eni-target".into(),
        traffic_mirror_target_type: "eni".into(),
        virtual_network_id: None,
        packet_length: None,
        priority: 10,
        enabled: Some(true),
        source_type: None,
    };
    env.cloud
        .create_session(&req)
        .await
        .expect("create cloud session")
}

fn path(call: &Value) -> &str {
    call["path"].as_str().unwrap_or("")
}

#[tokio::test]
async fn a_delete_the_cloud_refuses_waits_for_the_next_list_not_a_retry_loop() {
    let env = Env::builder("flt-refused")
        .resync(RESYNC)
        .keep_setup_calls()
        .build()
        .await;
    let op = env.operator();
    apply_filter(&env, "web").await;
    wait_ready_condition(&env, "web", |r, _| r == "Available").await;
    let id = env
        .filters()
        .get("web")
        .await
        .expect("get")
        .status
        .and_then(|s| s.filter_id)
        .expect("status.filterId");
    // Right after a resync LIST, so the snapshot cannot know the session before the DELETE.
    env.emu().clear_calls().await;
    wait_session_lists(&env, 0, 1).await;
    let session = cloud_session(&env, &id).await;
    env.filters()
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete filter object");
    let (_, refused) =
        wait_ready_condition(&env, "web", |r, m| r == "InUse" && m.contains("VPC.1103")).await;
    assert!(
        refused.contains(&session.id),
        "the cloud's message names the session: {refused}"
    );
    // A couple of resync intervals later: the LIST shows the session, and the DELETE is not retried.
    let lists = session_lists(&env).await;
    wait_session_lists(&env, lists, 2).await;
    let (_, waiting) =
        wait_ready_condition(&env, "web", |r, m| r == "InUse" && m.contains(&session.id)).await;
    assert!(waiting.contains("made-elsewhere"), "{waiting}");
    let deletes = filter_deletes(&env, &id).await;
    assert!(
        (1..=2).contains(&deletes),
        "at most a few DELETEs while in use, got {deletes}; log:\n{}",
        op.logs()
    );
    // The session goes (outside Kubernetes): the deletion finishes at the next LIST.
    env.cloud
        .delete_session(&session.id)
        .await
        .expect("delete cloud session");
    env.wait_gone::<TrafficMirrorFilter>("web").await;
    let gone = env.cloud.show_filter(&id).await;
    assert!(
        gone.as_ref().is_err_and(|e| e.is_not_found()),
        "the cloud filter is gone: {gone:?}"
    );
    let deletes = filter_deletes(&env, &id).await;
    assert!(
        deletes <= 3,
        "one refused DELETE (maybe two), then the one that succeeded: {deletes}"
    );
}
