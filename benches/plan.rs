//! Microbenchmark of the pure session planner (`controller::session::plan`): how long the operator takes to
//! decide the cloud calls of one session, in nanoseconds.
//!
//! The resync compares every session with its cloud copy every interval, so this is the CPU cost per
//! session per resync; at steady state (case "in sync") it is the only per-session work left.
//!
//! Run: `cargo bench --bench plan` (env `BENCH_ITERS`, `BENCH_RUNS` override the defaults). Prints a
//! table and writes it to `benches/results/plan.md`. Without `--bench` (as `cargo test
//! --all-targets` runs it) it only checks the cases in a few iterations and writes nothing.

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::Instant;

use traffic_mirror_operator::api::TrafficMirrorSessionSpec;
use traffic_mirror_operator::cloud::models::TrafficMirrorSession;
use traffic_mirror_operator::controller::session::plan::{
    DesiredSession, convergence, created_from,
};

/// Iterations per timed run (`BENCH_ITERS`).
const DEFAULT_ITERS: u64 = 200_000;
/// Timed runs per case; the median is reported (`BENCH_RUNS`).
const DEFAULT_RUNS: usize = 9;

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A desired session as a typical manifest gives it.
fn desired(sources: impl IntoIterator<Item = String>) -> DesiredSession {
    DesiredSession {
        name: "web-tap".into(),
        description: "mirror the web tier".into(),
        traffic_mirror_filter_id: "59d2b5ca-1b5d-4b1c-8f3e-6a1f0c9d2e11".into(),
        traffic_mirror_sources: sources.into_iter().collect::<BTreeSet<_>>(),
        traffic_mirror_target_id: "2a8d4e1b-7c3f-4d5e-9a6b-0c1d2e3f4a5b".into(),
        traffic_mirror_target_type: "eni".into(),
        virtual_network_id: 1,
        packet_length: 96,
        priority: 10,
        enabled: true,
        source_type: "eni".into(),
    }
}

/// The cloud's copy of `d`, with the fields only the cloud sets filled in as the API does.
fn observed_of(d: &DesiredSession) -> TrafficMirrorSession {
    let mut o = created_from(&d.create_request(), "3f1e9b2c-5d6a-4e7f-8a9b-0c1d2e3f4a5b");
    o.project_id = "0123456789abcdef0123456789abcdef".into();
    o.created_at = "2026-11-27T03:00:00Z".into();
    o.updated_at = "2026-11-27T03:00:00Z".into();
    o
}

fn eni(prefix: &str, i: usize) -> String {
    format!("{prefix}{i:04}-5d6a-4e7f-8a9b-0c1d2e3f4a5b")
}

/// Times `f` over `runs` runs of `iters` calls; returns the per-call nanoseconds of each run, sorted.
fn measure<T>(iters: u64, runs: usize, mut f: impl FnMut() -> T) -> Vec<f64> {
    // Warm-up: caches, branch predictors, allocator pools.
    for _ in 0..(iters / 10).max(1) {
        black_box(f());
    }
    let mut per_call: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(f());
            }
            start.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    per_call.sort_by(f64::total_cmp);
    per_call
}

fn main() {
    let bench = common::is_bench_run();
    let (iters, runs) = if bench {
        (
            env_number("BENCH_ITERS", DEFAULT_ITERS).max(1),
            env_number("BENCH_RUNS", DEFAULT_RUNS).max(1),
        )
    } else {
        (1_000, 1)
    };
    let info = common::RunInfo::capture("cargo bench --bench plan");

    // The inputs, each checked to be the case it claims to be.
    let two = desired([eni("a", 0), eni("a", 1)]);
    let in_sync = observed_of(&two);
    assert!(
        convergence(&two, &in_sync).is_empty(),
        "in-sync case plans calls"
    );

    let mut one_field = two.clone();
    one_field.priority = 11;
    let c = convergence(&one_field, &in_sync);
    assert!(c.update.as_ref().is_some_and(|u| u.priority == Some(11)));
    assert!(c.add_sources.is_empty() && c.remove_sources.is_empty());

    let ten_a = desired((0..10).map(|i| eni("a", i)));
    let ten_b = desired((0..10).map(|i| eni("b", i)));
    let observed_a = observed_of(&ten_a);
    let c = convergence(&ten_b, &observed_a);
    assert!(c.update.is_none() && c.remove_first);
    assert_eq!((c.add_sources.len(), c.remove_sources.len()), (10, 10));

    let create = two.create_request();

    let spec: TrafficMirrorSessionSpec = serde_json::from_value(serde_json::json!({
        "name": "web-tap",
        "description": "mirror the web tier",
        "trafficMirrorFilterId": two.traffic_mirror_filter_id,
        "trafficMirrorSources": [eni("a", 0), eni("a", 1)],
        "trafficMirrorTargetId": two.traffic_mirror_target_id,
        "trafficMirrorTargetType": "eni",
        "priority": 10,
        "enabled": true,
    }))
    .expect("a valid spec");
    let filter_id = two.traffic_mirror_filter_id.clone();
    assert_eq!(
        DesiredSession::from_spec(&spec, "web-tap", filter_id.clone()),
        two
    );

    let rows: Vec<(&str, Vec<f64>)> = vec![
        (
            "(a) plan: in sync, 2 sources (no calls)",
            measure(iters, runs, || {
                convergence(black_box(&two), black_box(&in_sync))
            }),
        ),
        (
            "(b) plan: one field differs (1 PUT)",
            measure(iters, runs, || {
                convergence(black_box(&one_field), black_box(&in_sync))
            }),
        ),
        (
            "(c) plan: swap all 10 sources (remove 10, add 10)",
            measure(iters, runs, || {
                convergence(black_box(&ten_b), black_box(&observed_a))
            }),
        ),
        (
            "converge: in sync, 10 sources",
            measure(iters, runs, || {
                convergence(black_box(&ten_a), black_box(&observed_a))
            }),
        ),
        (
            "plan: no cloud session (1 POST)",
            measure(iters, runs, || black_box(&two).create_request()),
        ),
        (
            "created_from: create request -> session",
            measure(iters, runs, || {
                created_from(black_box(&create), black_box("s-1"))
            }),
        ),
        (
            "DesiredSession::from_spec",
            measure(iters, runs, || {
                DesiredSession::from_spec(
                    black_box(&spec),
                    black_box("web-tap"),
                    black_box(&filter_id).clone(),
                )
            }),
        ),
    ];

    let mut table =
        common::Table::new(&["case", "median ns/call", "min", "max", "calls/s (median)"]);
    let mut in_sync_median = None;
    for (name, runs_ns) in rows {
        let median = common::quantile(&runs_ns, 0.5).unwrap_or(f64::NAN);
        if in_sync_median.is_none() {
            in_sync_median = Some(median);
        }
        table.row(vec![
            name.to_string(),
            format!("{median:.1}"),
            format!("{:.1}", runs_ns.first().copied().unwrap_or(f64::NAN)),
            format!("{:.1}", runs_ns.last().copied().unwrap_or(f64::NAN)),
            format!("{:.2e}", 1e9 / median),
        ]);
    }
    let resync_ms = in_sync_median.unwrap_or(f64::NAN) * 10_000.0 / 1e6;

    let mut text = String::from("# Benchmark: session planner (`controller::session::plan`)\n\n");
    text.push_str(&info.markdown());
    text.push_str(&format!(
        "- Iterations: {iters} per run, {runs} runs per case; median/min/max are over runs; each \
         call includes dropping its result (the planner allocates)\n\n"
    ));
    text.push_str(&table.markdown());
    text.push_str(&format!(
        "\nPlanning a resync of 10,000 in-sync sessions costs about {resync_ms:.2} ms of CPU \
         (10,000 x case (a)).\n"
    ));
    println!("{text}");
    if bench {
        match common::write_results("plan", &text) {
            Ok(path) => println!("written to {}", path.display()),
            Err(e) => eprintln!("could not write the results file: {e}"),
        }
    } else {
        println!("(smoke run: not a benchmark; `cargo bench --bench plan` measures)");
    }
}
