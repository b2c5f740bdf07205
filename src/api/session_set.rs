//! `TrafficMirrorSessionSet`: mirror a changing set of ports (the primary ports of selected Nodes,
//! and ports selected by their VPC tags) through as many `TrafficMirrorSession` children as the
//! per-session source limit needs.
//!
//! The set never calls the cloud's session API itself: it writes ordinary sessions, owned by it, and
//! the session reconciler does the cloud work. The set only reads ports (to resolve Nodes and tags).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Condition, DeletionPolicy, LocalObjectRef, ProviderConfigRef};
use super::session::{SourceType, TargetType};

/// The label every child session carries: the name of the set that owns it.
pub const SET_LABEL: &str = "vpc.hwcloud.dev/session-set";

/// The most characters a set's name may have: its children are `<set>-<n>`, and a child's name is
/// its cloud session's name, at most 64 characters.
pub const MAX_SET_NAME: usize = 56;

/// Desired state of a set of traffic mirror sessions following Nodes and tagged ports.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "vpc.hwcloud.dev",
    version = "v1alpha1",
    kind = "TrafficMirrorSessionSet",
    plural = "trafficmirrorsessionsets",
    namespaced,
    status = "TrafficMirrorSessionSetStatus",
    shortname = "tmset",
    category = "hwcloud",
    derive = "PartialEq",
    doc = "A set of Huawei Cloud VPC traffic mirror sessions whose sources follow the Nodes selected by a label selector and the ports selected by VPC tags: the operator creates, fills and deletes TrafficMirrorSession children (at most maxSourcesPerSession sources each) as the selection changes.",
    printcolumn(name = "Ports", type_ = "integer", json_path = ".status.selectedPorts", description = "Ports selected as sources"),
    printcolumn(name = "Sessions", type_ = "integer", json_path = ".status.sessions", description = "Child sessions"),
    printcolumn(name = "Ready-Sessions", type_ = "integer", json_path = ".status.readySessions", description = "Child sessions that are Ready"),
    printcolumn(name = "Ready", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].status"#, description = "Every selected port is mirrored"),
    printcolumn(name = "Reason", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].reason"#, description = "Why the set is (not) Ready"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 56")
        .message("metadata.name must be at most 56 characters: the child sessions are named <set>-<n> and a session name has at most 64")
)]
#[schemars(transform = super::schema::non_nullable)]
#[serde(rename_all = "camelCase")]
pub struct TrafficMirrorSessionSetSpec {
    /// Which ports are mirrored: the primary ports of the selected Nodes, the ports carrying the
    /// tags, or both (the union). At least one selector is required.
    pub sources: SetSources,

    /// Every TrafficMirrorSession spec field of the children except their sources and sessionId;
    /// editing it edits every child.
    pub session_template: SessionTemplate,

    /// The most sources one child session holds: 1-100. Default: 10, the cloud's default quota
    /// (raised on request).
    #[serde(default = "default_max_sources")]
    #[schemars(range(min = 1, max = 100))]
    pub max_sources_per_session: i64,
}

fn default_max_sources() -> i64 {
    10
}

/// The selectors of a set's sources.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.nodeSelector) || has(self.portTags)")
        .message("spec.sources needs at least one of nodeSelector or portTags")
)]
#[schemars(transform = super::schema::non_nullable)]
#[serde(rename_all = "camelCase")]
pub struct SetSources {
    /// A label selector over Kubernetes Nodes: the primary port of every matching Node (the port
    /// holding its InternalIP) is a source. `{}` selects every Node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,

    /// VPC port tags, as the VPC `ListPortsByTags` filter means them: values under one key are
    /// OR-ed, keys are AND-ed. Every matching port is a source (workloads outside the cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 10))]
    pub port_tags: Option<Vec<PortTag>>,

    /// The VPC the Nodes' addresses are looked up in. Private IPs repeat across VPCs: without it an
    /// address found in two VPCs is ambiguous and the Node is left unresolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub vpc_id: Option<String>,
}

/// One tag filter of `ListPortsByTags`: the key, and the values any of which matches.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct PortTag {
    /// Tag key: 1-128 characters.
    #[schemars(length(min = 1, max = 128))]
    pub key: String,
    /// Tag values, any of which matches: 1-10 values of 0-255 characters.
    #[schemars(length(min = 1, max = 10), inner(length(max = 255)))]
    pub values: Vec<String>,
}

/// The children's spec, without their sources and sessionId. Each child's cloud name is its object
/// name (`<set>-<n>`), so there is no `name`; and a child always manages its session (`Full`): an
/// ObserveOnly child would need a sessionId.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.trafficMirrorFilterId) != has(self.trafficMirrorFilterRef)")
        .message("exactly one of spec.sessionTemplate.trafficMirrorFilterId or spec.sessionTemplate.trafficMirrorFilterRef must be set")
        .field_path(".trafficMirrorFilterId")
)]
#[schemars(transform = super::schema::non_nullable)]
#[serde(rename_all = "camelCase")]
pub struct SessionTemplate {
    /// Description of every child session: 0-255 characters, without `<` or `>`. Default: empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    #[x_kube(validation = Rule::new("!self.contains('<') && !self.contains('>')")
        .message("spec.sessionTemplate.description must not contain '<' or '>'"))]
    pub description: Option<String>,

    /// Id of the traffic mirror filter in the cloud. Exactly one of trafficMirrorFilterId and
    /// trafficMirrorFilterRef must be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub traffic_mirror_filter_id: Option<String>,

    /// A TrafficMirrorFilter in this namespace. Exactly one of trafficMirrorFilterId and
    /// trafficMirrorFilterRef must be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_mirror_filter_ref: Option<LocalObjectRef>,

    /// Id of the mirror target (an ENI or a private load balancer). Required, 1-64 characters.
    #[schemars(length(min = 1, max = 64))]
    pub traffic_mirror_target_id: String,

    /// Kind of the mirror target: `eni` or `elb`. Required.
    pub traffic_mirror_target_type: TargetType,

    /// VXLAN network identifier (VNI) of mirrored packets: 0-16777215. Default: 1.
    #[serde(default = "default_virtual_network_id")]
    #[schemars(range(min = 0, max = 16_777_215))]
    pub virtual_network_id: i64,

    /// Maximum length in bytes kept of each mirrored packet: 1-1460. Default: 96.
    #[serde(default = "default_packet_length")]
    #[schemars(range(min = 1, max = 1460))]
    pub packet_length: i64,

    /// Priority of every child session: 1-32766, a smaller number wins. Required.
    #[schemars(range(min = 1, max = 32766))]
    pub priority: i64,

    /// Whether mirroring is switched on. Default: false.
    #[serde(default)]
    pub enabled: bool,

    /// Kind of the mirror sources: `eni` (the only value). Default: `eni`.
    #[serde(rename = "type", default)]
    pub source_type: SourceType,

    /// The cluster-scoped ProviderConfig of the children, also used to read ports. Default:
    /// `{name: default}`.
    #[serde(default)]
    pub provider_config_ref: ProviderConfigRef,

    /// What deleting a child does to its cloud session: `Delete` or `Orphan`. Default: `Delete`.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

fn default_virtual_network_id() -> i64 {
    1
}

fn default_packet_length() -> i64 {
    96
}

/// Observed state of a set, written by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[schemars(transform = super::schema::strip_defaults)]
#[serde(rename_all = "camelCase")]
pub struct TrafficMirrorSessionSetStatus {
    /// The metadata.generation of the spec the status was last computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// How many ports are selected (resolved Nodes and tagged ports, counted once).
    #[serde(default)]
    pub selected_ports: i64,

    /// How many child sessions the set has.
    #[serde(default)]
    pub sessions: i64,

    /// How many child sessions are Ready.
    #[serde(default)]
    pub ready_sessions: i64,

    /// The selected Nodes whose port could not be resolved, with the reason; never guessed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unresolved: Vec<UnresolvedSource>,

    /// Conditions, keyed by type: `Ready` (every selected port is a source of a Ready child and
    /// nothing is unresolved), `Synced` (the last reconcile succeeded), and, only while `Ready` is
    /// False, `Reconciling` or `Stalled`.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// A selected Node whose port could not be resolved.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnresolvedSource {
    /// Name of the Node.
    pub node: String,
    /// `NoInternalIP`, `NoPort` or `Ambiguous`.
    pub reason: String,
    /// What was looked up and what to do.
    pub message: String,
    /// The candidate port ids (for `Ambiguous`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<String>,
}

impl PortTag {
    /// The tags as a map key → values, for building the cloud query.
    pub fn to_map(tags: &[PortTag]) -> BTreeMap<String, Vec<String>> {
        tags.iter()
            .map(|t| (t.key.clone(), t.values.clone()))
            .collect()
    }
}

impl SessionTemplate {
    /// The child session's spec: this template with `sources`; the sessionId is never set, the
    /// name is the child's object name, the management policy `Full`.
    pub fn child_spec(&self, sources: Vec<String>) -> super::TrafficMirrorSessionSpec {
        let SessionTemplate {
            description,
            traffic_mirror_filter_id,
            traffic_mirror_filter_ref,
            traffic_mirror_target_id,
            traffic_mirror_target_type,
            virtual_network_id,
            packet_length,
            priority,
            enabled,
            source_type,
            provider_config_ref,
            deletion_policy,
        } = self.clone();
        super::TrafficMirrorSessionSpec {
            name: None,
            description,
            traffic_mirror_filter_id,
            traffic_mirror_filter_ref,
            traffic_mirror_sources: sources,
            traffic_mirror_target_id,
            traffic_mirror_target_type,
            virtual_network_id,
            packet_length,
            priority,
            enabled,
            source_type,
            provider_config_ref,
            deletion_policy,
            management_policy: super::ManagementPolicy::Full,
            session_id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minimal() -> serde_json::Value {
        json!({
            "sources": {"nodeSelector": {"matchLabels": {"mirror": "on"}}},
            "sessionTemplate": {
                "trafficMirrorFilterId": "f-1",
                "trafficMirrorTargetId": "eni-t",
                "trafficMirrorTargetType": "eni",
                "priority": 1
            }
        })
    }

    #[test]
    fn minimal_spec_gets_documented_defaults() {
        let spec: TrafficMirrorSessionSetSpec = serde_json::from_value(minimal()).unwrap();
        assert_eq!(spec.max_sources_per_session, 10);
        let t = &spec.session_template;
        assert_eq!(
            (t.virtual_network_id, t.packet_length, t.enabled),
            (1, 96, false)
        );
        assert_eq!(t.provider_config_ref.name, "default");
        assert_eq!(t.deletion_policy, DeletionPolicy::Delete);
        assert!(spec.sources.port_tags.is_none() && spec.sources.vpc_id.is_none());
    }

    #[test]
    fn child_spec_is_the_template_with_sources_and_no_session_id() {
        let spec: TrafficMirrorSessionSetSpec = serde_json::from_value(minimal()).unwrap();
        let child = spec.session_template.child_spec(vec!["p-1".into()]);
        assert_eq!(child.traffic_mirror_sources, vec!["p-1".to_string()]);
        assert_eq!(child.session_id, None);
        assert_eq!(child.name, None);
        assert_eq!(child.priority, 1);
        assert_eq!(child.traffic_mirror_filter_id.as_deref(), Some("f-1"));
        let v = serde_json::to_value(&child).unwrap();
        assert!(v.get("sessionId").is_none());
    }

    #[test]
    fn the_name_rule_uses_max_set_name() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_string(&TrafficMirrorSessionSet::crd()).unwrap();
        assert!(crd.contains(&format!("size(self.metadata.name) <= {MAX_SET_NAME}")));
        assert!(crd.contains(&format!("at most {MAX_SET_NAME} characters")));
    }

    #[test]
    fn status_round_trips() {
        let status = TrafficMirrorSessionSetStatus {
            selected_ports: 3,
            sessions: 1,
            ready_sessions: 1,
            unresolved: vec![UnresolvedSource {
                node: "n".into(),
                reason: "Ambiguous".into(),
                message: "m".into(),
                candidates: vec!["a".into(), "b".into()],
            }],
            ..Default::default()
        };
        let v = serde_json::to_value(&status).unwrap();
        assert_eq!(v["selectedPorts"], 3);
        assert_eq!(v["unresolved"][0]["candidates"][1], "b");
        let back: TrafficMirrorSessionSetStatus = serde_json::from_value(v).unwrap();
        assert_eq!(back, status);
    }
}
