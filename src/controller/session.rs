//! TrafficMirrorSession reconciler: fetch → plan (pure) → execute → status.
//!
//! - finalizer `vpc.hwcloud.dev/cleanup` added before any cloud call (client required);
//! - resolve the provider and the filter id (client required);
//! - observe the cloud session: from the resync snapshot at steady state, with a GET after a spec change
//!   or an error (client required);
//! - plan (no client required, [`super::plan`]);
//! - execute: create through the crash-safe intent protocol ([`super::intent`]), one PUT, add/remove
//!   sources (client required);
//! - write status through `/status` only, and only when it changes (client required).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use super::Context;
use super::conditions::{self, Desired, READY, SYNCED, reason};
use super::error::{Error, Result, cloud};
use super::intent::{self, CreateIntent, INTENT_ANNOTATION, Resolution, SESSION_ID_ANNOTATION};
use super::inventory::Known;
use super::plan::{self, DesiredSession};
use super::providers::Provider;
use crate::api::{
    DeletionPolicy, ManagementPolicy, SessionObservation, TrafficMirrorFilter, TrafficMirrorSession,
};
use crate::cloud::models::{ListSessionsQuery, TrafficMirrorSession as CloudSession};
use crate::failpoint;

/// Kind label used in metrics and logs.
pub const KIND: &str = "TrafficMirrorSession";
/// The finalizer that keeps the object until its cloud session is gone (or orphaned).
pub const FINALIZER: &str = "vpc.hwcloud.dev/cleanup";

/// How long to wait between looks while a create is being confirmed.
const CONFIRM_POLL: Duration = Duration::from_secs(2);
/// How long to wait before looking again at a dependency (ProviderConfig, filter) that is not ready.
const DEPENDENCY_POLL: Duration = Duration::from_secs(30);
/// How far the cloud's clock may lag ours when matching a created session to an intent.
const CLOCK_SKEW: chrono::Duration = chrono::Duration::seconds(120);

/// What one reconcile concluded: the conditions to report, the observed cloud session (if any), and
/// when to look again.
struct Outcome {
    conditions: Vec<Desired>,
    observed: Option<CloudSession>,
    action: Action,
}

impl Outcome {
    fn waiting(reason: &str, message: String, action: Action) -> Self {
        Outcome {
            conditions: vec![
                Desired::no(READY, reason, message.clone()),
                Desired::no(SYNCED, reason, message),
            ],
            observed: None,
            action,
        }
    }
}

/// Reconciles one TrafficMirrorSession.
pub async fn reconcile(obj: Arc<TrafficMirrorSession>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile_inner(obj, &ctx).await;
    ctx.metrics.reconciled(KIND, started.elapsed());
    result
}

async fn reconcile_inner(obj: Arc<TrafficMirrorSession>, ctx: &Context) -> Result<Action> {
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<TrafficMirrorSession> = Api::namespaced(ctx.client.clone(), &ns);
    if obj.metadata.deletion_timestamp.is_some() {
        if !obj.finalizers().iter().any(|f| f == FINALIZER) {
            return Ok(Action::await_change());
        }
        return cleanup(&obj, ctx, &api).await;
    }
    let uid = obj.uid().unwrap_or_default();
    if let Some(wait) = ctx.ledger.gate(&uid, obj.metadata.generation) {
        debug!(name = %obj.name_any(), ?wait, "backing off");
        return Ok(Action::requeue(wait));
    }
    let obj = ensure_finalizer(obj, &api).await?;
    match apply(&obj, ctx, &api).await {
        Ok(outcome) => {
            ctx.ledger.succeeded(&uid, obj.metadata.generation);
            write_status(
                &api,
                &obj,
                &outcome.conditions,
                outcome.observed.as_ref(),
                None,
            )
            .await?;
            Ok(outcome.action)
        }
        Err(err) => {
            ctx.metrics.reconcile_failed(KIND, &err.metric_label());
            let (cond_reason, message) = describe(&err);
            let conds = vec![
                Desired::no(READY, &cond_reason, message.clone()),
                Desired::no(SYNCED, &cond_reason, message.clone()),
            ];
            // Both conditions report the failure; atProvider keeps the last observation.
            write_status(&api, &obj, &conds, None, None).await?;
            // One long-lived recorder: repeated failures aggregate into an event series.
            publish(
                ctx,
                &obj,
                EventType::Warning,
                &cond_reason,
                "Reconcile",
                message,
            )
            .await;
            if err.is_retryable() {
                let delay = ctx.ledger.retryable(
                    &uid,
                    obj.metadata.generation,
                    &ctx.retry,
                    err.retry_after(),
                );
                warn!(name = %obj.name_any(), error = %err, ?delay, "retryable failure");
                Ok(Action::requeue(delay))
            } else {
                let delay = ctx
                    .ledger
                    .terminal(&uid, obj.metadata.generation, &ctx.retry);
                warn!(name = %obj.name_any(), error = %err, "terminal failure; waiting for a spec change");
                Ok(Action::requeue(delay))
            }
        }
    }
}

/// The condition reason and message for a failure; a cloud failure's reason is its error code.
fn describe(err: &Error) -> (String, String) {
    match err {
        Error::Cloud { operation, source } => {
            let hint = if source.is_retryable() {
                "the operator retries with backoff"
            } else {
                "fix the spec (or the cloud side); the operator retries after the next spec change"
            };
            (
                source.reason(),
                format!("{operation} failed: {source}; {hint}"),
            )
        }
        Error::Kube(e) => (
            reason::KUBERNETES_ERROR.into(),
            format!("Kubernetes API call failed: {e}; retrying"),
        ),
        Error::Invalid(m) => ("InvalidSpec".into(), m.clone()),
    }
}

/// Adds the finalizer (before any cloud call) and returns the object as the API server now has it.
async fn ensure_finalizer(
    obj: Arc<TrafficMirrorSession>,
    api: &Api<TrafficMirrorSession>,
) -> Result<Arc<TrafficMirrorSession>> {
    if obj.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(obj);
    }
    let mut finalizers = obj.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    let patch =
        json!({"metadata": {"finalizers": finalizers, "resourceVersion": obj.resource_version()}});
    let updated = merge_patch(api, &obj, &patch).await?;
    Ok(Arc::new(updated))
}

/// The cloud id this object manages, if known: the spec's (adoption), the status's, or the annotation's
/// (which survives a restore that drops status).
fn known_id(obj: &TrafficMirrorSession) -> Option<String> {
    obj.spec
        .session_id
        .clone()
        .or_else(|| obj.status.as_ref().and_then(|s| s.session_id.clone()))
        .or_else(|| obj.annotations().get(SESSION_ID_ANNOTATION).cloned())
        .filter(|s| !s.is_empty())
}

fn provider_not_ready(obj: &TrafficMirrorSession) -> Outcome {
    let name = &obj.spec.provider_config_ref.name;
    Outcome::waiting(
        reason::PROVIDER_CONFIG_NOT_READY,
        format!(
            "ProviderConfig {name:?} is missing or not Ready; see `kubectl get providerconfig {name}`"
        ),
        Action::requeue(DEPENDENCY_POLL),
    )
}

/// Resolves the filter id: given directly, or from the referenced TrafficMirrorFilter's status.
async fn filter_id(obj: &TrafficMirrorSession, ctx: &Context) -> Result<Option<String>> {
    if let Some(id) = obj
        .spec
        .traffic_mirror_filter_id
        .clone()
        .filter(|s| !s.is_empty())
    {
        return Ok(Some(id));
    }
    let Some(r) = &obj.spec.traffic_mirror_filter_ref else {
        return Err(Error::Invalid(
            "set exactly one of spec.trafficMirrorFilterId or spec.trafficMirrorFilterRef".into(),
        ));
    };
    let ns = obj.namespace().unwrap_or_default();
    let filters: Api<TrafficMirrorFilter> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(f) = filters.get_opt(&r.name).await? else {
        return Ok(None);
    };
    Ok(f.status
        .as_ref()
        .and_then(|s| s.filter_id.clone())
        .or_else(|| f.spec.filter_id.clone())
        .filter(|s| !s.is_empty()))
}

/// The apply branch: everything but deletion.
async fn apply(
    obj: &Arc<TrafficMirrorSession>,
    ctx: &Context,
    api: &Api<TrafficMirrorSession>,
) -> Result<Outcome> {
    let Some(provider) = ctx.providers.get(&obj.spec.provider_config_ref.name) else {
        return Ok(provider_not_ready(obj));
    };
    let observe_only = obj.spec.management_policy == ManagementPolicy::ObserveOnly;
    let id = known_id(obj);
    // A spec change, or a previous failure, means the snapshot may be stale for this object: GET.
    // Unless this process already converged this generation (then the snapshot holds the answers of
    // its own calls, and the status write that says so may just not be in the cache yet).
    let fresh = (obj.metadata.generation
        != obj.status.as_ref().and_then(|s| s.observed_generation)
        || !is_synced(obj))
        && !ctx
            .ledger
            .converged_at(&obj.uid().unwrap_or_default(), obj.metadata.generation);

    if observe_only {
        return observe_only_outcome(obj, ctx, &provider, id, fresh).await;
    }

    let Some(filter_id) = filter_id(obj, ctx).await? else {
        let r = obj
            .spec
            .traffic_mirror_filter_ref
            .as_ref()
            .map(|r| r.name.clone())
            .unwrap_or_default();
        return Ok(Outcome::waiting(
            reason::FILTER_NOT_READY,
            format!("TrafficMirrorFilter {r:?} is missing or has no cloud id yet"),
            Action::requeue(DEPENDENCY_POLL),
        ));
    };
    let desired = DesiredSession::from_spec(&obj.spec, &obj.name_any(), filter_id);

    let observed = match &id {
        Some(id) => match observe(ctx, &provider, id, fresh).await? {
            Some(s) => s,
            None if obj.spec.session_id.is_some() => {
                return Ok(Outcome::waiting(
                    reason::SESSION_NOT_FOUND,
                    format!(
                        "cloud session {id} (spec.sessionId) does not exist; fix spec.sessionId or remove the object"
                    ),
                    Action::requeue(ctx.config.resync_interval),
                ));
            }
            None => {
                // Ours, deleted out of band: recreate it (drift correction) through the intent protocol.
                warn!(name = %obj.name_any(), %id, "cloud session vanished; recreating");
                publish(
                    ctx,
                    obj,
                    EventType::Warning,
                    "SessionVanished",
                    "Observe",
                    format!("cloud session {id} no longer exists; creating it again"),
                )
                .await;
                let obj = forget_id(api, obj).await?;
                return create(&obj, ctx, api, &provider, &desired).await;
            }
        },
        None => return create(obj, ctx, api, &provider, &desired).await,
    };
    let session_id = observed.id.clone();
    let after = converge(ctx, obj, &provider, &session_id, &desired, observed).await?;
    Ok(settled(&desired, after, ctx))
}

/// The outcome once the calls are done: Ready exactly when the cloud matches.
fn settled(desired: &DesiredSession, observed: CloudSession, ctx: &Context) -> Outcome {
    let ready = if plan::in_sync(desired, &observed) {
        Desired::yes(
            READY,
            reason::AVAILABLE,
            "the cloud session matches the spec",
        )
    } else {
        Desired::no(
            READY,
            reason::UPDATING,
            format!(
                "the cloud still differs in {}",
                plan::differing_fields(desired, &observed).join(", ")
            ),
        )
    };
    Outcome {
        conditions: vec![
            ready,
            Desired::yes(
                SYNCED,
                reason::RECONCILE_SUCCESS,
                "the last reconcile succeeded",
            ),
        ],
        observed: Some(observed),
        action: Action::requeue(ctx.config.resync_interval * 2),
    }
}

fn is_synced(obj: &TrafficMirrorSession) -> bool {
    obj.status
        .as_ref()
        .and_then(|s| conditions::find(&s.conditions, SYNCED))
        .is_some_and(|c| c.status == "True")
}

/// The observed cloud session for `id`: the snapshot unless `fresh`, else a GET. `None` = it does not
/// exist (confirmed by the cloud, never inferred from the snapshot alone).
async fn observe(
    ctx: &Context,
    provider: &Provider,
    id: &str,
    fresh: bool,
) -> Result<Option<CloudSession>> {
    if !fresh && let Known::Present(s) = provider.inventory.get(id) {
        return Ok(Some(s));
    }
    match provider.client.show_session(id).await {
        Ok(s) => {
            ctx.metrics.cloud_call("show_session", "success");
            provider.inventory.record(&s);
            Ok(Some(s))
        }
        Err(e) if e.is_not_found() => {
            ctx.metrics.cloud_call("show_session", "not_found");
            provider.inventory.forget(id);
            Ok(None)
        }
        Err(e) => {
            ctx.metrics.cloud_call("show_session", e.metric_label());
            Err(cloud("show_session")(e))
        }
    }
}

/// ObserveOnly: read, compare, report; never write to the cloud.
async fn observe_only_outcome(
    obj: &TrafficMirrorSession,
    ctx: &Context,
    provider: &Provider,
    id: Option<String>,
    fresh: bool,
) -> Result<Outcome> {
    let Some(id) = id else {
        return Ok(Outcome::waiting(
            reason::SESSION_ID_REQUIRED,
            "managementPolicy ObserveOnly needs spec.sessionId: the session to observe".into(),
            Action::await_change(),
        ));
    };
    let Some(observed) = observe(ctx, provider, &id, fresh).await? else {
        return Ok(Outcome::waiting(
            reason::SESSION_NOT_FOUND,
            format!("cloud session {id} does not exist"),
            Action::requeue(ctx.config.resync_interval),
        ));
    };
    // Compare against the filter the spec names; when it cannot be resolved, against the cloud's.
    let filter = filter_id(obj, ctx)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| observed.traffic_mirror_filter_id.clone());
    let desired = DesiredSession::from_spec(&obj.spec, &obj.name_any(), filter);
    let fields = plan::differing_fields(&desired, &observed);
    let ready = if fields.is_empty() {
        Desired::yes(
            READY,
            reason::AVAILABLE,
            "the cloud session matches the spec",
        )
    } else {
        Desired::no(
            READY,
            reason::DRIFTED,
            format!(
                "the cloud session differs from the spec in {}; managementPolicy is ObserveOnly, so the operator does not change it",
                fields.join(", ")
            ),
        )
    };
    Ok(Outcome {
        conditions: vec![
            ready,
            Desired::yes(SYNCED, reason::RECONCILE_SUCCESS, "observed (ObserveOnly)"),
        ],
        observed: Some(observed),
        action: Action::requeue(ctx.config.resync_interval * 2),
    })
}

/// Executes a convergence: one PUT with the differing fields, then the source changes.
async fn converge(
    ctx: &Context,
    obj: &TrafficMirrorSession,
    provider: &Provider,
    id: &str,
    desired: &DesiredSession,
    observed: CloudSession,
) -> Result<CloudSession> {
    let c = plan::converge(desired, &observed);
    if c.is_empty() {
        return Ok(observed);
    }
    let client = &provider.client;
    let mut current = observed;
    if let Some(update) = &c.update {
        let fields = plan::update_field_names(update).join(", ");
        let s = call(ctx, "update_session", client.update_session(id, update)).await?;
        provider.inventory.record(&s);
        failpoint::hit("session-update-after");
        info!(name = %obj.name_any(), %id, %fields, "updated cloud session");
        publish(
            ctx,
            obj,
            EventType::Normal,
            "Updated",
            "Update",
            format!("updated {fields}"),
        )
        .await;
        current = s;
    }
    let mut steps: Vec<(&'static str, &Vec<String>)> = vec![];
    if c.remove_first {
        steps.push(("remove_sources", &c.remove_sources));
        steps.push(("add_sources", &c.add_sources));
    } else {
        steps.push(("add_sources", &c.add_sources));
        steps.push(("remove_sources", &c.remove_sources));
    }
    for (op, sources) in steps {
        if sources.is_empty() {
            continue;
        }
        let s = if op == "add_sources" {
            call(ctx, op, client.add_sources(id, sources)).await?
        } else {
            call(ctx, op, client.remove_sources(id, sources)).await?
        };
        provider.inventory.record(&s);
        failpoint::hit("session-sources-after");
        let verb = if op == "add_sources" {
            "added"
        } else {
            "removed"
        };
        publish(
            ctx,
            obj,
            EventType::Normal,
            "SourcesChanged",
            "UpdateSources",
            format!("{verb} sources {}", sources.join(", ")),
        )
        .await;
        current = s;
    }
    Ok(current)
}

/// Runs one cloud call, counting it.
async fn call<T>(
    ctx: &Context,
    operation: &'static str,
    fut: impl std::future::Future<Output = std::result::Result<T, crate::cloud::CloudError>>,
) -> Result<T> {
    match fut.await {
        Ok(v) => {
            ctx.metrics.cloud_call(operation, "success");
            Ok(v)
        }
        Err(e) => {
            ctx.metrics.cloud_call(operation, e.metric_label());
            Err(cloud(operation)(e))
        }
    }
}

/// Cloud sessions named `name`.
async fn sessions_named(
    ctx: &Context,
    provider: &Provider,
    name: &str,
) -> Result<Vec<CloudSession>> {
    let q = ListSessionsQuery {
        name: Some(name.to_string()),
        ..Default::default()
    };
    call(ctx, "list_sessions", provider.client.list_all_sessions(q)).await
}

/// The create path, crash-safe: intent first (with optimistic concurrency), then POST, then the id.
async fn create(
    obj: &Arc<TrafficMirrorSession>,
    ctx: &Context,
    api: &Api<TrafficMirrorSession>,
    provider: &Provider,
    desired: &DesiredSession,
) -> Result<Outcome> {
    let outstanding = obj.annotations().get(INTENT_ANNOTATION).map(|raw| {
        CreateIntent::parse(raw).unwrap_or_else(|| CreateIntent {
            // A damaged annotation: an intent of unknown age for the current name.
            token: "unknown".into(),
            name: desired.name.clone(),
            at: obj
                .metadata
                .creation_timestamp
                .as_ref()
                .and_then(|t| chrono::DateTime::<Utc>::from_timestamp(t.0.as_second(), 0))
                .unwrap_or_else(Utc::now),
        })
    });
    let mut obj = obj.clone();
    if let Some(intent) = outstanding {
        // A create may have happened and its answer been lost: find it before anything else.
        let found = sessions_named(ctx, provider, &intent.name).await?;
        let mut as_named = desired.clone();
        as_named.name = intent.name.clone();
        let window = chrono::Duration::from_std(ctx.config.create_confirm_window)
            .unwrap_or(chrono::Duration::seconds(30));
        match intent::resolve(&intent, &as_named, &found, Utc::now(), window, CLOCK_SKEW) {
            Resolution::Adopt(s) => {
                info!(name = %obj.name_any(), id = %s.id, "found the session an interrupted create made");
                provider.inventory.record(&s);
                record_id(api, &obj, &s.id).await?;
                publish(
                    ctx,
                    &obj,
                    EventType::Normal,
                    "CreateConfirmed",
                    "Create",
                    format!("found cloud session {} from an interrupted create", s.id),
                )
                .await;
                let id = s.id.clone();
                let after = converge(ctx, &obj, provider, &id, desired, s).await?;
                return Ok(settled(desired, after, ctx));
            }
            Resolution::WaitForConsistency => {
                return Ok(Outcome::waiting(
                    reason::CREATING,
                    format!(
                        "confirming whether the create started at {} reached the cloud",
                        intent.at.to_rfc3339()
                    ),
                    Action::requeue(CONFIRM_POLL),
                ));
            }
            Resolution::Conflict(message) => {
                return Ok(name_conflict(ctx, &obj, message).await);
            }
            Resolution::CreateAgain => {
                info!(name = %obj.name_any(), "the earlier create never reached the cloud; creating");
            }
        }
        obj = write_intent(api, &obj, desired).await?;
    } else {
        obj = write_intent(api, &obj, desired).await?;
        // With the intent recorded (against the latest object), any same-named session predates us.
        let found = sessions_named(ctx, provider, &desired.name).await?;
        if let Err(message) = intent::precreate_check(&desired.name, &found) {
            return Ok(name_conflict(ctx, &obj, message).await);
        }
    }

    failpoint::hit("session-create-before");
    let request = desired.create_request();
    let created = match call(
        ctx,
        "create_session",
        provider.client.create_session(&request),
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            if !e.is_retryable() {
                // Rejected: nothing was created, so the intent can go (no confirmation wait later).
                clear_intent(api, &obj).await?;
            }
            return Err(e);
        }
    };
    failpoint::hit("session-create-after");
    provider.inventory.record(&created);
    record_id(api, &obj, &created.id).await?;
    failpoint::hit("session-record-after");
    info!(name = %obj.name_any(), id = %created.id, "created cloud session");
    publish(
        ctx,
        &obj,
        EventType::Normal,
        "Created",
        "Create",
        format!("created cloud session {}", created.id),
    )
    .await;
    // The create carried every field; converge covers a cloud that ignored one.
    let id = created.id.clone();
    let after = converge(ctx, &obj, provider, &id, desired, created).await?;
    Ok(settled(desired, after, ctx))
}

async fn name_conflict(ctx: &Context, obj: &TrafficMirrorSession, message: String) -> Outcome {
    publish(
        ctx,
        obj,
        EventType::Warning,
        reason::NAME_CONFLICT,
        "Create",
        message.clone(),
    )
    .await;
    Outcome::waiting(reason::NAME_CONFLICT, message, Action::await_change())
}

/// Records the create intent with the resourceVersion we read: a stale copy fails with a conflict.
async fn write_intent(
    api: &Api<TrafficMirrorSession>,
    obj: &TrafficMirrorSession,
    desired: &DesiredSession,
) -> Result<Arc<TrafficMirrorSession>> {
    let intent = CreateIntent::new(&desired.name, Utc::now());
    let patch = json!({"metadata": {
        "resourceVersion": obj.resource_version(),
        "annotations": {INTENT_ANNOTATION: intent.to_annotation()},
    }});
    let updated = merge_patch(api, obj, &patch).await?;
    Ok(Arc::new(updated))
}

async fn clear_intent(api: &Api<TrafficMirrorSession>, obj: &TrafficMirrorSession) -> Result<()> {
    let patch = json!({"metadata": {"annotations": {INTENT_ANNOTATION: Value::Null}}});
    merge_patch(api, obj, &patch).await?;
    Ok(())
}

/// Records the cloud id: annotation (and the intent cleared) in one write, then status.
async fn record_id(
    api: &Api<TrafficMirrorSession>,
    obj: &TrafficMirrorSession,
    id: &str,
) -> Result<()> {
    let patch = json!({"metadata": {"annotations": {SESSION_ID_ANNOTATION: id, INTENT_ANNOTATION: Value::Null}}});
    merge_patch(api, obj, &patch).await?;
    let status = json!({"status": {"sessionId": id}});
    merge_patch_status(api, obj, &status).await?;
    Ok(())
}

/// Drops a vanished session's id so the create path runs again.
async fn forget_id(
    api: &Api<TrafficMirrorSession>,
    obj: &TrafficMirrorSession,
) -> Result<Arc<TrafficMirrorSession>> {
    let status = json!({"status": {"sessionId": Value::Null, "atProvider": Value::Null}});
    merge_patch_status(api, obj, &status).await?;
    let patch = json!({"metadata": {
        "resourceVersion": obj.resource_version(),
        "annotations": {SESSION_ID_ANNOTATION: Value::Null},
    }});
    let mut updated = merge_patch(api, obj, &patch).await?;
    if let Some(st) = updated.status.as_mut() {
        st.session_id = None;
    }
    Ok(Arc::new(updated))
}

/// The cloud session as `status.atProvider`.
pub fn observation(s: &CloudSession) -> SessionObservation {
    SessionObservation {
        id: s.id.clone(),
        project_id: s.project_id.clone(),
        name: s.name.clone(),
        description: s.description.clone(),
        traffic_mirror_filter_id: s.traffic_mirror_filter_id.clone(),
        traffic_mirror_sources: s.traffic_mirror_sources.clone(),
        traffic_mirror_target_id: s.traffic_mirror_target_id.clone(),
        traffic_mirror_target_type: s.traffic_mirror_target_type.clone(),
        virtual_network_id: s.virtual_network_id,
        packet_length: s.packet_length,
        priority: s.priority,
        enabled: s.enabled,
        source_type: s.source_type.clone(),
        created_at: s.created_at.clone(),
        updated_at: s.updated_at.clone(),
    }
}

/// Writes status through `/status`, only when something changed.
async fn write_status(
    api: &Api<TrafficMirrorSession>,
    obj: &TrafficMirrorSession,
    desired: &[Desired],
    observed: Option<&CloudSession>,
    session_id: Option<&str>,
) -> Result<()> {
    let current = obj.status.clone().unwrap_or_default();
    let merged = conditions::merge(
        &current.conditions,
        desired,
        obj.metadata.generation,
        Utc::now(),
    );
    let mut patch = serde_json::Map::new();
    if !conditions::same(&merged, &current.conditions) {
        patch.insert(
            "conditions".into(),
            serde_json::to_value(&merged).unwrap_or_default(),
        );
    }
    if current.observed_generation != obj.metadata.generation {
        patch.insert("observedGeneration".into(), json!(obj.metadata.generation));
    }
    let id = observed.map(|s| s.id.as_str()).or(session_id);
    if let Some(id) = id
        && current.session_id.as_deref() != Some(id)
    {
        patch.insert("sessionId".into(), json!(id));
    }
    if let Some(s) = observed {
        let at = serde_json::to_value(observation(s)).unwrap_or_default();
        let before = serde_json::to_value(&current.at_provider).unwrap_or_default();
        if at != before {
            patch.insert("atProvider".into(), at);
        }
    }
    if patch.is_empty() {
        return Ok(());
    }
    let body = json!({"status": Value::Object(patch)});
    merge_patch_status(api, obj, &body).await?;
    Ok(())
}

/// The cleanup branch: delete (or orphan) the cloud session, then drop the finalizer.
async fn cleanup(
    obj: &Arc<TrafficMirrorSession>,
    ctx: &Context,
    api: &Api<TrafficMirrorSession>,
) -> Result<Action> {
    let keep = obj.spec.deletion_policy == DeletionPolicy::Orphan
        || obj.spec.management_policy == ManagementPolicy::ObserveOnly;
    if keep {
        if let Some(id) = known_id(obj) {
            publish(
                ctx,
                obj,
                EventType::Normal,
                "Orphaned",
                "Delete",
                format!("left cloud session {id} in place (deletionPolicy Orphan or ObserveOnly)"),
            )
            .await;
        }
        remove_finalizer(api, obj).await?;
        ctx.ledger.forget(&obj.uid().unwrap_or_default());
        return Ok(Action::await_change());
    }
    let Some(provider) = ctx.providers.get(&obj.spec.provider_config_ref.name) else {
        let o = provider_not_ready(obj);
        write_status(api, obj, &o.conditions, None, None).await?;
        return Ok(o.action);
    };
    let mut id = known_id(obj);
    if id.is_none()
        && let Some(raw) = obj.annotations().get(INTENT_ANNOTATION)
    {
        // An interrupted create may have made a session: find it so deletion does not leak it.
        if let Some(intent) = CreateIntent::parse(raw) {
            let found = sessions_named(ctx, &provider, &intent.name).await?;
            let filter = filter_id(obj, ctx).await.ok().flatten().unwrap_or_default();
            let mut desired = DesiredSession::from_spec(&obj.spec, &obj.name_any(), filter);
            desired.name = intent.name.clone();
            let window = chrono::Duration::from_std(ctx.config.create_confirm_window)
                .unwrap_or(chrono::Duration::seconds(30));
            match intent::resolve(&intent, &desired, &found, Utc::now(), window, CLOCK_SKEW) {
                Resolution::Adopt(s) => id = Some(s.id),
                Resolution::WaitForConsistency => return Ok(Action::requeue(CONFIRM_POLL)),
                Resolution::CreateAgain => {}
                Resolution::Conflict(message) => {
                    publish(
                        ctx,
                        obj,
                        EventType::Warning,
                        reason::NAME_CONFLICT,
                        "Delete",
                        message,
                    )
                    .await;
                }
            }
        }
    }
    if let Some(id) = id {
        match provider.client.delete_session(&id).await {
            Ok(()) => ctx.metrics.cloud_call("delete_session", "success"),
            Err(e) if e.is_not_found() => ctx.metrics.cloud_call("delete_session", "not_found"),
            Err(e) => {
                ctx.metrics.cloud_call("delete_session", e.metric_label());
                let err = cloud("delete_session")(e);
                let (r, m) = describe(&err);
                write_status(
                    api,
                    obj,
                    &[
                        Desired::no(READY, reason::DELETING, m.clone()),
                        Desired::no(SYNCED, &r, m),
                    ],
                    None,
                    None,
                )
                .await?;
                return Err(err);
            }
        }
        provider.inventory.forget(&id);
        failpoint::hit("session-delete-after");
        info!(name = %obj.name_any(), %id, "deleted cloud session");
        publish(
            ctx,
            obj,
            EventType::Normal,
            "Deleted",
            "Delete",
            format!("deleted cloud session {id}"),
        )
        .await;
    }
    remove_finalizer(api, obj).await?;
    ctx.ledger.forget(&obj.uid().unwrap_or_default());
    Ok(Action::await_change())
}

async fn remove_finalizer(
    api: &Api<TrafficMirrorSession>,
    obj: &TrafficMirrorSession,
) -> Result<()> {
    let finalizers: Vec<&String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .collect();
    let patch =
        json!({"metadata": {"finalizers": finalizers, "resourceVersion": obj.resource_version()}});
    match merge_patch(api, obj, &patch).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A JSON merge patch of the object (metadata; the operator never writes `spec`).
async fn merge_patch(
    api: &Api<TrafficMirrorSession>,
    obj: &TrafficMirrorSession,
    patch: &Value,
) -> kube::Result<TrafficMirrorSession> {
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await
}

/// A JSON merge patch of the `/status` subresource.
async fn merge_patch_status(
    api: &Api<TrafficMirrorSession>,
    obj: &TrafficMirrorSession,
    patch: &Value,
) -> kube::Result<TrafficMirrorSession> {
    api.patch_status(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await
}

/// Publishes an Event; failures to publish are logged, never fatal.
async fn publish(
    ctx: &Context,
    obj: &TrafficMirrorSession,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let ev = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: action.to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &obj.object_ref(&())).await {
        debug!(error = %e, "publishing event failed");
    }
}

/// Error policy for failures the reconcile could not classify itself (Kubernetes errors).
pub fn error_policy(obj: Arc<TrafficMirrorSession>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(KIND, &err.metric_label());
    let uid = obj.uid().unwrap_or_default();
    let delay = ctx
        .ledger
        .retryable(&uid, obj.metadata.generation, &ctx.retry, err.retry_after());
    warn!(name = %obj.name_any(), error = %err, ?delay, "reconcile failed");
    Action::requeue(delay)
}
