//! Why a set's reconcile failed, by the step that failed, classified retryable or terminal.

use crate::cloud::CloudError;
use crate::controller::error::{cloud_cause, kube_cause};

/// Why a set's reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum SetError {
    /// `spec.sources.nodeSelector` cannot be parsed (a bad operator or values).
    #[error("spec.sources.nodeSelector is invalid: {0}")]
    InvalidSelector(String),
    /// The ProviderConfig the template names is missing or not ready: ports cannot be read.
    #[error(
        "ProviderConfig {0} is missing or not ready: the ports of the selected Nodes and tags cannot be read"
    )]
    ProviderNotReady(String),
    /// The ProviderConfig the template names may not serve this namespace, or is not usable for
    /// another reason it states ([`crate::controller::wait::Unavailable`]): no port is read.
    #[error("{message}: the set reads no ports and changes no child")]
    ProviderUnavailable {
        /// The condition reason (`ProviderConfigNotAllowed` or `ProviderConfigNotReady`).
        reason: &'static str,
        /// What is wrong, with the way out.
        message: String,
    },
    /// The Node cache has not been filled yet.
    #[error("the Node cache is not filled yet")]
    NodesNotSynced,
    /// Listing the children failed.
    #[error("Listing the child sessions failed: {}", kube_cause(.0))]
    ListChildren(#[source] kube::Error),
    /// Creating a child failed.
    #[error("Creating child session {name} failed: {}", kube_cause(.source))]
    CreateChild {
        /// The child's name.
        name: String,
        /// What the API server answered.
        #[source]
        source: kube::Error,
    },
    /// Changing a child's spec failed.
    #[error("Updating child session {name} failed: {}", kube_cause(.source))]
    UpdateChild {
        /// The child's name.
        name: String,
        /// What the API server answered.
        #[source]
        source: kube::Error,
    },
    /// Deleting an emptied child failed.
    #[error("Deleting child session {name} failed: {}", kube_cause(.source))]
    DeleteChild {
        /// The child's name.
        name: String,
        /// What the API server answered.
        #[source]
        source: kube::Error,
    },
    /// Writing the set's status failed.
    #[error("Writing the status failed: {}", kube_cause(.0))]
    WriteStatus(#[source] kube::Error),
    /// A ports call failed.
    #[error("{operation} failed: {}", cloud_cause(.source))]
    Cloud {
        /// Which call (e.g. `list_ports`).
        operation: &'static str,
        /// The classified cloud error.
        #[source]
        source: CloudError,
    },
}

impl SetError {
    /// The CamelCase reason of the `Synced=False` condition.
    pub fn reason(&self) -> &'static str {
        match self {
            SetError::InvalidSelector(_) => "InvalidSelector",
            SetError::ProviderNotReady(_) => {
                crate::controller::conditions::reason::PROVIDER_CONFIG_NOT_READY
            }
            SetError::ProviderUnavailable { reason, .. } => reason,
            SetError::NodesNotSynced => "NodesNotSynced",
            SetError::Cloud { .. } => "CloudError",
            _ => crate::controller::conditions::reason::KUBERNETES_ERROR,
        }
    }

    /// Whether trying again without a change can help (else the set is `Stalled`).
    pub fn is_retryable(&self) -> bool {
        match self {
            SetError::InvalidSelector(_) => false,
            SetError::Cloud { source, .. } => source.is_retryable(),
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert!(!SetError::InvalidSelector("x".into()).is_retryable());
        assert!(SetError::ProviderNotReady("p".into()).is_retryable());
        assert_eq!(
            SetError::ProviderNotReady("p".into()).reason(),
            "ProviderConfigNotReady"
        );
        assert_eq!(SetError::NodesNotSynced.reason(), "NodesNotSynced");
    }
}
