//! Reconcile errors, classified so the retry policy and the metrics can tell causes apart.

use crate::cloud::CloudError;

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed (conflicts included: they are retried).
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A VPC API call failed.
    #[error("cloud {operation}: {source}")]
    Cloud {
        /// Which call (e.g. `create_session`).
        operation: &'static str,
        /// The classified cloud error.
        #[source]
        source: CloudError,
    },
    /// The object cannot be reconciled as written (the message says what to change).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// Label for `tmo_reconcile_errors_total`.
    pub fn metric_label(&self) -> String {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "kube_conflict".into(),
            Error::Kube(_) => "kube".into(),
            Error::Cloud { source, .. } if source.is_retryable() => "cloud_retryable".into(),
            Error::Cloud { .. } => "cloud_terminal".into(),
            Error::Invalid(_) => "invalid".into(),
        }
    }

    /// Whether retrying (with backoff) can help without a spec change.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Kube(_) => true,
            Error::Cloud { source, .. } => source.is_retryable(),
            Error::Invalid(_) => false,
        }
    }

    /// The cloud's `Retry-After`, if any.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Error::Cloud { source, .. } => source.retry_after(),
            _ => None,
        }
    }
}

/// Shorthand result type of the controller.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wraps a cloud error with the operation that failed.
pub fn cloud(operation: &'static str) -> impl FnOnce(CloudError) -> Error {
    move |source| Error::Cloud { operation, source }
}
