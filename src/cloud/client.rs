//! Typed async client of the VPC v3 traffic-mirror API.
//!
//! Every request is signed (AK/SK) with the credential its [`CredentialProvider`] gives for that
//! attempt, and sent once, except for one refresh and one retry (signed afresh) when temporary
//! credentials are refused with a 401. Otherwise the client never retries: it classifies failures
//! into [`CloudError`] and parses `Retry-After`, and the controller owns the retry policy.
//! Turning an answer into a result is the pure [`decode_response`] / [`decode_empty`], so it can be
//! tested (and fuzzed) without a network.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::{Stream, StreamExt, TryStreamExt, stream};
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::credentials::CredentialProvider;
use super::credentials::expiry::refresh_on;
use super::error::{CloudError, parse_retry_after};
use super::models;
use super::models::{
    CreateFilterRequest, CreateRuleRequest, CreateSessionRequest, ErrorBody, FilterEnvelope,
    FilterListResponse, FilterResponse, ListFiltersQuery, ListQuery, ListRulesQuery,
    ListSessionsQuery, PageInfo, RuleEnvelope, RuleListResponse, RuleResponse, SessionEnvelope,
    SessionListResponse, SessionResponse, SessionSourcesRequest, TrafficMirrorFilter,
    TrafficMirrorFilterRule, TrafficMirrorSession, UpdateFilterRequest, UpdateRuleRequest,
    UpdateSessionRequest,
};
use super::signer::{Credentials, HEADER_PROJECT_ID, Signer, encode};

/// `User-Agent` of every request, so the operator's calls are recognisable in cloud audit logs.
pub const USER_AGENT: &str = concat!("traffic-mirror-operator/", env!("CARGO_PKG_VERSION"));

/// Default whole-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const SESSIONS: &str = "traffic-mirror-sessions";
const FILTERS: &str = "traffic-mirror-filters";
const RULES: &str = "traffic-mirror-filter-rules";

/// How to reach and authenticate to one project's VPC endpoint.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Base URL, e.g. `https://vpc.cn-north-4.myhuaweicloud.com` (a trailing `/` is ignored).
    pub endpoint: String,
    /// Project id: every path is `/v3/{project_id}/vpc/...`.
    pub project_id: String,
    /// AK/SK (and token) used to sign. Redacted in `Debug`.
    pub credentials: Credentials,
    /// Where to get the credential of each attempt instead of the fixed `credentials` (temporary
    /// credentials of a refreshing source). `None`: sign with `credentials`.
    pub provider: Option<CredentialProvider>,
    /// Timeout of a whole request, answer body included.
    pub timeout: Duration,
    /// Timeout of establishing the connection.
    pub connect_timeout: Duration,
}

impl ClientConfig {
    /// A configuration with the default timeouts (30 s, connect 10 s).
    pub fn new(
        endpoint: impl Into<String>,
        project_id: impl Into<String>,
        credentials: Credentials,
    ) -> Self {
        Self {
            endpoint: endpoint.into(),
            project_id: project_id.into(),
            credentials,
            provider: None,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// The public VPC endpoint of a region.
    pub fn default_endpoint(region: &str) -> String {
        format!("https://vpc.{region}.myhuaweicloud.com")
    }

    /// The same configuration signing with the credentials of `provider`, asked before each
    /// attempt (the fixed `credentials` are then unused).
    pub fn with_provider(mut self, provider: CredentialProvider) -> Self {
        self.provider = Some(provider);
        self
    }

    /// The same configuration with other timeouts.
    pub fn with_timeouts(mut self, timeout: Duration, connect_timeout: Duration) -> Self {
        self.timeout = timeout;
        self.connect_timeout = connect_timeout;
        self
    }
}

struct Inner {
    http: reqwest::Client,
    /// `scheme://authority` of the endpoint.
    origin: String,
    /// The `Host` header value that is signed (host, plus the port when not the scheme's default).
    host: String,
    /// `{endpoint path}/v3/{project}/vpc`, encoded, without trailing `/`.
    base_path: String,
    project_id: String,
    credentials: CredentialProvider,
}

/// Client of the VPC v3 traffic-mirror API for one project. Cheap to clone (shared connection
/// pool).
#[derive(Clone)]
pub struct VpcClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for VpcClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VpcClient")
            .field("endpoint", &self.inner.origin)
            .field("project_id", &self.inner.project_id)
            .field("credentials", &self.inner.credentials)
            .finish()
    }
}

fn header_safe(what: &str, v: &str) -> Result<(), CloudError> {
    if v.is_empty() {
        return Err(CloudError::InvalidConfig(format!("{what} is empty")));
    }
    if !v.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(CloudError::InvalidConfig(format!(
            "{what} must be printable ASCII without spaces"
        )));
    }
    Ok(())
}

/// Refuses fixed credentials that cannot be signed with or sent (empty, or not a header value).
fn check_credentials(c: &Credentials) -> Result<(), CloudError> {
    header_safe("access key", &c.access_key)?;
    if c.secret_key.is_empty() {
        return Err(CloudError::InvalidConfig("secret key is empty".into()));
    }
    if let Some(t) = c.security_token.as_deref()
        && !t.is_empty()
    {
        header_safe("security token", t)?;
    }
    Ok(())
}

pub(super) fn check_id(kind: &str, id: &str) -> Result<String, CloudError> {
    if id.is_empty() || id == "." || id == ".." {
        return Err(CloudError::InvalidRequest(format!(
            "invalid {kind} id {id:?}"
        )));
    }
    Ok(encode(id.as_bytes()))
}

/// Encode `key=value` pairs as a query string (unreserved characters kept, everything else
/// percent-encoded with upper-case hex, spaces as `%20`), already in canonical encoding.
pub fn encode_query(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k.as_bytes()), encode(v.as_bytes())))
        .collect::<Vec<_>>()
        .join("&")
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

/// Classify a transport failure: timeouts apart, anything that kept a complete answer from
/// arriving (refused, reset, closed before the answer) is a connection failure.
fn transport_error(e: reqwest::Error) -> CloudError {
    let message = error_chain(&e);
    if e.is_timeout() {
        CloudError::Timeout { message }
    } else if e.is_builder() {
        CloudError::InvalidRequest(message)
    } else {
        CloudError::Connect { message }
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn header_request_id(headers: &HeaderMap) -> Option<String> {
    header_str(headers, "x-request-id")
        .or_else(|| header_str(headers, "x-openstack-request-id"))
        .map(str::to_owned)
}

/// A short readable summary of a non-JSON error body: an HTML page's `<title>`, else its first
/// 200 characters with whitespace collapsed.
fn body_summary(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let lower = text.to_ascii_lowercase();
    if let (Some(start), Some(end)) = (lower.find("<title>"), lower.find("</title>"))
        && start + 7 <= end
    {
        // `to_ascii_lowercase` keeps byte offsets, so they index `text` as well
        if let Some(title) = text.get(start + 7..end) {
            let t = title.split_whitespace().collect::<Vec<_>>().join(" ");
            if !t.is_empty() {
                return t;
            }
        }
    }
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut s: String = collapsed.chars().take(200).collect();
    if collapsed.chars().count() > 200 {
        s.push('…');
    }
    s
}

/// The error for a non-2xx answer, at time `now` (for a `Retry-After` date).
pub fn api_error_at(status: u16, headers: &HeaderMap, body: &[u8], now: SystemTime) -> CloudError {
    let parsed = ErrorBody::parse(body);
    let (error_code, mut error_msg, body_rid) = match parsed {
        Some(e) => (e.error_code, e.error_msg, Some(e.request_id)),
        None => (String::new(), body_summary(body), None),
    };
    if error_msg.is_empty() {
        error_msg = reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("")
            .to_string();
    }
    let request_id = body_rid
        .filter(|r| !r.is_empty())
        .or_else(|| header_request_id(headers));
    let retry_after = header_str(headers, "retry-after").and_then(|v| parse_retry_after(v, now));
    CloudError::Api {
        status,
        error_code,
        error_msg,
        request_id,
        retry_after,
    }
}

/// Turn an answer into `T`: a 2xx body decoded as JSON (else [`CloudError::Decode`]), any other
/// status into [`CloudError::Api`]. Pure (apart from reading the clock for a `Retry-After` date),
/// never panics, whatever the bytes.
pub fn decode_response<T: DeserializeOwned>(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, CloudError> {
    decode_empty(status, headers, body)?;
    serde_json::from_slice(body).map_err(|e| CloudError::Decode {
        status,
        message: e.to_string(),
        request_id: header_request_id(headers),
    })
}

/// Turn an answer without a meaningful body (a delete's 204) into `()`, or an error as
/// [`decode_response`] does.
pub fn decode_empty(status: u16, headers: &HeaderMap, body: &[u8]) -> Result<(), CloudError> {
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(api_error_at(status, headers, body, SystemTime::now()))
    }
}

/// One page of a list answer.
pub trait ListPage: DeserializeOwned + Send + 'static {
    /// The listed object.
    type Item: Send + 'static;
    /// The items and the pagination info.
    fn into_parts(self) -> (Vec<Self::Item>, PageInfo);
}

impl ListPage for SessionListResponse {
    type Item = TrafficMirrorSession;
    fn into_parts(self) -> (Vec<Self::Item>, PageInfo) {
        (self.traffic_mirror_sessions, self.page_info)
    }
}

impl ListPage for FilterListResponse {
    type Item = TrafficMirrorFilter;
    fn into_parts(self) -> (Vec<Self::Item>, PageInfo) {
        (self.traffic_mirror_filters, self.page_info)
    }
}

impl ListPage for RuleListResponse {
    type Item = TrafficMirrorFilterRule;
    fn into_parts(self) -> (Vec<Self::Item>, PageInfo) {
        (self.traffic_mirror_filter_rules, self.page_info)
    }
}

/// The signed headers as a `HeaderMap`; a header the signer produced that HTTP cannot carry is a
/// configuration error (for example a project id with a line break), never a panic.
fn header_map(headers: &[(String, String)]) -> Result<HeaderMap, CloudError> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| CloudError::InvalidConfig(format!("header name {name}: {e}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| CloudError::InvalidConfig(format!("header {name} is not valid")))?;
        map.insert(name, value);
    }
    Ok(map)
}

/// The marker of the page after one that was asked for with `sent` (pure, shared by every caller
/// that pages): `None` when the page was empty or carried no `next_marker`; an error when the cloud
/// hands back the marker it was sent, which would page forever.
pub fn next_marker(
    collection: &str,
    sent: Option<&str>,
    empty: bool,
    info: PageInfo,
) -> Result<Option<String>, CloudError> {
    match info.next_marker.filter(|m| !m.is_empty()) {
        Some(m) if !empty => {
            if sent == Some(m.as_str()) {
                Err(CloudError::Decode {
                    status: 200,
                    message: format!(
                        "pagination of {collection} does not advance (next_marker {m:?} \
                         repeats the marker sent)"
                    ),
                    request_id: None,
                })
            } else {
                Ok(Some(m))
            }
        }
        _ => Ok(None),
    }
}

impl VpcClient {
    /// Build a client; fails on an unusable endpoint, project id or credentials.
    pub fn new(cfg: ClientConfig) -> Result<Self, CloudError> {
        let endpoint = cfg.endpoint.trim().trim_end_matches('/');
        let url = Url::parse(endpoint)
            .map_err(|e| CloudError::InvalidConfig(format!("endpoint {endpoint:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(CloudError::InvalidConfig(format!(
                "endpoint {endpoint:?}: scheme must be http or https"
            )));
        }
        let host_str = url.host_str().ok_or_else(|| {
            CloudError::InvalidConfig(format!("endpoint {endpoint:?} has no host"))
        })?;
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            return Err(CloudError::InvalidConfig(format!(
                "endpoint {endpoint:?} must not carry a query, fragment or user info"
            )));
        }
        let host = match url.port() {
            Some(p) => format!("{host_str}:{p}"),
            None => host_str.to_string(),
        };
        let origin = format!("{}://{host}", url.scheme());
        header_safe("project id", &cfg.project_id)?;
        let credentials = match cfg.provider {
            Some(p) => p,
            None => {
                check_credentials(&cfg.credentials)?;
                CredentialProvider::Static(Arc::new(cfg.credentials))
            }
        };
        let base_path = format!(
            "{}/v3/{}/vpc",
            url.path().trim_end_matches('/'),
            encode(cfg.project_id.as_bytes())
        );
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| CloudError::InvalidConfig(error_chain(&e)))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                origin,
                host,
                base_path,
                project_id: cfg.project_id,
                credentials,
            }),
        })
    }

    /// Where this client's credentials come from (shared by its clones).
    pub fn credentials(&self) -> &CredentialProvider {
        &self.inner.credentials
    }

    /// The project this client acts in.
    pub fn project_id(&self) -> &str {
        &self.inner.project_id
    }

    /// The root of every request (`scheme://host[:port]{path}/v3/{project}/vpc`): it names the cloud
    /// account, so two clients with the same root see the same cloud objects.
    pub fn api_root(&self) -> String {
        format!("{}{}", self.inner.origin, self.inner.base_path)
    }

    /// Send one signed request to `{base}/{resource}` and return the raw answer.
    async fn send(
        &self,
        method: Method,
        resource: &str,
        query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, HeaderMap, Vec<u8>), CloudError> {
        self.send_under(&self.inner.base_path, method, resource, query, body)
            .await
    }

    /// `/v3/{project}` (the base path without `/vpc`): ports live there, not under `/vpc`.
    fn project_path(&self) -> &str {
        let base = self.inner.base_path.as_str();
        base.strip_suffix("/vpc").unwrap_or(base)
    }

    /// A signed call to `/v3/{project}/{resource}` decoded as `T` (the port API).
    pub(super) async fn call_in_project<T: DeserializeOwned>(
        &self,
        method: Method,
        resource: &str,
        query: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, CloudError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| CloudError::InvalidRequest(format!("cannot encode body: {e}")))?;
        let (status, headers, bytes) = self
            .send_under(self.project_path(), method, resource, query, body)
            .await?;
        decode_response(status, &headers, &bytes)
    }

    /// Send one signed request to `{origin}{under}/{resource}` and return the raw answer. A 401 to
    /// temporary credentials refreshes them once and sends once more, signed afresh.
    async fn send_under(
        &self,
        under: &str,
        method: Method,
        resource: &str,
        query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, HeaderMap, Vec<u8>), CloudError> {
        let inner = &self.inner;
        let mut raw = format!("{}{}/{}", inner.origin, under, resource);
        if !query.is_empty() {
            raw.push('?');
            raw.push_str(query);
        }
        let url = Url::parse(&raw)
            .map_err(|e| CloudError::InvalidRequest(format!("cannot build URL: {e}")))?;
        let body = body.unwrap_or_default();
        let creds = inner.credentials.current().await?;
        let answer = self.attempt(&method, &url, &body, &creds).await?;
        if !refresh_on(answer.0, inner.credentials.is_refreshable()) {
            return Ok(answer);
        }
        tracing::debug!(%method, path = url.path(), "temporary credentials refused (401): refreshing once");
        inner.credentials.invalidate(&creds);
        let fresh = inner.credentials.current().await?;
        self.attempt(&method, &url, &body, &fresh).await
    }

    /// One attempt: sign with `creds` at the current time and send.
    async fn attempt(
        &self,
        method: &Method,
        url: &Url,
        body: &[u8],
        creds: &Credentials,
    ) -> Result<(u16, HeaderMap, Vec<u8>), CloudError> {
        let inner = &self.inner;
        let mut headers = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            ("Host".to_string(), inner.host.clone()),
            ("User-Agent".to_string(), USER_AGENT.to_string()),
            (HEADER_PROJECT_ID.to_string(), inner.project_id.clone()),
        ];
        Signer::sign_with(
            creds,
            method.as_str(),
            url.path(),
            url.query().unwrap_or(""),
            &mut headers,
            body,
            chrono::Utc::now(),
        );
        let map = header_map(&headers)?;
        let started = Instant::now();
        let path = url.path().to_string();
        let mut req = inner.http.request(method.clone(), url.clone()).headers(map);
        if !body.is_empty() {
            req = req.body(body.to_vec());
        }
        let result = async {
            let resp = req.send().await.map_err(transport_error)?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let bytes = resp.bytes().await.map_err(transport_error)?;
            Ok::<_, CloudError>((status, headers, bytes.to_vec()))
        }
        .await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok((status, headers, _)) => tracing::debug!(
                %method, path, status, elapsed_ms,
                request_id = header_request_id(headers).unwrap_or_default(),
                "cloud call"
            ),
            Err(e) => tracing::debug!(%method, path, elapsed_ms, error = %e, "cloud call failed"),
        }
        result
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        resource: &str,
        query: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, CloudError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| CloudError::InvalidRequest(format!("cannot encode body: {e}")))?;
        let (status, headers, bytes) = self.send(method, resource, query, body).await?;
        decode_response(status, &headers, &bytes)
    }

    async fn delete(&self, resource: &str) -> Result<(), CloudError> {
        let (status, headers, bytes) = self.send(Method::DELETE, resource, "", None).await?;
        decode_empty(status, &headers, &bytes)
    }

    async fn list_page<R: ListPage>(
        &self,
        collection: &str,
        q: &impl ListQuery,
    ) -> Result<R, CloudError> {
        let query = encode_query(&q.pairs());
        self.call(Method::GET, collection, &query, None::<&()>)
            .await
    }

    /// Follow `page_info.next_marker` from `q` until a page has no `next_marker` or no items.
    fn paginate<Q: ListQuery, R: ListPage>(
        &self,
        collection: &'static str,
        q: Q,
    ) -> impl Stream<Item = Result<R::Item, CloudError>> + Send + '_ {
        stream::unfold(Some(q), move |state| async move {
            let mut q = state?;
            let page: R = match self.list_page(collection, &q).await {
                Ok(p) => p,
                Err(e) => return Some((vec![Err(e)], None)),
            };
            let (items, info) = page.into_parts();
            let next = next_marker(collection, q.marker(), items.is_empty(), info);
            let mut out: Vec<Result<R::Item, CloudError>> = items.into_iter().map(Ok).collect();
            let next = match next {
                Ok(Some(m)) => {
                    q.set_marker(Some(m));
                    Some(q)
                }
                Ok(None) => None,
                Err(e) => {
                    out.push(Err(e));
                    None
                }
            };
            Some((out, next))
        })
        .flat_map(stream::iter)
    }

    // ----- sessions -----

    /// `POST /traffic-mirror-sessions`.
    pub async fn create_session(
        &self,
        req: &CreateSessionRequest,
    ) -> Result<TrafficMirrorSession, CloudError> {
        let body = SessionEnvelope {
            traffic_mirror_session: req,
        };
        let r: SessionResponse = self.call(Method::POST, SESSIONS, "", Some(&body)).await?;
        Ok(r.traffic_mirror_session)
    }

    /// `GET /traffic-mirror-sessions/{id}`.
    pub async fn show_session(&self, id: &str) -> Result<TrafficMirrorSession, CloudError> {
        let path = format!("{SESSIONS}/{}", check_id("session", id)?);
        let r: SessionResponse = self.call(Method::GET, &path, "", None::<&()>).await?;
        Ok(r.traffic_mirror_session)
    }

    /// One page of `GET /traffic-mirror-sessions` (the raw answer, with `page_info`).
    pub async fn list_sessions_page(
        &self,
        q: &ListSessionsQuery,
    ) -> Result<SessionListResponse, CloudError> {
        self.list_page(SESSIONS, q).await
    }

    /// All sessions matching `q`, page after page (starting at `q.marker`).
    pub fn list_sessions(
        &self,
        q: ListSessionsQuery,
    ) -> impl Stream<Item = Result<TrafficMirrorSession, CloudError>> + Send + '_ {
        self.paginate::<_, SessionListResponse>(SESSIONS, q)
    }

    /// [`Self::list_sessions`] collected; the first error ends it.
    pub async fn list_all_sessions(
        &self,
        q: ListSessionsQuery,
    ) -> Result<Vec<TrafficMirrorSession>, CloudError> {
        self.list_sessions(q).try_collect().await
    }

    /// `PUT /traffic-mirror-sessions/{id}`: changes only the `Some` fields.
    pub async fn update_session(
        &self,
        id: &str,
        req: &UpdateSessionRequest,
    ) -> Result<TrafficMirrorSession, CloudError> {
        let path = format!("{SESSIONS}/{}", check_id("session", id)?);
        let body = SessionEnvelope {
            traffic_mirror_session: req,
        };
        let r: SessionResponse = self.call(Method::PUT, &path, "", Some(&body)).await?;
        Ok(r.traffic_mirror_session)
    }

    /// `DELETE /traffic-mirror-sessions/{id}` (404 when already gone: see
    /// [`CloudError::is_not_found`]).
    pub async fn delete_session(&self, id: &str) -> Result<(), CloudError> {
        self.delete(&format!("{SESSIONS}/{}", check_id("session", id)?))
            .await
    }

    async fn change_sources(
        &self,
        id: &str,
        action: &str,
        sources: &[String],
    ) -> Result<TrafficMirrorSession, CloudError> {
        let path = format!("{SESSIONS}/{}/{action}", check_id("session", id)?);
        let body = SessionEnvelope {
            traffic_mirror_session: SessionSourcesRequest {
                traffic_mirror_sources: sources.to_vec(),
            },
        };
        let r: SessionResponse = self.call(Method::PUT, &path, "", Some(&body)).await?;
        Ok(r.traffic_mirror_session)
    }

    /// `PUT /traffic-mirror-sessions/{id}/add-sources`.
    pub async fn add_sources(
        &self,
        id: &str,
        sources: &[String],
    ) -> Result<TrafficMirrorSession, CloudError> {
        self.change_sources(id, "add-sources", sources).await
    }

    /// `PUT /traffic-mirror-sessions/{id}/remove-sources`.
    pub async fn remove_sources(
        &self,
        id: &str,
        sources: &[String],
    ) -> Result<TrafficMirrorSession, CloudError> {
        self.change_sources(id, "remove-sources", sources).await
    }

    // ----- filters -----

    /// `POST /traffic-mirror-filters`.
    pub async fn create_filter(
        &self,
        req: &CreateFilterRequest,
    ) -> Result<TrafficMirrorFilter, CloudError> {
        let body = FilterEnvelope {
            traffic_mirror_filter: req,
        };
        let r: FilterResponse = self.call(Method::POST, FILTERS, "", Some(&body)).await?;
        Ok(r.traffic_mirror_filter)
    }

    /// `GET /traffic-mirror-filters/{id}`.
    pub async fn show_filter(&self, id: &str) -> Result<TrafficMirrorFilter, CloudError> {
        let path = format!("{FILTERS}/{}", check_id("filter", id)?);
        let r: FilterResponse = self.call(Method::GET, &path, "", None::<&()>).await?;
        Ok(r.traffic_mirror_filter)
    }

    /// One page of `GET /traffic-mirror-filters` (the raw answer, with `page_info`).
    pub async fn list_filters_page(
        &self,
        q: &ListFiltersQuery,
    ) -> Result<FilterListResponse, CloudError> {
        self.list_page(FILTERS, q).await
    }

    /// All filters matching `q`, page after page.
    pub fn list_filters(
        &self,
        q: ListFiltersQuery,
    ) -> impl Stream<Item = Result<TrafficMirrorFilter, CloudError>> + Send + '_ {
        self.paginate::<_, FilterListResponse>(FILTERS, q)
    }

    /// [`Self::list_filters`] collected.
    pub async fn list_all_filters(
        &self,
        q: ListFiltersQuery,
    ) -> Result<Vec<TrafficMirrorFilter>, CloudError> {
        self.list_filters(q).try_collect().await
    }

    /// `PUT /traffic-mirror-filters/{id}`.
    pub async fn update_filter(
        &self,
        id: &str,
        req: &UpdateFilterRequest,
    ) -> Result<TrafficMirrorFilter, CloudError> {
        let path = format!("{FILTERS}/{}", check_id("filter", id)?);
        let body = FilterEnvelope {
            traffic_mirror_filter: req,
        };
        let r: FilterResponse = self.call(Method::PUT, &path, "", Some(&body)).await?;
        Ok(r.traffic_mirror_filter)
    }

    /// `DELETE /traffic-mirror-filters/{id}`.
    pub async fn delete_filter(&self, id: &str) -> Result<(), CloudError> {
        self.delete(&format!("{FILTERS}/{}", check_id("filter", id)?))
            .await
    }

    // ----- filter rules -----

    /// `POST /traffic-mirror-filter-rules`.
    pub async fn create_rule(
        &self,
        req: &CreateRuleRequest,
    ) -> Result<TrafficMirrorFilterRule, CloudError> {
        let body = RuleEnvelope {
            traffic_mirror_filter_rule: req,
        };
        let r: RuleResponse = self.call(Method::POST, RULES, "", Some(&body)).await?;
        Ok(r.traffic_mirror_filter_rule)
    }

    /// `POST /traffic-mirror-filters/{filter_id}/traffic-mirror-filter-rules/batch-create`
    /// (`BatchCreateTrafficMirrorFilterRules`): every rule in one call, all or nothing; the
    /// answer lists the created rules in the order sent. A gateway without this API answers 404
    /// (`APIGW.0101`): the caller falls back to [`Client::create_rule`].
    pub async fn batch_create_rules(
        &self,
        filter_id: &str,
        reqs: &[CreateRuleRequest],
    ) -> Result<Vec<TrafficMirrorFilterRule>, CloudError> {
        let path = format!(
            "{FILTERS}/{}/{RULES}/batch-create",
            check_id("filter", filter_id)?
        );
        let items: Vec<serde_json::Value> = reqs.iter().map(models::batch_rule_item).collect();
        let body = models::BatchRulesEnvelope {
            traffic_mirror_filter_rules: items,
        };
        let r: models::BatchRulesEnvelope<TrafficMirrorFilterRule> =
            self.call(Method::POST, &path, "", Some(&body)).await?;
        Ok(r.traffic_mirror_filter_rules)
    }

    /// `GET /traffic-mirror-filter-rules/{id}`.
    pub async fn show_rule(&self, id: &str) -> Result<TrafficMirrorFilterRule, CloudError> {
        let path = format!("{RULES}/{}", check_id("rule", id)?);
        let r: RuleResponse = self.call(Method::GET, &path, "", None::<&()>).await?;
        Ok(r.traffic_mirror_filter_rule)
    }

    /// All rules matching `q`, page after page.
    pub fn list_rules(
        &self,
        q: ListRulesQuery,
    ) -> impl Stream<Item = Result<TrafficMirrorFilterRule, CloudError>> + Send + '_ {
        self.paginate::<_, RuleListResponse>(RULES, q)
    }

    /// [`Self::list_rules`] collected.
    pub async fn list_all_rules(
        &self,
        q: ListRulesQuery,
    ) -> Result<Vec<TrafficMirrorFilterRule>, CloudError> {
        self.list_rules(q).try_collect().await
    }

    /// `PUT /traffic-mirror-filter-rules/{id}`.
    pub async fn update_rule(
        &self,
        id: &str,
        req: &UpdateRuleRequest,
    ) -> Result<TrafficMirrorFilterRule, CloudError> {
        let path = format!("{RULES}/{}", check_id("rule", id)?);
        let body = RuleEnvelope {
            traffic_mirror_filter_rule: req,
        };
        let r: RuleResponse = self.call(Method::PUT, &path, "", Some(&body)).await?;
        Ok(r.traffic_mirror_filter_rule)
    }

    /// `DELETE /traffic-mirror-filter-rules/{id}`.
    pub async fn delete_rule(&self, id: &str) -> Result<(), CloudError> {
        self.delete(&format!("{RULES}/{}", check_id("rule", id)?))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::models::TrafficMirrorSession;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn creds() -> Credentials {
        Credentials::new("AK", "SK")
    }

    #[test]
    fn config_defaults_and_validation() {
        assert_eq!(
            ClientConfig::default_endpoint("cn-north-4"),
            "https://vpc.cn-north-4.myhuaweicloud.com"
        );
        let c = ClientConfig::new("http://127.0.0.1:8080/", "p", creds());
        assert_eq!(c.timeout, Duration::from_secs(30));
        let client = VpcClient::new(c).unwrap();
        assert_eq!(client.inner.host, "127.0.0.1:8080");
        assert_eq!(client.inner.origin, "http://127.0.0.1:8080");
        assert_eq!(client.inner.base_path, "/v3/p/vpc");
        let client = VpcClient::new(ClientConfig::new(
            "https://vpc.example.com:443/gw",
            "p",
            creds(),
        ))
        .unwrap();
        assert_eq!(client.inner.host, "vpc.example.com");
        assert_eq!(client.inner.base_path, "/gw/v3/p/vpc");
        let client = VpcClient::new(ClientConfig::new("http://[::1]:9/", "p", creds())).unwrap();
        assert_eq!(client.inner.host, "[::1]:9");
        for (endpoint, project, c) in [
            ("not a url", "p", creds()),
            ("ftp://x", "p", creds()),
            ("http://x?q=1", "p", creds()),
            ("http://x", "", creds()),
            ("http://x", "p q", creds()),
            ("http://x", "p", Credentials::new("", "SK")),
            ("http://x", "p", Credentials::new("AK", "")),
        ] {
            let e = VpcClient::new(ClientConfig::new(endpoint, project, c)).unwrap_err();
            assert!(
                matches!(e, CloudError::InvalidConfig(_)),
                "{endpoint} {project}: {e}"
            );
            assert!(!e.is_retryable());
        }
    }

    #[test]
    fn client_debug_has_no_secret() {
        let c = Credentials {
            access_key: "AKIDEXAMPLE".into(),
            secret_key: "TOPSECRET".into(),
            security_token: Some("TOKENVALUE".into()),
        };
        let cfg = ClientConfig::new("http://h", "p", c);
        let d = format!("{cfg:?} {:?}", VpcClient::new(cfg.clone()).unwrap());
        assert!(
            !d.contains("TOPSECRET") && !d.contains("TOKENVALUE") && !d.contains("EXAMPLE"),
            "{d}"
        );
    }

    #[test]
    fn query_and_ids_are_encoded() {
        let q = ListSessionsQuery {
            name: Some("web tap/镜像".into()),
            priority: Some(10),
            limit: Some(50),
            marker: Some("16538eda-7e94-4b90-b5f3-a653f62dc817".into()),
            ..Default::default()
        };
        let s = encode_query(&q.pairs());
        assert_eq!(
            s,
            "name=web%20tap%2F%E9%95%9C%E5%83%8F&priority=10&limit=50&\
             marker=16538eda-7e94-4b90-b5f3-a653f62dc817"
        );
        // same canonical query as the SDK's recorded list request
        assert_eq!(
            crate::cloud::signer::canonical_query(&s),
            "limit=50&marker=16538eda-7e94-4b90-b5f3-a653f62dc817&\
             name=web%20tap%2F%E9%95%9C%E5%83%8F&priority=10"
        );
        assert_eq!(encode_query(&[]), "");
        assert_eq!(check_id("session", "a/b").unwrap(), "a%2Fb");
        for bad in ["", ".", ".."] {
            assert!(matches!(
                check_id("session", bad),
                Err(CloudError::InvalidRequest(_))
            ));
        }
    }

    #[test]
    fn decodes_success() {
        let body =
            br#"{"traffic_mirror_session": {"id": "s1", "enabled": true}, "request_id": "r"}"#;
        let r: SessionResponse = decode_response(200, &HeaderMap::new(), body).unwrap();
        assert_eq!(r.traffic_mirror_session.id, "s1");
        assert!(decode_empty(204, &HeaderMap::new(), b"").is_ok());
    }

    #[test]
    fn decodes_huawei_errors() {
        let h = headers(&[("x-request-id", "hdr-rid")]);
        let e = decode_response::<SessionResponse>(
            404,
            &h,
            br#"{"request_id":"body-rid","error_code":"VPC.0101","error_msg":"session not found"}"#,
        )
        .unwrap_err();
        assert_eq!(
            e,
            CloudError::Api {
                status: 404,
                error_code: "VPC.0101".into(),
                error_msg: "session not found".into(),
                request_id: Some("body-rid".into()),
                retry_after: None,
            }
        );
        assert!(e.is_not_found() && !e.is_retryable());
        // request id falls back to the header
        let e =
            decode_empty(400, &h, br#"{"error_code":"VPC.0002","error_msg":"bad"}"#).unwrap_err();
        assert_eq!(e.request_id(), Some("hdr-rid"));
        assert_eq!(e.error_code(), Some("VPC.0002"));
        // throttling with Retry-After
        let h = headers(&[("retry-after", "7")]);
        let e = decode_empty(
            429,
            &h,
            br#"{"error_code":"APIGW.0308","error_msg":"The throttling threshold has been reached"}"#,
        )
        .unwrap_err();
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(e.reason(), "APIGW_0308");
    }

    #[test]
    fn decodes_odd_bodies() {
        let html =
            b"<html>\n<head><title>502 Bad Gateway</title></head>\n<body>nginx</body></html>";
        let e = decode_empty(502, &headers(&[("x-request-id", "r")]), html).unwrap_err();
        assert_eq!(
            e,
            CloudError::Api {
                status: 502,
                error_code: String::new(),
                error_msg: "502 Bad Gateway".into(),
                request_id: Some("r".into()),
                retry_after: None,
            }
        );
        assert!(e.is_retryable());
        assert_eq!(e.reason(), "ServerError");
        let e = decode_empty(503, &HeaderMap::new(), b"").unwrap_err();
        assert_eq!(
            e.to_string(),
            "cloud API answered HTTP 503: Service Unavailable"
        );
        let e =
            decode_empty(400, &HeaderMap::new(), "plain   text\n error".as_bytes()).unwrap_err();
        assert!(
            matches!(e, CloudError::Api { ref error_msg, .. } if error_msg == "plain text error")
        );
        let long = "x".repeat(500);
        let CloudError::Api { error_msg, .. } =
            decode_empty(500, &HeaderMap::new(), long.as_bytes()).unwrap_err()
        else {
            panic!()
        };
        assert_eq!(error_msg.chars().count(), 201);
        // a 2xx that is not the documented answer is a Decode error
        for body in [
            &b""[..],
            b"<html></html>",
            b"{}",
            b"{\"traffic_mirror_session\": 5}",
        ] {
            let e = decode_response::<SessionResponse>(200, &HeaderMap::new(), body).unwrap_err();
            assert!(matches!(e, CloudError::Decode { status: 200, .. }), "{e}");
            assert!(e.is_retryable());
        }
    }

    #[test]
    fn user_agent_names_the_operator_and_version() {
        assert_eq!(
            USER_AGENT,
            format!("traffic-mirror-operator/{}", env!("CARGO_PKG_VERSION"))
        );
    }

    /// A tiny local server answering list pages by marker, verifying each request's signature with
    /// the signer's own verifier functions.
    async fn page_server() -> (String, tokio::task::JoinHandle<()>) {
        use crate::cloud::signer::{
            canonical_request, parse_authorization, string_to_sign, verify_signature,
        };
        use axum::extract::{OriginalUri, Query};
        use std::collections::HashMap;

        async fn handler(
            method: Method,
            OriginalUri(uri): OriginalUri,
            headers: HeaderMap,
            Query(q): Query<HashMap<String, String>>,
        ) -> (reqwest::StatusCode, String) {
            let pairs: Vec<(String, String)> = headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect();
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_authorization(v).ok());
            let Some(auth) = auth else {
                return (reqwest::StatusCode::UNAUTHORIZED, String::new());
            };
            let date = headers
                .get("x-sdk-date")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let creq = canonical_request(
                method.as_str(),
                uri.path(),
                uri.query().unwrap_or(""),
                &pairs,
                &auth.signed_headers,
                b"",
            );
            if auth.signed_headers.join(";")
                != "content-type;host;user-agent;x-project-id;x-sdk-date"
                || !verify_signature("SK", &string_to_sign(date, &creq), &auth.signature)
            {
                return (
                    reqwest::StatusCode::UNAUTHORIZED,
                    auth.signed_headers.join(";"),
                );
            }
            let ids = |ids: &[&str]| -> Vec<serde_json::Value> {
                ids.iter().map(|i| serde_json::json!({"id": i})).collect()
            };
            let (items, next) = match (
                q.get("name").map(String::as_str),
                q.get("marker").map(String::as_str),
            ) {
                (Some("loop"), m) => (ids(&["x"]), Some(m.unwrap_or("x").to_string())),
                (_, None) => (ids(&["a", "b"]), Some("b".to_string())),
                (_, Some("b")) => (ids(&["c"]), Some("c".to_string())),
                (_, Some("c")) => (ids(&[]), Some("zzz".to_string())),
                (_, Some(_)) => (ids(&["late"]), None),
            };
            let mut page = serde_json::json!({"current_count": items.len()});
            if let Some(n) = next {
                page["next_marker"] = n.into();
            }
            let body = serde_json::json!({
                "traffic_mirror_sessions": items, "page_info": page, "request_id": "r"
            });
            (reqwest::StatusCode::OK, body.to_string())
        }

        let app = axum::Router::new().route(
            "/v3/p/vpc/traffic-mirror-sessions",
            axum::routing::get(handler),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}"), task)
    }

    #[tokio::test]
    async fn pagination_follows_markers_and_stops() {
        let (url, task) = page_server().await;
        let c = VpcClient::new(ClientConfig::new(url, "p", creds())).unwrap();
        let ids = |v: Vec<TrafficMirrorSession>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
        // stops on the empty page even though it carries a next_marker
        let all = c
            .list_all_sessions(ListSessionsQuery::default())
            .await
            .unwrap();
        assert_eq!(ids(all), ["a", "b", "c"]);
        // starts at the given marker; stops when next_marker is absent
        let from = c
            .list_all_sessions(ListSessionsQuery {
                marker: Some("q".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(ids(from), ["late"]);
        // a server repeating the marker ends the stream with an error, not a loop
        let looped: Vec<_> = c
            .list_sessions(ListSessionsQuery {
                name: Some("loop".into()),
                ..Default::default()
            })
            .collect()
            .await;
        assert_eq!(looped.len(), 3, "{looped:?}");
        assert!(looped[0].is_ok() && looped[1].is_ok());
        assert!(matches!(looped[2], Err(CloudError::Decode { .. })));
        // the stream is lazy: taking 2 items makes one request only
        let two: Vec<_> = c
            .list_sessions(ListSessionsQuery::default())
            .take(2)
            .collect()
            .await;
        assert_eq!(two.len(), 2);
        // a wrong secret is rejected by the verifier, and classified terminal
        let bad = VpcClient::new(ClientConfig::new(
            c.inner.origin.clone(),
            "p",
            Credentials::new("AK", "nope"),
        ))
        .unwrap();
        let e = bad
            .list_all_sessions(ListSessionsQuery::default())
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(401));
        assert!(!e.is_retryable());
        task.abort();
    }

    #[tokio::test]
    async fn connection_refused_is_retryable_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let c = VpcClient::new(ClientConfig::new(format!("http://{addr}"), "p", creds())).unwrap();
        let e = c.show_session("x").await.unwrap_err();
        assert!(matches!(e, CloudError::Connect { .. }), "{e:?}");
        assert!(e.is_retryable());
        let e = c.show_session("").await.unwrap_err();
        assert!(matches!(e, CloudError::InvalidRequest(_)), "{e:?}");
    }
}
