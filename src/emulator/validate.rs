//! Request-body parsing and the documented field rules (names, descriptions, ranges, enums,
//! CIDRs, port ranges). Pure functions, no state.
//!
//! The parser is deliberately lenient where Huawei's own clients are loose: integers may come as
//! JSON numbers or as decimal strings, booleans as JSON booleans or `"true"`/`"false"` strings
//! (any case), and `null` means "absent". Unknown fields are ignored. Everything else that does not
//! fit the documented type is a 400.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::errors::ApiError;

/// Timestamp format of `created_at` / `updated_at` (UTC, second precision).
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// Render a timestamp the way the API does.
pub fn timestamp(now: DateTime<Utc>) -> String {
    now.format(TIMESTAMP_FORMAT).to_string()
}

/// The fields of one wrapped request object, e.g. the inside of `{"traffic_mirror_session": {…}}`.
#[derive(Debug, Clone)]
pub struct Fields {
    wrapper: &'static str,
    map: Map<String, Value>,
}

impl Fields {
    /// Parse a body of the form `{"<wrapper>": {…}}`.
    pub fn parse(body: &[u8], wrapper: &'static str) -> Result<Self, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::missing(wrapper));
        }
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::malformed(format!("request body is not valid JSON: {e}")))?;
        let Value::Object(mut top) = value else {
            return Err(ApiError::malformed("request body must be a JSON object"));
        };
        match top.remove(wrapper) {
            None | Some(Value::Null) => Err(ApiError::missing(wrapper)),
            Some(Value::Object(map)) => Ok(Self { wrapper, map }),
            Some(_) => Err(ApiError::malformed(format!("{wrapper} must be an object"))),
        }
    }

    /// Fields built directly from a map (tests).
    pub fn from_map(wrapper: &'static str, map: Map<String, Value>) -> Self {
        Self { wrapper, map }
    }

    /// `wrapper.key`, for messages.
    pub fn path(&self, key: &str) -> String {
        format!("{}.{key}", self.wrapper)
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// A copy with `key` set to `value` (the batch rule create fills in the path's filter id).
    pub fn with(&self, key: &str, value: Value) -> Self {
        let mut map = self.map.clone();
        map.insert(key.to_owned(), value);
        Self {
            wrapper: self.wrapper,
            map,
        }
    }

    /// Whether the field is present (and not `null`).
    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// An optional string field.
    pub fn string(&self, key: &str) -> Result<Option<String>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::invalid(format!(
                "{} must be a string",
                self.path(key)
            ))),
        }
    }

    /// A required string field.
    pub fn required_string(&self, key: &str) -> Result<String, ApiError> {
        self.string(key)?
            .ok_or_else(|| ApiError::missing(&self.path(key)))
    }

    /// An optional integer field within `min..=max`; accepts a JSON integer or a decimal string.
    pub fn int(&self, key: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let n = match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse::<i64>().ok(),
            _ => None,
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::invalid(format!(
                "{} must be an integer from {min} to {max}",
                self.path(key)
            ))),
        }
    }

    /// An optional boolean field; accepts `true`/`false` or the strings `"true"`/`"false"`.
    pub fn boolean(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => parse_bool(s).map(Some).ok_or_else(|| {
                ApiError::invalid(format!("{} must be true or false", self.path(key)))
            }),
            Some(_) => Err(ApiError::invalid(format!(
                "{} must be true or false",
                self.path(key)
            ))),
        }
    }

    /// An optional list of strings.
    pub fn string_list(&self, key: &str) -> Result<Option<Vec<String>>, ApiError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let err = || ApiError::invalid(format!("{} must be an array of strings", self.path(key)));
        let Value::Array(items) = v else {
            return Err(err());
        };
        items
            .iter()
            .map(|i| i.as_str().map(str::to_owned).ok_or_else(err))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// `"true"` / `"false"` in any case.
pub fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Names: 1-64 characters, letters (any script, e.g. Chinese), digits, `_`, `-`, `.`.
pub fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    let count = name.chars().count();
    let ok = (1..=64).contains(&count)
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{field} must be 1-64 characters of letters, digits, '_', '-' and '.'"
        )))
    }
}

/// Descriptions: 0-255 characters, without `<` or `>`.
pub fn check_description(field: &str, description: &str) -> Result<(), ApiError> {
    if description.chars().count() <= 255 && !description.contains(['<', '>']) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{field} must be at most 255 characters and must not contain '<' or '>'"
        )))
    }
}

/// An id field that must be a non-empty string of at most 64 characters.
pub fn check_id(field: &str, id: &str) -> Result<(), ApiError> {
    if !id.is_empty() && id.chars().count() <= 64 && !id.chars().any(char::is_whitespace) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{field} must be a non-empty id of at most 64 characters without whitespace"
        )))
    }
}

/// Check `value` is exactly one of `allowed` (case-sensitive).
pub fn check_enum(field: &str, value: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{field} must be one of {}",
            allowed.join(", ")
        )))
    }
}

/// Map `value` case-insensitively onto one of `canonical` (e.g. `ipv4` → `IPv4`).
pub fn normalize_enum(field: &str, value: &str, canonical: &[&str]) -> Result<String, ApiError> {
    canonical
        .iter()
        .find(|c| c.eq_ignore_ascii_case(value.trim()))
        .map(|c| (*c).to_owned())
        .ok_or_else(|| {
            ApiError::invalid(format!("{field} must be one of {}", canonical.join(", ")))
        })
}

/// Check `value` is one of `allowed` in any case, and keep it as sent (trimmed): `tcp` stays
/// `tcp`. For fields the real API answers in the case it was sent (rule `protocol`).
pub fn check_enum_any_case(field: &str, value: &str, allowed: &[&str]) -> Result<String, ApiError> {
    let trimmed = value.trim();
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(trimmed)) {
        Ok(trimmed.to_owned())
    } else {
        Err(ApiError::invalid(format!(
            "{field} must be one of {} (any case)",
            allowed.join(", ")
        )))
    }
}

/// A CIDR block (`address/prefix`), trimmed; its family must match `ethertype` (`IPv4`/`IPv6`).
pub fn check_cidr(field: &str, value: &str, ethertype: &str) -> Result<String, ApiError> {
    let trimmed = value.trim();
    let err = || {
        ApiError::invalid(format!(
            "{field} must be an {ethertype} CIDR block such as {}",
            if ethertype == "IPv6" {
                "2001:db8::/32"
            } else {
                "10.0.0.0/8"
            }
        ))
    };
    let (addr, prefix) = trimmed.split_once('/').ok_or_else(err)?;
    let addr: IpAddr = addr.parse().map_err(|_| err())?;
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) || prefix.len() > 3 {
        return Err(err());
    }
    let prefix: u8 = prefix.parse().map_err(|_| err())?;
    let ok = match addr {
        IpAddr::V4(_) => ethertype == "IPv4" && prefix <= 32,
        IpAddr::V6(_) => ethertype == "IPv6" && prefix <= 128,
    };
    if ok {
        Ok(trimmed.to_owned())
    } else {
        Err(err())
    }
}

/// A port range `80-200` or a single port `80`, each port 1-65535 and low ≤ high.
pub fn check_port_range(field: &str, value: &str) -> Result<String, ApiError> {
    let trimmed = value.trim();
    let port = |s: &str| -> Option<u32> {
        if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<u32>().ok().filter(|p| (1..=65535).contains(p))
    };
    let ok = match trimmed.split_once('-') {
        Some((lo, hi)) => matches!((port(lo), port(hi)), (Some(l), Some(h)) if l <= h),
        None => port(trimmed).is_some(),
    };
    if ok {
        Ok(trimmed.to_owned())
    } else {
        Err(ApiError::invalid(format!(
            "{field} must be a port (1-65535) or a range such as 80-200"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> Fields {
        match v {
            Value::Object(m) => Fields::from_map("o", m),
            _ => panic!("object expected"),
        }
    }

    #[test]
    fn names_follow_the_documented_alphabet_and_length() {
        for ok in [
            "a",
            "web-tap_1.0",
            "镜像会话",
            &"x".repeat(64),
            &"镜".repeat(64),
        ] {
            assert!(check_name("n", ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "a<b", &"x".repeat(65), "tab\t"] {
            assert!(check_name("n", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn descriptions_reject_angle_brackets_and_length() {
        assert!(check_description("d", "").is_ok());
        assert!(check_description("d", &"é".repeat(255)).is_ok());
        assert!(check_description("d", &"é".repeat(256)).is_err());
        assert!(check_description("d", "a<b").is_err());
        assert!(check_description("d", "a>b").is_err());
    }

    #[test]
    fn ints_accept_numbers_and_decimal_strings_within_range() {
        let f = fields(json!({"a": 5, "b": "7", "c": 0, "d": "x", "e": 1.5, "f": null, "g": true}));
        assert_eq!(f.int("a", 1, 10).unwrap(), Some(5));
        assert_eq!(f.int("b", 1, 10).unwrap(), Some(7));
        assert!(f.int("c", 1, 10).is_err());
        assert!(f.int("d", 1, 10).is_err());
        assert!(f.int("e", 1, 10).is_err());
        assert_eq!(f.int("f", 1, 10).unwrap(), None);
        assert_eq!(f.int("missing", 1, 10).unwrap(), None);
        assert!(f.int("g", 1, 10).is_err());
    }

    #[test]
    fn booleans_accept_strings() {
        let f = fields(json!({"a": true, "b": "false", "c": "TRUE", "d": "yes", "e": 1}));
        assert_eq!(f.boolean("a").unwrap(), Some(true));
        assert_eq!(f.boolean("b").unwrap(), Some(false));
        assert_eq!(f.boolean("c").unwrap(), Some(true));
        assert!(f.boolean("d").is_err());
        assert!(f.boolean("e").is_err());
    }

    #[test]
    fn parse_reports_malformed_and_missing_wrappers() {
        let e = Fields::parse(b"{not json", "w").unwrap_err();
        assert_eq!(e.code, "VPC.0001");
        let e = Fields::parse(b"[]", "w").unwrap_err();
        assert_eq!(e.code, "VPC.0001");
        let e = Fields::parse(b"{}", "w").unwrap_err();
        assert_eq!(e.code, "VPC.0003");
        let e = Fields::parse(b"", "w").unwrap_err();
        assert_eq!(e.code, "VPC.0003");
        let e = Fields::parse(br#"{"w": 3}"#, "w").unwrap_err();
        assert_eq!(e.code, "VPC.0001");
        assert!(Fields::parse(br#"{"w": {}}"#, "w").is_ok());
    }

    #[test]
    fn cidrs_are_trimmed_and_checked_against_ethertype() {
        assert_eq!(
            check_cidr("c", " 10.0.0.0/8 ", "IPv4").unwrap(),
            "10.0.0.0/8"
        );
        assert_eq!(
            check_cidr("c", "2001:db8::/32", "IPv6").unwrap(),
            "2001:db8::/32"
        );
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0/8",
            "2001:db8::/32",
            "x/8",
            "10.0.0.0/",
            "10.0.0.0/+8",
        ] {
            assert!(check_cidr("c", bad, "IPv4").is_err(), "{bad}");
        }
        assert!(check_cidr("c", "10.0.0.0/8", "IPv6").is_err());
    }

    #[test]
    fn port_ranges() {
        for ok in ["80", "80-200", "1-65535", "443-443"] {
            assert_eq!(check_port_range("p", ok).unwrap(), ok);
        }
        for bad in [
            "0", "65536", "200-80", "80-", "-80", "a", "", "1-2-3", "+80",
        ] {
            assert!(check_port_range("p", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn enums() {
        assert_eq!(
            normalize_enum("e", "ipv6", &["IPv4", "IPv6"]).unwrap(),
            "IPv6"
        );
        assert!(normalize_enum("e", "ipv5", &["IPv4", "IPv6"]).is_err());
        assert!(check_enum("t", "eni", &["eni", "elb"]).is_ok());
        assert!(check_enum("t", "ENI", &["eni", "elb"]).is_err());
        let p = &["TCP", "ALL"];
        assert_eq!(check_enum_any_case("p", " tcp ", p).unwrap(), "tcp");
        assert_eq!(check_enum_any_case("p", "All", p).unwrap(), "All");
        assert_eq!(check_enum_any_case("p", "TCP", p).unwrap(), "TCP");
        assert_eq!(
            check_enum_any_case("p", "sctp", p).unwrap_err().code,
            "VPC.0002"
        );
        assert!(check_enum_any_case("p", "", p).is_err());
    }
}
