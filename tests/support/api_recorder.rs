//! A recording reverse proxy in front of the test kube-apiserver: every request the operator makes
//! (method, path, query) is recorded before it is forwarded, so a test can count the operator's
//! API-server writes exactly. The operator reaches it through a kubeconfig whose server is the
//! proxy's plain-HTTP loopback address ([`ApiRecorder::kubeconfig_for`]); the proxy forwards over
//! HTTPS to the real API server with the caller's own credentials, streaming the answers (watches
//! included) back unchanged.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::Response;
use tokio::sync::oneshot;

use super::ControlPlane;

/// One request as the API server received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// `GET`, `PATCH`, ...
    pub method: String,
    /// The URL path (`/apis/vpc.hwcloud.dev/v1alpha1/namespaces/ns/trafficmirrorsessions/s/status`).
    pub path: String,
    /// The query string (empty when there is none).
    pub query: String,
}

impl Recorded {
    /// Whether the request can change the API server's state (anything but a read).
    pub fn is_write(&self) -> bool {
        !matches!(self.method.as_str(), "GET" | "HEAD" | "OPTIONS")
    }
}

/// Where the proxy forwards, and what it recorded.
struct Upstream {
    base: String,
    client: reqwest::Client,
    recorded: Arc<Mutex<Vec<Recorded>>>,
}

/// The proxy, serving on its own thread and runtime (so a test's blocking calls never stall the
/// operator's watches); stopped on drop.
pub struct ApiRecorder {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ApiRecorder {
    /// Starts a proxy to `cp`'s kube-apiserver.
    pub fn start(cp: &ControlPlane) -> ApiRecorder {
        let ca = std::fs::read(&cp.ca_cert)
            .unwrap_or_else(|e| panic!("read {}: {e}", cp.ca_cert.display()));
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("the API server CA")])
            .no_proxy()
            .build()
            .expect("the proxy's HTTPS client");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the recording proxy");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let url = format!("http://{}", listener.local_addr().expect("proxy address"));
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let upstream = Arc::new(Upstream {
            base: cp.server_url.trim_end_matches('/').to_string(),
            client,
            recorded: recorded.clone(),
        });
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::spawn(move || serve(listener, upstream, stopped));
        ApiRecorder {
            url,
            recorded,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Everything recorded since the last [`ApiRecorder::clear`].
    pub fn requests(&self) -> Vec<Recorded> {
        self.recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The writes recorded since the last [`ApiRecorder::clear`].
    pub fn writes(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(Recorded::is_write)
            .collect()
    }

    /// Forgets what was recorded, to measure from now on.
    pub fn clear(&self) {
        self.recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// A copy of the kubeconfig at `original` whose server is this proxy (its credentials kept,
    /// its CA dropped: the proxy speaks plain HTTP on loopback). Returns the copy's path.
    pub fn kubeconfig_for(&self, original: &Path) -> PathBuf {
        let text = std::fs::read_to_string(original)
            .unwrap_or_else(|e| panic!("read {}: {e}", original.display()));
        let mut kubeconfig: serde_yaml::Value =
            serde_yaml::from_str(&text).expect("kubeconfig yaml");
        let clusters = kubeconfig["clusters"]
            .as_sequence_mut()
            .expect("kubeconfig clusters");
        for cluster in clusters {
            let settings = cluster["cluster"]
                .as_mapping_mut()
                .expect("kubeconfig cluster");
            settings.remove("certificate-authority");
            settings.insert("server".into(), self.url.clone().into());
        }
        let path = original.with_extension(format!(
            "recorded-{}.kubeconfig",
            uuid::Uuid::new_v4().simple()
        ));
        let yaml = serde_yaml::to_string(&kubeconfig).expect("kubeconfig yaml");
        std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }
}

impl Drop for ApiRecorder {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves until `stopped` fires; dropping the runtime then ends open watches too.
fn serve(listener: TcpListener, upstream: Arc<Upstream>, stopped: oneshot::Receiver<()>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the proxy's runtime");
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::from_std(listener).expect("the proxy's tokio listener");
        let app = Router::new().fallback(forward).with_state(upstream);
        tokio::select! {
            result = axum::serve(listener, app) => {
                if let Err(e) = result {
                    eprintln!("the recording proxy stopped: {e}");
                }
            }
            _ = stopped => {}
        }
    });
}

/// Headers that belong to one connection, not to the request or answer.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "upgrade"
            | "te"
            | "trailer"
            | "host"
            | "content-length"
    )
}

/// Records the request, forwards it, and streams the answer back.
async fn forward(State(upstream): State<Arc<Upstream>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    upstream
        .recorded
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Recorded {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or_default().to_string(),
        });
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut outgoing = upstream
        .client
        .request(parts.method.clone(), format!("{}{target}", upstream.base));
    for (name, value) in parts.headers.iter().filter(|(n, _)| !hop_by_hop(n)) {
        outgoing = outgoing.header(name, value);
    }
    let result = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => outgoing.body(bytes).send().await.map_err(|e| e.to_string()),
        Err(e) => Err(format!("read the request body: {e}")),
    };
    match result {
        Ok(answer) => {
            let mut response = Response::builder().status(answer.status());
            for (name, value) in answer.headers().iter().filter(|(n, _)| !hop_by_hop(n)) {
                response = response.header(name, value);
            }
            response
                .body(Body::from_stream(answer.bytes_stream()))
                .unwrap_or_else(|e| bad_gateway(e.to_string()))
        }
        Err(e) => bad_gateway(e),
    }
}

fn bad_gateway(message: String) -> Response {
    let mut response = Response::new(Body::from(message));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}
