//! Restarting the kube-apiserver of a running [`ControlPlane`] in place: same binary, same
//! command line (read back from `/proc`), same port, same etcd and certificates.
//!
//! Resilience tests need the operator to live through an API-server restart (its watches must
//! reconnect); nothing else restarts a part of the shared control plane, so this lives apart from
//! `control_plane` and changes nothing there. Linux only (`/proc/<pid>/cmdline`).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::ControlPlane;
use super::process::{keep_until_exit, process_alive, spawn_guarded, tail};

/// How long a stopped kube-apiserver may take to exit after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// How long the restarted kube-apiserver may take to report `/readyz` ok.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// Starts retried while the old process's port is not free yet.
const START_ATTEMPTS: usize = 5;
/// Poll interval while waiting.
const POLL: Duration = Duration::from_millis(100);

/// The process id of each control plane's kube-apiserver after a restart, by work directory
/// (the [`ControlPlane`] itself is shared and immutable, so its `apiserver_pid` keeps the first).
fn restarted() -> &'static Mutex<BTreeMap<PathBuf, u32>> {
    static PIDS: Mutex<BTreeMap<PathBuf, u32>> = Mutex::new(BTreeMap::new());
    &PIDS
}

/// The process id of `cp`'s kube-apiserver now (after any restarts).
pub fn apiserver_pid(cp: &ControlPlane) -> u32 {
    restarted()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&cp.work_dir)
        .copied()
        .unwrap_or(cp.apiserver_pid)
}

/// Stops `cp`'s kube-apiserver (SIGTERM, SIGKILL after [`STOP_GRACE`]) and starts it again with
/// the same command line, on the same port, against the same etcd; returns once `/readyz` says
/// ok, with the new process id. Clients keep working afterwards: the serving certificate in
/// `--cert-dir` is reused, so the kubeconfig's pinned CA still matches.
pub async fn restart_apiserver(cp: &ControlPlane) -> Result<u32, String> {
    let old = apiserver_pid(cp);
    let argv = cmdline(old)?;
    stop(old).await?;
    let mut last = String::new();
    for _ in 0..START_ATTEMPTS {
        let mut child = spawn(&argv, cp)?;
        match wait_ready(cp, &mut child).await {
            Ok(()) => {
                let pid = child.id();
                keep_until_exit(child);
                restarted()
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(cp.work_dir.clone(), pid);
                return Ok(pid);
            }
            Err(e) if e.contains("address already in use") => {
                last = e;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        }
    }
    Err(format!(
        "{START_ATTEMPTS} restarts found the port taken; last: {last}"
    ))
}

/// The command line of process `pid`.
fn cmdline(pid: u32) -> Result<Vec<String>, String> {
    let path = format!("/proc/{pid}/cmdline");
    let raw = std::fs::read(&path).map_err(|e| format!("read {path}: {e}"))?;
    let argv: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|part| !part.is_empty())
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect();
    if argv.is_empty() {
        return Err(format!("{path} is empty (has process {pid} exited?)"));
    }
    Ok(argv)
}

/// Sends SIGTERM to `pid`, then SIGKILL if it still runs after [`STOP_GRACE`], and waits until it
/// has exited (a zombie counts: its port is free; it is reaped at exit by `process`).
async fn stop(pid: u32) -> Result<(), String> {
    let raw = libc::pid_t::try_from(pid).map_err(|e| format!("pid {pid}: {e}"))?;
    // SAFETY: plain signal delivery to a process this test binary started.
    unsafe { libc::kill(raw, libc::SIGTERM) };
    let deadline = Instant::now() + STOP_GRACE;
    while process_alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
    if process_alive(pid) {
        // SAFETY: as above.
        unsafe { libc::kill(raw, libc::SIGKILL) };
        let deadline = Instant::now() + STOP_GRACE;
        while process_alive(pid) {
            if Instant::now() >= deadline {
                return Err(format!("kube-apiserver {pid} survived SIGKILL"));
            }
            tokio::time::sleep(POLL).await;
        }
    }
    Ok(())
}

/// Starts `argv` with its output appended to `cp`'s kube-apiserver log.
fn spawn(argv: &[String], cp: &ControlPlane) -> Result<Child, String> {
    let log = OpenOptions::new()
        .append(true)
        .create(true)
        .open(&cp.apiserver_log)
        .map_err(|e| format!("open {}: {e}", cp.apiserver_log.display()))?;
    let copy = log
        .try_clone()
        .map_err(|e| format!("dup {}: {e}", cp.apiserver_log.display()))?;
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(copy)
        .stderr(log);
    spawn_guarded(cmd).map_err(|e| format!("start {}: {e}", argv[0]))
}

/// Waits until `/readyz` answers ok through a client of `cp`; an early exit of `child` is an
/// error quoting the end of the log.
async fn wait_ready(cp: &ControlPlane, child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let client = cp.client().await;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "the restarted kube-apiserver exited ({status}); its log ends:\n{}",
                tail(&cp.apiserver_log, 30)
            ));
        }
        let request = http::Request::get("/readyz")
            .body(Vec::new())
            .map_err(|e| format!("request /readyz: {e}"))?;
        let last = match tokio::time::timeout(Duration::from_secs(5), client.request_text(request))
            .await
        {
            Ok(Ok(text)) if text.trim() == "ok" => return Ok(()),
            Ok(Ok(text)) => format!("/readyz said {text:?}"),
            Ok(Err(e)) => format!("/readyz: {e}"),
            Err(_) => "no answer within 5s".to_string(),
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "the restarted kube-apiserver was not ready within {READY_TIMEOUT:?} \
                 (last: {last}); its log ends:\n{}",
                tail(&cp.apiserver_log, 30)
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}
