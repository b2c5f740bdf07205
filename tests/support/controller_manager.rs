//! kube-controller-manager next to the test kube-apiserver, running only the controllers a real
//! cluster needs for deletion to finish: the namespace controller (without it `kubectl delete
//! namespace` leaves the namespace Terminating forever) and the garbage collector (without it an
//! object whose ownerReference points to a deleted owner is never removed).
//!
//! Started by [`super::control_plane`] for every control plane whose binaries include
//! `kube-controller-manager` (the newest version's; the oldest module does not build it). It
//! talks to the API server as its own token user (in `system:masters`, so the controllers may
//! delete anything, as they may in a real cluster with their service-account roles), serves
//! `/healthz` on a free loopback port, logs into the control plane's scratch directory and never
//! outlives the test binary (see `process`). It reconnects by itself when the API server is
//! restarted in place (`restart`), because the URL and the CA it trusts stay the same.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::{Client, Config};

use super::process::{free_port, spawn_guarded, tail};

/// The binary's file name in a control plane's bin dir.
pub const BINARY: &str = "kube-controller-manager";
/// The controllers run: the namespace controller and the garbage collector, nothing else (no
/// service-account token controller, so no signing key is needed; no workload controllers).
pub const CONTROLLERS: &str = "namespace,garbagecollector";
/// The names under which both controllers report in `/healthz?verbose` once they are built.
const HEALTH_CHECKS: [&str; 2] = ["namespace-controller", "garbage-collector-controller"];
/// How long kube-controller-manager may take to report both controllers healthy.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Starts retried when the port picked as free was taken before it bound it.
const START_ATTEMPTS: usize = 4;
/// Poll interval while waiting for it.
const POLL: Duration = Duration::from_millis(100);
/// Lines of its log quoted in a failure message.
const LOG_TAIL_LINES: usize = 40;

/// A started kube-controller-manager, still owned by the caller.
pub struct Started {
    /// The process; hand it to `process::keep_until_exit`.
    pub child: Child,
    /// Its log (stdout and stderr).
    pub log: PathBuf,
}

/// Starts `bin_dir/kube-controller-manager` against the API server that `kubeconfig` names and
/// waits until `/healthz?verbose` reports both controllers; `Ok(None)` when `bin_dir` has no such
/// binary. A port clash is retried with a new port; any other failure quotes the log's end.
pub fn start(
    bin_dir: &Path,
    kubeconfig: &Path,
    work_dir: &Path,
) -> Result<Option<Started>, String> {
    let binary = bin_dir.join(BINARY);
    if !binary.is_file() {
        return Ok(None);
    }
    let log = work_dir.join("kube-controller-manager.log");
    let mut last = String::new();
    for _ in 0..START_ATTEMPTS {
        let (port, listener) = free_port();
        let mut cmd = Command::new(&binary);
        cmd.args(args(kubeconfig, port));
        redirect_output(&mut cmd, &log)?;
        drop(listener);
        let mut child =
            spawn_guarded(cmd).map_err(|e| format!("start {}: {e}", binary.display()))?;
        match wait_healthy(&mut child, port, &log) {
            Ok(()) => return Ok(Some(Started { child, log })),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                if !e.contains("address already in use") {
                    return Err(e);
                }
                last = e;
            }
        }
    }
    Err(format!(
        "{START_ATTEMPTS} kube-controller-manager starts lost their port; last: {last}"
    ))
}

/// The command line: no leader election (one instance, and a restart must not wait for a lease),
/// the kubeconfig's own credentials for every controller, `/healthz` on loopback `port` (with an
/// in-memory self-signed certificate; `/healthz` needs no authentication).
pub fn args(kubeconfig: &Path, port: u16) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--controllers={CONTROLLERS}"),
        "--use-service-account-credentials=false".into(),
        "--leader-elect=false".into(),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={port}"),
    ]
}

fn redirect_output(cmd: &mut Command, log: &Path) -> Result<(), String> {
    let file = File::create(log).map_err(|e| format!("create {}: {e}", log.display()))?;
    let copy = file
        .try_clone()
        .map_err(|e| format!("dup {}: {e}", log.display()))?;
    cmd.stdin(Stdio::null()).stdout(copy).stderr(file);
    Ok(())
}

/// Polls `https://127.0.0.1:<port>/healthz?verbose` (from its own thread and runtime: the caller
/// may be on a tokio runtime thread) until both [`HEALTH_CHECKS`] say ok, `child` exits, or
/// [`READY_TIMEOUT`] passes.
fn wait_healthy(child: &mut Child, port: u16, log: &Path) -> Result<(), String> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("tokio runtime: {e}"))?;
                runtime.block_on(poll_healthy(child, port, log))
            })
            .join()
            .unwrap_or_else(|_| Err("the kube-controller-manager poller panicked".to_string()))
    })
}

async fn poll_healthy(child: &mut Child, port: u16, log: &Path) -> Result<(), String> {
    let client = health_client(port)?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "kube-controller-manager exited during start-up ({status}); its log ends:\n{}",
                tail(log, LOG_TAIL_LINES)
            ));
        }
        let last = match tokio::time::timeout(Duration::from_secs(5), healthz(&client)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e,
            Err(_) => "no answer within 5s".to_string(),
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "kube-controller-manager not healthy within {READY_TIMEOUT:?} (last: {last}); \
                 its log ends:\n{}",
                tail(log, LOG_TAIL_LINES)
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// An anonymous client for the health endpoint; its certificate is self-signed in memory, so
/// it is not verified (loopback, and nothing but `/healthz` is asked).
fn health_client(port: u16) -> Result<Client, String> {
    let url = format!("https://127.0.0.1:{port}")
        .parse()
        .map_err(|e| format!("kube-controller-manager url: {e}"))?;
    let mut config = Config::new(url);
    config.accept_invalid_certs = true;
    config.proxy_url = None;
    Client::try_from(config).map_err(|e| format!("kube client for /healthz: {e}"))
}

/// Ok once `/healthz?verbose` answers 200 and lists both controllers as ok.
async fn healthz(client: &Client) -> Result<(), String> {
    let request = http::Request::get("/healthz?verbose")
        .body(Vec::new())
        .map_err(|e| format!("request /healthz: {e}"))?;
    let text = client
        .request_text(request)
        .await
        .map_err(|e| format!("/healthz: {e}"))?;
    match HEALTH_CHECKS
        .iter()
        .find(|check| !text.contains(&format!("[+]{check} ok")))
    {
        None => Ok(()),
        Some(check) => Err(format!("/healthz does not list {check} ok yet")),
    }
}
