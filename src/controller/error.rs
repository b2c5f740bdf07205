//! Reconcile errors, one variant per step, so a log line, an event or a `Synced` message says which
//! step failed (not just "kubernetes API: 409"), and the retry policy and metrics can tell causes apart.

use crate::cloud::CloudError;

/// Why a reconcile failed, by the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Adding the cleanup finalizer (before any cloud call) failed.
    #[error("Adding the finalizer failed: {}", kube_cause(.0))]
    AddFinalizer(#[source] kube::Error),
    /// Reading the referenced TrafficMirrorFilter failed.
    #[error("Reading TrafficMirrorFilter {name} failed: {}", kube_cause(.source))]
    ReadFilter {
        /// The referenced filter's name.
        name: String,
        /// What the API server answered.
        #[source]
        source: kube::Error,
    },
    /// Recording the create intent (before the create call) failed.
    #[error("Recording the create intent failed: {}", kube_cause(.0))]
    RecordIntent(#[source] kube::Error),
    /// Clearing a create intent after the cloud refused the create failed.
    #[error("Clearing the create intent failed: {}", kube_cause(.0))]
    ClearIntent(#[source] kube::Error),
    /// Recording the cloud id right after the create answered (or was found) failed.
    #[error("Recording cloud id {id} failed: {}", kube_cause(.source))]
    RecordId {
        /// The cloud id that could not be recorded.
        id: String,
        /// What the API server answered.
        #[source]
        source: kube::Error,
    },
    /// The single status write at the end of a reconcile failed.
    #[error("Writing the status failed: {}", kube_cause(.0))]
    WriteStatus(#[source] kube::Error),
    /// Removing the finalizer after cleanup failed.
    #[error("Removing the finalizer failed: {}", kube_cause(.0))]
    RemoveFinalizer(#[source] kube::Error),
    /// A VPC API call failed.
    #[error("{} failed: {}", doing(.operation), cloud_cause(.source))]
    Cloud {
        /// Which call (e.g. `create_session`).
        operation: &'static str,
        /// The classified cloud error.
        #[source]
        source: CloudError,
    },
}

impl Error {
    /// The step that failed, as a short stable word (logs, the `step` metric label, condition messages).
    pub fn step(&self) -> &'static str {
        match self {
            Error::AddFinalizer(_) => "AddFinalizer",
            Error::ReadFilter { .. } => "ReadFilter",
            Error::RecordIntent(_) => "RecordIntent",
            Error::ClearIntent(_) => "ClearIntent",
            Error::RecordId { .. } => "RecordId",
            Error::WriteStatus(_) => "WriteStatus",
            Error::RemoveFinalizer(_) => "RemoveFinalizer",
            Error::Cloud { .. } => "Cloud",
        }
    }

    /// The API server's answer, when the step was an API-server call.
    fn kube_source(&self) -> Option<&kube::Error> {
        match self {
            Error::AddFinalizer(e)
            | Error::RecordIntent(e)
            | Error::ClearIntent(e)
            | Error::WriteStatus(e)
            | Error::RemoveFinalizer(e) => Some(e),
            Error::ReadFilter { source, .. } | Error::RecordId { source, .. } => Some(source),
            Error::Cloud { .. } => None,
        }
    }

    /// Whether the API server refused the write because the object changed since it was read (a stale
    /// cache): nothing is wrong, the next reconcile sees the newer object.
    pub fn is_conflict(&self) -> bool {
        matches!(self.kube_source(), Some(kube::Error::Api(s)) if s.code == 409)
    }

    /// Label for `tmo_reconcile_errors_total`: the step, and for cloud failures the class.
    pub fn metric_label(&self) -> String {
        match self {
            Error::Cloud { source, .. } if source.is_retryable() => "cloud_retryable".into(),
            Error::Cloud { .. } => "cloud_terminal".into(),
            e if e.is_conflict() => format!("{}_conflict", e.step()),
            e => e.step().to_string(),
        }
    }

    /// Whether retrying (with backoff) can help without a spec change. Every API-server failure is
    /// worth retrying; a cloud failure only when the cloud says so.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Cloud { source, .. } => source.is_retryable(),
            _ => true,
        }
    }

    /// Whether the cloud throttled the account (429): paced by the account's budget, not by an
    /// object's growing backoff.
    pub fn is_throttled(&self) -> bool {
        matches!(self, Error::Cloud { source, .. } if source.is_throttled())
    }

    /// The cloud's `Retry-After`, if any.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Error::Cloud { source, .. } => source.retry_after(),
            _ => None,
        }
    }

    /// The condition reason: a cloud failure's error code, else `KubernetesError`.
    pub fn reason(&self) -> String {
        match self {
            Error::Cloud { source, .. } => source.reason(),
            _ => super::conditions::reason::KUBERNETES_ERROR.into(),
        }
    }

    /// The condition message: which step failed, why, and what happens next.
    pub fn message(&self) -> String {
        let next = match self {
            Error::Cloud { source, .. } if !source.is_retryable() => {
                "fix the spec (or the cloud side); the operator retries after the next spec change"
            }
            _ => "the operator retries with backoff",
        };
        format!("{self}; {next}")
    }

    /// `Ready` and `Synced` after this failure, for any kind: a failed delete keeps `Ready`'s reason
    /// `Deleting` and names the Orphan way out ([`Error::message_while_deleting`]).
    pub fn conditions(&self, deleting: bool) -> Vec<super::conditions::Desired> {
        use super::conditions::{Desired, READY, SYNCED, reason};
        let (ready_reason, message) = if deleting {
            (reason::DELETING.to_string(), self.message_while_deleting())
        } else {
            (self.reason(), self.message())
        };
        vec![
            Desired::no(READY, &ready_reason, message.clone()),
            Desired::no(SYNCED, &self.reason(), message),
        ]
    }

    /// The condition message while the object is being deleted. A deletion the cloud refuses (or
    /// keeps failing) would otherwise hold the object with advice meant for a create or update: it
    /// names the way out that needs no one to fix the cloud, `spec.deletionPolicy: Orphan`.
    pub fn message_while_deleting(&self) -> String {
        let next = match self {
            Error::Cloud { source, .. } if !source.is_retryable() => {
                "the deletion waits: fix the cloud side, then change the spec to retry at once (else the operator retries in an hour)"
            }
            _ => "the deletion waits: the operator retries with backoff",
        };
        format!(
            "{self}; {next}; or set spec.deletionPolicy: Orphan to finish the deletion and leave the cloud resource in place"
        )
    }
}

/// What the API server said, for people: its Status message and code (`the object has been modified;
/// … (409 Conflict)`), not kube's `Display`, which appends a debug dump of the whole Status.
pub fn kube_cause(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => {
            let message = if s.message.is_empty() {
                "the API server refused the request"
            } else {
                s.message.as_str()
            };
            if s.reason.is_empty() {
                format!("{message} ({})", s.code)
            } else {
                format!("{message} ({} {})", s.code, s.reason)
            }
        }
        other => other.to_string(),
    }
}

/// What the cloud said, for people, in one clause: `VPC.0002 (400) Invalid value …, request id r-1`
/// (the cloud's own code and words), or the transport failure.
pub fn cloud_cause(e: &CloudError) -> String {
    match e {
        CloudError::Api {
            status,
            error_code,
            error_msg,
            request_id,
            ..
        } => {
            let code = if error_code.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("{error_code} ({status})")
            };
            let rid = request_id
                .as_deref()
                .map(|r| format!(" (request id {r})"))
                .unwrap_or_default();
            let msg = if error_msg.is_empty() {
                String::new()
            } else {
                format!(" {error_msg}")
            };
            format!("{code}{msg}{rid}")
        }
        other => other.to_string(),
    }
}

/// The step a cloud `operation` is, as the start of a sentence (`Creating the cloud session`).
pub fn doing(operation: &str) -> String {
    let known = match operation {
        "create_session" => "Creating the cloud session",
        "update_session" => "Updating the cloud session",
        "delete_session" => "Deleting the cloud session",
        "show_session" => "Reading the cloud session",
        "add_sources" => "Adding sources to the cloud session",
        "remove_sources" => "Removing sources from the cloud session",
        "create_filter" => "Creating the cloud filter",
        "update_filter" => "Updating the cloud filter",
        "delete_filter" => "Deleting the cloud filter",
        "show_filter" => "Reading the cloud filter",
        "create_rule" => "Creating a filter rule",
        "update_rule" => "Updating a filter rule",
        "delete_rule" => "Deleting a filter rule",
        "list_sessions" => "Listing the cloud sessions",
        "list_filters" => "Listing the cloud filters",
        _ => "",
    };
    if known.is_empty() {
        format!("The cloud call {operation}")
    } else {
        known.to_string()
    }
}

/// Shorthand result type of the controller.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn conflict() -> kube::Error {
        kube::Error::Api(Box::new(
            kube::core::Status::failure("the object has been modified", "Conflict").with_code(409),
        ))
    }

    #[test]
    fn every_message_names_its_step() {
        let errors = [
            Error::AddFinalizer(conflict()),
            Error::ReadFilter {
                name: "f".into(),
                source: conflict(),
            },
            Error::RecordIntent(conflict()),
            Error::ClearIntent(conflict()),
            Error::RecordId {
                id: "s-1".into(),
                source: conflict(),
            },
            Error::WriteStatus(conflict()),
            Error::RemoveFinalizer(conflict()),
        ];
        let steps = [
            "Adding the finalizer failed",
            "Reading TrafficMirrorFilter f failed",
            "Recording the create intent failed",
            "Clearing the create intent failed",
            "Recording cloud id s-1 failed",
            "Writing the status failed",
            "Removing the finalizer failed",
        ];
        for (e, step) in errors.into_iter().zip(steps) {
            assert!(e.message().starts_with(step), "{}", e.message());
            assert!(e.is_conflict() && e.is_retryable());
            assert_eq!(e.metric_label(), format!("{}_conflict", e.step()));
            assert_eq!(e.reason(), "KubernetesError");
        }
    }

    #[test]
    fn cloud_failures_carry_the_cloud_code() {
        let e = Error::Cloud {
            operation: "create_session",
            source: CloudError::Api {
                status: 400,
                error_code: "VPC.0002".into(),
                error_msg: "bad".into(),
                request_id: None,
                retry_after: None,
            },
        };
        assert_eq!(e.reason(), "VPC_0002");
        assert!(!e.is_retryable());
        assert!(e.message().contains("spec change"));
        assert_eq!(e.metric_label(), "cloud_terminal");
    }

    /// A message is one sentence people read: the step, the code and the words of whoever refused,
    /// never kube's or serde's debug dump of the answer.
    #[test]
    fn messages_name_the_step_and_the_code_without_a_debug_dump() {
        let cloud = |operation, status, code: &str, msg: &str| Error::Cloud {
            operation,
            source: CloudError::Api {
                status,
                error_code: code.into(),
                error_msg: msg.into(),
                request_id: Some("r-1".into()),
                retry_after: None,
            },
        };
        let cases = [
            (
                cloud(
                    "create_session",
                    400,
                    "VPC.0002",
                    "Invalid value for priority",
                ),
                "Creating the cloud session failed: VPC.0002 (400) Invalid value for priority (request id r-1); fix the spec",
            ),
            (
                cloud("create_rule", 500, "", ""),
                "Creating a filter rule failed: HTTP 500 (request id r-1); the operator retries",
            ),
            (
                Error::WriteStatus(conflict()),
                "Writing the status failed: the object has been modified (409 Conflict); the operator retries",
            ),
            (
                cloud("frobnicate", 403, "VPC.0403", "no"),
                "The cloud call frobnicate failed: VPC.0403 (403) no",
            ),
        ];
        for (e, want) in cases {
            let m = e.message();
            assert!(m.starts_with(want), "{m}");
            for dump in ["{", "Some(", "Status {", "ApiError"] {
                assert!(!m.contains(dump), "{dump} in {m}");
            }
        }
    }

    #[test]
    fn a_failed_deletion_names_the_orphan_way_out() {
        let cloud = |status: u16| Error::Cloud {
            operation: "delete_session",
            source: CloudError::Api {
                status,
                error_code: format!("VPC.{status}"),
                error_msg: "no".into(),
                request_id: None,
                retry_after: None,
            },
        };
        // (error, what the message must also say besides the step and the Orphan way out)
        let cases = [
            (cloud(400), "fix the cloud side, then change the spec"),
            (cloud(403), "retries in an hour"),
            (cloud(503), "retries with backoff"),
            (Error::RemoveFinalizer(conflict()), "retries with backoff"),
        ];
        for (e, says) in cases {
            let m = e.message_while_deleting();
            assert!(m.contains(" failed: "), "{m}");
            assert!(m.contains("spec.deletionPolicy: Orphan"), "{m}");
            assert!(m.contains(says), "{m}");
            assert!(!m.contains("after the next spec change"), "{m}");
        }
    }
}
