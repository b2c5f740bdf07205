//! The support range end to end: on the oldest (1.30) and the newest supported Kubernetes, the
//! operator binary with the emulator as the cloud takes a TrafficMirrorSession through its life:
//! create (one POST, `Ready`), edit one field (exactly one PUT carrying only that field), delete
//! (the cloud session is deleted, the object goes). Along the way it checks the API-server
//! features the operator relies on: the `/status` subresource written by server-side apply under
//! the operator's field manager, finalizers, Events through `events.k8s.io/v1`, and leader election
//! on a `coordination.k8s.io/v1` Lease (the operator runs with `--leader-elect=true`: it holds the
//! Lease and renews it).
//!
//! The CRD install and the whole admission table run on both versions in `tests/crd_validation.rs`.

mod support;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::Version;
use support::operator::{CloudAccount, Operator};
use traffic_mirror_operator::api::TrafficMirrorSession;
use traffic_mirror_operator::cloud::models::ListSessionsQuery;
use traffic_mirror_operator::controller::MANAGER;

const WAIT: Duration = Duration::from_secs(60);
/// The Lease the operator elects itself on (in the test namespace).
const LEASE: &str = "tmo-versions";
/// Leader election as deployed, with a short lease so renewals come every couple of seconds.
const LEADER_ARGS: [&str; 7] = [
    "--leader-elect=true",
    "--leader-elect-lease-name",
    LEASE,
    "--leader-elect-lease-duration",
    "6s",
    "--log-format",
    "json",
];

#[tokio::test]
async fn session_lifecycle_on_the_newest() {
    session_lifecycle(Version::Newest).await;
}

#[tokio::test]
async fn session_lifecycle_on_the_oldest() {
    session_lifecycle(Version::Oldest).await;
}

/// The Lease's holder and last renewal, once someone holds it.
async fn lease_held(leases: &Api<Lease>) -> Option<(String, MicroTime)> {
    let spec = leases.get_opt(LEASE).await.ok().flatten()?.spec?;
    let holder = spec.holder_identity.filter(|h| !h.is_empty())?;
    Some((holder, spec.renew_time?))
}

/// The identity the operator logged when it acquired the Lease.
fn acquired_as(op: &Operator) -> Option<String> {
    op.logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == "acquired the leader lease")?["fields"]["identity"]
        .as_str()
        .map(str::to_string)
}

/// The operator holds the Lease (under the identity it logged) and renews it: a later `renewTime`
/// by the same holder.
async fn assert_lease_held_and_renewed(leases: &Api<Lease>, op: &Operator, context: &str) {
    let (holder, first) = support::wait_for(WAIT, || lease_held(leases)).await;
    let identity = support::wait_for(WAIT, || async { acquired_as(op) }).await;
    assert_eq!(holder, identity, "{context}: the operator holds the Lease");
    let (renewed_by, _) = support::wait_for(WAIT, || async {
        lease_held(leases).await.filter(|(_, t)| *t > first)
    })
    .await;
    assert_eq!(renewed_by, holder, "{context}: the holder renews the Lease");
}

/// The condition `type_` of `o` is `status` for the current generation.
fn condition_is(o: &TrafficMirrorSession, type_: &str, status: &str) -> bool {
    o.status.as_ref().is_some_and(|st| {
        st.observed_generation == o.metadata.generation
            && st
                .conditions
                .iter()
                .any(|c| c.type_ == type_ && c.status == status)
    })
}

async fn wait_ready(api: &Api<TrafficMirrorSession>, name: &str) -> TrafficMirrorSession {
    support::wait_for(WAIT, || async {
        let o = api.get_opt(name).await.ok().flatten()?;
        condition_is(&o, "Ready", "True").then_some(o)
    })
    .await
}

fn writes(calls: &[Value]) -> Vec<Value> {
    calls
        .iter()
        .filter(|c| c["method"] != "GET")
        .cloned()
        .collect()
}

async fn session_lifecycle(version: Version) {
    let cp = support::control_plane_for(version);
    let client = cp.client().await;
    let served = client.apiserver_version().await.expect("GET /version");
    assert_eq!(
        served.git_version, cp.kubernetes_version,
        "{version:?}: the server runs the pinned version"
    );
    support::install_crds(&client).await;
    let ns = support::test_namespace(&client, &format!("versions-{version:?}")).await;
    let account = CloudAccount::create(&client, &ns).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let operator = Operator::start_on(
        cp,
        &ns,
        "5m",
        &LEADER_ARGS,
        None,
        dir.path().join("operator.log"),
    );
    let emu = &account.emu;
    emu.clear_calls().await;
    let sessions: Api<TrafficMirrorSession> = Api::namespaced(client.clone(), &ns);
    let context = |what: &str| format!("{version:?} ({}): {what}", cp.kubernetes_version);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    assert_lease_held_and_renewed(&leases, &operator, &context("leader election")).await;

    // Create: one POST; Ready with the cloud id; the status written by SSA through /status.
    let manifest: TrafficMirrorSession = serde_json::from_value(json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1",
        "kind": "TrafficMirrorSession",
        "metadata": {"name": "web"},
        "spec": {
            "trafficMirrorFilterId": account.filter_id,
            "trafficMirrorSources": ["eni-a", "eni-b"],
            "trafficMirrorTargetId": "eni-target",
            "trafficMirrorTargetType": "eni",
            "priority": 10,
            "providerConfigRef": {"name": account.pc},
        }
    }))
    .expect("session manifest");
    sessions
        .create(&PostParams::default(), &manifest)
        .await
        .expect("create the session");
    let ready = wait_ready(&sessions, "web").await;
    let status = ready.status.clone().expect("status");
    let kstatus: Vec<&str> = status
        .conditions
        .iter()
        .map(|c| c.type_.as_str())
        .filter(|t| ["Reconciling", "Stalled"].contains(t))
        .collect();
    assert!(
        kstatus.is_empty(),
        "{}: {kstatus:?}",
        context("Ready: neither Reconciling nor Stalled (kstatus Current)")
    );
    let session_id = status.session_id.clone().expect("status.sessionId");
    assert_eq!(
        status.at_provider.as_ref().map(|a| a.priority),
        Some(10),
        "{}",
        context("atProvider")
    );
    let posts: Vec<Value> = writes(&emu.calls().await)
        .into_iter()
        .filter(|c| c["method"] == "POST")
        .collect();
    assert_eq!(posts.len(), 1, "{}: {posts:#?}", context("one POST"));
    let cloud = account
        .cloud
        .list_all_sessions(ListSessionsQuery::default())
        .await
        .expect("list cloud sessions");
    assert_eq!(
        cloud.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        [session_id.as_str()],
        "{}",
        context("one cloud session")
    );
    let finalizers = ready.metadata.finalizers.clone().unwrap_or_default();
    assert!(
        finalizers.iter().any(|f| f == "vpc.hwcloud.dev/cleanup"),
        "{}: {finalizers:?}",
        context("finalizer")
    );
    let managed = ready.metadata.managed_fields.clone().unwrap_or_default();
    assert!(
        managed.iter().any(|m| m.manager.as_deref() == Some(MANAGER)
            && m.operation.as_deref() == Some("Apply")
            && m.subresource.as_deref() == Some("status")),
        "{}: {managed:#?}",
        context("status applied by the operator's field manager through /status")
    );

    // Events through events.k8s.io/v1, naming the object.
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    support::wait_for(WAIT, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("Created")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("web")
            })
            .then_some(())
    })
    .await;

    // Edit one field: exactly one PUT, carrying only that field.
    emu.clear_calls().await;
    let edited = sessions
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"priority": 20}})),
        )
        .await
        .expect("edit spec.priority");
    // Ready for the edited generation (wait_ready compares observedGeneration with it).
    let ready = wait_ready(&sessions, "web").await;
    assert!(ready.metadata.generation >= edited.metadata.generation);
    assert_eq!(
        ready.status.and_then(|s| s.at_provider).map(|a| a.priority),
        Some(20),
        "{}",
        context("atProvider after the edit")
    );
    let edit_writes = writes(&emu.calls().await);
    assert_eq!(
        edit_writes.len(),
        1,
        "{}: {edit_writes:#?}",
        context("one write for one edit")
    );
    assert_eq!(edit_writes[0]["method"], "PUT", "{}", context("a PUT"));
    let body = &edit_writes[0]["body"]["traffic_mirror_session"];
    assert_eq!(
        body.as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["priority".to_string()]),
        "{}: {body}",
        context("the PUT carries only the edited field")
    );

    // Delete: the cloud session goes, then the object.
    emu.clear_calls().await;
    sessions
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete the session");
    support::wait_for(WAIT, || async {
        matches!(sessions.get_opt("web").await, Ok(None)).then_some(())
    })
    .await;
    let cloud = account
        .cloud
        .list_all_sessions(ListSessionsQuery::default())
        .await
        .expect("list cloud sessions");
    assert!(
        cloud.is_empty(),
        "{}: {cloud:?}",
        context("the cloud session is deleted")
    );
    let deletes: Vec<Value> = writes(&emu.calls().await)
        .into_iter()
        .filter(|c| c["method"] == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1, "{}: {deletes:#?}", context("one DELETE"));
    drop(operator);
}
