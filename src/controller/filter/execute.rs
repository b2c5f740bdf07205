//! Step "execute" of the filter reconciler (client required: the cloud, and the API server for the
//! object's metadata): the crash-safe filter create, the filter PUT, the rule calls in the plan's
//! order (create → update → delete, so never fewer rules than either set), and deletion. Every call
//! goes through [`metered`]; what was done is kept in [`Progress`] for the status.

use std::sync::Arc;

use chrono::Utc;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use tracing::info;

use super::super::context::Context;
use super::super::driver;
use super::super::error::{Error, Result};
use super::super::events;
use super::super::intent::CreateIntent;
use super::super::intent::FILTER_ID_ANNOTATION;
use super::super::object::{self, merge_patch, publish};
use super::super::providers::registry::Provider;
use super::batch;
use super::decide::{FilterCalls, RULE_INTENT_ANNOTATION, RuleIntent, Step, creating_keys};
use super::plan::{self, DesiredFilter, RuleCall};
use crate::api::TrafficMirrorFilter;
use crate::cloud::models::{
    CreateRuleRequest, TrafficMirrorFilter as CloudFilter, TrafficMirrorFilterRule,
    UpdateFilterRequest,
};
use crate::failpoint;

/// What has been done so far in this reconcile ([`driver::Progress`]; `created`: this reconcile
/// created the cloud filter).
pub type Progress = driver::Progress<TrafficMirrorFilter>;

/// Carries out `step`.
pub async fn execute(
    ctx: &Context,
    api: &Api<TrafficMirrorFilter>,
    provider: Option<&Provider>,
    step: &Step,
    progress: &mut Progress,
) -> Result<()> {
    match (step, provider) {
        (Step::Create { desired }, Some(p)) => create(ctx, api, p, desired, progress).await,
        (Step::Adopt { found, calls, .. }, Some(p)) => {
            object::confirm_created(ctx, api, &mut progress.obj, &PROTOCOL, &found.id).await?;
            progress.cloud = Some(found.clone());
            converge(ctx, api, p, calls, progress).await
        }
        (
            Step::Converge {
                observed, calls, ..
            },
            Some(p),
        ) => {
            progress.cloud = Some(observed.clone());
            converge(ctx, api, p, calls, progress).await
        }
        (Step::Delete(ids), Some(p)) => {
            for id in ids {
                delete(ctx, p, id, progress).await?;
            }
            driver::release(api, progress).await
        }
        (Step::Release { orphaned }, _) => {
            if let Some(id) = orphaned {
                let note = format!(
                    "left cloud filter {id} in place (deletionPolicy Orphan or ObserveOnly)"
                );
                publish(
                    ctx,
                    &*progress.obj,
                    EventType::Normal,
                    "Orphaned",
                    "Delete",
                    note,
                )
                .await;
            }
            driver::release(api, progress).await
        }
        _ => Ok(()), // Wait, ReportDrift, Conflict: nothing to call
    }
}

/// How the filter's crash-safe create is named.
const PROTOCOL: object::CreateProtocol = object::CreateProtocol {
    noun: "cloud filter",
    id_annotation: FILTER_ID_ANNOTATION,
    operation: "create_filter",
    failpoints: [
        "filter-create-before",
        "filter-create-after",
        "filter-record-after",
    ],
};

/// The crash-safe create ([`object::crash_safe_create`]), then the rules.
async fn create(
    ctx: &Context,
    api: &Api<TrafficMirrorFilter>,
    p: &Provider,
    desired: &DesiredFilter,
    progress: &mut Progress,
) -> Result<()> {
    // The id with Ready=False/Creating as soon as it is known (before the rules), so the object
    // is not blank while they run; no `Creating` status before the filter POST (issue 21: a third
    // write per create; a status subresource cannot be written in the intent's metadata write).
    let request = desired.create_request();
    let post = p.call(
        &ctx.metrics,
        PROTOCOL.operation,
        p.client.create_filter(&request),
    );
    let intent = CreateIntent::new(&desired.name, Utc::now());
    let target = (&PROTOCOL, &intent);
    let created = object::crash_safe_create(ctx, api, &mut progress.obj, target, post).await?;
    progress.recorded_failpoint = Some(PROTOCOL.failpoints[2]);
    p.filters.record(&created);
    let calls = FilterCalls {
        update: plan::filter_update(desired, &created),
        rules: plan::plan_rules(&created.id, desired, &plan::observed_rules(&created)),
    };
    let id = created.id.clone();
    progress.cloud = Some(created);
    if !calls.rules.is_empty() {
        progress.obj =
            crate::controller::driver::status::write_creating(ctx, api, &*progress.obj, Some(&id))
                .await?;
    }
    progress.created = true;
    converge(ctx, api, p, &calls, progress).await
}

/// The filter PUT, then the rule calls in order; rule creates are bracketed by the rule intent.
async fn converge(
    ctx: &Context,
    api: &Api<TrafficMirrorFilter>,
    p: &Provider,
    calls: &FilterCalls,
    progress: &mut Progress,
) -> Result<()> {
    let Some(filter) = progress.cloud.clone() else {
        return Ok(());
    };
    let correcting = corrects_drift(progress);
    if let Some(update) = &calls.update {
        update_filter(ctx, p, (update, &filter), correcting, progress).await?;
    }
    let keys = creating_keys(&calls.rules);
    if !keys.is_empty() {
        write_rule_intent(
            api,
            progress,
            Some(RuleIntent {
                at: Utc::now(),
                keys,
            }),
        )
        .await?;
        failpoint::hit("rule-intent-after");
    }
    rule_calls(ctx, p, calls, correcting, progress).await?;
    if progress
        .obj
        .annotations()
        .contains_key(RULE_INTENT_ANNOTATION)
    {
        write_rule_intent(api, progress, None).await?;
    }
    Ok(())
}

/// Whether this reconcile's calls set back changes made outside the object (not a spec change, not
/// the rules of a filter it just created): see [`events::corrects_drift`].
fn corrects_drift(progress: &Progress) -> bool {
    let obj = &progress.obj;
    !progress.created
        && obj.status.as_ref().is_some_and(|s| {
            events::corrects_drift(
                s.observed_generation,
                obj.metadata.generation,
                &s.conditions,
            )
        })
}

/// The filter PUT (name, description); the rules stay as they were.
async fn update_filter(
    ctx: &Context,
    p: &Provider,
    (update, filter): (&UpdateFilterRequest, &CloudFilter),
    correcting: bool,
    progress: &mut Progress,
) -> Result<()> {
    let changes = plan::filter_field_changes(update, filter);
    let mut f = p
        .cloud(
            &ctx.metrics,
            "update_filter",
            p.client.update_filter(&filter.id, update),
        )
        .await?;
    failpoint::hit("filter-update-after");
    f.ingress_rules = filter.ingress_rules.clone();
    f.egress_rules = filter.egress_rules.clone();
    set_filter(p, progress, f);
    let (reason, note) = events::update_note("cloud filter", &changes, correcting);
    let obj = &*progress.obj;
    publish(ctx, obj, EventType::Normal, reason, "Update", note).await;
    Ok(())
}

/// The rule calls in order, then one event telling what they did (also when one failed midway).
async fn rule_calls(
    ctx: &Context,
    p: &Provider,
    calls: &FilterCalls,
    correcting: bool,
    progress: &mut Progress,
) -> Result<()> {
    let mut done = [0usize; 3]; // created, updated, deleted
    let batched = match create_in_batch(ctx, p, &calls.rules, progress).await {
        Ok(batched) => batched,
        Err(e) => {
            report_rules(ctx, progress, done, correcting).await;
            return Err(e);
        }
    };
    done[0] = batched.unwrap_or(0);
    let mut failed = Ok(());
    for call in calls.rules.calls() {
        if batched.is_some() && matches!(call, RuleCall::Create(..)) {
            continue;
        }
        if let Err(e) = rule_call(ctx, p, &call, progress).await {
            failed = Err(e);
            break;
        }
        done[match call {
            RuleCall::Create(..) => 0,
            RuleCall::Update(..) => 1,
            RuleCall::Delete(..) => 2,
        }] += 1;
    }
    report_rules(ctx, progress, done, correcting).await;
    failed
}

/// The plan's new rules in one batch call when [`batch::use_batch`] says so: `Some(created)`.
/// `None` when they go one by one: too few, or the endpoint lacks the batch API (a 404
/// `APIGW.0101`, then remembered for the account and the single creates follow at once).
async fn create_in_batch(
    ctx: &Context,
    p: &Provider,
    rules: &plan::RulePlan,
    progress: &mut Progress,
) -> Result<Option<usize>> {
    let Some(f) = progress.cloud.clone() else {
        return Ok(None);
    };
    if !batch::use_batch(rules.create.len(), p.batch_rules.available()) {
        return Ok(None);
    }
    let operation = "batch_create_rules";
    let reqs: Vec<CreateRuleRequest> = rules.create.iter().map(|(_, r)| r.clone()).collect();
    let answer = p.call(
        &ctx.metrics,
        operation,
        p.client.batch_create_rules(&f.id, &reqs),
    );
    match answer.await {
        Ok(created) => {
            failpoint::hit("rule-create-after");
            let count = created.len();
            let mut all = plan::observed_rules(&f);
            all.extend(created);
            set_filter(p, progress, plan::with_rules(&f, &all));
            tracing::debug!(name = %progress.obj.name_any(), count, "{operation}");
            Ok(Some(count))
        }
        Err(e) if batch::api_missing(&e) => {
            p.batch_rules.mark_missing();
            info!(provider = %p.name, "the endpoint has no batch rule create ({e}); creating rules one by one from now on");
            Ok(None)
        }
        Err(source) => Err(Error::Cloud { operation, source }),
    }
}

/// One rule call; the cloud view in `progress` (and the snapshot) follows its answer.
async fn rule_call(
    ctx: &Context,
    p: &Provider,
    call: &RuleCall<'_>,
    progress: &mut Progress,
) -> Result<()> {
    let (operation, key, failpoint_name) = match call {
        RuleCall::Create(k, _) => ("create_rule", k, "rule-create-after"),
        RuleCall::Update(k, _, _) => ("update_rule", k, "rule-update-after"),
        RuleCall::Delete(k, _) => ("delete_rule", k, "rule-delete-after"),
    };
    // The cloud's answer (the rule as it now is), or None for a delete.
    let answer = match call {
        RuleCall::Create(_, req) => Some(
            p.cloud(&ctx.metrics, operation, p.client.create_rule(req))
                .await?,
        ),
        RuleCall::Update(_, id, u) => Some(
            p.cloud(&ctx.metrics, operation, p.client.update_rule(id, u))
                .await?,
        ),
        RuleCall::Delete(_, id) => {
            p.delete(&ctx.metrics, operation, p.client.delete_rule(id))
                .await?;
            None
        }
    };
    failpoint::hit(failpoint_name);
    if let Some(f) = progress.cloud.clone() {
        set_filter(
            p,
            progress,
            plan::with_rules(&f, &after_call(&f, call, answer)),
        );
    }
    tracing::debug!(name = %progress.obj.name_any(), "{operation} {key}");
    Ok(())
}

/// One event for a reconcile's rule calls (`created 100 rules`, `added 2 rules, removed 1 rule`),
/// not one per rule; marked `DriftCorrected` when they set back rules changed outside the object.
async fn report_rules(ctx: &Context, progress: &Progress, done: [usize; 3], correcting: bool) {
    let [created, updated, deleted] = done;
    let Some(mut note) = events::rules_note(created, updated, deleted, progress.created) else {
        return;
    };
    let mut reason = "RulesChanged";
    if correcting {
        reason = events::DRIFT_CORRECTED;
        note = format!("corrected drift: {note} (spec.rules were changed outside this object)");
    }
    publish(
        ctx,
        &*progress.obj,
        EventType::Normal,
        reason,
        "UpdateRules",
        note,
    )
    .await;
}

/// The filter's rules after `call`, with the cloud's own answer in place of what was sent (so the
/// recorded view equals what the next LIST returns, and status does not change when it arrives).
fn after_call(
    f: &CloudFilter,
    call: &RuleCall<'_>,
    answer: Option<TrafficMirrorFilterRule>,
) -> Vec<TrafficMirrorFilterRule> {
    let mut rules = plan::observed_rules(f);
    let replaced = match call {
        RuleCall::Update(_, id, _) | RuleCall::Delete(_, id) => Some(*id),
        RuleCall::Create(..) => None,
    };
    rules.retain(|r| Some(r.id.as_str()) != replaced);
    rules.extend(answer);
    rules
}

fn set_filter(p: &Provider, progress: &mut Progress, f: CloudFilter) {
    p.filters.record(&f);
    progress.cloud = Some(f);
}

/// Deletes one cloud filter (its rules go with it); "already gone" counts as done.
async fn delete(ctx: &Context, p: &Provider, id: &str, progress: &Progress) -> Result<()> {
    let deleted = p
        .delete(&ctx.metrics, "delete_filter", p.client.delete_filter(id))
        .await?;
    p.filters.forget(id);
    failpoint::hit("filter-delete-after");
    info!(name = %progress.obj.name_any(), %id, ?deleted, "deleted cloud filter");
    let (reason, note) = deleted.event("cloud filter", id);
    publish(
        ctx,
        &*progress.obj,
        EventType::Normal,
        reason,
        "Delete",
        note,
    )
    .await;
    Ok(())
}

/// Writes (or clears) the rule intent. Writing it carries the resourceVersion read, like the filter
/// intent: a stale copy never starts a second round of creates.
async fn write_rule_intent(
    api: &Api<TrafficMirrorFilter>,
    progress: &mut Progress,
    intent: Option<RuleIntent>,
) -> Result<()> {
    let value = intent
        .as_ref()
        .and_then(|i| serde_json::to_string(i).ok())
        .map_or(Value::Null, Value::String);
    let mut patch = json!({"metadata": {"annotations": {RULE_INTENT_ANNOTATION: value}}});
    if intent.is_some() {
        patch["metadata"]["resourceVersion"] = json!(progress.obj.resource_version());
    }
    let recording = intent.is_some();
    let updated = merge_patch(api, &*progress.obj, &patch)
        .await
        .map_err(|e| {
            if recording {
                Error::RecordIntent(e)
            } else {
                Error::ClearIntent(e)
            }
        })?;
    progress.obj = Arc::new(updated);
    Ok(())
}
