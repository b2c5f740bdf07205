//! Error answers of the emulator: Huawei's error body and the table of codes the emulator uses.
//!
//! Huawei does not publish the exact `VPC.*` codes of the traffic-mirror calls, so the emulator
//! documents its own table here (mirrored in docs/emulator.md, section
//! "Error codes"). Clients must classify errors by HTTP status and keep the code for display only;
//! the codes are stable so tests can assert them.
//!
//! | HTTP | code | meaning |
//! |---|---|---|
//! | 400 | `VPC.0001` | the body is not JSON, or not the expected object (`{"traffic_mirror_session": {…}}`) |
//! | 400 | `VPC.0002` | a parameter has a wrong type or value (range, enum, format, `limit`, `marker`) |
//! | 400 | `VPC.0003` | a required parameter is missing |
//! | 404 | `VPC.1001` | the traffic mirror session does not exist |
//! | 400 | `VPC.1002` | a session would have more than 10 sources |
//! | 400 | `VPC.1003` | a source is listed twice, or is already in the session (add-sources) |
//! | 400 | `VPC.1004` | remove-sources names a source that is not in the session |
//! | 400 | `VPC.1005` | a source port does not exist (create, add-sources; only with `--check-ports`) |
//! | 404 | `VPC.1301` | the port does not exist (show port) |
//! | 404 | `VPC.1101` | the traffic mirror filter does not exist |
//! | 400 | `VPC.1102` | the filter referenced by a session or rule does not exist |
//! | 409 | `VPC.1103` | the filter is still used by a session and cannot be deleted |
//! | 404 | `VPC.1201` | the traffic mirror filter rule does not exist |
//! | 400 | `VPC.1202` | a rule update tries to change `traffic_mirror_filter_id` or `direction` |
//! | 500 | `VPC.0500` | internal error (e.g. the state file could not be written) |
//! | 5xx/4xx | `VPC.9999` | default code of an injected fault (other than 429) |
//! | 404 | `APIGW.0101` | no such API (unknown path, or a method the path does not have) |
//! | 413 | `APIGW.0201` | request body larger than 1 MiB |
//! | 401 | `APIGW.0301` | AK/SK authentication failed (missing/malformed `Authorization`, unknown AK, bad signature, missing/malformed/stale `X-Sdk-Date`) |
//! | 403 | `APIGW.0302` | the credential does not own the project id in the path |
//! | 429 | `APIGW.0308` | throttled by the rate limit (`--rate-limit`, see [`ApiError::throttled`]); also the default code of an injected 429 fault |
//!
//! A referenced filter that does not exist is answered 400 (not 404) on purpose: a 404 from an
//! update or create must only ever mean "the object you addressed is gone", never "something it
//! points at is missing", or a client could wrongly conclude its session was deleted.

use axum::http::StatusCode;
use serde_json::{Value, json};

/// Body not JSON / not the expected object.
pub const MALFORMED_BODY: &str = "VPC.0001";
/// A parameter has a wrong type or value.
pub const INVALID_PARAMETER: &str = "VPC.0002";
/// A required parameter is missing.
pub const MISSING_PARAMETER: &str = "VPC.0003";
/// The session does not exist.
pub const SESSION_NOT_FOUND: &str = "VPC.1001";
/// More than 10 sources.
pub const TOO_MANY_SOURCES: &str = "VPC.1002";
/// Duplicate source, or source already in the session.
pub const DUPLICATE_SOURCE: &str = "VPC.1003";
/// Source not in the session.
pub const SOURCE_NOT_IN_SESSION: &str = "VPC.1004";
/// A source port does not exist (`--check-ports`).
pub const SOURCE_PORT_NOT_FOUND: &str = "VPC.1005";
/// The port does not exist.
pub const PORT_NOT_FOUND: &str = "VPC.1301";
/// The filter does not exist.
pub const FILTER_NOT_FOUND: &str = "VPC.1101";
/// The referenced filter does not exist.
pub const REFERENCED_FILTER_NOT_FOUND: &str = "VPC.1102";
/// The filter is still used by a session.
pub const FILTER_IN_USE: &str = "VPC.1103";
/// The rule does not exist.
pub const RULE_NOT_FOUND: &str = "VPC.1201";
/// A rule's filter id or direction cannot change.
pub const RULE_IMMUTABLE_FIELD: &str = "VPC.1202";
/// Internal error.
pub const INTERNAL: &str = "VPC.0500";
/// Default code of an injected fault that is not a 429.
pub const INJECTED_FAULT: &str = "VPC.9999";
/// No such API.
pub const API_NOT_FOUND: &str = "APIGW.0101";
/// Request entity too large.
pub const ENTITY_TOO_LARGE: &str = "APIGW.0201";
/// AK/SK verification failed.
pub const AUTH_FAILED: &str = "APIGW.0301";
/// The credential may not access this project.
pub const PROJECT_FORBIDDEN: &str = "APIGW.0302";
/// Throttled.
pub const THROTTLED: &str = "APIGW.0308";

/// An error answer: HTTP status, Huawei error code and message. Rendered as
/// `{"error_code", "error_msg", "request_id"}` by the server, which adds the request id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {msg}")]
pub struct ApiError {
    /// HTTP status of the answer.
    pub status: StatusCode,
    /// `VPC.nnnn` / `APIGW.nnnn` code.
    pub code: String,
    /// Human-readable message.
    pub msg: String,
}

impl ApiError {
    /// An error with any status and code (used for injected faults).
    pub fn new(status: StatusCode, code: impl Into<String>, msg: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            msg: msg.into(),
        }
    }

    /// 400 `VPC.0001`: the body is not what the operation expects.
    pub fn malformed(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, MALFORMED_BODY, msg)
    }

    /// 400 `VPC.0002`: a parameter has a wrong type or value.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, INVALID_PARAMETER, msg)
    }

    /// 400 `VPC.0003`: a required parameter is missing.
    pub fn missing(field: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            MISSING_PARAMETER,
            format!("{field} is required"),
        )
    }

    /// 400 with a domain-specific code.
    pub fn bad_request(code: &str, msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, msg)
    }

    /// 404 with a domain-specific code, e.g. `not_found(SESSION_NOT_FOUND, "traffic mirror session", id)`.
    pub fn not_found(code: &str, what: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            code,
            format!("{what} {id} could not be found"),
        )
    }

    /// 404 `APIGW.0101`: no API at this method and path.
    pub fn no_such_api() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            API_NOT_FOUND,
            "The API does not exist or has not been published in the environment",
        )
    }

    /// 401 `APIGW.0301` with a reason appended to Huawei's message.
    pub fn unauthorized(reason: impl AsRef<str>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            AUTH_FAILED,
            format!(
                "Incorrect IAM authentication information: {}",
                reason.as_ref()
            ),
        )
    }

    /// 429 `APIGW.0308` with the gateway's message, naming the limit in calls per second
    /// (e.g. `limit:10`, `limit:0.5`). No `Retry-After`: the real gateway documents none.
    pub fn throttled(rps: f64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            THROTTLED,
            format!(
                "The throttling threshold has been reached: policy user over ratelimit, \
                 limit:{rps}, time:1 second"
            ),
        )
    }

    /// 500 `VPC.0500`.
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL, msg)
    }

    /// The JSON body of this error.
    pub fn body(&self, request_id: &str) -> Value {
        json!({
            "error_code": self.code,
            "error_msg": self.msg,
            "request_id": request_id,
        })
    }
}

/// The default code of an injected fault with this status.
pub fn default_fault_code(status: StatusCode) -> &'static str {
    if status == StatusCode::TOO_MANY_REQUESTS {
        THROTTLED
    } else {
        INJECTED_FAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_huawei_shape() {
        let e = ApiError::missing("traffic_mirror_session.name");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            e.body("r1"),
            json!({"error_code": "VPC.0003", "error_msg": "traffic_mirror_session.name is required", "request_id": "r1"})
        );
    }

    #[test]
    fn throttled_has_the_gateway_message() {
        let e = ApiError::throttled(10.0);
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            e.body("r"),
            json!({"error_code": "APIGW.0308", "error_msg": "The throttling threshold has been reached: policy user over ratelimit, limit:10, time:1 second", "request_id": "r"})
        );
        assert!(ApiError::throttled(0.5).msg.contains("limit:0.5,"));
    }

    #[test]
    fn fault_codes_default_by_status() {
        assert_eq!(
            default_fault_code(StatusCode::TOO_MANY_REQUESTS),
            "APIGW.0308"
        );
        assert_eq!(
            default_fault_code(StatusCode::SERVICE_UNAVAILABLE),
            "VPC.9999"
        );
    }
}
