//! AK/SK signature verification (`SDK-HMAC-SHA256`), reusing the pure functions of
//! [`crate::cloud::signer`] so the client and the emulator cannot drift apart.
//!
//! The verifier uses exactly the headers named in `SignedHeaders` (never a fixed list), requires
//! `x-sdk-date` among them, rejects an `X-Sdk-Date` more than 15 minutes from its clock and
//! compares signatures in constant time. Temporary credentials (issued by the identity side)
//! are accepted with their `X-Security-Token` until they expire. Every failure is a 401
//! `APIGW.0301` whose message says which check failed.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};

use super::errors::ApiError;
use crate::cloud::signer;

/// Largest accepted difference between `X-Sdk-Date` and the server clock.
pub const MAX_CLOCK_SKEW: TimeDelta = TimeDelta::minutes(15);

/// Verifies signed requests against a set of AK/SK pairs.
#[derive(Clone)]
pub struct Verifier {
    secrets: HashMap<String, String>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secret keys.
        f.debug_struct("Verifier")
            .field("access_keys", &self.secrets.len())
            .finish()
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl Verifier {
    /// A verifier accepting these `(access key, secret key)` pairs.
    pub fn new(credentials: &[(String, String)]) -> Self {
        Self {
            secrets: credentials.iter().cloned().collect(),
        }
    }

    /// Verify a request as received: `path` and `query` exactly as on the wire (query without
    /// `?`), all received headers. Returns the access key on success. Only the permanent
    /// credentials are accepted.
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        query: &str,
        headers: &[(String, String)],
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<String, ApiError> {
        let req = Signed {
            method,
            path,
            query,
            headers,
            body,
        };
        self.verify_with(&req, now, |_| None)
    }

    /// [`Self::verify`], also accepting the temporary credentials `temporary` knows (looked up
    /// by access key): then `X-Security-Token` must be the credential's token and the credential
    /// must not have expired (401 `APIGW.0301` otherwise, as at the gateway).
    pub fn verify_with(
        &self,
        req: &Signed<'_>,
        now: DateTime<Utc>,
        temporary: impl Fn(&str) -> Option<TemporarySecret>,
    ) -> Result<String, ApiError> {
        let headers = req.headers;
        let authorization = header(headers, signer::HEADER_AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("the Authorization header is missing"))?;
        let auth = signer::parse_authorization(authorization).map_err(|e| {
            ApiError::unauthorized(format!("the Authorization header is malformed: {e}"))
        })?;
        let temp = match self.secrets.get(&auth.access) {
            Some(_) => None,
            None => Some(
                temporary(&auth.access)
                    .ok_or_else(|| ApiError::unauthorized("the access key is not valid"))?,
            ),
        };
        let secret = match &temp {
            Some(t) => t.secret.as_str(),
            None => self.secrets.get(&auth.access).map_or("", String::as_str),
        };
        let signed: Vec<String> = auth
            .signed_headers
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        let sdk_date = check_date(headers, &signed, now)?;
        let canonical =
            signer::canonical_request(req.method, req.path, req.query, headers, &signed, req.body);
        let to_sign = signer::string_to_sign(sdk_date, &canonical);
        if !signer::verify_signature(secret, &to_sign, &auth.signature) {
            return Err(ApiError::unauthorized("verify aksk signature fail"));
        }
        if let Some(t) = &temp {
            check_security_token(headers, &signed, t, now)?;
        }
        Ok(auth.access)
    }
}

/// A request as received, for [`Verifier::verify_with`].
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path as on the wire.
    pub path: &'a str,
    /// Query as on the wire, without `?`.
    pub query: &'a str,
    /// Every received header.
    pub headers: &'a [(String, String)],
    /// The body.
    pub body: &'a [u8],
}

/// What the verifier needs of a temporary credential.
#[derive(Clone)]
pub struct TemporarySecret {
    /// Secret key.
    pub secret: String,
    /// The security token that must come with it.
    pub security_token: String,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
}

/// `X-Sdk-Date`: present, signed, well-formed and within [`MAX_CLOCK_SKEW`]; every signed header
/// present.
fn check_date<'a>(
    headers: &'a [(String, String)],
    signed: &[String],
    now: DateTime<Utc>,
) -> Result<&'a str, ApiError> {
    let sdk_date = header(headers, signer::HEADER_SDK_DATE)
        .ok_or_else(|| ApiError::unauthorized("the X-Sdk-Date header is missing"))?
        .trim();
    if !signed.iter().any(|h| h == "x-sdk-date") {
        return Err(ApiError::unauthorized(
            "x-sdk-date must be one of the SignedHeaders",
        ));
    }
    if let Some(absent) = signed.iter().find(|h| header(headers, h).is_none()) {
        return Err(ApiError::unauthorized(format!(
            "signed header {absent} is not in the request"
        )));
    }
    let date = NaiveDateTime::parse_from_str(sdk_date, signer::SDK_DATE_FORMAT)
        .map_err(|_| ApiError::unauthorized("X-Sdk-Date is malformed (expected YYYYMMDDThhmmssZ)"))?
        .and_utc();
    if (now - date).abs() > MAX_CLOCK_SKEW {
        return Err(ApiError::unauthorized(
            "X-Sdk-Date is more than 15 minutes away from the server time",
        ));
    }
    Ok(sdk_date)
}

/// Equality without an early exit on the first differing byte (the length is not secret).
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A temporary credential's call: its security token sent (and signed), and not expired.
fn check_security_token(
    headers: &[(String, String)],
    signed: &[String],
    t: &TemporarySecret,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let sent = header(headers, signer::HEADER_SECURITY_TOKEN).ok_or_else(|| {
        ApiError::unauthorized("the X-Security-Token header is missing (temporary access key)")
    })?;
    let is_signed = signed.iter().any(|h| h == "x-security-token");
    let same = same_bytes(sent.trim().as_bytes(), t.security_token.as_bytes());
    if !is_signed || !same {
        return Err(ApiError::unauthorized(
            "the security token does not match the temporary access key",
        ));
    }
    if now >= t.expires_at {
        return Err(ApiError::unauthorized(format!(
            "the security token has expired, expires_at: {}",
            t.expires_at.to_rfc3339()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::signer::{Credentials, Signer};
    use chrono::TimeZone;

    #[derive(serde::Deserialize)]
    struct Vectors {
        access_key: String,
        secret_key: String,
        requests: Vec<Recorded>,
    }

    #[derive(serde::Deserialize)]
    struct Recorded {
        name: String,
        method: String,
        target: String,
        headers: Vec<(String, String)>,
        body: String,
    }

    fn vectors() -> Vectors {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/signing-vectors.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).expect("read vectors"))
            .expect("parse vectors")
    }

    fn recorded_now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 21, 59, 35).unwrap()
    }

    #[test]
    fn accepts_every_request_recorded_from_the_python_sdk() {
        let v = vectors();
        let verifier = Verifier::new(&[(v.access_key.clone(), v.secret_key.clone())]);
        for r in &v.requests {
            let (path, query) = r.target.split_once('?').unwrap_or((&r.target, ""));
            let ak = verifier
                .verify(
                    &r.method,
                    path,
                    query,
                    &r.headers,
                    r.body.as_bytes(),
                    recorded_now(),
                )
                .unwrap_or_else(|e| panic!("{}: {e}", r.name));
            assert_eq!(ak, v.access_key);
            // Fourteen minutes later is still fine, sixteen is not.
            let later = recorded_now() + TimeDelta::minutes(14);
            assert!(
                verifier
                    .verify(&r.method, path, query, &r.headers, r.body.as_bytes(), later)
                    .is_ok()
            );
            let stale = recorded_now() + TimeDelta::minutes(16);
            let e = verifier
                .verify(&r.method, path, query, &r.headers, r.body.as_bytes(), stale)
                .unwrap_err();
            assert!(e.msg.contains("15 minutes"), "{}", e.msg);
        }
    }

    fn signed(now: DateTime<Utc>) -> Vec<(String, String)> {
        let mut headers = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            ("Host".to_string(), "127.0.0.1:1".to_string()),
        ];
        Signer::new(Credentials::new("AK", "SK")).sign(
            "GET",
            "/v3/p/vpc/traffic-mirror-sessions",
            "limit=1",
            &mut headers,
            b"",
            now,
        );
        headers
    }

    fn check(headers: &[(String, String)]) -> Result<String, ApiError> {
        Verifier::new(&[("AK".into(), "SK".into())]).verify(
            "GET",
            "/v3/p/vpc/traffic-mirror-sessions",
            "limit=1",
            headers,
            b"",
            recorded_now(),
        )
    }

    fn replace(headers: &mut [(String, String)], name: &str, value: &str) {
        for (n, v) in headers.iter_mut() {
            if n.eq_ignore_ascii_case(name) {
                *v = value.to_string();
            }
        }
    }

    #[test]
    fn each_failure_is_a_401_with_its_reason() {
        assert_eq!(check(&signed(recorded_now())).unwrap(), "AK");

        let mut h = signed(recorded_now());
        h.retain(|(n, _)| n != "Authorization");
        let e = check(&h).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code.as_str()), (401, "APIGW.0301"));
        assert!(e.msg.contains("missing"));

        let mut h = signed(recorded_now());
        replace(&mut h, "Authorization", "Basic Zm9vOmJhcg==");
        assert!(check(&h).unwrap_err().msg.contains("malformed"));

        let mut h = signed(recorded_now());
        let auth = header(&h, "Authorization")
            .unwrap()
            .replace("Access=AK", "Access=XX");
        replace(&mut h, "Authorization", &auth);
        assert!(check(&h).unwrap_err().msg.contains("access key"));

        let mut h = signed(recorded_now());
        replace(&mut h, "X-Sdk-Date", "2026-11-26 21:59:35");
        assert!(check(&h).unwrap_err().msg.contains("malformed"));

        let mut h = signed(recorded_now());
        h.retain(|(n, _)| n != "X-Sdk-Date");
        assert!(check(&h).unwrap_err().msg.contains("X-Sdk-Date"));

        let h = signed(recorded_now() - TimeDelta::minutes(20));
        assert!(check(&h).unwrap_err().msg.contains("15 minutes"));

        let mut h = signed(recorded_now());
        h.retain(|(n, _)| n != "Host");
        assert!(check(&h).unwrap_err().msg.contains("signed header host"));

        let mut h = signed(recorded_now());
        replace(&mut h, "Host", "127.0.0.1:2");
        assert!(check(&h).unwrap_err().msg.contains("signature"));

        // A signature without x-sdk-date among the signed headers is refused even if it matches.
        let mut h = vec![
            ("Host".to_string(), "h".to_string()),
            ("X-Sdk-Date".to_string(), "20261126T215935Z".to_string()),
        ];
        let creq = signer::canonical_request(
            "GET",
            "/v3/p/vpc/traffic-mirror-sessions",
            "limit=1",
            &h,
            &["host".to_string()],
            b"",
        );
        let sig = signer::signature("SK", &signer::string_to_sign("20261126T215935Z", &creq));
        h.push((
            "Authorization".into(),
            signer::authorization_header("AK", &["host".to_string()], &sig),
        ));
        assert!(check(&h).unwrap_err().msg.contains("x-sdk-date"));
    }

    #[test]
    fn debug_does_not_show_secrets() {
        let v = Verifier::new(&[("AK".into(), "very-secret".into())]);
        assert!(!format!("{v:?}").contains("very-secret"));
    }
}
