//! Telemetry: structured logging and the Prometheus metrics the operator exports on `/metrics`.
//!
//! Metrics (all prefixed `tmo_`; README "Metrics" lists every label value, and
//! `tests/observability.rs` checks a run against it):
//! - `tmo_reconciles_total{kind}`: reconciles run.
//! - `tmo_reconcile_errors_total{kind,error}`: failed reconciles by cause.
//! - `tmo_reconcile_duration_seconds{kind}`: reconcile latency histogram.
//! - `tmo_cloud_calls_total{operation,outcome}`: VPC API calls by operation and outcome
//!   (`success`, or the error's metric label such as `not_found`, `throttled`, `timeout`).
//! - `tmo_managed_sessions`: cloud sessions in the last resync snapshot.
//! - `tmo_cloud_budget_wait_seconds_total{lane}`, `tmo_leader`, `tmo_caches_synced`.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// How log lines are written (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; colour only when stderr is a terminal, so log files and `kubectl logs`
    /// carry no escape sequences.
    #[default]
    Text,
    /// One JSON object per line, with the reconcile's span (kind, namespace, name) on every line.
    Json,
}

/// Installs the global tracing subscriber: `RUST_LOG`-style filter (default `info`), text or JSON.
pub fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

/// The answer of `/readyz`: ready (200) once the controllers' caches are synced; the body says
/// whether this replica leads or stands by. A standby is ready too: it serves the rollout of a
/// Deployment whose other replica leads, and it takes over with warm caches.
pub fn readiness(caches_synced: bool, leader: bool) -> (u16, &'static str) {
    match (caches_synced, leader) {
        (false, _) => (503, "not ready: the caches are not synced yet\n"),
        (true, true) => (200, "ok: caches synced, leader\n"),
        (true, false) => (
            200,
            "ok: caches synced, standby (another replica holds the lease)\n",
        ),
    }
}

/// Label set: the kind being reconciled.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `TrafficMirrorSession`, `TrafficMirrorFilter`, `ProviderConfig` or `TrafficMirrorSessionSet`.
    pub kind: String,
}

/// Label set: kind and error cause.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    /// The kind being reconciled.
    pub kind: String,
    /// The error's metric label.
    pub error: String,
}

/// Label set: cloud operation and outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabel {
    /// e.g. `create_session`.
    pub operation: String,
    /// `success` or an error class.
    pub outcome: String,
}

/// Label set: credential source and refresh outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefreshLabel {
    /// `InstanceMetadata`, `WorkloadIdentity` or `Secret` (the latter only with `assumeAgency`).
    pub source: String,
    /// `success` or the failure's class (`refused`, `unreachable`, `token_file`, ...).
    pub outcome: String,
}

/// Label set: a kind and the status of its objects' `Ready` condition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabel {
    /// `TrafficMirrorSession`, `TrafficMirrorFilter`, `ProviderConfig` or `TrafficMirrorSessionSet`.
    pub kind: String,
    /// `True`, `False` or `Unknown` (no Ready condition yet counts as `Unknown`).
    pub ready: String,
}

/// The values of [`ObjectLabel::ready`], each set at every scrape so a count that drops to 0 shows
/// as 0 rather than vanishing.
pub const READY_STATES: [&str; 3] = ["True", "False", "Unknown"];

/// Counts the objects of one kind per Ready state, at scrape time (see [`Metrics::count_objects`]).
pub type ObjectCounter =
    Box<dyn Fn() -> std::collections::BTreeMap<&'static str, i64> + Send + Sync>;

/// The resident set size in bytes from the text of `/proc/self/status` (its `VmRSS:` line, in kB);
/// None where there is no such line (not Linux).
pub fn resident_bytes(proc_status: &str) -> Option<i64> {
    let line = proc_status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Label set: the budget lane.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LaneLabel {
    /// `interactive` or `bulk`.
    pub lane: String,
}

/// The operator's metrics, registered once and shared (cheap to clone).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Reconciles run, per kind.
    pub reconciles: Family<KindLabel, Counter>,
    /// Reconcile failures, per kind and cause.
    pub reconcile_errors: Family<ErrorLabel, Counter>,
    /// Reconcile latency, per kind.
    pub reconcile_duration: Family<KindLabel, Histogram>,
    /// Cloud calls, per operation and outcome.
    pub cloud_calls: Family<CallLabel, Counter>,
    /// Cloud sessions in the last resync snapshot.
    pub managed_sessions: Gauge,
    /// Refreshes of temporary credentials (metadata, IAM), per source and outcome.
    pub credential_refreshes: Family<RefreshLabel, Counter>,
    /// Seconds cloud calls waited for the account's API budget, per lane.
    pub budget_wait: Family<LaneLabel, Counter<f64, std::sync::atomic::AtomicU64>>,
    /// 1 while this process holds the leader Lease (or runs without leader election), else 0.
    pub leader: Gauge,
    /// 1 once the session and filter caches have been filled from the API server, else 0.
    pub caches_synced: Gauge,
    /// Objects per kind and Ready state, counted from the caches at each scrape.
    pub objects: Family<ObjectLabel, Gauge>,
    /// The process' resident memory, read at each scrape.
    pub resident_memory: Gauge,
    /// The per-kind counters [`Metrics::encode`] runs before it encodes.
    counters: Arc<std::sync::Mutex<Vec<(String, ObjectCounter)>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The two gauges that describe this process rather than its work: caches synced, and leadership.
fn register_process_gauges(registry: &mut Registry, caches_synced: &Gauge, leader: &Gauge) {
    registry.register(
        "caches_synced",
        "1 once the TrafficMirrorSession and TrafficMirrorFilter caches are synced, else 0",
        caches_synced.clone(),
    );
    registry.register(
        "leader",
        "1 while this process is the leader (holds the Lease), else 0",
        leader.clone(),
    );
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tmo");
        let reconciles = Family::<KindLabel, Counter>::default();
        let reconcile_errors = Family::<ErrorLabel, Counter>::default();
        let reconcile_duration = Family::<KindLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        let cloud_calls = Family::<CallLabel, Counter>::default();
        let managed_sessions = Gauge::default();
        let leader = Gauge::default();
        let caches_synced = Gauge::default();
        register_process_gauges(&mut registry, &caches_synced, &leader);
        let budget_wait =
            Family::<LaneLabel, Counter<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "cloud_budget_wait_seconds",
            "Time cloud calls waited for the account's API budget (spec.rateLimit), per lane",
            budget_wait.clone(),
        );
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Failed reconciles by cause",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile latency",
            reconcile_duration.clone(),
        );
        registry.register(
            "cloud_calls",
            "VPC API calls by operation and outcome",
            cloud_calls.clone(),
        );
        registry.register(
            "managed_sessions",
            "Cloud sessions in the last resync snapshot",
            managed_sessions.clone(),
        );
        let credential_refreshes = Family::<RefreshLabel, Counter>::default();
        registry.register(
            "credential_refreshes",
            "Refreshes of temporary cloud credentials, by source and outcome",
            credential_refreshes.clone(),
        );
        let (objects, resident_memory) = register_scraped(&mut registry);
        Metrics {
            registry: Arc::new(registry),
            credential_refreshes,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            cloud_calls,
            managed_sessions,
            budget_wait,
            leader,
            caches_synced,
            objects,
            resident_memory,
            counters: Arc::default(),
        }
    }
}

/// The gauges set at scrape time: objects by kind and Ready state, and resident memory.
fn register_scraped(registry: &mut Registry) -> (Family<ObjectLabel, Gauge>, Gauge) {
    let objects = Family::<ObjectLabel, Gauge>::default();
    registry.register(
        "objects",
        "Objects in the operator's caches by kind and Ready condition status",
        objects.clone(),
    );
    let resident_memory = Gauge::default();
    registry.register(
        "resident_memory_bytes",
        "Resident memory of the operator process",
        resident_memory.clone(),
    );
    (objects, resident_memory)
}

impl Metrics {
    /// Counts one reconcile of `kind` that took `took`.
    pub fn reconciled(&self, kind: &str, took: Duration) {
        let l = KindLabel {
            kind: kind.to_string(),
        };
        self.reconciles.get_or_create(&l).inc();
        self.reconcile_duration
            .get_or_create(&l)
            .observe(took.as_secs_f64());
    }

    /// Counts one failed reconcile.
    pub fn reconcile_failed(&self, kind: &str, error: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabel {
                kind: kind.to_string(),
                error: error.to_string(),
            })
            .inc();
    }

    /// Counts one cloud call.
    pub fn cloud_call(&self, operation: &str, outcome: &str) {
        self.cloud_calls
            .get_or_create(&CallLabel {
                operation: operation.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Counts one refresh of temporary credentials.
    pub fn credential_refreshed(&self, source: &str, outcome: &str) {
        self.credential_refreshes
            .get_or_create(&RefreshLabel {
                source: source.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Adds time a cloud call waited for the budget.
    pub fn budget_waited(&self, lane: &str, waited: Duration) {
        self.budget_wait
            .get_or_create(&LaneLabel {
                lane: lane.to_string(),
            })
            .inc_by(waited.as_secs_f64());
    }

    /// The `/readyz` answer for the current state (see [`readiness`]).
    pub fn readiness(&self) -> (u16, &'static str) {
        readiness(self.caches_synced.get() == 1, self.leader.get() == 1)
    }

    /// Registers how to count the objects of `kind` per Ready state; every scrape runs it (a new
    /// kind's controller calls this once with its cache).
    pub fn count_objects(&self, kind: &str, counter: ObjectCounter) {
        if let Ok(mut counters) = self.counters.lock() {
            counters.push((kind.to_string(), counter));
        }
    }

    /// Sets the scrape-time gauges: each registered kind's objects, and resident memory.
    fn refresh_scraped(&self) {
        if let Ok(counters) = self.counters.lock() {
            for (kind, count) in counters.iter() {
                let counts = count();
                for ready in READY_STATES {
                    let label = ObjectLabel {
                        kind: kind.clone(),
                        ready: ready.to_string(),
                    };
                    let n = counts.get(ready).copied().unwrap_or(0);
                    self.objects.get_or_create(&label).set(n);
                }
            }
        }
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        if let Some(bytes) = resident_bytes(&status) {
            self.resident_memory.set(bytes);
        }
    }

    /// The text exposition format for `/metrics`.
    pub fn encode(&self) -> String {
        self.refresh_scraped();
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_bytes_reads_vm_rss() {
        let cases = [
            (
                "Name:\tx\nVmRSS:\t   2048 kB\nThreads: 3\n",
                Some(2048 * 1024),
            ),
            ("Name:\tx\n", None),
            ("VmRSS:\tlots kB\n", None),
        ];
        for (text, want) in cases {
            assert_eq!(resident_bytes(text), want, "{text:?}");
        }
    }

    #[test]
    fn scrape_counts_objects_of_every_registered_kind() {
        let m = Metrics::default();
        m.count_objects(
            "TrafficMirrorSession",
            Box::new(|| [("True", 2), ("False", 1)].into_iter().collect()),
        );
        let text = m.encode();
        for line in [
            "tmo_objects{kind=\"TrafficMirrorSession\",ready=\"True\"} 2",
            "tmo_objects{kind=\"TrafficMirrorSession\",ready=\"False\"} 1",
            "tmo_objects{kind=\"TrafficMirrorSession\",ready=\"Unknown\"} 0",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert!(text.contains("tmo_resident_memory_bytes "), "{text}");
    }

    #[test]
    fn encodes_counted_metrics() {
        let m = Metrics::default();
        m.reconciled("TrafficMirrorSession", Duration::from_millis(3));
        m.cloud_call("create_session", "success");
        m.reconcile_failed("TrafficMirrorSession", "cloud_terminal");
        let text = m.encode();
        assert!(text.contains("tmo_reconciles_total{kind=\"TrafficMirrorSession\"} 1"));
        assert!(
            text.contains(
                "tmo_cloud_calls_total{operation=\"create_session\",outcome=\"success\"} 1"
            )
        );
        assert!(text.contains("tmo_reconcile_errors_total"));
        assert!(text.contains("tmo_reconcile_duration_seconds_bucket"));
    }

    #[test]
    fn readiness_follows_the_caches_and_names_the_role() {
        let m = Metrics::default();
        assert_eq!(m.readiness().0, 503, "caches not synced");
        m.caches_synced.set(1);
        let (code, body) = m.readiness();
        assert_eq!(code, 200);
        assert!(body.contains("standby"), "{body}");
        m.leader.set(1);
        assert!(m.readiness().1.contains("leader"));
    }
}
