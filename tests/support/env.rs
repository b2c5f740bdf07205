//! The one environment of the operator tests: a test namespace on [`control_plane()`], an
//! emulated cloud account wired to a ProviderConfig for it ([`CloudAccount`]), a temporary
//! directory for the operator's logs, and the operator binary under its own ServiceAccount;
//! with the waits the tests share (each with a deadline that fails naming the caller).
//!
//! ```ignore
//! let env = Env::builder("my-test").resync("2s").with_operator().build().await;
//! env.wait_ready::<TrafficMirrorSession>("s").await;
//! ```

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::Value;
use traffic_mirror_operator::api::{
    ProviderConfig, TrafficMirrorFilter, TrafficMirrorSession, TrafficMirrorSessionSet,
};
use traffic_mirror_operator::cloud::VpcClient;

use super::operator::{CloudAccount, Operator};
use super::{Emulator, control_plane};

/// The default deadline of every wait of an [`Env`].
pub const WAIT: Duration = Duration::from_secs(60);

/// A kind with a status of conditions for a generation: the operator's sessions and filters.
pub trait Conditioned:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Debug
    + 'static
{
    /// `status.observedGeneration`.
    fn observed_generation(&self) -> Option<i64>;
    /// `status.conditions` (none without a status).
    fn conditions(&self) -> &[Condition];

    /// The condition `type_`, if any.
    fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions().iter().find(|c| c.type_ == type_)
    }

    /// Whether the status speaks of the current generation.
    fn is_current(&self) -> bool {
        self.observed_generation().is_some() && self.observed_generation() == self.meta().generation
    }
}

impl Conditioned for TrafficMirrorSession {
    fn observed_generation(&self) -> Option<i64> {
        self.status.as_ref().and_then(|s| s.observed_generation)
    }
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| &s.conditions)
    }
}

impl Conditioned for TrafficMirrorFilter {
    fn observed_generation(&self) -> Option<i64> {
        self.status.as_ref().and_then(|s| s.observed_generation)
    }
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| &s.conditions)
    }
}

impl Conditioned for TrafficMirrorSessionSet {
    fn observed_generation(&self) -> Option<i64> {
        self.status.as_ref().and_then(|s| s.observed_generation)
    }
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| &s.conditions)
    }
}

/// How to build an [`Env`]; see [`Env::builder`].
pub struct EnvBuilder {
    prefix: String,
    resync: String,
    args: Vec<String>,
    failpoints: Option<String>,
    apart: bool,
    with_operator: bool,
    clear_calls: bool,
    wait: Duration,
    emulator_args: Vec<String>,
}

impl EnvBuilder {
    /// Extra flags of the account's emulator (e.g. `--credential-lifetime 4s`).
    pub fn emulator_args(mut self, args: &[&str]) -> Self {
        self.emulator_args = args.iter().map(|a| a.to_string()).collect();
        self
    }

    /// The operator's `--resync-interval` (default `2s`).
    pub fn resync(mut self, resync: &str) -> Self {
        self.resync = resync.into();
        self
    }

    /// Extra flags of every operator the env starts.
    pub fn operator_args(mut self, args: &[&str]) -> Self {
        self.args = args.iter().map(|a| a.to_string()).collect();
        self
    }

    /// `TMO_FAILPOINTS` of the operator [`EnvBuilder::with_operator`] starts and of
    /// [`Env::operator`].
    pub fn failpoints(mut self, failpoints: &str) -> Self {
        self.failpoints = Some(failpoints.into());
        self
    }

    /// The operator's own namespace (its ServiceAccount, Roles, credentials Secret and Lease) is a
    /// second namespace `<prefix>-home`, as in a real install: for a test that deletes `ns`.
    pub fn credentials_apart(mut self) -> Self {
        self.apart = true;
        self
    }

    /// Starts the operator in [`Env::op`] once the account is ready (default: the test starts it).
    pub fn with_operator(mut self) -> Self {
        self.with_operator = true;
        self
    }

    /// Keeps the setup's calls (the filter it creates) in the emulator's call log; by default
    /// the log is cleared, so it holds only what the operator does.
    pub fn keep_setup_calls(mut self) -> Self {
        self.clear_calls = false;
        self
    }

    /// The deadline of the env's waits (default [`WAIT`]).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Creates the namespace(s), installs the CRDs, creates the account and, when asked, starts
    /// the operator.
    pub async fn build(self) -> Env {
        let client = control_plane().client().await;
        super::install_crds(&client).await;
        let ns = super::test_namespace(&client, &self.prefix).await;
        let home = if self.apart {
            super::test_namespace(&client, &format!("{}-home", self.prefix)).await
        } else {
            ns.clone()
        };
        let emulator_args: Vec<&str> = self.emulator_args.iter().map(String::as_str).collect();
        let account =
            CloudAccount::create_with_emulator_args(&client, &ns, &home, &emulator_args).await;
        if self.clear_calls {
            account.emu.clear_calls().await;
        }
        let mut env = Env {
            cloud: account.cloud.clone(),
            client,
            ns,
            home,
            account,
            dir: tempfile::tempdir().expect("tempdir"),
            op: None,
            resync: self.resync,
            args: self.args,
            failpoints: self.failpoints,
            wait: self.wait,
        };
        if self.with_operator {
            env.start_operator();
        }
        env
    }
}

/// One test's world.
pub struct Env {
    /// An admin client of the control plane.
    pub client: Client,
    /// The test namespace: the objects, and the operator's `--namespace`.
    pub ns: String,
    /// The operator's own namespace: `ns`, unless [`EnvBuilder::credentials_apart`].
    pub home: String,
    /// The emulator, its ProviderConfig (`account.pc`) and a filter in it (`account.filter_id`).
    pub account: CloudAccount,
    /// A signed client of the account (the same as `account.cloud`).
    pub cloud: VpcClient,
    /// Where the operators' logs go.
    pub dir: tempfile::TempDir,
    /// The operator [`EnvBuilder::with_operator`] or [`Env::start_operator`] started.
    pub op: Option<Operator>,
    resync: String,
    args: Vec<String>,
    failpoints: Option<String>,
    wait: Duration,
}

impl Env {
    /// A builder for an env whose namespace is named `<prefix>-<random>`.
    pub fn builder(prefix: &str) -> EnvBuilder {
        EnvBuilder {
            prefix: prefix.into(),
            resync: "2s".into(),
            args: vec![],
            failpoints: None,
            apart: false,
            with_operator: false,
            clear_calls: true,
            wait: WAIT,
            emulator_args: vec![],
        }
    }

    /// The emulator.
    pub fn emu(&self) -> &Emulator {
        &self.account.emu
    }

    /// The deadline of the env's waits.
    pub fn deadline(&self) -> Duration {
        self.wait
    }

    // ----- the operator -----

    /// A new log file in [`Env::dir`].
    pub fn log_path(&self) -> PathBuf {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        self.dir.path().join(format!("operator-{stamp}.log"))
    }

    /// The operator's own kubeconfig: its ServiceAccount in [`Env::home`].
    pub fn own_kubeconfig(&self) -> PathBuf {
        super::identity::default_kubeconfig(control_plane(), &self.home)
    }

    /// Starts (or, after a crash or [`Env::stop_operator`], restarts) the operator in [`Env::op`].
    pub fn start_operator(&mut self) -> &mut Operator {
        self.op = None;
        let op = self.operator();
        self.op.insert(op)
    }

    /// Stops the operator in [`Env::op`].
    pub fn stop_operator(&mut self) {
        self.op = None;
    }

    /// The log of the operator in [`Env::op`].
    pub fn logs(&self) -> String {
        self.op.as_ref().map(Operator::logs).unwrap_or_default()
    }

    /// A new operator with the env's resync, flags and failpoints, for the test to hold (and drop
    /// to kill it).
    pub fn operator(&self) -> Operator {
        self.spawn(&[], self.failpoints.as_deref())
    }

    /// [`Env::operator`] with these failpoints instead.
    pub fn operator_with(&self, failpoints: Option<&str>) -> Operator {
        self.spawn(&[], failpoints)
    }

    /// [`Env::operator`] with `extra` flags after the env's own.
    pub fn operator_args(&self, extra: &[&str]) -> Operator {
        self.spawn(extra, self.failpoints.as_deref())
    }

    /// [`Env::operator`] authenticated by `kubeconfig` (e.g. the own one through a recorder).
    pub fn operator_as(&self, kubeconfig: &Path) -> Operator {
        let args = self.all_args(&[]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Operator::start_as(
            &self.ns,
            &self.resync,
            &args,
            self.failpoints.as_deref(),
            self.log_path(),
            kubeconfig,
        )
    }

    fn spawn(&self, extra: &[&str], failpoints: Option<&str>) -> Operator {
        let args = self.all_args(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        if self.home == self.ns {
            Operator::start(&self.ns, &self.resync, &args, failpoints, self.log_path())
        } else {
            Operator::start_as(
                &self.ns,
                &self.resync,
                &args,
                failpoints,
                self.log_path(),
                &self.own_kubeconfig(),
            )
        }
    }

    /// The env's flags, `extra`, and, with the credentials apart, the operator's namespace for
    /// its credentials and Lease.
    fn all_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args = self.args.clone();
        args.extend(extra.iter().map(|a| a.to_string()));
        if self.home != self.ns {
            args.extend([
                "--credentials-namespace".into(),
                self.home.clone(),
                "--leader-elect-namespace".into(),
                self.home.clone(),
            ]);
        }
        args
    }

    /// Waits until `op` exits on its own, and checks that a failpoint made it.
    pub async fn wait_crash(&self, op: &mut Operator) {
        super::wait_for(self.wait, || {
            let exited = op.exited();
            async move { exited.then_some(()) }
        })
        .await;
        let text = op.logs();
        assert!(
            text.contains("failpoint"),
            "operator exited without hitting a failpoint:\n{text}"
        );
    }

    // ----- the objects -----

    /// The kind `K` in the test namespace.
    pub fn api<K: Conditioned>(&self) -> Api<K> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// The sessions of the test namespace.
    pub fn sessions(&self) -> Api<TrafficMirrorSession> {
        self.api()
    }

    /// The filters of the test namespace.
    pub fn filters(&self) -> Api<TrafficMirrorFilter> {
        self.api()
    }

    /// The ProviderConfigs (cluster-scoped).
    pub fn pcs(&self) -> Api<ProviderConfig> {
        Api::all(self.client.clone())
    }

    /// Creates the object `manifest` of kind `K` in the test namespace; returns it.
    pub async fn create<K: Conditioned + serde::Serialize>(&self, manifest: Value) -> K {
        let name = manifest["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let obj: K = serde_json::from_value(manifest)
            .unwrap_or_else(|e| panic!("{} manifest {name}: {e}", K::kind(&())));
        self.api::<K>()
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("create {} {name}: {e}", K::kind(&())))
    }

    /// Deletes `name` of kind `K`.
    pub async fn delete<K: Conditioned>(&self, name: &str) {
        self.api::<K>()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("delete {} {name}: {e}", K::kind(&())));
    }

    /// Waits until the object `name` of kind `K` exists and satisfies `ok`; returns it.
    #[track_caller]
    pub fn wait_until<'a, K: Conditioned>(
        &'a self,
        name: &'a str,
        ok: impl Fn(&K) -> bool + 'a,
    ) -> impl Future<Output = K> + 'a {
        let api = self.api::<K>();
        let ok = std::sync::Arc::new(ok);
        super::wait_for(self.wait, move || {
            let api = api.clone();
            let ok = ok.clone();
            async move { api.get_opt(name).await.ok().flatten().filter(|o| ok(o)) }
        })
    }

    /// Waits until condition `type_` of `name` has `status` (and `reason`, when given) for the
    /// object's current generation; returns the object.
    #[track_caller]
    pub fn wait_condition<'a, K: Conditioned>(
        &'a self,
        name: &'a str,
        type_: &'a str,
        status: &'a str,
        reason: Option<&'a str>,
    ) -> impl Future<Output = K> + 'a {
        self.wait_until(name, move |o: &K| {
            o.is_current()
                && o.condition(type_)
                    .is_some_and(|c| c.status == status && reason.is_none_or(|r| c.reason == r))
        })
    }

    /// Waits until `name` is Ready=True for its current generation; returns it.
    #[track_caller]
    pub fn wait_ready<'a, K: Conditioned>(&'a self, name: &'a str) -> impl Future<Output = K> + 'a {
        self.wait_condition(name, "Ready", "True", None)
    }

    /// Waits until the Ready condition of `name` has `reason` and a message containing every
    /// `part` (any status, any generation); returns the condition.
    #[track_caller]
    pub fn wait_message<'a, K: Conditioned>(
        &'a self,
        name: &'a str,
        reason: &'a str,
        parts: &'a [&'a str],
    ) -> impl Future<Output = Condition> + 'a {
        let wait = self.wait_until(name, move |o: &K| {
            o.condition("Ready")
                .is_some_and(|c| c.reason == reason && parts.iter().all(|p| c.message.contains(p)))
        });
        async move {
            let o: K = wait.await;
            o.condition("Ready").cloned().expect("Ready")
        }
    }

    /// Waits until `name` of kind `K` is gone (a 404).
    #[track_caller]
    pub fn wait_gone<'a, K: Conditioned>(&'a self, name: &'a str) -> impl Future<Output = ()> + 'a {
        let api = self.api::<K>();
        super::wait_for(self.wait, move || {
            let api = api.clone();
            async move { matches!(api.get_opt(name).await, Ok(None)).then_some(()) }
        })
    }

    // ----- the cloud -----

    /// The emulator's call log since it was last cleared.
    pub async fn calls(&self) -> Vec<Value> {
        self.emu().calls().await
    }

    /// Clears the emulator's call log.
    pub async fn clear_calls(&self) {
        self.emu().clear_calls().await;
    }

    /// The write calls (not GET) since the log was cleared.
    pub async fn writes(&self) -> Vec<Value> {
        self.calls()
            .await
            .into_iter()
            .filter(|c| c["method"] != "GET")
            .collect()
    }

    /// Waits until the emulator has seen `n` more resync LISTs of every one of `collections`
    /// (`traffic-mirror-sessions`, `traffic-mirror-filters`) than `from` (counts as of
    /// [`resync_lists`]; zero for "since the log was cleared"): proof that whole resync
    /// intervals passed, without sleeping.
    #[track_caller]
    pub fn wait_resyncs_since<'a>(
        &'a self,
        collections: &'a [&'a str],
        from: usize,
        n: usize,
    ) -> impl Future<Output = ()> + 'a {
        super::wait_for(self.wait, move || async move {
            let calls = self.calls().await;
            collections
                .iter()
                .all(|c| resync_lists(&calls, c) >= from + n)
                .then_some(())
        })
    }

    /// Waits until the emulator has seen `n` more resync LISTs of sessions than now.
    pub async fn wait_resyncs(&self, n: usize) {
        let before = resync_lists(&self.calls().await, SESSIONS);
        self.wait_resyncs_since(&[SESSIONS], before, n).await;
    }

    // ----- events -----

    /// The events about the object `name` in namespace `ns` (cluster-scoped objects' go to
    /// `default`).
    pub async fn events_about(&self, ns: &str, name: &str) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), ns);
        let list = events
            .list(&ListParams::default())
            .await
            .expect("list events");
        list.items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect()
    }

    /// Waits for an event about `name` in `ns` with `reason` (events are published in the
    /// background).
    #[track_caller]
    pub fn wait_event<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
        reason: &'a str,
    ) -> impl Future<Output = Event> + 'a {
        super::wait_for(self.wait, move || async move {
            self.events_about(ns, name)
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some(reason))
        })
    }
}

/// The cloud collection of sessions.
pub const SESSIONS: &str = "traffic-mirror-sessions";
/// The cloud collection of filters.
pub const FILTERS: &str = "traffic-mirror-filters";

/// How many unfiltered LISTs (no `name=` query) of `collection` are in `calls`: the operator's
/// resyncs, one per interval.
pub fn resync_lists(calls: &[Value], collection: &str) -> usize {
    calls
        .iter()
        .filter(|c| {
            c["method"] == "GET"
                && c["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with(&format!("/{collection}")))
                && !c["query"].as_str().unwrap_or("").contains("name=")
        })
        .count()
}
