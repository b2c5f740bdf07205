//! ProviderConfig reconciler (client required): turns a `ProviderConfig` and its credentials Secret
//! into a ready-to-use cloud client, checked with one cheap call, and shares it with the session
//! reconciler through the [`Registry`].
//!
//! Pipeline: read Secret → build client → check credentials (`list sessions, limit=1`) → register →
//! write status. It runs again whenever the ProviderConfig or its Secret changes, and once per resync
//! interval so revoked credentials show up in `status`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::Context;
use super::conditions::{self, Desired, READY, SYNCED, reason};
use super::error::{Error, Result};
use super::inventory::Inventory;
use crate::api::ProviderConfig;
use crate::cloud::models::ListSessionsQuery;
use crate::cloud::signer::Credentials;
use crate::cloud::{ClientConfig, VpcClient};

/// Kind label used in metrics and logs.
pub const KIND: &str = "ProviderConfig";

/// A ready cloud account: its client and its session snapshot.
#[derive(Debug)]
pub struct Provider {
    /// The ProviderConfig's name.
    pub name: String,
    /// Signed client for the account's endpoint and project.
    pub client: VpcClient,
    /// The account's sessions, refreshed once per resync interval.
    pub inventory: Inventory,
    /// Fingerprint of what the client was built from (endpoint, project, credentials), so an unchanged
    /// Secret keeps the existing snapshot.
    fingerprint: u64,
}

/// The ready providers, by ProviderConfig name. Shared by both reconcilers and the resync loop.
#[derive(Default)]
pub struct Registry {
    providers: RwLock<HashMap<String, Arc<Provider>>>,
    /// The ProviderConfig controller's cache: a provider whose ProviderConfig was deleted stops being
    /// served (kube-runtime does not reconcile deleted objects, so the registry asks the cache).
    live: OnceLock<Store<ProviderConfig>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("providers", &self.read().keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// The ready provider named `name`, if its ProviderConfig still exists.
    pub fn get(&self, name: &str) -> Option<Arc<Provider>> {
        let p = self.read().get(name).cloned()?;
        if self.is_live(name) {
            Some(p)
        } else {
            self.remove(name);
            None
        }
    }

    /// Every ready provider whose ProviderConfig still exists.
    pub fn all(&self) -> Vec<Arc<Provider>> {
        let names: Vec<String> = self.read().keys().cloned().collect();
        names.iter().filter_map(|n| self.get(n)).collect()
    }

    /// Connects the registry to the ProviderConfig cache (once, at start).
    pub fn attach(&self, store: Store<ProviderConfig>) {
        let _ = self.live.set(store);
    }

    fn is_live(&self, name: &str) -> bool {
        match self.live.get() {
            Some(store) => store.get(&ObjectRef::new(name)).is_some(),
            None => true,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Provider>>> {
        self.providers.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Provider>>> {
        self.providers.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers (or keeps, when nothing changed) the provider; returns it and whether it is new.
    fn upsert(&self, name: &str, fingerprint: u64, client: VpcClient) -> (Arc<Provider>, bool) {
        let mut map = self.write();
        if let Some(p) = map.get(name)
            && p.fingerprint == fingerprint
        {
            return (p.clone(), false);
        }
        let p = Arc::new(Provider {
            name: name.to_string(),
            client,
            inventory: Inventory::default(),
            fingerprint,
        });
        map.insert(name.to_string(), p.clone());
        (p, true)
    }

    /// Drops a provider that is no longer ready.
    pub fn remove(&self, name: &str) -> bool {
        self.write().remove(name).is_some()
    }
}

fn fingerprint(parts: &[&str]) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

/// Reads the credentials out of the Secret; the error message names what is missing.
fn credentials_from(secret: &Secret) -> std::result::Result<Credentials, String> {
    let get = |key: &str| -> Option<String> {
        if let Some(v) = secret.data.as_ref().and_then(|d| d.get(key)) {
            return String::from_utf8(v.0.clone())
                .ok()
                .map(|s| s.trim().to_string());
        }
        secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|s| s.trim().to_string())
    };
    let access_key = get("accessKey").filter(|s| !s.is_empty());
    let secret_key = get("secretKey").filter(|s| !s.is_empty());
    match (access_key, secret_key) {
        (Some(access_key), Some(secret_key)) => Ok(Credentials {
            access_key,
            secret_key,
            security_token: get("securityToken").filter(|s| !s.is_empty()),
        }),
        (a, s) => {
            let mut missing = vec![];
            if a.is_none() {
                missing.push("accessKey");
            }
            if s.is_none() {
                missing.push("secretKey");
            }
            Err(format!(
                "the Secret has no non-empty {}; add it and the ProviderConfig is re-checked",
                missing.join(" and ")
            ))
        }
    }
}

/// Reconciles one ProviderConfig.
pub async fn reconcile(pc: Arc<ProviderConfig>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let name = pc.name_any();
    let result = check(&pc, &ctx).await;
    let (desired, action) = match result {
        Ok(new) => {
            if new {
                info!(provider = %name, "provider config ready");
                // A newly ready account: fill its snapshot and wake every session waiting on it.
                ctx.refresh_inventories_soon();
            }
            (
                vec![
                    Desired::yes(
                        READY,
                        reason::CREDENTIALS_VALID,
                        "the cloud accepted the credentials",
                    ),
                    Desired::yes(
                        SYNCED,
                        reason::RECONCILE_SUCCESS,
                        "the last reconcile succeeded",
                    ),
                ],
                Action::requeue(ctx.config.resync_interval),
            )
        }
        Err((reason, message, retry)) => {
            if ctx.providers.remove(&name) {
                warn!(provider = %name, %message, "provider config no longer ready");
            }
            ctx.metrics.reconcile_failed(KIND, &reason);
            let action = retry
                .map(Action::requeue)
                .unwrap_or_else(|| Action::requeue(ctx.config.resync_interval));
            (
                vec![
                    Desired::no(READY, &reason, message.clone()),
                    Desired::no(SYNCED, &reason, message),
                ],
                action,
            )
        }
    };
    let status = pc.status.clone().unwrap_or_default();
    let merged = conditions::merge(
        &status.conditions,
        &desired,
        pc.metadata.generation,
        Utc::now(),
    );
    if !conditions::same(&merged, &status.conditions)
        || status.observed_generation != pc.metadata.generation
    {
        let api: Api<ProviderConfig> = Api::all(ctx.client.clone());
        let patch =
            json!({"status": {"conditions": merged, "observedGeneration": pc.metadata.generation}});
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::WriteStatus)?;
    }
    ctx.metrics.reconciled(KIND, started.elapsed());
    Ok(action)
}

/// Builds and checks the client; `Ok(true)` when the provider was (re)registered.
/// The error is (reason, message, retry-after for retryable failures).
async fn check(
    pc: &ProviderConfig,
    ctx: &Context,
) -> std::result::Result<bool, (String, String, Option<Duration>)> {
    let name = pc.name_any();
    let spec = &pc.spec;
    let secret_ref = &spec.credentials.secret_ref;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &secret_ref.namespace);
    let secret = match secrets.get_opt(&secret_ref.name).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err((
                reason::SECRET_INVALID.into(),
                format!(
                    "Secret {}/{} not found; create it with keys accessKey and secretKey",
                    secret_ref.namespace, secret_ref.name
                ),
                None,
            ));
        }
        Err(e) => {
            return Err((
                reason::KUBERNETES_ERROR.into(),
                format!(
                    "reading Secret {}/{}: {e}",
                    secret_ref.namespace, secret_ref.name
                ),
                Some(Duration::from_secs(10)),
            ));
        }
    };
    let creds = credentials_from(&secret).map_err(|m| {
        (
            reason::SECRET_INVALID.to_string(),
            format!("Secret {}/{}: {m}", secret_ref.namespace, secret_ref.name),
            None,
        )
    })?;
    let endpoint = spec.endpoint_url();
    let fp = fingerprint(&[
        &endpoint,
        &spec.project_id,
        &creds.access_key,
        &creds.secret_key,
        creds.security_token.as_deref().unwrap_or(""),
    ]);
    // Same account and a resync LIST succeeded recently: the credentials work; no extra call.
    if let Some(p) = ctx.providers.get(&name)
        && p.fingerprint == fp
        && p.inventory.listed_within(ctx.config.resync_interval * 2)
    {
        return Ok(false);
    }
    let client = VpcClient::new(ClientConfig::new(
        endpoint.trim_end_matches('/'),
        &spec.project_id,
        creds,
    ))
    .map_err(|e| (e.reason(), e.to_string(), None))?;
    // The cheap check: one page of at most one session.
    let query = ListSessionsQuery {
        limit: Some(1),
        ..Default::default()
    };
    let first = std::pin::pin!(client.list_sessions(query)).next().await;
    match first {
        None | Some(Ok(_)) => {
            ctx.metrics.cloud_call("list_sessions", "success");
            let (_, new) = ctx.providers.upsert(&name, fp, client);
            Ok(new)
        }
        Some(Err(e)) => {
            ctx.metrics.cloud_call("list_sessions", e.metric_label());
            let retry = e
                .is_retryable()
                .then(|| e.retry_after().unwrap_or(Duration::from_secs(15)));
            let hint = match e.status() {
                Some(401) => "; check the accessKey/secretKey in the Secret",
                Some(403) => "; check that the credentials belong to spec.projectId",
                _ => "",
            };
            Err((
                e.reason(),
                format!("credential check failed: {e}{hint}"),
                retry,
            ))
        }
    }
}

/// Error policy: ProviderConfig errors are Kubernetes errors (cloud errors become conditions).
pub fn error_policy(_pc: Arc<ProviderConfig>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(KIND, &err.metric_label());
    warn!(error = %err, "provider config reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

/// Runs the ProviderConfig controller until shutdown. Secrets are watched too, so editing the
/// credentials re-checks every ProviderConfig that references them.
pub async fn run(ctx: Arc<Context>) {
    let api: Api<ProviderConfig> = Api::all(ctx.client.clone());
    let mut wc = kube::runtime::watcher::Config::default();
    if let Some(sel) = &ctx.config.provider_config_selector {
        wc = wc.labels(sel);
    }
    let controller = kube::runtime::Controller::new(api, wc.clone());
    let store = controller.store();
    ctx.providers.attach(store.clone());
    let secrets: Api<Secret> = Api::all(ctx.client.clone());
    controller
        .watches(
            secrets,
            kube::runtime::watcher::Config::default(),
            move |secret: Secret| {
                let ns = secret.namespace().unwrap_or_default();
                let name = secret.name_any();
                store
                    .state()
                    .into_iter()
                    .filter(|pc| {
                        let r = &pc.spec.credentials.secret_ref;
                        r.namespace == ns && r.name == name
                    })
                    .map(|pc| kube::runtime::reflector::ObjectRef::from_obj(&*pc))
                    .collect::<Vec<_>>()
            },
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn reads_credentials_and_optional_token() {
        let c = credentials_from(&secret(&[("accessKey", "AK"), ("secretKey", "SK\n")])).unwrap();
        assert_eq!((c.access_key.as_str(), c.secret_key.as_str()), ("AK", "SK"));
        assert!(c.security_token.is_none());
        let c = credentials_from(&secret(&[
            ("accessKey", "AK"),
            ("secretKey", "SK"),
            ("securityToken", "T"),
        ]))
        .unwrap();
        assert_eq!(c.security_token.as_deref(), Some("T"));
    }

    #[test]
    fn names_missing_keys() {
        let e = credentials_from(&secret(&[("accessKey", "AK")])).unwrap_err();
        assert!(e.contains("secretKey") && !e.contains("accessKey and"));
        let e = credentials_from(&secret(&[])).unwrap_err();
        assert!(e.contains("accessKey and secretKey"));
    }

    #[test]
    fn fingerprint_changes_with_any_part() {
        assert_ne!(fingerprint(&["a", "b"]), fingerprint(&["a", "c"]));
        assert_eq!(fingerprint(&["a", "b"]), fingerprint(&["a", "b"]));
    }
}
