//! Source `WorkloadIdentity`: the projected service-account token (re-read on every exchange, the
//! kubelet rotates it) exchanged at IAM for a temporary AK/SK and security token:
//! `POST /v3.0/OS-AUTH/id-token/tokens` (`X-Idp-Id`) → `X-Subject-Token` →
//! `POST /v3.0/OS-CREDENTIAL/securitytokens` (method `token`). Both calls are unsigned.

use serde_json::json;

use super::Temporary;
use super::error::{CredentialError, Service};
use super::http::{Http, IAM_TIMEOUT};

/// Path of the id-token exchange.
pub const ID_TOKEN_PATH: &str = "/v3.0/OS-AUTH/id-token/tokens";
/// Path of the temporary-credential call.
pub const SECURITYTOKENS_PATH: &str = "/v3.0/OS-CREDENTIAL/securitytokens";
/// Header naming the identity provider.
pub const HEADER_IDP_ID: &str = "X-Idp-Id";
/// Header of the unscoped token IAM answers with.
pub const HEADER_SUBJECT_TOKEN: &str = "X-Subject-Token";

/// The workload-identity source of one ProviderConfig.
pub struct WorkloadIdentitySource {
    iam: String,
    idp_id: String,
    token_file: String,
    duration_seconds: u32,
    http: Http,
}

impl std::fmt::Debug for WorkloadIdentitySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadIdentitySource")
            .field("iam", &self.iam)
            .field("idp_id", &self.idp_id)
            .field("token_file", &self.token_file)
            .finish_non_exhaustive()
    }
}

impl WorkloadIdentitySource {
    /// A source exchanging the token in `token_file` at `iam` through identity provider `idp_id`.
    pub fn new(
        iam: &str,
        idp_id: &str,
        token_file: &str,
        duration_seconds: u32,
    ) -> Result<Self, CredentialError> {
        if !idp_id.bytes().all(|b| (0x21..0x7f).contains(&b)) || idp_id.is_empty() {
            return Err(CredentialError::InvalidConfig(
                "workloadIdentity.idpId must be printable ASCII without spaces".into(),
            ));
        }
        Ok(Self {
            iam: iam.trim().trim_end_matches('/').to_string(),
            idp_id: idp_id.to_string(),
            token_file: token_file.to_string(),
            duration_seconds,
            http: Http::new(Service::Iam, IAM_TIMEOUT)?,
        })
    }

    /// Exchanges the current token for temporary credentials.
    pub async fn fetch(&self) -> Result<Temporary, CredentialError> {
        let jwt = read_token_file(&self.token_file).await?;
        let subject = self.unscoped_token(&jwt).await?;
        self.security_token(&subject).await
    }

    async fn unscoped_token(&self, jwt: &str) -> Result<String, CredentialError> {
        let body = json!({"auth": {"id_token": {"id": jwt}}});
        let req = self
            .http
            .client()
            .post(format!("{}{ID_TOKEN_PATH}", self.iam))
            .header(HEADER_IDP_ID, &self.idp_id)
            .header("Content-Type", "application/json;charset=UTF-8")
            .body(body.to_string());
        let answer = self.http.send("id-token", req).await?;
        if !(200..300).contains(&answer.status) {
            return Err(self.http.refused("id-token", &answer));
        }
        answer
            .headers
            .get(HEADER_SUBJECT_TOKEN)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| CredentialError::Decode {
                service: Service::Iam,
                step: "id-token",
                message: format!(
                    "HTTP {} without an {HEADER_SUBJECT_TOKEN} header",
                    answer.status
                ),
            })
    }

    async fn security_token(&self, subject: &str) -> Result<Temporary, CredentialError> {
        let body = json!({"auth": {"identity": {"methods": ["token"],
            "token": {"id": subject, "duration_seconds": self.duration_seconds}}}});
        let req = self
            .http
            .client()
            .post(format!("{}{SECURITYTOKENS_PATH}", self.iam))
            .header("Content-Type", "application/json;charset=UTF-8")
            .body(body.to_string());
        let answer = self.http.send("securitytokens", req).await?;
        if !(200..300).contains(&answer.status) {
            return Err(self.http.refused("securitytokens", &answer));
        }
        self.http.credential("securitytokens", &answer)
    }
}

/// Reads and trims the token file; missing, unreadable and empty are errors naming the path.
pub async fn read_token_file(path: &str) -> Result<String, CredentialError> {
    let err = |message: String| CredentialError::TokenFile {
        path: path.to_string(),
        message,
    };
    let raw = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| err(e.to_string()))?;
    let token = raw.trim();
    if token.is_empty() {
        return Err(err("the file is empty".into()));
    }
    Ok(token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn token_file_is_trimmed_and_failures_name_the_path() {
        let dir = std::env::temp_dir().join(format!("tmo-wi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        let path_s = path.to_str().unwrap().to_string();
        let e = read_token_file(&path_s).await.unwrap_err();
        assert!(matches!(&e, CredentialError::TokenFile { path, .. } if path == &path_s));
        std::fs::write(&path, " \n").unwrap();
        let e = read_token_file(&path_s).await.unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        std::fs::write(&path, "eyJ.a.b\n").unwrap();
        assert_eq!(read_token_file(&path_s).await.unwrap(), "eyJ.a.b");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
