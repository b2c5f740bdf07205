//! The namespace fence's watch (client required): Namespaces (metadata only) into the cache
//! [`super::providers::Registry::serve`] reads labels from, plus the ProviderConfig controller's
//! spec changes for their `spec.namespaceSelector`. A relabelled namespace, or a changed selector, wakes at once the
//! sessions and filters it may let in or shut out, without a restart and without waiting for the
//! resync. Which of them changed is decided purely ([`Seen`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Api;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tracing::warn;

use super::context::Context;
use super::driver::Kind;
use crate::api::{TrafficMirrorFilter, TrafficMirrorSession};

/// The last labels and selectors seen (no client required): says which events change what a
/// namespace may use.
#[derive(Debug, Default)]
pub struct Seen {
    labels: HashMap<String, BTreeMap<String, String>>,
    selectors: HashMap<String, LabelSelector>,
}

impl Seen {
    /// Records namespace `name`'s labels; true when they differ from the last seen (a namespace
    /// seen for the first time counts as changed: objects refused before its labels were read
    /// look again).
    pub fn namespace(&mut self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        if self.labels.get(name) == Some(labels) {
            return false;
        }
        self.labels.insert(name.to_string(), labels.clone());
        true
    }

    /// Records ProviderConfig `name`'s `spec.namespaceSelector`; true when it differs from the last
    /// seen (an unseen ProviderConfig counts as having none, the default that changes nothing).
    pub fn selector(&mut self, name: &str, selector: Option<&LabelSelector>) -> bool {
        let before = match selector {
            Some(s) => self.selectors.insert(name.to_string(), s.clone()),
            None => self.selectors.remove(name),
        };
        before.as_ref() != selector
    }

    /// Whether ProviderConfig `name` has a selector (only its users care about namespace labels).
    pub fn fences(&self, name: &str) -> bool {
        self.selectors.contains_key(name)
    }
}

/// What a watch event tells the fence.
#[derive(Debug)]
pub enum Change {
    /// A namespace and its labels, as the cache now holds them.
    Namespace(String, BTreeMap<String, String>),
    /// A ProviderConfig and its `spec.namespaceSelector`, as the ProviderConfig cache now holds
    /// them (sent by the ProviderConfig controller's watch after its cache took the change, so a
    /// woken object never reads the old selector).
    ProviderConfig(String, Option<LabelSelector>),
}

/// Where to send the objects to look at again.
pub struct Wake {
    /// The session controller's trigger.
    pub sessions: UnboundedSender<ObjectRef<TrafficMirrorSession>>,
    /// The filter controller's trigger.
    pub filters: UnboundedSender<ObjectRef<TrafficMirrorFilter>>,
}

/// Runs the Namespace watch and wakes the objects each change concerns, until shutdown. The
/// Namespace cache is attached to the registry first; `selectors` are the ProviderConfig
/// controller's spec changes.
pub async fn run(ctx: Arc<Context>, selectors: UnboundedReceiver<Change>, wake: Wake) {
    let (store, writer) = reflector::store();
    ctx.providers.attach_namespaces(store);
    // `PartialObjectMeta`: metadata-only requests, so the cache holds names and labels only.
    let api = Api::<PartialObjectMeta<Namespace>>::all(ctx.client.clone());
    let namespaces = reflector::reflector(
        writer,
        watcher(api, watched(&ctx.config.namespace)).default_backoff(),
    )
    .touched_objects()
    .filter_map(|ns| {
        let change = match ns {
            Ok(ns) => Some(Change::Namespace(
                ns.name_any(),
                ns.metadata.labels.unwrap_or_default(),
            )),
            Err(e) => {
                warn!(error = %e, "watch of Namespaces (for namespaceSelector) failed; retrying");
                None
            }
        };
        std::future::ready(change)
    });
    let mut changes = std::pin::pin!(futures::stream::select(namespaces, selectors));
    let mut seen = Seen::default();
    while let Some(change) = changes.next().await {
        match change {
            Change::Namespace(ns, labels) if seen.namespace(&ns, &labels) => {
                wake_users(&ctx, &wake, |o: &dyn Fenced| {
                    o.namespace_name() == ns && seen.fences(o.provider())
                });
            }
            Change::ProviderConfig(pc, selector) if seen.selector(&pc, selector.as_ref()) => {
                wake_users(&ctx, &wake, |o: &dyn Fenced| o.provider() == pc);
            }
            _ => {}
        }
    }
}

/// The Namespaces to watch: with `--namespace`, that one only (the operator reconciles nothing
/// elsewhere), else all.
fn watched(only: &Option<String>) -> watcher::Config {
    match only {
        Some(ns) => watcher::Config::default().fields(&format!("metadata.name={ns}")),
        None => watcher::Config::default(),
    }
}

/// What the fence needs of an object: its namespace and its ProviderConfig.
trait Fenced {
    fn namespace_name(&self) -> String;
    fn provider(&self) -> &str;
}

impl<K: Kind> Fenced for K {
    fn namespace_name(&self) -> String {
        self.namespace().unwrap_or_default()
    }
    fn provider(&self) -> &str {
        self.provider_name()
    }
}

/// Sends every cached session and filter that `affected` picks to its controller.
fn wake_users(ctx: &Context, wake: &Wake, affected: impl Fn(&dyn Fenced) -> bool) {
    if let Some(store) = ctx.stores.sessions.get() {
        send(store, &wake.sessions, &affected);
    }
    if let Some(store) = ctx.stores.filters.get() {
        send(store, &wake.filters, &affected);
    }
}

fn send<K>(
    store: &Store<K>,
    to: &UnboundedSender<ObjectRef<K>>,
    affected: &impl Fn(&dyn Fenced) -> bool,
) where
    K: Kind + Clone + kube::Resource<DynamicType = ()>,
{
    for o in store.state() {
        if affected(&*o) {
            let _ = to.unbounded_send(ObjectRef::from_obj(&*o));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn team(t: &str) -> LabelSelector {
        LabelSelector {
            match_labels: Some(labels(&[("team", t)])),
            match_expressions: None,
        }
    }

    #[test]
    fn a_namespace_changes_when_first_seen_and_when_its_labels_change() {
        let mut seen = Seen::default();
        // (labels, changed)
        let table = [
            (labels(&[]), true),
            (labels(&[]), false),
            (labels(&[("team", "a")]), true),
            (labels(&[("team", "a")]), false),
            (labels(&[("team", "b")]), true),
            (labels(&[]), true),
        ];
        for (i, (l, changed)) in table.into_iter().enumerate() {
            assert_eq!(seen.namespace("ns", &l), changed, "row {i}");
        }
        assert!(seen.namespace("other", &labels(&[])), "another namespace");
    }

    #[test]
    fn a_selector_changes_only_when_it_differs_from_the_last_one() {
        let mut seen = Seen::default();
        let (a, b) = (team("a"), team("b"));
        // (selector, changed, fences afterwards)
        let table = [
            (None, false, false),
            (Some(&a), true, true),
            (Some(&a), false, true),
            (Some(&b), true, true),
            (None, true, false),
            (None, false, false),
        ];
        for (i, (sel, changed, fences)) in table.into_iter().enumerate() {
            assert_eq!(seen.selector("pc", sel), changed, "row {i}");
            assert_eq!(seen.fences("pc"), fences, "row {i}");
        }
        assert!(!seen.fences("other"));
    }
}
