//! ProviderConfig reconciler (client required): turns a `ProviderConfig` and its credentials Secret
//! into a ready-to-use cloud client, checked with one cheap call, and shares it with the session
//! reconciler through the [`Registry`]; keeps a ProviderConfig that objects still use from going away.
//!
//! Pipeline ([`reconcile`]): finalizer step ([`usage::decide_finalizer`]) → read Secret → build
//! client → check credentials (`list sessions, limit=1`) → register → write status. Each check step
//! fails with its own [`CheckError`]; the reconciler's own Kubernetes writes fail with a
//! [`ProviderError`]. It runs again whenever the ProviderConfig or its Secret changes, whenever a
//! TrafficMirrorSession or TrafficMirrorFilter starts or stops referencing a ProviderConfig (watch
//! events feeding the [`usage::UsageIndex`]), and once per resync interval so revoked credentials
//! show up in `status`.

pub mod check;
pub mod error;
mod reconcile;
pub mod usage;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, PredicateConfig, WatchStreamExt, predicates, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::warn;

use super::Context;
use super::budget::{self, Budget};
use super::inventory::{Inventory, Known, Listed};
use super::metered::metered;
use super::wait::Unavailable;
use crate::api::RateLimit;
use crate::api::{ProviderConfig, TrafficMirrorFilter, TrafficMirrorSession};
use crate::cloud::CloudError;
use crate::cloud::VpcClient;
use crate::telemetry::Metrics;
pub use check::CheckError;
pub use error::ProviderError;
pub use reconcile::{error_policy, reconcile};
use std::future::Future;
use usage::{UsageIndex, UserKind};

/// The finalizer on every managed ProviderConfig: while objects reference it, a deletion waits.
pub const FINALIZER: &str = "vpc.hwcloud.dev/in-use";

/// Kind label used in metrics and logs.
pub const KIND: &str = "ProviderConfig";

/// A ready cloud account: its client and its session snapshot.
#[derive(Debug)]
pub struct Provider {
    /// The ProviderConfig's name.
    pub name: String,
    /// The cloud account (the client's API root: endpoint + project): ProviderConfigs of the same
    /// account share one id space, so claims on cloud ids are keyed by it (see [`Registry::account`]).
    pub account: String,
    /// Signed client for the account's endpoint and project.
    pub client: VpcClient,
    /// The account's sessions, refreshed once per resync interval.
    pub inventory: Inventory,
    /// The account's filters (with their rules), refreshed once per resync interval.
    pub filters: Inventory<crate::cloud::models::TrafficMirrorFilter>,
    /// The account's API budget (`spec.rateLimit`): every cloud call of every reconciler waits here.
    pub budget: Budget,
    /// Fingerprint of what the client was built from (endpoint, project, credentials), so an unchanged
    /// Secret keeps the existing snapshot.
    fingerprint: u64,
}

impl Provider {
    /// One cloud call of this account: waits for the budget (in the task's lane), then calls and
    /// counts ([`metered`]); a 429 slows the whole account down, a success lets it recover.
    pub async fn call<T>(
        &self,
        metrics: &Metrics,
        operation: &'static str,
        call: impl Future<Output = Result<T, CloudError>>,
    ) -> Result<T, CloudError> {
        let waited = self.budget.acquire().await;
        if !waited.is_zero() {
            metrics.budget_waited(budget::current_lane().label(), waited);
        }
        let result = metered(metrics, operation, call).await;
        self.budget
            .record(matches!(&result, Err(e) if e.status() == Some(429)));
        result
    }
}

impl Provider {
    /// One cloud object by id, as the reconcilers observe it: from `snapshot` unless `fresh`, else a
    /// GET (`show`) whose answer is recorded. `None` means gone, and only on the cloud's word (a 404,
    /// now or recorded as a tombstone since the last LIST), never inferred from a LIST that merely
    /// did not return the id.
    pub async fn read<T: Listed>(
        &self,
        metrics: &Metrics,
        snapshot: &Inventory<T>,
        (operation, id, fresh): (&'static str, &str, bool),
        show: impl Future<Output = Result<T, CloudError>>,
    ) -> Result<Option<T>, super::error::Error> {
        if !fresh && let Known::Present(found) = snapshot.get(id) {
            return Ok(Some(found));
        }
        if !fresh && snapshot.said_gone(id) {
            return Ok(None); // the cloud's own 404 (or our DELETE), since the last LIST
        }
        match self.call(metrics, operation, show).await {
            Ok(found) => {
                snapshot.record(&found);
                Ok(Some(found))
            }
            Err(e) if e.is_not_found() => {
                snapshot.forget(id);
                Ok(None)
            }
            Err(source) => Err(super::error::Error::Cloud { operation, source }),
        }
    }

    /// A delete call: "already gone" (a 404) counts as done, so cleanup is idempotent. Says which
    /// of the two it was, so nobody is told "deleted" of an object the call never found.
    pub async fn delete(
        &self,
        metrics: &Metrics,
        operation: &'static str,
        call: impl Future<Output = Result<(), CloudError>>,
    ) -> Result<Deleted, super::error::Error> {
        match self.call(metrics, operation, call).await {
            Ok(()) => Ok(Deleted::Now),
            Err(source) if source.is_not_found() => Ok(Deleted::AlreadyGone),
            Err(source) => Err(super::error::Error::Cloud { operation, source }),
        }
    }

    /// [`Provider::call`] with the failure named by its operation, as the reconcilers report it.
    pub async fn cloud<T>(
        &self,
        metrics: &Metrics,
        operation: &'static str,
        call: impl Future<Output = Result<T, CloudError>>,
    ) -> Result<T, super::error::Error> {
        self.call(metrics, operation, call)
            .await
            .map_err(|source| super::error::Error::Cloud { operation, source })
    }
}

/// What a delete call found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deleted {
    /// The cloud object existed and is deleted now.
    Now,
    /// The cloud answered 404: there was nothing to delete (deleted outside the operator, or an
    /// adopted id that never existed).
    AlreadyGone,
}

impl Deleted {
    /// The event (reason, note) for deleting `noun` `id`.
    pub fn event(self, noun: &str, id: &str) -> (&'static str, String) {
        match self {
            Deleted::Now => ("Deleted", format!("deleted {noun} {id}")),
            Deleted::AlreadyGone => (
                "AlreadyGone",
                format!("{noun} {id} did not exist (404): nothing was deleted"),
            ),
        }
    }
}

/// The ready providers, by ProviderConfig name. Shared by both reconcilers and the resync loop.
#[derive(Default)]
pub struct Registry {
    providers: RwLock<HashMap<String, Arc<Provider>>>,
    /// The ProviderConfig controller's cache: a provider whose ProviderConfig was deleted stops being
    /// served (kube-runtime does not reconcile deleted objects, so the registry asks the cache).
    live: OnceLock<Store<ProviderConfig>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("providers", &self.entries().keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// The ready provider named `name`, if its ProviderConfig still exists.
    pub fn get(&self, name: &str) -> Option<Arc<Provider>> {
        let p = self.entries().get(name).cloned()?;
        if self.is_live(name) {
            Some(p)
        } else {
            self.remove(name);
            None
        }
    }

    /// The provider that serves an object using ProviderConfig `name`, or why none can (exactly one
    /// of the two is `Some`: the pair is what an observation records). `new_user`:
    /// the object has nothing in the cloud yet (no id, no create in flight). A ProviderConfig being
    /// deleted serves only objects that have something there (so their own deletion can clean up)
    /// and takes no new users, or its deletion would wait on objects it should never have served.
    pub fn serve(
        &self,
        name: &str,
        new_user: bool,
    ) -> (Option<Arc<Provider>>, Option<Unavailable>) {
        let live = self
            .live
            .get()
            .map(|store| store.get(&ObjectRef::new(name)));
        let deleting = matches!(&live, Some(Some(pc)) if pc.metadata.deletion_timestamp.is_some());
        if deleting && new_user {
            return (None, Some(Unavailable::Deleting));
        }
        if let Some(p) = self.get(name) {
            return (Some(p), None);
        }
        let why = match live {
            Some(None) => Unavailable::Missing,
            Some(Some(pc)) => not_ready(&pc),
            None => Unavailable::NotReady {
                reason: None,
                message: None,
            },
        };
        (None, Some(why))
    }

    /// The cloud account of ProviderConfig `name`, for comparing claims on cloud ids: the
    /// registered client's API root, or, while the account is not known yet (the ProviderConfig is
    /// not Ready), the ProviderConfig's own name (an account cannot be compared before it is known).
    pub fn account(&self, name: &str) -> String {
        match self.entries().get(name) {
            Some(p) => p.account.clone(),
            None => format!("ProviderConfig {name}"),
        }
    }

    /// Every ready provider whose ProviderConfig still exists.
    pub fn all(&self) -> Vec<Arc<Provider>> {
        let names: Vec<String> = self.entries().keys().cloned().collect();
        names.iter().filter_map(|n| self.get(n)).collect()
    }

    /// Connects the registry to the ProviderConfig cache (once, at start).
    pub fn attach(&self, store: Store<ProviderConfig>) {
        let _ = self.live.set(store);
    }

    fn is_live(&self, name: &str) -> bool {
        match self.live.get() {
            Some(store) => store.get(&ObjectRef::new(name)).is_some(),
            None => true,
        }
    }

    fn entries(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Provider>>> {
        self.providers.read().unwrap_or_else(|p| p.into_inner())
    }

    fn entries_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Provider>>> {
        self.providers.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers (or keeps, when nothing changed) the provider; returns it and whether it is new.
    fn upsert(
        &self,
        name: &str,
        fingerprint: u64,
        client: VpcClient,
        rate: &RateLimit,
    ) -> (Arc<Provider>, bool) {
        let mut map = self.entries_mut();
        if let Some(p) = map.get(name)
            && p.fingerprint == fingerprint
        {
            p.budget.reconfigure(rate.qps, rate.burst);
            return (p.clone(), false);
        }
        let p = Arc::new(Provider {
            name: name.to_string(),
            account: client.api_root(),
            client,
            inventory: Inventory::default(),
            filters: Inventory::default(),
            budget: Budget::new(rate.qps, rate.burst),
            fingerprint,
        });
        map.insert(name.to_string(), p.clone());
        (p, true)
    }

    /// Drops a provider that is no longer ready.
    pub fn remove(&self, name: &str) -> bool {
        self.entries_mut().remove(name).is_some()
    }
}

/// Why a ProviderConfig that exists serves nothing: its own `Ready` condition says.
fn not_ready(pc: &ProviderConfig) -> Unavailable {
    let ready = pc
        .status
        .as_ref()
        .and_then(|s| super::conditions::find(&s.conditions, super::conditions::READY));
    Unavailable::NotReady {
        reason: ready.map(|c| c.reason.clone()).filter(|r| !r.is_empty()),
        message: ready.map(|c| c.message.clone()).filter(|m| !m.is_empty()),
    }
}

fn fingerprint(parts: &[&str]) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

/// What the ProviderConfig reconciler works with: the shared state plus who uses which
/// ProviderConfig.
pub struct ProviderContext {
    /// The operator's shared state (client, registry, metrics, settings).
    pub ctx: Arc<Context>,
    usage: Mutex<UsageIndex>,
}

impl ProviderContext {
    /// The users of ProviderConfig `name` (`None` until sessions and filters were listed once).
    fn users_of(&self, name: &str) -> Option<usage::Users> {
        self.usage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .users_of(name)
    }
}

/// An Api over the namespaces the operator watches (`--namespace`, else all).
fn scoped<K>(ctx: &Context) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match &ctx.config.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    }
}

/// Feeds the watch events of one kind into the usage index; yields once per event that changed a
/// ProviderConfig's users. `pc_of` reads `spec.providerConfigRef.name`.
fn feed<K>(
    api: Api<K>,
    kind: UserKind,
    pctx: Arc<ProviderContext>,
    pc_of: fn(&K) -> String,
) -> impl Stream<Item = ()> + Send + 'static
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    let reduce = move |o: K| {
        (
            format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()),
            pc_of(&o),
        )
    };
    watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .filter_map(move |event| {
            let changed = match event {
                Ok(event) => {
                    let event = match event {
                        watcher::Event::Apply(o) => watcher::Event::Apply(reduce(o)),
                        watcher::Event::Delete(o) => watcher::Event::Delete(reduce(o)),
                        watcher::Event::Init => watcher::Event::Init,
                        watcher::Event::InitApply(o) => watcher::Event::InitApply(reduce(o)),
                        watcher::Event::InitDone => watcher::Event::InitDone,
                    };
                    let mut index = pctx.usage.lock().unwrap_or_else(|p| p.into_inner());
                    index.apply(kind, event)
                }
                Err(e) => {
                    warn!(kind = kind.kind(), error = %e, "watch for ProviderConfig users failed; retrying");
                    false
                }
            };
            std::future::ready(changed.then_some(()))
        })
}

/// Runs the ProviderConfig controller until shutdown. Secrets of the credentials namespace are
/// watched too, so editing the credentials re-checks every ProviderConfig that references them; sessions and filters are
/// watched into the usage index, and a change of anyone's references re-runs the ProviderConfigs
/// (so the last user's deletion releases a ProviderConfig that waits for it, without polling).
pub async fn run_controller(ctx: Arc<Context>) {
    let pctx = Arc::new(ProviderContext {
        ctx: ctx.clone(),
        usage: Mutex::new(UsageIndex::default()),
    });
    let wake_all = usage_or_leadership(&ctx, &pctx);
    let api: Api<ProviderConfig> = Api::all(ctx.client.clone());
    let mut wc = watcher::Config::default();
    if let Some(sel) = &ctx.config.provider_config_selector {
        wc = wc.labels(sel);
    }
    let (store, writer) = reflector::store();
    let controller = Controller::for_stream(spec_changes(writer, api, wc), store.clone());
    ctx.providers.attach(store.clone());
    // Only the credentials namespace: the operator's Role grants Secrets there and nowhere else.
    let secrets: Api<Secret> =
        Api::namespaced(ctx.client.clone(), &ctx.config.credentials_namespace);
    controller
        .watches(
            secrets,
            watcher::Config::default(),
            move |secret: Secret| users_of_secret(&store, &secret),
        )
        .reconcile_all_on(wake_all)
        .shutdown_on_signal()
        .run(reconcile, error_policy, pctx)
        .for_each(|_| async {})
        .await;
}

/// The ProviderConfigs to reconcile: all of them are cached, but only a new generation (a spec
/// change, or the start of a deletion) triggers a reconcile. Not its own status write: a failed
/// check's message carries the cloud's request id, different on every call, so reacting to it would
/// re-check (one more cloud call, one more write) in a loop, dozens of times a second for as long as
/// the credentials stay wrong. Nor its own finalizer patch: that reconcile would read a cache not
/// yet holding the status just written and fail its write on the resourceVersion. (A finalizer
/// removed by hand comes back at the next look, one resync interval later.)
fn spec_changes(
    writer: reflector::store::Writer<ProviderConfig>,
    api: Api<ProviderConfig>,
    wc: watcher::Config,
) -> impl Stream<Item = Result<ProviderConfig, watcher::Error>> + Send + 'static {
    reflector::reflector(writer, watcher(api, wc).default_backoff())
        .applied_objects()
        .predicate_filter(predicates::generation, PredicateConfig::default())
}

/// What re-runs every ProviderConfig: a change of any session's or filter's reference (fed into
/// the usage index on the way), or this process becoming leader (a standby's reconciles did nothing).
fn usage_or_leadership(
    ctx: &Arc<Context>,
    pctx: &Arc<ProviderContext>,
) -> impl futures::Stream<Item = ()> + Send + 'static {
    let sessions = feed(
        scoped::<TrafficMirrorSession>(ctx),
        UserKind::Session,
        pctx.clone(),
        |s| s.spec.provider_config_ref.name.clone(),
    );
    let filters = feed(
        scoped::<TrafficMirrorFilter>(ctx),
        UserKind::Filter,
        pctx.clone(),
        |f| f.spec.provider_config_ref.name.clone(),
    );
    // A burst of events (many objects created at once) wakes the ProviderConfigs once.
    let usage_changed = futures::stream::select(sessions, filters)
        .ready_chunks(256)
        .map(|_| ());
    let leadership = futures::stream::unfold(ctx.clone(), |ctx| async move {
        ctx.leadership_gained().await;
        Some(((), ctx))
    });
    futures::stream::select(usage_changed, leadership)
}

/// The ProviderConfigs whose credentials are this Secret.
fn users_of_secret(
    store: &Store<ProviderConfig>,
    secret: &Secret,
) -> Vec<ObjectRef<ProviderConfig>> {
    let ns = secret.namespace().unwrap_or_default();
    let name = secret.name_any();
    store
        .state()
        .into_iter()
        .filter(|pc| {
            let r = &pc.spec.credentials.secret_ref;
            r.namespace == ns && r.name == name
        })
        .map(|pc| ObjectRef::from_obj(&*pc))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delete_of_a_missing_object_is_not_reported_as_deleted() {
        let (reason, note) = Deleted::Now.event("cloud session", "s-1");
        assert_eq!(
            (reason, note.as_str()),
            ("Deleted", "deleted cloud session s-1")
        );
        let (reason, note) = Deleted::AlreadyGone.event("cloud filter", "f-1");
        assert_eq!(reason, "AlreadyGone");
        assert!(
            note.contains("f-1") && note.contains("nothing was deleted"),
            "{note}"
        );
        assert!(!note.starts_with("deleted"), "{note}");
    }

    #[test]
    fn fingerprint_changes_with_any_part() {
        assert_ne!(fingerprint(&["a", "b"]), fingerprint(&["a", "c"]));
        assert_eq!(fingerprint(&["a", "b"]), fingerprint(&["a", "b"]));
    }
}
