//! Step "execute" (client required: the cloud, and the API server for the object's metadata): carries
//! out the decided [`Step`]. Cloud calls go through [`metered`]; metadata writes (finalizer, create
//! intent, cloud id) carry the resourceVersion that was read, so a stale copy can never act twice.
//! What was done is recorded in [`Progress`] as it happens, so the status reports it even when a
//! later call fails.

use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use tracing::info;

use super::super::context::Context;
use super::super::driver;
use super::super::error::Result;
use super::super::events;
use super::super::intent::{CreateIntent, Identity, SESSION_ID_ANNOTATION};
use super::super::object::{self, publish};
use super::super::providers::registry::Provider;
use super::decide::Step;
use super::plan::{self, Convergence, DesiredSession};
use crate::api::TrafficMirrorSession;
use crate::cloud::models::TrafficMirrorSession as CloudSession;
use crate::failpoint;

/// What has been done so far in this reconcile ([`driver::Progress`]).
pub type Progress = driver::Progress<TrafficMirrorSession>;

/// Carries out `step`. `provider` is `Some` whenever the step needs the cloud (decide guarantees it).
pub async fn execute(
    ctx: &Context,
    api: &Api<TrafficMirrorSession>,
    provider: Option<&Provider>,
    step: &Step,
    progress: &mut Progress,
) -> Result<()> {
    match (step, provider) {
        (Step::Create { desired, replacing }, Some(p)) => {
            create(ctx, api, p, desired, replacing.is_some(), progress).await
        }
        (
            Step::Adopt {
                found, convergence, ..
            },
            Some(p),
        ) => adopt(ctx, api, p, found, convergence, progress).await,
        (
            Step::Converge {
                observed,
                convergence,
                ..
            },
            Some(p),
        ) => {
            progress.cloud = Some(observed.clone());
            converge(ctx, p, &observed.id, convergence, progress).await
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
                    "left cloud session {id} in place (deletionPolicy Orphan or ObserveOnly)"
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
        _ => Ok(()), // Wait, ReportDrift, Conflict: nothing to call (the status tells, and its
                     // change one event: see object::status_written)
    }
}

/// How the session's crash-safe create is named.
const PROTOCOL: object::CreateProtocol = object::CreateProtocol {
    noun: "cloud session",
    id_annotation: SESSION_ID_ANNOTATION,
    operation: "create_session",
    failpoints: [
        "session-create-before",
        "session-create-after",
        "session-record-after",
    ],
};

/// The crash-safe create: intent (with the resourceVersion read), POST, id — each a separate write, so
/// a crash between any two leaves something the next reconcile resolves without a duplicate.
async fn create(
    ctx: &Context,
    api: &Api<TrafficMirrorSession>,
    p: &Provider,
    desired: &DesiredSession,
    replacing: bool,
    progress: &mut Progress,
) -> Result<()> {
    if replacing {
        let note = "the cloud session no longer exists; creating it again".to_string();
        publish(
            ctx,
            &*progress.obj,
            EventType::Warning,
            "SessionVanished",
            "Observe",
            note,
        )
        .await;
    }
    // No `Creating` status before the call (issue 21): a status subresource cannot be written in
    // the intent's metadata write, and a third write per create cost more than the one call's
    // blank status is worth; the status written after the POST records the id.
    let request = desired.create_request();
    let post = p.call(
        &ctx.metrics,
        PROTOCOL.operation,
        p.client.create_session(&request),
    );
    // The intent records the identity the POST sends: the spec may change before it is resolved.
    let intent =
        CreateIntent::new(&desired.name, chrono::Utc::now()).with_identity(&Identity::of(desired));
    let target = (&PROTOCOL, &intent);
    let created = object::crash_safe_create(ctx, api, &mut progress.obj, target, post).await?;
    progress.recorded_failpoint = Some(PROTOCOL.failpoints[2]);
    progress.created = true;
    p.inventory.record(&created);
    // The create carried every field; a cloud that ignored one is converged like any drift.
    let convergence = plan::convergence(desired, &created);
    let id = created.id.clone();
    progress.cloud = Some(created);
    converge(ctx, p, &id, &convergence, progress).await
}

/// Adopts the session an interrupted create made: its id first, then the calls.
async fn adopt(
    ctx: &Context,
    api: &Api<TrafficMirrorSession>,
    p: &Provider,
    found: &CloudSession,
    convergence: &Convergence,
    progress: &mut Progress,
) -> Result<()> {
    p.inventory.record(found);
    object::confirm_created(ctx, api, &mut progress.obj, &PROTOCOL, &found.id).await?;
    progress.cloud = Some(found.clone());
    converge(ctx, p, &found.id, convergence, progress).await
}

/// One PUT with the differing fields, then the source changes, in the planned order.
async fn converge(
    ctx: &Context,
    p: &Provider,
    id: &str,
    c: &Convergence,
    progress: &mut Progress,
) -> Result<()> {
    let correcting = corrects_drift(&progress.obj);
    if let Some(update) = &c.update {
        let before = progress.cloud.clone().unwrap_or_default();
        let s = p
            .cloud(
                &ctx.metrics,
                "update_session",
                p.client.update_session(id, update),
            )
            .await?;
        p.inventory.record(&s);
        progress.cloud = Some(s);
        failpoint::hit("session-update-after");
        let changes = plan::field_changes(update, &before);
        let (reason, note) = events::update_note("cloud session", &changes, correcting);
        info!(name = %progress.obj.name_any(), %id, %note, "updated cloud session");
        publish(
            ctx,
            &*progress.obj,
            EventType::Normal,
            reason,
            "Update",
            note,
        )
        .await;
    }
    let (first, second) = if c.remove_first {
        ((false, &c.remove_sources), (true, &c.add_sources))
    } else {
        ((true, &c.add_sources), (false, &c.remove_sources))
    };
    for (add, sources) in [first, second] {
        if !sources.is_empty() {
            change_sources(ctx, p, id, add, sources, progress).await?;
        }
    }
    Ok(())
}

async fn change_sources(
    ctx: &Context,
    p: &Provider,
    id: &str,
    add: bool,
    sources: &[String],
    progress: &mut Progress,
) -> Result<()> {
    let s = if add {
        p.cloud(
            &ctx.metrics,
            "add_sources",
            p.client.add_sources(id, sources),
        )
        .await?
    } else {
        p.cloud(
            &ctx.metrics,
            "remove_sources",
            p.client.remove_sources(id, sources),
        )
        .await?
    };
    p.inventory.record(&s);
    progress.cloud = Some(s);
    failpoint::hit("session-sources-after");
    let verb = if add { "added" } else { "removed" };
    let mut note = format!("{verb} sources {}", sources.join(", "));
    let mut reason = "SourcesChanged";
    if corrects_drift(&progress.obj) {
        reason = events::DRIFT_CORRECTED;
        note = format!(
            "corrected drift: {note} (spec.trafficMirrorSources was changed outside this object)"
        );
    }
    publish(
        ctx,
        &*progress.obj,
        EventType::Normal,
        reason,
        "UpdateSources",
        note,
    )
    .await;
    Ok(())
}

/// Whether calls on this object now correct drift (the cloud changed outside it) rather than carry
/// out a spec change: its status already observed this generation, and it was Ready.
fn corrects_drift(obj: &TrafficMirrorSession) -> bool {
    obj.status.as_ref().is_some_and(|s| {
        events::corrects_drift(
            s.observed_generation,
            obj.metadata.generation,
            &s.conditions,
        )
    })
}

/// Deletes one cloud session; "already gone" counts as done.
async fn delete(ctx: &Context, p: &Provider, id: &str, progress: &Progress) -> Result<()> {
    let deleted = p
        .delete(&ctx.metrics, "delete_session", p.client.delete_session(id))
        .await?;
    p.inventory.forget(id);
    failpoint::hit("session-delete-after");
    info!(name = %progress.obj.name_any(), %id, ?deleted, "deleted cloud session");
    let (reason, note) = deleted.event("cloud session", id);
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
