//! The end-state invariants, checked against what the API server and the emulator hold:
//!
//! - every live session and filter object is `Ready=True` for its current generation;
//! - it has exactly one cloud object under its cloud name, the one its status names, in the
//!   desired state (every field; a filter's rules as a set);
//! - no cloud session, filter or rule is left that no live object owns (except the out-of-band
//!   filter the test made itself);
//! - no object is still being deleted (no stuck finalizer).
//!
//! Each violation carries the object, the cloud state and the needles (ids, names) that select
//! the call-log slice explaining it.

use std::collections::BTreeSet;

use kube::Client;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use traffic_mirror_operator::api::{FilterRuleSpec, TrafficMirrorFilter, TrafficMirrorSession};
use traffic_mirror_operator::emulator::{Data, Filter, Rule, Session};

/// Everything the checks look at, read at one moment.
#[derive(Clone)]
pub struct World {
    /// Session objects in the test namespace.
    pub sessions: Vec<TrafficMirrorSession>,
    /// Filter objects in the test namespace.
    pub filters: Vec<TrafficMirrorFilter>,
    /// The emulator's data.
    pub cloud: Data,
}

/// One broken invariant.
#[derive(Debug)]
pub struct Violation {
    /// `session s03`, `cloud session <id>`, …
    pub subject: String,
    /// What is wrong.
    pub problem: String,
    /// The Kubernetes object (metadata, spec, status), or null.
    pub object: Value,
    /// The cloud objects concerned.
    pub cloud: Value,
    /// Ids and names whose calls explain it.
    pub needles: Vec<String>,
}

/// Reads the objects of `ns` and the emulator's `state` (`GET /_emulator/state`).
pub async fn observe(client: &Client, ns: &str, state: Value) -> Result<World, String> {
    let sessions: Api<TrafficMirrorSession> = Api::namespaced(client.clone(), ns);
    let filters: Api<TrafficMirrorFilter> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default();
    Ok(World {
        sessions: sessions.list(&lp).await.map_err(|e| e.to_string())?.items,
        filters: filters.list(&lp).await.map_err(|e| e.to_string())?.items,
        cloud: serde_json::from_value(state).map_err(|e| format!("emulator state: {e}"))?,
    })
}

/// Every violation in `world`; `base_filter_id` is the test's own out-of-band filter.
pub fn violations(world: &World, base_filter_id: &str) -> Vec<Violation> {
    let mut found = Vec::new();
    for s in &world.sessions {
        found.extend(check_session(world, s));
    }
    for f in &world.filters {
        found.extend(check_filter(world, f));
    }
    found.extend(leaks(world, base_filter_id));
    found
}

fn dump<K: serde::Serialize>(obj: &K) -> Value {
    let mut v = serde_json::to_value(obj).unwrap_or(Value::Null);
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    v
}

fn violation(
    subject: String,
    problem: String,
    object: Value,
    cloud: Value,
    needles: Vec<String>,
) -> Violation {
    Violation {
        subject,
        problem,
        object,
        cloud,
        needles,
    }
}

/// `Ready=True` for the current generation, else what the condition says.
fn readiness_problem(
    meta: &kube::api::ObjectMeta,
    observed: Option<i64>,
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> Option<String> {
    if let Some(at) = &meta.deletion_timestamp {
        return Some(format!(
            "still being deleted (since {}, finalizers {:?})",
            at.0,
            meta.finalizers.clone().unwrap_or_default()
        ));
    }
    let ready = conditions.iter().find(|c| c.type_ == "Ready");
    let fresh = observed == meta.generation;
    match ready {
        Some(c) if c.status == "True" && fresh => None,
        Some(c) => Some(format!(
            "Ready={} reason {} for generation {:?} (object at generation {:?}): {}",
            c.status, c.reason, observed, meta.generation, c.message
        )),
        None => Some(format!(
            "no Ready condition (generation {:?})",
            meta.generation
        )),
    }
}

fn check_session(world: &World, s: &TrafficMirrorSession) -> Vec<Violation> {
    let name = s.metadata.name.clone().unwrap_or_default();
    let subject = format!("session {name}");
    let cloud_name = s.cloud_name();
    let status = s.status.clone().unwrap_or_default();
    let named: Vec<&Session> = world
        .cloud
        .sessions
        .iter()
        .filter(|c| c.name == cloud_name)
        .collect();
    let mut needles = vec![cloud_name.clone()];
    needles.extend(named.iter().map(|c| c.id.clone()));
    needles.extend(status.session_id.clone());
    let mut problems = Vec::new();
    if let Some(p) = readiness_problem(&s.metadata, status.observed_generation, &status.conditions)
    {
        problems.push(p);
    }
    if s.metadata.deletion_timestamp.is_none() {
        match named.as_slice() {
            [one] => {
                if status.session_id.as_deref() != Some(one.id.as_str()) {
                    problems.push(format!(
                        "status.sessionId {:?} is not the cloud session {}",
                        status.session_id, one.id
                    ));
                }
                problems.extend(session_diff(world, s, one));
            }
            _ => problems.push(format!(
                "{} cloud sessions are named {cloud_name:?} (want 1)",
                named.len()
            )),
        }
    }
    let cloud = json!(named);
    problems
        .into_iter()
        .map(|p| violation(subject.clone(), p, dump(s), cloud.clone(), needles.clone()))
        .collect()
}

/// The fields of cloud session `c` that differ from what `s` wants.
fn session_diff(world: &World, s: &TrafficMirrorSession, c: &Session) -> Vec<String> {
    let spec = &s.spec;
    let filter_id = match (
        &spec.traffic_mirror_filter_id,
        &spec.traffic_mirror_filter_ref,
    ) {
        (Some(id), _) => Some(id.clone()),
        (None, Some(r)) => world
            .filters
            .iter()
            .find(|f| f.metadata.name.as_deref() == Some(r.name.as_str()))
            .and_then(|f| f.status.as_ref()?.filter_id.clone()),
        (None, None) => None,
    };
    let want_sources: BTreeSet<&String> = spec.traffic_mirror_sources.iter().collect();
    let have_sources: BTreeSet<&String> = c.traffic_mirror_sources.iter().collect();
    let pairs: [(&str, String, String); 10] = [
        (
            "description",
            spec.description.clone().unwrap_or_default(),
            c.description.clone(),
        ),
        (
            "filter",
            format!("{filter_id:?}"),
            format!("{:?}", Some(&c.traffic_mirror_filter_id)),
        ),
        (
            "sources",
            format!("{want_sources:?}"),
            format!("{have_sources:?}"),
        ),
        (
            "targetId",
            spec.traffic_mirror_target_id.clone(),
            c.traffic_mirror_target_id.clone(),
        ),
        (
            "targetType",
            spec.traffic_mirror_target_type.as_str().into(),
            c.traffic_mirror_target_type.clone(),
        ),
        (
            "virtualNetworkId",
            spec.virtual_network_id.to_string(),
            c.virtual_network_id.to_string(),
        ),
        (
            "packetLength",
            spec.packet_length.to_string(),
            c.packet_length.to_string(),
        ),
        (
            "priority",
            spec.priority.to_string(),
            c.priority.to_string(),
        ),
        ("enabled", spec.enabled.to_string(), c.enabled.to_string()),
        (
            "type",
            spec.source_type.as_str().into(),
            c.source_type.clone(),
        ),
    ];
    pairs
        .into_iter()
        .filter(|(_, want, have)| want != have)
        .map(|(field, want, have)| format!("cloud {field} is {have}, the spec wants {want}"))
        .collect()
}

fn check_filter(world: &World, f: &TrafficMirrorFilter) -> Vec<Violation> {
    let name = f.metadata.name.clone().unwrap_or_default();
    let subject = format!("filter {name}");
    let cloud_name = f.cloud_name();
    let status = f.status.clone().unwrap_or_default();
    let named: Vec<&Filter> = world
        .cloud
        .filters
        .iter()
        .filter(|c| c.name == cloud_name)
        .collect();
    let mut needles = vec![cloud_name.clone()];
    needles.extend(named.iter().map(|c| c.id.clone()));
    needles.extend(status.filter_id.clone());
    let mut problems = Vec::new();
    if let Some(p) = readiness_problem(&f.metadata, status.observed_generation, &status.conditions)
    {
        problems.push(p);
    }
    let mut cloud = json!({"filters": named});
    if f.metadata.deletion_timestamp.is_none() {
        match named.as_slice() {
            [one] => {
                if status.filter_id.as_deref() != Some(one.id.as_str()) {
                    problems.push(format!(
                        "status.filterId {:?} is not the cloud filter {}",
                        status.filter_id, one.id
                    ));
                }
                let rules: Vec<&Rule> = world
                    .cloud
                    .rules
                    .iter()
                    .filter(|r| r.traffic_mirror_filter_id == one.id)
                    .collect();
                cloud["rules"] = json!(rules);
                problems.extend(filter_diff(f, one, &rules));
            }
            _ => problems.push(format!(
                "{} cloud filters are named {cloud_name:?} (want 1)",
                named.len()
            )),
        }
    }
    problems
        .into_iter()
        .map(|p| violation(subject.clone(), p, dump(f), cloud.clone(), needles.clone()))
        .collect()
}

/// A rule reduced to what must match: direction, priority, protocol (any case), ethertype, CIDRs,
/// ports, action, description (absent = "").
type RuleKey = (
    String,
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
);

fn desired_rule(r: &FilterRuleSpec) -> RuleKey {
    (
        r.direction.as_str().into(),
        r.priority,
        r.protocol.as_str().to_ascii_uppercase(),
        r.ethertype.as_str().into(),
        r.source_cidr_block.clone().unwrap_or_default(),
        r.destination_cidr_block.clone().unwrap_or_default(),
        r.source_port_range.clone().unwrap_or_default(),
        r.destination_port_range.clone().unwrap_or_default(),
        r.action.as_str().into(),
        r.description.clone().unwrap_or_default(),
    )
}

fn cloud_rule(r: &Rule) -> RuleKey {
    (
        r.direction.clone(),
        r.priority,
        r.protocol.to_ascii_uppercase(),
        r.ethertype.clone(),
        r.source_cidr_block.clone().unwrap_or_default(),
        r.destination_cidr_block.clone().unwrap_or_default(),
        r.source_port_range.clone().unwrap_or_default(),
        r.destination_port_range.clone().unwrap_or_default(),
        r.action.clone(),
        r.description.clone(),
    )
}

fn filter_diff(f: &TrafficMirrorFilter, c: &Filter, rules: &[&Rule]) -> Vec<String> {
    let mut problems = Vec::new();
    let want_description = f.spec.description.clone().unwrap_or_default();
    if want_description != c.description {
        problems.push(format!(
            "cloud description is {:?}, the spec wants {want_description:?}",
            c.description
        ));
    }
    let mut want: Vec<RuleKey> = f.spec.rules.iter().map(desired_rule).collect();
    let mut have: Vec<RuleKey> = rules.iter().map(|r| cloud_rule(r)).collect();
    want.sort();
    have.sort();
    if want != have {
        problems.push(format!("cloud rules {have:?}, the spec wants {want:?}"));
    }
    problems
}

/// Cloud objects no live object owns: sessions and filters whose id no object's status names (the
/// out-of-band filter aside), rules of a filter that is gone.
fn leaks(world: &World, base_filter_id: &str) -> Vec<Violation> {
    let owned_sessions: BTreeSet<String> = world
        .sessions
        .iter()
        .filter_map(|s| s.status.as_ref()?.session_id.clone())
        .collect();
    let owned_filters: BTreeSet<String> = world
        .filters
        .iter()
        .filter_map(|f| f.status.as_ref()?.filter_id.clone())
        .chain([base_filter_id.to_string()])
        .collect();
    let mut found = Vec::new();
    for c in world
        .cloud
        .sessions
        .iter()
        .filter(|c| !owned_sessions.contains(&c.id))
    {
        let problem = "no live session object owns this cloud session (leaked)".to_string();
        let needles = vec![c.id.clone(), c.name.clone()];
        found.push(violation(
            format!("cloud session {} ({})", c.id, c.name),
            problem,
            Value::Null,
            json!(c),
            needles,
        ));
    }
    for c in world
        .cloud
        .filters
        .iter()
        .filter(|c| !owned_filters.contains(&c.id))
    {
        let problem = "no live filter object owns this cloud filter (leaked)".to_string();
        let needles = vec![c.id.clone(), c.name.clone()];
        found.push(violation(
            format!("cloud filter {} ({})", c.id, c.name),
            problem,
            Value::Null,
            json!(c),
            needles,
        ));
    }
    let filter_ids: BTreeSet<&String> = world.cloud.filters.iter().map(|f| &f.id).collect();
    for r in world
        .cloud
        .rules
        .iter()
        .filter(|r| !filter_ids.contains(&r.traffic_mirror_filter_id))
    {
        let problem = "a rule of a filter that no longer exists".to_string();
        let needles = vec![r.id.clone(), r.traffic_mirror_filter_id.clone()];
        found.push(violation(
            format!("cloud rule {}", r.id),
            problem,
            Value::Null,
            json!(r),
            needles,
        ));
    }
    found
}

/// The calls that explain a violation: those whose path, query or body mention one of its needles
/// (ids, names), in order; when there are more than `max`, every write and every failed call is
/// kept and the rest are the latest reads (so repeated resync LISTs never hide the POST).
pub fn call_slice<'a>(calls: &'a [Value], needles: &[String], max: usize) -> Vec<&'a Value> {
    let hits: Vec<&Value> = calls
        .iter()
        .filter(|c| {
            let text = format!("{} {} {}", c["path"], c["query"], c["body"]);
            needles
                .iter()
                .any(|n| !n.is_empty() && text.contains(n.as_str()))
        })
        .collect();
    if hits.len() <= max {
        return hits;
    }
    let telling = |c: &Value| c["method"] != "GET" || c["status"] != 200;
    let telling_count = hits.iter().filter(|c| telling(c)).count();
    let mut reads_left = max.saturating_sub(telling_count);
    let mut kept: Vec<&Value> = hits
        .iter()
        .rev()
        .filter(|c| {
            if telling(c) {
                return true;
            }
            let keep = reads_left > 0;
            reads_left = reads_left.saturating_sub(1);
            keep
        })
        .copied()
        .collect();
    kept.reverse();
    kept
}

/// The violation as printed: problem, object, cloud state, call slice.
pub fn render(v: &Violation, calls: &[Value]) -> String {
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let slice: Vec<String> = call_slice(calls, &v.needles, 30)
        .into_iter()
        .map(|c| {
            format!(
                "  {} {} {}?{} -> {} {}",
                c["at"].as_str().unwrap_or(""),
                c["method"].as_str().unwrap_or(""),
                c["path"].as_str().unwrap_or(""),
                c["query"].as_str().unwrap_or(""),
                c["status"],
                c["body"]
            )
        })
        .collect();
    format!(
        "VIOLATION {}: {}\n--- object:\n{}\n--- cloud:\n{}\n--- calls ({} shown, newest last):\n{}\n",
        v.subject,
        v.problem,
        pretty(&v.object),
        pretty(&v.cloud),
        slice.len(),
        slice.join("\n")
    )
}

/// Proves on a world that passed that the checks can fail: each of a few damages (a leaked cloud
/// session, a drifted field, a lost rule change, a session gone from the cloud, an object not
/// Ready, a stuck deletion) must be reported. Returns the damages that went unnoticed.
pub fn missed_damages(world: &World, base_filter_id: &str) -> Vec<&'static str> {
    let mut missed = Vec::new();
    let mut check = |label: &'static str, damage: &dyn Fn(&mut World) -> bool| {
        let mut damaged = world.clone();
        if damage(&mut damaged) && violations(&damaged, base_filter_id).is_empty() {
            missed.push(label);
        }
    };
    check("leaked cloud session", &|w| {
        let Some(mut extra) = w.cloud.sessions.first().cloned() else {
            return false;
        };
        extra.id = "leaked-0000".into();
        extra.name = "nobody".into();
        w.cloud.sessions.push(extra);
        true
    });
    check("drifted session priority", &|w| {
        w.cloud
            .sessions
            .iter_mut()
            .next()
            .map(|s| s.priority += 1)
            .is_some()
    });
    check("drifted rule protocol", &|w| {
        w.cloud
            .rules
            .iter_mut()
            .next()
            .map(|r| r.protocol = "drift".into())
            .is_some()
    });
    check("session missing in the cloud", &|w| {
        w.cloud.sessions.pop().is_some()
    });
    check("session not Ready", &|w| {
        let Some(s) = w.sessions.first_mut() else {
            return false;
        };
        let status = s.status.get_or_insert_with(Default::default);
        status
            .conditions
            .iter_mut()
            .for_each(|c| c.status = "False".into());
        true
    });
    check("stuck deletion", &|w| {
        let Some(f) = w.filters.first_mut() else {
            return false;
        };
        f.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        ));
        true
    });
    missed
}
