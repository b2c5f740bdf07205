//! Step "decide" of the filter reconciler (no client required): one pure function from what the object
//! asks for and what was observed to the one [`Step`] this reconcile takes, cleanup included.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::super::conditions::reason;
use super::super::error::Error;
use super::super::intent::{self, CreateIntent, Resolution};
pub use super::super::ledger::Refusal;
use super::super::wait::{
    Cleanup, CleanupFacts, already_managed, cleanup, confirming, id_mismatch, provider_not_ready,
};
pub use super::super::wait::{Retry, Unavailable, Wait};
use super::plan::{self, DesiredFilter, Drift, RuleKey, RulePlan};
use crate::api::{DeletionPolicy, ManagementPolicy, TrafficMirrorFilterSpec};
use crate::cloud::CloudError;
use crate::cloud::models::{TrafficMirrorFilter as CloudFilter, UpdateFilterRequest};

/// How messages name what this reconciler manages.
const NOUN: &str = "cloud filter";

/// How far the cloud's clock may lag ours when matching a created filter to an intent.
pub const CLOCK_SKEW: Duration = Duration::seconds(120);

/// Annotation holding the rule creates in flight (JSON of [`RuleIntent`]): rule creates have no
/// idempotency token either, so after an interruption the rules are found by (direction, priority)
/// in a fresh read before any is created again.
pub const RULE_INTENT_ANNOTATION: &str = "vpc.hwcloud.dev/rule-intent";

/// Rule creates in flight.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleIntent {
    /// When the creates were started.
    pub at: DateTime<Utc>,
    /// The keys (`ingress/10`) being created.
    pub keys: Vec<String>,
}

/// What the object asks for: read from the object alone.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// `metadata.name` (the default cloud name).
    pub object_name: String,
    /// The spec as written.
    pub spec: TrafficMirrorFilterSpec,
    /// Whether the object is being deleted.
    pub deleting: bool,
    /// The cloud id: the recorded one (status, else the annotation), else the spec's (adoption). See
    /// [`super::super::claims::known_id`].
    pub known_id: Option<String>,
    /// How long after an interrupted create a missing object may still appear in the cloud.
    pub confirm_window: Duration,
}

impl Desired {
    /// The desired cloud filter with its rules.
    pub fn filter(&self) -> DesiredFilter {
        DesiredFilter::from_spec(&self.spec, &self.object_name)
    }

    /// `spec.filterId` names another filter than the one this object recorded (created or adopted):
    /// it keeps the recorded one, and writes to neither while they differ.
    pub fn id_mismatch(&self) -> Option<Wait> {
        let spec = self.spec.filter_id.as_deref().filter(|s| !s.is_empty())?;
        let recorded = self.known_id.as_deref().filter(|k| *k != spec)?;
        Some(id_mismatch(NOUN, "spec.filterId", spec, recorded))
    }
}

/// The cloud filter behind the known id.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // one per reconcile, never stored
pub enum CloudState {
    /// Not read.
    NotRead,
    /// It exists, as observed (with its rules).
    Present(CloudFilter),
    /// The cloud confirmed it does not exist.
    Gone,
}

/// Everything the decision needs from outside the object.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// Why the ProviderConfig cannot serve this object; `None` when it can (its cloud client is
    /// registered, and it is not being deleted while this object is new to it).
    pub provider_unavailable: Option<Unavailable>,
    /// The cloud filter behind the known id.
    pub cloud: CloudState,
    /// The outstanding filter create intent.
    pub intent: Option<CreateIntent>,
    /// The outstanding rule creates.
    pub rule_intent: Option<RuleIntent>,
    /// Cloud filters under the intended name, when a create, a rename or an intent resolution needs
    /// them.
    pub named: Vec<CloudFilter>,
    /// Objects that still use the filter (`namespace/name` of sessions, and cloud session ids).
    pub users: Vec<String>,
    /// The cloud's last refusal to delete the filter, while this process remembers one.
    pub refusal: Option<Refusal>,
    /// The older filter object (`namespace/name`) that already manages the cloud filter this one
    /// would manage (see [`super::super::claims`]): this one never writes to it nor deletes it.
    pub claimed_by: Option<String>,
    /// The time of the observation.
    pub now: DateTime<Utc>,
}

/// The refusal in `err`, if it is one: the cloud answered the filter's DELETE with 409. The cloud's
/// codes are not published, so the status decides; the code is kept for the message.
pub fn refusal_of(err: &Error, now: DateTime<Utc>) -> Option<Refusal> {
    match err {
        Error::Cloud {
            operation: "delete_filter",
            source:
                CloudError::Api {
                    status: 409,
                    error_code,
                    error_msg,
                    ..
                },
        } => Some(Refusal {
            code: error_code.clone(),
            message: error_msg.clone(),
            at: now,
            users_seen: vec![],
            relisted: false,
        }),
        _ => None,
    }
}

/// Whether the DELETE must wait after a refusal (no users known now): until the account snapshot has
/// been listed again (it then shows the session in the way, or that it is gone) or a user seen since
/// the refusal has gone. So a filter that stays in use costs at most one DELETE per resync interval.
pub fn delete_refused(refusal: Option<&Refusal>, users: &[String]) -> Option<Wait> {
    let r = refusal?;
    let user_gone = r.users_seen.iter().any(|u| !users.contains(u));
    if r.relisted || user_gone {
        return None;
    }
    Some(refused(r))
}

/// The reason and message while the DELETE waits after the cloud's refusal.
pub fn refused(r: &Refusal) -> Wait {
    let code = if r.code.is_empty() {
        "HTTP 409".to_string()
    } else {
        format!("HTTP 409 {}", r.code)
    };
    Wait {
        reason: reason::IN_USE,
        message: format!(
            "the cloud refused to delete the filter at {} ({code}: {}): a session the operator does \
             not see yet uses it (made outside Kubernetes, or after the last account snapshot). The \
             operator tries again once the account has been listed again (once per resync interval) \
             or a session using the filter is deleted. Delete the sessions that use it, or set \
             spec.deletionPolicy: Orphan to leave the cloud filter in place",
            r.at.to_rfc3339(),
            r.message
        ),
        retry: Retry::Resync,
    }
}

/// The calls that bring an existing filter to the desired state.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct FilterCalls {
    /// One PUT of the differing name/description.
    pub update: Option<UpdateFilterRequest>,
    /// The rule calls, executed create → update → delete.
    pub rules: RulePlan,
}

impl FilterCalls {
    fn between(id: &str, desired: &DesiredFilter, observed: &CloudFilter) -> Self {
        FilterCalls {
            update: plan::filter_update(desired, observed),
            rules: plan::plan_rules(id, desired, &plan::observed_rules(observed)),
        }
    }
}

/// The one thing a reconcile does.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // one per reconcile, never stored
pub enum Step {
    /// Nothing can be done now: report why.
    Wait(Wait),
    /// No cloud filter: intent, create, record the id, then create its rules.
    Create {
        /// The filter to create.
        desired: DesiredFilter,
    },
    /// An interrupted create's filter was found: record its id, then converge it.
    Adopt {
        /// The filter to reach.
        desired: DesiredFilter,
        /// The filter found.
        found: CloudFilter,
        /// The calls.
        calls: FilterCalls,
    },
    /// The filter exists: make the calls (none when in sync).
    Converge {
        /// The filter to reach.
        desired: DesiredFilter,
        /// The filter observed.
        observed: CloudFilter,
        /// The calls.
        calls: FilterCalls,
    },
    /// ObserveOnly: report what differs; never write.
    ReportDrift {
        /// The filter observed.
        observed: CloudFilter,
        /// What differs.
        drift: Drift,
    },
    /// A same-named filter exists that this object did not create.
    Conflict(String),
    /// Delete these cloud filters, then remove the finalizer.
    Delete(Vec<String>),
    /// Remove the finalizer: nothing is left in the cloud, or it stays there (`orphaned`).
    Release {
        /// The cloud filter left in place, if any.
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
        return Step::Wait(already_managed(NOUN, id, other, "spec.filterId"));
    }
    if let Some(why) = &o.provider_unavailable {
        return Step::Wait(provider_not_ready(
            &d.spec.provider_config_ref.name,
            why,
            NOUN,
            false,
        ));
    }
    let desired = d.filter();
    let observe_only = d.spec.management_policy == ManagementPolicy::ObserveOnly;
    match (&d.known_id, &o.cloud) {
        (Some(_), CloudState::Present(f)) if observe_only => Step::ReportDrift {
            drift: Drift::between(&desired, f, &plan::observed_rules(f)),
            observed: f.clone(),
        },
        (Some(_), CloudState::Present(f)) => decide_converge(d, o, desired, f),
        (Some(id), _) if d.spec.filter_id.is_some() || observe_only => {
            Step::Wait(filter_not_found(id))
        }
        // Admission requires spec.filterId with ObserveOnly; an object from before that rule waits.
        (None, _) if observe_only => Step::Wait(Wait {
            reason: reason::FILTER_ID_REQUIRED,
            message: "managementPolicy ObserveOnly needs spec.filterId: the filter to observe"
                .into(),
            retry: Retry::OnChange,
        }),
        (_, _) => decide_create(d, o, desired),
    }
}

/// The filter exists; rules an interrupted create may have made are confirmed before any is created
/// again.
fn decide_converge(d: &Desired, o: &Observed, desired: DesiredFilter, f: &CloudFilter) -> Step {
    if f.name != desired.name
        && let Err(message) = intent::rename_check(&f.id, &f.name, &desired.name, &o.named)
    {
        return Step::Conflict(message);
    }
    let calls = FilterCalls::between(&f.id, &desired, f);
    if let Some(ri) = &o.rule_intent {
        let creating: Vec<String> = calls
            .rules
            .create
            .iter()
            .map(|(k, _)| k.to_string())
            .collect();
        let pending = ri.keys.iter().any(|k| creating.contains(k));
        if pending && o.now - ri.at < d.confirm_window {
            return Step::Wait(Wait {
                reason: reason::UPDATING,
                message: format!(
                    "confirming whether the rule creates started at {} reached the cloud",
                    ri.at.to_rfc3339()
                ),
                retry: Retry::Soon,
            });
        }
    }
    Step::Converge {
        desired,
        observed: f.clone(),
        calls,
    }
}

fn decide_create(d: &Desired, o: &Observed, desired: DesiredFilter) -> Step {
    let Some(i) = &o.intent else {
        return match intent::precreate_check(&desired.name, &o.named) {
            Ok(()) => Step::Create { desired },
            Err(message) => Step::Conflict(message),
        };
    };
    match resolve(d, o, i) {
        Resolution::Adopt(found) => Step::Adopt {
            calls: FilterCalls::between(&found.id, &desired, &found),
            found,
            desired,
        },
        Resolution::WaitForConsistency => Step::Wait(confirming(i, reason::CREATING)),
        Resolution::Conflict(message) => Step::Conflict(message),
        Resolution::CreateAgain => Step::Create { desired },
    }
}

/// A filter is identified by its name alone (the create carries nothing else that is ours).
fn resolve(d: &Desired, o: &Observed, i: &CreateIntent) -> Resolution<CloudFilter> {
    let ours = |f: &CloudFilter| f.name == i.name;
    intent::resolve_created(i, &o.named, ours, o.now, d.confirm_window, CLOCK_SKEW)
}

fn decide_cleanup(d: &Desired, o: &Observed) -> Step {
    let in_use = if o.users.is_empty() {
        delete_refused(o.refusal.as_ref(), &o.users)
    } else {
        Some(in_use(&o.users))
    };
    let facts = CleanupFacts {
        keep: d.spec.deletion_policy == DeletionPolicy::Orphan
            || d.spec.management_policy == ManagementPolicy::ObserveOnly
            || o.claimed_by.is_some(),
        known_id: d.known_id.as_deref(),
        intent: o.intent.as_ref(),
        provider: (
            &d.spec.provider_config_ref.name,
            o.provider_unavailable.as_ref(),
        ),
        noun: NOUN,
        blocked: in_use.as_ref(),
    };
    match cleanup(facts, |intent| resolve(d, o, intent)) {
        Cleanup::Release { orphaned } => Step::Release { orphaned },
        Cleanup::Wait(w) => Step::Wait(w),
        Cleanup::Delete(ids) => Step::Delete(ids),
    }
}

/// The reason and message while sessions still use the filter.
pub fn in_use(users: &[String]) -> Wait {
    const SHOWN: usize = 5;
    let mut names = users
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if users.len() > SHOWN {
        names.push_str(&format!(" and {} more", users.len() - SHOWN));
    }
    Wait {
        reason: reason::IN_USE,
        message: format!(
            "the cloud refuses to delete a filter that sessions use; waiting for {} session(s) to go: \
             {names}. Delete them (or point them at another filter), or set spec.deletionPolicy: \
             Orphan to leave the cloud filter in place",
            users.len()
        ),
        retry: Retry::Resync,
    }
}

fn filter_not_found(id: &str) -> Wait {
    Wait {
        reason: reason::FILTER_NOT_FOUND,
        message: format!(
            "cloud filter {id} (spec.filterId) does not exist; fix spec.filterId or remove the object"
        ),
        retry: Retry::Resync,
    }
}

/// The keys a rule plan creates, for the rule intent.
pub fn creating_keys(rules: &RulePlan) -> Vec<String> {
    rules
        .create
        .iter()
        .map(|(k, _): &(RuleKey, _)| k.to_string())
        .collect()
}

#[cfg(test)]
mod tests;
