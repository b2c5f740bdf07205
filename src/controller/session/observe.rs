//! Step "observe" (client required: the API server for a filter reference, the cloud for the session
//! and name searches): gathers everything `decide` needs into one [`Observed`] value, reading only
//! what the object's situation calls for.

use std::sync::Arc;

use chrono::Utc;
use kube::{Api, ResourceExt};

use super::super::claims;
use super::super::conditions;
use super::super::context::Context;
use super::super::error::{Error, Result};
use super::super::intent::{self, INTENT_ANNOTATION, SESSION_ID_ANNOTATION};
use super::super::inventory::Listed;
use super::super::providers::registry::Provider;
use super::decide::{CloudState, Desired, FilterState, Observed};
use crate::api::{DeletionPolicy, ManagementPolicy, TrafficMirrorFilter, TrafficMirrorSession};
use crate::cloud::models::{ListSessionsQuery, TrafficMirrorSession as CloudSession};

/// What the object asks for (no I/O).
pub fn desired(obj: &TrafficMirrorSession, ctx: &Context) -> Desired {
    Desired {
        object_name: obj.name_any(),
        spec: obj.spec.clone(),
        deleting: obj.metadata.deletion_timestamp.is_some(),
        known_id: known_id(obj),
        confirm_window: chrono::Duration::from_std(ctx.config.create_confirm_window)
            .unwrap_or(chrono::Duration::seconds(30)),
    }
}

/// The cloud id: the recorded one (status, annotation), else the spec's (see [`claims::known_id`]).
fn known_id(obj: &TrafficMirrorSession) -> Option<String> {
    claims::known_id(
        obj.spec.session_id.as_deref(),
        obj.status.as_ref().and_then(|s| s.session_id.as_deref()),
        obj.annotations()
            .get(SESSION_ID_ANNOTATION)
            .map(String::as_str),
    )
}

/// What the status records of a create ([`intent::settled_by_status`]).
fn recorded_create(obj: &TrafficMirrorSession) -> intent::RecordedCreate<'_> {
    let status = obj.status.as_ref();
    let observed = status.and_then(|s| s.at_provider.as_ref());
    intent::RecordedCreate {
        id: status.and_then(|s| s.session_id.as_deref()),
        observed_id: observed.map(|o| o.id.as_str()),
        observed_created_at: observed.map(|o| o.created_at.as_str()),
    }
}

/// Observes; also returns the ready provider (the cloud client `execute` uses).
pub async fn observe(
    obj: &TrafficMirrorSession,
    d: &Desired,
    ctx: &Context,
) -> Result<(Observed, Option<Arc<Provider>>)> {
    let created = obj
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| chrono::DateTime::<Utc>::from_timestamp(t.0.as_second(), 0))
        .unwrap_or_else(Utc::now);
    let intent = intent::outstanding(
        obj.annotations().get(INTENT_ANNOTATION).map(String::as_str),
        &obj.cloud_name(),
        created,
    )
    .filter(|i| !intent::settled_by_status(i, recorded_create(obj)));
    let new_user = !d.deleting && d.known_id.is_none() && intent.is_none();
    let (provider, provider_unavailable) = ctx.providers.serve(
        &d.spec.provider_config_ref.name,
        &obj.namespace().unwrap_or_default(),
        new_user,
    );
    let mut o = Observed {
        provider_unavailable,
        filter: FilterState::NotRead,
        cloud: CloudState::NotRead,
        intent,
        named: vec![],
        namesakes: vec![],
        claimed_by: ctx.session_claimed_by(obj),
        now: Utc::now(),
    };
    // Another object manages the cloud session, or the spec names another id than the one this
    // object manages: nothing to read (decide waits, or releases).
    if o.claimed_by.is_some() || (!d.deleting && d.id_mismatch().is_some()) {
        return Ok((o, provider));
    }
    if let Some(p) = &provider {
        if d.deleting {
            observe_for_cleanup(obj, d, ctx, p, &mut o).await?;
        } else {
            observe_for_apply(obj, d, ctx, p, &mut o).await?;
        }
    }
    Ok((o, provider))
}

/// Deleting: only an outstanding intent (without which there is nothing to find) of a session that
/// deletion removes needs reads.
async fn observe_for_cleanup(
    obj: &TrafficMirrorSession,
    d: &Desired,
    ctx: &Context,
    p: &Provider,
    o: &mut Observed,
) -> Result<()> {
    let Some(intent) = &o.intent else {
        return Ok(());
    };
    // A kept session (Orphan, or ObserveOnly) is released without resolving the intent: no read.
    if d.spec.management_policy == ManagementPolicy::ObserveOnly
        || d.spec.deletion_policy == DeletionPolicy::Orphan
    {
        return Ok(());
    }
    // The filter only narrows the match; a filter that is gone or unreadable is left out.
    o.filter = filter_id(obj, ctx).await.unwrap_or(FilterState::NotRead);
    o.named = sessions_named(ctx, p, &intent.name).await?;
    Ok(())
}

async fn observe_for_apply(
    obj: &TrafficMirrorSession,
    d: &Desired,
    ctx: &Context,
    p: &Provider,
    o: &mut Observed,
) -> Result<()> {
    let observe_only = d.spec.management_policy == ManagementPolicy::ObserveOnly;
    o.filter = filter_id(obj, ctx).await?;
    if !observe_only && o.filter.id().is_none() {
        return Ok(()); // decide waits for the filter: no cloud call
    }
    if let Some(id) = &d.known_id {
        o.cloud = read_session(ctx, p, id, needs_fresh_read(obj, ctx)).await?;
    }
    let from_spec = d.spec.session_id.is_some();
    let cloud_name = obj.cloud_name();
    match &o.cloud {
        CloudState::Present(s) if !observe_only && s.name != cloud_name => {
            // A rename is checked like a create, against the cloud itself (one search per rename):
            // the snapshot may miss a session named so since the last LIST.
            o.named = sessions_named(ctx, p, &cloud_name).await?;
        }
        CloudState::Present(s) if !observe_only && !from_spec => {
            // Same-named sessions besides ours make the name ambiguous (from the snapshot: no call).
            let (name, id) = (s.name.clone(), s.id.clone());
            o.namesakes = p.inventory.find(|x| x.name == name && x.id != id);
        }
        CloudState::Present(_) => {}
        _ if observe_only || from_spec => {}
        _ => o.named = named_before_create(ctx, p, o, &cloud_name).await?,
    }
    Ok(())
}

/// The sessions under the name a create would use. Settling an intent always asks the cloud (a
/// crash-safety decision needs the truth); a fresh create is checked against the account snapshot
/// when the last resync LIST is at most two intervals old (the resync LIST itself waits in the budget's
/// bulk lane during a backfill), which saves a call per create. An older snapshot is refreshed
/// once for every create waiting ([`super::super::inventory::Inventory::refresh_if_older`]: the
/// account's LIST pages, one call per 500 sessions), never by a `LIST ?name=` per create; only when
/// that refresh fails is the name searched. A same-named session made out of band after that LIST
/// is caught after the create, as a namesake (`NameConflict`).
async fn named_before_create(
    ctx: &Context,
    p: &Provider,
    o: &Observed,
    cloud_name: &str,
) -> Result<Vec<CloudSession>> {
    if let Some(i) = &o.intent {
        return sessions_named(ctx, p, &i.name).await;
    }
    let max_age = ctx.config.resync_interval * 2;
    if !p.inventory.listed_within(max_age) {
        // Stale: one shared refresh of the account's pages for every create waiting, not one
        // `LIST ?name=` each (issue 21).
        let page_size = super::super::inventory::Inventory::<CloudSession>::PAGE_SIZE;
        let list = |marker| {
            let page = CloudSession::list_page(&p.client, page_size, marker);
            p.call(&ctx.metrics, CloudSession::LIST_OPERATION, page)
        };
        // Its LIST may have waited in the budget longer than `max_age`: just listed is fresh.
        match p.inventory.refresh_if_older(max_age, list).await {
            Ok(()) => return Ok(p.inventory.find(|s| s.name == cloud_name)),
            Err(e) => {
                tracing::debug!(provider = %p.name, error = %e, "shared refresh failed; searching by name");
                return sessions_named(ctx, p, cloud_name).await;
            }
        }
    }
    Ok(p.inventory.find(|s| s.name == cloud_name))
}

/// [`Context::needs_fresh_read`] for this object.
fn needs_fresh_read(obj: &TrafficMirrorSession, ctx: &Context) -> bool {
    let status = obj.status.as_ref();
    let conditions = status.map(|s| s.conditions.as_slice()).unwrap_or_default();
    ctx.needs_fresh_read(
        &obj.metadata,
        status.and_then(|s| s.observed_generation),
        conditions,
    )
}

/// Resolves the filter id: given directly, or from the referenced TrafficMirrorFilter's status.
async fn filter_id(obj: &TrafficMirrorSession, ctx: &Context) -> Result<FilterState> {
    if let Some(id) = obj
        .spec
        .traffic_mirror_filter_id
        .clone()
        .filter(|s| !s.is_empty())
    {
        return Ok(FilterState::Id(id));
    }
    let Some(r) = &obj.spec.traffic_mirror_filter_ref else {
        // Admission requires exactly one of the two; an object from before that rule waits here.
        return Ok(FilterState::NotReady(
            "set exactly one of spec.trafficMirrorFilterId or spec.trafficMirrorFilterRef".into(),
        ));
    };
    let filters: Api<TrafficMirrorFilter> =
        Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let filter = filters
        .get_opt(&r.name)
        .await
        .map_err(|source| Error::ReadFilter {
            name: r.name.clone(),
            source,
        })?;
    // A deleting filter that still has its cloud id keeps serving: it waits for its sessions.
    if let Some(id) = filter.as_ref().and_then(still_serving) {
        return Ok(FilterState::Deleting {
            id,
            filter: r.name.clone(),
        });
    }
    // Only a Ready filter's id is used: a filter still creating (or failing) keeps its sessions waiting.
    let namespace = obj.namespace().unwrap_or_default();
    Ok(match filter {
        Some(f) if filter_is_ready(&f) => match ready_filter_id(f) {
            Some(id) => FilterState::Id(id),
            None => FilterState::NotReady(filter_not_usable(&r.name, &namespace, None)),
        },
        Some(f) => FilterState::NotReady(filter_not_usable(&r.name, &namespace, Some(&f))),
        None => FilterState::NotReady(format!(
            "TrafficMirrorFilter {:?} does not exist in namespace {namespace:?}: create it, or fix \
             spec.trafficMirrorFilterRef.name (`kubectl get tmf -n {namespace}`)",
            r.name
        )),
    })
}

/// The cloud id of a Ready filter.
fn ready_filter_id(f: TrafficMirrorFilter) -> Option<String> {
    f.status
        .and_then(|s| s.filter_id)
        .or(f.spec.filter_id)
        .filter(|s| !s.is_empty())
}

/// Why the referenced filter `name` (which exists) cannot be used yet: its own `Ready` reason and
/// message when it has them, and the command that shows more.
fn filter_not_usable(name: &str, namespace: &str, f: Option<&TrafficMirrorFilter>) -> String {
    let ready = f
        .and_then(|f| f.status.as_ref())
        .and_then(|s| conditions::find(&s.conditions, conditions::READY));
    let why = match ready {
        Some(c) if !c.reason.is_empty() => format!(" ({}: {})", c.reason, c.message),
        _ => " (it has no cloud id yet)".to_string(),
    };
    format!(
        "TrafficMirrorFilter {name:?} is not Ready{why}; see `kubectl describe tmf {name} -n \
         {namespace}`"
    )
}

/// The cloud id of a filter that is being deleted but still exists: its deletion waits for the
/// sessions that use it (the cloud refuses to delete a filter in use), so its id stays valid until
/// then, and those sessions keep converging instead of freezing. `None` once the id is gone.
fn still_serving(f: &TrafficMirrorFilter) -> Option<String> {
    f.metadata.deletion_timestamp.as_ref()?;
    f.status
        .as_ref()
        .and_then(|s| s.filter_id.clone())
        .filter(|s| !s.is_empty())
}

/// Whether the filter reports `Ready=True`.
fn filter_is_ready(f: &TrafficMirrorFilter) -> bool {
    f.status
        .as_ref()
        .and_then(|s| conditions::find(&s.conditions, conditions::READY))
        .is_some_and(|c| c.status == "True")
}

/// The cloud session `id`: the snapshot unless `fresh`, else a GET. `Gone` only on the cloud's word.
async fn read_session(ctx: &Context, p: &Provider, id: &str, fresh: bool) -> Result<CloudState> {
    let read = ("show_session", id, fresh);
    Ok(
        match p
            .read(&ctx.metrics, &p.inventory, read, p.client.show_session(id))
            .await?
        {
            Some(found) => CloudState::Present(found),
            None => CloudState::Gone,
        },
    )
}

/// Cloud sessions named `name`.
async fn sessions_named(ctx: &Context, p: &Provider, name: &str) -> Result<Vec<CloudSession>> {
    let q = ListSessionsQuery {
        name: Some(name.to_string()),
        ..Default::default()
    };
    p.cloud(&ctx.metrics, "list_sessions", p.client.list_all_sessions(q))
        .await
}
