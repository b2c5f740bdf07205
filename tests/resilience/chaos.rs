//! The disruptions: a schedule drawn from the seed (faults through the emulator's admin API,
//! SIGKILLs of the operator, one kube-apiserver restart, one emulator restart) and the
//! [`Disruptor`] that carries it out while the churn runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use rand::RngExt;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use serde_json::{Value, json};

use crate::support::operator::{AK, Operator, PROJECT, SK};
use crate::support::{Emulator, control_plane, restart};

/// One scheduled disruption.
#[derive(Debug, Clone)]
pub enum Event {
    /// Queue a fault (label, `FaultSpec` body).
    Fault(&'static str, Value),
    /// SIGKILL the operator, wait the given pause, start it again.
    KillOperator(Duration),
    /// Restart the kube-apiserver (same port, same etcd).
    RestartApiserver,
    /// SIGKILL the emulator and start it again on the same port with the same state file.
    RestartEmulator,
}

/// The schedule for a churn of `churn`: (time from the start, event), in time order. Faults every
/// 1-3.5 s; one operator kill per 20 s (at least 2); the kube-apiserver restart in the second
/// quarter, the emulator restart in the third.
pub fn schedule(rng: &mut StdRng, churn: Duration) -> Vec<(Duration, Event)> {
    let total = churn.as_secs_f64();
    let mut events = Vec::new();
    let mut t = 0.5;
    while t < total {
        let (label, spec) = fault(rng);
        events.push((t, Event::Fault(label, spec)));
        t += rng.random_range(1.0..3.5);
    }
    let kills = ((total / 20.0).round() as usize).max(2);
    for _ in 0..kills {
        let at = rng.random_range(0.05..0.9) * total;
        let pause = Duration::from_millis(rng.random_range(0..1500));
        events.push((at, Event::KillOperator(pause)));
    }
    events.push((
        rng.random_range(0.25..0.45) * total,
        Event::RestartApiserver,
    ));
    events.push((rng.random_range(0.55..0.75) * total, Event::RestartEmulator));
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    events
        .into_iter()
        .map(|(at, e)| (Duration::from_secs_f64(at), e))
        .collect()
}

/// A fault drawn from the five kinds: a 429 burst, a 500/503 burst, 2 s of added latency,
/// dropped connections, and a lost answer after the cloud applied a write.
fn fault(rng: &mut StdRng) -> (&'static str, Value) {
    let mut spec = match rng.random_range(0..5) {
        0 => (
            "429 burst",
            json!({"status": 429, "times": rng.random_range(2..=6)}),
        ),
        1 => {
            let status = *[500, 503].choose(rng).unwrap_or(&500);
            let mut s = json!({"status": status, "times": rng.random_range(1..=4)});
            if status == 503 && rng.random_bool(0.5) {
                s["retry_after_s"] = json!(1);
            }
            ("500/503 burst", s)
        }
        2 => (
            "latency 2s",
            json!({"delay_ms": 2000, "times": rng.random_range(1..=3)}),
        ),
        3 => (
            "dropped connection",
            json!({"drop_connection": true, "times": rng.random_range(1..=2)}),
        ),
        _ => {
            let method = *["POST", "PUT", "DELETE"].choose(rng).unwrap_or(&"POST");
            let mut s = json!({"method": method, "execute": true, "times": 1});
            if rng.random_bool(0.5) {
                s["drop_connection"] = json!(true);
            } else {
                s["status"] = json!(500);
            }
            ("lost answer after apply", s)
        }
    };
    if rng.random_bool(0.5) {
        let path = [
            "traffic-mirror-sessions",
            "traffic-mirror-filters",
            "traffic-mirror-filter-rules",
        ]
        .choose(rng)
        .unwrap_or(&"traffic-mirror-sessions");
        spec.1["path_contains"] = json!(path);
    }
    spec
}

/// What the disruptions did.
#[derive(Debug, Default)]
pub struct Stats {
    /// Faults queued, by label.
    pub faults: BTreeMap<String, u64>,
    /// Calls the queued faults were meant for (the sum of their `times`).
    pub fault_calls: u64,
    /// Of those, never used: still queued when faults stopped or lost in the emulator restart.
    pub fault_calls_unused: u64,
    /// SIGKILLs of the operator.
    pub kills: u64,
    /// Operator starts (the first one and one after each kill).
    pub operator_starts: u64,
    /// kube-apiserver restarts.
    pub apiserver_restarts: u64,
    /// Emulator restarts.
    pub emulator_restarts: u64,
    /// Times the operator was found dead without having been killed (it must survive every
    /// fault and both restarts).
    pub unexpected_exits: u64,
}

/// Owns the emulator and the operator while the churn runs, and disrupts them.
pub struct Disruptor {
    /// The emulator (replaced by a new process at its restart).
    pub emu: Emulator,
    /// The operator (replaced after each kill).
    operator: Option<Operator>,
    ns: String,
    resync: String,
    dir: PathBuf,
    state_file: PathBuf,
    /// API calls the emulator logged before its restart (its log starts empty again).
    pub earlier_calls: Vec<Value>,
    /// What was done.
    pub stats: Stats,
    admin: reqwest::Client,
    /// Extra flags of the emulator (kept across its restart).
    emulator_args: Vec<String>,
    /// The identity provider to register again after the emulator's restart (workload identity).
    pub identity_provider: Option<Value>,
}

impl Disruptor {
    /// Starts the emulator (with `--state dir/emulator-state.json`); the operator is started by
    /// [`Disruptor::start_operator`].
    pub fn new(ns: &str, resync: &str, dir: PathBuf, emulator_args: &[&str]) -> Disruptor {
        let state_file = dir.join("emulator-state.json");
        let state = state_file.display().to_string();
        let mut args = vec!["--state", &state];
        args.extend(emulator_args);
        let emu = Emulator::start_with_args(PROJECT, &[(AK, SK)], &args);
        Disruptor {
            emu,
            operator: None,
            ns: ns.to_string(),
            resync: resync.to_string(),
            dir,
            state_file,
            earlier_calls: Vec::new(),
            stats: Stats::default(),
            admin: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("admin HTTP client"),
            emulator_args: emulator_args.iter().map(|a| a.to_string()).collect(),
            identity_provider: None,
        }
    }

    /// Starts the operator (again), logging to `operator-<n>.log`.
    pub fn start_operator(&mut self) {
        self.stats.operator_starts += 1;
        let log = self
            .dir
            .join(format!("operator-{}.log", self.stats.operator_starts));
        let op = Operator::start(&self.ns, &self.resync, &[], None, log);
        self.operator = Some(op);
    }

    /// Logs of every operator run so far, oldest first, for a failure report.
    pub fn operator_logs(&self) -> Vec<PathBuf> {
        (1..=self.stats.operator_starts)
            .map(|n| self.dir.join(format!("operator-{n}.log")))
            .collect()
    }

    /// Runs `events` at their times from `start`, printing the disruptions (not each fault).
    pub async fn run(&mut self, start: tokio::time::Instant, events: Vec<(Duration, Event)>) {
        for (at, event) in events {
            tokio::time::sleep_until(start + at).await;
            if !matches!(event, Event::Fault(..)) {
                println!(
                    "resilience: t={:.1}s {event:?}",
                    start.elapsed().as_secs_f64()
                );
            }
            self.apply(event).await;
        }
    }

    /// Whether the operator runs now; counts an exit nobody caused.
    pub fn operator_alive(&mut self) -> bool {
        let alive = self.operator.as_mut().is_some_and(|op| !op.exited());
        if !alive {
            self.stats.unexpected_exits += 1;
        }
        alive
    }

    async fn apply(&mut self, event: Event) {
        match event {
            Event::Fault(label, spec) => {
                *self.stats.faults.entry(label.into()).or_default() += 1;
                self.stats.fault_calls += spec["times"].as_u64().unwrap_or(1);
                self.emu.fault(spec).await;
            }
            Event::KillOperator(pause) => {
                if !self.operator_alive() {
                    println!("resilience: the operator had exited before this kill");
                }
                if let Some(mut op) = self.operator.take() {
                    let _ = op.child.kill();
                    let _ = op.child.wait();
                    self.stats.kills += 1;
                }
                tokio::time::sleep(pause).await;
                self.start_operator();
            }
            Event::RestartApiserver => {
                restart::restart_apiserver(control_plane())
                    .await
                    .unwrap_or_else(|e| panic!("restart the kube-apiserver: {e}"));
                self.stats.apiserver_restarts += 1;
            }
            Event::RestartEmulator => self.restart_emulator().await,
        }
    }

    /// Saves the call log, SIGKILLs the emulator, and starts it on the same port with the same
    /// state file.
    async fn restart_emulator(&mut self) {
        self.earlier_calls.extend(self.emu.calls().await);
        self.stats.fault_calls_unused += self.pending_fault_calls().await;
        let listen = self.emu.url.trim_start_matches("http://").to_string();
        self.emu.kill();
        let state = self.state_file.display().to_string();
        let mut args = vec!["--state", state.as_str()];
        args.extend(self.emulator_args.iter().map(String::as_str));
        let fresh = Emulator::start_on(&listen, PROJECT, &[(AK, SK)], &args);
        // Dropping the old handle removes its scratch directory; the state file is elsewhere.
        drop(std::mem::replace(&mut self.emu, fresh));
        self.stats.emulator_restarts += 1;
        self.register_identity_provider_again().await;
    }

    /// After a restart, the identity provider again (a 409 means the state file kept it).
    async fn register_identity_provider_again(&self) {
        let Some(provider) = &self.identity_provider else {
            return;
        };
        let url = format!("{}/_emulator/identity-providers", self.emu.url);
        let answer = self
            .admin
            .post(&url)
            .json(provider)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = answer.status().as_u16();
        assert!(
            (200..300).contains(&status) || status == 409,
            "POST {url}: {status}"
        );
    }

    /// Calls the queued faults still wait for (`GET /_emulator/faults`, the `remaining` of each).
    async fn pending_fault_calls(&self) -> u64 {
        let url = format!("{}/_emulator/faults", self.emu.url);
        let pending: Value = match self.admin.get(&url).send().await {
            Ok(answer) => answer.json().await.unwrap_or(Value::Null),
            Err(e) => panic!("GET {url}: {e}"),
        };
        pending
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|f| f["remaining"].as_u64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0)
    }

    /// Stops the faults: counts the unused ones and drops them. The operator keeps running.
    pub async fn stop_faults(&mut self) {
        self.stats.fault_calls_unused += self.pending_fault_calls().await;
        self.emu.clear_faults().await;
    }

    /// Every API call of the run: those logged before the emulator restart, then the current log.
    pub async fn all_calls(&self) -> Vec<Value> {
        let mut calls = self.earlier_calls.clone();
        calls.extend(self.emu.calls().await);
        calls
    }
}
