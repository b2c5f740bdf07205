//! The ProviderConfig reconciler end to end: a real kube-apiserver + etcd, the emulator, and the
//! operator binary as a child process. A ProviderConfig carries the in-use finalizer, counts its
//! users in `status.users`, and waits (serving its users) while sessions or filters still reference
//! it. Every test has its own namespace, emulator, ProviderConfig and operator; all waits poll
//! with deadlines.

mod support;

use support::Env;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use traffic_mirror_operator::api::{ProviderConfig, TrafficMirrorFilter, TrafficMirrorSession};
use traffic_mirror_operator::cloud::models::ListSessionsQuery;

use support::operator::{AK, PROJECT, SECRET_NAME, SELECTOR_LABEL};

const WAIT: Duration = Duration::from_secs(60);
const FINALIZER: &str = "vpc.hwcloud.dev/in-use";

/// One test's world: a namespace, a cloud account wired to ProviderConfig `pc-<ns>`, an operator
/// with `--resync-interval` `resync`.
async fn env(prefix: &str, resync: &str) -> Env {
    Env::builder(prefix)
        .resync(resync)
        .keep_setup_calls()
        .with_operator()
        .build()
        .await
}

/// Creates a session named `name` that uses ProviderConfig `pc`.
async fn session(env: &Env, name: &str, pc: &str) {
    env.create::<TrafficMirrorSession>(json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1",
        "kind": "TrafficMirrorSession",
        "metadata": {"name": name},
        "spec": {
            "trafficMirrorFilterId": env.account.filter_id,
            "trafficMirrorSources": ["eni-a"],
            "trafficMirrorTargetId": "eni-target",
            "trafficMirrorTargetType": "eni",
            "priority": 10,
            "providerConfigRef": {"name": pc},
        },
    }))
    .await;
}

/// Creates a filter named `name` that uses ProviderConfig `pc` (no rules: it only counts as a
/// user).
async fn filter(env: &Env, name: &str, pc: &str) {
    env.create::<TrafficMirrorFilter>(json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1",
        "kind": "TrafficMirrorFilter",
        "metadata": {"name": name},
        "spec": {"providerConfigRef": {"name": pc}},
    }))
    .await;
}

/// Waits until the ProviderConfig satisfies `ok`; returns it.
async fn wait_pc(env: &Env, name: &str, ok: impl Fn(&ProviderConfig) -> bool) -> ProviderConfig {
    let api = env.pcs();
    let ok = &ok;
    support::wait_for(WAIT, || {
        let api = api.clone();
        async move { api.get_opt(name).await.ok().flatten().filter(|pc| ok(pc)) }
    })
    .await
}

/// Waits until the ProviderConfig no longer exists.
async fn wait_pc_gone(env: &Env, name: &str) {
    let api = env.pcs();
    support::wait_for(WAIT, || {
        let api = api.clone();
        async move { matches!(api.get_opt(name).await, Ok(None)).then_some(()) }
    })
    .await;
}

/// Waits until session `name`'s Ready condition has `reason`; returns its message.
async fn wait_session_reason(env: &Env, name: &str, reason: &str) -> String {
    env.wait_message::<TrafficMirrorSession>(name, reason, &[])
        .await
        .message
}

async fn cloud_session_count(env: &Env) -> usize {
    env.cloud
        .list_all_sessions(ListSessionsQuery::default())
        .await
        .expect("list cloud sessions")
        .len()
}

fn has_finalizer(pc: &ProviderConfig) -> bool {
    pc.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == FINALIZER))
}

fn users(pc: &ProviderConfig) -> Option<i64> {
    pc.status.as_ref().and_then(|s| s.users)
}

fn ready(pc: &ProviderConfig) -> Option<Condition> {
    pc.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .cloned()
}

fn ready_is(pc: &ProviderConfig, status: &str, reason: &str) -> bool {
    ready(pc).is_some_and(|c| c.status == status && c.reason == reason)
}

#[tokio::test]
async fn a_provider_config_gets_the_finalizer_and_counts_its_users() {
    let env = env("pc-users", "5m").await;
    let pc = env.account.pc.clone();
    wait_pc(&env, &pc, |p| {
        has_finalizer(p) && users(p) == Some(0) && ready_is(p, "True", "CredentialsValid")
    })
    .await;
    // A ProviderConfig created while the operator runs: its first reconcile adds the finalizer,
    // then writes the status with the copy that write returned: no conflict (no second check).
    let second = format!("{pc}-second");
    let manifest: ProviderConfig = serde_json::from_value(json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1",
        "kind": "ProviderConfig",
        "metadata": {"name": second, "labels": {SELECTOR_LABEL: env.ns}},
        "spec": {
            "region": "emulated-1",
            "projectId": PROJECT,
            "endpoint": env.account.emu.url,
            "credentials": {"secretRef": {"namespace": env.ns, "name": SECRET_NAME}},
        }
    }))
    .expect("provider config manifest");
    env.pcs()
        .create(&PostParams::default(), &manifest)
        .await
        .expect("create pc");
    wait_pc(&env, &second, |p| {
        has_finalizer(p) && ready_is(p, "True", "CredentialsValid")
    })
    .await;
    let logs = env.logs();
    let conflicts = logs
        .lines()
        .filter(|l| l.contains("writing the ProviderConfig status") && l.contains(&second));
    assert_eq!(conflicts.count(), 0, "operator log:\n{logs}");
    session(&env, "a", &pc).await;
    session(&env, "b", &pc).await;
    filter(&env, "f", &pc).await;
    // Referencing another ProviderConfig does not count.
    session(&env, "elsewhere", "some-other-provider").await;
    wait_pc(&env, &pc, |p| users(p) == Some(3)).await;
    env.filters()
        .delete("f", &DeleteParams::default())
        .await
        .expect("delete filter");
    wait_pc(&env, &pc, |p| users(p) == Some(2)).await;
    let p = env.pcs().get(&pc).await.expect("get pc");
    assert!(ready_is(&p, "True", "CredentialsValid"), "{:?}", ready(&p));
}

#[tokio::test]
async fn a_used_provider_config_waits_for_its_users_and_keeps_serving_them() {
    let env = env("pc-in-use", "5m").await;
    let pc = env.account.pc.clone();
    session(&env, "s", &pc).await;
    env.wait_ready::<TrafficMirrorSession>("s").await;
    assert_eq!(cloud_session_count(&env).await, 1);
    wait_pc(&env, &pc, |p| has_finalizer(p) && users(p) == Some(1)).await;

    env.pcs()
        .delete(&pc, &DeleteParams::default())
        .await
        .expect("delete pc");
    let held = wait_pc(&env, &pc, |p| ready_is(p, "False", "InUse")).await;
    assert!(held.metadata.deletion_timestamp.is_some());
    assert!(has_finalizer(&held));
    let message = ready(&held).map(|c| c.message).unwrap_or_default();
    let expected = format!(
        "still used by 1 TrafficMirrorSession(s) and 0 TrafficMirrorFilter(s) ({}/s); delete them first",
        env.ns
    );
    assert!(message.contains(&expected), "{message}");

    // A ProviderConfig being deleted takes no new users: a new session waits, saying why, and
    // nothing is created in the cloud for it.
    session(&env, "late", &pc).await;
    let late = wait_session_reason(&env, "late", "ProviderConfigNotReady").await;
    assert!(
        late.contains("is being deleted and takes no new users"),
        "{late}"
    );
    assert_eq!(cloud_session_count(&env).await, 1);
    // A session naming a ProviderConfig that does not exist says so, not "missing or not Ready".
    session(&env, "nowhere", "no-such-pc").await;
    let nowhere = wait_session_reason(&env, "nowhere", "ProviderConfigNotReady").await;
    assert!(
        nowhere.contains("\"no-such-pc\" does not exist"),
        "{nowhere}"
    );
    for name in ["late", "nowhere"] {
        env.sessions()
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete a session that has nothing in the cloud");
    }

    // The session's deletion still reaches the cloud through the held ProviderConfig.
    env.sessions()
        .delete("s", &DeleteParams::default())
        .await
        .expect("delete session");
    support::wait_for(WAIT, || async {
        (cloud_session_count(&env).await == 0).then_some(())
    })
    .await;
    // And the last user's deletion releases the ProviderConfig.
    wait_pc_gone(&env, &pc).await;
    assert!(
        env.logs().contains("finalizer removed"),
        "operator log:\n{}",
        env.logs()
    );
}

#[tokio::test]
async fn an_unused_provider_config_is_deleted_at_once() {
    let env = env("pc-unused", "5m").await;
    let pc = env.account.pc.clone();
    wait_pc(&env, &pc, |p| has_finalizer(p) && users(p) == Some(0)).await;
    env.pcs()
        .delete(&pc, &DeleteParams::default())
        .await
        .expect("delete pc");
    wait_pc_gone(&env, &pc).await;
}

#[tokio::test]
async fn a_secret_missing_a_key_is_secret_invalid_naming_the_key() {
    let env = env("pc-partial", "5m").await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "partial"},
        "stringData": {"accessKey": AK},
    }))
    .expect("secret manifest");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    let name = format!("{}-partial", env.account.pc);
    let pc: ProviderConfig = serde_json::from_value(json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1",
        "kind": "ProviderConfig",
        "metadata": {"name": name, "labels": {SELECTOR_LABEL: env.ns}},
        "spec": {
            "region": "emulated-1",
            "projectId": PROJECT,
            "endpoint": env.account.emu.url,
            "credentials": {"secretRef": {"namespace": env.ns, "name": "partial"}},
        }
    }))
    .expect("provider config manifest");
    env.pcs()
        .create(&PostParams::default(), &pc)
        .await
        .expect("create pc");
    let p = wait_pc(&env, &name, |p| ready_is(p, "False", "SecretInvalid")).await;
    let message = ready(&p).map(|c| c.message).unwrap_or_default();
    let expected = format!("Secret {}/partial has no non-empty secretKey", env.ns);
    assert!(message.contains(&expected), "{message}");
    assert!(!message.contains("accessKey and"), "{message}");

    // Adding the key is enough: the Secret is watched.
    let patch = json!({"stringData": {"secretKey": support::operator::SK}});
    secrets
        .patch("partial", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch secret");
    wait_pc(&env, &name, |p| ready_is(p, "True", "CredentialsValid")).await;
}

/// How many calls the emulator answered with `status` on the session list (the credential check and
/// the resync LIST).
fn session_lists(calls: &[serde_json::Value], status: u16) -> usize {
    calls
        .iter()
        .filter(|c| {
            c["method"] == "GET"
                && c["status"] == status
                && c["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with("/traffic-mirror-sessions"))
        })
        .count()
}

#[tokio::test]
async fn wrong_credentials_are_checked_once_per_resync_not_in_a_loop() {
    // The failed check's message carries the cloud's request id, new on every call: a reconcile
    // triggered by its own status write would check again, write again, and so on (this test saw
    // hundreds of 401s in a few seconds before the ProviderConfig watch ignored status writes).
    let env = env("pc-wrongsk", "2s").await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "wrong"},
        "stringData": {"accessKey": AK, "secretKey": "not-the-secret-key"},
    }))
    .expect("secret manifest");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    let name = format!("{}-wrong", env.account.pc);
    let pc: ProviderConfig = serde_json::from_value(json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1",
        "kind": "ProviderConfig",
        "metadata": {"name": name, "labels": {SELECTOR_LABEL: env.ns}},
        "spec": {
            "region": "emulated-1",
            "projectId": PROJECT,
            "endpoint": env.account.emu.url,
            "credentials": {"secretRef": {"namespace": env.ns, "name": "wrong"}},
        }
    }))
    .expect("provider config manifest");
    env.pcs()
        .create(&PostParams::default(), &pc)
        .await
        .expect("create pc");
    let p = wait_pc(&env, &name, |p| ready_is(p, "False", "APIGW_0301")).await;
    let message = ready(&p).map(|c| c.message).unwrap_or_default();
    assert!(
        message.contains("check the accessKey/secretKey"),
        "{message}"
    );
    let calls = env.account.emu.calls().await;
    let (refused, accepted) = (session_lists(&calls, 401), session_lists(&calls, 200));
    // The clock: two more resync checks of the good ProviderConfig on the same emulator (one per
    // 2 s); the wrong one may be checked once per resync too, not more.
    support::wait_for(WAIT, || async {
        (session_lists(&env.account.emu.calls().await, 200) >= accepted + 2).then_some(())
    })
    .await;
    let more = session_lists(&env.account.emu.calls().await, 401) - refused;
    assert!(
        more <= 3,
        "{more} more credential checks within two resync intervals"
    );
}
