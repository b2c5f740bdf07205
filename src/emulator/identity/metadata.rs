//! The ECS metadata paths the official SDKs read for the credential of the agency bound to a
//! server:
//!
//! - `PUT /meta-data/latest/api/token` (`X-Metadata-Token-Ttl-Seconds`): a session token, as
//!   plain text, when tokens are required; 404 when they are not (a metadata service without
//!   tokens, which the SDKs accept).
//! - `GET /openstack/latest/securitykey`: a temporary credential. 401 with `Please configure
//!   Cloud Service Agency first` when no agency is bound; another 401 when a token is required
//!   and `X-Metadata-Token` is missing or not valid.
//!
//! The error bodies are the emulator's (`METADATA.*` codes); the SDKs read only the status and
//! look for the agency sentence in the text.

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, TimeDelta, Utc};

use super::{Identity, Reply, ReplyBody};
use crate::emulator::errors::ApiError;

/// The sentence of the real 401 for a server without an agency.
pub const NO_AGENCY: &str = "Please configure Cloud Service Agency first";
/// Lifetime of a metadata credential (undocumented; capped by `--credential-lifetime`).
pub const CREDENTIAL_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Largest `X-Metadata-Token-Ttl-Seconds`.
pub const MAX_TOKEN_TTL: i64 = 21_600;

fn error(status: StatusCode, code: &str, msg: &str) -> ApiError {
    ApiError::new(status, code, msg)
}

/// `PUT /meta-data/latest/api/token`.
pub fn token(id: &Identity, headers: &HeaderMap, now: DateTime<Utc>) -> Result<Reply, ApiError> {
    if !id.metadata().token_required {
        return Err(error(
            StatusCode::NOT_FOUND,
            "METADATA.0404",
            "metadata tokens are not enabled",
        ));
    }
    let ttl = headers
        .get("x-metadata-token-ttl-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|s| (1..=MAX_TOKEN_TTL).contains(s))
        .ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                "METADATA.0400",
                "X-Metadata-Token-Ttl-Seconds must be an integer from 1 to 21600",
            )
        })?;
    let token = id.issue_metadata_token(TimeDelta::seconds(ttl), now);
    Ok(Reply {
        status: StatusCode::OK,
        headers: vec![("X-Metadata-Token-Ttl-Seconds", ttl.to_string())],
        body: ReplyBody::Text(token),
    })
}

/// `GET /openstack/latest/securitykey`.
pub fn security_key(
    id: &Identity,
    headers: &HeaderMap,
    now: DateTime<Utc>,
) -> Result<Reply, ApiError> {
    let settings = id.metadata();
    if settings.token_required {
        let sent = headers
            .get("x-metadata-token")
            .and_then(|v| v.to_str().ok())
            .map(str::trim);
        if !sent.is_some_and(|t| id.metadata_token_valid(t, now)) {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "METADATA.0401",
                "a valid X-Metadata-Token is required",
            ));
        }
    }
    if !settings.agency_bound {
        return Err(error(StatusCode::UNAUTHORIZED, "METADATA.0402", NO_AGENCY));
    }
    let cred = id.issue_credential(CREDENTIAL_LIFETIME, now);
    Ok(Reply::json(StatusCode::OK, cred.answer()))
}
