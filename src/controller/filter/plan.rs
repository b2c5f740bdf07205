//! Step "plan" of the filter reconcile (no client required): a pure function from the desired filter
//! (the spec, with defaults applied) and the observed cloud filter and rules to the minimal list of
//! cloud calls.
//!
//! A filter's rules are a set keyed by (direction, priority), a [`RuleKey`]. For each key the plan
//! creates a missing rule (one POST with every field), updates a differing one (one PUT carrying
//! exactly the differing fields) and deletes rules the spec does not name, plus any out-of-band
//! duplicates of a key. Calls run create → update → delete, so at no moment are fewer rules mirrored
//! than in either the old or the new set. Defaults and spelling never cause a call: an absent
//! description equals `""`, `protocol` and `ethertype` compare case-insensitively (the API keeps the
//! case it was sent), CIDRs and port ranges are compared trimmed.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use crate::api::filter::{
    Direction, FilterObservation, FilterRuleObservation, FilterRuleSpec, TrafficMirrorFilterSpec,
    rule_key,
};
use crate::cloud::models::{
    CreateFilterRequest, CreateRuleRequest, TrafficMirrorFilter, TrafficMirrorFilterRule,
    UpdateFilterRequest, UpdateRuleRequest,
};

/// The identity of a rule within a filter: its direction and priority.
///
/// The API allows neither to change on an existing rule in a way that keeps its meaning (direction
/// is immutable, and the priority is what the spec uses to tell rules apart), so a rule at another
/// key is another rule: a priority change is a create at the new key and a delete at the old one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleKey {
    /// `ingress` or `egress`.
    pub direction: Direction,
    /// 1-65535, unique per direction.
    pub priority: i64,
}

impl RuleKey {
    /// The key of a cloud rule, or `None` when its direction is neither `ingress` nor `egress`
    /// (the API answers nothing else; such a rule cannot be matched to the spec and is ignored).
    pub fn of_observed(rule: &TrafficMirrorFilterRule) -> Option<RuleKey> {
        let direction = match rule.direction.trim().to_ascii_lowercase().as_str() {
            "ingress" => Direction::Ingress,
            "egress" => Direction::Egress,
            _ => return None,
        };
        Some(RuleKey {
            direction,
            priority: rule.priority,
        })
    }
}

impl fmt::Display for RuleKey {
    /// `ingress/10`: the same text as the keys of `status.ruleIds`, so conditions and status agree.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&rule_key(self.direction, self.priority))
    }
}

/// One rule as the spec wants it in the cloud, every default applied, in wire strings. The key
/// fields (direction, priority) live in the [`RuleKey`] it is stored under.
///
/// Comparing this (not the raw spec) with the cloud rule is what keeps defaults from ever showing up
/// as a difference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredRule {
    /// `TCP`, `UDP`, `ICMP`, `ICMPV6` or `ALL`.
    pub protocol: String,
    /// `IPv4` or `IPv6`.
    pub ethertype: String,
    /// Source CIDR, trimmed; `None` = any.
    pub source_cidr_block: Option<String>,
    /// Destination CIDR, trimmed; `None` = any.
    pub destination_cidr_block: Option<String>,
    /// Source ports (`N` or `N-M`), trimmed; `None` = any.
    pub source_port_range: Option<String>,
    /// Destination ports (`N` or `N-M`), trimmed; `None` = any.
    pub destination_port_range: Option<String>,
    /// `accept` or `reject`.
    pub action: String,
    /// Description; absent in the spec means the cloud default, `""`.
    pub description: String,
}

impl DesiredRule {
    /// Builds the key and desired rule from one rule of the spec.
    ///
    /// The rule is destructured without `..`, so a new rule field breaks the build here until it is
    /// compared (or declared not to be a cloud field).
    pub fn from_spec(rule: &FilterRuleSpec) -> (RuleKey, DesiredRule) {
        let FilterRuleSpec {
            direction,
            protocol,
            ethertype,
            source_cidr_block,
            destination_cidr_block,
            source_port_range,
            destination_port_range,
            action,
            priority,
            description,
        } = rule;
        let key = RuleKey {
            direction: *direction,
            priority: *priority,
        };
        let desired = DesiredRule {
            protocol: protocol.as_str().to_string(),
            ethertype: ethertype.as_str().to_string(),
            source_cidr_block: present(source_cidr_block).map(str::to_string),
            destination_cidr_block: present(destination_cidr_block).map(str::to_string),
            source_port_range: present(source_port_range).map(str::to_string),
            destination_port_range: present(destination_port_range).map(str::to_string),
            action: action.as_str().to_string(),
            description: description.clone().unwrap_or_default(),
        };
        (key, desired)
    }

    /// The create request: one POST carrying every field, so a new rule needs no follow-up PUT.
    pub fn create_request(&self, filter_id: &str, key: RuleKey) -> CreateRuleRequest {
        CreateRuleRequest {
            traffic_mirror_filter_id: filter_id.to_string(),
            direction: key.direction.as_str().to_string(),
            protocol: Some(self.protocol.clone()),
            ethertype: Some(self.ethertype.clone()),
            source_cidr_block: self.source_cidr_block.clone(),
            destination_cidr_block: self.destination_cidr_block.clone(),
            source_port_range: self.source_port_range.clone(),
            destination_port_range: self.destination_port_range.clone(),
            action: Some(self.action.clone()),
            priority: Some(key.priority),
            description: Some(self.description.clone()),
        }
    }
}

/// The filter as the spec wants it in the cloud: name, description and the rule set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredFilter {
    /// Cloud-side name (`spec.name`, else `metadata.name`).
    pub name: String,
    /// Description; absent in the spec means `""`.
    pub description: String,
    /// The rules, one per key.
    pub rules: BTreeMap<RuleKey, DesiredRule>,
    /// Where each key's rule is in `spec.rules` (its index), so messages name spec paths
    /// (`spec.rules[3]`); not a cloud field.
    pub spec_index: BTreeMap<RuleKey, usize>,
}

impl DesiredFilter {
    /// Builds the desired filter from a spec; `default_name` is `metadata.name`.
    ///
    /// The spec is destructured without `..`, so a new spec field breaks the build here until it is
    /// compared or declared not to be a cloud field. Admission rejects two rules with one key; should
    /// one get through anyway, the first in spec order wins.
    pub fn from_spec(spec: &TrafficMirrorFilterSpec, default_name: &str) -> Self {
        let TrafficMirrorFilterSpec {
            name,
            description,
            rules,
            provider_config_ref: _, // which cloud account, not a cloud field
            deletion_policy: _,     // operator behaviour, not a cloud field
            management_policy: _,   // operator behaviour, not a cloud field
            filter_id: _,           // identity, not a cloud field
        } = spec;
        let mut desired_rules = BTreeMap::new();
        let mut spec_index = BTreeMap::new();
        for (i, rule) in rules.iter().enumerate() {
            let (key, desired) = DesiredRule::from_spec(rule);
            desired_rules.entry(key).or_insert(desired);
            spec_index.entry(key).or_insert(i);
        }
        DesiredFilter {
            name: name
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| default_name.to_string()),
            description: description.clone().unwrap_or_default(),
            rules: desired_rules,
            spec_index,
        }
    }

    /// The filter create request (name and description; rules are created one by one after it).
    pub fn create_request(&self) -> CreateFilterRequest {
        CreateFilterRequest {
            name: self.name.clone(),
            description: Some(self.description.clone()),
        }
    }
}

/// The filter PUT: only the differing name and/or description, or `None` when both match.
pub fn filter_update(
    desired: &DesiredFilter,
    observed: &TrafficMirrorFilter,
) -> Option<UpdateFilterRequest> {
    let u = UpdateFilterRequest {
        name: (desired.name != observed.name).then(|| desired.name.clone()),
        description: (desired.description != observed.description)
            .then(|| desired.description.clone()),
    };
    (u != UpdateFilterRequest::default()).then_some(u)
}

/// The rule calls that turn the observed rules into the desired set. Executed in the order of
/// [`RulePlan::calls`]: every create, then every update, then every delete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RulePlan {
    /// Rules to create (keys with no cloud rule), in key order.
    pub create: Vec<(RuleKey, CreateRuleRequest)>,
    /// One PUT per differing rule: key, rule id, exactly the differing fields; in key order.
    pub update: Vec<(RuleKey, String, UpdateRuleRequest)>,
    /// Rules to delete (keys not in the spec, and duplicates of a key): key and rule id, sorted.
    pub delete: Vec<(RuleKey, String)>,
}

/// One cloud call of a [`RulePlan`], borrowed from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleCall<'a> {
    /// POST a rule.
    Create(RuleKey, &'a CreateRuleRequest),
    /// PUT the given rule id.
    Update(RuleKey, &'a str, &'a UpdateRuleRequest),
    /// DELETE the given rule id.
    Delete(RuleKey, &'a str),
}

impl RulePlan {
    /// True when the cloud rules already match the spec.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }

    /// The calls in execution order (create → update → delete), so the executor and the tests walk
    /// one sequence and no moment has fewer rules mirrored than the old or the new set.
    pub fn calls(&self) -> Vec<RuleCall<'_>> {
        let creates = self.create.iter().map(|(k, r)| RuleCall::Create(*k, r));
        let updates = self
            .update
            .iter()
            .map(|(k, id, u)| RuleCall::Update(*k, id.as_str(), u));
        let deletes = self
            .delete
            .iter()
            .map(|(k, id)| RuleCall::Delete(*k, id.as_str()));
        creates.chain(updates).chain(deletes).collect()
    }
}

/// Decides the rule calls for the filter `filter_id` (used in create requests).
///
/// Observed rules at a key the spec does not name are deleted. When the cloud holds several rules
/// at one desired key (out-of-band duplicates), the one needing the fewest changed fields is kept
/// (ties: oldest `created_at`, then smallest id) and the others are deleted.
pub fn plan_rules(
    filter_id: &str,
    desired: &DesiredFilter,
    observed: &[TrafficMirrorFilterRule],
) -> RulePlan {
    let mut by_key = group_by_key(observed);
    let mut plan = RulePlan::default();
    for (key, want) in &desired.rules {
        let Some(rules) = by_key.remove(key) else {
            plan.create
                .push((*key, want.create_request(filter_id, *key)));
            continue;
        };
        let (keep, extra) = choose_keeper(want, rules);
        if let Some(u) = rule_update(want, keep) {
            plan.update.push((*key, keep.id.clone(), u));
        }
        plan.delete
            .extend(extra.into_iter().map(|r| (*key, r.id.clone())));
    }
    for (key, rules) in by_key {
        plan.delete
            .extend(rules.into_iter().map(|r| (key, r.id.clone())));
    }
    plan.delete.sort();
    plan
}

/// Observed rules grouped by key, each group sorted oldest first (`created_at`, then id); rules
/// without a recognisable direction are left out.
fn group_by_key(
    observed: &[TrafficMirrorFilterRule],
) -> BTreeMap<RuleKey, Vec<&TrafficMirrorFilterRule>> {
    let mut by_key: BTreeMap<RuleKey, Vec<&TrafficMirrorFilterRule>> = BTreeMap::new();
    for rule in observed {
        if let Some(key) = RuleKey::of_observed(rule) {
            by_key.entry(key).or_default().push(rule);
        }
    }
    for rules in by_key.values_mut() {
        rules.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
    }
    by_key
}

/// Splits the rules of one key (non-empty, sorted oldest first) into the one to keep (fewest
/// differing fields; the sort makes ties go to the oldest) and the duplicates to delete.
fn choose_keeper<'a>(
    want: &DesiredRule,
    rules: Vec<&'a TrafficMirrorFilterRule>,
) -> (
    &'a TrafficMirrorFilterRule,
    Vec<&'a TrafficMirrorFilterRule>,
) {
    let best = rules
        .iter()
        .enumerate()
        .min_by_key(|(i, r)| (differing_rule_fields(want, r).len(), *i))
        .map_or(0, |(i, _)| i);
    let mut rest = rules;
    let keep = rest.remove(best);
    (keep, rest)
}

/// The PUT for one rule at its key: exactly the differing fields, or `None` when it matches.
///
/// A CIDR or port range the spec leaves out but the cloud has set is sent as `""`, the API's way to
/// clear a field (an absent field means "unchanged"). The priority is part of the key, so it is
/// never sent.
pub fn rule_update(
    desired: &DesiredRule,
    observed: &TrafficMirrorFilterRule,
) -> Option<UpdateRuleRequest> {
    let DesiredRule {
        protocol,
        ethertype,
        source_cidr_block,
        destination_cidr_block,
        source_port_range,
        destination_port_range,
        action,
        description,
    } = desired;
    let o = observed;
    let u = UpdateRuleRequest {
        protocol: (!same_ci(protocol, &o.protocol)).then(|| protocol.clone()),
        ethertype: (!same_ci(ethertype, &o.ethertype)).then(|| ethertype.clone()),
        source_cidr_block: optional_change(source_cidr_block, &o.source_cidr_block, same_cidr),
        destination_cidr_block: optional_change(
            destination_cidr_block,
            &o.destination_cidr_block,
            same_cidr,
        ),
        source_port_range: optional_change(source_port_range, &o.source_port_range, same_text),
        destination_port_range: optional_change(
            destination_port_range,
            &o.destination_port_range,
            same_text,
        ),
        action: (action != &o.action).then(|| action.clone()),
        priority: None,
        description: (description != &o.description).then(|| description.clone()),
    };
    (u != UpdateRuleRequest::default()).then_some(u)
}

/// The wire names of the fields of one rule that differ from the spec (empty when it matches);
/// used for the PUT and for people reading a condition.
pub fn differing_rule_fields(
    desired: &DesiredRule,
    observed: &TrafficMirrorFilterRule,
) -> Vec<&'static str> {
    rule_update(desired, observed)
        .map(|u| update_rule_field_names(&u))
        .unwrap_or_default()
}

/// The wire names of the fields a rule PUT carries, in wire order.
pub fn update_rule_field_names(u: &UpdateRuleRequest) -> Vec<&'static str> {
    let UpdateRuleRequest {
        protocol,
        ethertype,
        source_cidr_block,
        destination_cidr_block,
        source_port_range,
        destination_port_range,
        action,
        priority,
        description,
    } = u;
    [
        (protocol.is_some(), "protocol"),
        (ethertype.is_some(), "ethertype"),
        (source_cidr_block.is_some(), "source_cidr_block"),
        (destination_cidr_block.is_some(), "destination_cidr_block"),
        (source_port_range.is_some(), "source_port_range"),
        (destination_port_range.is_some(), "destination_port_range"),
        (action.is_some(), "action"),
        (priority.is_some(), "priority"),
        (description.is_some(), "description"),
    ]
    .into_iter()
    .filter_map(|(sent, name)| sent.then_some(name))
    .collect()
}

/// The wire names of the fields a filter PUT carries.
pub fn update_filter_field_names(u: &UpdateFilterRequest) -> Vec<&'static str> {
    let UpdateFilterRequest { name, description } = u;
    [
        (name.is_some(), "name"),
        (description.is_some(), "description"),
    ]
    .into_iter()
    .filter_map(|(sent, field)| sent.then_some(field))
    .collect()
}

/// The fields a filter PUT changes, by spec path, with the cloud's value before and the spec's.
pub fn filter_field_changes(
    u: &UpdateFilterRequest,
    observed: &TrafficMirrorFilter,
) -> Vec<crate::controller::events::FieldChange> {
    let UpdateFilterRequest { name, description } = u;
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    [
        ("spec.name", name, &observed.name),
        ("spec.description", description, &observed.description),
    ]
    .into_iter()
    .filter_map(|(path, sent, had)| {
        sent.as_deref()
            .map(|now| crate::controller::events::FieldChange {
                path,
                was: quote(had),
                now: quote(now),
            })
    })
    .collect()
}

/// The spec name (`sourcePortRange`) of a rule field by its wire name, for messages.
pub fn rule_spec_field(wire: &str) -> &'static str {
    match wire {
        "protocol" => "protocol",
        "ethertype" => "ethertype",
        "source_cidr_block" => "sourceCidrBlock",
        "destination_cidr_block" => "destinationCidrBlock",
        "source_port_range" => "sourcePortRange",
        "destination_port_range" => "destinationPortRange",
        "action" => "action",
        "priority" => "priority",
        "description" => "description",
        _ => "rule",
    }
}

/// An optional string that is set: trimmed, and `None` when absent or blank.
fn present(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The value to PUT for an optional field: the desired value when it differs, `""` to clear a value
/// the spec leaves out, `None` when both sides agree.
fn optional_change(
    want: &Option<String>,
    have: &Option<String>,
    same: fn(&str, &str) -> bool,
) -> Option<String> {
    match (present(want), present(have)) {
        (None, None) => None,
        (Some(w), Some(h)) if same(w, h) => None,
        (Some(w), _) => Some(w.to_string()),
        (None, Some(_)) => Some(String::new()),
    }
}

/// Case-insensitive, trimmed equality (`protocol`, `ethertype`).
fn same_ci(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// Trimmed equality (port ranges).
fn same_text(a: &str, b: &str) -> bool {
    a.trim() == b.trim()
}

/// CIDR equality: trimmed text, or the same address and prefix length when both parse (so an IPv6
/// CIDR answered in another spelling, e.g. upper case, is no difference).
fn same_cidr(a: &str, b: &str) -> bool {
    fn parse(s: &str) -> Option<(IpAddr, u8)> {
        let (ip, len) = s.trim().split_once('/')?;
        Some((ip.parse().ok()?, len.parse().ok()?))
    }
    same_text(a, b) || matches!((parse(a), parse(b)), (Some(x), Some(y)) if x == y)
}

/// What differs between the spec and the cloud, for people: the `Drifted` condition message of an
/// ObserveOnly filter, and events, in the spec's terms. Items look like `spec.name`,
/// `spec.rules[0] (rule ingress/100): protocol, sourcePortRange`,
/// `spec.rules[1] (rule egress/5): missing`, `rule ingress/7: not in spec`,
/// `spec.rules[2] (rule ingress/8): 1 duplicate`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Drift {
    /// One item per differing filter field or rule key, filter fields first, rules in key order.
    pub items: Vec<String>,
}

impl Drift {
    /// Compares the desired filter with the observed filter and its rules (a pure function, so an
    /// ObserveOnly filter reports exactly what a Full one would change).
    pub fn between(
        desired: &DesiredFilter,
        observed: &TrafficMirrorFilter,
        observed_rules: &[TrafficMirrorFilterRule],
    ) -> Drift {
        let mut items: Vec<String> = filter_update(desired, observed)
            .map(|u| update_filter_field_names(&u))
            .unwrap_or_default()
            .into_iter()
            .map(|f| format!("spec.{f}"))
            .collect();
        let plan = plan_rules(&observed.id, desired, observed_rules);
        let mut per_key: BTreeMap<RuleKey, Vec<String>> = BTreeMap::new();
        for (key, _) in &plan.create {
            per_key.entry(*key).or_default().push("missing".into());
        }
        for (key, _, u) in &plan.update {
            let fields: Vec<&str> = update_rule_field_names(u)
                .into_iter()
                .map(rule_spec_field)
                .collect();
            let fields = fields.join(", ");
            per_key.entry(*key).or_default().push(fields);
        }
        let mut deleted: BTreeMap<RuleKey, usize> = BTreeMap::new();
        for (key, _) in &plan.delete {
            *deleted.entry(*key).or_default() += 1;
        }
        for (key, n) in deleted {
            per_key
                .entry(key)
                .or_default()
                .push(deleted_text(desired.rules.contains_key(&key), n));
        }
        items.extend(
            per_key
                .into_iter()
                .map(|(key, parts)| format!("{}: {}", rule_label(desired, key), parts.join(", "))),
        );
        Drift { items }
    }

    /// True when the cloud matches the spec.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl fmt::Display for Drift {
    /// The items joined by `; `, ready for a condition message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.items.join("; "))
    }
}

/// How a rule is named in a [`Drift`]: by its spec path when the spec has it (`spec.rules[3] (rule
/// ingress/100)`), else by its key (`rule ingress/7`).
fn rule_label(desired: &DesiredFilter, key: RuleKey) -> String {
    match desired.spec_index.get(&key) {
        Some(i) => format!("spec.rules[{i}] (rule {key})"),
        None => format!("rule {key}"),
    }
}

/// How the deleted rules of one key read in a [`Drift`].
fn deleted_text(desired_key: bool, n: usize) -> String {
    match (desired_key, n) {
        (true, 1) => "1 duplicate".to_string(),
        (true, n) => format!("{n} duplicates"),
        (false, 1) => "not in spec".to_string(),
        (false, n) => format!("not in spec ({n} rules)"),
    }
}

/// What the cloud holds after a create, per the API: the sent fields, documented defaults for the
/// rest, `ethertype` in canonical case, `protocol` in the case sent, CIDRs and ports trimmed.
/// A model of the cloud used by [`apply_rule_plan`] and the decision tests; the reconciler records
/// the cloud's own answers.
pub fn created_rule(req: &CreateRuleRequest, id: &str) -> TrafficMirrorFilterRule {
    let CreateRuleRequest {
        traffic_mirror_filter_id,
        direction,
        protocol,
        ethertype,
        source_cidr_block,
        destination_cidr_block,
        source_port_range,
        destination_port_range,
        action,
        priority,
        description,
    } = req;
    TrafficMirrorFilterRule {
        id: id.to_string(),
        traffic_mirror_filter_id: traffic_mirror_filter_id.clone(),
        direction: direction.clone(),
        protocol: protocol.clone().unwrap_or_else(|| "ALL".into()),
        ethertype: canonical_ethertype(ethertype.as_deref().unwrap_or("IPv4")),
        source_cidr_block: present(source_cidr_block).map(str::to_string),
        destination_cidr_block: present(destination_cidr_block).map(str::to_string),
        source_port_range: present(source_port_range).map(str::to_string),
        destination_port_range: present(destination_port_range).map(str::to_string),
        action: action.clone().unwrap_or_else(|| "accept".into()),
        priority: priority.unwrap_or_default(),
        description: description.clone().unwrap_or_default(),
        ..Default::default()
    }
}

/// Applies a PUT to a rule the way the cloud does: only sent fields change, `""` clears a CIDR or
/// port range, the rest as in [`created_rule`].
pub fn updated_rule(
    rule: &TrafficMirrorFilterRule,
    u: &UpdateRuleRequest,
) -> TrafficMirrorFilterRule {
    let UpdateRuleRequest {
        protocol,
        ethertype,
        source_cidr_block,
        destination_cidr_block,
        source_port_range,
        destination_port_range,
        action,
        priority,
        description,
    } = u;
    let mut r = rule.clone();
    let set_optional = |field: &mut Option<String>, sent: &Option<String>| {
        if sent.is_some() {
            *field = present(sent).map(str::to_string);
        }
    };
    set_optional(&mut r.source_cidr_block, source_cidr_block);
    set_optional(&mut r.destination_cidr_block, destination_cidr_block);
    set_optional(&mut r.source_port_range, source_port_range);
    set_optional(&mut r.destination_port_range, destination_port_range);
    if let Some(v) = protocol {
        r.protocol = v.clone();
    }
    if let Some(v) = ethertype {
        r.ethertype = canonical_ethertype(v);
    }
    if let Some(v) = action {
        r.action = v.clone();
    }
    if let Some(v) = priority {
        r.priority = *v;
    }
    if let Some(v) = description {
        r.description = v.clone();
    }
    r
}

/// `IPv4` / `IPv6` whatever the case sent (the API normalises it); anything else unchanged.
fn canonical_ethertype(v: &str) -> String {
    match v.trim().to_ascii_lowercase().as_str() {
        "ipv4" => "IPv4".to_string(),
        "ipv6" => "IPv6".to_string(),
        _ => v.to_string(),
    }
}

/// Applies one call of a plan to a rule list the way the cloud does; `new_id` names a created rule.
pub fn apply_rule_call(
    rules: &mut Vec<TrafficMirrorFilterRule>,
    call: &RuleCall<'_>,
    new_id: &mut impl FnMut(&RuleKey) -> String,
) {
    match call {
        RuleCall::Create(key, req) => rules.push(created_rule(req, &new_id(key))),
        RuleCall::Update(_, id, u) => {
            for r in rules.iter_mut().filter(|r| r.id == *id) {
                *r = updated_rule(r, u);
            }
        }
        RuleCall::Delete(_, id) => rules.retain(|r| r.id != *id),
    }
}

/// Applies a whole plan, in execution order, to the observed rules the way the cloud does. The
/// property tests use it to check that executing a plan yields the desired set. The reconciler does
/// not use it: after each call it records the cloud's own answer (`execute::rule_call`).
pub fn apply_rule_plan(
    observed: &[TrafficMirrorFilterRule],
    plan: &RulePlan,
    mut new_id: impl FnMut(&RuleKey) -> String,
) -> Vec<TrafficMirrorFilterRule> {
    let mut rules = observed.to_vec();
    for call in plan.calls() {
        apply_rule_call(&mut rules, &call, &mut new_id);
    }
    rules
}

/// All rules of a cloud filter (ingress, then egress). A rule answered without a direction takes
/// the direction of the list it came in, so it can still be keyed.
pub fn observed_rules(filter: &TrafficMirrorFilter) -> Vec<TrafficMirrorFilterRule> {
    let tagged = |rules: &[TrafficMirrorFilterRule], direction: Direction| {
        rules
            .iter()
            .map(|r| {
                let mut r = r.clone();
                if r.direction.trim().is_empty() {
                    r.direction = direction.as_str().to_string();
                }
                r
            })
            .collect::<Vec<_>>()
    };
    let mut rules = tagged(&filter.ingress_rules, Direction::Ingress);
    rules.extend(tagged(&filter.egress_rules, Direction::Egress));
    rules
}

/// The filter with its rule lists replaced by `rules` (split by direction), e.g. the cached view
/// after [`apply_rule_plan`]. Rules without a recognisable direction are dropped.
pub fn with_rules(
    filter: &TrafficMirrorFilter,
    rules: &[TrafficMirrorFilterRule],
) -> TrafficMirrorFilter {
    let of = |direction: Direction| {
        rules
            .iter()
            .filter(|r| RuleKey::of_observed(r).is_some_and(|k| k.direction == direction))
            .cloned()
            .collect()
    };
    TrafficMirrorFilter {
        ingress_rules: of(Direction::Ingress),
        egress_rules: of(Direction::Egress),
        ..filter.clone()
    }
}

/// `status.ruleIds`: key text (`ingress/10`) → cloud rule id. With out-of-band duplicates at a key
/// (only possible while ObserveOnly, or before the next reconcile) the oldest rule is named.
pub fn rule_ids(observed: &[TrafficMirrorFilterRule]) -> BTreeMap<String, String> {
    group_by_key(observed)
        .into_iter()
        .filter_map(|(key, rules)| rules.first().map(|r| (key.to_string(), r.id.clone())))
        .collect()
}

/// `status.atProvider` for a cloud filter. Each rule list is sorted by (priority, created_at, id)
/// so the status does not change when the cloud answers the same rules in another order.
pub fn filter_observation(filter: &TrafficMirrorFilter) -> FilterObservation {
    let TrafficMirrorFilter {
        id,
        project_id,
        name,
        description,
        ingress_rules,
        egress_rules,
        source_type,
        created_at,
        updated_at,
    } = filter;
    let sorted = |rules: &[TrafficMirrorFilterRule]| {
        let mut out: Vec<FilterRuleObservation> = rules.iter().map(rule_observation).collect();
        out.sort_by(|a, b| {
            (a.priority, &a.created_at, &a.id).cmp(&(b.priority, &b.created_at, &b.id))
        });
        out
    };
    FilterObservation {
        id: id.clone(),
        project_id: project_id.clone(),
        name: name.clone(),
        description: description.clone(),
        ingress_rules: sorted(ingress_rules),
        egress_rules: sorted(egress_rules),
        source_type: source_type.clone(),
        created_at: created_at.clone(),
        updated_at: updated_at.clone(),
    }
}

/// One rule of `status.atProvider`, every field as the cloud answered it.
pub fn rule_observation(rule: &TrafficMirrorFilterRule) -> FilterRuleObservation {
    let TrafficMirrorFilterRule {
        id,
        project_id,
        description,
        traffic_mirror_filter_id,
        direction,
        source_cidr_block,
        destination_cidr_block,
        source_port_range,
        destination_port_range,
        ethertype,
        protocol,
        action,
        priority,
        created_at,
        updated_at,
    } = rule;
    FilterRuleObservation {
        id: id.clone(),
        project_id: project_id.clone(),
        description: description.clone(),
        traffic_mirror_filter_id: traffic_mirror_filter_id.clone(),
        direction: direction.clone(),
        source_cidr_block: source_cidr_block.clone(),
        destination_cidr_block: destination_cidr_block.clone(),
        source_port_range: source_port_range.clone(),
        destination_port_range: destination_port_range.clone(),
        ethertype: ethertype.clone(),
        protocol: protocol.clone(),
        action: action.clone(),
        priority: *priority,
        created_at: created_at.clone(),
        updated_at: updated_at.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    const DAY1: &str = "2024-01-01T00:00:00Z";
    const DAY2: &str = "2024-01-02T00:00:00Z";

    fn key(direction: Direction, priority: i64) -> RuleKey {
        RuleKey {
            direction,
            priority,
        }
    }

    fn spec(v: serde_json::Value) -> TrafficMirrorFilterSpec {
        serde_json::from_value(v).expect("valid spec")
    }

    /// A desired filter `web` with the given spec rules (JSON, defaults filled by serde).
    fn desired(rules: serde_json::Value) -> DesiredFilter {
        DesiredFilter::from_spec(&spec(json!({ "rules": rules })), "web")
    }

    /// A cloud rule with the API's defaults, created on DAY1.
    fn cloud_rule(id: &str, direction: &str, priority: i64) -> TrafficMirrorFilterRule {
        TrafficMirrorFilterRule {
            id: id.into(),
            traffic_mirror_filter_id: "f-1".into(),
            direction: direction.into(),
            protocol: "ALL".into(),
            ethertype: "IPv4".into(),
            action: "accept".into(),
            priority,
            created_at: DAY1.into(),
            ..Default::default()
        }
    }

    fn keys_of(rules: &[TrafficMirrorFilterRule]) -> BTreeSet<RuleKey> {
        rules.iter().filter_map(RuleKey::of_observed).collect()
    }

    #[test]
    fn from_spec_applies_defaults_and_the_name_fallback() {
        let d = desired(json!([{"direction": "egress", "priority": 7,
            "sourceCidrBlock": " 10.0.0.0/24 "}]));
        assert_eq!(d.name, "web");
        assert_eq!(d.description, "");
        let rule = &d.rules[&key(Direction::Egress, 7)];
        assert_eq!(
            rule,
            &DesiredRule {
                protocol: "ALL".into(),
                ethertype: "IPv4".into(),
                source_cidr_block: Some("10.0.0.0/24".into()),
                destination_cidr_block: None,
                source_port_range: None,
                destination_port_range: None,
                action: "accept".into(),
                description: String::new(),
            }
        );
        let named = DesiredFilter::from_spec(
            &spec(json!({"name": "cloud-name", "description": "d"})),
            "web",
        );
        assert_eq!(
            (named.name.as_str(), named.description.as_str()),
            ("cloud-name", "d")
        );
        assert_eq!(key(Direction::Ingress, 100).to_string(), "ingress/100");
    }

    #[test]
    fn a_missing_rule_is_created_with_every_field() {
        let d = desired(
            json!([{"direction": "ingress", "priority": 10, "protocol": "TCP",
            "destinationPortRange": "80-443", "action": "reject", "description": "web"}]),
        );
        let plan = plan_rules("f-1", &d, &[]);
        let want = CreateRuleRequest {
            traffic_mirror_filter_id: "f-1".into(),
            direction: "ingress".into(),
            protocol: Some("TCP".into()),
            ethertype: Some("IPv4".into()),
            destination_port_range: Some("80-443".into()),
            action: Some("reject".into()),
            priority: Some(10),
            description: Some("web".into()),
            ..Default::default()
        };
        assert_eq!(plan.create, vec![(key(Direction::Ingress, 10), want)]);
        assert!(plan.update.is_empty() && plan.delete.is_empty());
    }

    #[test]
    fn a_rule_not_in_the_spec_is_deleted() {
        let plan = plan_rules(
            "f-1",
            &desired(json!([])),
            &[cloud_rule("r-1", "egress", 3)],
        );
        assert_eq!(
            plan.delete,
            vec![(key(Direction::Egress, 3), "r-1".to_string())]
        );
        assert!(plan.create.is_empty() && plan.update.is_empty());
    }

    /// One table row: a spec rule `ingress/100` with `spec_fields`, a cloud rule at that key with
    /// the API's defaults overwritten by `cloud_fields` (wire names), and the fields the one PUT must
    /// carry (comma-separated, empty for no PUT).
    fn check_difference(case: &str, spec_fields: Value, cloud_fields: Value, want: &str) {
        let mut rule = json!({"direction": "ingress", "priority": 100});
        let mut cloud = serde_json::to_value(cloud_rule("r-1", "ingress", 100)).expect("json");
        for (target, fields) in [(&mut rule, spec_fields), (&mut cloud, cloud_fields)] {
            if let (Some(t), Value::Object(f)) = (target.as_object_mut(), fields) {
                t.extend(f);
            }
        }
        let d = desired(json!([rule]));
        let observed: TrafficMirrorFilterRule = serde_json::from_value(cloud).expect("rule");
        let plan = plan_rules("f-1", &d, std::slice::from_ref(&observed));
        assert!(plan.create.is_empty() && plan.delete.is_empty(), "{case}");
        assert!(plan.update.len() <= 1, "{case}: one PUT per rule");
        let want: Vec<&str> = want.split(',').filter(|f| !f.is_empty()).collect();
        let got: Vec<&str> = plan
            .update
            .iter()
            .flat_map(|(_, _, u)| update_rule_field_names(u))
            .collect();
        assert_eq!(got, want, "{case}");
        let rule = &d.rules[&key(Direction::Ingress, 100)];
        assert_eq!(differing_rule_fields(rule, &observed), want, "{case}");
    }

    #[test]
    fn protocol_and_ethertype_differences() {
        for (case, spec_fields, cloud_fields, want) in [
            ("equal", json!({}), json!({}), ""),
            (
                "protocol changed",
                json!({"protocol": "TCP"}),
                json!({"protocol": "UDP"}),
                "protocol",
            ),
            (
                "protocol case only",
                json!({"protocol": "TCP"}),
                json!({"protocol": "tcp"}),
                "",
            ),
            (
                "protocol ALL as all",
                json!({}),
                json!({"protocol": "all"}),
                "",
            ),
            (
                "ethertype case only",
                json!({}),
                json!({"ethertype": "ipv4"}),
                "",
            ),
            (
                "ethertype changed",
                json!({"ethertype": "IPv6"}),
                json!({}),
                "ethertype",
            ),
            (
                "two fields",
                json!({"protocol": "TCP", "sourcePortRange": "22"}),
                json!({}),
                "protocol,source_port_range",
            ),
        ] {
            check_difference(case, spec_fields, cloud_fields, want);
        }
    }

    #[test]
    fn cidr_differences() {
        let v6 = json!({"ethertype": "IPv6", "destinationCidrBlock": "2001:db8::/64"});
        for (case, spec_fields, cloud_fields, want) in [
            (
                "cidr added",
                json!({"sourceCidrBlock": "10.0.0.0/24"}),
                json!({}),
                "source_cidr_block",
            ),
            (
                "cidr cleared",
                json!({}),
                json!({"source_cidr_block": "10.0.0.0/8"}),
                "source_cidr_block",
            ),
            (
                "blank cloud cidr is unset",
                json!({}),
                json!({"source_cidr_block": " "}),
                "",
            ),
            (
                "cidr whitespace",
                json!({"destinationCidrBlock": "10.0.0.0/24"}),
                json!({"destination_cidr_block": " 10.0.0.0/24 "}),
                "",
            ),
            (
                "ipv6 spelling",
                v6.clone(),
                json!({"ethertype": "IPv6", "destination_cidr_block": "2001:DB8:0::/64"}),
                "",
            ),
            (
                "cidr changed",
                v6,
                json!({"ethertype": "IPv6", "destination_cidr_block": "2001:db8:1::/64"}),
                "destination_cidr_block",
            ),
        ] {
            check_difference(case, spec_fields, cloud_fields, want);
        }
    }

    #[test]
    fn port_action_and_description_differences() {
        for (case, spec_fields, cloud_fields, want) in [
            (
                "port set",
                json!({"sourcePortRange": "80"}),
                json!({}),
                "source_port_range",
            ),
            (
                "port changed",
                json!({"sourcePortRange": "80"}),
                json!({"source_port_range": "81"}),
                "source_port_range",
            ),
            (
                "port cleared",
                json!({}),
                json!({"destination_port_range": "1-65535"}),
                "destination_port_range",
            ),
            (
                "action changed",
                json!({"action": "reject"}),
                json!({}),
                "action",
            ),
            (
                "description absent = empty",
                json!({}),
                json!({"description": ""}),
                "",
            ),
            (
                "description cleared",
                json!({}),
                json!({"description": "old"}),
                "description",
            ),
            (
                "description set",
                json!({"description": "d"}),
                json!({}),
                "description",
            ),
        ] {
            check_difference(case, spec_fields, cloud_fields, want);
        }
    }

    #[test]
    fn clearing_sends_the_empty_string_and_only_that_field() {
        let d = desired(json!([{"direction": "ingress", "priority": 1}]));
        let mut observed = cloud_rule("r-1", "ingress", 1);
        observed.source_cidr_block = Some("10.0.0.0/8".into());
        let plan = plan_rules("f-1", &d, &[observed.clone()]);
        let (_, id, u) = &plan.update[0];
        assert_eq!(id, "r-1");
        assert_eq!(
            serde_json::to_value(u).expect("json"),
            json!({"source_cidr_block": ""})
        );
        assert_eq!(updated_rule(&observed, u).source_cidr_block, None);
    }

    #[test]
    fn a_priority_change_is_a_create_and_a_delete() {
        let d = desired(json!([{"direction": "ingress", "priority": 20}]));
        let plan = plan_rules("f-1", &d, &[cloud_rule("r-1", "ingress", 10)]);
        assert_eq!(plan.create.len(), 1);
        assert_eq!(plan.create[0].0, key(Direction::Ingress, 20));
        assert_eq!(plan.create[0].1.priority, Some(20));
        assert!(plan.update.is_empty());
        assert_eq!(
            plan.delete,
            vec![(key(Direction::Ingress, 10), "r-1".to_string())]
        );
        // The same priority in the other direction is another rule too.
        let d = desired(json!([{"direction": "egress", "priority": 10}]));
        let plan = plan_rules("f-1", &d, &[cloud_rule("r-1", "ingress", 10)]);
        assert_eq!((plan.create.len(), plan.delete.len()), (1, 1));
    }

    #[test]
    fn duplicates_keep_the_closest_rule_then_the_oldest() {
        let d = desired(json!([{"direction": "ingress", "priority": 5}]));
        let mut newer_match = cloud_rule("r-a", "ingress", 5);
        newer_match.created_at = DAY2.into();
        let mut older_differs = cloud_rule("r-b", "ingress", 5);
        older_differs.protocol = "TCP".into();
        let older_match = cloud_rule("r-c", "ingress", 5);
        let observed = [newer_match.clone(), older_differs.clone(), older_match];
        let plan = plan_rules("f-1", &d, &observed);
        let k = key(Direction::Ingress, 5);
        assert!(plan.create.is_empty() && plan.update.is_empty());
        assert_eq!(
            plan.delete,
            vec![(k, "r-a".to_string()), (k, "r-b".to_string())]
        );

        // All differ equally: the oldest stays, same time: the smaller id; one PUT fixes it.
        let mut older_differs_too = cloud_rule("r-0", "ingress", 5);
        older_differs_too.protocol = "UDP".into();
        let plan = plan_rules("f-1", &d, &[older_differs, older_differs_too]);
        assert_eq!(plan.update.len(), 1);
        assert_eq!(plan.update[0].1, "r-0");
        assert_eq!(plan.delete, vec![(k, "r-b".to_string())]);
        // A rule needing fewer changes beats an older one.
        let mut old_two_off = cloud_rule("r-old", "ingress", 5);
        old_two_off.protocol = "UDP".into();
        old_two_off.action = "reject".into();
        let mut new_one_off = cloud_rule("r-new", "ingress", 5);
        new_one_off.created_at = DAY2.into();
        new_one_off.action = "reject".into();
        let plan = plan_rules("f-1", &d, &[old_two_off, new_one_off]);
        assert_eq!(plan.update[0].1, "r-new");
        assert_eq!(plan.delete, vec![(k, "r-old".to_string())]);
    }

    #[test]
    fn duplicates_at_a_key_not_in_the_spec_are_all_deleted() {
        let observed = [
            cloud_rule("r-2", "egress", 9),
            cloud_rule("r-1", "egress", 9),
        ];
        let plan = plan_rules("f-1", &desired(json!([])), &observed);
        let k = key(Direction::Egress, 9);
        assert_eq!(
            plan.delete,
            vec![(k, "r-1".to_string()), (k, "r-2".to_string())]
        );
    }

    #[test]
    fn calls_run_create_then_update_then_delete() {
        let d = desired(json!([
            {"direction": "ingress", "priority": 1},
            {"direction": "ingress", "priority": 2, "protocol": "TCP"}
        ]));
        let plan = plan_rules(
            "f-1",
            &d,
            &[
                cloud_rule("r-2", "ingress", 2),
                cloud_rule("r-3", "egress", 3),
            ],
        );
        let kinds: Vec<&str> = plan
            .calls()
            .iter()
            .map(|c| match c {
                RuleCall::Create(..) => "create",
                RuleCall::Update(..) => "update",
                RuleCall::Delete(..) => "delete",
            })
            .collect();
        assert_eq!(kinds, ["create", "update", "delete"]);
        assert!(!plan.is_empty());
        let after = apply_rule_plan(
            &[
                cloud_rule("r-2", "ingress", 2),
                cloud_rule("r-3", "egress", 3),
            ],
            &plan,
            |k| format!("new-{k}"),
        );
        assert!(plan_rules("f-1", &d, &after).is_empty());
    }

    #[test]
    fn filter_update_sends_only_the_differing_fields() {
        let d = desired(json!([]));
        let mut observed = TrafficMirrorFilter {
            id: "f-1".into(),
            name: "web".into(),
            ..Default::default()
        };
        assert_eq!(filter_update(&d, &observed), None);
        observed.description = "old".into();
        assert_eq!(
            filter_update(&d, &observed),
            Some(UpdateFilterRequest {
                name: None,
                description: Some(String::new())
            })
        );
        observed.name = "other".into();
        let u = filter_update(&d, &observed).expect("a PUT");
        assert_eq!(update_filter_field_names(&u), ["name", "description"]);
        assert_eq!(d.create_request().name, "web");
    }

    #[test]
    fn drift_names_what_differs() {
        let d = desired(json!([
            {"direction": "ingress", "priority": 100, "protocol": "TCP", "sourcePortRange": "80"},
            {"direction": "egress", "priority": 5},
            {"direction": "ingress", "priority": 8}
        ]));
        let observed_filter = TrafficMirrorFilter {
            id: "f-1".into(),
            name: "old".into(),
            ..Default::default()
        };
        let mut rules = vec![
            cloud_rule("r-1", "ingress", 100),
            cloud_rule("r-7", "ingress", 7),
            cloud_rule("r-8", "ingress", 8),
            cloud_rule("r-9", "ingress", 8),
        ];
        rules[0].protocol = "udp".into();
        let drift = Drift::between(&d, &observed_filter, &rules);
        assert_eq!(
            drift.items,
            [
                "spec.name",
                "rule ingress/7: not in spec",
                "spec.rules[2] (rule ingress/8): 1 duplicate",
                "spec.rules[0] (rule ingress/100): protocol, sourcePortRange",
                "spec.rules[1] (rule egress/5): missing",
            ]
        );
        assert!(
            drift
                .to_string()
                .starts_with("spec.name; rule ingress/7: not in spec; ")
        );
        let in_sync = apply_rule_plan(&rules, &plan_rules("f-1", &d, &rules), |k| k.to_string());
        let renamed = TrafficMirrorFilter {
            name: "web".into(),
            ..observed_filter
        };
        assert!(Drift::between(&d, &renamed, &in_sync).is_empty());
    }

    #[test]
    fn the_cloud_view_after_calls() {
        let req = CreateRuleRequest {
            traffic_mirror_filter_id: "f-1".into(),
            direction: "egress".into(),
            protocol: Some("tcp".into()),
            ethertype: Some("ipv6".into()),
            source_cidr_block: Some(" 2001:db8::/64 ".into()),
            priority: Some(4),
            ..Default::default()
        };
        let r = created_rule(&req, "r-1");
        assert_eq!(
            (r.protocol.as_str(), r.ethertype.as_str()),
            ("tcp", "IPv6"),
            "protocol keeps its case"
        );
        assert_eq!(r.source_cidr_block.as_deref(), Some("2001:db8::/64"));
        assert_eq!(
            (r.action.as_str(), r.priority, r.id.as_str()),
            ("accept", 4, "r-1")
        );
        let u = UpdateRuleRequest {
            source_cidr_block: Some(String::new()),
            destination_port_range: Some("80".into()),
            ..Default::default()
        };
        let r2 = updated_rule(&r, &u);
        assert_eq!(r2.source_cidr_block, None);
        assert_eq!(r2.destination_port_range.as_deref(), Some("80"));
        assert_eq!(r2.protocol, "tcp", "fields not sent are unchanged");
    }

    #[test]
    fn status_helpers() {
        let mut dup = cloud_rule("r-0", "ingress", 10);
        dup.created_at = DAY2.into();
        let mut unknown = cloud_rule("r-x", "sideways", 1);
        unknown.direction = "sideways".into();
        let rules = [
            cloud_rule("r-2", "egress", 3),
            cloud_rule("r-1", "ingress", 10),
            dup,
            unknown,
        ];
        let ids = rule_ids(&rules);
        assert_eq!(
            ids.into_iter().collect::<Vec<_>>(),
            [
                ("egress/3".to_string(), "r-2".to_string()),
                ("ingress/10".to_string(), "r-1".to_string())
            ]
        );
        let filter = with_rules(
            &TrafficMirrorFilter {
                id: "f-1".into(),
                name: "web".into(),
                ..Default::default()
            },
            &rules,
        );
        assert_eq!(filter.ingress_rules.len(), 2);
        assert_eq!(filter.egress_rules.len(), 1);
        assert_eq!(observed_rules(&filter).len(), 3);
        let obs = filter_observation(&filter);
        assert_eq!((obs.id.as_str(), obs.name.as_str()), ("f-1", "web"));
        let ingress: Vec<&str> = obs.ingress_rules.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ingress, ["r-1", "r-0"], "sorted by priority, then oldest");
        let one = rule_observation(&rules[0]);
        assert_eq!(
            (one.direction.as_str(), one.priority, one.protocol.as_str()),
            ("egress", 3, "ALL")
        );
        // A rule listed without its direction takes the list's.
        let bare = TrafficMirrorFilter {
            egress_rules: vec![TrafficMirrorFilterRule {
                id: "r".into(),
                priority: 2,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            keys_of(&observed_rules(&bare)),
            [key(Direction::Egress, 2)].into()
        );
    }

    // ---- property tests

    fn arb_key() -> impl Strategy<Value = RuleKey> {
        (
            prop_oneof![Just(Direction::Ingress), Just(Direction::Egress)],
            1i64..5,
        )
            .prop_map(|(direction, priority)| RuleKey {
                direction,
                priority,
            })
    }

    fn arb_opt(values: &'static [&'static str]) -> impl Strategy<Value = Option<String>> {
        prop::option::of(prop::sample::select(values).prop_map(str::to_string))
    }

    const CIDRS: &[&str] = &["10.0.0.0/24", "192.168.0.0/16", "2001:db8::/64"];
    const CLOUD_CIDRS: &[&str] = &[
        "10.0.0.0/24",
        " 10.0.0.0/24",
        "192.168.0.0/16",
        "2001:DB8::/64",
        "",
    ];
    const PORTS: &[&str] = &["80", "80-443", "1-65535"];
    const CLOUD_PORTS: &[&str] = &["80", " 80 ", "80-443", ""];

    fn arb_desired_rule() -> impl Strategy<Value = DesiredRule> {
        (
            prop::sample::select(vec!["TCP", "UDP", "ALL", "ICMP"]),
            prop::sample::select(vec!["IPv4", "IPv6"]),
            arb_opt(CIDRS),
            arb_opt(CIDRS),
            arb_opt(PORTS),
            arb_opt(PORTS),
            prop::sample::select(vec!["accept", "reject"]),
            prop::sample::select(vec!["", "web"]),
        )
            .prop_map(|(p, e, sc, dc, sp, dp, a, desc)| DesiredRule {
                protocol: p.into(),
                ethertype: e.into(),
                source_cidr_block: sc,
                destination_cidr_block: dc,
                source_port_range: sp,
                destination_port_range: dp,
                action: a.into(),
                description: desc.into(),
            })
    }

    fn arb_desired() -> impl Strategy<Value = DesiredFilter> {
        prop::collection::btree_map(arb_key(), arb_desired_rule(), 0..6).prop_map(|rules| {
            DesiredFilter {
                name: "web".into(),
                description: String::new(),
                spec_index: rules.keys().enumerate().map(|(i, k)| (*k, i)).collect(),
                rules,
            }
        })
    }

    fn arb_cloud_rule() -> impl Strategy<Value = TrafficMirrorFilterRule> {
        (
            prop::sample::select(vec!["ingress", "egress", "Ingress"]),
            1i64..5,
            prop::sample::select(vec!["TCP", "tcp", "UDP", "ALL", "all", "Icmp"]),
            prop::sample::select(vec!["IPv4", "ipv4", "IPv6"]),
            arb_opt(CLOUD_CIDRS),
            arb_opt(CLOUD_CIDRS),
            arb_opt(CLOUD_PORTS),
            arb_opt(CLOUD_PORTS),
            prop::sample::select(vec!["accept", "reject"]),
            prop::sample::select(vec!["", "web", "old"]),
            prop::sample::select(vec![DAY1, DAY2]),
        )
            .prop_map(|(dir, prio, p, e, sc, dc, sp, dp, a, desc, at)| {
                TrafficMirrorFilterRule {
                    direction: dir.into(),
                    priority: prio,
                    protocol: p.into(),
                    ethertype: e.into(),
                    source_cidr_block: sc,
                    destination_cidr_block: dc,
                    source_port_range: sp,
                    destination_port_range: dp,
                    action: a.into(),
                    description: desc.into(),
                    created_at: at.into(),
                    traffic_mirror_filter_id: "f-1".into(),
                    ..Default::default()
                }
            })
    }

    /// Observed rules with unique ids (duplicates of a key are likely with so few keys).
    fn arb_observed() -> impl Strategy<Value = Vec<TrafficMirrorFilterRule>> {
        prop::collection::vec(arb_cloud_rule(), 0..10).prop_map(|rules| {
            rules
                .into_iter()
                .enumerate()
                .map(|(i, r)| TrafficMirrorFilterRule {
                    id: format!("r-{i}"),
                    ..r
                })
                .collect()
        })
    }

    fn new_ids() -> impl FnMut(&RuleKey) -> String {
        let mut n = 0;
        move |_| {
            n += 1;
            format!("new-{n}")
        }
    }

    /// An oracle written apart from the plan: each field normalised (case, whitespace, IP
    /// spelling, blank = unset) and compared; the wire names of those that differ.
    fn oracle_diff(d: &DesiredRule, o: &TrafficMirrorFilterRule) -> BTreeSet<&'static str> {
        fn norm(v: &Option<String>) -> Option<String> {
            let t = v.as_deref().map(str::trim).filter(|s| !s.is_empty())?;
            let parsed = t.split_once('/').and_then(|(ip, len)| {
                Some(format!(
                    "{}/{}",
                    ip.parse::<IpAddr>().ok()?,
                    len.parse::<u8>().ok()?
                ))
            });
            Some(parsed.unwrap_or_else(|| t.to_string()))
        }
        let pairs = [
            (
                "protocol",
                Some(d.protocol.to_uppercase()) != Some(o.protocol.trim().to_uppercase()),
            ),
            (
                "ethertype",
                d.ethertype.to_lowercase() != o.ethertype.trim().to_lowercase(),
            ),
            (
                "source_cidr_block",
                norm(&d.source_cidr_block) != norm(&o.source_cidr_block),
            ),
            (
                "destination_cidr_block",
                norm(&d.destination_cidr_block) != norm(&o.destination_cidr_block),
            ),
            (
                "source_port_range",
                norm(&d.source_port_range) != norm(&o.source_port_range),
            ),
            (
                "destination_port_range",
                norm(&d.destination_port_range) != norm(&o.destination_port_range),
            ),
            ("action", d.action != o.action),
            ("description", d.description != o.description),
        ];
        pairs
            .into_iter()
            .filter(|(_, differs)| *differs)
            .map(|(n, _)| n)
            .collect()
    }

    proptest! {
        /// (a) Executing the plan yields the desired set: exactly one rule per desired key, equal
        /// under the comparison rules, and no other key. (d) Planning again then finds nothing.
        #[test]
        fn applying_the_plan_reaches_the_desired_set(d in arb_desired(), observed in arb_observed()) {
            let plan = plan_rules("f-1", &d, &observed);
            let after = apply_rule_plan(&observed, &plan, new_ids());
            prop_assert_eq!(after.len(), d.rules.len());
            prop_assert_eq!(keys_of(&after), d.rules.keys().copied().collect::<BTreeSet<_>>());
            for r in &after {
                let k = RuleKey::of_observed(r).expect("keyed");
                prop_assert!(oracle_diff(&d.rules[&k], r).is_empty(), "{} still differs", k);
            }
            prop_assert!(plan_rules("f-1", &d, &after).is_empty());
        }

        /// (b) Every PUT carries exactly the differing fields, each with the desired value (or
        /// `""` to clear), and targets an observed rule at its key; no rule gets two calls.
        #[test]
        fn every_put_carries_exactly_the_differing_fields(d in arb_desired(), observed in arb_observed()) {
            let plan = plan_rules("f-1", &d, &observed);
            for (k, id, u) in &plan.update {
                let o = observed.iter().find(|r| &r.id == id).expect("an observed rule");
                prop_assert_eq!(RuleKey::of_observed(o), Some(*k));
                let want = &d.rules[k];
                let sent: BTreeSet<&str> = update_rule_field_names(u).into_iter().collect();
                prop_assert!(!sent.is_empty());
                prop_assert_eq!(&sent, &oracle_diff(want, o));
                let clear_or = |v: &Option<String>| Some(v.clone().unwrap_or_default());
                if u.source_cidr_block.is_some() { prop_assert_eq!(&u.source_cidr_block, &clear_or(&want.source_cidr_block)); }
                if u.destination_cidr_block.is_some() { prop_assert_eq!(&u.destination_cidr_block, &clear_or(&want.destination_cidr_block)); }
                if u.source_port_range.is_some() { prop_assert_eq!(&u.source_port_range, &clear_or(&want.source_port_range)); }
                if u.destination_port_range.is_some() { prop_assert_eq!(&u.destination_port_range, &clear_or(&want.destination_port_range)); }
                if let Some(p) = &u.protocol { prop_assert_eq!(p, &want.protocol); }
            }
            let mut touched: Vec<&str> = plan.update.iter().map(|(_, id, _)| id.as_str()).collect();
            touched.extend(plan.delete.iter().map(|(_, id)| id.as_str()));
            let distinct: BTreeSet<&str> = touched.iter().copied().collect();
            prop_assert_eq!(distinct.len(), touched.len());
        }

        /// (c) After every prefix of the execution order, every key in both the old and the new
        /// set is present, and the rule count never drops below min(|old|, |new|).
        #[test]
        fn no_prefix_of_the_calls_mirrors_less(d in arb_desired(), observed in arb_observed()) {
            let plan = plan_rules("f-1", &d, &observed);
            let new_keys: BTreeSet<RuleKey> = d.rules.keys().copied().collect();
            let kept: BTreeSet<RuleKey> = keys_of(&observed).intersection(&new_keys).copied().collect();
            let floor = observed.len().min(new_keys.len());
            let mut rules = observed.clone();
            let mut ids = new_ids();
            for call in plan.calls() {
                apply_rule_call(&mut rules, &call, &mut ids);
                prop_assert!(kept.is_subset(&keys_of(&rules)), "a kept key vanished after {:?}", call);
                prop_assert!(rules.len() >= floor, "{} rules < {} after {:?}", rules.len(), floor, call);
            }
        }

        /// A cloud holding exactly what the creates would make (in any spelling of protocol)
        /// plans nothing.
        #[test]
        fn created_rules_plan_nothing(d in arb_desired(), lower in any::<bool>()) {
            let rules: Vec<TrafficMirrorFilterRule> = d.rules.iter().enumerate().map(|(i, (k, r))| {
                let mut c = created_rule(&r.create_request("f-1", *k), &format!("r-{i}"));
                if lower { c.protocol = c.protocol.to_lowercase(); }
                c
            }).collect();
            prop_assert!(plan_rules("f-1", &d, &rules).is_empty());
            prop_assert_eq!(rule_ids(&rules).len(), d.rules.len());
        }
    }
}
