//! Resilience: a churn of sessions and filters (create, edit every kind of field, change sources,
//! delete, re-create under the same name) while the cloud misbehaves (429 and 500/503 bursts, 2 s
//! of latency, dropped connections, answers lost after the write was applied), the operator is
//! SIGKILLed at random moments and restarted, and the kube-apiserver and the emulator are each
//! restarted once; meanwhile a pool of Nodes joins, leaves and is relabelled under a
//! TrafficMirrorSessionSet (`resilience/nodes.rs`). Then, after the faults stop and one resync interval passes, the end state must
//! hold (see `resilience/check.rs`) and the cloud calls must stay under a bound derived from what
//! was done (see `resilience/report.rs`); and kube-controller-manager, which lived through the
//! API-server restart, must still finish a namespace deletion.
//!
//! - `RESILIENCE_MINUTES` (default 1.5): minutes of churn. The default is the short form that
//!   `make test` runs (about 1 min 45 s in all on 2 cores); `make resilience
//!   RESILIENCE_MINUTES=30` is the long form.
//! - `RESILIENCE_SEED` (default: random): seeds every choice (operations, specs, faults, kill
//!   times). It is printed at the start and on failure; the same seed replays the same choices
//!   (what the API server and the cloud answer under faults can still differ from run to run).
//!
//! - `RESILIENCE_CREDENTIALS` (default `secret`): `workload-identity` runs the operator with a
//!   `WorkloadIdentity` ProviderConfig (a TokenRequest token of the test cluster, its JWKS
//!   registered in the emulator) and credentials that expire every 6 s, so the churn also goes
//!   through dozens of refreshes; the identity calls are checked against their own bound.
//!
//! The figures are printed as one block and written to `target/resilience/last-run.json`.

mod support;

#[path = "resilience/chaos.rs"]
mod chaos;
#[path = "resilience/check.rs"]
mod check;
#[path = "resilience/churn.rs"]
mod churn;
#[path = "resilience/model.rs"]
mod model;
#[path = "resilience/nodes.rs"]
mod nodes;
#[path = "resilience/report.rs"]
mod report;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use tokio::time::Instant;
use traffic_mirror_operator::api::ProviderConfig;
use traffic_mirror_operator::cloud::models::CreateFilterRequest;
use traffic_mirror_operator::cloud::{ClientConfig, Credentials, VpcClient};

use support::operator::{AK, PROJECT, SECRET_NAME, SELECTOR_LABEL, SK};

/// Minutes of churn of the short form (what `make test` runs).
const SHORT_MINUTES: f64 = 1.5;
/// The operator's resync interval.
const RESYNC: Duration = Duration::from_secs(10);
/// Session and filter names the churn uses.
const NAMES: (usize, usize) = (12, 4);
/// Longest pause between two churn operations.
const MAX_PAUSE_MS: u64 = 300;
/// How long creates may wait for their deleted namesakes to go once the faults stop.
const SETTLE: Duration = Duration::from_secs(60);
/// How long the end state may take to hold after the quiet resync interval.
const CONVERGE: Duration = Duration::from_secs(90);
/// Name of the cloud filter the test makes outside Kubernetes (sessions may use it by id).
const BASE_FILTER: &str = "base-out-of-band";

/// How long the emulator's temporary credentials live with `RESILIENCE_CREDENTIALS=workload-identity`.
const SHORT_LIFETIME: Duration = Duration::from_secs(6);

/// How the operator authenticates (`RESILIENCE_CREDENTIALS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CredentialMode {
    /// A Secret with the account's AK/SK (`secret`, the default).
    Secret,
    /// `WorkloadIdentity` with short-lived credentials (`workload-identity`).
    WorkloadIdentity,
}

impl CredentialMode {
    fn from_env() -> CredentialMode {
        match std::env::var("RESILIENCE_CREDENTIALS")
            .as_deref()
            .map(str::trim)
        {
            Err(_) | Ok("") | Ok("secret") => CredentialMode::Secret,
            Ok("workload-identity") => CredentialMode::WorkloadIdentity,
            Ok(other) => {
                panic!("RESILIENCE_CREDENTIALS={other:?}: expected secret or workload-identity")
            }
        }
    }

    fn label(self) -> &'static str {
        match self {
            CredentialMode::Secret => "secret",
            CredentialMode::WorkloadIdentity => "workload-identity",
        }
    }
}

/// The run's parameters.
struct Settings {
    seed: u64,
    minutes: f64,
    credentials: CredentialMode,
}

impl Settings {
    fn from_env() -> Settings {
        let minutes = match std::env::var("RESILIENCE_MINUTES") {
            Ok(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|m| *m > 0.0)
                .unwrap_or_else(|| panic!("RESILIENCE_MINUTES={v:?}: expected minutes > 0")),
            Err(_) => SHORT_MINUTES,
        };
        let seed = match std::env::var("RESILIENCE_SEED") {
            Ok(v) => v
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("RESILIENCE_SEED={v:?}: expected an unsigned integer")),
            Err(_) => rand::random(),
        };
        Settings {
            seed,
            minutes,
            credentials: CredentialMode::from_env(),
        }
    }

    fn churn(&self) -> Duration {
        Duration::from_secs_f64(self.minutes * 60.0)
    }
}

/// Prints the seed (and where the logs are) if the test panics, whatever panicked.
struct SeedOnFailure {
    seed: u64,
    dir: std::path::PathBuf,
}

impl Drop for SeedOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "resilience FAILED with RESILIENCE_SEED={} (replay: RESILIENCE_SEED={} make \
                 resilience); operator and emulator files in {}",
                self.seed,
                self.seed,
                self.dir.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_under_faults_and_restarts_converges() {
    let settings = Settings::from_env();
    println!(
        "resilience: RESILIENCE_SEED={} RESILIENCE_MINUTES={} RESILIENCE_CREDENTIALS={}",
        settings.seed,
        settings.minutes,
        settings.credentials.label()
    );
    let dir = tempfile::Builder::new()
        .prefix("tmo-resilience-")
        .tempdir()
        .expect("scratch dir")
        .keep();
    let _guard = SeedOnFailure {
        seed: settings.seed,
        dir: dir.clone(),
    };
    let cp = support::control_plane();
    let client = cp.client().await;
    support::install_crds(&client).await;
    let ns = support::test_namespace(&client, "resilience").await;
    let resync = format!("{}s", RESYNC.as_secs());
    let lifetime = format!("{}s", SHORT_LIFETIME.as_secs());
    let emulator_args: &[&str] = match settings.credentials {
        CredentialMode::Secret => &[],
        CredentialMode::WorkloadIdentity => &["--credential-lifetime", &lifetime],
    };
    let mut disruptor = chaos::Disruptor::new(&ns, &resync, dir.clone(), emulator_args);
    let base_filter_id = base_filter(&disruptor.emu.url).await;
    let pc = format!("pc-{ns}");
    let credentials = credentials(&client, &ns, &dir, &mut disruptor, settings.credentials).await;
    apply_provider(&client, &ns, &pc, &disruptor.emu.url, credentials).await;
    disruptor.start_operator();
    let node_rng = StdRng::seed_from_u64(settings.seed ^ 0x40de);
    let url = disruptor.emu.url.clone();
    let mut node_churn =
        nodes::NodeChurn::setup(node_rng, &client, &ns, &pc, &base_filter_id, &url).await;

    let churn_rng = StdRng::seed_from_u64(settings.seed);
    let mut chaos_rng = StdRng::seed_from_u64(settings.seed.rotate_left(32) ^ 0x5eed);
    let mut churn = churn::Churn::new(churn_rng, &client, &ns, &pc, &base_filter_id, NAMES);
    let events = chaos::schedule(&mut chaos_rng, settings.churn());
    let start = Instant::now();
    tokio::join!(
        run_churn(&mut churn, start + settings.churn()),
        run_node_churn(&mut node_churn, start + settings.churn()),
        disruptor.run(start, events)
    );
    let churned = start.elapsed();
    println!("resilience: churn over after {churned:?}; faults stop");
    disruptor.stop_faults().await;
    if !disruptor.operator_alive() {
        println!("resilience: the operator had exited by the end of the churn");
    }
    settle(&mut churn).await;

    // Faults stopped: one resync interval of quiet, then the end state must hold.
    tokio::time::sleep(RESYNC).await;
    let quiet = Instant::now();
    let (world, violations) = converge(&client, &ns, &disruptor, &base_filter_id).await;
    let converged = quiet.elapsed();
    finish(Finish {
        settings: &settings,
        churn: &churn,
        disruptor: &disruptor,
        world: &world,
        violations,
        base_filter_id: &base_filter_id,
        timing: (start.elapsed(), churned, converged),
        dir: &dir,
        node_ops: node_churn.total(),
    })
    .await;
    node_churn.cleanup().await;
    controller_manager_survived(cp, &client).await;
}

/// kube-controller-manager lived through the API-server restart (it reconnects by itself, see
/// `support::controller_manager`): it still runs, and a namespace deleted now goes away.
async fn controller_manager_survived(cp: &support::ControlPlane, client: &Client) {
    let pid = cp
        .controller_manager_pid
        .expect("the newest control plane runs kube-controller-manager");
    assert!(
        support::process::process_alive(pid),
        "kube-controller-manager {pid} died during the churn"
    );
    let ns = support::test_namespace(client, "after-restart").await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("delete a namespace after the churn");
    support::wait_deleted(cp, &namespaces, &ns, Duration::from_secs(60)).await;
}

/// The churn, one operation after another with a pause drawn from the seed, until `until`.
async fn run_churn(churn: &mut churn::Churn, until: Instant) {
    while Instant::now() < until {
        churn.step().await;
        let pause = churn.pause_ms(MAX_PAUSE_MS);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// The Node churn, one operation after another with a pause, until `until`.
async fn run_node_churn(nodes: &mut nodes::NodeChurn, until: Instant) {
    while Instant::now() < until {
        nodes.step().await;
        tokio::time::sleep(Duration::from_millis(MAX_PAUSE_MS)).await;
    }
}

/// After the churn: the creates still waiting for a deleted namesake go through (within
/// [`SETTLE`]; one still waiting then is reported by the end checks as a stuck deletion), and
/// dangling filter references are pointed at the out-of-band filter.
async fn settle(churn: &mut churn::Churn) {
    let deadline = Instant::now() + SETTLE;
    while churn.has_pending() && Instant::now() < deadline {
        churn.settle_pending().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let deadline = Instant::now() + SETTLE;
    while let Err(e) = churn.repair_references().await {
        assert!(
            Instant::now() < deadline,
            "fixing dangling filter references: {e}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Polls the end state until it holds or [`CONVERGE`] passes; returns the last observation and
/// its violations.
async fn converge(
    client: &Client,
    ns: &str,
    disruptor: &chaos::Disruptor,
    base_filter_id: &str,
) -> (Option<check::World>, Vec<check::Violation>) {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let observed = check::observe(client, ns, disruptor.emu.state().await).await;
        let (world, violations) = match observed {
            Ok(world) => {
                let mut v = check::violations(&world, base_filter_id);
                v.extend(nodes::violations(client, ns).await);
                (Some(world), v)
            }
            Err(e) => (None, vec![unobservable(e)]),
        };
        if violations.is_empty() || Instant::now() >= deadline {
            return (world, violations);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn unobservable(e: String) -> check::Violation {
    check::Violation {
        subject: "the end state".into(),
        problem: format!("could not be read: {e}"),
        object: Value::Null,
        cloud: Value::Null,
        needles: vec![],
    }
}

/// Everything the end of the run reports on.
struct Finish<'a> {
    settings: &'a Settings,
    churn: &'a churn::Churn,
    disruptor: &'a chaos::Disruptor,
    world: &'a Option<check::World>,
    violations: Vec<check::Violation>,
    base_filter_id: &'a str,
    /// Whole run, churn, convergence after the quiet interval.
    timing: (Duration, Duration, Duration),
    dir: &'a std::path::Path,
    /// Node churn operations (join, leave, relabel) under the set.
    node_ops: u64,
}

/// Counts the calls against the bound, prints the figures (and every violation with its object,
/// cloud state and call slice), writes `last-run.json`, and fails on any violation.
async fn finish(f: Finish<'_>) {
    let (identity, calls): (Vec<Value>, Vec<Value>) = f
        .disruptor
        .all_calls()
        .await
        .into_iter()
        .partition(report::is_identity_call);
    let (sessions_names, filter_names) = f.churn.names();
    let objects = (sessions_names + filter_names) as u64;
    let (total, churned, converged) = f.timing;
    let cycles = total.as_secs().div_ceil(RESYNC.as_secs()) + f.disruptor.stats.operator_starts;
    let mut bound = report::call_bound(&report::BoundInputs {
        churn: &f.churn.stats,
        chaos: &f.disruptor.stats,
        objects,
        cycles,
    });
    // The set: a Node operation costs at most a port lookup and a child's create, add/remove
    // sources and delete; the children (at most POOL / MAX_SOURCES + 1) are objects like the others.
    let children = (nodes::POOL / nodes::MAX_SOURCES + 1) as u64;
    let restarts = f.disruptor.stats.operator_starts
        + f.disruptor.stats.apiserver_restarts
        + f.disruptor.stats.emulator_restarts;
    for term in [
        ("5 × Node operations".to_string(), 5 * f.node_ops),
        (
            "2 × set children × (resync cycles + restarts)".to_string(),
            2 * children * (cycles + restarts),
        ),
    ] {
        bound.total += term.1;
        bound.terms.push(term);
    }
    let mut violations = run_violations(&f);
    violations.splice(0..0, f.violations);
    let identity_bound = (f.settings.credentials == CredentialMode::WorkloadIdentity)
        .then(|| report::identity_bound(&f.disruptor.stats, total, SHORT_LIFETIME));
    if identity.len() as u64 > identity_bound.unwrap_or(0) {
        violations.push(check::Violation {
            subject: "identity calls".into(),
            problem: format!(
                "{} IAM/metadata calls, over the bound of {}",
                identity.len(),
                identity_bound.unwrap_or(0)
            ),
            object: Value::Null,
            cloud: Value::Null,
            needles: vec![],
        });
    }
    if calls.len() as u64 > bound.total {
        violations.push(check::Violation {
            subject: "cloud calls".into(),
            problem: format!(
                "{} calls, over the bound of {}: {:?}",
                calls.len(),
                bound.total,
                bound.terms
            ),
            object: Value::Null,
            cloud: Value::Null,
            needles: vec![],
        });
    }
    let (sessions_at_end, filters_at_end) = f
        .world
        .as_ref()
        .map_or((0, 0), |w| (w.sessions.len(), w.filters.len()));
    let run = json!({
        "seed": f.settings.seed, "minutes": f.settings.minutes,
        "churn_seconds": churned.as_secs(), "resync_seconds": RESYNC.as_secs(),
        "total_seconds": total.as_secs(), "converged_after_seconds": converged.as_secs_f64().round(),
        "session_names": sessions_names, "filter_names": filter_names,
        "sessions_at_end": sessions_at_end, "filters_at_end": filters_at_end,
        "resync_cycles": cycles, "node_operations": f.node_ops,
        "credentials": f.settings.credentials.label(),
        "identity_calls": identity.len(), "identity_bound": identity_bound,
    });
    let figures = report::figures(
        run,
        &f.churn.stats,
        &f.disruptor.stats,
        &calls,
        &bound,
        violations.len(),
    );
    for v in &violations {
        println!("{}", check::render(v, &calls));
    }
    report::print(&figures);
    let path = report::write(&figures);
    println!("resilience: figures written to {}", path.display());
    if violations.is_empty() {
        let _ = std::fs::remove_dir_all(f.dir);
    } else {
        let all = f.dir.join("calls.json");
        let _ = std::fs::write(
            &all,
            serde_json::to_string_pretty(&calls).unwrap_or_default(),
        );
        println!("every cloud call of the run: {}", all.display());
        for log in f.disruptor.operator_logs() {
            println!("operator log: {}", log.display());
        }
        panic!(
            "{} violation(s) (RESILIENCE_SEED={}); see above",
            violations.len(),
            f.settings.seed
        );
    }
}

/// Violations of the run itself rather than the end state: the operator died without being
/// killed, the churn drew a spec the API server rejected (422), or the checks would have missed
/// a damaged world (so they could never fail).
fn run_violations(f: &Finish<'_>) -> Vec<check::Violation> {
    let mut problems = Vec::new();
    if f.disruptor.stats.unexpected_exits > 0 {
        problems.push(format!(
            "the operator exited {} time(s) without being killed (see its logs)",
            f.disruptor.stats.unexpected_exits
        ));
    }
    for (cause, n) in &f.churn.stats.failed {
        if cause.starts_with("HTTP 422") {
            problems.push(format!(
                "the API server rejected {n} drawn spec(s): {cause}"
            ));
        }
    }
    if let Some(world) = f.world {
        let missed = check::missed_damages(world, f.base_filter_id);
        if !missed.is_empty() {
            problems.push(format!(
                "the end-state checks missed these damages: {missed:?}"
            ));
        }
    }
    problems
        .into_iter()
        .map(|problem| check::Violation {
            subject: "the run".into(),
            problem,
            object: Value::Null,
            cloud: Value::Null,
            needles: vec![],
        })
        .collect()
}

/// Makes the out-of-band cloud filter (sessions may reference it by id) and returns its id.
async fn base_filter(url: &str) -> String {
    let cloud = VpcClient::new(ClientConfig::new(
        url,
        PROJECT,
        Credentials {
            access_key: AK.into(),
            secret_key: SK.into(),
            security_token: None,
        },
    ))
    .expect("cloud client");
    cloud
        .create_filter(&CreateFilterRequest {
            name: BASE_FILTER.into(),
            description: None,
        })
        .await
        .expect("create the out-of-band filter")
        .id
}

/// The ProviderConfig's `credentials` for `mode`: the Secret, or workload identity (a token file
/// in `dir`, the cluster registered in the emulator as identity provider, again after its restart).
async fn credentials(
    client: &Client,
    ns: &str,
    dir: &std::path::Path,
    disruptor: &mut chaos::Disruptor,
    mode: CredentialMode,
) -> Value {
    use support::workload_identity as wi;
    if mode == CredentialMode::Secret {
        return json!({"secretRef": {"namespace": ns, "name": SECRET_NAME}});
    }
    let provider = wi::identity_provider(&wi::cluster_jwks(client).await);
    wi::register_identity_provider(&disruptor.emu.url, &provider).await;
    disruptor.identity_provider = Some(provider);
    let token_file = wi::TokenFile::in_dir(dir);
    token_file.write(&wi::service_account_token(client, ns, wi::AUDIENCE, 7200).await);
    wi::workload_identity_credentials(&token_file)
}

/// The credentials Secret and the ProviderConfig `pc` (labelled for this namespace's operator)
/// pointing at the emulator (for the VPC API and IAM), with `credentials`.
async fn apply_provider(client: &Client, ns: &str, pc: &str, url: &str, credentials: Value) {
    let apply = PatchParams::apply(support::FIELD_MANAGER).force();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": SECRET_NAME},
        "stringData": {"accessKey": AK, "secretKey": SK},
    }))
    .expect("secret manifest");
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(SECRET_NAME, &apply, &Patch::Apply(&secret))
        .await
        .expect("apply the secret");
    let provider: ProviderConfig = serde_json::from_value(json!({
        "apiVersion": "vpc.hwcloud.dev/v1alpha1",
        "kind": "ProviderConfig",
        "metadata": {"name": pc, "labels": {SELECTOR_LABEL: ns}},
        "spec": {
            "region": "emulated-1",
            "projectId": PROJECT,
            "endpoint": url,
            "iamEndpoint": url,
            "credentials": credentials,
        }
    }))
    .expect("provider config manifest");
    Api::<ProviderConfig>::all(client.clone())
        .patch(pc, &apply, &Patch::Apply(&provider))
        .await
        .expect("apply the provider config");
}
