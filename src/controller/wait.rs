//! What the reconcilers share about waiting and looking again (no client required): the [`Wait`] a
//! decision reports, the waits every kind has (ProviderConfig not ready, a create being confirmed,
//! an ambiguous interrupted create during cleanup), and the [`NextLook`] after a reconcile.

use std::time::Duration;

use kube::runtime::controller::Action;

use super::conditions::reason;
use super::intent::{CreateIntent, Created, Resolution};
use super::ledger::Ledger;

/// How long to wait between looks while a create is being confirmed.
pub const CONFIRM_POLL: Duration = Duration::from_secs(2);
/// How long to wait before looking again at a ProviderConfig that is not ready.
pub const DEPENDENCY_POLL: Duration = Duration::from_secs(30);

/// Why nothing can be done now, and when to look again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wait {
    /// Condition reason (CamelCase).
    pub reason: &'static str,
    /// What is wrong and how to get out.
    pub message: String,
    /// When to look again.
    pub retry: Retry,
}

/// When a waiting object is looked at again (besides any change to it, or to what it watches).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// In a couple of seconds: a create is being confirmed.
    Soon,
    /// A dependency (ProviderConfig, filter) may become ready.
    Dependency,
    /// At the next resync.
    Resync,
    /// Only when the object changes.
    OnChange,
}

/// What a reconcile that succeeded means for the next one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextLook {
    /// It waits.
    Wait(Retry),
    /// A person must act (a conflict): only a change brings it back.
    OnChange,
    /// The object is released: forget it.
    Released,
    /// The cloud matches (or was reported): trust this generation, look again after two resyncs.
    Settled,
}

impl NextLook {
    /// The controller action, updating the `ledger` for `uid`; a settled or resync-waiting object is
    /// looked at again after `resync_interval` (settled: twice that).
    pub fn action(
        self,
        ledger: &Ledger,
        resync_interval: Duration,
        uid: &str,
        generation: Option<i64>,
    ) -> Action {
        match self {
            NextLook::Wait(Retry::Soon) => Action::requeue(CONFIRM_POLL),
            NextLook::Wait(Retry::Dependency) => Action::requeue(DEPENDENCY_POLL),
            NextLook::Wait(Retry::Resync) => {
                // Such a wait was decided on what the cloud said (a 404, a claim, a refusal): the
                // follow-up reconciles of this generation (our own status write's watch event)
                // trust the snapshot and its tombstones instead of asking again.
                ledger.succeeded(uid, generation);
                Action::requeue(resync_interval)
            }
            NextLook::Wait(Retry::OnChange) | NextLook::OnChange => Action::await_change(),
            NextLook::Released => {
                ledger.forget(uid);
                Action::await_change()
            }
            NextLook::Settled => {
                ledger.succeeded(uid, generation);
                Action::requeue(resync_interval * 2)
            }
        }
    }
}

/// Why a ProviderConfig cannot serve an object: the message says which, and what to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Unavailable {
    /// No ProviderConfig of that name exists (or the operator has not listed them yet).
    #[default]
    Missing,
    /// It exists but its credentials are not usable (yet): its own `Ready` condition, if any.
    NotReady {
        /// The ProviderConfig's `Ready` reason (`SecretInvalid`, `APIGW_0301`, ...), if it has one.
        reason: Option<String>,
        /// The ProviderConfig's `Ready` message, if it has one.
        message: Option<String>,
    },
    /// It is being deleted: it serves the objects that already have something in the cloud (so
    /// their deletion can clean up) but takes no new users.
    Deleting,
    /// Its `spec.namespaceSelector` does not match the object's namespace: it serves nothing
    /// there, not even a deletion (reason `ProviderConfigNotAllowed`).
    NotAllowed {
        /// The object's namespace.
        namespace: String,
        /// The selector, as people write it (`team=a`).
        selector: String,
    },
    /// It has a `spec.namespaceSelector` and the operator has not read the namespace's labels yet.
    NamespaceNotRead {
        /// The object's namespace.
        namespace: String,
    },
}

impl Unavailable {
    /// What is wrong with ProviderConfig `name`, in one sentence with the command to look closer.
    pub fn describe(&self, name: &str) -> String {
        match self {
            Unavailable::Missing => format!(
                "ProviderConfig {name:?} does not exist: create it, or set \
                 spec.providerConfigRef.name to one of `kubectl get tmpc`"
            ),
            Unavailable::NotReady { reason, message } => {
                let why = match (reason, message) {
                    (Some(r), Some(m)) => format!(" ({r}: {m})"),
                    (Some(r), None) => format!(" ({r})"),
                    _ => " (its credentials have not been checked yet)".to_string(),
                };
                format!(
                    "ProviderConfig {name:?} is not Ready{why}; see `kubectl describe tmpc {name}`"
                )
            }
            Unavailable::Deleting => format!(
                "ProviderConfig {name:?} is being deleted and takes no new users: set \
                 spec.providerConfigRef.name to another ProviderConfig (`kubectl get tmpc`)"
            ),
            Unavailable::NotAllowed {
                namespace,
                selector,
            } => format!(
                "ProviderConfig {name:?} may not be used from namespace {namespace:?}: its \
                 spec.namespaceSelector ({selector}) does not match the namespace's labels; label \
                 the namespace to match (`kubectl label namespace {namespace} ...`), or set \
                 spec.providerConfigRef.name to a ProviderConfig this namespace may use"
            ),
            Unavailable::NamespaceNotRead { namespace } => format!(
                "ProviderConfig {name:?} has a spec.namespaceSelector and the operator has not \
                 read the labels of namespace {namespace:?} yet; looking again when it has"
            ),
        }
    }

    /// The condition reason: a namespace the selector refuses has its own, so it can be told
    /// apart from a ProviderConfig that is merely not ready.
    pub fn reason(&self) -> &'static str {
        match self {
            Unavailable::NotAllowed { .. } => reason::PROVIDER_CONFIG_NOT_ALLOWED,
            _ => reason::PROVIDER_CONFIG_NOT_READY,
        }
    }

    /// The ways out of a deletion that waits for this ProviderConfig.
    fn deletion_way_out(&self, noun: &str) -> String {
        let orphan = format!(
            "set spec.deletionPolicy: Orphan to leave the {noun} in place and finish the deletion"
        );
        match self {
            Unavailable::NotAllowed { .. } => format!(
                ". The {noun} cannot be deleted from this namespace: label the namespace to match \
                 the selector, or {orphan}"
            ),
            _ => format!(
                ". The {noun} cannot be deleted without it: restore the ProviderConfig, or {orphan}"
            ),
        }
    }
}

/// The ProviderConfig `name` cannot serve the object ([`Unavailable`] says why). While deleting,
/// the message names the two ways out, for the `noun` (`cloud session`, `cloud filter`) that
/// cannot be deleted without it.
pub fn provider_not_ready(name: &str, why: &Unavailable, noun: &str, deleting: bool) -> Wait {
    let mut message = why.describe(name);
    if deleting {
        message.push_str(&why.deletion_way_out(noun));
    }
    Wait {
        reason: why.reason(),
        message,
        retry: Retry::Dependency,
    }
}

/// An interrupted create (a crash, a lost answer, or a retryable error such as a 5xx, after which
/// the create may have happened) is being confirmed (eventual consistency). The message says why
/// nothing is created for a while, and for how long.
pub fn confirming(intent: &CreateIntent, reason: &'static str) -> Wait {
    Wait {
        reason,
        message: format!(
            "confirming whether the create started at {} reached the cloud (its answer was lost or \
             a retryable error, so it may have happened): looking every {}s until \
             --create-confirm-window has passed since then, before creating again",
            intent.at.to_rfc3339(),
            CONFIRM_POLL.as_secs()
        ),
        retry: Retry::Soon,
    }
}

/// Cleanup cannot tell which same-named object an interrupted create made: it deletes none.
pub fn cleanup_conflict(message: String) -> Wait {
    Wait {
        reason: reason::NAME_CONFLICT,
        message: format!(
            "{message}. The operator cannot tell which one an interrupted create made, so it deletes \
             none: delete the right one in the cloud, then set spec.deletionPolicy: Orphan to finish \
             the deletion"
        ),
        retry: Retry::OnChange,
    }
}

/// An older object (`other`) already manages the cloud object `id` this one would manage (see
/// [`super::claims`]): this one never writes to it, and its deletion leaves it alone.
///
/// Woken as soon as `other` is deleted or stops claiming the id (the claim index, see
/// [`super::claims::ClaimIndex::apply`]); the resync ([`Retry::Resync`]) is only a backstop. Each
/// look costs no cloud call (observe reads nothing for a claimed object).
pub fn already_managed(noun: &str, id: &str, other: &str, id_field: &str) -> Wait {
    Wait {
        reason: reason::ALREADY_MANAGED,
        message: format!(
            "the {noun} {id} is already managed by {other}; two objects would undo each other's \
             changes. Delete this object (its deletion leaves the {noun} alone), or set \
             managementPolicy: ObserveOnly, or point {id_field} elsewhere"
        ),
        retry: Retry::Resync,
    }
}

/// `spec_field` (`spec.sessionId`) names `spec_id`, but the object manages `recorded` (the id it
/// created or adopted, in status or its id annotation). Following the spec would leave `recorded` in
/// the cloud with nobody managing it, so nothing is written to either id. The spec's id cannot be
/// changed back (it is immutable), so the message names the two safe ways out; deleting the object
/// deletes (or, with Orphan, keeps) `recorded` and never touches `spec_id`.
pub fn id_mismatch(noun: &str, spec_field: &str, spec_id: &str, recorded: &str) -> Wait {
    Wait {
        reason: reason::ID_MISMATCH,
        message: format!(
            "{spec_field} {spec_id} differs from the {noun} this object manages ({recorded}, which \
             it created or adopted); the operator writes to neither. Delete this object to delete \
             {recorded} (its deletion never touches {spec_id}), or set spec.deletionPolicy: Orphan \
             and delete it to keep {recorded} in the cloud; then adopt {spec_id} with a new object"
        ),
        retry: Retry::OnChange,
    }
}

/// What a deleting object does, for any kind (no client required).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cleanup {
    /// Remove the finalizer; the cloud object (if any) stays.
    Release {
        /// The cloud object left in place, if any.
        orphaned: Option<String>,
    },
    /// Nothing can be done now.
    Wait(Wait),
    /// Delete these cloud objects, then remove the finalizer.
    Delete(Vec<String>),
}

/// The facts cleanup decides on, the same for every kind.
#[derive(Clone, Copy, Debug)]
pub struct CleanupFacts<'a> {
    /// Deletion leaves the cloud object in place (Orphan, or ObserveOnly).
    pub keep: bool,
    /// The cloud id the object manages, if known.
    pub known_id: Option<&'a str>,
    /// The outstanding create intent, if any.
    pub intent: Option<&'a CreateIntent>,
    /// The ProviderConfig's name, and why it cannot serve the object (`None`: it can).
    pub provider: (&'a str, Option<&'a Unavailable>),
    /// How messages name the cloud object (`cloud session`).
    pub noun: &'a str,
    /// A reason to wait that the kind adds (a filter still in use), checked before any deletion.
    pub blocked: Option<&'a Wait>,
}

/// Cleanup tolerates apply never having run: with nothing in the cloud (no id, no intent) it never
/// waits for anything; an outstanding intent is resolved the same way as on create (`resolve`).
pub fn cleanup<T: Created>(
    facts: CleanupFacts<'_>,
    resolve: impl FnOnce(&CreateIntent) -> Resolution<T>,
) -> Cleanup {
    let orphaned = facts.known_id.map(str::to_string);
    if facts.keep {
        return Cleanup::Release { orphaned };
    }
    if facts.known_id.is_none() && facts.intent.is_none() {
        return Cleanup::Release { orphaned: None };
    }
    if let (provider, Some(why)) = facts.provider {
        return Cleanup::Wait(provider_not_ready(provider, why, facts.noun, true));
    }
    if let Some(w) = facts.blocked {
        return Cleanup::Wait(w.clone());
    }
    let mut ids: Vec<String> = orphaned.into_iter().collect();
    if let Some(intent) = facts.intent {
        match resolve(intent) {
            Resolution::Adopt(found) if !ids.iter().any(|i| i == found.id()) => {
                ids.push(found.id().to_string())
            }
            Resolution::Adopt(_) | Resolution::CreateAgain => {}
            Resolution::WaitForConsistency => {
                return Cleanup::Wait(confirming(intent, reason::DELETING));
            }
            Resolution::Conflict(message) => return Cleanup::Wait(cleanup_conflict(message)),
        }
    }
    if ids.is_empty() {
        Cleanup::Release { orphaned: None }
    } else {
        Cleanup::Delete(ids)
    }
}

#[cfg(test)]
mod tests;
