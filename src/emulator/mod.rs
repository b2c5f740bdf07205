//! A faithful emulator of Huawei Cloud's VPC v3 traffic-mirror API (sessions, filters, filter
//! rules) and of its port reads, with AK/SK signature verification, optional persistence, the
//! API gateway's throttling and latency (off by default), and an admin API for tests (call log,
//! injected faults, limits, reset, seeded ports). No operator code: it only knows the cloud API.
//!
//! Run it as the `hwc-vpc-emulator` binary, or in-process:
//!
//! ```no_run
//! # async fn demo() -> Result<(), traffic_mirror_operator::emulator::EmulatorError> {
//! use traffic_mirror_operator::emulator::{Emulator, EmulatorConfig};
//! let cfg = EmulatorConfig::new("127.0.0.1:0".parse().unwrap(), "project", vec![("AK".into(), "SK".into())]);
//! let emulator = Emulator::start(cfg).await?;
//! println!("{}", emulator.url()); // http://127.0.0.1:PORT
//! emulator.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Modules: [`server`] (router, pipeline, per-collection dispatch, connection loop), [`admin`]
//! (admin API routes), [`state`] (the shared [`AppState`]: verifier, store, call log, fault
//! queue, limits), [`limits`] (rate limit per project and latency), [`auth`] (signature
//! verification), [`store`] (persistence), [`records`] (the stored record types and [`Data`]),
//! [`sessions`], [`filters`], [`rules`] (the operations), [`ports`] (the port reads over ports
//! seeded through the admin API), [`identity`] (ECS metadata, IAM federation and assume-role,
//! temporary credentials), [`validate`] (field rules), [`list`]
//! (query filters, pagination), [`errors`] (the error-code table).
//!
//! Module dependencies (`A → B`: A uses B; unit tests included). The graph is acyclic, and the
//! three operation modules do not use one another:
//!
//! ```text
//! mod (this file) → server, state, store, auth, limits
//! server   → admin, state, store, records, sessions, filters, rules, ports, identity, auth,
//!            list, validate, errors, limits
//! admin    → state, records, ports, identity, errors, limits
//! state    → auth, store, identity, errors, limits
//! identity → errors            (jwt: the jsonwebtoken crate)
//! sessions → records, list, validate, errors
//! filters  → records, list, validate, errors
//! rules    → records, list, validate, errors
//! ports    → records, list, validate, errors
//! store    → records, errors
//! records  → errors
//! list     → validate, errors
//! auth     → errors            (and crate::cloud::signer)
//! validate → errors
//! errors   → (nothing)
//! limits   → (nothing)
//! ```

pub mod admin;
pub mod auth;
pub mod errors;
pub mod filters;
pub mod identity;
pub mod limits;
pub mod list;
pub mod ports;
pub mod records;
pub mod rules;
pub mod server;
pub mod sessions;
pub mod state;
pub mod store;
pub mod validate;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use errors::ApiError;
pub use limits::{Latency, Limits, LimitsConfig, RateLimit};
pub use records::{Data, Filter, Rule, Session};
pub use server::router;
pub use state::{AppState, CallLog, CallRecord, FaultSpec, Faults, PendingFault};

/// How to run an emulator.
#[derive(Clone)]
pub struct EmulatorConfig {
    /// Address to listen on (`127.0.0.1:0` picks a free port). The admin API is served only when
    /// this is a loopback address.
    pub listen: SocketAddr,
    /// The project id every credential owns; other project ids in a path get 403.
    pub project_id: String,
    /// Accepted `(access key, secret key)` pairs.
    pub credentials: Vec<(String, String)>,
    /// Where to persist sessions, filters and rules (written atomically after every mutation
    /// and loaded at start), or `None` for memory only.
    pub state_file: Option<PathBuf>,
    /// Throttling and latency at start (both off by default); changeable at run time through
    /// `PUT /_emulator/limits`, and restored by `POST /_emulator/reset`.
    pub limits: LimitsConfig,
    /// Refuse (400 `VPC.1005`) a session create or add-sources naming a port that was not seeded
    /// (`--check-ports`; off by default so setups without seeded ports keep working).
    pub check_ports: bool,
    /// `--max-sources-per-session`: the project's quota of sources per session (default
    /// [`sessions::DEFAULT_MAX_SOURCES`], the cloud's default quota; the cloud raises it on request).
    pub max_sources_per_session: usize,
    /// `--credential-lifetime`: the longest any issued temporary credential lives (`None`: as
    /// asked, e.g. `duration_seconds`).
    pub credential_lifetime: Option<std::time::Duration>,
}

impl std::fmt::Debug for EmulatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let aks: Vec<&str> = self.credentials.iter().map(|(ak, _)| ak.as_str()).collect();
        f.debug_struct("EmulatorConfig")
            .field("listen", &self.listen)
            .field("project_id", &self.project_id)
            .field("access_keys", &aks)
            .field("state_file", &self.state_file)
            .field("limits", &self.limits)
            .field("check_ports", &self.check_ports)
            .field("max_sources_per_session", &self.max_sources_per_session)
            .field("credential_lifetime", &self.credential_lifetime)
            .finish()
    }
}

impl EmulatorConfig {
    /// A memory-only configuration.
    pub fn new(
        listen: SocketAddr,
        project_id: impl Into<String>,
        credentials: Vec<(String, String)>,
    ) -> Self {
        Self {
            listen,
            project_id: project_id.into(),
            credentials,
            state_file: None,
            limits: LimitsConfig::default(),
            check_ports: false,
            max_sources_per_session: sessions::DEFAULT_MAX_SOURCES,
            credential_lifetime: None,
        }
    }

    /// The same configuration with these throttling and latency limits at start.
    pub fn with_limits(mut self, limits: LimitsConfig) -> Self {
        self.limits = limits;
        self
    }

    /// Build the shared state (loading the state file if there is one).
    pub fn state(&self) -> Result<Arc<AppState>, EmulatorError> {
        if self.project_id.is_empty() {
            return Err(EmulatorError::Config("project id must not be empty".into()));
        }
        if self.credentials.is_empty() {
            return Err(EmulatorError::Config(
                "at least one credential is needed".into(),
            ));
        }
        if self.max_sources_per_session == 0 {
            return Err(EmulatorError::Config(
                "max sources per session must be at least 1".into(),
            ));
        }
        if let Some((ak, _)) = self
            .credentials
            .iter()
            .find(|(ak, sk)| ak.is_empty() || sk.is_empty())
        {
            return Err(EmulatorError::Config(format!(
                "credential {ak:?}: access key and secret key must not be empty"
            )));
        }
        Ok(Arc::new(AppState {
            project_id: self.project_id.clone(),
            verifier: auth::Verifier::new(&self.credentials),
            store: store::Store::open(self.state_file.clone())?,
            calls: CallLog::default(),
            faults: Faults::default(),
            limits: Limits::new(self.limits),
            check_ports: self.check_ports,
            max_sources_per_session: self.max_sources_per_session,
            identity: identity::Identity::new(self.credential_lifetime),
            batch_rule_create: Default::default(),
        }))
    }
}

/// Why an emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The configuration is unusable.
    #[error("invalid emulator configuration: {0}")]
    Config(String),
    /// The state file could not be loaded.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Bind and prepare an emulator: returns the bound address and the future that serves until
/// `shutdown` resolves (then closes gracefully). The binary drives this future on its runtime.
pub async fn serve(
    cfg: EmulatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, impl Future<Output = ()> + Send + 'static), EmulatorError> {
    let state = cfg.state()?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| EmulatorError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| EmulatorError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let app = router(state, addr.ip().is_loopback());
    Ok((addr, server::serve_connections(listener, app, shutdown)))
}

/// A running in-process emulator; stops when [`Emulator::shutdown`] is called or it is dropped.
#[derive(Debug)]
pub struct Emulator {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Emulator {
    /// Bind and start serving on the current tokio runtime.
    pub async fn start(cfg: EmulatorConfig) -> Result<Self, EmulatorError> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr, serving) = serve(cfg, async move {
            // Either an explicit stop or the handle being dropped ends the server.
            let _ = stopped.await;
        })
        .await?;
        let task = tokio::spawn(serving);
        Ok(Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT`, the endpoint clients use.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop accepting, finish in-flight calls, and wait until the server has stopped.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
