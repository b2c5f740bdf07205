//! End-to-end benchmark of the TrafficMirrorFilter reconciler: the operator binary (release build)
//! against a real kube-apiserver + etcd and the VPC emulator, with N TrafficMirrorFilters of 5 rules
//! each (env `BENCH_FILTERS`, default 100).
//!
//! It measures what the design promises:
//! - convergence: time from applying N filters until all are Ready=True, and the cloud calls it took
//!   by method and kind (expected per filter: one POST of the filter and one batch POST of its
//!   rules, `BatchCreateTrafficMirrorFilterRules`, after the crash-safe create's name search; with
//!   `BENCH_RULES=n` each filter has n rules instead of 5);
//! - steady state: cloud calls per resync cycle (one paginated LIST of sessions and one of filters
//!   per account, whatever N; no writes, no per-filter GET), status writes and operator CPU;
//! - the operator's memory (RSS when idle, peak and current with N filters).
//!
//! Run: `cargo bench --bench filters` (with `TMO_CONTROL_PLANE_DIR` set to the directory that
//! `make control-plane` prints last, or the support builds the control plane). Prints a table and
//! writes it to `benches/results/filters.md` (`filters-n<N>.md` for another N). Without `--bench`
//! (as `cargo test --all-targets` runs bench targets) it does nothing: the integration tests cover
//! correctness.
//!
//! Waits poll (the emulator's call log, or an in-memory view fed by a watch) with deadlines; resync
//! cycles are counted from the unfiltered session LISTs the emulator logs (each cycle starts with
//! one), never assumed from sleeps.

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
use traffic_mirror_operator::api::TrafficMirrorFilter;
use traffic_mirror_operator::cloud::models::ListFiltersQuery;

use e2e::{SETUP_TIMEOUT, by_kind, call_kind, is_write, ms, wait_resync_starts};

/// Resync interval given to the operator (as in `convergence`).
const RESYNC: &str = "5s";
const RESYNC_INTERVAL: Duration = Duration::from_secs(5);
/// Default number of filters (`BENCH_FILTERS`).
const DEFAULT_FILTERS: usize = 100;
/// Rules per filter by default (`BENCH_RULES`).
const RULES: usize = 5;

/// Rules per filter: `BENCH_RULES` (e.g. 100, issue 21's "a new 100-rule filter costs ≤ 3 cloud
/// calls": `BENCH_FILTERS=1 BENCH_RULES=100`), else [`RULES`].
fn rules_per_filter() -> usize {
    std::env::var("BENCH_RULES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| (1..=1000).contains(n))
        .unwrap_or(RULES)
}
/// Resync cycles observed at steady state.
const STEADY_CYCLES: usize = 3;
/// Objects created in parallel while applying (as in `convergence`).
const APPLY_PARALLELISM: usize = 8;

fn main() {
    if !common::is_bench_run() {
        println!(
            "filters: skipped without --bench (run `cargo bench --bench filters`; the \
             integration tests cover correctness)"
        );
        return;
    }
    let filters = std::env::var("BENCH_FILTERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_FILTERS);
    let concurrency = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .filter(|v| v.parse::<u16>().is_ok_and(|n| n > 0));
    let mut command = String::new();
    if filters != DEFAULT_FILTERS {
        command.push_str(&format!("BENCH_FILTERS={filters} "));
    }
    if let Some(c) = &concurrency {
        command.push_str(&format!("BENCH_CONCURRENCY={c} "));
    }
    if rules_per_filter() != RULES {
        command.push_str(&format!("BENCH_RULES={} ", rules_per_filter()));
    }
    command.push_str("cargo bench --bench filters");
    let info = common::RunInfo::capture(command);

    eprintln!("filters: starting the control plane (etcd + kube-apiserver)...");
    let cp = support::control_plane();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("build the tokio runtime");
    let report = runtime.block_on(run(cp, filters, concurrency));
    let text = report.render(&info);
    println!("{text}");
    let mut name = if filters == DEFAULT_FILTERS {
        "filters".to_string()
    } else {
        format!("filters-n{filters}")
    };
    if rules_per_filter() != RULES {
        name.push_str(&format!("-r{}", rules_per_filter()));
    }
    match common::write_results(&name, &text) {
        Ok(path) => println!("written to {}", path.display()),
        Err(e) => eprintln!("could not write the results file: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The filters
// ---------------------------------------------------------------------------------------------

fn filter_name(i: usize) -> String {
    format!("f-{i:05}")
}

/// Filter `i`: 3 ingress and 2 egress rules, with addresses that differ between filters.
fn manifest(env: &e2e::Cluster, i: usize) -> TrafficMirrorFilter {
    let (a, b) = (i / 256 % 256, i % 256);
    let rules = json!([
        {"direction": "ingress", "priority": 10, "protocol": "TCP",
         "sourceCidrBlock": format!("10.{a}.{b}.0/24"), "destinationPortRange": "80-443"},
        {"direction": "ingress", "priority": 20, "protocol": "UDP", "destinationPortRange": "53"},
        {"direction": "ingress", "priority": 30, "protocol": "TCP", "action": "reject",
         "destinationPortRange": "22"},
        {"direction": "egress", "priority": 10, "protocol": "TCP",
         "destinationCidrBlock": format!("172.16.{b}.0/24")},
        {"direction": "egress", "priority": 20, "protocol": "ALL",
         "description": format!("everything else of filter {i}")},
    ]);
    debug_assert_eq!(rules.as_array().map(Vec::len), Some(RULES));
    let rules = if rules_per_filter() == RULES {
        rules
    } else {
        many_rules(rules_per_filter())
    };
    serde_json::from_value(json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1",
        "kind": "TrafficMirrorFilter",
        "metadata": {"name": filter_name(i)},
        "spec": {
            "description": format!("bench filter {i}"),
            "rules": rules,
            "providerConfigRef": {"name": env.account.pc},
        }
    }))
    .expect("filter manifest")
}

/// `n` rules (`BENCH_RULES`), alternately inbound and outbound, each at its own priority.
fn many_rules(n: usize) -> serde_json::Value {
    let rules: Vec<serde_json::Value> = (1..=n)
        .map(|p| {
            let direction = if p % 2 == 0 { "egress" } else { "ingress" };
            json!({"direction": direction, "priority": p, "protocol": "TCP",
                   "destinationPortRange": format!("{p}")})
        })
        .collect();
    json!(rules)
}

/// Everything measured, rendered by [`Report::render`].
struct Report {
    filters: usize,
    concurrency: String,
    idle_rss_mib: f64,
    apply_time: Duration,
    converge_time: Duration,
    create_to_ready: Vec<Duration>,
    converge_calls: Vec<(String, usize)>,
    converge_calls_total: usize,
    converge_writes: usize,
    converge_cpu: Duration,
    cloud_filters: usize,
    cloud_rules: usize,
    steady_cycles: usize,
    steady_period: Option<Duration>,
    steady_calls: Vec<(String, usize)>,
    steady_calls_total: usize,
    steady_reads: usize,
    steady_writes: usize,
    steady_filter_gets: usize,
    steady_object_changes: u64,
    steady_cpu: Duration,
    peak_rss_mib: f64,
    rss_mib: f64,
}

async fn run(cp: &'static support::ControlPlane, n: usize, concurrency: Option<String>) -> Report {
    let env = e2e::Cluster::new(cp, "bench-filters").await;
    let tracker = e2e::Tracker::start("filters", env.api::<TrafficMirrorFilter>()).await;
    // The filter the account starts with (made by the test support, not by the operator).
    let preexisting = env
        .account
        .cloud
        .list_all_filters(ListFiltersQuery::default())
        .await
        .expect("list the cloud filters")
        .len();

    eprintln!("filters: starting the operator (namespace {})...", env.ns);
    let extra: Vec<&str> = concurrency
        .as_deref()
        .map(|c| vec!["--concurrency", c])
        .unwrap_or_default();
    let mut op = e2e::Operator::start("filters", &env.ns, RESYNC, &extra);
    env.wait_provider_ready().await;
    // The operator is warm once its first resync LIST has filled the account's snapshot.
    wait_resync_starts(env.emu(), 1, SETUP_TIMEOUT).await;
    op.assert_running();
    let (_, idle_rss_mib) = op.memory_mib();

    // --- Convergence ------------------------------------------------------------------------
    eprintln!(
        "filters: applying {n} filters of {} rules...",
        rules_per_filter()
    );
    env.emu().clear_calls().await;
    let cpu_before = op.cpu_time();
    let api: Api<TrafficMirrorFilter> = env.api();
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
        .expect("create the filter objects");
    let apply_time = t0.elapsed();
    let names: Vec<String> = (0..n).map(filter_name).collect();
    let converge_timeout = Duration::from_secs(120) + Duration::from_millis(500 * n as u64);
    let last_ready = tracker.wait_all_ready(&names, 1, converge_timeout).await;
    let converge_cpu = op.cpu_time().saturating_sub(cpu_before);
    let converge_time = last_ready.duration_since(t0);
    let mut create_to_ready: Vec<Duration> = created
        .iter()
        .filter_map(|(i, at)| {
            tracker
                .ready_at(&filter_name(*i), 1)
                .map(|r| r.saturating_duration_since(*at))
        })
        .collect();
    create_to_ready.sort();
    let calls = env.emu().calls().await;
    let converge_calls = by_kind(&calls);
    let converge_calls_total = calls.len();
    let converge_writes = calls.iter().filter(|c| is_write(c)).count();
    let cloud = env
        .account
        .cloud
        .list_all_filters(ListFiltersQuery::default())
        .await
        .expect("list the cloud filters");
    let cloud_filters = cloud.len().saturating_sub(preexisting);
    let cloud_rules = cloud
        .iter()
        .map(|f| f.ingress_rules.len() + f.egress_rules.len())
        .sum();
    op.assert_running();

    // --- Steady state ------------------------------------------------------------------------
    eprintln!("filters: all Ready; observing {STEADY_CYCLES} resync cycles...");
    let steady_timeout = RESYNC_INTERVAL * (STEADY_CYCLES as u32 + 3) + Duration::from_secs(60);
    let steady = e2e::steady_window(env.emu(), &op, &tracker, STEADY_CYCLES, steady_timeout).await;
    let window: &[Value] = &steady.calls;
    let steady_writes = window.iter().filter(|c| is_write(c)).count();
    let steady_filter_gets = window
        .iter()
        .filter(|c| call_kind(c) == "GET traffic-mirror-filters/{id}")
        .count();
    op.assert_running();

    let (peak_rss_mib, rss_mib) = op.memory_mib();
    Report {
        filters: n,
        concurrency: concurrency.unwrap_or_else(|| "8 (default)".into()),
        idle_rss_mib,
        apply_time,
        converge_time,
        create_to_ready,
        converge_calls,
        converge_calls_total,
        converge_writes,
        converge_cpu,
        cloud_filters,
        cloud_rules,
        steady_cycles: STEADY_CYCLES,
        steady_period: steady.period,
        steady_calls: by_kind(window),
        steady_calls_total: window.len(),
        steady_reads: window.len() - steady_writes,
        steady_writes,
        steady_filter_gets,
        steady_object_changes: steady.object_changes,
        steady_cpu: steady.cpu,
        peak_rss_mib,
        rss_mib,
    }
}

impl Report {
    fn render(&self, info: &common::RunInfo) -> String {
        let n = self.filters;
        let rules = rules_per_filter();
        let cycles = self.steady_cycles as f64;
        let q = |v: &[Duration], p: f64| common::quantile(v, p).map_or("n/a".into(), ms);
        let mut s = String::from(
            "# Benchmark: TrafficMirrorFilter convergence (operator + kube-apiserver + emulator)\n\n",
        );
        s.push_str(&info.markdown());
        s.push_str(&format!(
            "- Setup: {n} TrafficMirrorFilters of {rules} rules each (one ProviderConfig, no \
             sessions), operator release build, `--resync-interval {RESYNC}`, `--concurrency {}`; \
             real etcd + kube-apiserver and the VPC emulator on the same machine\n\n",
            self.concurrency
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
            "filters/second".into(),
            format!("{:.1}", n as f64 / self.converge_time.as_secs_f64()),
        ]);
        t.row(vec![
            "per filter, create -> Ready: median / p95 / max".into(),
            format!(
                "{} / {} / {}",
                q(&self.create_to_ready, 0.5),
                q(&self.create_to_ready, 0.95),
                q(&self.create_to_ready, 1.0)
            ),
        ]);
        t.row(vec![
            "cloud filters / rules afterwards".into(),
            format!(
                "{} / {} (expected {n} / {})",
                self.cloud_filters,
                self.cloud_rules,
                n * rules_per_filter()
            ),
        ]);
        t.row(vec![
            "cloud writes per filter (expected 1 + 5 = 6)".into(),
            format!("{:.2}", self.converge_writes as f64 / n as f64),
        ]);
        t.row(vec![
            "operator CPU time during convergence".into(),
            ms(self.converge_cpu),
        ]);
        s.push_str("## Convergence\n\n");
        s.push_str(&t.markdown());

        let calls = e2e::calls_table(
            &self.converge_calls,
            self.converge_calls_total,
            ("count", "per filter", n as f64),
        );
        s.push_str(&format!(
            "\nCloud calls from the first create until all were Ready (resync LISTs that fell in \
             the window included):\n\n{calls}"
        ));

        s.push_str(&format!(
            "\n## Steady state ({} resync cycles, all {n} filters in sync)\n\n",
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
            "per-filter GETs".into(),
            format!("{:.2}", self.steady_filter_gets as f64 / cycles),
        ]);
        t.row(vec![
            "cloud reads, a GET-every-filter-every-interval design".into(),
            format!("{n} (= N)"),
        ]);
        t.row(vec![
            "cloud writes".into(),
            format!("{:.2}", self.steady_writes as f64 / cycles),
        ]);
        t.row(vec![
            "TrafficMirrorFilter object changes (status writes)".into(),
            format!("{:.2}", self.steady_object_changes as f64 / cycles),
        ]);
        t.row(vec![
            "operator CPU time".into(),
            ms(self.steady_cpu / self.steady_cycles.max(1) as u32),
        ]);
        s.push('\n');
        s.push_str(&t.markdown());

        s.push_str("\n## Operator memory\n\n");
        let mut t = common::Table::new(&["measure", "MiB"]);
        t.row(vec![
            "RSS when idle, before the filters (VmRSS)".into(),
            format!("{:.1}", self.idle_rss_mib),
        ]);
        t.row(vec![
            format!("peak RSS at the end, {n} filters (VmHWM)"),
            format!("{:.1}", self.peak_rss_mib),
        ]);
        t.row(vec![
            format!("current RSS at the end, {n} filters (VmRSS)"),
            format!("{:.1}", self.rss_mib),
        ]);
        s.push_str(&t.markdown());
        s
    }
}
