//! Deletion that never hangs or leaks, for TrafficMirrorFilters (the session counterparts are in
//! tests/operator_lifecycle.rs), deletion by the cluster itself (a deleted namespace, a deleted
//! owner: kube-controller-manager deletes the objects, the operator their cloud resources), and the
//! steady state's zero writes: a real kube-apiserver + etcd + kube-controller-manager, the emulator,
//! and the operator binary as a child process. Each test has its own namespace, emulator,
//! ProviderConfig and operator; every wait polls with a deadline.

mod support;

use support::Env;
use support::env::{FILTERS, SESSIONS};

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use traffic_mirror_operator::api::{TrafficMirrorFilter, TrafficMirrorSession};
use traffic_mirror_operator::cloud::models::{
    ListFiltersQuery, TrafficMirrorFilter as CloudFilter,
};

use support::api_recorder::{ApiRecorder, Recorded};
use support::operator::SK;

const WAIT: Duration = Duration::from_secs(60);
/// How long kube-controller-manager may take to finish a deletion: the namespace controller
/// retries a namespace whose objects still have finalizers after 15 s, and the garbage collector
/// sees a CRD installed after its start at its next discovery sync (every 30 s).
const CLUSTER_DELETION_WAIT: Duration = Duration::from_secs(120);
const RESYNC: &str = "2s";
/// The reconcilers' cleanup finalizer.
const FINALIZER: &str = "vpc.hwcloud.dev/cleanup";

/// Creates a filter object with one rule and `extra` spec fields.
async fn apply_filter(env: &Env, name: &str, extra: Value) {
    let mut spec = json!({
        "rules": [{"direction": "ingress", "priority": 10, "protocol": "TCP",
                   "ethertype": "IPv4", "action": "accept", "sourceCidrBlock": "10.0.0.0/8"}],
        "providerConfigRef": {"name": env.account.pc},
    });
    if let (Some(s), Value::Object(e)) = (spec.as_object_mut(), extra) {
        s.extend(e);
    }
    env.create::<TrafficMirrorFilter>(json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1", "kind": "TrafficMirrorFilter",
        "metadata": {"name": name}, "spec": spec,
    }))
    .await;
}

/// Creates a session object using the filter object `filter`.
async fn apply_session(env: &Env, name: &str, filter: &str) {
    apply_session_owned(env, name, filter, json!([])).await;
}

/// [`Env::apply_session`] with these `metadata.ownerReferences`.
async fn apply_session_owned(env: &Env, name: &str, filter: &str, owners: Value) {
    env.create::<TrafficMirrorSession>(json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1", "kind": "TrafficMirrorSession",
        "metadata": {"name": name, "ownerReferences": owners},
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

async fn patch_filter(env: &Env, name: &str, patch: Value) {
    env.filters()
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch filter");
}

async fn delete_filter(env: &Env, name: &str) {
    env.filters()
        .delete(name, &DeleteParams::default())
        .await
        .expect("delete filter");
}

/// Waits until the filter's Ready condition is False with `reason` and a message containing
/// every `part`; returns the message.
async fn wait_filter_message(env: &Env, name: &str, reason: &str, parts: &[&str]) -> String {
    let api = env.filters();
    support::wait_for(WAIT, || {
        let api = api.clone();
        async move {
            let o = api.get_opt(name).await.ok().flatten()?;
            let c = o
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Ready")?;
            let ok = c.status == "False"
                && c.reason == reason
                && parts.iter().all(|p| c.message.contains(p));
            ok.then_some(c.message)
        }
    })
    .await
}

/// The cloud filters named `name`.
async fn cloud_filters_named(env: &Env, name: &str) -> Vec<CloudFilter> {
    let mut all = env
        .cloud
        .list_all_filters(ListFiltersQuery::default())
        .await
        .expect("list filters");
    all.retain(|f| f.name == name);
    all
}

/// Creates the filter `name`, waits until it is Ready with a cloud id, then makes the
/// ProviderConfig not Ready (its credentials stop working) and waits until the filter says so.
async fn ready_filter_then_broken_provider(env: &Env, name: &str) -> String {
    apply_filter(env, name, json!({})).await;
    let f = env
        .wait_condition::<TrafficMirrorFilter>(name, "Ready", "True", Some("Available"))
        .await;
    let id = f.status.and_then(|s| s.filter_id).expect("status.filterId");
    env.account.apply_provider("wrong-secret").await;
    env.wait_condition::<TrafficMirrorFilter>(
        name,
        "Ready",
        "False",
        Some("ProviderConfigNotReady"),
    )
    .await;
    id
}

#[tokio::test]
async fn a_filter_whose_provider_config_never_existed_is_deleted_at_once() {
    let env = Env::builder("flt-typo-pc").resync(RESYNC).build().await;
    let op = env.operator();
    apply_filter(
        &env,
        "web",
        json!({"providerConfigRef": {"name": "no-such-provider-config"}}),
    )
    .await;
    let f = env
        .wait_condition::<TrafficMirrorFilter>(
            "web",
            "Ready",
            "False",
            Some("ProviderConfigNotReady"),
        )
        .await;
    assert!(
        f.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|x| x == FINALIZER),
        "the finalizer is there: the release is the operator's decision, not its absence"
    );
    delete_filter(&env, "web").await;
    env.wait_gone::<TrafficMirrorFilter>("web").await;
    assert!(
        env.writes().await.is_empty(),
        "nothing was ever created or deleted; log:\n{}",
        op.logs()
    );
}

#[tokio::test]
async fn deleting_a_filter_without_a_ready_provider_says_how_to_get_out_and_orphan_releases() {
    let env = Env::builder("flt-del-notready")
        .resync(RESYNC)
        .build()
        .await;
    let _op = env.operator();
    let id = ready_filter_then_broken_provider(&env, "web").await;
    delete_filter(&env, "web").await;
    wait_filter_message(
        &env,
        "web",
        "ProviderConfigNotReady",
        &[
            "restore the ProviderConfig",
            "deletionPolicy: Orphan",
            "cloud filter",
        ],
    )
    .await;
    assert!(
        env.filters().get_opt("web").await.expect("get").is_some(),
        "the object waits: its cloud filter cannot be deleted yet"
    );
    // The way out: leave the cloud filter in place.
    patch_filter(&env, "web", json!({"spec": {"deletionPolicy": "Orphan"}})).await;
    env.wait_gone::<TrafficMirrorFilter>("web").await;
    env.cloud
        .show_filter(&id)
        .await
        .expect("the orphaned filter is still in the cloud");
}

#[tokio::test]
async fn deleting_a_filter_without_a_ready_provider_finishes_once_it_is_restored() {
    let env = Env::builder("flt-del-restore").resync(RESYNC).build().await;
    let _op = env.operator();
    let id = ready_filter_then_broken_provider(&env, "web").await;
    delete_filter(&env, "web").await;
    wait_filter_message(
        &env,
        "web",
        "ProviderConfigNotReady",
        &["deletionPolicy: Orphan"],
    )
    .await;
    assert!(
        env.cloud.show_filter(&id).await.is_ok(),
        "nothing is deleted without a Ready ProviderConfig"
    );
    env.account.apply_provider(SK).await;
    env.wait_gone::<TrafficMirrorFilter>("web").await;
    assert!(
        cloud_filters_named(&env, "web").await.is_empty(),
        "the cloud filter is deleted"
    );
}

#[tokio::test]
async fn a_damaged_filter_intent_never_leaks_the_cloud_filter_on_delete() {
    let env = Env::builder("flt-damaged-delete")
        .resync(RESYNC)
        .build()
        .await;
    // Crash right after the create call: the intent is recorded, the id is not.
    let mut op = env.operator_with(Some("filter-create-after"));
    apply_filter(&env, "web", json!({})).await;
    support::wait_for(WAIT, || {
        let exited = op.exited();
        async move { exited.then_some(()) }
    })
    .await;
    assert!(op.logs().contains("failpoint"), "{}", op.logs());
    drop(op);
    assert_eq!(cloud_filters_named(&env, "web").await.len(), 1);
    let o = env.filters().get("web").await.expect("get");
    assert!(
        o.status.and_then(|s| s.filter_id).is_none(),
        "the id was never recorded"
    );
    // Damage the intent the way a bad hand edit would, then delete the object.
    let patch = json!({"metadata": {"annotations": {"vpc.hwcloud.dev/create-intent": "{damaged"}}});
    patch_filter(&env, "web", patch).await;
    delete_filter(&env, "web").await;
    let op = env.operator();
    env.wait_gone::<TrafficMirrorFilter>("web").await;
    assert!(
        cloud_filters_named(&env, "web").await.is_empty(),
        "the interrupted create's filter leaked; log:\n{}",
        op.logs()
    );
    env.cloud
        .show_filter(&env.account.filter_id)
        .await
        .expect("a filter the object never made is untouched");
}

/// Creates the filter `web` and the session `tap` using it (owned by `owners`), waits until both
/// are Ready, and returns their cloud ids (filter, session).
async fn ready_filter_and_session(env: &Env, owners: Value) -> (String, String) {
    apply_filter(env, "web", json!({})).await;
    apply_session_owned(env, "tap", "web", owners).await;
    let filter = env
        .wait_condition::<TrafficMirrorFilter>("web", "Ready", "True", Some("Available"))
        .await;
    let session = env.wait_ready::<TrafficMirrorSession>("tap").await;
    (
        filter
            .status
            .and_then(|s| s.filter_id)
            .expect("status.filterId"),
        session
            .status
            .and_then(|s| s.session_id)
            .expect("status.sessionId"),
    )
}

#[tokio::test]
async fn deleting_a_namespace_finishes_once_the_operator_deleted_its_cloud_resources() {
    let cp = support::control_plane();
    let env = Env::builder("ns-delete")
        .resync(RESYNC)
        .credentials_apart()
        .build()
        .await;
    let op = env.operator();
    let (filter_id, session_id) = ready_filter_and_session(&env, json!([])).await;

    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    namespaces
        .delete(&env.ns, &DeleteParams::default())
        .await
        .expect("delete the namespace");
    // The namespace controller deletes both objects; their finalizers hold them (and the
    // namespace) until the operator has deleted the cloud session and filter.
    support::wait_deleted(cp, &namespaces, &env.ns, CLUSTER_DELETION_WAIT).await;
    let session = env.cloud.show_session(&session_id).await;
    assert!(
        session.as_ref().is_err_and(|e| e.is_not_found()),
        "the cloud session outlived its namespace: {session:?}; log:\n{}",
        op.logs()
    );
    let filter = env.cloud.show_filter(&filter_id).await;
    assert!(
        filter.as_ref().is_err_and(|e| e.is_not_found()),
        "the cloud filter outlived its namespace: {filter:?}; log:\n{}",
        op.logs()
    );
}

#[tokio::test]
async fn a_session_whose_owner_is_deleted_is_garbage_collected_with_its_cloud_session() {
    let cp = support::control_plane();
    let env = Env::builder("gc-owner").resync(RESYNC).build().await;
    let op = env.operator();
    let owners: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
    let owner: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "owner"}})).expect("owner manifest");
    let owner = owners
        .create(&PostParams::default(), &owner)
        .await
        .expect("create the owner");
    let owner_ref = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                            "uid": owner.metadata.uid.expect("the owner's uid")}]);
    let (filter_id, session_id) = ready_filter_and_session(&env, owner_ref).await;

    owners
        .delete("owner", &DeleteParams::default())
        .await
        .expect("delete the owner");
    support::wait_deleted(cp, &env.sessions(), "tap", CLUSTER_DELETION_WAIT).await;
    let session = env.cloud.show_session(&session_id).await;
    assert!(
        session.as_ref().is_err_and(|e| e.is_not_found()),
        "the collected session's cloud session leaked: {session:?}; log:\n{}",
        op.logs()
    );
    env.cloud
        .show_filter(&filter_id)
        .await
        .expect("the filter, not owned, is untouched");
}

/// The resourceVersions of the filter `web` and the session `tap`.
async fn resource_versions(env: &Env) -> (Option<String>, Option<String>) {
    let filter = env.filters().get("web").await.expect("get filter");
    let session = env.sessions().get("tap").await.expect("get session");
    (
        filter.metadata.resource_version,
        session.metadata.resource_version,
    )
}

/// The recorded writes whose path contains `resource` (`trafficmirrorsessions/tap`).
fn writes_to(recorded: &[Recorded], resource: &str) -> Vec<Recorded> {
    recorded
        .iter()
        .filter(|r| r.is_write() && r.path.contains(resource))
        .cloned()
        .collect()
}

#[tokio::test]
async fn the_steady_state_makes_no_writes_to_the_api_server_or_the_cloud() {
    let env = Env::builder("steady-writes").resync(RESYNC).build().await;
    let recorder = ApiRecorder::start(support::control_plane());
    let op = env.operator_as(&recorder.kubeconfig_for(&env.own_kubeconfig()));
    apply_filter(&env, "web", json!({})).await;
    apply_session(&env, "tap", "web").await;
    env.wait_condition::<TrafficMirrorFilter>("web", "Ready", "True", Some("Available"))
        .await;
    env.wait_ready::<TrafficMirrorSession>("tap").await;
    // The recorder sees the operator's writes: convergence wrote finalizers and status.
    let converging = recorder.requests();
    for kind in ["trafficmirrorfilters/web", "trafficmirrorsessions/tap"] {
        assert!(
            !writes_to(&converging, kind).is_empty(),
            "the recorder saw no write to {kind} while converging: {converging:?}\nlog:\n{}",
            op.logs()
        );
    }
    // Let whatever converging started finish (one whole interval), then measure over five more:
    // longer than the 2 x resync after which a settled object is looked at again.
    env.emu().clear_calls().await;
    env.wait_resyncs_since(&[SESSIONS, FILTERS], 0, 1).await;
    recorder.clear();
    env.emu().clear_calls().await;
    let before = resource_versions(&env).await;
    env.wait_resyncs_since(&[SESSIONS, FILTERS], 0, 5).await;
    let writes = recorder.writes();
    assert!(
        writes.is_empty(),
        "API-server writes at steady state: {writes:?}\nlog:\n{}",
        op.logs()
    );
    let cloud = env.writes().await;
    assert!(cloud.is_empty(), "cloud writes at steady state: {cloud:?}");
    assert_eq!(resource_versions(&env).await, before, "objects rewritten");
    // And the recorder is still in the operator's path: a spec change is one status write it sees.
    patch_filter(&env, "web", json!({"spec": {"description": "changed"}})).await;
    support::wait_for(WAIT, || async {
        let writes = recorder.writes();
        writes_to(&writes, "trafficmirrorfilters/web/status")
            .first()
            .cloned()
    })
    .await;
}
