//! API-server writes every reconciler makes on its own objects (client required), generic over the
//! kind so the session and filter reconcilers share one copy: the finalizer (added before any cloud
//! call, removed after cleanup), metadata merge patches guarded by the resourceVersion that was read,
//! the single server-side-apply status write, and Events.

use std::fmt::Debug;

use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tracing::debug;

use super::config::MANAGER;
use super::context::Context;
use super::driver::FINALIZER;
use super::error::Error;
use super::events;
use super::intent::{CreateIntent, Created, INTENT_ANNOTATION};
use crate::cloud::CloudError;
use crate::failpoint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// What the shared writes need of a kind.
pub trait Object:
    Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
}

impl<K> Object for K where
    K: Resource<DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// Whether the object carries `finalizer`.
pub fn has_finalizer<K: Object>(obj: &K, finalizer: &str) -> bool {
    obj.finalizers().iter().any(|f| f == finalizer)
}

/// Adds `finalizer` (guarded by the resourceVersion read); returns the object as the API server now
/// has it (unchanged when the finalizer is already there).
pub async fn add_finalizer<K: Object>(api: &Api<K>, obj: &K, finalizer: &str) -> kube::Result<K> {
    if has_finalizer(obj, finalizer) {
        return Ok(obj.clone());
    }
    let mut finalizers = obj.finalizers().to_vec();
    finalizers.push(finalizer.to_string());
    let patch =
        json!({"metadata": {"finalizers": finalizers, "resourceVersion": obj.resource_version()}});
    merge_patch(api, obj, &patch).await
}

/// Removes `finalizer` (guarded by the resourceVersion read); an object already gone is fine.
pub async fn remove_finalizer<K: Object>(
    api: &Api<K>,
    obj: &K,
    finalizer: &str,
) -> kube::Result<()> {
    let finalizers: Vec<&String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != finalizer)
        .collect();
    let patch =
        json!({"metadata": {"finalizers": finalizers, "resourceVersion": obj.resource_version()}});
    match merge_patch(api, obj, &patch).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// A JSON merge patch of the object's metadata (the operator never writes `spec`).
pub async fn merge_patch<K: Object>(api: &Api<K>, obj: &K, patch: &Value) -> kube::Result<K> {
    api.patch(
        &obj.name_any(),
        &super::config::patch_params(),
        &Patch::Merge(patch),
    )
    .await
}

/// Records the create intent `intent` (guarded by the resourceVersion read: a stale copy fails with
/// a conflict, so it can never lead to a second create), dropping a vanished object's id
/// (`id_annotation`) and adding the finalizer [`FINALIZER`] in the same write: the one metadata
/// write before the create (the finalizer is on the object before any cloud write).
pub async fn record_intent<K: Object>(
    api: &Api<K>,
    obj: &K,
    intent: &CreateIntent,
    id_annotation: &str,
) -> Result<K, Error> {
    let mut patch = json!({"metadata": {
        "resourceVersion": obj.resource_version(),
        "annotations": {INTENT_ANNOTATION: intent.to_annotation(), id_annotation: Value::Null},
    }});
    if !has_finalizer(obj, FINALIZER) {
        let mut finalizers = obj.finalizers().to_vec();
        finalizers.push(FINALIZER.to_string());
        patch["metadata"]["finalizers"] = json!(finalizers);
    }
    merge_patch(api, obj, &patch)
        .await
        .map_err(Error::RecordIntent)
}

/// Clears the create intent after the cloud refused the create (nothing was made).
pub async fn clear_intent<K: Object>(api: &Api<K>, obj: &K) -> Result<K, Error> {
    let patch = json!({"metadata": {"annotations": {INTENT_ANNOTATION: Value::Null}}});
    merge_patch(api, obj, &patch)
        .await
        .map_err(Error::ClearIntent)
}

/// Records the cloud id in `id_annotation` and clears the intent, in one write: the first write after
/// the create answers (or the interrupted create's object is found).
pub async fn record_id<K: Object>(
    api: &Api<K>,
    obj: &K,
    id_annotation: &str,
    id: &str,
) -> Result<K, Error> {
    let patch =
        json!({"metadata": {"annotations": {id_annotation: id, INTENT_ANNOTATION: Value::Null}}});
    merge_patch(api, obj, &patch)
        .await
        .map_err(|source| Error::RecordId {
            id: id.to_string(),
            source,
        })
}

/// The names of one kind's crash-safe create.
#[derive(Clone, Copy, Debug)]
pub struct CreateProtocol {
    /// How logs and events name the cloud object (`cloud session`).
    pub noun: &'static str,
    /// The annotation holding its cloud id.
    pub id_annotation: &'static str,
    /// The cloud operation (`create_session`).
    pub operation: &'static str,
    /// Failpoints before the POST, after it, and after the id is recorded (crash tests). The last
    /// one is hit by the driver once the status write that records the id has landed
    /// ([`super::driver::Progress::recorded_failpoint`]).
    pub failpoints: [&'static str; 3],
}

/// The crash-safe create, for any kind, in two API-server writes (issue 21):
///
/// 1. **before the POST**, one metadata write: the intent, the finalizer (when missing) and the
///    removal of a vanished object's id annotation, guarded by the resourceVersion read, so a stale
///    cached copy fails with a conflict and can never lead to a second create;
/// 2. the POST;
/// 3. **after it**, the cloud id is recorded by the reconcile's one status write (`status.<id>`
///    and `status.atProvider`, written by the driver), not by a metadata write of its own. The
///    intent annotation is **kept** as the durable record of the create: status can be lost (a
///    backup restored without it), the annotation cannot. An intent counts as settled only while
///    the status holds an id whose `atProvider.createdAt` is not before the intent
///    ([`super::intent::settled_by_status`]); otherwise (a crash before the status write, a
///    restore without status, a failed status write, a re-create whose status still names the
///    vanished object) the next reconcile resolves it as before: it lists by the intent's name
///    and adopts the object created after the intent ([`confirm_created`], which records the id
///    annotation and clears the intent), waits out eventual consistency, or creates again.
///
/// A refused create made nothing, so its intent is cleared; after a retryable failure the create
/// may have happened, so the intent stays for the next reconcile to resolve. `obj` follows the
/// API server's answers. `post` is the account's metered create call
/// ([`super::providers::registry::Provider::call`]): it runs only when awaited, after the intent
/// is recorded. The caller sets [`super::driver::Progress::recorded_failpoint`] to
/// `proto.failpoints[2]`.
pub async fn crash_safe_create<K: Object, T: Created>(
    ctx: &Context,
    api: &Api<K>,
    obj: &mut std::sync::Arc<K>,
    (proto, intent): (&CreateProtocol, &CreateIntent),
    post: impl std::future::Future<Output = Result<T, CloudError>>,
) -> Result<T, Error> {
    let recorded = record_intent(api, &**obj, intent, proto.id_annotation).await?;
    // Giving way now would leave an intent without its create (resolved only after the confirm
    // window): this reconcile keeps its place in the budget.
    super::budget::hold_place();
    ctx.ledger.replaced(obj.meta(), recorded.meta());
    *obj = std::sync::Arc::new(recorded);
    failpoint::hit(proto.failpoints[0]);
    let created = match post.await {
        Ok(created) => created,
        Err(source) => {
            if !source.is_retryable() {
                *obj = std::sync::Arc::new(clear_intent(api, &**obj).await?);
            }
            let operation = proto.operation;
            return Err(Error::Cloud { operation, source });
        }
    };
    failpoint::hit(proto.failpoints[1]);
    let (noun, id) = (proto.noun, created.id());
    tracing::info!(name = %obj.name_any(), %id, "created {noun}");
    let note = format!("created {noun} {id}");
    publish(ctx, &**obj, EventType::Normal, "Created", "Create", note).await;
    Ok(created)
}

/// Takes over the object an interrupted create made (found by its intent): its id is recorded and
/// the intent cleared, and a `CreateConfirmed` event says so. `obj` follows the API server's answer.
pub async fn confirm_created<K: Object>(
    ctx: &Context,
    api: &Api<K>,
    obj: &mut std::sync::Arc<K>,
    proto: &CreateProtocol,
    id: &str,
) -> Result<(), Error> {
    let noun = proto.noun;
    tracing::info!(name = %obj.name_any(), %id, "found the {noun} an interrupted create made");
    *obj = std::sync::Arc::new(record_id(api, &**obj, proto.id_annotation, id).await?);
    let note = format!("found {noun} {id} from an interrupted create");
    publish(
        ctx,
        &**obj,
        EventType::Normal,
        "CreateConfirmed",
        "Create",
        note,
    )
    .await;
    Ok(())
}

/// The single status write of a reconcile: server-side apply of the whole `status` under
/// [`MANAGER`], with the object's resourceVersion as a precondition, so a decision made on a stale
/// copy never lands (the conflict is retried against the newer object).
pub async fn apply_status<K: Object, S: Serialize>(
    api: &Api<K>,
    obj: &K,
    status: &S,
) -> kube::Result<K> {
    let body = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": obj.name_any(), "resourceVersion": obj.resource_version()},
        "status": status,
    });
    let params = PatchParams::apply(MANAGER).force();
    api.patch_status(&obj.name_any(), &params, &Patch::Apply(&body))
        .await
}

/// Publishes an Event through the recorder of its series (only repeats of the same note aggregate); a
/// failure to publish is logged, never fatal.
pub async fn publish<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
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
    // In the background: an event is for people, and the reconcile (a create, a status write)
    // need not wait for the API server to store it.
    let reference = obj.object_ref(&());
    let key = super::events::SeriesKey::of(&ev, &reference);
    let recorder = ctx.events.recorder_for(key, std::time::Instant::now());
    tokio::spawn(async move {
        if let Err(e) = recorder.publish(&ev, &reference).await {
            debug!(error = %e, "publishing event failed");
        }
    });
}

/// How soon a reconcile that acted on a stale copy looks again: the watch brings the newer copy
/// (usually sooner, and its event reconciles at once); this is only the safety net.
pub const STALE_COPY_RETRY: std::time::Duration = std::time::Duration::from_millis(300);

/// A failed reconcile step, for any kind: count it, tell the user (a Warning event naming the step;
/// the status already says it), and back off (retryable) or wait for a spec change (terminal).
/// A conflict (409: the reconcile read a copy the object has since moved past) is not a failure:
/// nothing is wrong, so no event, no failure count and no backoff, only a prompt second look.
pub async fn report_failure<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    kind: &str,
    obj: &K,
    err: Error,
) -> kube::runtime::controller::Action {
    if err.is_conflict() {
        return stale_copy(ctx, kind, obj, &err);
    }
    ctx.metrics.reconcile_failed(kind, &err.metric_label());
    let note = if obj.meta().deletion_timestamp.is_some() {
        err.message_while_deleting()
    } else {
        err.message()
    };
    publish(
        ctx,
        obj,
        EventType::Warning,
        &err.reason(),
        err.step(),
        note,
    )
    .await;
    let uid = obj.meta().uid.clone().unwrap_or_default();
    let generation = obj.meta().generation;
    let delay = ctx
        .ledger
        .record_failure(&uid, generation, &ctx.retry, &err);
    let name = obj.meta().name.clone().unwrap_or_default();
    tracing::warn!(kind, %name, step = err.step(), error = %err, ?delay, "reconcile step failed");
    kube::runtime::controller::Action::requeue(delay)
}

/// After a status write (of `obj`'s copy, now replaced): the copy is marked replaced, and a change
/// of `Ready` into a wait or a stall is told by one event ([`events::status_notice`]).
pub async fn status_written<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    before: &[Condition],
    after: &[Condition],
    failed: bool,
) {
    let meta = obj.meta();
    if let (Some(uid), Some(rv)) = (meta.uid.as_deref(), meta.resource_version.as_deref()) {
        ctx.ledger.supersede(uid, rv);
    }
    if let Some(n) = events::status_notice(before, after, failed) {
        publish_notice(ctx, obj, n).await;
    }
}

/// Publishes a decided [`events::Notice`].
pub async fn publish_notice<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    n: events::Notice,
) {
    let type_ = if n.warning {
        EventType::Warning
    } else {
        EventType::Normal
    };
    publish(ctx, obj, type_, &n.reason, n.action, n.note).await;
}

/// A write refused for a stale copy: that copy is marked replaced (the gate holds it until the newer
/// one's watch event, which reconciles at once), and the object is looked at again soon.
fn stale_copy<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    kind: &str,
    obj: &K,
    err: &Error,
) -> kube::runtime::controller::Action {
    let meta = obj.meta();
    if let (Some(uid), Some(rv)) = (meta.uid.as_deref(), meta.resource_version.as_deref()) {
        ctx.ledger.supersede(uid, rv);
    }
    let name = meta.name.as_deref().unwrap_or_default();
    tracing::debug!(kind, %name, step = err.step(), error = %err, "acted on a stale copy: looking again");
    kube::runtime::controller::Action::requeue(STALE_COPY_RETRY)
}

/// The span every log line of one reconcile carries (`--log-format json` prints it on each line), so
/// a line says which object it is about without repeating it in each message.
pub fn reconcile_span(kind: &str, meta: &kube::api::ObjectMeta) -> tracing::Span {
    tracing::info_span!(
        "reconcile",
        kind,
        namespace = meta.namespace.as_deref().unwrap_or_default(),
        object = meta.name.as_deref().unwrap_or_default(),
        generation = meta.generation.unwrap_or_default(),
    )
}
