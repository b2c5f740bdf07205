//! The credential source of a ProviderConfig (no client required): what its client's credentials
//! are built from (`spec.credentials.source`, optionally `assumeAgency`), and a fingerprint of it,
//! so an unchanged source keeps its cache of temporary credentials across checks.

use std::sync::Arc;

use crate::api::{CredentialSourceKind, DEFAULT_METADATA_ENDPOINT, ProviderConfigSpec};
use crate::cloud::credentials::{
    AssumeAgency, Base, CredentialError, CredentialProvider, DEFAULT_COOLDOWN, MetadataSource,
    Refreshing, WorkloadIdentitySource,
};
use crate::cloud::signer::Credentials;
use crate::telemetry::Metrics;

/// What the client's credentials are built from, as strings to hash: endpoint, project, the
/// source settings, the IAM endpoint and, for a Secret, its keys (so an edited Secret rebuilds).
pub(super) fn fingerprint_parts(
    spec: &ProviderConfigSpec,
    secret: Option<&Credentials>,
) -> Vec<String> {
    let mut parts = vec![
        spec.endpoint_url(),
        spec.project_id.clone(),
        serde_json::to_string(&spec.credentials).unwrap_or_default(),
        spec.iam_endpoint_url(),
    ];
    if let Some(c) = secret {
        parts.push(c.access_key.clone());
        parts.push(c.secret_key.clone());
        parts.push(c.security_token.clone().unwrap_or_default());
    }
    parts
}

/// The validity asked for an assumed agency: the workload identity's `durationSeconds`, else the
/// default (1 h).
fn assume_duration(spec: &ProviderConfigSpec) -> u32 {
    spec.credentials
        .workload_identity
        .as_ref()
        .map(|w| w.duration_seconds)
        .unwrap_or(crate::api::DEFAULT_DURATION_SECONDS)
}

/// The credential provider of `spec`: fixed keys for a Secret without `assumeAgency` (no cache,
/// no I/O), else a refreshing cache over the source, whose refreshes are counted in `metrics`.
/// `secret` holds the Secret's keys when the source is `Secret`.
pub(super) fn provider(
    spec: &ProviderConfigSpec,
    secret: Option<Credentials>,
    metrics: &Metrics,
) -> Result<CredentialProvider, CredentialError> {
    let creds = &spec.credentials;
    let iam = spec.iam_endpoint_url();
    let base = match (creds.source, secret) {
        (CredentialSourceKind::Secret, Some(c)) if creds.assume_agency.is_none() => {
            return Ok(CredentialProvider::Static(Arc::new(c)));
        }
        (CredentialSourceKind::Secret, Some(c)) => Base::Static(c),
        (CredentialSourceKind::Secret, None) => {
            return Err(CredentialError::InvalidConfig(
                "spec.credentials.secretRef is required when spec.credentials.source is Secret"
                    .into(),
            ));
        }
        (CredentialSourceKind::InstanceMetadata, _) => {
            let endpoint = creds
                .instance_metadata
                .as_ref()
                .and_then(|m| m.endpoint.as_deref())
                .unwrap_or(DEFAULT_METADATA_ENDPOINT);
            Base::Metadata(MetadataSource::new(endpoint)?)
        }
        (CredentialSourceKind::WorkloadIdentity, _) => {
            let w = creds.workload_identity.as_ref().ok_or_else(|| {
                CredentialError::InvalidConfig(
                    "spec.credentials.workloadIdentity.idpId is required when spec.credentials.source is WorkloadIdentity".into(),
                )
            })?;
            Base::WorkloadIdentity(WorkloadIdentitySource::new(
                &iam,
                &w.idp_id,
                &w.token_file,
                w.duration_seconds,
            )?)
        }
    };
    let assume = match &creds.assume_agency {
        Some(a) => Some(AssumeAgency::new(
            &iam,
            &a.agency_name,
            &a.domain_name,
            assume_duration(spec),
        )?),
        None => None,
    };
    let (metrics, source) = (metrics.clone(), creds.source.as_str());
    let observer = Arc::new(move |outcome: Result<(), &CredentialError>| {
        let label = match outcome {
            Ok(()) => "success",
            Err(e) => e.metric_label(),
        };
        metrics.credential_refreshed(source, label);
    });
    let cache = Refreshing::new(base, assume, DEFAULT_COOLDOWN).observed(observer);
    Ok(CredentialProvider::Refreshing(Arc::new(cache)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(credentials: serde_json::Value) -> ProviderConfigSpec {
        serde_json::from_value(
            json!({"region": "r1", "projectId": "p1", "credentials": credentials}),
        )
        .unwrap()
    }

    #[test]
    fn which_sources_refresh() {
        let m = Metrics::default();
        let keys = || Some(Credentials::new("AK", "SK"));
        let secret = spec(json!({"secretRef": {"namespace": "ops", "name": "hwc"}}));
        assert!(!provider(&secret, keys(), &m).unwrap().is_refreshable());
        let assumed = spec(json!({"secretRef": {"namespace": "ops", "name": "hwc"},
            "assumeAgency": {"agencyName": "a", "domainName": "d"}}));
        assert!(provider(&assumed, keys(), &m).unwrap().is_refreshable());
        let metadata = spec(json!({"source": "InstanceMetadata"}));
        assert!(provider(&metadata, None, &m).unwrap().is_refreshable());
        let wi = spec(json!({"source": "WorkloadIdentity", "workloadIdentity": {"idpId": "idp"}}));
        assert!(provider(&wi, None, &m).unwrap().is_refreshable());
        let wi_without = spec(json!({"source": "WorkloadIdentity"}));
        let e = provider(&wi_without, None, &m).unwrap_err();
        assert!(e.to_string().contains("workloadIdentity.idpId"), "{e}");
        let e = provider(&spec(json!({"source": "Secret"})), None, &m).unwrap_err();
        assert!(e.to_string().contains("secretRef"), "{e}");
    }

    #[test]
    fn workload_identity_defaults() {
        let wi = spec(json!({"source": "WorkloadIdentity", "workloadIdentity": {"idpId": "idp"}}));
        let w = wi.credentials.workload_identity.as_ref().unwrap();
        assert_eq!(
            (w.token_file.as_str(), w.duration_seconds),
            (
                "/var/run/secrets/vpc.hwcloud.dev/serviceaccount/token",
                3600
            )
        );
        assert_eq!(wi.iam_endpoint_url(), "https://iam.r1.myhuaweicloud.com");
        assert_eq!(assume_duration(&wi), 3600);
    }

    #[test]
    fn fingerprint_follows_the_source_and_the_secret() {
        let a = spec(json!({"source": "InstanceMetadata"}));
        let b = spec(
            json!({"source": "InstanceMetadata", "instanceMetadata": {"endpoint": "http://x"}}),
        );
        assert_ne!(fingerprint_parts(&a, None), fingerprint_parts(&b, None));
        let s = spec(json!({"secretRef": {"namespace": "ops", "name": "hwc"}}));
        assert_ne!(
            fingerprint_parts(&s, Some(&Credentials::new("AK", "SK"))),
            fingerprint_parts(&s, Some(&Credentials::new("AK", "SK2")))
        );
    }
}
