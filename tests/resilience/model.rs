//! The churn's specs: new session and filter specs drawn from the seeded RNG, and the edits made
//! to them, one field kind at a time so that every kind of field is changed in a run.
//!
//! Pure functions over `serde_json` maps (no client), so the sequence of specs depends on the
//! seed alone. Every spec drawn here is valid for the API server and the emulator: the test
//! checks convergence, not admission.

use rand::RngExt;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use serde_json::{Map, Value, json};

/// A spec as a JSON object (`spec` of the manifest).
pub type Spec = Map<String, Value>;

/// The kinds of session edit; the churn picks one per edit and counts them.
pub const SESSION_EDITS: &[&str] = &[
    "description",
    "name",
    "filter",
    "sources",
    "target",
    "virtualNetworkId",
    "packetLength",
    "priority",
    "enabled",
    "several",
];

/// The kinds of filter edit.
pub const FILTER_EDITS: &[&str] = &[
    "description",
    "name",
    "addRule",
    "removeRule",
    "ruleField",
    "rulePriority",
    "replaceRules",
];

/// Most rules a drawn filter has.
const MAX_RULES: usize = 5;
/// Source ENI ids are drawn from `eni-src-00` .. this.
const SOURCE_POOL: usize = 16;
const DESCRIPTIONS: &[&str] = &["tap", "mirror to IDS", "中文描述", "", "audit-2"];
const V4_CIDRS: &[&str] = &[
    "10.0.0.0/24",
    "192.168.1.0/24",
    "172.16.0.0/12",
    "0.0.0.0/0",
];
const V6_CIDRS: &[&str] = &["2001:db8::/64", "fd00::/8", "::/0"];
const PORTS: &[&str] = &["80", "443", "1-1024", "8000-9000", "53"];

/// Where a session's filter comes from: a `TrafficMirrorFilter` of the churn (by name) when one
/// is live, else the out-of-band cloud filter (by id).
pub struct FilterChoice<'a> {
    /// Live filter objects a session may reference.
    pub live: &'a [String],
    /// Id of the cloud filter made outside Kubernetes.
    pub base_id: &'a str,
}

/// A new session spec for object `obj`.
pub fn new_session(rng: &mut StdRng, obj: &str, pc: &str, filters: &FilterChoice) -> Spec {
    let mut spec = Spec::new();
    spec.insert("providerConfigRef".into(), json!({ "name": pc }));
    spec.insert("priority".into(), json!(rng.random_range(1..=32766)));
    spec.insert("trafficMirrorSources".into(), sources(rng, 1, 4));
    set_target(rng, &mut spec);
    set_filter(rng, &mut spec, filters);
    if rng.random_bool(0.4) {
        set_name(rng, &mut spec, obj);
    }
    if rng.random_bool(0.5) {
        set_description(rng, &mut spec);
    }
    if rng.random_bool(0.5) {
        spec.insert("virtualNetworkId".into(), json!(vni(rng)));
    }
    if rng.random_bool(0.5) {
        spec.insert("packetLength".into(), json!(rng.random_range(1..=1460_i64)));
    }
    if rng.random_bool(0.5) {
        spec.insert("enabled".into(), json!(rng.random_bool(0.5)));
    }
    spec
}

/// Changes one kind of field of a session spec (or several, for `several`); returns the kind.
pub fn edit_session(
    rng: &mut StdRng,
    spec: &mut Spec,
    obj: &str,
    filters: &FilterChoice,
) -> &'static str {
    let kind = *SESSION_EDITS.choose(rng).unwrap_or(&"priority");
    if kind == "several" {
        for _ in 0..3 {
            let one = *SESSION_EDITS[..SESSION_EDITS.len() - 1]
                .choose(rng)
                .unwrap_or(&"priority");
            edit_session_field(rng, spec, obj, filters, one);
        }
    } else {
        edit_session_field(rng, spec, obj, filters, kind);
    }
    kind
}

fn edit_session_field(
    rng: &mut StdRng,
    spec: &mut Spec,
    obj: &str,
    filters: &FilterChoice,
    kind: &str,
) {
    match kind {
        "description" => set_description(rng, spec),
        "name" => set_name(rng, spec, obj),
        "filter" => set_filter(rng, spec, filters),
        "sources" => edit_sources(rng, spec),
        "target" => set_target(rng, spec),
        "virtualNetworkId" => {
            spec.insert("virtualNetworkId".into(), json!(vni(rng)));
        }
        "packetLength" => {
            spec.insert("packetLength".into(), json!(rng.random_range(1..=1460_i64)));
        }
        "enabled" => {
            let on = spec
                .get("enabled")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            spec.insert("enabled".into(), json!(!on));
        }
        _ => {
            spec.insert("priority".into(), json!(rng.random_range(1..=32766)));
        }
    }
}

/// The VNI: small values mostly, the extremes sometimes.
fn vni(rng: &mut StdRng) -> i64 {
    *[0, 1, 2, 4096, 16_777_215].choose(rng).unwrap_or(&1)
}

/// `count` in `min..=max` distinct source ENIs.
fn sources(rng: &mut StdRng, min: usize, max: usize) -> Value {
    let pool: Vec<String> = (0..SOURCE_POOL)
        .map(|i| format!("eni-src-{i:02}"))
        .collect();
    let count = rng.random_range(min..=max);
    let chosen: Vec<&String> = pool.sample(rng, count).collect();
    json!(chosen)
}

/// Adds one source, removes one, or replaces the set (up to the quota of 10).
fn edit_sources(rng: &mut StdRng, spec: &mut Spec) {
    let mut now: Vec<String> = spec
        .get("trafficMirrorSources")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    match rng.random_range(0..3) {
        0 if now.len() < 10 => {
            let free: Vec<String> = (0..SOURCE_POOL)
                .map(|i| format!("eni-src-{i:02}"))
                .filter(|s| !now.contains(s))
                .collect();
            if let Some(s) = free.choose(rng) {
                now.push(s.clone());
            }
        }
        1 if now.len() > 1 => {
            now.remove(rng.random_range(0..now.len()));
        }
        _ => {
            now = serde_json::from_value(sources(rng, 1, 10)).unwrap_or(now);
        }
    }
    spec.insert("trafficMirrorSources".into(), json!(now));
}

fn set_target(rng: &mut StdRng, spec: &mut Spec) {
    let (kind, id) = if rng.random_bool(0.7) {
        ("eni", format!("eni-target-{}", rng.random_range(0..4)))
    } else {
        ("elb", format!("elb-{}", rng.random_range(0..3)))
    };
    spec.insert("trafficMirrorTargetType".into(), json!(kind));
    spec.insert("trafficMirrorTargetId".into(), json!(id));
}

fn set_filter(rng: &mut StdRng, spec: &mut Spec, filters: &FilterChoice) {
    spec.remove("trafficMirrorFilterRef");
    spec.remove("trafficMirrorFilterId");
    match filters.live.choose(rng) {
        Some(name) if rng.random_bool(0.7) => {
            spec.insert("trafficMirrorFilterRef".into(), json!({ "name": name }));
        }
        _ => {
            spec.insert("trafficMirrorFilterId".into(), json!(filters.base_id));
        }
    }
}

/// Sets `spec.name` to one of a few names that belong to `obj` alone (so cloud names never clash
/// between objects), or removes it (the object's name is then the cloud name).
fn set_name(rng: &mut StdRng, spec: &mut Spec, obj: &str) {
    if spec.contains_key("name") && rng.random_bool(0.3) {
        spec.remove("name");
    } else {
        spec.insert(
            "name".into(),
            json!(format!("{obj}.n{}", rng.random_range(0..6))),
        );
    }
}

fn set_description(rng: &mut StdRng, spec: &mut Spec) {
    if spec.contains_key("description") && rng.random_bool(0.25) {
        spec.remove("description");
    } else {
        let text = DESCRIPTIONS.choose(rng).unwrap_or(&"tap");
        spec.insert("description".into(), json!(text));
    }
}

/// The filter object a session spec references, if any.
pub fn referenced_filter(spec: &Spec) -> Option<&str> {
    spec.get("trafficMirrorFilterRef")?.get("name")?.as_str()
}

/// A new filter spec for object `obj`, with 0 to [`MAX_RULES`] rules.
pub fn new_filter(rng: &mut StdRng, obj: &str, pc: &str) -> Spec {
    let mut spec = Spec::new();
    spec.insert("providerConfigRef".into(), json!({ "name": pc }));
    let count = rng.random_range(0..=MAX_RULES - 1);
    let mut rules = Vec::new();
    for _ in 0..count {
        let (direction, priority) = free_slot(rng, &rules);
        rules.push(new_rule(rng, direction, priority));
    }
    spec.insert("rules".into(), json!(rules));
    if rng.random_bool(0.4) {
        set_name(rng, &mut spec, obj);
    }
    if rng.random_bool(0.5) {
        set_description(rng, &mut spec);
    }
    spec
}

/// Changes one kind of field of a filter spec; returns the kind.
pub fn edit_filter(rng: &mut StdRng, spec: &mut Spec, obj: &str) -> &'static str {
    let kind = *FILTER_EDITS.choose(rng).unwrap_or(&"description");
    let mut rules: Vec<Value> = spec
        .get("rules")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    match kind {
        "description" => set_description(rng, spec),
        "name" => set_name(rng, spec, obj),
        "addRule" | "removeRule" | "ruleField" | "rulePriority" if rules.is_empty() => {
            let (direction, priority) = free_slot(rng, &rules);
            rules.push(new_rule(rng, direction, priority));
        }
        "addRule" if rules.len() < MAX_RULES => {
            let (direction, priority) = free_slot(rng, &rules);
            rules.push(new_rule(rng, direction, priority));
        }
        "removeRule" | "addRule" => {
            rules.remove(rng.random_range(0..rules.len()));
        }
        "ruleField" => {
            let i = rng.random_range(0..rules.len());
            edit_rule_field(rng, &mut rules[i]);
        }
        "rulePriority" => {
            let i = rng.random_range(0..rules.len());
            let direction = rules[i]["direction"]
                .as_str()
                .unwrap_or("ingress")
                .to_string();
            rules[i]["priority"] = json!(free_priority(rng, &rules, &direction));
        }
        _ => {
            let count = rng.random_range(1..=MAX_RULES);
            rules.clear();
            for _ in 0..count {
                let (direction, priority) = free_slot(rng, &rules);
                rules.push(new_rule(rng, direction, priority));
            }
        }
    }
    spec.insert("rules".into(), json!(rules));
    kind
}

/// A direction and a priority not used by `rules` in that direction.
fn free_slot(rng: &mut StdRng, rules: &[Value]) -> (&'static str, i64) {
    let direction = if rng.random_bool(0.5) {
        "ingress"
    } else {
        "egress"
    };
    (direction, free_priority(rng, rules, direction))
}

fn free_priority(rng: &mut StdRng, rules: &[Value], direction: &str) -> i64 {
    loop {
        let p = rng.random_range(1..=40_i64);
        let used = rules
            .iter()
            .any(|r| r["direction"] == direction && r["priority"] == p);
        if !used {
            return p;
        }
    }
}

/// A rule with every optional field drawn (or left out); ports only for TCP and UDP, CIDRs of
/// the ethertype's family.
fn new_rule(rng: &mut StdRng, direction: &str, priority: i64) -> Value {
    let mut rule = json!({"direction": direction, "priority": priority});
    let v6 = rng.random_bool(0.2);
    rule["ethertype"] = json!(if v6 { "IPv6" } else { "IPv4" });
    for _ in 0..2 {
        edit_rule_field(rng, &mut rule);
    }
    rule
}

/// Changes one field of a rule: protocol, a CIDR, a port range, action or description.
fn edit_rule_field(rng: &mut StdRng, rule: &mut Value) {
    let v6 = rule["ethertype"] == "IPv6";
    let Some(r) = rule.as_object_mut() else {
        return;
    };
    match rng.random_range(0..5) {
        0 => {
            let icmp = if v6 { "ICMPV6" } else { "ICMP" };
            let protocol = *["TCP", "UDP", "ALL", icmp].choose(rng).unwrap_or(&"TCP");
            r.insert("protocol".into(), json!(protocol));
        }
        1 => {
            let key = if rng.random_bool(0.5) {
                "sourceCidrBlock"
            } else {
                "destinationCidrBlock"
            };
            let pool = if v6 { V6_CIDRS } else { V4_CIDRS };
            toggle(rng, r, key, pool);
        }
        2 => {
            r.insert("protocol".into(), json!("TCP"));
            let key = if rng.random_bool(0.5) {
                "sourcePortRange"
            } else {
                "destinationPortRange"
            };
            toggle(rng, r, key, PORTS);
        }
        3 => {
            let action = if r.get("action").and_then(Value::as_str) == Some("reject") {
                "accept"
            } else {
                "reject"
            };
            r.insert("action".into(), json!(action));
        }
        _ => toggle(rng, r, "description", DESCRIPTIONS),
    }
    let ports_allowed = matches!(
        r.get("protocol").and_then(Value::as_str),
        Some("TCP" | "UDP")
    );
    if !ports_allowed {
        r.remove("sourcePortRange");
        r.remove("destinationPortRange");
    }
}

/// Removes `key` now and then, else sets it to a value drawn from `pool`.
fn toggle(rng: &mut StdRng, r: &mut Map<String, Value>, key: &str, pool: &[&str]) {
    if r.contains_key(key) && rng.random_bool(0.3) {
        r.remove(key);
    } else if let Some(v) = pool.choose(rng) {
        r.insert(key.into(), json!(v));
    }
}
