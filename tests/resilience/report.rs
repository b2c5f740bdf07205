//! The run's figures (objects, operations, faults, kills, restarts, calls, violations), the bound
//! on cloud calls, and `target/resilience/last-run.json`.
//!
//! # The call bound
//!
//! Every cloud call has a cause the run can count, so the total must stay under
//!
//! ```text
//!   3 × session creates   (LIST ?name=, POST, a GET to confirm)
//! + 4 × session edits     (GET, PUT, add-sources, remove-sources)
//! + 2 × session deletes   (DELETE, a LIST ?name= to settle an intent)
//! + 7 × filter creates    (LIST ?name=, POST, one POST per rule: at most 5)
//! + 12 × filter edits     (GET, PUT, a DELETE and a POST per rule)
//! + 7 × filter deletes    (GET, a DELETE per rule, DELETE)
//! + 4 × faulted calls     (the faulted call, its retry, LIST ?name= and GET to settle a lost answer)
//! + (3 + 2 × objects) × operator starts   (LISTs of sessions, filters, credentials; per object
//!                                          a fresh read and one interrupted write finished)
//! + 2 × objects × (kube-apiserver + emulator restarts)   (every object reconciled again)
//! + (3 + objects) × resync cycles   (LISTs of sessions, filters, credentials; one retry per
//!                                    object still converging)
//! ```
//!
//! where `objects` is the number of names the churn uses (at most that many objects live at
//! once) and `resync cycles` is the run's length divided by the resync interval, plus one per
//! operator start. A retry loop, a hot reconcile or a per-object poll would blow through it; a
//! healthy run stays well under (the figures show the ratio).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};

use super::chaos;
use super::churn;

/// The bound and its terms (label, calls).
#[derive(Debug)]
pub struct Bound {
    /// The total.
    pub total: u64,
    /// Each term.
    pub terms: Vec<(String, u64)>,
}

/// What the bound is computed from.
pub struct BoundInputs<'a> {
    /// The churn's operations.
    pub churn: &'a churn::Stats,
    /// The disruptions.
    pub chaos: &'a chaos::Stats,
    /// Names the churn uses (sessions + filters).
    pub objects: u64,
    /// Resync cycles the run spanned.
    pub cycles: u64,
}

/// The bound on cloud calls (see the module docs).
pub fn call_bound(i: &BoundInputs) -> Bound {
    let c = i.churn;
    let x = i.chaos;
    let used_fault_calls = x.fault_calls.saturating_sub(x.fault_calls_unused);
    let restarts = x.apiserver_restarts + x.emulator_restarts;
    let terms = vec![
        (
            "3 × session creates".to_string(),
            3 * c.count("session/create"),
        ),
        ("4 × session edits".to_string(), 4 * c.count("session/edit")),
        (
            "2 × session deletes".to_string(),
            2 * (c.count("session/delete") + c.count("session/recreate")),
        ),
        (
            "7 × filter creates".to_string(),
            7 * c.count("filter/create"),
        ),
        ("12 × filter edits".to_string(), 12 * c.count("filter/edit")),
        (
            "7 × filter deletes".to_string(),
            7 * (c.count("filter/delete") + c.count("filter/recreate")),
        ),
        ("4 × faulted calls".to_string(), 4 * used_fault_calls),
        (
            "(3 + 2 × objects) × operator starts".to_string(),
            (3 + 2 * i.objects) * x.operator_starts,
        ),
        (
            "2 × objects × restarts".to_string(),
            2 * i.objects * restarts,
        ),
        (
            "(3 + objects) × resync cycles".to_string(),
            (3 + i.objects) * i.cycles,
        ),
    ];
    Bound {
        total: terms.iter().map(|(_, n)| n).sum(),
        terms,
    }
}

/// Whether a logged call went to IAM or the metadata service (workload identity), not the VPC API.
pub fn is_identity_call(call: &Value) -> bool {
    let path = call["path"].as_str().unwrap_or("");
    ["/v3.0/", "/openstack/", "/meta-data/"]
        .iter()
        .any(|p| path.starts_with(p))
}

/// The bound on identity calls with credentials living `lifetime`, over a run of `total`: two
/// calls (id-token, securitytokens) per exchange, one exchange per 3/4 of a lifetime (the refresh
/// margin is a quarter), plus one per operator start (a new process has no cache) and per emulator
/// restart (its credentials may be gone: a 401 forces one), plus one per faulted call (a fault
/// may hit an exchange, or fail a ProviderConfig check, whose next one starts a new cache), plus
/// one.
pub fn identity_bound(
    x: &chaos::Stats,
    total: std::time::Duration,
    lifetime: std::time::Duration,
) -> u64 {
    let per_refresh = lifetime.as_secs_f64() * 0.75;
    let refreshes = (total.as_secs_f64() / per_refresh).ceil() as u64;
    let used_fault_calls = x.fault_calls.saturating_sub(x.fault_calls_unused);
    2 * (refreshes + x.operator_starts + x.emulator_restarts + used_fault_calls + 1)
}

/// Calls by `METHOD collection` (e.g. `POST traffic-mirror-sessions`), and how many failed
/// (status 0 = dropped, or ≥ 400).
pub fn calls_by_kind(calls: &[Value]) -> (BTreeMap<String, u64>, u64) {
    let mut by = BTreeMap::new();
    let mut failed = 0;
    for c in calls {
        let path = c["path"].as_str().unwrap_or("");
        let collection = path
            .split('/')
            .find(|p| p.starts_with("traffic-mirror-"))
            .unwrap_or("other");
        let method = c["method"].as_str().unwrap_or("?");
        *by.entry(format!("{method} {collection}")).or_default() += 1;
        let status = c["status"].as_u64().unwrap_or(0);
        if status == 0 || status >= 400 {
            failed += 1;
        }
    }
    (by, failed)
}

/// The summary as one JSON value.
pub fn figures(
    run: Value,
    churn: &churn::Stats,
    chaos: &chaos::Stats,
    calls: &[Value],
    bound: &Bound,
    violations: usize,
) -> Value {
    let (by_kind, failed) = calls_by_kind(calls);
    let operations: u64 = churn.ops.values().sum();
    json!({
        "run": run,
        "operations": {"total": operations, "by_kind": churn.ops, "failed_api_writes": churn.failed,
                       "creates_waiting_for_old_object": churn.create_waits,
                       "repaired_filter_refs": churn.repaired_refs},
        "faults": {"injected": chaos.faults.values().sum::<u64>(), "by_kind": chaos.faults,
                   "calls_targeted": chaos.fault_calls, "calls_unused": chaos.fault_calls_unused},
        "kills": chaos.kills,
        "operator_starts": chaos.operator_starts,
        "apiserver_restarts": chaos.apiserver_restarts,
        "emulator_restarts": chaos.emulator_restarts,
        "calls": {"total": calls.len(), "failed_or_dropped": failed, "by_kind": by_kind,
                  "bound": bound.total,
                  "bound_terms": bound.terms.iter().map(|(l, n)| json!({"term": l, "calls": n})).collect::<Vec<_>>()},
        "violations": violations,
    })
}

/// Prints the figures as one block.
pub fn print(figures: &Value) {
    let f = figures;
    println!(
        "==== resilience summary ====\n\
         seed {} | churn {} s | resync {} s | converged {} s after the quiet period\n\
         objects: {} session names, {} filter names; at the end {} sessions, {} filters\n\
         operations: {} ({} API writes failed during disruptions)\n\
         faults injected: {} ({} calls targeted, {} unused)\n\
         operator kills: {} | kube-apiserver restarts: {} | emulator restarts: {}\n\
         cloud calls: {} (bound {}), {} failed or dropped\n\
         credentials: {}, identity calls {} (bound {})\n\
         violations: {}\n\
         ============================",
        f["run"]["seed"],
        f["run"]["churn_seconds"],
        f["run"]["resync_seconds"],
        f["run"]["converged_after_seconds"],
        f["run"]["session_names"],
        f["run"]["filter_names"],
        f["run"]["sessions_at_end"],
        f["run"]["filters_at_end"],
        f["operations"]["total"],
        f["operations"]["failed_api_writes"],
        f["faults"]["injected"],
        f["faults"]["calls_targeted"],
        f["faults"]["calls_unused"],
        f["kills"],
        f["apiserver_restarts"],
        f["emulator_restarts"],
        f["calls"]["total"],
        f["calls"]["bound"],
        f["calls"]["failed_or_dropped"],
        f["run"]["credentials"],
        f["run"]["identity_calls"],
        f["run"]["identity_bound"],
        f["violations"],
    );
    println!(
        "operations by kind: {}\nfaults by kind: {}\ncalls by kind: {}",
        f["operations"]["by_kind"], f["faults"]["by_kind"], f["calls"]["by_kind"]
    );
}

/// Writes the figures to `<target>/resilience/last-run.json` (`CARGO_TARGET_DIR`, else
/// `target/` of the package) and returns the path.
pub fn write(figures: &Value) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("resilience");
    let path = dir.join("last-run.json");
    let text = serde_json::to_string_pretty(figures).unwrap_or_default();
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, text)) {
        println!("could not write {}: {e}", path.display());
    }
    path
}
