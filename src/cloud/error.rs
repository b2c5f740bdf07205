//! Errors of cloud calls, and their classification (retryable or terminal).
//!
//! The client never retries; it only says what happened, so the controller can choose the policy:
//! - retryable: HTTP 429 and 5xx, timeouts, connection failures (including a connection dropped
//!   before the answer), a 2xx answer whose body cannot be decoded (see [`CloudError::Decode`]),
//!   and a credential source that failed (see [`CloudError::Credentials`]);
//! - terminal: every other 4xx (the request itself is wrong, or not allowed, or the object is gone),
//!   and invalid configuration or arguments.
//!
//! The Huawei `error_code` is kept for display and condition reasons, never for classification (the
//! codes of the traffic-mirror calls are not published). No variant carries a secret.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, NaiveDateTime, Utc};

/// A failed cloud call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudError {
    /// The service answered with a non-2xx status.
    #[error("{}", api_message(*status, error_code, error_msg, request_id))]
    Api {
        /// HTTP status.
        status: u16,
        /// Huawei error code (`VPC.nnnn`, `APIGW.nnnn`); empty when the body had none.
        error_code: String,
        /// Error message (or the start of a non-JSON body).
        error_msg: String,
        /// Request id from the body, else the `X-Request-Id` header.
        request_id: Option<String>,
        /// Parsed `Retry-After` header.
        retry_after: Option<Duration>,
    },
    /// No complete answer within the configured timeout (connect or whole request).
    #[error("cloud request timed out: {message}")]
    Timeout {
        /// What timed out.
        message: String,
    },
    /// The connection could not be made, or broke before a complete answer arrived.
    #[error("cloud connection failed: {message}")]
    Connect {
        /// The transport error chain.
        message: String,
    },
    /// A 2xx answer whose body is not what the API documents. Retryable: the cause is outside the
    /// caller's control (a proxy, a truncated body) and retrying a read is harmless; a create whose
    /// answer was unreadable is made safe by the controller's create-intent (it lists by name
    /// before creating again).
    #[error(
        "cannot decode cloud answer (HTTP {status}{}): {message}",
        rid(request_id)
    )]
    Decode {
        /// HTTP status of the answer.
        status: u16,
        /// Why decoding failed.
        message: String,
        /// Request id from the `X-Request-Id` header, if any.
        request_id: Option<String>,
    },
    /// The client configuration is unusable (bad endpoint URL, empty credentials, ...).
    #[error("invalid cloud client configuration: {0}")]
    InvalidConfig(String),
    /// A call's arguments are unusable (e.g. an empty id) and were not sent.
    #[error("invalid cloud request: {0}")]
    InvalidRequest(String),
    /// No credential to sign with: the ProviderConfig's credential source failed (the call was not
    /// sent). Retryable: the object waits while the ProviderConfig's own check reports the
    /// source's error in its status, and goes on once the source recovers.
    #[error("the ProviderConfig's credentials are unavailable: {message}")]
    Credentials {
        /// The source's error (never a secret).
        message: String,
    },
}

fn rid(request_id: &Option<String>) -> String {
    request_id
        .as_deref()
        .map(|r| format!(", request id {r}"))
        .unwrap_or_default()
}

fn api_message(
    status: u16,
    error_code: &str,
    error_msg: &str,
    request_id: &Option<String>,
) -> String {
    let mut s = format!("cloud API answered HTTP {status}");
    if !error_code.is_empty() {
        s.push(' ');
        s.push_str(error_code);
    }
    if !error_msg.is_empty() {
        s.push_str(": ");
        s.push_str(error_msg);
    }
    s.push_str(&rid(request_id));
    s
}

impl From<super::credentials::CredentialError> for CloudError {
    fn from(e: super::credentials::CredentialError) -> Self {
        CloudError::Credentials {
            message: format!("{} ({})", e, e.reason()),
        }
    }
}

impl CloudError {
    /// Whether trying the same call again later may succeed (429, 5xx, timeouts, connection
    /// failures, undecodable 2xx answers).
    pub fn is_retryable(&self) -> bool {
        match self {
            CloudError::Api { status, .. } => *status == 429 || *status >= 500,
            CloudError::Timeout { .. } | CloudError::Connect { .. } | CloudError::Decode { .. } => {
                true
            }
            CloudError::Credentials { .. } => true,
            CloudError::InvalidConfig(_) | CloudError::InvalidRequest(_) => false,
        }
    }

    /// Whether the gateway refused the call for the account's rate (HTTP 429): the account's budget
    /// slows every call down, so the one object that met it need not back off further.
    pub fn is_throttled(&self) -> bool {
        matches!(self, CloudError::Api { status: 429, .. })
    }

    /// The server's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CloudError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status, when an answer arrived.
    pub fn status(&self) -> Option<u16> {
        match self {
            CloudError::Api { status, .. } | CloudError::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The Huawei error code, when the answer carried one.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            CloudError::Api { error_code, .. } if !error_code.is_empty() => Some(error_code),
            _ => None,
        }
    }

    /// The request id of the failed call, when known (quote it to Huawei support).
    pub fn request_id(&self) -> Option<&str> {
        match self {
            CloudError::Api { request_id, .. } | CloudError::Decode { request_id, .. } => {
                request_id.as_deref()
            }
            _ => None,
        }
    }

    /// Whether the object does not exist (HTTP 404); a delete treats this as done.
    pub fn is_not_found(&self) -> bool {
        matches!(self, CloudError::Api { status: 404, .. })
    }

    /// A condition reason: the Huawei error code if any (with characters a Kubernetes condition
    /// reason cannot hold replaced by `_`, e.g. `VPC_0101`), else a CamelCase name of the class.
    pub fn reason(&self) -> String {
        if let Some(code) = self.error_code()
            && code.chars().any(|c| c.is_ascii_alphanumeric())
        {
            let mut r: String = code
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if !r.starts_with(|c: char| c.is_ascii_alphabetic()) {
                r.insert(0, 'E');
            }
            return r.trim_end_matches('_').to_string();
        }
        match self {
            CloudError::Api { status, .. } => match status {
                400 => "BadRequest",
                401 => "Unauthorized",
                403 => "Forbidden",
                404 => "NotFound",
                409 => "Conflict",
                429 => "Throttled",
                s if *s >= 500 => "ServerError",
                _ => "ClientError",
            }
            .to_string(),
            CloudError::Timeout { .. } => "Timeout".into(),
            CloudError::Connect { .. } => "ConnectionFailed".into(),
            CloudError::Decode { .. } => "InvalidResponse".into(),
            CloudError::InvalidConfig(_) => "InvalidConfig".into(),
            CloudError::InvalidRequest(_) => "InvalidRequest".into(),
            CloudError::Credentials { .. } => "ProviderConfigNotReady".into(),
        }
    }

    /// A low-cardinality label for metrics (failures counted per cause).
    pub fn metric_label(&self) -> &'static str {
        match self {
            CloudError::Api { status, .. } => match status {
                400 => "bad_request",
                401 => "unauthorized",
                403 => "forbidden",
                404 => "not_found",
                409 => "conflict",
                429 => "throttled",
                s if *s >= 500 => "server_error",
                _ => "client_error",
            },
            CloudError::Timeout { .. } => "timeout",
            CloudError::Connect { .. } => "connect",
            CloudError::Decode { .. } => "decode",
            CloudError::InvalidConfig(_) => "invalid_config",
            CloudError::InvalidRequest(_) => "invalid_request",
            CloudError::Credentials { .. } => "credentials",
        }
    }
}

/// Parse a `Retry-After` value: delay-seconds (a non-negative integer) or an HTTP date (IMF-fixdate,
/// RFC 850 or asctime form), the latter relative to `now` (a date in the past means zero).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    if v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at: DateTime<Utc> = DateTime::parse_from_rfc2822(v)
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(v, "%A, %d-%b-%y %H:%M:%S GMT")
                .ok()
                .map(|n| n.and_utc())
        })
        .or_else(|| {
            NaiveDateTime::parse_from_str(v, "%a %b %e %H:%M:%S %Y")
                .ok()
                .map(|n| n.and_utc())
        })?;
    let now: DateTime<Utc> = now.into();
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str) -> CloudError {
        CloudError::Api {
            status,
            error_code: code.into(),
            error_msg: "m".into(),
            request_id: Some("r".into()),
            retry_after: None,
        }
    }

    #[test]
    fn classification() {
        for s in [429, 500, 502, 503, 504] {
            assert!(api(s, "").is_retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 422] {
            assert!(!api(s, "").is_retryable(), "{s}");
        }
        assert!(
            CloudError::Timeout {
                message: "t".into()
            }
            .is_retryable()
        );
        assert!(
            CloudError::Connect {
                message: "c".into()
            }
            .is_retryable()
        );
        assert!(
            CloudError::Decode {
                status: 200,
                message: "d".into(),
                request_id: None
            }
            .is_retryable()
        );
        assert!(!CloudError::InvalidConfig("x".into()).is_retryable());
        assert!(!CloudError::InvalidRequest("x".into()).is_retryable());
        assert!(api(404, "").is_not_found());
        assert!(!api(400, "").is_not_found());
    }

    #[test]
    fn accessors() {
        let e = api(400, "VPC.0101");
        assert_eq!(e.status(), Some(400));
        assert_eq!(e.error_code(), Some("VPC.0101"));
        assert_eq!(e.request_id(), Some("r"));
        assert_eq!(api(400, "").error_code(), None);
        assert_eq!(CloudError::InvalidConfig("x".into()).status(), None);
        let t = CloudError::Api {
            status: 429,
            error_code: "APIGW.0308".into(),
            error_msg: String::new(),
            request_id: None,
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(t.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(t.to_string(), "cloud API answered HTTP 429 APIGW.0308");
        assert_eq!(
            e.to_string(),
            "cloud API answered HTTP 400 VPC.0101: m, request id r"
        );
    }

    #[test]
    fn reasons_are_valid_condition_reasons() {
        let valid = |r: &str| {
            r.starts_with(|c: char| c.is_ascii_alphabetic())
                && r.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_,:".contains(c))
                && !r.ends_with([',', ':'])
        };
        let cases = [
            (api(400, "VPC.0101"), "VPC_0101"),
            (api(401, "APIGW.0301"), "APIGW_0301"),
            (api(400, "123"), "E123"),
            (api(400, "..."), "BadRequest"),
            (api(404, ""), "NotFound"),
            (api(429, ""), "Throttled"),
            (api(503, ""), "ServerError"),
            (api(418, ""), "ClientError"),
            (
                CloudError::Timeout {
                    message: String::new(),
                },
                "Timeout",
            ),
            (
                CloudError::Connect {
                    message: String::new(),
                },
                "ConnectionFailed",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.reason(), want);
            assert!(valid(&e.reason()), "{}", e.reason());
        }
        assert_eq!(api(404, "").metric_label(), "not_found");
        assert_eq!(api(502, "").metric_label(), "server_error");
        assert_eq!(api(429, "x").metric_label(), "throttled");
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 2015-10-21T07:27:50Z
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-15 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed Oct 21 07:28:00 2015", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        for bad in ["", "-1", "1.5", "soon", "99999999999999999999999"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }
}
