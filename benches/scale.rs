//! Scale benchmark: the operator's memory, start-up convergence and idle cost against N, up to
//! 10,000 sessions, with a chart.
//!
//! For each N (env `BENCH_SCALE_SIZES`, default `100,1000,10000`):
//! 1. N sessions are created in the emulator through its API (the official request shape, about
//!    2,000 per second here), and N TrafficMirrorSession objects naming them in `spec.sessionId`
//!    are applied before the operator starts — what a cluster looks like when the operator is
//!    (re)installed over existing sessions, and the quickest honest way to 10,000 Ready objects;
//! 2. the operator (release build) starts and adopts them all: the time from its start to all N
//!    Ready, its CPU time and its peak RSS;
//! 3. at steady state, over 3 resync cycles (`--resync-interval 10s`): RSS, cloud calls and
//!    object writes per cycle, scaled to calls and writes per session per hour at the default 5m
//!    interval (the idle cost).
//!
//! Writes `benches/results/scale.{md,json}` and the chart `benches/results/scale.svg` (start-up
//! convergence time and RSS against N; the create-path figures of `convergence*.json` are drawn
//! too when present). Without `--bench` it does nothing.

#[path = "common/chart.rs"]
mod chart;
#[path = "common/mod.rs"]
mod common;
#[path = "common/e2e.rs"]
mod e2e;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use traffic_mirror_operator::api::TrafficMirrorSession;
use traffic_mirror_operator::cloud::models::CreateSessionRequest;

use e2e::{SETUP_TIMEOUT, ms};

/// Resync interval of the operator here (short, so three cycles pass quickly).
const RESYNC: &str = "10s";
/// The default interval the idle cost is scaled to.
const DEFAULT_RESYNC: Duration = Duration::from_secs(300);
/// Resync cycles observed at steady state.
const STEADY_CYCLES: usize = 3;
/// Parallel creates, in the emulator and in the API server.
const PARALLELISM: usize = 16;

/// What one N measured.
#[derive(Debug, Clone)]
struct Point {
    n: usize,
    seed_cloud: Duration,
    apply: Duration,
    start_to_ready: Duration,
    cpu: Duration,
    peak_rss_mib: f64,
    steady_rss_mib: f64,
    calls_per_cycle: f64,
    writes_per_cycle: f64,
    cycle: Duration,
}

impl Point {
    /// Cloud calls per session per hour at the default resync interval.
    fn calls_per_session_hour(&self) -> f64 {
        per_session_hour(self.calls_per_cycle, self.n)
    }

    fn writes_per_session_hour(&self) -> f64 {
        per_session_hour(self.writes_per_cycle, self.n)
    }
}

fn per_session_hour(per_cycle: f64, n: usize) -> f64 {
    per_cycle * (3600.0 / DEFAULT_RESYNC.as_secs_f64()) / n.max(1) as f64
}

fn main() {
    if !common::is_bench_run() {
        println!("scale: skipped without --bench (run `cargo bench --bench scale`)");
        return;
    }
    let sizes: Vec<usize> = std::env::var("BENCH_SCALE_SIZES")
        .unwrap_or_else(|_| "100,1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|n| *n > 0)
        .collect();
    let mut command = String::new();
    if std::env::var("BENCH_SCALE_SIZES").is_ok() {
        command.push_str(&format!(
            "BENCH_SCALE_SIZES={} ",
            sizes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    command.push_str("cargo bench --bench scale");
    let info = common::RunInfo::capture(command);
    let cp = support::control_plane();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("build the tokio runtime");
    let mut points = vec![];
    for n in sizes {
        eprintln!("scale: N = {n}");
        let p = runtime.block_on(measure(cp, n));
        eprintln!("scale: {p:?}");
        points.push(p);
    }
    let text = render(&info, &points);
    println!("{text}");
    report(&info, &points, &text);
}

/// Writes the Markdown, the JSON and the chart.
fn report(info: &common::RunInfo, points: &[Point], text: &str) {
    match common::write_results("scale", text) {
        Ok(path) => println!("written to {}", path.display()),
        Err(e) => eprintln!("could not write the results file: {e}"),
    }
    match common::write_json("scale", &json_of(info, points)) {
        Ok(path) => println!("written to {}", path.display()),
        Err(e) => eprintln!("could not write the JSON results file: {e}"),
    }
    let adopt: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (p.n as f64, p.start_to_ready.as_secs_f64()))
        .collect();
    let rss: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (p.n as f64, p.steady_rss_mib))
        .collect();
    let create = chart::create_path_points();
    match chart::draw(&adopt, &create, &rss) {
        Ok(path) => println!("chart written to {}", path.display()),
        Err(e) => eprintln!("could not draw the chart: {e}"),
    }
}

fn session_name(i: usize) -> String {
    format!("a-{i:05}")
}

/// Creates `n` sessions in the emulator; returns their ids in order.
async fn seed_cloud(env: &e2e::Cluster, n: usize) -> Vec<String> {
    let cloud = env.account.cloud.clone();
    let filter = env.account.filter_id.clone();
    futures::stream::iter(0..n)
        .map(|i| {
            let cloud = cloud.clone();
            let request = CreateSessionRequest {
                name: session_name(i),
                description: None,
                traffic_mirror_filter_id: filter.clone(),
                traffic_mirror_sources: vec![format!("eni-{i}")],
                traffic_mirror_target_id: "eni-target".into(),
                traffic_mirror_target_type: "eni".into(),
                virtual_network_id: None,
                packet_length: None,
                priority: 10,
                enabled: None,
                source_type: None,
            };
            async move { cloud.create_session(&request).await.map(|s| s.id) }
        })
        .buffered(PARALLELISM)
        .try_collect()
        .await
        .expect("seed the emulator")
}

/// The object that adopts cloud session `id` (its spec matches the cloud: no update follows).
fn manifest(env: &e2e::Cluster, i: usize, id: &str) -> TrafficMirrorSession {
    serde_json::from_value(json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1",
        "kind": "TrafficMirrorSession",
        "metadata": {"name": session_name(i)},
        "spec": {
            "sessionId": id,
            "trafficMirrorFilterId": env.account.filter_id,
            "trafficMirrorSources": [format!("eni-{i}")],
            "trafficMirrorTargetId": "eni-target",
            "trafficMirrorTargetType": "eni",
            "priority": 10,
            "providerConfigRef": {"name": env.account.pc},
        }
    }))
    .expect("session manifest")
}

async fn apply_objects(env: &e2e::Cluster, ids: &[String]) {
    let api: Api<TrafficMirrorSession> = env.api();
    futures::stream::iter(ids.iter().enumerate())
        .map(|(i, id)| {
            let api = api.clone();
            let obj = manifest(env, i, id);
            async move { api.create(&PostParams::default(), &obj).await.map(|_| ()) }
        })
        .buffer_unordered(PARALLELISM)
        .try_collect::<Vec<()>>()
        .await
        .expect("create the session objects");
}

async fn measure(cp: &'static support::ControlPlane, n: usize) -> Point {
    let env = e2e::Cluster::new(cp, "bench-scale").await;
    let t = Instant::now();
    let ids = seed_cloud(&env, n).await;
    let seed_cloud = t.elapsed();
    let t = Instant::now();
    apply_objects(&env, &ids).await;
    let apply = t.elapsed();
    let tracker = e2e::Tracker::start("scale", env.api::<TrafficMirrorSession>()).await;
    let names: Vec<String> = (0..n).map(session_name).collect();
    env.emu().clear_calls().await;
    let started = Instant::now();
    let mut op = e2e::Operator::start("scale", &env.ns, RESYNC, &[]);
    let timeout = SETUP_TIMEOUT + Duration::from_millis(50 * n as u64);
    let last_ready = tracker.wait_all_ready(&names, 1, timeout).await;
    op.assert_running();
    let start_to_ready = last_ready.duration_since(started);
    let cpu = op.cpu_time();
    let window = e2e::steady_window(env.emu(), &op, &tracker, STEADY_CYCLES, timeout).await;
    let (peak_rss_mib, steady_rss_mib) = op.memory_mib();
    op.assert_running();
    Point {
        n,
        seed_cloud,
        apply,
        start_to_ready,
        cpu,
        peak_rss_mib,
        steady_rss_mib,
        calls_per_cycle: window.calls.len() as f64 / STEADY_CYCLES as f64,
        writes_per_cycle: window.object_changes as f64 / STEADY_CYCLES as f64,
        cycle: window.period.unwrap_or_default(),
    }
}

fn render(info: &common::RunInfo, points: &[Point]) -> String {
    let mut t = common::Table::new(&[
        "N",
        "seed the cloud",
        "apply N objects",
        "operator start -> all Ready",
        "CPU to Ready",
        "peak RSS",
        "steady RSS",
        "cloud calls / cycle",
        "object writes / cycle",
        "calls / session / hour",
        "writes / session / hour",
    ]);
    for p in points {
        t.row(vec![
            p.n.to_string(),
            ms(p.seed_cloud),
            ms(p.apply),
            ms(p.start_to_ready),
            ms(p.cpu),
            format!("{:.1} MiB", p.peak_rss_mib),
            format!("{:.1} MiB", p.steady_rss_mib),
            format!("{:.2}", p.calls_per_cycle),
            format!("{:.2}", p.writes_per_cycle),
            format!("{:.4}", p.calls_per_session_hour()),
            format!("{:.4}", p.writes_per_session_hour()),
        ]);
    }
    let cycle = points
        .iter()
        .map(|p| format!("{} (N={})", ms(p.cycle), p.n))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "# Benchmark: scale (memory, start-up convergence and idle cost against N)\n\n{}\
         - Setup: per N, a fresh namespace and emulator; N sessions created in the emulator through \
         its API, then N TrafficMirrorSession objects naming them in `spec.sessionId` applied \
         ({PARALLELISM} in parallel) before the operator (release build, `--resync-interval \
         {RESYNC}`) starts and adopts them; RSS from /proc (VmHWM = peak, VmRSS = steady, after \
         {STEADY_CYCLES} resync cycles)\n\
         - Idle cost: calls and object writes over {STEADY_CYCLES} whole resync cycles at steady \
         state (measured cycle: {cycle}), scaled to one session and one hour at the default \
         `--resync-interval 5m` (12 cycles per hour)\n\n{}\n\
         Chart: `benches/results/scale.svg` (start-up convergence and RSS against N; the create \
         path from `convergence*.json` when present).\n",
        info.markdown(),
        t.markdown()
    )
}

fn json_of(info: &common::RunInfo, points: &[Point]) -> Value {
    let points: Vec<Value> = points
        .iter()
        .map(|p| {
            json!({
                "n": p.n,
                "seed_cloud_s": p.seed_cloud.as_secs_f64(),
                "apply_s": p.apply.as_secs_f64(),
                "start_to_all_ready_s": p.start_to_ready.as_secs_f64(),
                "cpu_to_ready_s": p.cpu.as_secs_f64(),
                "peak_rss_mib": p.peak_rss_mib,
                "steady_rss_mib": p.steady_rss_mib,
                "cloud_calls_per_cycle": p.calls_per_cycle,
                "object_writes_per_cycle": p.writes_per_cycle,
                "cycle_s": p.cycle.as_secs_f64(),
                "idle_calls_per_session_hour": p.calls_per_session_hour(),
                "idle_writes_per_session_hour": p.writes_per_session_hour(),
            })
        })
        .collect();
    json!({"bench": "scale", "run": info.json(), "points": points})
}
