//! List queries: exact-match filters on the documented query fields, `limit`/`marker` pagination
//! and `page_info`. Pure functions over an ordered collection (creation order).
//!
//! - A filter given more than once (`id=a&id=b`) matches any of its values.
//! - Integer and boolean filters must parse (`priority=x` is a 400); they compare by value.
//! - Unknown query keys are ignored.
//! - `limit` accepts 0-2000; 0 or absent means the maximum, 2000.
//! - `marker` is the id of the last item of the previous page; it is looked up in the whole
//!   collection (not only the matching items), and an unknown marker is a 400.
//! - `page_info`: `previous_marker` (first id on the page), `current_count`, and `next_marker`
//!   (last id on the page) only when more matching items follow.

use serde_json::{Map, Value, json};

use super::errors::ApiError;
use super::validate::parse_bool;

/// Largest (and default) page size.
pub const MAX_LIMIT: usize = 2000;

/// Type of a query filter, which decides how values are parsed and compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Compared as the exact string.
    Str,
    /// Parsed as an integer, compared by value.
    Int,
    /// Parsed as `true`/`false`.
    Bool,
}

/// An object that can be listed: it has an id and answers the string form of a filter field.
pub trait Listable {
    /// The object's id (the pagination marker).
    fn id(&self) -> &str;
    /// The value of a filterable field in canonical string form (`None` when unset).
    fn field(&self, key: &str) -> Option<String>;
    /// Whether the item matches one filter given with these (canonical) values: by default its
    /// [`field`](Self::field) equals one of them; items with list-valued or prefix filters
    /// (ports) override this.
    fn field_matches(&self, key: &str, values: &[String]) -> bool {
        self.field(key)
            .is_some_and(|actual| values.contains(&actual))
    }
}

/// A parsed list query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    filters: Vec<(String, Vec<String>)>,
    limit: usize,
    marker: Option<String>,
}

impl ListQuery {
    /// Parse a raw query string, keeping only the `allowed` filters (plus `limit` and `marker`).
    pub fn parse(raw: &str, allowed: &[(&str, Kind)]) -> Result<Self, ApiError> {
        let mut filters: Vec<(String, Vec<String>)> = Vec::new();
        let mut limit = MAX_LIMIT;
        let mut marker = None;
        for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
            match key.as_ref() {
                "limit" => {
                    limit = match value.parse::<usize>() {
                        Ok(0) => MAX_LIMIT,
                        Ok(n) if n <= MAX_LIMIT => n,
                        _ => {
                            return Err(ApiError::invalid(format!(
                                "limit must be an integer from 0 to {MAX_LIMIT}"
                            )));
                        }
                    }
                }
                "marker" => marker = Some(value.into_owned()).filter(|m| !m.is_empty()),
                k => {
                    let Some((_, kind)) = allowed.iter().find(|(name, _)| *name == k) else {
                        continue;
                    };
                    let canonical = canonical_value(k, *kind, &value)?;
                    match filters.iter_mut().find(|(name, _)| name == k) {
                        Some((_, values)) => values.push(canonical),
                        None => filters.push((k.to_owned(), vec![canonical])),
                    }
                }
            }
        }
        Ok(Self {
            filters,
            limit,
            marker,
        })
    }

    /// Whether `item` matches every filter.
    pub fn matches<T: Listable>(&self, item: &T) -> bool {
        self.filters
            .iter()
            .all(|(key, values)| item.field_matches(key, values))
    }

    /// One page of the matching items of `all` (in order), and its `page_info`.
    pub fn page<'a, T: Listable>(&self, all: &[&'a T]) -> Result<(Vec<&'a T>, Value), ApiError> {
        let start = match &self.marker {
            None => 0,
            Some(m) => all
                .iter()
                .position(|i| i.id() == m)
                .map(|p| p + 1)
                .ok_or_else(|| ApiError::invalid(format!("marker {m} does not exist")))?,
        };
        let mut matching = all[start..].iter().copied().filter(|i| self.matches(*i));
        let page: Vec<&'a T> = matching.by_ref().take(self.limit).collect();
        let more = matching.next().is_some();
        let mut info = Map::new();
        if let Some(first) = page.first() {
            info.insert("previous_marker".into(), json!(first.id()));
        }
        info.insert("current_count".into(), json!(page.len()));
        if more && let Some(last) = page.last() {
            info.insert("next_marker".into(), json!(last.id()));
        }
        Ok((page, Value::Object(info)))
    }
}

fn canonical_value(key: &str, kind: Kind, value: &str) -> Result<String, ApiError> {
    match kind {
        Kind::Str => Ok(value.to_owned()),
        Kind::Int => value
            .parse::<i64>()
            .map(|n| n.to_string())
            .map_err(|_| ApiError::invalid(format!("query parameter {key} must be an integer"))),
        Kind::Bool => parse_bool(value).map(|b| b.to_string()).ok_or_else(|| {
            ApiError::invalid(format!("query parameter {key} must be true or false"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Item {
        id: String,
        name: String,
        prio: i64,
    }

    impl Listable for Item {
        fn id(&self) -> &str {
            &self.id
        }
        fn field(&self, key: &str) -> Option<String> {
            match key {
                "id" => Some(self.id.clone()),
                "name" => Some(self.name.clone()),
                "priority" => Some(self.prio.to_string()),
                _ => None,
            }
        }
    }

    const ALLOWED: &[(&str, Kind)] = &[
        ("id", Kind::Str),
        ("name", Kind::Str),
        ("priority", Kind::Int),
    ];

    fn items(n: usize) -> Vec<Item> {
        (0..n)
            .map(|i| Item {
                id: format!("id{i}"),
                name: if i % 2 == 0 {
                    "even".into()
                } else {
                    "odd".into()
                },
                prio: i as i64,
            })
            .collect()
    }

    fn ids(page: &[&Item]) -> Vec<String> {
        page.iter().map(|i| i.id.clone()).collect()
    }

    #[test]
    fn pages_through_matching_items_with_markers() {
        let all = items(7);
        let refs: Vec<&Item> = all.iter().collect();
        let q = ListQuery::parse("name=even&limit=2", ALLOWED).unwrap();
        let (p, info) = q.page(&refs).unwrap();
        assert_eq!(ids(&p), ["id0", "id2"]);
        assert_eq!(
            info,
            json!({"previous_marker": "id0", "current_count": 2, "next_marker": "id2"})
        );
        let q = ListQuery::parse("name=even&limit=2&marker=id2", ALLOWED).unwrap();
        let (p, info) = q.page(&refs).unwrap();
        assert_eq!(ids(&p), ["id4", "id6"]);
        assert_eq!(info, json!({"previous_marker": "id4", "current_count": 2}));
    }

    #[test]
    fn empty_page_has_only_a_count() {
        let all = items(2);
        let refs: Vec<&Item> = all.iter().collect();
        let q = ListQuery::parse("name=none", ALLOWED).unwrap();
        let (p, info) = q.page(&refs).unwrap();
        assert!(p.is_empty());
        assert_eq!(info, json!({"current_count": 0}));
    }

    #[test]
    fn repeated_filters_match_any_and_ints_compare_by_value() {
        let all = items(5);
        let refs: Vec<&Item> = all.iter().collect();
        let q = ListQuery::parse("id=id1&id=id3&priority=03", ALLOWED).unwrap();
        let (p, _) = q.page(&refs).unwrap();
        assert_eq!(ids(&p), ["id3"]);
    }

    #[test]
    fn invalid_limit_marker_and_typed_filters_are_400() {
        let all = items(1);
        let refs: Vec<&Item> = all.iter().collect();
        for q in ["limit=2001", "limit=-1", "limit=x", "priority=abc"] {
            let e = ListQuery::parse(q, ALLOWED).unwrap_err();
            assert_eq!(e.code, "VPC.0002", "{q}");
        }
        let q = ListQuery::parse("marker=nope", ALLOWED).unwrap();
        assert_eq!(q.page(&refs).unwrap_err().code, "VPC.0002");
        assert_eq!(
            ListQuery::parse("limit=0", ALLOWED).unwrap().limit,
            MAX_LIMIT
        );
        assert_eq!(
            ListQuery::parse("limit=2000&unknown=1", ALLOWED)
                .unwrap()
                .limit,
            2000
        );
    }
}
