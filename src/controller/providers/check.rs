//! The credential check of a ProviderConfig, step by step: read the Secret (client required, only
//! for source `Secret`) → read the keys (no client required) → build the cloud client (no client
//! required) → obtain credentials from the source (metadata or IAM, for refreshing sources) → one
//! cheap cloud call (`list sessions, limit=1`).
//!
//! Each step fails with its own [`CheckError`] variant, so the condition reason, the retry decision
//! and the message (which step, what to do) are decided in one place.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};

use super::registry::{Provider, fingerprint};
use super::source;
use crate::api::{
    ProviderConfig, ProviderConfigSpec, SECRET_KEY_ACCESS_KEY, SECRET_KEY_SECRET_KEY,
    SECRET_KEY_SECURITY_TOKEN, SecretRef,
};
use crate::cloud::credentials::{CredentialError, CredentialProvider};
use crate::cloud::models::ListSessionsQuery;
use crate::cloud::signer::Credentials;
use crate::cloud::{ClientConfig, CloudError, VpcClient};
use crate::controller::conditions::reason;
use crate::controller::context::Context;
use crate::controller::metered::metered;

/// How long to wait before reading a Secret again after the API server failed to answer.
const SECRET_RETRY: Duration = Duration::from_secs(10);
/// How long to wait before a retryable credential check is tried again, when the cloud sent no
/// `Retry-After`.
const CLOUD_RETRY: Duration = Duration::from_secs(15);
/// How long to wait before asking a failing credential source again: also when it refused (an
/// identity provider or agency can be fixed on the cloud side, with nothing to watch here).
const SOURCE_RETRY: Duration = Duration::from_secs(10);
/// How often a ProviderConfig with a refreshing source is looked at, at most: its credentials
/// can stop working between resyncs (IAM or metadata down, the token file gone).
pub(super) const REFRESHING_RECHECK: Duration = Duration::from_secs(30);

/// Why a ProviderConfig's credentials could not be checked, by step. The Display names the step and
/// says what to do; it becomes the condition message.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Step "read the Secret": it is outside the credentials namespace, the only namespace whose
    /// Secrets the operator may read (a Role there, not cluster-wide Secret access).
    #[error(
        "reading the credentials: Secret {namespace}/{name} is outside the operator's credentials namespace {allowed}; move the Secret to namespace {allowed} and set spec.credentials.secretRef.namespace to it, or reinstall the operator with --credentials-namespace {namespace} (Helm value credentialsNamespace)"
    )]
    SecretOutOfScope {
        /// Namespace of the Secret named in spec.credentials.secretRef.
        namespace: String,
        /// Name of that Secret.
        name: String,
        /// The operator's credentials namespace.
        allowed: String,
    },
    /// Step "read the Secret": it does not exist.
    #[error(
        "reading the credentials: Secret {namespace}/{name} not found; create it with keys accessKey and secretKey"
    )]
    SecretMissing {
        /// Namespace of the Secret named in spec.credentials.secretRef.
        namespace: String,
        /// Name of that Secret.
        name: String,
    },
    /// Step "read the Secret": the API server did not answer (or refused).
    #[error(
        "reading the credentials: cannot read Secret {namespace}/{name}: {}; the operator retries in 10s",
        crate::controller::error::kube_cause(source)
    )]
    SecretUnreadable {
        /// Namespace of the Secret.
        namespace: String,
        /// Name of the Secret.
        name: String,
        /// The API server's error.
        #[source]
        source: kube::Error,
    },
    /// Step "read the keys": the Secret lacks a required key (or it is empty).
    #[error(
        "reading the credentials: Secret {namespace}/{name} has no non-empty {}{}; add {} and the ProviderConfig is re-checked",
        keys.join(" and "),
        present_keys(found),
        if keys.len() > 1 { "them" } else { "it" }
    )]
    KeyMissing {
        /// Namespace of the Secret.
        namespace: String,
        /// Name of the Secret.
        name: String,
        /// The missing keys (`accessKey`, `secretKey`).
        keys: Vec<&'static str>,
        /// The names (never the values) of the keys the Secret does have, sorted: a misspelt key
        /// (`access_key`, `AccessKey`) shows up next to the one that is missing.
        found: Vec<String>,
    },
    /// Step "build the client": the endpoint or the credentials are unusable.
    #[error("building the cloud client: {0}; fix spec.endpoint or the Secret")]
    ClientBuild(#[source] CloudError),
    /// Step "obtain credentials": the metadata service or IAM did not give temporary credentials.
    #[error(
        "obtaining credentials from source {source_kind}: {source}; {}",
        source_hint(source)
    )]
    Source {
        /// `spec.credentials.source`.
        source_kind: &'static str,
        /// What the source's service answered (status and error code, never a secret).
        #[source]
        source: CredentialError,
    },
    /// Step "check the credentials": the cheap cloud call failed.
    #[error(
        "checking the credentials (list sessions, limit=1) failed: {}{}",
        crate::controller::error::cloud_cause(source),
        hint(source)
    )]
    CredentialCheck {
        /// The classified cloud error.
        #[source]
        source: CloudError,
    },
}

/// ` (it has keys a, b)` for the message of [`CheckError::KeyMissing`]; empty for an empty Secret.
fn present_keys(found: &[String]) -> String {
    if found.is_empty() {
        String::new()
    } else {
        format!(
            " (it has keys {}; names are case-sensitive)",
            found.join(", ")
        )
    }
}

/// What to do about a failing credential source.
fn source_hint(e: &CredentialError) -> &'static str {
    match e {
        CredentialError::TokenFile { .. } => {
            "check spec.credentials.workloadIdentity.tokenFile and the projected token volume; the operator retries"
        }
        CredentialError::NoAgency { .. } => "bind an agency to the node; the operator retries",
        CredentialError::Refused {
            status: 401 | 403, ..
        } => {
            "check the identity provider (its id, issuer, audience and keys) or the agency trust; the operator retries"
        }
        CredentialError::InvalidConfig(_) => "fix spec.credentials",
        _ => "the operator retries",
    }
}

/// What to do about a failed credential check, from its HTTP status.
fn hint(e: &CloudError) -> &'static str {
    match e.status() {
        Some(401) => "; check the accessKey/secretKey in the Secret",
        Some(403) => "; check that the credentials belong to spec.projectId",
        _ if e.is_retryable() => "; the operator retries",
        _ => "",
    }
}

impl CheckError {
    /// The condition reason: `SecretInvalid` for a missing Secret or key, `KubernetesError` when the
    /// API server failed, the cloud's error code (or error class) for cloud failures.
    pub fn reason(&self) -> String {
        match self {
            CheckError::SecretMissing { .. } | CheckError::KeyMissing { .. } => {
                reason::SECRET_INVALID.to_string()
            }
            CheckError::SecretOutOfScope { .. } => reason::SECRET_OUT_OF_SCOPE.to_string(),
            CheckError::SecretUnreadable { .. } => reason::KUBERNETES_ERROR.to_string(),
            CheckError::ClientBuild(e) | CheckError::CredentialCheck { source: e } => e.reason(),
            CheckError::Source { source, .. } => source.reason(),
        }
    }

    /// The step that failed, for logs.
    pub fn step(&self) -> &'static str {
        match self {
            CheckError::SecretOutOfScope { .. }
            | CheckError::SecretMissing { .. }
            | CheckError::SecretUnreadable { .. } => "read_secret",
            CheckError::KeyMissing { .. } => "read_keys",
            CheckError::ClientBuild(_) => "build_client",
            CheckError::Source { .. } => "obtain_credentials",
            CheckError::CredentialCheck { .. } => "check_credentials",
        }
    }

    /// Whether checking again without any change may succeed. The others wait for an edit of the
    /// Secret or the ProviderConfig (both are watched) or the next resync interval.
    pub fn is_retryable(&self) -> bool {
        match self {
            CheckError::SecretUnreadable { .. } => true,
            CheckError::CredentialCheck { source } => source.is_retryable(),
            CheckError::Source { source, .. } => source.is_retryable(),
            CheckError::SecretOutOfScope { .. }
            | CheckError::SecretMissing { .. }
            | CheckError::KeyMissing { .. }
            | CheckError::ClientBuild(_) => false,
        }
    }

    /// When to check again, for retryable failures: at least the cloud's `Retry-After`.
    pub fn retry_after(&self) -> Option<Duration> {
        if let CheckError::Source { .. } = self {
            return Some(SOURCE_RETRY);
        }
        if !self.is_retryable() {
            return None;
        }
        match self {
            CheckError::CredentialCheck { source } => {
                Some(source.retry_after().unwrap_or(CLOUD_RETRY))
            }
            _ => Some(SECRET_RETRY),
        }
    }
}

/// Reads the credentials out of the Secret (no client required); the error lists every missing
/// key.
pub(super) fn credentials_from(secret: &Secret) -> Result<Credentials, CheckError> {
    let get = |key: &str| -> Option<String> {
        let value = match secret.data.as_ref().and_then(|d| d.get(key)) {
            Some(v) => String::from_utf8(v.0.clone()).ok(),
            None => secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .cloned(),
        };
        value
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    match (get(SECRET_KEY_ACCESS_KEY), get(SECRET_KEY_SECRET_KEY)) {
        (Some(access_key), Some(secret_key)) => Ok(Credentials {
            access_key,
            secret_key,
            security_token: get(SECRET_KEY_SECURITY_TOKEN),
        }),
        (a, s) => {
            let mut keys = vec![];
            if a.is_none() {
                keys.push(SECRET_KEY_ACCESS_KEY);
            }
            if s.is_none() {
                keys.push(SECRET_KEY_SECRET_KEY);
            }
            Err(CheckError::KeyMissing {
                namespace: secret.namespace().unwrap_or_default(),
                name: secret.name_any(),
                keys,
                found: key_names(secret),
            })
        }
    }
}

/// The names of the Secret's keys (`data` and `stringData`), sorted, without duplicates.
fn key_names(secret: &Secret) -> Vec<String> {
    let data = secret.data.iter().flat_map(|d| d.keys());
    let string_data = secret.string_data.iter().flat_map(|d| d.keys());
    let names: std::collections::BTreeSet<&String> = data.chain(string_data).collect();
    names.into_iter().cloned().collect()
}

/// Refuses a Secret outside the credentials namespace before any API call (no client required):
/// the operator has no right to read it, and saying so beats a bare 403.
pub(super) fn in_scope(secret_ref: &SecretRef, allowed: &str) -> Result<(), CheckError> {
    if secret_ref.namespace == allowed {
        return Ok(());
    }
    Err(CheckError::SecretOutOfScope {
        namespace: secret_ref.namespace.clone(),
        name: secret_ref.name.clone(),
        allowed: allowed.to_string(),
    })
}

/// Reads the Secret named by the ProviderConfig (client required).
async fn read_secret(secret_ref: &SecretRef, ctx: &Context) -> Result<Secret, CheckError> {
    in_scope(secret_ref, &ctx.config.credentials_namespace)?;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &secret_ref.namespace);
    let mut secret = match secrets.get_opt(&secret_ref.name).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(CheckError::SecretMissing {
                namespace: secret_ref.namespace.clone(),
                name: secret_ref.name.clone(),
            });
        }
        Err(source) => {
            return Err(CheckError::SecretUnreadable {
                namespace: secret_ref.namespace.clone(),
                name: secret_ref.name.clone(),
                source,
            });
        }
    };
    // The key error names the Secret; make sure it does even if the answer lacked metadata.
    secret.metadata.namespace = Some(secret_ref.namespace.clone());
    secret.metadata.name = Some(secret_ref.name.clone());
    Ok(secret)
}

/// The Secret's keys when the source is `Secret` (client required), else `None`.
async fn secret_keys(
    pc: &ProviderConfig,
    ctx: &Context,
) -> Result<Option<Credentials>, CheckError> {
    match pc.spec.credentials.secret() {
        Some(secret_ref) => {
            let secret = read_secret(secret_ref, ctx).await?;
            credentials_from(&secret).map(Some)
        }
        None => Ok(None),
    }
}

/// Builds and checks the client and registers the provider; `Ok(true)` when the provider was
/// (re)registered (a new account), `Ok(false)` when the registered one was kept.
pub(super) async fn check(pc: &ProviderConfig, ctx: &Context) -> Result<bool, CheckError> {
    let name = pc.name_any();
    let spec = &pc.spec;
    let keys = secret_keys(pc, ctx).await?;
    let parts = source::fingerprint_parts(spec, keys.as_ref());
    let fp = fingerprint(&parts.iter().map(String::as_str).collect::<Vec<_>>());
    let registered = ctx.providers.get(&name).filter(|p| p.fingerprint == fp);
    // Same account and a resync LIST succeeded recently: the credentials work; no extra call.
    if let Some(p) = &registered
        && still_proven(p, fp, ctx.config.resync_interval)
    {
        obtain(spec, p.client.credentials()).await?;
        p.budget
            .reconfigure(spec.rate_limit.qps, spec.rate_limit.burst);
        return Ok(false);
    }
    // The registered client keeps its cache of temporary credentials (no new exchange).
    let client = match &registered {
        Some(p) => p.client.clone(),
        None => build_client(spec, keys, ctx)?,
    };
    obtain(spec, client.credentials()).await?;
    // The cheap check: one page of at most one session.
    let query = ListSessionsQuery {
        limit: Some(1),
        ..Default::default()
    };
    // Through the account's budget when it is known (a changed Secret, an expired proof); the very
    // first call of a new account fits in any budget's burst.
    let registered = ctx.providers.get(&name);
    if let Some(p) = &registered {
        p.budget.acquire().await;
    }
    let first_page = async {
        let first =
            futures::StreamExt::next(&mut std::pin::pin!(client.list_sessions(query))).await;
        first.transpose().map(|_| ())
    };
    let checked = metered(&ctx.metrics, "list_sessions", first_page).await;
    if let Some(p) = &registered {
        p.budget
            .record(matches!(&checked, Err(e) if e.is_throttled()));
    }
    match checked {
        Ok(()) => {
            let (_, new) = ctx.providers.upsert(&name, fp, client, &spec.rate_limit);
            Ok(new)
        }
        Err(source) => Err(CheckError::CredentialCheck { source }),
    }
}

/// A client for `spec` signing with the source's credentials (no client required).
fn build_client(
    spec: &ProviderConfigSpec,
    keys: Option<Credentials>,
    ctx: &Context,
) -> Result<VpcClient, CheckError> {
    let source_kind = spec.credentials.source.as_str();
    let provider =
        source::provider(spec, keys, &ctx.metrics).map_err(|source| CheckError::Source {
            source_kind,
            source,
        })?;
    let endpoint = spec.endpoint_url();
    let config = ClientConfig::new(
        endpoint.trim_end_matches('/'),
        &spec.project_id,
        Credentials::new("", ""),
    );
    let config = match provider {
        // Fixed keys are checked by the client as before (empty, unusable in a header).
        CredentialProvider::Static(c) => ClientConfig {
            credentials: (*c).clone(),
            ..config
        },
        refreshing => config.with_provider(refreshing),
    };
    VpcClient::new(config).map_err(CheckError::ClientBuild)
}

/// Asks a refreshing source for its current credentials (cached while fresh), so a failing source
/// shows as itself rather than as a failed cloud call.
async fn obtain(
    spec: &ProviderConfigSpec,
    provider: &CredentialProvider,
) -> Result<(), CheckError> {
    if !provider.is_refreshable() {
        return Ok(());
    }
    provider
        .current()
        .await
        .map(|_| ())
        .map_err(|source| CheckError::Source {
            source_kind: spec.credentials.source.as_str(),
            source,
        })
}

/// Whether the registered provider was built from the same account and its last resync LIST is
/// recent enough to prove the credentials still work.
fn still_proven(p: &Provider, fingerprint: u64, resync: Duration) -> bool {
    p.fingerprint == fingerprint && p.inventory.listed_within(resync * 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        let mut s = Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        };
        s.metadata.namespace = Some("ops".into());
        s.metadata.name = Some("hwc".into());
        s
    }

    fn api_error(status: u16, code: &str) -> CloudError {
        CloudError::Api {
            status,
            error_code: code.into(),
            error_msg: "nope".into(),
            request_id: None,
            retry_after: None,
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
    fn names_missing_keys_and_the_secret() {
        let table: &[(&[(&str, &str)], &str)] = &[
            (
                &[("accessKey", "AK")],
                "Secret ops/hwc has no non-empty secretKey (it has keys accessKey;",
            ),
            (
                &[("secretKey", "SK"), ("accessKey", " ")],
                "Secret ops/hwc has no non-empty accessKey (it has keys accessKey, secretKey;",
            ),
            (
                &[],
                "Secret ops/hwc has no non-empty accessKey and secretKey; add them",
            ),
            (
                &[("secret_key", "SK"), ("access_key", "AK")],
                "has no non-empty accessKey and secretKey (it has keys access_key, secret_key; \
                 names are case-sensitive); add them",
            ),
            (
                &[("accessKey", "AK"), ("secretKey", "")],
                "has no non-empty secretKey (it has keys accessKey, secretKey; names are \
                 case-sensitive); add it",
            ),
        ];
        for (pairs, want) in table {
            let e = credentials_from(&secret(pairs)).unwrap_err();
            assert!(e.to_string().contains(want), "{e} should contain {want}");
            assert!(e.to_string().starts_with("reading the credentials"), "{e}");
            assert_eq!(e.reason(), "SecretInvalid");
            assert!(!e.is_retryable());
        }
    }

    #[test]
    fn reasons_retries_and_hints_per_step() {
        let missing = CheckError::SecretMissing {
            namespace: "ops".into(),
            name: "hwc".into(),
        };
        let unreadable = CheckError::SecretUnreadable {
            namespace: "ops".into(),
            name: "hwc".into(),
            source: kube::Error::LinesCodecMaxLineLengthExceeded,
        };
        let bad_config = CheckError::ClientBuild(CloudError::InvalidConfig("bad url".into()));
        let cloud = |e| CheckError::CredentialCheck { source: e };
        let throttled = CloudError::Api {
            status: 429,
            error_code: "APIGW.0308".into(),
            error_msg: "slow down".into(),
            request_id: None,
            retry_after: Some(Duration::from_secs(42)),
        };
        // (error, reason, retry after, a piece of the message)
        let table = [
            (missing, "SecretInvalid", None, "not found; create it"),
            (
                unreadable,
                "KubernetesError",
                Some(SECRET_RETRY),
                "cannot read Secret ops/hwc",
            ),
            (
                bad_config,
                "InvalidConfig",
                None,
                "building the cloud client",
            ),
            (
                cloud(api_error(401, "APIGW.0301")),
                "APIGW_0301",
                None,
                "check the accessKey/secretKey",
            ),
            (
                cloud(api_error(403, "APIGW.0305")),
                "APIGW_0305",
                None,
                "belong to spec.projectId",
            ),
            (
                cloud(throttled),
                "APIGW_0308",
                Some(Duration::from_secs(42)),
                "the operator retries",
            ),
            (
                cloud(api_error(503, "")),
                "ServerError",
                Some(CLOUD_RETRY),
                "checking the credentials",
            ),
        ];
        for (e, want_reason, want_retry, want_text) in table {
            assert_eq!(e.reason(), want_reason, "{e}");
            assert_eq!(e.retry_after(), want_retry, "{e}");
            assert_eq!(e.is_retryable(), want_retry.is_some(), "{e}");
            assert!(
                e.to_string().contains(want_text),
                "{e} should contain {want_text}"
            );
        }
    }

    #[test]
    fn a_secret_outside_the_credentials_namespace_is_refused_with_the_fix() {
        let pc: ProviderConfig = serde_json::from_value(serde_json::json!({
            "apiVersion": "vpc.hwcloud.dev/v1alpha1",
            "kind": "ProviderConfig",
            "metadata": {"name": "pc"},
            "spec": {
                "region": "r", "projectId": "p",
                "credentials": {"secretRef": {"namespace": "team-a", "name": "hwc"}},
            }
        }))
        .expect("provider config");
        let secret_ref = pc
            .spec
            .credentials
            .secret()
            .expect("source Secret by default");
        assert!(in_scope(secret_ref, "team-a").is_ok());
        let e = in_scope(secret_ref, "tmo-system").unwrap_err();
        assert_eq!(e.reason(), "SecretOutOfScope");
        assert_eq!(e.step(), "read_secret");
        assert!(!e.is_retryable());
        for part in [
            "Secret team-a/hwc is outside the operator's credentials namespace tmo-system",
            "move the Secret to namespace tmo-system",
            "--credentials-namespace team-a",
        ] {
            assert!(e.to_string().contains(part), "{e} should contain {part}");
        }
    }

    #[test]
    fn a_failing_source_names_itself_its_code_and_what_to_do() {
        let refused = CheckError::Source {
            source_kind: "WorkloadIdentity",
            source: CredentialError::Refused {
                service: crate::cloud::credentials::Service::Iam,
                step: "id-token",
                status: 401,
                error_code: "IAM.0001".into(),
                message: "invalid id token".into(),
                request_id: None,
            },
        };
        assert_eq!(refused.reason(), "IAM_0001");
        assert_eq!(refused.step(), "obtain_credentials");
        assert!(
            !refused.is_retryable(),
            "a refused token stalls until fixed"
        );
        assert_eq!(
            refused.retry_after(),
            Some(SOURCE_RETRY),
            "but is asked again"
        );
        let shown = refused.to_string();
        assert!(
            shown.starts_with("obtaining credentials from source WorkloadIdentity: IAM id-token answered HTTP 401 IAM.0001")
                && shown.contains("check the identity provider"),
            "{shown}"
        );
        let missing = CheckError::Source {
            source_kind: "WorkloadIdentity",
            source: CredentialError::TokenFile {
                path: "/t".into(),
                message: "No such file".into(),
            },
        };
        assert_eq!(missing.reason(), "TokenFileUnreadable");
        assert!(missing.is_retryable());
    }
}
