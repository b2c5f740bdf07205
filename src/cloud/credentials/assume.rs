//! `assumeAgency`: temporary credentials of an agency (usually in another account), asked from IAM
//! with `POST /v3.0/OS-CREDENTIAL/securitytokens`, method `assume_role`, signed with the source's
//! own credentials (so one operator identity can serve several accounts).

use reqwest::header::{HeaderName, HeaderValue};
use serde_json::json;
use url::Url;

use super::Temporary;
use super::error::{CredentialError, Service};
use super::http::{Http, IAM_TIMEOUT};
use super::workload_identity::SECURITYTOKENS_PATH;
use crate::cloud::signer::{Credentials, Signer};

/// The agency to assume, and how to reach IAM.
pub struct AssumeAgency {
    url: Url,
    host: String,
    agency_name: String,
    domain_name: String,
    duration_seconds: u32,
    http: Http,
}

impl std::fmt::Debug for AssumeAgency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssumeAgency")
            .field("url", &self.url.as_str())
            .field("agency_name", &self.agency_name)
            .field("domain_name", &self.domain_name)
            .finish_non_exhaustive()
    }
}

impl AssumeAgency {
    /// Assumes `agency_name` of account `domain_name` at `iam` for `duration_seconds`.
    pub fn new(
        iam: &str,
        agency_name: &str,
        domain_name: &str,
        duration_seconds: u32,
    ) -> Result<Self, CredentialError> {
        let raw = format!("{}{SECURITYTOKENS_PATH}", iam.trim().trim_end_matches('/'));
        let url = Url::parse(&raw)
            .map_err(|e| CredentialError::InvalidConfig(format!("IAM endpoint {iam:?}: {e}")))?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => {
                return Err(CredentialError::InvalidConfig(format!(
                    "IAM endpoint {iam:?} has no host"
                )));
            }
        };
        Ok(Self {
            url,
            host,
            agency_name: agency_name.to_string(),
            domain_name: domain_name.to_string(),
            duration_seconds,
            http: Http::new(Service::Iam, IAM_TIMEOUT)?,
        })
    }

    /// The agency's temporary credentials, asked with `base` (signed afresh on every call).
    pub async fn fetch(&self, base: &Credentials) -> Result<Temporary, CredentialError> {
        let body = json!({"auth": {"identity": {"methods": ["assume_role"],
            "assume_role": {"agency_name": self.agency_name, "domain_name": self.domain_name,
                "duration_seconds": self.duration_seconds}}}})
        .to_string();
        let mut headers = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            ("Host".to_string(), self.host.clone()),
        ];
        Signer::new(base.clone()).sign(
            "POST",
            self.url.path(),
            self.url.query().unwrap_or(""),
            &mut headers,
            body.as_bytes(),
            chrono::Utc::now(),
        );
        let mut req = self.http.client().post(self.url.clone()).body(body);
        for (name, value) in &headers {
            let name = HeaderName::from_bytes(name.as_bytes());
            let value = HeaderValue::from_str(value);
            let (Ok(name), Ok(value)) = (name, value) else {
                return Err(CredentialError::InvalidConfig(
                    "a credential or agency setting cannot be sent in an HTTP header".into(),
                ));
            };
            req = req.header(name, value);
        }
        let answer = self.http.send("assume_role", req).await?;
        if !(200..300).contains(&answer.status) {
            return Err(self.http.refused("assume_role", &answer));
        }
        self.http.credential("assume_role", &answer)
    }
}
