//! Wire models of the VPC v3 traffic-mirror API (field names are Huawei's, snake_case).
//!
//! Responses decode leniently: every field has a default, `null` means the default, and ints and
//! bools also decode from strings (`"96"`, `"true"`), because the documented types of some fields
//! differ between pages and SDKs. Requests are strict about what they send: `None` is omitted, ints
//! go out as JSON numbers and `enabled` as the string `"true"`/`"false"` (its documented type in the
//! create/update options). Request types decode leniently too, so the emulator can reuse them.

use serde::{Deserialize, Serialize};

/// Lenient field decoders (and the `enabled`-as-string encoder) shared by the models.
pub mod lenient {
    use serde::de::{DeserializeOwned, Error};
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_json::Value;

    fn value_to_string<E: Error>(v: Value) -> Result<Option<String>, E> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            Value::Number(n) => Ok(Some(n.to_string())),
            Value::Bool(b) => Ok(Some(b.to_string())),
            other => Err(E::custom(format!("expected a string, got {other}"))),
        }
    }

    fn value_to_i64<E: Error>(v: Value) -> Result<Option<i64>, E> {
        match v {
            Value::Null => Ok(None),
            Value::Number(n) => n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                        .map(|f| f as i64)
                })
                .map(Some)
                .ok_or_else(|| E::custom(format!("expected an integer, got {n}"))),
            Value::String(s) if s.trim().is_empty() => Ok(None),
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| E::custom(format!("expected an integer, got {s:?}"))),
            other => Err(E::custom(format!("expected an integer, got {other}"))),
        }
    }

    fn value_to_bool<E: Error>(v: Value) -> Result<Option<bool>, E> {
        match v {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(b)),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "" => Ok(None),
                "true" | "1" => Ok(Some(true)),
                "false" | "0" => Ok(Some(false)),
                _ => Err(E::custom(format!("expected a boolean, got {s:?}"))),
            },
            Value::Number(n) => match n.as_i64() {
                Some(1) => Ok(Some(true)),
                Some(0) => Ok(Some(false)),
                _ => Err(E::custom(format!("expected a boolean, got {n}"))),
            },
            other => Err(E::custom(format!("expected a boolean, got {other}"))),
        }
    }

    /// A string; `null` is empty; numbers and bools are taken as their text.
    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        value_to_string(Value::deserialize(d)?).map(Option::unwrap_or_default)
    }

    /// An optional string; `null` is `None`.
    pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        value_to_string(Value::deserialize(d)?)
    }

    /// An integer from a number or a numeric string; `null` is 0.
    pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        value_to_i64(Value::deserialize(d)?).map(Option::unwrap_or_default)
    }

    /// An optional integer from a number or a numeric string; `null`/`""` is `None`.
    pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        value_to_i64(Value::deserialize(d)?)
    }

    /// An optional `u32` (page sizes) from a number or a numeric string.
    pub fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        match value_to_i64(Value::deserialize(d)?)? {
            None => Ok(None),
            Some(n) => u32::try_from(n)
                .map(Some)
                .map_err(|_| D::Error::custom(format!("{n} is out of range"))),
        }
    }

    /// A bool from `true`/`false`, `"true"`/`"false"` (any case), `"1"`/`"0"` or `1`/`0`;
    /// `null` is false.
    pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        value_to_bool(Value::deserialize(d)?).map(Option::unwrap_or_default)
    }

    /// An optional bool, as [`bool`]; `null`/`""` is `None`.
    pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        value_to_bool(Value::deserialize(d)?)
    }

    /// A list of strings; `null` is empty; elements decode as [`string`].
    pub fn vec_string<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(Vec::new()),
            Value::Array(items) => items
                .into_iter()
                .map(|v| value_to_string(v).map(Option::unwrap_or_default))
                .collect(),
            // a single id where a list was expected
            other => value_to_string(other).map(|s| s.into_iter().collect()),
        }
    }

    /// Any `Default` type, with `null` meaning the default.
    pub fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: DeserializeOwned + Default,
    {
        Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
    }

    /// Writes `Some(true)` as `"true"` (the documented string type of `enabled` in options).
    /// Only called for `Some` (the fields skip `None`).
    pub fn bool_as_string<S: Serializer>(v: &Option<bool>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_str(if *b { "true" } else { "false" }),
            None => s.serialize_none(),
        }
    }
}

/// A traffic mirror session as the cloud answers it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficMirrorSession {
    /// Session id (UUID).
    #[serde(default, deserialize_with = "lenient::string")]
    pub id: String,
    /// Owning project.
    #[serde(default, deserialize_with = "lenient::string")]
    pub project_id: String,
    /// Name (1-64 chars).
    #[serde(default, deserialize_with = "lenient::string")]
    pub name: String,
    /// Description (0-255 chars).
    #[serde(default, deserialize_with = "lenient::string")]
    pub description: String,
    /// The filter deciding which packets are mirrored.
    #[serde(default, deserialize_with = "lenient::string")]
    pub traffic_mirror_filter_id: String,
    /// Mirrored ENI ids.
    #[serde(default, deserialize_with = "lenient::vec_string")]
    pub traffic_mirror_sources: Vec<String>,
    /// Mirror destination id.
    #[serde(default, deserialize_with = "lenient::string")]
    pub traffic_mirror_target_id: String,
    /// `eni` or `elb`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub traffic_mirror_target_type: String,
    /// VNI (0-16777215).
    #[serde(default, deserialize_with = "lenient::i64")]
    pub virtual_network_id: i64,
    /// Mirrored packet length (1-1460).
    #[serde(default, deserialize_with = "lenient::i64")]
    pub packet_length: i64,
    /// Priority (1-32766).
    #[serde(default, deserialize_with = "lenient::i64")]
    pub priority: i64,
    /// Whether mirroring is on.
    #[serde(default, deserialize_with = "lenient::bool")]
    pub enabled: bool,
    /// Source type (`eni`).
    #[serde(rename = "type", default, deserialize_with = "lenient::string")]
    pub source_type: String,
    /// Creation time (`YYYY-MM-DDThh:mm:ssZ`).
    #[serde(default, deserialize_with = "lenient::string")]
    pub created_at: String,
    /// Last update time.
    #[serde(default, deserialize_with = "lenient::string")]
    pub updated_at: String,
}

/// `CreateTrafficMirrorSessionOption`: the body of a create (required fields are not `Option`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateSessionRequest {
    /// Name (required).
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    /// Description.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub description: Option<String>,
    /// Filter id (required).
    #[serde(deserialize_with = "lenient::string")]
    pub traffic_mirror_filter_id: String,
    /// Source ENI ids (required).
    #[serde(deserialize_with = "lenient::vec_string")]
    pub traffic_mirror_sources: Vec<String>,
    /// Target id (required).
    #[serde(deserialize_with = "lenient::string")]
    pub traffic_mirror_target_id: String,
    /// Target type `eni`/`elb` (required).
    #[serde(deserialize_with = "lenient::string")]
    pub traffic_mirror_target_type: String,
    /// VNI; absent means 1.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_i64"
    )]
    pub virtual_network_id: Option<i64>,
    /// Packet length; absent means 96.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_i64"
    )]
    pub packet_length: Option<i64>,
    /// Priority (required).
    #[serde(deserialize_with = "lenient::i64")]
    pub priority: i64,
    /// Enabled; sent as `"true"`/`"false"`; absent means false.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "lenient::bool_as_string",
        deserialize_with = "lenient::opt_bool"
    )]
    pub enabled: Option<bool>,
    /// Source type (`eni`).
    #[serde(
        rename = "type",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub source_type: Option<String>,
}

/// `UpdateTrafficMirrorSessionOption`: only the `Some` fields are sent, and only they change.
/// Sources are not here: they change only through add/remove-sources.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateSessionRequest {
    /// New name.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub name: Option<String>,
    /// New description.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub description: Option<String>,
    /// New filter id.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub traffic_mirror_filter_id: Option<String>,
    /// New target id.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub traffic_mirror_target_id: Option<String>,
    /// New target type.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub traffic_mirror_target_type: Option<String>,
    /// New VNI.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_i64"
    )]
    pub virtual_network_id: Option<i64>,
    /// New packet length.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_i64"
    )]
    pub packet_length: Option<i64>,
    /// New priority.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_i64"
    )]
    pub priority: Option<i64>,
    /// New enabled state; sent as `"true"`/`"false"`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "lenient::bool_as_string",
        deserialize_with = "lenient::opt_bool"
    )]
    pub enabled: Option<bool>,
    /// Source type (accepted on update, as Terraform sends it).
    #[serde(
        rename = "type",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub source_type: Option<String>,
}

/// Body of add-sources / remove-sources (inside `traffic_mirror_session`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSourcesRequest {
    /// ENI ids to add or remove.
    #[serde(default, deserialize_with = "lenient::vec_string")]
    pub traffic_mirror_sources: Vec<String>,
}

/// A traffic mirror filter rule as the cloud answers it. Unset CIDRs and port ranges are absent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficMirrorFilterRule {
    /// Rule id.
    #[serde(default, deserialize_with = "lenient::string")]
    pub id: String,
    /// Owning project.
    #[serde(default, deserialize_with = "lenient::string")]
    pub project_id: String,
    /// Description.
    #[serde(default, deserialize_with = "lenient::string")]
    pub description: String,
    /// The filter this rule belongs to (immutable).
    #[serde(default, deserialize_with = "lenient::string")]
    pub traffic_mirror_filter_id: String,
    /// `ingress` or `egress` (immutable).
    #[serde(default, deserialize_with = "lenient::string")]
    pub direction: String,
    /// Source CIDR, if restricted.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub source_cidr_block: Option<String>,
    /// Destination CIDR, if restricted.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub destination_cidr_block: Option<String>,
    /// Source port range (`80-200` or `80`), if restricted.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub source_port_range: Option<String>,
    /// Destination port range, if restricted.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub destination_port_range: Option<String>,
    /// `IPv4` or `IPv6`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub ethertype: String,
    /// `TCP`, `UDP`, `ICMP`, `ICMPV6` or `ALL`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub protocol: String,
    /// `accept` (mirror) or `reject`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub action: String,
    /// Priority (1-65535, smaller wins).
    #[serde(default, deserialize_with = "lenient::i64")]
    pub priority: i64,
    /// Creation time.
    #[serde(default, deserialize_with = "lenient::string")]
    pub created_at: String,
    /// Last update time.
    #[serde(default, deserialize_with = "lenient::string")]
    pub updated_at: String,
}

/// A traffic mirror filter as the cloud answers it, with its rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficMirrorFilter {
    /// Filter id.
    #[serde(default, deserialize_with = "lenient::string")]
    pub id: String,
    /// Owning project.
    #[serde(default, deserialize_with = "lenient::string")]
    pub project_id: String,
    /// Name.
    #[serde(default, deserialize_with = "lenient::string")]
    pub name: String,
    /// Description.
    #[serde(default, deserialize_with = "lenient::string")]
    pub description: String,
    /// Ingress rules.
    #[serde(default, deserialize_with = "lenient::null_default")]
    pub ingress_rules: Vec<TrafficMirrorFilterRule>,
    /// Egress rules.
    #[serde(default, deserialize_with = "lenient::null_default")]
    pub egress_rules: Vec<TrafficMirrorFilterRule>,
    /// Filter type.
    #[serde(rename = "type", default, deserialize_with = "lenient::string")]
    pub source_type: String,
    /// Creation time.
    #[serde(default, deserialize_with = "lenient::string")]
    pub created_at: String,
    /// Last update time.
    #[serde(default, deserialize_with = "lenient::string")]
    pub updated_at: String,
}

/// Body of a filter create.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateFilterRequest {
    /// Name (required).
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    /// Description.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub description: Option<String>,
}

/// Body of a filter update; only `Some` fields are sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateFilterRequest {
    /// New name.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub name: Option<String>,
    /// New description.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub description: Option<String>,
}

/// Body of a rule create (`traffic_mirror_filter_id` and `direction` required).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRuleRequest {
    /// The filter to add the rule to.
    #[serde(deserialize_with = "lenient::string")]
    pub traffic_mirror_filter_id: String,
    /// `ingress` or `egress`.
    #[serde(deserialize_with = "lenient::string")]
    pub direction: String,
    /// Protocol.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub protocol: Option<String>,
    /// `IPv4`/`IPv6`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub ethertype: Option<String>,
    /// Source CIDR.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub source_cidr_block: Option<String>,
    /// Destination CIDR.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub destination_cidr_block: Option<String>,
    /// Source port range.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub source_port_range: Option<String>,
    /// Destination port range.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub destination_port_range: Option<String>,
    /// `accept`/`reject`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub action: Option<String>,
    /// Priority.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_i64"
    )]
    pub priority: Option<i64>,
    /// Description.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub description: Option<String>,
}

/// Body of a rule update: everything but filter id and direction; only `Some` fields are sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateRuleRequest {
    /// Protocol.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub protocol: Option<String>,
    /// `IPv4`/`IPv6`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub ethertype: Option<String>,
    /// Source CIDR.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub source_cidr_block: Option<String>,
    /// Destination CIDR.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub destination_cidr_block: Option<String>,
    /// Source port range.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub source_port_range: Option<String>,
    /// Destination port range.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub destination_port_range: Option<String>,
    /// `accept`/`reject`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub action: Option<String>,
    /// Priority.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_i64"
    )]
    pub priority: Option<i64>,
    /// Description.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub description: Option<String>,
}

/// Pagination info of a list answer. `next_marker` is absent on the last page.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageInfo {
    /// First id on this page.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub previous_marker: Option<String>,
    /// Number of items on this page.
    #[serde(default, deserialize_with = "lenient::i64")]
    pub current_count: i64,
    /// Last id on this page; pass as `marker` to get the next page. Absent on the last page.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub next_marker: Option<String>,
}

/// A Huawei error body: `{"request_id", "error_code", "error_msg"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Request id of the failed call.
    #[serde(default, deserialize_with = "lenient::string")]
    pub request_id: String,
    /// Service error code, e.g. `VPC.0101` or `APIGW.0301`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub error_code: String,
    /// Human-readable message.
    #[serde(default, deserialize_with = "lenient::string")]
    pub error_msg: String,
}

impl ErrorBody {
    /// Read an error body in any of the shapes Huawei services use: the flat
    /// `{error_code, error_msg, request_id}`, the nested `{"error": {code, message, request_id}}`,
    /// or a flat `{code, message}`. `None` when the body is not JSON or carries neither a code nor a
    /// message.
    pub fn parse(body: &[u8]) -> Option<ErrorBody> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let obj = v.as_object()?;
        let text = |o: &serde_json::Map<String, serde_json::Value>, keys: &[&str]| {
            keys.iter()
                .find_map(|k| match o.get(*k) {
                    Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
                    Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                })
                .unwrap_or_default()
        };
        let mut e = ErrorBody {
            request_id: text(obj, &["request_id"]),
            error_code: text(obj, &["error_code", "code"]),
            error_msg: text(obj, &["error_msg", "message", "error_description"]),
        };
        if let Some(inner) = obj.get("error").and_then(|x| x.as_object()) {
            if e.error_code.is_empty() {
                e.error_code = text(inner, &["error_code", "code"]);
            }
            if e.error_msg.is_empty() {
                e.error_msg = text(inner, &["error_msg", "message"]);
            }
            if e.request_id.is_empty() {
                e.request_id = text(inner, &["request_id"]);
            }
        } else if e.error_msg.is_empty()
            && let Some(serde_json::Value::String(s)) = obj.get("error")
        {
            e.error_msg = s.clone();
        }
        (!e.error_code.is_empty() || !e.error_msg.is_empty()).then_some(e)
    }
}

/// `{"traffic_mirror_session": T}`: the request envelope of session calls.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEnvelope<T> {
    /// The wrapped option or session.
    pub traffic_mirror_session: T,
}

/// `{"traffic_mirror_filter": T}`: the request envelope of filter calls.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterEnvelope<T> {
    /// The wrapped option or filter.
    pub traffic_mirror_filter: T,
}

/// `{"traffic_mirror_filter_rule": T}`: the request envelope of rule calls.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleEnvelope<T> {
    /// The wrapped option or rule.
    pub traffic_mirror_filter_rule: T,
}

/// `{"traffic_mirror_filter_rules": [T, …]}`: the body and the answer of
/// `BatchCreateTrafficMirrorFilterRules` (`POST traffic-mirror-filters/{id}/traffic-mirror-filter-rules/batch-create`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRulesEnvelope<T> {
    /// The rules to create (body), or the rules created (answer), in the same order.
    pub traffic_mirror_filter_rules: Vec<T>,
}

/// One item of a batch rule create: the fields of a single create without
/// `traffic_mirror_filter_id`, which the path names.
pub fn batch_rule_item(req: &CreateRuleRequest) -> serde_json::Value {
    let mut v = serde_json::to_value(req).unwrap_or_default();
    if let Some(map) = v.as_object_mut() {
        map.remove("traffic_mirror_filter_id");
    }
    v
}

/// Answer of create/show/update/add-sources/remove-sources of a session.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionResponse {
    /// The session.
    pub traffic_mirror_session: TrafficMirrorSession,
    /// Request id.
    #[serde(default, deserialize_with = "lenient::string")]
    pub request_id: String,
}

/// Answer of a session list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionListResponse {
    /// The sessions on this page.
    #[serde(deserialize_with = "lenient::null_default")]
    pub traffic_mirror_sessions: Vec<TrafficMirrorSession>,
    /// Pagination.
    #[serde(default, deserialize_with = "lenient::null_default")]
    pub page_info: PageInfo,
    /// Request id.
    #[serde(default, deserialize_with = "lenient::string")]
    pub request_id: String,
}

/// Answer of create/show/update of a filter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterResponse {
    /// The filter.
    pub traffic_mirror_filter: TrafficMirrorFilter,
    /// Request id.
    #[serde(default, deserialize_with = "lenient::string")]
    pub request_id: String,
}

/// Answer of a filter list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterListResponse {
    /// The filters on this page.
    #[serde(deserialize_with = "lenient::null_default")]
    pub traffic_mirror_filters: Vec<TrafficMirrorFilter>,
    /// Pagination.
    #[serde(default, deserialize_with = "lenient::null_default")]
    pub page_info: PageInfo,
    /// Request id.
    #[serde(default, deserialize_with = "lenient::string")]
    pub request_id: String,
}

/// Answer of create/show/update of a rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleResponse {
    /// The rule.
    pub traffic_mirror_filter_rule: TrafficMirrorFilterRule,
    /// Request id.
    #[serde(default, deserialize_with = "lenient::string")]
    pub request_id: String,
}

/// Answer of a rule list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleListResponse {
    /// The rules on this page.
    #[serde(deserialize_with = "lenient::null_default")]
    pub traffic_mirror_filter_rules: Vec<TrafficMirrorFilterRule>,
    /// Pagination.
    #[serde(default, deserialize_with = "lenient::null_default")]
    pub page_info: PageInfo,
    /// Request id.
    #[serde(default, deserialize_with = "lenient::string")]
    pub request_id: String,
}

/// A list query's `key=value` pairs, in a fixed order (unencoded; the client encodes them).
pub trait ListQuery: Clone + Send + Sync + 'static {
    /// The documented filters that are set, plus `limit` and `marker`.
    fn pairs(&self) -> Vec<(&'static str, String)>;
    /// The page marker (id of the last item of the previous page).
    fn marker(&self) -> Option<&str>;
    /// Set the page marker.
    fn set_marker(&mut self, marker: Option<String>);
}

fn push<T: ToString>(out: &mut Vec<(&'static str, String)>, key: &'static str, v: &Option<T>) {
    if let Some(v) = v {
        out.push((key, v.to_string()));
    }
}

macro_rules! list_query {
    (
        $(#[$meta:meta])*
        $name:ident {
            strings: [$($s:ident => $sk:literal),* $(,)?],
            ints: [$($i:ident => $ik:literal),* $(,)?],
            bools: [$($b:ident => $bk:literal),* $(,)?] $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct $name {
            $(
                #[doc = concat!("Exact-match filter on `", $sk, "`.")]
                #[serde(rename = $sk, default, skip_serializing_if = "Option::is_none",
                        deserialize_with = "lenient::opt_string")]
                pub $s: Option<String>,
            )*
            $(
                #[doc = concat!("Exact-match filter on `", $ik, "`.")]
                #[serde(rename = $ik, default, skip_serializing_if = "Option::is_none",
                        deserialize_with = "lenient::opt_i64")]
                pub $i: Option<i64>,
            )*
            $(
                #[doc = concat!("Exact-match filter on `", $bk, "`.")]
                #[serde(rename = $bk, default, skip_serializing_if = "Option::is_none",
                        deserialize_with = "lenient::opt_bool")]
                pub $b: Option<bool>,
            )*
            /// Page size (0-2000); the server's default when absent.
            #[serde(default, skip_serializing_if = "Option::is_none",
                    deserialize_with = "lenient::opt_u32")]
            pub limit: Option<u32>,
            /// Id of the last item of the previous page.
            #[serde(default, skip_serializing_if = "Option::is_none",
                    deserialize_with = "lenient::opt_string")]
            pub marker: Option<String>,
        }

        impl ListQuery for $name {
            fn pairs(&self) -> Vec<(&'static str, String)> {
                let mut out = Vec::new();
                $( push(&mut out, $sk, &self.$s); )*
                $( push(&mut out, $ik, &self.$i); )*
                $( push(&mut out, $bk, &self.$b); )*
                push(&mut out, "limit", &self.limit);
                push(&mut out, "marker", &self.marker);
                out
            }
            fn marker(&self) -> Option<&str> {
                self.marker.as_deref()
            }
            fn set_marker(&mut self, marker: Option<String>) {
                self.marker = marker;
            }
        }
    };
}

list_query! {
    /// Filters of `GET /traffic-mirror-sessions` (all exact matches).
    ListSessionsQuery {
        strings: [
            id => "id",
            name => "name",
            description => "description",
            traffic_mirror_filter_id => "traffic_mirror_filter_id",
            traffic_mirror_target_id => "traffic_mirror_target_id",
            traffic_mirror_target_type => "traffic_mirror_target_type",
            source_type => "type",
            created_at => "created_at",
            updated_at => "updated_at",
        ],
        ints: [
            virtual_network_id => "virtual_network_id",
            packet_length => "packet_length",
            priority => "priority",
        ],
        bools: [enabled => "enabled"],
    }
}

list_query! {
    /// Filters of `GET /traffic-mirror-filters` (all exact matches).
    ListFiltersQuery {
        strings: [
            id => "id",
            name => "name",
            description => "description",
            created_at => "created_at",
            updated_at => "updated_at",
        ],
        ints: [],
        bools: [],
    }
}

list_query! {
    /// Filters of `GET /traffic-mirror-filter-rules` (all exact matches).
    ListRulesQuery {
        strings: [
            id => "id",
            description => "description",
            traffic_mirror_filter_id => "traffic_mirror_filter_id",
            direction => "direction",
            protocol => "protocol",
            source_cidr_block => "source_cidr_block",
            destination_cidr_block => "destination_cidr_block",
            source_port_range => "source_port_range",
            destination_port_range => "destination_port_range",
            action => "action",
        ],
        ints: [priority => "priority"],
        bools: [],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SEED_ANSWER: &str = r#"{
        "traffic_mirror_session": {
            "name": "test-session",
            "created_at": "2023-03-23T10:53:12Z",
            "updated_at": "2023-03-23T10:56:54Z",
            "id": "16538eda-7e94-4b90-b5f3-a653f62dc817",
            "project_id": "7365fcd452924e398ec4cc1fe39c0d12",
            "description": "",
            "traffic_mirror_filter_id": "b765ba87-c0b4-4f1a-9ec3-d5b1d1ddb137",
            "traffic_mirror_sources": ["6134900d-31a6-4b71-8453-dbca7f26982a"],
            "traffic_mirror_target_id": "c9f8acef-d550-4fbe-be7c-e8bfd3501dc1",
            "traffic_mirror_target_type": "elb",
            "virtual_network_id": 1,
            "packet_length": 96,
            "priority": 11,
            "enabled": true,
            "type": "eni"
        },
        "request_id": "a7ee4a0e-12e9-457a-b739-46bffb2e7bbb"
    }"#;

    #[test]
    fn decodes_the_documented_answer() {
        let r: SessionResponse = serde_json::from_str(SEED_ANSWER).unwrap();
        let s = &r.traffic_mirror_session;
        assert_eq!(s.id, "16538eda-7e94-4b90-b5f3-a653f62dc817");
        assert_eq!(s.traffic_mirror_target_type, "elb");
        assert_eq!(s.traffic_mirror_sources.len(), 1);
        assert_eq!(
            (s.virtual_network_id, s.packet_length, s.priority),
            (1, 96, 11)
        );
        assert!(s.enabled);
        assert_eq!(s.source_type, "eni");
        assert_eq!(r.request_id, "a7ee4a0e-12e9-457a-b739-46bffb2e7bbb");
        // and re-encodes in the answer's own types
        let back = serde_json::to_value(s).unwrap();
        assert_eq!(back["enabled"], json!(true));
        assert_eq!(back["packet_length"], json!(96));
        assert_eq!(back["type"], json!("eni"));
    }

    #[test]
    fn session_decoding_is_tolerant() {
        let s: TrafficMirrorSession = serde_json::from_value(json!({
            "id": "x", "enabled": "true", "packet_length": "128", "priority": 5.0,
            "description": null, "traffic_mirror_sources": null, "virtual_network_id": null,
            "unknown_field": {"nested": 1}
        }))
        .unwrap();
        assert!(s.enabled);
        assert_eq!(s.packet_length, 128);
        assert_eq!(s.priority, 5);
        assert_eq!(s.description, "");
        assert!(s.traffic_mirror_sources.is_empty());
        assert_eq!(s.virtual_network_id, 0);
        let s: TrafficMirrorSession = serde_json::from_value(json!({"enabled": "False"})).unwrap();
        assert!(!s.enabled);
        let s: TrafficMirrorSession = serde_json::from_value(json!({"enabled": 1})).unwrap();
        assert!(s.enabled);
        let s: TrafficMirrorSession = serde_json::from_value(json!({})).unwrap();
        assert_eq!(s, TrafficMirrorSession::default());
        assert!(
            serde_json::from_value::<TrafficMirrorSession>(json!({"enabled": "maybe"})).is_err()
        );
        assert!(
            serde_json::from_value::<TrafficMirrorSession>(json!({"priority": "ten"})).is_err()
        );
    }

    #[test]
    fn create_request_wire_form() {
        let req = CreateSessionRequest {
            name: "web-tap".into(),
            traffic_mirror_filter_id: "f".into(),
            traffic_mirror_sources: vec!["eni-1".into(), "eni-2".into()],
            traffic_mirror_target_id: "t".into(),
            traffic_mirror_target_type: "eni".into(),
            priority: 10,
            ..Default::default()
        };
        // None fields are omitted: exactly the SDK's body of the recorded `create_session` vector
        assert_eq!(
            serde_json::to_value(SessionEnvelope {
                traffic_mirror_session: &req
            })
            .unwrap(),
            json!({"traffic_mirror_session": {"name": "web-tap", "traffic_mirror_filter_id": "f",
                "traffic_mirror_sources": ["eni-1", "eni-2"], "traffic_mirror_target_id": "t",
                "traffic_mirror_target_type": "eni", "priority": 10}})
        );
        let full = CreateSessionRequest {
            description: Some("d".into()),
            virtual_network_id: Some(7),
            packet_length: Some(100),
            enabled: Some(true),
            source_type: Some("eni".into()),
            ..req
        };
        let v = serde_json::to_value(&full).unwrap();
        assert_eq!(v["enabled"], json!("true"));
        assert_eq!(v["virtual_network_id"], json!(7));
        assert_eq!(v["packet_length"], json!(100));
        assert_eq!(v["type"], json!("eni"));
        // round trip, and the SDK's string forms decode too
        assert_eq!(
            serde_json::from_value::<CreateSessionRequest>(v).unwrap(),
            full
        );
        let sdk: CreateSessionRequest = serde_json::from_value(json!({
            "name": "n", "traffic_mirror_filter_id": "f", "traffic_mirror_sources": [],
            "traffic_mirror_target_id": "t", "traffic_mirror_target_type": "eni",
            "priority": "3", "virtual_network_id": "9", "enabled": false
        }))
        .unwrap();
        assert_eq!(sdk.priority, 3);
        assert_eq!(sdk.virtual_network_id, Some(9));
        assert_eq!(sdk.enabled, Some(false));
        // required fields are required
        assert!(serde_json::from_value::<CreateSessionRequest>(json!({"name": "n"})).is_err());
    }

    #[test]
    fn update_request_sends_only_some_fields() {
        let u = UpdateSessionRequest {
            traffic_mirror_target_id: Some("c9f8acef-d550-4fbe-be7c-e8bfd3501dc1".into()),
            traffic_mirror_target_type: Some("elb".into()),
            ..Default::default()
        };
        // byte for byte the seed example's body (modulo the SDK's ", " separators)
        assert_eq!(
            serde_json::to_string(&SessionEnvelope {
                traffic_mirror_session: &u
            })
            .unwrap(),
            r#"{"traffic_mirror_session":{"traffic_mirror_target_id":"c9f8acef-d550-4fbe-be7c-e8bfd3501dc1","traffic_mirror_target_type":"elb"}}"#
        );
        let e = UpdateSessionRequest {
            enabled: Some(false),
            priority: Some(2),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"enabled": "false", "priority": 2})
        );
        assert_eq!(
            serde_json::to_value(UpdateSessionRequest::default()).unwrap(),
            json!({})
        );
    }

    #[test]
    fn rules_and_filters() {
        let r: TrafficMirrorFilterRule = serde_json::from_value(json!({
            "id": "r", "direction": "ingress", "protocol": "TCP", "ethertype": "IPv4",
            "action": "accept", "priority": 1, "destination_port_range": "80-200",
            "source_cidr_block": null
        }))
        .unwrap();
        assert_eq!(r.destination_port_range.as_deref(), Some("80-200"));
        assert_eq!(r.source_cidr_block, None);
        let v = serde_json::to_value(&r).unwrap();
        assert!(
            v.get("source_cidr_block").is_none(),
            "unset CIDR omitted: {v}"
        );
        let f: FilterResponse = serde_json::from_value(json!({
            "traffic_mirror_filter": {"id": "f", "name": "n", "ingress_rules": [v], "egress_rules": null},
            "request_id": "q"
        }))
        .unwrap();
        assert_eq!(f.traffic_mirror_filter.ingress_rules, vec![r]);
        assert!(f.traffic_mirror_filter.egress_rules.is_empty());
        let c = CreateRuleRequest {
            traffic_mirror_filter_id: "f".into(),
            direction: "egress".into(),
            priority: Some(3),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            json!({"traffic_mirror_filter_id": "f", "direction": "egress", "priority": 3})
        );
        assert_eq!(
            serde_json::to_value(UpdateRuleRequest::default()).unwrap(),
            json!({})
        );
        assert_eq!(
            serde_json::to_value(CreateFilterRequest {
                name: "n".into(),
                description: None
            })
            .unwrap(),
            json!({"name": "n"})
        );
    }

    #[test]
    fn list_answers_and_page_info() {
        let l: SessionListResponse = serde_json::from_value(json!({
            "traffic_mirror_sessions": [{"id": "a"}, {"id": "b"}],
            "page_info": {"previous_marker": "a", "current_count": 2, "next_marker": "b"},
            "request_id": "r"
        }))
        .unwrap();
        assert_eq!(l.traffic_mirror_sessions.len(), 2);
        assert_eq!(l.page_info.next_marker.as_deref(), Some("b"));
        let last: SessionListResponse =
            serde_json::from_value(json!({"traffic_mirror_sessions": [], "page_info": null}))
                .unwrap();
        assert_eq!(last.page_info, PageInfo::default());
        // the list key itself is required: an answer without it is not a list answer
        assert!(serde_json::from_value::<SessionListResponse>(json!({"request_id": "r"})).is_err());
    }

    #[test]
    fn list_query_pairs() {
        let q = ListSessionsQuery {
            name: Some("web tap".into()),
            source_type: Some("eni".into()),
            priority: Some(10),
            enabled: Some(true),
            limit: Some(50),
            marker: Some("m".into()),
            ..Default::default()
        };
        assert_eq!(
            q.pairs(),
            vec![
                ("name", "web tap".to_string()),
                ("type", "eni".to_string()),
                ("priority", "10".to_string()),
                ("enabled", "true".to_string()),
                ("limit", "50".to_string()),
                ("marker", "m".to_string()),
            ]
        );
        assert!(ListFiltersQuery::default().pairs().is_empty());
        let mut r = ListRulesQuery {
            traffic_mirror_filter_id: Some("f".into()),
            ..Default::default()
        };
        r.set_marker(Some("x".into()));
        assert_eq!(r.marker(), Some("x"));
        assert_eq!(
            r.pairs(),
            vec![
                ("traffic_mirror_filter_id", "f".to_string()),
                ("marker", "x".to_string())
            ]
        );
        // string-typed query values (as a URL query decoder yields them) decode
        let d: ListSessionsQuery = serde_json::from_value(json!({
            "limit": "7", "priority": "3", "enabled": "false", "type": "eni"
        }))
        .unwrap();
        assert_eq!(d.limit, Some(7));
        assert_eq!(d.priority, Some(3));
        assert_eq!(d.enabled, Some(false));
        assert_eq!(d.source_type.as_deref(), Some("eni"));
        assert!(serde_json::from_value::<ListSessionsQuery>(json!({"limit": "-1"})).is_err());
    }

    #[test]
    fn error_body_shapes() {
        let e = ErrorBody::parse(
            br#"{"request_id":"r1","error_code":"VPC.0101","error_msg":"not found"}"#,
        )
        .unwrap();
        assert_eq!(
            e,
            ErrorBody {
                request_id: "r1".into(),
                error_code: "VPC.0101".into(),
                error_msg: "not found".into()
            }
        );
        let e =
            ErrorBody::parse(br#"{"error":{"code":"APIGW.0308","message":"throttled"}}"#).unwrap();
        assert_eq!(
            (e.error_code.as_str(), e.error_msg.as_str()),
            ("APIGW.0308", "throttled")
        );
        let e = ErrorBody::parse(br#"{"code":"X","message":"m","request_id":"r"}"#).unwrap();
        assert_eq!((e.error_code.as_str(), e.request_id.as_str()), ("X", "r"));
        let e = ErrorBody::parse(br#"{"error":"bad thing"}"#).unwrap();
        assert_eq!(e.error_msg, "bad thing");
        assert_eq!(ErrorBody::parse(b""), None);
        assert_eq!(ErrorBody::parse(b"<html>502</html>"), None);
        assert_eq!(ErrorBody::parse(b"[1,2]"), None);
        assert_eq!(ErrorBody::parse(br#"{"request_id":"r"}"#), None);
    }
}
