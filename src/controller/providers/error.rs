//! Why a ProviderConfig reconcile failed on the Kubernetes side, by step. Failures of the
//! credential check are not reconcile errors: they become conditions (see [`super::check`]).

/// A Kubernetes write of the ProviderConfig reconciler that failed; the variant names the step.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Writing `status` (conditions, users) failed.
    #[error("writing the ProviderConfig status: {}", crate::controller::error::kube_cause(.0))]
    WriteStatus(#[source] kube::Error),
    /// Adding the in-use finalizer failed (a conflict means someone else changed the object first).
    #[error("adding the finalizer {f}: {}", crate::controller::error::kube_cause(.0), f = super::usage::FINALIZER)]
    AddFinalizer(#[source] kube::Error),
    /// Removing the in-use finalizer after the last user was gone failed.
    #[error("removing the finalizer {f}: {}", crate::controller::error::kube_cause(.0), f = super::usage::FINALIZER)]
    RemoveFinalizer(#[source] kube::Error),
}

impl ProviderError {
    /// Label for `tmo_reconcile_errors_total`: conflicts (retried at once) apart from other API
    /// failures, per step.
    pub fn metric_label(&self) -> String {
        let (step, source) = match self {
            ProviderError::WriteStatus(e) => ("write_status", e),
            ProviderError::AddFinalizer(e) => ("add_finalizer", e),
            ProviderError::RemoveFinalizer(e) => ("remove_finalizer", e),
        };
        if is_conflict(source) {
            format!("kube_conflict_{step}")
        } else {
            format!("kube_{step}")
        }
    }

    /// Whether the object changed under the write (409): reading it again and retrying fixes it.
    pub fn is_conflict(&self) -> bool {
        match self {
            ProviderError::WriteStatus(e)
            | ProviderError::AddFinalizer(e)
            | ProviderError::RemoveFinalizer(e) => is_conflict(e),
        }
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(
            kube::core::Status::failure("boom", "Conflict").with_code(code),
        ))
    }

    #[test]
    fn labels_name_the_step_and_conflicts() {
        let table = [
            (
                ProviderError::WriteStatus(api(500)),
                "kube_write_status",
                false,
            ),
            (
                ProviderError::AddFinalizer(api(409)),
                "kube_conflict_add_finalizer",
                true,
            ),
            (
                ProviderError::RemoveFinalizer(api(403)),
                "kube_remove_finalizer",
                false,
            ),
        ];
        for (e, label, conflict) in table {
            assert_eq!(e.metric_label(), label);
            assert_eq!(e.is_conflict(), conflict);
        }
        let e = ProviderError::AddFinalizer(api(409));
        assert!(
            e.to_string()
                .starts_with("adding the finalizer vpc.hwcloud.dev/in-use"),
            "{e}"
        );
    }
}
