//! The identity side, served on the same listener as the VPC API: the ECS metadata paths
//! ([`metadata`]), the IAM paths of the federated and assume-role flows ([`iam`]), and the
//! temporary credentials they issue, which the VPC API then accepts with their security token
//! until they expire. ID tokens are verified against registered identity providers ([`jwt`]).
//!
//! This module holds the identity state ([`Identity`]): registered identity providers and
//! agencies, the metadata settings, and what was issued (metadata tokens, unscoped IAM tokens,
//! temporary credentials), all in memory. Issued credentials are capped by
//! `--credential-lifetime`.

pub mod iam;
pub mod jwt;
pub mod metadata;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::errors::ApiError;

/// The `expires_at` format of IAM and metadata answers (6 fractional digits, UTC); the Python
/// SDK parses it with `%Y-%m-%dT%H:%M:%S.%fZ`.
pub const EXPIRES_AT_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

/// Render a time as IAM does.
pub fn iam_time(t: DateTime<Utc>) -> String {
    t.format(EXPIRES_AT_FORMAT).to_string()
}

/// An answer of an identity path: status, extra headers and a JSON or plain-text body (the
/// metadata token is plain text), sent exactly as given (no `request_id` is added to the body).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// Headers besides `Content-Type` and `X-Request-Id`.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: ReplyBody,
}

/// Body of a [`Reply`].
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyBody {
    /// `application/json`.
    Json(Value),
    /// `text/plain`.
    Text(String),
}

impl Reply {
    /// A JSON answer without extra headers.
    pub fn json(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: ReplyBody::Json(body),
        }
    }
}

/// Which identity path a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `PUT /meta-data/latest/api/token`.
    MetadataToken,
    /// `GET /openstack/latest/securitykey`.
    MetadataSecurityKey,
    /// `POST /v3.0/OS-AUTH/id-token/tokens`.
    IdTokenTokens,
    /// `POST /v3.0/OS-CREDENTIAL/securitytokens`.
    SecurityTokens,
    /// `GET /v3/projects`.
    Projects,
}

impl Route {
    /// The identity route of a method and path, or `None` (then it is a VPC path or unknown).
    pub fn parse(method: &Method, path: &str) -> Option<Self> {
        Some(match (method.as_str(), path) {
            ("PUT", "/meta-data/latest/api/token") => Route::MetadataToken,
            ("GET", "/openstack/latest/securitykey") => Route::MetadataSecurityKey,
            ("POST", "/v3.0/OS-AUTH/id-token/tokens") => Route::IdTokenTokens,
            ("POST", "/v3.0/OS-CREDENTIAL/securitytokens") => Route::SecurityTokens,
            ("GET", "/v3/projects") => Route::Projects,
            _ => return None,
        })
    }

    /// Whether a path belongs to the identity side (any method), so that it is neither
    /// throttled as a project nor answered as a VPC path.
    pub fn is_identity_path(path: &str) -> bool {
        path == "/v3/projects"
            || path.starts_with("/v3.0/")
            || path.starts_with("/meta-data/")
            || path.starts_with("/openstack/")
    }
}

/// An OpenID Connect identity provider, registered through `POST /_emulator/identity-providers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityProvider {
    /// The id clients send as `X-Idp-Id`.
    pub id: String,
    /// The `iss` every ID token must carry.
    pub issuer: String,
    /// The `aud` every ID token must carry (the IdP's client id).
    pub audience: String,
    /// The JWKS document whose keys sign the ID tokens (RS256 or ES256).
    pub jwks: Value,
    /// The `sub` values allowed (none: any), standing for IAM's mapping rules.
    #[serde(default)]
    pub subjects: Vec<String>,
}

/// An agency that `assume_role` may assume, registered through `POST /_emulator/agencies`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agency {
    /// The account (domain) name that owns the agency.
    pub domain_name: String,
    /// The account id (optional; `assume_role` may name the domain by either).
    #[serde(default)]
    pub domain_id: String,
    /// The agency name.
    pub agency_name: String,
}

/// The ECS metadata side's settings (`PUT /_emulator/metadata`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataSettings {
    /// Whether an agency is bound to the "server" (else the security key answers 401).
    pub agency_bound: bool,
    /// Whether `X-Metadata-Token` is required (else the token path answers 404).
    pub token_required: bool,
}

impl Default for MetadataSettings {
    fn default() -> Self {
        Self {
            agency_bound: true,
            token_required: false,
        }
    }
}

/// An issued temporary credential (AK, SK, security token, expiry).
#[derive(Clone, PartialEq, Eq)]
pub struct Temporary {
    /// Access key.
    pub access: String,
    /// Secret key.
    pub secret: String,
    /// Security token (`X-Security-Token`).
    pub security_token: String,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for Temporary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret key or the token.
        f.debug_struct("Temporary")
            .field("access", &self.access)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Temporary {
    /// The `{"credential": {...}}` answer of IAM and of the metadata security key.
    pub fn answer(&self) -> Value {
        serde_json::json!({"credential": {
            "access": self.access, "secret": self.secret,
            "securitytoken": self.security_token, "expires_at": iam_time(self.expires_at),
        }})
    }
}

/// An unscoped IAM token issued for a verified ID token.
#[derive(Clone, PartialEq, Eq)]
pub struct UnscopedToken {
    /// The federated user (the ID token's `sub`).
    pub subject: String,
    /// The identity provider.
    pub idp: String,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
}

/// Everything the identity side stores.
#[derive(Default)]
struct IdentityData {
    idps: HashMap<String, IdentityProvider>,
    agencies: Vec<Agency>,
    metadata: MetadataSettings,
    metadata_tokens: HashMap<String, DateTime<Utc>>,
    unscoped: HashMap<String, UnscopedToken>,
    credentials: HashMap<String, Temporary>,
}

/// The identity state of one emulator.
pub struct Identity {
    data: Mutex<IdentityData>,
    /// `--credential-lifetime`: no credential outlives this.
    pub credential_lifetime: Option<Duration>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("credential_lifetime", &self.credential_lifetime)
            .finish_non_exhaustive()
    }
}

/// A random token of `n` 32-hex-digit blocks.
fn random_hex(blocks: usize) -> String {
    (0..blocks)
        .map(|_| uuid::Uuid::new_v4().simple().to_string())
        .collect()
}

impl Identity {
    /// Empty identity state with this lifetime cap.
    pub fn new(credential_lifetime: Option<Duration>) -> Self {
        Self {
            data: Mutex::new(IdentityData::default()),
            credential_lifetime,
        }
    }

    fn lock(&self) -> MutexGuard<'_, IdentityData> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forget everything (admin reset): providers, agencies, metadata settings, issued tokens.
    pub fn reset(&self) {
        *self.lock() = IdentityData::default();
    }

    /// Register (or replace, by id) an identity provider; its JWKS must be usable.
    pub fn add_idp(&self, idp: IdentityProvider) -> Result<(), ApiError> {
        jwt::check_provider(&idp)?;
        self.lock().idps.insert(idp.id.clone(), idp);
        Ok(())
    }

    /// The identity provider `id`.
    pub fn idp(&self, id: &str) -> Option<IdentityProvider> {
        self.lock().idps.get(id).cloned()
    }

    /// Register an agency (a duplicate is kept once).
    pub fn add_agency(&self, agency: Agency) -> Result<(), ApiError> {
        if agency.domain_name.is_empty() || agency.agency_name.is_empty() {
            return Err(ApiError::invalid(
                "domain_name and agency_name must not be empty",
            ));
        }
        let mut d = self.lock();
        if !d.agencies.contains(&agency) {
            d.agencies.push(agency);
        }
        Ok(())
    }

    /// Whether agency `name` exists in the domain named `domain` (by name or id).
    pub fn has_agency(&self, domain: &str, name: &str) -> bool {
        self.lock().agencies.iter().any(|a| {
            a.agency_name == name
                && (a.domain_name == domain || (!a.domain_id.is_empty() && a.domain_id == domain))
        })
    }

    /// The metadata settings.
    pub fn metadata(&self) -> MetadataSettings {
        self.lock().metadata
    }

    /// Replace the metadata settings (issued metadata tokens stay valid).
    pub fn set_metadata(&self, settings: MetadataSettings) {
        self.lock().metadata = settings;
    }

    /// Issue a metadata session token valid for `ttl`.
    pub fn issue_metadata_token(&self, ttl: TimeDelta, now: DateTime<Utc>) -> String {
        let token = random_hex(2);
        self.lock().metadata_tokens.insert(token.clone(), now + ttl);
        token
    }

    /// Whether `token` is a metadata token that has not expired.
    pub fn metadata_token_valid(&self, token: &str, now: DateTime<Utc>) -> bool {
        self.lock()
            .metadata_tokens
            .get(token)
            .is_some_and(|exp| *exp > now)
    }

    /// Issue an unscoped token (24 h, like IAM's tokens) for a verified federated user.
    pub fn issue_unscoped(
        &self,
        subject: &str,
        idp: &str,
        now: DateTime<Utc>,
    ) -> (String, UnscopedToken) {
        let token = format!("MII{}", random_hex(4));
        let record = UnscopedToken {
            subject: subject.to_owned(),
            idp: idp.to_owned(),
            expires_at: now + TimeDelta::hours(24),
        };
        self.lock().unscoped.insert(token.clone(), record.clone());
        (token, record)
    }

    /// The unscoped token `token`, if it exists and has not expired.
    pub fn unscoped(&self, token: &str, now: DateTime<Utc>) -> Option<UnscopedToken> {
        self.lock()
            .unscoped
            .get(token)
            .filter(|t| t.expires_at > now)
            .cloned()
    }

    /// Issue a temporary credential for `requested` (capped by `--credential-lifetime`);
    /// expired credentials are forgotten on the way.
    pub fn issue_credential(&self, requested: Duration, now: DateTime<Utc>) -> Temporary {
        let lifetime = capped_lifetime(requested, self.credential_lifetime);
        let access: String = random_hex(1).to_uppercase().chars().take(20).collect();
        let cred = Temporary {
            access,
            secret: random_hex(2).chars().take(40).collect(),
            security_token: random_hex(8),
            expires_at: now + TimeDelta::from_std(lifetime).unwrap_or(TimeDelta::MAX),
        };
        let mut d = self.lock();
        d.credentials.retain(|_, c| c.expires_at > now);
        d.credentials.insert(cred.access.clone(), cred.clone());
        cred
    }

    /// The temporary credential with access key `access` (expired ones included: the verifier
    /// tells "expired" from "unknown").
    pub fn credential(&self, access: &str) -> Option<Temporary> {
        self.lock().credentials.get(access).cloned()
    }
}

/// The lifetime of a credential asked for `requested`: at most the cap.
pub fn capped_lifetime(requested: Duration, cap: Option<Duration>) -> Duration {
    cap.map_or(requested, |c| c.min(requested))
}

/// Hide the secrets of an identity request body before it goes to the call log: the ID token
/// (`auth.id_token.id`) and the IAM token (`auth.identity.token.id`).
pub fn redact_logged(path: &str, body: &mut Value) {
    if !Route::is_identity_path(path) {
        return;
    }
    for pointer in ["/auth/id_token/id", "/auth/identity/token/id"] {
        if let Some(v) = body.pointer_mut(pointer) {
            *v = Value::String("***".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
    }

    #[test]
    fn iam_times_have_six_fractional_digits() {
        assert_eq!(iam_time(now()), "2026-01-02T03:04:05.000000Z");
    }

    #[test]
    fn lifetimes_are_capped() {
        let h = Duration::from_secs(3600);
        assert_eq!(capped_lifetime(h, None), h);
        assert_eq!(
            capped_lifetime(h, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            capped_lifetime(Duration::from_secs(1), Some(h)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn identity_routes() {
        let r = |m: &str, p: &str| Route::parse(&Method::from_bytes(m.as_bytes()).unwrap(), p);
        assert_eq!(
            r("PUT", "/meta-data/latest/api/token"),
            Some(Route::MetadataToken)
        );
        assert_eq!(
            r("GET", "/openstack/latest/securitykey"),
            Some(Route::MetadataSecurityKey)
        );
        assert_eq!(
            r("POST", "/v3.0/OS-AUTH/id-token/tokens"),
            Some(Route::IdTokenTokens)
        );
        assert_eq!(
            r("POST", "/v3.0/OS-CREDENTIAL/securitytokens"),
            Some(Route::SecurityTokens)
        );
        assert_eq!(r("GET", "/v3/projects"), Some(Route::Projects));
        assert_eq!(r("GET", "/v3.0/OS-AUTH/id-token/tokens"), None);
        assert_eq!(r("GET", "/v3/p/vpc/traffic-mirror-sessions"), None);
        assert!(Route::is_identity_path("/v3.0/anything"));
        assert!(!Route::is_identity_path("/v3/p/ports"));
    }

    #[test]
    fn issued_credentials_are_found_and_capped() {
        let id = Identity::new(Some(Duration::from_secs(2)));
        let c = id.issue_credential(Duration::from_secs(900), now());
        assert_eq!(c.expires_at, now() + TimeDelta::seconds(2));
        assert_eq!(id.credential(&c.access), Some(c.clone()));
        assert_eq!((c.access.len(), c.secret.len()), (20, 40));
        assert!(!format!("{c:?}").contains(&c.secret));
        // Issuing later forgets the expired one.
        let later = now() + TimeDelta::seconds(10);
        id.issue_credential(Duration::from_secs(900), later);
        assert_eq!(id.credential(&c.access), None);
    }

    #[test]
    fn tokens_expire_and_agencies_match_by_domain_name_or_id() {
        let id = Identity::new(None);
        let t = id.issue_metadata_token(TimeDelta::seconds(5), now());
        assert!(id.metadata_token_valid(&t, now()));
        assert!(!id.metadata_token_valid(&t, now() + TimeDelta::seconds(5)));
        assert!(!id.metadata_token_valid("nope", now()));
        let (u, _) = id.issue_unscoped("sub", "idp", now());
        assert!(id.unscoped(&u, now()).is_some());
        assert!(id.unscoped(&u, now() + TimeDelta::hours(24)).is_none());
        let a = Agency {
            domain_name: "acme".into(),
            domain_id: "d1".into(),
            agency_name: "ops".into(),
        };
        id.add_agency(a).unwrap();
        assert!(id.has_agency("acme", "ops") && id.has_agency("d1", "ops"));
        assert!(!id.has_agency("acme", "dev") && !id.has_agency("other", "ops"));
        id.reset();
        assert!(!id.has_agency("acme", "ops"));
    }

    #[test]
    fn logged_identity_bodies_hide_tokens() {
        let mut b = json!({"auth": {"id_token": {"id": "jwt"}}});
        redact_logged("/v3.0/OS-AUTH/id-token/tokens", &mut b);
        assert_eq!(b, json!({"auth": {"id_token": {"id": "***"}}}));
        let mut b = json!({"auth": {"identity": {"methods": ["token"], "token": {"id": "t", "duration_seconds": 900}}}});
        redact_logged("/v3.0/OS-CREDENTIAL/securitytokens", &mut b);
        assert_eq!(
            b["auth"]["identity"]["token"],
            json!({"id": "***", "duration_seconds": 900})
        );
        let mut vpc = json!({"auth": {"id_token": {"id": "kept"}}});
        redact_logged("/v3/p/vpc/x", &mut vpc);
        assert_eq!(vpc["auth"]["id_token"]["id"], "kept");
    }
}
