//! End-to-end benchmark: the operator binary (release build) against a real kube-apiserver + etcd and
//! the VPC emulator, with N TrafficMirrorSessions (env `BENCH_SESSIONS`, default 100).
//!
//! It measures what the design promises:
//! - convergence: time from applying N objects until all are Ready=True, and the cloud calls it took
//!   (by method and kind);
//! - steady state: cloud calls per resync cycle (one paginated LIST per account, whatever N; no
//!   writes), compared with a design that GETs every session every interval (N reads per cycle);
//! - one-field edit latency (median, p95) and exactly one PUT per edit;
//! - the operator's memory (peak and current RSS) and CPU time.
//!
//! Run: `cargo bench --bench convergence` (with `TMO_CONTROL_PLANE_DIR` set to the directory that
//! `make control-plane` prints last, or the support builds the control plane). Prints a table and
//! writes it to `benches/results/convergence.md` (`convergence-n<N>.md` for another N). Without
//! `--bench` (as `cargo test --all-targets` runs bench targets) it does nothing: the integration
//! tests cover correctness.
//!
//! Waits poll (the emulator's call log, or an in-memory view fed by a watch) with deadlines; resync
//! cycles are counted from the unfiltered LIST calls the emulator logs, never assumed from sleeps.

#[path = "common/mod.rs"]
mod common;
#[path = "common/e2e.rs"]
mod e2e;
#[path = "common/floor.rs"]
mod floor;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use traffic_mirror_operator::api::TrafficMirrorSession;
use traffic_mirror_operator::cloud::models::ListSessionsQuery;

use e2e::{SETUP_TIMEOUT, by_kind, call_kind, is_resync_start, is_write, ms, wait_resync_starts};

/// Resync interval given to the operator.
const RESYNC: &str = "5s";
const RESYNC_INTERVAL: Duration = Duration::from_secs(5);
/// Default number of sessions (`BENCH_SESSIONS`).
const DEFAULT_SESSIONS: usize = 100;
/// Resync cycles observed at steady state.
const STEADY_CYCLES: usize = 3;
/// Sessions edited one after the other for the edit latency.
const EDITS: usize = 20;
/// Objects created in parallel while applying (like `kubectl apply` of a directory, a bit faster).
const APPLY_PARALLELISM: usize = 8;
/// Default number of sessions of the throttled mode (`BENCH_THROTTLED=1`).
const DEFAULT_THROTTLED_SESSIONS: usize = 200;
/// Default budget (qps) of the throttled mode: the ProviderConfig's default (8, burst 8).
const DEFAULT_THROTTLED_QPS: f64 = 8.0;
/// Edits, idle and one after the other, for the patch -> PUT latency (`BENCH_PUT_EDITS`).
const DEFAULT_PUT_EDITS: usize = 200;
/// Poll interval of the call log while waiting for an edit's PUT.
const PUT_POLL: Duration = Duration::from_millis(2);

/// How the bench runs: the budget, and whether the emulator throttles like the gateway.
struct Mode {
    throttled: bool,
    budget: (f64, u32),
    put_edits: usize,
}

fn main() {
    if !common::is_bench_run() {
        println!(
            "convergence: skipped without --bench (run `cargo bench --bench convergence`; the \
             integration tests cover correctness)"
        );
        return;
    }
    let throttled = std::env::var("BENCH_THROTTLED").is_ok_and(|v| v == "1");
    let default_sessions = if throttled {
        DEFAULT_THROTTLED_SESSIONS
    } else {
        DEFAULT_SESSIONS
    };
    let sessions = std::env::var("BENCH_SESSIONS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default_sessions);
    let mode = Mode {
        throttled,
        budget: e2e::budget_from_env(if throttled {
            DEFAULT_THROTTLED_QPS
        } else {
            1000.0
        }),
        put_edits: std::env::var("BENCH_PUT_EDITS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(DEFAULT_PUT_EDITS),
    };
    let concurrency = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .filter(|v| v.parse::<u16>().is_ok_and(|n| n > 0));
    let mut command = String::new();
    if throttled {
        command.push_str("BENCH_THROTTLED=1 ");
    }
    if let Ok(q) = std::env::var("BENCH_QPS") {
        command.push_str(&format!("BENCH_QPS={q} "));
    }
    if std::env::var("BENCH_FLOOR_FIRST").is_ok_and(|v| v == "1") {
        command.push_str("BENCH_FLOOR_FIRST=1 ");
    }
    if mode.put_edits != DEFAULT_PUT_EDITS {
        command.push_str(&format!("BENCH_PUT_EDITS={} ", mode.put_edits));
    }
    if sessions != default_sessions {
        command.push_str(&format!("BENCH_SESSIONS={sessions} "));
    }
    if let Some(c) = &concurrency {
        command.push_str(&format!("BENCH_CONCURRENCY={c} "));
    }
    command.push_str("cargo bench --bench convergence");
    let info = common::RunInfo::capture(command);

    eprintln!("convergence: starting the control plane (etcd + kube-apiserver)...");
    let cp = support::control_plane();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("build the tokio runtime");
    // The floor: the same N objects, the same budget and throttling, against the same control
    // plane and a fresh emulator, once the operator (and its emulator) are gone; with
    // `BENCH_FLOOR_FIRST=1` before the operator instead (to see what the order costs).
    let floor_first = std::env::var("BENCH_FLOOR_FIRST").is_ok_and(|v| v == "1");
    let run_floor = || {
        eprintln!("convergence: the floor, {sessions} sessions...");
        runtime.block_on(floor::run(
            cp,
            sessions,
            APPLY_PARALLELISM,
            mode.budget,
            mode.throttled,
            manifest,
        ))
    };
    // Warm-up, not measured: whichever run comes first on a freshly started kube-apiserver pays
    // about 2 s more for its creates (seen with BENCH_FLOOR_FIRST=1: the order flipped the
    // ratio), so one unthrottled floor run over the same N objects goes before both.
    eprintln!("convergence: warm-up (an unmeasured, unthrottled floor run)...");
    let warm = runtime.block_on(floor::run(
        cp,
        sessions,
        APPLY_PARALLELISM,
        (1000.0, 1000),
        false,
        manifest,
    ));
    eprintln!("convergence: warm-up took {}", e2e::ms(warm.time));
    let floor = floor_first.then(run_floor);
    let mut report = runtime.block_on(run(cp, sessions, concurrency, &mode));
    report.floor = Some(floor.unwrap_or_else(run_floor));
    report.floor_first = floor_first;
    let text = report.render(&info);
    println!("{text}");
    // The default size keeps the canonical file; other sizes get their own, so both can be kept.
    let mut name = if sessions == DEFAULT_SESSIONS {
        "convergence".to_string()
    } else {
        format!("convergence-n{sessions}")
    };
    if throttled {
        name = if sessions == DEFAULT_THROTTLED_SESSIONS {
            "convergence-throttled".to_string()
        } else {
            format!("convergence-throttled-n{sessions}")
        };
    }
    if floor_first {
        name.push_str("-floor-first");
    }
    match common::write_results(&name, &text) {
        Ok(path) => println!("written to {}", path.display()),
        Err(e) => eprintln!("could not write the results file: {e}"),
    }
    match common::write_json(&name, &report.json(&info)) {
        Ok(path) => println!("written to {}", path.display()),
        Err(e) => eprintln!("could not write the JSON results file: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The sessions
// ---------------------------------------------------------------------------------------------

fn session_name(i: usize) -> String {
    format!("s-{i:05}")
}

fn manifest(env: &e2e::Cluster, i: usize) -> TrafficMirrorSession {
    serde_json::from_value(json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1",
        "kind": "TrafficMirrorSession",
        "metadata": {"name": session_name(i)},
        "spec": {
            "trafficMirrorFilterId": env.account.filter_id,
            "trafficMirrorSources": [format!("eni-{i:05}-a"), format!("eni-{i:05}-b")],
            "trafficMirrorTargetId": "eni-target",
            "trafficMirrorTargetType": "eni",
            "priority": 10,
            "providerConfigRef": {"name": env.account.pc},
        }
    }))
    .expect("session manifest")
}

/// Everything measured, rendered by [`Report::render`].
struct Report {
    sessions: usize,
    concurrency: String,
    idle_rss_mib: f64,
    apply_time: Duration,
    converge_time: Duration,
    create_to_ready: Vec<Duration>,
    converge_calls: Vec<(String, usize)>,
    converge_calls_total: usize,
    converge_cpu: Duration,
    cloud_sessions: usize,
    steady_cycles: usize,
    steady_period: Option<Duration>,
    steady_calls: Vec<(String, usize)>,
    steady_calls_total: usize,
    steady_reads: usize,
    steady_writes: usize,
    steady_object_changes: u64,
    steady_cpu: Duration,
    edits: usize,
    edit_latency: Vec<Duration>,
    edit_puts: usize,
    edit_puts_ok: bool,
    edit_other_writes: usize,
    edit_notes: Vec<String>,
    edit_calls: Vec<(String, usize)>,
    peak_rss_mib: f64,
    rss_mib: f64,
    throttled: bool,
    budget: (f64, u32),
    /// Calls answered 429 during convergence and during the edits.
    converge_429: usize,
    edit_429: usize,
    /// Idle edits, one after the other: patch -> the PUT seen in the emulator's call log
    /// (Instant, bench side, includes the log polling), and patch (wall clock) -> the PUT's own
    /// timestamp in the log.
    put_latency: Vec<Duration>,
    put_latency_emu: Vec<Duration>,
    put_429: usize,
    /// Edits during a start-up backfill (throttled mode only).
    backfill: Option<Backfill>,
    floor: Option<floor::FloorResult>,
    /// Whether the floor ran before the operator (else after).
    floor_first: bool,
}

async fn run(
    cp: &'static support::ControlPlane,
    n: usize,
    concurrency: Option<String>,
    mode: &Mode,
) -> Report {
    let env = e2e::Cluster::new(cp, "bench-convergence").await;
    env.set_budget_to(mode.budget).await;
    if mode.throttled {
        env.throttle_like_gateway().await;
    }
    let tracker = e2e::Tracker::start("convergence", env.api::<TrafficMirrorSession>()).await;

    eprintln!(
        "convergence: starting the operator (namespace {})...",
        env.ns
    );
    let extra: Vec<&str> = concurrency
        .as_deref()
        .map(|c| vec!["--concurrency", c])
        .unwrap_or_default();
    let mut op = e2e::Operator::start("convergence", &env.ns, RESYNC, &extra);
    env.wait_provider_ready().await;
    // The operator is warm once its first resync LIST has filled the account's snapshot.
    wait_resync_starts(&env.account.emu, 1, SETUP_TIMEOUT).await;
    op.assert_running();
    let (_, idle_rss_mib) = op.memory_mib();

    // --- Convergence ------------------------------------------------------------------------
    eprintln!("convergence: applying {n} sessions...");
    env.account.emu.clear_calls().await;
    let cpu_before = op.cpu_time();
    let api: Api<TrafficMirrorSession> = env.api();
    let t0 = Instant::now();
    let created: Vec<(usize, Instant)> = futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let obj = manifest(&env, i);
            async move {
                api.create(&PostParams::default(), &obj)
                    .await
                    .map(|_| (i, Instant::now()))
            }
        })
        .buffer_unordered(APPLY_PARALLELISM)
        .try_collect()
        .await
        .expect("create the session objects");
    let apply_time = t0.elapsed();
    let names: Vec<String> = (0..n).map(session_name).collect();
    let converge_timeout = Duration::from_secs(120) + Duration::from_millis(500 * n as u64);
    let last_ready = tracker.wait_all_ready(&names, 1, converge_timeout).await;
    let converge_cpu = op.cpu_time().saturating_sub(cpu_before);
    let converge_time = last_ready.duration_since(t0);
    let mut create_to_ready: Vec<Duration> = created
        .iter()
        .filter_map(|(i, at)| {
            tracker
                .ready_at(&session_name(*i), 1)
                .map(|r| r.saturating_duration_since(*at))
        })
        .collect();
    create_to_ready.sort();
    let calls = env.account.emu.calls().await;
    let converge_calls = by_kind(&calls);
    let converge_calls_total = calls.len();
    let converge_429 = calls.iter().filter(|c| c["throttled"] == true).count();
    let cloud_sessions = env
        .account
        .cloud
        .list_all_sessions(ListSessionsQuery::default())
        .await
        .expect("list the cloud sessions")
        .len();
    op.assert_running();

    // --- Steady state ------------------------------------------------------------------------
    eprintln!("convergence: all Ready; observing {STEADY_CYCLES} resync cycles...");
    let steady_timeout = RESYNC_INTERVAL * (STEADY_CYCLES as u32 + 3) + Duration::from_secs(60);
    let steady = e2e::steady_window(env.emu(), &op, &tracker, STEADY_CYCLES, steady_timeout).await;
    let window = &steady.calls;
    let (steady_period, steady_cpu, steady_object_changes) =
        (steady.period, steady.cpu, steady.object_changes);
    let steady_calls = by_kind(window);
    let steady_writes = window.iter().filter(|c| is_write(c)).count();
    let steady_reads = window.len() - steady_writes;
    op.assert_running();

    // --- One-field edits ---------------------------------------------------------------------
    let edits = EDITS.min(n);
    eprintln!("convergence: editing spec.priority of {edits} sessions, one at a time...");
    env.account.emu.clear_calls().await;
    let mut edit_latency = Vec::with_capacity(edits);
    let mut edited_ids = BTreeSet::new();
    for i in 0..edits {
        let name = session_name(i);
        let id = tracker
            .id(&name)
            .expect("status.sessionId of a Ready session");
        edited_ids.insert(id);
        let t = Instant::now();
        let o = api
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": {"priority": 1000 + i}})),
            )
            .await
            .expect("patch spec.priority");
        let generation = o.metadata.generation.expect("metadata.generation");
        let ready = support::wait_for(Duration::from_secs(60), || async {
            tracker.ready_at(&name, generation)
        })
        .await;
        edit_latency.push(ready.saturating_duration_since(t));
    }
    edit_latency.sort();
    // One whole resync cycle after the last edit: a redundant PUT (say, from a stale snapshot)
    // would show up in it.
    let before = env
        .account
        .emu
        .calls()
        .await
        .iter()
        .filter(|c| is_resync_start(c))
        .count();
    let calls = wait_resync_starts(&env.account.emu, before + 2, steady_timeout).await;
    let puts: Vec<&Value> = calls
        .iter()
        .filter(|c| call_kind(c) == "PUT traffic-mirror-sessions/{id}")
        .collect();
    let mut edit_notes = Vec::new();
    let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
    for p in &puts {
        let id = p["path"]
            .as_str()
            .and_then(|s| s.rsplit('/').next())
            .unwrap_or("")
            .to_string();
        *per_id.entry(id).or_default() += 1;
        let keys: Vec<String> = p["body"]["traffic_mirror_session"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        if keys != ["priority"] {
            edit_notes.push(format!("a PUT carried fields {keys:?}, not just priority"));
        }
    }
    let edit_puts_ok = puts.len() == edits
        && per_id.len() == edits
        && per_id.keys().all(|id| edited_ids.contains(id))
        && edit_notes.is_empty();
    let edit_other_writes = calls
        .iter()
        .filter(|c| is_write(c) && call_kind(c) != "PUT traffic-mirror-sessions/{id}")
        .count();
    let edit_429 = calls.iter().filter(|c| c["throttled"] == true).count();
    op.assert_running();

    // --- Idle edits: patch -> PUT at the emulator ---------------------------------------------
    eprintln!(
        "convergence: {} idle edits, patch -> PUT at the emulator...",
        mode.put_edits
    );
    let mut put_latency = Vec::with_capacity(mode.put_edits);
    let mut put_latency_emu = Vec::with_capacity(mode.put_edits);
    let mut put_429 = 0;
    for k in 0..mode.put_edits {
        let name = session_name(k % n);
        let edit = patch_to_put(&env, &tracker, &name, 2000 + k as i64, true).await;
        put_latency.push(edit.seen);
        put_latency_emu.extend(edit.at_emulator);
        put_429 += edit.throttled;
    }
    put_latency.sort();
    put_latency_emu.sort();
    op.assert_running();

    let (peak_rss_mib, rss_mib) = op.memory_mib();
    let backfill = if mode.throttled {
        drop(op);
        Some(edits_during_backfill(&env, &tracker, n).await)
    } else {
        None
    };
    Report {
        sessions: n,
        concurrency: concurrency.unwrap_or_else(|| "8 (default)".into()),
        idle_rss_mib,
        apply_time,
        converge_time,
        create_to_ready,
        converge_calls,
        converge_calls_total,
        converge_cpu,
        cloud_sessions,
        steady_cycles: STEADY_CYCLES,
        steady_period,
        steady_calls,
        steady_calls_total: window.len(),
        steady_reads,
        steady_writes,
        steady_object_changes,
        steady_cpu,
        edits,
        edit_latency,
        edit_puts: puts.len(),
        edit_puts_ok,
        edit_other_writes,
        edit_notes,
        edit_calls: by_kind(&calls),
        peak_rss_mib,
        rss_mib,
        throttled: mode.throttled,
        budget: mode.budget,
        converge_429,
        edit_429,
        put_latency,
        put_latency_emu,
        put_429,
        backfill,
        floor: None,
        floor_first: false,
    }
}

/// One edit's patch -> PUT: when the bench saw the PUT in the call log, when the emulator stamped
/// it, and the calls answered 429 meanwhile.
struct PutTiming {
    seen: Duration,
    at_emulator: Option<Duration>,
    throttled: usize,
}

/// Patches `spec.priority` of `name` and waits for its PUT at the emulator (polling the call log).
/// With `clear`, the call log is cleared first (idle edits); without, the PUT is the first one for
/// the id after the patch (a backfill is writing the log meanwhile).
async fn patch_to_put(
    env: &e2e::Cluster,
    tracker: &e2e::Tracker,
    name: &str,
    priority: i64,
    clear: bool,
) -> PutTiming {
    let api: Api<TrafficMirrorSession> = env.api();
    let id = tracker
        .id(name)
        .expect("status.sessionId of a Ready session");
    if clear {
        env.account.emu.clear_calls().await;
    }
    let skip = env.account.emu.calls().await.len();
    let wall = chrono::Utc::now();
    let t = Instant::now();
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"priority": priority}})),
    )
    .await
    .expect("patch spec.priority");
    let deadline = t + Duration::from_secs(60);
    loop {
        let calls = env.account.emu.calls().await;
        let after = calls.get(skip..).unwrap_or_default();
        let put = after.iter().find(|c| {
            c["method"] == "PUT"
                && c["throttled"] != true
                && c["path"].as_str().is_some_and(|p| p.ends_with(&id))
        });
        if let Some(put) = put {
            return PutTiming {
                seen: t.elapsed(),
                at_emulator: e2e::call_time(put).and_then(|at| (at - wall).to_std().ok()),
                throttled: after.iter().filter(|c| c["throttled"] == true).count(),
            };
        }
        assert!(Instant::now() < deadline, "no PUT for the edit of {name}");
        tokio::time::sleep(PUT_POLL).await;
    }
}

/// Sessions of the backfill phase (`BENCH_THROTTLED=1`).
const BACKFILL: usize = 200;

/// Edits during a backfill under the budget: [`BACKFILL`] new sessions are applied while no
/// operator runs, then a new operator starts (so they are its start-up backfill, the bulk lane)
/// and the first sessions are edited one after the other until the backfill is done.
struct Backfill {
    sessions: usize,
    time: Duration,
    edits: Vec<Duration>,
    creates: usize,
    throttled: usize,
}

async fn edits_during_backfill(env: &e2e::Cluster, tracker: &e2e::Tracker, n: usize) -> Backfill {
    eprintln!("convergence: {BACKFILL} more sessions, then a new operator backfills them...");
    let api: Api<TrafficMirrorSession> = env.api();
    let names: Vec<String> = (n..n + BACKFILL).map(session_name).collect();
    for i in n..n + BACKFILL {
        api.create(&PostParams::default(), &manifest(env, i))
            .await
            .expect("create a backfill session");
    }
    env.account.emu.clear_calls().await;
    let started = Instant::now();
    let mut op = e2e::Operator::start("convergence-backfill", &env.ns, RESYNC, &[]);
    let mut edits = vec![];
    let mut throttled = 0;
    let done = |t: &e2e::Tracker| names.iter().all(|name| t.ready_at(name, 1).is_some());
    while !done(tracker) && started.elapsed() < Duration::from_secs(600) {
        let name = session_name(edits.len() % n.min(50));
        let edit = patch_to_put(env, tracker, &name, 3000 + edits.len() as i64, false).await;
        edits.push(edit.seen);
        throttled += edit.throttled;
    }
    let time = tracker
        .wait_all_ready(&names, 1, Duration::from_secs(600))
        .await
        - started;
    op.assert_running();
    let creates = env
        .account
        .emu
        .calls()
        .await
        .iter()
        .filter(|c| c["method"] == "POST" && c["status"] == 201)
        .count();
    edits.sort();
    Backfill {
        sessions: BACKFILL,
        time,
        edits,
        creates,
        throttled,
    }
}

impl Report {
    fn render(&self, info: &common::RunInfo) -> String {
        let n = self.sessions;
        let cycles = self.steady_cycles as f64;
        let q = |v: &[Duration], p: f64| common::quantile(v, p).map_or("n/a".into(), ms);
        let mut s = String::from(
            "# Benchmark: end-to-end convergence (operator + kube-apiserver + emulator)\n\n",
        );
        s.push_str(&info.markdown());
        s.push_str(&format!(
            "- Setup: {n} TrafficMirrorSessions (one ProviderConfig), operator release build, \
             `--resync-interval {RESYNC}`, `--concurrency {}`; real etcd + kube-apiserver and the \
             VPC emulator on the same machine\n",
            self.concurrency
        ));
        s.push_str(&format!(
            "- Cloud API budget (ProviderConfig `rateLimit`, and the floor's token bucket): {} \
             qps, burst {}; emulator: {}\n\n",
            self.budget.0,
            self.budget.1,
            if self.throttled {
                "throttles like the gateway, 10 calls/s burst 10 (429 beyond), 50 ± 20 ms per call"
            } else {
                "no throttling, no added latency"
            }
        ));

        let mut t = common::Table::new(&["measure", "value"]);
        t.row(vec![
            format!("apply {n} objects ({APPLY_PARALLELISM} in parallel)"),
            ms(self.apply_time),
        ]);
        t.row(vec![
            format!("apply -> all {n} Ready=True"),
            ms(self.converge_time),
        ]);
        t.row(vec![
            "last object created -> all Ready=True".into(),
            ms(self.converge_time.saturating_sub(self.apply_time)),
        ]);
        t.row(vec![
            "sessions/second".into(),
            format!("{:.1}", n as f64 / self.converge_time.as_secs_f64()),
        ]);
        t.row(vec![
            "per session, create -> Ready: median / p95 / max".into(),
            format!(
                "{} / {} / {}",
                q(&self.create_to_ready, 0.5),
                q(&self.create_to_ready, 0.95),
                q(&self.create_to_ready, 1.0)
            ),
        ]);
        t.row(vec![
            "cloud sessions afterwards".into(),
            self.cloud_sessions.to_string(),
        ]);
        t.row(vec![
            "operator CPU time during convergence".into(),
            ms(self.converge_cpu),
        ]);
        t.row(vec![
            "cloud calls answered 429 during convergence".into(),
            self.converge_429.to_string(),
        ]);
        s.push_str("## Convergence\n\n");
        s.push_str(&t.markdown());

        if let Some(f) = &self.floor {
            s.push_str(&format!(
                "\n## The floor (same run, same N, same budget, fresh emulator; it ran {})\n\n\
                 A program doing only the unavoidable work per session: one cloud create and one \
                 status write (server-side apply of `sessionId` and `Ready=True`), {} objects in \
                 flight, every cloud call through a token bucket at the budget above, the \
                 objects applied the same way; timed the same way (first create -> all seen \
                 Ready=True by a watch). An unmeasured, unthrottled floor run over the same N \
                 objects warms the API server up before both.\n\n",
                if self.floor_first {
                    "before the operator"
                } else {
                    "after the operator"
                },
                floor::CONCURRENCY
            ));
            let mut t = common::Table::new(&["measure", "value"]);
            t.row(vec![
                format!("operator: apply -> all {n} Ready=True"),
                ms(self.converge_time),
            ]);
            t.row(vec![
                format!("floor: apply -> all {n} Ready=True"),
                ms(f.time),
            ]);
            t.row(vec![
                format!("operator run: apply {n} objects / floor run: apply {n} objects"),
                format!("{} / {}", ms(self.apply_time), ms(f.apply_time)),
            ]);
            t.row(vec![
                "ratio operator / floor".into(),
                format!("{:.2}", self.ratio().unwrap_or(f64::NAN)),
            ]);
            t.row(vec![
                "floor: cloud calls (429s) / retries".into(),
                format!("{} ({}) / {}", f.cloud_calls, f.throttled, f.retries),
            ]);
            s.push_str(&t.markdown());
        }

        let calls = e2e::calls_table(
            &self.converge_calls,
            self.converge_calls_total,
            ("count", "per session", n as f64),
        );
        s.push_str(&format!(
            "\nCloud calls from the first create until all were Ready (resync LISTs that fell in \
             the window included):\n\n{calls}"
        ));

        s.push_str(&format!(
            "\n## Steady state ({} resync cycles, all {n} sessions in sync)\n\n",
            self.steady_cycles
        ));
        s.push_str(&e2e::calls_table(
            &self.steady_calls,
            self.steady_calls_total,
            ("total", "per cycle", cycles),
        ));
        let mut t = common::Table::new(&["per resync cycle", "value"]);
        t.row(vec![
            "measured cycle period (from the emulator's timestamps)".into(),
            self.steady_period.map_or("n/a".into(), ms),
        ]);
        t.row(vec![
            "cloud reads, this operator".into(),
            format!("{:.2}", self.steady_reads as f64 / cycles),
        ]);
        t.row(vec![
            "cloud reads, a GET-every-session-every-interval design".into(),
            format!("{n} (= N)"),
        ]);
        t.row(vec![
            "cloud writes".into(),
            format!("{:.2}", self.steady_writes as f64 / cycles),
        ]);
        t.row(vec![
            "TrafficMirrorSession object changes (status writes)".into(),
            format!("{:.2}", self.steady_object_changes as f64 / cycles),
        ]);
        t.row(vec![
            "operator CPU time".into(),
            ms(self.steady_cpu / self.steady_cycles.max(1) as u32),
        ]);
        s.push('\n');
        s.push_str(&t.markdown());

        s.push_str(&format!(
            "\n## One-field edits ({} sessions, `spec.priority`, one after the other)\n\n",
            self.edits
        ));
        let mut t = common::Table::new(&["measure", "value"]);
        t.row(vec![
            "patch -> Ready for the new generation: median / p95 / max".into(),
            format!(
                "{} / {} / {}",
                q(&self.edit_latency, 0.5),
                q(&self.edit_latency, 0.95),
                q(&self.edit_latency, 1.0)
            ),
        ]);
        t.row(vec![
            "PUTs (until one full resync cycle after the last edit)".into(),
            format!(
                "{} for {} edits: {}",
                self.edit_puts,
                self.edits,
                if self.edit_puts_ok {
                    "exactly one per edited session, each carrying only `priority`"
                } else {
                    "NOT one per edit (see notes)"
                }
            ),
        ]);
        t.row(vec![
            "other cloud writes in that time".into(),
            self.edit_other_writes.to_string(),
        ]);
        s.push_str(&t.markdown());
        for note in &self.edit_notes {
            s.push_str(&format!("\n- {note}\n"));
        }
        let mut t = common::Table::new(&["cloud call", "count", "per edit"]);
        for (kind, count) in &self.edit_calls {
            t.row(vec![
                format!("`{kind}`"),
                count.to_string(),
                format!("{:.2}", *count as f64 / self.edits.max(1) as f64),
            ]);
        }
        s.push_str(&format!(
            "\nCloud calls from the first edit until one full resync cycle after the last (the \
             resync and credential-check LISTs of those cycles included):\n\n{}",
            t.markdown()
        ));

        s.push_str(&format!(
            "\n## Idle edits: patch -> PUT at the emulator ({} edits, one after the other)\n\n\
             `spec.priority` patched on the sessions in turn, each edit after the previous one's \
             PUT; the PUT found by polling the emulator's call log every {} ms (bench side, \
             `Instant`), and also from the PUT's own timestamp in the log against the wall clock \
             at the patch (same machine clock, no polling delay).\n\n",
            self.put_latency.len(),
            PUT_POLL.as_millis()
        ));
        let mut t = common::Table::new(&["measure", "p50", "p99", "max"]);
        t.row(vec![
            "patch -> PUT seen in the call log (Instant)".into(),
            q(&self.put_latency, 0.5),
            q(&self.put_latency, 0.99),
            q(&self.put_latency, 1.0),
        ]);
        t.row(vec![
            "patch -> PUT's timestamp at the emulator".into(),
            q(&self.put_latency_emu, 0.5),
            q(&self.put_latency_emu, 0.99),
            q(&self.put_latency_emu, 1.0),
        ]);
        s.push_str(&t.markdown());
        s.push_str(&format!(
            "\nCalls answered 429: {} during the {} one-field edits above, {} during these edits.\n",
            self.edit_429, self.edits, self.put_429
        ));

        if let Some(b) = &self.backfill {
            s.push_str(&b.markdown());
        }
        s.push_str("\n## Operator memory\n\n");
        let mut t = common::Table::new(&["measure", "MiB"]);
        t.row(vec![
            "RSS when idle, before the sessions (VmRSS)".into(),
            format!("{:.1}", self.idle_rss_mib),
        ]);
        t.row(vec![
            format!("peak RSS at the end, {n} sessions (VmHWM)"),
            format!("{:.1}", self.peak_rss_mib),
        ]);
        t.row(vec![
            format!("current RSS at the end, {n} sessions (VmRSS)"),
            format!("{:.1}", self.rss_mib),
        ]);
        s.push_str(&t.markdown());
        s
    }
}

impl Report {
    /// Operator convergence time over the floor's.
    fn ratio(&self) -> Option<f64> {
        self.floor
            .as_ref()
            .map(|f| self.converge_time.as_secs_f64() / f.time.as_secs_f64())
    }

    /// The figures as JSON (`benches/results/<name>.json`).
    fn json(&self, info: &common::RunInfo) -> Value {
        let secs = |d: Duration| d.as_secs_f64();
        let q = |v: &[Duration], p: f64| common::quantile(v, p).map(|d| d.as_secs_f64() * 1000.0);
        json!({
            "bench": "convergence",
            "run": info.json(),
            "n": self.sessions,
            "concurrency": self.concurrency,
            "throttled": self.throttled,
            "emulator": if self.throttled {
                json!({"rate_limit_rps": 10, "burst": 10, "latency_ms": 50, "jitter_ms": 20})
            } else {
                Value::Null
            },
            "budget": {"qps": self.budget.0, "burst": self.budget.1},
            "floor_ran": if self.floor_first { "before the operator" } else { "after the operator" },
            "figures": {
                "operator_apply_s": secs(self.apply_time),
                "operator_apply_to_all_ready_s": secs(self.converge_time),
                "floor_apply_to_all_ready_s": self.floor.as_ref().map(|f| secs(f.time)),
                "floor_apply_s": self.floor.as_ref().map(|f| secs(f.apply_time)),
                "ratio_operator_over_floor": self.ratio(),
                "floor_cloud_calls": self.floor.as_ref().map(|f| f.cloud_calls),
                "floor_429": self.floor.as_ref().map(|f| f.throttled),
                "floor_retries": self.floor.as_ref().map(|f| f.retries),
                "operator_cloud_calls_during_convergence": self.converge_calls_total,
                "operator_429_during_convergence": self.converge_429,
                "operator_429_during_edits": self.edit_429 + self.put_429,
                "create_to_ready_ms": {
                    "p50": q(&self.create_to_ready, 0.5),
                    "p95": q(&self.create_to_ready, 0.95),
                },
                "edit_to_ready_ms": {
                    "edits": self.edits,
                    "p50": q(&self.edit_latency, 0.5),
                    "p95": q(&self.edit_latency, 0.95),
                },
                "edit_patch_to_put_ms": {
                    "edits": self.put_latency.len(),
                    "p50": q(&self.put_latency, 0.5),
                    "p99": q(&self.put_latency, 0.99),
                    "max": q(&self.put_latency, 1.0),
                },
                "edit_patch_to_put_emulator_timestamp_ms": {
                    "edits": self.put_latency_emu.len(),
                    "p50": q(&self.put_latency_emu, 0.5),
                    "p99": q(&self.put_latency_emu, 0.99),
                    "max": q(&self.put_latency_emu, 1.0),
                },
                "edits_during_backfill": self.backfill.as_ref().map(Backfill::json),
                "steady_calls_per_cycle": self.steady_calls_total as f64 / self.steady_cycles.max(1) as f64,
                "rss_mib": {"idle": self.idle_rss_mib, "peak": self.peak_rss_mib, "end": self.rss_mib},
            }
        })
    }
}

impl Backfill {
    fn markdown(&self) -> String {
        let q = |v: &[Duration], p: f64| common::quantile(v, p).map(ms).unwrap_or_default();
        let mut t = common::Table::new(&["measure", "value"]);
        t.row(vec![
            format!(
                "a new operator: start -> all {} backfill sessions Ready",
                self.sessions
            ),
            ms(self.time),
        ]);
        t.row(vec![
            "creates during the backfill".into(),
            self.creates.to_string(),
        ]);
        t.row(vec![
            format!(
                "edits of Ready sessions meanwhile ({} one after the other)",
                self.edits.len()
            ),
            format!(
                "patch -> PUT p50 {} / p99 {} / max {}",
                q(&self.edits, 0.5),
                q(&self.edits, 0.99),
                q(&self.edits, 1.0)
            ),
        ]);
        t.row(vec![
            "calls answered 429 meanwhile".into(),
            self.throttled.to_string(),
        ]);
        format!(
            "\n## Edits during a start-up backfill under the budget\n\nThe operator is stopped, {} \
             more sessions are applied, a new operator starts (they are its start-up backfill: the \
             bulk lane), and Ready sessions are edited one after the other until the backfill is \
             done; patch -> PUT as above (first PUT for the id after the patch).\n\n{}",
            self.sessions,
            t.markdown()
        )
    }

    fn json(&self) -> Value {
        let q = |p: f64| common::quantile(&self.edits, p).map(|d| d.as_secs_f64() * 1000.0);
        json!({
            "sessions": self.sessions,
            "start_to_all_ready_s": self.time.as_secs_f64(),
            "creates": self.creates,
            "edits": self.edits.len(),
            "patch_to_put_ms": {"p50": q(0.5), "p99": q(0.99), "max": q(1.0)},
            "throttled": self.throttled,
        })
    }
}
