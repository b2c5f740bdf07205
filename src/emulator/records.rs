//! The record types: what the emulator stores and answers (sessions, filters, filter rules) and
//! [`Data`], the whole stored state. Plain data with serde derives and one cross-record check
//! ([`Data::require_filter`]), so that the storage (the `store` module) and the operations
//! (the `sessions`, `filters` and `rules` modules) can all depend on it without
//! depending on each other.

use serde::{Deserialize, Serialize};

use super::errors::{self, ApiError};

/// Inbound rule direction.
pub const INGRESS: &str = "ingress";
/// Outbound rule direction.
pub const EGRESS: &str = "egress";

/// Everything the emulator stores, each list in creation order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Data {
    /// Traffic mirror sessions.
    #[serde(default)]
    pub sessions: Vec<Session>,
    /// Traffic mirror filters.
    #[serde(default)]
    pub filters: Vec<Filter>,
    /// Traffic mirror filter rules.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Ports (network interfaces), seeded through the admin API.
    #[serde(default)]
    pub ports: Vec<Port>,
}

impl Data {
    /// 400 `VPC.1102` unless filter `id` exists in `project` (`field` names the referring field
    /// in the message). Sessions and rules both refer to filters.
    pub fn require_filter(&self, project: &str, field: &str, id: &str) -> Result<(), ApiError> {
        if self
            .filters
            .iter()
            .any(|f| f.project_id == project && f.id == id)
        {
            Ok(())
        } else {
            Err(ApiError::bad_request(
                errors::REFERENCED_FILTER_NOT_FOUND,
                format!("{field}: traffic mirror filter {id} does not exist"),
            ))
        }
    }

    /// 400 `VPC.1005` unless every id in `ids` is a port of `project` (sessions refer to ports
    /// as their sources; checked only with `--check-ports`).
    pub fn require_ports(
        &self,
        project: &str,
        field: &str,
        ids: &[String],
    ) -> Result<(), ApiError> {
        let known = |id: &String| {
            self.ports
                .iter()
                .any(|p| p.project_id == project && &p.id == id)
        };
        match ids.iter().find(|id| !known(id)) {
            None => Ok(()),
            Some(id) => Err(ApiError::bad_request(
                errors::SOURCE_PORT_NOT_FOUND,
                format!("{field}: port {id} does not exist"),
            )),
        }
    }
}

/// One private IP of a port (`PrivateIpInfo` in the SDK).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateIp {
    /// The IPv4/IPv6 subnet the address is in.
    #[serde(default)]
    pub subnet_cidr_id: String,
    /// The address.
    pub ip_address: String,
}

/// A tag of a port (`ResponseTag` in the SDK).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortTag {
    /// Tag key.
    pub key: String,
    /// Tag value (may be empty).
    #[serde(default)]
    pub value: String,
}

fn active() -> String {
    "ACTIVE".to_owned()
}

fn yes() -> bool {
    true
}

/// A port (network interface) in the SDK's `Port` shape. The fields the list filters use are
/// typed; any other field a test seeds (`mac_address`, `zone_id`, `binding:vif_type`, ...) is
/// kept in `extra` and answered as given, so seeded ports can carry the whole real shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Port {
    /// Port id (the mirror source id).
    pub id: String,
    /// Owning project (the emulator's project when not seeded).
    #[serde(default)]
    pub project_id: String,
    /// Name (may be empty).
    #[serde(default)]
    pub name: String,
    /// Description (may be empty).
    #[serde(default)]
    pub description: String,
    /// `ACTIVE` (default), `BUILD` or `DOWN`.
    #[serde(default = "active")]
    pub status: String,
    /// Administrative state (default `true`).
    #[serde(default = "yes")]
    pub admin_state_up: bool,
    /// The server (or other device) the port is attached to.
    pub device_id: String,
    /// `compute:<AZ>` for a server NIC.
    pub device_owner: String,
    /// The VPC of the port.
    pub vpc_id: String,
    /// The subnet (network) of the port.
    #[serde(default)]
    pub virsubnet_id: String,
    /// MAC address.
    #[serde(default)]
    pub mac_address: String,
    /// Private IPs.
    pub private_ips: Vec<PrivateIp>,
    /// Security group ids.
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// Instance id (e.g. the ECS id).
    #[serde(default)]
    pub instance_id: String,
    /// Instance type.
    #[serde(default)]
    pub instance_type: String,
    /// `binding:host_id`.
    #[serde(default, rename = "binding:host_id")]
    pub binding_host_id: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<PortTag>,
    /// Creation time (set when seeded without one).
    #[serde(default)]
    pub created_at: String,
    /// Last update time (set when seeded without one).
    #[serde(default)]
    pub updated_at: String,
    /// Every other field, answered as seeded.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A traffic mirror session, as stored and as answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// UUID.
    pub id: String,
    /// Owning project.
    pub project_id: String,
    /// Name (1-64 of letters, digits, `_-.`).
    pub name: String,
    /// Description (0-255, no `<>`).
    pub description: String,
    /// The filter deciding which traffic is mirrored.
    pub traffic_mirror_filter_id: String,
    /// ENI ids whose traffic is mirrored (at most 10).
    pub traffic_mirror_sources: Vec<String>,
    /// Where mirrored traffic goes.
    pub traffic_mirror_target_id: String,
    /// `eni` or `elb`.
    pub traffic_mirror_target_type: String,
    /// VNI of the mirrored traffic.
    pub virtual_network_id: i64,
    /// Maximum mirrored packet length.
    pub packet_length: i64,
    /// Session priority.
    pub priority: i64,
    /// Whether mirroring is on.
    pub enabled: bool,
    /// Source type (`eni`).
    #[serde(rename = "type")]
    pub source_type: String,
    /// Creation time, `YYYY-MM-DDThh:mm:ssZ`.
    pub created_at: String,
    /// Last update time, `YYYY-MM-DDThh:mm:ssZ`.
    pub updated_at: String,
}

/// A stored traffic mirror filter (its rules are stored separately, see `filters::view`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// UUID.
    pub id: String,
    /// Owning project.
    pub project_id: String,
    /// Name (1-64 of letters, digits, `_-.`).
    pub name: String,
    /// Description (0-255, no `<>`).
    pub description: String,
    /// Filter type.
    #[serde(rename = "type")]
    pub source_type: String,
    /// Creation time.
    pub created_at: String,
    /// Last update time.
    pub updated_at: String,
}

/// A traffic mirror filter rule, as stored and as answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// UUID.
    pub id: String,
    /// Owning project.
    pub project_id: String,
    /// Description (0-255, no `<>`).
    pub description: String,
    /// The filter the rule belongs to (immutable).
    pub traffic_mirror_filter_id: String,
    /// `ingress` or `egress` (immutable).
    pub direction: String,
    /// Source CIDR; left out of answers when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_cidr_block: Option<String>,
    /// Destination CIDR; left out of answers when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_cidr_block: Option<String>,
    /// Source ports (`80` or `80-200`); left out of answers when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_port_range: Option<String>,
    /// Destination ports; left out of answers when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_port_range: Option<String>,
    /// `IPv4` or `IPv6`.
    pub ethertype: String,
    /// `TCP`, `UDP`, `ICMP`, `ICMPV6` or `ALL` in any case, kept as sent (`tcp` stays `tcp`).
    pub protocol: String,
    /// `accept` (mirror) or `reject`.
    pub action: String,
    /// 1-65535, smaller wins.
    pub priority: i64,
    /// Creation time.
    pub created_at: String,
    /// Last update time.
    pub updated_at: String,
}

/// Minimal records for unit tests, so that the tests of one operation module need no other.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::{Filter, Rule, Session};

    const TS: &str = "2026-01-01T00:00:00Z";

    /// A filter `id` of `project`.
    pub(crate) fn filter(project: &str, id: &str) -> Filter {
        Filter {
            id: id.into(),
            project_id: project.into(),
            name: "f".into(),
            description: String::new(),
            source_type: "eni".into(),
            created_at: TS.into(),
            updated_at: TS.into(),
        }
    }

    /// An `ALL`/`IPv4` accept rule `id` of `filter`, in `direction`.
    pub(crate) fn rule(project: &str, id: &str, filter: &str, direction: &str) -> Rule {
        Rule {
            id: id.into(),
            project_id: project.into(),
            description: String::new(),
            traffic_mirror_filter_id: filter.into(),
            direction: direction.into(),
            source_cidr_block: None,
            destination_cidr_block: None,
            source_port_range: None,
            destination_port_range: None,
            ethertype: "IPv4".into(),
            protocol: "ALL".into(),
            action: "accept".into(),
            priority: 1,
            created_at: TS.into(),
            updated_at: TS.into(),
        }
    }

    /// A session `id` of `project` using `filter`, with no sources.
    pub(crate) fn session(project: &str, id: &str, filter: &str) -> Session {
        Session {
            id: id.into(),
            project_id: project.into(),
            name: "s".into(),
            description: String::new(),
            traffic_mirror_filter_id: filter.into(),
            traffic_mirror_sources: Vec::new(),
            traffic_mirror_target_id: "t".into(),
            traffic_mirror_target_type: "eni".into(),
            virtual_network_id: 1,
            packet_length: 96,
            priority: 1,
            enabled: false,
            source_type: "eni".into(),
            created_at: TS.into(),
            updated_at: TS.into(),
        }
    }
}
