//! The ProviderConfig reconciler end to end: a real kube-apiserver + etcd, the emulator, and the
//! operator binary as a child process. A ProviderConfig carries the in-use finalizer, counts its
//! users in `status.users`, and waits (serving its users) while sessions or filters still reference
//! it. Every test has its own namespace, emulator, ProviderConfig and operator; all waits poll
//! with deadlines.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use traffic_mirror_operator::api::{ProviderConfig, TrafficMirrorFilter, TrafficMirrorSession};
use traffic_mirror_operator::cloud::models::ListSessionsQuery;

use support::operator::{AK, PROJECT, SECRET_NAME, SELECTOR_LABEL};

const WAIT: Duration = Duration::from_secs(60);
const FINALIZER: &str = "vpc.hwcloud.dev/in-use";

/// One test's world: a namespace, a cloud account wired to ProviderConfig `pc-<ns>`, an operator.
struct TestEnv {
    client: Client,
    ns: String,
    account: support::operator::CloudAccount,
    op: support::operator::Operator,
    _dir: tempfile::TempDir,
}

impl TestEnv {
    async fn new(prefix: &str) -> TestEnv {
        TestEnv::with_resync(prefix, "5m").await
    }

    /// [`TestEnv::new`] with the operator's `--resync-interval` set to `resync`.
    async fn with_resync(prefix: &str, resync: &str) -> TestEnv {
        let client = support::control_plane().client().await;
        support::install_crds(&client).await;
        let ns = support::test_namespace(&client, prefix).await;
        let account = support::operator::CloudAccount::create(&client, &ns).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let op = support::operator::Operator::start(
            &ns,
            resync,
            &[],
            None,
            dir.path().join("operator.log"),
        );
        TestEnv {
            client,
            ns,
            account,
            op,
            _dir: dir,
        }
    }

    fn pcs(&self) -> Api<ProviderConfig> {
        Api::all(self.client.clone())
    }

    fn sessions(&self) -> Api<TrafficMirrorSession> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    fn filters(&self) -> Api<TrafficMirrorFilter> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    fn logs(&self) -> String {
        self.op.logs()
    }

    /// Creates a session named `name` that uses ProviderConfig `pc`.
    async fn session(&self, name: &str, pc: &str) {
        let obj: TrafficMirrorSession = serde_json::from_value(json!({
            "apiVersion": "vpc.hwcloud.dev/v1alpha1",
            "kind": "TrafficMirrorSession",
            "metadata": {"name": name},
            "spec": {
                "trafficMirrorFilterId": self.account.filter_id,
                "trafficMirrorSources": ["eni-a"],
                "trafficMirrorTargetId": "eni-target",
                "trafficMirrorTargetType": "eni",
                "priority": 10,
                "providerConfigRef": {"name": pc},
            },
        }))
        .expect("session manifest");
        self.sessions()
            .create(&PostParams::default(), &obj)
            .await
            .expect("create session");
    }

    /// Creates a filter named `name` that uses ProviderConfig `pc` (no filter reconciler exists
    /// yet: it only counts as a user).
    async fn filter(&self, name: &str, pc: &str) {
        let obj: TrafficMirrorFilter = serde_json::from_value(json!({
            "apiVersion": "vpc.hwcloud.dev/v1alpha1",
            "kind": "TrafficMirrorFilter",
            "metadata": {"name": name},
            "spec": {"providerConfigRef": {"name": pc}},
        }))
        .expect("filter manifest");
        self.filters()
            .create(&PostParams::default(), &obj)
            .await
            .expect("create filter");
    }

    /// Waits until the ProviderConfig satisfies `ok`; returns it.
    async fn wait_pc(&self, name: &str, ok: impl Fn(&ProviderConfig) -> bool) -> ProviderConfig {
        let api = self.pcs();
        let ok = &ok;
        support::wait_for(WAIT, || {
            let api = api.clone();
            async move { api.get_opt(name).await.ok().flatten().filter(|pc| ok(pc)) }
        })
        .await
    }

    /// Waits until the ProviderConfig no longer exists.
    async fn wait_pc_gone(&self, name: &str) {
        let api = self.pcs();
        support::wait_for(WAIT, || {
            let api = api.clone();
            async move { matches!(api.get_opt(name).await, Ok(None)).then_some(()) }
        })
        .await;
    }

    /// Waits until session `name` is Ready=True for its current generation.
    async fn wait_session_ready(&self, name: &str) -> TrafficMirrorSession {
        let api = self.sessions();
        support::wait_for(WAIT, || {
            let api = api.clone();
            async move {
                let o = api.get_opt(name).await.ok().flatten()?;
                let st = o.status.as_ref()?;
                let ready = st
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                (ready && st.observed_generation == o.metadata.generation).then_some(o)
            }
        })
        .await
    }

    /// Waits until session `name`'s Ready condition has `reason`; returns its message.
    async fn wait_session_reason(&self, name: &str, reason: &str) -> String {
        let api = self.sessions();
        support::wait_for(WAIT, || {
            let api = api.clone();
            async move {
                let o = api.get_opt(name).await.ok().flatten()?;
                let ready = o
                    .status?
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == "Ready")?;
                (ready.reason == reason).then_some(ready.message)
            }
        })
        .await
    }

    async fn cloud_session_count(&self) -> usize {
        self.account
            .cloud
            .list_all_sessions(ListSessionsQuery::default())
            .await
            .expect("list cloud sessions")
            .len()
    }
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
    let env = TestEnv::new("pc-users").await;
    let pc = env.account.pc.clone();
    env.wait_pc(&pc, |p| {
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
    env.wait_pc(&second, |p| {
        has_finalizer(p) && ready_is(p, "True", "CredentialsValid")
    })
    .await;
    let logs = env.logs();
    let conflicts = logs
        .lines()
        .filter(|l| l.contains("writing the ProviderConfig status") && l.contains(&second));
    assert_eq!(conflicts.count(), 0, "operator log:\n{logs}");
    env.session("a", &pc).await;
    env.session("b", &pc).await;
    env.filter("f", &pc).await;
    // Referencing another ProviderConfig does not count.
    env.session("elsewhere", "some-other-provider").await;
    env.wait_pc(&pc, |p| users(p) == Some(3)).await;
    env.filters()
        .delete("f", &DeleteParams::default())
        .await
        .expect("delete filter");
    env.wait_pc(&pc, |p| users(p) == Some(2)).await;
    let p = env.pcs().get(&pc).await.expect("get pc");
    assert!(ready_is(&p, "True", "CredentialsValid"), "{:?}", ready(&p));
}

#[tokio::test]
async fn a_used_provider_config_waits_for_its_users_and_keeps_serving_them() {
    let env = TestEnv::new("pc-in-use").await;
    let pc = env.account.pc.clone();
    env.session("s", &pc).await;
    env.wait_session_ready("s").await;
    assert_eq!(env.cloud_session_count().await, 1);
    env.wait_pc(&pc, |p| has_finalizer(p) && users(p) == Some(1))
        .await;

    env.pcs()
        .delete(&pc, &DeleteParams::default())
        .await
        .expect("delete pc");
    let held = env.wait_pc(&pc, |p| ready_is(p, "False", "InUse")).await;
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
    env.session("late", &pc).await;
    let late = env
        .wait_session_reason("late", "ProviderConfigNotReady")
        .await;
    assert!(
        late.contains("is being deleted and takes no new users"),
        "{late}"
    );
    assert_eq!(env.cloud_session_count().await, 1);
    // A session naming a ProviderConfig that does not exist says so, not "missing or not Ready".
    env.session("nowhere", "no-such-pc").await;
    let nowhere = env
        .wait_session_reason("nowhere", "ProviderConfigNotReady")
        .await;
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
        (env.cloud_session_count().await == 0).then_some(())
    })
    .await;
    // And the last user's deletion releases the ProviderConfig.
    env.wait_pc_gone(&pc).await;
    assert!(
        env.logs().contains("finalizer removed"),
        "operator log:\n{}",
        env.logs()
    );
}

#[tokio::test]
async fn an_unused_provider_config_is_deleted_at_once() {
    let env = TestEnv::new("pc-unused").await;
    let pc = env.account.pc.clone();
    env.wait_pc(&pc, |p| has_finalizer(p) && users(p) == Some(0))
        .await;
    env.pcs()
        .delete(&pc, &DeleteParams::default())
        .await
        .expect("delete pc");
    env.wait_pc_gone(&pc).await;
}

#[tokio::test]
async fn a_secret_missing_a_key_is_secret_invalid_naming_the_key() {
    let env = TestEnv::new("pc-partial").await;
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
    let p = env
        .wait_pc(&name, |p| ready_is(p, "False", "SecretInvalid"))
        .await;
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
    env.wait_pc(&name, |p| ready_is(p, "True", "CredentialsValid"))
        .await;
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
    let env = TestEnv::with_resync("pc-wrongsk", "2s").await;
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
    let p = env
        .wait_pc(&name, |p| ready_is(p, "False", "APIGW_0301"))
        .await;
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
