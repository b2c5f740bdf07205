//! `ProviderConfig`: where and as whom the operator talks to Huawei Cloud (region, project,
//! endpoint and the credential source: a Secret holding the AK/SK, the node's agency or the pod's
//! workload identity). Cluster-scoped, shared by many resources.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::Condition;

/// The Secret key holding the access key id (AK).
pub const SECRET_KEY_ACCESS_KEY: &str = "accessKey";
/// The Secret key holding the secret access key (SK).
pub const SECRET_KEY_SECRET_KEY: &str = "secretKey";
/// The optional Secret key holding a temporary credential's security token.
pub const SECRET_KEY_SECURITY_TOKEN: &str = "securityToken";

/// Connection settings for one Huawei Cloud project in one region.
// clippy mistakes the repeated `type_` keys of separate printcolumns for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "vpc.hwcloud.dev",
    version = "v1alpha1",
    kind = "ProviderConfig",
    plural = "providerconfigs",
    status = "ProviderConfigStatus",
    shortname = "tmpc",
    category = "hwcloud",
    derive = "PartialEq",
    doc = "Connection settings for Huawei Cloud: region, project, optional endpoint override and the credential source (a Secret holding the AK/SK, the node agency or workload identity). Resources name it in spec.providerConfigRef.",
    printcolumn(
        name = "Region",
        type_ = "string",
        json_path = ".spec.region",
        description = "Huawei Cloud region"
    ),
    printcolumn(
        name = "Project-ID",
        type_ = "string",
        json_path = ".spec.projectId",
        description = "Project owning the resources"
    ),
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".spec.endpoint",
        description = "VPC API endpoint override",
        priority = 1
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        description = "The credentials were found"
    ),
    printcolumn(
        name = "Users",
        type_ = "integer",
        json_path = ".status.users",
        description = "TrafficMirrorSessions and TrafficMirrorFilters referencing it"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[schemars(transform = super::schema::non_nullable)]
#[serde(rename_all = "camelCase")]
pub struct ProviderConfigSpec {
    /// Huawei Cloud region id, e.g. `cn-north-4` (lower-case letters, digits and `-`). Required.
    #[schemars(length(min = 1, max = 64), pattern(r"^[a-z0-9]+(-[a-z0-9]+)*$"))]
    pub region: String,

    /// Id of the project (in that region) owning the mirror resources. Required.
    #[schemars(length(min = 1, max = 64), pattern(r"^[A-Za-z0-9_-]+$"))]
    pub project_id: String,

    /// Base URL of the VPC API: `http` or `https`, a host and an optional port, without a path or
    /// query (the operator adds the API's paths; a trailing `/` alone is allowed and ignored).
    /// Optional; default `https://vpc.{region}.myhuaweicloud.com`. Set it to reach an emulator or a
    /// private endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(
        validation = Rule::new("isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''")
            .message("spec.endpoint must be an http or https URL such as https://vpc.cn-north-4.myhuaweicloud.com"),
        // Only checked on a URL (the rule above reports the rest). A path would be put in front of
        // every API path and fail at the cloud's gateway (`APIGW.0101`) instead of here.
        validation = Rule::new("!isURL(self) || (url(self).getEscapedPath() in ['', '/'] && size(url(self).getQuery()) == 0)")
            .message("spec.endpoint must be a scheme://host[:port] URL without a path or query, such as https://vpc.cn-north-4.myhuaweicloud.com")
    )]
    pub endpoint: Option<String>,

    /// Where the access keys come from. Required.
    pub credentials: CredentialsSource,

    /// Base URL of IAM, for the `WorkloadIdentity` exchange and `assumeAgency`. Optional; default
    /// `https://iam.{region}.myhuaweicloud.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(
        validation = Rule::new("isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''")
            .message("spec.iamEndpoint must be an http or https URL such as https://iam.cn-north-4.myhuaweicloud.com")
    )]
    pub iam_endpoint: Option<String>,

    /// The cloud API budget of this account, shared by every object that uses this ProviderConfig.
    /// The Huawei Cloud gateway throttles each user at about 10 requests/s (and the console,
    /// Terraform and CI jobs share that limit), so the default stays below it. Default:
    /// `{qps: 8, burst: 8}`.
    #[serde(default)]
    pub rate_limit: RateLimit,

    /// Which namespaces' TrafficMirrorSessions and TrafficMirrorFilters may use this ProviderConfig
    /// (a standard label selector on the Namespace: `matchLabels` and `matchExpressions` with `In`,
    /// `NotIn`, `Exists`, `DoesNotExist`). An object in any other namespace gets `Ready=False`, reason
    /// `ProviderConfigNotAllowed`, and makes no cloud call. Optional; absent means every namespace,
    /// which is unsafe on a shared cluster (anyone who may create a TrafficMirrorSession anywhere may
    /// then mirror traffic with this account). An empty selector (`{}`) also matches every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(NAMESPACE_SELECTOR_RULE).message(
        "spec.namespaceSelector.matchExpressions: operator must be In, NotIn, Exists or DoesNotExist; In and NotIn need values, Exists and DoesNotExist take none"
    ))]
    pub namespace_selector: Option<LabelSelector>,
}

/// The label selector operators Kubernetes knows, and their values rule (the API server does not
/// check a CRD's LabelSelector, so an unknown operator would otherwise reach the operator).
const NAMESPACE_SELECTOR_RULE: &str = "!has(self.matchExpressions) || self.matchExpressions.all(e, \
     (e.operator in ['In', 'NotIn'] && has(e.values) && size(e.values) > 0) || \
     (e.operator in ['Exists', 'DoesNotExist'] && (!has(e.values) || size(e.values) == 0)))";

/// A token-bucket budget for cloud calls.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Sustained calls per second (0.1-1000, fractions allowed). Default: 8.
    #[serde(default = "default_qps")]
    #[schemars(range(min = 0.1, max = 1000.0))]
    pub qps: f64,
    /// Calls that may go at once after a quiet period (1-1000). Default: 8.
    // `format: int32`, not schemars' `uint32`: the API server knows only the OpenAPI formats and
    // warns about any other on every `kubectl apply` of the CRD (the range already excludes < 1).
    #[serde(default = "default_burst")]
    #[schemars(range(min = 1, max = 1000), extend("format" = "int32"))]
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            qps: default_qps(),
            burst: default_burst(),
        }
    }
}

fn default_qps() -> f64 {
    8.0
}

fn default_burst() -> u32 {
    8
}

/// Where a ProviderConfig's access keys are read from: a Secret (permanent AK/SK), the node's
/// agency (ECS metadata) or the pod's service-account token exchanged at IAM (OIDC federation);
/// optionally followed by assuming an agency of another account. See docs/credentials.md.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[x_kube(
    validation = Rule::new("self.source != 'Secret' || has(self.secretRef)")
        .message("spec.credentials.secretRef is required when spec.credentials.source is Secret")
        .field_path(".secretRef"),
    validation = Rule::new("self.source != 'WorkloadIdentity' || has(self.workloadIdentity)")
        .message("spec.credentials.workloadIdentity.idpId is required when spec.credentials.source is WorkloadIdentity")
        .field_path(".workloadIdentity"),
    validation = Rule::new("self.source == 'WorkloadIdentity' || !has(self.workloadIdentity)")
        .message("spec.credentials.workloadIdentity is only read when spec.credentials.source is WorkloadIdentity")
        .field_path(".workloadIdentity"),
    validation = Rule::new("self.source == 'InstanceMetadata' || !has(self.instanceMetadata)")
        .message("spec.credentials.instanceMetadata is only read when spec.credentials.source is InstanceMetadata")
        .field_path(".instanceMetadata")
)]
#[schemars(transform = super::schema::non_nullable)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSource {
    /// Which source: `Secret` (the default), `InstanceMetadata` or `WorkloadIdentity`.
    #[serde(default)]
    pub source: CredentialSourceKind,

    /// A Secret with keys `accessKey`, `secretKey` and optionally `securityToken` (temporary
    /// credentials). Required when `source` is `Secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,

    /// Settings of source `InstanceMetadata` (the agency bound to the node). Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_metadata: Option<InstanceMetadataSource>,

    /// Settings of source `WorkloadIdentity` (the pod's projected service-account token exchanged at
    /// IAM). Required when `source` is `WorkloadIdentity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_identity: Option<WorkloadIdentitySource>,

    /// On any source: use the credentials to assume this agency (usually of another account) and act
    /// with the agency's temporary credentials. Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assume_agency: Option<AssumeAgency>,
}

/// The kind of credential source.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum CredentialSourceKind {
    /// Permanent (or externally rotated) keys from `secretRef` (the default).
    #[default]
    Secret,
    /// The node's agency credentials from the ECS metadata service.
    InstanceMetadata,
    /// The projected service-account token exchanged at IAM (OIDC federation).
    WorkloadIdentity,
}

impl CredentialSourceKind {
    /// The value as written in a manifest.
    pub fn as_str(&self) -> &'static str {
        match self {
            CredentialSourceKind::Secret => "Secret",
            CredentialSourceKind::InstanceMetadata => "InstanceMetadata",
            CredentialSourceKind::WorkloadIdentity => "WorkloadIdentity",
        }
    }
}

/// The default base URL of the ECS metadata service.
pub const DEFAULT_METADATA_ENDPOINT: &str = "http://169.254.169.254";
/// Where the Helm chart and kustomize mount the projected service-account token.
pub const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/vpc.hwcloud.dev/serviceaccount/token";
/// The default validity asked for temporary credentials, in seconds (the IAM default is 900).
pub const DEFAULT_DURATION_SECONDS: u32 = 3600;

/// Settings of the `InstanceMetadata` source.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[schemars(transform = super::schema::non_nullable)]
#[serde(rename_all = "camelCase")]
pub struct InstanceMetadataSource {
    /// Base URL of the metadata service (`http` or `https`). Optional; default
    /// `http://169.254.169.254`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(
        validation = Rule::new("isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''")
            .message("spec.credentials.instanceMetadata.endpoint must be an http or https URL such as http://169.254.169.254")
    )]
    pub endpoint: Option<String>,
}

/// Settings of the `WorkloadIdentity` source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadIdentitySource {
    /// Id of the IAM identity provider (type OpenID Connect) that trusts the cluster's
    /// service-account issuer. Required.
    #[schemars(length(min = 1, max = 128))]
    pub idp_id: String,
    /// Path of the projected service-account token, re-read on every exchange (the kubelet rotates
    /// it). Default `/var/run/secrets/vpc.hwcloud.dev/serviceaccount/token`.
    #[serde(default = "default_token_file")]
    #[schemars(length(min = 1, max = 4096))]
    pub token_file: String,
    /// Validity of the temporary credentials asked from IAM, 900-86400 seconds. Default 3600.
    #[serde(default = "default_duration_seconds")]
    #[schemars(range(min = 900, max = 86400), extend("format" = "int32"))]
    pub duration_seconds: u32,
}

/// An agency to assume with the source's credentials.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssumeAgency {
    /// Name of the agency. Required.
    #[schemars(length(min = 1, max = 64))]
    pub agency_name: String,
    /// Name of the account (domain) that owns the agency. Required.
    #[schemars(length(min = 1, max = 64))]
    pub domain_name: String,
}

fn default_token_file() -> String {
    DEFAULT_TOKEN_FILE.to_string()
}

fn default_duration_seconds() -> u32 {
    DEFAULT_DURATION_SECONDS
}

/// A reference to a Secret by namespace and name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub struct SecretRef {
    /// Namespace of the Secret (1-63 characters). Required.
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    /// Name of the Secret (1-253 characters). Required.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Observed state of a ProviderConfig, written by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[schemars(transform = super::schema::strip_defaults)]
#[serde(rename_all = "camelCase")]
pub struct ProviderConfigStatus {
    /// The metadata.generation of the spec the status was last computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Conditions, keyed by type: `Ready` (the cloud accepted the credentials; reason `InUse` while
    /// a deletion waits for its users), `Synced` (the last check succeeded), and, only while `Ready`
    /// is False, `Reconciling` (the operator is still working on it) or `Stalled` (it cannot
    /// progress until someone fixes the Secret or the spec).
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// How many TrafficMirrorSessions and TrafficMirrorFilters (in the namespaces the operator
    /// watches) name this ProviderConfig in spec.providerConfigRef. While it is above 0 a deletion
    /// waits (finalizer `vpc.hwcloud.dev/in-use`, condition `Ready=False`, reason `InUse`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub users: Option<i64>,
}

impl ProviderConfigSpec {
    /// Base URL of the VPC API without a trailing slash: `endpoint` when set, otherwise the public
    /// endpoint of the region.
    pub fn endpoint_url(&self) -> String {
        match self.endpoint.as_deref().map(str::trim) {
            Some(e) if !e.is_empty() => e.trim_end_matches('/').to_string(),
            _ => format!("https://vpc.{}.myhuaweicloud.com", self.region),
        }
    }

    /// Base URL of IAM without a trailing slash: `iamEndpoint` when set, otherwise the regional IAM
    /// endpoint.
    pub fn iam_endpoint_url(&self) -> String {
        match self.iam_endpoint.as_deref().map(str::trim) {
            Some(e) if !e.is_empty() => e.trim_end_matches('/').to_string(),
            _ => format!("https://iam.{}.myhuaweicloud.com", self.region),
        }
    }
}

impl CredentialsSource {
    /// Credentials from a Secret (the source of every manifest written before `source` existed).
    pub fn from_secret(secret_ref: SecretRef) -> Self {
        CredentialsSource {
            source: CredentialSourceKind::Secret,
            secret_ref: Some(secret_ref),
            instance_metadata: None,
            workload_identity: None,
            assume_agency: None,
        }
    }

    /// The Secret to read, when the source is `Secret`.
    pub fn secret(&self) -> Option<&SecretRef> {
        match self.source {
            CredentialSourceKind::Secret => self.secret_ref.as_ref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(endpoint: Option<&str>) -> ProviderConfigSpec {
        ProviderConfigSpec {
            region: "cn-north-4".into(),
            project_id: "p1".into(),
            endpoint: endpoint.map(String::from),
            credentials: CredentialsSource::from_secret(SecretRef {
                namespace: "ops".into(),
                name: "hwc".into(),
            }),
            iam_endpoint: None,
            rate_limit: RateLimit::default(),
            namespace_selector: None,
        }
    }

    #[test]
    fn endpoint_url_defaults_to_the_region_endpoint() {
        assert_eq!(
            spec(None).endpoint_url(),
            "https://vpc.cn-north-4.myhuaweicloud.com"
        );
        assert_eq!(
            spec(Some("")).endpoint_url(),
            "https://vpc.cn-north-4.myhuaweicloud.com"
        );
    }

    #[test]
    fn endpoint_url_uses_the_override_without_trailing_slash() {
        assert_eq!(
            spec(Some("http://127.0.0.1:8080/")).endpoint_url(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            spec(Some("http://127.0.0.1:8080")).endpoint_url(),
            "http://127.0.0.1:8080"
        );
    }

    #[test]
    fn spec_round_trips() {
        let v = json!({"region": "cn-north-4", "projectId": "p1",
            "credentials": {"secretRef": {"namespace": "ops", "name": "hwc"}}});
        let parsed: ProviderConfigSpec = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(
            parsed,
            spec(None),
            "rateLimit defaults to {{qps: 8, burst: 8}}"
        );
        let mut with_default = v;
        with_default["rateLimit"] = json!({"qps": 8.0, "burst": 8});
        with_default["credentials"]["source"] = json!("Secret");
        assert_eq!(serde_json::to_value(&parsed).unwrap(), with_default);
    }
}
