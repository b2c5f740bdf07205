//! Traffic mirror sessions: the operations create, update, delete, add-sources and remove-sources
//! with the documented rules (the record, identical to the wire shape, is
//! [`Session`](super::records::Session)).
//!
//! Choices where the reference is silent (documented in docs/emulator.md, section
//! "The API"):
//! - `traffic_mirror_sources` may be empty on create, and remove-sources may remove every source.
//! - Update ignores `traffic_mirror_sources` (sources change only through add/remove-sources) and
//!   accepts `type`.
//! - `updated_at` is refreshed by every successful update, add-sources and remove-sources.

use chrono::{DateTime, Utc};

use super::errors::{self, ApiError};
use super::list::{Kind, Listable};
use super::records::{Data, Session};
use super::validate::{self, Fields};

/// Wrapper key of request and response bodies.
pub const WRAPPER: &str = "traffic_mirror_session";
/// Wrapper key of list responses.
pub const LIST_KEY: &str = "traffic_mirror_sessions";
/// The default cap on sources per session: the cloud's default quota (raised on request, which the
/// emulator models with `--max-sources-per-session`).
pub const DEFAULT_MAX_SOURCES: usize = 10;
/// Documented range of `virtual_network_id`.
pub const VNI_RANGE: (i64, i64) = (0, 16_777_215);
/// Documented range of `packet_length`.
pub const PACKET_LENGTH_RANGE: (i64, i64) = (1, 1460);
/// Documented range of `priority`.
pub const PRIORITY_RANGE: (i64, i64) = (1, 32_766);
/// Allowed `traffic_mirror_target_type` values.
pub const TARGET_TYPES: &[&str] = &["eni", "elb"];
/// Allowed `type` (source type) values.
pub const SOURCE_TYPES: &[&str] = &["eni", "eip"];

/// Query fields of the list call.
pub const LIST_FILTERS: &[(&str, Kind)] = &[
    ("id", Kind::Str),
    ("name", Kind::Str),
    ("description", Kind::Str),
    ("traffic_mirror_filter_id", Kind::Str),
    ("traffic_mirror_target_id", Kind::Str),
    ("traffic_mirror_target_type", Kind::Str),
    ("virtual_network_id", Kind::Int),
    ("packet_length", Kind::Int),
    ("priority", Kind::Int),
    ("enabled", Kind::Bool),
    ("type", Kind::Str),
    ("created_at", Kind::Str),
    ("updated_at", Kind::Str),
];

impl Listable for Session {
    fn id(&self) -> &str {
        &self.id
    }

    fn field(&self, key: &str) -> Option<String> {
        Some(match key {
            "id" => self.id.clone(),
            "name" => self.name.clone(),
            "description" => self.description.clone(),
            "traffic_mirror_filter_id" => self.traffic_mirror_filter_id.clone(),
            "traffic_mirror_target_id" => self.traffic_mirror_target_id.clone(),
            "traffic_mirror_target_type" => self.traffic_mirror_target_type.clone(),
            "virtual_network_id" => self.virtual_network_id.to_string(),
            "packet_length" => self.packet_length.to_string(),
            "priority" => self.priority.to_string(),
            "enabled" => self.enabled.to_string(),
            "type" => self.source_type.clone(),
            "created_at" => self.created_at.clone(),
            "updated_at" => self.updated_at.clone(),
            _ => return None,
        })
    }
}

/// The sessions of `project`, in creation order.
pub fn all<'a>(data: &'a Data, project: &str) -> Vec<&'a Session> {
    data.sessions
        .iter()
        .filter(|s| s.project_id == project)
        .collect()
}

/// The session `id` of `project`, or 404.
pub fn get<'a>(data: &'a Data, project: &str, id: &str) -> Result<&'a Session, ApiError> {
    data.sessions
        .iter()
        .find(|s| s.project_id == project && s.id == id)
        .ok_or_else(|| not_found(id))
}

fn get_mut<'a>(data: &'a mut Data, project: &str, id: &str) -> Result<&'a mut Session, ApiError> {
    data.sessions
        .iter_mut()
        .find(|s| s.project_id == project && s.id == id)
        .ok_or_else(|| not_found(id))
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(errors::SESSION_NOT_FOUND, "traffic mirror session", id)
}

/// Each source a valid id, none listed twice.
fn check_source_ids(field: &str, sources: &[String]) -> Result<(), ApiError> {
    for (i, s) in sources.iter().enumerate() {
        validate::check_id(&format!("{field}[{i}]"), s)?;
        if sources[..i].contains(s) {
            return Err(ApiError::bad_request(
                errors::DUPLICATE_SOURCE,
                format!("{field}: source {s} is listed more than once"),
            ));
        }
    }
    Ok(())
}

fn too_many_sources(field: &str, max: usize) -> ApiError {
    ApiError::bad_request(
        errors::TOO_MANY_SOURCES,
        format!("{field}: a traffic mirror session has at most {max} sources"),
    )
}

/// The optional fields shared by create and update, validated.
struct Common {
    name: Option<String>,
    description: Option<String>,
    filter_id: Option<String>,
    target_id: Option<String>,
    target_type: Option<String>,
    vni: Option<i64>,
    packet_length: Option<i64>,
    priority: Option<i64>,
    enabled: Option<bool>,
    source_type: Option<String>,
}

impl Common {
    fn parse(data: &Data, project: &str, f: &Fields) -> Result<Self, ApiError> {
        let name = f.string("name")?;
        if let Some(n) = &name {
            validate::check_name(&f.path("name"), n)?;
        }
        let description = f.string("description")?;
        if let Some(d) = &description {
            validate::check_description(&f.path("description"), d)?;
        }
        let filter_id = f.string("traffic_mirror_filter_id")?;
        if let Some(id) = &filter_id {
            data.require_filter(project, &f.path("traffic_mirror_filter_id"), id)?;
        }
        let target_id = f.string("traffic_mirror_target_id")?;
        if let Some(id) = &target_id {
            validate::check_id(&f.path("traffic_mirror_target_id"), id)?;
        }
        let target_type = f.string("traffic_mirror_target_type")?;
        if let Some(t) = &target_type {
            validate::check_enum(&f.path("traffic_mirror_target_type"), t, TARGET_TYPES)?;
        }
        let source_type = f.string("type")?;
        if let Some(t) = &source_type {
            validate::check_enum(&f.path("type"), t, SOURCE_TYPES)?;
        }
        Ok(Self {
            name,
            description,
            filter_id,
            target_id,
            target_type,
            vni: f.int("virtual_network_id", VNI_RANGE.0, VNI_RANGE.1)?,
            packet_length: f.int(
                "packet_length",
                PACKET_LENGTH_RANGE.0,
                PACKET_LENGTH_RANGE.1,
            )?,
            priority: f.int("priority", PRIORITY_RANGE.0, PRIORITY_RANGE.1)?,
            enabled: f.boolean("enabled")?,
            source_type,
        })
    }
}

/// Create a session (201) holding at most `max_sources` sources (the project's quota).
pub fn create(
    data: &mut Data,
    project: &str,
    f: &Fields,
    now: DateTime<Utc>,
    max_sources: usize,
) -> Result<Session, ApiError> {
    // Required fields first, in the documented order, so the first problem is reported.
    for key in [
        "name",
        "traffic_mirror_filter_id",
        "traffic_mirror_sources",
        "traffic_mirror_target_id",
        "traffic_mirror_target_type",
        "priority",
    ] {
        if !f.has(key) {
            return Err(ApiError::missing(&f.path(key)));
        }
    }
    let sources = f.string_list("traffic_mirror_sources")?.unwrap_or_default();
    check_source_ids(&f.path("traffic_mirror_sources"), &sources)?;
    if sources.len() > max_sources {
        return Err(too_many_sources(
            &f.path("traffic_mirror_sources"),
            max_sources,
        ));
    }
    let c = Common::parse(data, project, f)?;
    let missing = |key: &str| ApiError::missing(&f.path(key));
    let ts = validate::timestamp(now);
    let session = Session {
        id: uuid::Uuid::new_v4().to_string(),
        project_id: project.to_owned(),
        name: c.name.ok_or_else(|| missing("name"))?,
        description: c.description.unwrap_or_default(),
        traffic_mirror_filter_id: c
            .filter_id
            .ok_or_else(|| missing("traffic_mirror_filter_id"))?,
        traffic_mirror_sources: sources,
        traffic_mirror_target_id: c
            .target_id
            .ok_or_else(|| missing("traffic_mirror_target_id"))?,
        traffic_mirror_target_type: c
            .target_type
            .ok_or_else(|| missing("traffic_mirror_target_type"))?,
        virtual_network_id: c.vni.unwrap_or(1),
        packet_length: c.packet_length.unwrap_or(96),
        priority: c.priority.ok_or_else(|| missing("priority"))?,
        enabled: c.enabled.unwrap_or(false),
        source_type: c.source_type.unwrap_or_else(|| "eni".to_owned()),
        created_at: ts.clone(),
        updated_at: ts,
    };
    data.sessions.push(session.clone());
    Ok(session)
}

/// Update a session: only the fields sent change (200).
pub fn update(
    data: &mut Data,
    project: &str,
    id: &str,
    f: &Fields,
    now: DateTime<Utc>,
) -> Result<Session, ApiError> {
    get(data, project, id)?;
    let c = Common::parse(data, project, f)?;
    let s = get_mut(data, project, id)?;
    let Common {
        name,
        description,
        filter_id,
        target_id,
        target_type,
        vni,
        packet_length,
        priority,
        enabled,
        source_type,
    } = c;
    if let Some(v) = name {
        s.name = v;
    }
    if let Some(v) = description {
        s.description = v;
    }
    if let Some(v) = filter_id {
        s.traffic_mirror_filter_id = v;
    }
    if let Some(v) = target_id {
        s.traffic_mirror_target_id = v;
    }
    if let Some(v) = target_type {
        s.traffic_mirror_target_type = v;
    }
    if let Some(v) = vni {
        s.virtual_network_id = v;
    }
    if let Some(v) = packet_length {
        s.packet_length = v;
    }
    if let Some(v) = priority {
        s.priority = v;
    }
    if let Some(v) = enabled {
        s.enabled = v;
    }
    if let Some(v) = source_type {
        s.source_type = v;
    }
    s.updated_at = validate::timestamp(now);
    Ok(s.clone())
}

/// Delete a session (204); 404 when it does not exist.
pub fn delete(data: &mut Data, project: &str, id: &str) -> Result<(), ApiError> {
    get(data, project, id)?;
    data.sessions
        .retain(|s| !(s.project_id == project && s.id == id));
    Ok(())
}

fn requested_sources(f: &Fields) -> Result<Vec<String>, ApiError> {
    let field = f.path("traffic_mirror_sources");
    let sources = f
        .string_list("traffic_mirror_sources")?
        .ok_or_else(|| ApiError::missing(&field))?;
    if sources.is_empty() {
        return Err(ApiError::invalid(format!("{field} must not be empty")));
    }
    check_source_ids(&field, &sources)?;
    Ok(sources)
}

/// Add sources (200): each must be new, and the session keeps at most `max_sources` (the project's
/// quota).
pub fn add_sources(
    data: &mut Data,
    project: &str,
    id: &str,
    f: &Fields,
    now: DateTime<Utc>,
    max_sources: usize,
) -> Result<Session, ApiError> {
    get(data, project, id)?;
    let sources = requested_sources(f)?;
    let field = f.path("traffic_mirror_sources");
    let s = get_mut(data, project, id)?;
    if let Some(dup) = sources
        .iter()
        .find(|x| s.traffic_mirror_sources.contains(x))
    {
        return Err(ApiError::bad_request(
            errors::DUPLICATE_SOURCE,
            format!("{field}: source {dup} is already in traffic mirror session {id}"),
        ));
    }
    if s.traffic_mirror_sources.len() + sources.len() > max_sources {
        return Err(too_many_sources(&field, max_sources));
    }
    s.traffic_mirror_sources.extend(sources);
    s.updated_at = validate::timestamp(now);
    Ok(s.clone())
}

/// Remove sources (200): each must be in the session; removing all of them is allowed.
pub fn remove_sources(
    data: &mut Data,
    project: &str,
    id: &str,
    f: &Fields,
    now: DateTime<Utc>,
) -> Result<Session, ApiError> {
    get(data, project, id)?;
    let sources = requested_sources(f)?;
    let field = f.path("traffic_mirror_sources");
    let s = get_mut(data, project, id)?;
    if let Some(absent) = sources
        .iter()
        .find(|x| !s.traffic_mirror_sources.contains(x))
    {
        return Err(ApiError::bad_request(
            errors::SOURCE_NOT_IN_SESSION,
            format!("{field}: source {absent} is not in traffic mirror session {id}"),
        ));
    }
    s.traffic_mirror_sources.retain(|x| !sources.contains(x));
    s.updated_at = validate::timestamp(now);
    Ok(s.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::records::fixtures;
    use chrono::TimeZone;
    use serde_json::{Value, json};

    const P: &str = "proj";

    fn t(sec: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, sec).unwrap()
    }

    fn fields(v: Value) -> Fields {
        match v {
            Value::Object(m) => Fields::from_map(WRAPPER, m),
            _ => panic!("object expected"),
        }
    }

    fn with_filter() -> (Data, String) {
        let mut d = Data::default();
        d.filters.push(fixtures::filter(P, "f1"));
        (d, "f1".to_owned())
    }

    fn minimal(filter: &str) -> Value {
        json!({
            "name": "s", "traffic_mirror_filter_id": filter, "traffic_mirror_sources": ["eni-1"],
            "traffic_mirror_target_id": "t", "traffic_mirror_target_type": "eni", "priority": 1
        })
    }

    #[test]
    fn create_applies_documented_defaults() {
        let (mut d, fid) = with_filter();
        let s = create(&mut d, P, &fields(minimal(&fid)), t(1), DEFAULT_MAX_SOURCES).unwrap();
        assert_eq!(s.virtual_network_id, 1);
        assert_eq!(s.packet_length, 96);
        assert!(!s.enabled);
        assert_eq!(s.source_type, "eni");
        assert_eq!(s.description, "");
        assert_eq!(s.created_at, "2026-01-02T03:04:01Z");
        assert_eq!(s.updated_at, s.created_at);
        assert_eq!(uuid::Uuid::parse_str(&s.id).unwrap().get_version_num(), 4);
    }

    #[test]
    fn create_requires_each_required_field() {
        let (mut d, fid) = with_filter();
        for key in [
            "name",
            "traffic_mirror_filter_id",
            "traffic_mirror_sources",
            "traffic_mirror_target_id",
            "traffic_mirror_target_type",
            "priority",
        ] {
            let mut body = minimal(&fid);
            body.as_object_mut().unwrap().remove(key);
            let e = create(&mut d, P, &fields(body), t(1), DEFAULT_MAX_SOURCES).unwrap_err();
            assert_eq!(e.code, "VPC.0003", "{key}");
            assert!(e.msg.contains(key), "{key}: {}", e.msg);
        }
        assert!(d.sessions.is_empty());
    }

    #[test]
    fn create_checks_ranges_enums_and_references() {
        let (mut d, fid) = with_filter();
        let cases: Vec<(&str, Value, &str)> = vec![
            ("virtual_network_id", json!(16_777_216), "VPC.0002"),
            ("virtual_network_id", json!(-1), "VPC.0002"),
            ("packet_length", json!(0), "VPC.0002"),
            ("packet_length", json!(1461), "VPC.0002"),
            ("priority", json!(32767), "VPC.0002"),
            ("priority", json!(0), "VPC.0002"),
            ("traffic_mirror_target_type", json!("vm"), "VPC.0002"),
            ("type", json!("vm"), "VPC.0002"),
            ("enabled", json!("maybe"), "VPC.0002"),
            ("name", json!("bad name"), "VPC.0002"),
            ("description", json!("<b>"), "VPC.0002"),
            ("traffic_mirror_filter_id", json!("nope"), "VPC.1102"),
            ("traffic_mirror_sources", json!(["a", "a"]), "VPC.1003"),
            (
                "traffic_mirror_sources",
                json!((0..11).map(|i| format!("eni-{i}")).collect::<Vec<_>>()),
                "VPC.1002",
            ),
            ("traffic_mirror_sources", json!("eni-1"), "VPC.0002"),
        ];
        for (key, value, code) in cases {
            let mut body = minimal(&fid);
            body[key] = value.clone();
            let e = create(&mut d, P, &fields(body), t(1), DEFAULT_MAX_SOURCES).unwrap_err();
            assert_eq!(e.code, code, "{key}={value}");
        }
        // Edges that are allowed, with numbers and booleans as strings (as the SDK may send).
        let mut body = minimal(&fid);
        body["virtual_network_id"] = json!("0");
        body["packet_length"] = json!("1460");
        body["priority"] = json!(32766);
        body["enabled"] = json!("true");
        body["traffic_mirror_sources"] =
            json!((0..10).map(|i| format!("eni-{i}")).collect::<Vec<_>>());
        let s = create(&mut d, P, &fields(body), t(1), DEFAULT_MAX_SOURCES).unwrap();
        assert_eq!(
            (s.virtual_network_id, s.packet_length, s.enabled),
            (0, 1460, true)
        );
    }

    #[test]
    fn update_changes_only_sent_fields_and_refreshes_updated_at() {
        let (mut d, fid) = with_filter();
        let s = create(&mut d, P, &fields(minimal(&fid)), t(1), DEFAULT_MAX_SOURCES).unwrap();
        let u = update(
            &mut d,
            P,
            &s.id,
            &fields(
                json!({"traffic_mirror_target_type": "elb", "type": "eni", "enabled": "true",
                           "traffic_mirror_sources": ["ignored"]}),
            ),
            t(9),
        )
        .unwrap();
        assert_eq!(u.traffic_mirror_target_type, "elb");
        assert!(u.enabled);
        assert_eq!(u.traffic_mirror_sources, ["eni-1"]);
        assert_eq!(u.name, "s");
        assert_eq!(u.created_at, s.created_at);
        assert_eq!(u.updated_at, "2026-01-02T03:04:09Z");
        let e = update(&mut d, P, &s.id, &fields(json!({"priority": 0})), t(10)).unwrap_err();
        assert_eq!(e.code, "VPC.0002");
        let e = update(&mut d, P, "nope", &fields(json!({})), t(10)).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code.as_str()), (404, "VPC.1001"));
    }

    #[test]
    fn the_cap_is_the_quota_given_for_create_and_add_sources() {
        let (mut d, fid) = with_filter();
        let ids =
            |r: std::ops::Range<usize>| -> Vec<String> { r.map(|i| format!("eni-{i}")).collect() };
        let with_sources = |v: Vec<String>| {
            let mut body = minimal(&fid);
            body["traffic_mirror_sources"] = json!(v);
            fields(body)
        };
        // (sources at create, cap, refused?)
        for (n, cap, refused) in [
            (11, 10, true),
            (10, 10, false),
            (15, 20, false),
            (21, 20, true),
        ] {
            let got = create(&mut d, P, &with_sources(ids(0..n)), t(1), cap);
            assert_eq!(got.is_err(), refused, "{n} sources under a cap of {cap}");
            if let Err(e) = got {
                assert_eq!((e.status.as_u16(), e.code.as_str()), (400, "VPC.1002"));
                assert!(
                    e.msg.contains(&format!("at most {cap} sources")),
                    "{}",
                    e.msg
                );
            }
        }
        let s = create(&mut d, P, &with_sources(ids(0..12)), t(1), 15).unwrap();
        let add = |v: Vec<String>| fields(json!({ "traffic_mirror_sources": v }));
        let e = add_sources(&mut d, P, &s.id, &add(ids(12..16)), t(2), 15).unwrap_err();
        assert_eq!(e.code, "VPC.1002");
        let u = add_sources(&mut d, P, &s.id, &add(ids(12..15)), t(2), 15).unwrap();
        assert_eq!(u.traffic_mirror_sources.len(), 15);
    }

    #[test]
    fn add_and_remove_sources_enforce_membership_and_limit() {
        let (mut d, fid) = with_filter();
        let s = create(&mut d, P, &fields(minimal(&fid)), t(1), DEFAULT_MAX_SOURCES).unwrap();
        let src = |v: Value| fields(json!({ "traffic_mirror_sources": v }));
        let e = add_sources(
            &mut d,
            P,
            &s.id,
            &src(json!(["eni-1"])),
            t(2),
            DEFAULT_MAX_SOURCES,
        )
        .unwrap_err();
        assert_eq!(e.code, "VPC.1003");
        let nine: Vec<String> = (2..11).map(|i| format!("eni-{i}")).collect();
        let u = add_sources(
            &mut d,
            P,
            &s.id,
            &src(json!(nine)),
            t(2),
            DEFAULT_MAX_SOURCES,
        )
        .unwrap();
        assert_eq!(u.traffic_mirror_sources.len(), 10);
        let e = add_sources(
            &mut d,
            P,
            &s.id,
            &src(json!(["eni-99"])),
            t(2),
            DEFAULT_MAX_SOURCES,
        )
        .unwrap_err();
        assert_eq!(e.code, "VPC.1002");
        let e = remove_sources(&mut d, P, &s.id, &src(json!(["eni-99"])), t(2)).unwrap_err();
        assert_eq!(e.code, "VPC.1004");
        let e = remove_sources(&mut d, P, &s.id, &src(json!([])), t(2)).unwrap_err();
        assert_eq!(e.code, "VPC.0002");
        let all: Vec<String> = u.traffic_mirror_sources.clone();
        let u = remove_sources(&mut d, P, &s.id, &src(json!(all)), t(3)).unwrap();
        assert!(u.traffic_mirror_sources.is_empty());
    }

    #[test]
    fn other_projects_do_not_see_sessions() {
        let (mut d, fid) = with_filter();
        let s = create(&mut d, P, &fields(minimal(&fid)), t(1), DEFAULT_MAX_SOURCES).unwrap();
        assert!(get(&d, "other", &s.id).is_err());
        assert!(all(&d, "other").is_empty());
        assert!(delete(&mut d, "other", &s.id).is_err());
        delete(&mut d, P, &s.id).unwrap();
        assert_eq!(delete(&mut d, P, &s.id).unwrap_err().status.as_u16(), 404);
    }
}
