//! The churn: sessions and filters created, edited (every kind of field), deleted and re-created
//! under the same name, one operation at a time, each chosen by the seeded RNG.
//!
//! The churn keeps its own view of what it made (`sessions`, `filters`): which names are live and
//! their last spec, so it only edits live objects, never deletes a filter a session of its view
//! references, and re-creates a deleted name once the old object is gone. The end checks never
//! trust this view: they read the API server.

use std::collections::BTreeMap;

use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, Error};
use rand::RngExt;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use serde_json::{Value, json};
use traffic_mirror_operator::api::{TrafficMirrorFilter, TrafficMirrorSession};

use super::model::{self, FilterChoice, Spec};

/// Field manager of the churn's writes.
const MANAGER: &str = "tmo-resilience";
const API_VERSION: &str = "vpc.hwcloud.dev/v1alpha1";

/// Which kind of object an operation is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `TrafficMirrorSession`.
    Session,
    /// `TrafficMirrorFilter`.
    Filter,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Session => "session",
            Kind::Filter => "filter",
        }
    }

    fn manifest(self, name: &str, spec: &Spec) -> Value {
        let kind = match self {
            Kind::Session => "TrafficMirrorSession",
            Kind::Filter => "TrafficMirrorFilter",
        };
        json!({"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec})
    }
}

/// What the churn did: operations by label (`session/edit/priority`, …) and failures.
#[derive(Debug, Default)]
pub struct Stats {
    /// Successful operations by label.
    pub ops: BTreeMap<String, u64>,
    /// Writes the API server refused or did not answer, by cause (`HTTP 409`, `no answer`, …):
    /// expected while it restarts, never `HTTP 422` (a spec the churn should not have drawn).
    pub failed: BTreeMap<String, u64>,
    /// Creates that found the old object still being deleted (retried later).
    pub create_waits: u64,
    /// Dangling filter references fixed after the churn (the churn's view had drifted).
    pub repaired_refs: u64,
}

impl Stats {
    /// Successful operations whose label starts with `prefix`.
    pub fn count(&self, prefix: &str) -> u64 {
        self.ops
            .iter()
            .filter(|(label, _)| label.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    }
}

/// The churn's state: names, specs, the RNG and the API.
pub struct Churn {
    rng: StdRng,
    sessions_api: Api<TrafficMirrorSession>,
    filters_api: Api<TrafficMirrorFilter>,
    pc: String,
    base_filter_id: String,
    session_names: Vec<String>,
    filter_names: Vec<String>,
    /// Live sessions (as far as the churn knows) and their last spec.
    sessions: BTreeMap<String, Spec>,
    /// Live filters and their last spec.
    filters: BTreeMap<String, Spec>,
    /// Creates waiting for the deleted object of the same name to go.
    pending: BTreeMap<(Kind, String), Spec>,
    /// What was done.
    pub stats: Stats,
}

impl Churn {
    /// A churn over `sessions` session names and `filters` filter names in `ns`.
    pub fn new(
        rng: StdRng,
        client: &Client,
        ns: &str,
        pc: &str,
        base_filter_id: &str,
        (sessions, filters): (usize, usize),
    ) -> Churn {
        Churn {
            rng,
            sessions_api: Api::namespaced(client.clone(), ns),
            filters_api: Api::namespaced(client.clone(), ns),
            pc: pc.to_string(),
            base_filter_id: base_filter_id.to_string(),
            session_names: (0..sessions).map(|i| format!("s{i:02}")).collect(),
            filter_names: (0..filters).map(|i| format!("f{i}")).collect(),
            sessions: BTreeMap::new(),
            filters: BTreeMap::new(),
            pending: BTreeMap::new(),
            stats: Stats::default(),
        }
    }

    /// Every name the churn may use, by kind.
    pub fn names(&self) -> (usize, usize) {
        (self.session_names.len(), self.filter_names.len())
    }

    /// One step: retry the waiting creates, then one operation chosen by the RNG.
    pub async fn step(&mut self) {
        self.retry_pending().await;
        let live_sessions = self.sessions.len();
        let free_sessions = self.free(Kind::Session).len();
        let live_filters = self.filters.len();
        let free_filters = self.free(Kind::Filter).len();
        // Weights: (operation, weight), only the applicable ones.
        let choices: Vec<(&str, u32)> = [
            ("session/create", if free_sessions > 0 { 12 } else { 0 }),
            ("session/edit", if live_sessions > 0 { 40 } else { 0 }),
            ("session/delete", if live_sessions > 3 { 7 } else { 0 }),
            ("session/recreate", if live_sessions > 0 { 6 } else { 0 }),
            ("filter/create", if free_filters > 0 { 6 } else { 0 }),
            ("filter/edit", if live_filters > 0 { 14 } else { 0 }),
            ("filter/delete", if live_filters > 1 { 2 } else { 0 }),
            ("filter/recreate", if live_filters > 0 { 2 } else { 0 }),
        ]
        .into_iter()
        .filter(|(_, w)| *w > 0)
        .collect();
        let Ok((op, _)) = choices.choose_weighted(&mut self.rng, |(_, w)| *w) else {
            return;
        };
        match *op {
            "session/create" => self.create_new(Kind::Session).await,
            "session/edit" => self.edit(Kind::Session).await,
            "session/delete" => self.delete(Kind::Session, false).await,
            "session/recreate" => self.delete(Kind::Session, true).await,
            "filter/create" => self.create_new(Kind::Filter).await,
            "filter/edit" => self.edit(Kind::Filter).await,
            "filter/delete" => self.delete(Kind::Filter, false).await,
            _ => self.delete(Kind::Filter, true).await,
        }
    }

    /// Names of `kind` that are neither live nor waiting to be created.
    fn free(&self, kind: Kind) -> Vec<String> {
        let (names, live) = match kind {
            Kind::Session => (&self.session_names, &self.sessions),
            Kind::Filter => (&self.filter_names, &self.filters),
        };
        names
            .iter()
            .filter(|n| !live.contains_key(*n) && !self.pending.contains_key(&(kind, (*n).clone())))
            .cloned()
            .collect()
    }

    fn live_filter_names(&self) -> Vec<String> {
        self.filters.keys().cloned().collect()
    }

    fn new_spec(&mut self, kind: Kind, name: &str) -> Spec {
        match kind {
            Kind::Session => {
                let live = self.live_filter_names();
                let choice = FilterChoice {
                    live: &live,
                    base_id: &self.base_filter_id,
                };
                model::new_session(&mut self.rng, name, &self.pc, &choice)
            }
            Kind::Filter => model::new_filter(&mut self.rng, name, &self.pc),
        }
    }

    async fn create_new(&mut self, kind: Kind) {
        let free = self.free(kind);
        let Some(name) = free.choose(&mut self.rng).cloned() else {
            return;
        };
        let spec = self.new_spec(kind, &name);
        self.pending.insert((kind, name), spec);
        self.retry_pending().await;
    }

    /// Tries every waiting create once; a create that finds the old object still there waits.
    async fn retry_pending(&mut self) {
        let waiting: Vec<((Kind, String), Spec)> = self
            .pending
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for ((kind, name), spec) in waiting {
            match self.create(kind, &name, &spec).await {
                Ok(()) => {
                    self.pending.remove(&(kind, name.clone()));
                    self.live_mut(kind).insert(name, spec);
                    self.count(format!("{}/create", kind.label()));
                }
                Err(Error::Api(status)) if status.code == 409 => {
                    self.stats.create_waits += 1;
                    self.adopt_if_live(kind, &name).await;
                }
                Err(e) => self.failed(&e),
            }
        }
    }

    /// After a 409: if the object there is not being deleted, an earlier create whose answer was
    /// lost made it; the churn takes it as live with the spec it has.
    async fn adopt_if_live(&mut self, kind: Kind, name: &str) {
        let found = match kind {
            Kind::Session => self
                .sessions_api
                .get_opt(name)
                .await
                .ok()
                .flatten()
                .map(|o| (o.metadata.deletion_timestamp, serde_json::to_value(o.spec))),
            Kind::Filter => self
                .filters_api
                .get_opt(name)
                .await
                .ok()
                .flatten()
                .map(|o| (o.metadata.deletion_timestamp, serde_json::to_value(o.spec))),
        };
        if let Some((None, Ok(Value::Object(spec)))) = found {
            self.pending.remove(&(kind, name.to_string()));
            self.live_mut(kind).insert(name.to_string(), spec);
        }
    }

    async fn create(&self, kind: Kind, name: &str, spec: &Spec) -> Result<(), Error> {
        let manifest = kind.manifest(name, spec);
        let pp = PostParams {
            field_manager: Some(MANAGER.into()),
            ..PostParams::default()
        };
        match kind {
            Kind::Session => {
                let obj: TrafficMirrorSession = serde_json::from_value(manifest)
                    .unwrap_or_else(|e| panic!("a drawn session spec does not parse: {e}"));
                self.sessions_api.create(&pp, &obj).await.map(drop)
            }
            Kind::Filter => {
                let obj: TrafficMirrorFilter = serde_json::from_value(manifest)
                    .unwrap_or_else(|e| panic!("a drawn filter spec does not parse: {e}"));
                self.filters_api.create(&pp, &obj).await.map(drop)
            }
        }
    }

    fn live_mut(&mut self, kind: Kind) -> &mut BTreeMap<String, Spec> {
        match kind {
            Kind::Session => &mut self.sessions,
            Kind::Filter => &mut self.filters,
        }
    }

    /// Counts a failed write by cause.
    fn failed(&mut self, e: &Error) {
        let cause = match e {
            Error::Api(status) => format!("HTTP {} {}", status.code, status.reason),
            _ => "no answer".to_string(),
        };
        *self.stats.failed.entry(cause).or_default() += 1;
    }

    fn count(&mut self, label: String) {
        *self.stats.ops.entry(label).or_default() += 1;
    }

    /// Edits one kind of field of a live object (the whole spec is written, so a field the edit
    /// drops is removed).
    async fn edit(&mut self, kind: Kind) {
        let live: Vec<String> = match kind {
            Kind::Session => self.sessions.keys().cloned().collect(),
            Kind::Filter => self.filters.keys().cloned().collect(),
        };
        let Some(name) = live.choose(&mut self.rng).cloned() else {
            return;
        };
        let mut spec = self.live_mut(kind)[&name].clone();
        let field = match kind {
            Kind::Session => {
                let filters = self.live_filter_names();
                let choice = FilterChoice {
                    live: &filters,
                    base_id: &self.base_filter_id,
                };
                model::edit_session(&mut self.rng, &mut spec, &name, &choice)
            }
            Kind::Filter => model::edit_filter(&mut self.rng, &mut spec, &name),
        };
        match self.apply(kind, &name, &spec).await {
            Ok(()) => {
                self.live_mut(kind).insert(name, spec);
                self.count(format!("{}/edit/{field}", kind.label()));
            }
            Err(e) => self.failed(&e),
        }
    }

    /// Writes `spec` as the object's whole spec: a JSON merge patch that also nulls every optional
    /// field `spec` leaves out (the API server then applies the CRD's default, as for a create).
    async fn apply(&self, kind: Kind, name: &str, spec: &Spec) -> Result<(), Error> {
        let optional: &[&str] = match kind {
            Kind::Session => &[
                "name",
                "description",
                "trafficMirrorFilterId",
                "trafficMirrorFilterRef",
                "virtualNetworkId",
                "packetLength",
                "enabled",
            ],
            Kind::Filter => &["name", "description"],
        };
        let mut patch = spec.clone();
        for key in optional {
            patch.entry(key.to_string()).or_insert(Value::Null);
        }
        let body = json!({ "spec": patch });
        let params = PatchParams::default();
        match kind {
            Kind::Session => self
                .sessions_api
                .patch(name, &params, &Patch::Merge(&body))
                .await
                .map(drop),
            Kind::Filter => self
                .filters_api
                .patch(name, &params, &Patch::Merge(&body))
                .await
                .map(drop),
        }
    }

    /// Deletes a live object; with `recreate`, queues a create of the same name with a new spec
    /// (it lands once the old object, finalizer and all, is gone). A filter that a live session
    /// references is not deleted.
    async fn delete(&mut self, kind: Kind, recreate: bool) {
        let candidates: Vec<String> = match kind {
            Kind::Session => self.sessions.keys().cloned().collect(),
            Kind::Filter => self
                .filters
                .keys()
                .filter(|f| !self.referenced(f))
                .cloned()
                .collect(),
        };
        let Some(name) = candidates.choose(&mut self.rng).cloned() else {
            return;
        };
        let done = match kind {
            Kind::Session => self
                .sessions_api
                .delete(&name, &DeleteParams::default())
                .await
                .map(drop),
            Kind::Filter => self
                .filters_api
                .delete(&name, &DeleteParams::default())
                .await
                .map(drop),
        };
        match &done {
            Ok(()) => {}
            Err(Error::Api(status)) if status.code == 404 => {}
            Err(e) => return self.failed(e),
        }
        self.live_mut(kind).remove(&name);
        let label = if recreate { "recreate" } else { "delete" };
        self.count(format!("{}/{label}", kind.label()));
        if recreate {
            let spec = self.new_spec(kind, &name);
            self.pending.insert((kind, name), spec);
        }
    }

    /// Whether a live or waiting session of the churn references filter `name`.
    fn referenced(&self, name: &str) -> bool {
        self.sessions
            .values()
            .chain(
                self.pending
                    .iter()
                    .filter(|((k, _), _)| *k == Kind::Session)
                    .map(|(_, s)| s),
            )
            .any(|s| model::referenced_filter(s) == Some(name))
    }

    /// Whether creates are still waiting.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Retries the waiting creates (after the churn, until none is left).
    pub async fn settle_pending(&mut self) {
        self.retry_pending().await;
    }

    /// Points every session object whose filter reference names no live filter object at the
    /// out-of-band filter; counts the repairs (0 unless the churn's view drifted from the API
    /// server through a write whose answer was lost).
    pub async fn repair_references(&mut self) -> Result<(), Error> {
        let filters = self.filters_api.list(&Default::default()).await?;
        let live: Vec<String> = filters
            .items
            .iter()
            .filter(|f| f.metadata.deletion_timestamp.is_none())
            .filter_map(|f| f.metadata.name.clone())
            .collect();
        let sessions = self.sessions_api.list(&Default::default()).await?;
        for s in sessions.items {
            let Some(reference) = &s.spec.traffic_mirror_filter_ref else {
                continue;
            };
            if s.metadata.deletion_timestamp.is_some() || live.contains(&reference.name) {
                continue;
            }
            let name = s.metadata.name.clone().unwrap_or_default();
            let Ok(Value::Object(mut spec)) = serde_json::to_value(&s.spec) else {
                continue;
            };
            spec.remove("trafficMirrorFilterRef");
            spec.insert("trafficMirrorFilterId".into(), json!(self.base_filter_id));
            self.apply(Kind::Session, &name, &spec).await?;
            self.sessions.insert(name, spec);
            self.stats.repaired_refs += 1;
        }
        Ok(())
    }

    /// A pause between operations, drawn from the RNG: `0..max_ms` milliseconds.
    pub fn pause_ms(&mut self, max_ms: u64) -> u64 {
        self.rng.random_range(0..max_ms)
    }
}
