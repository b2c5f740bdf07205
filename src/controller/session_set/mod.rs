//! TrafficMirrorSessionSet: its own small reconciler, not a [`super::driver::Kind`]. The driver's
//! pipeline is about one cloud object per Kubernetes object (finalizer, create intent, cloud id,
//! deletion policy); a set has no cloud object of its own. It writes TrafficMirrorSession children
//! and the session reconciler does the cloud work, so a set needs no finalizer: `kubectl delete`
//! cascades through the garbage collector. What it shares with the other kinds is the status
//! machinery ([`super::conditions`]), the single server-side-apply status write
//! ([`super::object::apply_status`]) and, for the ports it reads, the account's budget.
//!
//! Each reconcile runs these steps ([`reconcile`]):
//!
//! 1. select (Node cache, cloud): the selected Nodes ([`nodes`]) resolved to ports ([`resolve`],
//!    the lookups in [`ports`]) and the tagged ports; any failure stops here, so a failed lookup
//!    never takes a source away;
//! 2. read the children (API server, [`children::list`]);
//! 3. plan (no client required, [`plan`]);
//! 4. apply (API server, [`children::apply`]): create, update, delete;
//! 5. status (no client required, [`status`]), written once and only if it changed (API server).

pub mod children;
pub mod error;
pub mod nodes;
pub mod plan;
pub mod ports;
pub mod resolve;
pub mod status;
mod wiring;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Api, Resource, ResourceExt};
use tracing::{debug, warn};

use super::budget;
use super::context::Context;
use crate::api::{TrafficMirrorSession, TrafficMirrorSessionSet, UnresolvedSource};
pub use error::SetError;
use resolve::{Resolution, ResolutionCache};
pub use wiring::run_controller;

/// Kind label used in metrics and logs.
pub const KIND: &str = "TrafficMirrorSessionSet";
/// How long after a failure the set is looked at again.
const RETRY: Duration = Duration::from_secs(5);

/// What the set reconciler keeps between reconciles.
pub struct SetContext {
    /// The shared state of every reconciler (client, settings, providers, leadership).
    pub ctx: Arc<Context>,
    /// Every Node, from one watch.
    pub nodes: Store<Node>,
    /// Resolved Nodes (a Node's port does not change).
    pub resolved: Mutex<ResolutionCache>,
    /// The tagged ports of each set (by uid), with the generation and time they were listed: re-listed
    /// once per resync interval or when the spec changes, not on every Node event.
    pub tagged: Mutex<HashMap<String, TaggedPorts>>,
    /// The Nodes each set (`namespace/name`) selected at its last reconcile, so a Node relabelled
    /// out of a selector still wakes the set.
    pub selected: Mutex<HashMap<String, BTreeSet<String>>>,
}

/// A set's tagged ports as last listed: the spec generation and the time they were listed for.
pub type TaggedPorts = (Option<i64>, Instant, BTreeSet<String>);

/// The ports a set selects now.
#[derive(Debug, Default)]
pub struct Selection {
    /// Every selected port: resolved Nodes and tagged ports.
    pub ports: BTreeSet<String>,
    /// The selected Nodes with no port.
    pub unresolved: Vec<UnresolvedSource>,
    /// The names of the selected Nodes.
    pub nodes: BTreeSet<String>,
}

/// Reconciles one set. Failures are reported in its status and retried here, so this returns `Ok`.
pub async fn reconcile(
    set: Arc<TrafficMirrorSessionSet>,
    sc: Arc<SetContext>,
) -> Result<Action, SetError> {
    if !sc.ctx.is_leader() || set.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change()); // a standby, or the garbage collector's work
    }
    let started = Instant::now();
    let action = budget::in_lane(budget::Lane::Interactive, steps(&set, &sc)).await;
    sc.ctx.metrics.reconciled(KIND, started.elapsed());
    Ok(action)
}

/// Select, read the children, plan, apply, then the status.
async fn steps(set: &TrafficMirrorSessionSet, sc: &SetContext) -> Action {
    let ns = set.namespace().unwrap_or_default();
    let sessions: Api<TrafficMirrorSession> = Api::namespaced(sc.ctx.client.clone(), &ns);
    let mut outcome = status::Outcome::default();
    let done = converge(set, sc, &sessions, &mut outcome).await;
    outcome.error = done.as_ref().err();
    let sets: Api<TrafficMirrorSessionSet> = Api::namespaced(sc.ctx.client.clone(), &ns);
    let current = set.status.clone().unwrap_or_default();
    let next = status::next_status(
        &current,
        &outcome,
        set.meta().generation,
        chrono::Utc::now(),
    );
    let mut write_failed = false;
    if status::changed(&current, &next)
        && let Err(e) = super::object::apply_status(&sets, set, &next).await
    {
        let error = super::error::kube_cause(&e);
        warn!(set = %set.name_any(), %error, "writing the set's status failed");
        write_failed = true;
    }
    match done {
        Ok(()) if !write_failed => Action::requeue(sc.ctx.config.resync_interval),
        Ok(()) => Action::requeue(RETRY),
        Err(e) => {
            warn!(set = %set.name_any(), error = %e, "set reconcile failed");
            sc.ctx.metrics.reconcile_failed(KIND, e.reason());
            Action::requeue(RETRY)
        }
    }
}

/// Steps 1-4, recording what is known in `outcome` as it becomes known.
async fn converge(
    set: &TrafficMirrorSessionSet,
    sc: &SetContext,
    sessions: &Api<TrafficMirrorSession>,
    outcome: &mut status::Outcome<'_>,
) -> Result<(), SetError> {
    let selection = select(set, sc).await?;
    remember_selection(sc, set, &selection);
    outcome.selection = Some((selection.ports.len(), selection.unresolved.clone()));
    let current = children::list(sessions, set).await?;
    let reserved = reserved_names(sc, set, &current);
    let max = usize::try_from(set.spec.max_sources_per_session).unwrap_or(10);
    let have = children::sources(&current);
    let plan = plan::plan(&set.name_any(), &have, &selection.ports, max, &reserved);
    let applied = children::apply(sessions, set, &current, &plan).await?;
    debug!(set = %set.name_any(), ?applied, "children applied");
    let ready = plan
        .keep
        .iter()
        .filter(|(name, sources)| {
            current.iter().any(|c| {
                &c.name_any() == *name
                    && c.spec == children::child_spec(set, sources)
                    && children::is_ready(c)
            })
        })
        .count();
    outcome.children = Some((plan.keep.len() + plan.create.len(), ready));
    Ok(())
}

/// Names of sessions in the set's namespace that are not its children (from the session cache): a
/// new child never takes one.
fn reserved_names(
    sc: &SetContext,
    set: &TrafficMirrorSessionSet,
    children: &[TrafficMirrorSession],
) -> BTreeSet<String> {
    let ns = set.namespace();
    let ours: BTreeSet<String> = children.iter().map(ResourceExt::name_any).collect();
    let Some(store) = sc.ctx.stores.sessions.get() else {
        return BTreeSet::new();
    };
    store
        .state()
        .iter()
        .filter(|s| s.namespace() == ns)
        .map(|s| s.name_any())
        .filter(|n| !ours.contains(n))
        .collect()
}

fn remember_selection(sc: &SetContext, set: &TrafficMirrorSessionSet, s: &Selection) {
    let key = set_key(set);
    let mut selected = sc.selected.lock().unwrap_or_else(|p| p.into_inner());
    selected.insert(key, s.nodes.clone());
}

/// `namespace/name` of a set.
pub fn set_key(set: &TrafficMirrorSessionSet) -> String {
    format!("{}/{}", set.namespace().unwrap_or_default(), set.name_any())
}

/// Step 1: the selected ports. Nodes come from the cache (which must be filled: an empty cache would
/// look like every Node gone); a Node not resolved before is looked up with the others in a few
/// ports queries; tagged ports are re-listed once per resync interval.
async fn select(set: &TrafficMirrorSessionSet, sc: &SetContext) -> Result<Selection, SetError> {
    let mut out = Selection::default();
    let vpc = set.spec.sources.vpc_id.as_deref();
    if let Some(selector) = &set.spec.sources.node_selector {
        let selector = nodes::selector(selector).map_err(SetError::InvalidSelector)?;
        if tokio::time::timeout(Duration::from_secs(1), sc.nodes.wait_until_ready())
            .await
            .is_err()
        {
            return Err(SetError::NodesNotSynced);
        }
        let all = sc.nodes.state();
        let live: std::collections::HashSet<String> = all.iter().filter_map(|n| n.uid()).collect();
        sc.resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain_nodes(&live);
        let chosen = nodes::selected(&selector, all.iter().map(|n| &**n));
        let resolutions = resolve_nodes(set, sc, &chosen, vpc).await?;
        for (node, r) in resolutions {
            out.nodes.insert(node.clone());
            match r {
                Resolution::Port(p) => {
                    out.ports.insert(p);
                }
                Resolution::Unresolved {
                    reason,
                    message,
                    candidates,
                } => {
                    out.unresolved.push(UnresolvedSource {
                        node,
                        reason: reason.into(),
                        message,
                        candidates,
                    });
                }
            }
        }
    }
    if let Some(tags) = &set.spec.sources.port_tags {
        out.ports.extend(tagged_ports(set, sc, tags).await?);
    }
    Ok(out)
}

/// Resolves `chosen`: from the cache, the rest in batched ports queries.
async fn resolve_nodes(
    set: &TrafficMirrorSessionSet,
    sc: &SetContext,
    chosen: &[nodes::NodeFacts],
    vpc: Option<&str>,
) -> Result<std::collections::BTreeMap<String, Resolution>, SetError> {
    let missing: Vec<nodes::NodeFacts> = {
        let cache = sc.resolved.lock().unwrap_or_else(|p| p.into_inner());
        chosen
            .iter()
            .filter(|n| cache.get(n, vpc).is_none())
            .cloned()
            .collect()
    };
    let mut found = Vec::new();
    if missing.iter().any(|n| n.internal_ip.is_some()) {
        let provider = provider(set, sc)?;
        for batch in resolve::address_batches(&missing) {
            found.extend(ports::by_addresses(&provider, &sc.ctx.metrics, &batch, vpc).await?);
        }
    }
    let mut cache = sc.resolved.lock().unwrap_or_else(|p| p.into_inner());
    Ok(resolve::resolve_all(&mut cache, chosen, vpc, &found))
}

/// The tagged ports, listed again when older than the resync interval or the spec changed.
async fn tagged_ports(
    set: &TrafficMirrorSessionSet,
    sc: &SetContext,
    tags: &[crate::api::PortTag],
) -> Result<BTreeSet<String>, SetError> {
    let uid = set.uid().unwrap_or_default();
    let generation = set.meta().generation;
    {
        let cached = sc.tagged.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((g, at, ports)) = cached.get(&uid)
            && *g == generation
            && at.elapsed() < sc.ctx.config.resync_interval
        {
            return Ok(ports.clone());
        }
    }
    let provider = provider(set, sc)?;
    let ports = ports::by_tags(&provider, &sc.ctx.metrics, tags).await?;
    let mut cached = sc.tagged.lock().unwrap_or_else(|p| p.into_inner());
    cached.insert(uid, (generation, Instant::now(), ports.clone()));
    Ok(ports)
}

/// The ready provider of the set's template, if it may serve the set's namespace (its
/// `spec.namespaceSelector`): a set in a namespace the ProviderConfig refuses reads no port.
fn provider(
    set: &TrafficMirrorSessionSet,
    sc: &SetContext,
) -> Result<Arc<super::providers::registry::Provider>, SetError> {
    let name = &set.spec.session_template.provider_config_ref.name;
    let namespace = set.metadata.namespace.as_deref().unwrap_or_default();
    match sc.ctx.providers.serve(name, namespace, false) {
        (Some(provider), _) => Ok(provider),
        (None, Some(why)) => Err(SetError::ProviderUnavailable {
            reason: why.reason(),
            message: why.describe(name),
        }),
        (None, None) => Err(SetError::ProviderNotReady(name.clone())),
    }
}
