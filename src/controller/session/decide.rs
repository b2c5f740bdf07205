//! Step "decide" (no client required): one pure function from what the object asks for ([`Desired`])
//! and what was observed ([`Observed`]) to the one [`Step`] this reconcile takes. Every branch of the
//! session reconciler, cleanup included, is decided here and nowhere else.

use chrono::{DateTime, Duration, Utc};

use super::super::conditions::reason;
use super::super::intent::{self, CreateIntent, Identity, Resolution};
use super::super::wait::{
    Cleanup, CleanupFacts, already_managed, cleanup, confirming, id_mismatch, provider_not_ready,
};
pub use super::super::wait::{Retry, Unavailable, Wait};
use super::plan::{self, Convergence, DesiredSession};
use crate::api::{DeletionPolicy, ManagementPolicy, TrafficMirrorSessionSpec};
use crate::cloud::models::TrafficMirrorSession as CloudSession;

/// How messages name what this reconciler manages.
const NOUN: &str = "cloud session";

/// How far the cloud's clock may lag ours when matching a created session to an intent.
pub const CLOCK_SKEW: Duration = Duration::seconds(120);

/// What the object asks for: read from the object alone.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// `metadata.name` (the default cloud name).
    pub object_name: String,
    /// The spec as written.
    pub spec: TrafficMirrorSessionSpec,
    /// Whether the object is being deleted.
    pub deleting: bool,
    /// The cloud id this object manages, if known: the one it recorded (status, else the annotation,
    /// which survives a restore that drops status), else the spec's (adoption). See
    /// [`super::super::claims::known_id`].
    pub known_id: Option<String>,
    /// How long after an interrupted create a missing session may still appear in the cloud.
    pub confirm_window: Duration,
}

impl Desired {
    /// The desired cloud session, once the filter id is known.
    pub fn session(&self, filter_id: String) -> DesiredSession {
        DesiredSession::from_spec(&self.spec, &self.object_name, filter_id)
    }

    fn id_from_spec(&self) -> bool {
        self.spec.session_id.as_ref().is_some_and(|s| !s.is_empty())
    }

    fn observe_only(&self) -> bool {
        self.spec.management_policy == ManagementPolicy::ObserveOnly
    }

    /// `spec.sessionId` names another session than the one this object recorded (created or
    /// adopted): it keeps the recorded one, and writes to neither while they differ.
    pub fn id_mismatch(&self) -> Option<Wait> {
        let spec = self.spec.session_id.as_deref().filter(|s| !s.is_empty())?;
        let recorded = self.known_id.as_deref().filter(|k| *k != spec)?;
        Some(id_mismatch(NOUN, "spec.sessionId", spec, recorded))
    }

    /// Deleting the object leaves the cloud session in place (Orphan, or a session only observed).
    fn keeps_cloud_on_delete(&self) -> bool {
        self.spec.deletion_policy == DeletionPolicy::Orphan || self.observe_only()
    }
}

/// The filter id the session should use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterState {
    /// Not looked up (nothing needed it, or the provider is not ready).
    NotRead,
    /// The id (given directly, or the referenced filter's).
    Id(String),
    /// The referenced TrafficMirrorFilter is being deleted but still exists (it waits for its
    /// sessions to go): its id stays usable until it is gone.
    Deleting {
        /// The filter's cloud id.
        id: String,
        /// The TrafficMirrorFilter's name.
        filter: String,
    },
    /// The referenced TrafficMirrorFilter is missing or has no cloud id yet.
    NotReady(String),
}

impl FilterState {
    /// The usable filter id, if any.
    pub fn id(&self) -> Option<&str> {
        match self {
            FilterState::Id(id) | FilterState::Deleting { id, .. } => Some(id),
            _ => None,
        }
    }
}

/// The cloud session behind the known id.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // one per reconcile, never stored
pub enum CloudState {
    /// Not read (no known id, or nothing needed it).
    NotRead,
    /// It exists, as observed.
    Present(CloudSession),
    /// The cloud confirmed it does not exist (a 404, never inferred from the snapshot alone).
    Gone,
}

/// Everything the decision needs from outside the object, gathered by `observe`.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// Why the ProviderConfig cannot serve this object; `None` when it can (its cloud client is
    /// registered, and it is not being deleted while this object is new to it).
    pub provider_unavailable: Option<Unavailable>,
    /// The filter id.
    pub filter: FilterState,
    /// The cloud session behind the known id.
    pub cloud: CloudState,
    /// The outstanding create intent, if any (see [`intent::outstanding`]).
    pub intent: Option<CreateIntent>,
    /// Cloud sessions under the intent's name (or, without an intent, the desired name), when a
    /// create, a rename or an intent resolution needs them.
    pub named: Vec<CloudSession>,
    /// Other cloud sessions with the same name as ours (from the snapshot).
    pub namesakes: Vec<CloudSession>,
    /// The older session object (`namespace/name`) that already manages the cloud session this one
    /// would manage (see [`super::super::claims`]): this one never writes to it nor deletes it.
    pub claimed_by: Option<String>,
    /// The time of the observation.
    pub now: DateTime<Utc>,
}

/// The one thing a reconcile does.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // one per reconcile, never stored
pub enum Step {
    /// Nothing can be done now: report why.
    Wait(Wait),
    /// No cloud session: record the intent (dropping a vanished id), create, record the id.
    Create {
        /// The session to create.
        desired: DesiredSession,
        /// The id of a session that vanished from the cloud and is being replaced.
        replacing: Option<String>,
    },
    /// An interrupted create's session was found: record its id, then converge it.
    Adopt {
        /// The session to reach.
        desired: DesiredSession,
        /// The session found.
        found: CloudSession,
        /// The calls that make it equal to `desired`.
        convergence: Convergence,
    },
    /// The session exists: make the calls (none when in sync).
    Converge {
        /// The session to reach.
        desired: DesiredSession,
        /// The session observed.
        observed: CloudSession,
        /// The calls that make it equal to `desired`.
        convergence: Convergence,
    },
    /// ObserveOnly: report what differs; never write to the cloud.
    ReportDrift {
        /// The session observed.
        observed: CloudSession,
        /// Wire names of the differing fields (empty: in sync).
        fields: Vec<&'static str>,
    },
    /// A same-named cloud session exists that this object did not create: a person decides.
    Conflict(String),
    /// Delete these cloud sessions (a 404 counts as done), then remove the finalizer.
    Delete(Vec<String>),
    /// Remove the finalizer: nothing is left in the cloud, or it stays there (`orphaned`).
    Release {
        /// The cloud session left in place, if any.
        orphaned: Option<String>,
    },
}

/// Decides the step.
pub fn decide(d: &Desired, o: &Observed) -> Step {
    if d.deleting {
        return decide_cleanup(d, o);
    }
    if let Some(w) = d.id_mismatch() {
        return Step::Wait(w);
    }
    if let (Some(other), Some(id)) = (&o.claimed_by, &d.known_id) {
        return Step::Wait(already_managed(NOUN, id, other, "spec.sessionId"));
    }
    if let Some(why) = &o.provider_unavailable {
        return Step::Wait(provider_not_ready(
            &d.spec.provider_config_ref.name,
            why,
            NOUN,
            false,
        ));
    }
    if d.observe_only() {
        return decide_observe_only(d, o);
    }
    let Some(filter_id) = o.filter.id() else {
        return Step::Wait(filter_not_ready(&o.filter));
    };
    let desired = d.session(filter_id.to_string());
    match (&d.known_id, &o.cloud) {
        (Some(_), CloudState::Present(s)) if s.name != desired.name => {
            match intent::rename_check(&s.id, &s.name, &desired.name, &o.named) {
                Ok(()) => Step::Converge {
                    convergence: plan::convergence(&desired, s),
                    observed: s.clone(),
                    desired,
                },
                Err(message) => Step::Conflict(message),
            }
        }
        (Some(_), CloudState::Present(s)) if !o.namesakes.is_empty() => {
            Step::Conflict(namesake_message(s, &o.namesakes))
        }
        (Some(_), CloudState::Present(s)) => Step::Converge {
            convergence: plan::convergence(&desired, s),
            observed: s.clone(),
            desired,
        },
        (Some(id), CloudState::Gone) if d.id_from_spec() => Step::Wait(session_not_found(id, true)),
        (Some(id), _) => decide_create(d, o, desired, Some(id.clone())),
        (None, _) => decide_create(d, o, desired, None),
    }
}

/// No (live) cloud session: create one, or first settle what an interrupted create left behind.
fn decide_create(
    d: &Desired,
    o: &Observed,
    desired: DesiredSession,
    replacing: Option<String>,
) -> Step {
    let Some(intent) = &o.intent else {
        return match intent::precreate_check(&desired.name, &o.named) {
            Ok(()) => Step::Create { desired, replacing },
            Err(message) => Step::Conflict(message),
        };
    };
    // What the POST sent (recorded with the intent) identifies its session, not the spec now.
    let identity = intent.identity().unwrap_or_else(|| Identity::of(&desired));
    match resolve(d, o, intent, identity) {
        Resolution::Adopt(found) => Step::Adopt {
            convergence: plan::convergence(&desired, &found),
            found,
            desired,
        },
        Resolution::WaitForConsistency => Step::Wait(confirming(intent, reason::CREATING)),
        Resolution::Conflict(message) => Step::Conflict(message),
        Resolution::CreateAgain => Step::Create { desired, replacing },
    }
}

fn resolve(d: &Desired, o: &Observed, intent: &CreateIntent, identity: Identity) -> Resolution {
    intent::resolve(
        intent,
        &identity,
        &o.named,
        o.now,
        d.confirm_window,
        CLOCK_SKEW,
    )
}

/// ObserveOnly: compare against the filter the spec names, or the cloud's when it cannot be resolved.
fn decide_observe_only(d: &Desired, o: &Observed) -> Step {
    let Some(id) = &d.known_id else {
        return Step::Wait(Wait {
            reason: reason::SESSION_ID_REQUIRED,
            message: "managementPolicy ObserveOnly needs spec.sessionId: the session to observe"
                .into(),
            retry: Retry::OnChange,
        });
    };
    let CloudState::Present(observed) = &o.cloud else {
        return Step::Wait(session_not_found(id, false));
    };
    let filter = o
        .filter
        .id()
        .map(str::to_string)
        .unwrap_or_else(|| observed.traffic_mirror_filter_id.clone());
    Step::ReportDrift {
        fields: plan::differing_fields(&d.session(filter), observed),
        observed: observed.clone(),
    }
}

/// Cleanup: tolerate apply never having run; never wait for anything when nothing is in the cloud.
fn decide_cleanup(d: &Desired, o: &Observed) -> Step {
    let facts = CleanupFacts {
        keep: d.keeps_cloud_on_delete() || o.claimed_by.is_some(),
        known_id: d.known_id.as_deref(),
        intent: o.intent.as_ref(),
        provider: (
            &d.spec.provider_config_ref.name,
            o.provider_unavailable.as_ref(),
        ),
        noun: NOUN,
        blocked: None,
    };
    // What the POST sent, when the intent recorded it; else the spec, where the filter only
    // narrows the match (when it cannot be resolved any more, it is left out).
    let identity = |intent: &CreateIntent| {
        intent.identity().unwrap_or_else(|| Identity {
            filter_id: o.filter.id().map(str::to_string),
            target_id: d.spec.traffic_mirror_target_id.clone(),
        })
    };
    match cleanup(facts, |intent| resolve(d, o, intent, identity(intent))) {
        Cleanup::Release { orphaned } => Step::Release { orphaned },
        Cleanup::Wait(w) => Step::Wait(w),
        Cleanup::Delete(ids) => Step::Delete(ids),
    }
}

fn namesake_message(ours: &CloudSession, others: &[CloudSession]) -> String {
    let ids: Vec<&str> = others.iter().map(|s| s.id.as_str()).collect();
    format!(
        "besides this object's cloud session {}, cloud session(s) {} are also named {:?} (made \
         outside this object): the name is ambiguous for every tool that finds sessions by name; \
         rename or delete the other one(s), or set spec.name to a different name",
        ours.id,
        ids.join(", "),
        ours.name
    )
}

fn filter_not_ready(filter: &FilterState) -> Wait {
    let message = match filter {
        FilterState::NotReady(m) => m.clone(),
        _ => "the filter id is not known yet".into(),
    };
    Wait {
        reason: reason::FILTER_NOT_READY,
        message,
        retry: Retry::Dependency,
    }
}

fn session_not_found(id: &str, from_spec: bool) -> Wait {
    let message = if from_spec {
        format!(
            "cloud session {id} (spec.sessionId) does not exist; fix spec.sessionId or remove the object"
        )
    } else {
        format!("cloud session {id} does not exist")
    };
    Wait {
        reason: reason::SESSION_NOT_FOUND,
        message,
        retry: Retry::Resync,
    }
}

#[cfg(test)]
mod tests;
