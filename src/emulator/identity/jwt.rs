//! ID token verification with the `jsonwebtoken` crate (its aws-lc-rs backend, the crypto the
//! rest of the dependency tree already uses): the signature against the identity provider's
//! JWKS (RS256 or ES256, the algorithms a Kubernetes API server signs service-account tokens
//! with), then `iss`, `aud`, `exp` (60 s of clock skew, the crate's default) and the allowed
//! subjects. Every rejection is IAM's 401 `IAM.0001` with a message saying which check failed.

use axum::http::StatusCode;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::IdentityProvider;
use crate::emulator::errors::ApiError;

/// IAM's code for a failed authentication (401).
pub const IAM_UNAUTHENTICATED: &str = "IAM.0001";

/// The claims the emulator reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Claims {
    /// The federated user (a Kubernetes `system:serviceaccount:<ns>:<name>`).
    pub sub: String,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
}

/// 401 `IAM.0001` with IAM's message and the reason.
pub fn unauthenticated(reason: impl AsRef<str>) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        IAM_UNAUTHENTICATED,
        format!(
            "The request you have made requires authentication: {}",
            reason.as_ref()
        ),
    )
}

fn jwks(idp: &IdentityProvider) -> Result<JwkSet, ApiError> {
    serde_json::from_value(idp.jwks.clone())
        .map_err(|e| ApiError::invalid(format!("jwks is not a JWKS document: {e}")))
}

/// Check a provider before registering it: ids and claims non-empty, a JWKS with at least one
/// usable key.
pub fn check_provider(idp: &IdentityProvider) -> Result<(), ApiError> {
    if idp.id.is_empty() || idp.issuer.is_empty() || idp.audience.is_empty() {
        return Err(ApiError::invalid(
            "id, issuer and audience must not be empty",
        ));
    }
    let set = jwks(idp)?;
    if set.keys.is_empty() {
        return Err(ApiError::invalid("jwks has no keys"));
    }
    for key in &set.keys {
        DecodingKey::from_jwk(key)
            .map_err(|e| ApiError::invalid(format!("jwks: unusable key: {e}")))?;
    }
    Ok(())
}

/// The keys that may have signed a token with this header: the one named by `kid`, else every
/// key (each of the algorithm's family tried in turn).
fn candidate_keys<'a>(set: &'a JwkSet, kid: Option<&str>) -> Vec<&'a Jwk> {
    match kid {
        Some(kid) => set.find(kid).into_iter().collect(),
        None => set.keys.iter().collect(),
    }
}

fn validation(idp: &IdentityProvider, alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.set_issuer(&[&idp.issuer]);
    v.set_audience(&[&idp.audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v
}

fn reason(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::InvalidSignature => "the ID token's signature is not valid".into(),
        ErrorKind::ExpiredSignature => "the ID token has expired".into(),
        ErrorKind::InvalidIssuer => "the ID token's issuer is not the identity provider's".into(),
        ErrorKind::InvalidAudience => {
            "the ID token's audience is not the identity provider's client id".into()
        }
        ErrorKind::MissingRequiredClaim(c) => format!("the ID token has no {c} claim"),
        ErrorKind::ImmatureSignature => "the ID token is not valid yet".into(),
        other => format!("the ID token is not valid ({other:?})"),
    }
}

/// Verify `token` for `idp`: the claims when it is valid, else 401 `IAM.0001`.
pub fn verify(idp: &IdentityProvider, token: &str) -> Result<Claims, ApiError> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| unauthenticated("the ID token is not a JWT"))?;
    if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
        return Err(unauthenticated(format!(
            "the ID token's algorithm {:?} is not accepted (RS256 or ES256)",
            header.alg
        )));
    }
    let set = jwks(idp)?;
    let keys = candidate_keys(&set, header.kid.as_deref());
    let mut last = unauthenticated("no key of the identity provider matches the ID token");
    for jwk in keys {
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        if key.family() != header.alg.family() {
            continue;
        }
        match jsonwebtoken::decode::<Claims>(token, &key, &validation(idp, header.alg)) {
            Ok(data) => return check_subject(idp, data.claims),
            Err(e) => last = unauthenticated(reason(e.kind())),
        }
    }
    Err(last)
}

fn check_subject(idp: &IdentityProvider, claims: Claims) -> Result<Claims, ApiError> {
    if idp.subjects.is_empty() || idp.subjects.contains(&claims.sub) {
        Ok(claims)
    } else {
        Err(unauthenticated(format!(
            "no mapping of identity provider {} allows subject {}",
            idp.id, claims.sub
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{Value, json};

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/identity/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(path).unwrap()
    }

    fn idp(subjects: &[&str]) -> IdentityProvider {
        IdentityProvider {
            id: "idp".into(),
            issuer: "https://issuer.example".into(),
            audience: "client".into(),
            jwks: serde_json::from_slice(&fixture("jwks.json")).unwrap(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn claims(overrides: Value) -> Value {
        let mut c = json!({"iss": "https://issuer.example", "aud": "client",
                           "sub": "system:serviceaccount:ns:sa", "exp": now() + 600, "iat": now()});
        if let (Value::Object(c), Value::Object(o)) = (&mut c, overrides) {
            c.extend(o);
        }
        c
    }

    fn sign(key: &str, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let pem = fixture(key);
        let key = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
            _ => EncodingKey::from_rsa_pem(&pem).unwrap(),
        };
        let mut header = Header::new(alg);
        header.kid = kid.map(String::from);
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    #[test]
    fn accepts_rs256_and_es256_tokens_of_the_providers_keys() {
        let rs = sign(
            "rsa-key.pem",
            Algorithm::RS256,
            Some("rsa-1"),
            &claims(json!({})),
        );
        assert_eq!(
            verify(&idp(&[]), &rs).unwrap().sub,
            "system:serviceaccount:ns:sa"
        );
        let es = sign(
            "ec-key.pem",
            Algorithm::ES256,
            Some("ec-1"),
            &claims(json!({})),
        );
        assert!(verify(&idp(&["system:serviceaccount:ns:sa"]), &es).is_ok());
        // Without a kid every key is tried.
        let no_kid = sign(
            "rsa-key.pem",
            Algorithm::RS256,
            None,
            &claims(json!({"aud": ["x", "client"]})),
        );
        assert!(verify(&idp(&[]), &no_kid).is_ok());
    }

    #[test]
    fn rejects_each_invalid_token_with_iam_0001_and_the_reason() {
        let p = idp(&["system:serviceaccount:ns:allowed"]);
        let open = idp(&[]);
        let cases = [
            (
                sign(
                    "other-rsa-key.pem",
                    Algorithm::RS256,
                    Some("rsa-1"),
                    &claims(json!({})),
                ),
                &open,
                "signature",
            ),
            (
                sign(
                    "other-rsa-key.pem",
                    Algorithm::RS256,
                    None,
                    &claims(json!({})),
                ),
                &open,
                "signature",
            ),
            (
                sign(
                    "rsa-key.pem",
                    Algorithm::RS256,
                    Some("rsa-1"),
                    &claims(json!({"aud": "other"})),
                ),
                &open,
                "audience",
            ),
            (
                sign(
                    "rsa-key.pem",
                    Algorithm::RS256,
                    Some("rsa-1"),
                    &claims(json!({"iss": "https://evil"})),
                ),
                &open,
                "issuer",
            ),
            (
                sign(
                    "rsa-key.pem",
                    Algorithm::RS256,
                    Some("rsa-1"),
                    &claims(json!({"exp": now() - 600})),
                ),
                &open,
                "expired",
            ),
            (
                sign(
                    "rsa-key.pem",
                    Algorithm::RS256,
                    Some("rsa-1"),
                    &claims(json!({})),
                ),
                &p,
                "subject",
            ),
            (
                sign(
                    "rsa-key.pem",
                    Algorithm::RS256,
                    Some("unknown-kid"),
                    &claims(json!({})),
                ),
                &open,
                "no key",
            ),
            (
                sign(
                    "rsa-key.pem",
                    Algorithm::RS384,
                    Some("rsa-1"),
                    &claims(json!({})),
                ),
                &open,
                "RS384",
            ),
            ("not.a.jwt".to_owned(), &open, "not a JWT"),
        ];
        for (token, provider, why) in cases {
            let e = verify(provider, &token).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.code.as_str()),
                (401, "IAM.0001"),
                "{why}"
            );
            assert!(e.msg.contains(why), "{why}: {}", e.msg);
        }
    }

    #[test]
    fn providers_need_usable_keys() {
        assert!(check_provider(&idp(&[])).is_ok());
        let mut bad = idp(&[]);
        bad.jwks = json!({"keys": []});
        assert!(check_provider(&bad).is_err());
        bad.jwks = json!({"nope": 1});
        assert!(check_provider(&bad).is_err());
        bad = idp(&[]);
        bad.issuer = String::new();
        assert!(check_provider(&bad).is_err());
    }
}
