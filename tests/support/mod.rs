//! Integration-test support, included by each `tests/*.rs` as `mod support;`.
//!
//! - [`control_plane()`]: a real etcd + kube-apiserver + kube-controller-manager (the newest
//!   supported Kubernetes) shared by the tests of one test binary; [`control_plane_for`] the same
//!   for a chosen [`Version`] (the oldest supported one too, without kube-controller-manager);
//! - [`test_namespace`], [`install_crds`]: per-test isolation and the CRDs from `crds/`;
//!   [`ensure_namespace`] for the fixed namespaces of `deploy/`;
//! - [`Emulator`]: the VPC emulator binary as a child process, with its admin API;
//! - [`identity`]: the operator's own ServiceAccount, bound by the RBAC of `deploy/`, with a
//!   token from the TokenRequest API (the operator never runs as admin by default);
//! - [`api_recorder`]: a recording reverse proxy in front of the API server, to count the
//!   operator's API-server writes;
//! - [`env::Env`]: the one environment of the operator tests (namespace, cloud account,
//!   ProviderConfig, the operator under its ServiceAccount) and the waits they share;
//! - [`wait_for`]: poll a condition with a deadline (tests never sleep to synchronise);
//!   [`wait_deleted`] for a deletion that kube-controller-manager has to finish.
//!
//! Every test binary uses a different part of this, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod api_recorder;
pub mod control_plane;
pub mod controller_manager;
pub mod emulator;
pub mod env;
pub mod identity;
pub mod operator;
pub mod process;
pub mod restart;
pub mod workload_identity;

use std::future::Future;
use std::panic::Location;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, Error, Resource, ResourceExt};
use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

#[allow(unused_imports)]
pub use control_plane::{ControlPlane, Version, control_plane, control_plane_for};
#[allow(unused_imports)]
pub use emulator::Emulator;
#[allow(unused_imports)]
pub use env::{Conditioned, Env};

/// Poll interval of [`wait_for`].
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long [`install_crds`] waits for each CRD to become Established.
pub const CRD_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(60);
/// Field manager of the objects the test support applies.
pub const FIELD_MANAGER: &str = "tmo-tests";

/// Polls `condition` every [`POLL_INTERVAL`] until it returns `Some`, and returns that value.
/// Panics, naming the caller, when `timeout` passes first (an attempt still running at the
/// deadline is abandoned).
#[track_caller]
pub fn wait_for<T, F, Fut>(timeout: Duration, mut condition: F) -> impl Future<Output = T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let caller = Location::caller();
    async move {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, condition()).await {
                Ok(Some(value)) => return value,
                Ok(None) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                _ => panic!("wait_for at {caller}: condition not met within {timeout:?}"),
            }
        }
    }
}

/// Polls until `name` is gone from `api` (a 404). Panics, naming the caller, at `timeout` with
/// what is keeping it: its deletionTimestamp, finalizers and status, and whether `cp` runs
/// kube-controller-manager (with the end of its log), since a namespace deletion or a garbage
/// collection that never finishes usually means that it does not.
#[track_caller]
pub fn wait_deleted<'a, K>(
    cp: &'a ControlPlane,
    api: &'a Api<K>,
    name: &'a str,
    timeout: Duration,
) -> impl Future<Output = ()> + 'a
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let caller = Location::caller();
    async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = String::from("never read");
        loop {
            match tokio::time::timeout_at(deadline, api.get_opt(name)).await {
                Ok(Ok(None)) => return,
                Ok(Ok(Some(obj))) => last = still_there(&obj),
                Ok(Err(e)) => last = format!("get failed: {e}"),
                Err(_) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "wait_deleted at {caller}: {} {name} still exists after {timeout:?} \
                     ({last}); {}",
                    K::kind(&()),
                    controller_manager_state(cp)
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

/// Whether `cp` runs kube-controller-manager, and the end of its log if it does.
fn controller_manager_state(cp: &ControlPlane) -> String {
    match (&cp.controller_manager_pid, &cp.controller_manager_log) {
        (Some(pid), Some(log)) => format!(
            "kube-controller-manager {pid} runs; its log ends:\n{}",
            process::tail(log, 20)
        ),
        _ => "no kube-controller-manager runs: nothing finishes namespace deletion or garbage \
              collection"
            .to_string(),
    }
}

/// What an object that should be gone still holds, for [`wait_deleted`]'s failure message.
fn still_there<K: Resource + Serialize>(obj: &K) -> String {
    let status = serde_json::to_value(obj)
        .ok()
        .and_then(|v| v.get("status").map(Value::to_string))
        .unwrap_or_else(|| "none".to_string());
    format!(
        "deletionTimestamp {:?}, finalizers {:?}, status {status}",
        obj.meta()
            .deletion_timestamp
            .as_ref()
            .map(|t| t.0.to_string()),
        obj.finalizers()
    )
}

/// Creates a namespace with a unique name `<prefix>-<random>` and returns the name. Namespaces
/// are not deleted: the control plane is the test binary's own and goes away with it.
pub async fn test_namespace(client: &Client, prefix: &str) -> String {
    let prefix = dns_label_prefix(prefix);
    let api: Api<Namespace> = Api::all(client.clone());
    loop {
        let random = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("{prefix}-{}", &random[..8]);
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(
                    [("app.kubernetes.io/created-by".into(), FIELD_MANAGER.into())].into(),
                ),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        match api.create(&PostParams::default(), &namespace).await {
            Ok(_) => return name,
            Err(Error::Api(status)) if status.code == 409 => continue,
            Err(e) => panic!("create namespace {name}: {e}"),
        }
    }
}

/// Creates namespace `name` unless it exists: for the fixed namespaces the manifests under
/// `deploy/` name (tests of one binary share the control plane, so another may have made it).
pub async fn ensure_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    match api.create(&PostParams::default(), &namespace).await {
        Ok(_) => {}
        Err(Error::Api(status)) if status.code == 409 => {}
        Err(e) => panic!("create namespace {name}: {e}"),
    }
}

/// `prefix` made usable in a DNS label: lower case, `[a-z0-9-]`, at most 40 characters.
fn dns_label_prefix(prefix: &str) -> String {
    let cleaned: String = prefix
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .take(40)
        .collect();
    let cleaned = cleaned.trim_matches('-');
    if cleaned.is_empty() {
        "test".to_string()
    } else {
        cleaned.to_string()
    }
}

/// The CRD manifests, `crds/*.yaml`, sorted by name.
pub fn crd_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/crds"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e} (run `make crds`)", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    files.sort();
    files
}

/// Applies every CRD in `crds/` (server-side apply, forced, field manager [`FIELD_MANAGER`])
/// and waits until each is Established. Idempotent, and safe to call from concurrent tests.
pub async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut names = Vec::new();
    for path in crd_files() {
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        for document in serde_yaml::Deserializer::from_str(&text) {
            let manifest = Value::deserialize(document)
                .unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
            if manifest.is_null() {
                continue;
            }
            let name = manifest["metadata"]["name"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: a CRD without metadata.name", path.display()))
                .to_string();
            api.patch(&name, &params, &Patch::Apply(&manifest))
                .await
                .unwrap_or_else(|e| panic!("apply CRD {name} from {}: {e}", path.display()));
            names.push(name);
        }
    }
    assert!(!names.is_empty(), "crds/ holds no CRD (run `make crds`)");
    for name in names {
        wait_for(CRD_ESTABLISHED_TIMEOUT, || async {
            let crd = api.get(&name).await.ok()?;
            let established =
                crd.status?.conditions?.iter().any(|condition| {
                    condition.type_ == "Established" && condition.status == "True"
                });
            established.then_some(())
        })
        .await;
    }
}
