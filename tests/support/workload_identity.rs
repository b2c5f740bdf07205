//! Workload identity in the test cluster, for `WorkloadIdentity` ProviderConfigs: service-account
//! tokens from the API server's own TokenRequest API (with an audience), the API server's signing
//! keys (`/openid/v1/jwks`), the projected-token file the operator reads, and the emulator's
//! identity provider registered to trust them (its admin API, docs/emulator.md).

use std::path::PathBuf;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

/// The issuer the test control plane signs service-account tokens as
/// (`--service-account-issuer`, [`super::control_plane`]).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The audience of the tokens the identity provider trusts (its client id).
pub const AUDIENCE: &str = "vpc.hwcloud.dev/test";
/// The identity provider's id (`X-Idp-Id`, `workloadIdentity.idpId`).
pub const IDP: &str = "cce-test-idp";
/// The workload's ServiceAccount (created on first use).
pub const WORKLOAD_SA: &str = "mirror-workload";

/// A token for [`WORKLOAD_SA`] in `ns` from the TokenRequest API, for `audience`, valid for
/// `seconds`.
pub async fn service_account_token(
    client: &Client,
    ns: &str,
    audience: &str,
    seconds: i64,
) -> String {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    if sas
        .get_opt(WORKLOAD_SA)
        .await
        .expect("read the ServiceAccount")
        .is_none()
    {
        let sa: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": WORKLOAD_SA}})).expect("sa");
        sas.create(&PostParams::default(), &sa)
            .await
            .expect("create the workload ServiceAccount");
    }
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![audience.to_string()],
            expiration_seconds: Some(seconds),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    sas.create_token_request(WORKLOAD_SA, &PostParams::default(), &request)
        .await
        .expect("TokenRequest")
        .status
        .map(|s| s.token)
        .expect("TokenRequest answered no token")
}

/// The API server's service-account signing keys (`GET /openid/v1/jwks`).
pub async fn cluster_jwks(client: &Client) -> Value {
    let request = http::Request::get("/openid/v1/jwks")
        .body(vec![])
        .expect("request");
    let text = client
        .request_text(request)
        .await
        .expect("GET /openid/v1/jwks");
    serde_json::from_str(&text).expect("JWKS is JSON")
}

/// The body that registers the cluster as the emulator's OIDC identity provider [`IDP`], trusting
/// `jwks` for [`AUDIENCE`].
pub fn identity_provider(jwks: &Value) -> Value {
    json!({"id": IDP, "issuer": ISSUER, "audience": AUDIENCE, "jwks": jwks})
}

/// Registers `provider` ([`identity_provider`]) in the emulator at `url`.
pub async fn register_identity_provider(url: &str, provider: &Value) {
    let endpoint = format!("{url}/_emulator/identity-providers");
    let answer = reqwest::Client::new()
        .post(&endpoint)
        .json(provider)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {endpoint}: {e}"));
    let status = answer.status();
    let text = answer.text().await.unwrap_or_default();
    assert!(status.is_success(), "POST {endpoint}: {status} {text}");
}

/// The projected-token file the operator reads (`workloadIdentity.tokenFile`), in `dir`.
pub struct TokenFile {
    path: PathBuf,
}

impl TokenFile {
    /// The file `token` in `dir` (not written yet).
    pub fn in_dir(dir: &std::path::Path) -> TokenFile {
        TokenFile {
            path: dir.join("token"),
        }
    }

    /// Writes `token` atomically, as the kubelet does: a reader never sees half a token.
    pub fn write(&self, token: &str) {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, token).expect("write the token");
        std::fs::rename(&tmp, &self.path).expect("move the token in place");
    }

    /// Removes the file.
    pub fn remove(&self) {
        std::fs::remove_file(&self.path).expect("remove the token file");
    }

    /// The path, as the ProviderConfig names it.
    pub fn path(&self) -> &str {
        self.path.to_str().expect("a UTF-8 path")
    }
}

/// The `credentials` of a ProviderConfig using [`IDP`] and `token_file` (900 s asked: the
/// emulator's `--credential-lifetime` decides).
pub fn workload_identity_credentials(token_file: &TokenFile) -> Value {
    json!({"source": "WorkloadIdentity",
           "workloadIdentity": {"idpId": IDP, "tokenFile": token_file.path(), "durationSeconds": 900}})
}
