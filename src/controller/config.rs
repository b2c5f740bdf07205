//! The operator's settings ([`OperatorConfig`]) and the name it writes under ([`MANAGER`],
//! [`patch_params`]). In a file of their own so the reconcilers import them from here, not from the
//! controller module that wires them.

use std::time::Duration;

use super::leader;

/// Name under which the operator reports events and writes.
pub const MANAGER: &str = "traffic-mirror-operator";

/// The parameters of the operator's metadata patches (finalizers, annotations): they name
/// [`MANAGER`] as the field manager, so `metadata.managedFields` shows who wrote them instead of
/// `unknown`. The status write is a server-side apply under the same name.
pub fn patch_params() -> kube::api::PatchParams {
    kube::api::PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    }
}

/// Runtime settings of the operator (from the command line).
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    /// Watch sessions in this namespace only; `None` = all namespaces.
    pub namespace: Option<String>,
    /// Drift check period: one LIST per ProviderConfig, then every session is compared.
    pub resync_interval: Duration,
    /// Sessions reconciled in parallel.
    pub concurrency: u16,
    /// How long after an interrupted create a missing session may still appear in the cloud.
    pub create_confirm_window: Duration,
    /// Label selector restricting which ProviderConfigs this instance manages.
    pub provider_config_selector: Option<String>,
    /// Leader election: `None` = this process always leads (one replica only).
    pub leader_election: Option<leader::LeaseConfig>,
    /// The one namespace whose Secrets the operator reads and watches (credentials of every
    /// ProviderConfig), so its RBAC is a Role there rather than cluster-wide Secret access: a
    /// compromised operator can leak only the cloud credentials it is meant to hold.
    pub credentials_namespace: String,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        OperatorConfig {
            namespace: None,
            resync_interval: Duration::from_secs(300),
            concurrency: 8,
            create_confirm_window: Duration::from_secs(30),
            provider_config_selector: None,
            leader_election: None,
            credentials_namespace: "default".into(),
        }
    }
}
