//! ProviderConfig reconciler (client required): turns a `ProviderConfig` and its credential source
//! (a Secret, the node's agency, workload identity; see `source`) into a ready-to-use cloud
//! client, checked with one cheap call, and shares it with the session reconciler through the
//! [`Registry`]; keeps a ProviderConfig that objects still use from going away.
//!
//! Pipeline ([`reconcile`]): finalizer step ([`usage::decide_finalizer`]) → read Secret (source
//! `Secret`) → build client → obtain temporary credentials (other sources, cached) → check
//! credentials (`list sessions, limit=1`) → register → write status. Each check step
//! fails with its own [`CheckError`]; the reconciler's own Kubernetes writes fail with a
//! [`ProviderError`]. It runs again whenever the ProviderConfig or its Secret changes, whenever a
//! TrafficMirrorSession or TrafficMirrorFilter starts or stops referencing a ProviderConfig (watch
//! events feeding the [`usage::UsageIndex`]), and once per resync interval (at least every 30 s
//! with temporary credentials) so revoked credentials or a failing source show up in `status`.
//!
//! The ready accounts themselves ([`Provider`], [`Registry`]) live in [`registry`], which needs
//! nothing of the reconcilers' shared state, so that state can hold the registry.

pub mod check;
pub mod error;
pub mod namespaces;
mod reconcile;
pub mod registry;
mod source;
pub mod usage;

use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, PredicateConfig, WatchStreamExt, predicates, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::warn;

use super::context::Context;
use super::fence::Change;
use crate::api::{ProviderConfig, TrafficMirrorFilter, TrafficMirrorSession};
pub use check::CheckError;
pub use error::ProviderError;
use futures::channel::mpsc::UnboundedSender;
pub use reconcile::{KIND, ProviderContext, error_policy, reconcile};
pub use registry::{Deleted, Provider, Registry};
pub use usage::FINALIZER;
use usage::{UsageIndex, UserKind};

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
///
/// Every ProviderConfig the cache takes in is also told to `fence` (its `spec.namespaceSelector`),
/// after the cache holds it, so the objects a new selector lets in or shuts out look again at once.
pub async fn run_controller(ctx: Arc<Context>, fence: UnboundedSender<Change>) {
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
    let controller = Controller::for_stream(spec_changes(writer, api, wc, fence), store.clone());
    ctx.providers.attach(store.clone());
    super::object_counts::count_from_store(&ctx.metrics, reconcile::KIND, store.clone(), |o| {
        o.status.as_ref().map(|s| s.conditions.as_slice())
    });
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
    fence: UnboundedSender<Change>,
) -> impl Stream<Item = Result<ProviderConfig, watcher::Error>> + Send + 'static {
    reflector::reflector(writer, watcher(api, wc).default_backoff())
        .applied_objects()
        .inspect(move |pc| {
            if let Ok(pc) = pc {
                let selector = pc.spec.namespace_selector.clone();
                let _ = fence.unbounded_send(Change::ProviderConfig(pc.name_any(), selector));
            }
        })
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
            pc.spec
                .credentials
                .secret()
                .is_some_and(|r| r.namespace == ns && r.name == name)
        })
        .map(|pc| ObjectRef::from_obj(&*pc))
        .collect()
}
