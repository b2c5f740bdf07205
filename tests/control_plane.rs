//! The integration-test support itself: the real control plane starts once, serves an
//! authenticated and RBAC-authorised API, hands out unique namespaces, installs the CRDs, and
//! leaves no process behind however the test binary ends.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, Error};
use serde_json::json;

use support::process;

/// Environment of the child test process of the clean-up tests: where it writes what it started.
const CHILD_REPORT_ENV: &str = "TMO_CP_CHILD_REPORT";
/// Environment of the child test process: `wait` (block until killed) or `exit` (return).
const CHILD_MODE_ENV: &str = "TMO_CP_CHILD_MODE";

#[tokio::test]
async fn control_plane_serves_the_api_to_the_admin() {
    let cp = support::control_plane();
    let client = cp.client().await;
    let version = client.apiserver_version().await.expect("/version");
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "37")
    );
    assert!(version.git_version.starts_with("v1.37."), "{version:?}");

    let namespaces: Api<Namespace> = Api::all(client);
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .expect("list namespaces")
        .into_iter()
        .filter_map(|ns| ns.metadata.name)
        .collect();
    for wanted in ["default", "kube-system"] {
        assert!(names.iter().any(|n| n == wanted), "{names:?}");
    }
}

#[tokio::test]
async fn control_plane_is_shared_within_a_test_binary() {
    let a = support::control_plane();
    let b = support::control_plane();
    assert!(std::ptr::eq(a, b));
    assert!(process::process_alive(a.etcd_pid));
    assert!(process::process_alive(a.apiserver_pid));
    let kcm = a
        .controller_manager_pid
        .expect("the newest control plane runs kube-controller-manager");
    assert!(process::process_alive(kcm));
}

#[tokio::test]
async fn requests_without_the_token_are_rejected() {
    let cp = support::control_plane();
    let mut config = cp.config().await;
    config.auth_info = Default::default();
    let anonymous = Client::try_from(config).expect("client");
    match Api::<Namespace>::all(anonymous)
        .list(&ListParams::default())
        .await
    {
        Err(Error::Api(status)) => assert!(
            status.code == 401 || status.code == 403,
            "anonymous list answered {status:?}"
        ),
        other => panic!("anonymous list namespaces should fail, got {other:?}"),
    }
}

#[tokio::test]
async fn authorization_is_rbac() {
    // The admin may impersonate; a user with no bindings must then be forbidden (the API
    // server would allow it under AlwaysAllow).
    let cp = support::control_plane();
    let mut config = cp.config().await;
    config.auth_info.impersonate = Some("nobody-in-particular".to_string());
    let nobody = Client::try_from(config).expect("client");
    match Api::<Namespace>::all(nobody)
        .list(&ListParams::default())
        .await
    {
        Err(Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("an unbound user should be forbidden, got {other:?}"),
    }
}

#[tokio::test]
async fn kubectl_uses_the_control_plane() {
    let cp = support::control_plane();
    let out = cp.kubectl(&["get", "namespace", "default", "-o", "name"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "namespace/default"
    );

    let out = cp.kubectl(&["auth", "can-i", "create", "customresourcedefinitions"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "yes");
}

#[tokio::test]
async fn test_namespaces_are_unique_and_exist() {
    let client = support::control_plane().client().await;
    let a = support::test_namespace(&client, "Unique_Test").await;
    let b = support::test_namespace(&client, "Unique_Test").await;
    assert_ne!(a, b);
    assert!(a.starts_with("unique-test-"), "{a}");
    let api: Api<Namespace> = Api::all(client);
    for name in [&a, &b] {
        api.get(name).await.expect("the namespace exists");
    }
    let odd = support::test_namespace(&api.into_client(), "--").await;
    assert!(odd.starts_with("test-"), "{odd}");
}

/// How long kube-controller-manager may take to finish a namespace deletion or a collection.
const CLUSTER_DELETION_WAIT: Duration = Duration::from_secs(60);

/// A ConfigMap manifest named `name` with these `ownerReferences`.
fn config_map(name: &str, owners: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": owners}}))
        .expect("config map manifest")
}

#[tokio::test]
async fn deleting_a_namespace_removes_it_and_its_objects() {
    let cp = support::control_plane();
    let client = cp.client().await;
    let ns = support::test_namespace(&client, "ns-delete").await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    config_maps
        .create(&PostParams::default(), &config_map("content", json!([])))
        .await
        .expect("create a config map");
    let namespaces: Api<Namespace> = Api::all(client);
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("delete the namespace");
    support::wait_deleted(cp, &namespaces, &ns, CLUSTER_DELETION_WAIT).await;
}

#[tokio::test]
async fn objects_whose_owner_is_deleted_are_garbage_collected() {
    let cp = support::control_plane();
    let client = cp.client().await;
    let ns = support::test_namespace(&client, "gc").await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client, &ns);
    let owner = config_maps
        .create(&PostParams::default(), &config_map("owner", json!([])))
        .await
        .expect("create the owner");
    let owners = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                         "uid": owner.metadata.uid.expect("the owner's uid")}]);
    config_maps
        .create(&PostParams::default(), &config_map("dependent", owners))
        .await
        .expect("create the dependent");
    config_maps
        .delete("owner", &DeleteParams::default())
        .await
        .expect("delete the owner");
    support::wait_deleted(cp, &config_maps, "dependent", CLUSTER_DELETION_WAIT).await;
}

#[tokio::test]
async fn crds_install_concurrently_and_idempotently() {
    let client = support::control_plane().client().await;
    tokio::join!(
        support::install_crds(&client),
        support::install_crds(&client)
    );
    support::install_crds(&client).await;
    let api: Api<CustomResourceDefinition> = Api::all(client);
    let files = support::crd_files();
    assert!(!files.is_empty());
    for file in files {
        let name = file
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("file name")
            .to_string();
        let crd = api
            .get(&name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        assert!(
            conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True"),
            "{name}: {conditions:?}"
        );
    }
}

#[tokio::test]
async fn wait_for_returns_the_first_value() {
    let mut polls = 0;
    let value = support::wait_for(Duration::from_secs(5), || {
        polls += 1;
        let n = polls;
        async move { (n >= 3).then_some(n * 10) }
    })
    .await;
    assert_eq!(value, 30);
}

#[tokio::test]
#[should_panic(expected = "condition not met within")]
async fn wait_for_panics_at_the_deadline() {
    support::wait_for(Duration::from_millis(200), || async { None::<()> }).await;
}

#[tokio::test]
#[should_panic(expected = "condition not met within")]
async fn wait_for_abandons_a_hanging_attempt() {
    support::wait_for(Duration::from_millis(200), || {
        std::future::pending::<Option<()>>()
    })
    .await;
}

#[test]
fn scratch_dir_names_carry_their_owner() {
    assert_eq!(process::scratch_owner("tmo-cp-123-abcdef"), Some(123));
    assert_eq!(process::scratch_owner("tmo-emulator-7-abcdef"), Some(7));
    assert_eq!(process::scratch_owner("tmo-x-y-abc"), None);
    assert_eq!(process::scratch_owner("other-cp-1-a"), None);
}

#[test]
fn emulator_child_is_managed() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let emulator = support::Emulator::start("p1", &[("AK1", "SK1")]);
    let pid = emulator.pid();
    assert!(
        emulator.url.starts_with("http://127.0.0.1:"),
        "{}",
        emulator.url
    );
    runtime.block_on(async {
        emulator.clear_calls().await;
        emulator
            .fault(json!({"method": "GET", "path_contains": "/nothing", "status": 500}))
            .await;
        emulator.clear_faults().await;
        assert_eq!(emulator.calls().await, Vec::<serde_json::Value>::new());
        // An unsigned call is refused, and logged.
        let url = format!("{}/v3/p1/vpc/traffic-mirror-sessions?limit=1", emulator.url);
        let status = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
            .get(&url)
            .send()
            .await
            .expect("GET")
            .status();
        assert_eq!(status, 401);
        let calls = emulator.calls().await;
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0]["method"], "GET");
        assert_eq!(calls[0]["query"], "limit=1");
        assert_eq!(calls[0]["status"], 401);
        emulator.reset().await;
        assert!(emulator.calls().await.is_empty());
    });
    drop(emulator);
    assert!(
        !process::process_alive(pid),
        "the emulator survived its drop"
    );
}

/// Not a test on its own: the child process of the clean-up tests. It starts the control plane,
/// reports what it started, then blocks until killed or returns, as `TMO_CP_CHILD_MODE` says.
#[test]
fn child_starts_the_control_plane_and_reports() {
    let Some(report) = std::env::var_os(CHILD_REPORT_ENV) else {
        return;
    };
    let cp = support::control_plane();
    let kcm = cp
        .controller_manager_pid
        .map_or_else(|| "none".to_string(), |pid| pid.to_string());
    let lines = format!(
        "{}\n{}\n{}\n{kcm}\n",
        cp.etcd_pid,
        cp.apiserver_pid,
        cp.work_dir.display()
    );
    let tmp = PathBuf::from(&report).with_extension("tmp");
    std::fs::write(&tmp, lines).expect("write the report");
    std::fs::rename(&tmp, &report).expect("publish the report");
    if std::env::var(CHILD_MODE_ENV).as_deref() == Ok("wait") {
        loop {
            std::thread::park();
        }
    }
}

struct ChildReport {
    etcd_pid: u32,
    apiserver_pid: u32,
    work_dir: PathBuf,
    controller_manager_pid: Option<u32>,
}

impl ChildReport {
    /// Every process the child started.
    fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.etcd_pid, self.apiserver_pid];
        pids.extend(self.controller_manager_pid);
        pids
    }
}

/// Runs this test binary again as a child that only starts the control plane; returns the child
/// and what it started.
fn start_child(scratch: &Path, mode: &str) -> (Child, ChildReport) {
    let report = scratch.join(format!("report-{}", uuid::Uuid::new_v4().simple()));
    let mut child = Command::new(std::env::current_exe().expect("current exe"));
    child
        .args([
            "--exact",
            "child_starts_the_control_plane_and_reports",
            "--nocapture",
        ])
        .env(CHILD_REPORT_ENV, &report)
        .env(CHILD_MODE_ENV, mode)
        // The child must not build anything: give it the binaries this process uses.
        .env(
            "TMO_CONTROL_PLANE_DIR",
            support::control_plane::binaries_dir().expect("control-plane binaries"),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    default_signal_dispositions(&mut child);
    let mut child = child.spawn().expect("spawn the child test binary");
    let deadline = Instant::now() + Duration::from_secs(120);
    let text = loop {
        if let Ok(text) = std::fs::read_to_string(&report) {
            break text;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the child test binary exited ({status}) before reporting");
        }
        assert!(Instant::now() < deadline, "the child never reported");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut lines = text.lines();
    let mut next = || lines.next().expect("a report line").to_string();
    let report = ChildReport {
        etcd_pid: next().parse().expect("etcd pid"),
        apiserver_pid: next().parse().expect("apiserver pid"),
        work_dir: PathBuf::from(next()),
        controller_manager_pid: next().parse().ok(),
    };
    assert!(
        report.controller_manager_pid.is_some(),
        "the child started no kube-controller-manager"
    );
    if mode == "wait" {
        for pid in report.pids() {
            assert!(process::process_alive(pid), "{pid} is not running");
        }
        assert!(report.work_dir.is_dir());
    }
    (child, report)
}

/// The signal tests rely on SIGINT and SIGTERM killing the child. A process started with them
/// ignored (`nohup make test &` from a non-interactive shell ignores SIGINT) passes the ignored
/// disposition on through exec, and the child would never die: reset both to their defaults (and
/// unblock them) in the child before it runs.
fn default_signal_dispositions(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs between fork and exec and makes only async-signal-safe calls (signal,
    // sigemptyset, sigaddset, sigprocmask) on stack data; it allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in [libc::SIGINT, libc::SIGTERM] {
                if libc::signal(signal, libc::SIG_DFL) == libc::SIG_ERR {
                    return Err(std::io::Error::last_os_error());
                }
                libc::sigaddset(&mut set, signal);
            }
            if libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Waits for the child test binary to end, failing (after killing it) if it has not within a
/// minute: a test that waits must never hang.
fn wait_with_deadline(child: &mut Child, how: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("after {how}: the child test binary did not exit within 60 s (killed it)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_processes_gone(report: &ChildReport, how: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let pids = report.pids();
    while pids.iter().any(|pid| process::process_alive(*pid)) {
        assert!(
            Instant::now() < deadline,
            "after {how}: one of etcd, kube-apiserver, kube-controller-manager ({pids:?}) still \
             running"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(target_os = "linux")]
#[test]
fn no_process_outlives_a_killed_test_binary() {
    let scratch = tempfile::tempdir().expect("tempdir");
    for (signal, name) in [
        (libc::SIGKILL, "SIGKILL"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGTERM, "SIGTERM"),
    ] {
        let (mut child, report) = start_child(scratch.path(), "wait");
        let pid = libc::pid_t::try_from(child.id()).expect("pid");
        // SAFETY: signals the child we spawned and still own (not yet reaped).
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
        let status = wait_with_deadline(&mut child, name);
        assert!(!status.success(), "{name}: {status}");
        assert_processes_gone(&report, name);
        // A dead owner leaves its scratch directory; the next start sweeps it.
        process::sweep_stale_scratch_dirs();
        assert!(!report.work_dir.exists(), "{name}: scratch dir not swept");
    }
}

#[test]
fn no_process_or_directory_outlives_a_normal_exit() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let (mut child, report) = start_child(scratch.path(), "exit");
    let status = wait_with_deadline(&mut child, "a normal exit");
    assert!(status.success(), "{status}");
    // atexit killed and reaped them all before the child exited, and removed the scratch dir.
    for pid in report.pids() {
        assert!(!process::process_alive(pid), "{pid} outlived the child");
    }
    assert!(!report.work_dir.exists());
}
