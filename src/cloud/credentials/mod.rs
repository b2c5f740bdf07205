//! Where the VPC client's credentials come from: a fixed AK/SK (the `Secret` source, zero cost), or
//! temporary credentials that a [`Refreshing`] cache obtains from the ECS metadata service
//! ([`MetadataSource`]), from IAM by exchanging the pod's service-account token
//! ([`WorkloadIdentitySource`]), optionally followed by assuming an agency ([`AssumeAgency`]).
//!
//! Knows nothing of Kubernetes; the protocols follow the official SDKs (`core/auth`).

pub mod assume;
pub mod cache;
pub mod error;
pub mod expiry;
pub mod http;
pub mod metadata;
pub mod workload_identity;

use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use assume::AssumeAgency;
pub use cache::{DEFAULT_COOLDOWN, RefreshObserver, Refreshing};
pub use error::{CredentialError, Service};
pub use metadata::MetadataSource;
pub use workload_identity::WorkloadIdentitySource;

use super::signer::Credentials;

/// A temporary credential and when it expires.
#[derive(Clone, Debug)]
pub struct Temporary {
    /// AK, SK and security token (redacted in `Debug`).
    pub credentials: Credentials,
    /// When the cloud stops accepting it.
    pub expires_at: DateTime<Utc>,
}

/// The first credential of a chain: fixed keys (then only an assumed agency refreshes), the
/// metadata service or the workload-identity exchange.
#[derive(Debug)]
pub enum Base {
    /// Keys from a Secret.
    Static(Credentials),
    /// The node's agency.
    Metadata(MetadataSource),
    /// The pod's service-account token at IAM.
    WorkloadIdentity(WorkloadIdentitySource),
}

impl Base {
    /// The base credential now; fixed keys never expire (a far expiry stands for that).
    async fn fetch(&self) -> Result<Temporary, CredentialError> {
        match self {
            Base::Static(c) => Ok(Temporary {
                credentials: c.clone(),
                expires_at: DateTime::<Utc>::MAX_UTC,
            }),
            Base::Metadata(m) => m.fetch().await,
            Base::WorkloadIdentity(w) => w.fetch().await,
        }
    }
}

/// What the VPC client asks for a credential before each attempt. Cheap to clone.
#[derive(Clone)]
pub enum CredentialProvider {
    /// Fixed keys: no I/O, never refreshed.
    Static(Arc<Credentials>),
    /// Temporary credentials behind a shared cache.
    Refreshing(Arc<Refreshing>),
}

impl std::fmt::Debug for CredentialProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialProvider::Static(c) => f.debug_tuple("Static").field(c).finish(),
            CredentialProvider::Refreshing(r) => f.debug_tuple("Refreshing").field(r).finish(),
        }
    }
}

impl CredentialProvider {
    /// The credential to sign the next attempt with.
    pub async fn current(&self) -> Result<Arc<Credentials>, CredentialError> {
        match self {
            CredentialProvider::Static(c) => Ok(c.clone()),
            CredentialProvider::Refreshing(r) => r.current().await,
        }
    }

    /// Whether a 401 may be cured by refreshing.
    pub fn is_refreshable(&self) -> bool {
        matches!(self, CredentialProvider::Refreshing(_))
    }

    /// Forgets `used` after the cloud refused it (see [`Refreshing::invalidate`]).
    pub fn invalidate(&self, used: &Credentials) {
        if let CredentialProvider::Refreshing(r) = self {
            r.invalidate(used);
        }
    }
}
