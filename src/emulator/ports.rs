//! Ports (network interfaces): the read-only VPC v3 port API (`ListPorts`, `ShowPort`,
//! `ListPortsByTags`) over ports that tests seed and remove through the admin API, as
//! `huaweicloudsdkvpc` 3.1.219 models them (the record is [`Port`](super::records::Port)).
//!
//! Choices where the reference is silent (documented in docs/emulator.md, section "Ports"):
//! - Removing a port also removes it from the sources of every session (AWS removes a mirror
//!   source with its ENI; Huawei's documentation does not say).
//! - `private_ips=ip_address=A` matches a port with A among its private IPs,
//!   `private_ips=subnet_cidr_id=S` one with an IP in S; any other form matches nothing.
//! - `ListPortsByTags` answers `resource_detail` as `{}` (the model says "empty by default"),
//!   `matches` with key `resource_name` is a substring match on the port's name.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::errors::{self, ApiError};
use super::list::{Kind, Listable};
use super::records::{Data, Port};
use super::validate;

/// Wrapper key of the show answer.
pub const WRAPPER: &str = "port";
/// Wrapper key of list answers.
pub const LIST_KEY: &str = "ports";
/// Largest (and default) `limit` of `ListPortsByTags`.
pub const MAX_TAG_LIMIT: usize = 1000;

/// Query fields of `ListPorts` (each may repeat; repeated values are OR-ed).
pub const LIST_FILTERS: &[(&str, Kind)] = &[
    ("id", Kind::Str),
    ("name", Kind::Str),
    ("admin_state_up", Kind::Bool),
    ("status", Kind::Str),
    ("virsubnet_id", Kind::Str),
    ("device_id", Kind::Str),
    ("mac_address", Kind::Str),
    ("device_owner", Kind::Str),
    ("device_owner_prefixlike", Kind::Str),
    ("description", Kind::Str),
    ("binding:host_id", Kind::Str),
    ("private_ips", Kind::Str),
    ("security_groups", Kind::Str),
    ("vpc_id", Kind::Str),
    ("instance_id", Kind::Str),
    ("instance_type", Kind::Str),
];

impl Listable for Port {
    fn id(&self) -> &str {
        &self.id
    }

    fn field(&self, key: &str) -> Option<String> {
        Some(match key {
            "id" => self.id.clone(),
            "name" => self.name.clone(),
            "admin_state_up" => self.admin_state_up.to_string(),
            "status" => self.status.clone(),
            "virsubnet_id" => self.virsubnet_id.clone(),
            "device_id" => self.device_id.clone(),
            "mac_address" => self.mac_address.clone(),
            "device_owner" => self.device_owner.clone(),
            "description" => self.description.clone(),
            "binding:host_id" => self.binding_host_id.clone(),
            "vpc_id" => self.vpc_id.clone(),
            "instance_id" => self.instance_id.clone(),
            "instance_type" => self.instance_type.clone(),
            _ => return None,
        })
    }

    fn field_matches(&self, key: &str, values: &[String]) -> bool {
        match key {
            "private_ips" => values.iter().any(|v| self.has_private_ip(v)),
            "security_groups" => values.iter().any(|v| self.security_groups.contains(v)),
            "device_owner_prefixlike" => values.iter().any(|v| self.device_owner.starts_with(v)),
            _ => self.field(key).is_some_and(|a| values.contains(&a)),
        }
    }
}

impl Port {
    /// Whether a `private_ips` filter value (`ip_address=…` or `subnet_cidr_id=…`) matches.
    fn has_private_ip(&self, filter: &str) -> bool {
        match filter.split_once('=') {
            Some(("ip_address", ip)) => self.private_ips.iter().any(|p| p.ip_address == ip),
            Some(("subnet_cidr_id", s)) => self.private_ips.iter().any(|p| p.subnet_cidr_id == s),
            _ => false,
        }
    }
}

/// The ports of `project`, in seeding order.
pub fn all<'a>(data: &'a Data, project: &str) -> Vec<&'a Port> {
    data.ports
        .iter()
        .filter(|p| p.project_id == project)
        .collect()
}

/// The port `id` of `project`, or 404 `VPC.1301`.
pub fn get<'a>(data: &'a Data, project: &str, id: &str) -> Result<&'a Port, ApiError> {
    data.ports
        .iter()
        .find(|p| p.project_id == project && p.id == id)
        .ok_or_else(|| ApiError::not_found(errors::PORT_NOT_FOUND, "port", id))
}

/// Seed a port (admin API): the project defaults to `default_project`, the timestamps to `now`;
/// a port with the same id in the same project is replaced (so a test can change a port).
pub fn seed(
    data: &mut Data,
    default_project: &str,
    mut port: Port,
    now: DateTime<Utc>,
) -> Result<Port, ApiError> {
    validate::check_id("port.id", &port.id)?;
    if port.private_ips.iter().any(|ip| ip.ip_address.is_empty()) {
        return Err(ApiError::invalid(
            "port.private_ips[].ip_address must not be empty",
        ));
    }
    if port.project_id.is_empty() {
        port.project_id = default_project.to_owned();
    }
    let ts = validate::timestamp(now);
    if port.created_at.is_empty() {
        port.created_at = ts.clone();
    }
    if port.updated_at.is_empty() {
        port.updated_at = ts;
    }
    match data
        .ports
        .iter_mut()
        .find(|p| p.project_id == port.project_id && p.id == port.id)
    {
        Some(existing) => *existing = port.clone(),
        None => data.ports.push(port.clone()),
    }
    Ok(port)
}

/// Remove the port `id` (of any project) and take it out of the sources of every session of its
/// project; 404 `VPC.1301` when there is no such port. Returns the sessions that lost it.
pub fn remove(data: &mut Data, id: &str, now: DateTime<Utc>) -> Result<Vec<String>, ApiError> {
    let i = data
        .ports
        .iter()
        .position(|p| p.id == id)
        .ok_or_else(|| ApiError::not_found(errors::PORT_NOT_FOUND, "port", id))?;
    let port = data.ports.remove(i);
    let ts = validate::timestamp(now);
    let mut touched = Vec::new();
    for s in data
        .sessions
        .iter_mut()
        .filter(|s| s.project_id == port.project_id)
    {
        let before = s.traffic_mirror_sources.len();
        s.traffic_mirror_sources.retain(|x| x != id);
        if s.traffic_mirror_sources.len() != before {
            s.updated_at = ts.clone();
            touched.push(s.id.clone());
        }
    }
    Ok(touched)
}

/// One `tags` entry of a `ListPortsByTags` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagFilter {
    /// Tag key.
    pub key: String,
    /// Accepted values (OR-ed); empty means any value.
    #[serde(default)]
    pub values: Vec<String>,
}

/// One `matches` entry of a `ListPortsByTags` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchFilter {
    /// Only `resource_name`.
    pub key: String,
    /// Substring of the name.
    pub value: String,
}

/// A `ListPortsByTags` request: body and query.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TagQuery {
    /// Tag filters (keys AND-ed).
    #[serde(default)]
    pub tags: Vec<TagFilter>,
    /// Name matches.
    #[serde(default)]
    pub matches: Vec<MatchFilter>,
    /// Page size.
    #[serde(skip)]
    pub limit: usize,
    /// Items skipped.
    #[serde(skip)]
    pub offset: usize,
}

impl TagQuery {
    /// Parse and check the body and the `limit`/`offset` query (400 `VPC.0001`/`VPC.0002`).
    pub fn parse(body: &[u8], raw_query: &str) -> Result<Self, ApiError> {
        let mut q: TagQuery = if body.is_empty() {
            TagQuery::default()
        } else {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::malformed(format!("invalid request body: {e}")))?
        };
        q.limit = MAX_TAG_LIMIT;
        for (k, v) in url::form_urlencoded::parse(raw_query.as_bytes()) {
            match k.as_ref() {
                "limit" => q.limit = parse_bounded("limit", &v, 1, MAX_TAG_LIMIT)?,
                "offset" => q.offset = parse_bounded("offset", &v, 0, usize::MAX)?,
                _ => {}
            }
        }
        q.check()?;
        Ok(q)
    }

    fn check(&self) -> Result<(), ApiError> {
        for (i, t) in self.tags.iter().enumerate() {
            if t.key.is_empty() {
                return Err(ApiError::invalid(format!(
                    "tags[{i}].key must not be empty"
                )));
            }
            if self.tags[..i].iter().any(|o| o.key == t.key) {
                return Err(ApiError::invalid(format!(
                    "tags: key {} is repeated",
                    t.key
                )));
            }
        }
        if let Some(m) = self.matches.iter().find(|m| m.key != "resource_name") {
            return Err(ApiError::invalid(format!(
                "matches: key {} is not supported (only resource_name)",
                m.key
            )));
        }
        Ok(())
    }

    /// Whether `port` carries every tag key with one of its values and matches every name match.
    pub fn matches(&self, port: &Port) -> bool {
        let tagged = self.tags.iter().all(|f| {
            port.tags
                .iter()
                .any(|t| t.key == f.key && (f.values.is_empty() || f.values.contains(&t.value)))
        });
        tagged && self.matches.iter().all(|m| port.name.contains(&m.value))
    }

    /// The answer: `{"resources": [...], "total_count"}` for the page `offset..offset+limit`.
    pub fn answer(&self, ports: &[&Port]) -> Value {
        let matching: Vec<&&Port> = ports.iter().filter(|p| self.matches(p)).collect();
        let resources: Vec<Value> = matching
            .iter()
            .skip(self.offset)
            .take(self.limit)
            .map(|p| {
                json!({"resource_id": p.id, "resource_name": p.name, "resource_detail": {},
                       "tags": p.tags})
            })
            .collect();
        json!({"resources": resources, "total_count": matching.len()})
    }
}

fn parse_bounded(key: &str, v: &str, min: usize, max: usize) -> Result<usize, ApiError> {
    match v.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::invalid(format!(
            "{key} must be an integer from {min}{}",
            if max == usize::MAX {
                String::new()
            } else {
                format!(" to {max}")
            }
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::list::ListQuery;
    use crate::emulator::records::fixtures;
    use chrono::TimeZone;

    const P: &str = "proj";

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
    }

    fn port(id: &str, ip: &str, tags: Value) -> Port {
        serde_json::from_value(json!({
            "id": id, "name": format!("nic-{id}"), "device_id": format!("dev-{id}"),
            "device_owner": "compute:az1", "vpc_id": "vpc1",
            "private_ips": [{"subnet_cidr_id": "sub1", "ip_address": ip}],
            "security_groups": ["sg1"], "tags": tags, "mac_address": "fa:16:3e:00:00:01"
        }))
        .unwrap()
    }

    fn data() -> Data {
        let mut d = Data::default();
        seed(
            &mut d,
            P,
            port("a", "10.0.0.1", json!([{"key": "role", "value": "web"}])),
            now(),
        )
        .unwrap();
        seed(
            &mut d,
            P,
            port(
                "b",
                "10.0.0.2",
                json!([{"key": "role", "value": "db"}, {"key": "env", "value": "prod"}]),
            ),
            now(),
        )
        .unwrap();
        seed(&mut d, P, port("c", "10.0.0.3", json!([])), now()).unwrap();
        d
    }

    fn listed(d: &Data, q: &str) -> Vec<String> {
        let q = ListQuery::parse(q, LIST_FILTERS).unwrap();
        let (page, _) = q.page(&all(d, P)).unwrap();
        page.iter().map(|p| p.id.clone()).collect()
    }

    #[test]
    fn list_filters_match_the_sdk_query_forms() {
        let d = data();
        let cases = [
            ("", vec!["a", "b", "c"]),
            ("device_id=dev-b", vec!["b"]),
            ("device_id=dev-a&device_id=dev-c", vec!["a", "c"]),
            ("private_ips=ip_address%3D10.0.0.2", vec!["b"]),
            (
                "private_ips=ip_address=10.0.0.2&private_ips=ip_address=10.0.0.3",
                vec!["b", "c"],
            ),
            (
                "private_ips=subnet_cidr_id%3Dsub1&vpc_id=vpc1",
                vec!["a", "b", "c"],
            ),
            ("private_ips=10.0.0.1", vec![]),
            ("vpc_id=other", vec![]),
            ("device_owner_prefixlike=compute", vec!["a", "b", "c"]),
            ("security_groups=sg1&id=c", vec!["c"]),
            (
                "status=ACTIVE&admin_state_up=true&limit=1&marker=a",
                vec!["b"],
            ),
        ];
        for (q, want) in cases {
            assert_eq!(listed(&d, q), want, "{q}");
        }
        assert!(listed(&d, "").len() == 3 && all(&d, "other").is_empty());
    }

    #[test]
    fn seeding_fills_defaults_keeps_extra_fields_and_replaces_by_id() {
        let mut d = data();
        let mut p = port("a", "10.0.0.9", json!([]));
        p.extra.insert("zone_id".into(), json!("az1"));
        let stored = seed(&mut d, P, p, now()).unwrap();
        assert_eq!(d.ports.len(), 3);
        assert_eq!(
            (stored.project_id.as_str(), stored.status.as_str()),
            (P, "ACTIVE")
        );
        assert_eq!(stored.created_at, "2026-01-02T03:04:05Z");
        let v = serde_json::to_value(get(&d, P, "a").unwrap()).unwrap();
        assert_eq!(v["zone_id"], "az1");
        assert_eq!(v["private_ips"][0]["ip_address"], "10.0.0.9");
        assert_eq!(get(&d, P, "zz").unwrap_err().code, "VPC.1301");
        assert!(seed(&mut d, P, port("", "10.0.0.1", json!([])), now()).is_err());
    }

    #[test]
    fn removing_a_port_takes_it_out_of_every_session() {
        let mut d = data();
        d.filters.push(fixtures::filter(P, "f"));
        for (sid, sources) in [("s1", vec!["a", "b"]), ("s2", vec!["a"]), ("s3", vec!["c"])] {
            let mut s = fixtures::session(P, sid, "f");
            s.traffic_mirror_sources = sources.into_iter().map(String::from).collect();
            d.sessions.push(s);
        }
        let touched = remove(&mut d, "a", now()).unwrap();
        assert_eq!(touched, ["s1", "s2"]);
        assert_eq!(d.sessions[0].traffic_mirror_sources, ["b"]);
        assert!(d.sessions[1].traffic_mirror_sources.is_empty());
        assert_eq!(d.sessions[1].updated_at, "2026-01-02T03:04:05Z");
        assert_eq!(d.sessions[2].traffic_mirror_sources, ["c"]);
        assert_eq!(remove(&mut d, "a", now()).unwrap_err().status.as_u16(), 404);
    }

    fn by_tags(d: &Data, body: Value, query: &str) -> Value {
        let q = TagQuery::parse(&serde_json::to_vec(&body).unwrap(), query).unwrap();
        q.answer(&all(d, P))
    }

    fn ids(v: &Value) -> Vec<&str> {
        v["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["resource_id"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn tag_queries_or_values_and_keys() {
        let d = data();
        let t = |v: Value| by_tags(&d, json!({ "tags": v }), "");
        assert_eq!(
            ids(&t(json!([{"key": "role", "values": ["web", "db"]}]))),
            ["a", "b"]
        );
        assert_eq!(
            ids(&t(
                json!([{"key": "role", "values": ["db"]}, {"key": "env", "values": []}])
            )),
            ["b"]
        );
        assert_eq!(
            ids(&t(
                json!([{"key": "role", "values": ["web"]}, {"key": "env", "values": []}])
            )),
            Vec::<&str>::new()
        );
        let everything = by_tags(&d, json!({}), "limit=2&offset=1");
        assert_eq!(
            (ids(&everything), everything["total_count"].clone()),
            (vec!["b", "c"], json!(3))
        );
        let named = by_tags(
            &d,
            json!({"matches": [{"key": "resource_name", "value": "nic-c"}]}),
            "",
        );
        assert_eq!(ids(&named), ["c"]);
        assert_eq!(named["resources"][0]["resource_detail"], json!({}));
    }

    #[test]
    fn invalid_tag_queries_are_400() {
        for (body, query) in [
            (
                json!({"tags": [{"key": "a", "values": []}, {"key": "a", "values": []}]}),
                "",
            ),
            (json!({"matches": [{"key": "id", "value": "x"}]}), ""),
            (json!({"tags": [{"values": []}]}), ""),
            (json!({}), "limit=0"),
            (json!({}), "limit=1001"),
            (json!({}), "offset=-1"),
        ] {
            let e = TagQuery::parse(&serde_json::to_vec(&body).unwrap(), query).unwrap_err();
            assert_eq!(e.status.as_u16(), 400, "{body} {query}");
        }
    }
}
