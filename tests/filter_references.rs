//! TrafficMirrorFilter deletion against sessions the operator cannot see yet: a real kube-apiserver
//! and etcd, the emulator, and the operator binary as a child process. Every wait polls with a
//! deadline; intervals are proven by counting the resync LISTs in the emulator's call log.

mod support;

use std::time::Duration;

use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};
use traffic_mirror_operator::api::TrafficMirrorFilter;
use traffic_mirror_operator::cloud::VpcClient;
use traffic_mirror_operator::cloud::models::{CreateSessionRequest, TrafficMirrorSession};

const WAIT: Duration = Duration::from_secs(60);
/// Short enough for the test to span a few intervals, long enough that a status written right
/// after the refusal is seen before the next LIST replaces it.
const RESYNC: &str = "3s";

struct Env {
    client: Client,
    ns: String,
    account: support::operator::CloudAccount,
    cloud: VpcClient,
    dir: tempfile::TempDir,
}

impl Env {
    async fn new(prefix: &str) -> Env {
        let cp = support::control_plane();
        let client = cp.client().await;
        support::install_crds(&client).await;
        let ns = support::test_namespace(&client, prefix).await;
        let account = support::operator::CloudAccount::create(&client, &ns).await;
        Env {
            cloud: account.cloud.clone(),
            client,
            ns,
            account,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn emu(&self) -> &support::Emulator {
        &self.account.emu
    }

    fn operator(&self) -> support::operator::Operator {
        let log = self.dir.path().join("operator.log");
        support::operator::Operator::start(&self.ns, RESYNC, &[], None, log)
    }

    fn filters(&self) -> Api<TrafficMirrorFilter> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn apply_filter(&self, name: &str) {
        let obj: TrafficMirrorFilter = serde_json::from_value(json!({
            "apiVersion": "vpc.hwcloud.dev/v1alpha1", "kind": "TrafficMirrorFilter",
            "metadata": {"name": name},
            "spec": {
                "rules": [{"direction": "ingress", "priority": 10, "protocol": "TCP",
                           "ethertype": "IPv4", "action": "accept"}],
                "providerConfigRef": {"name": self.account.pc},
            },
        }))
        .expect("filter manifest");
        self.filters()
            .create(&PostParams::default(), &obj)
            .await
            .expect("create filter object");
    }

    /// The filter's Ready condition once `accept(reason, message)` holds for it.
    async fn wait_ready_condition(
        &self,
        name: &str,
        accept: impl Fn(&str, &str) -> bool,
    ) -> (String, String) {
        let api = self.filters();
        support::wait_for(WAIT, || {
            let api = api.clone();
            let accept = &accept;
            async move {
                let o = api.get_opt(name).await.ok().flatten()?;
                let st = o.status?;
                let c = st.conditions.into_iter().find(|c| c.type_ == "Ready")?;
                accept(&c.reason, &c.message).then_some((c.reason, c.message))
            }
        })
        .await
    }

    /// The resync LISTs of sessions so far (page size 500; the credential check asks for 1).
    async fn session_lists(&self) -> usize {
        self.emu()
            .calls()
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
    async fn wait_session_lists(&self, from: usize, n: usize) -> usize {
        support::wait_for(WAIT, || async {
            let now = self.session_lists().await;
            (now >= from + n).then_some(now)
        })
        .await
    }

    async fn filter_deletes(&self, id: &str) -> usize {
        let suffix = format!("/traffic-mirror-filters/{id}");
        self.emu()
            .calls()
            .await
            .iter()
            .filter(|c| c["method"] == "DELETE" && path(c).ends_with(&suffix))
            .count()
    }

    /// A cloud session made directly in the emulator (no object), using filter `filter_id`.
    async fn cloud_session(&self, filter_id: &str) -> TrafficMirrorSession {
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
        self.cloud
            .create_session(&req)
            .await
            .expect("create cloud session")
    }
}

fn path(call: &Value) -> &str {
    call["path"].as_str().unwrap_or("")
}

#[tokio::test]
async fn a_delete_the_cloud_refuses_waits_for_the_next_list_not_a_retry_loop() {
    let env = Env::new("flt-refused").await;
    let op = env.operator();
    env.apply_filter("web").await;
    env.wait_ready_condition("web", |r, _| r == "Available")
        .await;
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
    env.wait_session_lists(0, 1).await;
    let session = env.cloud_session(&id).await;
    env.filters()
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete filter object");
    let (_, refused) = env
        .wait_ready_condition("web", |r, m| r == "InUse" && m.contains("VPC.1103"))
        .await;
    assert!(
        refused.contains(&session.id),
        "the cloud's message names the session: {refused}"
    );
    // A couple of resync intervals later: the LIST shows the session, and the DELETE is not retried.
    let lists = env.session_lists().await;
    env.wait_session_lists(lists, 2).await;
    let (_, waiting) = env
        .wait_ready_condition("web", |r, m| r == "InUse" && m.contains(&session.id))
        .await;
    assert!(waiting.contains("made-elsewhere"), "{waiting}");
    let deletes = env.filter_deletes(&id).await;
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
    let api = env.filters();
    support::wait_for(WAIT, || {
        let api = api.clone();
        async move { matches!(api.get_opt("web").await, Ok(None)).then_some(()) }
    })
    .await;
    let gone = env.cloud.show_filter(&id).await;
    assert!(
        gone.as_ref().is_err_and(|e| e.is_not_found()),
        "the cloud filter is gone: {gone:?}"
    );
    let deletes = env.filter_deletes(&id).await;
    assert!(
        deletes <= 3,
        "one refused DELETE (maybe two), then the one that succeeded: {deletes}"
    );
}
