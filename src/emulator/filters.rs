//! Traffic mirror filters: create, update (name, description), delete (refused while a session
//! uses the filter; deleting a filter deletes its rules), and the answered shape with the filter's
//! `ingress_rules` and `egress_rules`.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::errors::{self, ApiError};
use super::list::{Kind, Listable};
use super::records::{Data, EGRESS, Filter, INGRESS, Rule};
use super::validate::{self, Fields};

/// Wrapper key of request and response bodies.
pub const WRAPPER: &str = "traffic_mirror_filter";
/// Wrapper key of list responses.
pub const LIST_KEY: &str = "traffic_mirror_filters";
/// The `type` the emulator answers for every filter (the reference does not give its values).
pub const FILTER_TYPE: &str = "eni";

/// Query fields of the list call.
pub const LIST_FILTERS: &[(&str, Kind)] = &[
    ("id", Kind::Str),
    ("name", Kind::Str),
    ("description", Kind::Str),
    ("created_at", Kind::Str),
    ("updated_at", Kind::Str),
];

impl Listable for Filter {
    fn id(&self) -> &str {
        &self.id
    }

    fn field(&self, key: &str) -> Option<String> {
        Some(match key {
            "id" => self.id.clone(),
            "name" => self.name.clone(),
            "description" => self.description.clone(),
            "created_at" => self.created_at.clone(),
            "updated_at" => self.updated_at.clone(),
            _ => return None,
        })
    }
}

/// The answered shape of a filter (the stored [`Filter`] keeps no rules): its fields plus its rules by direction (creation order).
pub fn view(data: &Data, filter: &Filter) -> Value {
    let rules_in = |direction: &str| -> Vec<&Rule> {
        data.rules
            .iter()
            .filter(|r| {
                r.project_id == filter.project_id
                    && r.traffic_mirror_filter_id == filter.id
                    && r.direction == direction
            })
            .collect()
    };
    json!({
        "id": filter.id,
        "project_id": filter.project_id,
        "name": filter.name,
        "description": filter.description,
        "ingress_rules": rules_in(INGRESS),
        "egress_rules": rules_in(EGRESS),
        "type": filter.source_type,
        "created_at": filter.created_at,
        "updated_at": filter.updated_at,
    })
}

/// The filters of `project`, in creation order.
pub fn all<'a>(data: &'a Data, project: &str) -> Vec<&'a Filter> {
    data.filters
        .iter()
        .filter(|f| f.project_id == project)
        .collect()
}

/// The filter `id` of `project`, or 404.
pub fn get<'a>(data: &'a Data, project: &str, id: &str) -> Result<&'a Filter, ApiError> {
    data.filters
        .iter()
        .find(|f| f.project_id == project && f.id == id)
        .ok_or_else(|| ApiError::not_found(errors::FILTER_NOT_FOUND, "traffic mirror filter", id))
}

fn name_and_description(f: &Fields) -> Result<(Option<String>, Option<String>), ApiError> {
    let name = f.string("name")?;
    if let Some(n) = &name {
        validate::check_name(&f.path("name"), n)?;
    }
    let description = f.string("description")?;
    if let Some(d) = &description {
        validate::check_description(&f.path("description"), d)?;
    }
    Ok((name, description))
}

/// Create a filter (201); `name` is required.
pub fn create(
    data: &mut Data,
    project: &str,
    f: &Fields,
    now: DateTime<Utc>,
) -> Result<Filter, ApiError> {
    let (name, description) = name_and_description(f)?;
    let name = name.ok_or_else(|| ApiError::missing(&f.path("name")))?;
    let ts = validate::timestamp(now);
    let filter = Filter {
        id: uuid::Uuid::new_v4().to_string(),
        project_id: project.to_owned(),
        name,
        description: description.unwrap_or_default(),
        source_type: FILTER_TYPE.to_owned(),
        created_at: ts.clone(),
        updated_at: ts,
    };
    data.filters.push(filter.clone());
    Ok(filter)
}

/// Update a filter's name and/or description (200).
pub fn update(
    data: &mut Data,
    project: &str,
    id: &str,
    f: &Fields,
    now: DateTime<Utc>,
) -> Result<Filter, ApiError> {
    get(data, project, id)?;
    let (name, description) = name_and_description(f)?;
    let filter = data
        .filters
        .iter_mut()
        .find(|x| x.project_id == project && x.id == id)
        .ok_or_else(|| {
            ApiError::not_found(errors::FILTER_NOT_FOUND, "traffic mirror filter", id)
        })?;
    if let Some(n) = name {
        filter.name = n;
    }
    if let Some(d) = description {
        filter.description = d;
    }
    filter.updated_at = validate::timestamp(now);
    Ok(filter.clone())
}

/// Delete a filter and its rules (204); 409 while a session uses it, 404 when it does not exist.
pub fn delete(data: &mut Data, project: &str, id: &str) -> Result<(), ApiError> {
    get(data, project, id)?;
    if let Some(s) = data
        .sessions
        .iter()
        .find(|s| s.project_id == project && s.traffic_mirror_filter_id == id)
    {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            errors::FILTER_IN_USE,
            format!(
                "traffic mirror filter {id} is used by traffic mirror session {}",
                s.id
            ),
        ));
    }
    data.filters
        .retain(|f| !(f.project_id == project && f.id == id));
    data.rules
        .retain(|r| !(r.project_id == project && r.traffic_mirror_filter_id == id));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::records::fixtures;
    use chrono::TimeZone;

    const P: &str = "proj";

    fn fields(wrapper: &'static str, v: Value) -> Fields {
        Fields::from_map(wrapper, v.as_object().unwrap().clone())
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
    }

    #[test]
    fn filter_view_lists_rules_by_direction() {
        let mut d = Data::default();
        let f = create(&mut d, P, &fields(WRAPPER, json!({"name": "f"})), now()).unwrap();
        for (i, dir) in ["ingress", "egress", "ingress"].into_iter().enumerate() {
            d.rules
                .push(fixtures::rule(P, &format!("r{i}"), &f.id, dir));
        }
        // A rule of another filter is not listed.
        d.rules
            .push(fixtures::rule(P, "other", "f-other", "ingress"));
        let v = view(&d, &f);
        assert_eq!(v["ingress_rules"].as_array().unwrap().len(), 2);
        assert_eq!(v["egress_rules"].as_array().unwrap().len(), 1);
        assert_eq!(v["type"], "eni");
        assert_eq!(v["description"], "");
    }

    #[test]
    fn filter_in_use_cannot_be_deleted_and_delete_cascades_rules() {
        let mut d = Data::default();
        let f = create(&mut d, P, &fields(WRAPPER, json!({"name": "f"})), now()).unwrap();
        d.rules.push(fixtures::rule(P, "r1", &f.id, "egress"));
        d.sessions.push(fixtures::session(P, "s1", &f.id));
        let e = delete(&mut d, P, &f.id).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code.as_str()), (409, "VPC.1103"));
        d.sessions.clear();
        delete(&mut d, P, &f.id).unwrap();
        assert!(d.rules.is_empty());
        assert_eq!(delete(&mut d, P, &f.id).unwrap_err().code, "VPC.1101");
    }

    #[test]
    fn create_requires_a_valid_name() {
        let mut d = Data::default();
        let e = create(&mut d, P, &fields(WRAPPER, json!({})), now()).unwrap_err();
        assert_eq!(e.code, "VPC.0003");
        let e = create(&mut d, P, &fields(WRAPPER, json!({"name": ""})), now()).unwrap_err();
        assert_eq!(e.code, "VPC.0002");
        let e = create(
            &mut d,
            P,
            &fields(WRAPPER, json!({"name": "ok", "description": ">"})),
            now(),
        )
        .unwrap_err();
        assert_eq!(e.code, "VPC.0002");
    }
}
