//! Logs, metrics and readiness of the operator binary, driven as a user would: a full lifecycle of a
//! filter and a session (create, edit, delete) against the real API server and the emulator, then
//! the logs, events, `/metrics` and `/readyz` are checked. Every wait polls with a deadline.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::operator::{AK, CloudAccount, Operator, SK};
use traffic_mirror_operator::api::{TrafficMirrorFilter, TrafficMirrorSession};

const WAIT: Duration = Duration::from_secs(60);

struct Env {
    client: Client,
    ns: String,
    account: CloudAccount,
    dir: tempfile::TempDir,
}

impl Env {
    async fn new(prefix: &str) -> Env {
        let client = support::control_plane().client().await;
        support::install_crds(&client).await;
        let ns = support::test_namespace(&client, prefix).await;
        let account = CloudAccount::create(&client, &ns).await;
        Env {
            client,
            ns,
            account,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn operator(&self, format: &str) -> Operator {
        let log = self.dir.path().join(format!("operator-{format}.log"));
        Operator::start(&self.ns, "10s", &["--log-format", format], None, log)
    }

    /// Filter `f` with one rule, session `s` using it; both Ready; then an edit of each; then both
    /// deleted and gone.
    async fn lifecycle(&self) {
        let filters: Api<TrafficMirrorFilter> = Api::namespaced(self.client.clone(), &self.ns);
        let sessions: Api<TrafficMirrorSession> = Api::namespaced(self.client.clone(), &self.ns);
        let pc = &self.account.pc;
        let filter: TrafficMirrorFilter = serde_json::from_value(json!({
            "apiVersion": "vpc.hwcloud.dev/v1alpha1", "kind": "TrafficMirrorFilter",
            "metadata": {"name": "f"},
            "spec": {"providerConfigRef": {"name": pc}, "rules": [
                {"direction": "ingress", "priority": 10, "protocol": "TCP",
                 "destinationPortRange": "443"}]},
        }))
        .expect("filter manifest");
        filters
            .create(&PostParams::default(), &filter)
            .await
            .expect("create filter");
        let session: TrafficMirrorSession = serde_json::from_value(json!({
            "apiVersion": "vpc.hwcloud.dev/v1alpha1", "kind": "TrafficMirrorSession",
            "metadata": {"name": "s"},
            "spec": {"trafficMirrorFilterRef": {"name": "f"}, "trafficMirrorSources": ["eni-a"],
                     "trafficMirrorTargetId": "eni-t", "trafficMirrorTargetType": "eni",
                     "priority": 10, "providerConfigRef": {"name": pc}},
        }))
        .expect("session manifest");
        sessions
            .create(&PostParams::default(), &session)
            .await
            .expect("create session");
        wait_ready(&sessions, "s").await;
        let edit = Patch::Merge(json!({"spec": {"priority": 11}}));
        sessions
            .patch("s", &PatchParams::default(), &edit)
            .await
            .expect("edit");
        wait_ready(&sessions, "s").await;
        sessions
            .delete("s", &DeleteParams::default())
            .await
            .expect("delete session");
        filters
            .delete("f", &DeleteParams::default())
            .await
            .expect("delete filter");
        support::wait_for(WAIT, || async {
            let left = sessions
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .len()
                + filters.list(&ListParams::default()).await.ok()?.items.len();
            (left == 0).then_some(())
        })
        .await;
    }

    /// Every event's text in the namespace.
    async fn events(&self) -> String {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.ns);
        let list = events
            .list(&ListParams::default())
            .await
            .expect("list events");
        assert!(!list.items.is_empty(), "the operator recorded events");
        serde_json::to_string(&list.items).expect("events as JSON")
    }
}

async fn wait_ready<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + serde::Serialize,
{
    support::wait_for(WAIT, || async {
        let o = serde_json::to_value(api.get(name).await.ok()?).ok()?;
        let generation = o["metadata"]["generation"].clone();
        let status = &o["status"];
        let ready = status["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        (ready && status["observedGeneration"] == generation).then_some(())
    })
    .await
}

/// The admin bearer token the test API server accepts (first field of its token file).
fn kube_token() -> String {
    let cp = support::control_plane();
    let tokens = std::fs::read_to_string(cp.work_dir.join("tokens.csv")).expect("the token file");
    tokens.split(',').next().unwrap_or_default().to_string()
}

/// The metrics server's address, from the operator's start-up log line.
async fn metrics_url(op: &Operator) -> String {
    support::wait_for(WAIT, || async {
        op.logs()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["fields"]["message"] == "serving /metrics, /healthz, /readyz")
            .and_then(|v| {
                let addr = v["fields"]["addr"].as_str()?.to_string();
                // `Some(127.0.0.1:PORT)`
                let addr = addr.trim_start_matches("Some(").trim_end_matches(')');
                Some(format!("http://{addr}"))
            })
    })
    .await
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.expect("HTTP GET");
    let code = r.status().as_u16();
    (code, r.text().await.unwrap_or_default())
}

/// Series names (with their `_total`/`_bucket` suffixes dropped) that `/metrics` declares.
fn declared_series(metrics: &str) -> Vec<String> {
    let mut names: Vec<String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

/// Metric names in the table of docs/metrics.md, without a `_total` suffix (as `# TYPE` names them).
fn documented_series() -> Vec<String> {
    let section = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md"))
        .expect("docs/metrics.md");
    let mut names: Vec<String> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `tmo_"))
        .filter_map(|l| l.split('`').next())
        .map(|n| format!("tmo_{}", n.trim_end_matches("_total")))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn json_logs_carry_the_object_and_no_secret_and_metrics_match_the_docs() {
    let env = Env::new("obs-json").await;
    let op = env.operator("json");
    let url = metrics_url(&op).await;
    // Ready once the caches are synced; without leader election this replica leads.
    let (code, body) = support::wait_for(WAIT, || async {
        let (code, body) = get(&format!("{url}/readyz")).await;
        (code == 200).then_some((code, body))
    })
    .await;
    assert_eq!(code, 200);
    assert!(body.contains("leader"), "{body}");
    env.lifecycle().await;

    let logs = op.logs();
    for line in logs.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
    }
    // The reconcile span names the object on the lines logged inside it.
    let in_span = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["span"]["name"] == "reconcile")
        .collect::<Vec<_>>();
    assert!(
        in_span
            .iter()
            .any(|v| v["span"]["kind"] == "TrafficMirrorSession" && v["span"]["object"] == "s"),
        "a session reconcile logged inside its span"
    );
    assert!(
        in_span
            .iter()
            .filter(|v| v["span"]["kind"] != "ProviderConfig")
            .all(|v| v["span"]["namespace"] == env.ns.as_str()),
        "every namespaced reconcile span names the namespace"
    );
    // Never a secret: not the access key, the secret key, nor the API server token.
    let events = env.events().await;
    for (what, secret) in [
        ("AK", AK.to_string()),
        ("SK", SK.to_string()),
        ("token", kube_token()),
    ] {
        assert!(
            !logs.contains(&secret),
            "the {what} is in the operator's log"
        );
        assert!(!events.contains(&secret), "the {what} is in an event");
    }
    // Every series /metrics declares is in docs/metrics.md, and vice versa.
    let (code, metrics) = get(&format!("{url}/metrics")).await;
    assert_eq!(code, 200);
    // A labelled family appears once it has a sample: `tmo_reconcile_errors` only after a failure.
    let declared = declared_series(&metrics);
    let documented = documented_series();
    let undocumented: Vec<_> = declared
        .iter()
        .filter(|n| !documented.contains(n))
        .collect();
    assert!(
        undocumented.is_empty(),
        "not in docs/metrics.md: {undocumented:?}"
    );
    let missing: Vec<_> = documented
        .iter()
        .filter(|n| !declared.contains(n) && n.as_str() != "tmo_reconcile_errors")
        .collect();
    assert!(missing.is_empty(), "documented but not served: {missing:?}");
}

#[tokio::test]
async fn text_logs_have_no_colour_codes_in_a_file() {
    let env = Env::new("obs-text").await;
    let op = env.operator("text");
    env.lifecycle().await;
    let logs = op.logs();
    assert!(
        logs.contains("caches synced"),
        "the operator logged as text: {logs}"
    );
    assert!(
        !logs.contains('\u{1b}'),
        "escape sequences in a log written to a file"
    );
    for secret in [AK, SK] {
        assert!(!logs.contains(secret));
    }
}
