//! The HTTP side: the router (admin routes + the VPC v3 API), the per-call pipeline and the
//! connection loop.
//!
//! Each API call goes: latency (`/v3/...` paths only; a `tokio::time::sleep`) → read the body
//! (at most 1 MiB, else 413) → rate limit of the path's project (`/v3/{project_id}/...` only;
//! over it: 429 `APIGW.0308`, nothing else runs, no fault is used up) → injected fault? → route
//! (unknown → 404 `APIGW.0101`) → AK/SK verification (401 `APIGW.0301`) → project check (403
//! `APIGW.0302`) → operation → JSON answer with `request_id` in the body and `X-Request-Id` as a
//! header → call log. Every answer except a 204 has a JSON body, whatever was sent.
//!
//! The identity paths (`/meta-data/...`, `/openstack/...`, `/v3.0/...`, `/v3/projects`; see
//! [`super::identity`]) go through the same pipeline (logged, fault-injectable) but are not
//! throttled, and are answered as the identity side builds them (IAM's `201` with
//! `X-Subject-Token`, the metadata token as plain text).
//!
//! Like the gateway, throttling comes first: an unsigned call or one for a foreign project also
//! takes a token of that project's bucket. Latency is added to throttled calls too.
//!
//! The connection loop is hyper's HTTP/1 server rather than `axum::serve` so that a fault can
//! close a connection without answering: the router marks such a response with
//! [`DropConnection`], and the per-connection service then fails, which makes hyper drop the
//! connection without writing anything.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::ServiceExt;

use super::admin;
use super::auth::{Signed, TemporarySecret};
use super::errors::{self, ApiError};
use super::identity;
use super::list::ListQuery;
use super::records::Session;
use super::state::{AppState, CallRecord, FaultSpec};
use super::store::Store;
use super::validate::Fields;
use super::{filters, ports, rules, sessions};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How long a graceful shutdown waits for open connections before closing them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Marker extension on a response whose connection must be closed without answering.
#[derive(Debug, Clone, Copy)]
pub struct DropConnection;

/// The router: admin routes when `admin` is true (loopback listeners only), the API otherwise.
/// Usable in-process with `tower::ServiceExt::oneshot`.
pub fn router(state: Arc<AppState>, admin: bool) -> Router {
    let base = if admin {
        admin::routes()
    } else {
        Router::new()
    };
    base.fallback(api_entry)
        .method_not_allowed_fallback(admin_method_not_allowed)
        .with_state(state)
}

async fn admin_method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(json!({"error_code": errors::API_NOT_FOUND, "error_msg": "method not allowed on this admin endpoint"})),
    )
        .into_response()
}

/// What the pipeline decided to answer.
enum Outcome {
    Answer(StatusCode, Option<Value>),
    /// An identity answer, sent as built (headers, plain-text or JSON body).
    Identity(identity::Reply),
    Error(ApiError, Option<u64>),
    Drop,
}

impl Outcome {
    fn status(&self) -> u16 {
        match self {
            Outcome::Answer(s, _) => s.as_u16(),
            Outcome::Identity(r) => r.status.as_u16(),
            Outcome::Error(e, _) => e.status.as_u16(),
            Outcome::Drop => 0,
        }
    }

    fn into_response(self, request_id: &str) -> Response {
        let (status, body, retry_after) = match self {
            Outcome::Answer(s, b) => (s, b, None),
            Outcome::Identity(reply) => return identity_response(reply, request_id),
            Outcome::Error(e, retry) => (e.status, Some(e.body(request_id)), retry),
            Outcome::Drop => {
                let e = ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    errors::INJECTED_FAULT,
                    "connection dropped (injected fault)",
                );
                let mut r = Outcome::Error(e, None).into_response(request_id);
                r.extensions_mut().insert(DropConnection);
                return r;
            }
        };
        let mut response = match body {
            Some(mut v) => {
                if let Value::Object(m) = &mut v {
                    m.insert("request_id".into(), json!(request_id));
                }
                let bytes = serde_json::to_vec(&v).unwrap_or_else(|_| b"{}".to_vec());
                let mut r = Response::new(Body::from(bytes));
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                r
            }
            None => Response::new(Body::empty()),
        };
        *response.status_mut() = status;
        if let Ok(v) = HeaderValue::from_str(request_id) {
            response.headers_mut().insert("x-request-id", v);
        }
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// An identity answer as built, plus `X-Request-Id`.
fn identity_response(reply: identity::Reply, request_id: &str) -> Response {
    let (bytes, content_type) = match reply.body {
        identity::ReplyBody::Json(v) => (
            serde_json::to_vec(&v).unwrap_or_else(|_| b"{}".to_vec()),
            "application/json",
        ),
        identity::ReplyBody::Text(t) => (t.into_bytes(), "text/plain"),
    };
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = reply.status;
    let headers = r.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    for (name, value) in reply.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", v);
    }
    r
}

async fn api_entry(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    if path == "/_emulator" || path.starts_with("/_emulator/") {
        // Unknown admin endpoint, or admin API disabled: not an API call, so not logged.
        let e = ApiError::new(
            StatusCode::NOT_FOUND,
            errors::API_NOT_FOUND,
            "no such admin endpoint (the admin API is served only on a loopback listener)",
        );
        return Outcome::Error(e, None).into_response(&request_id);
    }
    let method = parts.method.clone();
    let query = parts.uri.query().unwrap_or("").to_owned();
    if path.starts_with("/v3/") {
        let delay = st.limits.delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
    let mut throttled = false;
    let (outcome, logged_body) = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Err(_) => {
            let e = ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                errors::ENTITY_TOO_LARGE,
                format!("Request entity too large (at most {MAX_BODY_BYTES} bytes)"),
            );
            (Outcome::Error(e, None), Value::Null)
        }
        Ok(bytes) => {
            let mut logged = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            identity::redact_logged(&path, &mut logged);
            let admitted = path_project(&path)
                .map_or(Ok(()), |project| st.limits.admit(&project, Instant::now()));
            let outcome = match admitted {
                Ok(()) => process(&st, &method, &path, &query, &parts.headers, &bytes).await,
                Err(rate) => {
                    throttled = true;
                    Outcome::Error(ApiError::throttled(rate.rps), None)
                }
            };
            (outcome, logged)
        }
    };
    tracing::debug!(%method, %path, status = outcome.status(), throttled, "api call");
    st.calls.push(CallRecord {
        method: method.as_str().to_owned(),
        path,
        query,
        body: logged_body,
        status: outcome.status(),
        throttled,
        at,
    });
    outcome.into_response(&request_id)
}

async fn process(
    st: &AppState,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Outcome {
    let fault = st.faults.take(method.as_str(), path);
    if let Some(ms) = fault.as_ref().and_then(|f| f.delay_ms) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let run = || match identity::Route::parse(method, path) {
        Some(route) => match handle_identity(st, route, method, path, query, headers, body) {
            Ok(reply) => Outcome::Identity(reply),
            Err(e) => Outcome::Error(e, None),
        },
        None => match handle(st, method, path, query, headers, body) {
            Ok((status, value)) => Outcome::Answer(status, value),
            Err(e) => Outcome::Error(e, None),
        },
    };
    match fault {
        Some(f) if f.fails() => {
            if f.execute {
                run();
            }
            injected(&f)
        }
        _ => run(),
    }
}

fn injected(f: &FaultSpec) -> Outcome {
    if f.drop_connection {
        return Outcome::Drop;
    }
    let status = f
        .status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let code = f
        .error_code
        .clone()
        .unwrap_or_else(|| errors::default_fault_code(status).to_owned());
    let msg = f
        .error_msg
        .clone()
        .unwrap_or_else(|| "injected fault".to_owned());
    Outcome::Error(ApiError::new(status, code, msg), f.retry_after_s)
}

/// Which collection a path addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Collection {
    Sessions,
    Filters,
    Rules,
    Ports,
}

/// The operation a method and path ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    List,
    Create,
    Show(String),
    Update(String),
    Delete(String),
    AddSources(String),
    RemoveSources(String),
    /// `POST /v3/{project}/ports/resource-instances/filter` (`ListPortsByTags`).
    ByTags,
    /// `POST traffic-mirror-filters/{id}/traffic-mirror-filter-rules/batch-create`.
    BatchCreateRules(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    project: String,
    collection: Collection,
    op: Op,
}

/// The project id of a `/v3/{project_id}/...` path (decoded; the key of the rate limit), whether
/// or not the rest of the path is an API.
fn path_project(path: &str) -> Option<String> {
    if identity::Route::is_identity_path(path) {
        return None;
    }
    let project = path.strip_prefix("/v3/")?.split('/').next()?;
    decode_segment(project)
}

fn decode_segment(s: &str) -> Option<String> {
    let decoded = percent_decode_str(s).decode_utf8().ok()?.into_owned();
    (!decoded.is_empty()).then_some(decoded)
}

impl Route {
    fn parse(method: &Method, path: &str) -> Option<Self> {
        let segments: Vec<&str> = path.strip_prefix("/v3/")?.split('/').collect();
        if let [project, "ports", rest @ ..] = segments.as_slice() {
            return Self::parse_ports(method, project, rest);
        }
        let [project, "vpc", collection, rest @ ..] = segments.as_slice() else {
            return None;
        };
        let collection = match *collection {
            "traffic-mirror-sessions" => Collection::Sessions,
            "traffic-mirror-filters" => Collection::Filters,
            "traffic-mirror-filter-rules" => Collection::Rules,
            _ => return None,
        };
        let op = match (method.as_str(), rest) {
            ("GET", []) => Op::List,
            ("POST", []) => Op::Create,
            ("GET", [id]) => Op::Show(decode_segment(id)?),
            ("PUT", [id]) => Op::Update(decode_segment(id)?),
            ("DELETE", [id]) => Op::Delete(decode_segment(id)?),
            ("PUT", [id, "add-sources"]) if collection == Collection::Sessions => {
                Op::AddSources(decode_segment(id)?)
            }
            ("PUT", [id, "remove-sources"]) if collection == Collection::Sessions => {
                Op::RemoveSources(decode_segment(id)?)
            }
            ("POST", [id, "traffic-mirror-filter-rules", "batch-create"])
                if collection == Collection::Filters =>
            {
                Op::BatchCreateRules(decode_segment(id)?)
            }
            _ => return None,
        };
        Some(Self {
            project: decode_segment(project)?,
            collection,
            op,
        })
    }
}

impl Route {
    /// `/v3/{project}/ports...`: list, show, list by tags (the port API is not under `/vpc`).
    fn parse_ports(method: &Method, project: &str, rest: &[&str]) -> Option<Self> {
        let op = match (method.as_str(), rest) {
            ("GET", []) => Op::List,
            ("GET", [id]) => Op::Show(decode_segment(id)?),
            ("POST", ["resource-instances", "filter"]) => Op::ByTags,
            _ => return None,
        };
        Some(Self {
            project: decode_segment(project)?,
            collection: Collection::Ports,
            op,
        })
    }
}

type Handled = Result<(StatusCode, Option<Value>), ApiError>;

fn handle(
    st: &AppState,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Handled {
    let route = Route::parse(method, path).ok_or_else(ApiError::no_such_api)?;
    if matches!(route.op, Op::BatchCreateRules(_)) && !st.batch_rule_create.enabled() {
        return Err(ApiError::no_such_api());
    }
    verify_signature(st, method, path, query, headers, body)?;
    if route.project != st.project_id {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            errors::PROJECT_FORBIDDEN,
            format!(
                "The IAM user is not authorized to access project {}",
                route.project
            ),
        ));
    }
    dispatch(st, &route, query, body)
}

/// AK/SK verification with the permanent credentials and the temporary ones the identity side
/// issued (401 `APIGW.0301`); the access key on success.
fn verify_signature(
    st: &AppState,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, ApiError> {
    let header_pairs: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let req = Signed {
        method: method.as_str(),
        path,
        query,
        headers: &header_pairs,
        body,
    };
    st.verifier.verify_with(&req, Utc::now(), |ak| {
        st.identity.credential(ak).map(|t| TemporarySecret {
            secret: t.secret,
            security_token: t.security_token,
            expires_at: t.expires_at,
        })
    })
}

/// The identity side: metadata, IAM and projects paths.
fn handle_identity(
    st: &AppState,
    route: identity::Route,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<identity::Reply, ApiError> {
    use identity::{Route as R, iam, metadata};
    let now = Utc::now();
    let id = &st.identity;
    match route {
        R::MetadataToken => metadata::token(id, headers, now),
        R::MetadataSecurityKey => metadata::security_key(id, headers, now),
        R::IdTokenTokens => iam::id_token_tokens(id, headers, body, now),
        R::SecurityTokens => iam::security_tokens(id, headers, body, now, || {
            verify_signature(st, method, path, query, headers, body)
        }),
        R::Projects => {
            verify_signature(st, method, path, query, headers, body)?;
            Ok(iam::projects(&st.project_id, query))
        }
    }
}

fn ok(v: Value) -> Handled {
    Ok((StatusCode::OK, Some(v)))
}

fn created(v: Value) -> Handled {
    Ok((StatusCode::CREATED, Some(v)))
}

fn no_content() -> Handled {
    Ok((StatusCode::NO_CONTENT, None))
}

/// Run the operation `route` asks for, on the collection it names.
fn dispatch(st: &AppState, route: &Route, query: &str, body: &[u8]) -> Handled {
    let call = Call {
        store: &st.store,
        project: route.project.as_str(),
        query,
        body,
        now: Utc::now(),
        check_ports: st.check_ports,
        max_sources_per_session: st.max_sources_per_session,
    };
    match route.collection {
        Collection::Sessions => dispatch_sessions(&call, &route.op),
        Collection::Filters => dispatch_filters(&call, &route.op),
        Collection::Rules => dispatch_rules(&call, &route.op),
        Collection::Ports => dispatch_ports(&call, &route.op),
    }
}

/// What one operation works with, besides the operation itself.
struct Call<'a> {
    store: &'a Store,
    project: &'a str,
    query: &'a str,
    body: &'a [u8],
    now: DateTime<Utc>,
    /// `--check-ports`: session sources must be existing ports.
    check_ports: bool,
    /// `--max-sources-per-session`: the project's quota of sources per session.
    max_sources_per_session: usize,
}

impl Call<'_> {
    /// With `--check-ports`, 400 `VPC.1005` unless every source the body names is a port.
    fn require_source_ports(&self, d: &super::records::Data, f: &Fields) -> Result<(), ApiError> {
        if !self.check_ports {
            return Ok(());
        }
        let sources = f.string_list("traffic_mirror_sources")?.unwrap_or_default();
        d.require_ports(self.project, &f.path("traffic_mirror_sources"), &sources)
    }
}

/// `traffic-mirror-sessions`: list, create, show, update, delete, add- and remove-sources.
fn dispatch_sessions(c: &Call<'_>, op: &Op) -> Handled {
    let (store, p, now, w) = (c.store, c.project, c.now, sessions::WRAPPER);
    let one = |s: Session| json!({ w: s });
    match op {
        Op::List => {
            let q = ListQuery::parse(c.query, sessions::LIST_FILTERS)?;
            let v = store.read(|d| {
                let (page, info) = q.page(&sessions::all(d, p))?;
                Ok::<_, ApiError>(json!({ sessions::LIST_KEY: page, "page_info": info }))
            })?;
            ok(v)
        }
        Op::Create => {
            let f = Fields::parse(c.body, w)?;
            created(one(store.mutate(|d| {
                let s = sessions::create(d, p, &f, now, c.max_sources_per_session)?;
                c.require_source_ports(d, &f)?;
                Ok(s)
            })?))
        }
        Op::Show(id) => ok(one(store.read(|d| sessions::get(d, p, id).cloned())?)),
        Op::Update(id) => {
            let f = Fields::parse(c.body, w)?;
            ok(one(store.mutate(|d| sessions::update(d, p, id, &f, now))?))
        }
        Op::Delete(id) => {
            store.mutate(|d| sessions::delete(d, p, id))?;
            no_content()
        }
        Op::AddSources(id) => {
            let f = Fields::parse(c.body, w)?;
            ok(one(store.mutate(|d| {
                let s = sessions::add_sources(d, p, id, &f, now, c.max_sources_per_session)?;
                c.require_source_ports(d, &f)?;
                Ok(s)
            })?))
        }
        Op::RemoveSources(id) => {
            let f = Fields::parse(c.body, w)?;
            ok(one(
                store.mutate(|d| sessions::remove_sources(d, p, id, &f, now))?
            ))
        }
        Op::ByTags => Err(ApiError::no_such_api()),
        Op::BatchCreateRules(_) => Err(ApiError::no_such_api()),
    }
}

/// `traffic-mirror-filters`: list, create, show, update, delete; answers embed the rules.
fn dispatch_filters(c: &Call<'_>, op: &Op) -> Handled {
    let (store, p, now, w) = (c.store, c.project, c.now, filters::WRAPPER);
    match op {
        Op::List => {
            let q = ListQuery::parse(c.query, filters::LIST_FILTERS)?;
            let v = store.read(|d| {
                let (page, info) = q.page(&filters::all(d, p))?;
                let page: Vec<Value> = page.iter().map(|f| filters::view(d, f)).collect();
                Ok::<_, ApiError>(json!({ filters::LIST_KEY: page, "page_info": info }))
            })?;
            ok(v)
        }
        Op::Create => {
            let f = Fields::parse(c.body, w)?;
            let v = store.mutate(|d| {
                let filter = filters::create(d, p, &f, now)?;
                Ok(filters::view(d, &filter))
            })?;
            created(json!({ w: v }))
        }
        Op::Show(id) => {
            let v = store.read(|d| filters::get(d, p, id).map(|f| filters::view(d, f)))?;
            ok(json!({ w: v }))
        }
        Op::Update(id) => {
            let f = Fields::parse(c.body, w)?;
            let v = store.mutate(|d| {
                let filter = filters::update(d, p, id, &f, now)?;
                Ok(filters::view(d, &filter))
            })?;
            ok(json!({ w: v }))
        }
        Op::Delete(id) => {
            store.mutate(|d| filters::delete(d, p, id))?;
            no_content()
        }
        Op::BatchCreateRules(id) => {
            let items = rules::parse_batch(c.body)?;
            let created = store.mutate(|d| rules::batch_create(d, p, id, &items, now))?;
            Ok((
                StatusCode::CREATED,
                Some(json!({ rules::BATCH_KEY: created })),
            ))
        }
        Op::AddSources(_) | Op::RemoveSources(_) | Op::ByTags => Err(ApiError::no_such_api()),
    }
}

/// `traffic-mirror-filter-rules`: list, create, show, update, delete.
fn dispatch_rules(c: &Call<'_>, op: &Op) -> Handled {
    let (store, p, now, w) = (c.store, c.project, c.now, rules::WRAPPER);
    match op {
        Op::List => {
            let q = ListQuery::parse(c.query, rules::LIST_FILTERS)?;
            let v = store.read(|d| {
                let (page, info) = q.page(&rules::all(d, p))?;
                Ok::<_, ApiError>(json!({ rules::LIST_KEY: page, "page_info": info }))
            })?;
            ok(v)
        }
        Op::Create => {
            let f = Fields::parse(c.body, w)?;
            let r = store.mutate(|d| rules::create(d, p, &f, now))?;
            created(json!({ w: r }))
        }
        Op::Show(id) => {
            let r = store.read(|d| rules::get(d, p, id).cloned())?;
            ok(json!({ w: r }))
        }
        Op::Update(id) => {
            let f = Fields::parse(c.body, w)?;
            let r = store.mutate(|d| rules::update(d, p, id, &f, now))?;
            ok(json!({ w: r }))
        }
        Op::Delete(id) => {
            store.mutate(|d| rules::delete(d, p, id))?;
            no_content()
        }
        Op::AddSources(_) | Op::RemoveSources(_) | Op::ByTags | Op::BatchCreateRules(_) => {
            Err(ApiError::no_such_api())
        }
    }
}

/// `ports`: list (filters, `limit`/`marker`), show, list by tags (`limit`/`offset`).
fn dispatch_ports(c: &Call<'_>, op: &Op) -> Handled {
    let (store, p) = (c.store, c.project);
    match op {
        Op::List => {
            let q = ListQuery::parse(c.query, ports::LIST_FILTERS)?;
            let v = store.read(|d| {
                let (page, info) = q.page(&ports::all(d, p))?;
                Ok::<_, ApiError>(json!({ ports::LIST_KEY: page, "page_info": info }))
            })?;
            ok(v)
        }
        Op::Show(id) => {
            ok(json!({ ports::WRAPPER: store.read(|d| ports::get(d, p, id).cloned())? }))
        }
        Op::ByTags => {
            let q = ports::TagQuery::parse(c.body, c.query)?;
            ok(store.read(|d| q.answer(&ports::all(d, p))))
        }
        _ => Err(ApiError::no_such_api()),
    }
}

/// Serve `app` on `listener` until `shutdown` resolves, then close gracefully: stop accepting,
/// let in-flight requests finish (at most [`SHUTDOWN_GRACE`]) and close idle connections.
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (close_tx, close_rx) = tokio::sync::watch::channel(());
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve_one(stream, app.clone(), close_rx.clone()));
                }
                Err(e) => {
                    // E.g. too many open files: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    let _ = close_tx.send(());
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.shutdown().await;
    }
}

/// The error that makes hyper close a connection without answering.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by an injected fault")]
struct Dropped;

async fn serve_one(
    stream: tokio::net::TcpStream,
    app: Router,
    mut close: tokio::sync::watch::Receiver<()>,
) {
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let app = app.clone();
        async move {
            let response = match app.oneshot(req.map(Body::new)).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            if response.extensions().get::<DropConnection>().is_some() {
                Err(Dropped)
            } else {
                Ok::<_, Dropped>(response)
            }
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => log_connection_end(result),
        _ = close.changed() => {
            conn.as_mut().graceful_shutdown();
            log_connection_end(conn.await);
        }
    }
}

fn log_connection_end(result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_key_is_the_paths_project() {
        let p = |path| path_project(path);
        assert_eq!(
            p("/v3/abc/vpc/traffic-mirror-sessions").as_deref(),
            Some("abc")
        );
        assert_eq!(p("/v3/a%62c/anything").as_deref(), Some("abc"));
        assert_eq!(p("/v3/abc").as_deref(), Some("abc"));
        for unthrottled in ["/v3/", "/v3//vpc", "/v2/abc/vpc", "/", "/_emulator/calls"] {
            assert_eq!(p(unthrottled), None, "{unthrottled}");
        }
    }

    #[test]
    fn routes_every_documented_operation() {
        let p = "/v3/p/vpc";
        let cases = [
            (
                "GET",
                format!("{p}/traffic-mirror-sessions"),
                Collection::Sessions,
                Op::List,
            ),
            (
                "POST",
                format!("{p}/traffic-mirror-sessions"),
                Collection::Sessions,
                Op::Create,
            ),
            (
                "GET",
                format!("{p}/traffic-mirror-sessions/a"),
                Collection::Sessions,
                Op::Show("a".into()),
            ),
            (
                "PUT",
                format!("{p}/traffic-mirror-sessions/a"),
                Collection::Sessions,
                Op::Update("a".into()),
            ),
            (
                "DELETE",
                format!("{p}/traffic-mirror-sessions/a"),
                Collection::Sessions,
                Op::Delete("a".into()),
            ),
            (
                "PUT",
                format!("{p}/traffic-mirror-sessions/a/add-sources"),
                Collection::Sessions,
                Op::AddSources("a".into()),
            ),
            (
                "PUT",
                format!("{p}/traffic-mirror-sessions/a/remove-sources"),
                Collection::Sessions,
                Op::RemoveSources("a".into()),
            ),
            (
                "GET",
                format!("{p}/traffic-mirror-filters"),
                Collection::Filters,
                Op::List,
            ),
            (
                "DELETE",
                format!("{p}/traffic-mirror-filter-rules/%61"),
                Collection::Rules,
                Op::Delete("a".into()),
            ),
        ];
        for (m, path, c, op) in cases {
            let r = Route::parse(&Method::from_bytes(m.as_bytes()).unwrap(), &path).unwrap();
            assert_eq!(
                (r.project.as_str(), r.collection, r.op),
                ("p", c, op),
                "{m} {path}"
            );
        }
        for (m, path, op) in [
            ("GET", "/v3/p/ports", Op::List),
            ("GET", "/v3/p/ports/a%2Db", Op::Show("a-b".into())),
            ("POST", "/v3/p/ports/resource-instances/filter", Op::ByTags),
        ] {
            let r = Route::parse(&Method::from_bytes(m.as_bytes()).unwrap(), path).unwrap();
            assert_eq!(
                (r.project.as_str(), r.collection, r.op),
                ("p", Collection::Ports, op)
            );
        }
        for (m, path) in [
            ("POST", format!("{p}/traffic-mirror-sessions/a/add-sources")),
            ("PUT", format!("{p}/traffic-mirror-filters/a/add-sources")),
            ("PATCH", format!("{p}/traffic-mirror-sessions/a")),
            ("GET", format!("{p}/traffic-mirror-sessions/")),
            ("GET", format!("{p}/other")),
            ("GET", "/v3//vpc/traffic-mirror-sessions".to_string()),
            ("GET", "/v2/p/vpc/traffic-mirror-sessions".to_string()),
            ("GET", "/".to_string()),
            ("POST", "/v3/p/ports".to_string()),
            ("DELETE", "/v3/p/ports/a".to_string()),
            ("GET", "/v3/p/vpc/ports".to_string()),
            ("GET", "/v3/p/ports/resource-instances/filter".to_string()),
        ] {
            assert!(
                Route::parse(&Method::from_bytes(m.as_bytes()).unwrap(), &path).is_none(),
                "{m} {path}"
            );
        }
    }
}
