//! Rules in one call: a reconcile that creates several rules sends them in one
//! `BatchCreateTrafficMirrorFilterRules` (`POST traffic-mirror-filters/{id}/traffic-mirror-filter-rules/batch-create`)
//! instead of one `POST` each, so a new 100-rule filter costs 2 cloud calls, not 101, under the
//! account's budget.
//!
//! - **Where it is missing**: an endpoint without the API (an older region, a private gateway)
//!   answers 404 `APIGW.0101`. That answer is remembered per account ([`Support`], kept on the
//!   provider, so per ProviderConfig client) and the same reconcile goes on with single creates;
//!   later filters of that account never try the batch again while the provider lives. A 404 with
//!   a VPC code (the filter itself is gone) is an ordinary failure, not a missing API.
//! - **All or nothing**: the API creates every rule or none, so a failed batch leaves no partial
//!   set; the rule intent written before it (see [`super::execute`]) covers the whole batch like
//!   it covers single creates, so a crash after the call is adopted, not created twice.
//! - **One rule**: a single new rule keeps the single create (same cost, and the call every
//!   endpoint has).

use std::sync::atomic::{AtomicBool, Ordering};

use crate::cloud::error::CloudError;

/// Whether an account's endpoint serves the batch rule create (until it answers 404 `APIGW.0101`).
#[derive(Debug)]
pub struct Support(AtomicBool);

impl Default for Support {
    fn default() -> Self {
        Self(AtomicBool::new(true))
    }
}

impl Support {
    /// Whether the batch create is worth trying for this account.
    pub fn available(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Remembers that the endpoint lacks the batch create.
    pub fn mark_missing(&self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// Whether to create `creates` new rules in one batch call: two or more, where the account has it.
pub fn use_batch(creates: usize, available: bool) -> bool {
    available && creates >= 2
}

/// Whether a failed batch call means the endpoint has no such API (404 with the gateway's
/// `APIGW` code, e.g. `APIGW.0101`), so single creates must be used instead.
pub fn api_missing(e: &CloudError) -> bool {
    e.status() == Some(404) && e.error_code().is_some_and(|c| c.starts_with("APIGW"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str) -> CloudError {
        CloudError::Api {
            status,
            error_code: code.into(),
            error_msg: String::new(),
            request_id: None,
            retry_after: None,
        }
    }

    #[test]
    fn batch_only_for_several_rules_where_available() {
        for (creates, available, want) in [
            (0, true, false),
            (1, true, false),
            (2, true, true),
            (100, true, true),
            (100, false, false),
        ] {
            assert_eq!(use_batch(creates, available), want, "{creates} {available}");
        }
    }

    #[test]
    fn only_the_gateways_404_means_the_api_is_missing() {
        for (e, want) in [
            (api(404, "APIGW.0101"), true),
            (api(404, "VPC.1101"), false),
            (api(404, ""), false),
            (api(400, "APIGW.0101"), false),
            (api(429, "APIGW.0308"), false),
            (
                CloudError::Timeout {
                    message: "t".into(),
                },
                false,
            ),
        ] {
            assert_eq!(api_missing(&e), want, "{e}");
        }
    }

    #[test]
    fn support_is_remembered_once_missing() {
        let s = Support::default();
        assert!(s.available());
        s.mark_missing();
        assert!(!s.available());
    }
}
