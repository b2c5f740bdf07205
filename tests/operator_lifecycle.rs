//! The operator end to end: a real kube-apiserver + etcd, the emulator, and the operator binary as a
//! child process (so crash tests can kill it for real). Every test has its own namespace, emulator,
//! ProviderConfig and operator instance; all waits poll with deadlines.

mod support;

use support::Env;
use support::env::{SESSIONS, resync_lists};

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use traffic_mirror_operator::api::{ProviderConfig, TrafficMirrorSession};
use traffic_mirror_operator::cloud::models::{
    CreateFilterRequest, CreateSessionRequest, ListSessionsQuery,
    TrafficMirrorSession as CloudSession, UpdateSessionRequest,
};

use support::operator::{PROJECT, SK};
const WAIT: Duration = Duration::from_secs(60);
const RESYNC: &str = "2s";

/// A create request for a session made outside the operator (sources eni-a, eni-b).
fn out_of_band(env: &Env, name: &str, target: &str, priority: i64) -> CreateSessionRequest {
    CreateSessionRequest {
        name: name.into(),
        description: None,
        traffic_mirror_filter_id: env.account.filter_id.clone(),
        traffic_mirror_sources: vec!["eni-a".into(), "eni-b".into()],
        traffic_mirror_target_id: target.into(),
        traffic_mirror_target_type: "eni".into(),
        virtual_network_id: None,
        packet_length: None,
        priority,
        enabled: None,
        source_type: None,
    }
}

fn manifest(env: &Env, name: &str, extra: Value) -> Value {
    let mut spec = json!({
        "trafficMirrorFilterId": env.account.filter_id,
        "trafficMirrorSources": ["eni-a", "eni-b"],
        "trafficMirrorTargetId": "eni-target",
        "trafficMirrorTargetType": "eni",
        "priority": 10,
        "providerConfigRef": {"name": env.account.pc},
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1",
        "kind": "TrafficMirrorSession",
        "metadata": {"name": name},
        "spec": spec,
    })
}

async fn apply(env: &Env, name: &str, extra: Value) -> TrafficMirrorSession {
    let obj: TrafficMirrorSession =
        serde_json::from_value(manifest(env, name, extra)).expect("manifest");
    env.sessions()
        .create(&PostParams::default(), &obj)
        .await
        .expect("create session object")
}

async fn patch_spec(env: &Env, name: &str, spec: Value) -> i64 {
    let o = env
        .sessions()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": spec})),
        )
        .await
        .expect("patch spec");
    o.metadata.generation.unwrap_or_default()
}

async fn session_id(env: &Env, name: &str) -> String {
    env.sessions()
        .get(name)
        .await
        .expect("get")
        .status
        .and_then(|s| s.session_id)
        .expect("status.sessionId")
}

async fn cloud_sessions_named(env: &Env, name: &str) -> Vec<CloudSession> {
    env.cloud
        .list_all_sessions(ListSessionsQuery {
            name: Some(name.into()),
            ..Default::default()
        })
        .await
        .expect("list")
}

async fn all_cloud_sessions(env: &Env) -> Vec<CloudSession> {
    env.cloud
        .list_all_sessions(ListSessionsQuery::default())
        .await
        .expect("list")
}

/// How many POSTs (creates) the emulator has seen since its log was last cleared.
async fn posts(env: &Env) -> usize {
    env.calls()
        .await
        .iter()
        .filter(|c| c["method"] == "POST")
        .count()
}

/// The condition `type_` of the object (panics when it is missing).
fn condition(o: &TrafficMirrorSession, type_: &str) -> Condition {
    o.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .cloned()
        .unwrap_or_else(|| panic!("no {type_} condition on {:?}", o.metadata.name))
}

/// The object's conditions (none without a status).
fn conditions_of(o: &TrafficMirrorSession) -> Vec<Condition> {
    o.status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default()
}

fn is_write(c: &Value) -> bool {
    c["method"] != "GET"
}

fn writes(calls: &[Value]) -> Vec<Value> {
    calls.iter().filter(|c| is_write(c)).cloned().collect()
}

fn body_keys(call: &Value) -> BTreeSet<String> {
    call["body"]["traffic_mirror_session"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn create_reaches_ready_with_at_provider() {
    let env = Env::builder("create").resync(RESYNC).build().await;
    let _op = env.operator();
    apply(&env, "web", json!({"description": "mirror web"})).await;
    let o = env.wait_ready::<TrafficMirrorSession>("web").await;
    let st = o.status.expect("status");
    let at = st.at_provider.expect("atProvider");
    assert_eq!(at.name, "web");
    assert_eq!(at.project_id, PROJECT);
    assert_eq!(at.packet_length, 96);
    assert_eq!(at.virtual_network_id, 1);
    assert!(!at.enabled);
    assert_eq!(at.description, "mirror web");
    assert_eq!(at.source_type, "eni");
    assert_eq!(at.traffic_mirror_sources.len(), 2);
    assert!(!at.created_at.is_empty() && !at.updated_at.is_empty());
    assert!(
        o.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"vpc.hwcloud.dev/cleanup".to_string())
    );
    let posts: Vec<Value> = writes(&env.calls().await);
    assert_eq!(posts.len(), 1, "exactly one write (the create): {posts:#?}");
    assert_eq!(posts[0]["method"], "POST");
    assert_eq!(cloud_sessions_named(&env, "web").await.len(), 1);
    // The create's answer is trusted: no follow-up GET of the new session.
    let id = st.session_id.clone().expect("sessionId");
    let gets = env
        .calls()
        .await
        .into_iter()
        .filter(|c| c["method"] == "GET" && c["path"].as_str().unwrap_or("").ends_with(&id))
        .count();
    assert_eq!(gets, 0, "no GET of the session it just created");
    let synced = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Synced")
        .expect("Synced");
    assert_eq!(synced.status, "True");
}

#[tokio::test]
async fn each_field_changed_alone_is_one_put_with_that_field() {
    let env = Env::builder("fields").resync(RESYNC).build().await;
    let second_filter = env
        .cloud
        .create_filter(&CreateFilterRequest {
            name: "f2".into(),
            description: None,
        })
        .await
        .expect("filter 2")
        .id;
    let _op = env.operator();
    apply(&env, "s", json!({})).await;
    env.wait_ready::<TrafficMirrorSession>("s").await;
    let id = session_id(&env, "s").await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"name": "renamed"}), "name"),
        (json!({"description": "now described"}), "description"),
        (
            json!({"trafficMirrorFilterId": second_filter}),
            "traffic_mirror_filter_id",
        ),
        (
            json!({"trafficMirrorTargetId": "elb-1"}),
            "traffic_mirror_target_id",
        ),
        (
            json!({"trafficMirrorTargetType": "elb"}),
            "traffic_mirror_target_type",
        ),
        (json!({"virtualNetworkId": 4242}), "virtual_network_id"),
        (json!({"packetLength": 1400}), "packet_length"),
        (json!({"priority": 99}), "priority"),
        (json!({"enabled": true}), "enabled"),
    ];
    for (patch, field) in cases {
        env.emu().clear_calls().await;
        patch_spec(&env, "s", patch.clone()).await;
        env.wait_ready::<TrafficMirrorSession>("s").await;
        let w = writes(&env.calls().await);
        assert_eq!(w.len(), 1, "{field}: exactly one write, got {w:#?}");
        assert_eq!(w[0]["method"], "PUT", "{field}");
        assert!(
            w[0]["path"]
                .as_str()
                .unwrap_or("")
                .ends_with(&format!("/traffic-mirror-sessions/{id}")),
            "{field}: {}",
            w[0]["path"]
        );
        assert_eq!(
            body_keys(&w[0]),
            BTreeSet::from([field.to_string()]),
            "{field}"
        );
    }
    let s = env.cloud.show_session(&id).await.expect("show");
    assert_eq!(
        (
            s.name.as_str(),
            s.priority,
            s.packet_length,
            s.virtual_network_id,
            s.enabled
        ),
        ("renamed", 99, 1400, 4242, true)
    );
    assert_eq!(s.traffic_mirror_target_type, "elb");
    assert_eq!(all_cloud_sessions(&env).await.len(), 1);
}

#[tokio::test]
async fn sources_change_with_exactly_the_needed_calls() {
    let env = Env::builder("sources").resync(RESYNC).build().await;
    let _op = env.operator();
    apply(&env, "s", json!({})).await;
    env.wait_ready::<TrafficMirrorSession>("s").await;
    env.emu().clear_calls().await;
    patch_spec(
        &env,
        "s",
        json!({"trafficMirrorSources": ["eni-b", "eni-c", "eni-d"]}),
    )
    .await;
    env.wait_ready::<TrafficMirrorSession>("s").await;
    let w = writes(&env.calls().await);
    assert_eq!(w.len(), 2, "{w:#?}");
    let add = w
        .iter()
        .find(|c| c["path"].as_str().unwrap_or("").ends_with("/add-sources"))
        .expect("add");
    let remove = w
        .iter()
        .find(|c| {
            c["path"]
                .as_str()
                .unwrap_or("")
                .ends_with("/remove-sources")
        })
        .expect("remove");
    assert_eq!(add["method"], "PUT");
    assert_eq!(
        add["body"]["traffic_mirror_session"]["traffic_mirror_sources"],
        json!(["eni-c", "eni-d"])
    );
    assert_eq!(
        remove["body"]["traffic_mirror_session"]["traffic_mirror_sources"],
        json!(["eni-a"])
    );
    let id = session_id(&env, "s").await;
    let s = env.cloud.show_session(&id).await.unwrap();
    let got: BTreeSet<_> = s.traffic_mirror_sources.into_iter().collect();
    assert_eq!(
        got,
        BTreeSet::from(["eni-b".into(), "eni-c".into(), "eni-d".into()])
    );
}

#[tokio::test]
async fn out_of_band_drift_is_corrected_and_steady_state_is_read_only() {
    let env = Env::builder("drift").resync(RESYNC).build().await;
    let _op = env.operator();
    apply(&env, "a", json!({})).await;
    apply(&env, "b", json!({"priority": 20})).await;
    apply(&env, "c", json!({"priority": 30})).await;
    for n in ["a", "b", "c"] {
        env.wait_ready::<TrafficMirrorSession>(n).await;
    }
    // Steady state: over two resync cycles, only unfiltered LISTs; no writes, no per-session GETs.
    env.emu().clear_calls().await;
    env.wait_resyncs(2).await;
    let calls = env.calls().await;
    assert!(
        writes(&calls).is_empty(),
        "no writes at steady state: {calls:#?}"
    );
    assert_eq!(
        resync_lists(&calls, SESSIONS),
        calls.len(),
        "only LISTs at steady state: {calls:#?}"
    );
    assert!(
        calls.iter().all(|c| c["query"] == "limit=500"),
        "one paginated LIST per cycle, no separate credential check: {calls:#?}"
    );

    // Someone edits the session in the console. (The log is cleared first: a resync may correct the
    // first edit before the second one lands.)
    let id = session_id(&env, "a").await;
    env.emu().clear_calls().await;
    env.cloud
        .update_session(
            &id,
            &UpdateSessionRequest {
                priority: Some(777),
                description: Some("edited by hand".into()),
                ..Default::default()
            },
        )
        .await
        .expect("out-of-band edit");
    env.cloud
        .add_sources(&id, &["eni-rogue".to_string()])
        .await
        .expect("rogue source");
    let cloud = env.cloud.clone();
    let id2 = id.clone();
    support::wait_for(WAIT, || {
        let cloud = cloud.clone();
        let id = id2.clone();
        async move {
            let s = cloud.show_session(&id).await.ok()?;
            (s.priority == 10
                && s.description.is_empty()
                && !s.traffic_mirror_sources.contains(&"eni-rogue".to_string()))
            .then_some(())
        }
    })
    .await;
    // The operator's writes: all but the test's own PUT (priority 777) and add-sources.
    let w: Vec<Value> = writes(&env.calls().await)
        .into_iter()
        .filter(|c| {
            c["body"]["traffic_mirror_session"]["priority"] != 777
                && !c["path"].as_str().unwrap_or("").ends_with("/add-sources")
        })
        .collect();
    assert_eq!(w.len(), 2, "one PUT and one remove-sources: {w:#?}");
    assert!(
        w.iter().any(|c| c["path"]
            .as_str()
            .unwrap_or("")
            .ends_with("/remove-sources")),
        "{w:#?}"
    );
    let put = w
        .iter()
        .find(|c| c["path"].as_str().unwrap_or("").ends_with(&id))
        .expect("PUT");
    assert_eq!(
        body_keys(put),
        BTreeSet::from(["priority".to_string(), "description".to_string()])
    );
}

#[tokio::test]
async fn delete_policies() {
    let env = Env::builder("delete").resync(RESYNC).build().await;
    let _op = env.operator();
    apply(&env, "gone", json!({})).await;
    apply(&env, "kept", json!({"deletionPolicy": "Orphan"})).await;
    env.wait_ready::<TrafficMirrorSession>("gone").await;
    env.wait_ready::<TrafficMirrorSession>("kept").await;
    let gone_id = session_id(&env, "gone").await;
    let kept_id = session_id(&env, "kept").await;
    env.delete::<TrafficMirrorSession>("gone").await;
    env.delete::<TrafficMirrorSession>("kept").await;
    env.wait_gone::<TrafficMirrorSession>("gone").await;
    env.wait_gone::<TrafficMirrorSession>("kept").await;
    let err = env
        .cloud
        .show_session(&gone_id)
        .await
        .expect_err("deleted in the cloud");
    assert!(err.is_not_found(), "{err}");
    env.cloud
        .show_session(&kept_id)
        .await
        .expect("orphaned session still exists");
}

#[tokio::test]
async fn adoption_and_observe_only() {
    let env = Env::builder("adopt").resync(RESYNC).build().await;
    let existing = |name: &str, priority: i64| out_of_band(&env, name, "eni-target", priority);
    let adopted = env
        .cloud
        .create_session(&existing("legacy", 55))
        .await
        .unwrap();
    let observed = env
        .cloud
        .create_session(&existing("watched", 66))
        .await
        .unwrap();
    env.emu().clear_calls().await;
    let _op = env.operator();
    apply(
        &env,
        "legacy",
        json!({"sessionId": adopted.id, "priority": 10}),
    )
    .await;
    apply(
        &env,
        "watched",
        json!({"sessionId": observed.id, "priority": 10, "managementPolicy": "ObserveOnly"}),
    )
    .await;
    // Adopted: converged to the spec with one PUT, no create.
    env.wait_ready::<TrafficMirrorSession>("legacy").await;
    assert_eq!(
        env.cloud.show_session(&adopted.id).await.unwrap().priority,
        10
    );
    // ObserveOnly: reports the difference, never writes.
    let o = env
        .wait_condition::<TrafficMirrorSession>("watched", "Ready", "False", Some("Drifted"))
        .await;
    let ready = condition(&o, "Ready");
    assert_eq!(ready.reason, "Drifted");
    assert!(ready.message.contains("priority"), "{}", ready.message);
    // kstatus (Flux): stuck until someone acts, so Stalled (and not Reconciling).
    assert_eq!(condition(&o, "Stalled").reason, "Drifted");
    assert!(conditions_of(&o).iter().all(|c| c.type_ != "Reconciling"));
    assert_eq!(o.status.unwrap().at_provider.unwrap().priority, 66);
    env.delete::<TrafficMirrorSession>("watched").await;
    env.wait_gone::<TrafficMirrorSession>("watched").await;
    let w = writes(&env.calls().await);
    assert!(
        w.iter()
            .all(|c| !c["path"].as_str().unwrap_or("").contains(&observed.id)),
        "{w:#?}"
    );
    assert!(w.iter().all(|c| c["method"] != "POST"), "no create: {w:#?}");
    assert_eq!(
        env.cloud.show_session(&observed.id).await.unwrap().priority,
        66
    );
    assert_eq!(all_cloud_sessions(&env).await.len(), 2);
}

#[tokio::test]
async fn retryable_bursts_converge_with_bounded_calls() {
    let env = Env::builder("faults").resync(RESYNC).build().await;
    env.emu()
        .fault(json!({"method": "POST", "path_contains": "traffic-mirror-sessions", "status": 500, "times": 2}))
        .await;
    env.emu()
        .fault(json!({"method": "POST", "path_contains": "traffic-mirror-sessions", "status": 503, "times": 1}))
        .await;
    env.emu()
        .fault(
            json!({"method": "POST", "path_contains": "traffic-mirror-sessions", "status": 429,
                      "error_code": "APIGW.0308", "times": 1, "retry_after_s": 1}),
        )
        .await;
    let _op = env.operator();
    apply(&env, "s", json!({})).await;
    env.wait_ready::<TrafficMirrorSession>("s").await;
    let posts = posts(&env).await;
    assert_eq!(posts, 5, "4 failed attempts then one success");
    assert_eq!(all_cloud_sessions(&env).await.len(), 1);
}

#[tokio::test]
async fn a_delete_the_cloud_refuses_names_the_orphan_way_out_which_releases() {
    let env = Env::builder("del-refused").resync(RESYNC).build().await;
    let _op = env.operator();
    apply(&env, "s", json!({})).await;
    env.wait_ready::<TrafficMirrorSession>("s").await;
    env.emu()
        .fault(
            json!({"method": "DELETE", "path_contains": "traffic-mirror-sessions", "status": 400,
                      "error_code": "VPC.0002", "times": 100}),
        )
        .await;
    env.delete::<TrafficMirrorSession>("s").await;
    let o = env
        .wait_condition::<TrafficMirrorSession>("s", "Ready", "False", Some("Deleting"))
        .await;
    let ready = condition(&o, "Ready");
    for part in [
        "Deleting the cloud session failed: VPC.0002 (400)",
        "deletionPolicy: Orphan",
    ] {
        assert!(ready.message.contains(part), "{part}: {}", ready.message);
    }
    assert!(
        !ready.message.contains("after the next spec change"),
        "{}",
        ready.message
    );
    // The way out it names works: the object goes, the cloud session stays.
    patch_spec(&env, "s", json!({"deletionPolicy": "Orphan"})).await;
    env.wait_gone::<TrafficMirrorSession>("s").await;
    assert_eq!(all_cloud_sessions(&env).await.len(), 1);
}

#[tokio::test]
async fn cloud_rejection_is_terminal_until_the_spec_changes() {
    let env = Env::builder("reject").resync(RESYNC).build().await;
    env.emu()
        .fault(
            json!({"method": "POST", "path_contains": "traffic-mirror-sessions", "status": 400,
                      "error_code": "VPC.0002", "times": 1}),
        )
        .await;
    let _op = env.operator();
    apply(&env, "s", json!({})).await;
    let o = env
        .wait_condition::<TrafficMirrorSession>("s", "Synced", "False", Some("VPC_0002"))
        .await;
    let synced = condition(&o, "Synced");
    assert_eq!(synced.reason, "VPC_0002");
    assert!(synced.message.contains("VPC.0002"), "{}", synced.message);
    // One Warning, one sentence: the step, the cloud's code and status, no debug dump.
    let warning = env.wait_event(&env.ns, "s", "VPC_0002").await;
    let note = warning.note.unwrap_or_default();
    assert!(
        note.starts_with("Creating the cloud session failed: VPC.0002 (400)"),
        "{note}"
    );
    assert_readable(&note);
    // Two full resync cycles later: still exactly one POST.
    env.wait_resyncs(2).await;
    let posts = posts(&env).await;
    assert_eq!(posts, 1, "no retry storm after a terminal error");
    // A spec change is a new attempt.
    patch_spec(&env, "s", json!({"priority": 11})).await;
    env.wait_ready::<TrafficMirrorSession>("s").await;
    assert_eq!(all_cloud_sessions(&env).await.len(), 1);
}

#[tokio::test]
async fn bad_credentials_make_the_provider_not_ready() {
    let env = Env::builder("badcreds").resync(RESYNC).build().await;
    env.account.apply_provider("wrong-secret").await;
    let _op = env.operator();
    apply(&env, "s", json!({})).await;
    let pcs: Api<ProviderConfig> = Api::all(env.client.clone());
    let pc = support::wait_for(WAIT, || {
        let pcs = pcs.clone();
        let name = env.account.pc.clone();
        async move {
            let pc = pcs.get(&name).await.ok()?;
            let c = pc
                .status
                .as_ref()?
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")?
                .clone();
            (c.status == "False").then_some(c)
        }
    })
    .await;
    assert!(pc.reason.starts_with("APIGW"), "{pc:?}");
    // The ProviderConfig (cluster-scoped, so its events are in `default`) tells it in one Warning
    // carrying the cloud's code and HTTP status.
    let warning = env.wait_event("default", &env.account.pc, &pc.reason).await;
    let note = warning.note.unwrap_or_default();
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    assert!(note.contains("(401)") && note.contains("APIGW."), "{note}");
    assert_readable(&note);
    let o = env
        .wait_condition::<TrafficMirrorSession>(
            "s",
            "Ready",
            "False",
            Some("ProviderConfigNotReady"),
        )
        .await;
    let r = condition(&o, "Ready");
    assert!(r.message.contains(&env.account.pc), "{}", r.message);
    assert!(all_cloud_sessions(&env).await.is_empty());
    // Fixing the Secret makes everything converge, and the ProviderConfig says it is valid again.
    env.account.apply_provider(SK).await;
    env.wait_ready::<TrafficMirrorSession>("s").await;
    env.wait_event("default", &env.account.pc, "CredentialsValid")
        .await;
}

/// A note people read: no debug dump of an answer.
fn assert_readable(note: &str) {
    for dump in ["{", "Some(", "Status {", "ApiError"] {
        assert!(!note.contains(dump), "{dump:?} in the note: {note}");
    }
}

/// Kills the operator at a failpoint during create, restarts it, and checks the final state.
async fn crash_during_create(failpoint: &str) {
    let env = Env::builder("crash-create").resync(RESYNC).build().await;
    let mut op = env.operator_with(Some(failpoint));
    apply(&env, "s", json!({})).await;
    env.wait_crash(&mut op).await;
    drop(op);
    let op = env.operator();
    let o = env.wait_ready::<TrafficMirrorSession>("s").await;
    let sessions = all_cloud_sessions(&env).await;
    assert_eq!(
        sessions.len(),
        1,
        "{failpoint}: exactly one cloud session; operator log:\n{}",
        op.logs()
    );
    assert_eq!(
        o.status.unwrap().session_id.as_deref(),
        Some(sessions[0].id.as_str())
    );
}

#[tokio::test]
async fn crash_before_create_call() {
    crash_during_create("session-create-before").await;
}

#[tokio::test]
async fn crash_after_create_call_before_recording() {
    crash_during_create("session-create-after").await;
}

#[tokio::test]
async fn crash_after_recording_the_id() {
    crash_during_create("session-record-after").await;
}

#[tokio::test]
async fn crash_during_update_and_delete() {
    let env = Env::builder("crash-update").resync(RESYNC).build().await;
    let op = env.operator();
    apply(&env, "s", json!({})).await;
    env.wait_ready::<TrafficMirrorSession>("s").await;
    let id = session_id(&env, "s").await;
    drop(op);

    // Update: the PUT lands, the process dies before the status write.
    let mut op = env.operator_with(Some("session-update-after"));
    patch_spec(&env, "s", json!({"priority": 123})).await;
    env.wait_crash(&mut op).await;
    drop(op);
    let mut op = env.operator_with(Some("session-sources-after"));
    patch_spec(
        &env,
        "s",
        json!({"trafficMirrorSources": ["eni-a", "eni-z"]}),
    )
    .await;
    env.wait_crash(&mut op).await;
    drop(op);
    let op = env.operator();
    env.wait_ready::<TrafficMirrorSession>("s").await;
    let s = env.cloud.show_session(&id).await.unwrap();
    assert_eq!(s.priority, 123);
    let got: BTreeSet<_> = s.traffic_mirror_sources.into_iter().collect();
    assert_eq!(
        got,
        BTreeSet::from(["eni-a".to_string(), "eni-z".to_string()])
    );
    assert_eq!(all_cloud_sessions(&env).await.len(), 1);
    drop(op);

    // Delete: the DELETE lands, the process dies before the finalizer goes.
    let mut op = env.operator_with(Some("session-delete-after"));
    env.delete::<TrafficMirrorSession>("s").await;
    env.wait_crash(&mut op).await;
    drop(op);
    let _op = env.operator();
    env.wait_gone::<TrafficMirrorSession>("s").await;
    assert!(all_cloud_sessions(&env).await.is_empty());
}

#[tokio::test]
async fn name_conflict_is_never_taken_over() {
    let env = Env::builder("conflict").resync(RESYNC).build().await;
    env.cloud
        .create_session(&out_of_band(&env, "taken", "eni-other", 5))
        .await
        .unwrap();
    let _op = env.operator();
    apply(&env, "taken", json!({})).await;
    let o = env
        .wait_condition::<TrafficMirrorSession>("taken", "Ready", "False", Some("NameConflict"))
        .await;
    let r = condition(&o, "Ready");
    assert_eq!(r.reason, "NameConflict", "{r:?}");
    assert_eq!(condition(&o, "Stalled").reason, "NameConflict");
    assert_eq!(all_cloud_sessions(&env).await.len(), 1);
    assert_eq!(
        all_cloud_sessions(&env).await[0].traffic_mirror_target_id,
        "eni-other"
    );
}

#[tokio::test]
async fn a_create_whose_answer_is_lost_is_adopted_not_duplicated() {
    let env = Env::builder("lost-answer").resync(RESYNC).build().await;
    // The POST really creates the session, then the connection drops before the answer.
    env.emu()
        .fault(
            json!({"method": "POST", "path_contains": "traffic-mirror-sessions",
                      "drop_connection": true, "execute": true, "times": 1}),
        )
        .await;
    let _op = env.operator();
    apply(&env, "s", json!({})).await;
    let o = env.wait_ready::<TrafficMirrorSession>("s").await;
    let sessions = all_cloud_sessions(&env).await;
    assert_eq!(sessions.len(), 1, "exactly one cloud session");
    assert_eq!(
        o.status.unwrap().session_id.as_deref(),
        Some(sessions[0].id.as_str())
    );
    let posts = posts(&env).await;
    assert_eq!(posts, 1, "the lost create is found, not repeated");
}

#[tokio::test]
async fn deleting_the_provider_config_stops_cloud_calls() {
    let env = Env::builder("pc-delete").resync(RESYNC).build().await;
    let _op = env.operator();
    apply(&env, "s", json!({})).await;
    env.wait_ready::<TrafficMirrorSession>("s").await;
    let pcs: Api<ProviderConfig> = Api::all(env.client.clone());
    pcs.delete(&env.account.pc, &DeleteParams::default())
        .await
        .expect("delete pc");
    // A ProviderConfig in use waits for its users (tests/provider_config.rs has the details): the
    // session's deletion still deletes the cloud session, then the ProviderConfig goes.
    env.delete::<TrafficMirrorSession>("s").await;
    env.wait_gone::<TrafficMirrorSession>("s").await;
    assert!(all_cloud_sessions(&env).await.is_empty());
    support::wait_for(WAIT, || async {
        matches!(pcs.get_opt(&env.account.pc).await, Ok(None)).then_some(())
    })
    .await;
    // Once it is gone, a session naming it waits and the account sees no call at all (no session
    // call, no resync LIST).
    apply(&env, "t", json!({})).await;
    env.wait_condition::<TrafficMirrorSession>(
        "t",
        "Ready",
        "False",
        Some("ProviderConfigNotReady"),
    )
    .await;
    env.emu().clear_calls().await;
    patch_spec(&env, "t", json!({"priority": 12})).await;
    env.wait_condition::<TrafficMirrorSession>(
        "t",
        "Synced",
        "False",
        Some("ProviderConfigNotReady"),
    )
    .await;
    assert!(
        env.calls().await.is_empty(),
        "no cloud call without a ProviderConfig"
    );
}

#[tokio::test]
async fn a_session_deleted_out_of_band_is_created_again() {
    let env = Env::builder("vanished").resync(RESYNC).build().await;
    let _op = env.operator();
    apply(&env, "s", json!({})).await;
    env.wait_ready::<TrafficMirrorSession>("s").await;
    let old = session_id(&env, "s").await;
    env.cloud
        .delete_session(&old)
        .await
        .expect("delete out of band");
    let api = env.sessions();
    let new = support::wait_for(WAIT, || {
        let api = api.clone();
        let old = old.clone();
        async move {
            let o = api.get("s").await.ok()?;
            let id = o.status?.session_id?;
            (id != old).then_some(id)
        }
    })
    .await;
    env.wait_ready::<TrafficMirrorSession>("s").await;
    let sessions = all_cloud_sessions(&env).await;
    assert_eq!(sessions.len(), 1, "exactly one session again");
    assert_eq!(sessions[0].id, new);
}

#[tokio::test]
async fn a_session_whose_provider_config_never_existed_is_deleted_at_once() {
    let env = Env::builder("typo-pc").resync(RESYNC).build().await;
    let _op = env.operator();
    apply(
        &env,
        "s",
        json!({"providerConfigRef": {"name": "no-such-provider-config"}}),
    )
    .await;
    env.wait_condition::<TrafficMirrorSession>(
        "s",
        "Ready",
        "False",
        Some("ProviderConfigNotReady"),
    )
    .await;
    env.delete::<TrafficMirrorSession>("s").await;
    env.wait_gone::<TrafficMirrorSession>("s").await;
    assert_eq!(posts(&env).await, 0, "nothing was ever created");
}

#[tokio::test]
async fn deleting_without_a_ready_provider_says_how_to_get_out_and_orphan_releases() {
    let env = Env::builder("del-notready").resync(RESYNC).build().await;
    let _op = env.operator();
    apply(&env, "s", json!({})).await;
    env.wait_ready::<TrafficMirrorSession>("s").await;
    let id = session_id(&env, "s").await;
    // The credentials stop working: the ProviderConfig is no longer Ready.
    env.account.apply_provider("wrong-secret").await;
    env.wait_condition::<TrafficMirrorSession>(
        "s",
        "Ready",
        "False",
        Some("ProviderConfigNotReady"),
    )
    .await;
    env.delete::<TrafficMirrorSession>("s").await;
    let c = env
        .wait_message::<TrafficMirrorSession>(
            "s",
            "ProviderConfigNotReady",
            &["restore the ProviderConfig", "deletionPolicy: Orphan"],
        )
        .await;
    assert_eq!(c.status, "False");
    assert!(
        env.sessions().get_opt("s").await.expect("get").is_some(),
        "the object waits: its cloud session cannot be deleted yet"
    );
    // The way out: leave the cloud session in place.
    patch_spec(&env, "s", json!({"deletionPolicy": "Orphan"})).await;
    env.wait_gone::<TrafficMirrorSession>("s").await;
    env.cloud
        .show_session(&id)
        .await
        .expect("the orphaned session is still in the cloud");
}

#[tokio::test]
async fn deleting_without_a_ready_provider_finishes_once_it_is_restored() {
    let env = Env::builder("del-restore").resync(RESYNC).build().await;
    let _op = env.operator();
    apply(&env, "s", json!({})).await;
    env.wait_ready::<TrafficMirrorSession>("s").await;
    env.account.apply_provider("wrong-secret").await;
    env.wait_condition::<TrafficMirrorSession>(
        "s",
        "Ready",
        "False",
        Some("ProviderConfigNotReady"),
    )
    .await;
    env.delete::<TrafficMirrorSession>("s").await;
    env.wait_message::<TrafficMirrorSession>(
        "s",
        "ProviderConfigNotReady",
        &["deletionPolicy: Orphan"],
    )
    .await;
    env.account.apply_provider(SK).await;
    env.wait_gone::<TrafficMirrorSession>("s").await;
    assert!(
        all_cloud_sessions(&env).await.is_empty(),
        "deleted in the cloud"
    );
}

/// Crashes the operator right after the create call (the intent is recorded, the id is not), then
/// damages the intent annotation the way a bad hand edit would.
async fn interrupted_create_with_a_damaged_intent(env: &Env) {
    let mut op = env.operator_with(Some("session-create-after"));
    apply(env, "s", json!({})).await;
    env.wait_crash(&mut op).await;
    drop(op);
    assert_eq!(all_cloud_sessions(env).await.len(), 1);
    let patch = json!({"metadata": {"annotations": {"vpc.hwcloud.dev/create-intent": "{damaged"}}});
    env.sessions()
        .patch("s", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("damage the intent");
}

#[tokio::test]
async fn a_damaged_intent_is_adopted_not_duplicated() {
    let env = Env::builder("damaged-create").resync(RESYNC).build().await;
    interrupted_create_with_a_damaged_intent(&env).await;
    let op = env.operator();
    let o = env.wait_ready::<TrafficMirrorSession>("s").await;
    let sessions = all_cloud_sessions(&env).await;
    assert_eq!(sessions.len(), 1, "no duplicate; log:\n{}", op.logs());
    assert_eq!(
        o.status.and_then(|s| s.session_id),
        Some(sessions[0].id.clone())
    );
}

#[tokio::test]
async fn a_damaged_intent_never_leaks_the_session_on_delete() {
    let env = Env::builder("damaged-delete").resync(RESYNC).build().await;
    interrupted_create_with_a_damaged_intent(&env).await;
    env.delete::<TrafficMirrorSession>("s").await;
    let op = env.operator();
    env.wait_gone::<TrafficMirrorSession>("s").await;
    assert!(
        all_cloud_sessions(&env).await.is_empty(),
        "the interrupted create's session leaked; log:\n{}",
        op.logs()
    );
}

/// The operator's status write is a server-side apply carrying the resourceVersion it acted on: a
/// decision made on a stale copy must be refused, not land.
#[tokio::test]
async fn a_status_apply_with_a_stale_resource_version_is_refused() {
    let env = Env::builder("stale-status").resync(RESYNC).build().await;
    let first = apply(&env, "s", json!({})).await;
    patch_spec(&env, "s", json!({"priority": 11})).await;
    let body = json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1",
        "kind": "TrafficMirrorSession",
        "metadata": {"name": "s", "resourceVersion": first.metadata.resource_version},
        "status": {"sessionId": "stale"},
    });
    let params = PatchParams::apply("traffic-mirror-operator").force();
    let err = env
        .sessions()
        .patch_status("s", &params, &Patch::Apply(&body))
        .await
        .expect_err("a stale resourceVersion is a conflict");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409),
        "{err}"
    );
}

#[tokio::test]
async fn a_second_object_adopting_a_managed_session_stalls_and_never_writes() {
    let env = Env::builder("adopt-twice").resync(RESYNC).build().await;
    let legacy = env
        .cloud
        .create_session(&out_of_band(&env, "legacy", "eni-target", 55))
        .await
        .expect("create out of band");
    let _op = env.operator();
    apply(
        &env,
        "first",
        json!({"sessionId": legacy.id, "priority": 10}),
    )
    .await;
    env.wait_ready::<TrafficMirrorSession>("first").await;
    env.emu().clear_calls().await;
    apply(
        &env,
        "second",
        json!({"sessionId": legacy.id, "priority": 20}),
    )
    .await;
    let o = env
        .wait_condition::<TrafficMirrorSession>("second", "Ready", "False", Some("AlreadyManaged"))
        .await;
    let ready = condition(&o, "Ready");
    for part in [
        format!("cloud session {}", legacy.id),
        format!("{}/first", env.ns),
        "spec.sessionId".into(),
    ] {
        assert!(ready.message.contains(&part), "{part}: {}", ready.message);
    }
    assert_eq!(condition(&o, "Stalled").reason, "AlreadyManaged");
    env.wait_event(&env.ns, "second", "AlreadyManaged").await;
    // Three resyncs: the older object stays Ready, the cloud sees no write (no PUT 10 / PUT 20).
    env.wait_resyncs(3).await;
    // One event for the stall, not one per resync.
    let told: Vec<Event> = env
        .events_about(&env.ns, "second")
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("AlreadyManaged"))
        .collect();
    assert_eq!(told.len(), 1, "{told:#?}");
    assert!(told[0].series.is_none(), "repeated: {told:#?}");
    assert_eq!(told[0].type_.as_deref(), Some("Warning"));
    let first = env.sessions().get("first").await.expect("get first");
    assert_eq!(condition(&first, "Ready").status, "True");
    let w = writes(&env.calls().await);
    assert!(w.is_empty(), "no flapping writes: {w:#?}");
    assert_eq!(
        env.cloud.show_session(&legacy.id).await.unwrap().priority,
        10
    );
    // Deleting the younger leaves the cloud session (the older one's) alone.
    env.delete::<TrafficMirrorSession>("second").await;
    env.wait_gone::<TrafficMirrorSession>("second").await;
    assert_eq!(
        env.cloud.show_session(&legacy.id).await.unwrap().priority,
        10
    );
    let w = writes(&env.calls().await);
    assert!(w.is_empty(), "no delete of the managed session: {w:#?}");
}

/// A session object that recorded its cloud session keeps it: a later, different `spec.sessionId` is
/// refused at admission (the recorded id is in status), and deleting the object deletes the session it
/// created, never the unknown id (no DELETE of it, no leak).
#[tokio::test]
async fn a_late_session_id_is_refused_and_deletion_deletes_the_created_session() {
    let env = Env::builder("late-id").resync(RESYNC).build().await;
    let _op = env.operator();
    apply(&env, "s", json!({})).await;
    env.wait_ready::<TrafficMirrorSession>("s").await;
    let created = session_id(&env, "s").await;
    let late = json!({"spec": {"sessionId": "33333333-0000-4000-8000-000000000000"}});
    let err = env
        .sessions()
        .patch("s", &PatchParams::default(), &Patch::Merge(&late))
        .await
        .expect_err("a late sessionId naming another session is refused");
    assert!(
        err.to_string()
            .contains("spec.sessionId must equal status.sessionId"),
        "{err}"
    );
    // Setting the id it already manages is fine (pinning it).
    patch_spec(&env, "s", json!({"sessionId": created})).await;
    env.wait_ready::<TrafficMirrorSession>("s").await;
    env.delete::<TrafficMirrorSession>("s").await;
    env.wait_gone::<TrafficMirrorSession>("s").await;
    let err = env.cloud.show_session(&created).await.expect_err("deleted");
    assert!(
        err.is_not_found(),
        "the created session is not leaked: {err}"
    );
    let w = writes(&env.calls().await);
    assert!(
        w.iter()
            .all(|c| !c["path"].as_str().unwrap_or("").contains("33333333")),
        "{w:#?}"
    );
}

/// A second ProviderConfig for the same account (endpoint + project): ids collide across the two, so
/// a second object adopting the managed session through it is `AlreadyManaged` all the same.
async fn same_account_provider(env: &Env) -> String {
    let pcs: Api<ProviderConfig> = Api::all(env.client.clone());
    let mut pc = pcs.get(&env.account.pc).await.expect("get provider config");
    let name = format!("{}-same", env.account.pc);
    pc.metadata = kube::api::ObjectMeta {
        name: Some(name.clone()),
        labels: pc.metadata.labels.clone(),
        ..Default::default()
    };
    pc.status = None;
    pcs.create(&PostParams::default(), &pc)
        .await
        .expect("create the second provider config");
    name
}

#[tokio::test]
async fn two_provider_configs_of_one_account_share_claims_and_the_younger_takes_over_at_once() {
    let env = Env::builder("same-account").resync(RESYNC).build().await;
    let legacy = env
        .cloud
        .create_session(&out_of_band(&env, "legacy", "eni-target", 55))
        .await
        .expect("create out of band");
    let second_pc = same_account_provider(&env).await;
    // A long resync: taking over must not wait for it.
    let log = env.dir.path().join("operator-long-resync.log");
    let _op = support::operator::Operator::start(&env.ns, "300s", &[], None, log);
    apply(
        &env,
        "first",
        json!({"sessionId": legacy.id, "priority": 10, "deletionPolicy": "Orphan"}),
    )
    .await;
    env.wait_ready::<TrafficMirrorSession>("first").await;
    apply(
        &env,
        "second",
        json!({"sessionId": legacy.id, "priority": 20, "providerConfigRef": {"name": second_pc}}),
    )
    .await;
    let o = env
        .wait_condition::<TrafficMirrorSession>("second", "Ready", "False", Some("AlreadyManaged"))
        .await;
    let ready = condition(&o, "Ready");
    assert!(
        ready.message.contains(&format!("{}/first", env.ns)),
        "{}",
        ready.message
    );
    assert_eq!(
        env.cloud.show_session(&legacy.id).await.unwrap().priority,
        10
    );
    env.delete::<TrafficMirrorSession>("first").await;
    env.wait_gone::<TrafficMirrorSession>("first").await;
    support::wait_for(Duration::from_secs(30), || async {
        let o = env.sessions().get("second").await.ok()?;
        let ready = o
            .status
            .as_ref()?
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then_some(())
    })
    .await;
    assert_eq!(
        env.cloud.show_session(&legacy.id).await.unwrap().priority,
        20
    );
}

/// A rename is checked like a create: onto a name another session has, it is refused with
/// `NameConflict` on the renamed object alone and no `PUT`; the holder stays Ready; setting the name
/// back clears the conflict at once.
#[tokio::test]
async fn a_rename_onto_a_taken_name_is_refused_and_a_revert_clears_it() {
    let env = Env::builder("rename").resync(RESYNC).build().await;
    let log = env.dir.path().join("operator-long-resync.log");
    let _op = support::operator::Operator::start(&env.ns, "300s", &[], None, log);
    apply(&env, "web-tap", json!({})).await;
    apply(&env, "other", json!({"name": "other"})).await;
    env.wait_ready::<TrafficMirrorSession>("web-tap").await;
    env.wait_ready::<TrafficMirrorSession>("other").await;
    env.emu().clear_calls().await;
    patch_spec(&env, "other", json!({"name": "web-tap"})).await;
    let o = env
        .wait_condition::<TrafficMirrorSession>("other", "Ready", "False", Some("NameConflict"))
        .await;
    let msg = condition(&o, "Ready").message;
    let holder = session_id(&env, "web-tap").await;
    for part in [holder.as_str(), "\"other\"", "metadata.name"] {
        assert!(msg.contains(part), "{part}: {msg}");
    }
    let w = writes(&env.calls().await);
    assert!(w.is_empty(), "no PUT: {w:#?}");
    assert_eq!(cloud_sessions_named(&env, "web-tap").await.len(), 1);
    let web = env.sessions().get("web-tap").await.expect("get");
    assert_eq!(condition(&web, "Ready").status, "True");
    patch_spec(&env, "other", json!({"name": "other"})).await;
    env.wait_ready::<TrafficMirrorSession>("other").await;
    let web = env.sessions().get("web-tap").await.expect("get");
    assert_eq!(condition(&web, "Ready").status, "True");
}

/// The GETs of cloud session `id` in `calls` made before the first resync LIST that follows the
/// first of them: the reconciles a new object's arrival causes (its own status write's included),
/// without the ones each later resync causes.
fn gets_of_before_the_next_list(calls: &[Value], id: &str) -> usize {
    let path = format!("/traffic-mirror-sessions/{id}");
    let is_get =
        |c: &Value| c["method"] == "GET" && c["path"].as_str().is_some_and(|p| p.ends_with(&path));
    let Some(first) = calls.iter().position(is_get) else {
        return 0;
    };
    calls[first..]
        .iter()
        .take_while(|c| resync_lists(std::slice::from_ref(*c), SESSIONS) == 0)
        .filter(|c| is_get(c))
        .count()
}

#[tokio::test]
async fn an_adopted_id_that_does_not_exist_is_read_once_and_its_deletion_deletes_nothing() {
    let env = Env::builder("adopt-missing").resync(RESYNC).build().await;
    let _op = env.operator();
    let missing = "33333333-0000-4000-8000-000000000000";
    apply(&env, "ghost", json!({"sessionId": missing})).await;
    let o = env
        .wait_condition::<TrafficMirrorSession>("ghost", "Ready", "False", Some("SessionNotFound"))
        .await;
    assert!(
        condition(&o, "Ready").message.contains(missing),
        "{:?}",
        condition(&o, "Ready")
    );
    // Two more resync LISTs: the reconcile its own status write caused has run by then.
    env.wait_resyncs(2).await;
    let calls = env.calls().await;
    assert_eq!(
        gets_of_before_the_next_list(&calls, missing),
        1,
        "one GET of the missing id, not one more for the reconcile our status write caused: {calls:#?}"
    );

    env.delete::<TrafficMirrorSession>("ghost").await;
    env.wait_gone::<TrafficMirrorSession>("ghost").await;
    let gone = env.wait_event(&env.ns, "ghost", "AlreadyGone").await;
    let note = gone.note.unwrap_or_default();
    assert!(
        note.contains(missing) && note.contains("nothing was deleted"),
        "{note}"
    );
    let events = env.events_about(&env.ns, "ghost").await;
    assert!(
        !events
            .iter()
            .any(|e| e.reason.as_deref() == Some("Deleted")),
        "a 404 is not reported as deleted: {events:#?}"
    );
}

/// Issue 21: a created session costs two API-server writes to its object: the finalizer with the
/// create intent in one metadata write before the POST, and the status (with the cloud id) after
/// it. Counted by a recording proxy in front of the API server (the `Created` event goes to the
/// events API, not to the object, and is not counted).
#[tokio::test]
async fn a_created_session_costs_two_api_server_writes() {
    let env = Env::builder("two-writes").resync("5m").build().await;
    let recorder = support::api_recorder::ApiRecorder::start(support::control_plane());
    let op = env.operator_as(&recorder.kubeconfig_for(&env.own_kubeconfig()));
    apply(&env, "s", json!({})).await;
    let o = env.wait_ready::<TrafficMirrorSession>("s").await;
    let writes: Vec<_> = recorder
        .writes()
        .into_iter()
        .filter(|r| r.path.contains("/trafficmirrorsessions/s"))
        .collect();
    let kinds: Vec<(&str, bool)> = writes
        .iter()
        .map(|r| (r.method.as_str(), r.path.ends_with("/status")))
        .collect();
    assert_eq!(
        kinds,
        [("PATCH", false), ("PATCH", true)],
        "{writes:?}\nlog:\n{}",
        op.logs()
    );
    // The first write carried both the finalizer and the intent; the intent stays as the durable
    // record of the create, and the status holds the id.
    assert!(
        o.metadata
            .finalizers
            .unwrap_or_default()
            .iter()
            .any(|f| f == "vpc.hwcloud.dev/cleanup")
    );
    let annotations = o.metadata.annotations.unwrap_or_default();
    assert!(
        annotations.contains_key("vpc.hwcloud.dev/create-intent"),
        "{annotations:?}"
    );
    assert_eq!(posts(&env).await, 1);
    let id = o
        .status
        .and_then(|s| s.session_id)
        .expect("status.sessionId");
    assert_eq!(all_cloud_sessions(&env).await[0].id, id);
}

/// Issue 21: the id lives in the status and the kept intent; an object restored from a backup
/// without its status (here: the status removed while the operator is down) finds its cloud session
/// by the intent's name and creation time, and never creates a second.
#[tokio::test]
async fn a_restore_without_status_finds_its_session_and_never_creates_a_second() {
    let env = Env::builder("restore-nostatus")
        .resync(RESYNC)
        .build()
        .await;
    let op = env.operator();
    apply(&env, "s", json!({})).await;
    env.wait_ready::<TrafficMirrorSession>("s").await;
    let id = session_id(&env, "s").await;
    drop(op);
    let cleared = json!({"status": null});
    env.sessions()
        .patch_status("s", &PatchParams::default(), &Patch::Merge(&cleared))
        .await
        .expect("drop the status");
    let o = env.sessions().get("s").await.expect("get");
    assert!(
        o.status.and_then(|s| s.session_id).is_none(),
        "status dropped"
    );
    env.emu().clear_calls().await;
    let op = env.operator();
    let o = env.wait_ready::<TrafficMirrorSession>("s").await;
    assert_eq!(o.status.and_then(|s| s.session_id), Some(id.clone()));
    let sessions = all_cloud_sessions(&env).await;
    assert_eq!(sessions.len(), 1, "never a second; log:\n{}", op.logs());
    assert_eq!(posts(&env).await, 0, "no create");
    env.wait_event(&env.ns, "s", "CreateConfirmed").await;
}
