//! The small HTTP client of the metadata service and IAM: its own timeouts (3 s for metadata, as
//! the SDKs), one request per call, answers turned into [`CredentialError`]s (pure parts apart).

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;
use serde::Deserialize;

use super::error::{CredentialError, Service};
use super::expiry::parse_expires_at;
use crate::cloud::client::USER_AGENT;
use crate::cloud::signer::Credentials;

/// Whole-request timeout of metadata calls (the SDKs' value).
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(3);
/// Whole-request timeout of IAM calls.
pub const IAM_TIMEOUT: Duration = Duration::from_secs(10);

/// One answer, read whole.
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// Response body.
    pub body: Vec<u8>,
}

/// An HTTP client for one service, with that service's timeouts.
#[derive(Clone, Debug)]
pub struct Http {
    client: reqwest::Client,
    service: Service,
}

impl Http {
    /// A client for `service`, timing out after `timeout` (connect: at most that, at most 3 s).
    pub fn new(service: Service, timeout: Duration) -> Result<Self, CredentialError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(3)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| CredentialError::InvalidConfig(e.to_string()))?;
        Ok(Self { client, service })
    }

    /// The underlying client, to build a request.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends a request of `step` and reads the whole answer; a transport failure is
    /// [`CredentialError::Unreachable`].
    pub async fn send(
        &self,
        step: &'static str,
        req: reqwest::RequestBuilder,
    ) -> Result<Answer, CredentialError> {
        let unreachable = |e: reqwest::Error| CredentialError::Unreachable {
            service: self.service,
            step,
            message: error_chain(&e),
            timeout: e.is_timeout(),
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(unreachable)?.to_vec();
        tracing::debug!(
            service = self.service.name(),
            step,
            status,
            "credential call"
        );
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// The error for a non-2xx answer of `step`.
    pub fn refused(&self, step: &'static str, answer: &Answer) -> CredentialError {
        refused(self.service, step, answer)
    }

    /// The `credential` object of a 2xx answer of `step`.
    pub fn credential(
        &self,
        step: &'static str,
        answer: &Answer,
    ) -> Result<super::Temporary, CredentialError> {
        parse_credential(self.service, step, &answer.body)
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !msg.contains(&t) {
            msg.push_str(": ");
            msg.push_str(&t);
        }
        src = s.source();
    }
    msg
}

/// The error of a non-2xx answer (pure): IAM's `{"error":{"code","message"}}` or
/// `{"error_code","error_msg"}` bodies, else the start of the body.
pub fn refused(service: Service, step: &'static str, answer: &Answer) -> CredentialError {
    let (error_code, message) = error_fields(&answer.body);
    let request_id = ["x-request-id", "x-openstack-request-id"]
        .iter()
        .find_map(|h| answer.headers.get(*h))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    CredentialError::Refused {
        service,
        step,
        status: answer.status,
        error_code,
        message,
        request_id,
    }
}

/// (error code, message) of an error body; the message is cut to 200 characters.
fn error_fields(body: &[u8]) -> (String, String) {
    let text = |v: Option<&serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let (code, msg) = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) if v.get("error").is_some_and(|e| e.is_object()) => {
            let e = &v["error"];
            let code = text(e.get("error_code")).to_string();
            let code = if code.is_empty() {
                text(e.get("code"))
            } else {
                code
            };
            let msg = text(e.get("message").or_else(|| e.get("error_msg")));
            (code, msg)
        }
        Ok(v) => (text(v.get("error_code")), text(v.get("error_msg"))),
        Err(_) => (String::new(), String::from_utf8_lossy(body).to_string()),
    };
    // A bare HTTP status is no error code.
    let code = if code.chars().all(|c| c.is_ascii_digit()) {
        String::new()
    } else {
        code
    };
    let msg: String = msg.split_whitespace().collect::<Vec<_>>().join(" ");
    (code, msg.chars().take(200).collect())
}

#[derive(Deserialize)]
struct CredentialEnvelope {
    credential: CredentialBody,
}

#[derive(Deserialize)]
struct CredentialBody {
    access: String,
    secret: String,
    securitytoken: String,
    expires_at: String,
}

/// The temporary credential of a 2xx answer (pure): `{"credential":{"access","secret",
/// "securitytoken","expires_at"}}`. The error never quotes the body (it holds secrets).
pub fn parse_credential(
    service: Service,
    step: &'static str,
    body: &[u8],
) -> Result<super::Temporary, CredentialError> {
    let decode = |message: String| CredentialError::Decode {
        service,
        step,
        message,
    };
    let env: CredentialEnvelope = serde_json::from_slice(body).map_err(|e| {
        decode(format!(
            "expected {{\"credential\":{{\"access\",\"secret\",\"securitytoken\",\"expires_at\"}}}} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let c = env.credential;
    if c.access.trim().is_empty() || c.secret.is_empty() || c.securitytoken.trim().is_empty() {
        return Err(decode("an empty access, secret or securitytoken".into()));
    }
    let expires_at: DateTime<Utc> = parse_expires_at(&c.expires_at)
        .ok_or_else(|| decode(format!("expires_at {:?} is not a time", c.expires_at)))?;
    Ok(super::Temporary {
        credentials: Credentials {
            access_key: c.access.trim().to_string(),
            secret_key: c.secret,
            security_token: Some(c.securitytoken.trim().to_string()),
        },
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            headers: HeaderMap::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn error_bodies() {
        let table = [
            (
                r#"{"error":{"code":"IAM.0001","message":"bad token"}}"#,
                "IAM.0001",
                "bad token",
            ),
            (
                r#"{"error":{"code":401,"message":"The request you have made requires authentication.","title":"Unauthorized"}}"#,
                "",
                "The request you have made requires authentication.",
            ),
            (
                r#"{"error_code":"IAM.0100","error_msg":"no"}"#,
                "IAM.0100",
                "no",
            ),
            ("<html> down </html>", "", "<html> down </html>"),
        ];
        for (body, code, msg) in table {
            match refused(Service::Iam, "id-token", &answer(401, body)) {
                CredentialError::Refused {
                    error_code,
                    message,
                    ..
                } => assert_eq!(
                    (error_code.as_str(), message.as_str()),
                    (code, msg),
                    "{body}"
                ),
                e => panic!("{e:?}"),
            }
        }
    }

    #[test]
    fn parses_credentials_and_never_quotes_them() {
        let ok = r#"{"credential":{"access":"AK1","secret":"SK1","securitytoken":"TOK","expires_at":"2020-01-08T03:50:07.574000Z"}}"#;
        let t = parse_credential(Service::Iam, "securitytokens", ok.as_bytes()).unwrap();
        assert_eq!(t.credentials.access_key, "AK1");
        assert_eq!(t.credentials.security_token.as_deref(), Some("TOK"));
        assert_eq!(t.expires_at.timestamp(), 1578455407);
        let bad_time = r#"{"credential":{"access":"AK1","secret":"SK1","securitytoken":"TOK","expires_at":"later"}}"#;
        let e = parse_credential(Service::Iam, "securitytokens", bad_time.as_bytes()).unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains("later") && !shown.contains("SK1") && !shown.contains("TOK"));
        let empty =
            r#"{"credential":{"access":"","secret":"SK1","securitytoken":"TOK","expires_at":"x"}}"#;
        let e = parse_credential(Service::Iam, "securitytokens", empty.as_bytes()).unwrap_err();
        assert!(!e.to_string().contains("SK1"));
        let e =
            parse_credential(Service::Metadata, "securitykey", b"{\"secret\":\"SK9\"").unwrap_err();
        assert!(!e.to_string().contains("SK9"), "{e}");
    }
}
