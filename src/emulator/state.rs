//! The shared state of one emulator instance ([`AppState`]): the project, the signature
//! verifier, the data store, the call log, the queue of injected faults and the throttling and
//! latency limits. Both the API pipeline
//! (the `server` module) and the admin API (the `admin` module) work on it; it depends on neither.

use std::sync::{Mutex, MutexGuard};

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth::Verifier;
use super::errors::ApiError;
use super::identity::Identity;
use super::limits::Limits;
use super::store::Store;

/// Shared state of one emulator instance.
#[derive(Debug)]
pub struct AppState {
    /// The project every credential owns.
    pub project_id: String,
    /// Signature verifier with the accepted credentials.
    pub verifier: Verifier,
    /// Sessions, filters, rules (optionally persisted).
    pub store: Store,
    /// Every API call so far.
    pub calls: CallLog,
    /// Pending injected faults.
    pub faults: Faults,
    /// Rate limit (token bucket per project) and latency of API calls.
    pub limits: Limits,
    /// `--check-ports`: a session create or add-sources naming an unknown port is refused.
    pub check_ports: bool,
    /// `--max-sources-per-session`: create and add-sources refuse a session above this many sources
    /// (400 `VPC.1002`), the cloud's per-session quota.
    pub max_sources_per_session: usize,
    /// The identity side: providers, agencies, metadata settings, issued credentials.
    pub identity: Identity,
    /// Whether the batch rule create is served (else 404, as where the API is not deployed).
    pub batch_rule_create: super::rules::BatchSwitch,
}

/// One API call as the emulator saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// HTTP method, upper case.
    pub method: String,
    /// Path as received (still percent-encoded).
    pub path: String,
    /// Raw query string without `?`, or `""`.
    pub query: String,
    /// The body parsed as JSON, or `null` when empty or not JSON.
    pub body: Value,
    /// Answered status; 0 when the connection was dropped without an answer.
    pub status: u16,
    /// Whether the rate limit refused the call (then `status` is 429 and nothing ran).
    #[serde(default)]
    pub throttled: bool,
    /// When the call arrived (RFC 3339, UTC, milliseconds).
    pub at: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The in-memory call log (not persisted).
#[derive(Debug, Default)]
pub struct CallLog(Mutex<Vec<CallRecord>>);

impl CallLog {
    /// Append a call.
    pub fn push(&self, record: CallRecord) {
        lock(&self.0).push(record);
    }

    /// Every call so far, in order.
    pub fn snapshot(&self) -> Vec<CallRecord> {
        lock(&self.0).clone()
    }

    /// Forget every call.
    pub fn clear(&self) {
        lock(&self.0).clear();
    }
}

fn one() -> u32 {
    1
}

/// A fault to inject into the next `times` API calls that match `method` and `path_contains`.
///
/// With `status` the call is answered with that status and a Huawei error body (`error_code`,
/// default `APIGW.0308` for 429 and `VPC.9999` otherwise; `error_msg`), plus `Retry-After` when
/// `retry_after_s` is set. With `drop_connection` the connection is closed without any answer.
/// With only `delay_ms` the call is answered normally, late. `delay_ms` also delays a failure.
/// With `execute` the real operation runs first and only its answer is replaced (a create that
/// succeeded but whose answer was lost).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Only calls with this method (any case); all methods when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Only calls whose path contains this string; all paths when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_contains: Option<String>,
    /// Answer with this HTTP status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Error code of the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Error message of the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_msg: Option<String>,
    /// How many matching calls this fault applies to (default 1).
    #[serde(default = "one")]
    pub times: u32,
    /// Wait this long before answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Send `Retry-After: <seconds>` with the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
    /// Close the connection without answering.
    #[serde(default)]
    pub drop_connection: bool,
    /// Run the real operation before failing (only the answer is lost).
    #[serde(default)]
    pub execute: bool,
}

impl FaultSpec {
    /// Check the spec makes sense.
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.times == 0 {
            return Err(ApiError::invalid("times must be at least 1"));
        }
        if let Some(s) = self.status
            && StatusCode::from_u16(s).is_err()
        {
            return Err(ApiError::invalid("status must be an HTTP status (100-999)"));
        }
        if self.status.is_none() && !self.drop_connection && self.delay_ms.is_none() {
            return Err(ApiError::invalid(
                "a fault needs status, drop_connection or delay_ms",
            ));
        }
        if self.status.is_some() && self.drop_connection {
            return Err(ApiError::invalid(
                "status and drop_connection exclude each other",
            ));
        }
        Ok(())
    }

    /// Whether the call fails (rather than only being delayed).
    pub fn fails(&self) -> bool {
        self.status.is_some() || self.drop_connection
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.contains(p))
    }
}

/// A pending fault and how many more calls it applies to.
#[derive(Debug, Clone, Serialize)]
pub struct PendingFault {
    /// The fault.
    #[serde(flatten)]
    pub spec: FaultSpec,
    /// Calls it still applies to.
    pub remaining: u32,
}

/// The queue of pending faults, matched in the order they were added.
#[derive(Debug, Default)]
pub struct Faults(Mutex<Vec<PendingFault>>);

impl Faults {
    /// Queue a fault.
    pub fn add(&self, spec: FaultSpec) {
        let remaining = spec.times;
        lock(&self.0).push(PendingFault { spec, remaining });
    }

    /// Consume one use of the first fault matching this call, if any.
    pub fn take(&self, method: &str, path: &str) -> Option<FaultSpec> {
        let mut faults = lock(&self.0);
        let i = faults.iter().position(|f| f.spec.matches(method, path))?;
        let spec = faults[i].spec.clone();
        faults[i].remaining -= 1;
        if faults[i].remaining == 0 {
            faults.remove(i);
        }
        Some(spec)
    }

    /// The pending faults.
    pub fn snapshot(&self) -> Vec<PendingFault> {
        lock(&self.0).clone()
    }

    /// Drop every pending fault.
    pub fn clear(&self) {
        lock(&self.0).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: Value) -> FaultSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn faults_match_in_order_and_count_down() {
        let faults = Faults::default();
        faults.add(spec(
            json!({"method": "post", "path_contains": "sessions", "status": 500, "times": 2}),
        ));
        faults.add(spec(json!({"status": 429})));
        assert_eq!(
            faults
                .take("GET", "/v3/p/vpc/traffic-mirror-filters")
                .unwrap()
                .status,
            Some(429)
        );
        assert_eq!(
            faults
                .take("POST", "/x/traffic-mirror-sessions")
                .unwrap()
                .status,
            Some(500)
        );
        assert_eq!(
            faults
                .take("POST", "/x/traffic-mirror-sessions")
                .unwrap()
                .status,
            Some(500)
        );
        assert!(faults.take("POST", "/x/traffic-mirror-sessions").is_none());
        assert!(faults.snapshot().is_empty());
    }

    #[test]
    fn fault_specs_are_validated() {
        assert!(spec(json!({"status": 503})).validate().is_ok());
        assert!(spec(json!({"delay_ms": 10})).validate().is_ok());
        assert!(spec(json!({"drop_connection": true})).validate().is_ok());
        assert!(spec(json!({})).validate().is_err());
        assert!(spec(json!({"status": 503, "times": 0})).validate().is_err());
        assert!(spec(json!({"status": 5})).validate().is_err());
        assert!(
            spec(json!({"status": 503, "drop_connection": true}))
                .validate()
                .is_err()
        );
        assert!(serde_json::from_value::<FaultSpec>(json!({"statuss": 1})).is_err());
    }
}
