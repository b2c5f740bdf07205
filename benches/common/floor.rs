//! The floor: a program that does only the unavoidable work per TrafficMirrorSession, to set the
//! operator's convergence time against. Per object it makes one cloud create
//! (`VpcClient::create_session`, carrying every field) and one status write (server-side apply on
//! the object's `/status` with the `sessionId`, `observedGeneration` and `Ready=True`), with the
//! operator's concurrency (8 objects in flight) and, through a plain token bucket, the same cloud
//! API budget as the ProviderConfig (`qps`, `burst`). No crash-safety, no snapshot, no retry
//! policy beyond waiting a second after a retryable cloud error (counted).
//!
//! It runs in a namespace of its own with a fresh emulator (a fresh [`e2e::Cluster`]), applies the
//! same N objects the same way the bench does (8 in parallel), and its time is taken the same way:
//! from the first create until the watch has seen every object Ready=True.
//!
//! Included by `convergence.rs` as `#[path = "common/floor.rs"] mod floor;`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::Mutex;
use traffic_mirror_operator::api::TrafficMirrorSession;
use traffic_mirror_operator::controller::session::plan::DesiredSession;

use crate::e2e;

/// Objects in flight at once, like the operator's default `--concurrency`.
pub const CONCURRENCY: usize = 8;
/// Field manager of the floor's status writes.
const FIELD_MANAGER: &str = "tmo-bench-floor";

/// A token bucket: `qps` tokens a second, holding at most `burst`, full at the start.
pub struct TokenBucket {
    qps: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub fn new(qps: f64, burst: u32) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            qps,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Waits for one token and takes it.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut s = self.state.lock().await;
                let now = Instant::now();
                let refill = now.duration_since(s.1).as_secs_f64() * self.qps;
                s.0 = (s.0 + refill).min(self.burst);
                s.1 = now;
                if s.0 >= 1.0 {
                    s.0 -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - s.0) / self.qps)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// What the floor measured.
#[derive(Debug, Clone)]
pub struct FloorResult {
    /// First create -> every object seen Ready=True by the watch.
    pub time: Duration,
    /// First create -> last object created.
    pub apply_time: Duration,
    /// Cloud calls the emulator logged over that time.
    pub cloud_calls: usize,
    /// Of which answered 429 (throttled).
    pub throttled: usize,
    /// Retryable cloud errors the floor waited out.
    pub retries: usize,
}

/// Runs the floor for `n` objects built by `manifest` in a fresh namespace and emulator, under a
/// budget of `qps`/`burst`; with `throttle`, the emulator throttles and delays calls like the
/// gateway ([`e2e::Cluster::throttle_like_gateway`]).
pub async fn run<M>(
    cp: &'static crate::support::ControlPlane,
    n: usize,
    apply_parallelism: usize,
    (qps, burst): (f64, u32),
    throttle: bool,
    manifest: M,
) -> FloorResult
where
    M: Fn(&e2e::Cluster, usize) -> TrafficMirrorSession,
{
    let env = e2e::Cluster::new(cp, "bench-floor").await;
    if throttle {
        env.throttle_like_gateway().await;
    }
    let api: Api<TrafficMirrorSession> = env.api();
    let tracker = e2e::Tracker::start("floor", api.clone()).await;
    let bucket = Arc::new(TokenBucket::new(qps, burst));
    let retries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    env.emu().clear_calls().await;

    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<TrafficMirrorSession>();
    let objects: Vec<TrafficMirrorSession> = (0..n).map(|i| manifest(&env, i)).collect();
    let names: Vec<String> = objects
        .iter()
        .map(|o| o.metadata.name.clone().expect("name"))
        .collect();

    let t0 = Instant::now();
    // The apply: like the bench's, `apply_parallelism` creates at once; each created object goes
    // to the workers as soon as the API server has it (the operator sees it through its watch).
    let apply = {
        let api = api.clone();
        async move {
            futures::stream::iter(objects)
                .map(|obj| {
                    let api = api.clone();
                    let tx = tx.clone();
                    async move {
                        let created = api.create(&PostParams::default(), &obj).await?;
                        let _ = tx.send(created);
                        Ok::<(), kube::Error>(())
                    }
                })
                .buffer_unordered(apply_parallelism)
                .try_collect::<Vec<()>>()
                .await
                .expect("floor: create the session objects");
            Instant::now()
        }
    };
    // The workers: CONCURRENCY objects in flight, each one cloud create and one status write.
    let work =
        {
            let api = api.clone();
            let cloud = env.account.cloud.clone();
            let bucket = bucket.clone();
            let retries = retries.clone();
            async move {
                let objects = futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|o| (o, rx))
                });
                objects
                    .map(|obj| {
                        let api = api.clone();
                        let cloud = cloud.clone();
                        let bucket = bucket.clone();
                        let retries = retries.clone();
                        async move {
                            let name = obj.metadata.name.clone().expect("name");
                            // The same request the operator sends (every field).
                            let filter_id = obj
                                .spec
                                .traffic_mirror_filter_id
                                .clone()
                                .expect("the bench's sessions name their filter by id");
                            let req = DesiredSession::from_spec(&obj.spec, &name, filter_id)
                                .create_request();
                            let session = loop {
                                bucket.acquire().await;
                                match cloud.create_session(&req).await {
                                    Ok(s) => break s,
                                    Err(e) if e.is_retryable() => {
                                        retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                        tokio::time::sleep(Duration::from_secs(1)).await;
                                    }
                                    Err(e) => panic!("floor: create session {name}: {e}"),
                                }
                            };
                            let now = chrono::Utc::now().to_rfc3339();
                            let status = json!({
                                "apiVersion": "vpc.hwcloud.dev/v1alpha1",
                                "kind": "TrafficMirrorSession",
                                "status": {
                                    "sessionId": session.id,
                                    "observedGeneration": obj.metadata.generation,
                                    "conditions": [{
                                        "type": "Ready",
                                        "status": "True",
                                        "reason": "Available",
                                        "message": "floor",
                                        "lastTransitionTime": now,
                                    }],
                                }
                            });
                            api.patch_status(
                                &name,
                                &PatchParams::apply(FIELD_MANAGER).force(),
                                &Patch::Apply(&status),
                            )
                            .await
                            .unwrap_or_else(|e| panic!("floor: status of {name}: {e}"));
                        }
                    })
                    .buffer_unordered(CONCURRENCY)
                    .collect::<Vec<()>>()
                    .await;
            }
        };
    let timeout = Duration::from_secs(120) + Duration::from_millis(500 * n as u64);
    let (applied, (), last_ready) =
        tokio::join!(apply, work, tracker.wait_all_ready(&names, 1, timeout));
    let time = last_ready.duration_since(t0);
    let calls = env.emu().calls().await;
    FloorResult {
        time,
        apply_time: applied.duration_since(t0),
        cloud_calls: calls.len(),
        throttled: calls.iter().filter(|c| c["throttled"] == true).count(),
        retries: retries.load(std::sync::atomic::Ordering::Relaxed),
    }
}
