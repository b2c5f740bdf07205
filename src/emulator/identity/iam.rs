//! The IAM paths the official SDKs call for temporary credentials:
//!
//! - `POST /v3.0/OS-AUTH/id-token/tokens` (unsigned; `X-Idp-Id`, `{"auth":{"id_token":{"id"}}}`):
//!   verifies the ID token and answers 201 with an unscoped token in `X-Subject-Token`.
//! - `POST /v3.0/OS-CREDENTIAL/securitytokens`: method `token` (unsigned; the token in
//!   `X-Auth-Token`, which wins, or in the body) or `assume_role` (signed with the caller's
//!   permanent or temporary credential; a registered agency). Answers 201 `{"credential"}`.
//! - `GET /v3/projects?name=` (signed): the emulator's one project, whatever the name.
//!
//! Error codes are those IAM documents for these calls: 400 `IAM.0011` (invalid body), 401
//! `IAM.0001` (authentication failed), 404 `IAM.0004` (unknown identity provider or agency).

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::jwt::unauthenticated;
use super::{Identity, Reply, iam_time, jwt};
use crate::emulator::errors::ApiError;

/// IAM's code for an invalid request body (400).
pub const IAM_INVALID_BODY: &str = "IAM.0011";
/// IAM's code for something that could not be found (404).
pub const IAM_NOT_FOUND: &str = "IAM.0004";
/// Documented range of `duration_seconds`.
pub const DURATION_RANGE: (u64, u64) = (900, 86_400);
/// `duration_seconds` when omitted.
pub const DEFAULT_DURATION: u64 = 900;

fn invalid_body(reason: impl AsRef<str>) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        IAM_INVALID_BODY,
        format!("Request body is invalid: {}", reason.as_ref()),
    )
}

fn not_found(what: &str, id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        IAM_NOT_FOUND,
        format!("Could not find {what}: {id}."),
    )
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| invalid_body(format!("not JSON ({e})")))
}

/// `POST /v3.0/OS-AUTH/id-token/tokens`.
pub fn id_token_tokens(
    id: &Identity,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Reply, ApiError> {
    let idp_id = header(headers, "x-idp-id").ok_or_else(|| invalid_body("X-Idp-Id is missing"))?;
    let body = parse_body(body)?;
    let token = body
        .pointer("/auth/id_token/id")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid_body("auth.id_token.id is required"))?;
    let idp = id
        .idp(idp_id)
        .ok_or_else(|| not_found("identity provider", idp_id))?;
    let claims = jwt::verify(&idp, token.trim())?;
    let (subject_token, t) = id.issue_unscoped(&claims.sub, &idp.id, now);
    let answer = json!({"token": {
        "expires_at": iam_time(t.expires_at), "issued_at": iam_time(now), "methods": ["mapped"],
        "user": {
            "OS-FEDERATION": {"identity_provider": {"id": idp.id}, "protocol": {"id": "oidc"}, "groups": []},
            "domain": {"id": "emulator-domain", "name": "emulator"},
            "id": claims.sub, "name": claims.sub,
        },
    }});
    let mut reply = Reply::json(StatusCode::CREATED, answer);
    reply.headers.push(("X-Subject-Token", subject_token));
    Ok(reply)
}

/// `duration_seconds` of `obj`: omitted = 900, else within 900-86400.
fn duration(obj: Option<&Value>) -> Result<Duration, ApiError> {
    let secs = match obj.and_then(|o| o.get("duration_seconds")) {
        None | Some(Value::Null) => DEFAULT_DURATION,
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| invalid_body("duration_seconds must be an integer"))?,
    };
    if !(DURATION_RANGE.0..=DURATION_RANGE.1).contains(&secs) {
        return Err(invalid_body(format!(
            "duration_seconds must be from {} to {}",
            DURATION_RANGE.0, DURATION_RANGE.1
        )));
    }
    Ok(Duration::from_secs(secs))
}

/// `POST /v3.0/OS-CREDENTIAL/securitytokens`; `signed` verifies the request's AK/SK signature
/// (needed by `assume_role` only).
pub fn security_tokens(
    id: &Identity,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
    signed: impl FnOnce() -> Result<String, ApiError>,
) -> Result<Reply, ApiError> {
    let body = parse_body(body)?;
    let identity = body
        .pointer("/auth/identity")
        .ok_or_else(|| invalid_body("auth.identity is required"))?;
    let methods: Vec<&str> = identity
        .get("methods")
        .and_then(Value::as_array)
        .map(|m| m.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let lifetime = match methods.as_slice() {
        ["token"] => by_token(id, headers, identity, now)?,
        ["assume_role"] => by_assume_role(id, identity, signed)?,
        _ => {
            return Err(invalid_body(
                "methods must be [\"token\"] or [\"assume_role\"]",
            ));
        }
    };
    let cred = id.issue_credential(lifetime, now);
    Ok(Reply::json(StatusCode::CREATED, cred.answer()))
}

fn by_token(
    id: &Identity,
    headers: &HeaderMap,
    identity: &Value,
    now: DateTime<Utc>,
) -> Result<Duration, ApiError> {
    let section = identity.get("token");
    let token = header(headers, "x-auth-token")
        .or_else(|| section.and_then(|t| t.get("id")).and_then(Value::as_str))
        .ok_or_else(|| unauthenticated("no token (X-Auth-Token or auth.identity.token.id)"))?;
    let lifetime = duration(section)?;
    id.unscoped(token, now)
        .ok_or_else(|| unauthenticated("the token is not valid or has expired"))?;
    Ok(lifetime)
}

fn by_assume_role(
    id: &Identity,
    identity: &Value,
    signed: impl FnOnce() -> Result<String, ApiError>,
) -> Result<Duration, ApiError> {
    signed().map_err(|e| unauthenticated(e.msg))?;
    let role = identity
        .get("assume_role")
        .ok_or_else(|| invalid_body("auth.identity.assume_role is required"))?;
    let field = |k: &str| {
        role.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let agency = field("agency_name").ok_or_else(|| invalid_body("agency_name is required"))?;
    let domain = field("domain_name")
        .or_else(|| field("domain_id"))
        .ok_or_else(|| invalid_body("domain_name or domain_id is required"))?;
    let lifetime = duration(Some(role))?;
    if !id.has_agency(domain, agency) {
        return Err(not_found("agency", &format!("{domain}/{agency}")));
    }
    Ok(lifetime)
}

/// `GET /v3/projects[?name=]` (already verified): the emulator's project, named as asked.
pub fn projects(project_id: &str, query: &str) -> Reply {
    let name = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "name")
        .map_or_else(|| project_id.to_owned(), |(_, v)| v.into_owned());
    Reply::json(
        StatusCode::OK,
        json!({"projects": [{"id": project_id, "name": name, "enabled": true,
                             "domain_id": "emulator-domain", "is_domain": false}],
               "links": {"self": "/v3/projects", "next": null, "previous": null}}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_default_to_900_and_stay_in_range() {
        let d = |v: Value| duration(Some(&v)).map(|d| d.as_secs());
        assert_eq!(duration(None).unwrap().as_secs(), 900);
        assert_eq!(d(json!({})).unwrap(), 900);
        assert_eq!(d(json!({"duration_seconds": 3600})).unwrap(), 3600);
        assert_eq!(d(json!({"duration_seconds": "86400"})).unwrap(), 86400);
        for bad in [json!(899), json!(86401), json!("x"), json!(-1)] {
            assert_eq!(
                d(json!({"duration_seconds": bad})).unwrap_err().code,
                "IAM.0011"
            );
        }
    }

    #[test]
    fn projects_answer_the_one_project() {
        let r = projects("p1", "name=cn-north-4");
        let super::super::ReplyBody::Json(v) = r.body else {
            panic!("json")
        };
        assert_eq!(v["projects"][0]["id"], "p1");
        assert_eq!(v["projects"][0]["name"], "cn-north-4");
    }
}
