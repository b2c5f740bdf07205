//! Traffic mirror filter rules: create, update, delete, with the documented enums and formats.
//!
//! - Required on create: `traffic_mirror_filter_id` (must exist, else 400 `VPC.1102`) and
//!   `direction`, as the shared reference says. Huawei's newer pages also mark `protocol`,
//!   `ethertype`, `action` and `priority` mandatory; the emulator defaults them instead
//!   (`ALL`, `IPv4`, `accept`, `1`) so either kind of client works.
//! - `protocol` is matched case-insensitively and kept exactly as sent, trimmed (`tcp` is answered
//!   `tcp`, `TCP` is answered `TCP`): the real API does this, and Terraform's acceptance tests
//!   send `tcp`/`all` and read the same back. `ethertype` is matched case-insensitively and
//!   answered in canonical case (`ipv4` → `IPv4`), as the reference says. CIDRs and port ranges
//!   are trimmed; a CIDR must match the ethertype.
//! - Unset CIDR and port fields are left out of answers.
//! - Update is a patch. For `source_cidr_block`, `destination_cidr_block`, `source_port_range`,
//!   `destination_port_range` and `description`: a field that is absent or JSON `null` is left
//!   unchanged; the empty string `""` (also after trimming, for CIDRs and ports) clears it, and the
//!   answer is then the one of a rule created without it: the CIDR and port fields are left out,
//!   and `description` is `""` (it is always answered, as for a rule created without one).
//!   Huawei's page for the update call (`UpdateTrafficMirrorFilterRule`) marks every field
//!   optional and says nothing about clearing; the official SDK's
//!   `UpdateTrafficMirrorFilterRuleOption` leaves unset (`None`) fields out of the body, so it can
//!   send `""` but never `null`; the Terraform provider's update sends `description` always (so
//!   `""` when removed) but drops empty CIDR/port fields (`utils.ValueIngoreEmpty`), which is why
//!   removing one there leaves the old value. `""` is therefore the only way a client can ask for
//!   a clear, and the emulator honours it. See docs/emulator.md, "The API".
//! - `traffic_mirror_filter_id` and `direction` cannot change: an update that sends a different
//!   value is a 400 `VPC.1202`; sending the current value is accepted and ignored.

use chrono::{DateTime, Utc};

use super::errors::{self, ApiError};
use super::list::{Kind, Listable};
use super::records::{Data, EGRESS, INGRESS, Rule};
use super::validate::{self, Fields};

/// Wrapper key of request and response bodies.
pub const WRAPPER: &str = "traffic_mirror_filter_rule";
/// Wrapper key of list responses.
pub const LIST_KEY: &str = "traffic_mirror_filter_rules";
/// Allowed directions.
pub const DIRECTIONS: &[&str] = &[INGRESS, EGRESS];
/// Allowed protocols, as documented; matched in any case and kept as sent.
pub const PROTOCOLS: &[&str] = &["TCP", "UDP", "ICMP", "ICMPV6", "ALL"];
/// Allowed ethertypes (canonical case).
pub const ETHERTYPES: &[&str] = &["IPv4", "IPv6"];
/// Allowed actions.
pub const ACTIONS: &[&str] = &["accept", "reject"];
/// Documented range of rule `priority`.
pub const PRIORITY_RANGE: (i64, i64) = (1, 65_535);

/// Query fields of the list call.
pub const LIST_FILTERS: &[(&str, Kind)] = &[
    ("id", Kind::Str),
    ("description", Kind::Str),
    ("traffic_mirror_filter_id", Kind::Str),
    ("direction", Kind::Str),
    ("protocol", Kind::Str),
    ("source_cidr_block", Kind::Str),
    ("destination_cidr_block", Kind::Str),
    ("source_port_range", Kind::Str),
    ("destination_port_range", Kind::Str),
    ("action", Kind::Str),
    ("priority", Kind::Int),
];

impl Listable for Rule {
    fn id(&self) -> &str {
        &self.id
    }

    fn field(&self, key: &str) -> Option<String> {
        match key {
            "id" => Some(self.id.clone()),
            "description" => Some(self.description.clone()),
            "traffic_mirror_filter_id" => Some(self.traffic_mirror_filter_id.clone()),
            "direction" => Some(self.direction.clone()),
            "protocol" => Some(self.protocol.clone()),
            "source_cidr_block" => self.source_cidr_block.clone(),
            "destination_cidr_block" => self.destination_cidr_block.clone(),
            "source_port_range" => self.source_port_range.clone(),
            "destination_port_range" => self.destination_port_range.clone(),
            "action" => Some(self.action.clone()),
            "priority" => Some(self.priority.to_string()),
            _ => None,
        }
    }
}

/// The rules of `project`, in creation order.
pub fn all<'a>(data: &'a Data, project: &str) -> Vec<&'a Rule> {
    data.rules
        .iter()
        .filter(|r| r.project_id == project)
        .collect()
}

/// The rule `id` of `project`, or 404.
pub fn get<'a>(data: &'a Data, project: &str, id: &str) -> Result<&'a Rule, ApiError> {
    data.rules
        .iter()
        .find(|r| r.project_id == project && r.id == id)
        .ok_or_else(|| not_found(id))
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(errors::RULE_NOT_FOUND, "traffic mirror filter rule", id)
}

/// A CIDR/port field as sent: absent (`None`), cleared (`Some(None)`, the empty string) or set.
type Patch = Option<Option<String>>;

/// The optional, updatable fields of a rule, type-checked and enum-normalised (CIDRs are checked
/// against the final ethertype in [`Mutable::apply`]).
struct Mutable {
    description: Option<String>,
    protocol: Option<String>,
    ethertype: Option<String>,
    source_cidr_block: Patch,
    destination_cidr_block: Patch,
    source_port_range: Patch,
    destination_port_range: Patch,
    action: Option<String>,
    priority: Option<i64>,
}

impl Mutable {
    fn parse(f: &Fields) -> Result<Self, ApiError> {
        let description = f.string("description")?;
        if let Some(d) = &description {
            validate::check_description(&f.path("description"), d)?;
        }
        let protocol = f
            .string("protocol")?
            .map(|p| validate::check_enum_any_case(&f.path("protocol"), &p, PROTOCOLS))
            .transpose()?;
        let ethertype = f
            .string("ethertype")?
            .map(|e| validate::normalize_enum(&f.path("ethertype"), &e, ETHERTYPES))
            .transpose()?;
        let action = f.string("action")?;
        if let Some(a) = &action {
            validate::check_enum(&f.path("action"), a, ACTIONS)?;
        }
        let patch = |key: &str| -> Result<Patch, ApiError> {
            Ok(f.string(key)?.map(|v| {
                let t = v.trim().to_owned();
                (!t.is_empty()).then_some(t)
            }))
        };
        let port = |key: &str| -> Result<Patch, ApiError> {
            match patch(key)? {
                Some(Some(v)) => Ok(Some(Some(validate::check_port_range(&f.path(key), &v)?))),
                other => Ok(other),
            }
        };
        Ok(Self {
            description,
            protocol,
            ethertype,
            source_cidr_block: patch("source_cidr_block")?,
            destination_cidr_block: patch("destination_cidr_block")?,
            source_port_range: port("source_port_range")?,
            destination_port_range: port("destination_port_range")?,
            action,
            priority: f.int("priority", PRIORITY_RANGE.0, PRIORITY_RANGE.1)?,
        })
    }

    fn apply(self, f: &Fields, r: &mut Rule) -> Result<(), ApiError> {
        let Self {
            description,
            protocol,
            ethertype,
            source_cidr_block,
            destination_cidr_block,
            source_port_range,
            destination_port_range,
            action,
            priority,
        } = self;
        if let Some(v) = description {
            r.description = v;
        }
        if let Some(v) = protocol {
            r.protocol = v;
        }
        if let Some(v) = ethertype {
            r.ethertype = v;
        }
        if let Some(v) = source_cidr_block {
            r.source_cidr_block = v;
        }
        if let Some(v) = destination_cidr_block {
            r.destination_cidr_block = v;
        }
        if let Some(v) = source_port_range {
            r.source_port_range = v;
        }
        if let Some(v) = destination_port_range {
            r.destination_port_range = v;
        }
        if let Some(v) = action {
            r.action = v;
        }
        if let Some(v) = priority {
            r.priority = v;
        }
        // CIDRs are checked against the resulting ethertype, so changing either keeps them valid.
        for (key, cidr) in [
            ("source_cidr_block", &mut r.source_cidr_block),
            ("destination_cidr_block", &mut r.destination_cidr_block),
        ] {
            if let Some(c) = cidr.as_mut() {
                *c = validate::check_cidr(&f.path(key), c, &r.ethertype)?;
            }
        }
        Ok(())
    }
}

/// Create a rule (201).
pub fn create(
    data: &mut Data,
    project: &str,
    f: &Fields,
    now: DateTime<Utc>,
) -> Result<Rule, ApiError> {
    let filter_id = f.required_string("traffic_mirror_filter_id")?;
    let direction = f.required_string("direction")?;
    validate::check_enum(&f.path("direction"), &direction, DIRECTIONS)?;
    data.require_filter(project, &f.path("traffic_mirror_filter_id"), &filter_id)?;
    let m = Mutable::parse(f)?;
    let ts = validate::timestamp(now);
    let mut rule = Rule {
        id: uuid::Uuid::new_v4().to_string(),
        project_id: project.to_owned(),
        description: String::new(),
        traffic_mirror_filter_id: filter_id,
        direction,
        source_cidr_block: None,
        destination_cidr_block: None,
        source_port_range: None,
        destination_port_range: None,
        ethertype: "IPv4".to_owned(),
        protocol: "ALL".to_owned(),
        action: "accept".to_owned(),
        priority: 1,
        created_at: ts.clone(),
        updated_at: ts,
    };
    m.apply(f, &mut rule)?;
    data.rules.push(rule.clone());
    Ok(rule)
}

/// Update a rule (200): everything but its filter and direction.
pub fn update(
    data: &mut Data,
    project: &str,
    id: &str,
    f: &Fields,
    now: DateTime<Utc>,
) -> Result<Rule, ApiError> {
    let current = get(data, project, id)?;
    for (key, value) in [
        (
            "traffic_mirror_filter_id",
            &current.traffic_mirror_filter_id,
        ),
        ("direction", &current.direction),
    ] {
        if f.has(key) && f.string(key)?.as_ref() != Some(value) {
            return Err(ApiError::bad_request(
                errors::RULE_IMMUTABLE_FIELD,
                format!("{} cannot be changed after creation", f.path(key)),
            ));
        }
    }
    let m = Mutable::parse(f)?;
    let rule = data
        .rules
        .iter_mut()
        .find(|r| r.project_id == project && r.id == id)
        .ok_or_else(|| not_found(id))?;
    // Runs on the store's working copy: an error part-way leaves the stored rule untouched.
    m.apply(f, rule)?;
    rule.updated_at = validate::timestamp(now);
    Ok(rule.clone())
}

/// Delete a rule (204); 404 when it does not exist.
pub fn delete(data: &mut Data, project: &str, id: &str) -> Result<(), ApiError> {
    get(data, project, id)?;
    data.rules
        .retain(|r| !(r.project_id == project && r.id == id));
    Ok(())
}

/// Wrapper key of the batch create's request and answer (`BatchCreateTrafficMirrorFilterRules`).
pub const BATCH_KEY: &str = "traffic_mirror_filter_rules";

/// Whether `BatchCreateTrafficMirrorFilterRules` is served; off, it answers 404 `APIGW.0101` as a
/// gateway without the API does (an older region), so a client's fallback can be tested. Switched
/// through the admin API (`PUT /_emulator/batch-rule-create`); a reset turns it back on.
#[derive(Debug)]
pub struct BatchSwitch(std::sync::atomic::AtomicBool);

impl Default for BatchSwitch {
    fn default() -> Self {
        Self(std::sync::atomic::AtomicBool::new(true))
    }
}

impl BatchSwitch {
    /// Whether the batch create is served.
    pub fn enabled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Serve the batch create (`true`) or answer 404 for it (`false`).
    pub fn set(&self, on: bool) {
        self.0.store(on, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The items of a batch create body `{"traffic_mirror_filter_rules": [{…}, …]}` (at least one),
/// each as the fields of one rule.
pub fn parse_batch(body: &[u8]) -> Result<Vec<Fields>, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::malformed(format!("request body is not valid JSON: {e}")))?;
    let items = match value.get(BATCH_KEY) {
        None | Some(serde_json::Value::Null) => return Err(ApiError::missing(BATCH_KEY)),
        Some(serde_json::Value::Array(items)) if !items.is_empty() => items,
        Some(_) => {
            return Err(ApiError::malformed(format!(
                "{BATCH_KEY} must be a non-empty array of objects"
            )));
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            serde_json::Value::Object(map) => Ok(Fields::from_map(BATCH_KEY, map.clone())),
            _ => Err(ApiError::malformed(format!(
                "{BATCH_KEY}[{i}] must be an object"
            ))),
        })
        .collect()
}

/// Create every rule of a batch in the filter `filter_id` (201), all or nothing: each item is
/// validated as a single create is (its `traffic_mirror_filter_id` may be left out, else it must be
/// the path's), and the first invalid item fails the whole call with that item's error, its message
/// prefixed by the item's index. Run inside one [`super::store::Store::mutate`], so a failure
/// stores none of them.
pub fn batch_create(
    data: &mut Data,
    project: &str,
    filter_id: &str,
    items: &[Fields],
    now: DateTime<Utc>,
) -> Result<Vec<Rule>, ApiError> {
    if data
        .require_filter(project, "traffic_mirror_filter_id", filter_id)
        .is_err()
    {
        return Err(ApiError::not_found(
            errors::FILTER_NOT_FOUND,
            "traffic mirror filter",
            filter_id,
        ));
    }
    let mut created = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = |mut e: ApiError| {
            e.msg = format!("{BATCH_KEY}[{i}]: {}", e.msg);
            e
        };
        let item = with_filter_id(item, filter_id).map_err(at)?;
        created.push(create(data, project, &item, now).map_err(at)?);
    }
    Ok(created)
}

/// `item` with `traffic_mirror_filter_id` set to the path's filter; a different one is a 400.
fn with_filter_id(item: &Fields, filter_id: &str) -> Result<Fields, ApiError> {
    let key = "traffic_mirror_filter_id";
    match item.string(key)? {
        Some(sent) if sent != filter_id => Err(ApiError::invalid(format!(
            "{} must be the filter of the path ({filter_id}), not {sent}",
            item.path(key)
        ))),
        _ => Ok(item.with(key, serde_json::Value::String(filter_id.to_owned()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::records::fixtures;
    use chrono::TimeZone;
    use serde_json::{Value, json};

    const P: &str = "proj";

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
    }

    fn fields(v: Value) -> Fields {
        Fields::from_map(WRAPPER, v.as_object().unwrap().clone())
    }

    fn setup() -> (Data, String) {
        let mut d = Data::default();
        d.filters.push(fixtures::filter(P, "f1"));
        (d, "f1".to_owned())
    }

    #[test]
    fn answers_normalise_and_omit_unset_fields() {
        let (mut d, fid) = setup();
        let r = create(
            &mut d,
            P,
            &fields(json!({"traffic_mirror_filter_id": fid, "direction": "ingress",
                           "ethertype": "ipv4", "protocol": "tcp", "source_cidr_block": " 10.0.0.0/8 ",
                           "destination_port_range": "80-443", "priority": "100", "action": "reject"})),
            now(),
        )
        .unwrap();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["ethertype"], "IPv4");
        assert_eq!(
            v["protocol"], "tcp",
            "protocol is kept in the case it was sent"
        );
        assert_eq!(v["source_cidr_block"], "10.0.0.0/8");
        assert_eq!(v["priority"], 100);
        assert!(v.get("destination_cidr_block").is_none());
        assert!(v.get("source_port_range").is_none());
        assert_eq!(v["destination_port_range"], "80-443");
    }

    #[test]
    fn protocol_keeps_the_case_it_was_sent_and_ethertype_is_canonical() {
        let (mut d, fid) = setup();
        let r = create(
            &mut d,
            P,
            &fields(
                json!({"traffic_mirror_filter_id": fid, "direction": "egress",
                           "protocol": " all ", "ethertype": "IPV6"}),
            ),
            now(),
        )
        .unwrap();
        assert_eq!((r.protocol.as_str(), r.ethertype.as_str()), ("all", "IPv6"));
        for sent in ["tcp", "Udp", "ICMPV6", "icmp", "ALL"] {
            let u = update(&mut d, P, &r.id, &fields(json!({"protocol": sent})), now()).unwrap();
            assert_eq!(u.protocol, sent);
            assert_eq!(get(&d, P, &r.id).unwrap().protocol, sent);
        }
        let e = update(
            &mut d,
            P,
            &r.id,
            &fields(json!({"protocol": "sctp"})),
            now(),
        )
        .unwrap_err();
        assert_eq!(e.code, "VPC.0002");
        assert_eq!(get(&d, P, &r.id).unwrap().protocol, "ALL");
        // Absent: the documented default, in the documented case.
        let r = create(
            &mut d,
            P,
            &fields(json!({"traffic_mirror_filter_id": fid, "direction": "egress"})),
            now(),
        )
        .unwrap();
        assert_eq!(r.protocol, "ALL");
    }

    /// The fields an update can clear with `""`.
    const CLEARABLE: [&str; 5] = [
        "source_cidr_block",
        "destination_cidr_block",
        "source_port_range",
        "destination_port_range",
        "description",
    ];

    /// A filter with one ingress rule that sets every clearable field: (data, filter id, rule).
    fn full_rule() -> (Data, String, Rule) {
        let (mut d, fid) = setup();
        let full = json!({"traffic_mirror_filter_id": fid, "direction": "ingress",
            "source_cidr_block": "10.0.0.0/8", "destination_cidr_block": "192.168.0.0/16",
            "source_port_range": "80", "destination_port_range": "1024-65535",
            "description": "web"});
        let r = create(&mut d, P, &fields(full), now()).unwrap();
        (d, fid, r)
    }

    #[test]
    fn update_keeps_fields_that_are_absent_or_null() {
        let (mut d, _, r) = full_rule();
        let before = serde_json::to_value(&r).unwrap();
        let u = update(&mut d, P, &r.id, &fields(json!({"priority": 2})), now()).unwrap();
        let nulls: serde_json::Map<String, Value> = CLEARABLE
            .iter()
            .map(|k| ((*k).to_owned(), Value::Null))
            .collect();
        let n = update(&mut d, P, &r.id, &fields(Value::Object(nulls)), now()).unwrap();
        for k in CLEARABLE {
            assert_eq!(
                serde_json::to_value(&u).unwrap()[k],
                before[k],
                "absent {k}"
            );
            assert_eq!(serde_json::to_value(&n).unwrap()[k], before[k], "null {k}");
        }
    }

    #[test]
    fn update_clears_on_empty_string_like_a_rule_created_without() {
        let (mut d, fid, r) = full_rule();
        let before = serde_json::to_value(&r).unwrap();
        // "" clears each field on its own; the others stay.
        for (i, k) in CLEARABLE.iter().enumerate() {
            let c = update(&mut d, P, &r.id, &fields(json!({ *k: "" })), now()).unwrap();
            let v = serde_json::to_value(&c).unwrap();
            if *k == "description" {
                assert_eq!(
                    v[k], "",
                    "a cleared description is answered like an unset one"
                );
            } else {
                assert!(v.get(*k).is_none(), "{k} left out once cleared: {v}");
            }
            for later in &CLEARABLE[i + 1..] {
                assert_eq!(
                    v[*later], before[*later],
                    "{later} kept while {k} is cleared"
                );
            }
        }
        let bare = create(
            &mut d,
            P,
            &fields(json!({"traffic_mirror_filter_id": fid, "direction": "ingress"})),
            now(),
        )
        .unwrap();
        let strip = |r: &Rule| {
            let mut v = serde_json::to_value(r).unwrap();
            for k in ["id", "created_at", "updated_at"] {
                v.as_object_mut().unwrap().remove(k);
            }
            v
        };
        assert_eq!(strip(get(&d, P, &r.id).unwrap()), strip(&bare));
        // Whitespace only counts as empty for CIDRs and ports.
        update(
            &mut d,
            P,
            &r.id,
            &fields(json!({"source_port_range": "22"})),
            now(),
        )
        .unwrap();
        let w = update(
            &mut d,
            P,
            &r.id,
            &fields(json!({"source_port_range": "  "})),
            now(),
        )
        .unwrap();
        assert_eq!(w.source_port_range, None);
    }

    #[test]
    fn create_validates() {
        let (mut d, fid) = setup();
        let cases: Vec<(Value, &str)> = vec![
            (json!({"direction": "ingress"}), "VPC.0003"),
            (json!({"traffic_mirror_filter_id": fid}), "VPC.0003"),
            (
                json!({"traffic_mirror_filter_id": "nope", "direction": "ingress"}),
                "VPC.1102",
            ),
            (
                json!({"traffic_mirror_filter_id": fid, "direction": "in"}),
                "VPC.0002",
            ),
            (
                json!({"traffic_mirror_filter_id": fid, "direction": "ingress", "protocol": "SCTP"}),
                "VPC.0002",
            ),
            (
                json!({"traffic_mirror_filter_id": fid, "direction": "ingress", "ethertype": "IPv5"}),
                "VPC.0002",
            ),
            (
                json!({"traffic_mirror_filter_id": fid, "direction": "ingress", "action": "drop"}),
                "VPC.0002",
            ),
            (
                json!({"traffic_mirror_filter_id": fid, "direction": "ingress", "priority": 0}),
                "VPC.0002",
            ),
            (
                json!({"traffic_mirror_filter_id": fid, "direction": "ingress", "priority": 65536}),
                "VPC.0002",
            ),
            (
                json!({"traffic_mirror_filter_id": fid, "direction": "ingress", "source_port_range": "0-1"}),
                "VPC.0002",
            ),
            (
                json!({"traffic_mirror_filter_id": fid, "direction": "ingress", "source_cidr_block": "::/0"}),
                "VPC.0002",
            ),
        ];
        for (body, code) in cases {
            let e = create(&mut d, P, &fields(body.clone()), now()).unwrap_err();
            assert_eq!(e.code, code, "{body}");
        }
        assert!(d.rules.is_empty());
    }

    #[test]
    fn filter_and_direction_are_immutable_and_empty_clears() {
        let (mut d, fid) = setup();
        let r = create(
            &mut d,
            P,
            &fields(
                json!({"traffic_mirror_filter_id": fid, "direction": "egress",
                           "source_cidr_block": "10.0.0.0/8"}),
            ),
            now(),
        )
        .unwrap();
        let e = update(
            &mut d,
            P,
            &r.id,
            &fields(json!({"direction": "ingress"})),
            now(),
        )
        .unwrap_err();
        assert_eq!(e.code, "VPC.1202");
        let e = update(
            &mut d,
            P,
            &r.id,
            &fields(json!({"traffic_mirror_filter_id": "other"})),
            now(),
        )
        .unwrap_err();
        assert_eq!(e.code, "VPC.1202");
        let u = update(
            &mut d,
            P,
            &r.id,
            &fields(
                json!({"direction": "egress", "source_cidr_block": "", "ethertype": "IPv6",
                           "destination_cidr_block": "::/0"}),
            ),
            now(),
        )
        .unwrap();
        assert_eq!(u.source_cidr_block, None);
        assert_eq!(u.destination_cidr_block.as_deref(), Some("::/0"));
        // Changing the ethertype under an existing CIDR of the other family is refused.
        let e = update(
            &mut d,
            P,
            &r.id,
            &fields(json!({"ethertype": "IPv4"})),
            now(),
        )
        .unwrap_err();
        assert_eq!(e.code, "VPC.0002");
    }

    fn batch(v: Value) -> Result<Vec<Fields>, ApiError> {
        parse_batch(serde_json::to_vec(&v).unwrap().as_slice())
    }

    #[test]
    fn batch_create_makes_every_rule_with_the_path_filter() {
        let (mut d, fid) = setup();
        let items = batch(json!({BATCH_KEY: [
            {"direction": "ingress", "priority": 1},
            {"direction": "egress", "priority": 2, "traffic_mirror_filter_id": fid, "protocol": "tcp"},
        ]}))
        .unwrap();
        let made = batch_create(&mut d, P, &fid, &items, now()).unwrap();
        assert_eq!(made.len(), 2);
        assert!(made.iter().all(|r| r.traffic_mirror_filter_id == fid));
        assert_eq!(
            (made[1].direction.as_str(), made[1].protocol.as_str()),
            ("egress", "tcp")
        );
        assert_eq!(d.rules.len(), 2);
    }

    #[test]
    fn batch_create_names_the_bad_item_and_the_filter_must_match() {
        let (mut d, fid) = setup();
        let items = batch(json!({BATCH_KEY: [
            {"direction": "ingress", "priority": 1},
            {"direction": "sideways", "priority": 2},
        ]}))
        .unwrap();
        let e = batch_create(&mut d, P, &fid, &items, now()).unwrap_err();
        assert_eq!(e.code, "VPC.0002");
        assert!(
            e.msg.starts_with("traffic_mirror_filter_rules[1]: "),
            "{}",
            e.msg
        );
        let other =
            batch(json!({BATCH_KEY: [{"direction": "ingress", "traffic_mirror_filter_id": "f2"}]}))
                .unwrap();
        let e = batch_create(&mut d, P, &fid, &other, now()).unwrap_err();
        assert_eq!(e.code, "VPC.0002");
        let e = batch_create(&mut d, P, "nope", &items, now()).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code.as_str()), (404, "VPC.1101"));
    }

    #[test]
    fn batch_bodies_need_a_non_empty_array_of_objects() {
        for body in [
            json!({}),
            json!({BATCH_KEY: []}),
            json!({BATCH_KEY: {}}),
            json!({BATCH_KEY: [1]}),
        ] {
            assert!(batch(body.clone()).is_err(), "{body}");
        }
        assert!(parse_batch(b"not json").is_err());
    }
}
