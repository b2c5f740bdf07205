//! `TrafficMirrorSession`: one Huawei Cloud VPC traffic mirror session, declared in Kubernetes.
//!
//! Field names are the camelCase of the Huawei API names, and admission validation (OpenAPI ranges
//! and CEL rules) mirrors the cloud's documented constraints, so a bad manifest is rejected by the
//! API server instead of failing later at the cloud.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    Condition, DeletionPolicy, LocalObjectRef, ManagementPolicy, ProviderConfigRef,
};

/// The cloud's session name pattern: letters, Chinese characters, digits, `_`, `-` and `.`.
///
/// `\p{L}` (any Unicode letter, which covers Chinese characters) and `\p{N}` are understood by the
/// API server's regular expression engine (RE2); length is checked separately by `maxLength`.
pub const NAME_PATTERN: &str = r"^[\p{L}\p{N}_.-]+$";

/// Desired state of a Huawei Cloud VPC traffic mirror session.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "vpc.hwcloud.dev",
    version = "v1alpha1",
    kind = "TrafficMirrorSession",
    plural = "trafficmirrorsessions",
    namespaced,
    status = "TrafficMirrorSessionStatus",
    shortname = "tms",
    category = "hwcloud",
    derive = "PartialEq",
    doc = "A Huawei Cloud VPC traffic mirror session: copies the traffic of 1-100 source ENIs (10 under the cloud's default quota), selected by a traffic mirror filter, to a target ENI or private load balancer.",
    printcolumn(name = "Session-ID", type_ = "string", json_path = ".status.sessionId", description = "Id of the session in the cloud"),
    printcolumn(name = "Target-Type", type_ = "string", json_path = ".spec.trafficMirrorTargetType", description = "eni or elb"),
    printcolumn(name = "Priority", type_ = "integer", json_path = ".spec.priority", description = "Session priority (1-32766)"),
    printcolumn(name = "Enabled", type_ = "boolean", json_path = ".spec.enabled", description = "Whether mirroring is on"),
    printcolumn(name = "Ready", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].status"#, description = "The cloud session matches the spec"),
    printcolumn(name = "Reason", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].reason"#, description = "Why the session is (not) Ready"),
    printcolumn(name = "Synced", type_ = "string", json_path = r#".status.conditions[?(@.type=="Synced")].status"#, description = "The last reconcile succeeded"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("has(self.spec.name) || size(self.metadata.name) <= 64")
        .message("metadata.name must be at most 64 characters when spec.name is not set (it becomes the cloud name)"),
    // Ownership: an object keeps the cloud session it created or adopted (status.sessionId). A later
    // spec.sessionId naming another one would leak it, so it is refused here (status is the old one on a
    // spec update); only the first setting is checked, so objects from before this rule stay editable.
    validation = Rule::new("!has(self.spec.sessionId) || has(oldSelf.spec.sessionId) || !has(self.status) || !has(self.status.sessionId) || self.status.sessionId == self.spec.sessionId")
        .message("spec.sessionId must equal status.sessionId: this object already manages that cloud session; to manage another one, delete this object (spec.deletionPolicy: Orphan keeps its cloud session) and adopt the other with a new object")
        .field_path(".spec.sessionId")
)]
#[x_kube(
    validation = Rule::new("has(self.trafficMirrorFilterId) != has(self.trafficMirrorFilterRef)")
        .message("exactly one of spec.trafficMirrorFilterId or spec.trafficMirrorFilterRef must be set")
        .field_path(".trafficMirrorFilterId"),
    validation = Rule::new("!has(oldSelf.sessionId) || has(self.sessionId)")
        .message("spec.sessionId cannot be removed once set")
        .field_path(".sessionId"),
    validation = Rule::new("self.managementPolicy != 'ObserveOnly' || has(self.sessionId)")
        .message("spec.sessionId is required when spec.managementPolicy is ObserveOnly")
        .field_path(".sessionId")
)]
#[schemars(transform = super::schema::non_nullable)]
#[serde(rename_all = "camelCase")]
pub struct TrafficMirrorSessionSpec {
    /// Name of the session in the cloud: 1-64 characters, letters (Chinese included), digits, `_`,
    /// `-` and `.`. Default: the name of this Kubernetes object (then it must follow the same rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), pattern(NAME_PATTERN))]
    pub name: Option<String>,

    /// Description of the session: 0-255 characters, without `<` or `>`. Default: empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    #[x_kube(validation = Rule::new("!self.contains('<') && !self.contains('>')")
        .message("spec.description must not contain '<' or '>'"))]
    pub description: Option<String>,

    /// Id of the traffic mirror filter in the cloud that selects the mirrored traffic. Exactly one
    /// of trafficMirrorFilterId and trafficMirrorFilterRef must be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub traffic_mirror_filter_id: Option<String>,

    /// A TrafficMirrorFilter in this namespace whose cloud filter selects the mirrored traffic.
    /// Exactly one of trafficMirrorFilterId and trafficMirrorFilterRef must be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_mirror_filter_ref: Option<LocalObjectRef>,

    /// Ids of the elastic network interfaces (ENIs) whose traffic is mirrored: 1-100 distinct ids.
    /// The cloud's default quota is 10 per session; more needs a quota raised on request, and
    /// without it the cloud refuses the create or add-sources: condition Synced=False with the
    /// cloud's error code as its reason (e.g. VPC_1002), tried again after a spec change, not in a
    /// loop.
    #[schemars(length(min = 1, max = 100), inner(length(min = 1, max = 64)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub traffic_mirror_sources: Vec<String>,

    /// Id of the mirror target: an ENI id or a private load balancer id (see
    /// trafficMirrorTargetType). Required, 1-64 characters.
    #[schemars(length(min = 1, max = 64))]
    pub traffic_mirror_target_id: String,

    /// Kind of the mirror target: `eni` (elastic network interface) or `elb` (private load
    /// balancer). Required.
    pub traffic_mirror_target_type: TargetType,

    /// VXLAN network identifier (VNI) stamped on mirrored packets: 0-16777215. Default: 1.
    #[serde(default = "default_virtual_network_id")]
    #[schemars(range(min = 0, max = 16_777_215))]
    pub virtual_network_id: i64,

    /// Maximum length in bytes kept of each mirrored packet (its MTU): 1-1460. Default: 96.
    #[serde(default = "default_packet_length")]
    #[schemars(range(min = 1, max = 1460))]
    pub packet_length: i64,

    /// Priority of the session: 1-32766, a smaller number wins. Required.
    #[schemars(range(min = 1, max = 32766))]
    pub priority: i64,

    /// Whether mirroring is switched on. Default: false.
    #[serde(default)]
    pub enabled: bool,

    /// Kind of the mirror sources: `eni` (the only value). Default: `eni`.
    #[serde(rename = "type", default)]
    pub source_type: SourceType,

    /// The cluster-scoped ProviderConfig giving region, project and credentials.
    /// Default: `{name: default}`.
    #[serde(default)]
    pub provider_config_ref: ProviderConfigRef,

    /// What deleting this object does to the cloud session: `Delete` removes it, `Orphan` leaves
    /// it. Default: `Delete`.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// `Full` creates, updates and deletes the cloud session to match this spec; `ObserveOnly`
    /// only reads the session named by sessionId (then required) into status. Default: `Full`.
    #[serde(default)]
    pub management_policy: ManagementPolicy,

    /// Id of an existing cloud session to adopt (or observe) instead of creating one. Optional;
    /// once set it cannot be changed or removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self == oldSelf")
        .message("spec.sessionId is immutable once set"))]
    pub session_id: Option<String>,
}

fn default_virtual_network_id() -> i64 {
    1
}

fn default_packet_length() -> i64 {
    96
}

/// Kind of a session's mirror target.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TargetType {
    /// An elastic network interface.
    Eni,
    /// A private (internal) elastic load balancer.
    Elb,
}

impl TargetType {
    /// The value sent to and answered by the cloud API.
    pub fn as_str(&self) -> &'static str {
        match self {
            TargetType::Eni => "eni",
            TargetType::Elb => "elb",
        }
    }
}

/// Kind of a session's mirror sources.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceType {
    /// Elastic network interfaces (the only kind the API documents for sessions).
    #[default]
    Eni,
}

impl SourceType {
    /// The value sent to and answered by the cloud API.
    pub fn as_str(&self) -> &'static str {
        match self {
            SourceType::Eni => "eni",
        }
    }
}

/// Observed state of a traffic mirror session, written by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[schemars(transform = super::schema::strip_defaults)]
#[serde(rename_all = "camelCase")]
pub struct TrafficMirrorSessionStatus {
    /// Id of the cloud session this object manages, recorded as soon as it is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,

    /// The metadata.generation of the spec the status was last computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Conditions, keyed by type: `Ready` (the cloud session matches the spec), `Synced` (the last
    /// reconcile succeeded), and, only while `Ready` is False, `Reconciling` (the operator is still
    /// working toward the spec) or `Stalled` (it cannot progress until someone changes the spec,
    /// the cloud or the Secret).
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The session as last read from the cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_provider: Option<SessionObservation>,
}

super::common::managed_status!(TrafficMirrorSessionStatus, session_id);

/// A traffic mirror session as the cloud reports it (every field of the API's session object).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct SessionObservation {
    /// Id of the session.
    pub id: String,
    /// Project (tenant) the session belongs to.
    pub project_id: String,
    /// Name of the session.
    pub name: String,
    /// Description of the session.
    pub description: String,
    /// Id of the filter selecting the mirrored traffic.
    pub traffic_mirror_filter_id: String,
    /// Ids of the mirrored ENIs.
    pub traffic_mirror_sources: Vec<String>,
    /// Id of the mirror target.
    pub traffic_mirror_target_id: String,
    /// Kind of the mirror target (`eni` or `elb`).
    pub traffic_mirror_target_type: String,
    /// VXLAN network identifier of mirrored packets.
    pub virtual_network_id: i64,
    /// Maximum length kept of each mirrored packet.
    pub packet_length: i64,
    /// Priority of the session.
    pub priority: i64,
    /// Whether mirroring is switched on.
    pub enabled: bool,
    /// Kind of the mirror sources.
    #[serde(rename = "type")]
    pub source_type: String,
    /// Creation time (UTC, `YYYY-MM-DDThh:mm:ssZ`).
    pub created_at: String,
    /// Last update time (UTC, `YYYY-MM-DDThh:mm:ssZ`).
    pub updated_at: String,
}

impl TrafficMirrorSessionSpec {
    /// The session name used in the cloud: `spec.name`, or the object's name when unset (or empty).
    /// The one place this rule lives: the diff, the create intent and the name search all use it.
    pub fn cloud_name(&self, object_name: &str) -> String {
        self.name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| object_name.to_string())
    }
}

impl TrafficMirrorSession {
    /// The session name used in the cloud (see [`TrafficMirrorSessionSpec::cloud_name`]).
    pub fn cloud_name(&self) -> String {
        self.spec
            .cloud_name(self.metadata.name.as_deref().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minimal() -> serde_json::Value {
        json!({
            "trafficMirrorFilterId": "f-1",
            "trafficMirrorSources": ["eni-1"],
            "trafficMirrorTargetId": "eni-t",
            "trafficMirrorTargetType": "eni",
            "priority": 1
        })
    }

    #[test]
    fn minimal_spec_gets_documented_defaults() {
        let spec: TrafficMirrorSessionSpec = serde_json::from_value(minimal()).unwrap();
        assert_eq!(spec.virtual_network_id, 1);
        assert_eq!(spec.packet_length, 96);
        assert!(!spec.enabled);
        assert_eq!(spec.source_type, SourceType::Eni);
        assert_eq!(spec.provider_config_ref.name, "default");
        assert_eq!(spec.deletion_policy, DeletionPolicy::Delete);
        assert_eq!(spec.management_policy, ManagementPolicy::Full);
        assert_eq!(spec.session_id, None);
    }

    #[test]
    fn spec_round_trips_with_wire_names() {
        let mut v = minimal();
        v["type"] = json!("eni");
        v["trafficMirrorTargetType"] = json!("elb");
        v["sessionId"] = json!("s-1");
        let spec: TrafficMirrorSessionSpec = serde_json::from_value(v).unwrap();
        assert_eq!(spec.traffic_mirror_target_type, TargetType::Elb);
        let back = serde_json::to_value(&spec).unwrap();
        assert_eq!(back["type"], "eni");
        assert_eq!(back["trafficMirrorTargetType"], "elb");
        assert_eq!(back["sessionId"], "s-1");
        assert!(
            back.get("name").is_none(),
            "unset optional fields are omitted"
        );
        let again: TrafficMirrorSessionSpec = serde_json::from_value(back).unwrap();
        assert_eq!(again, spec);
    }

    #[test]
    fn enums_as_str_match_serde() {
        for t in [TargetType::Eni, TargetType::Elb] {
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        assert_eq!(
            serde_json::to_value(SourceType::Eni).unwrap(),
            SourceType::Eni.as_str()
        );
    }

    #[test]
    fn cloud_name_prefers_spec_name() {
        let spec: TrafficMirrorSessionSpec = serde_json::from_value(minimal()).unwrap();
        let mut s = TrafficMirrorSession::new("obj-name", spec);
        assert_eq!(s.cloud_name(), "obj-name");
        s.spec.name = Some("会话-1".into());
        assert_eq!(s.cloud_name(), "会话-1");
    }

    #[test]
    fn observation_tolerates_missing_fields() {
        let o: SessionObservation =
            serde_json::from_value(json!({"id": "s-1", "enabled": true})).unwrap();
        assert_eq!(o.id, "s-1");
        assert!(o.enabled);
        assert_eq!(o.packet_length, 0);
    }

    #[test]
    fn status_round_trips() {
        let status = TrafficMirrorSessionStatus {
            session_id: Some("s-1".into()),
            observed_generation: Some(3),
            conditions: vec![],
            at_provider: Some(SessionObservation {
                id: "s-1".into(),
                source_type: "eni".into(),
                ..Default::default()
            }),
        };
        let v = serde_json::to_value(&status).unwrap();
        assert_eq!(v["atProvider"]["type"], "eni");
        assert_eq!(v["sessionId"], "s-1");
        let back: TrafficMirrorSessionStatus = serde_json::from_value(v).unwrap();
        assert_eq!(back, status);
    }
}
