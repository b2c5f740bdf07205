//! The unauthenticated admin API under `/_emulator/` (served only on a loopback listener): the
//! call log, injected faults, throttling and latency limits, reset, a state dump and a health
//! check. Admin calls are never throttled, delayed or logged. Tests use it to see exactly
//! what a client sent and to make the next calls fail in controlled ways.
//!
//! | method and path | effect |
//! |---|---|
//! | `GET /_emulator/healthz` | 200 `{"status":"ok"}` |
//! | `GET /_emulator/calls` | 200, every API call in order: `[{method, path, query, body, status, throttled, at}]` |
//! | `DELETE /_emulator/calls` | 204, clears the call log |
//! | `POST /_emulator/faults` | 201, queues a [`FaultSpec`] (the call log and the fault queue
//! themselves live in [`super::state`]) |
//! | `GET /_emulator/faults` | 200, the faults still pending, with `remaining` |
//! | `DELETE /_emulator/faults` | 204, drops every pending fault |
//! | `GET /_emulator/limits` | 200, the [`LimitsConfig`] in force: `{"rate_limit": {rps, burst} \| null, "latency": {ms, jitter_ms} \| null}` |
//! | `PUT /_emulator/limits` | 200 with the new config; replaces both parts (absent = `null` = off), refills every bucket; 400 `VPC.0001` when invalid |
//! | `POST /_emulator/reset` | 204, clears data (and the state file), calls and faults; limits back to the command line's, buckets refilled |
//! | `GET /_emulator/state` | 200, `{sessions, filters, rules, ports}` as stored |
//! | `POST /_emulator/ports` | 201 with the stored port; seeds (or replaces, by id) a port in the SDK's `Port` shape; 400 `VPC.0001`/`VPC.0002` when invalid |
//! | `POST /_emulator/identity-providers` | 201; registers (or replaces, by id) an OIDC identity provider `{id, issuer, audience, jwks, subjects?}`; 400 `VPC.0001`/`VPC.0002` when invalid |
//! | `POST /_emulator/agencies` | 201; registers an agency `{domain_name, domain_id?, agency_name}` for `assume_role` |
//! | `GET /_emulator/metadata` / `PUT /_emulator/metadata` | the metadata settings `{agency_bound, token_required}` (default `true`, `false`) / replaces them (200) |
//! | `DELETE /_emulator/ports/{id}` | 204, the port is gone and left the sources of every session; 404 `VPC.1301` when unknown |
//! | `GET /_emulator/batch-rule-create` | 200, `{"enabled": bool}`: whether `BatchCreateTrafficMirrorFilterRules` is served |
//! | `PUT /_emulator/batch-rule-create` | 200, sets it from `{"enabled": bool}`; off, the API answers 404 `APIGW.0101` (a reset turns it on) |

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::json;

use super::errors::ApiError;
use super::identity::{Agency, IdentityProvider, MetadataSettings};
use super::limits::LimitsConfig;
use super::ports;
use super::records::{Data, Port};
use super::state::{AppState, FaultSpec};

/// The admin routes (mounted only on a loopback listener).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/_emulator/healthz", get(healthz))
        .route("/_emulator/calls", get(calls).delete(clear_calls))
        .route(
            "/_emulator/faults",
            post(add_fault).get(list_faults).delete(clear_faults),
        )
        .route("/_emulator/limits", get(limits).put(set_limits))
        .route("/_emulator/reset", post(reset))
        .route("/_emulator/state", get(state))
        .route("/_emulator/ports", post(seed_port))
        .route("/_emulator/ports/{id}", delete(remove_port))
        .route("/_emulator/identity-providers", post(add_idp))
        .route("/_emulator/agencies", post(add_agency))
        .route("/_emulator/metadata", get(metadata).put(set_metadata))
        .route(
            "/_emulator/batch-rule-create",
            get(batch_rule_create).put(set_batch_rule_create),
        )
}

fn admin_error(e: &ApiError) -> Response {
    (
        e.status,
        Json(json!({"error_code": e.code, "error_msg": e.msg})),
    )
        .into_response()
}

async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

async fn calls(State(st): State<Arc<AppState>>) -> Response {
    Json(st.calls.snapshot()).into_response()
}

async fn clear_calls(State(st): State<Arc<AppState>>) -> StatusCode {
    st.calls.clear();
    StatusCode::NO_CONTENT
}

async fn add_fault(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let spec: FaultSpec = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return admin_error(&ApiError::malformed(format!("invalid fault: {e}"))),
    };
    if let Err(e) = spec.validate() {
        return admin_error(&e);
    }
    st.faults.add(spec.clone());
    (StatusCode::CREATED, Json(spec)).into_response()
}

async fn list_faults(State(st): State<Arc<AppState>>) -> Response {
    Json(st.faults.snapshot()).into_response()
}

async fn clear_faults(State(st): State<Arc<AppState>>) -> StatusCode {
    st.faults.clear();
    StatusCode::NO_CONTENT
}

async fn limits(State(st): State<Arc<AppState>>) -> Response {
    Json(st.limits.config()).into_response()
}

async fn set_limits(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let config: LimitsConfig = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return admin_error(&ApiError::malformed(format!("invalid limits: {e}"))),
    };
    st.limits.set(config);
    tracing::info!(?config, "limits changed");
    Json(config).into_response()
}

async fn reset(State(st): State<Arc<AppState>>) -> Response {
    if let Err(e) = st.store.replace(Data::default()) {
        return admin_error(&e);
    }
    st.calls.clear();
    st.faults.clear();
    st.limits.restore();
    st.identity.reset();
    st.batch_rule_create.set(true);
    StatusCode::NO_CONTENT.into_response()
}

async fn state(State(st): State<Arc<AppState>>) -> Response {
    Json(st.store.read(Data::clone)).into_response()
}

async fn seed_port(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let port: Port = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return admin_error(&ApiError::malformed(format!("invalid port: {e}"))),
    };
    let now = chrono::Utc::now();
    match st
        .store
        .mutate(|d| ports::seed(d, &st.project_id, port, now))
    {
        Ok(p) => (StatusCode::CREATED, Json(p)).into_response(),
        Err(e) => admin_error(&e),
    }
}

async fn remove_port(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let now = chrono::Utc::now();
    match st.store.mutate(|d| ports::remove(d, &id, now)) {
        Ok(sessions) => {
            tracing::info!(port = %id, ?sessions, "port removed");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => admin_error(&e),
    }
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::malformed(format!("invalid {what}: {e}")))
}

async fn add_idp(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let idp: IdentityProvider = match parse("identity provider", &body) {
        Ok(v) => v,
        Err(e) => return admin_error(&e),
    };
    let answer = json!({"id": idp.id, "issuer": idp.issuer, "audience": idp.audience,
                        "subjects": idp.subjects});
    match st.identity.add_idp(idp) {
        Ok(()) => (StatusCode::CREATED, Json(answer)).into_response(),
        Err(e) => admin_error(&e),
    }
}

async fn add_agency(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let agency: Agency = match parse("agency", &body) {
        Ok(v) => v,
        Err(e) => return admin_error(&e),
    };
    match st.identity.add_agency(agency.clone()) {
        Ok(()) => (StatusCode::CREATED, Json(agency)).into_response(),
        Err(e) => admin_error(&e),
    }
}

async fn metadata(State(st): State<Arc<AppState>>) -> Response {
    Json(st.identity.metadata()).into_response()
}

async fn set_metadata(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let settings: MetadataSettings = match parse("metadata settings", &body) {
        Ok(v) => v,
        Err(e) => return admin_error(&e),
    };
    st.identity.set_metadata(settings);
    Json(settings).into_response()
}

async fn batch_rule_create(State(st): State<Arc<AppState>>) -> Response {
    Json(json!({"enabled": st.batch_rule_create.enabled()})).into_response()
}

async fn set_batch_rule_create(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let enabled = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("enabled").and_then(serde_json::Value::as_bool));
    let Some(enabled) = enabled else {
        let e = ApiError::malformed(r#"expected {"enabled": true|false}"#);
        return admin_error(&e);
    };
    st.batch_rule_create.set(enabled);
    Json(json!({"enabled": enabled})).into_response()
}
