//! Types shared by every kind in `vpc.hwcloud.dev/v1alpha1`: object references, the deletion and
//! management policies, and the status condition shape.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The status condition shape of every kind (`metav1.Condition`), re-exported so the controller and
/// the API types agree on one definition. Condition types used: `Ready`, `Synced`, and kstatus'
/// `Reconciling` / `Stalled` (see `controller::conditions`).
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// What every managed kind's status has: the cloud id it manages, the generation it was written
/// for and its conditions. The reconciler driver reads and writes these alike for every kind.
pub trait ManagedStatus {
    /// The cloud id the object manages, once known.
    fn cloud_id(&self) -> Option<&str>;
    /// Records the cloud id.
    fn set_cloud_id(&mut self, id: String);
    /// The generation this status was written for.
    fn observed_generation(&self) -> Option<i64>;
    /// Records the generation this status is written for.
    fn set_observed_generation(&mut self, generation: Option<i64>);
    /// The conditions.
    fn conditions(&self) -> &[Condition];
    /// Replaces the conditions.
    fn set_conditions(&mut self, conditions: Vec<Condition>);
}

/// Implements [`ManagedStatus`] for a status struct with the fields `conditions`,
/// `observed_generation` and the cloud id field named.
macro_rules! managed_status {
    ($status:ty, $id:ident) => {
        impl $crate::api::common::ManagedStatus for $status {
            fn cloud_id(&self) -> Option<&str> {
                self.$id.as_deref()
            }
            fn set_cloud_id(&mut self, id: String) {
                self.$id = Some(id);
            }
            fn observed_generation(&self) -> Option<i64> {
                self.observed_generation
            }
            fn set_observed_generation(&mut self, generation: Option<i64>) {
                self.observed_generation = generation;
            }
            fn conditions(&self) -> &[$crate::api::common::Condition] {
                &self.conditions
            }
            fn set_conditions(&mut self, conditions: Vec<$crate::api::common::Condition>) {
                self.conditions = conditions;
            }
        }
    };
}
pub(crate) use managed_status;

/// The name of the `ProviderConfig` used when a resource does not name one.
pub const DEFAULT_PROVIDER_CONFIG: &str = "default";

/// A reference to another object of the expected kind in the same namespace, by name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct LocalObjectRef {
    /// Name of the referenced object in the same namespace (1-253 characters).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A reference to the cluster-scoped `ProviderConfig` holding the region, project and credentials
/// used to reach the cloud.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ProviderConfigRef {
    /// Name of the cluster-scoped ProviderConfig to use (1-253 characters). Default: `default`.
    #[serde(default = "default_provider_config_name")]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

fn default_provider_config_name() -> String {
    DEFAULT_PROVIDER_CONFIG.to_string()
}

impl Default for ProviderConfigRef {
    fn default() -> Self {
        Self {
            name: default_provider_config_name(),
        }
    }
}

/// What happens to the cloud object when the Kubernetes object is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the cloud object, then let the Kubernetes object go (the default).
    #[default]
    Delete,
    /// Leave the cloud object in place and only forget about it.
    Orphan,
}

impl DeletionPolicy {
    /// The value as written in a manifest (`Delete` or `Orphan`).
    pub fn as_str(&self) -> &'static str {
        match self {
            DeletionPolicy::Delete => "Delete",
            DeletionPolicy::Orphan => "Orphan",
        }
    }
}

/// How much control the operator takes over the cloud object.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum ManagementPolicy {
    /// Create, update and delete the cloud object to match the spec (the default).
    #[default]
    Full,
    /// Only read the cloud object (named by its id in the spec) into status; never change it.
    ObserveOnly,
}

impl ManagementPolicy {
    /// The value as written in a manifest (`Full` or `ObserveOnly`).
    pub fn as_str(&self) -> &'static str {
        match self {
            ManagementPolicy::Full => "Full",
            ManagementPolicy::ObserveOnly => "ObserveOnly",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_config_ref_defaults_to_default() {
        assert_eq!(ProviderConfigRef::default().name, "default");
        let parsed: ProviderConfigRef = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, ProviderConfigRef::default());
    }

    #[test]
    fn policies_serialize_as_their_wire_names() {
        for p in [DeletionPolicy::Delete, DeletionPolicy::Orphan] {
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
        for p in [ManagementPolicy::Full, ManagementPolicy::ObserveOnly] {
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
        assert_eq!(DeletionPolicy::default(), DeletionPolicy::Delete);
        assert_eq!(ManagementPolicy::default(), ManagementPolicy::Full);
    }
}
