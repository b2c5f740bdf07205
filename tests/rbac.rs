//! Least privilege, proven. The operator runs as its own ServiceAccount with the RBAC of
//! `deploy/kustomize/base` (a token from the TokenRequest API, never an admin):
//!
//! - with every shipped grant, one workload (a ProviderConfig, a filter, a session that references
//!   the filter by name and whose first cloud creates fail, leader election on, and two
//!   TrafficMirrorSessionSets: one selecting a Node of the test, which makes a child, one whose
//!   stray child it deletes) ends Ready with no request refused;
//! - with any single (resource, verb) pair removed, the operator is refused exactly that request:
//!   its log names it (`cannot <verb> resource "<resource>"`). Removing pairs rather than whole
//!   rules is the stricter proof: every verb of every rule is needed, not just each rule. All the
//!   reduced operators run at once, each in its own namespace;
//! - the operator cannot read a Secret outside its credentials namespace, and a ProviderConfig
//!   naming one gets `Ready=False`, reason `SecretOutOfScope`, saying how to fix it.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use traffic_mirror_operator::api::{
    ProviderConfig, TrafficMirrorFilter, TrafficMirrorSession, TrafficMirrorSessionSet,
};

use support::Env;
use support::identity::{self, Atom, Grants, RoleKind};
use support::operator::{Operator, SECRET_NAME, SELECTOR_LABEL};

/// How long a workload may take to become Ready, or a refusal to show in the log.
const WAIT: Duration = Duration::from_secs(90);
/// Leader election flags of every operator here: the Lease verbs are exercised within a second.
const LEADER: [&str; 3] = ["--leader-elect=true", "--leader-elect-lease-duration", "3s"];

/// One operator in its own namespace ([`Env`]), as an identity with `grants`, on the standard
/// workload: the env's cloud account (whose first four session creates fail with a 500, so a
/// Warning event repeats and its series is patched), a filter, a session, two sets, and the
/// operator.
async fn start(prefix: &str, grants: &Grants) -> (Env, Operator) {
    let env = Env::builder(prefix)
        .resync("5m")
        .operator_args(&LEADER)
        .keep_setup_calls()
        .build()
        .await;
    let kubeconfig = identity::create(support::control_plane(), &env.client, &env.ns, grants).await;
    env.account
        .emu
        .fault(
            // Four failures over the three sessions created (`s`, and the sets' children `nodes-0`
            // and `stray-0`): at least one of them fails twice, so a Warning event repeats.
            json!({"method": "POST", "path_contains": "traffic-mirror-sessions",
                      "status": 500, "times": 4}),
        )
        .await;
    apply_workload(&env.client, &env.ns, &env.account.pc).await;
    apply_sets(&env).await;
    let op = env.operator_as(&kubeconfig);
    (env, op)
}

/// The operator's log with JSON/Debug escaping removed, so API server messages read as sent.
fn log_of(op: &Operator) -> String {
    op.logs().replace('\\', "")
}

/// A filter `f` with one rule and a session `s` that references it by name.
async fn apply_workload(client: &Client, ns: &str, pc: &str) {
    let filter: TrafficMirrorFilter = serde_json::from_value(json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1", "kind": "TrafficMirrorFilter",
        "metadata": {"name": "f"},
        "spec": {"providerConfigRef": {"name": pc}, "rules": [{
            "direction": "ingress", "priority": 10, "protocol": "TCP",
            "ethertype": "IPv4", "action": "accept"}]},
    }))
    .expect("filter manifest");
    Api::<TrafficMirrorFilter>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &filter)
        .await
        .expect("create the filter");
    let session: TrafficMirrorSession = serde_json::from_value(json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1", "kind": "TrafficMirrorSession",
        "metadata": {"name": "s"},
        "spec": {
            "trafficMirrorFilterRef": {"name": "f"},
            "trafficMirrorSources": ["eni-a"],
            "trafficMirrorTargetId": "eni-target",
            "trafficMirrorTargetType": "eni",
            "priority": 10,
            "providerConfigRef": {"name": pc},
        },
    }))
    .expect("session manifest");
    Api::<TrafficMirrorSession>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &session)
        .await
        .expect("create the session");
}

/// The Node of `env`'s test (cluster-scoped, so named and labelled after the namespace), with a
/// port for it in the emulator; the set `nodes` selecting it (its child is created: sessions
/// create); the set `stray` (tags nothing matches) and a session it owns that it deletes (sessions
/// delete). Both sets get a status (sets/status patch).
async fn apply_sets(env: &Env) {
    let ip = "10.250.0.1";
    let body = json!({"id": format!("port-{}", env.ns), "vpc_id": "vpc-r", "device_id": "srv-r",
        "device_owner": "compute:az1", "private_ips": [{"subnet_cidr_id": "s", "ip_address": ip}]});
    let url = format!("{}/_emulator/ports", env.emu().url);
    let status = reqwest::Client::new()
        .post(&url)
        .json(&body)
        .send()
        .await
        .expect("seed port")
        .status();
    assert!(status.is_success(), "seed port: {status}");
    let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(json!({
        "metadata": {"name": format!("{}-node", env.ns), "labels": {"tmo-test": env.ns}},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]},
    }))
    .expect("node manifest");
    Api::<k8s_openapi::api::core::v1::Node>::all(env.client.clone())
        .create(&PostParams::default(), &node)
        .await
        .expect("create the node");
    let sets: Api<TrafficMirrorSessionSet> = env.api();
    let template = json!({"trafficMirrorFilterRef": {"name": "f"}, "trafficMirrorTargetId": "eni-target",
        "trafficMirrorTargetType": "eni", "priority": 20, "providerConfigRef": {"name": env.account.pc}});
    for (name, sources) in [
        (
            "nodes",
            json!({"nodeSelector": {"matchLabels": {"tmo-test": env.ns}}}),
        ),
        (
            "stray",
            json!({"portTags": [{"key": "none", "values": ["none"]}]}),
        ),
    ] {
        let set: TrafficMirrorSessionSet = serde_json::from_value(json!({
            "apiVersion": "vpc.hwcloud.dev/v1alpha1", "kind": "TrafficMirrorSessionSet",
            "metadata": {"name": name}, "spec": {"sources": sources, "sessionTemplate": template},
        }))
        .expect("set manifest");
        sets.create(&PostParams::default(), &set)
            .await
            .expect("create the set");
    }
    let stray = sets.get("stray").await.expect("the stray set");
    let child: TrafficMirrorSession = serde_json::from_value(json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1", "kind": "TrafficMirrorSession",
        "metadata": {"name": "stray-0", "labels": {"vpc.hwcloud.dev/session-set": "stray"},
            "ownerReferences": [{"apiVersion": "vpc.hwcloud.dev/v1alpha1", "kind": "TrafficMirrorSessionSet",
                "name": "stray", "uid": stray.metadata.uid, "controller": true}]},
        "spec": {"trafficMirrorFilterRef": {"name": "f"}, "trafficMirrorSources": ["eni-stray"],
            "trafficMirrorTargetId": "eni-target", "trafficMirrorTargetType": "eni", "priority": 21,
            "providerConfigRef": {"name": env.account.pc}},
    }))
    .expect("stray child manifest");
    env.sessions()
        .create(&PostParams::default(), &child)
        .await
        .expect("create the stray child");
}

/// The `Ready` condition of an object's status as (status, reason, message).
fn ready_of(status: Option<Value>) -> Option<(String, String, String)> {
    let conditions = status?.get("conditions")?.as_array()?.clone();
    let c = conditions.iter().find(|c| c["type"] == "Ready")?;
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    Some((s("status"), s("reason"), s("message")))
}

async fn ready_pc(client: &Client, name: &str) -> Option<(String, String, String)> {
    let pc = Api::<ProviderConfig>::all(client.clone())
        .get(name)
        .await
        .ok()?;
    ready_of(serde_json::to_value(pc.status).ok())
}

async fn is_ready<K>(api: &Api<K>, name: &str) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let Ok(obj) = api.get(name).await else {
        return false;
    };
    let status = serde_json::to_value(&obj).ok().map(|v| v["status"].clone());
    ready_of(status).is_some_and(|(s, _, _)| s == "True")
}

/// What the API server says when it refuses `atom`, e.g.
/// `cannot patch resource "providerconfigs/status" in API group "vpc.hwcloud.dev"`.
fn refusal(atom: &Atom) -> String {
    format!(
        "cannot {} resource \"{}\" in API group \"{}\"",
        atom.verb, atom.resource, atom.group
    )
}

/// With everything shipped: the whole workload Ready, a repeated event patched, the Lease held,
/// and not one request refused.
async fn baseline(grants: &Grants) -> Result<(), String> {
    let (run, op) = start("rbac-all", grants).await;
    let (client, ns) = (&run.client, run.ns.as_str());
    let filters: Api<TrafficMirrorFilter> = Api::namespaced(client.clone(), ns);
    let sessions: Api<TrafficMirrorSession> = Api::namespaced(client.clone(), ns);
    let sets: Api<TrafficMirrorSessionSet> = Api::namespaced(client.clone(), ns);
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut missing = unmet(
        client,
        &run.account.pc,
        (&filters, &sessions, &sets),
        &events,
    )
    .await;
    while !missing.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(support::POLL_INTERVAL).await;
        missing = unmet(
            client,
            &run.account.pc,
            (&filters, &sessions, &sets),
            &events,
        )
        .await;
    }
    if !missing.is_empty() {
        return Err(format!(
            "the baseline never got there within {WAIT:?}; still missing: {missing:?}; log:\n{}",
            log_of(&op)
        ));
    }
    let log = log_of(&op);
    if !log.contains("acquired the leader lease") {
        return Err(format!("the baseline operator never led:\n{log}"));
    }
    if log.contains("forbidden") {
        return Err(format!("the shipped grants were refused something:\n{log}"));
    }
    Ok(())
}

/// What the baseline workload still lacks: each entry names one object or fact not there yet.
async fn unmet(
    client: &Client,
    pc: &str,
    (filters, sessions, sets): (
        &Api<TrafficMirrorFilter>,
        &Api<TrafficMirrorSession>,
        &Api<TrafficMirrorSessionSet>,
    ),
    events: &Api<Event>,
) -> Vec<&'static str> {
    let mut missing = Vec::new();
    if ready_pc(client, pc).await.is_none_or(|r| r.0 != "True") {
        missing.push("ProviderConfig Ready");
    }
    if !is_ready(filters, "f").await {
        missing.push("filter f Ready");
    }
    if !is_ready(sessions, "s").await {
        missing.push("session s Ready");
    }
    if !is_ready(sets, "nodes").await {
        missing.push("set nodes Ready");
    }
    if !is_ready(sets, "stray").await {
        missing.push("set stray Ready");
    }
    if !matches!(sessions.get_opt("stray-0").await, Ok(None)) {
        missing.push("stray child stray-0 deleted");
    }
    let repeated = events.list(&ListParams::default()).await.is_ok_and(|l| {
        l.items
            .iter()
            .any(|e| e.series.as_ref().is_some_and(|s| s.count >= 2))
    });
    if !repeated {
        missing.push("a repeated event");
    }
    missing
}

/// With `atom` removed: the operator's log shows the API server refusing exactly that.
async fn without(grants: &Grants, atom: Atom) -> Result<(), String> {
    let prefix = format!("rbac-{}-{}", atom.verb, atom.resource.replace('/', "-"));
    let (_run, op) = start(&prefix, &grants.without(&atom)).await;
    let wanted = refusal(&atom);
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if log_of(&op).contains(&wanted) {
            return Ok(());
        }
        tokio::time::sleep(support::POLL_INTERVAL * 4).await;
    }
    Err(format!(
        "without {atom:?} nothing was refused within {WAIT:?} (wanted {wanted:?}); log:\n{}",
        log_of(&op)
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_granted_verb_is_needed() {
    let grants = Grants::from_deploy();
    let atoms = grants.atoms();
    // The shipped set, so a rule added or dropped in deploy/ is noticed here.
    assert_eq!(atoms.len(), 30, "{atoms:#?}");
    // One task, every run concurrent: a run is mostly waiting on its operator.
    let reduced = atoms.into_iter().map(|atom| without(&grants, atom));
    let (all, reduced) = futures::join!(baseline(&grants), futures::future::join_all(reduced));
    let failures: Vec<String> = std::iter::once(all)
        .chain(reduced)
        .filter_map(Result::err)
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn secrets_are_granted_in_the_credentials_namespace_only() {
    let grants = Grants::from_deploy();
    for atom in grants.atoms() {
        assert!(
            atom.resource != "secrets" || atom.role == RoleKind::Credentials,
            "Secrets granted outside the credentials Role: {atom:?}"
        );
    }
    let secrets: Vec<String> = grants
        .atoms()
        .into_iter()
        .filter(|a| a.resource == "secrets")
        .map(|a| a.verb)
        .collect();
    assert_eq!(secrets, ["get", "list", "watch"]);
}

/// The Helm chart's RBAC templates carry the same rules as `deploy/kustomize/base`.
#[test]
fn helm_rules_match_kustomize() {
    let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/helm/traffic-mirror-operator/templates");
    let rules = |file: &str, kind: &str| -> Vec<Value> {
        let path = chart.join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        // Template lines hold no rule: drop them and parse the rest as plain YAML.
        let plain: String = text
            .lines()
            .filter(|l| !l.contains("{{"))
            .map(|l| format!("{l}\n"))
            .collect();
        serde_yaml::Deserializer::from_str(&plain)
            .map(|d| <Value as serde::Deserialize>::deserialize(d).expect("yaml"))
            .find(|m| m["kind"] == kind)
            .and_then(|m| m["rules"].as_array().cloned())
            .unwrap_or_else(|| panic!("{} holds no {kind} with rules", path.display()))
    };
    let deploy = Grants::from_deploy();
    assert_eq!(rules("clusterrole.yaml", "ClusterRole"), deploy.cluster);
    assert_eq!(rules("role-credentials.yaml", "Role"), deploy.credentials);
    assert_eq!(rules("role-leader-election.yaml", "Role"), deploy.leader);
}

#[tokio::test]
async fn a_secret_outside_the_credentials_namespace_is_out_of_reach() {
    let env = Env::builder("rbac-scope").keep_setup_calls().build().await;
    let (client, ns, account) = (env.client.clone(), env.ns.clone(), &env.account);
    let cp = support::control_plane();
    let elsewhere = support::test_namespace(&client, "rbac-elsewhere").await;
    let kubeconfig = identity::create(cp, &client, &ns, &Grants::from_deploy()).await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": SECRET_NAME},
        "stringData": {"accessKey": support::operator::AK, "secretKey": support::operator::SK},
    }))
    .expect("secret manifest");
    Api::<Secret>::namespaced(client.clone(), &elsewhere)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the Secret elsewhere");

    // The authorizer's word, and an actual read as the operator.
    let secrets = ("", "secrets", "get");
    assert!(identity::allowed(&client, &ns, secrets, Some(&ns)).await);
    assert!(!identity::allowed(&client, &ns, secrets, Some(&elsewhere)).await);
    assert!(!identity::allowed(&client, &ns, ("", "secrets", "list"), None).await);
    let operator = identity::client_from(&kubeconfig).await;
    Api::<Secret>::namespaced(operator.clone(), &ns)
        .get(SECRET_NAME)
        .await
        .expect("the operator reads the Secret in its credentials namespace");
    match Api::<Secret>::namespaced(operator, &elsewhere)
        .get(SECRET_NAME)
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("reading {elsewhere}/{SECRET_NAME} as the operator: {other:?}"),
    }

    // A ProviderConfig naming the Secret elsewhere: refused with the fix, while the one in scope
    // is Ready.
    let out = format!("{}-out", account.pc);
    let pc: ProviderConfig = serde_json::from_value(json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1", "kind": "ProviderConfig",
        "metadata": {"name": out, "labels": {SELECTOR_LABEL: ns}},
        "spec": {
            "region": "emulated-1", "projectId": support::operator::PROJECT,
            "endpoint": account.emu.url,
            "credentials": {"secretRef": {"namespace": elsewhere, "name": SECRET_NAME}},
        }
    }))
    .expect("provider config manifest");
    Api::<ProviderConfig>::all(client.clone())
        .patch(
            &out,
            &PatchParams::apply(support::FIELD_MANAGER).force(),
            &Patch::Apply(&pc),
        )
        .await
        .expect("apply the out-of-scope provider config");
    let dir = tempfile::tempdir().expect("tempdir");
    let op = Operator::start_as(&ns, "5m", &[], None, dir.path().join("op.log"), &kubeconfig);
    let (_, reason, message) = support::wait_for(WAIT, || async {
        ready_pc(&client, &out).await.filter(|r| r.0 == "False")
    })
    .await;
    assert_eq!(reason, "SecretOutOfScope", "{message}");
    for part in [
        format!(
            "Secret {elsewhere}/{SECRET_NAME} is outside the operator's credentials namespace {ns}"
        ),
        format!("move the Secret to namespace {ns}"),
        format!("--credentials-namespace {elsewhere}"),
    ] {
        assert!(
            message.contains(&part),
            "{message:?} should contain {part:?}"
        );
    }
    support::wait_for(WAIT, || async {
        ready_pc(&client, &account.pc)
            .await
            .filter(|r| r.0 == "True")
    })
    .await;
    // Refused before any request: the operator never even asked for the other namespace's Secret.
    let log = op.logs();
    assert!(!log.contains("forbidden"), "{log}");
}
