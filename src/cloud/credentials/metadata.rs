//! Source `InstanceMetadata`: the agency credentials of the node from the ECS metadata service,
//! `GET {endpoint}/openstack/latest/securitykey`, with the optional session token of
//! `PUT {endpoint}/meta-data/latest/api/token` as the SDKs do.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Temporary;
use super::error::{CredentialError, Service};
use super::http::{Http, METADATA_TIMEOUT};

/// Path of the session-token call.
pub const TOKEN_PATH: &str = "/meta-data/latest/api/token";
/// Path of the credential call.
pub const SECURITYKEY_PATH: &str = "/openstack/latest/securitykey";
/// Header asking for a token's lifetime.
pub const HEADER_TOKEN_TTL: &str = "X-Metadata-Token-Ttl-Seconds";
/// Header carrying the token.
pub const HEADER_TOKEN: &str = "X-Metadata-Token";
/// The lifetime asked for a session token (6 h, as the SDKs).
const TOKEN_TTL: Duration = Duration::from_secs(21600);
/// How long a session token is reused: its lifetime less a margin.
const TOKEN_REUSE: Duration = Duration::from_secs(21600 - 600);
/// How long to go without a token after the service said tokens are not enabled (as the SDKs).
const NO_TOKEN_FOR: Duration = Duration::from_secs(24 * 3600);
/// The metadata service's message when no agency is bound to the instance.
const NO_AGENCY: &str = "Please configure Cloud Service Agency first";

/// What the session-token answer means (pure, from its status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenAnswer {
    /// 200: the body is the token.
    Token,
    /// 404, 405 or 503: tokens are not enabled; go on without one.
    NotEnabled,
    /// Anything else: an error (only when a token is required).
    Error,
}

/// Classifies the session-token answer.
pub fn token_answer(status: u16) -> TokenAnswer {
    match status {
        200 => TokenAnswer::Token,
        404 | 405 | 503 => TokenAnswer::NotEnabled,
        _ => TokenAnswer::Error,
    }
}

/// What a 401 of the credential call means (pure).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unauthorized {
    /// No agency is bound to the node: an error.
    NoAgency,
    /// A session token is required and none was sent: get one and try once more.
    NeedToken,
    /// A token was sent and still refused: an error.
    Refused,
}

/// Classifies a 401 of `securitykey`, given whether a token was sent.
pub fn unauthorized(body: &[u8], sent_token: bool) -> Unauthorized {
    if String::from_utf8_lossy(body).contains(NO_AGENCY) {
        Unauthorized::NoAgency
    } else if sent_token {
        Unauthorized::Refused
    } else {
        Unauthorized::NeedToken
    }
}

#[derive(Default)]
struct TokenState {
    token: Option<(String, Instant)>,
    not_enabled_since: Option<Instant>,
}

/// The metadata source of one ProviderConfig.
pub struct MetadataSource {
    endpoint: String,
    http: Http,
    token: Mutex<TokenState>,
}

impl std::fmt::Debug for MetadataSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataSource")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl MetadataSource {
    /// A source reading `endpoint` (e.g. `http://169.254.169.254`), with the SDKs' 3 s timeout.
    pub fn new(endpoint: &str) -> Result<Self, CredentialError> {
        Ok(Self {
            endpoint: endpoint.trim().trim_end_matches('/').to_string(),
            http: Http::new(Service::Metadata, METADATA_TIMEOUT)?,
            token: Mutex::new(TokenState::default()),
        })
    }

    /// The node's agency credentials.
    pub async fn fetch(&self) -> Result<Temporary, CredentialError> {
        let token = self.session_token(false).await?;
        let answer = self.securitykey(token.as_deref()).await?;
        if answer.status != 401 {
            return self.credential_of(&answer);
        }
        match unauthorized(&answer.body, token.is_some()) {
            Unauthorized::NoAgency => Err(CredentialError::NoAgency {
                step: "securitykey",
                message: NO_AGENCY.into(),
            }),
            Unauthorized::Refused => {
                self.forget_token();
                Err(self.http.refused("securitykey", &answer))
            }
            Unauthorized::NeedToken => {
                let token = self.session_token(true).await?;
                let answer = self.securitykey(token.as_deref()).await?;
                self.credential_of(&answer)
            }
        }
    }

    fn credential_of(&self, answer: &super::http::Answer) -> Result<Temporary, CredentialError> {
        if (200..300).contains(&answer.status) {
            self.http.credential("securitykey", answer)
        } else {
            Err(self.http.refused("securitykey", answer))
        }
    }

    async fn securitykey(
        &self,
        token: Option<&str>,
    ) -> Result<super::http::Answer, CredentialError> {
        let url = format!("{}{SECURITYKEY_PATH}", self.endpoint);
        let mut req = self.http.client().get(url);
        if let Some(t) = token {
            req = req.header(HEADER_TOKEN, t);
        }
        self.http.send("securitykey", req).await
    }

    /// A session token: the cached one, a new one, or none when tokens are not enabled (unless
    /// `required`, after the service asked for one).
    async fn session_token(&self, required: bool) -> Result<Option<String>, CredentialError> {
        {
            let state = self.token.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((t, at)) = &state.token
                && at.elapsed() < TOKEN_REUSE
            {
                return Ok(Some(t.clone()));
            }
            if !required
                && state
                    .not_enabled_since
                    .is_some_and(|s| s.elapsed() < NO_TOKEN_FOR)
            {
                return Ok(None);
            }
        }
        let url = format!("{}{TOKEN_PATH}", self.endpoint);
        let req = self
            .http
            .client()
            .put(url)
            .header(HEADER_TOKEN_TTL, TOKEN_TTL.as_secs().to_string());
        let answer = match self.http.send("api/token", req).await {
            Ok(a) => a,
            Err(e) if required => return Err(e),
            Err(_) => return Ok(None), // the credential call reports an unreachable service
        };
        let mut state = self.token.lock().unwrap_or_else(|p| p.into_inner());
        match token_answer(answer.status) {
            TokenAnswer::Token => {
                let t = String::from_utf8_lossy(&answer.body).trim().to_string();
                state.token = Some((t.clone(), Instant::now()));
                Ok(Some(t))
            }
            TokenAnswer::NotEnabled if !required => {
                state.not_enabled_since = Some(Instant::now());
                Ok(None)
            }
            _ => Err(self.http.refused("api/token", &answer)),
        }
    }

    fn forget_token(&self) {
        self.token.lock().unwrap_or_else(|p| p.into_inner()).token = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_answers() {
        let table = [
            (200, TokenAnswer::Token),
            (404, TokenAnswer::NotEnabled),
            (405, TokenAnswer::NotEnabled),
            (503, TokenAnswer::NotEnabled),
            (401, TokenAnswer::Error),
            (500, TokenAnswer::Error),
        ];
        for (status, want) in table {
            assert_eq!(token_answer(status), want, "{status}");
        }
    }

    #[test]
    fn unauthorized_answers() {
        let agency = br#"{"error":"Please configure Cloud Service Agency first"}"#;
        let table: [(&[u8], bool, Unauthorized); 4] = [
            (agency, false, Unauthorized::NoAgency),
            (agency, true, Unauthorized::NoAgency),
            (b"token required", false, Unauthorized::NeedToken),
            (b"token required", true, Unauthorized::Refused),
        ];
        for (body, sent, want) in table {
            assert_eq!(unauthorized(body, sent), want);
        }
    }
}
