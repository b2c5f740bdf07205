//! What the end-to-end benches (`convergence`, `filters`) share: a cloud account wired into a test
//! namespace, the operator binary as a child process with its memory and CPU time, a watch that
//! records when each object generation was first seen Ready, and the reading of the emulator's call
//! log (call kinds, resync cycles).
//!
//! Included by each end-to-end bench as `#[path = "common/e2e.rs"] mod e2e;`, next to
//! `common/mod.rs` and `tests/support/mod.rs` (this file uses both, which `plan` does not include,
//! hence a file of its own). Each bench uses a different part of it, hence the `dead_code`
//! allowance.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::Value;
use traffic_mirror_operator::api::{ProviderConfig, TrafficMirrorFilter, TrafficMirrorSession};

use crate::support;

/// Deadline of the setup steps (operator start, ProviderConfig ready, watch synced).
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(120);

/// The cloud API budget (`qps`, `burst`) from `BENCH_QPS`, else `default_qps`; the burst is the
/// qps rounded up (as the ProviderConfig's default, 8 and 8).
pub fn budget_from_env(default_qps: f64) -> (f64, u32) {
    let qps: f64 = std::env::var("BENCH_QPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|q: &f64| *q > 0.0)
        .unwrap_or(default_qps);
    (qps, qps.ceil().clamp(1.0, 1000.0) as u32)
}

/// `1234 ms`.
pub fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

// ---------------------------------------------------------------------------------------------
// The cluster side: a namespace, a cloud account (emulator + Secret + ProviderConfig)
// ---------------------------------------------------------------------------------------------

/// A fresh namespace `<prefix>-<random>` with its own emulator and ProviderConfig.
pub struct Cluster {
    pub client: Client,
    pub ns: String,
    pub account: support::operator::CloudAccount,
}

impl Cluster {
    pub async fn new(cp: &support::ControlPlane, prefix: &str) -> Cluster {
        let client = cp.client().await;
        support::install_crds(&client).await;
        let ns = support::test_namespace(&client, prefix).await;
        let account = support::operator::CloudAccount::create(&client, &ns).await;
        let cluster = Cluster {
            client,
            ns,
            account,
        };
        cluster.set_budget().await;
        cluster
    }

    /// The ProviderConfig's cloud API budget: [`budget_from_env`] with an unthrottled default
    /// (1000 qps), since the emulator here does not throttle and these figures measure the
    /// operator, not the budget.
    async fn set_budget(&self) {
        self.set_budget_to(budget_from_env(1000.0)).await;
    }

    /// Sets the ProviderConfig's `spec.rateLimit` to `qps` and `burst`.
    pub async fn set_budget_to(&self, (qps, burst): (f64, u32)) {
        let pcs: Api<ProviderConfig> = Api::all(self.client.clone());
        let patch = serde_json::json!({"spec": {"rateLimit": {"qps": qps, "burst": burst}}});
        pcs.patch(
            &self.account.pc,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("set the ProviderConfig's budget");
    }

    /// Makes the emulator throttle and delay like the real gateway from now on: 10 calls/s per
    /// project, burst 10 (HTTP 429 beyond), and 50 ± 20 ms per call (`--rate-limit 10 --latency
    /// 50:20`).
    pub async fn throttle_like_gateway(&self) {
        self.emu().set_rate_limit(10.0, Some(10)).await;
        self.emu().set_latency(50, 20).await;
    }

    /// The namespaced API of `K` in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = kube::core::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// The emulator of the account.
    pub fn emu(&self) -> &support::Emulator {
        &self.account.emu
    }

    /// Waits until the operator reports the ProviderConfig Ready for its generation.
    pub async fn wait_provider_ready(&self) {
        let pcs: Api<ProviderConfig> = Api::all(self.client.clone());
        let name = self.account.pc.clone();
        support::wait_for(SETUP_TIMEOUT, || {
            let pcs = pcs.clone();
            let name = name.clone();
            async move {
                let pc = pcs.get_opt(&name).await.ok().flatten()?;
                let st = pc.status?;
                let ready = st.observed_generation == pc.metadata.generation
                    && st
                        .conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True");
                ready.then_some(())
            }
        })
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// The operator as a child process
// ---------------------------------------------------------------------------------------------

/// The operator binary as a child process (the integration tests' harness), plus what the benches
/// read off it: memory and CPU time.
pub struct Operator(pub support::operator::Operator);

impl Operator {
    /// Starts the operator for namespace `ns` with `--resync-interval resync` and `extra` flags;
    /// its log goes to `$TMPDIR/tmo-bench-<bench>-operator.log`.
    pub fn start(bench: &str, ns: &str, resync: &str, extra: &[&str]) -> Operator {
        let log = std::env::temp_dir().join(format!("tmo-bench-{bench}-operator.log"));
        let op = support::operator::Operator::start(ns, resync, extra, None, log);
        eprintln!("{bench}: operator log: {}", op.log.display());
        Operator(op)
    }

    pub fn pid(&self) -> u32 {
        self.0.pid()
    }

    /// `VmHWM` (peak RSS) and `VmRSS` (current RSS) in MiB.
    pub fn memory_mib(&self) -> (f64, f64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        (kib("VmHWM:") / 1024.0, kib("VmRSS:") / 1024.0)
    }

    /// User + system CPU time used so far.
    pub fn cpu_time(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // After "pid (comm) ": state is field 0, utime field 11, stime field 12 (clock ticks).
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // SAFETY: sysconf only reads a configuration value.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let hz = u64::try_from(hz).ok().filter(|h| *h > 0).unwrap_or(100);
        Duration::from_millis((ticks(11) + ticks(12)) * 1000 / hz)
    }

    /// Panics (with the end of the operator log) if the operator has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.0.child.try_wait() {
            panic!(
                "the operator exited ({status}); its log ends:\n{}",
                support::process::tail(&self.0.log, 40)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What the API server shows: a watch recording when each generation became Ready
// ---------------------------------------------------------------------------------------------

/// A kind whose status has a Ready condition for an observed generation and a cloud id.
pub trait Watched:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
    /// Whether the status says Ready=True for the current generation, and the cloud id it records.
    fn ready_and_id(&self) -> (bool, Option<String>);
}

fn ready_for(
    generation: Option<i64>,
    observed: Option<i64>,
    conditions: &[traffic_mirror_operator::api::Condition],
) -> bool {
    observed == generation
        && conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

impl Watched for TrafficMirrorSession {
    fn ready_and_id(&self) -> (bool, Option<String>) {
        let Some(st) = &self.status else {
            return (false, None);
        };
        let ready = ready_for(
            self.metadata.generation,
            st.observed_generation,
            &st.conditions,
        );
        (ready, st.session_id.clone())
    }
}

impl Watched for TrafficMirrorFilter {
    fn ready_and_id(&self) -> (bool, Option<String>) {
        let Some(st) = &self.status else {
            return (false, None);
        };
        let ready = ready_for(
            self.metadata.generation,
            st.observed_generation,
            &st.conditions,
        );
        (ready, st.filter_id.clone())
    }
}

#[derive(Default)]
pub struct Seen {
    /// (name, generation) -> when it was first seen Ready=True for that generation.
    ready_at: HashMap<(String, i64), Instant>,
    /// name -> the cloud id in its status.
    ids: HashMap<String, String>,
    /// Watch events (object changes) received after the initial list.
    changes: u64,
    /// Whether the initial list is done.
    synced: bool,
}

impl Seen {
    fn observe<K: Watched>(&mut self, o: &K, now: Instant) {
        let (Some(name), Some(generation)) = (o.meta().name.clone(), o.meta().generation) else {
            return;
        };
        let (ready, id) = o.ready_and_id();
        if let Some(id) = id {
            self.ids.insert(name.clone(), id);
        }
        if ready {
            self.ready_at.entry((name, generation)).or_insert(now);
        }
    }
}

/// A background watch on the objects of one `Api<K>`.
#[derive(Clone, Default)]
pub struct Tracker(Arc<Mutex<Seen>>);

impl Tracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Watches the objects of `api` in the background; returns once the initial list is done.
    pub async fn start<K: Watched>(bench: &'static str, api: Api<K>) -> Tracker {
        let tracker = Tracker::default();
        let t = tracker.clone();
        tokio::spawn(async move {
            let mut events =
                std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
            while let Some(event) = events.next().await {
                let now = Instant::now();
                match event {
                    Ok(watcher::Event::Apply(o)) => {
                        let mut seen = t.lock();
                        seen.changes += 1;
                        seen.observe(&o, now);
                    }
                    Ok(watcher::Event::InitApply(o)) => t.lock().observe(&o, now),
                    Ok(watcher::Event::InitDone) => t.lock().synced = true,
                    Ok(_) => {}
                    Err(e) => eprintln!("{bench}: watch error (retrying): {e}"),
                }
            }
        });
        support::wait_for(SETUP_TIMEOUT, || async {
            tracker.lock().synced.then_some(())
        })
        .await;
        tracker
    }

    /// When `name` was first seen Ready=True at `generation`.
    pub fn ready_at(&self, name: &str, generation: i64) -> Option<Instant> {
        self.lock()
            .ready_at
            .get(&(name.to_string(), generation))
            .copied()
    }

    /// The cloud id in `name`'s status.
    pub fn id(&self, name: &str) -> Option<String> {
        self.lock().ids.get(name).cloned()
    }

    /// Object changes seen after the initial list.
    pub fn changes(&self) -> u64 {
        self.lock().changes
    }

    /// Waits until every one of `names` has been seen Ready at `generation`; returns the latest
    /// of those moments.
    pub async fn wait_all_ready(
        &self,
        names: &[String],
        generation: i64,
        timeout: Duration,
    ) -> Instant {
        support::wait_for(timeout, || async {
            names
                .iter()
                .map(|name| self.ready_at(name, generation))
                .collect::<Option<Vec<Instant>>>()
                .and_then(|all| all.into_iter().max())
        })
        .await
    }
}

// ---------------------------------------------------------------------------------------------
// The emulator's call log
// ---------------------------------------------------------------------------------------------

/// A call's method and path shape, ids replaced by `{id}`, and for LISTs what the query was for:
/// `PUT /v3/{project}/vpc/traffic-mirror-sessions/{id}/add-sources` gives
/// `PUT traffic-mirror-sessions/{id}/add-sources`.
pub fn call_kind(call: &Value) -> String {
    let method = call["method"].as_str().unwrap_or("?");
    let path = call["path"].as_str().unwrap_or("");
    let query = call["query"].as_str().unwrap_or("");
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let Some(at) = segments
        .iter()
        .position(|s| s.starts_with("traffic-mirror-"))
    else {
        return format!("{method} {path}");
    };
    let mut shape = segments[at].to_string();
    if segments.len() > at + 1 {
        shape.push_str("/{id}");
    }
    for s in segments.iter().skip(at + 2) {
        shape.push('/');
        shape.push_str(s);
    }
    let what = if method == "GET" && segments.len() == at + 1 {
        match list_kind(query) {
            ListKind::Resync => " (LIST, unfiltered: resync, page 1)",
            ListKind::NextPage => " (LIST, unfiltered: resync, next page)",
            ListKind::Credentials => " (LIST ?limit=1: credential check)",
            ListKind::ByName => " (LIST ?name=: crash-safe create check)",
            ListKind::Other => " (LIST, other filter)",
        }
    } else {
        ""
    };
    format!("{method} {shape}{what}")
}

#[derive(Debug, PartialEq)]
pub enum ListKind {
    Resync,
    NextPage,
    Credentials,
    ByName,
    Other,
}

pub fn list_kind(query: &str) -> ListKind {
    let params: Vec<(&str, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    let has = |k: &str| params.iter().any(|(key, _)| *key == k);
    if has("name") {
        ListKind::ByName
    } else if has("marker") {
        ListKind::NextPage
    } else if params.iter().any(|(k, v)| *k == "limit" && *v == "1") {
        ListKind::Credentials
    } else if params.iter().all(|(k, _)| *k == "limit") {
        ListKind::Resync
    } else {
        ListKind::Other
    }
}

/// Whether `call` starts a resync: the first page of an unfiltered session LIST (every cycle
/// begins with it; the filter LIST of the cycle, when filters use the account, follows it).
pub fn is_resync_start(call: &Value) -> bool {
    call["method"] == "GET"
        && call["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("/traffic-mirror-sessions"))
        && list_kind(call["query"].as_str().unwrap_or("")) == ListKind::Resync
}

pub fn is_write(call: &Value) -> bool {
    call["method"] != "GET"
}

/// Calls grouped by kind, most frequent first.
pub fn by_kind(calls: &[Value]) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for c in calls {
        *counts.entry(call_kind(c)).or_default() += 1;
    }
    let mut v: Vec<(String, usize)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

pub fn call_time(call: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    call["at"]
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// Waits until the emulator has logged `n` resync starts; returns the log.
pub async fn wait_resync_starts(
    emu: &support::Emulator,
    n: usize,
    timeout: Duration,
) -> Vec<Value> {
    support::wait_for(timeout, || async {
        let calls = emu.calls().await;
        (calls.iter().filter(|c| is_resync_start(c)).count() >= n).then_some(calls)
    })
    .await
}

/// The calls of `cycles` whole resync cycles at steady state, each cycle from one resync start to
/// the next, after clearing the log and skipping the cycle in progress.
pub struct SteadyWindow {
    /// The calls of the `cycles` cycles.
    pub calls: Vec<Value>,
    /// Mean cycle period from the emulator's timestamps.
    pub period: Option<Duration>,
    /// Operator CPU time over the window (from the first resync start seen to the last).
    pub cpu: Duration,
    /// Object changes the tracker saw over the window.
    pub object_changes: u64,
}

/// Observes `cycles` resync cycles (see [`SteadyWindow`]).
pub async fn steady_window(
    emu: &support::Emulator,
    op: &Operator,
    tracker: &Tracker,
    cycles: usize,
    timeout: Duration,
) -> SteadyWindow {
    emu.clear_calls().await;
    wait_resync_starts(emu, 1, timeout).await;
    let cpu_start = op.cpu_time();
    let changes_start = tracker.changes();
    let calls = wait_resync_starts(emu, cycles + 1, timeout).await;
    let cpu = op.cpu_time().saturating_sub(cpu_start);
    let object_changes = tracker.changes() - changes_start;
    let starts: Vec<usize> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| is_resync_start(c))
        .map(|(i, _)| i)
        .collect();
    let from = starts.first().copied().unwrap_or(0);
    let to = starts.get(cycles).copied().unwrap_or(calls.len());
    let period = match (
        starts.first().and_then(|i| call_time(&calls[*i])),
        starts.get(cycles).and_then(|i| call_time(&calls[*i])),
    ) {
        (Some(a), Some(b)) => (b - a).to_std().ok().map(|d| d / cycles as u32),
        _ => None,
    };
    SteadyWindow {
        calls: calls[from..to].to_vec(),
        period,
        cpu,
        object_changes,
    }
}

/// A Markdown table of cloud calls by kind, with a total row: the count of each kind and the count
/// divided by `per` (objects, or resync cycles), under the column headings given.
pub fn calls_table(
    calls: &[(String, usize)],
    total: usize,
    (count_label, per_label, per): (&str, &str, f64),
) -> String {
    let mut t = super::common::Table::new(&["cloud call", count_label, per_label]);
    for (kind, count) in calls {
        t.row(vec![
            format!("`{kind}`"),
            count.to_string(),
            format!("{:.2}", *count as f64 / per),
        ]);
    }
    t.row(vec![
        "**total**".into(),
        total.to_string(),
        format!("{:.2}", total as f64 / per),
    ]);
    t.markdown()
}
