//! Leader election: two operator processes on one namespace against a real kube-apiserver and the
//! emulator. Exactly one holds the Lease and only it calls the cloud; SIGKILL of the leader hands
//! over within the lease duration (plus one standby poll); SIGTERM releases the Lease and exits
//! within a few seconds.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use support::operator::{CloudAccount, Operator};
use traffic_mirror_operator::api::TrafficMirrorSession;

const LEASE: &str = "tmo-leader";
/// Lease duration of the test operators.
const DURATION: Duration = Duration::from_secs(5);
const WAIT: Duration = Duration::from_secs(60);

fn start(ns: &str, dir: &std::path::Path, name: &str) -> Operator {
    Operator::start(
        ns,
        "5m",
        &[
            "--leader-elect=true",
            "--leader-elect-lease-name",
            LEASE,
            "--leader-elect-lease-duration",
            "5s",
            "--log-format",
            "json",
        ],
        None,
        dir.join(format!("{name}.log")),
    )
}

/// The `fields` of the first JSON log line whose message contains `message`.
fn log_fields(op: &Operator, message: &str) -> Option<Value> {
    op.logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| {
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(message))
        })
        .map(|v| v["fields"].clone())
}

/// The metrics address the operator logged (`addr: Some(127.0.0.1:PORT)`).
fn metrics_url(op: &Operator) -> Option<String> {
    let fields = log_fields(op, "serving /metrics")?;
    let addr = fields["addr"].as_str()?;
    let start = addr.find("127.0.0.1:")?;
    let addr: String = addr[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    Some(format!("http://{addr}/metrics"))
}

/// `(tmo_leader, sum of tmo_cloud_calls)` from the operator's /metrics.
async fn leader_and_calls(op: &Operator) -> Option<(i64, u64)> {
    let url = metrics_url(op)?;
    let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
    let mut leader = None;
    let mut calls = 0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ')?;
        if name == "tmo_leader" {
            leader = value.parse().ok();
        } else if name.starts_with("tmo_cloud_calls_total") {
            calls += value.parse::<u64>().ok()?;
        }
    }
    Some((leader?, calls))
}

async fn holder(client: &Client, ns: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    leases
        .get_opt(LEASE)
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

async fn create_session(client: &Client, ns: &str, account: &CloudAccount, name: &str) {
    let sessions: Api<TrafficMirrorSession> = Api::namespaced(client.clone(), ns);
    let manifest: TrafficMirrorSession = serde_json::from_value(json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1",
        "kind": "TrafficMirrorSession",
        "metadata": {"name": name},
        "spec": {
            "trafficMirrorFilterId": account.filter_id,
            "trafficMirrorSources": ["eni-a"],
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
}

async fn wait_ready(client: &Client, ns: &str, name: &str) {
    let sessions: Api<TrafficMirrorSession> = Api::namespaced(client.clone(), ns);
    support::wait_for(WAIT, || async {
        let o = sessions.get_opt(name).await.ok().flatten()?;
        let st = o.status?;
        (st.observed_generation == o.metadata.generation
            && st
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True"))
        .then_some(())
    })
    .await
}

/// The session creates (POSTs on traffic-mirror-sessions) in `calls`.
fn posts(calls: &[Value]) -> usize {
    calls
        .iter()
        .filter(|c| {
            c["method"] == "POST"
                && c["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with("/traffic-mirror-sessions"))
        })
        .count()
}

/// The operator's identity, from its log line "leader election: standing by ...".
fn identity(op: &Operator) -> Option<String> {
    log_fields(op, "leader election: standing by")?["identity"]
        .as_str()
        .map(str::to_string)
}

/// Two operators; returns them as (leader, standby) once exactly one leads.
async fn two_operators(client: &Client, ns: &str, dir: &std::path::Path) -> (Operator, Operator) {
    let a = start(ns, dir, "a");
    let b = start(ns, dir, "b");
    let (ia, ib) = support::wait_for(WAIT, || async { Some((identity(&a)?, identity(&b)?)) }).await;
    assert_ne!(ia, ib, "distinct identities");
    let leader_id = support::wait_for(WAIT, || async { holder(client, ns).await }).await;
    assert!(
        leader_id == ia || leader_id == ib,
        "holder {leader_id} is one of ours"
    );
    if leader_id == ia { (a, b) } else { (b, a) }
}

#[tokio::test]
async fn one_leader_calls_the_cloud_and_a_standby_takes_over_after_sigkill() {
    let client = support::control_plane().client().await;
    support::install_crds(&client).await;
    let ns = support::test_namespace(&client, "leader-kill").await;
    let account = CloudAccount::create(&client, &ns).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut leader, standby) = two_operators(&client, &ns, dir.path()).await;

    // Exactly one leads (metrics agree with the Lease); a session converges with one POST.
    account.emu.clear_calls().await;
    create_session(&client, &ns, &account, "s1").await;
    wait_ready(&client, &ns, "s1").await;
    assert_eq!(posts(&account.emu.calls().await), 1, "one POST");
    let (l, _) = support::wait_for(WAIT, || leader_and_calls(&leader)).await;
    let (s, standby_calls) = support::wait_for(WAIT, || leader_and_calls(&standby)).await;
    assert_eq!((l, s), (1, 0), "exactly one process leads");
    assert_eq!(standby_calls, 0, "the standby called no cloud API");

    // SIGKILL the leader: the standby takes over within the lease duration (plus its poll period
    // and the control plane's latency) and converges a new session.
    let standby_id = identity(&standby).unwrap();
    leader.child.kill().expect("SIGKILL the leader");
    let killed = Instant::now();
    let _ = leader.child.wait();
    support::wait_for(WAIT, || async {
        (holder(&client, &ns).await.as_deref() == Some(standby_id.as_str())).then_some(())
    })
    .await;
    let takeover = killed.elapsed();
    eprintln!("takeover after SIGKILL: {takeover:?}");
    assert!(
        takeover <= DURATION + Duration::from_secs(3),
        "takeover took {takeover:?} (lease {DURATION:?})"
    );
    account.emu.clear_calls().await;
    create_session(&client, &ns, &account, "s2").await;
    wait_ready(&client, &ns, "s2").await;
    assert_eq!(
        posts(&account.emu.calls().await),
        1,
        "the new leader creates s2 once and does not recreate s1"
    );
    let (s, calls) = support::wait_for(WAIT, || leader_and_calls(&standby)).await;
    assert_eq!(s, 1);
    assert!(calls > 0, "the new leader calls the cloud");
    assert!(
        standby.logs().contains("acquired the leader lease"),
        "{}",
        standby.logs()
    );
}

#[tokio::test]
async fn sigterm_releases_the_lease_and_exits_quickly() {
    let client = support::control_plane().client().await;
    support::install_crds(&client).await;
    let ns = support::test_namespace(&client, "leader-term").await;
    let account = CloudAccount::create(&client, &ns).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut leader, standby) = two_operators(&client, &ns, dir.path()).await;

    // A create in flight when SIGTERM arrives: the emulator holds the POST for 1.5 s.
    account
        .emu
        .fault(
            json!({"method": "POST", "path_contains": "traffic-mirror-sessions", "delay_ms": 1500}),
        )
        .await;
    create_session(&client, &ns, &account, "s1").await;
    let faults_url = format!("{}/_emulator/faults", account.emu.url);
    support::wait_for(WAIT, || async {
        let pending: Value = reqwest::get(&faults_url).await.ok()?.json().await.ok()?;
        let n = pending
            .as_array()
            .or_else(|| pending["faults"].as_array())?
            .len();
        (n == 0).then_some(()) // the POST arrived and is being held
    })
    .await;

    let standby_id = identity(&standby).unwrap();
    // SAFETY-free: libc::kill with a valid pid of our own child.
    let rc = unsafe { libc::kill(leader.pid() as i32, libc::SIGTERM) };
    assert_eq!(rc, 0, "send SIGTERM");
    let termed = Instant::now();
    let status = support::wait_for(Duration::from_secs(10), || {
        let exited = leader.child.try_wait().ok().flatten();
        async move { exited }
    })
    .await;
    let exit_after = termed.elapsed();
    assert!(
        status.success(),
        "clean exit: {status:?}\n{}",
        leader.logs()
    );
    // It finished the in-flight reconcile first: the held POST was answered to it and s1 is
    // Ready (written by the leader before it exited), created once.
    wait_ready(&client, &ns, "s1").await;
    let calls = account.emu.calls().await;
    assert_eq!(
        posts(&calls),
        1,
        "s1 created once (exit after {exit_after:?}): {calls:#?}\n--- leader\n{}\n--- standby\n{}",
        leader.logs(),
        standby.logs()
    );
    assert!(
        exit_after < Duration::from_secs(5) && exit_after >= Duration::from_millis(500),
        "exited after {exit_after:?}"
    );
    assert!(
        leader.logs().contains("released the leader lease"),
        "{}",
        leader.logs()
    );
    // The standby acquires on its next poll, long before the lease would have expired.
    support::wait_for(WAIT, || async {
        (holder(&client, &ns).await.as_deref() == Some(standby_id.as_str())).then_some(())
    })
    .await;
    let handover = termed.elapsed();
    eprintln!("SIGTERM: exit after {exit_after:?}, standby holds the lease after {handover:?}");
    assert!(
        handover < DURATION,
        "handover after SIGTERM took {handover:?}, less than the lease duration"
    );
    account.emu.clear_calls().await;
    create_session(&client, &ns, &account, "s2").await;
    wait_ready(&client, &ns, "s2").await;
    assert_eq!(
        posts(&account.emu.calls().await),
        1,
        "the new leader creates s2 once"
    );
}

#[tokio::test]
async fn a_leader_that_loses_its_lease_exits_at_once() {
    let client = support::control_plane().client().await;
    support::install_crds(&client).await;
    let ns = support::test_namespace(&client, "leader-lost").await;
    let _account = CloudAccount::create(&client, &ns).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut leader = start(&ns, dir.path(), "a");
    let id = support::wait_for(WAIT, || async { identity(&leader) }).await;
    support::wait_for(WAIT, || async {
        (holder(&client, &ns).await.as_deref() == Some(id.as_str())).then_some(())
    })
    .await;

    // Someone else takes the Lease (as a partitioned leader would find on its next renewal).
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let mut lease = leases.get(LEASE).await.expect("the lease");
    let spec = lease.spec.as_mut().expect("spec");
    spec.holder_identity = Some("someone-else".into());
    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    leases
        .replace(LEASE, &PostParams::default(), &lease)
        .await
        .expect("take the lease");
    let taken = Instant::now();

    // It notices on its next renewal (every duration/3) and exits with status 1, saying why.
    let status = support::wait_for(DURATION, || {
        let exited = leader.child.try_wait().ok().flatten();
        async move { exited }
    })
    .await;
    eprintln!("deposed leader exited after {:?}", taken.elapsed());
    assert_eq!(status.code(), Some(1), "{}", leader.logs());
    assert!(
        leader.logs().contains("lost the leader lease"),
        "{}",
        leader.logs()
    );
    assert_eq!(holder(&client, &ns).await.as_deref(), Some("someone-else"));
}
