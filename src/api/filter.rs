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
    printcolumn(name = "Synced", type_ = "string", json_path = r#".status.conditions[?(@.type=="Synced")].status"#, description = "The last reconcile succeeded"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("has(self.spec.name) || size(self.metadata.name) <= 64")
        .message("metadata.name must be at most 64 characters when spec.name is not set (it becomes the cloud name)")
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
    /// Default: none (nothing is mirrored).
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
    validation = Rule::new("!has(self.sourceCidrBlock) || !isCIDR(self.sourceCidrBlock) || cidr(self.sourceCidrBlock).ip().family() == (self.ethertype == 'IPv4' ? 4 : 6)")
        .message("spec.rules[].sourceCidrBlock must be of the address family given by ethertype (IPv4 or IPv6)")
        .field_path(".sourceCidrBlock"),
    validation = Rule::new("!has(self.destinationCidrBlock) || !isCIDR(self.destinationCidrBlock) || cidr(self.destinationCidrBlock).ip().family() == (self.ethertype == 'IPv4' ? 4 : 6)")
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
    #[x_kube(validation = Rule::new("isCIDR(self)")
        .message("spec.rules[].sourceCidrBlock must be a CIDR such as 10.0.0.0/24 or 2001:db8::/64"))]
    pub source_cidr_block: Option<String>,

    /// Destination addresses matched, as a CIDR (e.g. `10.0.0.0/24`) of the ethertype's family.
    /// Default: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("isCIDR(self)")
        .message("spec.rules[].destinationCidrBlock must be a CIDR such as 10.0.0.0/24 or 2001:db8::/64"))]
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

    /// Conditions `Ready` (the cloud filter and rules match the spec) and `Synced` (the last
    /// reconcile succeeded), keyed by type.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The filter, with its rules, as last read from the cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_provider: Option<FilterObservation>,
}

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
    use serde_json::json;

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
