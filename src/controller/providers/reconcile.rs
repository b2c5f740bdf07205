//! One ProviderConfig reconcile: finalizer step (client required) → credential check (client
//! required) → conditions (no client required) → status write (client required).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use kube::api::Patch;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::check::{self, CheckError};
use super::error::ProviderError;
use super::usage::{FINALIZER, FinalizerStep, UsageIndex, Users, decide_finalizer, in_use_message};
use crate::api::{ProviderConfig, ProviderConfigStatus};
use crate::controller::conditions::{self, Desired, READY, SYNCED, reason};
use crate::controller::context::Context;
use crate::controller::events::Notice;
use crate::controller::object;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// Kind label used in metrics and logs.
pub const KIND: &str = "ProviderConfig";

/// What the ProviderConfig reconciler works with: the shared state plus who uses which
/// ProviderConfig.
pub struct ProviderContext {
    /// The operator's shared state (client, registry, metrics, settings).
    pub ctx: Arc<Context>,
    pub(super) usage: Mutex<UsageIndex>,
}

impl ProviderContext {
    /// The users of ProviderConfig `name` (`None` until sessions and filters were listed once).
    fn users_of(&self, name: &str) -> Option<Users> {
        self.usage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .users_of(name)
    }
}

/// Reconciles one ProviderConfig.
pub async fn reconcile(
    pc: Arc<ProviderConfig>,
    pctx: Arc<ProviderContext>,
) -> Result<Action, ProviderError> {
    use tracing::Instrument;
    let span = crate::controller::object::reconcile_span("ProviderConfig", &pc.metadata);
    reconcile_in_span(pc, pctx).instrument(span).await
}

async fn reconcile_in_span(
    pc: Arc<ProviderConfig>,
    pctx: Arc<ProviderContext>,
) -> Result<Action, ProviderError> {
    if !pctx.ctx.is_leader() {
        // A standby: no cloud call, no status or finalizer write. Becoming leader reconciles all.
        return Ok(Action::await_change());
    }
    let started = Instant::now();
    let ctx = &pctx.ctx;
    let name = pc.name_any();
    let users = pctx.users_of(&name);
    let deleting = pc.metadata.deletion_timestamp.is_some();
    let has_finalizer = pc.finalizers().iter().any(|f| f == FINALIZER);
    let step = decide_finalizer(deleting, has_finalizer, users.as_ref().map(Users::total));
    let pc = match step {
        // The status write below is guarded by the resourceVersion: it needs the patched copy.
        FinalizerStep::Add => Arc::new(add_finalizer(&pc, ctx).await?),
        FinalizerStep::Remove => {
            remove_finalizer(&pc, ctx).await?;
            ctx.providers.remove(&name);
            info!(provider = %name, "provider config unused and deleted: finalizer removed, no longer served");
            ctx.metrics.reconciled(KIND, started.elapsed());
            return Ok(Action::await_change());
        }
        FinalizerStep::Keep | FinalizerStep::Hold => pc,
    };
    // Also while held: the users' own deletions need a working client.
    let checked = check::check(&pc, ctx).await;
    let action = record_check(&name, &checked, ctx);
    let held = (step == FinalizerStep::Hold).then(|| hold_message(users.as_ref()));
    if let Some(message) = &held {
        info!(provider = %name, step = "hold_finalizer", %message, "provider config deletion waits");
    }
    let desired = desired_conditions(&checked, held);
    write_status(&pc, ctx, &desired, users.as_ref().map(Users::total)).await?;
    let before = pc
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    for n in notices(before, &desired) {
        object::publish_notice(ctx, &*pc, n).await;
    }
    ctx.metrics.reconciled(KIND, started.elapsed());
    Ok(action)
}

/// Logs and counts the check's outcome, drops a provider that is no longer ready, and says when to
/// look again.
fn record_check(name: &str, checked: &Result<bool, CheckError>, ctx: &Context) -> Action {
    match checked {
        Ok(new) => {
            if *new {
                info!(provider = %name, "provider config ready");
                // A newly ready account: fill its snapshot and wake every session waiting on it.
                ctx.refresh_inventories_soon();
            }
            let refreshing = ctx
                .providers
                .get(name)
                .is_some_and(|p| p.client.credentials().is_refreshable());
            Action::requeue(next_look(ctx.config.resync_interval, refreshing))
        }
        Err(e) => {
            if ctx.providers.remove(name) {
                warn!(provider = %name, step = e.step(), error = %e, "provider config no longer ready");
            } else {
                info!(provider = %name, step = e.step(), error = %e, "provider config not ready");
            }
            ctx.metrics.reconcile_failed(KIND, &e.reason());
            Action::requeue(e.retry_after().unwrap_or(ctx.config.resync_interval))
        }
    }
}

/// When to look at a ready ProviderConfig again: once per resync interval, more often when its
/// credentials are temporary (a source that starts failing shows within that time).
fn next_look(resync: Duration, refreshing: bool) -> Duration {
    if refreshing {
        resync.min(check::REFRESHING_RECHECK)
    } else {
        resync
    }
}

/// The message of `Ready=False`, reason `InUse`, while a deletion waits for the users.
fn hold_message(users: Option<&Users>) -> String {
    match users {
        Some(u) => in_use_message(u),
        None => "being deleted; waiting for the first list of TrafficMirrorSessions and TrafficMirrorFilters to tell whether it is still used".to_string(),
    }
}

/// The `Ready` and `Synced` conditions (no client required): `Synced` reports the check; `Ready`
/// reports the check too, unless a deletion is held for users (`InUse`, with `held` as message).
/// Plus kstatus' `Reconciling`/`Stalled` ([`conditions::with_progress`]): a check that fails until
/// someone fixes the Secret or the spec stalls the ProviderConfig.
pub(super) fn desired_conditions(
    checked: &Result<bool, CheckError>,
    held: Option<String>,
) -> Vec<Desired> {
    let (ready, synced) = match checked {
        Ok(_) => (
            Desired::yes(
                READY,
                reason::CREDENTIALS_VALID,
                "the cloud accepted the credentials",
            ),
            Desired::yes(
                SYNCED,
                reason::RECONCILE_SUCCESS,
                "the last reconcile succeeded",
            ),
        ),
        Err(e) => {
            let (r, m) = (e.reason(), e.to_string());
            (
                Desired::no(READY, &r, m.clone()),
                Desired::no(SYNCED, &r, m),
            )
        }
    };
    let failed_for_good = checked.as_ref().is_err_and(|e| !e.is_retryable());
    let pair = match held {
        Some(message) => vec![Desired::no(READY, reason::IN_USE, message), synced],
        None => vec![ready, synced],
    };
    conditions::with_progress(pair, failed_for_good)
}

/// The events a ProviderConfig's new conditions tell (no client required), each once, when it
/// starts: the credential check failing (a Warning with the check's reason, e.g. the cloud's
/// `APIGW_0301` for a 401, `SecretInvalid`, `SecretOutOfScope`) or passing (again), and a deletion
/// held while the ProviderConfig is in use (`InUse`). The resync that finds nothing new tells nothing.
pub(super) fn notices(before: &[Condition], desired: &[Desired]) -> Vec<Notice> {
    let changed = |d: &&Desired| {
        let was = conditions::find(before, d.type_);
        !was.is_some_and(|w| (w.status == "True") == d.status && w.reason == d.reason)
    };
    let mut out = Vec::new();
    if let Some(check) = desired.iter().find(|d| d.type_ == SYNCED).filter(changed) {
        let (warning, reason, note) = if check.status {
            let note = "the cloud accepted the credentials".to_string();
            (false, reason::CREDENTIALS_VALID.to_string(), note)
        } else {
            (true, check.reason.clone(), check.message.clone())
        };
        let action = "CheckCredentials";
        out.push(Notice {
            warning,
            reason,
            action,
            note,
        });
    }
    let held = desired
        .iter()
        .find(|d| d.type_ == READY && d.reason == reason::IN_USE);
    if let Some(held) = held.filter(changed) {
        let (reason, note) = (held.reason.clone(), held.message.clone());
        out.push(Notice {
            warning: false,
            reason,
            action: "Delete",
            note,
        });
    }
    out
}

/// Writes conditions, observedGeneration and the user count, only when one of them changed.
async fn write_status(
    pc: &ProviderConfig,
    ctx: &Context,
    desired: &[Desired],
    users: Option<usize>,
) -> Result<(), ProviderError> {
    let status = pc.status.clone().unwrap_or_default();
    let merged = conditions::merge(
        &status.conditions,
        desired,
        pc.metadata.generation,
        Utc::now(),
    );
    let users = users.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    let users_changed = users.is_some() && users != status.users;
    if conditions::same(&merged, &status.conditions)
        && status.observed_generation == pc.metadata.generation
        && !users_changed
    {
        return Ok(());
    }
    let next = ProviderConfigStatus {
        observed_generation: pc.metadata.generation,
        conditions: merged,
        users: users.or(status.users),
    };
    let api: Api<ProviderConfig> = Api::all(ctx.client.clone());
    object::apply_status(&api, pc, &next)
        .await
        .map_err(ProviderError::WriteStatus)?;
    Ok(())
}

/// Adds the finalizer, guarded by the resourceVersion read (a conflict is retried at once); returns
/// the ProviderConfig as written.
async fn add_finalizer(
    pc: &ProviderConfig,
    ctx: &Context,
) -> Result<ProviderConfig, ProviderError> {
    let mut finalizers = pc.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    patch_finalizers(pc, ctx, finalizers)
        .await
        .map_err(ProviderError::AddFinalizer)
}

/// Removes the finalizer (others' finalizers are kept), guarded by the resourceVersion read.
async fn remove_finalizer(pc: &ProviderConfig, ctx: &Context) -> Result<(), ProviderError> {
    let finalizers: Vec<String> = pc
        .finalizers()
        .iter()
        .filter(|f| f.as_str() != FINALIZER)
        .cloned()
        .collect();
    patch_finalizers(pc, ctx, finalizers)
        .await
        .map(|_| ())
        .map_err(ProviderError::RemoveFinalizer)
}

async fn patch_finalizers(
    pc: &ProviderConfig,
    ctx: &Context,
    finalizers: Vec<String>,
) -> Result<ProviderConfig, kube::Error> {
    let api: Api<ProviderConfig> = Api::all(ctx.client.clone());
    let patch =
        json!({"metadata": {"finalizers": finalizers, "resourceVersion": pc.resource_version()}});
    api.patch(
        &pc.name_any(),
        &crate::controller::config::patch_params(),
        &Patch::Merge(&patch),
    )
    .await
}

/// Error policy: a conflict is retried at once (the watch brings the new version), other API
/// failures after a short pause. Check failures never get here: they are conditions.
pub fn error_policy(
    pc: Arc<ProviderConfig>,
    err: &ProviderError,
    pctx: Arc<ProviderContext>,
) -> Action {
    if err.is_conflict() {
        // A stale copy: nothing is wrong, the watch brings the newer one (no failure counted).
        tracing::debug!(provider = %pc.name_any(), error = %err, "acted on a stale copy: looking again");
        return Action::requeue(object::STALE_COPY_RETRY);
    }
    pctx.ctx.metrics.reconcile_failed(KIND, &err.metric_label());
    warn!(provider = %pc.name_any(), error = %err, "provider config reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_type(d: &[Desired], t: &str) -> (bool, String) {
        let c = d.iter().find(|c| c.type_ == t).expect("condition");
        (c.status, c.reason.clone())
    }

    #[test]
    fn conditions_per_outcome() {
        let missing = || {
            Err(CheckError::SecretMissing {
                namespace: "ops".into(),
                name: "hwc".into(),
            })
        };
        // (check outcome, held message, Ready, Synced)
        type Row = (
            Result<bool, CheckError>,
            Option<String>,
            (bool, &'static str),
            (bool, &'static str),
        );
        let table: Vec<Row> = vec![
            (
                Ok(true),
                None,
                (true, "CredentialsValid"),
                (true, "ReconcileSuccess"),
            ),
            (
                missing(),
                None,
                (false, "SecretInvalid"),
                (false, "SecretInvalid"),
            ),
            (
                Ok(false),
                Some("in use".into()),
                (false, "InUse"),
                (true, "ReconcileSuccess"),
            ),
            (
                missing(),
                Some("in use".into()),
                (false, "InUse"),
                (false, "SecretInvalid"),
            ),
        ];
        // The kstatus condition each row adds: none, Stalled (a missing Secret needs a human),
        // Reconciling (waiting for the users to go), Stalled (both, the Secret first).
        let progress = [
            None,
            Some((conditions::STALLED, "SecretInvalid")),
            Some((conditions::RECONCILING, "InUse")),
            Some((conditions::STALLED, "SecretInvalid")),
        ];
        for ((checked, held, ready, synced), progress) in table.into_iter().zip(progress) {
            let d = desired_conditions(&checked, held);
            assert_eq!(by_type(&d, READY), (ready.0, ready.1.to_string()));
            assert_eq!(by_type(&d, SYNCED), (synced.0, synced.1.to_string()));
            let added: Vec<_> = d
                .iter()
                .filter(|c| c.type_ != READY && c.type_ != SYNCED)
                .map(|c| (c.type_, c.reason.as_str()))
                .collect();
            assert_eq!(added, progress.into_iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn events_tell_each_change_of_the_check_and_the_hold_once() {
        let now = Utc::now();
        let bad = || -> Result<bool, CheckError> {
            Err(CheckError::CredentialCheck {
                source: crate::cloud::CloudError::Api {
                    status: 401,
                    error_code: "APIGW.0301".into(),
                    error_msg: "wrong signature".into(),
                    request_id: None,
                    retry_after: None,
                },
            })
        };
        let after = |checked: &Result<bool, CheckError>, held: Option<&str>| {
            desired_conditions(checked, held.map(str::to_string))
        };
        let written = |d: &[Desired]| conditions::merge(&[], d, Some(1), now);
        let told = |before: &[Condition], d: &[Desired]| -> Vec<(bool, String)> {
            notices(before, d)
                .into_iter()
                .map(|n| (n.warning, n.reason))
                .collect()
        };
        let failing = after(&bad(), None);
        assert_eq!(told(&[], &failing), [(true, "APIGW_0301".to_string())]);
        let note = &notices(&[], &failing)[0].note;
        assert!(
            note.contains("APIGW.0301 (401)") && !note.contains('{'),
            "{note}"
        );
        assert!(
            told(&written(&failing), &failing).is_empty(),
            "a resync tells nothing"
        );
        let ok = after(&Ok(false), None);
        assert_eq!(
            told(&written(&failing), &ok),
            [(false, "CredentialsValid".to_string())]
        );
        assert!(told(&written(&ok), &ok).is_empty());
        let held = after(&Ok(false), Some("in use"));
        assert_eq!(told(&written(&ok), &held), [(false, "InUse".to_string())]);
        assert!(told(&written(&held), &held).is_empty());
    }

    #[test]
    fn refreshing_sources_are_looked_at_more_often() {
        let (five_min, ten_s) = (Duration::from_secs(300), Duration::from_secs(10));
        assert_eq!(next_look(five_min, false), five_min);
        assert_eq!(next_look(five_min, true), check::REFRESHING_RECHECK);
        assert_eq!(next_look(ten_s, true), ten_s);
    }

    #[test]
    fn hold_message_before_and_after_the_first_list() {
        assert!(hold_message(None).contains("waiting for the first list"));
        let u = Users {
            sessions: vec!["ns/a".into()],
            filters: vec![],
        };
        assert!(hold_message(Some(&u)).contains("still used by 1 TrafficMirrorSession(s)"));
    }
}
