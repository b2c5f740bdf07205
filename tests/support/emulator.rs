//! The VPC emulator binary (`hwc-vpc-emulator`) as a child process of a test, with its admin API.
//!
//! Each [`Emulator`] is its own process on a free loopback port with its own state; it is killed
//! when dropped, and also when the test binary dies (see `process`).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use super::process::{self, spawn_guarded};

/// How long the emulator may take to print its `listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of one admin API call.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A running emulator process.
pub struct Emulator {
    /// Base URL of the API, `http://127.0.0.1:<port>` (no trailing slash).
    pub url: String,
    /// The project id the emulator serves.
    pub project_id: String,
    /// The emulator's stderr and every stdout line after the first.
    pub log_path: PathBuf,
    child: Child,
    dir: PathBuf,
    http: reqwest::Client,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("url", &self.url)
            .field("project_id", &self.project_id)
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// The emulator binary of this package, when it has one (`CARGO_BIN_EXE_hwc-vpc-emulator`).
    pub fn binary() -> Option<PathBuf> {
        option_env!("CARGO_BIN_EXE_hwc-vpc-emulator").map(PathBuf::from)
    }

    /// Starts the emulator for `project_id`, accepting the given (access key, secret key) pairs.
    pub fn start(project_id: &str, credentials: &[(&str, &str)]) -> Emulator {
        Self::start_with_args(project_id, credentials, &[])
    }

    /// Like [`Emulator::start`], with extra command-line arguments (e.g. `--state FILE`).
    pub fn start_with_args(
        project_id: &str,
        credentials: &[(&str, &str)],
        extra_args: &[&str],
    ) -> Emulator {
        let binary = Self::binary().expect(
            "this package has no hwc-vpc-emulator binary (src/bin/hwc-vpc-emulator.rs) yet; \
             use Emulator::start_binary",
        );
        Self::start_binary(&binary, project_id, credentials, extra_args)
    }

    /// Starts the emulator from an explicit binary.
    pub fn start_binary(
        binary: &Path,
        project_id: &str,
        credentials: &[(&str, &str)],
        extra_args: &[&str],
    ) -> Emulator {
        Self::start_binary_on(binary, "127.0.0.1:0", project_id, credentials, extra_args)
    }

    /// Starts this package's emulator listening on `listen` (`HOST:PORT`): with the port of an
    /// emulator that was just killed (and its `--state` file), that emulator comes back in place,
    /// as after a crash and restart.
    pub fn start_on(
        listen: &str,
        project_id: &str,
        credentials: &[(&str, &str)],
        extra_args: &[&str],
    ) -> Emulator {
        let binary = Self::binary().expect("this package has a hwc-vpc-emulator binary");
        Self::start_binary_on(&binary, listen, project_id, credentials, extra_args)
    }

    /// [`Emulator::start_binary`] listening on `listen` instead of a free port.
    pub fn start_binary_on(
        binary: &Path,
        listen: &str,
        project_id: &str,
        credentials: &[(&str, &str)],
        extra_args: &[&str],
    ) -> Emulator {
        let dir = process::scratch_dir("emulator");
        let log_path = dir.join("emulator.log");
        let log = File::create(&log_path)
            .unwrap_or_else(|e| panic!("create {}: {e}", log_path.display()));
        let mut cmd = Command::new(binary);
        cmd.arg("--listen")
            .arg(listen)
            .arg("--project-id")
            .arg(project_id);
        for (ak, sk) in credentials {
            cmd.arg("--credential").arg(format!("{ak}:{sk}"));
        }
        cmd.args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child =
            spawn_guarded(cmd).unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));

        // First stdout line: `listening on http://HOST:PORT`. Later lines go to the log so the
        // pipe never fills up.
        let stdout = child.stdout.take().expect("piped stdout");
        let (first_tx, first_rx) = mpsc::channel::<String>();
        let copy_to = log_path.clone();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = first_tx.send(first);
            }
            drop(first_tx);
            if let Ok(mut log) = OpenOptions::new().append(true).open(&copy_to) {
                for line in lines.map_while(Result::ok) {
                    let _ = writeln!(log, "{line}");
                }
            }
        });
        let first = first_rx.recv_timeout(START_TIMEOUT);
        let url = first
            .ok()
            .and_then(|line| {
                line.trim()
                    .strip_prefix("listening on ")
                    .map(|u| u.trim_end_matches('/').to_string())
            })
            .filter(|url| url.starts_with("http://"));
        let Some(url) = url else {
            let _ = child.kill();
            let status = child.wait();
            let log = process::tail(&log_path, 40);
            let _ = std::fs::remove_dir_all(&dir);
            panic!(
                "{} did not print `listening on http://HOST:PORT` within {START_TIMEOUT:?} \
                 (exit: {status:?}); its log ends:\n{log}",
                binary.display()
            );
        };
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(ADMIN_TIMEOUT)
            // No pooled connections: an Emulator may outlive the runtime of the test that made it.
            .pool_max_idle_per_host(0)
            .build()
            .expect("build the admin HTTP client");
        Emulator {
            url,
            project_id: project_id.to_string(),
            log_path,
            child,
            dir,
            http,
        }
    }

    /// Process id of the emulator.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the emulator now (SIGKILL) and waits for it; for crash and outage tests.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The emulator's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Every API call the emulator received, in order
    /// (`{method, path, query, body, status, throttled, at}`; a throttled call has status 429).
    pub async fn calls(&self) -> Vec<Value> {
        let value = self.admin(reqwest::Method::GET, "calls", None).await;
        match value {
            Value::Array(calls) => calls,
            Value::Object(mut map) => match map.remove("calls") {
                Some(Value::Array(calls)) => calls,
                _ => panic!("GET /_emulator/calls: no `calls` array in {map:?}"),
            },
            other => panic!("GET /_emulator/calls: unexpected answer {other}"),
        }
    }

    /// Forgets the calls received so far.
    pub async fn clear_calls(&self) {
        self.admin(reqwest::Method::DELETE, "calls", None).await;
    }

    /// Queues a fault (see the emulator's `FaultSpec`: method, path_contains, status, error_code,
    /// error_msg, times, delay_ms, retry_after_s, drop_connection, execute).
    pub async fn fault(&self, spec: Value) {
        self.admin(reqwest::Method::POST, "faults", Some(spec))
            .await;
    }

    /// Drops every pending fault.
    pub async fn clear_faults(&self) {
        self.admin(reqwest::Method::DELETE, "faults", None).await;
    }

    /// The throttling and latency in force (`GET /_emulator/limits`):
    /// `{"rate_limit": {"rps", "burst"} | null, "latency": {"ms", "jitter_ms"} | null}`.
    pub async fn limits(&self) -> Value {
        self.admin(reqwest::Method::GET, "limits", None).await
    }

    /// Replaces the throttling and latency (`PUT /_emulator/limits`; an absent part is off) and
    /// refills every bucket; returns the configuration now in force.
    pub async fn set_limits(&self, limits: Value) -> Value {
        self.admin(reqwest::Method::PUT, "limits", Some(limits))
            .await
    }

    /// Throttles like the gateway from now on: a token bucket per project of `rps` calls a second
    /// holding `burst` calls (`None`: the emulator's default, `rps` rounded up). Keeps the latency.
    pub async fn set_rate_limit(&self, rps: f64, burst: Option<u32>) -> Value {
        let mut limits = self.limits().await;
        limits["rate_limit"] = serde_json::json!({ "rps": rps, "burst": burst });
        self.set_limits(limits).await
    }

    /// Delays every API call by `ms` ± `jitter_ms` milliseconds from now on. Keeps the rate limit
    /// (and refills its buckets).
    pub async fn set_latency(&self, ms: u64, jitter_ms: u64) -> Value {
        let mut limits = self.limits().await;
        limits["latency"] = serde_json::json!({ "ms": ms, "jitter_ms": jitter_ms });
        self.set_limits(limits).await
    }

    /// Turns throttling and latency off.
    pub async fn clear_limits(&self) -> Value {
        self.set_limits(serde_json::json!({})).await
    }

    /// Serves `BatchCreateTrafficMirrorFilterRules` (`true`, the default) or answers it 404
    /// `APIGW.0101` like an endpoint without it (`PUT /_emulator/batch-rule-create`).
    pub async fn set_batch_rule_create(&self, enabled: bool) {
        let body = serde_json::json!({ "enabled": enabled });
        self.admin(reqwest::Method::PUT, "batch-rule-create", Some(body))
            .await;
    }

    /// Clears all data, calls and faults, and puts the limits back to the command line's.
    pub async fn reset(&self) {
        self.admin(reqwest::Method::POST, "reset", None).await;
    }

    /// The stored data as the emulator holds it (`{sessions, filters, rules}`).
    pub async fn state(&self) -> Value {
        self.admin(reqwest::Method::GET, "state", None).await
    }

    /// One admin call; panics on any failure (these are test preconditions, not the subject).
    async fn admin(&self, method: reqwest::Method, what: &str, body: Option<Value>) -> Value {
        let url = format!("{}/_emulator/{what}", self.url);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status();
        let text = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: reading the answer: {e}"));
        assert!(
            status.is_success(),
            "{method} {url} (body {body:?}) answered {status}: {text}"
        );
        if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{method} {url}: answer is not JSON ({e}): {text}"))
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
