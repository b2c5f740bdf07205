//! Why temporary credentials could not be obtained, by source and step. No variant carries a
//! token, an AK, an SK or a security token: only statuses, error codes and the services' messages.

/// Which service a failed step talked to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// The ECS metadata service (`InstanceMetadata`).
    Metadata,
    /// IAM (`WorkloadIdentity` exchange, `assumeAgency`).
    Iam,
}

impl Service {
    /// The service's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Service::Metadata => "metadata",
            Service::Iam => "IAM",
        }
    }
}

/// A failed attempt to obtain credentials from a source.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The projected service-account token could not be read (missing, unreadable or empty).
    #[error("reading the service-account token file {path}: {message}")]
    TokenFile {
        /// The configured `tokenFile`.
        path: String,
        /// Why it could not be read.
        message: String,
    },
    /// The metadata service says no agency is bound to the node.
    #[error(
        "metadata {step}: no agency is bound to the node (HTTP 401: {message}); bind an agency to the ECS instance"
    )]
    NoAgency {
        /// The step (`securitykey`).
        step: &'static str,
        /// The metadata service's message.
        message: String,
    },
    /// The service answered with an error status.
    #[error(
        "{} {step} answered HTTP {status}{}{}: {message}",
        service.name(),
        code_part(error_code),
        rid_part(request_id)
    )]
    Refused {
        /// Which service.
        service: Service,
        /// The step (`id-token`, `securitytokens`, `assume_role`, `securitykey`, `api/token`).
        step: &'static str,
        /// HTTP status.
        status: u16,
        /// The service's error code (`IAM.0001`), empty when none.
        error_code: String,
        /// The service's message, or the start of the body.
        message: String,
        /// The request id, if any.
        request_id: Option<String>,
    },
    /// No complete answer: refused connection, reset, or a timeout.
    #[error("{} {step} unreachable: {message}", service.name())]
    Unreachable {
        /// Which service.
        service: Service,
        /// The step.
        step: &'static str,
        /// The transport error chain.
        message: String,
        /// Whether it was a timeout.
        timeout: bool,
    },
    /// A success answer that lacks what the protocol promises.
    #[error("{} {step} answered something unreadable: {message}", service.name())]
    Decode {
        /// Which service.
        service: Service,
        /// The step.
        step: &'static str,
        /// What is wrong (never the credential values).
        message: String,
    },
    /// The settings cannot work (a bad URL, an unusable header value).
    #[error("invalid credential settings: {0}")]
    InvalidConfig(String),
}

fn code_part(code: &str) -> String {
    if code.is_empty() {
        String::new()
    } else {
        format!(" {code}")
    }
}

fn rid_part(rid: &Option<String>) -> String {
    rid.as_deref()
        .map(|r| format!(" (request id {r})"))
        .unwrap_or_default()
}

impl CredentialError {
    /// Whether asking again later, without a change, may succeed: transport failures, 429 and
    /// 5xx answers, and a token file the kubelet has not written yet. A refused token, a missing
    /// agency or bad settings need someone to act.
    pub fn is_retryable(&self) -> bool {
        match self {
            CredentialError::TokenFile { .. }
            | CredentialError::Unreachable { .. }
            | CredentialError::Decode { .. } => true,
            CredentialError::Refused { status, .. } => *status == 429 || *status >= 500,
            CredentialError::NoAgency { .. } | CredentialError::InvalidConfig(_) => false,
        }
    }

    /// The service's error code (`IAM.0001`), when it sent one.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            CredentialError::Refused { error_code, .. } if !error_code.is_empty() => {
                Some(error_code)
            }
            _ => None,
        }
    }

    /// A condition reason: the service's error code (characters a reason cannot hold become `_`,
    /// e.g. `IAM_0001`), else a CamelCase name of the failure.
    pub fn reason(&self) -> String {
        if let Some(code) = self.error_code()
            && code.chars().any(|c| c.is_ascii_alphanumeric())
        {
            return reason_of_code(code);
        }
        match self {
            CredentialError::TokenFile { .. } => "TokenFileUnreadable",
            CredentialError::NoAgency { .. } => "NoAgencyBound",
            CredentialError::Refused {
                service: Service::Metadata,
                ..
            } => "MetadataRefused",
            CredentialError::Refused { .. } => "IAMRefused",
            CredentialError::Unreachable {
                service: Service::Metadata,
                ..
            } => "MetadataUnreachable",
            CredentialError::Unreachable { .. } => "IAMUnreachable",
            CredentialError::Decode { .. } => "InvalidCredentialAnswer",
            CredentialError::InvalidConfig(_) => "InvalidConfig",
        }
        .to_string()
    }

    /// A low-cardinality label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            CredentialError::TokenFile { .. } => "token_file",
            CredentialError::NoAgency { .. } => "no_agency",
            CredentialError::Refused { .. } => "refused",
            CredentialError::Unreachable { .. } => "unreachable",
            CredentialError::Decode { .. } => "decode",
            CredentialError::InvalidConfig(_) => "invalid_config",
        }
    }
}

/// `IAM.0001` → `IAM_0001`: a Kubernetes condition reason (letters first, no dots).
fn reason_of_code(code: &str) -> String {
    let mut r: String = code
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if !r.starts_with(|c: char| c.is_ascii_alphabetic()) {
        r.insert(0, 'E');
    }
    r.trim_end_matches('_').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(service: Service, status: u16, code: &str) -> CredentialError {
        CredentialError::Refused {
            service,
            step: "securitytokens",
            status,
            error_code: code.into(),
            message: "no".into(),
            request_id: Some("r-1".into()),
        }
    }

    #[test]
    fn reasons_and_retry_classes() {
        let unreachable = CredentialError::Unreachable {
            service: Service::Metadata,
            step: "securitykey",
            message: "refused".into(),
            timeout: false,
        };
        let token_file = CredentialError::TokenFile {
            path: "/t".into(),
            message: "not found".into(),
        };
        let table = [
            (refused(Service::Iam, 401, "IAM.0001"), "IAM_0001", false),
            (refused(Service::Iam, 401, ""), "IAMRefused", false),
            (refused(Service::Iam, 503, ""), "IAMRefused", true),
            (refused(Service::Iam, 429, "IAM.0008"), "IAM_0008", true),
            (
                refused(Service::Metadata, 404, ""),
                "MetadataRefused",
                false,
            ),
            (unreachable, "MetadataUnreachable", true),
            (token_file, "TokenFileUnreadable", true),
            (
                CredentialError::NoAgency {
                    step: "securitykey",
                    message: "Please configure Cloud Service Agency first".into(),
                },
                "NoAgencyBound",
                false,
            ),
        ];
        for (e, reason, retryable) in table {
            assert_eq!(e.reason(), reason, "{e}");
            assert_eq!(e.is_retryable(), retryable, "{e}");
        }
    }

    #[test]
    fn message_names_service_step_status_and_code() {
        let e = refused(Service::Iam, 401, "IAM.0001");
        assert_eq!(
            e.to_string(),
            "IAM securitytokens answered HTTP 401 IAM.0001 (request id r-1): no"
        );
    }
}
