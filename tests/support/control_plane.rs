//! A real etcd + kube-apiserver (+ kube-controller-manager where built) per supported Kubernetes
//! [`Version`], each started once per test binary (on first use) and shared by its tests.
//!
//! The binaries of the newest version come from `make control-plane` (env `TMO_CONTROL_PLANE_DIR`),
//! those of the oldest from `make control-plane-oldest` (env `TMO_CONTROL_PLANE_DIR_OLDEST`); else
//! the version's `build.sh` (`tests/control-plane/`, `tests/control-plane-1.30/`) is run. Either
//! way the kube-apiserver must report the Kubernetes version pinned in that module's `go.mod`. The
//! processes listen on free loopback ports, keep their data and logs in a scratch directory, and
//! never outlive the test binary (see `process`). When the binaries include kube-controller-manager
//! (the newest version's do) it runs too, with the namespace controller and the garbage collector,
//! so namespace deletion and ownerReference garbage collection finish as in a real cluster (see
//! `controller_manager`); it starts with the rest and not lazily, because any test may delete a
//! namespace or an owner, and it adds about a second to a test binary's start (0.8-1.0 s from
//! spawn to healthy, measured on a busy 2-core machine).
//! Clients authenticate with a random bearer token of user `admin` in group `system:masters`;
//! authorization is RBAC, as in a real cluster.

use std::fmt;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::controller_manager;
use super::process::{self, free_port, spawn_guarded, tail};

/// How long etcd may take to answer on its client port.
const ETCD_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long kube-apiserver may take to report `/readyz` ok (it usually needs 1-3 s).
const APISERVER_READY_TIMEOUT: Duration = Duration::from_secs(90);
/// Starts retried when a port picked as free was taken before the child bound it.
const START_ATTEMPTS: usize = 4;
/// Poll interval while waiting for the processes.
const POLL: Duration = Duration::from_millis(50);
/// Lines of a log quoted in a failure message.
const LOG_TAIL_LINES: usize = 40;
/// The user kube-controller-manager authenticates as (the name a real cluster gives it).
pub const KCM_USER: &str = "system:kube-controller-manager";

/// A supported Kubernetes version the tests run against: the ends of the support range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// The newest (`tests/control-plane`, v1.37.2).
    Newest,
    /// The oldest (`tests/control-plane-1.30`, v1.30.14).
    Oldest,
}

impl Version {
    /// Both, newest first.
    pub const ALL: [Version; 2] = [Version::Newest, Version::Oldest];

    /// The environment variable naming the directory with this version's binaries.
    pub fn env_var(self) -> &'static str {
        match self {
            Version::Newest => "TMO_CONTROL_PLANE_DIR",
            Version::Oldest => "TMO_CONTROL_PLANE_DIR_OLDEST",
        }
    }

    /// The Go module (under `tests/`) that pins this version and builds its binaries.
    pub fn module_dir(self) -> PathBuf {
        let dir = match self {
            Version::Newest => "control-plane",
            Version::Oldest => "control-plane-1.30",
        };
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join(dir)
    }

    /// The `make` target that builds this version's binaries and prints their directory last.
    pub fn make_target(self) -> &'static str {
        match self {
            Version::Newest => "control-plane",
            Version::Oldest => "control-plane-oldest",
        }
    }

    /// The Kubernetes version pinned in the module's `go.mod` (e.g. `v1.30.14`).
    pub fn pinned(self) -> Result<String, String> {
        let go_mod = self.module_dir().join("go.mod");
        let text =
            fs::read_to_string(&go_mod).map_err(|e| format!("read {}: {e}", go_mod.display()))?;
        text.lines()
            .filter_map(|line| line.split_once("k8s.io/kubernetes v"))
            .map(|(_, rest)| format!("v{}", rest.split_whitespace().next().unwrap_or_default()))
            .next()
            .ok_or_else(|| format!("{} pins no k8s.io/kubernetes", go_mod.display()))
    }
}

/// A running control plane; get it with [`control_plane`] or [`control_plane_for`].
pub struct ControlPlane {
    /// Which supported version this is.
    pub version: Version,
    /// What its kube-apiserver reports, e.g. `v1.30.14`.
    pub kubernetes_version: String,
    /// A kubeconfig for the admin user (token auth, server CA pinned); also for `kubectl`.
    pub kubeconfig_path: PathBuf,
    /// The `kubectl` built with the control plane.
    pub kubectl: PathBuf,
    /// The directory holding `etcd`, `kube-apiserver`, `kubectl` (and `kube-controller-manager`).
    pub bin_dir: PathBuf,
    /// `https://127.0.0.1:<port>` of kube-apiserver.
    pub server_url: String,
    /// `http://127.0.0.1:<port>` of etcd's client endpoint.
    pub etcd_url: String,
    /// Scratch directory with the etcd data, certificates, keys and logs (removed at exit).
    pub work_dir: PathBuf,
    /// etcd's log (stdout and stderr).
    pub etcd_log: PathBuf,
    /// kube-apiserver's log (stdout and stderr).
    pub apiserver_log: PathBuf,
    /// Process id of etcd.
    pub etcd_pid: u32,
    /// Process id of kube-apiserver.
    pub apiserver_pid: u32,
    /// The CA bundle kube-apiserver generated for its serving certificate.
    pub ca_cert: PathBuf,
    /// Process id of kube-controller-manager; `None` when the binaries include none (the oldest
    /// version's), so namespaces stay Terminating and owned objects are never collected there.
    pub controller_manager_pid: Option<u32>,
    /// kube-controller-manager's log (stdout and stderr), when it runs.
    pub controller_manager_log: Option<PathBuf>,
}

impl fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlPlane")
            .field("version", &self.version)
            .field("kubernetes_version", &self.kubernetes_version)
            .field("server_url", &self.server_url)
            .field("etcd_url", &self.etcd_url)
            .field("kubeconfig_path", &self.kubeconfig_path)
            .field("bin_dir", &self.bin_dir)
            .field("work_dir", &self.work_dir)
            .field("etcd_pid", &self.etcd_pid)
            .field("apiserver_pid", &self.apiserver_pid)
            .field("controller_manager_pid", &self.controller_manager_pid)
            .finish_non_exhaustive()
    }
}

/// The control plane of the newest supported version: [`control_plane_for`]`(Version::Newest)`.
pub fn control_plane() -> &'static ControlPlane {
    control_plane_for(Version::Newest)
}

/// The control plane of `version` in this test binary, started on first use (blocking, a few
/// seconds; the first build of the binaries takes minutes) and shared by every test in the binary
/// that asks for that version. Panics, in every test that asks, if it could not start.
pub fn control_plane_for(version: Version) -> &'static ControlPlane {
    static NEWEST: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
    static OLDEST: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
    let cell = match version {
        Version::Newest => &NEWEST,
        Version::Oldest => &OLDEST,
    };
    match cell.get_or_init(|| ControlPlane::start(version)) {
        Ok(cp) => cp,
        Err(e) => panic!("the test control plane ({version:?}) failed to start: {e}"),
    }
}

impl ControlPlane {
    /// A kube client config for the admin user (proxy settings from the environment ignored).
    pub async fn config(&self) -> Config {
        load_config(&self.kubeconfig_path)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A new kube client for the admin user. Make one per test: a client belongs to the tokio
    /// runtime it was made on, and every `#[tokio::test]` has its own.
    pub async fn client(&self) -> Client {
        Client::try_from(self.config().await).expect("build a kube client from the kubeconfig")
    }

    /// A `kubectl` command against this control plane (own discovery cache, `KUBECONFIG` set),
    /// for callers that need stdin or a custom environment.
    pub fn kubectl_command(&self) -> Command {
        let mut cmd = Command::new(&self.kubectl);
        cmd.env("KUBECONFIG", &self.kubeconfig_path)
            .arg(format!(
                "--cache-dir={}",
                self.work_dir.join("kubectl-cache").display()
            ))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `kubectl <args>` against this control plane and returns its output (any exit code).
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_command()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.kubectl.display()))
    }

    fn start(version: Version) -> Result<ControlPlane, String> {
        let bin_dir = binaries_dir_for(version)?;
        let kubernetes_version = check_version(version, &bin_dir)?;
        let work_dir = process::scratch_dir("cp");
        process::remove_at_exit(work_dir.clone());
        let sa_key = work_dir.join("service-account.key");
        write_service_account_key(&sa_key)?;
        let token = uuid::Uuid::new_v4().simple().to_string();
        let kcm_token = uuid::Uuid::new_v4().simple().to_string();
        let tokens = work_dir.join("tokens.csv");
        // kube-controller-manager has a user of its own, so its writes are told apart from the
        // tests' (managedFields, the API server log).
        let users = format!(
            "{token},admin,admin,\"system:masters\"\n\
             {kcm_token},{KCM_USER},{KCM_USER},\"system:masters\"\n"
        );
        fs::write(&tokens, users).map_err(|e| format!("write {}: {e}", tokens.display()))?;
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(&bin_dir, &work_dir, &token) {
                Ok(cp) => {
                    let cp = ControlPlane {
                        version,
                        kubernetes_version,
                        ..cp
                    };
                    return cp.with_controller_manager(&kcm_token);
                }
                Err(StartError::PortTaken(msg)) => last = msg,
                Err(StartError::Failed(msg)) => return Err(msg),
            }
        }
        Err(format!(
            "{START_ATTEMPTS} attempts lost their ports to other processes; last: {last}"
        ))
    }

    fn try_start(bin_dir: &Path, work_dir: &Path, token: &str) -> Result<ControlPlane, StartError> {
        // etcd first, and make sure the etcd on that port is ours (a unique member name) before
        // kube-apiserver writes to it: if our etcd lost its port, another one may be listening.
        let member = format!("tmo-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let (client_port, client_listener) = free_port();
        let (peer_port, peer_listener) = free_port();
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let data_dir = work_dir.join("etcd-data");
        let _ = fs::remove_dir_all(&data_dir);
        let etcd_log = work_dir.join("etcd.log");
        let mut cmd = Command::new(bin_dir.join("etcd"));
        cmd.arg(format!("--name={member}"))
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--listen-client-urls={etcd_url}"))
            .arg(format!("--advertise-client-urls={etcd_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster={member}={peer_url}"))
            .arg("--unsafe-no-fsync")
            .arg("--log-level=warn");
        redirect_output(&mut cmd, &etcd_log)?;
        drop((client_listener, peer_listener));
        let mut etcd = spawn_guarded(cmd)
            .map_err(|e| StartError::Failed(format!("start {}/etcd: {e}", bin_dir.display())))?;
        if let Err(e) = wait_for_etcd(&mut etcd, client_port, &member, &etcd_log) {
            kill(&mut etcd);
            return Err(e);
        }

        let (secure_port, secure_listener) = free_port();
        let server_url = format!("https://127.0.0.1:{secure_port}");
        let cert_dir = work_dir.join("certs");
        let ca_cert = cert_dir.join("apiserver.crt");
        let sa_key = work_dir.join("service-account.key");
        let apiserver_log = work_dir.join("kube-apiserver.log");
        let mut cmd = Command::new(bin_dir.join("kube-apiserver"));
        cmd.arg(format!("--etcd-servers={etcd_url}"))
            .arg(format!("--cert-dir={}", cert_dir.display()))
            .arg(format!("--secure-port={secure_port}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            // The endpoint reconciler refuses a loopback advertise address; nothing here needs
            // the `kubernetes` Service endpoints.
            .arg("--endpoint-reconciler-type=none")
            .arg("--service-cluster-ip-range=10.0.0.0/24")
            .arg("--authorization-mode=RBAC")
            .arg(format!(
                "--token-auth-file={}",
                work_dir.join("tokens.csv").display()
            ))
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg(format!("--service-account-key-file={}", sa_key.display()))
            .arg(format!(
                "--service-account-signing-key-file={}",
                sa_key.display()
            ))
            .arg("--disable-admission-plugins=ServiceAccount")
            .arg("--allow-privileged=true");
        redirect_output(&mut cmd, &apiserver_log)?;

        // The kubeconfig pins the CA that kube-apiserver writes into --cert-dir at start-up.
        let kubeconfig_path = work_dir.join("kubeconfig");
        write_kubeconfig(&kubeconfig_path, &server_url, &ca_cert, token)?;

        drop(secure_listener);
        let mut apiserver = spawn_guarded(cmd).map_err(|e| {
            StartError::Failed(format!("start {}/kube-apiserver: {e}", bin_dir.display()))
        })?;
        if let Err(e) = wait_for_apiserver(
            &mut etcd,
            &mut apiserver,
            &kubeconfig_path,
            &etcd_log,
            &apiserver_log,
        ) {
            kill(&mut apiserver);
            kill(&mut etcd);
            return Err(e);
        }

        let cp = ControlPlane {
            version: Version::Newest, // set by the caller
            kubernetes_version: String::new(),
            kubeconfig_path,
            kubectl: bin_dir.join("kubectl"),
            bin_dir: bin_dir.to_path_buf(),
            server_url,
            etcd_url,
            work_dir: work_dir.to_path_buf(),
            etcd_log,
            apiserver_log,
            etcd_pid: etcd.id(),
            apiserver_pid: apiserver.id(),
            ca_cert,
            controller_manager_pid: None,
            controller_manager_log: None,
        };
        process::keep_until_exit(apiserver);
        process::keep_until_exit(etcd);
        Ok(cp)
    }
}

impl ControlPlane {
    /// Starts kube-controller-manager against this control plane's API server (when the
    /// binaries include it), authenticated by `token` of [`KCM_USER`], and records it.
    fn with_controller_manager(mut self, token: &str) -> Result<ControlPlane, String> {
        let kubeconfig = self.work_dir.join("controller-manager.kubeconfig");
        write_kubeconfig(&kubeconfig, &self.server_url, &self.ca_cert, token)
            .map_err(StartError::into_message)?;
        if let Some(started) =
            controller_manager::start(&self.bin_dir, &kubeconfig, &self.work_dir)?
        {
            self.controller_manager_pid = Some(started.child.id());
            self.controller_manager_log = Some(started.log);
            process::keep_until_exit(started.child);
        }
        Ok(self)
    }
}

/// Why one start attempt failed.
enum StartError {
    /// A port we picked was taken before the child bound it: try again with new ports.
    PortTaken(String),
    /// Anything else: give up.
    Failed(String),
}

impl StartError {
    /// The message, whatever the kind.
    fn into_message(self) -> String {
        match self {
            StartError::PortTaken(msg) | StartError::Failed(msg) => msg,
        }
    }
}

/// Classifies the failure of a child that exited during start-up from its log.
fn exited(what: &str, status: std::process::ExitStatus, log: &Path) -> StartError {
    let tail = tail(log, LOG_TAIL_LINES);
    let msg = format!("{what} exited during start-up ({status}); its log ends:\n{tail}");
    if tail.contains("address already in use") {
        StartError::PortTaken(msg)
    } else {
        StartError::Failed(msg)
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn redirect_output(cmd: &mut Command, log: &Path) -> Result<(), StartError> {
    let file = File::create(log)
        .map_err(|e| StartError::Failed(format!("create {}: {e}", log.display())))?;
    let copy = file
        .try_clone()
        .map_err(|e| StartError::Failed(format!("dup {}: {e}", log.display())))?;
    cmd.stdin(Stdio::null()).stdout(copy).stderr(file);
    Ok(())
}

/// Waits until the etcd on `port` answers and reports `member` as its (only) member.
fn wait_for_etcd(etcd: &mut Child, port: u16, member: &str, log: &Path) -> Result<(), StartError> {
    let deadline = Instant::now() + ETCD_START_TIMEOUT;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let wanted = format!("\"name\":\"{member}\"");
    loop {
        if let Ok(Some(status)) = etcd.try_wait() {
            return Err(exited("etcd", status, log));
        }
        if etcd_members(addr).is_some_and(|body| body.contains(&wanted)) {
            // Our etcd could still be about to die of a port clash while another one answered.
            if let Ok(Some(status)) = etcd.try_wait() {
                return Err(exited("etcd", status, log));
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(StartError::Failed(format!(
                "etcd did not answer on {addr} within {ETCD_START_TIMEOUT:?}; its log ends:\n{}",
                tail(log, LOG_TAIL_LINES)
            )));
        }
        std::thread::sleep(POLL);
    }
}

/// The raw answer of etcd's member-list endpoint (gRPC gateway), if it answers.
fn etcd_members(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(
            b"POST /v3/cluster/member/list HTTP/1.0\r\nHost: 127.0.0.1\r\n\
              Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        )
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// Waits until kube-apiserver reports `/readyz` ok through a kube client built from the
/// kubeconfig (which also proves the kubeconfig, CA and token work) and `default` exists.
fn wait_for_apiserver(
    etcd: &mut Child,
    apiserver: &mut Child,
    kubeconfig: &Path,
    etcd_log: &Path,
    apiserver_log: &Path,
) -> Result<(), StartError> {
    // The caller may be on a tokio runtime thread (tests call `control_plane()` from async
    // code), where blocking on another runtime is not allowed: poll from a scoped thread.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| StartError::Failed(format!("tokio runtime: {e}")))?;
                runtime.block_on(poll_apiserver(
                    etcd,
                    apiserver,
                    kubeconfig,
                    etcd_log,
                    apiserver_log,
                ))
            })
            .join()
            .unwrap_or_else(|_| {
                Err(StartError::Failed(
                    "the readiness poller panicked".to_string(),
                ))
            })
    })
}

async fn poll_apiserver(
    etcd: &mut Child,
    apiserver: &mut Child,
    kubeconfig: &Path,
    etcd_log: &Path,
    apiserver_log: &Path,
) -> Result<(), StartError> {
    let deadline = Instant::now() + APISERVER_READY_TIMEOUT;
    let mut client: Option<Client> = None;
    let mut last = String::from("not polled yet");
    loop {
        if let Ok(Some(status)) = etcd.try_wait() {
            return Err(exited("etcd", status, etcd_log));
        }
        if let Ok(Some(status)) = apiserver.try_wait() {
            return Err(exited("kube-apiserver", status, apiserver_log));
        }
        if client.is_none() {
            // Fails until kube-apiserver has written its CA into --cert-dir.
            match load_config(kubeconfig).await.and_then(|config| {
                Client::try_from(config).map_err(|e| format!("kube client: {e}"))
            }) {
                Ok(c) => client = Some(c),
                Err(e) => last = e,
            }
        }
        if let Some(client) = &client {
            match tokio::time::timeout(Duration::from_secs(5), ready(client)).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => last = e,
                Err(_) => last = "no answer within 5s".to_string(),
            }
        }
        if Instant::now() >= deadline {
            return Err(StartError::Failed(format!(
                "kube-apiserver not ready within {APISERVER_READY_TIMEOUT:?} (last: {last}); \
                 its log ends:\n{}",
                tail(apiserver_log, LOG_TAIL_LINES)
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn ready(client: &Client) -> Result<(), String> {
    let get = |path: &str| {
        http::Request::get(path)
            .body(Vec::new())
            .map_err(|e| format!("request {path}: {e}"))
    };
    let readyz = client
        .request_text(get("/readyz")?)
        .await
        .map_err(|e| format!("/readyz: {e}"))?;
    if readyz.trim() != "ok" {
        return Err(format!("/readyz said {readyz:?}"));
    }
    client
        .request_text(get("/api/v1/namespaces/default")?)
        .await
        .map_err(|e| format!("namespace default: {e}"))?;
    Ok(())
}

async fn load_config(kubeconfig: &Path) -> Result<Config, String> {
    let kc = Kubeconfig::read_from(kubeconfig)
        .map_err(|e| format!("read {}: {e}", kubeconfig.display()))?;
    let mut config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| format!("load {}: {e}", kubeconfig.display()))?;
    // kube reads HTTPS_PROXY from the environment; the control plane is on loopback.
    config.proxy_url = None;
    Ok(config)
}

fn write_kubeconfig(
    path: &Path,
    server_url: &str,
    ca_cert: &Path,
    token: &str,
) -> Result<(), StartError> {
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "tmo-test", "cluster": {
            "server": server_url,
            "certificate-authority": ca_cert,
        }}],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "tmo-test", "context": {
            "cluster": "tmo-test", "user": "admin", "namespace": "default",
        }}],
        "current-context": "tmo-test",
    });
    let yaml = serde_yaml::to_string(&kubeconfig)
        .map_err(|e| StartError::Failed(format!("kubeconfig yaml: {e}")))?;
    fs::write(path, yaml).map_err(|e| StartError::Failed(format!("write {}: {e}", path.display())))
}

/// Writes a fresh P-256 key (SEC1 "EC PRIVATE KEY" PEM, which both --service-account-key-file
/// and --service-account-signing-key-file accept).
fn write_service_account_key(path: &Path) -> Result<(), String> {
    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING)
        .map_err(|e| format!("generate the service-account key: {e}"))?;
    let der = key
        .private_key()
        .as_der()
        .map_err(|e| format!("encode the service-account key: {e}"))?;
    let pem = pem::encode(&pem::Pem::new("EC PRIVATE KEY", der.as_ref()));
    fs::write(path, pem).map_err(|e| format!("write {}: {e}", path.display()))
}

/// The directory with the newest version's binaries: [`binaries_dir_for`]`(Version::Newest)`.
pub fn binaries_dir() -> Result<PathBuf, String> {
    binaries_dir_for(Version::Newest)
}

/// The directory with the binaries of `version`: its environment variable
/// ([`Version::env_var`]), else what its `build.sh` prints last (building them if needed); checks
/// that all three are there.
pub fn binaries_dir_for(version: Version) -> Result<PathBuf, String> {
    let var = version.env_var();
    let target = version.make_target();
    let dir = match std::env::var_os(var).filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let script = version.module_dir().join("build.sh");
            // Progress (stderr) goes straight to the terminal: a first build takes minutes.
            let out = Command::new("bash")
                .arg(&script)
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .output()
                .map_err(|e| format!("run {}: {e}", script.display()))?;
            if !out.status.success() {
                return Err(format!(
                    "{} failed ({}); set {var} or run `make {target}`",
                    script.display(),
                    out.status
                ));
            }
            let stdout = String::from_utf8_lossy(&out.stdout);
            let last = stdout.lines().rev().find(|l| !l.trim().is_empty());
            PathBuf::from(last.ok_or("build.sh printed nothing")?.trim())
        }
    };
    for bin in ["etcd", "kube-apiserver", "kubectl"] {
        if !dir.join(bin).is_file() {
            return Err(format!(
                "{} has no {bin} ({var} must be what `make {target}` prints last)",
                dir.display()
            ));
        }
    }
    Ok(dir)
}

/// Checks that `bin_dir/kube-apiserver --version` is the version pinned for `version` (so a
/// misdirected `TMO_CONTROL_PLANE_DIR*` cannot make one version's tests run on the other) and
/// returns it.
fn check_version(version: Version, bin_dir: &Path) -> Result<String, String> {
    let pinned = version.pinned()?;
    let binary = bin_dir.join("kube-apiserver");
    let out = Command::new(&binary)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run {} --version: {e}", binary.display()))?;
    let said = String::from_utf8_lossy(&out.stdout);
    let reported = said
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .to_string();
    if reported != pinned {
        return Err(format!(
            "{} reports {:?}, but {:?} is pinned to {pinned} ({} must be what `make {}` prints last)",
            binary.display(),
            said.trim(),
            version,
            version.env_var(),
            version.make_target()
        ));
    }
    Ok(reported)
}
