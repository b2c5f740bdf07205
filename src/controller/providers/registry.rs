//! The ready cloud accounts: a [`Provider`] (client, snapshots, API budget) per ProviderConfig that
//! passed its check, kept in the [`Registry`] that every reconciler reads. Needs nothing of the
//! reconcilers' shared state, so that state can hold it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock, RwLock};

use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};

use super::super::budget::{self, Budget};
use super::super::inventory::{Inventory, Known, Listed};
use super::super::metered::metered;
use super::super::wait::Unavailable;
use super::namespaces::{self, Admits};
use crate::api::{ProviderConfig, RateLimit};
use crate::cloud::{CloudError, VpcClient};
use crate::telemetry::Metrics;

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
    /// Whether the account's endpoint serves `BatchCreateTrafficMirrorFilterRules`: learnt from the
    /// first 404 `APIGW.0101` and kept for the provider's life, so later filters go straight to
    /// single creates ([`crate::controller::filter::batch`]).
    pub batch_rules: crate::controller::filter::batch::Support,
    /// Fingerprint of what the client was built from (endpoint, project, credentials), so an unchanged
    /// Secret keeps the existing snapshot.
    pub(super) fingerprint: u64,
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
    ) -> Result<Option<T>, super::super::error::Error> {
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
            Err(source) => Err(super::super::error::Error::Cloud { operation, source }),
        }
    }

    /// A delete call: "already gone" (a 404) counts as done, so cleanup is idempotent. Says which
    /// of the two it was, so nobody is told "deleted" of an object the call never found.
    pub async fn delete(
        &self,
        metrics: &Metrics,
        operation: &'static str,
        call: impl Future<Output = Result<(), CloudError>>,
    ) -> Result<Deleted, super::super::error::Error> {
        match self.call(metrics, operation, call).await {
            Ok(()) => Ok(Deleted::Now),
            Err(source) if source.is_not_found() => Ok(Deleted::AlreadyGone),
            Err(source) => Err(super::super::error::Error::Cloud { operation, source }),
        }
    }

    /// [`Provider::call`] with the failure named by its operation, as the reconcilers report it.
    pub async fn cloud<T>(
        &self,
        metrics: &Metrics,
        operation: &'static str,
        call: impl Future<Output = Result<T, CloudError>>,
    ) -> Result<T, super::super::error::Error> {
        self.call(metrics, operation, call)
            .await
            .map_err(|source| super::super::error::Error::Cloud { operation, source })
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
    /// The Namespaces' labels (metadata only), for `spec.namespaceSelector`.
    namespaces: OnceLock<Store<PartialObjectMeta<Namespace>>>,
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

    /// The provider that serves an object in `namespace` using ProviderConfig `name`, or why none
    /// can (exactly one of the two is `Some`: the pair is what an observation records). `new_user`:
    /// the object has nothing in the cloud yet (no id, no create in flight). A ProviderConfig whose
    /// `spec.namespaceSelector` does not match the namespace serves nothing there, not even a
    /// deletion (every session, filter and anything that builds them observes through here, so
    /// this one check fences them all). A ProviderConfig being deleted serves only objects that
    /// have something there (so their own deletion can clean up) and takes no new users, or its
    /// deletion would wait on objects it should never have served.
    pub fn serve(
        &self,
        name: &str,
        namespace: &str,
        new_user: bool,
    ) -> (Option<Arc<Provider>>, Option<Unavailable>) {
        let live = self
            .live
            .get()
            .map(|store| store.get(&ObjectRef::new(name)));
        if let Some(Some(pc)) = &live
            && let Some(why) = self.refuses(pc, namespace)
        {
            return (None, Some(why));
        }
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

    /// Connects the registry to the Namespace cache (once, at start).
    pub fn attach_namespaces(&self, store: Store<PartialObjectMeta<Namespace>>) {
        let _ = self.namespaces.set(store);
    }

    /// Why `pc` may not serve objects in `namespace` ([`namespaces::admits`]), if it may not.
    fn refuses(&self, pc: &ProviderConfig, namespace: &str) -> Option<Unavailable> {
        let selector = pc.spec.namespace_selector.as_ref()?;
        let ns = self
            .namespaces
            .get()
            .and_then(|store| store.get(&ObjectRef::new(namespace)));
        let labels = ns
            .as_ref()
            .map(|n| n.metadata.labels.clone().unwrap_or_default());
        match namespaces::admits(Some(selector), labels.as_ref()) {
            Admits::Yes => None,
            Admits::No { selector } => Some(Unavailable::NotAllowed {
                namespace: namespace.to_string(),
                selector,
            }),
            Admits::Unknown => Some(Unavailable::NamespaceNotRead {
                namespace: namespace.to_string(),
            }),
        }
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
    pub(super) fn upsert(
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
            batch_rules: Default::default(),
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
    let ready = pc.status.as_ref().and_then(|s| {
        super::super::conditions::find(&s.conditions, super::super::conditions::READY)
    });
    Unavailable::NotReady {
        reason: ready.map(|c| c.reason.clone()).filter(|r| !r.is_empty()),
        message: ready.map(|c| c.message.clone()).filter(|m| !m.is_empty()),
    }
}

/// A hash of what a client is built from (endpoint, project, credentials).
pub(super) fn fingerprint(parts: &[&str]) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
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
