//! `TrafficMirrorFilter`: a Huawei Cloud VPC traffic mirror filter and its rules, declared in
//! Kubernetes. A session references it to select which traffic is mirrored.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Condition, DeletionPolicy, ManagementPolicy, ProviderConfigRef};
use super::session::NAME_PATTERN;

/// CEL check of a port range string (`N` or `N-M`, 1 <= N <= M <= 65535). The `matches` guard
/// comes first so `int()` never sees a malformed value.
const PORT_RANGE_RULE: &str = "self.matches('^[0-9]{1,5}(-[0-9]{1,5})?$') \
    && self.split('-').all(p, int(p) >= 1 && int(p) <= 65535) \
    && (self.split('-').size() == 1 || int(self.split('-')[0]) <= int(self.split('-')[1]))";

/// An IPv4 CIDR, anchored, for CEL `matches()` (RE2; also valid for the `regex` crate): four
/// decimal octets 0-255 without leading zeros, `/` and a prefix length 0-32 without leading zeros.
/// Host bits may be set (`10.0.0.1/24`), as they could with the CEL IP/CIDR library (`isCIDR`,
/// `cidr()`), which these patterns replace: it exists only from Kubernetes 1.31, while `matches()`
/// works on every supported version (1.30 and newer).
pub const IPV4_CIDR_PATTERN: &str = "^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])[.]){3}\
(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])/(3[0-2]|[12]?[0-9])$";

/// An IPv6 CIDR, anchored, for CEL `matches()`: eight groups of 1-4 hex digits (either case), or
/// fewer with one `::`, `/` and a prefix length 0-128 without leading zeros. Not accepted: zones
/// (`%eth0`) and a dotted IPv4 tail (`64:ff9b::10.0.0.1/128`; write it in hex groups instead,
/// `64:ff9b::a00:1/128`).
pub const IPV6_CIDR_PATTERN: &str = "^(\
([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}|\
([0-9a-fA-F]{1,4}:){1,7}:|\
([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}|\
([0-9a-fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}|\
([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}|\
([0-9a-fA-F]{1,4}:){1,3}(:[0-9a-fA-F]{1,4}){1,4}|\
([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}|\
[0-9a-fA-F]{1,4}:(:[0-9a-fA-F]{1,4}){1,6}|\
:((:[0-9a-fA-F]{1,4}){1,7}|:)\
)/(12[0-8]|1[01][0-9]|[1-9]?[0-9])$";

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, i.e. `0:0:0:0:0:ffff:x:y`) followed by a prefix,
/// for CEL `!matches()`: every spelling, with hex or dotted tail, zero groups written out or folded
/// into one `::` (before `ffff`, or after it for a zero tail: `0:0:0:0:0:ffff::/96`), either case.
///
/// Why: the CEL IP/CIDR library the CRDs used before (`isCIDR`, `cidr()`; Kubernetes 1.31+,
/// `k8s.io/apiserver/pkg/cel/library/cidr.go`: `if net.Addr().Is4In6() { … "IPv4-mapped IPv6
/// address %q is not allowed" }`) rejects these, while [`IPV6_CIDR_PATTERN`] alone accepts the
/// hex spellings (`::ffff:a00:0/104`). The extra rule keeps admission what it was on every
/// version; such a block means IPv4 traffic, written as an IPv4 CIDR with ethertype `IPv4`.
/// It only ever matches values that are mapped addresses or no IPv6 CIDR at all (those the shape
/// rule rejects anyway), so it never turns away a valid non-mapped CIDR.
pub const IPV4_MAPPED_IPV6_PATTERN: &str = "^(\
(0{1,4}:){5}[fF]{4}:([0-9a-fA-F]{1,4}:[0-9a-fA-F]{1,4}|[0-9]{1,3}([.][0-9]{1,3}){3})|\
((0{1,4}:){1,4}:|::)(0{1,4}:){0,4}[fF]{4}:([0-9a-fA-F]{1,4}:[0-9a-fA-F]{1,4}|[0-9]{1,3}([.][0-9]{1,3}){3})|\
(0{1,4}:){5}[fF]{4}:(:[0-9a-fA-F]{0,4}|[0-9a-fA-F]{1,4}::)\
)/[0-9]+$";

/// CEL check of a CIDR field (`self`): an IPv4 or an IPv6 CIDR.
fn cidr_rule() -> String {
    format!("self.matches('{IPV4_CIDR_PATTERN}') || self.matches('{IPV6_CIDR_PATTERN}')")
}

/// CEL check of a CIDR field (`self`): not an IPv4-mapped IPv6 address (see
/// [`IPV4_MAPPED_IPV6_PATTERN`]).
fn not_ipv4_mapped_rule() -> String {
    format!("!self.matches('{IPV4_MAPPED_IPV6_PATTERN}')")
}

/// CEL check, on a rule, that its CIDR field `field` (when set) is not of the other family than
/// `ethertype`. A value that is no CIDR at all passes here: the field's own rule reports it.
fn cidr_family_rule(field: &str) -> String {
    format!(
        "!has(self.{field}) || (self.ethertype == 'IPv4' \
         ? !self.{field}.matches('{IPV6_CIDR_PATTERN}') \
         : !self.{field}.matches('{IPV4_CIDR_PATTERN}'))"
    )
}

/// Desired state of a Huawei Cloud VPC traffic mirror filter and its rules.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "vpc.hwcloud.dev",
    version = "v1alpha1",
    kind = "TrafficMirrorFilter",
    plural = "trafficmirrorfilters",
    namespaced,
    status = "TrafficMirrorFilterStatus",
    shortname = "tmf",
    category = "hwcloud",
    derive = "PartialEq",
    doc = "A Huawei Cloud VPC traffic mirror filter: ingress and egress rules deciding which traffic a traffic mirror session copies.",
    printcolumn(name = "Filter-ID", type_ = "string", json_path = ".status.filterId", description = "Id of the filter in the cloud"),
    printcolumn(name = "Ready", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].status"#, description = "The cloud filter and its rules match the spec"),
    printcolumn(name = "Reason", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].reason"#, description = "Why the filter is (not) Ready"),
    printcolumn(name = "Synced", type_ = "string", json_path = r#".status.conditions[?(@.type=="Synced")].status"#, description = "The last reconcile succeeded"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("has(self.spec.name) || size(self.metadata.name) <= 64")
        .message("metadata.name must be at most 64 characters when spec.name is not set (it becomes the cloud name)"),
    // Ownership: an object keeps the cloud filter it created or adopted (status.filterId). A later
    // spec.filterId naming another one would leak it, so it is refused here (status is the old one on a
    // spec update); only the first setting is checked, so objects from before this rule stay editable.
    validation = Rule::new("!has(self.spec.filterId) || has(oldSelf.spec.filterId) || !has(self.status) || !has(self.status.filterId) || self.status.filterId == self.spec.filterId")
        .message("spec.filterId must equal status.filterId: this object already manages that cloud filter; to manage another one, delete this object (spec.deletionPolicy: Orphan keeps its cloud filter) and adopt the other with a new object")
        .field_path(".spec.filterId")
)]
#[x_kube(
    validation = Rule::new("!has(oldSelf.filterId) || has(self.filterId)")
        .message("spec.filterId cannot be removed once set")
        .field_path(".filterId"),
    validation = Rule::new("self.managementPolicy != 'ObserveOnly' || has(self.filterId)")
        .message("spec.filterId is required when spec.managementPolicy is ObserveOnly")
        .field_path(".filterId")
)]
#[schemars(transform = super::schema::non_nullable)]
#[serde(rename_all = "camelCase")]
pub struct TrafficMirrorFilterSpec {
    /// Name of the filter in the cloud: 1-64 characters, letters (Chinese included), digits, `_`,
    /// `-` and `.`. Default: the name of this Kubernetes object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), pattern(NAME_PATTERN))]
    pub name: Option<String>,

    /// Description of the filter: 0-255 characters, without `<` or `>`. Default: empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    #[x_kube(validation = Rule::new("!self.contains('<') && !self.contains('>')")
        .message("spec.description must not contain '<' or '>'"))]
    pub description: Option<String>,

    /// The filter's rules, at most 100; a priority may be used only once per direction.
    /// Default: none (nothing is mirrored). The bound is ours, not the cloud's (the reference gives
    /// no per-filter limit): the API server must bound a list to cost the uniqueness rule below
    /// (quadratic in the list's length), and 100 rules is far above what a filter needs.
    #[serde(default)]
    #[schemars(length(max = 100))]
    #[x_kube(validation = Rule::new(
        "self.all(r, self.exists_one(s, s.direction == r.direction && s.priority == r.priority))")
        .message("spec.rules: each priority may be used only once per direction"))]
    pub rules: Vec<FilterRuleSpec>,

    /// The cluster-scoped ProviderConfig giving region, project and credentials.
    /// Default: `{name: default}`.
    #[serde(default)]
    pub provider_config_ref: ProviderConfigRef,

    /// What deleting this object does to the cloud filter: `Delete` removes it, `Orphan` leaves it.
    /// Default: `Delete`.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// `Full` creates, updates and deletes the cloud filter and its rules to match this spec;
    /// `ObserveOnly` only reads the filter named by filterId (then required) into status and
    /// reports differences, never writing to the cloud. Default: `Full`.
    #[serde(default)]
    pub management_policy: ManagementPolicy,

    /// Id of an existing cloud filter to adopt (or observe) instead of creating one. Optional;
    /// once set it cannot be changed or removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self == oldSelf")
        .message("spec.filterId is immutable once set"))]
    pub filter_id: Option<String>,
}

/// One rule of a traffic mirror filter.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new(cidr_family_rule("sourceCidrBlock"))
        .message("spec.rules[].sourceCidrBlock must be of the address family given by ethertype (IPv4 or IPv6)")
        .field_path(".sourceCidrBlock"),
    validation = Rule::new(cidr_family_rule("destinationCidrBlock"))
        .message("spec.rules[].destinationCidrBlock must be of the address family given by ethertype (IPv4 or IPv6)")
        .field_path(".destinationCidrBlock")
)]
#[schemars(transform = super::schema::non_nullable)]
#[serde(rename_all = "camelCase")]
pub struct FilterRuleSpec {
    /// Direction of the traffic the rule matches: `ingress` or `egress`. Required; cannot change
    /// in the cloud (a changed direction replaces the rule).
    pub direction: Direction,

    /// Protocol matched: `TCP`, `UDP`, `ICMP`, `ICMPV6` or `ALL`. Default: `ALL`.
    #[serde(default)]
    pub protocol: Protocol,

    /// IP version matched: `IPv4` or `IPv6`. Default: `IPv4`.
    #[serde(default)]
    pub ethertype: Ethertype,

    /// Source addresses matched, as a CIDR (e.g. `10.0.0.0/24`) of the ethertype's family.
    /// Default: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(
        validation = Rule::new(cidr_rule())
            .message("spec.rules[].sourceCidrBlock must be a CIDR such as 10.0.0.0/24 or 2001:db8::/64"),
        validation = Rule::new(not_ipv4_mapped_rule())
            .message("spec.rules[].sourceCidrBlock must not be an IPv4-mapped IPv6 address (::ffff:a.b.c.d); write the IPv4 CIDR with ethertype IPv4")
    )]
    pub source_cidr_block: Option<String>,

    /// Destination addresses matched, as a CIDR (e.g. `10.0.0.0/24`) of the ethertype's family.
    /// Default: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(
        validation = Rule::new(cidr_rule())
            .message("spec.rules[].destinationCidrBlock must be a CIDR such as 10.0.0.0/24 or 2001:db8::/64"),
        validation = Rule::new(not_ipv4_mapped_rule())
            .message("spec.rules[].destinationCidrBlock must not be an IPv4-mapped IPv6 address (::ffff:a.b.c.d); write the IPv4 CIDR with ethertype IPv4")
    )]
    pub destination_cidr_block: Option<String>,

    /// Source ports matched: a port `N` or a range `N-M`, with 1 <= N <= M <= 65535.
    /// Default: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 11))]
    #[x_kube(validation = Rule::new(PORT_RANGE_RULE)
        .message("spec.rules[].sourcePortRange must be a port N or a range N-M with 1 <= N <= M <= 65535"))]
    pub source_port_range: Option<String>,

    /// Destination ports matched: a port `N` or a range `N-M`, with 1 <= N <= M <= 65535.
    /// Default: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 11))]
    #[x_kube(validation = Rule::new(PORT_RANGE_RULE)
        .message("spec.rules[].destinationPortRange must be a port N or a range N-M with 1 <= N <= M <= 65535"))]
    pub destination_port_range: Option<String>,

    /// What happens to matching traffic: `accept` mirrors it, `reject` does not. Default: `accept`.
    #[serde(default)]
    pub action: Action,

    /// Priority of the rule: 1-65535, a smaller number wins; unique per direction. Required.
    #[schemars(range(min = 1, max = 65535))]
    pub priority: i64,

    /// Description of the rule: 0-255 characters, without `<` or `>`. Default: empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    #[x_kube(validation = Rule::new("!self.contains('<') && !self.contains('>')")
        .message("spec.rules[].description must not contain '<' or '>'"))]
    pub description: Option<String>,
}

impl FilterRuleSpec {
    /// The key of this rule in `status.ruleIds`: direction and priority, unique within a filter.
    pub fn key(&self) -> String {
        rule_key(self.direction, self.priority)
    }
}

/// The key of a rule in `status.ruleIds`, e.g. `ingress/10`.
pub fn rule_key(direction: Direction, priority: i64) -> String {
    format!("{}/{}", direction.as_str(), priority)
}

/// Direction of the traffic a filter rule matches.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Traffic entering the source ENI.
    Ingress,
    /// Traffic leaving the source ENI.
    Egress,
}

impl Direction {
    /// The value sent to and answered by the cloud API.
    pub fn as_str(&self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// Protocol a filter rule matches.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Protocol {
    /// TCP.
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
    /// ICMP.
    #[serde(rename = "ICMP")]
    Icmp,
    /// ICMPv6.
    #[serde(rename = "ICMPV6")]
    Icmpv6,
    /// Every protocol (the default).
    #[default]
    #[serde(rename = "ALL")]
    All,
}

impl Protocol {
    /// The value sent to and answered by the cloud API.
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Icmp => "ICMP",
            Protocol::Icmpv6 => "ICMPV6",
            Protocol::All => "ALL",
        }
    }
}

/// IP version a filter rule matches.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Ethertype {
    /// IPv4 (the default).
    #[default]
    IPv4,
    /// IPv6.
    IPv6,
}

impl Ethertype {
    /// The value sent to and answered by the cloud API.
    pub fn as_str(&self) -> &'static str {
        match self {
            Ethertype::IPv4 => "IPv4",
            Ethertype::IPv6 => "IPv6",
        }
    }
}

/// What a filter rule does with matching traffic.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Mirror matching traffic (the default).
    #[default]
    Accept,
    /// Do not mirror matching traffic.
    Reject,
}

impl Action {
    /// The value sent to and answered by the cloud API.
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Reject => "reject",
        }
    }
}

/// Observed state of a traffic mirror filter, written by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[schemars(transform = super::schema::strip_defaults)]
#[serde(rename_all = "camelCase")]
pub struct TrafficMirrorFilterStatus {
    /// Id of the cloud filter this object manages, recorded as soon as it is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_id: Option<String>,

    /// Cloud ids of the rules created for spec.rules, keyed by `direction/priority`
    /// (e.g. `ingress/10`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rule_ids: BTreeMap<String, String>,

    /// The metadata.generation of the spec the status was last computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Conditions, keyed by type: `Ready` (the cloud filter and rules match the spec), `Synced`
    /// (the last reconcile succeeded), and, only while `Ready` is False, `Reconciling` (the
    /// operator is still working toward the spec) or `Stalled` (it cannot progress until someone
    /// changes the spec or the cloud).
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The filter, with its rules, as last read from the cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_provider: Option<FilterObservation>,
}

super::common::managed_status!(TrafficMirrorFilterStatus, filter_id);

/// A traffic mirror filter as the cloud reports it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct FilterObservation {
    /// Id of the filter.
    pub id: String,
    /// Project (tenant) the filter belongs to.
    pub project_id: String,
    /// Name of the filter.
    pub name: String,
    /// Description of the filter.
    pub description: String,
    /// The filter's ingress rules.
    pub ingress_rules: Vec<FilterRuleObservation>,
    /// The filter's egress rules.
    pub egress_rules: Vec<FilterRuleObservation>,
    /// Kind of the filter.
    #[serde(rename = "type")]
    pub source_type: String,
    /// Creation time (UTC, `YYYY-MM-DDThh:mm:ssZ`).
    pub created_at: String,
    /// Last update time (UTC, `YYYY-MM-DDThh:mm:ssZ`).
    pub updated_at: String,
}

/// A traffic mirror filter rule as the cloud reports it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct FilterRuleObservation {
    /// Id of the rule.
    pub id: String,
    /// Project (tenant) the rule belongs to.
    pub project_id: String,
    /// Description of the rule.
    pub description: String,
    /// Id of the filter the rule belongs to.
    pub traffic_mirror_filter_id: String,
    /// `ingress` or `egress`.
    pub direction: String,
    /// Source CIDR matched; absent means any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_cidr_block: Option<String>,
    /// Destination CIDR matched; absent means any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_cidr_block: Option<String>,
    /// Source port range matched; absent means any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_port_range: Option<String>,
    /// Destination port range matched; absent means any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_port_range: Option<String>,
    /// `IPv4` or `IPv6`.
    pub ethertype: String,
    /// `TCP`, `UDP`, `ICMP`, `ICMPV6` or `ALL`.
    pub protocol: String,
    /// `accept` or `reject`.
    pub action: String,
    /// Priority of the rule.
    pub priority: i64,
    /// Creation time (UTC, `YYYY-MM-DDThh:mm:ssZ`).
    pub created_at: String,
    /// Last update time (UTC, `YYYY-MM-DDThh:mm:ssZ`).
    pub updated_at: String,
}

impl TrafficMirrorFilter {
    /// The filter name used in the cloud: `spec.name`, or the object's name when unset.
    pub fn cloud_name(&self) -> String {
        self.spec
            .name
            .clone()
            .or_else(|| self.metadata.name.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4() -> regex::Regex {
        regex::Regex::new(IPV4_CIDR_PATTERN).expect("IPv4 pattern compiles")
    }

    fn v6() -> regex::Regex {
        regex::Regex::new(IPV6_CIDR_PATTERN).expect("IPv6 pattern compiles")
    }

    fn mapped() -> regex::Regex {
        regex::Regex::new(IPV4_MAPPED_IPV6_PATTERN).expect("IPv4-mapped pattern compiles")
    }

    /// What admission does with a CIDR field (ethertype aside): the shape rule and the
    /// IPv4-mapped rule together.
    fn admitted(value: &str) -> bool {
        (v4().is_match(value) || v6().is_match(value)) && !mapped().is_match(value)
    }

    /// (value, is an IPv4-mapped IPv6 address with a prefix, admitted)
    const MAPPED_TABLE: &[(&str, bool, bool)] = &[
        // Mapped: rejected, whatever the spelling (what the CEL library's `Is4In6` rejected).
        ("::ffff:a00:0/104", true, false),
        ("::ffff:102:304/128", true, false),
        ("::FFFF:A00:1/128", true, false),
        ("::fFfF:0:0/96", true, false),
        ("0:0:0:0:0:ffff:a00:0/104", true, false),
        ("0000:0000:0000:0000:0000:ffff:0a00:0000/104", true, false),
        ("0::ffff:a00:0/104", true, false),
        ("0:0:0:0::ffff:1:2/128", true, false),
        ("::0:ffff:1:2/128", true, false),
        ("::0:0:0:0:ffff:1:2/128", true, false),
        ("0:0::0:0:ffff:1:2/128", true, false),
        ("0:0:0:0:0:ffff::/96", true, false), // zero tail folded after ffff
        ("0:0:0:0:0:ffff::5/128", true, false),
        ("0:0:0:0:0:ffff:5::/128", true, false),
        ("::ffff:10.0.0.0/104", true, false), // dotted: also no IPv6 CIDR for the shape rule
        ("::ffff:1.2.3.4/128", true, false),
        ("0:0:0:0:0:ffff:1.2.3.4/128", true, false),
        // Not mapped: admitted as before.
        ("::ffff:1:2:3/128", false, true),  // 0:0:0:0:ffff:1:2:3
        ("::ffff:1/128", false, true),      // 0:0:0:0:0:0:ffff:1
        ("::ffff/128", false, true),        // 0:0:0:0:0:0:0:ffff
        ("::ffff:0:1:2/128", false, true),  // 0:0:0:0:ffff:0:1:2
        ("1::ffff:a00:0/104", false, true), // first group not zero
        ("0:0:0:0:1:ffff:1:2/128", false, true),
        ("::fffe:a00:0/104", false, true),
        ("64:ff9b::a00:1/128", false, true), // NAT64 well-known prefix, not mapped
        ("::a00:1/128", false, true),        // IPv4-compatible (deprecated), not mapped
        ("2001:db8::/64", false, true),
        ("::/0", false, true),
        ("10.0.0.0/8", false, true),
        ("255.255.255.255/32", false, true),
    ];

    #[test]
    fn ipv4_mapped_addresses_are_rejected_in_every_spelling() {
        let mapped = mapped();
        for (value, is_mapped, is_admitted) in MAPPED_TABLE {
            assert_eq!(
                mapped.is_match(value),
                *is_mapped,
                "mapped pattern on {value:?}"
            );
            assert_eq!(admitted(value), *is_admitted, "admission of {value:?}");
        }
    }

    /// Every text form of `groups` the IPv6 pattern accepts: all eight groups (with and without
    /// leading zeros), and each run of zero groups folded into `::`.
    fn text_forms(groups: [u16; 8]) -> Vec<String> {
        let join = |g: &[u16]| {
            g.iter()
                .map(|g| format!("{g:x}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        let mut forms = vec![
            join(&groups),
            groups
                .iter()
                .map(|g| format!("{g:04x}"))
                .collect::<Vec<_>>()
                .join(":"),
        ];
        for start in 0..8 {
            for end in start + 1..=8 {
                if groups[start..end].iter().all(|g| *g == 0) {
                    forms.push(format!(
                        "{}::{}",
                        join(&groups[..start]),
                        join(&groups[end..])
                    ));
                }
            }
        }
        forms
    }

    /// Addresses with a good chance of being IPv4-mapped: zero groups, then often `ffff`.
    fn mostly_mapped_groups() -> impl Strategy<Value = [u16; 8]> {
        let zero = || prop_oneof![6 => Just(0u16), 1 => any::<u16>()];
        let tail = || prop_oneof![Just(0u16), any::<u16>()];
        (
            proptest::array::uniform5(zero()),
            prop_oneof![4 => Just(0xffffu16), 1 => Just(0u16), 1 => any::<u16>()],
            tail(),
            tail(),
        )
            .prop_map(|(head, sixth, g7, g8)| {
                let mut groups = [0u16; 8];
                groups[..5].copy_from_slice(&head);
                groups[5..].copy_from_slice(&[sixth, g7, g8]);
                groups
            })
    }

    /// (value, is an IPv4 CIDR, is an IPv6 CIDR)
    const CIDR_TABLE: &[(&str, bool, bool)] = &[
        // IPv4, valid
        ("10.0.0.0/24", true, false),
        ("0.0.0.0/0", true, false),
        ("255.255.255.255/32", true, false),
        ("192.168.1.1/32", true, false),
        ("10.0.0.1/24", true, false), // host bits set: allowed, as with isCIDR
        ("172.16.0.0/12", true, false),
        ("1.2.3.4/9", true, false),
        ("100.64.0.0/10", true, false),
        ("249.250.251.199/20", true, false),
        // IPv4, invalid
        ("10.0.0.0", false, false),      // no prefix
        ("10.0.0.0/", false, false),     // empty prefix
        ("10.0.0.0/33", false, false),   // prefix too long
        ("10.0.0.0/024", false, false),  // leading zero in the prefix
        ("10.0.0.0/-1", false, false),   // negative prefix
        ("256.0.0.0/8", false, false),   // octet > 255
        ("10.0.0.300/24", false, false), // octet > 255
        ("010.0.0.0/8", false, false),   // leading zero in an octet
        ("10.0.0/24", false, false),     // three octets
        ("10.0.0.0.0/24", false, false), // five octets
        ("10.0.0.0/24 ", false, false),  // trailing space
        (" 10.0.0.0/24", false, false),  // leading space
        ("10.0.0.0/24/8", false, false), // two prefixes
        ("10.0.0.0\n/24", false, false),
        ("a.b.c.d/24", false, false),
        ("10,0,0,0/24", false, false),
        ("", false, false),
        // IPv6, valid
        ("2001:db8::/64", false, true),
        ("::/0", false, true),
        ("::1/128", false, true),
        ("fe80::/10", false, true),
        ("2001:DB8::/32", false, true), // upper case
        ("2001:0db8:0000:0000:0000:0000:0000:0001/128", false, true),
        ("2001:db8:0:0:1:0:0:1/64", false, true),
        ("1:2:3:4:5:6:7:8/128", false, true),
        ("1::/16", false, true),
        ("1:2:3:4:5:6:7::/112", false, true), // `::` for one group
        ("::2:3:4:5:6:7:8/128", false, true),
        ("1::8/64", false, true),
        ("1:2::7:8/64", false, true),
        ("1:2:3::6:7:8/64", false, true),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", false, true),
        ("2001:db8::1/0", false, true),
        ("2001:db8::/99", false, true),
        ("2001:db8::/100", false, true),
        ("2001:db8::/119", false, true),
        // IPv6, invalid
        ("2001:db8::", false, false),     // no prefix
        ("2001:db8::/129", false, false), // prefix too long
        ("2001:db8::/064", false, false), // leading zero in the prefix
        ("2001:db8::/130", false, false),
        ("2001:db8:::/64", false, false),        // `:::`
        ("2001::db8::1/64", false, false),       // two `::`
        ("1:2:3:4:5:6:7:8:9/128", false, false), // nine groups
        ("1:2:3:4:5:6:7/128", false, false),     // seven groups without `::`
        ("1:2:3:4:5:6:7:8::/128", false, false), // eight groups and `::`
        ("::1:2:3:4:5:6:7:8/128", false, false), // `::` and eight groups
        ("12345::/64", false, false),            // five hex digits
        ("2001:db8::g/64", false, false),        // not hex
        (":1:2:3:4:5:6:7/128", false, false),    // single leading colon
        ("1:2:3:4:5:6:7:/128", false, false),    // single trailing colon
        ("fe80::1%eth0/64", false, false),       // zone
        ("::ffff:10.0.0.1/128", false, false),   // dotted tail: not accepted (documented)
        ("[2001:db8::]/64", false, false),
        ("2001:db8::/64 ", false, false),
        (":/0", false, false),
        ("/64", false, false),
    ];

    #[test]
    fn cidr_patterns_accept_and_reject_the_table() {
        let (v4, v6) = (v4(), v6());
        for (value, is_v4, is_v6) in CIDR_TABLE {
            assert_eq!(v4.is_match(value), *is_v4, "IPv4 pattern on {value:?}");
            assert_eq!(v6.is_match(value), *is_v6, "IPv6 pattern on {value:?}");
        }
    }

    #[test]
    fn cidr_rules_use_the_patterns() {
        // The patterns sit inside single-quoted CEL strings: no quote or backslash may appear.
        for pattern in [
            IPV4_CIDR_PATTERN,
            IPV6_CIDR_PATTERN,
            IPV4_MAPPED_IPV6_PATTERN,
        ] {
            assert!(!pattern.contains('\'') && !pattern.contains('\\'));
        }
        assert_eq!(
            not_ipv4_mapped_rule(),
            format!("!self.matches('{IPV4_MAPPED_IPV6_PATTERN}')")
        );
        assert_eq!(
            cidr_rule(),
            format!("self.matches('{IPV4_CIDR_PATTERN}') || self.matches('{IPV6_CIDR_PATTERN}')")
        );
        let family = cidr_family_rule("sourceCidrBlock");
        assert!(family.starts_with("!has(self.sourceCidrBlock) || (self.ethertype == 'IPv4'"));
        assert!(!family.contains("isCIDR") && !family.contains("cidr("));
    }

    proptest! {
        #[test]
        fn every_ipv4_cidr_matches_only_the_ipv4_pattern(addr in any::<u32>(), prefix in 0u8..=32) {
            let value = format!("{}/{prefix}", Ipv4Addr::from(addr));
            prop_assert!(v4().is_match(&value), "{}", value);
            prop_assert!(!v6().is_match(&value), "{}", value);
        }

        #[test]
        fn an_out_of_range_ipv4_prefix_is_rejected(addr in any::<u32>(), prefix in 33u32..1000) {
            let value = format!("{}/{prefix}", Ipv4Addr::from(addr));
            prop_assert!(!v4().is_match(&value), "{}", value);
        }

        #[test]
        fn every_ipv6_cidr_matches_only_the_ipv6_pattern(
            groups in proptest::array::uniform8(prop_oneof![Just(0u16), Just(1u16), any::<u16>()]),
            prefix in 0u8..=128,
            upper in any::<bool>(),
        ) {
            let addr = Ipv6Addr::from(groups);
            // Compressed (std's canonical text) unless std writes a dotted IPv4 tail, which the
            // pattern does not accept; and all eight groups written out, with leading zeros.
            let mut forms = vec![
                groups.iter().map(|g| format!("{g:x}")).collect::<Vec<_>>().join(":"),
                groups.iter().map(|g| format!("{g:04x}")).collect::<Vec<_>>().join(":"),
            ];
            let canonical = addr.to_string();
            if !canonical.contains('.') {
                forms.push(canonical);
            }
            for form in forms {
                let form = if upper { form.to_uppercase() } else { form };
                let value = format!("{form}/{prefix}");
                prop_assert!(v6().is_match(&value), "{}", value);
                prop_assert!(!v4().is_match(&value), "{}", value);
            }
        }

        #[test]
        fn an_out_of_range_ipv6_prefix_is_rejected(groups in proptest::array::uniform8(any::<u16>()), prefix in 129u32..1000) {
            let value = format!("{}/{prefix}", Ipv6Addr::from(groups));
            prop_assert!(!v6().is_match(&value), "{}", value);
        }

        /// The IPv4-mapped pattern matches exactly the mapped addresses (`Is4In6` in Go, Rust's
        /// `to_ipv4_mapped`), in every spelling the IPv6 pattern accepts and in dotted form.
        #[test]
        fn the_mapped_pattern_matches_exactly_the_mapped_addresses(
            groups in mostly_mapped_groups(),
            prefix in 0u8..=128,
            upper in any::<bool>(),
        ) {
            let addr = Ipv6Addr::from(groups);
            let is_mapped = addr.to_ipv4_mapped().is_some();
            for form in text_forms(groups) {
                let form = if upper { form.to_uppercase() } else { form };
                let value = format!("{form}/{prefix}");
                prop_assert!(v6().is_match(&value), "{}", value);
                prop_assert_eq!(mapped().is_match(&value), is_mapped, "{}", value);
                prop_assert_eq!(admitted(&value), !is_mapped, "{}", value);
            }
            if let Some(v4addr) = addr.to_ipv4_mapped() {
                let dotted = format!("::ffff:{v4addr}/{prefix}");
                prop_assert!(mapped().is_match(&dotted) && !admitted(&dotted), "{}", dotted);
            }
        }

        /// The mapped pattern never matches an IPv4 CIDR.
        #[test]
        fn the_mapped_pattern_leaves_ipv4_alone(addr in any::<u32>(), prefix in 0u8..=32) {
            let value = format!("{}/{prefix}", Ipv4Addr::from(addr));
            prop_assert!(!mapped().is_match(&value), "{}", value);
        }

        /// Whatever the pattern accepts is an address std parses (the pattern is no looser).
        #[test]
        fn what_the_patterns_accept_parses(value in "[0-9a-fA-F:.]{1,41}/[0-9]{1,3}") {
            let (addr, prefix) = value.split_once('/').unwrap();
            if v4().is_match(&value) {
                prop_assert!(addr.parse::<Ipv4Addr>().is_ok() && prefix.parse::<u8>().unwrap() <= 32);
            }
            if v6().is_match(&value) {
                prop_assert!(addr.parse::<Ipv6Addr>().is_ok() && prefix.parse::<u8>().unwrap() <= 128);
            }
        }
    }

    #[test]
    fn rule_defaults_and_wire_names() {
        let rule: FilterRuleSpec =
            serde_json::from_value(json!({"direction": "egress", "priority": 7})).unwrap();
        assert_eq!(rule.protocol, Protocol::All);
        assert_eq!(rule.ethertype, Ethertype::IPv4);
        assert_eq!(rule.action, Action::Accept);
        assert_eq!(rule.key(), "egress/7");
        let v = serde_json::to_value(&rule).unwrap();
        assert_eq!(
            v,
            json!({"direction": "egress", "protocol": "ALL", "ethertype": "IPv4",
            "action": "accept", "priority": 7})
        );
    }

    #[test]
    fn enums_as_str_match_serde() {
        for d in [Direction::Ingress, Direction::Egress] {
            assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
        }
        for p in [
            Protocol::Tcp,
            Protocol::Udp,
            Protocol::Icmp,
            Protocol::Icmpv6,
            Protocol::All,
        ] {
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
        for e in [Ethertype::IPv4, Ethertype::IPv6] {
            assert_eq!(serde_json::to_value(e).unwrap(), e.as_str());
        }
        for a in [Action::Accept, Action::Reject] {
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
        }
    }

    #[test]
    fn spec_defaults() {
        let spec: TrafficMirrorFilterSpec = serde_json::from_value(json!({})).unwrap();
        assert!(spec.rules.is_empty());
        assert_eq!(spec.provider_config_ref.name, "default");
        assert_eq!(spec.deletion_policy, DeletionPolicy::Delete);
        assert_eq!(spec.management_policy, ManagementPolicy::Full);
        let f = TrafficMirrorFilter::new("web", spec);
        assert_eq!(f.cloud_name(), "web");
    }

    #[test]
    fn status_round_trips() {
        let mut status = TrafficMirrorFilterStatus {
            filter_id: Some("f-1".into()),
            ..Default::default()
        };
        status
            .rule_ids
            .insert(rule_key(Direction::Ingress, 10), "r-1".into());
        status.at_provider = Some(FilterObservation {
            id: "f-1".into(),
            ingress_rules: vec![FilterRuleObservation {
                id: "r-1".into(),
                direction: "ingress".into(),
                priority: 10,
                ..Default::default()
            }],
            ..Default::default()
        });
        let v = serde_json::to_value(&status).unwrap();
        assert_eq!(v["ruleIds"]["ingress/10"], "r-1");
        assert!(
            v["atProvider"]["ingressRules"][0]
                .get("sourceCidrBlock")
                .is_none()
        );
        let back: TrafficMirrorFilterStatus = serde_json::from_value(v).unwrap();
        assert_eq!(back, status);
    }
}
